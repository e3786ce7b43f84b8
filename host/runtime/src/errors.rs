//! Why a call produced no answer of the guest's own, sorted for the front door, which
//! turns each into the status its client sees. Nothing here decides that status.

use std::fmt;
use std::time::Duration;

use wasmtime::{Store, Trap};

use crate::bindings::Status;
use crate::capabilities::io::MalformedBatch;
use crate::limits::{Limits, duration, size};
use crate::metadata::InvalidMetadata;
use crate::sandbox::CallState;

/// Why a call did not end with OK.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The guest answered with this status.
    #[error("guest returned status {:?}: {}", .0.code, .0.message)]
    Guest(Status),
    /// The call's deadline passed.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The client went away.
    #[error("client cancelled the call")]
    Cancelled,
    /// A plugin limit stopped the call.
    #[error("{0}")]
    Limit(Limit),
    /// The request stream failed before the guest could read it.
    #[error("the request failed: {:?}: {}", .0.code, .0.message)]
    Request(Status),
    /// A unary or server-streaming call's client half-closed without a request.
    #[error("the client sent no request message")]
    MissingRequest,
    /// A unary or server-streaming call's client sent a second request message.
    #[error("the client sent more than one request message to a {0} method")]
    ExtraRequest(&'static str),
    /// No instance could be made.
    #[error("instantiating the plugin failed: {0:#}")]
    Instantiate(wasmtime::Error),
    /// The guest sent headers or trailers gRPC cannot carry.
    #[error("{0}")]
    InvalidMetadata(InvalidMetadata),
    /// The guest broke the contract (a malformed batch, a wrong number of replies).
    #[error("{0}")]
    Contract(String),
    /// The guest trapped or panicked.
    #[error("the plugin trapped: {0:?}")]
    Trap(wasmtime::Error),
    /// No message went either way for the host's stream idle timeout, this long.
    #[error("no message either way for {}", duration(*.0))]
    StreamIdle(Duration),
    /// The host stopped the calls still running at the end of its shutdown grace.
    #[error("the host is shutting down")]
    ShuttingDown,
}

impl CallError {
    /// Whether a warm instance that ended its call this way may serve another.
    pub(crate) fn leaves_instance_clean(&self) -> bool {
        matches!(self, CallError::Guest(_))
    }

    /// What kind of trap ended the call, for metrics (what the guest did, not where):
    /// `None` unless it trapped.
    pub fn trap_kind(&self) -> Option<&'static str> {
        let CallError::Trap(error) = self else {
            return None;
        };
        Some(match error.downcast_ref::<Trap>() {
            // A Rust guest's panic ends in `unreachable`.
            Some(Trap::UnreachableCodeReached) => "unreachable",
            Some(Trap::MemoryOutOfBounds | Trap::HeapMisaligned | Trap::TableOutOfBounds) => {
                "out_of_bounds"
            }
            Some(
                Trap::IntegerOverflow | Trap::IntegerDivisionByZero | Trap::BadConversionToInteger,
            ) => "arithmetic",
            Some(Trap::IndirectCallToNull | Trap::BadSignature) => "bad_call",
            Some(Trap::StackOverflow) => "stack_overflow",
            Some(_) => "other",
            None => "host",
        })
    }
}

impl Limit {
    /// The config key that sets the limit, as metrics label it.
    pub fn key(&self) -> &'static str {
        match self {
            Limit::Memory { .. } => "memory",
            Limit::CpuTime { .. } => "cpu_time",
            Limit::Stack { .. } => "guest_stack",
            Limit::Concurrency { .. } => "max_concurrent_calls",
            Limit::CallerShare { .. } => "max_caller_share",
            Limit::GroupConcurrency { .. } => "tenant_max_concurrent_calls",
            Limit::GroupMemory { .. } => "tenant_memory",
            Limit::GroupRate { .. } => "tenant_rate",
            Limit::RequestSize { .. } | Limit::RequestInflated { .. } => "max_request_size",
            Limit::ResponseSize { .. } => "max_response_size",
            Limit::Sandboxes => "sandboxes",
        }
    }
}

