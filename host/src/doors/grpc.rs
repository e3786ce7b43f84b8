//! The gRPC front door: finds the route, reads `grpc-timeout`, `grpc-encoding` and the
//! metadata, and turns the request's envelopes into the call core's input and the core's
//! response back into envelopes and trailers (compressing each response message the
//! client, the host and the plugin allow, when it is large enough to gain).
//! All four call shapes take the same path: the core reads a unary request itself and
//! a streaming body carries trailers on success.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::Stream;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;
use plugrpc_runtime::{
    Body, BodyPart, Call, CallError, CallRequest, Limit, MetadataEntry, MethodKind, Response,
};
use tonic::Status;
use tonic::metadata::{
    AsciiMetadataKey, AsciiMetadataValue, BinaryMetadataKey, BinaryMetadataValue, KeyAndValueRef,
    MetadataMap,
};

use crate::config::{CompressionConfig, EdgeConfig};
use crate::doors::envelope::{self, Encoding, Envelopes};
use crate::doors::request_buffer::{Budget, Buffered};
use crate::hosts::host_of;
use crate::identity::CallerIdentity;
use crate::registry::{Registry, Route};
use crate::server::{Peer, Wasted};
use crate::status::{self, For};

/// The request's message encoding.
const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
/// The encodings the client takes responses in.
const GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");
/// Response headers that are the transport's to set, whatever the guest's headers say.
const RESERVED_HEADERS: [&str; 5] = [
    "te",
    "grpc-status",
    "grpc-message",
    "grpc-message-type",
    "grpc-status-details-bin",
];
/// Response bytes gathered before a body frame goes out, when more are ready at once.
const FRAME_BYTES: usize = 32 << 10;

/// Serves every gRPC path the routing table knows; the rest are UNIMPLEMENTED.
#[derive(Clone)]
pub(crate) struct GrpcDoor {
    registry: Arc<Registry>,
    /// The host-wide budget for request messages still arriving.
    buffer: Arc<Budget>,
    message_timeout: Duration,
    stream_idle_timeout: Duration,
    /// Whether responses are compressed at all, and from what size.
    compress_responses: bool,
    compress_min_size: usize,
}

impl GrpcDoor {
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
}

impl<B> tower::Service<http::Request<B>> for GrpcDoor
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let door = self.clone();
        Box::pin(async move { Ok(door.serve(request).await) })
    }
}

