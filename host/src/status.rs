//! Every outcome of a call becomes the gRPC status the client sees, here and nowhere
//! else. Causes are logged once with plugin and method; trap text never reaches clients.

use tonic::Code as WireCode;

use crate::metadata;
use crate::runtime::{CallError, Code, GuestStatus};

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

/// The status for a call that ended in `error`, logged with its cause.
pub(crate) fn to_client(error: CallError, plugin: &str, method: &str) -> tonic::Status {
    match error {
        CallError::Guest(status) => from_guest(status, plugin, method),
        CallError::DeadlineExceeded => {
            tracing::debug!(plugin, method, "deadline exceeded");
            tonic::Status::deadline_exceeded("deadline exceeded")
        }
        CallError::Cancelled => {
            tracing::debug!(plugin, method, "client cancelled the call");
            tonic::Status::cancelled("call cancelled")
        }
        CallError::Limit(limit) => {
            tracing::warn!(plugin, method, "limit reached: {limit}");
            tonic::Status::resource_exhausted(format!("plugin {plugin}: {limit}"))
        }
        CallError::Instantiate(error) => {
            tracing::error!(plugin, method, "instantiating failed: {error:#}");
            tonic::Status::internal(format!("plugin {plugin} could not start"))
        }
        CallError::InvalidMetadata(error) => invalid_guest_metadata(&error, plugin, method),
        CallError::Trap(error) => {
            tracing::error!(plugin, method, "plugin trapped: {error:?}");
            tonic::Status::internal(format!("plugin {plugin} failed while serving {method}"))
        }
    }
}

/// A guest's own status, passed through exactly: code, message, details, trailers.
fn from_guest(status: GuestStatus, plugin: &str, method: &str) -> tonic::Status {
    match metadata::from_guest(status.metadata) {
        Ok(trailers) => tonic::Status::with_details_and_metadata(
            WireCode::from_i32(status.code as i32),
            status.message,
            status.details.into(),
            trailers,
        ),
        Err(error) => invalid_guest_metadata(&error, plugin, method),
    }
}

/// The status for a guest that sent headers or trailers gRPC cannot carry.
pub(crate) fn invalid_guest_metadata(
    error: &metadata::InvalidMetadata,
    plugin: &str,
    method: &str,
) -> tonic::Status {
    tracing::error!(plugin, method, "plugin sent invalid metadata: {error}");
    tonic::Status::internal(format!("plugin {plugin} sent invalid metadata: {error}"))
}

/// The size of a request message tonic refused for being over the decoding limit.
pub(crate) fn oversized_message(status: &tonic::Status) -> Option<usize> {
    // tonic reports it as OUT_OF_RANGE "... length too large: found N bytes, ...".
    if status.code() != WireCode::OutOfRange {
        return None;
    }
    let found = status.message().split_once("length too large: found ")?.1;
    found.split_once(' ')?.0.parse().ok()
}

/// A host-side stream error, as the guest's `next()` reports it.
pub(crate) fn to_guest(status: &tonic::Status) -> GuestStatus {
    GuestStatus {
        code: GUEST_CODES
            .get(status.code() as usize)
            .copied()
            .unwrap_or(Code::Unknown),
        message: status.message().to_owned(),
        details: status.details().to_vec(),
        metadata: Vec::new(),
    }
}

/// Told to a guest that sends headers twice, or after the first message.
pub(crate) fn headers_already_sent() -> GuestStatus {
    guest(
        Code::FailedPrecondition,
        "response headers were already sent".into(),
    )
}

fn guest(code: Code, message: String) -> GuestStatus {
    GuestStatus {
        code,
        message,
        details: Vec::new(),
        metadata: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_code_maps_to_the_guest_code_with_the_same_number() {
        for (number, code) in GUEST_CODES.iter().enumerate() {
            assert_eq!(*code as usize, number);
            let status = tonic::Status::new(WireCode::from_i32(number as i32), "m");
            assert_eq!(to_guest(&status).code, *code);
        }
    }

    #[test]
    fn guest_status_passes_through_with_details_and_trailers() {
        let status = GuestStatus {
            code: Code::NotFound,
            message: "no user 0".into(),
            details: vec![1, 2, 3],
            metadata: vec![crate::runtime::MetadataEntry {
                key: "x-why".into(),
                value: b"gone".to_vec(),
            }],
        };
        let status = to_client(
            CallError::Guest(status),
            "users",
            "/user.v1.UserService/GetUser",
        );
        assert_eq!(status.code(), WireCode::NotFound);
        assert_eq!(status.message(), "no user 0");
        assert_eq!(status.details(), &[1, 2, 3]);
        assert_eq!(status.metadata().get("x-why").unwrap(), "gone");
    }

    #[test]
    fn limits_are_resource_exhausted_naming_the_key() {
        let limit = crate::runtime::Limit::Memory { limit: 32 << 20 };
        let status = to_client(CallError::Limit(limit), "hog", "/a.B/C");
        assert_eq!(status.code(), WireCode::ResourceExhausted);
        assert_eq!(
            status.message(),
            "plugin hog: memory limit of 32.0 MiB reached (memory)"
        );
    }

    #[test]
    fn tonics_oversized_message_error_is_recognised() {
        let tonic_says = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 5242880 bytes, the limit is: 4194304 bytes",
        );
        assert_eq!(oversized_message(&tonic_says), Some(5_242_880));
        assert_eq!(
            oversized_message(&tonic::Status::out_of_range("other")),
            None
        );
        assert_eq!(
            oversized_message(&tonic::Status::internal("length too large: found 1 bytes")),
            None
        );
    }

    #[test]
    fn traps_become_internal_without_trap_text() {
        let status = to_client(
            CallError::Trap(wasmtime::Error::msg("wasm trap: unreachable at 0x1234")),
            "p",
            "/a.B/C",
        );
        assert_eq!(status.code(), WireCode::Internal);
        assert!(!status.message().contains("0x1234"), "{}", status.message());
    }
}
