//! What every front door does alike around the call core: the route for the request's
//! path and host, the caller checked against the route's rules before any byte of the
//! body is read, the body bounded by the edge's buffers, the core's request, and the
//! metadata that crosses between HTTP headers and the guest.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use http::HeaderValue;
use plugrpc_runtime::{
    Body, BodyPart, Call, CallError, CallRequest, Limit, MetadataEntry, MethodKind,
};
use tonic::Status;
use tonic::metadata::{
    AsciiMetadataKey, AsciiMetadataValue, BinaryMetadataKey, BinaryMetadataValue, KeyAndValueRef,
    MetadataMap,
};

use crate::config::{CompressionConfig, EdgeConfig};
use crate::doors::envelope::{Encoding, Envelopes};
use crate::doors::request_buffer::{Budget, Buffered};
use crate::hosts::host_of;
use crate::identity::CallerIdentity;
use crate::metrics::Door;
use crate::registry::{Registry, Route};
use crate::server::Peer;
use crate::status::{self, For};
use crate::tally::CallMeter;

/// The routing table and the edge's bounds every door applies.
#[derive(Clone)]
pub(crate) struct Front {
    registry: Arc<Registry>,
    /// The host-wide budget for request messages still arriving.
    buffer: Arc<Budget>,
    message_timeout: Duration,
    stream_idle_timeout: Duration,
    /// Whether responses are compressed at all, and from what size.
    compress_responses: bool,
    compress_min_size: usize,
}

/// Who calls a route, admitted by its rules.
#[derive(Clone)]
pub(crate) struct Caller {
    identity: Option<CallerIdentity>,
    peer: Option<Peer>,
}

impl Front {
    pub(crate) fn new(
        registry: Arc<Registry>,
        edge: &EdgeConfig,
        compression: &CompressionConfig,
    ) -> Self {
        Self {
            registry,
            buffer: Arc::new(Budget::new(
                edge.request_buffer_bytes(),
                "edge.request_buffer",
            )),
            message_timeout: edge.message_timeout,
            stream_idle_timeout: edge.stream_idle_timeout,
            compress_responses: compression.responses,
            compress_min_size: compression.min_size_bytes(),
        }
    }

    /// The routing table.
    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Response messages smaller than this go uncompressed.
    pub(crate) fn compress_min_size(&self) -> usize {
        self.compress_min_size
    }

    /// The route serving `path` for the request's host; UNIMPLEMENTED when none does
    /// (counted as a call of an unknown method on `door`).
    pub(crate) fn route(
        &self,
        path: &str,
        parts: &http::request::Parts,
        door: Door,
    ) -> Result<Route, Status> {
        self.registry
            .lookup(path, || request_host(parts))
            .ok_or_else(|| self.unknown(door, status::no_route(path)))
    }

    /// A call no route serves, counted under `unknown`; `status` is handed back.
    pub(crate) fn unknown(&self, door: Door, status: Status) -> Status {
        if let Some(metrics) = self.registry.metrics() {
            metrics.unknown(door, status.code());
        }
        status
    }

    /// A call of `route` by `door`, counted as started and traced from now (the child
    /// of the caller's span when `headers` carry its trace context).
    pub(crate) fn meter(&self, route: &Route, door: Door, headers: &http::HeaderMap) -> CallMeter {
        CallMeter::new(
            route.metrics.as_ref().map(|metrics| metrics.start(door)),
            self.registry
                .traces()
                .map(|traces| traces.call(headers, route, door)),
        )
    }

    /// The caller, when the route's rules let it call. Before any sandbox or byte of the
    /// body: a refused caller costs nothing more. Not counted as abuse: one tenant's
    /// misconfigured client behind a shared address must not get that address penalized
    /// for every tenant.
    pub(crate) fn admit(
        &self,
        route: &Route,
        extensions: &http::Extensions,
    ) -> Result<Caller, Status> {
        let identity = extensions.get::<CallerIdentity>().cloned();
        route
            .rules
            .check(identity.as_ref().map(|i| &*i.identity))
            .map_err(|denied| status::denied(&denied))?;
        Ok(Caller {
            identity,
            peer: extensions.get::<Peer>().cloned(),
        })
    }

