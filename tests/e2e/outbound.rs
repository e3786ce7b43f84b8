//! Plugins calling other services: the `caller` test plugin makes outbound calls, through
//! the host, to tonic servers the tests start on loopback and to plugins of the same
//! host (`local`). What the callee sees (deadline, metadata, cancellation), what comes
//! back, and how the host retries, spreads load and refuses what is not granted.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::plugins::{CALLER, GREETER};
use crate::tenants::{api_keys, bearing};
use plugrpc_tests::TestHost;
use plugrpc_tests::pb::caller::caller_client::CallerClient;
use plugrpc_tests::pb::caller::{Relay, Relayed};
use plugrpc_tests::pb::helloworld::greeter_server::{Greeter, GreeterServer};
use plugrpc_tests::pb::helloworld::{HelloReply, HelloRequest};
use plugrpc_tests::pb::user::user_service_server::{UserService, UserServiceServer};
use plugrpc_tests::pb::user::{
    ChatMessage, CreateUserRequest, CreateUsersResponse, GetUserRequest, ListUsersRequest, User,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};

/// One call's metadata, as (key, value) text pairs.
type CallMetadata = Vec<(String, String)>;

/// What a test greeter saw of each call, and how it answers.
#[derive(Clone, Default)]
struct Seen {
    /// Each call's metadata.
    calls: Arc<Mutex<Vec<CallMetadata>>>,
    /// Calls to fail with `fail_code` before one succeeds.
    failures_left: Arc<AtomicU32>,
    fail_code: Arc<Mutex<Option<Code>>>,
    /// How long each answer takes.
    delay: Arc<Mutex<Duration>>,
    /// Answers given, for load spreading.
    answered: Arc<AtomicUsize>,
}

impl Seen {
    fn header(&self, call: usize, key: &str) -> Option<String> {
        let calls = self.calls.lock().unwrap();
        calls[call]
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

/// A greeter that records and answers as [`Seen`] says.
struct TestGreeter(Seen);

#[tonic::async_trait]
impl Greeter for TestGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let metadata = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        self.0.calls.lock().unwrap().push(metadata);
        let delay = *self.0.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let failing = self
            .0
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if failing {
            let code = self
                .0
                .fail_code
                .lock()
                .unwrap()
                .unwrap_or(Code::Unavailable);
            return Err(Status::new(code, "failing on purpose"));
        }
        self.0.answered.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(HelloReply {
            message: format!("Hello {}!", request.into_inner().name),
        }))
    }
}

