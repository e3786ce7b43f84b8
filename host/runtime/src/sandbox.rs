//! A call's sandbox: the Store it runs in, what that Store owns (`CallState`: a WASI
//! context that grants nothing, the resource table, each capability's per-call state),
//! and the bounds armed on it: the call's [`Deadline`] and fair yielding (epoch
//! callback), CPU time (how long the call's future is actually being polled) and
//! linear memory (limiter).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use pin_project_lite::pin_project;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::Plugin as PluginWorld;
use crate::capabilities::io::{CallIo, IoView};
use crate::capabilities::kv::KvState;
use crate::capabilities::logging::{self, LogBudget};
use crate::capabilities::outbound::OutboundState;
use crate::errors::Interrupt;
use crate::limits::Limits;
use crate::plugin::ConfigValues;
use crate::quota::{MemoryBudget, Quota};
use crate::warm::MAX_IDLE_MEMORY;

/// Host resources (streams, pollables, ...) one call may hold at once.
const MAX_RESOURCES: usize = 4096;

/// The data of a call's Store.
pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryLimiter,
    /// The logging capability: the plugin's log budget.
    pub(crate) log: Arc<LogBudget>,
    /// The call capability: this call's input and output; `None` between calls.
    pub(crate) io: Option<CallIo>,
    /// The caller capability: who makes this call, if known; reset for every call.
    pub(crate) identity: Option<String>,
    /// The caller capability: the tenant the call is for; set for every call.
    pub(crate) tenant: Arc<str>,
    /// The config capability: the plugin's values as the call started.
    pub(crate) config: Arc<ConfigValues>,
    /// The outbound capability: the plugin's grant and what this call used of it.
    pub(crate) outbound: OutboundState,
    /// The key-value capability: the plugin's grant and what this call used of it.
    pub(crate) kv: KvState,
    pub(crate) limits: Limits,
    pub(crate) guest_stack: usize,
}

