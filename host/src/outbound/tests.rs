//! Outbound calls over real sockets: tonic servers on 127.0.0.1:0 whose one streaming
//! method is a closure of the test's, so each test states what the server does and
//! counts what it saw. Every wait is bounded by `PATIENCE`; nothing is timed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::server::{NamedService, StreamingService};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::*;

/// The one method the test servers serve.
const METHOD: &str = "/test.Echo/Call";

/// The longest any test waits for anything: far above what a call takes here.
const PATIENCE: Duration = Duration::from_secs(10);

type Reply = Result<tonic::Response<BoxStream<'static, Result<Bytes, Status>>>, Status>;

/// What a test server does with its `n`th call (from 0).
type Handler = Arc<
    dyn Fn(usize, tonic::Request<tonic::Streaming<Bytes>>) -> BoxFuture<'static, Reply>
        + Send
        + Sync,
>;

/// A raw-bytes gRPC service that hands each call to a handler and keeps its metadata.
#[derive(Clone)]
struct Echo {
    handler: Handler,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<MetadataMap>>>,
}

impl NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let call = OneCall(self.clone());
        Box::pin(async move {
            Ok(tonic::server::Grpc::new(RawCodec)
                .streaming(call, request)
                .await)
        })
    }
}

struct OneCall(Echo);

impl StreamingService<Bytes> for OneCall {
    type Response = Bytes;
    type ResponseStream = BoxStream<'static, Result<Bytes, Status>>;
    type Future = BoxFuture<'static, Reply>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<Bytes>>) -> Self::Future {
        let n = self.0.calls.fetch_add(1, Ordering::SeqCst);
        self.0.seen.lock().unwrap().push(request.metadata().clone());
        (self.0.handler)(n, request)
    }
}

impl Echo {
    fn new(handler: Handler) -> Self {
        Self {
            handler,
            calls: Arc::default(),
            seen: Arc::default(),
        }
    }
}

/// A test server listening on 127.0.0.1.
struct Server {
    address: SocketAddr,
    echo: Echo,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(handler: Handler) -> Self {
        Self::start_with(handler, None).await
    }

