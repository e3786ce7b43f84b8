//! Generates grpc.health.v1 from the host's vendored copy.
fn main() {
    plugrpc_build::compile(
        &["../../../proto/grpc/health/v1/health.proto"],
        &["../../../proto"],
    )
    .expect("health.proto compiles");
}
