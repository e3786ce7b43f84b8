//! One call's tally: its metrics and its span, started when its route is found, ended
//! once with its code (or as cancelled, when the client left and the call was dropped
//! unended), and the runtime's observer of its sandbox meanwhile (queueing,
//! instantiation and the guest become child spans).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use plugrpc_runtime::{CallError, CallObserver, MetadataEntry};

use crate::metrics::Counts;
use crate::traces::CallSpan;

/// What one call is counted and traced by.
#[derive(Debug)]
pub(crate) struct Tally {
    counts: Option<Counts>,
    span: Option<CallSpan>,
    start: Instant,
    ended: AtomicBool,
}

impl Tally {
    /// The call ended with `code`: counted once, whichever path reports it first.
    fn end(&self, code: tonic::Code) {
        if self.ended.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Some(counts) = &self.counts {
            counts.method.handled(code);
            counts
                .method
                .handling
                .observe(self.start.elapsed().as_secs_f64());
        }
        if let Some(span) = &self.span {
            span.end(code);
        }
    }

    /// What a call's error says of its sandbox: a limit, a trap, its deadline, a
    /// cancellation (a guest's own status says nothing of it).
    fn failed(&self, error: &CallError) {
        let Some(Counts { plugin, .. }) = &self.counts else {
            return;
        };
        match error {
            CallError::Limit(limit) => plugin.limit(limit.key()),
            CallError::Trap(_) => plugin.trap(error.trap_kind().unwrap_or("other")),
            CallError::Instantiate(_) => plugin.trap("instantiate"),
            CallError::Contract(_) | CallError::InvalidMetadata(_) => plugin.trap("contract"),
            CallError::DeadlineExceeded => plugin.deadline_kill(),
            CallError::Cancelled | CallError::StreamIdle(_) | CallError::ShuttingDown => {
                plugin.cancellation()
            }
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
            if let Some(counts) = &self.counts {
                counts.plugin.cancellation();
            }
            self.end(tonic::Code::Cancelled);
        }
    }
}

impl CallObserver for Tally {
    fn admitted(&self, waited: Duration) {
        if let Some(counts) = &self.counts {
            counts.plugin.queue_wait.observe(waited.as_secs_f64());
        }
        if let Some(span) = &self.span {
            span.child("queue", waited, Vec::new());
        }
    }

    fn sandbox(&self, warm: bool, took: Duration) {
        if let Some(counts) = &self.counts {
            if warm {
                counts.plugin.warm_hits.inc();
            } else {
                counts.plugin.instances.inc();
            }
        }
        if let (Some(span), false) = (&self.span, warm) {
            span.child("instantiate", took, Vec::new());
        }
    }

    fn received(&self) {
        if let Some(counts) = &self.counts {
            counts.method.received.inc();
        }
    }

    fn sent(&self) {
        if let Some(counts) = &self.counts {
            counts.method.sent.inc();
        }
    }

    fn used(&self, ran: Duration, cpu: Duration, memory: usize) {
        let memory = i64::try_from(memory).unwrap_or(i64::MAX);
        if let Some(counts) = &self.counts {
            counts.plugin.cpu.inc_by(cpu.as_secs_f64());
            counts
                .plugin
                .memory_peak
                .inner()
                .fetch_max(memory, Ordering::Relaxed);
        }
        if let Some(span) = &self.span {
            span.child(
                "guest",
                ran,
                vec![
                    KeyValue::new("plugrpc.cpu_seconds", cpu.as_secs_f64()),
                    KeyValue::new("plugrpc.memory_bytes", memory),
                ],
            );
        }
    }

    fn kv_operation(&self, op: &'static str, keys: usize) {
        if let Some(counts) = &self.counts {
            counts.plugin.kv_operation(op, keys);
        }
    }

    fn kv_bytes(&self, read: usize, written: usize) {
        if let Some(counts) = &self.counts {
            if read > 0 {
                counts.plugin.kv_read.inc_by(read as u64);
            }
            if written > 0 {
                counts.plugin.kv_written.inc_by(written as u64);
            }
        }
    }
}

/// A call's tally when the host counts or traces; every method does nothing otherwise.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallMeter(Option<Arc<Tally>>);

impl CallMeter {
    /// Tallies a call into `counts` and `span`, from now.
    pub(crate) fn new(counts: Option<Counts>, span: Option<CallSpan>) -> Self {
        if counts.is_none() && span.is_none() {
            return Self(None);
        }
        Self(Some(Arc::new(Tally {
            counts,
            span,
            start: Instant::now(),
            ended: AtomicBool::new(false),
        })))
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

    /// The call's W3C trace context, for the guest to see as its caller's: empty when
    /// the host does not trace.
    pub(crate) fn trace_context(&self) -> Vec<MetadataEntry> {
        self.0
            .as_ref()
            .and_then(|tally| tally.span.as_ref())
            .map(CallSpan::trace_context)
            .unwrap_or_default()
    }
}
