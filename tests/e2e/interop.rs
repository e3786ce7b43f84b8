//! gRPC's interop test descriptions (doc/interop-test-descriptions.md in grpc/grpc), every
//! server-side case, run by a tonic client against the interop plugin. Where a case needs
//! what tonic cannot show or send (a response message's compressed flag, one request
//! message compressed and the next not), the same case is also made on the wire.
//! The grpcio client runs the same cases in `python_client.rs`.

use std::io::Write as _;

use bytes::Bytes;
use std::time::Duration;

use plugrpc_tests::pb::interop::test_service_client::TestServiceClient;
use plugrpc_tests::pb::interop::unimplemented_service_client::UnimplementedServiceClient;
use plugrpc_tests::pb::interop::{
    BoolValue, EchoStatus, Empty, Payload, ResponseParameters, SimpleRequest,
    StreamingInputCallRequest, StreamingOutputCallRequest,
};
use plugrpc_tests::{TestHost, raw};
use prost::Message as _;
use tokio_stream::StreamExt as _;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{BinaryMetadataValue, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::plugins::INTEROP;

async fn interop() -> (TestHost, TestServiceClient<Channel>) {
    let host = TestHost::with_plugins(&[INTEROP]).await;
    let client = TestServiceClient::new(host.channel().await);
    (host, client)
}

fn payload(size: usize) -> Option<Payload> {
    Some(Payload {
        r#type: 0,
        body: vec![0; size],
    })
}

fn bool_value(value: bool) -> Option<BoolValue> {
    Some(BoolValue { value })
}

fn parameters(sizes: &[i32]) -> Vec<ResponseParameters> {
    sizes
        .iter()
        .map(|&size| ResponseParameters {
            size,
            ..ResponseParameters::default()
        })
        .collect()
}

fn body_len(payload: Option<&Payload>) -> usize {
    payload.map_or(0, |p| p.body.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_unary_and_large_unary() {
    let (_host, mut client) = interop().await;
    client.empty_call(Empty {}).await.unwrap();
    let reply = client
        .unary_call(SimpleRequest {
            response_size: 314_159,
            payload: payload(271_828),
            ..SimpleRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(body_len(reply.payload.as_ref()), 314_159);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_streaming_and_server_streaming() {
    let (_host, mut client) = interop().await;
    let requests = [27_182, 8, 1828, 45_904].map(|size| StreamingInputCallRequest {
        payload: payload(size),
        ..StreamingInputCallRequest::default()
    });
    let reply = client
        .streaming_input_call(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.aggregated_payload_size, 74_922);

    let sizes = [31_415, 9, 2653, 58_979];
    let mut stream = client
        .streaming_output_call(StreamingOutputCallRequest {
            response_parameters: parameters(&sizes),
            ..StreamingOutputCallRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(reply) = stream.next().await {
        got.push(body_len(reply.unwrap().payload.as_ref()));
    }
    assert_eq!(got, sizes.map(|s| s as usize));
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_pong_and_empty_stream() {
    let (_host, mut client) = interop().await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = client
        .full_duplex_call(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for (request, response) in [(27_182, 31_415), (8, 9), (1828, 2653), (45_904, 58_979)] {
        tx.send(StreamingOutputCallRequest {
            response_parameters: parameters(&[response]),
            payload: payload(request),
            ..StreamingOutputCallRequest::default()
        })
        .await
        .unwrap();
        let reply = replies.next().await.expect("a reply per request").unwrap();
        assert_eq!(body_len(reply.payload.as_ref()), response as usize);
    }
    drop(tx);
    assert!(replies.next().await.is_none());

    let mut empty = client
        .full_duplex_call(tokio_stream::empty())
        .await
        .unwrap()
        .into_inner();
    assert!(empty.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_after_begin_and_after_first_response() {
    let (_host, mut client) = interop().await;
    // cancel_after_begin: the client cancels a client stream before sending anything.
    let (_tx, rx) = tokio::sync::mpsc::channel::<StreamingInputCallRequest>(1);
    let call = client.streaming_input_call(tokio_stream::wrappers::ReceiverStream::new(rx));
    let cancelled = tokio::time::timeout(Duration::from_millis(100), call).await;
    assert!(cancelled.is_err(), "the call waits for its requests");

    // cancel_after_first_response: one round trip, then the client goes.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = client
        .full_duplex_call(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(StreamingOutputCallRequest {
        response_parameters: parameters(&[31_415]),
        payload: payload(27_182),
        ..StreamingOutputCallRequest::default()
    })
    .await
    .unwrap();
    replies.next().await.unwrap().unwrap();
    drop(replies);
    drop(tx);
    // The host goes on serving after both cancellations.
    client.empty_call(Empty {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_on_sleeping_server() {
    use http_body_util::BodyExt as _;
    let (host, _client) = interop().await;
    // On the wire, with the request stream left open: tonic's client would put its own
    // timer on a `grpc-timeout` (answering CANCELLED first), and this case is about the
    // server's deadline.
    let first = StreamingOutputCallRequest {
        payload: payload(27_182),
        ..StreamingOutputCallRequest::default()
    };
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::convert::Infallible>>(1);
    tx.send(Ok(http_body::Frame::data(Bytes::from(raw::frames(&[
        first.encode_to_vec(),
    ])))))
    .await
    .unwrap();
    let request = http::Request::post(format!(
        "{}grpc.testing.TestService/FullDuplexCall",
        host.origin()
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("grpc-timeout", "1m")
    .body(tonic::body::Body::new(http_body_util::StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )))
    .unwrap();
    let response = host.plain_http2().request(request).await.unwrap();
    let (parts, mut body) = response.into_parts();
    let mut status = parts.headers.get("grpc-status").cloned();
    while let Some(frame) = body.frame().await {
        if let Ok(trailers) = frame.unwrap().into_trailers() {
            status = trailers.get("grpc-status").cloned();
        }
    }
    assert_eq!(status.unwrap(), "4", "DEADLINE_EXCEEDED");
    drop(tx);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_code_and_message_and_special_status_message() {
    let (_host, mut client) = interop().await;
    for message in [
        "test status message",
        "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n",
    ] {
        let response_status = Some(EchoStatus {
            code: 2,
            message: message.to_owned(),
        });
        let status = client
            .unary_call(SimpleRequest {
                response_status: response_status.clone(),
                ..SimpleRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!((status.code(), status.message()), (Code::Unknown, message));

        let request = StreamingOutputCallRequest {
            response_status,
            ..StreamingOutputCallRequest::default()
        };
        let status = match client.full_duplex_call(tokio_stream::iter([request])).await {
            Err(status) => status,
            Ok(response) => response.into_inner().next().await.unwrap().unwrap_err(),
        };
        assert_eq!((status.code(), status.message()), (Code::Unknown, message));
    }
}

/// `message` with the custom_metadata case's two entries.
fn with_metadata<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert(
        "x-grpc-test-echo-initial",
        MetadataValue::from_static("test_initial_metadata_value"),
    );
    metadata.insert_bin(
        "x-grpc-test-echo-trailing-bin",
        BinaryMetadataValue::from_bytes(&[0xab, 0xab, 0xab]),
    );
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_metadata_on_unary_and_full_duplex() {
    let (_host, mut client) = interop().await;
    let response = client
        .unary_call(with_metadata(SimpleRequest {
            response_size: 314_159,
            payload: payload(271_828),
            ..SimpleRequest::default()
        }))
        .await
        .unwrap();
    let metadata = response.metadata();
    assert_eq!(
        metadata.get("x-grpc-test-echo-initial").unwrap(),
        "test_initial_metadata_value"
    );
    let trailing = metadata.get_bin("x-grpc-test-echo-trailing-bin").unwrap();
    assert_eq!(trailing.to_bytes().unwrap().as_ref(), [0xab, 0xab, 0xab]);

    let request = StreamingOutputCallRequest {
        response_parameters: parameters(&[314_159]),
        payload: payload(271_828),
        ..StreamingOutputCallRequest::default()
    };
    let response = client
        .full_duplex_call(with_metadata(tokio_stream::iter([request])))
        .await
        .unwrap();
    assert_eq!(
        response.metadata().get("x-grpc-test-echo-initial").unwrap(),
        "test_initial_metadata_value"
    );
    let mut replies = response.into_inner();
    while let Some(reply) = replies.next().await {
        reply.unwrap();
    }
    let trailers = replies.trailers().await.unwrap().expect("trailers");
    let trailing = trailers.get_bin("x-grpc-test-echo-trailing-bin").unwrap();
    assert_eq!(trailing.to_bytes().unwrap().as_ref(), [0xab, 0xab, 0xab]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unimplemented_method_and_service() {
    let (host, mut client) = interop().await;
    let status = client.unimplemented_call(Empty {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    let mut other = UnimplementedServiceClient::new(host.channel().await);
    let status = other.unimplemented_call(Empty {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_compressed_unary_and_streaming_in_every_encoding() {
    let (host, client) = interop().await;
    // The probe: a message that should be compressed and is not is refused, so the
    // client knows the server checks.
    let status = client
        .clone()
        .unary_call(SimpleRequest {
            expect_compressed: bool_value(true),
            response_size: 314_159,
            payload: payload(271_828),
            ..SimpleRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    for encoding in [
        CompressionEncoding::Gzip,
        CompressionEncoding::Zstd,
        CompressionEncoding::Deflate,
    ] {
        let mut client = TestServiceClient::new(host.channel().await).send_compressed(encoding);
        let reply = client
            .unary_call(SimpleRequest {
                expect_compressed: bool_value(true),
                response_size: 314_159,
                payload: payload(271_828),
                ..SimpleRequest::default()
            })
            .await
            .unwrap_or_else(|status| panic!("{encoding:?}: {status:?}"))
            .into_inner();
        assert_eq!(body_len(reply.payload.as_ref()), 314_159);
        let requests = [27_182, 45_904].map(|size| StreamingInputCallRequest {
            payload: payload(size),
            expect_compressed: bool_value(true),
        });
        let reply = client
            .streaming_input_call(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.aggregated_payload_size, 73_086);
    }
}

/// `message` gzipped in its envelope.
fn gzip_envelope(message: &[u8]) -> Vec<u8> {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(message).unwrap();
    let compressed = gzip.finish().unwrap();
    let mut envelope = vec![1];
    envelope.extend_from_slice(&u32::try_from(compressed.len()).unwrap().to_be_bytes());
    envelope.extend_from_slice(&compressed);
    envelope
}

#[tokio::test(flavor = "multi_thread")]
async fn client_compressed_streaming_one_message_compressed_and_the_next_not() {
    let (host, _client) = interop().await;
    let first = StreamingInputCallRequest {
        payload: payload(27_182),
        expect_compressed: bool_value(true),
    };
    let second = StreamingInputCallRequest {
        payload: payload(45_904),
        expect_compressed: bool_value(false),
    };
    let mut body = gzip_envelope(&first.encode_to_vec());
    body.extend(raw::frames(&[second.encode_to_vec()]));
    let wire = raw::wire_request(
        &host.plain_http2(),
        &host.origin(),
        "/grpc.testing.TestService/StreamingInputCall",
        body,
        &[("grpc-encoding", "gzip")],
    )
    .await;
    let trailers = wire.trailers.expect("trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0", "{trailers:?}");
    let [(0, reply)] = &raw::envelopes(&wire.data)[..] else {
        panic!("one uncompressed reply (it is 3 bytes): {:?}", wire.data);
    };
    let reply = plugrpc_tests::pb::interop::StreamingInputCallResponse::decode(&reply[..]).unwrap();
    assert_eq!(reply.aggregated_payload_size, 73_086);

    // The same second message claiming to be compressed is refused.
    let lying = StreamingInputCallRequest {
        payload: payload(8),
        expect_compressed: bool_value(true),
    };
    let wire = raw::wire_call(
        &host.plain_http2(),
        &host.origin(),
        "/grpc.testing.TestService/StreamingInputCall",
        &[lying.encode_to_vec()],
        &[("grpc-encoding", "gzip")],
    )
    .await;
    let status = wire.trailers.as_ref().unwrap_or(&wire.headers);
    assert_eq!(status.get("grpc-status").unwrap(), "3", "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_compressed_unary_and_streaming_flag_each_message_as_asked() {
    let (host, client) = interop().await;
    // A tonic client that accepts gzip reads both answers.
    let mut accepting = client.accept_compressed(CompressionEncoding::Gzip);
    for compressed in [true, false] {
        let reply = accepting
            .unary_call(SimpleRequest {
                response_compressed: bool_value(compressed),
                response_size: 314_159,
                payload: payload(271_828),
                ..SimpleRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(body_len(reply.payload.as_ref()), 314_159);
    }
    // On the wire: each message's flag is what the request asked for.
    let accept = [("grpc-accept-encoding", "gzip")];
    for compressed in [true, false] {
        let request = SimpleRequest {
            response_compressed: bool_value(compressed),
            response_size: 314_159,
            ..SimpleRequest::default()
        };
        let wire = raw::wire_call(
            &host.plain_http2(),
            &host.origin(),
            "/grpc.testing.TestService/UnaryCall",
            &[request.encode_to_vec()],
            &accept,
        )
        .await;
        assert_eq!(wire.headers.get("grpc-encoding").unwrap(), "gzip");
        let envelopes = raw::envelopes(&wire.data);
        assert_eq!(envelopes.len(), 1);
        assert_eq!(envelopes[0].0, u8::from(compressed));
        if compressed {
            assert!(envelopes[0].1.len() < 10_000, "zeros compress well");
        }
    }
    let request = StreamingOutputCallRequest {
        response_parameters: vec![
            ResponseParameters {
                size: 31_415,
                compressed: bool_value(true),
                ..ResponseParameters::default()
            },
            ResponseParameters {
                size: 92_653,
                compressed: bool_value(false),
                ..ResponseParameters::default()
            },
        ],
        ..StreamingOutputCallRequest::default()
    };
    let wire = raw::wire_call(
        &host.plain_http2(),
        &host.origin(),
        "/grpc.testing.TestService/StreamingOutputCall",
        &[request.encode_to_vec()],
        &accept,
    )
    .await;
    let flags: Vec<u8> = raw::envelopes(&wire.data).iter().map(|e| e.0).collect();
    assert_eq!(flags, [1, 0]);
    let mut stream = accepting
        .streaming_output_call(request)
        .await
        .unwrap()
        .into_inner();
    let mut sizes = Vec::new();
    while let Some(reply) = stream.next().await {
        sizes.push(body_len(reply.unwrap().payload.as_ref()));
    }
    assert_eq!(sizes, [31_415, 92_653]);
}

#[tokio::test(flavor = "multi_thread")]
async fn compression_bounds_and_refusals() {
    let (host, _client) = interop().await;
    let path = "/grpc.testing.TestService/UnaryCall";
    // An encoding the host does not speak: UNIMPLEMENTED, naming the ones it does.
    let wire = raw::wire_call(
        &host.plain_http2(),
        &host.origin(),
        path,
        &[SimpleRequest::default().encode_to_vec()],
        &[("grpc-encoding", "br")],
    )
    .await;
    assert_eq!(wire.headers.get("grpc-status").unwrap(), "12");
    assert!(
        wire.headers
            .get("grpc-accept-encoding")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("gzip")
    );
    // A zip bomb: 64 MiB of zeros in a small gzip message, past the 4 MiB default.
    let bomb = SimpleRequest {
        payload: payload(64 << 20),
        ..SimpleRequest::default()
    };
    let wire = raw::wire_request(
        &host.plain_http2(),
        &host.origin(),
        path,
        gzip_envelope(&bomb.encode_to_vec()),
        &[("grpc-encoding", "gzip")],
    )
    .await;
    let status = wire.trailers.as_ref().unwrap_or(&wire.headers);
    assert_eq!(status.get("grpc-status").unwrap(), "8", "{status:?}");
    let message = status.get("grpc-message").unwrap().to_str().unwrap();
    assert!(message.contains("max_request_size"), "{message}");
    // Small messages go uncompressed even to a client that accepts gzip.
    let small = SimpleRequest {
        response_size: 100,
        ..SimpleRequest::default()
    };
    let wire = raw::wire_call(
        &host.plain_http2(),
        &host.origin(),
        path,
        &[small.encode_to_vec()],
        &[("grpc-accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(raw::envelopes(&wire.data)[0].0, 0, "under min_size");
    // The host serves on after all of it.
    let reply = raw::wire_call(
        &host.plain_http2(),
        &host.origin(),
        "/grpc.testing.TestService/EmptyCall",
        &[Vec::new()],
        &[],
    )
    .await;
    assert_eq!(reply.trailers.unwrap().get("grpc-status").unwrap(), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn compression_switched_off_by_the_host_or_the_plugin() {
    let request = SimpleRequest {
        response_size: 314_159,
        ..SimpleRequest::default()
    };
    for config in [
        "[compression]\nresponses = false\n",
        "[plugins.interop]\ncompress_responses = false\n",
    ] {
        let host = TestHost::with_config(&[INTEROP], config).await;
        let wire = raw::wire_call(
            &host.plain_http2(),
            &host.origin(),
            "/grpc.testing.TestService/UnaryCall",
            &[request.encode_to_vec()],
            &[("grpc-accept-encoding", "gzip")],
        )
        .await;
        assert!(wire.headers.get("grpc-encoding").is_none(), "{config}");
        assert_eq!(raw::envelopes(&wire.data)[0].0, 0, "{config}");
    }
}
