//! Clients from npm that nobody here wrote, installed by `make test` (`npm ci` in
//! tests/node): `buf curl` lists, describes and calls through the host's reflection alone;
//! the Connect project's Node clients call every shape over Connect and gRPC-Web.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plugrpc_tests::{TestHost, copy_plugin};
use tokio::process::Command;

use crate::plugins::{GREETER, USERS_FIXTURE};

/// Longest one client run may take.
const PATIENCE: Duration = Duration::from_secs(60);

/// An executable of tests/node's packages.
fn node_bin(name: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("node/node_modules/.bin")
        .join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `make test`, which runs `npm ci` in tests/node",
        bin.display()
    );
    bin
}

/// `buf curl` with `args` against `host` over plaintext HTTP/2; its stdout, which must
/// come with success.
async fn buf_curl(host: &TestHost, args: &[&str], path: &str) -> String {
    let url = format!("http://127.0.0.1:{}{path}", host.addr().port());
    let output = Command::new(node_bin("buf"))
        .args(["curl", "--protocol", "grpc", "--http2-prior-knowledge"])
        .args(args)
        .arg(&url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PATIENCE, output)
        .await
        .expect("buf curl finishes")
        .expect("buf curl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "buf curl {args:?} {url} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn buf_curl_lists_and_calls_through_reflection_and_sees_a_plugin_dropped_in() {
    let host = TestHost::with_plugins(&[USERS_FIXTURE]).await;
    let services = buf_curl(&host, &["--list-services"], "").await;
    assert_eq!(
        services.lines().collect::<Vec<_>>(),
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "user.v1.UserService",
        ]
    );
    let methods = buf_curl(&host, &["--list-methods"], "").await;
    assert!(
        methods.contains("user.v1.UserService/ListUsers"),
        "{methods}"
    );
    let user = buf_curl(
        &host,
        &["-d", r#"{"id":7}"#],
        "/user.v1.UserService/GetUser",
    )
    .await;
    let user: serde_json::Value = serde_json::from_str(&user).unwrap();
    assert_eq!(user["name"], "user-7");
    assert_eq!(user["id"], "7", "int64 is a string in proto3 JSON");

    copy_plugin(GREETER, &host.plugins_dir().join(GREETER.file_name()));
    let started = tokio::time::Instant::now();
    loop {
        let services = buf_curl(&host, &["--list-services"], "").await;
        if services.lines().any(|line| line == "helloworld.Greeter") {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "greeter never listed: {services}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = buf_curl(
        &host,
        &["-d", r#"{"name":"buf"}"#],
        "/helloworld.Greeter/SayHello",
    )
    .await;
    assert!(reply.contains("buf"), "{reply}");
}

/// The users service's descriptors, as `buf build` writes them, for the Node clients.
async fn users_descriptors() -> tempfile::NamedTempFile {
    let out = tempfile::NamedTempFile::new().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let status = Command::new(node_bin("buf"))
        .current_dir(root)
        .args([
            "build",
            "proto",
            "--path",
            "proto/user/v1/user_service.proto",
            "-o",
        ])
        .arg(out.path())
        .status()
        .await
        .expect("buf runs");
    assert!(status.success(), "buf build failed");
    out
}

/// What connect_client.mjs prints when every call it makes is answered.
const ANSWERED: [&str; 3] = [
    r#"GetUser {"id":"7","name":"user-7","email":"user-7@example.com","createdAt":"2024-01-01T00:00:07Z"}"#,
    "GetUser(0) NotFound no user with id 0 google.rpc.ResourceInfo",
    "ListUsers user-1,user-2,user-3",
];

/// And the streams from clients, which the Node transports send over HTTP/2 only.
const STREAMED: [&str; 2] = [
    r#"CreateUsers {"count":3}"#,
    "Chat ada said: hello | ada said: bye",
];

#[tokio::test(flavor = "multi_thread")]
async fn connect_nodes_clients_call_every_shape_over_connect_and_grpc_web() {
    let host = TestHost::with_plugins(&[USERS_FIXTURE]).await;
    let descriptors = users_descriptors().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/connect_client.mjs");
    let base = format!("http://127.0.0.1:{}", host.addr().port());
    for protocol in ["connect", "connect-json", "grpcweb"] {
        for version in ["http1", "http2"] {
            let output = Command::new("node")
                .arg(&script)
                .args([&base, protocol, version])
                .arg(descriptors.path())
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(PATIENCE, output)
                .await
                .expect("node finishes")
                .expect("node runs");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{protocol} {version}: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let mut expected = ANSWERED.to_vec();
            if version == "http2" {
                expected.extend(STREAMED);
            }
            assert_eq!(
                stdout.lines().collect::<Vec<_>>(),
                expected,
                "{protocol} {version}"
            );
        }
    }
}
