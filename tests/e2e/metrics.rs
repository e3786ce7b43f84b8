//! `/metrics` on the admin port: after known calls, the exact counts under
//! go-grpc-prometheus's names with the tenant, plugin and door; the sandboxes' faults by
//! kind; key-value and outbound use; and a real Prometheus scraping the host and
//! answering PromQL over what it scraped.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use plugrpc_tests::TestHost;
use plugrpc_tests::pb::caller::Relay;
use plugrpc_tests::pb::caller::caller_client::CallerClient;
use plugrpc_tests::pb::helloworld::HelloRequest;
use plugrpc_tests::pb::helloworld::greeter_client::GreeterClient;
use plugrpc_tests::pb::keeper::keeper_client::KeeperClient;
use plugrpc_tests::pb::keeper::{Entry, Key};
use plugrpc_tests::pb::misbehave::Empty;
use plugrpc_tests::pb::misbehave::misbehave_client::MisbehaveClient;
use plugrpc_tests::pb::user::user_service_client::UserServiceClient;
use plugrpc_tests::pb::user::{GetUserRequest, ListUsersRequest};
use plugrpc_tests::prometheus::PrometheusServer;
use plugrpc_tests::raw;
use tokio_stream::StreamExt as _;
use tonic::Code;

use crate::admin::get;
use crate::plugins::{CALLER, GREETER, KEEPER, MISBEHAVE, USERS_FIXTURE};

/// The host's metrics, as a scraper reads them.
async fn scrape(host: &TestHost) -> String {
    let (status, body) = get(admin(host), "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

fn admin(host: &TestHost) -> SocketAddr {
    host.admin_addr().expect("the admin endpoints are on")
}

/// The value of the sample `name` whose labels include every one of `labels`; `None`
/// when no sample has them.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, rest) = series.split_once('{').unwrap_or((series, "}"));
            let wanted = labels
                .iter()
                .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")));
            (series_name == name && wanted).then(|| value.parse().unwrap())
        })
}

/// Like [`sample`], for a sample that must be there.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels)
        .unwrap_or_else(|| panic!("no sample {name} with {labels:?} in:\n{text}"))
}

/// The labels of `plugin`'s `service/method` on `door`.
fn method<'a>(
    plugin: &'a str,
    service: &'a str,
    method: &'a str,
    door: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("tenant", "default"),
        ("plugin", plugin),
        ("grpc_service", service),
        ("grpc_method", method),
        ("door", door),
    ]
}

fn with<'a>(labels: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    labels.iter().chain(more).copied().collect()
}

