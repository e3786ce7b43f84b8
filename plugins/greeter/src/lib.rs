//! The smallest plugrpc plugin: `helloworld.Greeter/SayHello`.

plugrpc_guest::include_proto!("helloworld");

use greeter_server::{Greeter, GreeterServer};
use plugrpc_guest::{Context, Status};

/// Greets whoever asks.
#[derive(Default)]
struct Hello;

impl Greeter for Hello {
    fn say_hello(&self, _cx: &Context, request: HelloRequest) -> Result<HelloReply, Status> {
        Ok(HelloReply {
            message: format!("Hello {}!", request.name),
        })
    }
}

plugrpc_guest::export!(stateless: GreeterServer<Hello>);
