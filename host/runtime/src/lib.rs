//! The plugrpc runtime: one wasmtime engine, plugins linked against the contract, and
//! one call core that runs every call shape in a sandbox of its own (fresh, or warm for
//! stateless plugins) under its deadline, CPU budget and memory cap.
//!
//! It knows calls, limits and capabilities; it does not know HTTP, gRPC framing or any
//! other wire format (Cargo keeps it that way: none of those crates is a dependency).
//! Front doors turn their wire format into a [`Call`] with its [`Requests`] and write the
//! [`Response`] back.
#![forbid(unsafe_code)]

mod admission;
mod bindings;
mod call;
mod capabilities;
mod engine;
mod errors;
mod limits;
mod metadata;
mod observe;
mod plugin;
mod quota;
mod sandbox;
mod warm;

pub use bindings::{Code, MetadataEntry, Status};
pub use call::{Body, BodyPart, Call, CallRequest, MethodKind, Response};
pub use capabilities::io::{InputError, Received, Requests};
pub use capabilities::kv::{
    Backend, BackendError, DEFAULT_KV_LIMITS, KvGrant, KvLimits, Namespace,
};
pub use capabilities::outbound::{DialFailure, DialRequest, Dialer, Dialing, OutboundGrant, Reply};
pub use engine::{Engine, EngineConfig, EngineError};
pub use errors::{CallError, Limit};
pub use limits::{DEFAULT_LIMITS, Limits, duration, size};
pub use metadata::InvalidMetadata;
pub use observe::CallObserver;

pub use plugin::{CONTRACT, ConfigValues, Grants, Inspection, LoadError, Plugin, content_hash};
pub use quota::{CPU_WINDOW, Quota, QuotaLimits};
pub use sandbox::Deadline;
