//! The call capability: one call's input and output, as the guest's `input` and `output`
//! resources. The guest pulls batches of request messages and pushes batches of
//! responses while flow control, deadlines and cancellation stay with the host.
//!
//! Response headers go out once: at `send-headers`, at the first `send`, or when a `read`
//! has waited [`HEADERS_GRACE`] and none went out yet (a client may wait for headers
//! before it sends). A call that ends before that answers everything at once
//! ("trailers-only" on an error).
//! No config section: its bounds are the plugin's message sizes.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use std::future::{Future as _, poll_fn};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Buf;
use futures::Stream;
use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::bindings::{CallHost, HostInput, HostOutput, MetadataEntry, Status, add_call_to_linker};
use crate::errors::Interrupt;
use crate::metadata;
use crate::sandbox::CallState;

/// Response bytes one call may have on their way to the client. Large enough that a
/// guest sending many small messages fills a whole write before it waits, small enough
/// to bound a slow reader's cost.
const RESPONSE_BUFFER: usize = 256 << 10;

/// What each message counts against [`RESPONSE_BUFFER`] at least, so that empty
/// messages are bounded too.
const MIN_MESSAGE_COST: usize = 64;

/// Batches that fit in [`RESPONSE_BUFFER`] at their smallest: a send always waits on the
/// buffer before it could wait on the channel.
const RESPONSE_BATCHES: usize = RESPONSE_BUFFER / MIN_MESSAGE_COST;

/// Most request messages one `read` hands the guest, whatever it asks for.
const MAX_READ_MESSAGES: u32 = 1024;

/// Messages one batch from the guest may hold: bounds what splitting it costs the host
/// (an empty message is one byte to the guest and a 32-byte handle here). Far above what
/// the SDK's 64 KiB batches hold of any real message.
const MAX_BATCH_MESSAGES: usize = 1 << 16;

/// Request bytes past which a `read` stops adding messages that are already waiting.
const READ_BATCH_BYTES: usize = 256 << 10;

/// How long a read waits for a request message before the host sends the response
/// headers on its own (a client may wait for them before it sends). A client's first
/// message trails its headers by far less, so a call that reads it and fails still
/// answers in one trailers-only frame; a client that does wait pays this once per call.
const HEADERS_GRACE: Duration = Duration::from_millis(10);

/// Why a request message could not be read; the front door sorts its transport's
/// errors into these.
#[derive(Debug)]
pub enum InputError {
    /// A message over the plugin's `max_request_size`, of this many bytes.
    TooLarge(usize),
    /// A compressed message of this many bytes that decompresses past the plugin's
    /// `max_request_size` (a zip bomb is refused before it is whole).
    Inflated(usize),
    /// The request stream failed (malformed framing, a reset, ...), as this status.
    Failed(Status),
    /// No message went either way for the stream idle timeout, this long.
    Idle(Duration),
}

/// One request message as its front door decoded it.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    /// The message, decompressed.
    pub message: Bytes,
    /// Whether it arrived compressed (a plugin may ask, see `plugrpc:plugin/compression`).
    pub compressed: bool,
}

impl Received {
    /// A message that arrived as it is.
    pub fn plain(message: Bytes) -> Self {
        Self {
            message,
            compressed: false,
        }
    }
}

/// The request messages of a call, as its front door decodes them.
pub type Requests = Pin<Box<dyn Stream<Item = Result<Received, InputError>> + Send>>;

/// The guest's handle on the call's input; the input itself is the call's [`CallIo`].
#[allow(unreachable_pub)] // `pub` because bindgen names it in public traits
pub struct Input;

/// The guest's handle on the call's output; the output itself is the call's [`CallIo`].
#[allow(unreachable_pub)] // `pub` because bindgen names it in public traits
pub struct Output;

/// Messages of one `send`; their share of the response buffer is given back when the
/// batch is dropped.
pub(crate) struct Batch {
    pub(crate) messages: std::vec::IntoIter<Bytes>,
    /// Whether the guest let these messages be compressed.
    pub(crate) compress: bool,
    _buffered: OwnedSemaphorePermit,
}

