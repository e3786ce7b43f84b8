//! Generates the helloworld messages, Greeter trait and server from proto/.
fn main() {
    plugrpc_build::compile(
        &["../../proto/helloworld/helloworld.proto"],
        &["../../proto"],
    )
    .expect("helloworld.proto compiles");
}
