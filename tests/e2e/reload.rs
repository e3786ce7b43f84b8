//! Hot reload: plugins added, replaced, broken and removed while the host serves, with
//! calls in flight finishing on the version they started on.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::plugins::{USERS_FIXTURE, VERSIONED_BROKEN, VERSIONED_V1, VERSIONED_V2};
use plugrpc_tests::pb::versioned::versioned_client::VersionedClient;
use plugrpc_tests::pb::versioned::{CountRequest, VersionRequest};
use plugrpc_tests::{LogCapture, Plugin, TestHost};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

/// Longest a swap may take to show, before the test calls it lost.
const SWAP_PATIENCE: Duration = Duration::from_secs(15);

/// Puts a built plugin at `name` in the host's folder the way deploy tools do: written
/// beside, then renamed into place in one step.
fn deploy(host: &TestHost, plugin: Plugin, name: &str) {
    let staging = host.plugins_dir().join(format!(".{name}.partial"));
    std::fs::copy(plugin.wasm(), &staging).unwrap();
    std::fs::rename(&staging, host.plugins_dir().join(name)).unwrap();
}

async fn version(client: &mut VersionedClient<Channel>) -> Result<String, tonic::Status> {
    client
        .version(VersionRequest {})
        .await
        .map(|r| r.into_inner().version)
}

