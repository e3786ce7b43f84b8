//! The one `bindgen!` of the plugin contract; the rest of the host uses the re-exports.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
    additional_derives: [PartialEq],
    with: {
        "plugrpc:plugin/streams.request-stream": crate::runtime::streams::RequestStream,
        "plugrpc:plugin/streams.response-stream": crate::runtime::streams::ResponseStream,
    },
});

pub(crate) use self::plugrpc::plugin::log::{Host as LogHost, Level};
pub(crate) use self::plugrpc::plugin::streams::{
    Host as StreamsHost, HostRequestStream, HostResponseStream,
};
pub(crate) use self::plugrpc::plugin::types::{
    CallInfo, Code, Host as TypesHost, Manifest, MetadataEntry, Reply, Status,
};
