//! The host side of the stream resources and the log import: how a guest pulls request
//! messages and pushes responses while HTTP/2 flow control, deadlines and cancellation
//! stay with the host.

use std::sync::Arc;

use bytes::Bytes;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tonic::Streaming;
use tonic::metadata::MetadataMap;
use wasmtime::component::Resource;

use super::bindings::{
    HostRequestStream, HostResponseStream, Level, LogHost, MetadataEntry, Status, StreamsHost,
    TypesHost,
};
use super::call::{CallState, Interrupt};
use crate::metadata;
use crate::status;

/// Request messages of a client- or bidi-streaming call, as tonic decoded them.
#[allow(unreachable_pub)] // `pub` because bindgen re-exports it
pub struct RequestStream {
    messages: Streaming<Bytes>,
}

impl RequestStream {
    pub(crate) fn new(messages: Streaming<Bytes>) -> Self {
        Self { messages }
    }
}

/// What the response stream carries to the HTTP/2 side: messages, then the end.
pub(crate) type ResponseItem = Result<Bytes, tonic::Status>;

/// Response bytes one call may have on their way to the client. Large enough that a
/// guest sending many small messages fills a whole write before it waits, small enough
/// to bound a slow reader's cost.
const RESPONSE_BUFFER: usize = 256 << 10;

/// What each message counts against [`RESPONSE_BUFFER`] at least, so that empty
/// messages are bounded too.
const MIN_MESSAGE_COST: usize = 64;

/// Messages that fit in [`RESPONSE_BUFFER`] at their smallest, plus the end.
const RESPONSE_MESSAGES: usize = RESPONSE_BUFFER / MIN_MESSAGE_COST + 1;

/// An item on its way to the response body, holding its share of the call's buffer
/// until the body takes it.
pub(crate) struct Outgoing {
    item: ResponseItem,
    _buffered: Option<OwnedSemaphorePermit>,
}

impl Outgoing {
    /// The last item of a response: its trailers or its error.
    pub(crate) fn last(item: ResponseItem) -> Self {
        Self {
            item,
            _buffered: None,
        }
    }

    /// The item, its share of the buffer given back.
    pub(crate) fn into_item(self) -> ResponseItem {
        self.item
    }
}

/// The channel between a call's response stream and its response body.
pub(crate) fn response_channel() -> (mpsc::Sender<Outgoing>, mpsc::Receiver<Outgoing>) {
    mpsc::channel(RESPONSE_MESSAGES)
}

/// Response side of a server- or bidi-streaming call.
#[allow(unreachable_pub)] // `pub` because bindgen re-exports it
pub struct ResponseStream {
    messages: mpsc::Sender<Outgoing>,
    buffer: Arc<Semaphore>,
}

impl ResponseStream {
    pub(crate) fn new(messages: mpsc::Sender<Outgoing>) -> Self {
        Self {
            messages,
            buffer: Arc::new(Semaphore::new(RESPONSE_BUFFER)),
        }
    }
}

impl CallState {
    /// Hands response headers to the HTTP/2 side once, building them only then; false if
    /// they went already.
    fn commit_headers(&mut self, headers: impl FnOnce() -> MetadataMap) -> bool {
        match self.pending_headers.take() {
            Some(tx) => {
                // The receiver is gone only when the call was abandoned; the next send says so.
                let _ = tx.send(headers());
                true
            }
            None => false,
        }
    }
}