/// Waits until the plugin answers `expected`; how long that took.
async fn until_version(client: &mut VersionedClient<Channel>, expected: &str) -> Duration {
    let started = Instant::now();
    loop {
        if version(client).await.ok().as_deref() == Some(expected) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < SWAP_PATIENCE,
            "{expected} never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A host serving `versioned-v1` as `versioned.wasm`, and a client of it.
async fn serving_v1(config: &str) -> (TestHost, VersionedClient<Channel>) {
    let host = TestHost::with_config(&[], config).await;
    deploy(&host, VERSIONED_V1, "versioned.wasm");
    let mut client = VersionedClient::new(host.channel().await);
    until_version(&mut client, "v1").await;
    (host, client)
}

fn read_log_until(log: &LogCapture, needles: &[&str]) -> Vec<String> {
    let started = Instant::now();
    loop {
        let lines = log.lines_with(needles);
        if !lines.is_empty() {
            return lines;
        }
        assert!(
            started.elapsed() < SWAP_PATIENCE,
            "no log line with {needles:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replacing_a_plugin_under_load_fails_no_call() {
    let (host, client) = serving_v1("").await;
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (mut client, stop, calls, failures) = (
                client.clone(),
                stop.clone(),
                calls.clone(),
                failures.clone(),
            );
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(90);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if let Err(status) = version(&mut client).await {
                        eprintln!("failed call: {status:?}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let mut probe = client.clone();
    for _ in 0..3 {
        deploy(&host, VERSIONED_V2, "versioned.wasm");
        until_version(&mut probe, "v2").await;
        deploy(&host, VERSIONED_V1, "versioned.wasm");
        until_version(&mut probe, "v1").await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert!(calls.load(Ordering::Relaxed) > 100, "the load kept calling");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "failed calls during swaps"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_started_on_v1_completes_on_v1_after_a_swap() {
    let (host, mut client) = serving_v1("").await;
    // Long enough (5 s) to outlast a swap even with a cold compile cache.
    let request = CountRequest {
        n: 50,
        pause_ms: 100,
    };
    let mut stream = client.count(request).await.unwrap().into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.version, "v1");

    deploy(&host, VERSIONED_V2, "versioned.wasm");
    until_version(&mut client, "v2").await;
    let swapped = Instant::now();

    let mut seqs = vec![first.seq];
    let mut last_reply = Instant::now();
    while let Some(reply) = stream.next().await {
        last_reply = Instant::now();
        let reply = reply.expect("the stream ends cleanly");
        assert_eq!(
            reply.version, "v1",
            "a call stays on the version it started on"
        );
        seqs.push(reply.seq);
    }
    assert_eq!(seqs, (0..50).collect::<Vec<_>>());
    assert!(
        last_reply > swapped + Duration::from_millis(50),
        "the stream ended before v2 took over: nothing was shown to stay on v1 across the swap"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_written_or_corrupt_file_never_serves_and_v1_keeps_answering() {
    let log = LogCapture::install();
    let (host, mut client) = serving_v1("").await;
    let target = host.plugins_dir().join("versioned.wasm");
    let v2 = std::fs::read(VERSIONED_V2.wasm()).unwrap();

    // A copy caught halfway: truncated in place.
    std::fs::write(&target, &v2[..v2.len() / 2]).unwrap();
    read_log_until(&log, &["plugin refused", &target.display().to_string()]);
    assert_eq!(version(&mut client).await.unwrap(), "v1");

    // Garbage.
    let refusals = log
        .lines_with(&["plugin refused", &target.display().to_string()])
        .len();
    std::fs::write(&target, b"\0asm definitely not a component").unwrap();
    let started = Instant::now();
    while log
        .lines_with(&["plugin refused", &target.display().to_string()])
        .len()
        == refusals
    {
        assert!(
            started.elapsed() < SWAP_PATIENCE,
            "the garbage was never looked at"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(version(&mut client).await.unwrap(), "v1");

    // The copy completes: now v2 serves.
    std::fs::write(&target, &v2).unwrap();
    until_version(&mut client, "v2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_breaking_change_is_refused_naming_each_change() {
    let log = LogCapture::install();
    let (host, mut client) = serving_v1("").await;
    deploy(&host, VERSIONED_BROKEN, "versioned.wasm");
    let file = host
        .plugins_dir()
        .join("versioned.wasm")
        .display()
        .to_string();
    let refusal = read_log_until(&log, &["plugin refused", &file, "would break callers"]).remove(0);
    assert!(
        refusal
            .contains("method versioned.v1.Versioned/Count changed from server-streaming to unary"),
        "{refusal}"
    );
    assert!(
        refusal
            .contains("field versioned.v1.VersionReply.seq (#2) changed type from int32 to string"),
        "{refusal}"
    );
    assert!(refusal.contains("allow_breaking_changes"), "{refusal}");
    assert_eq!(version(&mut client).await.unwrap(), "v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_breaking_changes_lets_the_breaking_version_in() {
    let (host, mut client) =
        serving_v1("[plugins.versioned-broken]\nallow_breaking_changes = true\n").await;
    deploy(&host, VERSIONED_BROKEN, "versioned.wasm");
    until_version(&mut client, "broken").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn renaming_the_file_keeps_the_plugin_serving() {
    let log = LogCapture::install();
    let (host, mut client) = serving_v1("").await;
    let renamed = host.plugins_dir().join("renamed.wasm");
    std::fs::rename(host.plugins_dir().join("versioned.wasm"), &renamed).unwrap();
    read_log_until(&log, &["plugin loaded", &renamed.display().to_string()]);
    assert_eq!(version(&mut client).await.unwrap(), "v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_the_file_unloads_the_plugin() {
    let log = LogCapture::install();
    let (host, mut client) = serving_v1("").await;
    std::fs::remove_file(host.plugins_dir().join("versioned.wasm")).unwrap();
    let started = Instant::now();
    loop {
        match version(&mut client).await {
            Err(status) if status.code() == Code::Unimplemented => break,
            _ => assert!(
                started.elapsed() < SWAP_PATIENCE,
                "still served after removal"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let file = host
        .plugins_dir()
        .join("versioned.wasm")
        .display()
        .to_string();
    assert_eq!(log.lines_with(&["plugin unloaded", &file]).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_load_and_reload_is_one_structured_log_event() {
    let log = LogCapture::install();
    let (host, mut client) = serving_v1("").await;
    deploy(&host, VERSIONED_V2, "versioned.wasm");
    until_version(&mut client, "v2").await;
    let file = host
        .plugins_dir()
        .join("versioned.wasm")
        .display()
        .to_string();
    let loaded = log.lines_with(&["plugin loaded", "event=\"loaded\"", &file]);
    let reloaded = log.lines_with(&["plugin reloaded", "event=\"reloaded\"", &file]);
    assert_eq!(
        (loaded.len(), reloaded.len()),
        (1, 1),
        "{loaded:?} {reloaded:?}"
    );
    for field in [
        "plugin=\"versioned-v2\"",
        "version=\"0.1.0\"",
        "hash=\"",
        "services=",
        "compile_ms=",
    ] {
        assert!(
            reloaded[0].contains(field),
            "{field} missing: {}",
            reloaded[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_compile_cache_is_rebuilt_not_trusted() {
    let cache = tempfile::tempdir().unwrap();
    let config = format!(
        "[host]\ncache_dir = {:?}\n",
        cache.path().display().to_string()
    );
    let first = TestHost::with_config(&[USERS_FIXTURE], &config).await;
    assert_eq!(first.report().loaded.len(), 1);
    first.stop().await;
    let entries = cache_files(cache.path());
    assert!(!entries.is_empty(), "compiled code was cached");
    for entry in &entries {
        std::fs::write(entry, b"corrupt").unwrap();
    }

    let second = TestHost::with_config(&[USERS_FIXTURE], &config).await;
    assert_eq!(
        second.report().loaded.len(),
        1,
        "{:?}",
        second.report().refused
    );
    let mut users = plugrpc_tests::pb::user::user_service_client::UserServiceClient::new(
        second.channel().await,
    );
    let user = users
        .get_user(plugrpc_tests::pb::user::GetUserRequest { id: 5 })
        .await
        .unwrap();
    assert_eq!(user.into_inner().name, "user-5");
}

fn cache_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in walk(dir) {
        if entry.is_file() && !entry.to_string_lossy().contains(".stats") {
            files.push(entry);
        }
    }
    files
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watched_config_file_applies_its_new_limits_and_refuses_a_broken_one() {
    use plugrpc_tests::pb::helloworld::HelloRequest;
    use plugrpc_tests::pb::helloworld::greeter_client::GreeterClient;

    let log = LogCapture::install();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plugrpc.toml");
    // Written whole, then renamed, as an editor or a config manager saves it.
    let write = |text: &str| {
        let part = dir.path().join("plugrpc.toml.part");
        std::fs::write(&part, text).unwrap();
        std::fs::rename(&part, &file).unwrap();
    };
    write("[plugins.greeter]\nmax_request_size = \"1MiB\"\n");
    let host = TestHost::from_file(&[crate::plugins::GREETER], &file).await;
    let mut greeter = GreeterClient::new(host.channel().await);
    let big = || HelloRequest {
        name: "x".repeat(4000),
    };
    greeter.say_hello(big()).await.unwrap();

    // A limit, not only a config value: no signal needed with the file watched.
    write("[plugins.greeter]\nmax_request_size = \"1KiB\"\n");
    until_over_max_request_size(&mut greeter, big).await;

    // One that does not validate: refused with one line naming the key; the 1 KiB stays.
    write("[plugins.greeter]\nmemory = \"1B\"\n");
    read_log_until(&log, &["config not reloaded", "plugins.greeter.memory"]);
    let still = greeter.say_hello(big()).await.unwrap_err();
    assert_eq!(still.code(), Code::ResourceExhausted);
    greeter
        .say_hello(HelloRequest { name: "ada".into() })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_map_update_is_seen_through_its_symlinks() {
    use plugrpc_tests::pb::helloworld::HelloRequest;
    use plugrpc_tests::pb::helloworld::greeter_client::GreeterClient;
    use std::os::unix::fs::symlink;

    // A mounted ConfigMap as the kubelet lays it out: the file a symlink into `..data`,
    // itself a symlink to the current version's folder, swapped by a rename.
    let dir = tempfile::tempdir().unwrap();
    let version = |name: &str, text: &str| {
        std::fs::create_dir(dir.path().join(name)).unwrap();
        std::fs::write(dir.path().join(name).join("plugrpc.toml"), text).unwrap();
        symlink(name, dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    };
    version(
        "..2026_11_26_1",
        "[plugins.greeter]\nmax_request_size = \"1MiB\"\n",
    );
    let file = dir.path().join("plugrpc.toml");
    symlink("..data/plugrpc.toml", &file).unwrap();
    let host = TestHost::from_file(&[crate::plugins::GREETER], &file).await;
    let mut greeter = GreeterClient::new(host.channel().await);
    let big = || HelloRequest {
        name: "x".repeat(4000),
    };
    greeter.say_hello(big()).await.unwrap();

    version(
        "..2026_11_26_2",
        "[plugins.greeter]\nmax_request_size = \"1KiB\"\n",
    );
    until_over_max_request_size(&mut greeter, big).await;
}

/// Calls `request` until the greeter refuses it over its `max_request_size`, as a new
/// config makes it (failing on any other answer, or after SWAP_PATIENCE).
async fn until_over_max_request_size(
    greeter: &mut plugrpc_tests::pb::helloworld::greeter_client::GreeterClient<Channel>,
    request: impl Fn() -> plugrpc_tests::pb::helloworld::HelloRequest,
) {
    let started = Instant::now();
    let refused = loop {
        match greeter.say_hello(request()).await {
            Err(status) => break status,
            Ok(_) => assert!(
                started.elapsed() < SWAP_PATIENCE,
                "the new limit never applied"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("max_request_size"),
        "{refused:?}"
    );
}