    async fn start_with(handler: Handler, tls: Option<ServerTlsConfig>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let echo = Echo::new(handler);
        let (stop, stopped) = oneshot::channel::<()>();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).unwrap();
        }
        let serve = builder
            .add_service(echo.clone())
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            });
        let task = tokio::spawn(async move {
            let _ = serve.await;
        });
        Self {
            address,
            echo,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn calls(&self) -> usize {
        self.echo.calls.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<MetadataMap> {
        self.echo.seen.lock().unwrap().clone()
    }

    /// Stops listening and closes its connections (GOAWAY first).
    async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(PATIENCE, &mut self.task).await;
        self.task.abort();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn handler<F>(f: F) -> Handler
where
    F: Fn(usize, tonic::Request<tonic::Streaming<Bytes>>) -> BoxFuture<'static, Reply>
        + Send
        + Sync
        + 'static,
{
    Arc::new(f)
}

/// Answers each request message with itself, then OK.
fn echo() -> Handler {
    handler(|_, request| {
        Box::pin(async move { Ok(tonic::Response::new(request.into_inner().boxed())) })
    })
}

/// Fails the first `times` calls with `code` (trailers-only), then echoes.
fn failing(times: usize, code: Code) -> Handler {
    handler(move |n, request| {
        Box::pin(async move {
            if n < times {
                return Err(Status::new(code, format!("failure {n}")));
            }
            Ok(tonic::Response::new(request.into_inner().boxed()))
        })
    })
}

/// A target parsed from `endpoints` and more TOML.
fn target(endpoints: &[String], extra: &str) -> Target {
    Target::new("greeter", &config(endpoints, extra)).unwrap()
}

fn config(endpoints: &[String], extra: &str) -> OutboundTarget {
    let text = format!("endpoints = {endpoints:?}\n{extra}");
    let config: OutboundTarget = toml::from_str(&text).unwrap();
    config
        .validate("plugins.frontdesk.outbound.greeter")
        .unwrap();
    config
}

/// A call whose request stream is `messages`, then closed.
fn outbound(messages: &[&str], timeout: Duration) -> OutboundCall {
    let (tx, rx) = mpsc::channel(messages.len().max(1));
    for message in messages {
        tx.try_send(Bytes::copy_from_slice(message.as_bytes()))
            .unwrap();
    }
    OutboundCall {
        method: METHOD.into(),
        metadata: MetadataMap::new(),
        timeout,
        requests: rx,
    }
}

/// Makes the call and reads its whole answer.
async fn call(target: &Target, messages: &[&str]) -> Result<Vec<Bytes>, Status> {
    let mut response = target.call(outbound(messages, PATIENCE)).await?;
    let mut answer = Vec::new();
    while let Some(message) = response.message().await? {
        answer.push(message);
    }
    assert!(response.trailers().is_some(), "trailers after the end");
    Ok(answer)
}

/// A `grpc-timeout` value as a duration.
fn grpc_timeout(value: &str) -> Duration {
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().unwrap();
    match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => panic!("not a grpc-timeout: {value}"),
    }
}

/// A port nothing listens on (bound, then freed).
async fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_call_streams_messages_both_ways_and_ends_with_trailers() {
    let server = Server::start(echo()).await;
    let target = target(&[server.url()], "");
    let answer = call(&target, &["a", "b", "c"]).await.unwrap();
    assert_eq!(answer, ["a", "b", "c"]);
    let seen = server.seen();
    assert!(seen[0].get(PREVIOUS_ATTEMPTS).is_none(), "a first attempt");
}

#[test]
fn a_calls_future_can_be_spawned() {
    fn spawnable<F: std::future::Future + Send + 'static>(_: &F) {}
    let config = config(&["local".into()], "");
    let target = Target::local("greeter", &config, Echo::new(echo()));
    spawnable(&async move { target.call(outbound(&[], PATIENCE)).await.map(drop) });
}

#[tokio::test]
async fn every_call_shares_the_endpoints_one_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = {
        let connections = connections.clone();
        TcpListenerStream::new(listener).inspect(move |_| {
            connections.fetch_add(1, Ordering::SeqCst);
        })
    };
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Echo::new(echo()))
            .serve_with_incoming(counted),
    );
    let target = target(&[format!("http://{address}")], "");
    let calls = (0..10).map(|_| call(&target, &["x"]));
    for answer in futures::future::join_all(calls).await {
        assert_eq!(answer.unwrap(), ["x"]);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    server.abort();
}

#[tokio::test]
async fn the_server_sees_the_calls_time_left_as_grpc_timeout() {
    let server = Server::start(echo()).await;
    let target = target(&[server.url()], "");
    let response = target
        .call(outbound(&["a"], Duration::from_secs(2)))
        .await
        .unwrap();
    drop(response);
    let seen = server.seen();
    let sent = grpc_timeout(seen[0].get("grpc-timeout").unwrap().to_str().unwrap());
    assert!(sent <= Duration::from_secs(2), "{sent:?}");
    assert!(sent > Duration::from_secs(1), "{sent:?}");
}

#[tokio::test]
async fn the_targets_timeout_caps_a_longer_call() {
    let server = Server::start(echo()).await;
    let target = target(&[server.url()], "timeout = \"1s\"");
    drop(target.call(outbound(&["a"], PATIENCE)).await.unwrap());
    let seen = server.seen();
    let sent = grpc_timeout(seen[0].get("grpc-timeout").unwrap().to_str().unwrap());
    assert!(sent <= Duration::from_secs(1), "{sent:?}");
}

#[tokio::test]
async fn a_call_with_no_answer_by_its_deadline_is_deadline_exceeded() {
    let server = Server::start(handler(|_, _| {
        Box::pin(async {
            tokio::time::sleep(PATIENCE).await;
            Err(Status::internal("too late"))
        })
    }))
    .await;
    let target = target(&[server.url()], "");
    let Err(status) = target
        .call(outbound(&["a"], Duration::from_millis(200)))
        .await
    else {
        panic!("no answer in time")
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("greeter"), "{status:?}");
}

