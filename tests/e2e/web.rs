//! The web doors on the gRPC port: Connect (unary JSON and binary, GET, streams),
//! gRPC-Web (binary and text) over HTTP/1.1 and HTTP/2, and CORS, seen from `curl`,
//! a bare HTTP/1.1 client and the Connect project's Node clients (`node_clients.rs`).

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use plugrpc_tests::pb::user::GetUserRequest;
use plugrpc_tests::{TestHost, raw};
use prost::Message as _;
use tokio::process::Command;

use crate::plugins::{INTEROP, PROBE, USERS_FIXTURE};

/// Longest one curl run may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// An HTTP answer as curl printed it: status, headers (lowercase names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// `curl` (HTTP/1.1, as it speaks to a plaintext port by default) with `args`.
async fn curl(args: &[&str]) -> Answer {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--include", "--max-time", "20"])
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PATIENCE, output)
        .await
        .expect("curl finishes")
        .expect("curl runs (apt-get install curl)");
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(key, value)| (key.to_ascii_lowercase(), value.to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn url(host: &TestHost, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", host.addr().port())
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_calls_connect_with_json_and_gets_connect_errors() {
    let host = TestHost::with_plugins(&[USERS_FIXTURE, INTEROP]).await;
    let get_user = url(&host, "/user.v1.UserService/GetUser");
    let json = ["-H", "content-type: application/json"];

    let answer = curl(&[&get_user, json[0], json[1], "-d", r#"{"id":7}"#]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.json()["name"], "user-7");
    assert_eq!(answer.json()["id"], "7");

    // The plugin's NOT_FOUND, with its details, as Connect's error JSON and HTTP 404.
    let answer = curl(&[&get_user, json[0], json[1], "-d", r#"{"id":0}"#]).await;
    assert_eq!(answer.status, 404);
    let error = answer.json();
    assert_eq!(error["code"], "not_found");
    assert_eq!(error["message"], "no user with id 0");
    assert_eq!(error["details"][0]["type"], "google.rpc.ResourceInfo");

    // JSON that is not the request message: 400 naming the field, never a 500.
    for (body, named) in [(r#"{"id":"seven"}"#, "id"), (r#"{"id":7"#, "EOF")] {
        let answer = curl(&[&get_user, json[0], json[1], "-d", body]).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        let error = answer.json();
        assert_eq!(error["code"], "invalid_argument");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(named), "{body}: {message}");
        assert!(message.contains("user.v1.GetUserRequest"), "{message}");
    }

    // Unknown fields are ignored, as Connect's servers do.
    let answer = curl(&[&get_user, json[0], json[1], "-d", r#"{"id":8,"newer":1}"#]).await;
    assert_eq!(answer.json()["name"], "user-8");
    // Unary is a POST.
    let answer = curl(&["-X", "PUT", &get_user, json[0], json[1], "-d", "{}"]).await;
    assert_eq!((answer.status, answer.header("allow")), (405, Some("POST")));

    // Unknown methods, and streaming methods asked as unary.
    let answer = curl(&[
        &url(&host, "/user.v1.UserService/Nope"),
        json[0],
        json[1],
        "-d",
        "{}",
    ])
    .await;
    assert_eq!(
        (answer.status, answer.json()["code"].as_str()),
        (501, Some("unimplemented"))
    );
    let answer = curl(&[
        &url(&host, "/user.v1.UserService/ListUsers"),
        json[0],
        json[1],
        "-d",
        "{}",
    ])
    .await;
    assert_eq!(answer.status, 415);
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("application/connect+json")
    );

    // Binary Connect unary, gzip both ways.
    let request = GetUserRequest { id: 9 }.encode_to_vec();
    let body = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(body.path(), &request).unwrap();
    let data = format!("@{}", body.path().display());
    let answer = curl(&[
        &get_user,
        "-H",
        "content-type: application/proto",
        "--data-binary",
        &data,
    ])
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/proto"));
    assert!(answer.body.contains("user-9"));
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_get_serves_methods_without_side_effects_only() {
    let host = TestHost::with_plugins(&[USERS_FIXTURE, INTEROP]).await;
    let query = "?encoding=json&message=%7B%22id%22%3A5%7D&connect=v1";
    let answer = curl(&[&url(&host, &format!("/user.v1.UserService/GetUser{query}"))]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["name"], "user-5");

    let message = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(GetUserRequest { id: 6 }.encode_to_vec());
    let answer = curl(&[&url(
        &host,
        &format!("/user.v1.UserService/GetUser?encoding=proto&base64=1&message={message}"),
    )])
    .await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("user-6"));

    // UnaryCall is not marked NO_SIDE_EFFECTS: GET is refused, naming POST.
    let answer = curl(&[&url(
        &host,
        "/grpc.testing.TestService/UnaryCall?encoding=json&message=%7B%7D",
    )])
    .await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.header("allow"), Some("POST"));
    let answer = curl(&[&url(
        &host,
        "/user.v1.UserService/GetUser?encoding=xml&message=x",
    )])
    .await;
    assert_eq!(answer.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_web_binary_and_text_over_http1() {
    let host = TestHost::with_plugins(&[USERS_FIXTURE]).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let message = raw::frames(&[GetUserRequest { id: 3 }.encode_to_vec()]);
    for text in [false, true] {
        let (content_type, body) = if text {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&message);
            ("application/grpc-web-text", Bytes::from(encoded))
        } else {
            ("application/grpc-web+proto", Bytes::from(message.clone()))
        };
        let request = http::Request::post(url(&host, "/user.v1.UserService/GetUser"))
            .header("content-type", content_type)
            .header("x-grpc-web", "1")
            .body(http_body_util::Full::new(body))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_11);
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], content_type);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = if text {
            base64_chunks(&body)
        } else {
            body.to_vec()
        };
        let envelopes = raw::envelopes(&body);
        assert_eq!(envelopes.len(), 2, "a message and the trailers");
        let user = plugrpc_tests::pb::user::User::decode(&envelopes[0].1[..]).unwrap();
        assert_eq!(user.name, "user-3");
        assert_eq!(envelopes[1].0, 0x80);
        let trailers = String::from_utf8(envelopes[1].1.clone()).unwrap();
        assert!(trailers.contains("grpc-status: 0\r\n"), "{trailers:?}");
    }

    // An error before any message: trailers-only, the status in the headers.
    let request = http::Request::post(url(&host, "/user.v1.UserService/GetUser"))
        .header("content-type", "application/grpc-web")
        .body(http_body_util::Full::new(Bytes::from(raw::frames(&[
            GetUserRequest { id: 0 }.encode_to_vec(),
        ]))))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "5");
    assert_eq!(response.headers()["content-type"], "application/grpc-web");
}

/// A gRPC-Web text body decoded: each chunk is its own padded base64, so a group with
/// padding ends a segment.
fn base64_chunks(text: &[u8]) -> Vec<u8> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    let mut start = 0;
    for group in (0..text.len()).step_by(4) {
        if text[group..group + 4].contains(&b'=') {
            out.extend(engine.decode(&text[start..group + 4]).unwrap());
            start = group + 4;
        }
    }
    out.extend(engine.decode(&text[start..]).unwrap());
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_and_responses_follow_the_tenants_origins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("acme")).unwrap();
    plugrpc_tests::copy_plugin(
        USERS_FIXTURE,
        &dir.path().join("acme").join(USERS_FIXTURE.file_name()),
    );
    plugrpc_tests::copy_plugin(INTEROP, &dir.path().join(INTEROP.file_name()));
    let config = "[cors]\nallowed_origins = [\"https://any.example\"]\n\
                  [tenants.acme.cors]\nallowed_origins = [\"https://app.example\"]\n\
                  exposed_headers = [\"x-request-id\"]\nmax_age = \"10m\"\n";
    let host = TestHost::serving_with_config(dir, config).await;
    let get_user = url(&host, "/user.v1.UserService/GetUser");
    let preflight = |origin: &'static str| {
        let get_user = get_user.clone();
        async move {
            curl(&[
                "-X",
                "OPTIONS",
                &get_user,
                "-H",
                &format!("origin: {origin}"),
                "-H",
                "access-control-request-method: POST",
                "-H",
                "access-control-request-headers: content-type, connect-protocol-version",
            ])
            .await
        }
    };
    let answer = preflight("https://app.example").await;
    assert_eq!(answer.status, 204);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        answer
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    let allowed = answer.header("access-control-allow-headers").unwrap();
    assert!(allowed.contains("connect-protocol-version") && allowed.contains("x-grpc-web"));
    assert_eq!(answer.header("access-control-max-age"), Some("600"));
    // acme's routes follow acme's table, not [cors].
    let answer = preflight("https://any.example").await;
    assert_eq!(answer.status, 403);
    assert!(answer.header("access-control-allow-origin").is_none());

    let answer = curl(&[
        &get_user,
        "-H",
        "origin: https://app.example",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"id":1}"#,
    ])
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let exposed = answer.header("access-control-expose-headers").unwrap();
    assert!(exposed.contains("grpc-status") && exposed.contains("grpc-message"));
    assert!(exposed.contains("x-request-id"));
    // An origin the table does not list gets its answer without the marks (the
    // browser then withholds it from the page).
    let answer = curl(&[
        &get_user,
        "-H",
        "origin: https://evil.example",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"id":1}"#,
    ])
    .await;
    assert!(answer.header("access-control-allow-origin").is_none());
    // The default tenant's routes follow [cors].
    let answer = curl(&[
        "-X",
        "OPTIONS",
        &url(&host, "/grpc.testing.TestService/UnaryCall"),
        "-H",
        "origin: https://any.example",
        "-H",
        "access-control-request-method: POST",
    ])
    .await;
    assert_eq!(answer.status, 204);
}

