//! Every gRPC status the host produces is built here and nowhere else. Causes are logged
//! once with plugin and method; trap text never reaches clients.

use plugrpc_runtime::{CallError, Code, Status as GuestStatus, duration};
use tonic::Code as WireCode;
use tonic::metadata::MetadataMap;

use crate::authz::Denied;
use crate::throttle;

/// Guest codes in wire order, so a wire code indexes its guest twin.
const GUEST_CODES: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

/// Which call a status is for, to log its cause with.
#[derive(Clone, Copy)]
pub(crate) struct For<'a> {
    pub(crate) plugin: &'a str,
    pub(crate) method: &'a str,
}

/// A request that is not gRPC (its content-type is not `application/grpc...`): HTTP 415,
/// as the gRPC spec asks, so that no other HTTP client (a browser's cross-site form post,
/// say) takes the answer for a success, and nothing reaches a plugin.
pub(crate) fn not_grpc(
    content_type: Option<&http::HeaderValue>,
) -> http::Response<tonic::body::Body> {
    let shown = content_type.map_or_else(
        || "no content-type".to_owned(),
        |value| {
            format!(
                "content-type {:?}",
                String::from_utf8_lossy(value.as_bytes())
            )
        },
    );
    let message = format!("{shown} is not gRPC: application/grpc expected");
    refused_before_grpc(
        http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        tonic::Status::invalid_argument(message),
    )
}

/// A gRPC request over HTTP/1.x: HTTP 505, since gRPC needs HTTP/2's trailers and
/// streams (gRPC-Web, which works over HTTP/1.1, has a content-type of its own).
pub(crate) fn not_http2(version: http::Version) -> http::Response<tonic::body::Body> {
    refused_before_grpc(
        http::StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        tonic::Status::unimplemented(format!(
            "gRPC needs HTTP/2, and this request is {version:?}"
        )),
    )
}

/// A request refused before it is treated as gRPC: an HTTP status a non-gRPC client
/// understands, the gRPC status in the headers, and the message as plain text.
fn refused_before_grpc(
    code: http::StatusCode,
    status: tonic::Status,
) -> http::Response<tonic::body::Body> {
    let message = status.message().to_owned();
    let mut response = status.into_http();
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    *response.body_mut() = tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from(
        message + "\n",
    )));
    response
}

/// No plugin serves the path.
pub(crate) fn no_route(path: &str) -> tonic::Status {
    tonic::Status::unimplemented(format!("no plugin serves {path}"))
}

/// The request's bearer key is none of `[api_keys]`; logged at debug only, since anyone
/// can send one.
pub(crate) fn unknown_api_key() -> tonic::Status {
    tracing::debug!("refused a request whose bearer key is not in [api_keys]");
    tonic::Status::unauthenticated("the bearer key is not one of the host's API keys")
}

/// The route's `allow` rules refuse the caller; the status names neither the rule nor
/// the tenant.
pub(crate) fn denied(denied: &Denied) -> tonic::Status {
    match denied {
        Denied::Anonymous => tonic::Status::unauthenticated(
            "this method needs a caller identity: a client certificate or an API key",
        ),
        Denied::NotAllowed => {
            tonic::Status::permission_denied("the caller may not call this method")
        }
    }
}

/// The request's `grpc-encoding` is one the host does not speak: UNIMPLEMENTED, as the
/// gRPC compression spec asks, naming the ones it does (also sent in
/// `grpc-accept-encoding`).
pub(crate) fn unsupported_encoding(named: &http::HeaderValue) -> tonic::Status {
    tonic::Status::unimplemented(format!(
        "grpc-encoding {:?} is not supported; this host accepts gzip, zstd, deflate and identity",
        String::from_utf8_lossy(named.as_bytes())
    ))
}

/// A response message the host could not frame (compression failed, or it is over the
/// 4 GiB an envelope can carry): INTERNAL, the cause logged.
pub(crate) fn unsendable_message(error: &std::io::Error, call: For) -> tonic::Status {
    tracing::warn!(
        plugin = call.plugin,
        method = call.method,
        "a response message could not be framed: {error}"
    );
    tonic::Status::internal("the host could not send a response message")
}

