//! One client connection, from accept to close: HTTP/1.1 or HTTP/2 with the edge's
//! limits, and the timers and counters that close a connection which sends no request,
//! idles, grows too old, or cancels streams faster than `edge.max_resets_per_second`.
//! Every request of the connection carries a [`Peer`] to the doors.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::EdgeConfig;
use crate::doors::grpc::parse_timeout;
use crate::doors::request_buffer::Budget;
use crate::identity::{self, CallerIdentity};
use crate::server::listener::{Accepted, Place};
use crate::throttle;

/// Streams reset before the server accepted them that one connection may pile up; h2's
/// own default (the rapid-reset defence, CVE-2023-44487).
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the server may reset for a client's protocol errors before closing the
/// connection (the MadeYouReset defence, CVE-2025-8671); hyper's own default.
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// Header bytes one request may carry: gRPC metadata is small, and each open stream may
/// hold this much.
const MAX_HEADER_LIST_SIZE: u32 = 64 << 10;
/// Idle connections are pinged this often...
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// ...and dropped if the ping is not answered within this.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the streams of a connection closed for abuse may take to finish.
const ABUSE_GRACE: Duration = Duration::from_secs(1);

/// On a response: the client made the host produce it for nothing (over its share of a
/// plugin, an unknown API key), so it counts toward `edge.max_resets_per_second`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wasted;

/// How close to its own deadline a client's cancel is taken for the deadline's, not
/// counted as a reset.
const DEADLINE_SLACK: Duration = Duration::from_millis(50);

/// Who is on the other end of a request's connection.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    /// The client's address.
    pub(crate) addr: SocketAddr,
    /// The connection's budget for request messages still arriving.
    pub(crate) buffer: Arc<Budget>,
    /// Who the client certificate says the client is, over TLS with client auth.
    pub(crate) identity: Option<CallerIdentity>,
    /// What fair admission knows an anonymous caller by: `ip:<client address>`.
    pub(crate) anonymous: Arc<str>,
}

/// What a connection serves: the host's stack, as hyper runs it (a clone per
/// connection, a future per request, each on any thread).
pub(crate) trait HostService<B>:
    tower::Service<
        http::Request<hyper::body::Incoming>,
        Response = http::Response<B>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> HostService<B> for S where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The HTTP server settings every connection shares.
pub(crate) fn http(edge: &EdgeConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(edge.first_request_timeout)
        .max_buf_size(MAX_HEADER_LIST_SIZE as usize * 2);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(edge.max_streams_per_connection)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    builder
}

/// Serves one accepted connection: over TLS when `tls` is set (the handshake bounded by
/// `edge.handshake_timeout`, the client certificate's identity put on the peer), else
/// as it is.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
pub(crate) async fn open<S, B>(
    accepted: Accepted,
    tls: Option<TlsAcceptor>,
    mut peer: Peer,
    service: S,
    http: &auto::Builder<TokioExecutor>,
    edge: &EdgeConfig,
    shutdown: CancellationToken,
) where
    S: HostService<B>,
    B: HttpBody<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Accepted { stream, place, .. } = accepted;
    if let Some(until) = place.held_until {
        tokio::select! {
            () = tokio::time::sleep_until(until.into()) => {}
            () = shutdown.cancelled() => {}
        }
        return;
    }
    let Some(acceptor) = tls else {
        return serve(stream, peer, &place, service, http, edge, shutdown).await;
    };
    let stream = match tokio::time::timeout(edge.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            if let Some(before) = throttle::allow("listener", "handshake") {
                tracing::info!(
                    "TLS handshake from {} failed: {error}{}",
                    peer.addr,
                    throttle::left_out(before)
                );
            }
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %peer.addr, "TLS handshake took longer than edge.handshake_timeout");
            return;
        }
    };
    peer.identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| identity::from_certificate(leaf))
        .map(|name| CallerIdentity::new(&name));
    serve(stream, peer, &place, service, http, edge, shutdown).await;
}

