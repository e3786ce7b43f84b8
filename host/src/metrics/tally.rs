//! One call's tally: started when its route is found, ended once with its code (or as
//! cancelled, when the client left and the call was dropped unended), and the runtime's
//! observer of its sandbox meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use plugrpc_runtime::{CallError, CallObserver};

use super::{MethodMetrics, PluginMetrics};

/// The metrics of one call.
#[derive(Debug)]
pub(crate) struct Tally {
    method: Arc<MethodMetrics>,
    plugin: Arc<PluginMetrics>,
    start: Instant,
    ended: AtomicBool,
}

impl Tally {
    pub(super) fn new(method: Arc<MethodMetrics>, plugin: Arc<PluginMetrics>) -> Self {
        Self {
            method,
            plugin,
            start: Instant::now(),
            ended: AtomicBool::new(false),
        }
    }

    /// The call ended with `code`: counted once, whichever path reports it first.
    fn end(&self, code: tonic::Code) {
        if self.ended.swap(true, Ordering::Relaxed) {
            return;
        }
        self.method.handled(code);
        self.method
            .handling
            .observe(self.start.elapsed().as_secs_f64());
    }

    /// What a call's error says of its sandbox: a limit, a trap, its deadline, a
    /// cancellation (a guest's own status says nothing of it).
    fn failed(&self, error: &CallError) {
        match error {
            CallError::Limit(limit) => self.plugin.limit(limit.key()),
            CallError::Trap(_) => self.plugin.trap(error.trap_kind().unwrap_or("other")),
            CallError::Instantiate(_) => self.plugin.trap("instantiate"),
            CallError::Contract(_) | CallError::InvalidMetadata(_) => {
                self.plugin.trap("contract");
            }
            CallError::DeadlineExceeded => self.plugin.deadline_kill(),
            CallError::Cancelled | CallError::StreamIdle(_) => self.plugin.cancellation(),
            CallError::Guest(_)
            | CallError::Request(_)
            | CallError::MissingRequest
            | CallError::ExtraRequest(_) => {}
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        // Dropped unended: the client left (reset the stream, closed the connection)
        // before the call's end went out.
        if !*self.ended.get_mut() {
            self.plugin.cancellation();
            self.end(tonic::Code::Cancelled);
        }
    }
}

impl CallObserver for Tally {
    fn admitted(&self, waited: Duration) {
        self.plugin.queue_wait.observe(waited.as_secs_f64());
    }

    fn sandbox(&self, warm: bool) {
        if warm {
            self.plugin.warm_hits.inc();
        } else {
            self.plugin.instances.inc();
        }
    }

    fn received(&self) {
        self.method.received.inc();
    }

    fn sent(&self) {
        self.method.sent.inc();
    }

    fn used(&self, cpu: Duration, memory: usize) {
        self.plugin.cpu.inc_by(cpu.as_secs_f64());
        let memory = i64::try_from(memory).unwrap_or(i64::MAX);
        self.plugin
            .memory_peak
            .inner()
            .fetch_max(memory, Ordering::Relaxed);
    }

    fn kv_operation(&self, op: &'static str, keys: usize) {
        self.plugin.kv_operation(op, keys);
    }

    fn kv_bytes(&self, read: usize, written: usize) {
        if read > 0 {
            self.plugin.kv_read.inc_by(read as u64);
        }
        if written > 0 {
            self.plugin.kv_written.inc_by(written as u64);
        }
    }
}

/// A call's tally when metrics are on; every method does nothing when they are off.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallMeter(Option<Arc<Tally>>);

impl CallMeter {
    /// Tallies the call in `tally`.
    pub(crate) fn new(tally: Option<Arc<Tally>>) -> Self {
        Self(tally)
    }

    /// The call ended with `code`.
    pub(crate) fn end(&self, code: tonic::Code) {
        if let Some(tally) = &self.0 {
            tally.end(code);
        }
    }

    /// The call ended with `status`, which is handed back.
    pub(crate) fn ended(&self, status: tonic::Status) -> tonic::Status {
        self.end(status.code());
        status
    }

    /// The call failed with `error`: what it says of the sandbox is counted (the code is
    /// counted when the status goes out).
    pub(crate) fn failed(&self, error: &CallError) {
        if let Some(tally) = &self.0 {
            tally.failed(error);
        }
    }

    /// The runtime's observer of the call.
    pub(crate) fn observer(&self) -> Option<Arc<dyn CallObserver>> {
        self.0.clone().map(|tally| tally as Arc<dyn CallObserver>)
    }
}
