//! The loadgen workloads that call through the host's other doors, for the benchmark's
//! doors section: GetUser as Connect JSON and as gRPC-Web (binary) over the same HTTP/2
//! connections tonic uses, and the interop service's 1 MiB unary with and without gzip.

use bytes::Bytes;
use http_body_util::BodyExt as _;
use plugrpc_tests::pb::interop::test_service_client::TestServiceClient;
use plugrpc_tests::pb::interop::{Payload, SimpleRequest};
use plugrpc_tests::pb::user::GetUserRequest;
use prost::Message as _;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tower::ServiceExt as _;

/// Sends one HTTP request on `channel` and reads the whole answer; an answer that is
/// not a success (HTTP status, or a gRPC-Web status other than 0) is the error.
async fn exchange(
    channel: &Channel,
    content_type: &'static str,
    body: Bytes,
) -> Result<Bytes, tonic::Status> {
    let request = http::Request::post("/user.v1.UserService/GetUser")
        .header("content-type", content_type)
        .body(tonic::body::Body::new(http_body_util::Full::new(body)))
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    let response = channel
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    if !response.status().is_success() {
        return Err(tonic::Status::unknown(format!(
            "HTTP {}",
            response.status()
        )));
    }
    if let Some(status) = response.headers().get("grpc-status").filter(|s| *s != "0") {
        return Err(tonic::Status::unknown(format!("grpc-status {status:?}")));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    Ok(body.to_bytes())
}

/// GetUser(7) as a Connect unary call with JSON.
pub(crate) async fn connect_json(channel: &Channel) -> Result<u64, tonic::Status> {
    let user = exchange(
        channel,
        "application/json",
        Bytes::from_static(br#"{"id":7}"#),
    )
    .await?;
    if !user.windows(6).any(|w| w == b"user-7") {
        return Err(tonic::Status::unknown("not user 7"));
    }
    Ok(1)
}

/// GetUser(7) as a gRPC-Web call (binary), the trailers in the body's last envelope.
pub(crate) async fn grpc_web(channel: &Channel) -> Result<u64, tonic::Status> {
    let message = GetUserRequest { id: 7 }.encode_to_vec();
    let mut body = vec![0];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap_or(0).to_be_bytes());
    body.extend_from_slice(&message);
    let answer = exchange(channel, "application/grpc-web+proto", Bytes::from(body)).await?;
    let trailers = answer
        .windows(b"grpc-status: 0".len())
        .any(|w| w == b"grpc-status: 0");
    if !trailers {
        return Err(tonic::Status::unknown("no OK trailer envelope"));
    }
    Ok(1)
}

/// The interop service's UnaryCall with `size` bytes each way (zeros, as its payloads
/// are), gzip-compressed both ways when `gzip`.
pub(crate) async fn big_unary(
    channel: &Channel,
    size: usize,
    gzip: bool,
) -> Result<u64, tonic::Status> {
    let mut client = TestServiceClient::new(channel.clone())
        .max_decoding_message_size(size + 1024)
        .max_encoding_message_size(size + 1024);
    if gzip {
        client = client
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
    }
    let reply = client
        .unary_call(SimpleRequest {
            response_size: i32::try_from(size).unwrap_or(i32::MAX),
            payload: Some(Payload {
                r#type: 0,
                body: vec![0; size],
            }),
            ..SimpleRequest::default()
        })
        .await?;
    let got = reply.into_inner().payload.map_or(0, |p| p.body.len());
    if got != size {
        return Err(tonic::Status::unknown(format!("{got} bytes, not {size}")));
    }
    Ok(1)
}
