//! The outbound capability (`plugrpc:plugin/outbound`): gRPC calls a plugin makes to
//! other services. The runtime keeps them inside the calling call: a plugin without a
//! grant has no [`Dialer`]; each call is counted against the plugin's limits, gets no
//! more time than the calling call has left, and is cancelled when that call ends. How a
//! call reaches its target (connections, balancing, retries, TLS) is the host's
//! [`Dialer`]; the runtime knows no wire format.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use wasmtime::component::{HasData, Linker, Resource};

use crate::bindings::{Code, MetadataEntry, OutboundHost, OutgoingCallHost, Status};
use crate::capabilities::io::{Packer, split};
use crate::sandbox::{CallState, Deadline};

/// Request messages the host buffers for one outbound call before the plugin's `send`
/// waits: enough for a batch to go out while the next is made, few enough that a
/// target that does not read holds the plugin back.
const REQUEST_BUFFER: usize = 32;

/// How the host reaches the targets one plugin is granted.
pub trait Dialer: Send + Sync + 'static {
    /// Starts a call to `target` (an alias the plugin's config grants, or `local`); fails
    /// at once for a target it is not granted or past a limit of the target's. The
    /// returned future ends when the response headers arrived or the call failed.
    fn dial(&self, target: &str, request: DialRequest) -> Result<Dialing, Status>;
}

/// A call being started: resolves to its response once headers arrived.
pub type Dialing = Pin<Box<dyn Future<Output = Result<Box<dyn Reply>, DialFailure>> + Send>>;

/// A call that failed before its response began: its status and the trailers (the
/// metadata of a trailers-only answer) that came with it.
pub struct DialFailure {
    /// Why it failed.
    pub status: Status,
    /// Trailers of the answer, if the target sent one.
    pub trailers: Vec<MetadataEntry>,
}

/// What one outbound call asks of the host.
pub struct DialRequest {
    /// Full method path, `/package.Service/Method`.
    pub method: String,
    /// Metadata the plugin set on the call.
    pub metadata: Vec<MetadataEntry>,
    /// The calling call's request metadata, from which the host propagates trace context
    /// and the keys the target's config names.
    pub inbound: Arc<[MetadataEntry]>,
    /// Time the call may take: the calling call's remaining time, or less if the plugin
    /// asked for less.
    pub timeout: Duration,
    /// The request messages; closed when the plugin half-closes.
    pub requests: mpsc::Receiver<Bytes>,
}

/// The response of an outbound call whose headers arrived; dropping it cancels the call.
pub trait Reply: Send {
    /// The response headers.
    fn headers(&self) -> Vec<MetadataEntry>;
    /// The next response message; `None` at a successful end.
    fn message(
        &mut self,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Bytes>, Status>> + Send + '_>>;
    /// The response trailers, once the response ended.
    fn trailers(&self) -> Vec<MetadataEntry>;
}

/// What one plugin may do outbound: its dialer and the permits bounding its calls in
/// flight (`max_concurrent_outbound_calls`).
pub struct OutboundGrant {
    dialer: Arc<dyn Dialer>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

impl OutboundGrant {
    /// A grant through `dialer`, for at most `max_in_flight` calls at once.
    pub fn new(dialer: Arc<dyn Dialer>, max_in_flight: usize) -> Self {
        Self {
            dialer,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
        }
    }
}

/// Response bytes one `read` hands the guest at most (one larger message still goes, alone):
/// a batch is copied into the guest's memory whole.
const READ_BYTES: usize = 1 << 20;

/// One call's outbound state: the plugin's grant, what the call has used of it, and the
/// outbound calls it started, so that they end with it.
#[derive(Default)]
pub(crate) struct OutboundState {
    grant: Option<Arc<OutboundGrant>>,
    /// Outbound calls this call may still start (`max_outbound_calls_per_call`).
    left: usize,
    deadline: Option<Deadline>,
    inbound: Arc<[MetadataEntry]>,
    started: Vec<Weak<Mutex<Option<Live>>>>,
}

impl OutboundState {
    /// Arms the state for a call that may start `allowed` outbound calls before `deadline`.
    pub(crate) fn begin(
        &mut self,
        grant: Option<Arc<OutboundGrant>>,
        allowed: usize,
        deadline: Deadline,
        inbound: Arc<[MetadataEntry]>,
    ) {
        self.end();
        *self = Self {
            grant,
            left: allowed,
            deadline: Some(deadline),
            inbound,
            started: Vec::new(),
        };
    }