impl HostRequestStream for CallState {
    async fn next(
        &mut self,
        stream: Resource<RequestStream>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Status>> {
        // A client may wait for response headers before it sends anything: answer them
        // now, or a bidi call whose guest reads first would wait on itself.
        self.commit_headers(MetadataMap::new);
        let stream = self.table.get_mut(&stream)?;
        match stream.messages.message().await {
            Ok(message) => Ok(Ok(message.map(Vec::from))),
            // Over max_request_size: the host's limit, not the guest's to handle.
            Err(error) => match status::oversized_message(&error) {
                Some(size) => Err(Interrupt::RequestTooLarge(size).into()),
                None => Ok(Err(status::to_guest(&error))),
            },
        }
    }

    async fn drop(&mut self, stream: Resource<RequestStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

impl HostResponseStream for CallState {
    async fn send_headers(
        &mut self,
        stream: Resource<ResponseStream>,
        headers: Vec<MetadataEntry>,
    ) -> wasmtime::Result<Result<(), Status>> {
        // Headers gRPC cannot carry are the plugin's bug, not the caller's: stop the call.
        let headers = metadata::from_guest(headers).map_err(Interrupt::from)?;
        self.table.get(&stream)?;
        Ok(if self.commit_headers(|| headers) {
            Ok(())
        } else {
            Err(status::headers_already_sent())
        })
    }

    async fn send(
        &mut self,
        stream: Resource<ResponseStream>,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Status>> {
        if message.len() > self.limits.max_response_size {
            return Err(Interrupt::ResponseTooLarge(message.len()).into());
        }
        self.commit_headers(MetadataMap::new);
        let stream = self.table.get_mut(&stream)?;
        // Waits while the client is slow; a message larger than the buffer takes all of it.
        let cost = message.len().clamp(MIN_MESSAGE_COST, RESPONSE_BUFFER);
        let buffered = stream
            .buffer
            .clone()
            .acquire_many_owned(u32::try_from(cost).unwrap_or(u32::MAX))
            .await
            .map_err(|_| Interrupt::Cancelled)?;
        let outgoing = Outgoing {
            item: Ok(Bytes::from(message)),
            _buffered: Some(buffered),
        };
        match stream.messages.send(outgoing).await {
            Ok(()) => Ok(Ok(())),
            // The HTTP/2 side dropped the receiver: the client left. Stop the guest.
            Err(_) => Err(wasmtime::Error::new(Interrupt::Cancelled)),
        }
    }

    async fn drop(&mut self, stream: Resource<ResponseStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

impl StreamsHost for CallState {}

impl TypesHost for CallState {}

impl LogHost for CallState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        self.log.emit(level, "log", message.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::DEFAULT_LIMITS;
    use crate::runtime::output::LogBudget;

    /// A call's state holding a response stream, and the body's end of its channel.
    fn call() -> (CallState, u32, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = response_channel();
        let mut state = CallState::new(LogBudget::new("test".into()), DEFAULT_LIMITS, 1 << 20);
        let stream = state.table.push(ResponseStream::new(tx)).unwrap();
        (state, stream.rep(), rx)
    }

    async fn send(state: &mut CallState, stream: u32, size: usize) {
        let sent = HostResponseStream::send(state, Resource::new_borrow(stream), vec![0; size]);
        sent.await.unwrap().unwrap();
    }

    /// Whether a send of `size` bytes waits for the reader.
    async fn waits(state: &mut CallState, stream: u32, size: usize) -> bool {
        let sent = send(state, stream, size);
        tokio::time::timeout(Duration::from_millis(50), sent)
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_slow_reader_holds_the_guest_once_the_buffer_is_full() {
        let (mut state, stream, mut rx) = call();
        for _ in 0..RESPONSE_BUFFER / 4096 {
            send(&mut state, stream, 4096).await;
        }
        assert!(waits(&mut state, stream, 4096).await);
        // The body takes one message: its share is given back and the guest goes on.
        drop(rx.recv().await);
        assert!(!waits(&mut state, stream, 4096).await);
    }

    #[tokio::test]
    async fn empty_messages_count_against_the_buffer_too() {
        let (mut state, stream, _rx) = call();
        for _ in 0..RESPONSE_BUFFER / MIN_MESSAGE_COST {
            send(&mut state, stream, 0).await;
        }
        assert!(waits(&mut state, stream, 0).await);
    }

    #[tokio::test]
    async fn a_message_larger_than_the_buffer_goes_out_alone() {
        let (mut state, stream, mut rx) = call();
        send(&mut state, stream, 2 * RESPONSE_BUFFER).await;
        assert!(waits(&mut state, stream, 1).await);
        let message = rx.recv().await.unwrap().into_item().unwrap();
        assert_eq!(message.len(), 2 * RESPONSE_BUFFER);
        assert!(!waits(&mut state, stream, 1).await);
    }
}
