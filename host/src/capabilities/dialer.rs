//! The outbound capability's host side: one [`PluginDialer`] per plugin with
//! `[...outbound.<alias>]` tables, turning the runtime's [`DialRequest`] into a call on
//! the alias's [`Target`] (pooled channels, balancing, retries, TLS), and `local` into a
//! call through the host's own stack, in process, as the plugin's own identity
//! (`plugin:<tenant>/<name>`), so the callee's `allow` rules decide as for any caller.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use plugrpc_runtime::{
    Code, DialFailure, DialRequest, Dialer, Dialing, MetadataEntry, Reply, Status,
};
use tonic::metadata::{AsciiMetadataKey, BinaryMetadataKey, MetadataMap, MetadataValue};
use tower::util::BoxCloneSyncService;

use crate::config::{Endpoints, OutboundTarget};
use crate::doors::request_buffer::Budget;
use crate::identity::CallerIdentity;
use crate::metrics::PluginMetrics;
use crate::outbound::{OutboundCall, OutboundResponse, Target, TargetError};
use crate::server::Peer;
use crate::traces::{OutboundSpan, TRACE_CONTEXT, Traces};

/// Request bytes a local call may buffer at once, as a connection of the host's own.
const LOCAL_BUFFER: usize = 16 << 20;

/// Metadata a plugin may not set on an outbound call: HTTP's and gRPC's own, in any case.
fn reserved(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.starts_with("grpc-")
        || key.starts_with(':')
        || matches!(
            key.as_str(),
            "te" | "content-type"
                | "content-length"
                | "connection"
                | "host"
                | "user-agent"
                | "transfer-encoding"
                | "upgrade"
                | "keep-alive"
                | "proxy-connection"
        )
}

/// The host's own stack, for `local` calls; set once the host serves.
pub(crate) type LocalStack = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    Infallible,
>;

/// Where `local` calls go: the host's stack, once [`LocalDoor::open`] gave it. Held
/// weakly: the stack holds the registry, which holds this door, and the host must be
/// able to go (its key-value store closed) when it stops serving.
#[derive(Clone, Default)]
pub(crate) struct LocalDoor(Arc<OnceLock<Weak<LocalStack>>>);

impl LocalDoor {
    /// Lets local calls through `stack` for as long as the caller keeps it.
    pub(crate) fn open(&self, stack: &Arc<LocalStack>) {
        let _ = self.0.set(Arc::downgrade(stack));
    }

    /// The stack, while the host serves.
    fn stack(&self) -> Option<LocalStack> {
        self.0
            .get()
            .and_then(Weak::upgrade)
            .map(|stack| (*stack).clone())
    }
}

/// One plugin's targets, by alias.
pub(crate) struct PluginDialer {
    targets: HashMap<String, (Target, Arc<[String]>)>,
    /// Where the plugin's outbound calls are counted, by target and code.
    metrics: Option<Arc<PluginMetrics>>,
    /// Where each outbound call's span goes.
    traces: Option<Arc<Traces>>,
}

impl PluginDialer {
    /// The targets `tables` grant `tenant`'s plugin `name`; `local` ones go through `door`
    /// as requests for `authority` (a host the tenant answers for), when it has one.
    pub(crate) fn new(
        tables: &std::collections::BTreeMap<String, OutboundTarget>,
        tenant: &str,
        name: &str,
        authority: Option<http::uri::Authority>,
        door: &LocalDoor,
        metrics: Option<Arc<PluginMetrics>>,
        traces: Option<Arc<Traces>>,
    ) -> Result<Self, TargetError> {
        let mut targets = HashMap::new();
        for (alias, config) in tables {
            let target = match config.endpoints {
                Endpoints::Local => {
                    let caller = LocalCaller::new(door, tenant, name, authority.clone());
                    Target::local(alias, config, caller)
                }
                _ => Target::new(alias, config)?,
            };
            let propagate: Arc<[String]> = TRACE_CONTEXT
                .iter()
                .map(|key| (*key).to_owned())
                .chain(config.propagate_metadata.iter().cloned())
                .collect();
            targets.insert(alias.clone(), (target, propagate));
        }
        Ok(Self {
            targets,
            metrics,
            traces,
        })
    }
}

