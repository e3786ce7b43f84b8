//! The bounds armed on every call's Store: wall-clock deadline and fair yielding (epoch
//! callback), CPU time (how long the call's future is actually being polled), and
//! linear memory (limiter).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

use crate::deadline::Deadline;
use crate::errors::Interrupt;
use crate::state::CallState;

/// Table elements one instance may grow to; far above what compiled Rust needs.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Arms `store` to stop at `deadline`, or once `meter` shows `cpu_time` used.
pub(crate) fn arm(
    store: &mut Store<CallState>,
    deadline: Deadline,
    cpu_time: Duration,
    meter: CpuMeter,
) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if meter.used() > cpu_time {
            return Err(Interrupt::CpuTime.into());
        }
        if deadline.passed() {
            return Err(Interrupt::Deadline.into());
        }
        // Yield every tick so a CPU-bound guest never starves the worker it runs on.
        // tokio's yield_now defers the task until the worker has polled its I/O driver;
        // a plain self-wake would let a spinning guest delay everyone's I/O by up to
        // 61 ticks (tokio's event interval).
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        ))
    });
}

/// A call's CPU time: the time its future spends being polled, guest code and the host
/// work it asks for alike. Time suspended, waiting on a stream or in the run queue, is free.
#[derive(Clone, Default)]
pub(crate) struct CpuMeter(Arc<Mutex<Meter>>);

#[derive(Default)]
struct Meter {
    polling_since: Option<Instant>,
    used: Duration,
}

impl CpuMeter {
    fn start(&self) {
        self.lock().polling_since = Some(Instant::now());
    }

    fn stop(&self) {
        let mut meter = self.lock();
        if let Some(since) = meter.polling_since.take() {
            meter.used += since.elapsed();
        }
    }

    /// CPU time used so far, the poll under way included.
    fn used(&self) -> Duration {
        let meter = self.lock();
        meter.used
            + meter
                .polling_since
                .map_or(Duration::ZERO, |since| since.elapsed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Meter> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `call`, charging every poll of it to this meter.
    pub(crate) fn meter<F: Future>(&self, call: F) -> Metered<F> {
        Metered {
            call,
            meter: self.clone(),
        }
    }
}

pin_project! {
    /// A future whose polls are timed by a [`CpuMeter`].
    pub(crate) struct Metered<F> {
        #[pin]
        call: F,
        meter: CpuMeter,
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        this.meter.start();
        let result = this.call.poll(cx);
        this.meter.stop();
        result
    }
}

/// Caps linear memory, and remembers that it refused, so an allocation failure is told
/// apart from other traps.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) refused: bool,
    /// Linear memory the instance has grown to.
    pub(crate) size: usize,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            refused: false,
            size: 0,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Remembered only until a later growth succeeds: a refusal the guest handled
        // does not explain a later, unrelated trap.
        self.refused = desired > self.limit;
        if !self.refused {
            self.size = desired;
        }
        Ok(!self.refused)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_is_free_and_polling_is_charged() {
        let meter = CpuMeter::default();
        meter
            .meter(tokio::time::sleep(Duration::from_millis(50)))
            .await;
        assert!(
            meter.used() < Duration::from_millis(25),
            "sleeping cost {:?}",
            meter.used()
        );
        meter
            .meter(async { std::thread::sleep(Duration::from_millis(30)) })
            .await;
        assert!(
            meter.used() >= Duration::from_millis(30),
            "blocking cost {:?}",
            meter.used()
        );
    }
}
