//! The call core: one operation for every call shape, over an abstract input (the
//! request messages a front door decodes) and output (headers, messages, trailers and a
//! result). A front door turns its wire format into [`Requests`], calls [`Call::run`] and
//! writes the [`Response`] back in its own format; nothing here knows the wire.
//!
//! Per call, in order, all under the call's [`Deadline`]: a slot from the plugin's
//! admission; the request when the shape has exactly one; a sandbox (warm or fresh) with
//! the deadline, CPU budget and memory cap armed; the guest's `handle`; its outcome
//! checked against the contract. A call with a streaming response runs in a task of its
//! own from the start; a unary or client-streaming call runs inside [`Call::run`]'s future
//! and moves to a task only if its headers go out before it ends. A call in a task stops
//! when the deadline passes or the client leaves, however slowly the client reads.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use prost_reflect::MethodDescriptor;
use tokio::sync::{mpsc, oneshot, watch};
use wasmtime::component::Resource;

use crate::admission::Slot;
use crate::bindings::{CallInfo, Code, MetadataEntry, Outcome};
use crate::capabilities::io::{
    Batch, CallIo, Input, InputError, Output, Outputs, Packer, Requests, Started, messages_within,
};
use crate::errors::{CallError, Limit, classify, interrupted};
use crate::metadata;
use crate::observe::CallObserver;
use crate::plugin::Plugin;
use crate::quota::{Quota, QuotaSlot};
use crate::sandbox::{CallState, CpuMeter, Deadline, Sandbox};
use crate::warm::WarmPool;

/// How long a unary or server-streaming call waits, after its one request message, for
/// the client to end its request stream (a client sends the end with the message, or
/// right after it).
const REST_OF_REQUEST: Duration = Duration::from_millis(100);

/// How a method is called, as its descriptor declares it: the four gRPC shapes. The
/// core runs them all one way; the shape says only how many messages go each way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodKind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, one response.
    ClientStreaming,
    /// Streams both ways.
    BidiStreaming,
}

impl MethodKind {
    /// The kind `method` declares.
    pub fn of(method: &MethodDescriptor) -> Self {
        match (method.is_client_streaming(), method.is_server_streaming()) {
            (false, false) => Self::Unary,
            (false, true) => Self::ServerStreaming,
            (true, false) => Self::ClientStreaming,
            (true, true) => Self::BidiStreaming,
        }
    }

    /// How an operator reads it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unary => "unary",
            Self::ServerStreaming => "server-streaming",
            Self::ClientStreaming => "client-streaming",
            Self::BidiStreaming => "bidi-streaming",
        }
    }

    /// Whether the client sends exactly one request (read before the guest starts).
    pub fn one_request(self) -> bool {
        matches!(self, Self::Unary | Self::ServerStreaming)
    }

    /// Whether a successful call answers exactly one message.
    pub fn one_response(self) -> bool {
        matches!(self, Self::Unary | Self::ClientStreaming)
    }
}

/// What a front door knows of a call before it starts.
#[derive(Debug, Default)]
pub struct CallRequest {
    /// Full method path, `/package.Service/Method`.
    pub method: String,
    /// The deadline the client asked for, if any.
    pub timeout: Option<Duration>,
    /// Request metadata, minus the front door's own framing headers.
    pub metadata: Vec<MetadataEntry>,
    /// The client's address, `ip:port`.
    pub peer: Option<String>,
    /// Who is calling, for fair admission: a key naming the caller's identity, else its
    /// address (the front door keeps the two apart; made once per connection).
    pub caller: Arc<str>,
    /// Who the caller proved to be (client certificate, API key), as the plugin sees it.
    pub identity: Option<String>,
    /// The tenant whose plugin serves the call.
    pub tenant: Arc<str>,
    /// The tenant's quota over all its plugins, taken before the plugin's admission.
    pub quota: Option<Arc<Quota>>,
    /// A streaming call with no message either way for this long is ended.
    pub idle_timeout: Option<Duration>,
    /// Hears what the call does as it runs (the host's metrics), if anything does.
    pub observer: Option<Arc<dyn CallObserver>>,
    /// Turns true when the host gives up on the calls still running (its shutdown grace
    /// has passed): the call ends UNAVAILABLE, its trailers sent, rather than cut off.
    /// A watch, not a cancellation token: cloning one and waiting on it take no lock
    /// every call would share.
    pub stop: Option<watch::Receiver<bool>>,
}