/// A response that started while its call runs on: made when headers go out, so a call
/// that answers all at once (every unary call) never makes its channel.
pub(crate) struct Started {
    /// The response headers.
    pub(crate) headers: Vec<MetadataEntry>,
    /// What the guest sends from now on, for the response body.
    pub(crate) batches: mpsc::Receiver<Batch>,
}

/// One call's input and output, held in its Store while the guest runs.
pub(crate) struct CallIo {
    input: InputState,
    output: OutputState,
    /// Ends a stream with no message either way for the host's stream idle timeout.
    idle: Option<Idle>,
}

impl CallIo {
    pub(crate) fn new(
        input: Requests,
        start: oneshot::Sender<Started>,
        max_response_size: usize,
        idle_timeout: Option<Duration>,
    ) -> Self {
        Self {
            input: InputState {
                requests: input,
                failed: None,
                ended: false,
                grace: None,
                delivered: 0,
                window: Vec::new(),
            },
            output: OutputState {
                parts: None,
                start: Some(start),
                staged: Vec::new(),
                sent: 0,
                max_response_size,
                compress: true,
            },
            idle: idle_timeout.map(Idle::new),
        }
    }

    /// The call has its slot: the idle clock starts now, not while it queued.
    pub(crate) fn admitted(&mut self) {
        self.touch();
    }

    /// A message went one way or the other: the stream is not idle.
    fn touch(&mut self) {
        if let Some(idle) = self.idle.as_mut() {
            idle.last = Instant::now();
        }
    }

    /// Sends a batch of the guest's, ending the stream instead when the client has not
    /// let one through for the idle timeout.
    async fn send(&mut self, batch: Vec<u8>) -> wasmtime::Result<()> {
        let Self { output, idle, .. } = self;
        match idle {
            None => output.send(batch).await?,
            Some(idle) => {
                tokio::select! {
                    sent = output.send(batch) => sent?,
                    after = poll_fn(|cx| idle.poll_expired(cx)) => {
                        return Err(Interrupt::StreamIdle(after).into());
                    }
                }
            }
        }
        self.touch();
        Ok(())
    }

    /// The next request message, waiting for it; for calls whose request is read
    /// before the guest starts.
    pub(crate) async fn next_request(&mut self) -> Option<Result<Bytes, InputError>> {
        self.input.begin_batch();
        let next = poll_fn(|cx| self.input.poll_next(cx)).await;
        next.map(|received| received.map(|received| self.input.deliver(received)))
    }

