//! Everything a call's Store owns: the WASI context that grants nothing, the resource
//! table, the memory limiter, and each capability's per-call state. Dropped with the
//! Store when a fresh instance's call ends; cleared between calls of a warm one.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capabilities::io::{CallIo, IoView};
use crate::capabilities::logging::{self, LogBudget};
use crate::limits::Limits;
use crate::sandbox::{self, CpuMeter, MemoryLimiter};
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
            limits,
            guest_stack,
        }
    }

    /// A fresh Store for this state, with every bound armed.
    /// `meter` must time every poll of the futures that run this Store.
    pub(crate) fn into_store(
        self,
        engine: &wasmtime::Engine,
        deadline: crate::Deadline,
        meter: CpuMeter,
    ) -> Store<Self> {
        let cpu_time = self.limits.cpu_time;
        let mut store = Store::new(engine, self);
        store.limiter(|state| &mut state.memory);
        sandbox::arm(&mut store, deadline, cpu_time, meter);
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
