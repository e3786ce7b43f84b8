//! Plugins that keep data and read settings: the `keeper` test plugin's key-value store
//! (`wasi:keyvalue`) on the embedded backend and on a real `redis-server`, with the same
//! scenario on both; its limits, grants and isolation; and its config values
//! (`wasi:config/store`) from the config file, the environment and files, reloaded while
//! the host serves.

use std::time::{Duration, Instant};

use crate::plugins::{GREETER, KEEPER};
use plugrpc_tests::TestHost;
use plugrpc_tests::pb::keeper::keeper_client::KeeperClient;
use plugrpc_tests::pb::keeper::{Entries, Entry, Key, Step};
use plugrpc_tests::redis::RedisServer;
use tonic::Code;
use tonic::transport::Channel;

/// A keeper granted a store, with small limits the tests can reach.
fn granted(backend: &str, data: &std::path::Path) -> String {
    format!(
        "[host]\ndata_dir = {data:?}\n{backend}\n\
         [plugins.keeper.kv]\nmax_bytes = \"4KiB\"\nmax_value_size = \"1KiB\"\nmax_key_size = \"64B\"\n\
         max_ops_per_call = 50\nshared = [\"team\"]\n"
    )
}

async fn keeper(host: &TestHost) -> KeeperClient<Channel> {
    KeeperClient::new(host.channel().await)
}

fn entry(bucket: &str, key: &str, value: &[u8]) -> Entry {
    Entry {
        bucket: bucket.into(),
        key: key.into(),
        value: value.to_vec(),
    }
}

fn key(bucket: &str, key: &str) -> Key {
    Key {
        bucket: bucket.into(),
        key: key.into(),
    }
}

async fn get(client: &mut KeeperClient<Channel>, bucket: &str, name: &str) -> Option<Vec<u8>> {
    let found = client.get(key(bucket, name)).await.unwrap().into_inner();
    found.found.then_some(found.value)
}

/// What every backend must do, seen through the plugin: reads, writes, atomics, batches,
/// paging, limits.
async fn the_store_behaves(client: &mut KeeperClient<Channel>) {
    assert_eq!(get(client, "", "absent").await, None);
    client.put(entry("", "a", b"one")).await.unwrap();
    assert_eq!(get(client, "", "a").await.as_deref(), Some(&b"one"[..]));
    client.put(entry("", "a", b"two")).await.unwrap();
    assert_eq!(get(client, "", "a").await.as_deref(), Some(&b"two"[..]));
    client.delete(key("", "a")).await.unwrap();
    assert_eq!(get(client, "", "a").await, None);

    let step = |delta| Step {
        bucket: String::new(),
        key: "counter".into(),
        delta,
    };
    assert_eq!(
        client.increment(step(1)).await.unwrap().into_inner().value,
        1
    );
    assert_eq!(
        client.increment(step(41)).await.unwrap().into_inner().value,
        42
    );
    assert_eq!(
        client.increment(step(-2)).await.unwrap().into_inner().value,
        40
    );

    let insert = |value: &[u8]| entry("", "once", value);
    assert!(
        client
            .insert(insert(b"first"))
            .await
            .unwrap()
            .into_inner()
            .inserted
    );
    assert!(
        !client
            .insert(insert(b"second"))
            .await
            .unwrap()
            .into_inner()
            .inserted
    );
    assert_eq!(
        get(client, "", "once").await.as_deref(),
        Some(&b"first"[..])
    );

    let many = Entries {
        bucket: String::new(),
        entries: (0..3).map(|i| entry("", &format!("m{i}"), &[i])).collect(),
    };
    let back = client.put_many(many.clone()).await.unwrap().into_inner();
    assert_eq!(back.entries.len(), 3);
    assert_eq!(back.entries[2].value, vec![2]);

    // Over the store's 1000-key page? No: the bucket's 4 KiB allow fewer; 40 keys still
    // page through the cursor the same way, in byte order.
    let listed = client.keys(key("", "")).await.unwrap().into_inner();
    let mut expected = vec!["counter", "m0", "m1", "m2", "once"];
    expected.sort_unstable();
    assert_eq!(listed.keys, expected);

    let too_big = client.put(entry("", "big", &[0; 2048])).await.unwrap_err();
    assert_eq!(too_big.code(), Code::ResourceExhausted);
    assert!(too_big.message().contains("max_value_size"), "{too_big:?}");
    let long_key = client.get(key("", &"k".repeat(65))).await.unwrap_err();
    assert_eq!(long_key.code(), Code::ResourceExhausted);
    assert!(long_key.message().contains("max_key_size"), "{long_key:?}");
    // 4 KiB a bucket: the fifth 1000-byte value does not fit.
    let mut refused = None;
    for i in 0..5 {
        if let Err(status) = client.put(entry("", &format!("fill{i}"), &[7; 1000])).await {
            refused = Some(status);
            break;
        }
    }
    let refused = refused.expect("the bucket's max_bytes refuses a write");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("max_bytes"), "{refused:?}");
    // A refused write changed nothing: freeing room makes it fit again.
    client.delete(key("", "fill0")).await.unwrap();
    client
        .put(entry("", "fill-again", &[7; 900]))
        .await
        .unwrap();

    let denied = client.get(key("elsewhere", "a")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("elsewhere"), "{denied:?}");
    client.put(entry("team", "a", b"shared")).await.unwrap();
    assert_eq!(
        get(client, "team", "a").await.as_deref(),
        Some(&b"shared"[..])
    );
    assert_eq!(
        get(client, "", "a").await,
        None,
        "the shared bucket is not the own one"
    );
}

