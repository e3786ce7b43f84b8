//! Generates the misbehave.v1 messages, Misbehave trait and server.
fn main() {
    plugrpc_build::compile(
        &["../../proto/misbehave/v1/misbehave.proto"],
        &["../../proto"],
    )
    .expect("misbehave.proto compiles");
}