/// Serves one connection until the client closes it, a timer closes it, or the host
/// shuts down (then in-flight streams finish and the connection closes by itself).
async fn serve<I, S, B>(
    io: I,
    peer: Peer,
    place: &Place,
    service: S,
    http: &auto::Builder<TokioExecutor>,
    edge: &EdgeConfig,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HostService<B>,
    B: HttpBody<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Arc::new(Activity::new(edge.max_resets_per_second));
    let addr = peer.addr;
    let service = Tracked {
        inner: service,
        activity: activity.clone(),
        peer,
    };
    let connection = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(connection);
    let opened = Instant::now();
    // Once the connection is told to go away: when it is closed whatever it is doing.
    let mut going_away: Option<Option<Instant>> = None;
    loop {
        let wake = match going_away {
            Some(close_at) => close_at,
            None => Some(activity.next_check(opened, edge)),
        };
        let timer = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(peer = %addr, "connection ended: {error}");
                }
                return;
            }
            () = shutdown.cancelled(), if going_away.is_none() => {
                // The host's shutdown grace bounds what is left.
                connection.as_mut().graceful_shutdown();
                going_away = Some(None);
            }
            () = activity.changed.notified(), if going_away.is_none() => {
                if let Some(resets) = activity.abusive() {
                    if let Some(before) = throttle::allow("listener", "resets") {
                        tracing::warn!(
                            "closing the connection from {}: {resets} of its streams were cancelled or refused within a second (edge.max_resets_per_second = {}); new connections from {} are refused for {} (edge.abuse_penalty){}",
                            addr,
                            edge.max_resets_per_second,
                            addr.ip(),
                            plugrpc_runtime::duration(edge.abuse_penalty),
                            throttle::left_out(before)
                        );
                    }
                    place.penalize(edge.abuse_penalty);
                    connection.as_mut().graceful_shutdown();
                    going_away = Some(Some(Instant::now() + ABUSE_GRACE));
                }
            }
            () = timer => {
                let now = Instant::now();
                if going_away.is_some() {
                    tracing::debug!(peer = %addr, "closing a connection whose grace has passed");
                    return;
                }
                if !activity.requested.load(Ordering::Acquire)
                    && now >= opened + edge.first_request_timeout
                {
                    tracing::debug!(peer = %addr, "closing a connection that sent no request within edge.first_request_timeout");
                    return;
                }
                if now >= opened + edge.max_connection_age {
                    tracing::debug!(peer = %addr, "telling a connection older than edge.max_connection_age to go away");
                    connection.as_mut().graceful_shutdown();
                    going_away = Some(Some(now + edge.max_connection_age_grace));
                } else if activity.idle_since().is_some_and(|since| now >= since + edge.idle_timeout) {
                    tracing::debug!(peer = %addr, "closing a connection idle for edge.idle_timeout");
                    connection.as_mut().graceful_shutdown();
                    // A stream that raced the GOAWAY gets the same grace as an old one's.
                    going_away = Some(Some(now + edge.max_connection_age_grace));
                }
            }
        }
    }
}

/// What a connection's timers and reset counter read: streams open, when the last one
/// ended, streams cancelled in the current second.
struct Activity {
    open: AtomicUsize,
    requested: AtomicBool,
    /// When the connection last had no stream open (set at open, too).
    idle_since: Mutex<Option<Instant>>,
    resets: Mutex<Resets>,
    max_resets: u32,
    /// Woken when the reset limit is passed.
    changed: Notify,
}

/// Streams cancelled or refused in the current one-second window.
struct Resets {
    window_start: Instant,
    count: u32,
    over: bool,
}

impl Activity {
    fn new(max_resets: u32) -> Self {
        let now = Instant::now();
        Self {
            open: AtomicUsize::new(0),
            requested: AtomicBool::new(false),
            idle_since: Mutex::new(Some(now)),
            resets: Mutex::new(Resets {
                window_start: now,
                count: 0,
                over: false,
            }),
            max_resets,
            changed: Notify::new(),
        }
    }

