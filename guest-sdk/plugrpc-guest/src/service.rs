//! The one interface between generated servers and the export glue.

use crate::context::Context;
use crate::status::Status;

/// A protobuf service a plugin serves; implemented by the `<Service>Server` types that
/// `plugrpc_build` generates, which route a method to the author's trait through the
/// SDK's shape adapters.
pub trait Service {
    /// Fully qualified service name, `package.Service`.
    fn name(&self) -> &'static str;
    /// The encoded FileDescriptorSet the service was generated from.
    fn file_descriptor_set(&self) -> &'static [u8];
    /// Serves `method` (the short name, e.g. `GetUser`) through the call's input and
    /// output; a method the service lacks is `UNIMPLEMENTED`.
    fn call(&self, cx: &Context<'_>, method: &str) -> Result<(), Status>;
}
