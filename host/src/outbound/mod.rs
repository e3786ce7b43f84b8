//! Outbound gRPC: the client behind a plugin's calls to the services it is granted
//! (`[plugins.<p>.outbound.<alias>]`). A plugin names the alias, a method path and raw
//! protobuf message bytes; a [`Target`] does the rest — picks an endpoint (round robin or
//! power of two choices, outliers ejected, host names re-resolved), bounds the call
//! (deadline, in-flight calls), retries it as gRFC A6 says, and streams the answer back.
//! Every call has the streaming shape (client stream, server stream), so one path serves
//! all four method shapes. It never decodes a message and never panics on what a server
//! or a config sends: every failure is a `tonic::Status` naming the alias.

mod balancer;
mod codec;
pub(crate) mod connect;
mod resolve;
mod retry;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::Instant;
use tonic::codec::{CompressionEncoding, Streaming};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{CancellationHandle, Code, Status};

pub use crate::config::{
    DEFAULT_OUTBOUND_CONCURRENT_CALLS, DEFAULT_OUTBOUND_TIMEOUT, DEFAULT_RESOLVE_EVERY,
    EndpointHost, EndpointUrl, Endpoints, GrpcCode, LoadBalancing, MAX_ATTEMPTS, OutboundTarget,
    OutboundTls, RetryPolicy, RetryThrottling,
};

use balancer::{Backend, Balancer, InFlight, NoBackend, Snapshot, http_service};
pub use codec::RawCodec;
use connect::Dialer;
use resolve::Resolver;
use retry::{Pushback, Replay, Throttle};

/// The header that tells a server how many attempts came before this one (gRFC A6).
const PREVIOUS_ATTEMPTS: &str = "grpc-previous-rpc-attempts";

/// The furthest deadline a call gets, whatever time it is given: a year, as the host's
/// `max_deadline` allows, and far inside what an `Instant` can hold.
const LONGEST_CALL: Duration = Duration::from_secs(365 * 24 * 3600);

/// A service one plugin may call, under the alias it was granted. Cheap to clone: the
/// clones share the connections, the in-flight limit and the retry budget. Its
/// re-resolution task stops when the last clone is dropped.
#[derive(Clone)]
pub struct Target {
    inner: Arc<Inner>,
}

struct Inner {
    alias: Arc<str>,
    timeout: Duration,
    policy: Arc<Policy>,
    balancer: Balancer,
    slots: Arc<Semaphore>,
    max_concurrent_calls: usize,
    resolver: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(resolver) = &self.resolver {
            resolver.abort();
        }
    }
}

/// What decides retries, shared with the responses (which report the call's end).
struct Policy {
    retry: Option<RetryPolicy>,
    throttle: Option<Throttle>,
}

impl Policy {
    fn retries(&self, code: Code) -> bool {
        self.retry.as_ref().is_some_and(|retry| retry.retries(code))
    }
}

/// Why a target could not be built: one line naming the alias and the key or file.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A certificate or key file does not load.
    #[error("outbound target {alias}: tls.{key}: {path}: {problem}")]
    Tls {
        /// The target's alias.
        alias: String,
        /// The key that names the file (`ca`, `cert`, `key`).
        key: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An endpoint cannot be dialled as configured.
    #[error("outbound target {alias}: {endpoint}: {problem}")]
    Endpoint {
        /// The target's alias.
        alias: String,
        /// The endpoint, as configured.
        endpoint: String,
        /// What is wrong with it.
        problem: String,
    },
    /// `endpoints = ["local"]` is served in process, by [`Target::local`].
    #[error(
        "outbound target {alias}: \"local\" is the host's own router: build it with Target::local"
    )]
    Local {
        /// The target's alias.
        alias: String,
    },
    /// Channels and the resolver run on tokio: built outside a runtime, they cannot.
    #[error("outbound target {alias}: must be built inside the tokio runtime")]
    NoRuntime {
        /// The target's alias.
        alias: String,
    },
}

