//! End-to-end tests: the host on a loopback port, real gRPC clients, the repo's real
//! plugins. One binary, so that every plugin crate of the repo is a constant here and an
//! unused one fails the build.
#![deny(dead_code)]

mod contract;
mod plugin_folder;
mod python_client;
mod reload;
mod sandbox;
mod users;
mod warm;

/// Every plugin crate of the repo, as built for this run.
mod plugins {
    use plugrpc_tests::declare_plugin;

    plugrpc_tests::foreach_plugin!(declare_plugin);
}
