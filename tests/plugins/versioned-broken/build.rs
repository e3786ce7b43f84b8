//! Generates the incompatible versioned.v1 messages, trait and server.
fn main() {
    plugrpc_build::compile(
        &["../../proto/versioned-broken/v1/versioned.proto"],
        &["../../proto/versioned-broken"],
    )
    .expect("the broken versioned.proto compiles");
}
