//! gRPC-Web (the protocol in grpc/grpc's PROTOCOL-WEB.md): gRPC's envelopes over
//! HTTP/1.1 or HTTP/2 with the trailers sent as a last envelope flagged 0x80, in binary
//! (`application/grpc-web`, `+proto`) or base64 text (`application/grpc-web-text`),
//! so browsers can call every plugin without a proxy.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame};

use crate::doors::front::Front;
use crate::doors::grpc::{self, HttpResponse};
use crate::doors::response::Ending;

/// Which gRPC-Web a content-type is: `Some(true)` for the text form.
pub(crate) fn kind(content_type: &[u8]) -> Option<bool> {
    let rest = content_type.strip_prefix(b"application/grpc-web")?;
    let (text, rest) = match rest.strip_prefix(b"-text") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    grpc::protobuf_suffix(rest).then_some(text)
}

/// Serves a gRPC-Web request: the body's envelopes (decoded from base64 for text) into
/// the call, the response in envelopes with the trailers as the last one.
pub(crate) async fn serve<B>(front: &Front, request: http::Request<B>, text: bool) -> HttpResponse
where
    B: HttpBody<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let (parts, body) = request.into_parts();
    let ending = Ending::GrpcWeb { text };
    if text {
        grpc::serve_envelopes(front, parts, Base64Body::new(body), ending).await
    } else {
        grpc::serve_envelopes(front, parts, body, ending).await
    }
}

/// A body of base64 text, read as the bytes it encodes. A client may send each message
/// as its own padded base64, so padding can come mid-body: each 4-character group that
/// holds it is decoded on its own.
pub(crate) struct Base64Body<B> {
    body: B,
    /// Text not yet decoded: less than one 4-character group, at the end of a chunk.
    pending: BytesMut,
}

impl<B> Base64Body<B> {
    pub(crate) fn new(body: B) -> Self {
        Self {
            body,
            pending: BytesMut::new(),
        }
    }
}

/// Text that is not base64.
#[derive(Debug, thiserror::Error)]
#[error("the gRPC-Web text body is not base64: {0}")]
struct NotBase64(String);

/// Decodes every whole 4-character group of `pending` into bytes, leaving the rest.
fn decode_groups(pending: &mut BytesMut) -> Result<Bytes, NotBase64> {
    if pending.iter().any(u8::is_ascii_whitespace) {
        let text: Vec<u8> = pending
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        *pending = BytesMut::from(&text[..]);
    }
    let usable = pending.len() / 4 * 4;
    let mut out = Vec::with_capacity(usable / 4 * 3);
    let mut start = 0;
    let engine = &base64::engine::general_purpose::STANDARD;
    for group in (0..usable).step_by(4) {
        if pending[group..group + 4].contains(&b'=') {
            engine
                .decode_vec(&pending[start..group + 4], &mut out)
                .map_err(|e| NotBase64(e.to_string()))?;
            start = group + 4;
        }
    }
    engine
        .decode_vec(&pending[start..usable], &mut out)
        .map_err(|e| NotBase64(e.to_string()))?;
    pending.advance(usable);
    Ok(Bytes::from(out))
}

impl<B> HttpBody for Base64Body<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            let Some(frame) = ready!(Pin::new(&mut this.body).poll_frame(cx)) else {
                if this.pending.is_empty() {
                    return Poll::Ready(None);
                }
                let left = std::mem::take(&mut this.pending);
                return Poll::Ready(Some(Err(Box::new(tonic::Status::invalid_argument(
                    format!(
                        "the gRPC-Web text body ends in {} characters that are not a base64 group",
                        left.len()
                    ),
                )))));
            };
            let frame = frame.map_err(Into::into)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            this.pending.extend_from_slice(&data);
            let decoded = decode_groups(&mut this.pending).map_err(|error| {
                Box::new(tonic::Status::invalid_argument(error.to_string()))
                    as Box<dyn std::error::Error + Send + Sync>
            })?;
            if !decoded.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(decoded))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_tell_binary_from_text() {
        assert_eq!(kind(b"application/grpc-web"), Some(false));
        assert_eq!(kind(b"application/grpc-web+proto"), Some(false));
        assert_eq!(kind(b"application/grpc-web-text"), Some(true));
        assert_eq!(kind(b"application/grpc-web-text+proto"), Some(true));
        assert_eq!(kind(b"application/grpc"), None);
        assert_eq!(kind(b"application/grpc-webx"), None);
    }

    #[test]
    fn padded_segments_and_split_groups_decode() {
        let engine = &base64::engine::general_purpose::STANDARD;
        // Two messages each encoded with its own padding, split mid-group.
        let text = format!("{}{}", engine.encode(b"ab"), engine.encode(b"hello"));
        for split in 0..=text.len() {
            let mut pending = BytesMut::from(&text.as_bytes()[..split]);
            let mut out = decode_groups(&mut pending).unwrap().to_vec();
            pending.extend_from_slice(&text.as_bytes()[split..]);
            out.extend_from_slice(&decode_groups(&mut pending).unwrap());
            assert!(pending.is_empty());
            assert_eq!(out, b"abhello", "split at {split}");
        }
        let mut bad = BytesMut::from(&b"ab$d"[..]);
        assert!(decode_groups(&mut bad).is_err());
    }
}