    /// After the one request of a unary or server-streaming call: waits for the client
    /// to end its request stream (so the body is read whole, and an HTTP/1.1 connection
    /// can carry the next request). `Some(true)` when another message came instead.
    pub(crate) async fn rest_of_request(&mut self) -> Result<bool, InputError> {
        match poll_fn(|cx| self.input.poll_next(cx)).await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(error)) => Err(error),
        }
    }

    /// Whether request message `index` (0 is the call's first) arrived compressed, for
    /// a message the latest batch handed to the guest.
    pub(crate) fn request_compressed(&self, index: u64) -> Option<bool> {
        let input = &self.input;
        let first = input.delivered - input.window.len() as u64;
        let offset = usize::try_from(index.checked_sub(first)?).ok()?;
        input.window.get(offset).copied()
    }

    /// Lets the response messages sent from now on be compressed, or not.
    pub(crate) fn compress_responses(&mut self, enabled: bool) {
        self.output.compress = enabled;
    }

    /// Adds the request messages that are waiting (up to `max`) to `batch`; waits for
    /// one when none is, sending the response headers first if they have not gone. An
    /// error ends the batch, or is the answer when the batch is empty.
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
        batch: &mut Packer,
    ) -> Poll<Result<(), InputError>> {
        let read = self.read_into(cx, max, batch);
        if batch.count() > 0 {
            // The next read that waits gets the whole grace again.
            self.input.grace = None;
            self.touch();
        }
        read
    }

    fn read_into(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
        batch: &mut Packer,
    ) -> Poll<Result<(), InputError>> {
        while batch.count() < max && batch.len() < READ_BATCH_BYTES {
            match self.input.poll_next(cx) {
                Poll::Ready(Some(Ok(received))) => batch.push(&self.input.deliver(received)),
                Poll::Ready(None) => break,
                Poll::Ready(Some(Err(error))) if batch.count() > 0 => {
                    self.input.failed = Some(error);
                    break;
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                Poll::Pending if batch.count() > 0 => break,
                Poll::Pending => {
                    if let Some(idle) = self.idle.as_mut()
                        && let Poll::Ready(after) = idle.poll_expired(cx)
                    {
                        return Poll::Ready(Err(InputError::Idle(after)));
                    }
                    if self.output.start.is_some() {
                        let grace = self
                            .input
                            .grace
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(HEADERS_GRACE)));
                        if grace.as_mut().poll(cx).is_ready() {
                            self.output.commit_headers();
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// What the guest left of its output: whether headers went out, the headers staged
    /// if not, how many messages left, and whether the last ones may be compressed.
    pub(crate) fn into_output(self) -> Outputs {
        let output = self.output;
        Outputs {
            committed: output.start.is_none(),
            staged: output.staged,
            sent: output.sent,
            compress: output.compress,
        }
    }
}

/// What the guest left of a call's output when it returned.
#[derive(Default)]
pub(crate) struct Outputs {
    /// The response headers went out.
    pub(crate) committed: bool,
    /// The headers staged, when they did not.
    pub(crate) staged: Vec<MetadataEntry>,
    /// Messages sent before the outcome's.
    pub(crate) sent: usize,
    /// Whether the outcome's messages may be compressed.
    pub(crate) compress: bool,
}

/// The request side: the door's stream, with an error seen while batching kept for the
/// next read.
struct InputState {
    requests: Requests,
    failed: Option<InputError>,
    ended: bool,
    /// Runs while a read waits with no response headers sent yet.
    grace: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Messages handed to the guest so far; the latest batch is the last of them...
    delivered: u64,
    /// ...and whether each of its messages arrived compressed.
    window: Vec<bool>,
}

/// The stream idle timer: when a message last went either way, and a timer that, when
/// it fires, checks whether one has since.
struct Idle {
    after: Duration,
    last: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Idle {
    fn new(after: Duration) -> Self {
        let last = Instant::now();
        Self {
            after,
            last,
            timer: Box::pin(tokio::time::sleep_until(last + after)),
        }
    }

    /// Ready with the timeout once the stream has been idle that long.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<Duration> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let due = self.last + self.after;
            if Instant::now() >= due {
                return Poll::Ready(self.after);
            }
            // A message went since the timer was set: wait out the rest.
            self.timer.as_mut().reset(due);
        }
    }
}

impl InputState {
    /// A new batch for the guest begins: the compression flags it may ask about are its.
    fn begin_batch(&mut self) {
        self.window.clear();
    }

    /// Hands a message to the guest's batch, noting how it arrived.
    fn deliver(&mut self, received: Received) -> Bytes {
        self.delivered += 1;
        self.window.push(received.compressed);
        received.message
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Received, InputError>>> {
        if let Some(error) = self.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        let next = ready!(self.requests.as_mut().poll_next(cx));
        self.ended = next.is_none();
        Poll::Ready(next)
    }
}

/// Where a started response's batches go, and the bytes they may hold on the way.
struct Parts {
    channel: mpsc::Sender<Batch>,
    buffer: Arc<Semaphore>,
}

/// The response side: headers until they go, then batches into the channel.
struct OutputState {
    /// Where batches go once the response started.
    parts: Option<Parts>,
    /// Where the response's start is announced; `None` once headers went out.
    start: Option<oneshot::Sender<Started>>,
    staged: Vec<MetadataEntry>,
    sent: usize,
    max_response_size: usize,
    /// Whether the guest lets its messages be compressed from now on.
    compress: bool,
}

impl OutputState {
    /// Sends the staged headers unless they went already.
    fn commit_headers(&mut self) {
        let Some(start) = self.start.take() else {
            return;
        };
        let (channel, batches) = mpsc::channel(RESPONSE_BATCHES);
        self.parts = Some(Parts {
            channel,
            buffer: Arc::new(Semaphore::new(RESPONSE_BUFFER)),
        });
        // The receiver is gone only when the call was abandoned; the next send says so.
        let _ = start.send(Started {
            headers: std::mem::take(&mut self.staged),
            batches,
        });
    }

    async fn send(&mut self, batch: Vec<u8>) -> wasmtime::Result<()> {
        let messages = messages_within(batch, self.max_response_size)?;
        self.commit_headers();
        if messages.is_empty() {
            return Ok(());
        }
        // Headers went out just above, so the channel exists.
        let parts = self.parts.as_ref().ok_or(Interrupt::Cancelled)?;
        // Waits while the client is slow; a batch larger than the buffer takes all of it.
        let cost: usize = messages.iter().map(|m| m.len().max(MIN_MESSAGE_COST)).sum();
        let cost = u32::try_from(cost.min(RESPONSE_BUFFER)).unwrap_or(u32::MAX);
        let buffered = parts
            .buffer
            .clone()
            .acquire_many_owned(cost)
            .await
            .map_err(|_| Interrupt::Cancelled)?;
        self.sent += messages.len();
        let batch = Batch {
            messages: messages.into_iter(),
            compress: self.compress,
            _buffered: buffered,
        };
        // The response body dropped its end: the client left. Stop the guest.
        parts
            .channel
            .send(batch)
            .await
            .map_err(|_| Interrupt::Cancelled.into())
    }
}

/// Adds the `call` interface (and the types it uses) to the linker.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    crate::bindings::add_types_to_linker::<CallState, Io>(linker, CallState::io_view)?;
    add_call_to_linker::<CallState, Io>(linker, CallState::io_view)
}

/// The [`HasData`] of the call capability.
struct Io;

impl HasData for Io {
    type Data<'a> = IoView<'a>;
}

/// What the call capability's host functions see of a call.
pub(crate) struct IoView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) io: Option<&'a mut CallIo>,
}

impl IoView<'_> {
    /// The call's I/O, after checking the guest's handle is one of this call's.
    fn io<T: 'static>(&mut self, handle: &Resource<T>) -> wasmtime::Result<&mut CallIo> {
        self.table.get(handle)?;
        self.io
            .as_deref_mut()
            .ok_or_else(|| wasmtime::Error::msg("no call is in progress"))
    }
}