/// One call bound for one plugin.
pub struct Call {
    plugin: Arc<Plugin>,
    kind: MethodKind,
    request: CallRequest,
    deadline: Deadline,
}

/// What a call answered, for the front door to write.
#[allow(clippy::large_enum_variant)] // made once per call and consumed at once; boxing costs more
pub enum Response {
    /// The response started: these headers, then the body.
    Started {
        /// Response headers.
        headers: Vec<MetadataEntry>,
        /// Messages, then the end.
        body: Body,
    },
    /// The call failed before sending anything: its headers and trailers go out with
    /// the error in one frame.
    Failed {
        /// The guest's headers and trailers, in that order.
        metadata: Vec<MetadataEntry>,
        /// Why.
        error: CallError,
    },
}

/// One part of a response body.
pub enum BodyPart {
    /// A response message, and whether the guest lets it be compressed.
    Message {
        /// The encoded message.
        message: Bytes,
        /// `false` when the guest asked for it to go uncompressed.
        compress: bool,
    },
    /// The end: trailers and how the call ended.
    End {
        /// Trailers the guest set.
        trailers: Vec<MetadataEntry>,
        /// OK, or why not.
        result: Result<(), CallError>,
    },
}

/// How a call ended, after the messages it had sent: its last messages, trailers and
/// result.
pub(crate) struct Last {
    messages: Vec<Bytes>,
    /// Whether `messages` may be compressed.
    compress: bool,
    trailers: Vec<MetadataEntry>,
    result: Result<(), CallError>,
}

impl Last {
    fn failed(error: CallError) -> Self {
        Self {
            messages: Vec::new(),
            compress: true,
            trailers: Vec::new(),
            result: Err(error),
        }
    }
}

/// A call that has ended, as its sandbox left it.
struct Finished {
    /// Whether response headers went out while it ran.
    committed: bool,
    /// The headers to send, when they did not.
    headers: Vec<MetadataEntry>,
    last: Last,
}

impl Finished {
    fn failed(committed: bool, error: CallError) -> Self {
        Self {
            committed,
            headers: Vec::new(),
            last: Last::failed(error),
        }
    }
}

/// How [`Call::run`]'s first phase ended.
enum Head {
    Started(Started),
    Finished(Finished),
    /// The host stopped its calls first.
    Stopped,
}

impl Call {
    /// A call of `plugin`'s method of shape `kind`; its deadline is fixed here, from the
    /// client's timeout and the plugin's limits.
    pub fn new(plugin: Arc<Plugin>, kind: MethodKind, request: CallRequest) -> Self {
        let deadline = Deadline::for_call(request.timeout, plugin.limits());
        Self {
            plugin,
            kind,
            request,
            deadline,
        }
    }