    /// Ends the call's outbound calls still open (a guest may keep a handle past its call
    /// in a reused instance): their streams are cancelled and their permits given back;
    /// the handles answer CANCELLED from then on.
    pub(crate) fn end(&mut self) {
        for live in self.started.drain(..).filter_map(|live| live.upgrade()) {
            drop(lock(&live).take());
        }
        self.grant = None;
        self.deadline = None;
        self.inbound = Arc::default();
    }
}

/// The lock of a call's live part; a poisoned one is as good (it holds no invariant).
fn lock(live: &Mutex<Option<Live>>) -> std::sync::MutexGuard<'_, Option<Live>> {
    live.lock().unwrap_or_else(|e| e.into_inner())
}

/// An outbound call as the plugin holds it: its live part (shared with the calling
/// call's state, which takes it when that call ends), and what stays readable after.
#[allow(unreachable_pub)] // `pub` because bindgen names it in public traits
pub struct OutgoingCall {
    live: Arc<Mutex<Option<Live>>>,
    headers: Option<Vec<MetadataEntry>>,
    trailers: Vec<MetadataEntry>,
    deadline: Deadline,
}

/// What an open outbound call holds: its request side, its progress, its permit.
struct Live {
    requests: Option<mpsc::Sender<Bytes>>,
    progress: Progress,
    _permit: OwnedSemaphorePermit,
}

/// Where an outbound call is.
enum Progress {
    /// Started; the host's task waits for the response headers.
    Dialing(AbortOnDrop),
    /// Headers arrived; messages are read from the reply.
    Open(Box<dyn Reply>),
    /// Ended well.
    Done,
    /// Failed with this status.
    Failed(Status),
}

/// A task aborted when its handle goes: an outbound call dropped mid-start is cancelled.
struct AbortOnDrop(JoinHandle<Result<Box<dyn Reply>, DialFailure>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl OutgoingCall {
    /// The call's live part, taken out for the length of one host call of the guest's
    /// own (the calling call cannot end meanwhile; [`Self::put`] gives it back);
    /// CANCELLED once the calling call ended.
    fn take(&self) -> Result<Live, Status> {
        lock(&self.live).take().ok_or_else(|| {
            status(
                Code::Cancelled,
                "the call that started this outbound call has ended",
            )
        })
    }

    /// Gives back what [`Self::take`] took.
    fn put(&self, live: Live) {
        *lock(&self.live) = Some(live);
    }

    /// Waits for the response headers, moving the call to `Open` (or `Failed`).
    async fn opened<'l>(&mut self, live: &'l mut Live) -> Result<&'l mut Box<dyn Reply>, Status> {
        if let Progress::Dialing(task) = &mut live.progress {
            let result = match self.deadline.bound(&mut task.0).await {
                None => Err(DialFailure {
                    status: deadline_exceeded(),
                    trailers: Vec::new(),
                }),
                Some(Ok(result)) => result,
                Some(Err(_)) => Err(DialFailure {
                    status: status(Code::Internal, "the outbound call's task failed"),
                    trailers: Vec::new(),
                }),
            };
            live.progress = match result {
                Ok(reply) => {
                    self.headers = Some(reply.headers());
                    Progress::Open(reply)
                }
                Err(failure) => {
                    self.trailers = failure.trailers;
                    Progress::Failed(failure.status)
                }
            };
        }
        match &mut live.progress {
            Progress::Open(reply) => Ok(reply),
            Progress::Failed(status) => Err(status.clone()),
            Progress::Done => Err(status(
                Code::FailedPrecondition,
                "the outbound call has ended",
            )),
            Progress::Dialing(_) => unreachable!("moved on above"),
        }
    }

