//! A plugin author's commands, run as the author runs them: `plugrpc check` on the repo's
//! test plugins (exit 0, 1 or 2 for CI), `plugrpc new` writing a crate that builds for
//! wasm32-wasip2, serves and passes its own test, and `plugrpc dev` rebuilding it on
//! save. The generated crates build in `target/scaffolded`, shared by every run, so their
//! dependencies compile once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Lines, Served, plugrpc, root, test_plugins};

/// A first build of a generated crate may compile all its dependencies.
const FIRST_BUILD: Duration = Duration::from_secs(900);

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn check_passes_a_plugin_the_host_would_serve_and_names_its_grants() {
    let [v1, v2] =
        <[PathBuf; 2]>::try_from(test_plugins(&["versioned-v1", "versioned-v2"])).unwrap();
    let out = plugrpc(&["check", path(&v2)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("grants it needs: none"), "{text}");
    assert!(text.contains("versioned.v1.Versioned"), "{text}");
    assert!(text.contains("ok: the host would serve it"), "{text}");

    let out = plugrpc(&["check", path(&v2), "--against", path(&v1)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).contains("no change breaks its callers"),
        "{out:?}"
    );
}

#[test]
fn check_fails_a_change_that_breaks_callers_naming_each_change() {
    let [v1, broken] =
        <[PathBuf; 2]>::try_from(test_plugins(&["versioned-v1", "versioned-broken"])).unwrap();
    let out = plugrpc(&["check", path(&broken), "--against", path(&v1)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains(
            "problem: breaking: method versioned.v1.Versioned/Count changed from server-streaming to unary"
        ),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|line| line.starts_with("problem: breaking:") && line.contains(".seq")),
        "{text}"
    );
}

#[test]
fn check_against_a_folder_compares_with_its_namesake_and_finds_conflicts() {
    let [v1, v2, greeter] =
        <[PathBuf; 3]>::try_from(test_plugins(&["versioned-v1", "versioned-v2", "greeter"]))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&v1, dir.path().join("versioned-v1.wasm")).unwrap();
    std::fs::copy(&greeter, dir.path().join("greeter.wasm")).unwrap();

    // Its namesake is the version it replaces; the greeter serves something else.
    let out = plugrpc(&["check", path(&v1), "--against-dir", path(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).contains("(versioned-v1 0.1.0): no change breaks its callers"),
        "{out:?}"
    );

    // Another plugin already serves its service.
    let out = plugrpc(&["check", path(&v2), "--against-dir", path(dir.path())]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).contains(
            "problem: conflict: service versioned.v1.Versioned is already served by plugin \"versioned-v1\""
        ),
        "{out:?}"
    );
}

#[test]
fn check_refuses_what_the_host_would_refuse_and_mistakes_are_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_plugin = dir.path().join("notes.wasm");
    std::fs::write(&not_a_plugin, "hello").unwrap();
    let out = plugrpc(&["check", path(&not_a_plugin)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).contains("problem: refused: not a valid WebAssembly component"),
        "{out:?}"
    );

    let [v1] = <[PathBuf; 1]>::try_from(test_plugins(&["versioned-v1"])).unwrap();
    let missing = dir.path().join("missing.wasm");
    for (args, says) in [
        (vec!["check", path(&missing)], "cannot read the file"),
        (
            vec!["check", path(&v1), "--against", path(&not_a_plugin)],
            "(the version to compare with): not a valid WebAssembly component",
        ),
        (
            vec!["check", path(&v1), "--against-dir", path(&missing)],
            "cannot read the plugins folder",
        ),
    ] {
        let out = plugrpc(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn the_sdk_crates_package_and_build_from_their_packages_alone() {
    // What publishing them needs: each `.crate` holds all it builds from (the WIT in
    // plugrpc-guest's). Their dependencies are the generated crates', already built.
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root())
        .args(["package", "-p", "plugrpc-guest", "-p", "plugrpc-build"])
        // The tree as it is now, committed or not.
        .arg("--allow-dirty")
        .arg("--target-dir")
        .arg(root().join("target/scaffolded"))
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "{out:?}");
}

/// The proto the generated crates serve: unary, server- and client-streaming methods.
fn proto() -> PathBuf {
    root().join("tests/proto/misbehave/v1/misbehave.proto")
}

/// A proto whose method and message names are Rust keywords, in every call shape.
fn keywords_proto() -> PathBuf {
    root().join("tests/proto/keywords/v1/keywords.proto")
}

