//! Builds every plugin the tests load, once per test build (wasmtime's test-programs
//! pattern), and generates tonic clients from the same .proto files the plugins use.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Plugin crates built for the tests: the examples and the test-only ones.
const PLUGINS: &[&str] = &[
    "greeter",
    "users",
    "probe",
    "greeter-twin",
    "warm",
    "misbehave",
    "versioned-v1",
    "versioned-v2",
    "versioned-broken",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ sits in the workspace root");
    build_plugins(root);
    generate_clients(root);
}

fn build_plugins(root: &Path) {
    // A target dir of its own: the outer cargo holds the lock on the main one.
    let target_dir = root.join("target").join("test-plugins");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir)
        .args(PLUGINS.iter().flat_map(|p| ["-p", p]))
        // The outer build's flags and wrappers are for the host, not for wasm.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .stdout(Stdio::null());
    let status = command
        .status()
        .expect("running cargo to build the test plugins");
    assert!(
        status.success(),
        "building the test plugins failed; is the target installed? `rustup target add wasm32-wasip2`"
    );
    let out = target_dir.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=PLUGRPC_TEST_PLUGINS={}", out.display());
    for dir in [
        "plugins",
        "guest-sdk",
        "wit",
        "proto",
        "tests/plugins",
        "tests/proto",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
}

fn generate_clients(root: &Path) {
    let protos = [
        root.join("proto/helloworld/helloworld.proto"),
        root.join("proto/user/v1/user_service.proto"),
        root.join("tests/proto/probe/v1/probe.proto"),
        root.join("tests/proto/misbehave/v1/misbehave.proto"),
        root.join("tests/proto/versioned/v1/versioned.proto"),
    ];
    let fds = protox::compile(&protos, [root.join("proto"), root.join("tests/proto")])
        .unwrap_or_else(|e| panic!("compiling the test protos: {e}"));
    // Servers too: the benchmarks serve the same services natively, beside the plugins.
    tonic_prost_build::configure()
        .compile_fds(fds)
        .expect("generating tonic clients and servers");
}
