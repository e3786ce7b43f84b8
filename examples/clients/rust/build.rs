//! Generates the tonic client for user.v1 from proto/, in pure Rust (no protoc).
fn main() {
    let fds = protox::compile(
        ["../../../proto/user/v1/user_service.proto"],
        ["../../../proto"],
    )
    .unwrap_or_else(|e| panic!("compiling user_service.proto: {e}"));
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)
        .expect("generating the tonic client");
    println!("cargo:rerun-if-changed=../../../proto");
}
