//! Typed views of the call's request and response messages.

use std::marker::PhantomData;

use prost::Message;

use crate::context::Context;
use crate::io::Io;
use crate::status::Status;

/// Where a streaming handler sends its response messages.
///
/// Messages are batched: one sent here may be held until the batch reaches 64 KiB, the
/// handler reads a request message that has not arrived yet, calls [`flush`](Self::flush),
/// or returns. A handler that pauses between messages and wants each one seen before the
/// pause calls `flush` after sending it.
pub struct Sink<'a, T> {
    io: &'a Io<'a>,
    _message: PhantomData<fn(T)>,
}

impl<'a, T: Message> Sink<'a, T> {
    pub(crate) fn new(cx: &'a Context<'_>) -> Self {
        Self {
            io: cx.io(),
            _message: PhantomData,
        }
    }

    /// Sends one message; it may wait in the batch (see [`Sink`]). When the batch goes to
    /// the host this waits while the client is slow to read. An error means the call is
    /// over (client gone, deadline passed): return it.
    pub fn send(&mut self, message: T) -> Result<(), Status> {
        self.io.send(&message)
    }

    /// Hands every message sent so far to the host now (headers first, if they have not
    /// gone); waits while the client is slow to read. An error means the call is over:
    /// return it.
    pub fn flush(&mut self) -> Result<(), Status> {
        self.io.flush()
    }
}

/// The messages a client streams, in order; iterate until `None`.
///
/// Waiting for a message that has not arrived sends the response messages sent so far
/// first, so a client that waits for replies before it sends more is never stuck.
pub struct Requests<'a, T> {
    io: &'a Io<'a>,
    done: bool,
    _message: PhantomData<fn() -> T>,
}

impl<'a, T: Message + Default> Requests<'a, T> {
    pub(crate) fn new(cx: &'a Context<'_>) -> Self {
        Self {
            io: cx.io(),
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
        let next = self.io.next_request();
        self.done = !matches!(next, Some(Ok(_)));
        next
    }
}
