//! Typed views of the host-owned request and response streams.

use std::marker::PhantomData;

use prost::Message;

use crate::bindings::plugrpc::plugin::streams::{RequestStream, ResponseStream};
use crate::context::Context;
use crate::status::Status;

/// The untyped response stream handed to generated code.
#[derive(Clone, Copy)]
pub struct RawSink<'a> {
    out: &'a ResponseStream,
    cx: &'a Context,
}

impl<'a> RawSink<'a> {
    /// Pairs the host's stream with the call's context (whose headers go out first).
    pub fn new(out: &'a ResponseStream, cx: &'a Context) -> Self {
        Self { out, cx }
    }

    fn send(&self, message: &[u8]) -> Result<(), Status> {
        self.flush_headers()?;
        self.out.send(message).map_err(Status::from)
    }

    /// Sends the context's headers unless they went already.
    pub fn flush_headers(&self) -> Result<(), Status> {
        match self.cx.take_headers() {
            Some(headers) => self.out.send_headers(&headers).map_err(Status::from),
            None => Ok(()),
        }
    }
}

/// Where a streaming handler sends its response messages.
pub struct Sink<'a, T> {
    raw: RawSink<'a>,
    _message: PhantomData<fn(T)>,
}

impl<'a, T: Message> Sink<'a, T> {
    /// Wraps the untyped stream; called by generated code.
    pub fn new(raw: RawSink<'a>) -> Self {
        Self {
            raw,
            _message: PhantomData,
        }
    }

    /// Sends one message, waiting while the client is slow to read. An error means the
    /// call is over (client gone, deadline passed): return it.
    pub fn send(&mut self, message: T) -> Result<(), Status> {
        self.raw.send(&message.encode_to_vec())
    }
}

/// The untyped request stream handed to generated code.
#[derive(Clone, Copy)]
pub struct RawRequests<'a> {
    input: &'a RequestStream,
    /// On a bidi call, where headers set before the first read go out.
    headers_to: Option<RawSink<'a>>,
}

impl<'a> RawRequests<'a> {
    /// Wraps the host's stream.
    pub fn new(input: &'a RequestStream) -> Self {
        Self {
            input,
            headers_to: None,
        }
    }

    /// On a bidi call, sends pending response headers before the first read: the client
    /// may be waiting for them before it sends anything.
    pub(crate) fn flushing_headers_to(mut self, sink: RawSink<'a>) -> Self {
        self.headers_to = Some(sink);
        self
    }
}

/// The messages a client streams, in order; iterate until `None`.
pub struct Requests<'a, T> {
    raw: RawRequests<'a>,
    done: bool,
    _message: PhantomData<fn() -> T>,
}

impl<'a, T: Message + Default> Requests<'a, T> {
    /// Wraps the untyped stream; called by generated code.
    pub fn new(raw: RawRequests<'a>) -> Self {
        Self {
            raw,
            done: false,
            _message: PhantomData,
        }
    }
}

impl<T: Message + Default> Iterator for Requests<'_, T> {
    type Item = Result<T, Status>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(sink) = self.raw.headers_to.take()
            && let Err(status) = sink.flush_headers()
        {
            self.done = true;
            return Some(Err(status));
        }
        match self.raw.input.next() {
            Ok(Some(bytes)) => Some(T::decode(bytes.as_slice()).map_err(Status::from)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(status) => {
                self.done = true;
                Some(Err(status.into()))
            }
        }
    }
}
