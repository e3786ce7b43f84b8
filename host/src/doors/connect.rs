//! The Connect protocol (connectrpc.com/docs/protocol), for every plugin method:
//!
//! - unary as a plain POST of one message, `application/proto` or `application/json`
//!   (`content-encoding` compressed), answered with the message, or with an HTTP status
//!   and a JSON error (`{"code","message","details"}`) as Connect maps codes;
//! - unary as a GET (`?encoding=json&message=...`) for methods marked
//!   `idempotency_level = NO_SIDE_EFFECTS`, so browsers and CDNs can cache them;
//! - streaming (all three shapes) as `application/connect+proto` or `+json`: envelopes
//!   both ways (`connect-content-encoding` compressed), ended by a JSON end-stream
//!   envelope carrying the error, if any, and the trailers.
//!
//! Headers the guest sets go out as HTTP headers; on unary calls its trailers go as
//! `trailer-` headers, as the protocol says.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use plugrpc_runtime::{InputError, MethodKind, Received, Response};
use prost::Message as _;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::doors::envelope::{self, Encoding, Inflate};
use crate::doors::front::{self, Front, WEB_FRAMING, guest_metadata};
use crate::doors::grpc::HttpResponse;
use crate::doors::json;
use crate::doors::response::{Ending, EnvelopeBody};
use crate::metrics::Door;
use crate::registry::Route;
use crate::server::Wasted;
use crate::status;
use crate::tally::CallMeter;

/// The flags of Connect's end-stream envelope.
pub(crate) const END_STREAM: u8 = 0x02;

const CONNECT_CONTENT_ENCODING: HeaderName = HeaderName::from_static("connect-content-encoding");
const CONNECT_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("connect-accept-encoding");
const CONNECT_TIMEOUT: &str = "connect-timeout-ms";

/// How a Connect request's messages are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    Proto,
    Json,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Self::Proto => "proto",
            Self::Json => "json",
        }
    }
}

/// Which Connect request a content-type (and method) makes, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `application/proto` or `application/json`, POST.
    Unary(Codec),
    /// `application/connect+proto` or `+json`.
    Streaming(Codec),
}

/// The Connect request `content_type` makes, if it is one.
pub(crate) fn kind(content_type: &[u8]) -> Option<Kind> {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    match essence {
        b"application/proto" => Some(Kind::Unary(Codec::Proto)),
        b"application/json" => Some(Kind::Unary(Codec::Json)),
        b"application/connect+proto" => Some(Kind::Streaming(Codec::Proto)),
        b"application/connect+json" => Some(Kind::Streaming(Codec::Json)),
        _ => None,
    }
}

/// Whether a GET is a Connect unary call: its query names an encoding and a message.
pub(crate) fn is_get(request: &http::request::Parts) -> bool {
    request.method == http::Method::GET
        && request.uri.query().is_some_and(|query| {
            form_urlencoded::parse(query.as_bytes()).any(|(key, _)| key == "message")
        })
}

/// Serves a Connect request of `kind` (or a Connect GET, when `kind` is `None`) on
/// `route`, the one serving its path (none: UNIMPLEMENTED).
pub(crate) async fn serve<B>(
    front: &Front,
    request: http::Request<B>,
    kind: Option<Kind>,
    route: Option<Route>,
) -> HttpResponse
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let (parts, body) = request.into_parts();
    let meter = route
        .as_ref()
        .map(|route| front.meter(route, Door::Connect, &parts.headers))
        .unwrap_or_default();
    let route =
        route.ok_or_else(|| front.unknown(Door::Connect, status::no_route(parts.uri.path())));
    match kind {
        Some(Kind::Streaming(codec)) => streaming(front, parts, body, codec, route, meter).await,
        Some(Kind::Unary(codec)) => whole(
            &meter,
            unary_post(front, &parts, body, codec, route, &meter).await,
        ),
        None => whole(&meter, unary_get(front, &parts, route, &meter).await),
    }
}

