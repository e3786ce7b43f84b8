//! The config capability (`wasi:config/store`): the values the host's config gives a
//! plugin (`[plugins.<name>.config]`), read by the guest as strings. Every plugin has
//! it: it only ever shows a plugin its own values. The values of a call are the plugin's
//! at the call's start, so a config reload reaches the next call, never one half-way.

use wasmtime::component::Linker;
use wasmtime_wasi_config::WasiConfig;

use crate::sandbox::CallState;

/// Links `wasi:config/store` to the values of the Store's call.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi_config::add_to_linker(linker, |state| WasiConfig::new(&state.config))
}