    /// Runs the call until its response starts (or it ends), then answers; a call still
    /// running then goes on in its own task, feeding the body.
    pub async fn run(self, requests: Requests) -> Response {
        let deadline = self.deadline;
        let stop = self.request.stop.clone();
        let streams_out = !self.kind.one_response();
        let observer = self.request.observer.clone();
        // A stream's messages are counted as they come; the one request of the other
        // shapes where it is read (no wrapper on the unary path).
        let requests = match observer.clone().filter(|_| !self.kind.one_request()) {
            Some(observer) => Box::pin(requests.inspect(move |received| {
                if received.is_ok() {
                    observer.received();
                }
            })),
            None => requests,
        };
        let (start, started) = oneshot::channel();
        let io = CallIo::new(
            requests,
            start,
            self.plugin.limits().max_response_size,
            self.request.idle_timeout,
        );
        // Every poll of the call, guest and host work alike, is charged to its CPU time
        // and its tenant's CPU share.
        let meter = CpuMeter::default();
        let group = self.request.quota.clone();
        let mut call: Pin<Box<dyn Future<Output = Finished> + Send>> =
            Box::pin(meter.clone().meter(self.serve(io, meter), group));
        if streams_out {
            // A streaming response starts while the guest runs on: the call gets its own
            // task from the start rather than moving to one mid-call.
            let (done, finished) = oneshot::channel();
            tokio::spawn(finish(call, done, deadline, stop));
            return observed(respond(started, finished).await, observer);
        }
        let mut started = Some(started);
        // Polled only once the call is waiting: a call done in its first poll never
        // registers with the stop signal.
        let mut stop_heard = std::pin::pin!(stopped(stop.clone()));
        let head = deadline.bound(poll_fn(|cx| {
            if let Some(rx) = started.as_mut()
                && let Poll::Ready(sent) = Pin::new(rx).poll(cx)
            {
                started = None;
                if let Ok(response) = sent {
                    return Poll::Ready(Head::Started(response));
                }
            }
            if let Poll::Ready(finished) = call.as_mut().poll(cx) {
                return Poll::Ready(Head::Finished(finished));
            }
            stop_heard.as_mut().poll(cx).map(|()| Head::Stopped)
        }));
        let response = match head.await {
            None => Response::Failed {
                metadata: Vec::new(),
                error: CallError::DeadlineExceeded,
            },
            Some(Head::Stopped) => Response::Failed {
                metadata: Vec::new(),
                error: CallError::ShuttingDown,
            },
            Some(Head::Started(response)) => {
                let (done, finished) = oneshot::channel();
                tokio::spawn(finish(call, done, deadline, stop));
                Response::Started {
                    headers: response.headers,
                    body: Body::new(Some(response.batches), End::Coming(finished)),
                }
            }
            Some(Head::Finished(finished)) => answer(finished, started),
        };
        observed(response, observer)
    }

    async fn serve(mut self, mut io: CallIo, meter: CpuMeter) -> Finished {
        let (_group, _slot, requests, mut sandbox) =
            match self.prepare(&mut io, meter.clone()).await {
                Ok(prepared) => prepared,
                Err(error) => return Finished::failed(false, error),
            };
        let info = self.call_info();
        let state = sandbox.store.data_mut();
        state.io = Some(io);
        // A warm instance's last caller must not show through.
        state.identity = self.request.identity.take();
        state.tenant = self.request.tenant.clone();
        state.config = self.plugin.config();
        state.kv.begin(
            self.plugin.kv().cloned(),
            self.deadline,
            self.request.observer.clone(),
        );
        let outbound = self.plugin.outbound().cloned();
        // Only a plugin that can call out needs the request's metadata twice.
        let inbound = match outbound {
            Some(_) => Arc::from(info.metadata.as_slice()),
            None => Arc::default(),
        };
        state.outbound.begin(
            outbound,
            self.plugin.limits().max_outbound_calls_per_call,
            self.deadline,
            inbound,
        );
        // Clocks read only for an observer: a call without one measures nothing.
        let ran = self.observed_since();
        let outcome = handle(&mut sandbox, &info, &requests).await;
        if let (Some(observer), Some(ran)) = (&self.request.observer, ran) {
            observer.used(
                ran.elapsed(),
                meter.used(),
                sandbox.store.data().memory.size,
            );
        }
        let outputs = sandbox
            .store
            .data_mut()
            .io
            .take()
            .map_or_else(Outputs::default, CallIo::into_output);
        // Outbound calls still running end with the call that made them; the store's
        // state (and the call's observer) goes with the call, not with a warm instance.
        sandbox.store.data_mut().outbound.end();
        sandbox.store.data_mut().kv.end();
        let committed = outputs.committed;
        let finished = match outcome {
            Ok(outcome) => self
                .settle(outcome, outputs)
                .unwrap_or_else(|error| Finished::failed(committed, error)),
            Err(trap) => Finished::failed(committed, classify(&sandbox.store, trap)),
        };
        self.leave(sandbox, &finished.last.result);
        finished
    }