#[tokio::test]
async fn the_embedded_store_keeps_data_and_enforces_its_limits() {
    let data = tempfile::tempdir().unwrap();
    let config = granted("", data.path());
    let host = TestHost::with_config(&[KEEPER], &config).await;
    the_store_behaves(&mut keeper(&host).await).await;
    host.stop().await;

    // A new host on the same data folder reads what the first one wrote.
    let host = TestHost::with_config(&[KEEPER], &config).await;
    let mut client = keeper(&host).await;
    assert_eq!(
        get(&mut client, "", "once").await.as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(
        get(&mut client, "team", "a").await.as_deref(),
        Some(&b"shared"[..])
    );
}

#[tokio::test]
async fn the_redis_store_behaves_the_same_and_rides_out_an_outage() {
    let mut redis = RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    let config = granted(
        &format!("[kv]\nbackend = \"redis\"\nurl = {:?}\n", redis.url()),
        data.path(),
    );
    let host = TestHost::with_config(&[KEEPER], &config).await;
    let mut client = keeper(&host).await;
    the_store_behaves(&mut client).await;

    redis.stop();
    let started = Instant::now();
    let down = client.get(key("", "once")).await.unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the call waited on a dead store"
    );

    // Back (empty: persistence is off); the host reconnects by itself.
    redis.restart();
    let mut recovered = false;
    for _ in 0..100 {
        if client.put(entry("", "after", b"back")).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the host did not reconnect to redis");
    assert_eq!(
        get(&mut client, "", "after").await.as_deref(),
        Some(&b"back"[..])
    );
}

#[tokio::test]
async fn tenants_and_plugins_never_see_each_others_buckets() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for tenant in ["acme", "globex"] {
        std::fs::create_dir(dir.path().join(tenant)).unwrap();
        plugrpc_tests::copy_plugin(KEEPER, &dir.path().join(tenant).join(KEEPER.file_name()));
    }
    let grant = "[tenants.{t}]\nhosts = [\"{t}.test\"]\n[tenants.{t}.plugins.keeper.kv]\nshared = [\"team\"]\n";
    let config = format!(
        "[host]\ndata_dir = {:?}\n{}{}",
        data.path(),
        grant.replace("{t}", "acme"),
        grant.replace("{t}", "globex")
    );
    let host = TestHost::serving_with_config(dir, &config).await;
    let mut acme = keeper_for(&host, "acme.test").await;
    let mut globex = keeper_for(&host, "globex.test").await;
    acme.put(entry("", "k", b"acme")).await.unwrap();
    acme.put(entry("team", "k", b"acme-team")).await.unwrap();
    assert_eq!(get(&mut globex, "", "k").await, None);
    assert_eq!(get(&mut globex, "team", "k").await, None);
    globex.put(entry("", "k", b"globex")).await.unwrap();
    assert_eq!(get(&mut acme, "", "k").await.as_deref(), Some(&b"acme"[..]));
}

/// A keeper client whose requests carry `:authority` `authority`.
async fn keeper_for(host: &TestHost, authority: &str) -> KeeperClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", host.addr()))
        .unwrap()
        .origin(format!("http://{authority}").parse().unwrap())
        .connect()
        .await
        .unwrap();
    KeeperClient::new(channel)
}