    /// Up to `max` response messages (and about [`READ_BYTES`]), waiting for the first;
    /// an empty batch at a successful end, the call's status at a failed one (after the
    /// messages before it).
    async fn read(&mut self, live: &mut Live, max: u32) -> Result<Vec<u8>, Status> {
        if matches!(live.progress, Progress::Done) {
            return Ok(Vec::new());
        }
        let deadline = self.deadline;
        let reply = self.opened(live).await?;
        let mut packer = Packer::default();
        let mut end = match deadline.bound(reply.message()).await {
            None => Some(Err(deadline_exceeded())),
            Some(Ok(Some(message))) => {
                packer.push(&message);
                None
            }
            Some(Ok(None)) => Some(Ok(())),
            Some(Err(status)) => Some(Err(status)),
        };
        while end.is_none() && packer.count() < max.max(1) as usize && packer.len() < READ_BYTES {
            match reply.message().now_or_never() {
                None => break,
                Some(Ok(Some(message))) => packer.push(&message),
                Some(Ok(None)) => end = Some(Ok(())),
                Some(Err(status)) => end = Some(Err(status)),
            }
        }
        let Some(end) = end else {
            return Ok(packer.finish());
        };
        self.trailers = reply.trailers();
        live.progress = match &end {
            Ok(()) => Progress::Done,
            Err(status) => Progress::Failed(status.clone()),
        };
        match end {
            // Messages first; the failure is the next read's answer.
            Err(_) if packer.count() > 0 => Ok(packer.finish()),
            Err(status) => Err(status),
            Ok(()) => Ok(packer.finish()),
        }
    }
}

/// Links `plugrpc:plugin/outbound` to the Store's outbound state.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    crate::bindings::add_outbound_to_linker::<CallState, Outbound>(linker, |state| {
        let (table, outbound) = state.outbound_view();
        OutboundView { table, outbound }
    })
}

/// The [`HasData`] of the outbound capability.
struct Outbound;

impl HasData for Outbound {
    type Data<'a> = OutboundView<'a>;
}

/// What the outbound functions see of a Store.
pub(crate) struct OutboundView<'a> {
    table: &'a mut wasmtime::component::ResourceTable,
    outbound: &'a mut OutboundState,
}

impl OutboundHost for OutboundView<'_> {
    async fn start(
        &mut self,
        target: String,
        method: String,
        metadata: Vec<MetadataEntry>,
        requests: Vec<u8>,
        finish: bool,
        timeout_nanos: Option<u64>,
    ) -> wasmtime::Result<Result<Resource<OutgoingCall>, Status>> {
        let call = match self.prepare(&target, method, metadata, requests, finish, timeout_nanos) {
            Ok(call) => call,
            Err(status) => return Ok(Err(status)),
        };
        Ok(Ok(self.table.push(call)?))
    }
}

impl OutboundView<'_> {
    /// Checks the grant and the limits, then starts the call in a task of its own.
    fn prepare(
        &mut self,
        target: &str,
        method: String,
        metadata: Vec<MetadataEntry>,
        requests: Vec<u8>,
        finish: bool,
        timeout_nanos: Option<u64>,
    ) -> Result<OutgoingCall, Status> {
        let Some(grant) = self.outbound.grant.clone() else {
            return Err(status(
                Code::PermissionDenied,
                "this plugin is not granted outbound calls: its config names no [outbound] target",
            ));
        };
        let Some(deadline) = self.outbound.deadline else {
            return Err(status(
                Code::FailedPrecondition,
                "outbound calls are made during a call only",
            ));
        };
        if self.outbound.left == 0 {
            return Err(status(
                Code::ResourceExhausted,
                "max_outbound_calls_per_call: this call started as many outbound calls as it may",
            ));
        }
        let Ok(permit) = grant.in_flight.clone().try_acquire_owned() else {
            return Err(status(
                Code::ResourceExhausted,
                &format!(
                    "max_concurrent_outbound_calls: the plugin has {} outbound calls in flight",
                    grant.max_in_flight
                ),
            ));
        };
        let messages =
            split(requests).map_err(|error| status(Code::InvalidArgument, &error.to_string()))?;
        let asked = timeout_nanos.map_or(Duration::MAX, Duration::from_nanos);
        let timeout = deadline.remaining().min(asked);
        let (sender, receiver) = mpsc::channel(REQUEST_BUFFER.max(messages.len()));
        for message in messages {
            // The channel was made with room for every one of them.
            let _ = sender.try_send(message);
        }
        let dialing = grant.dialer.dial(
            target,
            DialRequest {
                method,
                metadata,
                inbound: self.outbound.inbound.clone(),
                timeout,
                requests: receiver,
            },
        )?;
        self.outbound.left -= 1;
        let live = Arc::new(Mutex::new(Some(Live {
            requests: (!finish).then_some(sender),
            progress: Progress::Dialing(AbortOnDrop(tokio::spawn(dialing))),
            _permit: permit,
        })));
        self.outbound.started.push(Arc::downgrade(&live));
        Ok(OutgoingCall {
            live,
            headers: None,
            trailers: Vec::new(),
            deadline: Deadline::at(std::time::Instant::now() + timeout),
        })
    }
}