#[tokio::test]
async fn a_stream_that_stalls_past_the_deadline_is_deadline_exceeded() {
    let server = Server::start(handler(|_, _| {
        Box::pin(async {
            let stalled =
                stream::once(async { Ok(Bytes::from_static(b"first")) }).chain(stream::pending());
            Ok(tonic::Response::new(stalled.boxed()))
        })
    }))
    .await;
    let target = target(&[server.url()], "");
    let mut response = target
        .call(outbound(&["a"], Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(response.message().await.unwrap().unwrap(), "first");
    let status = response.message().await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(response.message().await.unwrap(), None, "ended");
}

/// A server whose handler streams messages until the call is cancelled, then says so.
async fn streaming_until_cancelled() -> (Server, oneshot::Receiver<String>) {
    let (cancelled, noticed) = oneshot::channel();
    let cancelled = Arc::new(Mutex::new(Some(cancelled)));
    let server = Server::start(handler(move |_, request| {
        let cancelled = cancelled.clone();
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(1);
            let mut requests = request.into_inner();
            tokio::spawn(async move {
                let how = loop {
                    tokio::select! {
                        sent = tx.send(Ok(Bytes::from_static(b"tick"))) => {
                            if sent.is_err() {
                                break "its response stream was dropped".to_owned();
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        request = requests.message() => {
                            if let Err(status) = request {
                                break format!("its request stream failed: {:?}", status.code());
                            }
                        }
                    }
                };
                if let Some(cancelled) = cancelled.lock().unwrap().take() {
                    let _ = cancelled.send(how);
                }
            });
            Ok(tonic::Response::new(ReceiverStream::new(rx).boxed()))
        })
    }))
    .await;
    (server, noticed)
}

#[tokio::test]
async fn dropping_the_response_cancels_the_call_on_the_server() {
    let (server, noticed) = streaming_until_cancelled().await;
    let target = target(&[server.url()], "");
    let (requests, rx) = mpsc::channel(1);
    let mut response = target
        .call(OutboundCall {
            method: METHOD.into(),
            metadata: MetadataMap::new(),
            timeout: PATIENCE * 3,
            requests: rx,
        })
        .await
        .unwrap();
    assert_eq!(response.message().await.unwrap().unwrap(), "tick");
    drop(response);
    let how = tokio::time::timeout(PATIENCE, noticed)
        .await
        .expect("the server noticed the cancellation")
        .unwrap();
    assert!(
        how == "its response stream was dropped" || how.ends_with("Cancelled"),
        "{how}"
    );
    drop(requests);
}

#[tokio::test]
async fn dropping_the_call_before_its_answer_cancels_it_on_the_server() {
    let (dropped, noticed) = oneshot::channel::<()>();
    let dropped = Arc::new(Mutex::new(Some(dropped)));
    /// Sends on drop: the handler's future was dropped.
    struct Guard(Option<oneshot::Sender<()>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }
    let server = Server::start(handler(move |_, _| {
        let guard = Guard(dropped.lock().unwrap().take());
        Box::pin(async move {
            let _guard = guard;
            tokio::time::sleep(PATIENCE * 3).await;
            Err(Status::internal("never"))
        })
    }))
    .await;
    let target = target(&[server.url()], "");
    let (_requests, rx) = mpsc::channel(1);
    let call = target.call(OutboundCall {
        method: METHOD.into(),
        metadata: MetadataMap::new(),
        timeout: PATIENCE * 3,
        requests: rx,
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), call)
            .await
            .is_err(),
        "no answer yet"
    );
    tokio::time::timeout(PATIENCE, noticed)
        .await
        .expect("the server's handler was dropped")
        .unwrap();
}

#[tokio::test]
async fn a_retryable_failure_is_retried_replaying_the_request_and_counting_attempts() {
    let server = Server::start(failing(2, Code::Unavailable)).await;
    let target = target(
        &[server.url()],
        "[retry]\nmax_attempts = 3\ninitial_backoff = \"10ms\"\nmax_backoff = \"50ms\"",
    );
    assert_eq!(call(&target, &["a", "b"]).await.unwrap(), ["a", "b"]);
    assert_eq!(server.calls(), 3);
    let previous: Vec<Option<String>> = server
        .seen()
        .iter()
        .map(|m| {
            m.get(PREVIOUS_ATTEMPTS)
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(previous, [None, Some("1".into()), Some("2".into())]);
}

#[tokio::test]
async fn a_failure_not_listed_as_retryable_is_not_retried() {
    let server = Server::start(failing(usize::MAX, Code::InvalidArgument)).await;
    let target = target(&[server.url()], "[retry]\ninitial_backoff = \"10ms\"");
    let status = call(&target, &["a"]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "failure 0",
        "the server's status as it sent it"
    );
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn without_a_retry_policy_a_call_is_tried_once() {
    let server = Server::start(failing(usize::MAX, Code::Unavailable)).await;
    let target = target(&[server.url()], "");
    assert_eq!(
        call(&target, &["a"]).await.unwrap_err().code(),
        Code::Unavailable
    );
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn retries_stop_while_half_the_token_bucket_is_spent() {
    let server = Server::start(failing(usize::MAX, Code::Unavailable)).await;
    let target = target(
        &[server.url()],
        "[retry]\nmax_attempts = 5\ninitial_backoff = \"1ms\"\nmax_backoff = \"5ms\"\n\
         [retry_throttling]\nmax_tokens = 10\ntoken_ratio = 0.1",
    );
    for _ in 0..5 {
        assert_eq!(
            call(&target, &["a"]).await.unwrap_err().code(),
            Code::Unavailable
        );
    }
    // The first call spends 5 tokens in its 5 attempts, leaving half the bucket: every
    // later call is tried once. Unthrottled, it would be 25 attempts.
    assert_eq!(server.calls(), 9);
}

#[tokio::test]
async fn the_servers_pushback_delays_or_stops_retries() {
    let pushing = |value: &'static str| {
        handler(move |n, request| {
            Box::pin(async move {
                if n == 0 {
                    let mut metadata = MetadataMap::new();
                    metadata.insert("grpc-retry-pushback-ms", value.parse().unwrap());
                    return Err(Status::with_metadata(Code::Unavailable, "busy", metadata));
                }
                Ok(tonic::Response::new(request.into_inner().boxed()))
            })
        })
    };
    let retry = "[retry]\nmax_attempts = 3\ninitial_backoff = \"10ms\"";
    let server = Server::start(pushing("20")).await;
    assert_eq!(
        call(&target(&[server.url()], retry), &["a"]).await.unwrap(),
        ["a"]
    );
    assert_eq!(server.calls(), 2);
    let server = Server::start(pushing("-1")).await;
    let status = call(&target(&[server.url()], retry), &["a"])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(server.calls(), 1, "a negative pushback stops retries");
}

#[tokio::test]
async fn round_robin_spreads_calls_evenly() {
    let servers = [
        Server::start(echo()).await,
        Server::start(echo()).await,
        Server::start(echo()).await,
    ];
    let urls: Vec<String> = servers.iter().map(Server::url).collect();
    let target = target(&urls, "");
    for _ in 0..30 {
        assert_eq!(call(&target, &["a"]).await.unwrap(), ["a"]);
    }
    let calls: Vec<usize> = servers.iter().map(Server::calls).collect();
    assert_eq!(calls, [10, 10, 10]);
}

#[tokio::test]
async fn p2c_reaches_every_endpoint() {
    let servers = [
        Server::start(echo()).await,
        Server::start(echo()).await,
        Server::start(echo()).await,
    ];
    let urls: Vec<String> = servers.iter().map(Server::url).collect();
    let target = target(&urls, "load_balancing = \"p2c\"");
    // Sequential calls tie on load, so each pick is uniform: the chance that 60 miss an
    // endpoint is 3 * (2/3)^60, about 1e-10.
    for _ in 0..60 {
        assert_eq!(call(&target, &["a"]).await.unwrap(), ["a"]);
    }
    for server in &servers {
        assert!(server.calls() > 0, "{}", server.address);
    }
}

#[tokio::test]
async fn calls_go_on_when_an_endpoint_shuts_down() {
    let mut servers = [
        Server::start(echo()).await,
        Server::start(echo()).await,
        Server::start(echo()).await,
    ];
    let urls: Vec<String> = servers.iter().map(Server::url).collect();
    let target = target(&urls, "");
    for _ in 0..6 {
        assert_eq!(call(&target, &["a"]).await.unwrap(), ["a"]);
    }
    servers[0].shut_down().await;
    let before = servers[0].calls();
    // No retry policy: a call that finds no connection goes elsewhere at once (gRFC A6's
    // transparent retry), and after a few the dead endpoint is ejected.
    for _ in 0..30 {
        assert_eq!(call(&target, &["a"]).await.unwrap(), ["a"]);
    }
    assert_eq!(servers[0].calls(), before);
    assert_eq!(servers[1].calls() + servers[2].calls(), 4 + 30);
}

/// A server that turns every stream away unprocessed, as a draining server does to the
/// streams its GOAWAY left out: it answers a request's HEADERS with GOAWAY (last stream
/// 0, NO_ERROR). Its URL and how many streams it turned away.
async fn turning_away() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let turned = Arc::new(AtomicUsize::new(0));
    let counted = turned.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(tokio::time::timeout(PATIENCE, turn_away(socket, counted)));
        }
    });
    (url, turned)
}