impl CallState {
    pub(crate) fn new(log: Arc<LogBudget>, limits: Limits, guest_stack: usize) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi: logging::wasi_ctx(&log),
            table,
            memory: MemoryLimiter::new(limits.memory),
            log,
            io: None,
            identity: None,
            tenant: Arc::default(),
            config: Arc::default(),
            outbound: OutboundState::default(),
            kv: KvState::default(),
            limits,
            guest_stack,
        }
    }

    /// A fresh Store for this state, with every bound armed.
    /// `meter` must time every poll of the futures that run this Store.
    pub(crate) fn into_store(
        self,
        engine: &wasmtime::Engine,
        deadline: Deadline,
        meter: CpuMeter,
    ) -> Store<Self> {
        let cpu_time = self.limits.cpu_time;
        let mut store = Store::new(engine, self);
        store.limiter(|state| &mut state.memory);
        arm(&mut store, deadline, cpu_time, meter);
        store
    }

    /// The call's resource table.
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// What the call capability's host functions see.
    pub(crate) fn io_view(&mut self) -> IoView<'_> {
        IoView {
            table: &mut self.table,
            io: self.io.as_mut(),
        }
    }

    /// What the key-value capability's host functions see.
    pub(crate) fn kv_view(&mut self) -> (&mut ResourceTable, &mut KvState) {
        (&mut self.table, &mut self.kv)
    }

    /// What the outbound capability's host functions see.
    pub(crate) fn outbound_view(&mut self) -> (&mut ResourceTable, &mut OutboundState) {
        (&mut self.table, &mut self.outbound)
    }

    /// Whether the instance is fit to serve another call: no refused allocation, and
    /// not grown past what an idle instance may hold. Resources the guest itself keeps
    /// (its stdout handle, say) stay; a guest that leaks them runs into the table's cap.
    pub(crate) fn reusable(&self) -> bool {
        self.io.is_none() && !self.memory.refused && self.memory.size <= MAX_IDLE_MEMORY
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A plugin instance in its own Store: where a call runs.
pub(crate) struct Sandbox {
    pub(crate) store: Store<CallState>,
    pub(crate) guest: PluginWorld,
    /// Calls it has served (a warm instance serves many).
    pub(crate) calls: u32,
}

impl Sandbox {
    pub(crate) fn new(store: Store<CallState>, guest: PluginWorld) -> Self {
        Self {
            store,
            guest,
            calls: 0,
        }
    }
}

/// How far ahead a deadline can be at most; config validation keeps `max_deadline`
/// within it, so this only guards a config built in code.
const FARTHEST: Duration = Duration::from_secs(365 * 24 * 3600);

/// When a call must be over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// The deadline of a call starting now whose client asked for `requested`: the
    /// plugin's `deadline` when it asked for none, never past its `max_deadline`.
    pub fn for_call(requested: Option<Duration>, limits: &Limits) -> Self {
        let wanted = requested
            .map_or(limits.deadline, |d| d.min(limits.max_deadline))
            .min(FARTHEST);
        Self(Instant::now() + wanted)
    }

    /// A deadline at `at`.
    pub fn at(at: Instant) -> Self {
        Self(at)
    }

    /// Time left (zero once it has passed).
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether it has passed.
    pub fn passed(self) -> bool {
        Instant::now() >= self.0
    }

    /// `work`'s output, or `None` if the deadline passes first (`work` is then dropped,
    /// which stops a guest inside it).
    pub async fn bound<F: Future>(self, work: F) -> Option<F::Output> {
        tokio::time::timeout_at(self.0.into(), work).await.ok()
    }
}

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
    pub(crate) fn used(&self) -> Duration {
        let meter = self.lock();
        meter.used
            + meter
                .polling_since
                .map_or(Duration::ZERO, |since| since.elapsed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Meter> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `call`, charging every poll of it to this meter and to `group`'s CPU share,
    /// and holding it back while that share is spent.
    pub(crate) fn meter<F: Future>(&self, call: F, group: Option<Arc<Quota>>) -> Metered<F> {
        Metered {
            call,
            meter: self.clone(),
            group,
            held: None,
            worker: None,
        }
    }
}

/// A wait for one of a group's workers.
type WorkerWait = Pin<
    Box<
        dyn Future<Output = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>>
            + Send,
    >,
>;

pin_project! {
    /// A future whose polls are timed by a [`CpuMeter`].
    pub(crate) struct Metered<F> {
        #[pin]
        call: F,
        meter: CpuMeter,
        group: Option<Arc<Quota>>,
        // Runs while the group's CPU share is spent.
        held: Option<Pin<Box<tokio::time::Sleep>>>,
        // Waits for one of the workers the group may occupy.
        worker: Option<WorkerWait>,
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if let Some(group) = this.group.as_ref() {
            loop {
                if let Some(held) = this.held.as_mut() {
                    ready!(held.as_mut().poll(cx));
                    *this.held = None;
                }
                match group.cpu_wait() {
                    Some(wait) => *this.held = Some(Box::pin(tokio::time::sleep(wait))),
                    None => break,
                }
            }
        }
        // One of the group's workers for the length of this poll.
        let _worker = match this.group.as_ref().and_then(|group| group.workers()) {
            None => None,
            Some(workers) => {
                let wait = this
                    .worker
                    .get_or_insert_with(|| Box::pin(workers.clone().acquire_owned()));
                let permit = ready!(wait.as_mut().poll(cx));
                *this.worker = None;
                // The semaphore is never closed.
                permit.ok()
            }
        };
        let started = Instant::now();
        this.meter.start();
        let result = this.call.poll(cx);
        this.meter.stop();
        if let Some(group) = this.group.as_ref() {
            group.charge(started.elapsed());
        }
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
    /// The tenant's budget this instance's memory is charged to, if it has one.
    group: Option<Arc<MemoryBudget>>,
    /// What this instance has charged to it, over all its memories.
    charged: usize,
    /// Set when the refusal was the tenant's budget, not the plugin's limit.
    pub(crate) refused_by: Option<Arc<MemoryBudget>>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            refused: false,
            size: 0,
            group: None,
            refused_by: None,
            charged: 0,
        }
    }

    /// Charges this instance's memory to `group` from now on.
    pub(crate) fn charge_to(&mut self, group: Option<Arc<MemoryBudget>>) {
        self.group = group;
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        if let Some(group) = &self.group {
            group.give(self.charged);
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Remembered only until a later growth succeeds: a refusal the guest handled
        // does not explain a later, unrelated trap.
        self.refused = desired > self.limit;
        self.refused_by = None;
        if !self.refused
            && let Some(group) = &self.group
        {
            // Per memory: what this one grows by.
            let more = desired.saturating_sub(current);
            if group.take(more) {
                self.charged += more;
            } else {
                self.refused = true;
                self.refused_by = Some(group.clone());
            }
        }
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
    use crate::limits::DEFAULT_LIMITS;

    #[tokio::test]
    async fn waiting_is_free_and_polling_is_charged() {
        let meter = CpuMeter::default();
        meter
            .meter(tokio::time::sleep(Duration::from_millis(50)), None)
            .await;
        assert!(
            meter.used() < Duration::from_millis(25),
            "sleeping cost {:?}",
            meter.used()
        );
        meter
            .meter(
                async { std::thread::sleep(Duration::from_millis(30)) },
                None,
            )
            .await;
        assert!(
            meter.used() >= Duration::from_millis(30),
            "blocking cost {:?}",
            meter.used()
        );
    }

    #[test]
    fn client_deadlines_are_capped_and_defaulted() {
        let limits = Limits {
            deadline: Duration::from_secs(1),
            max_deadline: Duration::from_secs(10),
            ..DEFAULT_LIMITS
        };
        let left = |requested| Deadline::for_call(requested, &limits).remaining();
        assert!(left(None) <= Duration::from_secs(1) && left(None) > Duration::from_millis(900));
        let asked = left(Some(Duration::from_secs(3)));
        assert!(asked <= Duration::from_secs(3) && asked > Duration::from_millis(2900));
        let capped = left(Some(Duration::from_secs(300)));
        assert!(capped <= Duration::from_secs(10) && capped > Duration::from_millis(9900));
    }

    #[tokio::test]
    async fn work_past_the_deadline_is_dropped() {
        let deadline = Deadline::at(Instant::now() + Duration::from_millis(20));
        assert_eq!(deadline.bound(async { 7 }).await, Some(7));
        let never = deadline.bound(std::future::pending::<()>()).await;
        assert_eq!(never, None);
        assert!(deadline.passed());
    }
}