/// The client's `grpc-timeout` header does not follow the spec.
pub(crate) fn malformed_timeout(error: &impl std::fmt::Display) -> tonic::Status {
    tonic::Status::invalid_argument(error.to_string())
}

/// A call that failed before its response started, with the guest's headers and
/// trailers (`metadata`), sent together in one frame.
pub(crate) fn failed(error: CallError, metadata: MetadataMap, call: For) -> tonic::Status {
    with_metadata(of(error, call), metadata)
}

/// The end of a response body that started: `None` for OK without trailers, which the
/// transport ends with by itself.
pub(crate) fn end(
    result: Result<(), CallError>,
    trailers: MetadataMap,
    call: For,
) -> Option<tonic::Status> {
    if result.is_ok() && trailers.is_empty() {
        return None;
    }
    // An OK-coded status ends a tonic body with its metadata as trailers.
    let status = match result {
        Ok(()) => tonic::Status::new(WireCode::Ok, ""),
        Err(error) => of(error, call),
    };
    Some(with_metadata(status, trailers))
}

/// The status for a call that ended in `error`, logged with its cause.
fn of(error: CallError, call: For) -> tonic::Status {
    let For { plugin, method } = call;
    match error {
        CallError::Guest(status) => tonic::Status::with_details(
            WireCode::from_i32(status.code as i32),
            status.message,
            status.details.into(),
        ),
        CallError::DeadlineExceeded => {
            tracing::debug!(plugin, method, "deadline exceeded");
            tonic::Status::deadline_exceeded("deadline exceeded")
        }
        CallError::Cancelled => {
            tracing::debug!(plugin, method, "client cancelled the call");
            tonic::Status::cancelled("call cancelled")
        }
        CallError::Limit(limit) => {
            if let Some(before) = throttle::allow(plugin, "limit") {
                let before = throttle::left_out(before);
                tracing::warn!(plugin, method, "limit reached: {limit}{before}");
            }
            tonic::Status::resource_exhausted(format!("plugin {plugin}: {limit}"))
        }
        CallError::Request(status) => {
            tracing::debug!(plugin, method, "request stream failed: {}", status.message);
            tonic::Status::with_details(
                WireCode::from_i32(status.code as i32),
                status.message,
                status.details.into(),
            )
        }
        CallError::StreamIdle(after) => {
            tracing::debug!(plugin, method, "stream idle for {}", duration(after));
            tonic::Status::cancelled(format!(
                "no message either way for {} (edge.stream_idle_timeout)",
                duration(after)
            ))
        }
        CallError::ShuttingDown => {
            tracing::debug!(plugin, method, "stopped by the host's shutdown");
            tonic::Status::unavailable("the host is shutting down")
        }
        CallError::MissingRequest => {
            tonic::Status::internal("the client half-closed without sending a request message")
        }
        CallError::ExtraRequest(kind) => tonic::Status::internal(format!(
            "the client sent more than one request message to a {kind} method"
        )),
        CallError::Instantiate(error) => {
            if let Some(before) = throttle::allow(plugin, "instantiate") {
                let before = throttle::left_out(before);
                tracing::error!(plugin, method, "instantiating failed: {error:#}{before}");
            }
            tonic::Status::internal(format!("plugin {plugin} could not start"))
        }
        CallError::InvalidMetadata(error) => invalid_guest_metadata(&error, call),
        CallError::Contract(broken) => {
            if let Some(before) = throttle::allow(plugin, "contract") {
                let before = throttle::left_out(before);
                tracing::error!(
                    plugin,
                    method,
                    "plugin broke the contract: {broken}{before}"
                );
            }
            tonic::Status::internal(format!("plugin {plugin} failed while serving {method}"))
        }
        CallError::Trap(error) => {
            if let Some(before) = throttle::allow(plugin, "trap") {
                let before = throttle::left_out(before);
                tracing::error!(plugin, method, "plugin trapped: {error:?}{before}");
            }
            tonic::Status::internal(format!("plugin {plugin} failed while serving {method}"))
        }
    }
}

