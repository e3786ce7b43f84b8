//! What plugins may import, one module per capability: its linker setup, its per-call
//! state (a field of the Store's `CallState`) and its own config section when it has one.
//! Adding a capability touches its module and the list below.
//!
//! - WASI 0.2 itself, with nothing granted: no files, sockets, environment or arguments
//!   (stdout and stderr belong to `logging`).
//! - [`io`]: the call's input and output (`plugrpc:plugin/call`).
//! - [`caller`]: who is calling (`plugrpc:plugin/caller`).
//! - [`compression`]: how request messages arrived compressed, and whether responses may
//!   be (`plugrpc:plugin/compression`).
//! - [`logging`]: `wasi:logging`, stdout and stderr into the host log.
//! - [`config`]: `wasi:config/store`, the plugin's own config values.
//! - [`kv`]: `wasi:keyvalue` (store, atomics, batch), when granted: the plugin's own
//!   bucket and the tenant's shared buckets its config names, in the host's backend.
//! - [`outbound`]: gRPC calls to other services (`plugrpc:plugin/outbound`), when granted.

pub(crate) mod caller;
pub(crate) mod compression;
pub(crate) mod config;
pub(crate) mod io;
pub(crate) mod kv;
pub(crate) mod logging;
pub(crate) mod outbound;

use wasmtime::component::Linker;

use crate::sandbox::CallState;

/// Adds every capability to the linker all plugins are linked with.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    io::add_to_linker(linker)?;
    caller::add_to_linker(linker)?;
    compression::add_to_linker(linker)?;
    config::add_to_linker(linker)?;
    kv::add_to_linker(linker)?;
    outbound::add_to_linker(linker)?;
    logging::add_to_linker(linker)
}