/// A unary response, whole: OK, or the error [`error_response`] made, as `meter` counts it.
pub(crate) fn whole(
    meter: &CallMeter,
    response: Result<HttpResponse, HttpResponse>,
) -> HttpResponse {
    match response {
        Ok(response) => {
            meter.end(Code::Ok);
            response
        }
        Err(response) => {
            let code = response
                .extensions()
                .get::<Code>()
                .copied()
                .unwrap_or(Code::Unknown);
            meter.end(code);
            response
        }
    }
}

/// A unary POST: the body is the message.
async fn unary_post<B>(
    front: &Front,
    parts: &http::request::Parts,
    body: B,
    codec: Codec,
    route: Result<Route, Status>,
    meter: &CallMeter,
) -> Result<HttpResponse, HttpResponse>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let unary_error = |status: Status| error_response(&status);
    if parts.method != http::Method::POST {
        let mut response = unary_error(Status::unimplemented(format!(
            "a Connect unary call is a POST (or a GET with ?message=), not a {}",
            parts.method
        )));
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        response
            .headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
        return Err(response);
    }
    let route = route.map_err(unary_error)?;
    if route.kind != MethodKind::Unary {
        return Err(streaming_needed(&route, codec));
    }
    let timeout = timeout(&parts.headers).map_err(unary_error)?;
    let encoding =
        body_encoding(&parts.headers, &http::header::CONTENT_ENCODING).map_err(|status| {
            let mut response = error_response(&status);
            response
                .headers_mut()
                .insert(http::header::ACCEPT_ENCODING, envelope::ACCEPTED);
            response
        })?;
    let caller = front
        .admit(&route, &parts.extensions)
        .map_err(unary_error)?;
    let body = front::read_whole(front, body, &caller, &route)
        .await
        .map_err(unary_error)?;
    let request = Unary {
        route,
        caller,
        timeout,
        codec,
        body,
        encoding,
    };
    unary(front, parts, request, meter).await
}

/// A unary GET: the message is in the query.
async fn unary_get(
    front: &Front,
    parts: &http::request::Parts,
    route: Result<Route, Status>,
    meter: &CallMeter,
) -> Result<HttpResponse, HttpResponse> {
    let query = parts.uri.query().unwrap_or_default();
    let mut message = None;
    let (mut codec, mut base64, mut compression) = (None, false, None);
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "message" => message = Some(value.into_owned()),
            "encoding" => codec = Some(value.into_owned()),
            "base64" => base64 = value == "1",
            "compression" => compression = Some(value.into_owned()),
            _ => {}
        }
    }
    let codec = match codec.as_deref() {
        Some("json") => Codec::Json,
        Some("proto") => Codec::Proto,
        other => {
            return Err(error_response(&Status::invalid_argument(format!(
                "a Connect GET needs encoding=json or encoding=proto, not {other:?}"
            ))));
        }
    };
    let unary_error = |status: Status| error_response(&status);
    let route = route.map_err(unary_error)?;
    if route.kind != MethodKind::Unary {
        return Err(streaming_needed(&route, codec));
    }
    let side_effects = route
        .method
        .method_descriptor_proto()
        .options
        .as_ref()
        .map(|o| o.idempotency_level());
    if side_effects != Some(prost_types::method_options::IdempotencyLevel::NoSideEffects) {
        let mut response = error_response(&Status::unimplemented(format!(
            "{} may have side effects: call it with POST (GET serves methods marked idempotency_level = NO_SIDE_EFFECTS)",
            route.path
        )));
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        response
            .headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
        return Err(response);
    }
    let message = message.unwrap_or_default();
    let message = if base64 {
        let trimmed = message.trim_end_matches('=');
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(trimmed)
            .map_err(|error| {
                unary_error(Status::invalid_argument(format!(
                    "the message parameter is not base64url: {error}"
                )))
            })?
    } else {
        message.into_bytes()
    };
    let encoding = match compression.as_deref() {
        None | Some("identity") => None,
        Some(name) => Some(
            Encoding::from_header(name.as_bytes())
                .ok()
                .flatten()
                .ok_or_else(|| unary_error(unsupported(name)))?,
        ),
    };
    let caller = front
        .admit(&route, &parts.extensions)
        .map_err(unary_error)?;
    if message.len() > route.plugin.limits().max_request_size {
        return Err(unary_error(too_large(&route, message.len())));
    }
    let timeout = timeout(&parts.headers).map_err(unary_error)?;
    let request = Unary {
        route,
        caller,
        timeout,
        codec,
        body: Bytes::from(message),
        encoding,
    };
    unary(front, parts, request, meter).await
}