impl Dialer for PluginDialer {
    fn dial(&self, target: &str, request: DialRequest) -> Result<Dialing, Status> {
        let alias = target;
        let Some((target, propagate)) = self.targets.get(alias) else {
            let mut granted: Vec<&str> = self.targets.keys().map(String::as_str).collect();
            granted.sort_unstable();
            return Err(status(
                Code::PermissionDenied,
                format!(
                    "target {target:?} is not granted to this plugin (its config grants {})",
                    granted.join(", ")
                ),
            ));
        };
        let mut metadata = outbound_metadata(&request.metadata, &request.inbound, propagate)?;
        // The call's span, child of the calling call's; the callee sees it as its caller.
        let span = self
            .traces
            .as_ref()
            .map(|traces| traces.outbound(&request.inbound, alias, &request.method, &mut metadata));
        let call = OutboundCall {
            method: request.method,
            metadata,
            timeout: request.timeout,
            requests: request.requests,
        };
        let target = target.clone();
        let mut tally = OutboundTally {
            metrics: self.metrics.clone(),
            span,
            target: alias.to_owned(),
            deadline: std::time::Instant::now() + request.timeout,
            ended: false,
        };
        Ok(Box::pin(async move {
            match target.call(call).await {
                Ok(response) => Ok(Box::new(Response { response, tally }) as Box<dyn Reply>),
                // A trailers-only answer's metadata is its trailers.
                Err(error) => {
                    tally.ended(error.code());
                    Err(DialFailure {
                        status: from_tonic(&error),
                        trailers: entries(error.metadata()),
                    })
                }
            }
        }))
    }
}

/// The metadata of an outbound call: the plugin's own entries, then each propagated key
/// of the calling call the plugin did not set itself.
fn outbound_metadata(
    own: &[MetadataEntry],
    inbound: &[MetadataEntry],
    propagate: &[String],
) -> Result<MetadataMap, Status> {
    let mut map = MetadataMap::new();
    for entry in own {
        if reserved(&entry.key) {
            return Err(status(
                Code::InvalidArgument,
                format!(
                    "metadata {:?} is the host's to set on an outbound call",
                    entry.key
                ),
            ));
        }
        append(&mut map, entry)?;
    }
    for entry in inbound {
        if propagate.contains(&entry.key) && !own.iter().any(|mine| mine.key == entry.key) {
            append(&mut map, entry)?;
        }
    }
    Ok(map)
}

/// Adds one entry, `-bin` keys as bytes.
fn append(map: &mut MetadataMap, entry: &MetadataEntry) -> Result<(), Status> {
    let invalid = || {
        status(
            Code::InvalidArgument,
            format!("metadata {:?} is not a valid gRPC header", entry.key),
        )
    };
    if entry.key.ends_with("-bin") {
        let key = BinaryMetadataKey::from_bytes(entry.key.as_bytes()).map_err(|_| invalid())?;
        map.append_bin(key, MetadataValue::from_bytes(&entry.value));
    } else {
        let key = AsciiMetadataKey::from_bytes(entry.key.as_bytes()).map_err(|_| invalid())?;
        let value = std::str::from_utf8(&entry.value)
            .ok()
            .and_then(|text| MetadataValue::try_from(text).ok())
            .ok_or_else(invalid)?;
        map.append(key, value);
    }
    Ok(())
}

/// Where one outbound call is counted and traced when it ends, once: with its code,
/// or, dropped before (the calling call gave up on it, dialing or reading), as its
/// deadline or a cancellation.
struct OutboundTally {
    metrics: Option<Arc<PluginMetrics>>,
    span: Option<OutboundSpan>,
    target: String,
    deadline: std::time::Instant,
    ended: bool,
}

impl OutboundTally {
    fn ended(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        if let Some(metrics) = &self.metrics {
            metrics.outbound(&self.target, code);
        }
        if let Some(span) = &self.span {
            span.end(code);
        }
    }
}

impl Drop for OutboundTally {
    fn drop(&mut self) {
        let code = if std::time::Instant::now() >= self.deadline {
            tonic::Code::DeadlineExceeded
        } else {
            tonic::Code::Cancelled
        };
        self.ended(code);
    }
}

/// A response, as the runtime reads it, counted when it ends.
struct Response {
    response: OutboundResponse,
    tally: OutboundTally,
}

impl Reply for Response {
    fn headers(&self) -> Vec<MetadataEntry> {
        entries(&self.response.headers)
    }

