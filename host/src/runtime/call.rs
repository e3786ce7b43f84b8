//! One call, one sandbox: a slot from the plugin's admission, a fresh Store with the
//! call's deadline, CPU budget and memory cap armed, the guest export for the call's
//! shape, and the outcome sorted into [`CallError`]s. Nothing here decides what the
//! client sees; `status` does.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;
use tonic::Streaming;
use tonic::metadata::MetadataMap;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::admission::Slot;
use super::bindings::{CallInfo, MetadataEntry, Reply, Status};
use super::output::{GuestOutput, LogBudget};
use super::plugin::LoadedPlugin;
use super::sandbox::{self, CpuMeter, MemoryLimiter};
use super::streams::{RequestStream, ResponseStream};
use super::warm::{MAX_IDLE_MEMORY, Sandbox, WarmPool};
use crate::config::{self, Limits};
use crate::metadata::InvalidMetadata;

/// Host resources (streams, pollables, ...) one call may hold at once.
const MAX_RESOURCES: usize = 4096;

/// Everything a call's Store owns; dropped with the Store when the call ends.
pub(crate) struct CallState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    memory: MemoryLimiter,
    pub(crate) log: Arc<LogBudget>,
    pub(crate) limits: Limits,
    guest_stack: usize,
    /// Where response headers go on a streaming-response call, until they are sent.
    pub(crate) pending_headers: Option<oneshot::Sender<MetadataMap>>,
}

impl CallState {
    pub(crate) fn new(log: Arc<LogBudget>, limits: Limits, guest_stack: usize) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::new(log.clone(), "stdout"))
            .stderr(GuestOutput::new(log.clone(), "stderr"))
            // Grants nothing else: no files, sockets, environment or arguments.
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi,
            table,
            memory: MemoryLimiter::new(limits.memory),
            log,
            limits,
            guest_stack,
            pending_headers: None,
        }
    }

    /// Ends a call in a Store that may serve another: drops what belonged to the call
    /// (its streams left the table already), and says whether the instance is fit to
    /// keep: no refused allocation, and not grown past what an idle instance may hold.
    /// Resources the guest itself keeps (its stdout handle, say) stay; a guest that
    /// leaks them runs into the table's cap and traps.
    pub(crate) fn end_call(&mut self) -> bool {
        self.pending_headers = None;
        !self.memory.refused && self.memory.size <= MAX_IDLE_MEMORY
    }

    /// A fresh Store for this state, with every bound armed.
    /// `meter` must time every poll of the futures that run this Store.
    pub(crate) fn into_store(
        self,
        engine: &wasmtime::Engine,
        deadline: Instant,
        meter: CpuMeter,
    ) -> Store<Self> {
        let cpu_time = self.limits.cpu_time;
        let mut store = Store::new(engine, self);
        store.limiter(|state| &mut state.memory);
        sandbox::arm(&mut store, deadline, cpu_time, meter);
        store
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
    #[error("response message of {0} bytes is over the limit")]
    ResponseTooLarge(usize),
    #[error(transparent)]
    InvalidMetadata(#[from] InvalidMetadata),
}

/// A plugin limit a call ran into; each names the config key that sets it.
#[derive(Debug, PartialEq)]
pub(crate) enum Limit {
    Memory { limit: usize },
    CpuTime { limit: Duration },
    Stack { limit: usize },
    Concurrency { running: usize, queued: usize },
    RequestSize { size: usize, limit: usize },
    ResponseSize { size: usize, limit: usize },
    Sandboxes,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Limit::Memory { limit } => write!(
                f,
                "memory limit of {} reached (memory)",
                config::size(limit)
            ),
            Limit::CpuTime { limit } => {
                write!(
                    f,
                    "CPU time limit of {} reached (cpu_time)",
                    config::duration(limit)
                )
            }
            Limit::Stack { limit } => {
                write!(
                    f,
                    "guest stack of {} overflowed (host.guest_stack)",
                    config::size(limit)
                )
            }
            Limit::Concurrency { running, queued } => write!(
                f,
                "{running} calls running and {queued} waiting already (max_concurrent_calls, max_queued_calls)"
            ),
            Limit::RequestSize { size, limit } => write!(
                f,
                "request message of {} is over max_request_size ({})",
                config::size(size),
                config::size(limit)
            ),
            Limit::ResponseSize { size, limit } => write!(
                f,
                "response message of {} is over max_response_size ({})",
                config::size(size),
                config::size(limit)
            ),
            Limit::Sandboxes => write!(f, "every sandbox of the host is in use"),
        }
    }
}

/// Why a call produced no answer of the guest's own.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The guest answered with a status.
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
    /// No instance could be made.
    #[error("instantiating the plugin failed: {0:#}")]
    Instantiate(wasmtime::Error),
    /// The guest sent headers or trailers gRPC cannot carry.
    #[error("{0}")]
    InvalidMetadata(InvalidMetadata),
    /// The guest trapped or panicked.
    #[error("the plugin trapped: {0:?}")]
    Trap(wasmtime::Error),
}