/// A unary Connect request, read: its route and caller, and its body as it came.
struct Unary {
    route: Route,
    caller: front::Caller,
    timeout: Option<Duration>,
    codec: Codec,
    /// The message as it came, compressed with `encoding` if set.
    body: Bytes,
    encoding: Option<Encoding>,
}

/// Runs a unary call on one request message and answers with its one response message.
async fn unary(
    front: &Front,
    parts: &http::request::Parts,
    request: Unary,
    meter: &CallMeter,
) -> Result<HttpResponse, HttpResponse> {
    let Unary {
        route,
        caller,
        timeout,
        codec,
        body,
        encoding,
    } = request;
    let unary_error = |status: Status| error_response(&status);
    let message = decompress(&route, body, encoding).map_err(unary_error)?;
    let compressed = encoding.is_some();
    let accept = parts.headers.get(http::header::ACCEPT_ENCODING);
    let respond_with = front.response_encoding(&route, encoding, accept);
    let message = match codec {
        Codec::Proto => message,
        Codec::Json => json::to_proto(&route.method.input(), &message).map_err(unary_error)?,
    };
    let metadata = front::metadata_to_guest(
        &MetadataMap::from_headers(parts.headers.clone()),
        WEB_FRAMING,
    );
    let call = front.call(&route, caller, timeout, metadata, meter);
    let requests = futures::stream::once(async move {
        Ok(Received {
            message,
            compressed,
        })
    });
    let (headers, body) = match call.run(Box::pin(requests)).await {
        Response::Failed { metadata, error } => {
            let (status, wasted) = front::failed(&route, meter, metadata, error);
            let mut response = error_response(&status);
            if wasted {
                response.extensions_mut().insert(Wasted);
            }
            return Err(response);
        }
        Response::Started { headers, body } => (headers, body),
    };
    let call_for = front::for_call(&route);
    let headers = guest_metadata(headers, call_for).map_err(unary_error)?;
    let answer = front::unary_answer(&route, meter, body).await;
    if let Some(status) = answer.failed {
        let mut response = error_response(&status);
        add_metadata(response.headers_mut(), headers, "");
        return Err(response);
    }
    let (reply, compress, trailers) = (answer.reply, answer.compress, answer.trailers);
    let reply = match codec {
        Codec::Proto => reply,
        Codec::Json => {
            Bytes::from(json::to_json(&route.method.output(), &reply).map_err(unary_error)?)
        }
    };
    let encoding = respond_with.filter(|_| compress && reply.len() >= front.compress_min_size());
    let reply = match encoding {
        Some(encoding) => {
            let mut compressed = Vec::new();
            encoding
                .compress(&reply, &mut compressed)
                .map_err(|error| unary_error(status::unsendable_message(&error, call_for)))?;
            Bytes::from(compressed)
        }
        None => reply,
    };
    let mut response =
        http::Response::new(tonic::body::Body::new(http_body_util::Full::new(reply)));
    let out = response.headers_mut();
    add_metadata(out, headers, "");
    add_metadata(out, trailers, "trailer-");
    out.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(match codec {
            Codec::Proto => "application/proto",
            Codec::Json => "application/json",
        }),
    );
    if let Some(encoding) = encoding {
        out.insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static(encoding.name()),
        );
    }
    out.insert(http::header::ACCEPT_ENCODING, envelope::ACCEPTED);
    // The answer depends on what the client accepts (a cacheable GET above all).
    out.append(
        http::header::VARY,
        HeaderValue::from_static("accept-encoding"),
    );
    Ok(response)
}