impl HostInput for IoView<'_> {
    async fn read(
        &mut self,
        input: Resource<Input>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, Status>> {
        let io = self.io(&input)?;
        let max = usize::try_from(max.clamp(1, MAX_READ_MESSAGES)).unwrap_or(1);
        io.input.begin_batch();
        let mut batch = Packer::default();
        match poll_fn(|cx| io.poll_read(cx, max, &mut batch)).await {
            Ok(()) => Ok(Ok(batch.finish())),
            // Over max_request_size: the host's limit, not the guest's to handle.
            Err(InputError::TooLarge(size)) => Err(Interrupt::RequestTooLarge(size).into()),
            Err(InputError::Inflated(size)) => Err(Interrupt::RequestInflated(size).into()),
            Err(InputError::Failed(status)) => Ok(Err(status)),
            // The host's limit too: the stream ends whatever the guest would do.
            Err(InputError::Idle(after)) => Err(Interrupt::StreamIdle(after).into()),
        }
    }

    async fn drop(&mut self, input: Resource<Input>) -> wasmtime::Result<()> {
        self.table.delete(input)?;
        Ok(())
    }
}

impl HostOutput for IoView<'_> {
    fn stage_headers(
        &mut self,
        output: Resource<Output>,
        headers: Vec<MetadataEntry>,
    ) -> wasmtime::Result<Result<(), Status>> {
        // Headers gRPC cannot carry are the plugin's bug, not the caller's: stop the call.
        metadata::validate(&headers).map_err(Interrupt::from)?;
        let output = &mut self.io(&output)?.output;
        if output.start.is_none() {
            return Ok(Err(headers_already_sent()));
        }
        output.staged = headers;
        Ok(Ok(()))
    }

    async fn send_headers(
        &mut self,
        output: Resource<Output>,
    ) -> wasmtime::Result<Result<(), Status>> {
        // Headers that went out already are what was asked for: nothing to do.
        self.io(&output)?.output.commit_headers();
        Ok(Ok(()))
    }

    async fn send(
        &mut self,
        output: Resource<Output>,
        batch: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Status>> {
        self.io(&output)?.send(batch).await?;
        Ok(Ok(()))
    }

    fn headers_sent(&mut self, output: Resource<Output>) -> wasmtime::Result<bool> {
        Ok(self.io(&output)?.output.start.is_none())
    }

    async fn drop(&mut self, output: Resource<Output>) -> wasmtime::Result<()> {
        self.table.delete(output)?;
        Ok(())
    }
}

