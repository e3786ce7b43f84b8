//! plugrpc: a gRPC server whose handlers are WebAssembly components.
//!
//! The host loads every plugin in a folder, routes each `/package.Service/Method` by the
//! plugin's own descriptors, and runs every call in a fresh wasmtime sandbox. A failing
//! plugin becomes a gRPC status, never a host crash.
#![forbid(unsafe_code)]

mod compat;
mod config;
mod metadata;
mod registry;
mod runtime;
mod server;
mod status;
mod watch;

pub use config::{
    ConfigError, DEFAULT_GUEST_STACK, DEFAULT_LIMITS, DEFAULT_LISTEN, DEFAULT_PLUGINS_DIR,
    DEFAULT_SANDBOXES, HostConfig, LimitOverrides, Limits, MAX_SANDBOXES,
};
pub use registry::{LoadReport, LoadedSummary, Refusal, RegistryError};
pub use runtime::{EngineError, LoadError};
pub use server::{Host, HostError};
