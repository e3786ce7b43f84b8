//! Builds every plugin crate of the repo once per test build (wasmtime's test-programs
//! pattern) and generates `foreach_plugin!`, which names each one, so a test naming a
//! plugin that does not exist, or a test plugin no test uses, fails to compile. Also
//! generates tonic clients from the same .proto files the plugins use.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Folders whose every subfolder with a Cargo.toml is a plugin crate.
const PLUGIN_FOLDERS: &[&str] = &["plugins", "tests/plugins"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ sits in the workspace root");
    let plugins = plugin_crates(root);
    let out = build_plugins(root, &plugins);
    write_foreach(&plugins, &out);
    generate_clients(root);
}

/// The crate name of every plugin crate, in name order.
fn plugin_crates(root: &Path) -> Vec<String> {
    let mut crates = Vec::new();
    for folder in PLUGIN_FOLDERS {
        let entries = std::fs::read_dir(root.join(folder))
            .unwrap_or_else(|e| panic!("reading {folder}: {e}"));
        for entry in entries {
            let manifest = entry.expect("a folder entry").path().join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            let name = text
                .lines()
                .find_map(|line| line.strip_prefix("name = "))
                .unwrap_or_else(|| panic!("{} names no package", manifest.display()));
            crates.push(name.trim_matches('"').to_owned());
        }
    }
    crates.sort();
    crates
}

/// Builds `plugins` for wasm32-wasip2; the folder their `.wasm` files land in.
fn build_plugins(root: &Path, plugins: &[String]) -> PathBuf {
    // A target dir of its own: the outer cargo holds the lock on the main one.
    let target_dir = root.join("target").join("test-plugins");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--profile", "plugin", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir)
        .args(plugins.iter().flat_map(|p| ["-p", p]))
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
    for dir in [
        "plugins",
        "guest-sdk",
        "proto",
        "tests/plugins",
        "tests/proto",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let out = target_dir.join("wasm32-wasip2").join("plugin");
    println!("cargo:rustc-env=PLUGRPC_TEST_PLUGINS={}", out.display());
    out
}

/// `foreach_plugin!($m)` calls `$m!(CONST_NAME, "crate-name", "path/to/crate_name.wasm")`
/// once per plugin crate.
fn write_foreach(plugins: &[String], out: &Path) {
    let mut text = String::from(
        "/// Calls `$m!(CONST_NAME, \"crate-name\", \"path/to/crate.wasm\")` for every plugin crate \
         of the repo, as built for this test run.\n\
         #[macro_export]\nmacro_rules! foreach_plugin {\n    ($m:ident) => {\n",
    );
    for name in plugins {
        let constant = name.to_uppercase().replace('-', "_");
        let wasm = out.join(format!("{}.wasm", name.replace('-', "_")));
        let _ = writeln!(
            text,
            "        $m!({constant}, {name:?}, {:?});",
            wasm.display().to_string()
        );
    }
    text.push_str("    };\n}\n");
    let file = PathBuf::from(env::var_os("OUT_DIR").expect("run by cargo")).join("plugins.rs");
    std::fs::write(file, text).expect("writing plugins.rs");
}

fn generate_clients(root: &Path) {
    let protos = [
        root.join("proto/helloworld/helloworld.proto"),
        root.join("proto/user/v1/user_service.proto"),
        root.join("tests/proto/probe/v1/probe.proto"),
        root.join("tests/proto/misbehave/v1/misbehave.proto"),
        root.join("tests/proto/versioned/v1/versioned.proto"),
        root.join("tests/proto/multi/v1/alpha.proto"),
        root.join("tests/proto/multi/v1/beta.proto"),
        root.join("tests/proto/grpc/testing/test.proto"),
        root.join("tests/proto/keeper/v1/keeper.proto"),
        root.join("tests/proto/caller/v1/caller.proto"),
        root.join("proto/frontdesk/v1/frontdesk.proto"),
        root.join("proto/grpc/health/v1/health.proto"),
        root.join("proto/grpc/reflection/v1/reflection.proto"),
        root.join("proto/grpc/reflection/v1alpha/reflection.proto"),
    ];
    let fds = protox::compile(&protos, [root.join("proto"), root.join("tests/proto")])
        .unwrap_or_else(|e| panic!("compiling the test protos: {e}"));
    // Servers too: the benchmarks serve the same services natively, beside the plugins.
    tonic_prost_build::configure()
        .compile_fds(fds)
        .expect("generating tonic clients and servers");
}