/// The lines of a newline-delimited JSON body.
fn ndjson(answer: &Answer) -> Vec<serde_json::Value> {
    answer
        .body
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_calls_plugins_through_their_google_api_http_annotations() {
    let host = TestHost::with_plugins(&[USERS_FIXTURE, PROBE]).await;

    // The users example: GET /v1/users/{id}, and a server stream as NDJSON.
    let answer = curl(&[&url(&host, "/v1/users/7")]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.json()["email"], "user-7@example.com");
    let answer = curl(&[&url(&host, "/v1/users?limit=3")]).await;
    assert_eq!(answer.header("content-type"), Some("application/x-ndjson"));
    let names: Vec<_> = ndjson(&answer).iter().map(|u| u["name"].clone()).collect();
    assert_eq!(names, ["user-1", "user-2", "user-3"]);
    let answer = curl(&[&url(&host, "/v1/users/0")]).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["code"], "not_found");

    // body "*", a path variable with query parameters, a multi-segment variable with a
    // verb, a body field and a response field.
    let answer = curl(&[
        &url(&host, "/v1/echo"),
        "-H",
        "content-type: application/json",
        "-H",
        "x-user: ada",
        "-d",
        r#"{"text":"hi","count":2}"#,
    ])
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["text"], "hi");
    assert_eq!(answer.json()["method"], "/probe.v1.Probe/Echo");
    assert_eq!(answer.header("echo-user"), Some("ada"));
    assert_eq!(answer.header("trailer-trailer-user"), Some("ada"));
    let answer = curl(&[&url(&host, "/v1/echo/hello%20world?count=3")]).await;
    assert_eq!(answer.json()["text"], "hello world");
    let answer = curl(&[
        "-X",
        "PUT",
        &url(&host, "/v1/rooms/r1/texts/t2:count"),
        "-H",
        "content-type: application/json",
        "-d",
        "5",
    ])
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, r#""rooms/r1/texts/t2""#);

    // Errors: the code's HTTP status; a stream that fails after messages ends with an
    // error line.
    let answer = curl(&[&url(&host, "/v1/fail/5?message=gone")]).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["message"], "gone");
    let answer = curl(&[&url(&host, "/v1/fail-late/boom?count=2")]).await;
    let lines = ndjson(&answer);
    assert_eq!(lines.len(), 3, "{}", answer.body);
    assert_eq!(lines[1]["text"], "boom #1");
    assert_eq!(lines[2]["error"]["code"], "aborted");
    assert_eq!(lines[2]["error"]["message"], "boom");

    // Bad input is a 400 naming what is wrong, never a 500.
    for (path, named) in [
        ("/v1/echo/x?count=many", "count"),
        ("/v1/echo/x?nosuch=1", "nosuch"),
    ] {
        let answer = curl(&[&url(&host, path)]).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        let message = answer.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(named), "{path}: {message}");
    }
    let answer = curl(&[
        &url(&host, "/v1/echo"),
        "-H",
        "content-type: application/json",
        "-d",
        "[1]",
    ])
    .await;
    assert_eq!(answer.status, 400);
    let answer = curl(&[&url(&host, "/v1/nothing/here")]).await;
    assert_eq!(answer.status, 404);
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("/v1/nothing/here")
    );
}
