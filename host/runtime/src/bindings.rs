//! The one `bindgen!` of the plugin contract; the rest of the runtime uses the re-exports.
#![allow(missing_docs)] // generated from the WIT, whose own docs it carries

wasmtime::component::bindgen!({
    path: "../../guest-sdk/plugrpc-guest/wit",
    world: "plugin",
    imports: {
        "wasi:logging/logging.log": trappable,
        "plugrpc:plugin/call.[method]output.stage-headers": trappable,
        "plugrpc:plugin/call.[method]output.headers-sent": trappable,
        "plugrpc:plugin/caller.identity": trappable,
        "plugrpc:plugin/caller.tenant": trappable,
        "plugrpc:plugin/compression.request-compressed": trappable,
        "plugrpc:plugin/compression.compress-responses": trappable,
        "wasi:config/store.get": trappable,
        "wasi:config/store.get-all": trappable,
        default: async | trappable,
    },
    exports: { default: async },
    with: {
        "plugrpc:plugin/call.input": crate::capabilities::io::Input,
        "plugrpc:plugin/call.output": crate::capabilities::io::Output,
        "plugrpc:plugin/outbound.outgoing-call": crate::capabilities::outbound::OutgoingCall,
        "wasi:keyvalue/store.bucket": crate::capabilities::kv::Bucket,
        "wasi:keyvalue/atomics.cas": crate::capabilities::kv::Cas,
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
pub(crate) use self::plugrpc::plugin::outbound::{
    Host as OutboundHost, HostOutgoingCall as OutgoingCallHost,
    add_to_linker as add_outbound_to_linker,
};
pub(crate) use self::plugrpc::plugin::types::{
    CallInfo, Host as TypesHost, Manifest, add_to_linker as add_types_to_linker,
};
pub use self::plugrpc::plugin::types::{Code, MetadataEntry, Status};
pub(crate) use self::wasi::logging::logging::{
    Host as LoggingHost, Level, add_to_linker as add_logging_to_linker,
};

/// The `wasi:keyvalue` interfaces, under the names the key-value capability uses.
pub(crate) mod keyvalue {
    pub(crate) use super::wasi::keyvalue::atomics::{
        CasError, Host as AtomicsHost, HostCas as CasHost, add_to_linker as add_atomics_to_linker,
    };
    pub(crate) use super::wasi::keyvalue::batch::{
        Host as BatchHost, add_to_linker as add_batch_to_linker,
    };
    pub(crate) use super::wasi::keyvalue::store::{
        Error as KvError, Host as StoreHost, HostBucket as BucketHost, KeyResponse,
        add_to_linker as add_store_to_linker,
    };
}
