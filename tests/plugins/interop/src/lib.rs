//! Test-only plugin: `grpc.testing.TestService` as gRPC's interop test descriptions
//! (doc/interop-test-descriptions.md in grpc/grpc) ask a server to behave, so real
//! clients can run every server-side case against plugrpc:
//!
//! - payloads of zeros of the asked size; `response_status` returned as the call's status;
//! - `expect_compressed` checked against how each request message arrived, and
//!   `response_compressed` obeyed per message (compression on the wire is the host's);
//! - `x-grpc-test-echo-initial` echoed as a response header and
//!   `x-grpc-test-echo-trailing-bin` as a trailer;
//! - `interval_us` slept between streamed responses.

/// grpc.testing's messages and the TestService trait.
pub mod testing {
    plugrpc_guest::include_proto!("grpc.testing");
}

use std::time::Duration;

use plugrpc_guest::{Code, Context, Requests, Sink, Status};
use testing::test_service_server::{TestService, TestServiceServer};
use testing::{
    BoolValue, EchoStatus, Empty, Payload, ResponseParameters, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest,
    StreamingOutputCallResponse,
};

/// The metadata keys the custom_metadata case echoes.
const ECHO_INITIAL: &str = "x-grpc-test-echo-initial";
const ECHO_TRAILING: &str = "x-grpc-test-echo-trailing-bin";

/// The interop server; it keeps nothing between calls.
#[derive(Default)]
struct Interop;

/// `size` zeros, as every interop response payload is.
fn payload(size: i32) -> Result<Option<Payload>, Status> {
    let size = usize::try_from(size)
        .map_err(|_| Status::invalid_argument(format!("negative payload size {size}")))?;
    Ok(Some(Payload {
        r#type: 0,
        body: vec![0; size],
    }))
}

/// The status a request asks the call to end with, if any.
fn asked_status(status: Option<&EchoStatus>) -> Result<(), Status> {
    match status {
        Some(EchoStatus { code, message }) if *code != 0 => {
            let code = Code::from_i32(*code).unwrap_or(Code::Unknown);
            Err(Status::new(code, message.clone()))
        }
        _ => Ok(()),
    }
}

/// Fails unless the request message just read arrived compressed as `expected` says.
fn check_compressed(cx: &Context, expected: Option<&BoolValue>) -> Result<(), Status> {
    if expected.is_some_and(|b| b.value) && cx.request_compressed() != Some(true) {
        return Err(Status::invalid_argument(
            "expect_compressed is set, and the request message arrived uncompressed",
        ));
    }
    Ok(())
}

/// Echoes the custom_metadata case's keys: the initial one as a header, the trailing
/// one as a trailer.
fn echo_metadata(cx: &Context) {
    if let Some(value) = cx.metadata().get(ECHO_INITIAL) {
        let value = value.to_owned();
        cx.set_header(ECHO_INITIAL, value);
    }
    if let Some(value) = cx.metadata().get_bin(ECHO_TRAILING) {
        let value = value.to_vec();
        cx.set_trailer(ECHO_TRAILING, value);
    }
}

/// Sends the responses one request's parameters ask for, each compressed as asked.
fn respond(
    cx: &Context,
    parameters: &[ResponseParameters],
    out: &mut Sink<StreamingOutputCallResponse>,
) -> Result<(), Status> {
    for parameter in parameters {
        if parameter.interval_us > 0 {
            out.flush()?;
            std::thread::sleep(Duration::from_micros(
                u64::try_from(parameter.interval_us).unwrap_or(0),
            ));
        }
        cx.compress_responses(parameter.compressed.as_ref().is_none_or(|b| b.value))?;
        out.send(StreamingOutputCallResponse {
            payload: payload(parameter.size)?,
        })?;
    }
    Ok(())
}

impl TestService for Interop {
    fn empty_call(&self, cx: &Context, _request: Empty) -> Result<Empty, Status> {
        echo_metadata(cx);
        Ok(Empty {})
    }

    fn unary_call(&self, cx: &Context, request: SimpleRequest) -> Result<SimpleResponse, Status> {
        echo_metadata(cx);
        check_compressed(cx, request.expect_compressed.as_ref())?;
        asked_status(request.response_status.as_ref())?;
        cx.compress_responses(request.response_compressed.as_ref().is_none_or(|b| b.value))?;
        Ok(SimpleResponse {
            payload: payload(request.response_size)?,
            ..SimpleResponse::default()
        })
    }

    fn cacheable_unary_call(
        &self,
        cx: &Context,
        request: SimpleRequest,
    ) -> Result<SimpleResponse, Status> {
        self.unary_call(cx, request)
    }

    fn streaming_output_call(
        &self,
        cx: &Context,
        request: StreamingOutputCallRequest,
        out: &mut Sink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        echo_metadata(cx);
        respond(cx, &request.response_parameters, out)?;
        asked_status(request.response_status.as_ref())
    }

    fn streaming_input_call(
        &self,
        cx: &Context,
        requests: Requests<StreamingInputCallRequest>,
    ) -> Result<StreamingInputCallResponse, Status> {
        echo_metadata(cx);
        let mut aggregated_payload_size = 0i32;
        for request in requests {
            let request = request?;
            check_compressed(cx, request.expect_compressed.as_ref())?;
            let size = request.payload.map_or(0, |p| p.body.len());
            aggregated_payload_size =
                aggregated_payload_size.saturating_add(i32::try_from(size).unwrap_or(i32::MAX));
        }
        Ok(StreamingInputCallResponse {
            aggregated_payload_size,
        })
    }

    fn full_duplex_call(
        &self,
        cx: &Context,
        requests: Requests<StreamingOutputCallRequest>,
        out: &mut Sink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        echo_metadata(cx);
        for request in requests {
            let request = request?;
            asked_status(request.response_status.as_ref())?;
            respond(cx, &request.response_parameters, out)?;
            // Ping-pong: each answer leaves before the next request is read.
            out.flush()?;
        }
        Ok(())
    }

    fn half_duplex_call(
        &self,
        cx: &Context,
        requests: Requests<StreamingOutputCallRequest>,
        out: &mut Sink<StreamingOutputCallResponse>,
    ) -> Result<(), Status> {
        echo_metadata(cx);
        let requests = requests.collect::<Result<Vec<_>, _>>()?;
        for request in requests {
            asked_status(request.response_status.as_ref())?;
            respond(cx, &request.response_parameters, out)?;
        }
        Ok(())
    }

    fn unimplemented_call(&self, _cx: &Context, _request: Empty) -> Result<Empty, Status> {
        Err(Status::unimplemented(
            "grpc.testing.TestService/UnimplementedCall is unimplemented, as the interop tests expect",
        ))
    }
}

plugrpc_guest::export!(stateless: TestServiceServer<Interop>);