/// `cargo ARGS` in `dir`, with the generated crates' shared target dir.
fn cargo(dir: &Path, args: &[&str]) -> Output {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", root().join("target/scaffolded"))
        .output()
        .expect("cargo runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_crate_builds_serves_unimplemented_and_passes_its_test() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("fresh");
    let out = plugrpc(&[
        "new",
        "fresh-plugin",
        "--proto",
        path(&keywords_proto()),
        "--dir",
        path(&crate_dir),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let build = cargo(
        &crate_dir,
        &["build", "--target", "wasm32-wasip2", "--release"],
    );
    assert!(build.status.success(), "{build:?}");
    let wasm = root().join("target/scaffolded/wasm32-wasip2/release/fresh_plugin.wasm");

    let host = Served::start(&[], "", &[]);
    std::fs::copy(&wasm, host.plugins().join("fresh-plugin.wasm")).unwrap();
    let channel = host.channel().await;
    // The host reloads the folder once the copy settles: until then, its own "no route".
    let started = Instant::now();
    let status = loop {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let answer = grpc
            .unary(
                tonic::Request::new(bytes::Bytes::new()),
                http::uri::PathAndQuery::from_static("/keywords.v1.Type/Match"),
                plugrpc::outbound::RawCodec,
            )
            .await;
        match answer {
            Err(status) if status.message().contains("not written yet") => break status,
            other => assert!(
                started.elapsed() < Duration::from_secs(30),
                "never served by the plugin: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    drop(host);

    let test = cargo(&crate_dir, &["test"]);
    assert!(test.status.success(), "{test:?}");
    assert!(
        stdout(&test).contains("the_descriptor_declares_every_method ... ok"),
        "{test:?}"
    );
}

#[test]
fn new_refuses_bad_names_protos_and_folders_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let occupied = dir.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("keep.txt"), "mine").unwrap();
    let invalid = dir.path().join("invalid.proto");
    std::fs::write(&invalid, "syntax = \"proto3\";\nservice {").unwrap();
    let fresh = dir.path().join("fresh");
    let proto = proto();
    for (args, says) in [
        (
            vec![
                "new",
                "Bad Name",
                "--proto",
                path(&proto),
                "--dir",
                path(&fresh),
            ],
            "is not a plugin name",
        ),
        (
            vec![
                "new",
                "ok",
                "--proto",
                "/nonexistent/x.proto",
                "--dir",
                path(&fresh),
            ],
            "/nonexistent/x.proto",
        ),
        (
            vec![
                "new",
                "ok",
                "--proto",
                path(&invalid),
                "--dir",
                path(&fresh),
            ],
            "invalid.proto",
        ),
        (
            vec![
                "new",
                "ok",
                "--proto",
                path(&proto),
                "--dir",
                path(&occupied),
            ],
            "exists and is not empty",
        ),
    ] {
        let out = plugrpc(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
    assert!(!fresh.exists(), "a refused crate was written");
    assert_eq!(std::fs::read_dir(&occupied).unwrap().count(), 1);
}

#[test]
fn dev_rebuilds_on_save_and_keeps_the_last_good_build_through_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("live");
    let plugins = dir.path().join("plugins");
    let out = plugrpc(&[
        "new",
        "live-plugin",
        "--proto",
        path(&proto()),
        "--dir",
        path(&crate_dir),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    #[allow(clippy::zombie_processes)] // killed and waited for below
    let mut dev = Command::new(env!("CARGO_BIN_EXE_plugrpc"))
        .args(["dev", path(&crate_dir), "--plugins", path(&plugins)])
        .env("CARGO_TARGET_DIR", root().join("target/scaffolded"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::of(dev.stderr.take().unwrap());
    let wasm = plugins.join("live-plugin.wasm");
    lines.until("copied to", FIRST_BUILD);
    let first = std::fs::read(&wasm).unwrap();
    lines.until("watching", Duration::from_secs(10));

    let lib = crate_dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("{source}\nfn broken( {{\n")).unwrap();
    let failed = lines.until("build failed", Duration::from_secs(300));
    assert!(
        failed.iter().any(|line| line.contains("error")),
        "cargo's error was not shown: {failed:#?}"
    );
    assert_eq!(
        std::fs::read(&wasm).unwrap(),
        first,
        "a failed build changed the file"
    );
    lines.until("watching", Duration::from_secs(10));

    let changed = "Spin changed its answer";
    std::fs::write(
        &lib,
        source.replace("misbehave.v1.Misbehave/Spin is not written yet", changed),
    )
    .unwrap();
    lines.until("copied to", Duration::from_secs(300));
    let second = std::fs::read(&wasm).unwrap();
    assert!(
        second
            .windows(changed.len())
            .any(|w| w == changed.as_bytes()),
        "the new build is not the one copied"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&plugins)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        ["live-plugin.wasm"],
        "only the plugin is left there"
    );

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&dev),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let asked = Instant::now();
    while dev.try_wait().unwrap().is_none() {
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "dev did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn push_publishes_a_checked_plugin_and_refuses_one_the_host_would_refuse() {
    let registry = common::oci_registry::OciRegistry::start();
    let [v1] = <[PathBuf; 1]>::try_from(test_plugins(&["versioned-v1"])).unwrap();
    let reference = format!("{}/acme/versioned:1", registry.host());
    let out = plugrpc(&["push", path(&v1), &reference, "--insecure"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with("pushed versioned-v1 0.1.0 as "), "{text}");
    assert!(text.contains(&format!("{reference}@sha256:")), "{text}");
    let pushed = text.trim().rsplit('@').next().unwrap().to_owned();

    // Not a plugin: checked first, refused, nothing pushed.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not a component").unwrap();
    let out = plugrpc(&["push", path(&junk), &reference, "--insecure"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("not pushed"), "{out:?}");
    let plain = plugrpc::oci::Transport::new(true, None).unwrap();
    let tagged = plugrpc::oci::Artifact::new(&reference, &plain)
        .await
        .unwrap();
    assert_eq!(tagged.digest().await.unwrap(), pushed, "the tag moved");

    // A registry that is not there: one line, status 2.
    let out = plugrpc(&[
        "push",
        path(&v1),
        "127.0.0.1:9/acme/versioned:1",
        "--insecure",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let error = String::from_utf8_lossy(&out.stderr);
    assert_eq!(error.trim().lines().count(), 1, "{error}");
    assert!(
        error.starts_with("plugrpc: 127.0.0.1:9/acme/versioned:1"),
        "{error}"
    );
}

#[test]
fn push_takes_registry_credentials_from_the_environment() {
    let (registry, user, password) = common::oci_registry::OciRegistry::start_with_password();
    let [v1] = <[PathBuf; 1]>::try_from(test_plugins(&["versioned-v1"])).unwrap();
    let reference = format!("{}/acme/versioned:1", registry.host());
    let push = |credentials: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_plugrpc"))
            .args(["push", path(&v1), &reference, "--insecure"])
            // No Docker config of the machine's: only what the test gives.
            .env("DOCKER_CONFIG", root().join("target/no-docker-config"))
            .envs(credentials.iter().copied())
            .output()
            .unwrap()
    };
    let refused = push(&[]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let error = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(error.trim().lines().count(), 1, "{error}");
    let pushed = push(&[
        ("PLUGRPC_REGISTRY_USERNAME", user.as_str()),
        ("PLUGRPC_REGISTRY_PASSWORD", password.as_str()),
    ]);
    assert_eq!(pushed.status.code(), Some(0), "{pushed:?}");
    assert!(stdout(&pushed).contains("@sha256:"), "{pushed:?}");
}

#[test]
fn push_over_tls_trusts_the_ca_it_is_given() {
    let certs = common::certs::make_certs();
    let registry = common::oci_registry::OciRegistry::start_tls(certs.path());
    let [v1] = <[PathBuf; 1]>::try_from(test_plugins(&["versioned-v1"])).unwrap();
    let reference = format!("{}/acme/versioned:1", registry.host());
    // The registry's CA is no system's: refused, saying why, in one line.
    let out = plugrpc(&["push", path(&v1), &reference]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let error = String::from_utf8_lossy(&out.stderr);
    assert_eq!(error.trim().lines().count(), 1, "{error}");
    assert!(error.contains("certificate"), "{error}");
    // Given it: pushed over TLS.
    let ca = certs.path().join("ca.crt");
    let out = plugrpc(&["push", path(&v1), &reference, "--ca", path(&ca)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).contains(&format!("{reference}@sha256:")),
        "{out:?}"
    );
    // A CA file that is not one: one line naming it.
    let out = plugrpc(&["push", path(&v1), &reference, "--ca", path(&v1)]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("--ca") && error.contains("CERTIFICATE"),
        "{error}"
    );
}