/// One call a plugin makes.
pub struct OutboundCall {
    /// The method's path, `/package.Service/Method`.
    pub method: String,
    /// Metadata sent with it (the host copies `propagate_metadata` keys in).
    pub metadata: MetadataMap,
    /// The time the call has: sent as `grpc-timeout`, and the call fails with
    /// DEADLINE_EXCEEDED when it runs out (capped by the target's `timeout`).
    pub timeout: Duration,
    /// The request messages (encoded protobuf, no framing); closing it half-closes.
    pub requests: mpsc::Receiver<Bytes>,
}

/// A call whose response began: the server's headers, then its messages, then its
/// trailers. Dropping it cancels the call (the server sees RST_STREAM CANCEL).
pub struct OutboundResponse {
    /// The server's response headers (initial metadata).
    pub headers: MetadataMap,
    messages: Streaming<Bytes>,
    trailers: Option<MetadataMap>,
    deadline: Instant,
    timeout: Duration,
    alias: Arc<str>,
    address: String,
    policy: Arc<Policy>,
    /// What the call holds until its end: dropped then, or with the response.
    open: Option<Open>,
}

/// What an open call holds: the way to cancel it, its place on the backend and its
/// in-flight slot.
struct Open {
    _cancel: CancelOnDrop,
    _in_flight: InFlight,
    _slot: OwnedSemaphorePermit,
}

/// Cancels a call's HTTP/2 stream when dropped (a no-op once the stream has ended).
struct CancelOnDrop(Option<CancellationHandle>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.cancel();
        }
    }
}

