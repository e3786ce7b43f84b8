//! The host side of the stream resources and the log import: how a guest pulls request
//! messages and pushes responses while HTTP/2 flow control, deadlines and cancellation
//! stay with the host.

use bytes::Bytes;
use tokio::sync::mpsc;
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

/// Response side of a server- or bidi-streaming call.
#[allow(unreachable_pub)] // `pub` because bindgen re-exports it
pub struct ResponseStream {
    messages: mpsc::Sender<ResponseItem>,
}

impl ResponseStream {
    pub(crate) fn new(messages: mpsc::Sender<ResponseItem>) -> Self {
        Self { messages }
    }
}

impl CallState {
    /// Hands response headers to the HTTP/2 side once; false if they went already.
    fn commit_headers(&mut self, headers: MetadataMap) -> bool {
        match self.pending_headers.take() {
            Some(tx) => {
                // The receiver is gone only when the call was abandoned; the next send says so.
                let _ = tx.send(headers);
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
        self.commit_headers(MetadataMap::new());
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
        Ok(if self.commit_headers(headers) {
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
        self.commit_headers(MetadataMap::new());
        let stream = self.table.get_mut(&stream)?;
        match stream.messages.send(Ok(Bytes::from(message))).await {
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
