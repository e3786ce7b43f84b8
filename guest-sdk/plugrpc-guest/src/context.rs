//! What a handler knows about its call, and the response metadata it sets.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::bindings::plugrpc::plugin::types::{CallInfo, MetadataEntry};
use crate::metadata::Metadata;

/// The call being served: method, deadline, request metadata, peer; and the response
/// headers and trailers the handler wants sent.
#[derive(Debug)]
pub struct Context {
    method: String,
    deadline: Option<Instant>,
    metadata: Metadata,
    peer: Option<String>,
    response: RefCell<ResponseMetadata>,
}

#[derive(Debug, Default)]
struct ResponseMetadata {
    headers: Metadata,
    trailers: Metadata,
    headers_sent: bool,
}

impl Context {
    pub(crate) fn new(call: CallInfo) -> Self {
        let deadline = call
            .timeout_nanos
            .and_then(|nanos| Instant::now().checked_add(Duration::from_nanos(nanos)));
        Self {
            method: call.method,
            deadline,
            metadata: Metadata::from_entries(call.metadata),
            peer: call.peer,
            response: RefCell::default(),
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

    /// The client's address, `ip:port`.
    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    /// Adds a response header. Headers go out with the first response message (on a bidi
    /// call, at the first read of a request if that comes sooner); one set after that is
    /// logged and not sent.
    pub fn set_header(&self, key: &str, value: impl Into<Vec<u8>>) {
        let mut response = self.response.borrow_mut();
        if response.headers_sent {
            crate::log::warn(&format!(
                "response header {key:?} set after headers were sent: not sent"
            ));
            return;
        }
        response.headers.insert(key, value);
    }

    /// Adds a response trailer, sent after the last message of a successful call.
    pub fn set_trailer(&self, key: &str, value: impl Into<Vec<u8>>) {
        self.response.borrow_mut().trailers.insert(key, value);
    }

    /// Marks headers sent and hands them over, once; `None` if they went already.
    pub(crate) fn take_headers(&self) -> Option<Vec<MetadataEntry>> {
        let mut response = self.response.borrow_mut();
        if response.headers_sent {
            return None;
        }
        response.headers_sent = true;
        Some(std::mem::take(&mut response.headers).into_entries())
    }

    pub(crate) fn take_trailers(&self) -> Vec<MetadataEntry> {
        std::mem::take(&mut self.response.borrow_mut().trailers).into_entries()
    }
}
