//! What bounds one plugin's calls, and how an operator reads those bounds. The config
//! parser fills these in; the runtime only enforces them.

use std::fmt;
use std::time::Duration;

use bytesize::ByteSize;

/// Limits for a plugin the config says nothing about.
pub const DEFAULT_LIMITS: Limits = Limits {
    deadline: Duration::from_secs(60),
    max_deadline: Duration::from_secs(3600),
    memory: 64 << 20,
    cpu_time: Duration::from_secs(10),
    max_concurrent_calls: 64,
    max_queued_calls: 256,
    max_caller_share: 50,
    max_request_size: 4 << 20,
    max_response_size: 4 << 20,
    allow_breaking_changes: false,
    reuse_instances: true,
    compress_responses: true,
    max_outbound_calls_per_call: 16,
    max_concurrent_outbound_calls: 64,
};

/// Everything that bounds one plugin's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deadline of a call whose client sent none.
    pub deadline: Duration,
    /// Longest deadline a client may ask for; longer ones are cut to this.
    pub max_deadline: Duration,
    /// Linear memory one instance may grow to, in bytes.
    pub memory: usize,
    /// Time a call may spend executing guest code (waiting on its streams is free).
    pub cpu_time: Duration,
    /// Calls of this plugin running at once.
    pub max_concurrent_calls: usize,
    /// Calls waiting for a free slot; one more is refused at once.
    pub max_queued_calls: usize,
    /// The share, in percent, of the slots and of the queue one caller (an identity, or
    /// an address when none is known) may hold, so one client cannot take a plugin from
    /// the others.
    pub max_caller_share: u8,
    /// Largest request message, in bytes.
    pub max_request_size: usize,
    /// Largest response message, in bytes.
    pub max_response_size: usize,
    /// Whether a reload may break callers (remove methods, change types or fields).
    pub allow_breaking_changes: bool,
    /// Whether a plugin that declares itself stateless is served from reused instances;
    /// `false` gives it a fresh instance per call like any other plugin.
    pub reuse_instances: bool,
    /// Whether the plugin's response messages may be compressed for a client that
    /// accepts it (the host's `[compression]` decides the rest).
    pub compress_responses: bool,
    /// Outbound calls one call may start, so one request cannot fan out without bound.
    pub max_outbound_calls_per_call: usize,
    /// Outbound calls of all the plugin's calls in flight at once.
    pub max_concurrent_outbound_calls: usize,
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deadline {} (max {}), memory {}, cpu_time {}, {} concurrent + {} queued, messages {} in / {} out",
            duration(self.deadline),
            duration(self.max_deadline),
            size(self.memory),
            duration(self.cpu_time),
            self.max_concurrent_calls,
            self.max_queued_calls,
            size(self.max_request_size),
            size(self.max_response_size),
        )
    }
}

/// A size as an operator would write it (`16.0 MiB`).
pub fn size(bytes: usize) -> String {
    ByteSize::b(bytes as u64).display().iec().to_string()
}

/// A duration as an operator would write it (`1h 30m`).
pub fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