impl CallHost for IoView<'_> {}

impl crate::bindings::TypesHost for IoView<'_> {}

/// Told to a guest that stages headers after they went out.
fn headers_already_sent() -> Status {
    Status {
        code: crate::bindings::Code::FailedPrecondition,
        message: "response headers were already sent".into(),
        details: Vec::new(),
    }
}

// The batch format of `call.messages`: each message prefixed with its length as a
// protobuf varint, all in one buffer (one allocation and one copy per batch, not per
// message).

/// A batch whose lengths do not add up: the plugin broke the contract.
#[derive(Clone, Debug, thiserror::Error)]
#[error("a message batch is malformed: {0}")]
pub(crate) struct MalformedBatch(&'static str);

/// The messages of a batch, each a slice of the one buffer.
pub(crate) fn split(batch: Vec<u8>) -> Result<Vec<Bytes>, MalformedBatch> {
    let mut rest = Bytes::from(batch);
    let mut messages = Vec::new();
    while rest.has_remaining() {
        if messages.len() == MAX_BATCH_MESSAGES {
            return Err(MalformedBatch("more than 65536 messages in one batch"));
        }
        let len = decode_varint(&mut rest).map_err(|_| MalformedBatch("bad length prefix"))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= rest.len())
            .ok_or(MalformedBatch("a length runs past the end"))?;
        if len == rest.len() {
            // The last message takes the rest as it is: no shared handle to make.
            messages.push(rest);
            break;
        }
        messages.push(rest.split_to(len));
    }
    Ok(messages)
}

/// A guest batch's messages, each within `limit` bytes (`max_response_size`).
pub(crate) fn messages_within(batch: Vec<u8>, limit: usize) -> Result<Vec<Bytes>, Interrupt> {
    let messages = split(batch)?;
    match messages.iter().map(Bytes::len).find(|&size| size > limit) {
        Some(size) => Err(Interrupt::ResponseTooLarge(size)),
        None => Ok(messages),
    }
}

/// Builds a batch for the guest.
#[derive(Default)]
pub(crate) struct Packer {
    buffer: Vec<u8>,
    count: usize,
}

impl Packer {
    /// A batch holding `message` alone.
    pub(crate) fn one(message: &[u8]) -> Vec<u8> {
        let mut packer = Self::default();
        packer.push(message);
        packer.buffer
    }

