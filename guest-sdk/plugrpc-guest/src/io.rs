//! One call's crossings into the host, kept few: response messages wait in a batch,
//! request messages arrive in batches, and response headers are staged here until a
//! crossing could send them.

use std::cell::RefCell;

use prost::Message;

use crate::bindings::plugrpc::plugin::call::{Input, Outcome, Output};
use crate::bindings::plugrpc::plugin::compression;
use crate::metadata::Metadata;
use crate::status::Status;

/// Pending response bytes at which the batch goes to the host: large enough to carry
/// many small messages per crossing, small enough not to hold a stream back.
const BATCH_BYTES: usize = 64 * 1024;

/// Most request messages taken from the host in one read.
const READ_MESSAGES: u32 = 64;

/// The call's input and output as the host lent them, and what waits to cross.
#[derive(Debug)]
pub(crate) struct Io<'a> {
    input: &'a Input,
    output: &'a Output,
    state: RefCell<State>,
}

/// Whether the response headers went out, as far as the guest knows.
#[derive(Clone, Copy, Debug, PartialEq)]
enum HeadersGone {
    /// They had not gone at the last crossing that could send them (or there was none).
    No,
    /// A crossing since may have sent them; only the host knows.
    Maybe,
    /// They went.
    Yes,
}

/// What a call holds between crossings.
#[derive(Debug)]
struct State {
    /// Response messages not yet handed to the host, length-delimited.
    batch: Vec<u8>,
    /// The latest batch of request messages, length-delimited.
    requests: Vec<u8>,
    /// How far into `requests` the handler has read.
    read_to: usize,
    /// The client half-closed: no request message will follow.
    input_done: bool,
    /// The response headers the handler set.
    headers: Metadata,
    /// `headers` changed since the host last got them.
    headers_changed: bool,
    /// Whether `headers` may still be sent.
    headers_gone: HeadersGone,
    /// The response trailers the handler set.
    trailers: Metadata,
    /// Request messages handed to the handler so far.
    taken: u64,
    /// Whether the host was last told response messages may be compressed.
    compress: bool,
}

impl<'a> Io<'a> {
    /// Starts a call; `requests` are the messages that arrived before it.
    pub(crate) fn new(requests: Vec<u8>, input: &'a Input, output: &'a Output) -> Self {
        Self {
            input,
            output,
            state: RefCell::new(State {
                batch: Vec::new(),
                requests,
                read_to: 0,
                input_done: false,
                headers: Metadata::default(),
                headers_changed: false,
                headers_gone: HeadersGone::No,
                trailers: Metadata::default(),
                taken: 0,
                compress: true,
            }),
        }
    }

    /// Adds a response message to the batch, without sending anything.
    pub(crate) fn push(&self, message: &impl Message) -> Result<(), Status> {
        message
            .encode_length_delimited(&mut self.state.borrow_mut().batch)
            .map_err(|e| Status::internal(format!("encoding a response message: {e}")))
    }

