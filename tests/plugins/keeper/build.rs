//! Generates the keeper.v1 messages, trait and server.
fn main() {
    plugrpc_build::compile(&["../../proto/keeper/v1/keeper.proto"], &["../../proto"])
        .expect("keeper.proto compiles");
}