type Replies<T> = std::pin::Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A users service whose ListUsers streams slowly and reports when its client went.
struct TestUsers {
    cancelled: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

#[tonic::async_trait]
impl UserService for TestUsers {
    async fn get_user(&self, _: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    type ListUsersStream = Replies<User>;

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<Self::ListUsersStream>, Status> {
        let limit = request.into_inner().limit;
        let (tx, rx) = mpsc::channel(1);
        let cancelled = self.cancelled.lock().unwrap().take();
        tokio::spawn(async move {
            for id in 1..=i64::from(limit) {
                let user = User {
                    id,
                    name: format!("user-{id}"),
                    ..User::default()
                };
                if tx.send(Ok(user)).await.is_err() {
                    // The stream was reset: the client cancelled.
                    if let Some(cancelled) = cancelled {
                        let _ = cancelled.send(());
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut response =
            Response::new(Box::pin(ReceiverStream::new(rx)) as Self::ListUsersStream);
        response
            .metadata_mut()
            .insert("x-served-by", "test-users".parse().unwrap());
        Ok(response)
    }

    async fn create_users(
        &self,
        request: Request<Streaming<CreateUserRequest>>,
    ) -> Result<Response<CreateUsersResponse>, Status> {
        let mut input = request.into_inner();
        let mut count = 0;
        while let Some(request) = input.next().await {
            request?;
            count += 1;
        }
        Ok(Response::new(CreateUsersResponse {
            count,
            users: Vec::new(),
        }))
    }

    type ChatStream = Replies<ChatMessage>;

    async fn chat(
        &self,
        request: Request<Streaming<ChatMessage>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            while let Some(Ok(message)) = input.next().await {
                let reply = ChatMessage {
                    user: "test".into(),
                    text: format!("echo {}", message.text),
                    sent_at: None,
                };
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A tonic server of both test services on a free loopback port; stops when dropped.
struct Callee {
    addr: std::net::SocketAddr,
    seen: Seen,
    cancelled: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Callee {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Seen::default();
        let cancelled = Arc::new(Mutex::new(None));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(GreeterServer::new(TestGreeter(seen.clone())))
                .add_service(UserServiceServer::new(TestUsers {
                    cancelled: cancelled.clone(),
                }))
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                }),
        );
        Self {
            addr,
            seen,
            cancelled,
            stop: Some(stop),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Callee {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A host serving the caller, granted `targets` (TOML tables under its `outbound`).
async fn host(targets: &str) -> (TestHost, CallerClient<Channel>) {
    let host = TestHost::with_config(&[CALLER, GREETER], targets).await;
    let client = CallerClient::new(host.channel().await);
    (host, client)
}

/// The caller's grant of `alias` at `callee`, with `extra` keys of the table.
fn grant(alias: &str, callee: &Callee, extra: &str) -> String {
    format!(
        "[plugins.caller.outbound.{alias}]\nendpoints = [{:?}]\n{extra}",
        callee.endpoint()
    )
}

fn relay(target: &str, name: &str) -> Relay {
    Relay {
        target: target.into(),
        name: name.into(),
        ..Relay::default()
    }
}

/// The grpc-timeout a callee received, as a duration.
fn grpc_timeout(value: &str) -> Duration {
    let (number, unit) = value.split_at(value.len() - 1);
    let number: u64 = number.parse().unwrap();
    match unit {
        "H" => Duration::from_secs(number * 3600),
        "M" => Duration::from_secs(number * 60),
        "S" => Duration::from_secs(number),
        "m" => Duration::from_millis(number),
        "u" => Duration::from_micros(number),
        "n" => Duration::from_nanos(number),
        other => panic!("unit {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_callee_sees_the_deadline_the_calling_call_has_left() {
    let callee = Callee::start().await;
    let (_host, mut client) = host(&grant("greeter", &callee, "")).await;
    let mut request = Request::new(relay("greeter", "ada"));
    request.set_timeout(Duration::from_secs(5));
    let reply = client.hello(request).await.unwrap().into_inner();
    assert_eq!(reply.messages, ["Hello ada!"]);
    let seen = grpc_timeout(&callee.seen.header(0, "grpc-timeout").unwrap());
    assert!(
        seen <= Duration::from_secs(5) && seen > Duration::from_secs(3),
        "{seen:?}"
    );

    // Time the calling call spent is gone: a plugin that waits 1.5 s first passes on
    // what is left of the 5 s.
    let mut request = Request::new(Relay {
        wait_ms: 1500,
        ..relay("greeter", "ada")
    });
    request.set_timeout(Duration::from_secs(5));
    client.hello(request).await.unwrap();
    let seen = grpc_timeout(&callee.seen.header(1, "grpc-timeout").unwrap());
    assert!(
        seen <= Duration::from_millis(3500) && seen > Duration::from_secs(2),
        "{seen:?}"
    );

    // Asking for less gives less; never more than the call has left.
    let mut request = Request::new(Relay {
        timeout_ms: 800,
        ..relay("greeter", "ada")
    });
    request.set_timeout(Duration::from_secs(5));
    client.hello(request).await.unwrap();
    let seen = grpc_timeout(&callee.seen.header(2, "grpc-timeout").unwrap());
    assert!(seen <= Duration::from_millis(800), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callee_slower_than_the_deadline_ends_in_deadline_exceeded() {
    let callee = Callee::start().await;
    *callee.seen.delay.lock().unwrap() = Duration::from_secs(5);
    let (_host, client) = host(&grant("greeter", &callee, "")).await;
    let mut plain = plugrpc_tests::pb::caller::caller_client::CallerClient::with_origin(
        _host.plain_http2(),
        _host.origin(),
    );
    drop(client);
    let mut request = Request::new(relay("greeter", "slow"));
    request.set_timeout(Duration::from_millis(500));
    let status = plain.hello(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_context_and_chosen_metadata_reach_the_callee() {
    let callee = Callee::start().await;
    let (_host, mut client) = host(&grant(
        "greeter",
        &callee,
        "propagate_metadata = [\"x-request-id\"]\n",
    ))
    .await;
    let mut call = relay("greeter", "ada");
    call.metadata.insert("x-from-plugin".into(), "yes".into());
    let mut request = Request::new(call);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
        .metadata_mut()
        .insert("x-request-id", "req-42".parse().unwrap());
    request
        .metadata_mut()
        .insert("x-not-propagated", "secret".parse().unwrap());
    client.hello(request).await.unwrap();
    assert_eq!(
        callee.seen.header(0, "traceparent").as_deref(),
        Some(traceparent)
    );
    assert_eq!(
        callee.seen.header(0, "x-request-id").as_deref(),
        Some("req-42")
    );
    assert_eq!(
        callee.seen.header(0, "x-from-plugin").as_deref(),
        Some("yes")
    );
    assert_eq!(callee.seen.header(0, "x-not-propagated"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_streaming_call_cancels_it_at_the_callee() {
    let callee = Callee::start().await;
    let (cancelled, was_cancelled) = oneshot::channel();
    *callee.cancelled.lock().unwrap() = Some(cancelled);
    let (_host, mut client) = host(&grant("users", &callee, "")).await;
    let reply = client
        .users(Relay {
            count: 1000,
            take: 2,
            ..relay("users", "")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.messages, ["user-1", "user-2"]);
    assert_eq!(
        reply.headers.get("x-served-by").map(String::as_str),
        Some("test-users")
    );
    tokio::time::timeout(Duration::from_secs(10), was_cancelled)
        .await
        .expect("the callee saw the call cancelled")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn client_and_bidi_streams_go_out_and_come_back() {
    let callee = Callee::start().await;
    let (_host, mut client) = host(&grant("users", &callee, "")).await;
    let created = client
        .create(Relay {
            count: 25,
            ..relay("users", "n")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.messages, ["25"]);
    let chat: Relayed = client
        .chat(Relay {
            count: 3,
            ..relay("users", "ada")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(chat.messages, ["echo line 0", "echo line 1", "echo line 2"]);
    let all = client
        .users(Relay {
            count: 3,
            ..relay("users", "")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.messages, ["user-1", "user-2", "user-3"]);
}

/// A retry policy on UNAVAILABLE, with short backoffs.
fn retrying(endpoints: &str) -> String {
    format!(
        "[plugins.caller.outbound.greeter]\nendpoints = [{endpoints}]\n\
         [plugins.caller.outbound.greeter.retry]\nmax_attempts = 3\ninitial_backoff = \"10ms\"\n\
         max_backoff = \"50ms\"\nbackoff_multiplier = 2.0\nretryable_status_codes = [\"UNAVAILABLE\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_fails_twice_is_retried_until_it_answers() {
    let callee = Callee::start().await;
    callee.seen.failures_left.store(2, Ordering::SeqCst);
    let (_host, mut client) = host(&retrying(&format!("{:?}", callee.endpoint()))).await;
    let reply = client
        .hello(relay("greeter", "ada"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.messages, ["Hello ada!"]);
    assert_eq!(callee.seen.count(), 3);
    assert_eq!(callee.seen.header(0, "grpc-previous-rpc-attempts"), None);
    assert_eq!(
        callee
            .seen
            .header(1, "grpc-previous-rpc-attempts")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        callee
            .seen
            .header(2, "grpc-previous-rpc-attempts")
            .as_deref(),
        Some("2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_the_policy_does_not_name_is_not_retried() {
    let callee = Callee::start().await;
    callee.seen.failures_left.store(2, Ordering::SeqCst);
    *callee.seen.fail_code.lock().unwrap() = Some(Code::InvalidArgument);
    let (_host, mut client) = host(&retrying(&format!("{:?}", callee.endpoint()))).await;
    let status = client.hello(relay("greeter", "ada")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "failing on purpose");
    assert_eq!(callee.seen.count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_spread_over_three_endpoints_and_go_on_when_one_dies() {
    let mut callees = [
        Callee::start().await,
        Callee::start().await,
        Callee::start().await,
    ];
    let endpoints = callees
        .iter()
        .map(|c| format!("{:?}", c.endpoint()))
        .collect::<Vec<_>>()
        .join(", ");
    let (_host, mut client) = host(&retrying(&endpoints)).await;
    for _ in 0..30 {
        client.hello(relay("greeter", "ada")).await.unwrap();
    }
    let answered: Vec<usize> = callees
        .iter()
        .map(|c| c.seen.answered.load(Ordering::SeqCst))
        .collect();
    assert_eq!(answered, [10, 10, 10], "round robin");

    callees[1].kill();
    for _ in 0..30 {
        client.hello(relay("greeter", "ada")).await.unwrap();
    }
    let total: usize = callees
        .iter()
        .map(|c| c.seen.answered.load(Ordering::SeqCst))
        .sum();
    assert_eq!(total, 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn power_of_two_choices_reaches_every_endpoint() {
    let callees = [
        Callee::start().await,
        Callee::start().await,
        Callee::start().await,
    ];
    let endpoints = callees
        .iter()
        .map(|c| format!("{:?}", c.endpoint()))
        .collect::<Vec<_>>()
        .join(", ");
    let (_host, mut client) = host(&format!(
        "[plugins.caller.outbound.greeter]\nendpoints = [{endpoints}]\nload_balancing = \"p2c\"\n"
    ))
    .await;
    let calls = (0..60).map(|_| {
        let mut client = client.clone();
        async move { client.hello(relay("greeter", "ada")).await.unwrap() }
    });
    futures::future::join_all(calls).await;
    client.hello(relay("greeter", "ada")).await.unwrap();
    for callee in &callees {
        assert!(callee.seen.answered.load(Ordering::SeqCst) > 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn local_calls_reach_another_plugin_as_the_calling_plugin() {
    let (_host, mut client) =
        host("[plugins.caller.outbound.local]\nendpoints = [\"local\"]\n").await;
    let reply = client
        .hello(relay("local", "ada"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.messages, ["Hello ada!"]);

    // The callee's allow rules see the calling plugin's identity; the test calls the
    // caller with the `ci` key.
    for (allowed, answered) in [
        ("plugin:default/someone-else", false),
        ("plugin:default/caller", true),
    ] {
        let (_host, mut client) = host(&format!(
            "{}[plugins.caller.outbound.local]\nendpoints = [\"local\"]\n\
             [plugins.caller]\nallow = [\"key:ci\"]\n[plugins.greeter]\nallow = [{allowed:?}]\n",
            api_keys()
        ))
        .await;
        let result = client
            .hello(bearing(relay("local", "ada"), Some("ci-key")))
            .await;
        match (answered, result) {
            (true, Ok(_)) => {}
            (false, Err(status)) => assert_eq!(status.code(), Code::PermissionDenied, "{status:?}"),
            (_, other) => panic!("allow = [{allowed:?}]: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn local_calls_of_a_tenant_told_apart_by_host_reach_its_own_services() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("acme")).unwrap();
    for plugin in [CALLER, GREETER] {
        plugrpc_tests::copy_plugin(plugin, &dir.path().join("acme").join(plugin.file_name()));
    }
    let config = "[tenants.acme]\nhosts = [\"acme.test\"]\n\
                  [tenants.acme.plugins.caller.outbound.local]\nendpoints = [\"local\"]\n";
    let host = TestHost::serving_with_config(dir, config).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", host.addr()))
        .unwrap()
        .origin("http://acme.test".parse().unwrap())
        .connect()
        .await
        .unwrap();
    let reply = CallerClient::new(channel)
        .hello(relay("local", "ada"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.messages, ["Hello ada!"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_is_not_granted_is_refused_with_a_clear_error() {
    let callee = Callee::start().await;
    let (_host, mut client) = host(&grant("greeter", &callee, "")).await;
    let status = client.hello(relay("elsewhere", "ada")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("\"elsewhere\""), "{status:?}");
    assert_eq!(callee.seen.count(), 0);

    let ungranted = TestHost::with_plugins(&[CALLER]).await;
    let line = ungranted.report().refused[0].reason.to_string();
    assert!(
        line.contains("plugrpc:plugin/outbound") && line.contains("[plugins.caller.outbound]"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_calls_are_bounded_per_call() {
    let callee = Callee::start().await;
    let (_host, mut client) = host(&format!(
        "[plugins.caller]\nmax_outbound_calls_per_call = 0\n\
         [plugins.caller.outbound.greeter]\nendpoints = [{:?}]\n",
        callee.endpoint()
    ))
    .await;
    let status = client.hello(relay("greeter", "ada")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("max_outbound_calls_per_call"),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_calls_in_flight_are_bounded_per_plugin() {
    let callee = Callee::start().await;
    let config = format!(
        "[plugins.caller]\nmax_concurrent_outbound_calls = 1\n{}{}",
        grant("users", &callee, ""),
        grant("greeter", &callee, "")
    );
    let (_host, client) = host(&config).await;
    // A stream of 100 users, one each 20 ms: the plugin's one outbound slot for 2 s.
    let mut streaming = client.clone();
    let long = tokio::spawn(async move {
        streaming
            .users(Relay {
                count: 100,
                ..relay("users", "")
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = client
        .clone()
        .hello(relay("greeter", "ada"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("max_concurrent_outbound_calls"),
        "{status:?}"
    );
    let all = long.await.unwrap().unwrap().into_inner();
    assert_eq!(all.messages.len(), 100);
    // The slot is free again once the stream ended.
    client.clone().hello(relay("greeter", "ada")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbound_call_kept_past_its_call_is_cancelled_when_the_call_ends() {
    let callee = Callee::start().await;
    let (cancelled, was_cancelled) = oneshot::channel();
    *callee.cancelled.lock().unwrap() = Some(cancelled);
    let config = format!(
        "[plugins.caller]\nmax_concurrent_outbound_calls = 1\n{}{}",
        grant("users", &callee, ""),
        grant("greeter", &callee, "")
    );
    let (_host, mut client) = host(&config).await;
    let stashed = client
        .stash(Relay {
            count: 1000,
            ..relay("users", "")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stashed.messages, ["user-1"]);
    tokio::time::timeout(Duration::from_secs(10), was_cancelled)
        .await
        .expect("the callee saw the kept call cancelled")
        .unwrap();
    // Its slot came back: the plugin's one outbound call may be made again, on the same
    // warm instance that still holds the dead handle.
    client.hello(relay("greeter", "ada")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_is_down_is_unavailable_naming_it() {
    let mut callee = Callee::start().await;
    let endpoint = callee.endpoint();
    callee.kill();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_host, mut client) = host(&format!(
        "[plugins.caller.outbound.greeter]\nendpoints = [{endpoint:?}]\n"
    ))
    .await;
    let status = client.hello(relay("greeter", "ada")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("greeter"), "{status:?}");
}