    /// Adds a response message to the batch, and sends the batch once it is full.
    pub(crate) fn send(&self, message: &impl Message) -> Result<(), Status> {
        self.push(message)?;
        if self.state.borrow().batch.len() >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the pending response messages (and headers first) to the host, if any.
    pub(crate) fn flush(&self) -> Result<(), Status> {
        if self.state.borrow().batch.is_empty() {
            return Ok(());
        }
        self.stage_headers()?;
        self.crossing();
        let mut batch = std::mem::take(&mut self.state.borrow_mut().batch);
        self.output.send(&batch)?;
        batch.clear();
        let mut state = self.state.borrow_mut();
        state.headers_gone = HeadersGone::Yes;
        // The emptied buffer keeps its capacity for the next batch.
        state.batch = batch;
        Ok(())
    }

    /// The next request message, in order; `None` once the client half-closed. Reading
    /// from the host sends the pending response messages first.
    pub(crate) fn next_request<M: Message + Default>(&self) -> Option<Result<M, Status>> {
        if !self.buffered() {
            if let Err(status) = self.read() {
                return Some(Err(status));
            }
            if !self.buffered() {
                return None;
            }
        }
        let mut state = self.state.borrow_mut();
        let mut rest = &state.requests[state.read_to..];
        let decoded = M::decode_length_delimited(&mut rest).map_err(Status::from);
        state.read_to = state.requests.len() - rest.len();
        state.taken += 1;
        Some(decoded)
    }

    /// Whether the request message taken last arrived compressed, as the host saw it.
    pub(crate) fn request_compressed(&self) -> Option<bool> {
        let last = self.state.borrow().taken.checked_sub(1)?;
        compression::request_compressed(last)
    }

    /// Lets response messages sent from now on be compressed or not; the messages still
    /// pending go first, under the setting they were sent with.
    pub(crate) fn compress_responses(&self, enabled: bool) -> Result<(), Status> {
        if self.state.borrow().compress == enabled {
            return Ok(());
        }
        self.flush()?;
        compression::compress_responses(enabled);
        self.state.borrow_mut().compress = enabled;
        Ok(())
    }

    fn buffered(&self) -> bool {
        let state = self.state.borrow();
        state.read_to < state.requests.len()
    }

    /// Replaces the drained request batch with the host's next one.
    fn read(&self) -> Result<(), Status> {
        if self.state.borrow().input_done {
            return Ok(());
        }
        self.flush()?;
        self.stage_headers()?;
        self.crossing();
        let requests = self.input.read(READ_MESSAGES)?;
        let mut state = self.state.borrow_mut();
        state.input_done = requests.is_empty();
        state.requests = requests;
        state.read_to = 0;
        Ok(())
    }

    /// Whether the response headers went out, asking the host only when it alone knows.
    pub(crate) fn headers_sent(&self) -> bool {
        let gone = self.state.borrow().headers_gone;
        match gone {
            HeadersGone::No => false,
            HeadersGone::Yes => true,
            HeadersGone::Maybe => {
                let sent = self.output.headers_sent();
                // Only the guest's own crossings send headers, so the answer holds until
                // the next one.
                self.state.borrow_mut().headers_gone = if sent {
                    HeadersGone::Yes
                } else {
                    HeadersGone::No
                };
                sent
            }
        }
    }

    /// Stages a response header, or logs and drops it once headers went out.
    pub(crate) fn set_header(&self, key: &str, value: Vec<u8>) {
        if self.headers_sent() {
            crate::log::warn(&format!(
                "response header {key:?} set after headers were sent: not sent"
            ));
            return;
        }
        let mut state = self.state.borrow_mut();
        state.headers.insert(key, value);
        state.headers_changed = true;
    }

    /// Adds a response trailer.
    pub(crate) fn set_trailer(&self, key: &str, value: Vec<u8>) {
        self.state.borrow_mut().trailers.insert(key, value);
    }

    /// Sends the response headers now, unless they went already.
    pub(crate) fn send_headers(&self) -> Result<(), Status> {
        if self.state.borrow().headers_gone == HeadersGone::Yes {
            return Ok(());
        }
        self.stage_headers()?;
        self.crossing();
        self.output.send_headers()?;
        self.state.borrow_mut().headers_gone = HeadersGone::Yes;
        Ok(())
    }

    /// Gives the host the headers set since it last got them.
    fn stage_headers(&self) -> Result<(), Status> {
        let mut state = self.state.borrow_mut();
        if state.headers_changed {
            self.output.stage_headers(&state.headers.to_entries())?;
            state.headers_changed = false;
        }
        Ok(())
    }

    /// Notes a crossing that may send the headers.
    fn crossing(&self) {
        let mut state = self.state.borrow_mut();
        if state.headers_gone == HeadersGone::No {
            state.headers_gone = HeadersGone::Maybe;
        }
    }

    /// How the call ended, for the host: headers not given yet, the pending batch,
    /// trailers (the context's, then the status's) and the status.
    pub(crate) fn finish(self, result: Result<(), Status>) -> Outcome {
        let state = self.state.into_inner();
        let mut trailers = state.trailers.into_entries();
        let status = result.err().map(|status| {
            let (status, metadata) = status.into_wit();
            trailers.extend(metadata.into_entries());
            status
        });
        Outcome {
            headers: state.headers_changed.then(|| state.headers.into_entries()),
            messages: state.batch,
            trailers,
            status,
        }
    }
}