    /// `body` charged to the host's and the connection's budgets while its messages
    /// arrive (`whole`: the body is one message with no envelope).
    pub(crate) fn buffered<B>(&self, body: B, caller: &Caller, whole: bool) -> Buffered<B> {
        let connection = caller.peer.as_ref().map(|peer| peer.buffer.clone());
        let (host, timeout) = (self.buffer.clone(), self.message_timeout);
        if whole {
            Buffered::whole(body, host, connection, timeout)
        } else {
            Buffered::new(body, host, connection, timeout)
        }
    }

    /// The request messages in `body`'s envelopes, bounded by the route's
    /// `max_request_size` as they come and as they inflate.
    pub(crate) fn envelopes<B>(
        &self,
        body: B,
        caller: &Caller,
        route: &Route,
        encoding: Option<Encoding>,
    ) -> Envelopes<Buffered<B>> {
        Envelopes::new(
            self.buffered(body, caller, false),
            encoding,
            route.plugin.limits().max_request_size,
        )
    }

    /// The encoding to compress responses in: one the client accepts, when the host and
    /// the plugin compress at all.
    pub(crate) fn response_encoding(
        &self,
        route: &Route,
        request: Option<Encoding>,
        accept: Option<&HeaderValue>,
    ) -> Option<Encoding> {
        (self.compress_responses && route.plugin.limits().compress_responses)
            .then(|| Encoding::negotiate(request, accept))
            .flatten()
    }

    /// The call core's call for `caller` on `route`, observed by its `meter`.
    pub(crate) fn call(
        &self,
        route: &Route,
        caller: Caller,
        timeout: Option<Duration>,
        mut metadata: Vec<MetadataEntry>,
        meter: &CallMeter,
    ) -> Call {
        let Caller { identity, peer } = caller;
        // The guest's caller is the call's span: its outbound calls are the span's children.
        let trace = meter.trace_context();
        if !trace.is_empty() {
            metadata.retain(|entry| !crate::traces::TRACE_CONTEXT.contains(&entry.key.as_str()));
            metadata.extend(trace);
        }
        let request = CallRequest {
            method: route.path.to_string(),
            timeout,
            metadata,
            peer: peer.as_ref().map(|peer| peer.addr.to_string()),
            // Anonymous callers are told apart by address: one client's many connections
            // share one share.
            caller: match (&identity, &peer) {
                (Some(identity), _) => identity.key.clone(),
                (None, Some(peer)) => peer.anonymous.clone(),
                (None, None) => Arc::default(),
            },
            identity: identity.map(|identity| identity.identity.to_string()),
            tenant: route.tenant.clone(),
            quota: route.quota.clone(),
            idle_timeout: (route.kind != MethodKind::Unary).then_some(self.stream_idle_timeout),
            observer: meter.observer(),
            stop: Some(self.registry.calls_stop()),
        };
        Call::new(route.plugin.clone(), route.kind, request)
    }
}

/// The whole body of a request that is one unframed message (Connect unary,
/// transcoding), charged to the edge's buffers and timed while it arrives; past the
/// route's `max_request_size` it is RESOURCE_EXHAUSTED.
pub(crate) async fn read_whole<B>(
    front: &Front,
    body: B,
    caller: &Caller,
    route: &Route,
) -> Result<Bytes, Status>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt as _;
    let limit = route.plugin.limits().max_request_size;
    let mut body = front.buffered(body, caller, true);
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(Status::from_error)?.into_data() {
            bytes.extend_from_slice(&data);
            if bytes.len() > limit {
                return Err(Status::resource_exhausted(format!(
                    "plugin {}: request message of at least {} is over max_request_size ({})",
                    route.plugin.name(),
                    plugrpc_runtime::size(bytes.len()),
                    plugrpc_runtime::size(limit)
                )));
            }
        }
    }
    Ok(bytes.freeze())
}

