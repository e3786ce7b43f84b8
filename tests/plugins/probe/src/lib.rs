//! Test-only plugin: reports what the guest saw and fails on request, so tests can check
//! the contract end to end.

plugrpc_guest::include_proto!("probe.v1");

use plugrpc_guest::details::ErrorDetails;
use plugrpc_guest::{Code, Context, Requests, Sink, Status};
use probe_server::{Probe, ProbeServer};

/// The Probe handlers.
#[derive(Default)]
struct Prober;

/// Echoes `x-` request metadata into response headers and trailers.
fn reflect(cx: &Context) {
    for (key, value) in cx.metadata().iter() {
        if let Some(name) = key.strip_prefix("x-") {
            cx.set_header(&format!("echo-{name}"), value);
            cx.set_trailer(&format!("trailer-{name}"), value);
        }
    }
}

/// The call as the guest saw it.
fn seen(cx: &Context, text: String) -> EchoReply {
    EchoReply {
        text,
        method: cx.method().to_owned(),
        metadata: cx
            .metadata()
            .iter()
            .map(|(key, value)| MetadataPair {
                key: key.to_owned(),
                value: value.to_vec(),
            })
            .collect(),
        peer: cx.peer().unwrap_or_default().to_owned(),
        remaining_ms: cx
            .remaining()
            .map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        caller: cx.caller().unwrap_or_default(),
        tenant: cx.tenant(),
    }
}

impl Probe for Prober {
    fn echo(&self, cx: &Context, request: EchoRequest) -> Result<EchoReply, Status> {
        reflect(cx);
        Ok(seen(cx, request.text))
    }

    fn fail(&self, cx: &Context, request: FailRequest) -> Result<EchoReply, Status> {
        reflect(cx);
        Err(Status::new(
            Code::from_i32(request.code).unwrap_or(Code::Unknown),
            request.message,
        )
        .with_details(
            ErrorDetails::new()
                .with_error_info(
                    "PROBE_FAILED",
                    "probe.plugrpc.test",
                    [("asked".to_owned(), "yes".to_owned())],
                )
                .with_bad_request_violation("code", "asked for"),
        )
        .with_trailer("x-failed-by", "probe")
        .with_trailer("x-raw-bin", vec![0u8, 1, 254, 255]))
    }

    fn echo_stream(
        &self,
        cx: &Context,
        request: EchoRequest,
        out: &mut Sink<EchoReply>,
    ) -> Result<(), Status> {
        reflect(cx);
        for i in 0..request.count {
            out.send(seen(cx, format!("{} #{i}", request.text)))?;
        }
        Ok(())
    }

    fn fail_stream(
        &self,
        cx: &Context,
        request: EchoRequest,
        _out: &mut Sink<EchoReply>,
    ) -> Result<(), Status> {
        reflect(cx);
        Err(Status::aborted(request.text))
    }

    fn fail_after_read(
        &self,
        cx: &Context,
        input: Requests<EchoRequest>,
    ) -> Result<EchoReply, Status> {
        Err(fail_after_first(cx, input))
    }

    fn fail_chat(
        &self,
        cx: &Context,
        input: Requests<EchoRequest>,
        _out: &mut Sink<EchoReply>,
    ) -> Result<(), Status> {
        Err(fail_after_first(cx, input))
    }

    fn fail_late(
        &self,
        cx: &Context,
        request: EchoRequest,
        out: &mut Sink<EchoReply>,
    ) -> Result<(), Status> {
        reflect(cx);
        for i in 0..request.count {
            out.send(seen(cx, format!("{} #{i}", request.text)))?;
        }
        Err(Status::aborted(request.text))
    }

    fn headers_sent(
        &self,
        cx: &Context,
        _request: EchoRequest,
        out: &mut Sink<EchoReply>,
    ) -> Result<(), Status> {
        let before = cx.headers_sent();
        reflect(cx);
        out.send(seen(cx, format!("before={before}")))?;
        out.flush()?;
        out.send(seen(cx, format!("after={}", cx.headers_sent())))
    }
}

/// Reflects metadata, reads the first request, and fails with its text. Reflecting first
/// stages the headers before the read, which sends them if it has to wait.
fn fail_after_first(cx: &Context, mut input: Requests<EchoRequest>) -> Status {
    reflect(cx);
    match input.next() {
        Some(Ok(request)) => Status::aborted(request.text),
        Some(Err(status)) => status,
        None => Status::aborted(""),
    }
}

plugrpc_guest::export!(ProbeServer<Prober>);
