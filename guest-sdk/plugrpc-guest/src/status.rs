//! gRPC statuses as plugin code writes them, and their crossing to the host.

use std::fmt;

use crate::bindings::plugrpc::plugin::types as wit;
use crate::details::ErrorDetails;
use crate::metadata::Metadata;

/// A gRPC status code: why a call failed, in terms every gRPC client understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// Not an error.
    Ok,
    /// The caller cancelled the call.
    Cancelled,
    /// An error with no better code.
    Unknown,
    /// The request is malformed, whatever the server's state.
    InvalidArgument,
    /// The deadline passed before the call completed.
    DeadlineExceeded,
    /// A requested entity does not exist.
    NotFound,
    /// The entity the caller tried to create exists already.
    AlreadyExists,
    /// The caller may not do this.
    PermissionDenied,
    /// A quota, limit or capacity ran out.
    ResourceExhausted,
    /// The system is not in a state where this call can run.
    FailedPrecondition,
    /// Aborted, typically by a concurrency conflict; retry at a higher level.
    Aborted,
    /// A value is past the valid range.
    OutOfRange,
    /// The operation is not implemented or supported.
    Unimplemented,
    /// An invariant broke inside the server.
    Internal,
    /// Transient: retrying may succeed.
    Unavailable,
    /// Unrecoverable data loss or corruption.
    DataLoss,
    /// The caller has no valid credentials.
    Unauthenticated,
}

impl Code {
    /// The code's number on the wire (`grpc-status`).
    pub fn as_i32(self) -> i32 {
        wit::Code::from(self) as i32
    }

    /// The code with wire number `number`, if there is one (e.g. from a config or a peer).
    pub fn from_i32(number: i32) -> Option<Code> {
        usize::try_from(number)
            .ok()
            .and_then(|n| ALL.get(n))
            .copied()
    }
}

/// A failed call as the client will see it: code, message, optional rich details and
/// trailers.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    code: Code,
    message: String,
    details: Vec<u8>,
    metadata: Metadata,
}

macro_rules! constructors {
    ($($name:ident => $code:ident),* $(,)?) => {
        $(
            #[doc = concat!("A `", stringify!($code), "` status with `message`.")]
            pub fn $name(message: impl Into<String>) -> Self {
                Self::new(Code::$code, message)
            }
        )*
    };
}

impl Status {
    /// A status with `code` and `message` and nothing else.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
            metadata: Metadata::default(),
        }
    }

    constructors! {
        cancelled => Cancelled,
        unknown => Unknown,
        invalid_argument => InvalidArgument,
        deadline_exceeded => DeadlineExceeded,
        not_found => NotFound,
        already_exists => AlreadyExists,
        permission_denied => PermissionDenied,
        resource_exhausted => ResourceExhausted,
        failed_precondition => FailedPrecondition,
        aborted => Aborted,
        out_of_range => OutOfRange,
        unimplemented => Unimplemented,
        internal => Internal,
        unavailable => Unavailable,
        data_loss => DataLoss,
        unauthenticated => Unauthenticated,
    }

    /// Attaches raw `grpc-status-details-bin` bytes (normally an encoded `google.rpc.Status`).
    pub fn with_raw_details(mut self, details: Vec<u8>) -> Self {
        self.details = details;
        self
    }

    /// Attaches the google.rpc rich error model, readable by tonic-types, grpcio-status
    /// and every other client library that understands `grpc-status-details-bin`.
    pub fn with_details(self, details: ErrorDetails) -> Self {
        let bytes = details.encode(self.code, &self.message);
        self.with_raw_details(bytes)
    }

    /// Adds a trailer sent with this status.
    pub fn with_trailer(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.metadata.insert(key, value);
        self
    }

    /// The status code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message for the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The raw details bytes.
    pub fn details(&self) -> &[u8] {
        &self.details
    }

    /// Trailers sent with the status.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for Status {}

impl From<prost::DecodeError> for Status {
    fn from(error: prost::DecodeError) -> Self {
        Status::invalid_argument(format!("request is not a valid protobuf message: {error}"))
    }
}

impl Status {
    /// The contract's status, and the trailers that travel beside it.
    pub(crate) fn into_wit(self) -> (wit::Status, Metadata) {
        let status = wit::Status {
            code: self.code.into(),
            message: self.message,
            details: self.details,
        };
        (status, self.metadata)
    }
}

/// A status the host reported (a failed read or send); it carries no trailers.
impl From<wit::Status> for Status {
    fn from(status: wit::Status) -> Self {
        Status {
            code: status.code.into(),
            message: status.message,
            details: status.details,
            metadata: Metadata::default(),
        }
    }
}

/// The code list, once, in wire order: the conversions to and from the contract's
/// codes, and `ALL` (`ALL[n]` is the code numbered `n`).
macro_rules! code_mapping {
    ($($name:ident),* $(,)?) => {
        const ALL: &[Code] = &[$(Code::$name),*];

        impl From<Code> for wit::Code {
            fn from(code: Code) -> Self {
                match code { $(Code::$name => wit::Code::$name),* }
            }
        }
        impl From<wit::Code> for Code {
            fn from(code: wit::Code) -> Self {
                match code { $(wit::Code::$name => Code::$name),* }
            }
        }
    };
}

code_mapping!(
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_numbers_round_trip() {
        for number in 0..17 {
            assert_eq!(Code::from_i32(number).map(Code::as_i32), Some(number));
        }
        assert_eq!(Code::from_i32(17), None);
        assert_eq!(Code::from_i32(-1), None);
    }
}