    /// What a call needs before the guest runs, in order: a slot, the request when the
    /// shape has one, a sandbox.
    async fn prepare(
        &self,
        io: &mut CallIo,
        meter: CpuMeter,
    ) -> Result<(Option<QuotaSlot>, Slot, Vec<u8>, Sandbox), CallError> {
        let queued = self.observed_since();
        let group = match &self.request.quota {
            Some(quota) => Some(quota.admit().await?),
            None => None,
        };
        let slot = self.plugin.admission().admit(&self.request.caller).await?;
        io.admitted();
        if let (Some(observer), Some(queued)) = (&self.request.observer, queued) {
            observer.admitted(queued.elapsed());
        }
        let requests = if self.kind.one_request() {
            self.read_request(io).await?
        } else {
            Vec::new()
        };
        Ok((group, slot, requests, self.sandbox(meter).await?))
    }

    /// The one request of a unary or server-streaming call, as a batch for the guest;
    /// the request stream must end after it.
    async fn read_request(&self, io: &mut CallIo) -> Result<Vec<u8>, CallError> {
        let message = match io.next_request().await {
            Some(Ok(message)) => {
                if let Some(observer) = &self.request.observer {
                    observer.received();
                }
                message
            }
            None => return Err(CallError::MissingRequest),
            Some(Err(error)) => return Err(self.input_failed(error)),
        };
        // A client that keeps its stream open after its one message is not waited for
        // past a moment (it would hold the call's slot); its body is left unread.
        match tokio::time::timeout(REST_OF_REQUEST, io.rest_of_request()).await {
            Err(_) | Ok(Ok(false)) => Ok(Packer::one(&message)),
            Ok(Ok(true)) => Err(CallError::ExtraRequest(self.kind.name())),
            Ok(Err(error)) => Err(self.input_failed(error)),
        }
    }

    /// Why reading the request failed, as the call's error.
    fn input_failed(&self, error: InputError) -> CallError {
        let limit = self.plugin.limits().max_request_size;
        match error {
            InputError::TooLarge(size) => CallError::Limit(Limit::RequestSize { size, limit }),
            InputError::Inflated(compressed) => {
                CallError::Limit(Limit::RequestInflated { compressed, limit })
            }
            InputError::Failed(status) => CallError::Request(status),
            InputError::Idle(after) => CallError::StreamIdle(after),
        }
    }

    /// The guest's outcome, checked against the contract.
    fn settle(&self, outcome: Outcome, outputs: Outputs) -> Result<Finished, CallError> {
        let Outputs {
            committed,
            staged,
            sent,
            compress,
        } = outputs;
        // Staged headers were checked when staged; these are new.
        if let Some(headers) = outcome.headers.as_ref().filter(|_| !committed) {
            metadata::validate(headers).map_err(CallError::InvalidMetadata)?;
        }
        let headers = outcome.headers.unwrap_or(staged);
        metadata::validate(&outcome.trailers).map_err(CallError::InvalidMetadata)?;
        let limits = self.plugin.limits();
        let messages = messages_within(outcome.messages, limits.max_response_size)
            .map_err(|interrupt| interrupted(&interrupt, limits))?;
        let result = match outcome.status {
            Some(status) if status.code != Code::Ok => Err(CallError::Guest(status)),
            _ => Ok(()),
        };
        let answered = sent + messages.len();
        if result.is_ok() && self.kind.one_response() && answered != 1 {
            return Err(CallError::Contract(format!(
                "a {} method answers one message, and the plugin sent {answered}",
                self.kind.name()
            )));
        }
        Ok(Finished {
            committed,
            headers,
            last: Last {
                messages,
                compress,
                trailers: outcome.trailers,
                result,
            },
        })
    }

    /// A sandbox for the call, its bounds armed: a warm one if the plugin keeps them and
    /// one is idle, else a fresh one. With the host's pool full, idle warm instances (any
    /// plugin's) give way first.
    async fn sandbox(&self, meter: CpuMeter) -> Result<Sandbox, CallError> {
        if let Some(mut sandbox) = self.plugin.warm().and_then(WarmPool::take) {
            let cpu_time = self.plugin.limits().cpu_time;
            crate::sandbox::arm(&mut sandbox.store, self.deadline, cpu_time, meter);
            if let Some(observer) = &self.request.observer {
                observer.sandbox(true, Duration::ZERO);
            }
            return Ok(sandbox);
        }
        let making = self.observed_since();
        let fresh = match self.instantiate(meter.clone()).await {
            Err(CallError::Limit(Limit::Sandboxes | Limit::GroupMemory { .. }))
                if self.plugin.evict_idle() > 0 =>
            {
                self.instantiate(meter).await
            }
            outcome => outcome,
        };
        if let (Ok(_), Some(observer), Some(making)) = (&fresh, &self.request.observer, making) {
            observer.sandbox(false, making.elapsed());
        }
        fresh
    }