/// A unary call's answer, read whole: its one message (and whether the guest let it be
/// compressed), and how it ended: a status unless OK, and the trailers.
pub(crate) struct UnaryAnswer {
    pub(crate) reply: Bytes,
    pub(crate) compress: bool,
    pub(crate) failed: Option<Status>,
    pub(crate) trailers: MetadataMap,
}

/// Reads a started unary call's body to its end (what its error says of the sandbox
/// counted by `meter`; its code is the door's to count, once the response is whole).
pub(crate) async fn unary_answer(route: &Route, meter: &CallMeter, mut body: Body) -> UnaryAnswer {
    let call = for_call(route);
    let mut answer = UnaryAnswer {
        reply: Bytes::new(),
        compress: true,
        failed: None,
        trailers: MetadataMap::new(),
    };
    while let Some(part) = body.next().await {
        match part {
            BodyPart::Message { message, compress } => {
                answer.reply = message;
                answer.compress = compress;
            }
            BodyPart::End { trailers, result } => match guest_metadata(trailers, call) {
                Ok(trailers) => {
                    if let Err(error) = &result {
                        meter.failed(error);
                    }
                    answer.failed = status::end(result, trailers.clone(), call)
                        .filter(|status| status.code() != tonic::Code::Ok);
                    answer.trailers = trailers;
                }
                Err(invalid) => answer.failed = Some(invalid),
            },
        }
    }
    answer
}

/// The host a request names (`:authority`, else `Host`), without its port.
pub(crate) fn request_host(parts: &http::request::Parts) -> Option<String> {
    let authority = match parts.uri.authority() {
        Some(authority) => authority.as_str(),
        None => parts.headers.get(http::header::HOST)?.to_str().ok()?,
    };
    host_of(authority)
}

/// Which call a status is for, to log its cause with.
pub(crate) fn for_call(route: &Route) -> For<'_> {
    For {
        plugin: route.plugin.name(),
        method: &route.path,
    }
}

/// A call that failed before its response started, as its status (the guest's headers
/// and trailers with it), and whether the client made the host do it for nothing (over
/// its share of the plugin), which counts toward the connection's abuse limit. The call
/// ends here for its `meter`.
pub(crate) fn failed(
    route: &Route,
    meter: &CallMeter,
    metadata: Vec<MetadataEntry>,
    error: CallError,
) -> (Status, bool) {
    let wasted = matches!(error, CallError::Limit(Limit::CallerShare { .. }));
    meter.failed(&error);
    let call = for_call(route);
    let status = guest_metadata(metadata, call).map_or_else(
        |invalid| invalid,
        |metadata| status::failed(error, metadata, call),
    );
    (meter.ended(status), wasted)
}

/// Guest metadata as HTTP can carry it; what it cannot is the plugin's fault, INTERNAL.
pub(crate) fn guest_metadata(
    entries: Vec<MetadataEntry>,
    call: For,
) -> Result<MetadataMap, Status> {
    metadata_from_guest(entries).map_err(|invalid| status::invalid_guest_metadata(&invalid, call))
}

