//! Write plugrpc plugins in plain blocking Rust.
//!
//! A plugin's `build.rs` calls `plugrpc_build::compile`, which turns its `.proto` files into
//! message types and one trait per service. The plugin implements those traits and names
//! the generated servers in [`export!`]. Everything that crosses the host boundary
//! (bytes, metadata, statuses, streams) is handled here, so plugin code never sees the WIT
//! contract.
//!
//! # When messages leave
//!
//! Crossing into the host costs, so response messages are batched: [`Sink::send`] encodes
//! into a per-call buffer, and the buffer goes to the host when it holds 64 KiB, when the
//! handler reads a request message that has not arrived yet, when the handler calls
//! [`Sink::flush`], and when the handler returns. A handler that pauses between messages
//! and wants each one seen before the pause calls [`Sink::flush`] after sending it.
//!
//! Response headers set with [`Context::set_header`] go out with the first messages that
//! leave, at a read that has to wait for the client, at [`Context::send_headers`], or with
//! the call's end.

#[doc(hidden)]
pub mod bindings {
    //! The one `generate!` of the contract; only the SDK's own modules use it directly.
    #![allow(missing_docs, unreachable_pub, unsafe_code)]
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        default_bindings_module: "plugrpc_guest::bindings",
        export_macro_name: "__export_plugin",
        generate_all,
    });
}

mod config;
mod context;
pub mod details;
mod export;
mod io;
pub mod kv;
pub mod log;
mod manifest;
mod metadata;
pub mod outbound;
mod service;
mod shape;
mod status;
mod stream;

pub use config::{Config, FromConfig};
pub use context::Context;
pub use metadata::Metadata;
pub use prost;
pub use service::Service;
pub use status::{Code, Status};
pub use stream::{Requests, Sink};

/// Includes the Rust code `plugrpc_build::compile` generated for one protobuf package.
///
/// `plugrpc_guest::include_proto!("user.v1");` brings in the package's messages and, per
/// service, a module `<service>_server` with the trait to implement and the server type
/// to name in [`export!`].
#[macro_export]
macro_rules! include_proto {
    ($package:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $package, ".rs"));
    };
}

#[doc(hidden)]
pub mod __private {
    //! Used by generated code and macros; not a stable API.
    pub use crate::export::{Plugin, build, handle};
    pub use crate::manifest::describe;
    pub use crate::shape::{bidi_streaming, client_streaming, server_streaming, unary};
}
