//! The README's Python example client (grpcio, stubs from grpcio-tools) against a live
//! host: interop with the C-core gRPC stack, not only with tonic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::plugins::{INTEROP, USERS};
use crate::users::USERS_KV;
use plugrpc_tests::{TestHost, make_certs};
use tokio::process::Command;

/// Longest the Python side may take before the test calls it hung.
const PATIENCE: Duration = Duration::from_secs(120);

/// The interpreter of the venv `make test` creates.
fn python() -> PathBuf {
    std::env::var_os("PLUGRPC_PYTHON").map(PathBuf::from).expect(
        "PLUGRPC_PYTHON is not set: run the suite with `make test`, which creates .venv with grpcio",
    )
}

/// Runs `program`; whether it succeeded, and its stdout.
async fn run_status(program: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(program).args(args).kill_on_drop(true).output();
    let output = tokio::time::timeout(PATIENCE, output)
        .await
        .expect("python finishes")
        .expect("python runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    if !output.status.success() {
        eprintln!("{program:?} {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    }
    (output.status.success(), stdout.into_owned())
}

/// Runs `program`, which must succeed; its stdout.
async fn run(program: &Path, args: &[&str]) -> String {
    let (success, stdout) = run_status(program, args).await;
    assert!(success, "{program:?} {args:?} failed (its output is above)");
    stdout
}

/// The repo's root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The Python stubs of the users service, generated into a temporary folder.
async fn stubs(python: &Path) -> tempfile::TempDir {
    stubs_of(python, "proto", &["user/v1/user_service.proto"]).await
}

/// Python stubs of `protos` (relative to the repo folder `include`), in a temporary
/// folder.
async fn stubs_of(python: &Path, include: &str, protos: &[&str]) -> tempfile::TempDir {
    let stubs = tempfile::tempdir().unwrap();
    let out = stubs.path().to_str().unwrap();
    let proto_dir = root().join(include);
    let mut args = vec![
        "-m".to_owned(),
        "grpc_tools.protoc".to_owned(),
        "-I".to_owned(),
        proto_dir.to_str().unwrap().to_owned(),
        format!("--python_out={out}"),
        format!("--grpc_python_out={out}"),
    ];
    args.extend(protos.iter().map(|p| (*p).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(python, &args).await;
    stubs
}

/// The example client against `host`, with `extra` arguments.
async fn example_client(
    python: &Path,
    stubs: &Path,
    host: &TestHost,
    extra: &[&str],
) -> (bool, String) {
    let client = root().join("examples/clients/python/client.py");
    let target = format!("localhost:{}", host.addr().port());
    let mut args = vec![
        client.to_str().unwrap(),
        "--target",
        &target,
        "--stubs",
        stubs.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_status(python, &args).await
}

/// What the example client prints when every call succeeds.
const ALL_ANSWERED: [&str; 5] = [
    "CreateUsers(3) -> count=3",
    "GetUser(first) -> name=n0 email=n0-<run>@example.com",
    "GetUser(0) -> NOT_FOUND: no user with id 0",
    "ListUsers(3 from first) -> n0, n1, n2",
    "Chat -> ada said: hello | ada said: how are you? | ada said: bye",
];

#[tokio::test(flavor = "multi_thread")]
async fn python_grpcio_client_gets_answers_from_all_four_methods() {
    let python = python();
    let stubs = stubs(&python).await;
    let host = TestHost::with_config(&[USERS], USERS_KV).await;
    let (success, stdout) = example_client(&python, stubs.path(), &host, &[]).await;
    assert!(success);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ALL_ANSWERED);
}

#[tokio::test(flavor = "multi_thread")]
async fn python_grpcio_client_over_tls_and_mtls() {
    let python = python();
    let stubs = stubs(&python).await;
    let certs = make_certs();
    let file = |name: &str| certs.path().join(name).display().to_string();
    let tls = format!(
        "{USERS_KV}[tls]\ncert = {:?}\nkey = {:?}\n",
        file("server.crt"),
        file("server.key")
    );
    let (ca, cert, key) = (file("ca.crt"), file("client.crt"), file("client.key"));

    // TLS: the client trusts the test CA.
    let host = TestHost::with_config(&[USERS], &tls).await;
    let (success, stdout) = example_client(&python, stubs.path(), &host, &["--ca", &ca]).await;
    assert!(success);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ALL_ANSWERED);

    // mTLS: the client's certificate is required; an unrelated CA's is refused.
    let mtls = format!("{tls}client_ca = {ca:?}\n");
    let host = TestHost::with_config(&[USERS], &mtls).await;
    let with_cert = ["--ca", &ca, "--cert", &cert, "--key", &key];
    let (success, stdout) = example_client(&python, stubs.path(), &host, &with_cert).await;
    assert!(success);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ALL_ANSWERED);
    let (other_cert, other_key) = (file("other-client.crt"), file("other-client.key"));
    let stranger = ["--ca", &ca, "--cert", &other_cert, "--key", &other_key];
    let (success, stdout) = example_client(&python, stubs.path(), &host, &stranger).await;
    assert!(!success, "a certificate from another CA is refused");
    assert!(
        stdout.starts_with("CreateUsers(3) -> UNAVAILABLE"),
        "{stdout}"
    );
    let (success, stdout) = example_client(&python, stubs.path(), &host, &[]).await;
    assert!(!success, "plaintext to the TLS port is refused");
    assert!(
        stdout.starts_with("CreateUsers(3) -> UNAVAILABLE"),
        "{stdout}"
    );
}

/// The interop cases grpcio's client can make, every one the server side answers.
const INTEROP_CASES: [&str; 18] = [
    "empty_unary",
    "large_unary",
    "client_streaming",
    "server_streaming",
    "ping_pong",
    "empty_stream",
    "cancel_after_begin",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
    "status_code_and_message",
    "special_status_message",
    "custom_metadata",
    "unimplemented_method",
    "unimplemented_service",
    "client_compressed_unary",
    "client_compressed_streaming",
    "server_compressed_unary",
    "server_compressed_streaming",
];

#[tokio::test(flavor = "multi_thread")]
async fn python_grpcio_passes_the_interop_cases() {
    let python = python();
    let stubs = stubs_of(
        &python,
        "tests/proto",
        &[
            "grpc/testing/test.proto",
            "grpc/testing/messages.proto",
            "grpc/testing/empty.proto",
        ],
    )
    .await;
    let host = TestHost::with_plugins(&[INTEROP]).await;
    let client = root().join("tests/python/interop_client.py");
    let target = format!("localhost:{}", host.addr().port());
    let stdout = run(
        &python,
        &[
            client.to_str().unwrap(),
            "--target",
            &target,
            "--stubs",
            stubs.path().to_str().unwrap(),
        ],
    )
    .await;
    let passed: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("ok ")?.split(' ').next())
        .collect();
    assert_eq!(passed, INTEROP_CASES, "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcio_reflection_resolves_a_plugins_service_through_the_host() {
    let python = python();
    let host = TestHost::with_config(&[USERS], USERS_KV).await;
    let client = root().join("tests/python/builtin_client.py");
    let target = format!("localhost:{}", host.addr().port());
    let stdout = run(
        &python,
        &[client.to_str().unwrap(), "--target", &target, "reflection"],
    )
    .await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "services grpc.health.v1.Health grpc.reflection.v1.ServerReflection \
             grpc.reflection.v1alpha.ServerReflection user.v1.UserService",
            "method GetUser user.v1.GetUserRequest -> user.v1.User",
            "method ListUsers user.v1.ListUsersRequest -> stream user.v1.User",
            "method CreateUsers user.v1.CreateUserRequest stream -> user.v1.CreateUsersResponse",
            "method Chat user.v1.ChatMessage stream -> stream user.v1.ChatMessage",
            "fields id name email created_at",
        ],
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcio_health_checking_sees_serving_and_watches_a_removal() {
    use tokio::io::AsyncBufReadExt as _;
    let python = python();
    let host = TestHost::with_config(&[USERS], USERS_KV).await;
    let client = root().join("tests/python/builtin_client.py");
    let target = format!("localhost:{}", host.addr().port());
    let mut child = Command::new(&python)
        .args([client.to_str().unwrap(), "--target", &target, "health"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("python answers in time")
            .unwrap()
            .expect("a line")
    };
    assert_eq!(next().await, "check - SERVING");
    assert_eq!(next().await, "check user.v1.UserService SERVING");
    assert_eq!(
        next().await,
        "list - grpc.health.v1.Health grpc.reflection.v1.ServerReflection \
         grpc.reflection.v1alpha.ServerReflection user.v1.UserService"
    );
    assert_eq!(next().await, "watch SERVING");
    std::fs::remove_file(host.plugins_dir().join(USERS.file_name())).unwrap();
    assert_eq!(next().await, "watch SERVICE_UNKNOWN");
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
