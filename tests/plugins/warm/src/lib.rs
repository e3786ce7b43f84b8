//! Test-only plugin: declares itself stateless, then counts the calls each instance
//! served, so a test can see when the host reuses an instance and when it starts afresh.
//! The name picks a behaviour: `panic`, `spin` (until stopped), `fail` (a guest status).

plugrpc_guest::include_proto!("helloworld");

use std::sync::atomic::{AtomicU64, Ordering};

use greeter_server::{Greeter, GreeterServer};
use plugrpc_guest::{Context, Status};

/// Calls this instance has served, this one included.
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Answers `<name> #<calls served by this instance>`.
#[derive(Default)]
struct Counter;

impl Greeter for Counter {
    fn say_hello(&self, _cx: &Context, request: HelloRequest) -> Result<HelloReply, Status> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        match request.name.as_str() {
            "panic" => panic!("asked to panic"),
            "spin" => loop {
                std::hint::spin_loop();
            },
            "fail" => Err(Status::failed_precondition(format!("failed #{calls}"))),
            name => Ok(HelloReply {
                message: format!("{name} #{calls}"),
            }),
        }
    }
}

plugrpc_guest::export!(stateless: GreeterServer<Counter>);