/// A streaming request: envelopes both ways, the end in an end-stream envelope.
async fn streaming<B>(
    front: &Front,
    parts: http::request::Parts,
    body: B,
    codec: Codec,
    route: Result<Route, Status>,
    meter: CallMeter,
) -> HttpResponse
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let content_type = HeaderValue::from_static(match codec {
        Codec::Proto => "application/connect+proto",
        Codec::Json => "application/connect+json",
    });
    // A streaming response always answers 200: the error is in its end-stream envelope.
    let ended = |status: Status| {
        let status = meter.ended(status);
        let end = super::response::framed(END_STREAM, &end_stream_json(&status));
        let mut response =
            http::Response::new(tonic::body::Body::new(http_body_util::Full::new(end)));
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, content_type.clone());
        response
    };
    let route = match route {
        Ok(route) => route,
        Err(status) => return ended(status),
    };
    let timeout = match timeout(&parts.headers) {
        Ok(timeout) => timeout,
        Err(status) => return ended(status),
    };
    let encoding = match parts.headers.get(CONNECT_CONTENT_ENCODING) {
        None => None,
        Some(named) => match Encoding::from_header(named.as_bytes()) {
            Ok(encoding) => encoding,
            Err(()) => return ended(unsupported(&String::from_utf8_lossy(named.as_bytes()))),
        },
    };
    let caller = match front.admit(&route, &parts.extensions) {
        Ok(caller) => caller,
        Err(status) => return ended(status),
    };
    let respond_with =
        front.response_encoding(&route, encoding, parts.headers.get(CONNECT_ACCEPT_ENCODING));
    let envelopes = front.envelopes(body, &caller, &route, encoding);
    let requests: plugrpc_runtime::Requests = match codec {
        Codec::Proto => Box::pin(envelopes),
        Codec::Json => {
            let input = route.method.input();
            Box::pin(envelopes.map(move |received| {
                let received = received?;
                let message = json::to_proto(&input, &received.message)
                    .map_err(|status| InputError::Failed(status::to_guest(&status)))?;
                Ok(Received {
                    message,
                    ..received
                })
            }))
        }
    };
    let metadata = front::metadata_to_guest(&MetadataMap::from_headers(parts.headers), WEB_FRAMING);
    let call = front.call(&route, caller, timeout, metadata, &meter);
    match call.run(requests).await {
        Response::Failed { metadata, error } => {
            let (status, wasted) = front::failed(&route, &meter, metadata, error);
            let mut response = ended(status);
            if wasted {
                response.extensions_mut().insert(Wasted);
            }
            response
        }
        Response::Started { headers, body } => {
            match guest_metadata(headers, front::for_call(&route)) {
                Err(invalid) => ended(invalid),
                Ok(headers) => {
                    let json = (codec == Codec::Json).then(|| route.method.output());
                    let body = EnvelopeBody::new(
                        body,
                        route,
                        respond_with,
                        front.compress_min_size(),
                        Ending::Connect,
                        meter.clone(),
                    )
                    .json(json);
                    let mut response = http::Response::new(tonic::body::Body::new(body));
                    let out = response.headers_mut();
                    add_metadata(out, headers, "");
                    out.insert(http::header::CONTENT_TYPE, content_type);
                    if let Some(encoding) = respond_with {
                        out.insert(
                            CONNECT_CONTENT_ENCODING,
                            HeaderValue::from_static(encoding.name()),
                        );
                    }
                    out.insert(CONNECT_ACCEPT_ENCODING, envelope::ACCEPTED);
                    response
                }
            }
        }
    }
}

