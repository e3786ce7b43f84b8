//! The README's Python example client (grpcio, stubs from grpcio-tools) against a live
//! host: interop with the C-core gRPC stack, not only with tonic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::plugins::USERS;
use plugrpc_tests::TestHost;
use tokio::process::Command;

/// Longest the Python side may take before the test calls it hung.
const PATIENCE: Duration = Duration::from_secs(120);

/// The interpreter of the venv `make test` creates.
fn python() -> PathBuf {
    std::env::var_os("PLUGRPC_PYTHON").map(PathBuf::from).expect(
        "PLUGRPC_PYTHON is not set: run the suite with `make test`, which creates .venv with grpcio",
    )
}

async fn run(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program).args(args).kill_on_drop(true).output();
    let output = tokio::time::timeout(PATIENCE, output)
        .await
        .expect("python finishes")
        .expect("python runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "{program:?} {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout.into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_grpcio_client_gets_answers_from_all_four_methods() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let python = python();
    let stubs = tempfile::tempdir().unwrap();
    let out = stubs.path().to_str().unwrap();
    let proto_dir = root.join("proto");
    run(
        &python,
        &[
            "-m",
            "grpc_tools.protoc",
            "-I",
            proto_dir.to_str().unwrap(),
            &format!("--python_out={out}"),
            &format!("--grpc_python_out={out}"),
            "user/v1/user_service.proto",
        ],
    )
    .await;

    let host = TestHost::with_plugins(&[USERS]).await;
    let client = root.join("examples/clients/python/client.py");
    let target = host.addr().to_string();
    let stdout = run(
        &python,
        &[
            client.to_str().unwrap(),
            "--target",
            &target,
            "--stubs",
            out,
        ],
    )
    .await;

    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "GetUser(7) -> id=7 name=user-7 email=user-7@example.com",
            "GetUser(0) -> NOT_FOUND: no user with id 0",
            "ListUsers(3) -> user-1, user-2, user-3",
            "CreateUsers(3) -> count=3",
            "Chat -> ada said: hello | ada said: how are you? | ada said: bye",
        ]
    );
}