/// The status for a guest that sent headers or trailers gRPC cannot carry.
pub(crate) fn invalid_guest_metadata(error: &impl std::fmt::Display, call: For) -> tonic::Status {
    let For { plugin, method } = call;
    if let Some(before) = throttle::allow(plugin, "metadata") {
        let before = throttle::left_out(before);
        tracing::error!(
            plugin,
            method,
            "plugin sent invalid metadata: {error}{before}"
        );
    }
    tonic::Status::internal(format!("plugin {plugin} sent invalid metadata: {error}"))
}

fn with_metadata(status: tonic::Status, metadata: MetadataMap) -> tonic::Status {
    if metadata.is_empty() {
        return status;
    }
    tonic::Status::with_details_and_metadata(
        status.code(),
        status.message(),
        status.details().to_vec().into(),
        metadata,
    )
}

/// A transport-side stream error, as the guest's `read` reports it.
pub(crate) fn to_guest(status: &tonic::Status) -> GuestStatus {
    GuestStatus {
        code: GUEST_CODES
            .get(status.code() as usize)
            .copied()
            .unwrap_or(Code::Unknown),
        message: status.message().to_owned(),
        details: status.details().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use plugrpc_runtime::Limit;

    use super::*;

    const CALL: For<'static> = For {
        plugin: "users",
        method: "/user.v1.UserService/GetUser",
    };

    fn map(entries: &[(&'static str, &'static str)]) -> MetadataMap {
        let mut map = MetadataMap::new();
        for (key, value) in entries {
            map.insert(*key, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn every_wire_code_maps_to_the_guest_code_with_the_same_number() {
        for (number, code) in GUEST_CODES.iter().enumerate() {
            assert_eq!(*code as usize, number);
            let status = tonic::Status::new(WireCode::from_i32(number as i32), "m");
            assert_eq!(to_guest(&status).code, *code);
        }
    }

    #[test]
    fn guest_status_passes_through_with_details_headers_and_trailers() {
        let status = GuestStatus {
            code: Code::NotFound,
            message: "no user 0".into(),
            details: vec![1, 2, 3],
        };
        let metadata = map(&[("x-header", "h"), ("x-why", "gone")]);
        let status = failed(CallError::Guest(status), metadata, CALL);
        assert_eq!(status.code(), WireCode::NotFound);
        assert_eq!(status.message(), "no user 0");
        assert_eq!(status.details(), &[1, 2, 3]);
        assert_eq!(status.metadata().get("x-why").unwrap(), "gone");
        assert_eq!(status.metadata().get("x-header").unwrap(), "h");
    }

    #[test]
    fn an_ok_end_without_trailers_is_left_to_the_transport() {
        assert!(end(Ok(()), MetadataMap::new(), CALL).is_none());
        let end = end(Ok(()), map(&[("x-n", "1")]), CALL).unwrap();
        assert_eq!(end.code(), WireCode::Ok);
        assert_eq!(end.metadata().get("x-n").unwrap(), "1");
    }

    #[test]
    fn limits_are_resource_exhausted_naming_the_key() {
        let limit = Limit::Memory { limit: 32 << 20 };
        let status = failed(
            CallError::Limit(limit),
            MetadataMap::new(),
            For {
                plugin: "hog",
                method: "/a.B/C",
            },
        );
        assert_eq!(status.code(), WireCode::ResourceExhausted);
        assert_eq!(
            status.message(),
            "plugin hog: memory limit of 32.0 MiB reached (memory)"
        );
    }

    #[test]
    fn traps_become_internal_without_trap_text() {
        let status = failed(
            CallError::Trap(wasmtime_error("wasm trap: unreachable at 0x1234")),
            MetadataMap::new(),
            CALL,
        );
        assert_eq!(status.code(), WireCode::Internal);
        assert!(!status.message().contains("0x1234"), "{}", status.message());
    }

    fn wasmtime_error(text: &'static str) -> wasmtime::Error {
        wasmtime::Error::msg(text)
    }
}