/// A streaming method asked for with a unary content-type.
fn streaming_needed(route: &Route, codec: Codec) -> HttpResponse {
    let mut response = error_response(&Status::invalid_argument(format!(
        "{} is a {} method: call it with application/connect+{}",
        route.path,
        route.kind.name(),
        codec.name()
    )));
    *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    response
}

/// `connect-timeout-ms`: up to 10 digits.
fn timeout(headers: &HeaderMap) -> Result<Option<Duration>, Status> {
    let Some(value) = headers.get(CONNECT_TIMEOUT) else {
        return Ok(None);
    };
    let digits = value.as_bytes();
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Status::invalid_argument(format!(
            "malformed connect-timeout-ms {:?}: expected 1 to 10 digits",
            String::from_utf8_lossy(digits)
        )));
    }
    let millis = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Ok(Some(Duration::from_millis(millis)))
}

/// A unary body's encoding, from `header`.
fn body_encoding(headers: &HeaderMap, header: &HeaderName) -> Result<Option<Encoding>, Status> {
    let Some(named) = headers.get(header) else {
        return Ok(None);
    };
    Encoding::from_header(named.as_bytes())
        .map_err(|()| unsupported(&String::from_utf8_lossy(named.as_bytes())))
}

fn unsupported(name: &str) -> Status {
    Status::unimplemented(format!(
        "compression {name:?} is not supported; this host accepts gzip, zstd, deflate and identity"
    ))
}

/// A unary message over `max_request_size`.
fn too_large(route: &Route, size: usize) -> Status {
    Status::resource_exhausted(format!(
        "plugin {}: request message of at least {} is over max_request_size ({})",
        route.plugin.name(),
        plugrpc_runtime::size(size),
        plugrpc_runtime::size(route.plugin.limits().max_request_size)
    ))
}

/// A unary message, decompressed within `max_request_size`.
fn decompress(route: &Route, message: Bytes, encoding: Option<Encoding>) -> Result<Bytes, Status> {
    let Some(encoding) = encoding else {
        return Ok(message);
    };
    let limit = route.plugin.limits().max_request_size;
    encoding.decompress(&message, limit).map_err(|error| match error {
        Inflate::TooLarge => Status::resource_exhausted(format!(
            "plugin {}: request message of {} compressed decompresses past max_request_size ({})",
            route.plugin.name(),
            plugrpc_runtime::size(message.len()),
            plugrpc_runtime::size(limit)
        )),
        corrupt => Status::invalid_argument(format!("the request body {corrupt}")),
    })
}

/// `metadata` added to `headers`, each key behind `prefix`.
pub(crate) fn add_metadata(headers: &mut HeaderMap, metadata: MetadataMap, prefix: &str) {
    for (name, value) in metadata.into_headers().iter() {
        if front::reserved_response_header(name.as_str()) {
            continue;
        }
        let name = format!("{prefix}{name}");
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.append(name, value.clone());
        }
    }
}

/// Connect's name for a code.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status Connect (and google.api's HTTP mapping) gives a code.
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `google.rpc.Status`, to read the details a guest attached to its status.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// A status as Connect's error JSON: code, message, and each detail's type and value.
pub(crate) fn error_json(status: &Status) -> serde_json::Value {
    let mut error = serde_json::json!({ "code": code_name(status.code()) });
    if !status.message().is_empty() {
        error["message"] = status.message().into();
    }
    let details = RpcStatus::decode(status.details())
        .map(|s| s.details)
        .unwrap_or_default();
    if !details.is_empty() {
        error["details"] = details
            .iter()
            .map(|any| {
                serde_json::json!({
                    "type": any.type_url.rsplit('/').next().unwrap_or_default(),
                    "value": base64::engine::general_purpose::STANDARD_NO_PAD.encode(&any.value),
                })
            })
            .collect();
    }
    error
}