impl GrpcDoor {
    async fn serve<B>(&self, request: http::Request<B>) -> http::Response<tonic::body::Body>
    where
        B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    {
        let content_type = request.headers().get(http::header::CONTENT_TYPE);
        if !content_type.is_some_and(|value| is_grpc(value.as_bytes())) {
            return status::not_grpc(content_type);
        }
        if request.version() != http::Version::HTTP_2 {
            return status::not_http2(request.version());
        }
        let path = request.uri().path();
        let host = || {
            let authority = match request.uri().authority() {
                Some(authority) => authority.as_str(),
                None => request.headers().get(http::header::HOST)?.to_str().ok()?,
            };
            host_of(authority)
        };
        let Some(route) = self.registry.lookup(path, host) else {
            return status::no_route(path).into_http();
        };
        let timeout = match timeout_from_headers(request.headers()) {
            Ok(timeout) => timeout,
            Err(error) => return status::malformed_timeout(&error).into_http(),
        };
        let encoding = match request.headers().get(GRPC_ENCODING) {
            None => None,
            Some(named) => match Encoding::from_header(named.as_bytes()) {
                Ok(encoding) => encoding,
                Err(()) => {
                    let mut response = status::unsupported_encoding(named).into_http();
                    response
                        .headers_mut()
                        .insert(GRPC_ACCEPT_ENCODING, envelope::ACCEPTED);
                    return response;
                }
            },
        };
        let identity = request.extensions().get::<CallerIdentity>().cloned();
        // Before any sandbox or byte of the body: a refused caller costs nothing more.
        // Not counted as abuse: one tenant's misconfigured client behind a shared
        // address must not get that address penalized for every tenant.
        if let Err(denied) = route.rules.check(identity.as_ref().map(|i| &*i.identity)) {
            return status::denied(&denied).into_http();
        }
        let respond_with = (self.compress_responses && route.plugin.limits().compress_responses)
            .then(|| Encoding::negotiate(encoding, request.headers().get(GRPC_ACCEPT_ENCODING)))
            .flatten();
        let (parts, body) = request.into_parts();
        let peer = parts.extensions.get::<Peer>().cloned();
        let connection_buffer = peer.as_ref().map(|peer| peer.buffer.clone());
        let body = Buffered::new(
            body,
            self.buffer.clone(),
            connection_buffer,
            self.message_timeout,
        );
        let requests = Envelopes::new(body, encoding, route.plugin.limits().max_request_size);
        let metadata = metadata_to_guest(&MetadataMap::from_headers(parts.headers));
        let caller = Caller {
            identity,
            peer,
            idle_timeout: self.stream_idle_timeout,
        };
        let call = Call::new(
            route.plugin.clone(),
            route.kind,
            caller.request(&route, timeout, metadata),
        );
        let for_call = For {
            plugin: route.plugin.name(),
            method: &route.path,
        };
        match call.run(Box::pin(requests)).await {
            Response::Failed { metadata, error } => {
                let wasted = matches!(error, CallError::Limit(Limit::CallerShare { .. }));
                let status = guest_metadata(metadata, for_call).map_or_else(
                    |invalid| invalid,
                    |metadata| status::failed(error, metadata, for_call),
                );
                let mut response = status.into_http();
                if wasted {
                    response.extensions_mut().insert(Wasted);
                }
                response
            }
            Response::Started { headers, body } => match guest_metadata(headers, for_call) {
                Err(invalid) => invalid.into_http(),
                Ok(headers) => {
                    let mut response = http::Response::new(tonic::body::Body::new(GrpcBody {
                        body,
                        encoding: respond_with,
                        min_size: self.compress_min_size,
                        buffer: BytesMut::new(),
                        trailers: None,
                        ended: false,
                        route,
                    }));
                    let out = response.headers_mut();
                    *out = headers.into_headers();
                    for reserved in RESERVED_HEADERS {
                        out.remove(reserved);
                    }
                    out.insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/grpc"),
                    );
                    if let Some(encoding) = respond_with {
                        out.insert(GRPC_ENCODING, HeaderValue::from_static(encoding.name()));
                    }
                    out.insert(GRPC_ACCEPT_ENCODING, envelope::ACCEPTED);
                    response
                }
            },
        }
    }
}

/// Who calls, as the core needs it: the identity, the connection, and the stream idle
/// timeout.
struct Caller {
    identity: Option<CallerIdentity>,
    peer: Option<Peer>,
    idle_timeout: Duration,
}

impl Caller {
    /// The core's request for a call on `route`.
    fn request(
        self,
        route: &Route,
        timeout: Option<Duration>,
        metadata: Vec<MetadataEntry>,
    ) -> CallRequest {
        CallRequest {
            method: route.path.to_string(),
            timeout,
            metadata,
            peer: self.peer.as_ref().map(|peer| peer.addr.to_string()),
            // Anonymous callers are told apart by address: one client's many connections
            // share one share.
            caller: match (&self.identity, &self.peer) {
                (Some(identity), _) => identity.key.clone(),
                (None, Some(peer)) => peer.anonymous.clone(),
                (None, None) => Arc::default(),
            },
            identity: self.identity.map(|identity| identity.identity.to_string()),
            tenant: route.tenant.clone(),
            quota: route.quota.clone(),
            idle_timeout: (route.kind != MethodKind::Unary).then_some(self.idle_timeout),
        }
    }
}

