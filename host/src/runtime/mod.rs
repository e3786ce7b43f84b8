//! The wasmtime side of the host: one engine, plugins linked against the contract, and a
//! sandbox per call (fresh, or warm for stateless plugins). Knows nothing of HTTP/2 or
//! routing.

mod admission;
mod bindings;
mod call;
mod engine;
mod output;
mod plugin;
mod sandbox;
mod streams;
mod warm;

pub(crate) use bindings::{Code, MetadataEntry, Reply, Status as GuestStatus};
pub(crate) use call::{CallError, Invocation, Limit, ResponseOut};
pub(crate) use engine::Engine;
pub use engine::EngineError;
pub use plugin::LoadError;
pub(crate) use plugin::{LoadedPlugin, content_hash};
pub(crate) use streams::{Outgoing, ResponseItem, ResponseStream, response_channel};