/// Response headers the host sets or HTTP itself owns: a guest's header or trailer of one
/// of these names (or prefixes) is dropped, so a plugin cannot break the framing (a
/// `content-length` on a streamed HTTP/1.1 body, a false `content-encoding`) or CORS.
pub(crate) fn reserved_response_header(name: &str) -> bool {
    const NAMES: [&str; 11] = [
        "te",
        "trailer",
        "connection",
        "keep-alive",
        "upgrade",
        "transfer-encoding",
        "proxy-connection",
        "content-length",
        "content-type",
        "content-encoding",
        "accept-encoding",
    ];
    const PREFIXES: [&str; 3] = ["grpc-", "connect-", "access-control-"];
    NAMES.contains(&name) || PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// Headers that belong to HTTP/2 and gRPC framing, not to the application.
pub(crate) const GRPC_FRAMING: &[&str] = &[
    "te",
    "content-type",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
];

/// Headers of HTTP itself and of browsers, which the web doors keep from the guest with
/// their own protocol's framing headers.
pub(crate) const WEB_FRAMING: &[&str] = &[
    "te",
    "content-type",
    "content-length",
    "content-encoding",
    "accept",
    "accept-encoding",
    "accept-language",
    "connection",
    "host",
    "origin",
    "referer",
    "user-agent",
    "cookie",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
    "x-grpc-web",
    "x-user-agent",
    "connect-protocol-version",
    "connect-timeout-ms",
    "connect-content-encoding",
    "connect-accept-encoding",
    "sec-fetch-mode",
    "sec-fetch-site",
    "sec-fetch-dest",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "priority",
    "pragma",
    "cache-control",
];

/// An entry the guest sent that cannot be sent as metadata.
#[derive(Clone, Debug, thiserror::Error)]
#[error("metadata entry {key:?} is invalid: {reason}")]
struct InvalidMetadata {
    key: String,
    reason: &'static str,
}

/// Request metadata as the guest sees it: binary `-bin` values decoded, `framing`
/// headers left out.
pub(crate) fn metadata_to_guest(map: &MetadataMap, framing: &[&str]) -> Vec<MetadataEntry> {
    map.iter()
        .filter_map(|entry| match entry {
            KeyAndValueRef::Ascii(key, value) => {
                Some((key.as_str(), value.as_encoded_bytes().to_vec()))
            }
            // A value that is not valid base64 was never real binary metadata: drop it.
            KeyAndValueRef::Binary(key, value) => {
                value.to_bytes().ok().map(|v| (key.as_str(), v.to_vec()))
            }
        })
        .filter(|(key, _)| !framing.contains(key))
        .map(|(key, value)| MetadataEntry {
            key: key.to_owned(),
            value,
        })
        .collect()
}

/// Guest headers or trailers as a tonic map.
fn metadata_from_guest(entries: Vec<MetadataEntry>) -> Result<MetadataMap, InvalidMetadata> {
    let mut map = MetadataMap::with_capacity(entries.len());
    for MetadataEntry { key, value } in entries {
        let invalid = |reason| InvalidMetadata {
            key: key.clone(),
            reason,
        };
        if key.ends_with("-bin") {
            let name = BinaryMetadataKey::from_bytes(key.as_bytes())
                .map_err(|_| invalid("not a valid header name"))?;
            map.append_bin(name, BinaryMetadataValue::from_bytes(&value));
        } else {
            let name = AsciiMetadataKey::from_bytes(key.as_bytes())
                .map_err(|_| invalid("not a valid header name"))?;
            let value = AsciiMetadataValue::try_from(value.as_slice())
                .map_err(|_| invalid("value is not printable ASCII (use a -bin key for bytes)"))?;
            map.append(name, value);
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &[u8]) -> MetadataEntry {
        MetadataEntry {
            key: key.to_owned(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn binary_values_cross_as_raw_bytes_both_ways() {
        let sent = vec![entry("trace-bin", &[0, 159, 255]), entry("x-id", b"42")];
        let map = metadata_from_guest(sent.clone()).unwrap();
        assert_eq!(
            map.get_bin("trace-bin").unwrap().as_encoded_bytes(),
            b"AJ//"
        );
        let mut back = metadata_to_guest(&map, GRPC_FRAMING);
        back.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(back, sent);
    }

    #[test]
    fn framing_headers_do_not_reach_the_guest() {
        let mut map = MetadataMap::new();
        map.insert("grpc-timeout", "5S".parse().unwrap());
        map.insert("te", "trailers".parse().unwrap());
        map.insert("x-user", "ada".parse().unwrap());
        assert_eq!(
            metadata_to_guest(&map, GRPC_FRAMING),
            vec![entry("x-user", b"ada")]
        );
        map.insert("origin", "https://a.example".parse().unwrap());
        map.insert("connect-timeout-ms", "50".parse().unwrap());
        assert_eq!(
            metadata_to_guest(&map, WEB_FRAMING),
            vec![entry("x-user", b"ada")]
        );
    }

    #[test]
    fn guest_metadata_http_cannot_carry_is_named() {
        let error = metadata_from_guest(vec![entry("bad key", b"v")]).unwrap_err();
        assert!(error.to_string().contains("\"bad key\""), "{error}");
    }
}
