//! Front doors: each turns one wire protocol into calls of the runtime's call core and
//! writes their responses back. Today: gRPC over HTTP/2, with compressed messages.

pub(crate) mod envelope;
pub(crate) mod grpc;
pub(crate) mod request_buffer;