    pub(crate) fn push(&mut self, message: &[u8]) {
        self.buffer
            .reserve(encoded_len_varint(message.len() as u64) + message.len());
        encode_varint(message.len() as u64, &mut self.buffer);
        self.buffer.extend_from_slice(message);
        self.count += 1;
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    pub(crate) fn len(&self) -> usize {
        self.buffer.len()
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buffer
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A call's output whose response started, and the body's end of its channel.
    fn output() -> (OutputState, mpsc::Receiver<Batch>) {
        let (start, mut started) = oneshot::channel();
        let io = CallIo::new(Box::pin(futures::stream::empty()), start, 4 << 20, None);
        let mut output = io.output;
        output.commit_headers();
        let started = started.try_recv().ok().unwrap();
        (output, started.batches)
    }

    async fn send(output: &mut OutputState, sizes: &[usize]) {
        let mut batch = Packer::default();
        for &size in sizes {
            batch.push(&vec![0; size]);
        }
        output.send(batch.finish()).await.unwrap();
    }

    /// Whether a send of `size` bytes waits for the reader.
    async fn waits(output: &mut OutputState, size: usize) -> bool {
        let sizes = [size];
        let sent = send(output, &sizes);
        tokio::time::timeout(Duration::from_millis(50), sent)
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_slow_reader_holds_the_guest_once_the_buffer_is_full() {
        let (mut output, mut rx) = output();
        for _ in 0..RESPONSE_BUFFER / 4096 {
            send(&mut output, &[4096]).await;
        }
        assert!(waits(&mut output, 4096).await);
        // The body takes one batch: its share is given back and the guest goes on.
        drop(rx.recv().await);
        assert!(!waits(&mut output, 4096).await);
    }

    #[tokio::test]
    async fn empty_messages_count_against_the_buffer_too() {
        let (mut output, _rx) = output();
        send(&mut output, &vec![0; RESPONSE_BUFFER / MIN_MESSAGE_COST]).await;
        assert!(waits(&mut output, 0).await);
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_buffer_goes_out_alone() {
        let (mut output, mut rx) = output();
        send(&mut output, &[2 * RESPONSE_BUFFER]).await;
        assert!(waits(&mut output, 1).await);
        let mut batch = rx.recv().await.expect("a batch");
        assert_eq!(batch.messages.next().unwrap().len(), 2 * RESPONSE_BUFFER);
        drop(batch);
        assert!(!waits(&mut output, 1).await);
    }

    #[tokio::test]
    async fn an_oversized_message_stops_the_call() {
        let (mut output, _rx) = output();
        let batch = Packer::one(&vec![0; (4 << 20) + 1]);
        let error = output.send(batch).await.unwrap_err();
        assert!(matches!(
            error.downcast_ref::<Interrupt>(),
            Some(Interrupt::ResponseTooLarge(_))
        ));
    }

    #[test]
    fn packed_messages_split_back_in_order() {
        let mut packer = Packer::default();
        let big = vec![9u8; 300];
        for message in [&b"a"[..], b"", &big] {
            packer.push(message);
        }
        assert_eq!(packer.count(), 3);
        let messages = split(packer.finish()).unwrap();
        assert_eq!(messages, [&b"a"[..], b"", &big[..]]);
        assert!(split(Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn malformed_batches_are_refused() {
        assert!(split(vec![5, 1, 2]).is_err(), "length past the end");
        assert!(split(vec![0x80]).is_err(), "truncated varint");
        assert!(split(vec![0xff; 11]).is_err(), "overlong varint");
    }

    /// A call's I/O whose request messages are whatever is sent on the returned sender.
    fn fed() -> (
        CallIo,
        tokio::sync::mpsc::UnboundedSender<Result<Received, InputError>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let requests: Requests = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|message| (message, rx))
        }));
        let (start, _) = oneshot::channel();
        (CallIo::new(requests, start, 4 << 20, None), tx)
    }

    /// Sends one message after `delay`, from a task of its own.
    fn send_after(
        tx: &tokio::sync::mpsc::UnboundedSender<Result<Received, InputError>>,
        delay: Duration,
    ) {
        let tx = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            tx.send(Ok(Received::plain(Bytes::from_static(b"m"))))
                .unwrap();
        });
    }

    async fn read(io: &mut CallIo) -> usize {
        let mut batch = Packer::default();
        poll_fn(|cx| io.poll_read(cx, 64, &mut batch))
            .await
            .unwrap();
        batch.count()
    }

    #[tokio::test(start_paused = true)]
    async fn headers_go_out_only_after_one_read_waited_the_whole_grace() {
        let (mut io, tx) = fed();
        for _ in 0..3 {
            send_after(&tx, HEADERS_GRACE / 2);
            assert_eq!(read(&mut io).await, 1);
        }
        assert!(io.output.start.is_some(), "no read waited the whole grace");
        send_after(&tx, HEADERS_GRACE * 3);
        assert_eq!(read(&mut io).await, 1);
        assert!(io.output.start.is_none(), "a read that waited sent them");
    }

    #[test]
    fn a_batch_of_too_many_messages_is_refused() {
        assert_eq!(
            split(vec![0; MAX_BATCH_MESSAGES]).unwrap().len(),
            MAX_BATCH_MESSAGES
        );
        assert!(split(vec![0; MAX_BATCH_MESSAGES + 1]).is_err());
    }
}
