//! Generates the host's built-in gRPC services (health v1, reflection v1 and v1alpha)
//! from the vendored protos in `proto/grpc/`, and keeps their descriptors, so reflection
//! can describe the built-ins as it describes plugins.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let include = manifest.join("../proto");
    let protos = [
        "grpc/health/v1/health.proto",
        "grpc/reflection/v1/reflection.proto",
        "grpc/reflection/v1alpha/reflection.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={}", include.join(proto).display());
    }
    let files = protox::compile(protos, [&include]).expect("the vendored gRPC protos compile");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("run by cargo"));
    std::fs::write(
        out.join("builtin_descriptors.bin"),
        prost::Message::encode_to_vec(&files),
    )
    .expect("writing the built-in descriptors");
    tonic_prost_build::configure()
        .build_client(false)
        .compile_fds(files)
        .expect("generating the built-in services");
}
