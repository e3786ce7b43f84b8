//! Generates the helloworld messages, Greeter trait and server.
fn main() {
    plugrpc_build::compile(
        &["../../../proto/helloworld/helloworld.proto"],
        &["../../../proto"],
    )
    .expect("helloworld.proto compiles");
}
