//! The admin listener: `/healthz`, `/readyz` and `/plugins` on a port of their own,
//! read as an orchestrator's probe or an operator's curl would.

use std::net::SocketAddr;

use crate::plugins::{GREETER, USERS_FIXTURE};
use plugrpc_tests::TestHost;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The status code and body of `GET path` on `addr`, over a connection of its own.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `/readyz` as soon as it stops answering 200 (asked every 20 ms, for 2 s at most).
async fn readyz_once_not_ready(admin: SocketAddr) -> (u16, String) {
    let mut answer = get(admin, "/readyz").await;
    for _ in 0..100 {
        if answer.0 != 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        answer = get(admin, "/readyz").await;
    }
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_answer_on_their_own_port() {
    let host = TestHost::with_plugins(&[GREETER]).await;
    let admin = host.admin_addr().expect("the admin endpoints are on");
    assert_ne!(admin.port(), host.addr().port());
    assert_eq!(get(admin, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(get(admin, "/readyz").await, (200, "ready\n".into()));
    let (status, body) = get(admin, "/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("/healthz"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_serving_nothing_is_alive_but_not_ready() {
    let host = TestHost::with_plugins(&[]).await;
    let admin = host.admin_addr().unwrap();
    assert_eq!(get(admin, "/healthz").await.0, 200);
    assert_eq!(
        get(admin, "/readyz").await,
        (503, "no plugins serving\n".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_lists_what_serves_and_what_was_refused() {
    let dir = tempfile::tempdir().unwrap();
    plugrpc_tests::copy_plugin(GREETER, &dir.path().join(GREETER.file_name()));
    std::fs::create_dir(dir.path().join("acme")).unwrap();
    plugrpc_tests::copy_plugin(USERS_FIXTURE, &dir.path().join("acme").join("users.wasm"));
    std::fs::write(dir.path().join("broken.wasm"), b"not a component").unwrap();
    let host = TestHost::serving(dir).await;
    let (status, body) = get(host.admin_addr().unwrap(), "/plugins").await;
    assert_eq!(status, 200);
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let plugins = listed["plugins"].as_array().unwrap();
    let names: Vec<(&str, &str)> = plugins
        .iter()
        .map(|p| (p["tenant"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("acme", "users"), ("default", "greeter")]);
    let greeter = &plugins[1];
    assert_eq!(
        greeter["services"],
        serde_json::json!(["helloworld.Greeter"])
    );
    assert_eq!(greeter["hash"].as_str().unwrap().len(), 64);
    assert_eq!(greeter["running_calls"], 0);
    let refused = listed["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("broken.wasm")
    );
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not a valid WebAssembly component"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_draining_host_is_not_ready_while_its_calls_finish() {
    use plugrpc_tests::pb::user::ChatMessage;
    use plugrpc_tests::pb::user::user_service_client::UserServiceClient;
    use tokio_stream::StreamExt as _;

    let mut host = TestHost::with_plugins(&[USERS_FIXTURE]).await;
    let admin = host.admin_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = UserServiceClient::new(host.channel().await)
        .chat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(ChatMessage::default()).await.unwrap();
    replies.next().await.unwrap().unwrap();
    // A stream in flight keeps the host draining: it waits for the stream to end.
    host.begin_stop();
    assert_eq!(
        readyz_once_not_ready(admin).await,
        (503, "draining\n".into())
    );
    assert_eq!(get(admin, "/healthz").await.0, 200, "alive while draining");
    drop(tx);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_host_reports_not_ready_first_and_stops_accepting_after_the_drain_delay() {
    use plugrpc_tests::pb::helloworld::HelloRequest;
    use plugrpc_tests::pb::helloworld::greeter_client::GreeterClient;

    let mut host =
        TestHost::with_config(&[GREETER], "[shutdown]\ndrain_delay = \"1500ms\"\n").await;
    let admin = host.admin_addr().unwrap();
    host.begin_stop();
    assert_eq!(
        readyz_once_not_ready(admin).await,
        (503, "draining\n".into())
    );
    // Within the delay, a new connection is still served.
    let mut greeter = GreeterClient::new(host.channel().await);
    let hello = HelloRequest {
        name: "late".into(),
    };
    greeter.say_hello(hello.clone()).await.unwrap();
    // After it, the listener is gone.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let refused = tokio::net::TcpStream::connect(host.addr()).await;
    assert!(
        refused.is_err(),
        "the listener still accepts after the drain delay"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_can_be_turned_off() {
    let host = TestHost::with_config(&[GREETER], "[host]\nadmin_listen = \"off\"\n").await;
    assert_eq!(host.admin_addr(), None);
}
