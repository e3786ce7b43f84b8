//! The caller capability (`plugrpc:plugin/caller`): the identity the host established
//! for the call, so a plugin can decide by who calls without handling certificates or
//! keys itself (it never sees a matched API key), and the tenant it serves for.

use wasmtime::component::{HasData, Linker};

use crate::bindings::{CallerHost, add_caller_to_linker};
use crate::sandbox::CallState;

/// Links `plugrpc:plugin/caller` to the Store's identity of the call.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    add_caller_to_linker::<CallState, Caller>(linker, |state| Identity {
        identity: state.identity.as_deref(),
        tenant: &state.tenant,
    })
}

/// The [`HasData`] of the caller capability: the call's identity.
struct Caller;

impl HasData for Caller {
    type Data<'a> = Identity<'a>;
}

/// Who the call running in a Store is for: its caller and tenant.
struct Identity<'a> {
    identity: Option<&'a str>,
    tenant: &'a str,
}

impl CallerHost for Identity<'_> {
    fn identity(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.identity.map(str::to_owned))
    }

    fn tenant(&mut self) -> wasmtime::Result<String> {
        Ok(self.tenant.to_owned())
    }
}
