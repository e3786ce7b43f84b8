//! Calls to other gRPC services, for a plugin whose host config grants targets
//! (`[plugins.<name>.outbound.<alias>]`). The host makes the call: pooled connections,
//! load balancing, retries and TLS as the target's config says, and never more time
//! than the call being served has left. `plugrpc_build` generates typed clients over
//! [`Client`], one per service, as tonic does.

use std::marker::PhantomData;
use std::time::Duration;

use prost::Message;

use crate::bindings::plugrpc::plugin::outbound::{self as wit, OutgoingCall};
use crate::bindings::plugrpc::plugin::types::MetadataEntry;
use crate::metadata::Metadata;
use crate::status::Status;

/// Response messages taken from the host in one read.
const READ_MESSAGES: u32 = 64;

/// Where calls go: a target alias the plugin's config grants, or `local` (the services
/// of the host's own plugins); with the metadata and timeout every call carries.
#[derive(Clone, Debug)]
pub struct Client {
    target: String,
    metadata: Vec<MetadataEntry>,
    timeout: Option<Duration>,
}

impl Client {
    /// A client of the target `alias`.
    pub fn new(alias: impl Into<String>) -> Self {
        Self {
            target: alias.into(),
            metadata: Vec::new(),
            timeout: None,
        }
    }

    /// A client of the services of the host's own plugins.
    pub fn local() -> Self {
        Self::new("local")
    }

    /// Adds a metadata entry to every call (`-bin` keys carry raw bytes).
    pub fn with_metadata(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.metadata.push(MetadataEntry {
            key: key.to_owned(),
            value: value.into(),
        });
        self
    }

    /// Gives each call at most `timeout` (it never gets more than the served call has left).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Calls a unary method (`/package.Service/Method`).
    pub fn unary<Q: Message, R: Message + Default>(
        &self,
        method: &str,
        request: &Q,
    ) -> Result<R, Status> {
        let mut responses = self.server_streaming::<Q, R>(method, request)?;
        one_response(&mut responses)
    }

    /// Calls a server-streaming method: the response messages, as they come.
    pub fn server_streaming<Q: Message, R: Message + Default>(
        &self,
        method: &str,
        request: &Q,
    ) -> Result<Responses<R>, Status> {
        let call = self.start(method, &batch([request]), true)?;
        Ok(Responses::new(call))
    }

    /// Starts a client- or bidi-streaming method: send requests, then read responses.
    pub fn streaming<Q: Message, R: Message + Default>(
        &self,
        method: &str,
    ) -> Result<Streaming<Q, R>, Status> {
        let call = self.start(method, &[], false)?;
        Ok(Streaming {
            responses: Responses::new(call),
            _requests: PhantomData,
        })
    }

    fn start(&self, method: &str, requests: &[u8], finish: bool) -> Result<OutgoingCall, Status> {
        let timeout = self
            .timeout
            .map(|t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX));
        wit::start(
            &self.target,
            method,
            &self.metadata,
            requests,
            finish,
            timeout,
        )
        .map_err(Status::from)
    }
}

/// A client- or bidi-streaming call under way; dropping it cancels the call.
pub struct Streaming<Q, R> {
    responses: Responses<R>,
    _requests: PhantomData<fn(Q)>,
}

impl<Q: Message, R: Message + Default> Streaming<Q, R> {
    /// Sends one request message; waits while the service is not reading.
    pub fn send(&mut self, message: &Q) -> Result<(), Status> {
        self.responses
            .call
            .send(&batch([message]))
            .map_err(Status::from)
    }

    /// Says no more requests will come.
    pub fn finish(&mut self) {
        self.responses.call.finish();
    }

    /// The response messages (finish first if the service waits for the end).
    pub fn responses(&mut self) -> &mut Responses<R> {
        &mut self.responses
    }

    /// Finishes sending and waits for the one response of a client-streaming method.
    pub fn close_and_receive(mut self) -> Result<R, Status> {
        self.finish();
        one_response(&mut self.responses)
    }
}

/// The response messages of a call, in order; iterate until `None`. A failed call's
/// status is the last item.
pub struct Responses<R> {
    call: OutgoingCall,
    batch: Vec<u8>,
    read_to: usize,
    done: bool,
    _message: PhantomData<fn() -> R>,
}

impl<R: Message + Default> Responses<R> {
    fn new(call: OutgoingCall) -> Self {
        Self {
            call,
            batch: Vec::new(),
            read_to: 0,
            done: false,
            _message: PhantomData,
        }
    }

    /// The response headers, waiting for them.
    pub fn headers(&self) -> Result<Metadata, Status> {
        self.call
            .headers()
            .map(Metadata::from_entries)
            .map_err(Status::from)
    }

    /// The response trailers, once the responses ended.
    pub fn trailers(&self) -> Metadata {
        Metadata::from_entries(self.call.trailers())
    }

    /// The next message of the batch in hand, if any.
    fn take(&mut self) -> Option<Result<R, Status>> {
        if self.read_to >= self.batch.len() {
            return None;
        }
        let mut rest = &self.batch[self.read_to..];
        let before = rest.len();
        let message = R::decode_length_delimited(&mut rest).map_err(|error| {
            Status::internal(format!("a response message does not decode: {error}"))
        });
        self.read_to += before - rest.len();
        if message.is_err() {
            self.read_to = self.batch.len();
        }
        Some(message)
    }
}

impl<R: Message + Default> Iterator for Responses<R> {
    type Item = Result<R, Status>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(message) = self.take() {
            return Some(message);
        }
        if self.done {
            return None;
        }
        match self.call.read(READ_MESSAGES) {
            Ok(batch) if batch.is_empty() => {
                self.done = true;
                None
            }
            Ok(batch) => {
                self.batch = batch;
                self.read_to = 0;
                self.take()
            }
            Err(status) => {
                self.done = true;
                Some(Err(Status::from(status)))
            }
        }
    }
}

/// Exactly one response, as a unary or client-streaming method answers.
fn one_response<R: Message + Default>(responses: &mut Responses<R>) -> Result<R, Status> {
    let first = responses
        .next()
        .unwrap_or_else(|| Err(Status::internal("the service answered no message")))?;
    match responses.next() {
        None => Ok(first),
        Some(Err(status)) => Err(status),
        Some(Ok(_)) => Err(Status::internal(
            "the service answered more than one message",
        )),
    }
}

/// Messages as one length-delimited batch.
fn batch<'m, Q: Message + 'm>(messages: impl IntoIterator<Item = &'m Q>) -> Vec<u8> {
    let mut batch = Vec::new();
    for message in messages {
        // Encoding into a Vec cannot fail.
        let _ = message.encode_length_delimited(&mut batch);
    }
    batch
}
