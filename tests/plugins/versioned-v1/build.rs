//! Generates the versioned.v1 messages, trait and server.
fn main() {
    plugrpc_build::compile(
        &["../../proto/versioned/v1/versioned.proto"],
        &["../../proto"],
    )
    .expect("versioned.proto compiles");
}
