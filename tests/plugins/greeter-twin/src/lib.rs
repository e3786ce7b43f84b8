//! Test-only plugin: claims `helloworld.Greeter`, which the greeter example serves too,
//! so the host must refuse whichever loads second.

plugrpc_guest::include_proto!("helloworld");

use greeter_server::{Greeter, GreeterServer};
use plugrpc_guest::{Context, Status};

/// Greets differently, so a test can tell who answered.
#[derive(Default)]
struct Twin;

impl Greeter for Twin {
    fn say_hello(&self, _cx: &Context, request: HelloRequest) -> Result<HelloReply, Status> {
        Ok(HelloReply {
            message: format!("Twin says hello {}", request.name),
        })
    }
}

plugrpc_guest::export!(GreeterServer<Twin>);