/// A unary error: the code's HTTP status, the error as JSON, the status's metadata as
/// headers.
pub(crate) fn error_response(status: &Status) -> HttpResponse {
    let body = serde_json::to_vec(&error_json(status)).unwrap_or_default();
    let mut response = http::Response::new(tonic::body::Body::new(http_body_util::Full::new(
        Bytes::from(body),
    )));
    *response.status_mut() = http_status(status.code());
    // For the call's metrics: the code is not in the response's own words.
    response.extensions_mut().insert(status.code());
    add_metadata(response.headers_mut(), status.metadata().clone(), "");
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The JSON of an end-stream envelope: the error unless OK, and the trailers.
pub(crate) fn end_stream_json(status: &Status) -> Vec<u8> {
    let mut end = serde_json::Map::new();
    if status.code() != Code::Ok {
        end.insert("error".into(), error_json(status));
    }
    let headers = status.metadata().clone().into_headers();
    if !headers.is_empty() {
        let mut metadata = serde_json::Map::new();
        for name in headers.keys() {
            let values: Vec<serde_json::Value> = headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned().into())
                .collect();
            metadata.insert(name.as_str().to_owned(), values.into());
        }
        end.insert("metadata".into(), metadata.into());
    }
    serde_json::to_vec(&end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_pick_the_connect_kind() {
        assert_eq!(kind(b"application/json"), Some(Kind::Unary(Codec::Json)));
        assert_eq!(
            kind(b"application/json; charset=utf-8"),
            Some(Kind::Unary(Codec::Json))
        );
        assert_eq!(kind(b"application/proto"), Some(Kind::Unary(Codec::Proto)));
        assert_eq!(
            kind(b"application/connect+json"),
            Some(Kind::Streaming(Codec::Json))
        );
        assert_eq!(
            kind(b"application/connect+proto"),
            Some(Kind::Streaming(Codec::Proto))
        );
        assert_eq!(kind(b"application/grpc"), None);
        assert_eq!(kind(b"text/plain"), None);
    }

    #[test]
    fn every_code_has_connects_name_and_http_status() {
        assert_eq!(code_name(Code::Cancelled), "canceled");
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
    }

    #[test]
    fn timeouts_are_digits_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(timeout(&headers).unwrap(), None);
        headers.insert(CONNECT_TIMEOUT, HeaderValue::from_static("1500"));
        assert_eq!(
            timeout(&headers).unwrap(),
            Some(Duration::from_millis(1500))
        );
        for bad in ["", "1.5", "-1", "12345678901", "soon"] {
            headers.insert(CONNECT_TIMEOUT, HeaderValue::from_static(bad));
            assert!(timeout(&headers).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_error_carries_its_details_and_the_end_stream_its_trailers() {
        let details = RpcStatus {
            code: 5,
            message: "gone".into(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                value: vec![1, 2, 3],
            }],
        };
        let mut metadata = MetadataMap::new();
        metadata.insert("x-trace", "abc".parse().unwrap());
        let status = Status::with_details_and_metadata(
            Code::NotFound,
            "gone",
            details.encode_to_vec().into(),
            metadata,
        );
        let json = error_json(&status);
        assert_eq!(json["code"], "not_found");
        assert_eq!(json["details"][0]["type"], "google.rpc.ErrorInfo");
        assert_eq!(json["details"][0]["value"], "AQID");
        let end: serde_json::Value = serde_json::from_slice(&end_stream_json(&status)).unwrap();
        assert_eq!(end["error"]["message"], "gone");
        assert_eq!(end["metadata"]["x-trace"][0], "abc");
        let ok: serde_json::Value =
            serde_json::from_slice(&end_stream_json(&Status::ok(""))).unwrap();
        assert_eq!(ok, serde_json::json!({}));
    }
}