impl OutgoingCallHost for OutboundView<'_> {
    async fn send(
        &mut self,
        call: Resource<OutgoingCall>,
        batch: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Status>> {
        let call = self.table.get_mut(&call)?;
        let messages = match split(batch) {
            Ok(messages) => messages,
            Err(error) => return Ok(Err(status(Code::InvalidArgument, &error.to_string()))),
        };
        let live = match call.take() {
            Ok(live) => live,
            Err(status) => return Ok(Err(status)),
        };
        let sent = send_all(live.requests.as_ref(), call.deadline, messages).await;
        call.put(live);
        Ok(sent)
    }

    async fn finish(&mut self, call: Resource<OutgoingCall>) -> wasmtime::Result<()> {
        let call = self.table.get_mut(&call)?;
        if let Some(live) = lock(&call.live).as_mut() {
            live.requests = None;
        }
        Ok(())
    }

    async fn headers(
        &mut self,
        call: Resource<OutgoingCall>,
    ) -> wasmtime::Result<Result<Vec<MetadataEntry>, Status>> {
        let call = self.table.get_mut(&call)?;
        if let Some(headers) = &call.headers {
            return Ok(Ok(headers.clone()));
        }
        let mut live = match call.take() {
            Ok(live) => live,
            Err(status) => return Ok(Err(status)),
        };
        let opened = call.opened(&mut live).await.map(|_| ());
        call.put(live);
        Ok(opened.map(|()| call.headers.clone().unwrap_or_default()))
    }

    async fn read(
        &mut self,
        call: Resource<OutgoingCall>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, Status>> {
        let call = self.table.get_mut(&call)?;
        let mut live = match call.take() {
            Ok(live) => live,
            Err(status) => return Ok(Err(status)),
        };
        let read = call.read(&mut live, max).await;
        call.put(live);
        Ok(read)
    }

    async fn trailers(
        &mut self,
        call: Resource<OutgoingCall>,
    ) -> wasmtime::Result<Vec<MetadataEntry>> {
        Ok(self.table.get(&call)?.trailers.clone())
    }

    async fn drop(&mut self, call: Resource<OutgoingCall>) -> wasmtime::Result<()> {
        self.table.delete(call)?;
        Ok(())
    }
}

/// Sends `messages` in order on `requests`, each within `deadline`.
async fn send_all(
    requests: Option<&mpsc::Sender<Bytes>>,
    deadline: Deadline,
    messages: Vec<Bytes>,
) -> Result<(), Status> {
    let Some(sender) = requests else {
        return Err(status(
            Code::FailedPrecondition,
            "the outbound call's requests were finished",
        ));
    };
    for message in messages {
        match deadline.bound(sender.send(message)).await {
            None => return Err(deadline_exceeded()),
            Some(Ok(())) => {}
            // The call ended: its status comes from `read`.
            Some(Err(_)) => {
                return Err(status(
                    Code::Unavailable,
                    "the outbound call ended before this request was sent",
                ));
            }
        }
    }
    Ok(())
}

/// A status made by the host for the plugin.
fn status(code: Code, message: &str) -> Status {
    Status {
        code,
        message: message.to_owned(),
        details: Vec::new(),
    }
}

/// The status of an outbound call cut by the calling call's deadline.
fn deadline_exceeded() -> Status {
    status(
        Code::DeadlineExceeded,
        "the outbound call did not finish within the calling call's deadline",
    )
}