#[tokio::test]
async fn a_plugin_importing_a_store_it_is_not_granted_is_refused_at_load() {
    let host = TestHost::with_plugins(&[KEEPER, GREETER]).await;
    let refusal = &host.report().refused;
    assert_eq!(refusal.len(), 1, "{refusal:?}");
    let line = refusal[0].reason.to_string();
    assert!(
        line.contains("wasi:keyvalue") && line.contains("[plugins.keeper.kv]"),
        "{line}"
    );
}

#[tokio::test]
async fn config_values_come_from_the_file_the_environment_and_files() {
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, "from-a-file\n").unwrap();
    let config = format!(
        "[plugins.keeper.kv]\n[host]\ndata_dir = {:?}\n[plugins.keeper.config]\ngreeting = \"bonjour\"\n\
         home = {{ env = \"HOME\" }}\ntoken = {{ file = {:?} }}\n",
        secrets.path(),
        token
    );
    let host = TestHost::with_config(&[KEEPER], &config).await;
    let mut client = keeper(&host).await;
    let setting = |name: &str| key("", name);
    let greeting = client
        .setting(setting("greeting"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (greeting.built_with.as_str(), greeting.now.as_str()),
        ("bonjour", "bonjour")
    );
    let home = client.setting(setting("home")).await.unwrap().into_inner();
    assert_eq!(Some(home.now), std::env::var("HOME").ok());
    let from_file = client.setting(setting("token")).await.unwrap().into_inner();
    assert_eq!(from_file.now, "from-a-file");
    assert!(
        !client
            .setting(setting("unset"))
            .await
            .unwrap()
            .into_inner()
            .set
    );
}

#[tokio::test]
async fn a_changed_config_file_reaches_the_next_calls_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plugrpc.toml");
    let write = |greeting: &str| {
        let text = format!(
            "[host]\ndata_dir = {:?}\n[plugins.keeper.kv]\n[plugins.keeper.config]\ngreeting = {greeting:?}\n",
            dir.path()
        );
        std::fs::write(&file, text).unwrap();
    };
    write("before");
    let host = TestHost::from_file(&[KEEPER], &file).await;
    let mut client = keeper(&host).await;
    let now = |client: &mut KeeperClient<Channel>| {
        let mut client = client.clone();
        async move {
            let value = client
                .setting(key("", "greeting"))
                .await
                .unwrap()
                .into_inner();
            (value.built_with, value.now)
        }
    };
    assert_eq!(now(&mut client).await, ("before".into(), "before".into()));
    write("after");
    let mut seen = None;
    for _ in 0..100 {
        let value = now(&mut client).await;
        if value.1 == "after" {
            seen = Some(value);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The handler of a warm instance is rebuilt too: no instance keeps the old value.
    assert_eq!(seen, Some(("after".into(), "after".into())));

    // A file that no longer parses changes nothing.
    std::fs::write(&file, "[plugins.keeper.config\n").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(now(&mut client).await, ("after".into(), "after".into()));
}

#[tokio::test]
async fn a_plugin_loaded_after_a_config_change_gets_the_new_values() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = tempfile::tempdir().unwrap();
    std::fs::create_dir(plugins.path().join("acme")).unwrap();
    plugrpc_tests::copy_plugin(GREETER, &plugins.path().join(GREETER.file_name()));
    let file = dir.path().join("plugrpc.toml");
    let write = |greeting: &str| {
        let text = format!(
            "[host]\ndata_dir = {:?}\n[tenants.acme.plugins.keeper.kv]\n\
             [tenants.acme.plugins.keeper.config]\ngreeting = {greeting:?}\n",
            dir.path()
        );
        std::fs::write(&file, text).unwrap();
    };
    write("one");
    let host = TestHost::serving_from_file(plugins, &file).await;
    write("two");
    // The reload settles 250 ms after the change; then the plugin arrives.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let acme = host.plugins_dir().join("acme");
    plugrpc_tests::copy_plugin(KEEPER, &acme.join(KEEPER.file_name()));
    let mut client = keeper(&host).await;
    let mut seen = None;
    for _ in 0..100 {
        if let Ok(value) = client.setting(key("", "greeting")).await {
            seen = Some(value.into_inner().built_with);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.as_deref(), Some("two"));
}

#[tokio::test]
async fn a_handler_that_cannot_be_built_from_its_config_answers_its_status() {
    let data = tempfile::tempdir().unwrap();
    let config = format!(
        "[host]\ndata_dir = {:?}\n[plugins.keeper.kv]\n[plugins.keeper.config]\nrefuse_to_start = \"yes\"\n",
        data.path()
    );
    let host = TestHost::with_config(&[KEEPER], &config).await;
    let status = keeper(&host).await.get(key("", "a")).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "refuse_to_start is set");
}