/// One connection of [`turning_away`], speaking HTTP/2 frames by hand.
async fn turn_away(
    mut socket: tokio::net::TcpStream,
    turned: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SETTINGS: u8 = 4;
    const HEADERS: u8 = 1;
    let mut preface = [0; 24];
    socket.read_exact(&mut preface).await?;
    socket
        .write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0])
        .await?;
    loop {
        let mut header = [0; 9];
        socket.read_exact(&mut header).await?;
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        socket.read_exact(&mut vec![0; length]).await?;
        match (header[3], header[4]) {
            (SETTINGS, 0) => {
                socket
                    .write_all(&[0, 0, 0, SETTINGS, 1, 0, 0, 0, 0])
                    .await?
            }
            (HEADERS, _) => {
                turned.fetch_add(1, Ordering::SeqCst);
                // GOAWAY: 8 bytes, last stream 0, NO_ERROR.
                let go_away = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                socket.write_all(&go_away).await?;
                // Read on until the client closes: closing with its bytes unread would
                // reset the connection and could lose the GOAWAY.
                socket.read_to_end(&mut Vec::new()).await?;
                return Ok(());
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_stream_a_draining_server_turned_away_goes_to_another_endpoint() {
    let (turning, turned) = turning_away().await;
    let server = Server::start(echo()).await;
    // No retry policy: only gRFC A6's transparent retry may save these calls.
    let target = target(&[turning.clone(), server.url()], "");
    for _ in 0..6 {
        assert_eq!(call(&target, &["a"]).await.unwrap(), ["a"]);
    }
    assert!(
        turned.load(Ordering::SeqCst) > 0,
        "no stream was turned away"
    );
    assert_eq!(server.calls(), 6);

    // With nowhere else to go, it is UNAVAILABLE (retryable), not INTERNAL.
    let alone = self::target(&[turning], "");
    let status = call(&alone, &["a"]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("greeter"), "{status:?}");
}

#[tokio::test]
async fn a_host_name_endpoint_is_resolved_and_called() {
    let server = Server::start(echo()).await;
    let target = target(&[format!("http://localhost:{}", server.address.port())], "");
    for _ in 0..4 {
        assert_eq!(call(&target, &["a"]).await.unwrap(), ["a"]);
    }
    assert_eq!(server.calls(), 4);
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_unavailable_naming_the_alias() {
    let target = target(&["http://no-such-host.invalid:50051".into()], "");
    let status = target
        .call(outbound(&["a"], PATIENCE * 2))
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("greeter"), "{status:?}");
    assert!(
        status.message().contains("no-such-host.invalid"),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_naming_the_alias_and_endpoint() {
    let port = closed_port().await;
    let target = target(&[format!("http://127.0.0.1:{port}")], "");
    let status = target.call(outbound(&["a"], PATIENCE)).await.err().unwrap();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("greeter") && status.message().contains(&port.to_string()),
        "{status:?}"
    );
}

#[tokio::test]
async fn one_call_past_max_concurrent_calls_is_refused_at_once() {
    let server = Server::start(echo()).await;
    let target = target(&[server.url()], "max_concurrent_calls = 1");
    let (requests, rx) = mpsc::channel(1);
    let open = target
        .call(OutboundCall {
            method: METHOD.into(),
            metadata: MetadataMap::new(),
            timeout: PATIENCE,
            requests: rx,
        })
        .await
        .unwrap();
    let status = target.call(outbound(&["a"], PATIENCE)).await.err().unwrap();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("max_concurrent_calls") && status.message().contains("greeter"),
        "{status:?}"
    );
    drop((open, requests));
    assert_eq!(
        call(&target, &["a"]).await.unwrap(),
        ["a"],
        "the slot is free again"
    );
}

#[tokio::test]
async fn a_method_that_is_not_a_path_is_invalid_argument() {
    let target = target(&["http://127.0.0.1:1".into()], "");
    let mut bad = outbound(&[], PATIENCE);
    bad.method = "Greeter.SayHello".into();
    let status = target.call(bad).await.err().unwrap();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_local_target_calls_the_in_process_service() {
    let echo = Echo::new(failing(1, Code::Unavailable));
    let config = config(&["local".into()], "[retry]\ninitial_backoff = \"10ms\"");
    assert!(matches!(
        Target::new("greeter", &config),
        Err(TargetError::Local { .. })
    ));
    let target = Target::local("greeter", &config, echo.clone());
    assert_eq!(call(&target, &["a", "b"]).await.unwrap(), ["a", "b"]);
    assert_eq!(
        echo.calls.load(Ordering::SeqCst),
        2,
        "retried like any target"
    );
}

/// PEM files of a CA, a server certificate for `greeter.internal` and a client
/// certificate, all signed by the CA.
struct Certs {
    dir: tempfile::TempDir,
    ca: String,
    server: (String, String),
}

fn certs() -> Certs {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str, usage| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &*ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let server = leaf("greeter.internal", ExtendedKeyUsagePurpose::ServerAuth);
    let client = leaf("frontdesk", ExtendedKeyUsagePurpose::ClientAuth);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("client.pem"), &client.0).unwrap();
    std::fs::write(dir.path().join("client.key"), &client.1).unwrap();
    Certs {
        ca: ca.pem(),
        server,
        dir,
    }
}

impl Certs {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A server that requires a client certificate signed by the CA.
    fn server_tls(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.server.0, &self.server.1))
            .client_ca_root(Certificate::from_pem(&self.ca))
    }
}

#[tokio::test]
async fn mutual_tls_reaches_a_server_that_requires_client_certificates() {
    let certs = certs();
    let server = Server::start_with(echo(), Some(certs.server_tls())).await;
    let endpoint = format!("https://{}", server.address);
    let tls = format!(
        "[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\nserver_name = \"greeter.internal\"",
        certs.path("ca.pem"),
        certs.path("client.pem"),
        certs.path("client.key")
    );
    let target = target(std::slice::from_ref(&endpoint), &tls);
    assert_eq!(call(&target, &["secret"]).await.unwrap(), ["secret"]);

    let without_cert = format!(
        "[tls]\nca = {:?}\nserver_name = \"greeter.internal\"",
        certs.path("ca.pem")
    );
    let target = self::target(&[endpoint], &without_cert);
    let status = call(&target, &["secret"]).await.unwrap_err();
    assert_eq!(server.calls(), 1, "refused in the handshake: {status:?}");
}

#[tokio::test]
async fn a_certificate_file_that_does_not_load_is_an_error_naming_it() {
    let certs = certs();
    std::fs::write(certs.path("empty.pem"), "").unwrap();
    let tls = format!(
        "[tls]\ncert = {:?}\nkey = {:?}",
        certs.path("empty.pem"),
        certs.path("client.key")
    );
    let config = config(&["https://127.0.0.1:443".into()], &tls);
    let error = Target::new("greeter", &config).err().unwrap().to_string();
    assert!(
        error.contains("greeter") && error.contains("tls.cert") && error.contains("empty.pem"),
        "{error}"
    );
    let tls = format!("[tls]\nca = {:?}", certs.path("missing.pem"));
    let config = self::config(&["https://127.0.0.1:443".into()], &tls);
    let error = Target::new("greeter", &config).err().unwrap().to_string();
    assert!(
        error.contains("tls.ca") && error.contains("missing.pem"),
        "{error}"
    );
}