/// Guest metadata as tonic sends it; what it cannot carry is the plugin's fault, INTERNAL.
fn guest_metadata(entries: Vec<MetadataEntry>, call: For) -> Result<MetadataMap, Status> {
    metadata_from_guest(entries).map_err(|invalid| status::invalid_guest_metadata(&invalid, call))
}

/// Whether a content-type is gRPC's: `application/grpc`, alone or with a `+codec` or
/// parameters.
fn is_grpc(content_type: &[u8]) -> bool {
    content_type
        .strip_prefix(b"application/grpc")
        .is_some_and(|rest| matches!(rest.first(), None | Some(b'+' | b';')))
}

/// The core's response body as gRPC frames it: each message in its envelope (compressed
/// when negotiated, allowed and large enough), then the status as trailers.
struct GrpcBody {
    body: Body,
    /// The response encoding negotiated with the client, if any.
    encoding: Option<Encoding>,
    min_size: usize,
    /// Envelopes not yet handed to the connection.
    buffer: BytesMut,
    /// The trailers, once the end is known and until they go.
    trailers: Option<HeaderMap>,
    ended: bool,
    route: Route,
}

impl GrpcBody {
    /// The trailers that end the response: `grpc-status` and the rest of the status.
    fn trailers(&self, end: Option<Status>) -> HeaderMap {
        let status = end.unwrap_or_else(|| Status::ok(""));
        let mut trailers = HeaderMap::new();
        if let Err(unsendable) = status.add_header(&mut trailers) {
            trailers.clear();
            // A status whose own text cannot be a header: its code still goes.
            let _ = Status::new(unsendable.code(), "").add_header(&mut trailers);
        }
        trailers
    }

