//! What a handler knows about its call, and the response metadata it sets.

use std::time::{Duration, Instant};

use crate::bindings::plugrpc::plugin::call::Outcome;
use crate::bindings::plugrpc::plugin::types::CallInfo;
use crate::io::Io;
use crate::metadata::Metadata;
use crate::status::Status;

/// The call being served: method, deadline, request metadata, peer; the response headers
/// and trailers the handler wants sent; and, for the SDK, the call's input and output.
#[derive(Debug)]
pub struct Context<'a> {
    method: String,
    deadline: Option<Instant>,
    metadata: Metadata,
    peer: Option<String>,
    io: Io<'a>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(call: CallInfo, io: Io<'a>) -> Self {
        let deadline = call
            .timeout_nanos
            .and_then(|nanos| Instant::now().checked_add(Duration::from_nanos(nanos)));
        Self {
            method: call.method,
            deadline,
            metadata: Metadata::from_entries(call.metadata),
            peer: call.peer,
            io,
        }
    }

    /// The full method path, `/package.Service/Method`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// When the host will stop this call, if the call has a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The request metadata the client sent.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The W3C trace context of the call (`traceparent`): the host's span for this call
    /// when the host traces, else what the client sent, if anything. Outbound calls carry
    /// it on by themselves; this is for the plugin's own logs and spans.
    pub fn traceparent(&self) -> Option<&str> {
        self.metadata.get("traceparent")
    }

    /// The client's address, `ip:port`.
    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    /// Who is calling, as the host established it: the client certificate's identity
    /// (URI SAN such as a SPIFFE ID, else DNS SAN, else CN) or `key:<name>` for an API
    /// key; `None` for an anonymous caller. Asked of the host on each use.
    pub fn caller(&self) -> Option<String> {
        crate::bindings::plugrpc::plugin::caller::identity()
    }

    /// The tenant this plugin serves for: its folder's name under the host's plugins
    /// folder, `default` for a plugin directly in it.
    pub fn tenant(&self) -> String {
        crate::bindings::plugrpc::plugin::caller::tenant()
    }

    /// Whether the request message read last arrived compressed on the wire; `None`
    /// before the first, or for one read before the latest batch from the host (ask
    /// right after reading). Interop servers check it against `expect_compressed`.
    pub fn request_compressed(&self) -> Option<bool> {
        self.io.request_compressed()
    }

    /// Whether response messages sent from now on may be compressed (the default: when
    /// the client accepts an encoding and the host's `compression` settings allow);
    /// `false` sends them as they are, for data that is small or compressed already.
    /// Messages sent before go first, as they were. An error means the call is over.
    pub fn compress_responses(&self, enabled: bool) -> Result<(), Status> {
        self.io.compress_responses(enabled)
    }

    /// Adds a response header. Headers go out with the first response messages that leave
    /// (see [`Sink`](crate::Sink) for when), at a read that waits for the client, at
    /// [`send_headers`](Self::send_headers), or with the call's end; one set after that is
    /// logged and not sent.
    pub fn set_header(&self, key: &str, value: impl Into<Vec<u8>>) {
        self.io.set_header(key, value.into());
    }

    /// Adds a response trailer, sent after the last message, whether the call succeeds or
    /// fails.
    pub fn set_trailer(&self, key: &str, value: impl Into<Vec<u8>>) {
        self.io.set_trailer(key, value.into());
    }

    /// Whether the response headers went out, so headers set now would be dropped.
    pub fn headers_sent(&self) -> bool {
        self.io.headers_sent()
    }

    /// Sends the response headers now (a client may wait for them before it streams); a
    /// no-op once they went. An error means the call is over: return it.
    pub fn send_headers(&self) -> Result<(), Status> {
        self.io.send_headers()
    }

    /// The call's input and output, for the SDK's streams and shape adapters.
    pub(crate) fn io(&self) -> &Io<'a> {
        &self.io
    }

    /// Ends the call with the handler's result.
    pub(crate) fn finish(self, result: Result<(), Status>) -> Outcome {
        self.io.finish(result)
    }
}