/// What went wrong on the host's side of a call; mapped to a status in one place,
/// [`host_status`].
enum Problem<'a> {
    /// Every in-flight slot (`max_concurrent_calls`, given) is taken.
    Busy(usize),
    /// The call's time (given) ran out.
    Deadline(Duration),
    /// No endpoint address: resolution failed or gave nothing.
    Unresolved(&'a str),
    /// The method is not `/package.Service/Method`.
    NotAMethod(&'a str),
    /// The connection, not the server, failed the call.
    Transport {
        address: &'a str,
        status: &'a Status,
        never_sent: bool,
    },
}

/// A failed attempt.
struct Failure {
    status: Status,
    /// The request never reached a server (no connection): safe to send elsewhere.
    never_sent: bool,
    /// The call's time ran out (tonic's channel cuts an attempt at its `grpc-timeout`).
    expired: bool,
}

/// An attempt whose response began.
struct Opened {
    headers: MetadataMap,
    messages: Streaming<Bytes>,
    cancel: CancelOnDrop,
    in_flight: InFlight,
}

impl Target {
    /// Builds the target: TLS files loaded (a bad one is an error naming it), endpoints
    /// parsed, host names resolved in the background. Connects lazily: a down endpoint
    /// does not stop the host from starting. Must run inside the tokio runtime.
    pub fn new(alias: &str, config: &OutboundTarget) -> Result<Self, TargetError> {
        let Endpoints::Remote(urls) = &config.endpoints else {
            return Err(TargetError::Local {
                alias: alias.to_owned(),
            });
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TargetError::NoRuntime {
                alias: alias.to_owned(),
            });
        }
        let dialer = Dialer::new(alias, config)?;
        let mut fixed = Vec::new();
        let mut names = Vec::new();
        for (index, url) in urls.iter().enumerate() {
            match &url.host {
                EndpointHost::Ip(ip) => {
                    let address = SocketAddr::new(*ip, url.port);
                    fixed.push(Arc::new(Backend::new(
                        address.to_string(),
                        Some((index, address)),
                        http_service(dialer.channel(url, address)?),
                    )));
                }
                EndpointHost::Name(_) => names.push((index, url.clone())),
            }
        }
        let alias: Arc<str> = alias.into();
        let (publish, set) = watch::channel(Arc::new(Snapshot {
            backends: fixed.clone(),
            settled: names.is_empty(),
            problem: None,
        }));
        let resolver = (!names.is_empty()).then(|| {
            tokio::spawn(
                Resolver {
                    alias: alias.clone(),
                    names,
                    fixed,
                    dialer,
                    every: config.resolve_every,
                    publish,
                }
                .run(),
            )
        });
        Ok(Self::build(alias, config, set, resolver))
    }

    /// A target whose one endpoint is an in-process service (the host's own router, for
    /// `endpoints = ["local"]`): no socket, the same timeout, retries and limits.
    /// `config.endpoints` is not read.
    pub fn local<S>(alias: &str, config: &OutboundTarget, service: S) -> Self
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let backend = Backend::new("local".into(), None, http_service(service));
        let (_, set) = watch::channel(Arc::new(Snapshot {
            backends: vec![Arc::new(backend)],
            settled: true,
            problem: None,
        }));
        Self::build(alias.into(), config, set, None)
    }

    fn build(
        alias: Arc<str>,
        config: &OutboundTarget,
        set: watch::Receiver<Arc<Snapshot>>,
        resolver: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        let policy = Policy {
            retry: config.retry.clone(),
            throttle: config.retry_throttling.as_ref().map(Throttle::new),
        };
        Self {
            inner: Arc::new(Inner {
                balancer: Balancer::new(alias.clone(), config.load_balancing, set),
                alias,
                timeout: config.timeout,
                policy: Arc::new(policy),
                slots: Arc::new(Semaphore::new(config.max_concurrent_calls)),
                max_concurrent_calls: config.max_concurrent_calls,
                resolver,
            }),
        }
    }

    /// The alias the plugin calls this target by.
    pub fn alias(&self) -> &str {
        &self.inner.alias
    }

    /// Starts one call. Returns once the response headers arrived (or the call failed),
    /// retrying before that as the target's policy allows. Dropping the future cancels
    /// the call.
    pub async fn call(&self, call: OutboundCall) -> Result<OutboundResponse, Status> {
        let inner = &*self.inner;
        let slot = Arc::clone(&inner.slots)
            .try_acquire_owned()
            .map_err(|_| host_status(&inner.alias, Problem::Busy(inner.max_concurrent_calls)))?;
        let timeout = call.timeout.min(inner.timeout).min(LONGEST_CALL);
        let deadline = Instant::now() + timeout;
        let path = method_path(&call.method)
            .ok_or_else(|| host_status(&inner.alias, Problem::NotAMethod(&call.method)))?;
        let replay = Replay::new(call.requests);
        let max_attempts = inner.policy.retry.as_ref().map_or(1, |r| r.max_attempts);
        let (mut attempts, mut sent, mut backoffs) = (0u32, 0u32, 0u32);
        let mut transparent_retry = true;
        let mut last: Option<Arc<Backend>> = None;
        loop {
            let in_flight = match inner.balancer.pick(last.as_ref(), deadline).await {
                Ok(in_flight) => in_flight,
                Err(NoBackend::Deadline) => {
                    return Err(host_status(&inner.alias, Problem::Deadline(timeout)));
                }
                Err(NoBackend::Unresolved(why)) => {
                    return Err(host_status(&inner.alias, Problem::Unresolved(&why)));
                }
            };
            let backend = Arc::clone(in_flight.backend());
            let attempt = inner.attempt(&path, &call.metadata, &replay, sent, deadline, in_flight);
            let outcome = tokio::time::timeout_at(deadline, attempt).await;
            sent += 1;
            let failure = match outcome {
                Err(_) => return Err(host_status(&inner.alias, Problem::Deadline(timeout))),
                Ok(Ok(opened)) => {
                    inner.balancer.record(&backend, false);
                    replay.commit();
                    return Ok(OutboundResponse {
                        headers: opened.headers,
                        messages: opened.messages,
                        trailers: None,
                        deadline,
                        timeout,
                        alias: inner.alias.clone(),
                        address: backend.address.clone(),
                        policy: inner.policy.clone(),
                        open: Some(Open {
                            _cancel: opened.cancel,
                            _in_flight: opened.in_flight,
                            _slot: slot,
                        }),
                    });
                }
                Ok(Err(failure)) => failure,
            };
            let Failure {
                status,
                never_sent,
                expired,
            } = failure;
            if expired {
                return Err(host_status(&inner.alias, Problem::Deadline(timeout)));
            }
            inner
                .balancer
                .record(&backend, status.code() == Code::Unavailable);
            last = Some(backend);
            if !replay.replayable() {
                return Err(status);
            }
            // gRFC A6's transparent retry: a request that never left the host goes to
            // another endpoint at once, once per call, whatever the policy.
            if never_sent && transparent_retry {
                transparent_retry = false;
                continue;
            }
            attempts += 1;
            let retryable = inner.policy.retries(status.code());
            let pushback = retry::pushback(&status);
            if let Some(throttle) = &inner.policy.throttle
                && (retryable || pushback != Pushback::None)
            {
                throttle.failure();
            }
            let throttled = inner
                .policy
                .throttle
                .as_ref()
                .is_some_and(|t| !t.allows_retry());
            if !retryable || attempts >= max_attempts || throttled {
                return Err(status);
            }
            let wait = match (pushback, &inner.policy.retry) {
                (Pushback::Stop, _) | (_, None) => return Err(status),
                (Pushback::After(wait), _) => {
                    backoffs = 0;
                    wait
                }
                (Pushback::None, Some(policy)) => {
                    backoffs += 1;
                    retry::backoff(policy, backoffs)
                }
            };
            if Instant::now() + wait >= deadline {
                return Err(status);
            }
            tokio::time::sleep(wait).await;
        }
    }
}

