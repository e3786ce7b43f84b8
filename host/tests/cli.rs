//! The `plugrpc` command as a user runs it: `config check` on the documented example, and
//! a user's mistakes (a bad config, a file that is not a plugin, an unknown flag) answered
//! with one line and status 2, never a backtrace.

mod common;

use std::path::Path;

use common::{Served, plugrpc};

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn config_check_prints_what_the_example_config_resolves_to() {
    let out = plugrpc(&["config", "check", &example("plugrpc.toml")]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("[plugins.users] deadline 10m (max 1h)"),
        "{text}"
    );
    assert!(text.contains("kv: max_bytes 64.0 MiB"), "{text}");
    assert!(text.contains("config values: desk"), "{text}");
    assert!(
        text.contains(
            "outbound greeter: http://127.0.0.1:50051 (RoundRobin, timeout 5s, 3 attempts at most)"
        ),
        "{text}"
    );
    assert!(text.contains("outbound users: local"), "{text}");
}

#[test]
fn mistakes_are_one_line_and_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad_config = dir.path().join("bad.toml");
    std::fs::write(&bad_config, "[plugins.users.kv]\nmax_ops_per_call = 0\n").unwrap();
    let not_a_plugin = dir.path().join("notes.wasm");
    std::fs::write(&not_a_plugin, "hello").unwrap();
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["config", "check", bad_config.to_str().unwrap()],
            "plugins.users.kv.max_ops_per_call: must be at least 1",
        ),
        (
            vec!["config", "check", "/nonexistent/plugrpc.toml"],
            "cannot read",
        ),
        (
            vec!["inspect", not_a_plugin.to_str().unwrap()],
            "not a valid WebAssembly component",
        ),
        (vec!["serve", "--nonsense"], "unexpected argument"),
    ];
    for (args, says) in cases {
        let out = plugrpc(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("backtrace"), "{args:?}: {stderr}");
        if args[0] != "serve" {
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        }
    }
}

#[test]
fn a_second_signal_while_draining_exits_at_once() {
    use rustix::process::Signal;
    use std::time::Duration;

    let mut served = Served::start(&[], "[shutdown]\ndrain_delay = \"30s\"\n", &[]);
    served.signal(Signal::TERM);
    // Draining for 30 s: still there a moment later.
    std::thread::sleep(Duration::from_millis(500));
    let early = served.child.try_wait().unwrap();
    assert!(early.is_none(), "exited before the drain delay: {early:?}");
    served.signal(Signal::TERM);
    served.exit_within(Duration::from_secs(10));
}

#[test]
fn the_log_can_be_json_one_object_a_line() {
    let served = Served::start(&[], "", &["--log-format", "json"]);
    let messages: Vec<String> = served
        .startup
        .iter()
        .map(|line| {
            let object: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            object["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        messages.last().map(String::as_str),
        Some("serving gRPC"),
        "{messages:?}"
    );
}