/// Where a streaming-response call's messages and headers go.
pub(crate) struct ResponseOut {
    pub(crate) stream: ResponseStream,
    pub(crate) headers: oneshot::Sender<MetadataMap>,
}

/// A call bound for one plugin, with what the guest will be told about it.
pub(crate) struct Invocation {
    pub(crate) plugin: Arc<LoadedPlugin>,
    pub(crate) method: String,
    pub(crate) metadata: Vec<MetadataEntry>,
    pub(crate) peer: Option<String>,
    pub(crate) deadline: Instant,
}

impl Invocation {
    /// Runs a unary call; the caller bounds it by the deadline (see [`metered`]).
    pub(crate) async fn unary(mut self, request: Bytes) -> Result<Reply, CallError> {
        metered(async move |meter| {
            let (_slot, mut sandbox, info) = self.enter(meter).await?;
            let handler = sandbox.guest.plugrpc_plugin_handler();
            let result = handler
                .call_unary(&mut sandbox.store, &info, &request)
                .await;
            let reply = settle(&sandbox.store, result).and_then(|reply| self.check_reply(reply));
            self.leave(sandbox, &reply);
            reply
        })
        .await
    }

    pub(crate) async fn server_streaming(
        mut self,
        request: Bytes,
        out: ResponseOut,
    ) -> Result<Vec<MetadataEntry>, CallError> {
        let deadline = self.deadline;
        bounded(deadline, async move |meter| {
            let (_slot, mut sandbox, info) = self.enter(meter).await?;
            sandbox.store.data_mut().pending_headers = Some(out.headers);
            let stream = push(&mut sandbox.store, out.stream)?;
            let handler = sandbox.guest.plugrpc_plugin_handler();
            let result = handler
                .call_server_streaming(&mut sandbox.store, &info, &request, stream.borrowed())
                .await;
            stream.delete(&mut sandbox.store);
            let trailers = settle(&sandbox.store, result);
            self.leave(sandbox, &trailers);
            trailers
        })
        .await
    }

    /// Runs a client-streaming call; the caller bounds it by the deadline (see [`metered`]).
    pub(crate) async fn client_streaming(
        mut self,
        input: Streaming<Bytes>,
    ) -> Result<Reply, CallError> {
        metered(async move |meter| {
            let (_slot, mut sandbox, info) = self.enter(meter).await?;
            let input = push(&mut sandbox.store, RequestStream::new(input))?;
            let handler = sandbox.guest.plugrpc_plugin_handler();
            let result = handler
                .call_client_streaming(&mut sandbox.store, &info, input.borrowed())
                .await;
            input.delete(&mut sandbox.store);
            let reply = settle(&sandbox.store, result).and_then(|reply| self.check_reply(reply));
            self.leave(sandbox, &reply);
            reply
        })
        .await
    }

    pub(crate) async fn bidi_streaming(
        mut self,
        input: Streaming<Bytes>,
        out: ResponseOut,
    ) -> Result<Vec<MetadataEntry>, CallError> {
        let deadline = self.deadline;
        bounded(deadline, async move |meter| {
            let (_slot, mut sandbox, info) = self.enter(meter).await?;
            sandbox.store.data_mut().pending_headers = Some(out.headers);
            let input = push(&mut sandbox.store, RequestStream::new(input))?;
            let stream = push(&mut sandbox.store, out.stream)?;
            let handler = sandbox.guest.plugrpc_plugin_handler();
            let result = handler
                .call_bidi_streaming(
                    &mut sandbox.store,
                    &info,
                    input.borrowed(),
                    stream.borrowed(),
                )
                .await;
            input.delete(&mut sandbox.store);
            stream.delete(&mut sandbox.store);
            let trailers = settle(&sandbox.store, result);
            self.leave(sandbox, &trailers);
            trailers
        })
        .await
    }

    /// A slot from the plugin's admission, then a sandbox for the call: a warm one if
    /// the plugin keeps them and one is idle, else a fresh one.
    async fn enter(&mut self, meter: CpuMeter) -> Result<(Slot, Sandbox, CallInfo), CallError> {
        let slot = self.plugin.admission().admit().await?;
        let sandbox = match self.plugin.warm().and_then(WarmPool::take) {
            Some(mut sandbox) => {
                let cpu_time = self.plugin.limits().cpu_time;
                sandbox::arm(&mut sandbox.store, self.deadline, cpu_time, meter);
                sandbox
            }
            None => self.instantiate(meter).await?,
        };
        Ok((slot, sandbox, self.call_info()))
    }

    /// A fresh Store with this call's bounds armed, and the plugin instantiated in it.
    /// With the sandbox pool full, idle warm instances (any plugin's) give way first.
    async fn instantiate(&self, meter: CpuMeter) -> Result<Sandbox, CallError> {
        match self.try_instantiate(meter.clone()).await {
            Err(CallError::Limit(Limit::Sandboxes)) if self.plugin.evict_idle() > 0 => {
                self.try_instantiate(meter).await
            }
            outcome => outcome,
        }
    }