/// Scrapes until `ready` holds of the text (the end of a call the client left is
/// counted when the host notices), for 5 s at most.
async fn scrape_until(host: &TestHost, ready: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let text = scrape(host).await;
        if ready(&text) || started.elapsed() > Duration::from_secs(5) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_are_counted_by_method_code_and_door() {
    let host = TestHost::with_plugins(&[GREETER, USERS_FIXTURE]).await;
    let mut greeter = GreeterClient::new(host.channel().await);
    for name in ["ada", "grace", "alan"] {
        greeter
            .say_hello(HelloRequest { name: name.into() })
            .await
            .unwrap();
    }
    let mut users = UserServiceClient::new(host.channel().await);
    let listed: Vec<_> = users
        .list_users(ListUsersRequest {
            limit: 4,
            after_id: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(listed.len(), 4);
    let missing = users.get_user(GetUserRequest { id: 0 }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // A malformed grpc-timeout: the method is known, the call fails before it runs.
    let client = host.plain_http2();
    let bad = raw::wire_call(
        &client,
        &host.origin(),
        "/helloworld.Greeter/SayHello",
        &[Vec::new()],
        &[("grpc-timeout", "soon")],
    )
    .await;
    assert_eq!(bad.headers["grpc-status"], "3");
    // A path no plugin serves, twice: one series, whatever the paths.
    for path in ["/nope.Service/Nope", "/other.Thing/Else"] {
        let unknown = raw::unary(
            host.channel().await,
            path,
            tonic::Request::new(Bytes::new()),
        )
        .await
        .unwrap_err();
        assert_eq!(unknown.code(), Code::Unimplemented);
    }
    // The same method by Connect, in JSON.
    let request = http::Request::post(format!("{}helloworld.Greeter/SayHello", host.origin()))
        .header("content-type", "application/json")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from_static(br#"{"name":"web"}"#),
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();

    let text = scrape(&host).await;
    let hello = method("greeter", "helloworld.Greeter", "SayHello", "grpc");
    assert_eq!(
        value(
            &text,
            "grpc_server_started_total",
            &with(&hello, &[("grpc_type", "unary")])
        ),
        4.0
    );
    assert_eq!(
        value(
            &text,
            "grpc_server_handled_total",
            &with(&hello, &[("grpc_code", "OK")])
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            "grpc_server_handled_total",
            &with(&hello, &[("grpc_code", "InvalidArgument")])
        ),
        1.0
    );
    assert_eq!(
        value(&text, "grpc_server_handling_seconds_count", &hello),
        4.0
    );
    assert_eq!(value(&text, "grpc_server_msg_received_total", &hello), 3.0);
    assert_eq!(value(&text, "grpc_server_msg_sent_total", &hello), 3.0);

    let web = method("greeter", "helloworld.Greeter", "SayHello", "connect");
    assert_eq!(
        value(
            &text,
            "grpc_server_handled_total",
            &with(&web, &[("grpc_code", "OK")])
        ),
        1.0
    );
    assert_eq!(value(&text, "grpc_server_msg_sent_total", &web), 1.0);

    let list = method("users", "user.v1.UserService", "ListUsers", "grpc");
    assert_eq!(
        value(
            &text,
            "grpc_server_handled_total",
            &with(
                &list,
                &[("grpc_code", "OK"), ("grpc_type", "server_stream")]
            )
        ),
        1.0
    );
    assert_eq!(value(&text, "grpc_server_msg_sent_total", &list), 4.0);
    assert_eq!(value(&text, "grpc_server_msg_received_total", &list), 1.0);
    let get_user = method("users", "user.v1.UserService", "GetUser", "grpc");
    assert_eq!(
        value(
            &text,
            "grpc_server_handled_total",
            &with(&get_user, &[("grpc_code", "NotFound")])
        ),
        1.0
    );

    let unknown = [("grpc_service", "unknown"), ("grpc_method", "unknown")];
    assert_eq!(
        value(
            &text,
            "grpc_server_handled_total",
            &with(
                &unknown,
                &[("grpc_code", "Unimplemented"), ("door", "grpc")]
            )
        ),
        2.0
    );
    assert!(
        !text.contains("nope.Service"),
        "a caller's path became a label"
    );

    // Every call that ran got a sandbox, fresh or warm, after a queue wait.
    let greeter_plugin = [("tenant", "default"), ("plugin", "greeter")];
    let sandboxes = value(
        &text,
        "plugrpc_sandbox_instances_created_total",
        &greeter_plugin,
    ) + value(&text, "plugrpc_sandbox_warm_hits_total", &greeter_plugin);
    assert_eq!(sandboxes, 4.0, "3 gRPC calls and 1 Connect call ran");
    assert_eq!(
        value(
            &text,
            "plugrpc_sandbox_queue_wait_seconds_count",
            &greeter_plugin
        ),
        4.0
    );
    assert!(value(&text, "plugrpc_sandbox_cpu_seconds_total", &greeter_plugin) > 0.0);
    assert!(value(&text, "plugrpc_sandbox_memory_peak_bytes", &greeter_plugin) >= 65536.0);
    assert_eq!(
        value(&text, "plugrpc_plugin_loads_total", &greeter_plugin),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "plugrpc_plugin_compile_seconds_count",
            &greeter_plugin
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_faults_are_counted_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    plugrpc_tests::copy_plugin(MISBEHAVE, &dir.path().join(MISBEHAVE.file_name()));
    std::fs::write(dir.path().join("broken.wasm"), b"not a component").unwrap();
    let host = TestHost::serving_with_config(
        dir,
        "[plugins.misbehave]\ndeadline = \"300ms\"\nmemory = \"16MiB\"\ncpu_time = \"5s\"\n",
    )
    .await;
    let mut rogue = MisbehaveClient::new(host.channel().await);
    assert_eq!(
        rogue.panic(Empty {}).await.unwrap_err().code(),
        Code::Internal
    );
    assert_eq!(
        rogue.panic(Empty {}).await.unwrap_err().code(),
        Code::Internal
    );
    let spun = rogue.spin(Empty {}).await.unwrap_err();
    assert_eq!(spun.code(), Code::DeadlineExceeded, "{spun:?}");
    let hoarded = rogue.allocate(Empty {}).await.unwrap_err();
    assert_eq!(hoarded.code(), Code::ResourceExhausted, "{hoarded:?}");

    // A stream the client leaves: counted as cancelled once the host sees it go.
    let mut endless = rogue.endless(Empty {}).await.unwrap().into_inner();
    endless.message().await.unwrap().expect("a first message");
    drop(endless);
    let endless_call = method("misbehave", "misbehave.v1.Misbehave", "Endless", "grpc");
    let cancelled = with(&endless_call, &[("grpc_code", "Canceled")]);
    let text = scrape_until(&host, |text| {
        sample(text, "grpc_server_handled_total", &cancelled).is_some()
    })
    .await;

    let plugin = [("tenant", "default"), ("plugin", "misbehave")];
    assert_eq!(
        value(
            &text,
            "plugrpc_sandbox_traps_total",
            &with(&plugin, &[("kind", "unreachable")])
        ),
        2.0
    );
    assert_eq!(
        value(&text, "plugrpc_sandbox_deadline_kills_total", &plugin),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "plugrpc_sandbox_limit_refusals_total",
            &with(&plugin, &[("limit", "memory")])
        ),
        1.0
    );
    assert_eq!(value(&text, "grpc_server_handled_total", &cancelled), 1.0);
    assert_eq!(
        value(&text, "plugrpc_sandbox_cancellations_total", &plugin),
        1.0
    );
    let panic = method("misbehave", "misbehave.v1.Misbehave", "Panic", "grpc");
    assert_eq!(
        value(
            &text,
            "grpc_server_handled_total",
            &with(&panic, &[("grpc_code", "Internal")])
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "plugrpc_plugin_refusals_total",
            &[("tenant", "default"), ("reason", "load")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_value_and_outbound_use_is_counted() {
    let host = TestHost::with_config(
        &[KEEPER, CALLER, GREETER],
        "[plugins.keeper.kv]\n[plugins.caller.outbound.local]\nendpoints = [\"local\"]\n",
    )
    .await;
    let mut keeper = KeeperClient::new(host.channel().await);
    keeper
        .put(Entry {
            bucket: String::new(),
            key: "k".into(),
            value: b"value".to_vec(),
        })
        .await
        .unwrap();
    let key = Key {
        bucket: String::new(),
        key: "k".into(),
    };
    keeper.get(key.clone()).await.unwrap();
    keeper.get(key).await.unwrap();
    let mut caller = CallerClient::new(host.channel().await);
    let relay = |target: &str| Relay {
        target: target.into(),
        name: "ada".into(),
        ..Relay::default()
    };
    caller.hello(relay("local")).await.unwrap();
    caller.hello(relay("local")).await.unwrap();

    let text = scrape(&host).await;
    let keeper = [("tenant", "default"), ("plugin", "keeper")];
    assert_eq!(
        value(
            &text,
            "plugrpc_kv_operations_total",
            &with(&keeper, &[("op", "set")])
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "plugrpc_kv_operations_total",
            &with(&keeper, &[("op", "get")])
        ),
        2.0
    );
    // "k" and "value" written once, read twice.
    assert_eq!(value(&text, "plugrpc_kv_written_bytes_total", &keeper), 6.0);
    assert_eq!(value(&text, "plugrpc_kv_read_bytes_total", &keeper), 12.0);
    let caller = [("tenant", "default"), ("plugin", "caller")];
    assert_eq!(
        value(
            &text,
            "plugrpc_outbound_calls_total",
            &with(&caller, &[("target", "local"), ("grpc_code", "OK")])
        ),
        2.0
    );
    // The hop itself is a call of the greeter, by the in-process door.
    let hello = method("greeter", "helloworld.Greeter", "SayHello", "grpc");
    assert_eq!(
        value(
            &text,
            "grpc_server_handled_total",
            &with(&hello, &[("grpc_code", "OK")])
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_be_turned_off() {
    let host = TestHost::with_config(&[GREETER], "[host]\nmetrics = false\n").await;
    let mut greeter = GreeterClient::new(host.channel().await);
    greeter
        .say_hello(HelloRequest { name: "ada".into() })
        .await
        .unwrap();
    let (status, body) = get(admin(&host), "/metrics").await;
    assert_eq!(status, 404);
    assert!(body.contains("host.metrics = false"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_scrapes_the_host() {
    let host = TestHost::with_plugins(&[GREETER]).await;
    let mut greeter = GreeterClient::new(host.channel().await);
    for _ in 0..5 {
        greeter
            .say_hello(HelloRequest { name: "ada".into() })
            .await
            .unwrap();
    }
    let prometheus = PrometheusServer::start(admin(&host)).await;
    let query = r#"sum(grpc_server_handled_total{grpc_method="SayHello",grpc_code="OK",tenant="default",plugin="greeter"})"#;
    let started = Instant::now();
    let answered = loop {
        let result = prometheus.query(query).await;
        if let Some(value) = result[0]["value"][1].as_str() {
            break value.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "prometheus has not scraped the host: {result}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(answered, "5");
    let up = prometheus.query(r#"up{job="plugrpc"}"#).await;
    assert_eq!(up[0]["value"][1], "1", "{up}");
}
