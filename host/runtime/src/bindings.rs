//! The one `bindgen!` of the plugin contract; the rest of the runtime uses the re-exports.
#![allow(missing_docs)] // generated from the WIT, whose own docs it carries

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    imports: {
        "wasi:logging/logging.log": trappable,
        "plugrpc:plugin/call.[method]output.stage-headers": trappable,
        "plugrpc:plugin/call.[method]output.headers-sent": trappable,
        "plugrpc:plugin/caller.identity": trappable,
        "plugrpc:plugin/caller.tenant": trappable,
        "plugrpc:plugin/compression.request-compressed": trappable,
        "plugrpc:plugin/compression.compress-responses": trappable,
        default: async | trappable,
    },
    exports: { default: async },
    additional_derives: [PartialEq],
    with: {
        "plugrpc:plugin/call.input": crate::capabilities::io::Input,
        "plugrpc:plugin/call.output": crate::capabilities::io::Output,
    },
});

pub(crate) use self::plugrpc::plugin::call::{
    Host as CallHost, HostInput, HostOutput, Outcome, add_to_linker as add_call_to_linker,
};
pub(crate) use self::plugrpc::plugin::caller::{
    Host as CallerHost, add_to_linker as add_caller_to_linker,
};
pub(crate) use self::plugrpc::plugin::compression::{
    Host as CompressionHost, add_to_linker as add_compression_to_linker,
};
pub(crate) use self::plugrpc::plugin::types::{
    CallInfo, Host as TypesHost, Manifest, add_to_linker as add_types_to_linker,
};
pub use self::plugrpc::plugin::types::{Code, MetadataEntry, Status};
pub(crate) use self::wasi::logging::logging::{
    Host as LoggingHost, Level, add_to_linker as add_logging_to_linker,
};
