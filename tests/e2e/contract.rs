//! The host<->plugin contract seen from a gRPC client: metadata both ways, headers and
//! trailers, statuses with details, deadlines, and the statuses for bad requests.

use std::time::Duration;

use crate::plugins::{PROBE, USERS_FIXTURE};
use bytes::Bytes;
use plugrpc_tests::pb::probe::probe_client::ProbeClient;
use plugrpc_tests::pb::probe::{EchoReply, EchoRequest, FailRequest};
use plugrpc_tests::{TestHost, raw};
use prost::Message as _;
use tokio_stream::StreamExt;
use tonic::metadata::{BinaryMetadataValue, MetadataValue};
use tonic::{Code, Request};
use tonic_types::StatusExt;

async fn probe() -> (TestHost, ProbeClient<tonic::transport::Channel>) {
    let host = TestHost::with_plugins(&[PROBE, USERS_FIXTURE]).await;
    let client = ProbeClient::new(host.channel().await);
    (host, client)
}

fn echo_request(text: &str, count: i32) -> Request<EchoRequest> {
    let mut request = Request::new(EchoRequest {
        text: text.into(),
        count,
    });
    request
        .metadata_mut()
        .insert("x-user", MetadataValue::from_static("ada"));
    request.metadata_mut().insert_bin(
        "x-trace-bin",
        BinaryMetadataValue::from_bytes(&[0, 1, 2, 255]),
    );
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn request_metadata_reaches_the_guest_with_binary_values_decoded() {
    let (_host, mut client) = probe().await;
    let reply = client
        .echo(echo_request("hi", 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.method, "/probe.v1.Probe/Echo");
    let seen = |key: &str| {
        reply
            .metadata
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.value.clone())
    };
    assert_eq!(seen("x-user").as_deref(), Some(&b"ada"[..]));
    assert_eq!(seen("x-trace-bin").as_deref(), Some(&[0u8, 1, 2, 255][..]));
    for framing in ["te", "content-type", "grpc-timeout"] {
        assert_eq!(
            seen(framing),
            None,
            "{framing} is framing, not application metadata"
        );
    }
    assert!(
        reply.peer.starts_with("127.0.0.1:"),
        "peer {:?}",
        reply.peer
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_headers_and_trailers_reach_a_unary_client() {
    let (_host, mut client) = probe().await;
    let response = client.echo(echo_request("hi", 0)).await.unwrap();
    // tonic merges a unary call's trailers into the response metadata.
    let metadata = response.metadata();
    assert_eq!(metadata.get("echo-user").unwrap(), "ada");
    assert_eq!(metadata.get("trailer-user").unwrap(), "ada");
    assert_eq!(
        metadata
            .get_bin("echo-trace-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        [0, 1, 2, 255]
    );
    assert_eq!(
        metadata
            .get_bin("trailer-trace-bin")
            .unwrap()
            .to_bytes()
            .unwrap()
            .as_ref(),
        [0, 1, 2, 255]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_headers_come_first_and_trailers_last_on_a_stream() {
    let (_host, mut client) = probe().await;
    let response = client.echo_stream(echo_request("s", 3)).await.unwrap();
    assert_eq!(response.metadata().get("echo-user").unwrap(), "ada");
    assert!(
        response.metadata().get("trailer-user").is_none(),
        "trailers are not headers"
    );
    let mut stream = response.into_inner();
    let mut texts = Vec::new();
    while let Some(reply) = stream.next().await {
        texts.push(reply.unwrap().text);
    }
    assert_eq!(texts, ["s #0", "s #1", "s #2"]);
    let trailers = stream.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers.get("trailer-user").unwrap(), "ada");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_with_no_messages_still_carries_headers_and_trailers() {
    let (_host, mut client) = probe().await;
    let response = client.echo_stream(echo_request("none", 0)).await.unwrap();
    assert_eq!(response.metadata().get("echo-user").unwrap(), "ada");
    let mut stream = response.into_inner();
    assert!(stream.next().await.is_none());
    assert_eq!(
        stream
            .trailers()
            .await
            .unwrap()
            .unwrap()
            .get("trailer-user")
            .unwrap(),
        "ada"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_guest_status_code_reaches_the_client_with_details_and_trailers() {
    let (_host, mut client) = probe().await;
    for number in 1..=16 {
        let message = format!("asked for code {number}");
        let status = client
            .fail(FailRequest {
                code: number,
                message: message.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::from_i32(number));
        assert_eq!(status.message(), message);
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo detail");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("PROBE_FAILED", "probe.plugrpc.test")
        );
        assert_eq!(info.metadata.get("asked").map(String::as_str), Some("yes"));
        assert_eq!(
            details.bad_request().unwrap().field_violations[0].field,
            "code"
        );
        assert_eq!(status.metadata().get("x-failed-by").unwrap(), "probe");
        let raw = status
            .metadata()
            .get_bin("x-raw-bin")
            .unwrap()
            .to_bytes()
            .unwrap();
        assert_eq!(raw.as_ref(), [0, 1, 254, 255]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guest_sees_the_time_left_before_its_deadline() {
    let (_host, mut client) = probe().await;
    let mut request = Request::new(EchoRequest::default());
    request.set_timeout(Duration::from_secs(5));
    let remaining = client
        .echo(request)
        .await
        .unwrap()
        .into_inner()
        .remaining_ms;
    assert!((1..=5000).contains(&remaining), "remaining {remaining} ms");

    // No grpc-timeout: the plugin's default deadline (60 s unless configured) applies.
    let defaulted = client
        .echo(EchoRequest::default())
        .await
        .unwrap()
        .into_inner()
        .remaining_ms;
    assert!(
        (5001..=60_000).contains(&defaulted),
        "remaining {defaulted} ms"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_services_and_methods_are_unimplemented() {
    let (host, _client) = probe().await;
    for path in [
        "/nope.v1.Nope/Call",
        "/user.v1.UserService/DeleteUser",
        "/probe.v1.Probe/echo",
    ] {
        let status = raw::unary(host.channel().await, path, Request::new(Bytes::new()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
        assert!(status.message().contains(path), "{}", status.message());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_is_not_protobuf_is_invalid_argument() {
    let (host, _client) = probe().await;
    let garbage = Request::new(Bytes::from_static(&[0xff, 0xff, 0xff]));
    let status = raw::unary(
        host.channel().await,
        "/user.v1.UserService/GetUser",
        garbage,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("not a valid protobuf"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_grpc_timeout_is_invalid_argument() {
    let (host, _client) = probe().await;
    let mut request = Request::new(Bytes::new());
    request
        .metadata_mut()
        .insert("grpc-timeout", MetadataValue::from_static("soon"));
    let status = raw::unary(host.channel().await, "/probe.v1.Probe/Echo", request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("grpc-timeout"),
        "{}",
        status.message()
    );
}

/// `x-user: ada` on the request: the probe echoes it as `echo-user` and `trailer-user`.
const ADA: &[(&str, &str)] = &[("x-user", "ada")];

fn encoded(text: &str, count: i32) -> Vec<u8> {
    EchoRequest {
        text: text.into(),
        count,
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_early_error_is_one_trailers_only_frame_on_every_shape() {
    let (host, _client) = probe().await;
    let http2 = host.plain_http2();
    let fail = FailRequest {
        code: Code::Aborted as i32,
        message: "early".into(),
    }
    .encode_to_vec();
    for (path, request) in [
        ("/probe.v1.Probe/Fail", fail),
        ("/probe.v1.Probe/FailStream", encoded("early", 0)),
        ("/probe.v1.Probe/FailAfterRead", encoded("early", 0)),
        ("/probe.v1.Probe/FailChat", encoded("early", 0)),
    ] {
        let wire = raw::wire_call(&http2, &host.origin(), path, &[request], ADA).await;
        let headers = &wire.headers;
        let status = headers.get("grpc-status");
        assert_eq!(
            status.map(|s| s.to_str().unwrap()),
            Some("10"),
            "{path}: {headers:?}"
        );
        assert_eq!(headers.get("grpc-message").unwrap(), "early", "{path}");
        assert!(wire.data.is_empty(), "{path}: no messages");
        assert!(wire.trailers.is_none(), "{path}: one frame, no trailers");
        // The handler's headers and trailers ride in that one frame.
        assert_eq!(headers.get("echo-user").unwrap(), "ada", "{path}");
        assert_eq!(headers.get("trailer-user").unwrap(), "ada", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unary_error_keeps_the_headers_and_trailers_the_handler_set() {
    let (_host, mut client) = probe().await;
    let mut request = Request::new(FailRequest {
        code: Code::NotFound as i32,
        message: "gone".into(),
    });
    request
        .metadata_mut()
        .insert("x-user", MetadataValue::from_static("ada"));
    let status = client.fail(request).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.metadata().get("echo-user").unwrap(), "ada");
    assert_eq!(status.metadata().get("trailer-user").unwrap(), "ada");
    assert_eq!(status.metadata().get("x-failed-by").unwrap(), "probe");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_error_follows_headers_and_messages_with_the_handlers_trailers() {
    let (host, _client) = probe().await;
    let wire = raw::wire_call(
        &host.plain_http2(),
        &host.origin(),
        "/probe.v1.Probe/FailLate",
        &[encoded("late", 2)],
        ADA,
    )
    .await;
    assert!(
        wire.headers.get("grpc-status").is_none(),
        "{:?}",
        wire.headers
    );
    assert_eq!(wire.headers.get("echo-user").unwrap(), "ada");
    let mut data = wire.data.as_slice();
    let mut texts = Vec::new();
    while !data.is_empty() {
        let len = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
        texts.push(EchoReply::decode(&data[5..5 + len]).unwrap().text);
        data = &data[5 + len..];
    }
    assert_eq!(texts, ["late #0", "late #1"]);
    let trailers = wire.trailers.expect("trailers after the messages");
    assert_eq!(trailers.get("grpc-status").unwrap(), "10");
    assert_eq!(trailers.get("grpc-message").unwrap(), "late");
    assert_eq!(trailers.get("trailer-user").unwrap(), "ada");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_can_ask_whether_headers_went_out() {
    let (_host, mut client) = probe().await;
    let mut stream = client
        .headers_sent(EchoRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut texts = Vec::new();
    while let Some(reply) = stream.next().await {
        texts.push(reply.unwrap().text);
    }
    assert_eq!(texts, ["before=false", "after=true"]);
}

/// A POST to the Echo method with `content_type` and `body`, over plain HTTP/2: the
/// response's status and headers.
async fn post_echo(
    host: &TestHost,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (http::StatusCode, http::HeaderMap) {
    let mut request = http::Request::post(format!("{}probe.v1.Probe/Echo", host.origin()));
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let body = tonic::body::Body::new(http_body_util::Full::new(Bytes::from(body)));
    let response = host
        .plain_http2()
        .request(request.body(body).unwrap())
        .await
        .expect("an HTTP/2 response");
    (response.status(), response.headers().clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_is_not_grpc_is_refused_with_415() {
    let (host, _client) = probe().await;
    // (application/json is the Connect protocol's: see web.rs.)
    for content_type in [Some("text/plain"), Some("application/xml"), None] {
        let (status, headers) = post_echo(&host, content_type, b"hello".to_vec()).await;
        assert_eq!(
            status,
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(headers["grpc-status"], "3", "{content_type:?}");
    }
    // A codec suffix is gRPC all the same.
    let framed = raw::frames(&[encoded("plus", 0)]);
    let (status, headers) = post_echo(&host, Some("application/grpc+proto"), framed).await;
    assert_eq!(status, http::StatusCode::OK);
    assert!(
        headers.get("grpc-status").is_none(),
        "not refused: {headers:?}"
    );
}
