//! plugrpc: a gRPC server whose handlers are WebAssembly components.
//!
//! The host loads every plugin in a folder, routes each `/package.Service/Method` by the
//! plugin's own descriptors, and runs every call in a sandbox of its own through the
//! runtime's call core (`plugrpc-runtime`). A failing plugin becomes a gRPC status,
//! never a host crash.
#![forbid(unsafe_code)]

mod admin;
mod authz;
mod builtin;
mod capabilities;
pub mod check;
mod compat;
mod config;
pub mod dev;
mod doors;
mod error_line;
mod hosts;
mod identity;
pub mod inspect;
mod metrics;
pub mod oci;
pub mod outbound;
mod registry;
mod reload;
pub mod scaffold;
mod server;
mod sources;
mod status;
mod tally;
mod throttle;
mod tls;
mod traces;
mod watch;

pub use capabilities::CapabilityError;
pub use config::{
    AdminListen, ClientAuth, CompressionConfig, ConfigError, ConfigValue, CorsConfig,
    DEFAULT_ADMIN_LISTEN, DEFAULT_DATA_DIR, DEFAULT_DRAIN_DELAY, DEFAULT_GUEST_STACK,
    DEFAULT_LISTEN, DEFAULT_PLUGINS_DIR, DEFAULT_SANDBOXES, DEFAULT_SHUTDOWN_GRACE, DEFAULT_TENANT,
    EdgeConfig, HostConfig, Invalid, KeyHash, KvBackendKind, KvConfig, KvTable, LimitOverrides,
    MAX_SANDBOXES, OciSource, OutboundTarget, TenantConfig, TlsConfig, TracingConfig,
};
pub use error_line::one_line;
pub use plugrpc_runtime::{CONTRACT, CPU_WINDOW, DEFAULT_LIMITS, Limits, LoadError};
pub use registry::{LoadReport, LoadedSummary, Refusal, RefusalReason, RegistryError};
pub use reload::{ReloadError, Reloader};
pub use server::{Host, HostError};
pub use sources::SourcesError;
pub use tls::TlsError;
pub use traces::TracingError;