impl Inner {
    /// One attempt on the backend `in_flight` holds, until its response headers.
    async fn attempt(
        &self,
        path: &PathAndQuery,
        metadata: &MetadataMap,
        replay: &Replay,
        previous: u32,
        deadline: Instant,
        in_flight: InFlight,
    ) -> Result<Opened, Failure> {
        let backend = Arc::clone(in_flight.backend());
        let mut request = tonic::Request::from_parts(
            metadata.clone(),
            tonic::Extensions::default(),
            replay.attempt(),
        );
        if previous > 0 {
            request
                .metadata_mut()
                .insert(PREVIOUS_ATTEMPTS, MetadataValue::from(previous));
        } else {
            request.metadata_mut().remove(PREVIOUS_ATTEMPTS);
        }
        request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        let cancel = CancelOnDrop(Some(request.cancellation_handle()));
        let mut grpc = tonic::client::Grpc::new(backend.service())
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        if let Err(error) = grpc.ready().await {
            return Err(self.failure(&backend, Status::from_error(Box::new(error))));
        }
        match grpc.streaming(request, path.clone(), RawCodec).await {
            Ok(response) => {
                let (headers, messages, _) = response.into_parts();
                Ok(Opened {
                    headers,
                    messages,
                    cancel,
                    in_flight,
                })
            }
            Err(status) => Err(self.failure(&backend, status)),
        }
    }

    /// A failed attempt: the server's status as it sent it, or, when the connection
    /// failed it, a status naming the alias and the endpoint.
    fn failure(&self, backend: &Backend, status: Status) -> Failure {
        if std::error::Error::source(&status).is_none() {
            return Failure {
                status,
                never_sent: false,
                expired: false,
            };
        }
        // No connection could be made, it closed before the stream was opened, or the
        // server turned the stream away unprocessed.
        let never_sent = caused_by(&status, |error| {
            error.is::<tonic::ConnectError>()
                || error
                    .downcast_ref::<hyper::Error>()
                    .is_some_and(hyper::Error::is_canceled)
                || error.downcast_ref::<h2::Error>().is_some_and(unprocessed)
        });
        tracing::debug!(
            "outbound target {}: {}: {status}",
            self.alias,
            backend.address
        );
        Failure {
            status: host_status(
                &self.alias,
                Problem::Transport {
                    address: &backend.address,
                    status: &status,
                    never_sent,
                },
            ),
            never_sent,
            expired: caused_by(&status, |error| error.is::<tonic::TimeoutExpired>()),
        }
    }
}