    /// A fresh Store with this call's bounds armed, and the plugin instantiated in it.
    async fn instantiate(&self, meter: CpuMeter) -> Result<Sandbox, CallError> {
        let pre = self.plugin.pre();
        let mut state = CallState::new(
            self.plugin.log_budget(),
            *self.plugin.limits(),
            self.plugin.guest_stack(),
        );
        state.memory.charge_to(
            self.request
                .quota
                .as_ref()
                .and_then(|q| q.memory().cloned()),
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
    fn leave(&self, sandbox: Sandbox, result: &Result<(), CallError>) {
        let clean = result
            .as_ref()
            .err()
            .is_none_or(CallError::leaves_instance_clean);
        if let (Some(pool), true) = (self.plugin.warm(), clean) {
            pool.put(sandbox);
        }
    }

    /// Now, when an observer will want to know how long something took.
    fn observed_since(&self) -> Option<std::time::Instant> {
        self.request
            .observer
            .as_ref()
            .map(|_| std::time::Instant::now())
    }

    /// What the guest is told of the call; moves it out of the call, which needs it once.
    fn call_info(&mut self) -> CallInfo {
        let left = self.deadline.remaining();
        CallInfo {
            method: std::mem::take(&mut self.request.method),
            timeout_nanos: Some(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX)),
            metadata: std::mem::take(&mut self.request.metadata),
            peer: self.request.peer.take(),
        }
    }
}

/// The response of a call running in its own task: it started, or it ended first.
async fn respond(
    mut started: oneshot::Receiver<Started>,
    mut finished: oneshot::Receiver<Finished>,
) -> Response {
    tokio::select! {
        biased;
        Ok(response) = &mut started => Response::Started {
            headers: response.headers,
            body: Body::new(Some(response.batches), End::Coming(finished)),
        },
        ended = &mut finished => match ended {
            Ok(ended) => answer(ended, Some(started)),
            Err(_) => Response::Failed {
                metadata: Vec::new(),
                error: lost_task(),
            },
        },
    }
}

/// The response of a call that ended before its response was taken: all at once,
/// trailers-only on an error with nothing sent.
fn answer(finished: Finished, started: Option<oneshot::Receiver<Started>>) -> Response {
    if finished.committed {
        // It started and ended in one go: what it sent waits in the channel.
        let response = started.and_then(|mut rx| rx.try_recv().ok());
        let (headers, batches) = response.map_or((Vec::new(), None), |response| {
            (response.headers, Some(response.batches))
        });
        return Response::Started {
            headers,
            body: Body::new(batches, End::Known(finished.last)),
        };
    }
    let Finished {
        headers, mut last, ..
    } = finished;
    match last.result {
        Err(error) if last.messages.is_empty() => {
            let mut metadata = headers;
            metadata.append(&mut last.trailers);
            Response::Failed { metadata, error }
        }
        result => Response::Started {
            headers,
            body: Body::new(None, End::Known(Last { result, ..last })),
        },
    }
}

/// Calls the guest's `handle` with the call's input and output in its table for as
/// long as it runs.
async fn handle(
    sandbox: &mut Sandbox,
    info: &CallInfo,
    requests: &Vec<u8>,
) -> wasmtime::Result<Outcome> {
    let table = sandbox.store.data_mut().table();
    let input = table.push(Input)?;
    let output = table.push(Output)?;
    let (input_rep, output_rep) = (input.rep(), output.rep());
    let outcome = sandbox
        .guest
        .plugrpc_plugin_handler()
        .call_handle(
            &mut sandbox.store,
            info,
            requests,
            Resource::new_borrow(input_rep),
            Resource::new_borrow(output_rep),
        )
        .await;
    // The next call of a warm instance starts without them.
    let table = sandbox.store.data_mut().table();
    table.delete(input)?;
    table.delete(output)?;
    outcome
}

/// Runs a call in a task of its own and hands its end to `done`; stops the guest (drops
/// the call) if the deadline passes, the host stops its calls or `done`'s receiver goes
/// (the client left).
async fn finish(
    call: Pin<Box<dyn Future<Output = Finished> + Send>>,
    mut done: oneshot::Sender<Finished>,
    deadline: Deadline,
    stop: Option<watch::Receiver<bool>>,
) {
    let finished = tokio::select! {
        // The call first: the other two wait on it.
        biased;
        finished = deadline.bound(call) => finished.unwrap_or_else(
            || Finished::failed(false, CallError::DeadlineExceeded),
        ),
        () = done.closed() => return,
        () = stopped(stop) => Finished::failed(false, CallError::ShuttingDown),
    };
    let _ = done.send(finished);
}

/// Completes when the host stops its calls; never without a `stop`, nor once the host
/// that could stop them is gone.
async fn stopped(stop: Option<watch::Receiver<bool>>) {
    if let Some(mut stop) = stop
        && stop.wait_for(|stopped| *stopped).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// `response`, its body telling `observer` of each message it sends.
fn observed(response: Response, observer: Option<Arc<dyn CallObserver>>) -> Response {
    match response {
        Response::Started { headers, mut body } => {
            body.observer = observer;
            Response::Started { headers, body }
        }
        failed => failed,
    }
}

/// Why a call whose task ended without an answer failed: a bug in host code (the task
/// panicked) or the runtime shutting down.
fn lost_task() -> CallError {
    CallError::Trap(wasmtime::Error::msg(
        "the call's task ended without an answer",
    ))
}

/// How a response body ends.
enum End {
    /// The call still runs; its end comes here.
    Coming(oneshot::Receiver<Finished>),
    /// The call ended so.
    Known(Last),
    /// The end was taken.
    Taken,
}

/// A response body: the messages the guest sends, then the end.
pub struct Body {
    batches: Option<mpsc::Receiver<Batch>>,
    batch: Option<Batch>,
    end: End,
    /// The last messages, sent with the end, and whether they may be compressed.
    tail: std::vec::IntoIter<Bytes>,
    tail_compress: bool,
    last: Option<BodyPart>,
    /// Told of each message as it goes.
    observer: Option<Arc<dyn CallObserver>>,
}

impl Body {
    fn new(batches: Option<mpsc::Receiver<Batch>>, end: End) -> Self {
        Self {
            batches,
            batch: None,
            end,
            tail: Vec::new().into_iter(),
            tail_compress: true,
            last: None,
            observer: None,
        }
    }
}

impl Stream for Body {
    type Item = BodyPart;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BodyPart>> {
        let this = self.get_mut();
        // What the guest sent while it ran, batch by batch.
        loop {
            if let Some(batch) = this.batch.as_mut()
                && let Some(message) = batch.messages.next()
            {
                let compress = batch.compress;
                if let Some(observer) = &this.observer {
                    observer.sent();
                }
                return Poll::Ready(Some(BodyPart::Message { message, compress }));
            }
            this.batch = None;
            let Some(batches) = this.batches.as_mut() else {
                break;
            };
            match ready!(batches.poll_recv(cx)) {
                Some(batch) => this.batch = Some(batch),
                // Closed when the call's output is dropped, at its end.
                None => this.batches = None,
            }
        }
        // Then how it ended: its last messages, trailers and result.
        let last = match std::mem::replace(&mut this.end, End::Taken) {
            End::Coming(mut finished) => match Pin::new(&mut finished).poll(cx) {
                Poll::Pending => {
                    this.end = End::Coming(finished);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(finished)) => Some(finished.last),
                Poll::Ready(Err(_)) => Some(Last::failed(lost_task())),
            },
            End::Known(last) => Some(last),
            End::Taken => None,
        };
        if let Some(last) = last {
            this.tail = last.messages.into_iter();
            this.tail_compress = last.compress;
            this.last = Some(BodyPart::End {
                trailers: last.trailers,
                result: last.result,
            });
        }
        if let Some(message) = this.tail.next() {
            let compress = this.tail_compress;
            if let Some(observer) = &this.observer {
                observer.sent();
            }
            return Poll::Ready(Some(BodyPart::Message { message, compress }));
        }
        Poll::Ready(this.last.take())
    }
}
