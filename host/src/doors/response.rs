//! A streamed response as the envelope protocols write it: each message of the call
//! core in its envelope (compressed when negotiated, allowed by the guest and large
//! enough to gain), then the end in the protocol's own form: HTTP/2 trailers for gRPC,
//! a trailer envelope for gRPC-Web, an end-stream envelope of JSON for Connect.

use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use futures::Stream;
use http::HeaderMap;
use http_body::Frame;
use plugrpc_runtime::{Body, BodyPart};
use tonic::Status;

use crate::doors::connect;
use crate::doors::envelope::{self, Encoding};
use crate::doors::front::{for_call, guest_metadata};
use crate::registry::Route;
use crate::status;
use crate::tally::CallMeter;

/// Response bytes gathered before a body frame goes out, when more are ready at once.
const FRAME_BYTES: usize = 32 << 10;

/// The flags of gRPC-Web's trailer envelope.
const GRPC_WEB_TRAILERS: u8 = 0x80;

/// How a protocol ends a streamed response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// gRPC: `grpc-status` and the rest in HTTP/2 trailers.
    Trailers,
    /// gRPC-Web: the trailers as an HTTP/1 header block in an envelope flagged 0x80;
    /// `text` base64-encodes every chunk of the body (`application/grpc-web-text`).
    GrpcWeb {
        /// The `-text` variant.
        text: bool,
    },
    /// Connect streaming: an envelope flagged 0x02 holding `{"error":..,"metadata":..}`.
    Connect,
}

/// The core's response body in envelopes, ended as `ending` says.
pub(crate) struct EnvelopeBody {
    body: Body,
    route: Route,
    /// The response encoding negotiated with the client, if any.
    encoding: Option<Encoding>,
    min_size: usize,
    ending: Ending,
    /// Envelopes not yet handed to the connection.
    buffer: BytesMut,
    /// A large message to go out as it is, after `buffer` (which holds its prefix).
    tail: Option<Bytes>,
    /// The end, once known and until it goes.
    end: Option<End>,
    ended: bool,
    /// The response message type, when messages go out as JSON.
    json: Option<prost_reflect::MessageDescriptor>,
    /// The call's metrics, ended with the status the body ends with.
    meter: CallMeter,
}

/// The end of a response, ready to go.
enum End {
    Trailers(HeaderMap),
    Data(Bytes),
}

impl EnvelopeBody {
    pub(crate) fn new(
        body: Body,
        route: Route,
        encoding: Option<Encoding>,
        min_size: usize,
        ending: Ending,
        meter: CallMeter,
    ) -> Self {
        Self {
            body,
            route,
            encoding,
            min_size,
            ending,
            buffer: BytesMut::new(),
            tail: None,
            end: None,
            ended: false,
            json: None,
            meter,
        }
    }

    /// Sends each message as JSON of the `json` type, when given (Connect's `+json`).
    pub(crate) fn json(mut self, json: Option<prost_reflect::MessageDescriptor>) -> Self {
        self.json = json;
        self
    }

    /// The end for a call that ended with `status` (`None`: OK with no trailers).
    fn end(&self, status: Option<Status>) -> End {
        let status = status.unwrap_or_else(|| Status::ok(""));
        self.meter.end(status.code());
        match self.ending {
            Ending::Trailers => End::Trailers(trailers(&status)),
            Ending::GrpcWeb { .. } => {
                let mut block = Vec::new();
                for (name, value) in &trailers(&status) {
                    block.extend_from_slice(name.as_str().as_bytes());
                    block.extend_from_slice(b": ");
                    block.extend_from_slice(value.as_bytes());
                    block.extend_from_slice(b"\r\n");
                }
                End::Data(framed(GRPC_WEB_TRAILERS, &block))
            }
            Ending::Connect => End::Data(framed(
                connect::END_STREAM,
                &connect::end_stream_json(&status),
            )),
        }
    }

    /// A chunk of the body as the protocol sends it: base64 for gRPC-Web text.
    fn chunk(&self, bytes: Bytes) -> Bytes {
        if self.ending == (Ending::GrpcWeb { text: true }) {
            Bytes::from(base64::engine::general_purpose::STANDARD.encode(&bytes))
        } else {
            bytes
        }
    }
}

/// `status` as gRPC trailers: `grpc-status`, `grpc-message`, details and metadata.
pub(crate) fn trailers(status: &Status) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    if let Err(unsendable) = status.add_header(&mut trailers) {
        trailers.clear();
        // A status whose own text cannot be a header: its code still goes.
        let _ = Status::new(unsendable.code(), "").add_header(&mut trailers);
    }
    trailers
}

/// One envelope of `flags` around `data`.
pub(crate) fn framed(flags: u8, data: &[u8]) -> Bytes {
    let mut envelope = BytesMut::with_capacity(envelope::PREFIX + data.len());
    envelope.put_u8(flags);
    envelope.put_u32(u32::try_from(data.len()).unwrap_or(u32::MAX));
    envelope.extend_from_slice(data);
    envelope.freeze()
}

impl http_body::Body for EnvelopeBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        while this.end.is_none() && !this.ended && this.tail.is_none() {
            let part = match Pin::new(&mut this.body).poll_next(cx) {
                Poll::Ready(part) => part,
                Poll::Pending if this.buffer.is_empty() => return Poll::Pending,
                Poll::Pending => break,
            };
            match part {
                Some(BodyPart::Message { message, compress }) => {
                    let message = match &this.json {
                        None => message,
                        Some(json) => match crate::doors::json::to_json(json, &message) {
                            Ok(json) => Bytes::from(json),
                            Err(status) => {
                                this.end = Some(this.end(Some(status)));
                                continue;
                            }
                        },
                    };
                    let encoding = this
                        .encoding
                        .filter(|_| compress && message.len() >= this.min_size);
                    match envelope::write(&mut this.buffer, message, encoding) {
                        Err(error) => {
                            let status = status::unsendable_message(&error, for_call(&this.route));
                            this.end = Some(this.end(Some(status)));
                        }
                        Ok(tail @ Some(_)) => this.tail = tail,
                        Ok(None) if this.buffer.len() >= FRAME_BYTES => break,
                        Ok(None) => {}
                    }
                }
                Some(BodyPart::End { trailers, result }) => {
                    if let Err(error) = &result {
                        this.meter.failed(error);
                    }
                    let call = for_call(&this.route);
                    let status = match guest_metadata(trailers, call) {
                        Ok(trailers) => status::end(result, trailers, call),
                        Err(invalid) => Some(invalid),
                    };
                    this.end = Some(this.end(status));
                }
                None => this.end = Some(this.end(None)),
            }
        }
        if !this.buffer.is_empty() {
            let bytes = this.buffer.split().freeze();
            return Poll::Ready(Some(Ok(Frame::data(this.chunk(bytes)))));
        }
        if let Some(tail) = this.tail.take() {
            return Poll::Ready(Some(Ok(Frame::data(this.chunk(tail)))));
        }
        match this.end.take() {
            Some(end) => {
                this.ended = true;
                Poll::Ready(Some(Ok(match end {
                    End::Trailers(trailers) => Frame::trailers(trailers),
                    End::Data(bytes) => Frame::data(this.chunk(bytes)),
                })))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}
