//! One call, one sandbox: a fresh Store per call with its deadline and memory cap, the
//! guest export for the call's shape, and the outcome sorted into [`CallError`]s.
//! Nothing here decides what the client sees; `status` does.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;
use tonic::Streaming;
use tonic::metadata::MetadataMap;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{CallInfo, MetadataEntry, Plugin as PluginWorld, Reply, Status};
use super::plugin::LoadedPlugin;
use super::streams::{RequestStream, ResponseStream};

/// Memory one plugin instance may use, until per-plugin limits are configurable.
const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;

/// Everything a call's Store owns; dropped with the Store when the call ends.
pub(crate) struct CallState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    limits: StoreLimits,
    pub(crate) plugin: Arc<str>,
    /// Where response headers go on a streaming-response call, until they are sent.
    pub(crate) pending_headers: Option<oneshot::Sender<MetadataMap>>,
}

impl CallState {
    fn new(plugin: Arc<str>) -> Self {
        Self {
            // Grants nothing: no files, sockets, environment or arguments.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(DEFAULT_MEMORY_LIMIT)
                .build(),
            plugin,
            pending_headers: None,
        }
    }

    /// State for reading a plugin's manifest at load time.
    pub(crate) fn for_describe() -> Self {
        Self::new("describe".into())
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
    /// No instance could be made (pool exhausted, memory, start trap).
    #[error("instantiating the plugin failed: {0:#}")]
    Instantiate(wasmtime::Error),
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
    pub(crate) deadline: Option<Instant>,
}

impl Invocation {
    pub(crate) async fn unary(self, request: Bytes) -> Result<Reply, CallError> {
        let deadline = self.deadline;
        within(deadline, async move {
            let (mut store, guest) = self.instantiate().await?;
            let info = self.call_info();
            let handler = guest.plugrpc_plugin_handler();
            settle(handler.call_unary(&mut store, &info, &request).await)
        })
        .await
    }

    pub(crate) async fn server_streaming(
        self,
        request: Bytes,
        out: ResponseOut,
    ) -> Result<Vec<MetadataEntry>, CallError> {
        let deadline = self.deadline;
        within(deadline, async move {
            let (mut store, guest) = self.instantiate().await?;
            let ResponseOut {
                stream: out,
                headers,
            } = out;
            store.data_mut().pending_headers = Some(headers);
            let out = store
                .data_mut()
                .table
                .push(out)
                .map_err(|e| CallError::Instantiate(e.into()))?;
            let info = self.call_info();
            let handler = guest.plugrpc_plugin_handler();
            settle(
                handler
                    .call_server_streaming(&mut store, &info, &request, out)
                    .await,
            )
        })
        .await
    }

    pub(crate) async fn client_streaming(
        self,
        input: Streaming<Bytes>,
    ) -> Result<Reply, CallError> {
        let deadline = self.deadline;
        within(deadline, async move {
            let (mut store, guest) = self.instantiate().await?;
            let input = store
                .data_mut()
                .table
                .push(RequestStream::new(input))
                .map_err(|e| CallError::Instantiate(e.into()))?;
            let info = self.call_info();
            let handler = guest.plugrpc_plugin_handler();
            settle(
                handler
                    .call_client_streaming(&mut store, &info, input)
                    .await,
            )
        })
        .await
    }

    pub(crate) async fn bidi_streaming(
        self,
        input: Streaming<Bytes>,
        out: ResponseOut,
    ) -> Result<Vec<MetadataEntry>, CallError> {
        let deadline = self.deadline;
        within(deadline, async move {
            let (mut store, guest) = self.instantiate().await?;
            let ResponseOut {
                stream: out,
                headers,
            } = out;
            store.data_mut().pending_headers = Some(headers);
            let table = &mut store.data_mut().table;
            let input = table
                .push(RequestStream::new(input))
                .map_err(|e| CallError::Instantiate(e.into()))?;
            let out = table
                .push(out)
                .map_err(|e| CallError::Instantiate(e.into()))?;
            let info = self.call_info();
            let handler = guest.plugrpc_plugin_handler();
            settle(
                handler
                    .call_bidi_streaming(&mut store, &info, input, out)
                    .await,
            )
        })
        .await
    }

    /// A fresh Store with this call's deadline armed, and the plugin instantiated in it.
    async fn instantiate(&self) -> Result<(Store<CallState>, PluginWorld), CallError> {
        let pre = self.plugin.pre();
        let mut store = Store::new(pre.engine(), CallState::new(self.plugin.name().into()));
        store.limiter(|state| &mut state.limits);
        let deadline = self.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| match deadline {
            Some(deadline) if Instant::now() >= deadline => Err(Interrupt::Deadline.into()),
            // Yield every tick so a CPU-bound guest never starves the worker it runs on.
            _ => Ok(UpdateDeadline::Yield(1)),
        });
        let guest = pre
            .instantiate_async(&mut store)
            .await
            .map_err(CallError::Instantiate)?;
        Ok((store, guest))
    }

    fn call_info(&self) -> CallInfo {
        CallInfo {
            method: self.method.clone(),
            timeout_nanos: self.deadline.map(|d| {
                u64::try_from(d.saturating_duration_since(Instant::now()).as_nanos())
                    .unwrap_or(u64::MAX)
            }),
            metadata: self.metadata.clone(),
            peer: self.peer.clone(),
        }
    }
}

/// Bounds the whole call, host awaits included, by its deadline.
async fn within<T>(
    deadline: Option<Instant>,
    call: impl Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), call)
            .await
            .unwrap_or(Err(CallError::DeadlineExceeded)),
        None => call.await,
    }
}

/// Sorts a guest call's result: its answer, its status, or why the host stopped it.
fn settle<T>(result: wasmtime::Result<Result<T, Status>>) -> Result<T, CallError> {
    match result {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(status)) => Err(CallError::Guest(status)),
        Err(error) => Err(match error.downcast_ref::<Interrupt>() {
            Some(Interrupt::Deadline) => CallError::DeadlineExceeded,
            Some(Interrupt::Cancelled) => CallError::Cancelled,
            None => CallError::Trap(error),
        }),
    }
}