    /// When a timer may next have something to do.
    fn next_check(&self, opened: Instant, edge: &EdgeConfig) -> Instant {
        let mut at = opened + edge.max_connection_age;
        if !self.requested.load(Ordering::Acquire) {
            at = at.min(opened + edge.first_request_timeout);
        }
        // With streams open, look again an idle timeout from now: streams ending do not
        // wake the connection (that would cost a wake-up per call).
        let idle_from = self.idle_since().unwrap_or_else(Instant::now);
        at.min(idle_from + edge.idle_timeout)
    }

    fn idle_since(&self) -> Option<Instant> {
        *self.idle_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stream_opened(&self) {
        self.requested.store(true, Ordering::Release);
        if self.open.fetch_add(1, Ordering::AcqRel) == 0 {
            *self.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    fn stream_closed(&self, finished: bool) {
        if !finished {
            self.count_reset();
        }
        if self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
    }

    fn count_reset(&self) {
        let mut resets = self.resets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(resets.window_start) >= Duration::from_secs(1) {
            resets.window_start = now;
            resets.count = 0;
        }
        resets.count += 1;
        if resets.count > self.max_resets && !resets.over {
            resets.over = true;
            self.changed.notify_one();
        }
    }

    /// The resets counted, once the limit has been passed.
    fn abusive(&self) -> Option<u32> {
        let resets = self.resets.lock().unwrap_or_else(|e| e.into_inner());
        resets.over.then_some(resets.count)
    }
}

/// The connection's service: each request carries the [`Peer`] and is counted as an
/// open stream until its response body ends or is abandoned.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    peer: Peer,
}

impl<S, B, ReqBody> tower::Service<http::Request<ReqBody>> for Tracked<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<B>>,
    B: HttpBody,
{
    type Response = http::Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // A client cancels at its deadline as a matter of course: not a reset to count.
        // Read only if the stream ends unfinished.
        let timeout = request.headers().get("grpc-timeout").cloned();
        request.extensions_mut().insert(self.peer.clone());
        self.activity.stream_opened();
        TrackedFuture {
            inner: self.inner.call(request),
            stream: Some(OpenStream {
                activity: self.activity.clone(),
                finished: false,
                opened: Instant::now(),
                timeout,
            }),
        }
    }
}

/// One stream counted as open; dropped unfinished before its deadline, it counts as a
/// reset.
struct OpenStream {
    activity: Arc<Activity>,
    finished: bool,
    opened: Instant,
    /// The client's `grpc-timeout`, as sent.
    timeout: Option<http::HeaderValue>,
}

impl OpenStream {
    /// Whether the client's own deadline has (nearly) come.
    fn at_deadline(&self) -> bool {
        let Some(timeout) = self
            .timeout
            .as_ref()
            .and_then(|value| value.to_str().ok())
            .and_then(parse_timeout)
        else {
            return false;
        };
        self.opened.elapsed() + DEADLINE_SLACK >= timeout
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let finished = self.finished || self.at_deadline();
        self.activity.stream_closed(finished);
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future, carrying the open stream into the response body.
    struct TrackedFuture<F> {
        #[pin]
        inner: F,
        stream: Option<OpenStream>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: HttpBody,
{
    type Output = Result<http::Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let stream = this.stream.take();
        if response.extensions().get::<Wasted>().is_some()
            && let Some(stream) = stream.as_ref()
        {
            stream.activity.count_reset();
        }
        Poll::Ready(Ok(response.map(|body| TrackedBody { body, stream })))
    }
}

/// A response body that releases its stream when it ends or is dropped.
struct TrackedBody<B: HttpBody> {
    body: B,
    stream: Option<OpenStream>,
}

impl<B: HttpBody + Unpin> HttpBody for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        let ended = match &frame {
            None => true,
            Some(Ok(frame)) => frame.is_trailers(),
            Some(Err(_)) => false,
        };
        if ended && let Some(mut stream) = self.stream.take() {
            stream.finished = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B: HttpBody> Drop for TrackedBody<B> {
    fn drop(&mut self) {
        // hyper drops a body that says it has ended without polling it again.
        if let Some(stream) = self.stream.as_mut() {
            stream.finished = self.body.is_end_stream();
        }
    }
}
