//! End-to-end tests: the host on a loopback port, real gRPC clients, the repo's real
//! plugins. One binary, so that every plugin crate of the repo is a constant here and an
//! unused one fails the build.
#![deny(dead_code)]

mod admin;
mod browser;
mod builtin;
mod contract;
mod deploy;
mod edge;
mod frontdesk;
mod inspect;
mod interop;
mod keyvalue;
mod lifecycle;
mod metrics;
mod node_clients;
mod outbound;
mod plugin_folder;
mod python_client;
mod reload;
mod sandbox;
mod sources;
mod tenants;
mod tls;
mod traces;
mod users;
mod warm;
mod web;

/// A constant per plugin crate of the repo, as built for this run. Declared by a macro of
/// this crate, not the support library's: rustc does not report dead code in items an
/// external macro makes, and an unused one must fail the build.
macro_rules! declare_tested_plugin {
    ($constant:ident, $name:literal, $wasm:literal) => {
        #[doc = concat!("The `", $name, "` plugin crate.")]
        pub(crate) const $constant: plugrpc_tests::Plugin = plugrpc_tests::Plugin {
            name: $name,
            wasm: $wasm,
        };
    };
}

/// Every plugin crate of the repo, as built for this run.
mod plugins {
    plugrpc_tests::foreach_plugin!(declare_tested_plugin);
}
