//! The one interface between generated servers and the export glue.

use crate::context::Context;
use crate::status::Status;
use crate::stream::{RawRequests, RawSink};

/// A protobuf service a plugin serves; implemented by the `<Service>Server` types that
/// `plugrpc_build` generates, which decode, call the author's trait and encode.
pub trait Service {
    /// Fully qualified service name, `package.Service`.
    fn name(&self) -> &'static str;
    /// The encoded FileDescriptorSet the service was generated from.
    fn file_descriptor_set(&self) -> &'static [u8];
    /// Serves a unary `method` (the short name, e.g. `GetUser`).
    fn unary(&self, cx: &Context, method: &str, request: &[u8]) -> Result<Vec<u8>, Status>;
    /// Serves a server-streaming `method`.
    fn server_streaming(
        &self,
        cx: &Context,
        method: &str,
        request: &[u8],
        out: RawSink<'_>,
    ) -> Result<(), Status>;
    /// Serves a client-streaming `method`.
    fn client_streaming(
        &self,
        cx: &Context,
        method: &str,
        input: RawRequests<'_>,
    ) -> Result<Vec<u8>, Status>;
    /// Serves a bidirectional-streaming `method`.
    fn bidi_streaming(
        &self,
        cx: &Context,
        method: &str,
        input: RawRequests<'_>,
        out: RawSink<'_>,
    ) -> Result<(), Status>;
}
