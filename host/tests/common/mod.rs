//! What the binary's tests share: running `plugrpc`, serving with it, and the repo's
//! test plugins built for them.
#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `plugrpc ARGS`, run to its end.
pub(crate) fn plugrpc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plugrpc"))
        .args(args)
        // A backtrace must not appear whatever the environment asks.
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("plugrpc runs")
}

/// The workspace's root folder.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace root")
        .to_owned()
}

/// The `.wasm` files of the repo's plugin crates `names`, built as tests/build.rs builds
/// them (into the same target dir, so a test run that built them already reuses them).
pub(crate) fn test_plugins(names: &[&str]) -> Vec<PathBuf> {
    let target_dir = root().join("target/test-plugins");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root())
        .args(["build", "--profile", "plugin", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir)
        .args(names.iter().flat_map(|name| ["-p", name]))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {names:?} failed");
    names
        .iter()
        .map(|name| {
            target_dir
                .join("wasm32-wasip2/plugin")
                .join(format!("{}.wasm", name.replace('-', "_")))
        })
        .collect()
}

/// The address a host's log says it serves gRPC on.
pub(crate) fn serving_addr(log: &[String]) -> std::net::SocketAddr {
    log.iter()
        .find_map(|line| {
            let rest = &line[line.find("addr=")? + "addr=".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no address in {log:?}"))
}

/// The binary serving an empty plugins folder with `config` (TOML, plus a loopback port,
/// no cache, admin off), and its log lines from "serving gRPC" on, drained in a thread.
pub(crate) fn serve_until_serving(
    config: &str,
    extra: &[&str],
) -> (std::process::Child, Vec<String>, tempfile::TempDir) {
    use std::io::{BufRead as _, BufReader};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plugrpc.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\n[host]\ncache = false\nadmin_listen = \"off\"\n{config}"
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    #[allow(clippy::zombie_processes)] // handed to the caller, which waits for it
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugrpc"))
        .arg("serve")
        .args(extra)
        .args(["--config", file.to_str().unwrap(), "--plugins"])
        .arg(dir.path().join("plugins"))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let mut log = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let serving = line.contains("serving gRPC");
        log.push(line);
        if serving {
            std::thread::spawn(move || lines.for_each(drop));
            return (child, log, dir);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never served: {log:?}"
        );
    }
    panic!("exited before serving: {log:?}");
}

/// A real OCI registry on loopback, as the end-to-end tests start it (their file, shared;
/// its items are `pub` for that crate).
#[path = "../../../tests/support/oci_registry.rs"]
#[allow(unreachable_pub)]
pub(crate) mod oci_registry;
