//! The gRPC front door: finds the route, reads `grpc-timeout`, `grpc-encoding` and the
//! metadata, and turns the request's envelopes into the call core's input and the core's
//! response back into envelopes and trailers (compressing each response message the
//! client, the host and the plugin allow, when it is large enough to gain).
//! All four call shapes take the same path: the core reads a unary request itself and
//! a streaming body carries trailers on success.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use plugrpc_runtime::Response;
use tonic::metadata::MetadataMap;

use crate::doors::envelope::{self, Encoding};
use crate::doors::front::{self, Front, GRPC_FRAMING, guest_metadata};
use crate::doors::response::{Ending, EnvelopeBody};
use crate::metrics::Door;
use crate::server::Wasted;
use crate::status;

/// The request's message encoding.
pub(crate) const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
/// The encodings the client takes responses in.
pub(crate) const GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");
/// A response as the doors send it.
pub(crate) type HttpResponse = http::Response<tonic::body::Body>;

/// Serves a gRPC request (HTTP/2, `application/grpc...`) on the route its path names.
pub(crate) async fn serve<B>(front: &Front, request: http::Request<B>) -> HttpResponse
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    if request.version() != http::Version::HTTP_2 {
        return status::not_http2(request.version());
    }
    let (parts, body) = request.into_parts();
    serve_envelopes(front, parts, body, Ending::Trailers).await
}

/// Serves a request whose body is gRPC envelopes (gRPC, and gRPC-Web once its body is
/// binary), ending the response as `ending` says.
pub(crate) async fn serve_envelopes<B>(
    front: &Front,
    parts: http::request::Parts,
    body: B,
    ending: Ending,
) -> HttpResponse
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let door = match ending {
        Ending::Trailers => Door::Grpc,
        _ => Door::GrpcWeb,
    };
    let path = parts.uri.path();
    let route = match front.route(path, &parts, door) {
        Ok(route) => route,
        Err(status) => return status.into_http(),
    };
    let meter = front.meter(&route, door, &parts.headers);
    let timeout = match timeout_from_headers(&parts.headers) {
        Ok(timeout) => timeout,
        Err(error) => return meter.ended(status::malformed_timeout(&error)).into_http(),
    };
    let encoding = match request_encoding(&parts.headers) {
        Ok(encoding) => encoding,
        Err(status) => {
            let mut response = meter.ended(status).into_http();
            response
                .headers_mut()
                .insert(GRPC_ACCEPT_ENCODING, envelope::ACCEPTED);
            return response;
        }
    };
    let caller = match front.admit(&route, &parts.extensions) {
        Ok(caller) => caller,
        Err(status) => return meter.ended(status).into_http(),
    };
    let respond_with =
        front.response_encoding(&route, encoding, parts.headers.get(GRPC_ACCEPT_ENCODING));
    let requests = front.envelopes(body, &caller, &route, encoding);
    let content_type = parts.headers.get(http::header::CONTENT_TYPE).cloned();
    let metadata = front::metadata_to_guest(
        &MetadataMap::from_headers(parts.headers),
        if ending == Ending::Trailers {
            GRPC_FRAMING
        } else {
            front::WEB_FRAMING
        },
    );
    let call = front.call(&route, caller, timeout, metadata, &meter);
    match call.run(Box::pin(requests)).await {
        Response::Failed { metadata, error } => {
            let (status, wasted) = front::failed(&route, &meter, metadata, error);
            let mut response = status.into_http();
            if let Some(content_type) = content_type.filter(|_| ending != Ending::Trailers) {
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_TYPE, content_type);
            }
            if wasted {
                response.extensions_mut().insert(Wasted);
            }
            response
        }
        Response::Started { headers, body } => {
            match guest_metadata(headers, front::for_call(&route)) {
                Err(invalid) => meter.ended(invalid).into_http(),
                Ok(headers) => {
                    let body = EnvelopeBody::new(
                        body,
                        route,
                        respond_with,
                        front.compress_min_size(),
                        ending,
                        meter,
                    );
                    let mut response = http::Response::new(tonic::body::Body::new(body));
                    let out = response.headers_mut();
                    *out = headers.into_headers();
                    let reserved: Vec<_> = out
                        .keys()
                        .filter(|name| front::reserved_response_header(name.as_str()))
                        .cloned()
                        .collect();
                    for name in reserved {
                        out.remove(name);
                    }
                    out.insert(
                        http::header::CONTENT_TYPE,
                        content_type
                            .filter(|_| ending != Ending::Trailers)
                            .unwrap_or(HeaderValue::from_static("application/grpc")),
                    );
                    if let Some(encoding) = respond_with {
                        out.insert(GRPC_ENCODING, HeaderValue::from_static(encoding.name()));
                    }
                    out.insert(GRPC_ACCEPT_ENCODING, envelope::ACCEPTED);
                    response
                }
            }
        }
    }
}

/// The request's `grpc-encoding`; an encoding the host does not speak is UNIMPLEMENTED
/// with the ones it does, as the gRPC spec asks.
fn request_encoding(headers: &HeaderMap) -> Result<Option<Encoding>, tonic::Status> {
    let Some(named) = headers.get(GRPC_ENCODING) else {
        return Ok(None);
    };
    Encoding::from_header(named.as_bytes()).map_err(|()| status::unsupported_encoding(named))
}

/// Whether what follows a gRPC content-type's base says protobuf: nothing, `+proto`, or
/// parameters (the doors speak no other codec; `+json` is refused as not gRPC).
pub(crate) fn protobuf_suffix(rest: &[u8]) -> bool {
    let rest = rest.strip_prefix(b"+proto").unwrap_or(rest);
    matches!(rest.first(), None | Some(b';'))
}

/// Whether a content-type is gRPC's (protobuf): `application/grpc`, alone or with
/// `+proto` or parameters.
pub(crate) fn is_grpc(content_type: &[u8]) -> bool {
    content_type
        .strip_prefix(b"application/grpc")
        .is_some_and(protobuf_suffix)
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
