//! Plugins from an OCI registry (`[sources.<tenant>]`), against a real registry on
//! loopback (Debian's docker-registry): a pushed artifact serves; a new digest under the
//! tag swaps in under load with no call failed; a breaking one is refused with the old
//! version serving; the registry gone, serving goes on and `/readyz` and the metrics say
//! so; back, the next push lands.

use std::time::{Duration, Instant};

use plugrpc_tests::oci_registry::{self, OciRegistry};
use plugrpc_tests::pb::helloworld::HelloRequest;
use plugrpc_tests::pb::helloworld::greeter_client::GreeterClient;
use plugrpc_tests::{Plugin, TestHost};

use crate::admin::get;
use crate::plugins::{GREETER, VERSIONED_BROKEN, VERSIONED_V1, VERSIONED_V2};

async fn push(reference: &str, plugin: Plugin) -> String {
    oci_registry::push(reference, plugin.wasm()).await
}

/// Calls until `done` holds of the version served (every call must succeed), for 60 s
/// at most; the calls made.
async fn until_version(host: &TestHost, wanted: &str) -> usize {
    let started = Instant::now();
    let mut calls = 0;
    loop {
        let served = host
            .version()
            .await
            .expect("no call fails while a version swaps in");
        calls += 1;
        if served == wanted {
            return calls;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{wanted} never served (still {served})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_come_from_a_registry_and_follow_their_tag() {
    let mut registry = OciRegistry::start();
    let repository = format!("{}/acme", registry.host());
    let digest = push(&format!("{repository}/versioned:live"), VERSIONED_V1).await;
    assert!(digest.starts_with("sha256:"), "{digest}");

    let host = TestHost::with_config(
        &[],
        &format!(
            "[sources.default]\noci = {repository:?}\nplugins = [\"versioned:live\", \"greeter:live\"]\n\
             poll_interval = \"1s\"\ninsecure = true\n"
        ),
    )
    .await;
    // Pulled before the first load: serving from the start.
    assert_eq!(host.version().await.unwrap(), "v1");
    assert!(host.plugins_dir().join("versioned.wasm").exists());

    // A new digest under the tag, pushed while calls go on: every host swaps, no call fails.
    push(&format!("{repository}/versioned:live"), VERSIONED_V2).await;
    let calls = until_version(&host, "v2").await;
    assert!(calls > 1, "the swap was not under load");

    // A breaking version: refused, v2 keeps serving.
    push(&format!("{repository}/versioned:live"), VERSIONED_BROKEN).await;
    let admin = host.admin_addr().unwrap();
    let started = Instant::now();
    loop {
        let (_, metrics) = get(admin, "/metrics").await;
        if metrics.contains("plugrpc_plugin_refusals_total{tenant=\"default\",reason=\"breaking\"}")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the breaking version was not refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(host.version().await.unwrap(), "v2");

    // The registry gone: serving goes on, /readyz says what is failing.
    registry.stop();
    let started = Instant::now();
    let readyz = loop {
        let (status, body) = get(admin, "/readyz").await;
        assert_eq!(status, 200, "{body}");
        if body.contains("source default: failing since") {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the outage is not reported: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(readyz.starts_with("ready\n"), "{readyz}");
    assert_eq!(host.version().await.unwrap(), "v2");
    let (_, metrics) = get(admin, "/metrics").await;
    assert!(
        metrics.contains("plugrpc_source_up{tenant=\"default\"} 0"),
        "{metrics}"
    );

    // Back: the next push lands (a plugin the host has not served yet).
    registry.restart();
    push(&format!("{repository}/greeter:live"), GREETER).await;
    let started = Instant::now();
    loop {
        let mut greeter = GreeterClient::new(host.channel().await);
        if greeter
            .say_hello(HelloRequest { name: "ada".into() })
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the push after the outage never landed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, readyz) = get(admin, "/readyz").await;
    assert_eq!((status, readyz.as_str()), (200, "ready\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_that_is_not_a_wasm_artifact_is_refused_with_its_reason() {
    let registry = OciRegistry::start();
    let host = TestHost::with_config(
        &[GREETER],
        &format!(
            "[sources.default]\noci = \"{}/acme\"\nplugins = [\"missing:1\"]\npoll_interval = \"1s\"\ninsecure = true\n",
            registry.host()
        ),
    )
    .await;
    // What serves from the folder serves; the source's failure is named.
    let (status, readyz) = get(host.admin_addr().unwrap(), "/readyz").await;
    assert_eq!(status, 200);
    assert!(readyz.contains("source default: failing since"), "{readyz}");
    assert!(readyz.contains("acme/missing:1"), "{readyz}");
    let mut greeter = GreeterClient::new(host.channel().await);
    greeter
        .say_hello(HelloRequest { name: "ada".into() })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_over_tls_is_trusted_through_the_sources_ca() {
    let certs = plugrpc_tests::make_certs();
    let registry = OciRegistry::start_tls(certs.path());
    let ca = certs.path().join("ca.crt");
    let transport = plugrpc::oci::Transport::new(false, Some(&ca)).unwrap();
    let repository = format!(
        "localhost:{}/acme",
        registry.host().rsplit(':').next().unwrap()
    );
    oci_registry::push_by(
        &format!("{repository}/versioned:live"),
        VERSIONED_V1.wasm(),
        &transport,
    )
    .await;

    // Its CA named: pulled over TLS and served.
    let source = |tenant: &str, ca: &str| {
        format!(
            "[sources.{tenant}]\noci = {repository:?}\nplugins = [\"versioned:live\"]\n\
             poll_interval = \"1s\"\n{ca}"
        )
    };
    let trusted = TestHost::with_config(
        &[],
        &source("default", &format!("ca = {:?}\n", ca.display().to_string())),
    )
    .await;
    assert_eq!(trusted.version().await.unwrap(), "v1");

    // Not named: the system's roots do not know it, and /readyz says why.
    let stranger = TestHost::with_config(&[], &source("default", "")).await;
    let (status, readyz) = get(stranger.admin_addr().unwrap(), "/readyz").await;
    assert_eq!(status, 503, "{readyz}");
    assert!(
        readyz.starts_with("no plugins serving\n")
            && readyz.contains("source default: failing since")
            && readyz.contains("certificate"),
        "{readyz}"
    );
    assert!(!stranger.plugins_dir().join("versioned.wasm").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_ca_file_that_does_not_load_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("registry-ca.crt");
    std::fs::write(&ca, "not a certificate").unwrap();
    let mut config = plugrpc::HostConfig::from_toml(
        "test config",
        &format!(
            "[sources.default]\noci = \"registry.example/acme\"\nplugins = [\"users:1\"]\n\
             ca = {:?}\n",
            ca.display().to_string()
        ),
    )
    .unwrap();
    config.plugins_dir = dir.path().join("plugins");
    std::fs::create_dir(&config.plugins_dir).unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_listen = None;
    let error = plugrpc::Host::bind(&config)
        .await
        .err()
        .expect("the host refuses to start")
        .to_string();
    assert!(
        error.starts_with("sources.default.ca: ") && error.contains("registry-ca.crt"),
        "{error}"
    );
}