    async fn try_instantiate(&self, meter: CpuMeter) -> Result<Sandbox, CallError> {
        let pre = self.plugin.pre();
        let state = CallState::new(
            self.plugin.log_budget(),
            *self.plugin.limits(),
            self.plugin.guest_stack(),
        );
        let mut store = state.into_store(pre.engine(), self.deadline, meter);
        match pre.instantiate_async(&mut store).await {
            Ok(guest) => Ok(Sandbox::new(store, guest)),
            Err(error) => Err(match classify(&store, error) {
                CallError::Trap(error) => CallError::Instantiate(error),
                other => other,
            }),
        }
    }

    /// Ends the call's use of `sandbox`: a warm plugin keeps it when the call ended with
    /// an answer or a status of the guest's own; anything else drops it.
    fn leave<T>(&self, sandbox: Sandbox, outcome: &Result<T, CallError>) {
        if let (Some(pool), Ok(_) | Err(CallError::Guest(_))) = (self.plugin.warm(), outcome) {
            pool.put(sandbox);
        }
    }

    /// What the guest is told of the call; moves it out of the invocation, which needs
    /// it once.
    fn call_info(&mut self) -> CallInfo {
        let left = self.deadline.saturating_duration_since(Instant::now());
        CallInfo {
            method: std::mem::take(&mut self.method),
            timeout_nanos: Some(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX)),
            metadata: std::mem::take(&mut self.metadata),
            peer: self.peer.take(),
        }
    }

    fn check_reply(&self, reply: Reply) -> Result<Reply, CallError> {
        let limit = self.plugin.limits().max_response_size;
        if reply.message.len() > limit {
            return Err(CallError::Limit(Limit::ResponseSize {
                size: reply.message.len(),
                limit,
            }));
        }
        Ok(reply)
    }
}

/// Puts a host stream into the call's resource table, for as long as the call runs.
fn push<T: Send + 'static>(store: &mut Store<CallState>, stream: T) -> Result<Owned<T>, CallError> {
    store
        .data_mut()
        .table
        .push(stream)
        .map(Owned)
        .map_err(|e| CallError::Instantiate(e.into()))
}

/// A host stream the call's table owns; the guest only ever borrows it.
struct Owned<T: 'static>(Resource<T>);

impl<T: 'static> Owned<T> {
    fn borrowed(&self) -> Resource<T> {
        Resource::new_borrow(self.0.rep())
    }

    /// Takes the stream out of the table when the call ends, so a reused Store starts
    /// empty and the stream closes now rather than with the Store.
    fn delete(self, store: &mut Store<CallState>) {
        // The guest cannot delete what it only borrowed: the entry is still there.
        let _ = store.data_mut().table.delete(self.0);
    }
}

/// Runs a call, charging every poll of it to the CPU meter the call's Store checks. The
/// deadline is the caller's to enforce on the waits (dispatch runs unary and
/// client-streaming requests whole under it); a running guest meets it at the next
/// epoch tick either way.
async fn metered<T>(
    call: impl AsyncFnOnce(CpuMeter) -> Result<T, CallError>,
) -> Result<T, CallError> {
    let meter = CpuMeter::default();
    meter.clone().meter(call(meter)).await
}

/// [`metered`], under the call's deadline too (waiting for a slot and host awaits
/// included): for calls that run in a task of their own.
async fn bounded<T>(
    deadline: Instant,
    call: impl AsyncFnOnce(CpuMeter) -> Result<T, CallError>,
) -> Result<T, CallError> {
    tokio::time::timeout_at(deadline.into(), metered(call))
        .await
        .unwrap_or(Err(CallError::DeadlineExceeded))
}

/// Sorts a guest call's result: its answer, its status, or why it stopped.
fn settle<T>(
    store: &Store<CallState>,
    result: wasmtime::Result<Result<T, Status>>,
) -> Result<T, CallError> {
    match result {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(status)) => Err(CallError::Guest(status)),
        Err(error) => Err(classify(store, error)),
    }
}

/// Why a guest stopped: a host interrupt, a limit it ran into, or a trap of its own.
fn classify(store: &Store<CallState>, error: wasmtime::Error) -> CallError {
    let state = store.data();
    let limits = &state.limits;
    if let Some(interrupt) = error.downcast_ref::<Interrupt>() {
        return match interrupt {
            Interrupt::InvalidMetadata(invalid) => CallError::InvalidMetadata(invalid.clone()),
            Interrupt::Deadline => CallError::DeadlineExceeded,
            Interrupt::Cancelled => CallError::Cancelled,
            Interrupt::CpuTime => CallError::Limit(Limit::CpuTime {
                limit: limits.cpu_time,
            }),
            Interrupt::RequestTooLarge(size) => CallError::Limit(Limit::RequestSize {
                size: *size,
                limit: limits.max_request_size,
            }),
            Interrupt::ResponseTooLarge(size) => CallError::Limit(Limit::ResponseSize {
                size: *size,
                limit: limits.max_response_size,
            }),
        };
    }
    if error.is::<wasmtime::PoolConcurrencyLimitError>() {
        return CallError::Limit(Limit::Sandboxes);
    }
    // A guest whose allocation was refused usually aborts: that is the memory limit.
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
