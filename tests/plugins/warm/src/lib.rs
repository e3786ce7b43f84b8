//! Test-only plugin: declares itself stateless, then counts the calls each instance
//! served, so a test can see when the host reuses an instance and when it starts afresh.
//! Greeter's name picks a behaviour: `panic`, `spin` (until stopped), `fail` (a guest
//! status), `print` (to stdout), `grow` (its memory past 16 MiB), `slow` (300 ms of
//! work); Probe's EchoStream
//! sends `count` replies, and Probe's other methods are UNIMPLEMENTED here.

/// helloworld.Greeter's messages and server.
pub mod hello {
    plugrpc_guest::include_proto!("helloworld");
}
/// probe.v1.Probe's messages and server.
pub mod probe {
    plugrpc_guest::include_proto!("probe.v1");
}

use std::sync::atomic::{AtomicU64, Ordering};

use hello::greeter_server::{Greeter, GreeterServer};
use hello::{HelloReply, HelloRequest};
use plugrpc_guest::{Context, Requests, Sink, Status};
use probe::probe_server::{Probe, ProbeServer};
use probe::{EchoReply, EchoRequest, FailRequest};

/// Calls this instance has served, this one included.
static CALLS: AtomicU64 = AtomicU64::new(0);

fn count() -> u64 {
    CALLS.fetch_add(1, Ordering::Relaxed) + 1
}

/// Answers `<name> #<calls served by this instance>`.
#[derive(Default)]
struct Counter;

impl Greeter for Counter {
    fn say_hello(&self, _cx: &Context, request: HelloRequest) -> Result<HelloReply, Status> {
        let calls = count();
        match request.name.as_str() {
            "panic" => panic!("asked to panic"),
            "spin" => loop {
                std::hint::spin_loop();
            },
            "fail" => Err(Status::failed_precondition(format!("failed #{calls}"))),
            name => {
                match name {
                    "print" => println!("printing from call #{calls}"),
                    // Linear memory never shrinks: the instance stays this big.
                    "grow" => drop(std::hint::black_box(vec![1u8; 16 << 20])),
                    "slow" => {
                        let started = std::time::Instant::now();
                        while started.elapsed() < std::time::Duration::from_millis(300) {}
                    }
                    _ => {}
                }
                Ok(HelloReply {
                    message: format!("{name} #{calls}"),
                })
            }
        }
    }
}

impl Probe for Counter {
    fn echo(&self, _cx: &Context, request: EchoRequest) -> Result<EchoReply, Status> {
        Ok(reply(format!("{} #{}", request.text, count())))
    }

    fn fail(&self, _cx: &Context, request: FailRequest) -> Result<EchoReply, Status> {
        Err(Status::invalid_argument(request.message))
    }

    fn echo_stream(
        &self,
        _cx: &Context,
        request: EchoRequest,
        out: &mut Sink<EchoReply>,
    ) -> Result<(), Status> {
        let calls = count();
        for _ in 0..request.count {
            out.send(reply(format!("{} #{calls}", request.text)))?;
        }
        Ok(())
    }

    fn fail_stream(
        &self,
        _cx: &Context,
        _request: EchoRequest,
        _out: &mut Sink<EchoReply>,
    ) -> Result<(), Status> {
        Err(not_here())
    }

    fn fail_after_read(
        &self,
        _cx: &Context,
        _input: Requests<EchoRequest>,
    ) -> Result<EchoReply, Status> {
        Err(not_here())
    }

    fn fail_chat(
        &self,
        _cx: &Context,
        _input: Requests<EchoRequest>,
        _out: &mut Sink<EchoReply>,
    ) -> Result<(), Status> {
        Err(not_here())
    }

    fn fail_late(
        &self,
        _cx: &Context,
        _request: EchoRequest,
        _out: &mut Sink<EchoReply>,
    ) -> Result<(), Status> {
        Err(not_here())
    }

    fn headers_sent(
        &self,
        _cx: &Context,
        _request: EchoRequest,
        _out: &mut Sink<EchoReply>,
    ) -> Result<(), Status> {
        Err(not_here())
    }
}

/// The answer of the Probe methods the warm tests do not use.
fn not_here() -> Status {
    Status::unimplemented("the warm plugin serves Probe's Echo, Fail and EchoStream only")
}

fn reply(text: String) -> EchoReply {
    EchoReply {
        text,
        ..EchoReply::default()
    }
}

plugrpc_guest::export!(stateless: GreeterServer<Counter>, ProbeServer<Counter>);