    fn message(
        &mut self,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Bytes>, Status>> + Send + '_>> {
        Box::pin(async move {
            let message = self.response.message().await;
            let end = match &message {
                Ok(Some(_)) => None,
                Ok(None) => Some(tonic::Code::Ok),
                Err(error) => Some(error.code()),
            };
            if let Some(code) = end {
                self.tally.ended(code);
            }
            message.map_err(|error| from_tonic(&error))
        })
    }

    fn trailers(&self) -> Vec<MetadataEntry> {
        self.response.trailers().map(entries).unwrap_or_default()
    }
}

/// Metadata as the plugin sees it: `-bin` values decoded, the rest as sent.
fn entries(map: &MetadataMap) -> Vec<MetadataEntry> {
    map.iter()
        .filter_map(|entry| match entry {
            tonic::metadata::KeyAndValueRef::Ascii(key, value) => Some(MetadataEntry {
                key: key.as_str().to_owned(),
                value: value.as_bytes().to_vec(),
            }),
            tonic::metadata::KeyAndValueRef::Binary(key, value) => Some(MetadataEntry {
                key: key.as_str().to_owned(),
                value: value.to_bytes().ok()?.to_vec(),
            }),
        })
        .filter(|entry| !reserved(&entry.key))
        .collect()
}

/// A status for the plugin.
fn status(code: Code, message: String) -> Status {
    Status {
        code,
        message,
        details: Vec::new(),
    }
}

/// A tonic status as the plugin sees it: code, message and details kept.
fn from_tonic(error: &tonic::Status) -> Status {
    Status {
        code: code_of(error.code()),
        message: error.message().to_owned(),
        details: error.details().to_vec(),
    }
}

/// The contract's code for a tonic code.
fn code_of(code: tonic::Code) -> Code {
    use tonic::Code as T;
    match code {
        T::Ok => Code::Ok,
        T::Cancelled => Code::Cancelled,
        T::Unknown => Code::Unknown,
        T::InvalidArgument => Code::InvalidArgument,
        T::DeadlineExceeded => Code::DeadlineExceeded,
        T::NotFound => Code::NotFound,
        T::AlreadyExists => Code::AlreadyExists,
        T::PermissionDenied => Code::PermissionDenied,
        T::ResourceExhausted => Code::ResourceExhausted,
        T::FailedPrecondition => Code::FailedPrecondition,
        T::Aborted => Code::Aborted,
        T::OutOfRange => Code::OutOfRange,
        T::Unimplemented => Code::Unimplemented,
        T::Internal => Code::Internal,
        T::Unavailable => Code::Unavailable,
        T::DataLoss => Code::DataLoss,
        T::Unauthenticated => Code::Unauthenticated,
    }
}

/// The host's stack as one plugin calls it: every request carries the plugin's identity
/// as its peer, as a client certificate would, and names a host of the plugin's tenant,
/// so a tenant told apart by `hosts` reaches its own services.
#[derive(Clone)]
struct LocalCaller {
    door: LocalDoor,
    peer: Peer,
    authority: Option<http::uri::Authority>,
}

impl LocalCaller {
    fn new(
        door: &LocalDoor,
        tenant: &str,
        name: &str,
        authority: Option<http::uri::Authority>,
    ) -> Self {
        let identity = format!("plugin:{tenant}/{name}");
        Self {
            door: door.clone(),
            authority,
            peer: Peer {
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                buffer: Arc::new(Budget::new(LOCAL_BUFFER, "local calls")),
                identity: Some(CallerIdentity::new(&identity)),
                anonymous: Arc::from(format!("local:{identity}")),
            },
        }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for LocalCaller {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        request.extensions_mut().insert(self.peer.clone());
        // The tenant's own host, never one the plugin names.
        request.headers_mut().remove(http::header::HOST);
        if let Some(authority) = &self.authority {
            let mut parts = request.uri().clone().into_parts();
            parts.scheme = Some(http::uri::Scheme::HTTP);
            parts.authority = Some(authority.clone());
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
        let stack = self.door.stack();
        Box::pin(async move {
            match stack {
                Some(mut stack) => {
                    use tower::ServiceExt as _;
                    stack.ready().await?.call(request).await
                }
                None => Ok(tonic::Status::unavailable("the host is not serving").into_http()),
            }
        })
    }
}
