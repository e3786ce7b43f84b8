//! The four gRPC call shapes, as a method's descriptor declares them. The call core runs
//! them all one way; the shape only says how many messages go each way.

use prost_reflect::MethodDescriptor;

/// How a method is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodKind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, one response.
    ClientStreaming,
    /// Streams both ways.
    BidiStreaming,
}

impl MethodKind {
    /// The kind `method` declares.
    pub fn of(method: &MethodDescriptor) -> Self {
        match (method.is_client_streaming(), method.is_server_streaming()) {
            (false, false) => Self::Unary,
            (false, true) => Self::ServerStreaming,
            (true, false) => Self::ClientStreaming,
            (true, true) => Self::BidiStreaming,
        }
    }

    /// How an operator reads it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unary => "unary",
            Self::ServerStreaming => "server-streaming",
            Self::ClientStreaming => "client-streaming",
            Self::BidiStreaming => "bidi-streaming",
        }
    }

    /// Whether the client sends exactly one request (read before the guest starts).
    pub fn one_request(self) -> bool {
        matches!(self, Self::Unary | Self::ServerStreaming)
    }

    /// Whether a successful call answers exactly one message.
    pub fn one_response(self) -> bool {
        matches!(self, Self::Unary | Self::ClientStreaming)
    }
}
