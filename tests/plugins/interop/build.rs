//! Generates grpc.testing's messages and the TestService trait from the vendored protos.
fn main() {
    plugrpc_build::compile(&["../../proto/grpc/testing/test.proto"], &["../../proto"])
        .expect("test.proto compiles");
}