    fn for_call(&self) -> For<'_> {
        For {
            plugin: self.route.plugin.name(),
            method: &self.route.path,
        }
    }
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        while this.trailers.is_none() && !this.ended {
            let part = match Pin::new(&mut this.body).poll_next(cx) {
                Poll::Ready(part) => part,
                Poll::Pending if this.buffer.is_empty() => return Poll::Pending,
                Poll::Pending => break,
            };
            match part {
                Some(BodyPart::Message { message, compress }) => {
                    let encoding = this
                        .encoding
                        .filter(|_| compress && message.len() >= this.min_size);
                    if let Err(error) = envelope::write(&mut this.buffer, &message, encoding) {
                        let status = status::unsendable_message(&error, this.for_call());
                        this.trailers = Some(this.trailers(Some(status)));
                    } else if this.buffer.len() >= FRAME_BYTES {
                        break;
                    }
                }
                Some(BodyPart::End { trailers, result }) => {
                    let call = this.for_call();
                    let end = match guest_metadata(trailers, call) {
                        Ok(trailers) => status::end(result, trailers, call),
                        Err(invalid) => Some(invalid),
                    };
                    this.trailers = Some(this.trailers(end));
                }
                None => this.trailers = Some(this.trailers(None)),
            }
        }
        if !this.buffer.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(this.buffer.split().freeze()))));
        }
        match this.trailers.take() {
            Some(trailers) => {
                this.ended = true;
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// The header that carries the client's deadline.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// A `grpc-timeout` value that does not follow the spec.
#[derive(Debug, thiserror::Error)]
#[error("malformed grpc-timeout header {0:?}: expected 1 to 8 digits and one of H M S m u n")]
struct MalformedTimeout(String);

/// The client's timeout, if it sent one.
fn timeout_from_headers(headers: &HeaderMap) -> Result<Option<Duration>, MalformedTimeout> {
    let Some(value) = headers.get(GRPC_TIMEOUT) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    parse_timeout(text)
        .map(Some)
        .ok_or_else(|| MalformedTimeout(String::from_utf8_lossy(value.as_bytes()).into_owned()))
}

/// `TimeoutValue TimeoutUnit`: 1 to 8 ASCII digits, then one of `HMSmun`. Read as bytes,
/// so no input can split a character.
pub(crate) fn parse_timeout(text: &str) -> Option<Duration> {
    let (&unit, digits) = text.as_bytes().split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount = digits
        .iter()
        .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

// gRPC metadata between tonic's maps and the core's entry lists: binary `-bin` values
// cross as raw bytes, framing headers never reach the guest.

/// Headers that belong to HTTP/2 and gRPC framing, not to the application.
const FRAMING_HEADERS: &[&str] = &[
    "te",
    "content-type",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
];

/// An entry the guest sent that cannot be sent as gRPC metadata.
#[derive(Clone, Debug, thiserror::Error)]
#[error("metadata entry {key:?} is invalid: {reason}")]
struct InvalidMetadata {
    key: String,
    reason: &'static str,
}

/// Request metadata as the guest sees it.
fn metadata_to_guest(map: &MetadataMap) -> Vec<MetadataEntry> {
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
        .filter(|(key, _)| !FRAMING_HEADERS.contains(key))
        .map(|(key, value)| MetadataEntry {
            key: key.to_owned(),
            value,
        })
        .collect()
}

/// Guest headers or trailers as a tonic map; tonic strips reserved keys when sending.
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

    #[test]
    fn only_grpc_content_types_are_grpc() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc;charset=x",
        ] {
            assert!(is_grpc(yes.as_bytes()), "{yes}");
        }
        for no in [
            "",
            "text/plain",
            "application/grpc-web",
            "application/grpcx",
            "application/json",
        ] {
            assert!(!is_grpc(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_timeout("1n"), Some(Duration::from_nanos(1)));
        assert_eq!(parse_timeout("0m"), Some(Duration::ZERO));
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in ["", "S", "5", "5s", "123456789S", "-1S", "1.5S", "5 S", "٣S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn absent_header_is_no_timeout_and_bad_header_is_named() {
        let mut headers = HeaderMap::new();
        assert!(timeout_from_headers(&headers).unwrap().is_none());
        headers.insert(GRPC_TIMEOUT, "soon".parse().unwrap());
        assert!(
            timeout_from_headers(&headers)
                .unwrap_err()
                .to_string()
                .contains("\"soon\"")
        );
    }

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
        let mut back = metadata_to_guest(&map);
        back.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(back, sent);
    }

    #[test]
    fn framing_headers_do_not_reach_the_guest() {
        let mut map = MetadataMap::new();
        map.insert("grpc-timeout", "5S".parse().unwrap());
        map.insert("te", "trailers".parse().unwrap());
        map.insert("x-user", "ada".parse().unwrap());
        assert_eq!(metadata_to_guest(&map), vec![entry("x-user", b"ada")]);
    }

    #[test]
    fn guest_metadata_tonic_cannot_carry_is_named() {
        let error = metadata_from_guest(vec![entry("bad key", b"v")]).unwrap_err();
        assert!(error.to_string().contains("\"bad key\""), "{error}");
    }

    proptest::proptest! {
        /// Any text: an answer, never a panic; what parses is 1-8 digits and a unit.
        #[test]
        fn any_timeout_text_parses_or_is_refused(text in "\\PC{0,12}") {
            if parse_timeout(&text).is_some() {
                let (digits, unit) = text.split_at(text.len() - 1);
                proptest::prop_assert!((1..=8).contains(&digits.len()));
                proptest::prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()));
                proptest::prop_assert!("HMSmun".contains(unit));
            }
        }

        /// Every valid value means what it says.
        #[test]
        fn valid_timeouts_mean_their_value(amount in 0u64..100_000_000, unit in 0usize..6) {
            let (letter, nanos) = [
                ("H", 3_600_000_000_000u128),
                ("M", 60_000_000_000),
                ("S", 1_000_000_000),
                ("m", 1_000_000),
                ("u", 1_000),
                ("n", 1),
            ][unit];
            let parsed = parse_timeout(&format!("{amount}{letter}")).unwrap();
            proptest::prop_assert_eq!(parsed.as_nanos(), u128::from(amount) * nanos);
        }
    }
}