/// A plugin limit a call ran into; each names the config key that sets it.
#[derive(Debug, PartialEq)]
pub enum Limit {
    /// `memory`: linear memory.
    Memory {
        /// The limit, in bytes.
        limit: usize,
    },
    /// `cpu_time`: time spent running.
    CpuTime {
        /// The budget.
        limit: Duration,
    },
    /// `host.guest_stack`: the wasm stack.
    Stack {
        /// The stack size, in bytes.
        limit: usize,
    },
    /// `max_concurrent_calls` and `max_queued_calls`.
    Concurrency {
        /// Calls running.
        running: usize,
        /// Calls waiting.
        queued: usize,
    },
    /// `max_caller_share`: one caller's share of the slots and the queue.
    CallerShare {
        /// Calls one caller may run.
        running: usize,
        /// Calls one caller may have waiting.
        queued: usize,
    },
    /// A tenant's `max_concurrent_calls` and `max_queued_calls`, over all its plugins.
    GroupConcurrency {
        /// The tenant.
        group: String,
        /// Calls running.
        running: usize,
        /// Calls waiting.
        queued: usize,
    },
    /// A tenant's `memory`: linear memory over all its instances.
    GroupMemory {
        /// The tenant.
        group: String,
        /// The budget, in bytes.
        limit: usize,
    },
    /// A tenant's `rate`: calls a second over all its plugins.
    GroupRate {
        /// The tenant.
        group: String,
        /// The calls a second it may make.
        rate: f64,
    },
    /// `max_request_size`.
    RequestSize {
        /// The message's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// `max_request_size`, passed while decompressing a message.
    RequestInflated {
        /// The message's compressed size.
        compressed: usize,
        /// The limit.
        limit: usize,
    },
    /// `max_response_size`.
    ResponseSize {
        /// The message's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// `host.sandboxes`: every sandbox of the host is taken.
    Sandboxes,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Limit::Memory { limit } => {
                write!(f, "memory limit of {} reached (memory)", size(limit))
            }
            Limit::CpuTime { limit } => {
                write!(
                    f,
                    "CPU time limit of {} reached (cpu_time)",
                    duration(limit)
                )
            }
            Limit::Stack { limit } => {
                write!(
                    f,
                    "guest stack of {} overflowed (host.guest_stack)",
                    size(limit)
                )
            }
            Limit::Concurrency { running, queued } => write!(
                f,
                "{running} calls running and {queued} waiting already (max_concurrent_calls, max_queued_calls)"
            ),
            Limit::CallerShare { running, queued } => write!(
                f,
                "this caller has {running} calls running and {queued} waiting already, its share of the plugin (max_caller_share)"
            ),
            Limit::GroupConcurrency {
                ref group,
                running,
                queued,
            } => write!(
                f,
                "tenant {group} has {running} calls running and {queued} waiting already (tenants.{group}.max_concurrent_calls, tenants.{group}.max_queued_calls)"
            ),
            Limit::GroupMemory { ref group, limit } => write!(
                f,
                "tenant {group}'s memory budget of {} is spent (tenants.{group}.memory)",
                size(limit)
            ),
            Limit::GroupRate { ref group, rate } => write!(
                f,
                "tenant {group} is over its rate of {rate} calls a second (tenants.{group}.rate)"
            ),
            Limit::RequestSize { size: got, limit } => write!(
                f,
                "request message of {} is over max_request_size ({})",
                size(got),
                size(limit)
            ),
            Limit::RequestInflated { compressed, limit } => write!(
                f,
                "request message of {} compressed decompresses past max_request_size ({})",
                size(compressed),
                size(limit)
            ),
            Limit::ResponseSize { size: got, limit } => write!(
                f,
                "response message of {} is over max_response_size ({})",
                size(got),
                size(limit)
            ),
            Limit::Sandboxes => write!(f, "every sandbox of the host is in use"),
        }
    }
}

/// Why the host stopped a guest: raised as a trap from host code, recognised on the way out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Interrupt {
    #[error("deadline exceeded")]
    Deadline,
    #[error("client cancelled the call")]
    Cancelled,
    #[error("CPU time budget spent")]
    CpuTime,
    #[error("request message of {0} bytes is over the limit")]
    RequestTooLarge(usize),
    #[error("request message of {0} bytes compressed decompresses past the limit")]
    RequestInflated(usize),
    #[error("response message of {0} bytes is over the limit")]
    ResponseTooLarge(usize),
    #[error(transparent)]
    InvalidMetadata(#[from] InvalidMetadata),
    #[error(transparent)]
    Malformed(#[from] MalformedBatch),
    #[error("stream idle for {0:?}")]
    StreamIdle(Duration),
}

/// What the host stopping a call for `interrupt` means, under the plugin's `limits`.
pub(crate) fn interrupted(interrupt: &Interrupt, limits: &Limits) -> CallError {
    match interrupt {
        Interrupt::InvalidMetadata(invalid) => CallError::InvalidMetadata(invalid.clone()),
        Interrupt::Malformed(malformed) => CallError::Contract(malformed.to_string()),
        Interrupt::Deadline => CallError::DeadlineExceeded,
        Interrupt::Cancelled => CallError::Cancelled,
        Interrupt::StreamIdle(after) => CallError::StreamIdle(*after),
        Interrupt::CpuTime => CallError::Limit(Limit::CpuTime {
            limit: limits.cpu_time,
        }),
        Interrupt::RequestTooLarge(size) => CallError::Limit(Limit::RequestSize {
            size: *size,
            limit: limits.max_request_size,
        }),
        Interrupt::RequestInflated(size) => CallError::Limit(Limit::RequestInflated {
            compressed: *size,
            limit: limits.max_request_size,
        }),
        Interrupt::ResponseTooLarge(size) => CallError::Limit(Limit::ResponseSize {
            size: *size,
            limit: limits.max_response_size,
        }),
    }
}

/// Why a guest stopped: a host interrupt, a limit it ran into, or a trap of its own.
pub(crate) fn classify(store: &Store<CallState>, error: wasmtime::Error) -> CallError {
    let state = store.data();
    let limits = &state.limits;
    if let Some(interrupt) = error.downcast_ref::<Interrupt>() {
        return interrupted(interrupt, limits);
    }
    if error.is::<wasmtime::PoolConcurrencyLimitError>() {
        return CallError::Limit(Limit::Sandboxes);
    }
    // A guest whose allocation was refused usually aborts: that is the memory limit,
    // its own or its tenant's.
    if let Some(budget) = state.memory.refused_by.as_ref() {
        return CallError::Limit(Limit::GroupMemory {
            group: budget.group.to_string(),
            limit: budget.limit,
        });
    }
    if state.memory.refused {
        return CallError::Limit(Limit::Memory {
            limit: limits.memory,
        });
    }
    if error.downcast_ref::<Trap>() == Some(&Trap::StackOverflow) {
        return CallError::Limit(Limit::Stack {
            limit: state.guest_stack,
        });
    }
    CallError::Trap(error)
}