impl OutboundResponse {
    /// The next response message; `None` at the end (then [`Self::trailers`] has the
    /// trailers). Fails with the server's status, or DEADLINE_EXCEEDED when the call's
    /// time runs out; after the end or a failure, `None`.
    pub async fn message(&mut self) -> Result<Option<Bytes>, Status> {
        if self.open.is_none() {
            return Ok(None);
        }
        match tokio::time::timeout_at(self.deadline, self.messages.message()).await {
            Ok(Ok(Some(message))) => Ok(Some(message)),
            Ok(Ok(None)) => {
                self.trailers = self.messages.trailers().await.ok().flatten();
                self.open = None;
                if let Some(throttle) = &self.policy.throttle {
                    throttle.success();
                }
                Ok(None)
            }
            Ok(Err(status)) => {
                self.open = None;
                self.trailers = Some(status.metadata().clone());
                if let Some(throttle) = &self.policy.throttle
                    && self.policy.retries(status.code())
                {
                    throttle.failure();
                }
                if std::error::Error::source(&status).is_none() {
                    return Err(status);
                }
                Err(host_status(
                    &self.alias,
                    Problem::Transport {
                        address: &self.address,
                        status: &status,
                        never_sent: false,
                    },
                ))
            }
            Err(_) => {
                self.open = None;
                Err(host_status(&self.alias, Problem::Deadline(self.timeout)))
            }
        }
    }

    /// The server's trailers, once [`Self::message`] returned the end or the server's
    /// status (its metadata); `None` before, or when the call ended on the host's side.
    pub fn trailers(&self) -> Option<&MetadataMap> {
        self.trailers.as_ref()
    }
}

/// The status a host-side problem gives the plugin, naming the target's alias.
fn host_status(alias: &str, problem: Problem<'_>) -> Status {
    match problem {
        Problem::Busy(max_concurrent_calls) => Status::resource_exhausted(format!(
            "outbound target {alias}: max_concurrent_calls ({max_concurrent_calls}) calls already in flight"
        )),
        Problem::Deadline(timeout) => Status::deadline_exceeded(format!(
            "outbound target {alias}: no answer within {}",
            plugrpc_runtime::duration(timeout)
        )),
        Problem::Unresolved(why) => Status::unavailable(format!("outbound target {alias}: {why}")),
        Problem::NotAMethod(method) => Status::invalid_argument(format!(
            "outbound target {alias}: {:?} is not a method path (/package.Service/Method)",
            method.chars().take(200).collect::<String>()
        )),
        Problem::Transport {
            address,
            status,
            never_sent,
        } => {
            let code = if never_sent {
                Code::Unavailable
            } else {
                status.code()
            };
            Status::new(
                code,
                format!("outbound target {alias}: {address}: {}", status.message()),
            )
        }
    }
}

/// `method` as a path, if it is `/package.Service/Method`.
fn method_path(method: &str) -> Option<PathAndQuery> {
    let (service, name) = method.strip_prefix('/')?.split_once('/')?;
    if service.is_empty() || name.is_empty() || name.contains('/') || method.contains('?') {
        return None;
    }
    PathAndQuery::try_from(method).ok()
}

/// Whether the server turned a stream away before its application saw it (RFC 9113
/// 8.7): a stream its graceful GOAWAY left out (a host draining, h2 reports those and any
/// stream opened after it with the GOAWAY's NO_ERROR), or one reset with REFUSED_STREAM.
/// gRFC A6 retries those transparently; a GOAWAY with an error may end processed streams
/// too, so it does not count.
fn unprocessed(error: &h2::Error) -> bool {
    error.is_remote()
        && match error.reason() {
            Some(h2::Reason::NO_ERROR) => error.is_go_away(),
            Some(h2::Reason::REFUSED_STREAM) => error.is_reset(),
            _ => false,
        }
}

/// Whether `cause` is among the causes of a transport failure.
fn caused_by(status: &Status, cause: impl Fn(&(dyn std::error::Error + 'static)) -> bool) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if cause(error) {
            return true;
        }
        source = error.source();
    }
    false
}
