//! The message envelope gRPC, gRPC-Web and Connect share (a flags byte, a 4-byte
//! big-endian length, the message), and the compression a message may carry: reading
//! envelopes from a request body into the call core's messages, and writing the core's
//! messages back, each compressed or not on its own.
//!
//! A compressed message is bounded twice by the plugin's `max_request_size`: as it comes
//! (its envelope length) and as it inflates (decompression stops one byte past the limit),
//! so a zip bomb costs the limit, not the host's memory.

use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::Stream;
use http::HeaderValue;
use http_body::Body as HttpBody;
use plugrpc_runtime::{InputError, Received};

use crate::status;

/// The flag bit of a compressed message.
const COMPRESSED: u8 = 0x01;

/// Bytes of an envelope before its message.
pub(crate) const PREFIX: usize = 5;

/// A message compression the host speaks, by its `grpc-encoding` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// RFC 1952.
    Gzip,
    /// Zstandard, RFC 8878.
    Zstd,
    /// zlib (RFC 1950), as HTTP and gRPC mean by `deflate`.
    Deflate,
}

/// What `grpc-accept-encoding` says the host accepts, in its order of preference.
pub(crate) const ACCEPTED: HeaderValue = HeaderValue::from_static("gzip,zstd,deflate,identity");

/// Why a compressed message could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Inflate {
    /// It decompresses past the limit.
    #[error("decompresses past the limit")]
    TooLarge,
    /// It is not valid data of its encoding.
    #[error("is not valid {encoding}: {source}")]
    Corrupt {
        /// The encoding the request named.
        encoding: &'static str,
        /// The decoder's complaint.
        source: std::io::Error,
    },
}

impl Encoding {
    /// Every encoding, in the host's order of preference.
    const ALL: [Self; 3] = [Self::Gzip, Self::Zstd, Self::Deflate];

    /// The encoding a `grpc-encoding` value names; `Ok(None)` for `identity`, `Err` for
    /// one the host does not speak.
    pub(crate) fn from_header(value: &[u8]) -> Result<Option<Self>, ()> {
        match value {
            b"identity" => Ok(None),
            b"gzip" => Ok(Some(Self::Gzip)),
            b"zstd" => Ok(Some(Self::Zstd)),
            b"deflate" => Ok(Some(Self::Deflate)),
            _ => Err(()),
        }
    }

    /// Its name on the wire.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::Deflate => "deflate",
        }
    }

    /// The response encoding for a request compressed with `request` whose client accepts
    /// `accept` (a `grpc-accept-encoding` value): the request's own when accepted, else
    /// the host's first choice among those the client lists; none when it lists none.
    pub(crate) fn negotiate(request: Option<Self>, accept: Option<&HeaderValue>) -> Option<Self> {
        let accept = accept?.as_bytes();
        let listed = |encoding: Self| {
            accept.split(|&byte| byte == b',').any(|token| {
                token
                    .trim_ascii()
                    .eq_ignore_ascii_case(encoding.name().as_bytes())
            })
        };
        request
            .filter(|&encoding| listed(encoding))
            .or_else(|| Self::ALL.into_iter().find(|&encoding| listed(encoding)))
    }

    /// `data`, compressed at the encoding's fastest level, written to `into`.
    pub(crate) fn compress(self, data: &[u8], into: impl Write) -> std::io::Result<()> {
        match self {
            Self::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(into, flate2::Compression::fast());
                encoder.write_all(data)?;
                encoder.finish()?;
            }
            Self::Deflate => {
                let mut encoder =
                    flate2::write::ZlibEncoder::new(into, flate2::Compression::fast());
                encoder.write_all(data)?;
                encoder.finish()?;
            }
            Self::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(into, 1)?;
                encoder.write_all(data)?;
                encoder.finish()?;
            }
        }
        Ok(())
    }

    /// `data` decompressed, refused once it passes `limit` bytes.
    pub(crate) fn decompress(self, data: &[u8], limit: usize) -> Result<Bytes, Inflate> {
        let reader: Box<dyn Read + '_> = match self {
            Self::Gzip => Box::new(flate2::read::GzDecoder::new(data)),
            Self::Deflate => Box::new(flate2::read::ZlibDecoder::new(data)),
            Self::Zstd => Box::new(zstd::stream::read::Decoder::new(data).map_err(|source| {
                Inflate::Corrupt {
                    encoding: self.name(),
                    source,
                }
            })?),
        };
        let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
        let bound = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        reader
            .take(bound)
            .read_to_end(&mut out)
            .map_err(|source| Inflate::Corrupt {
                encoding: self.name(),
                source,
            })?;
        if out.len() > limit {
            return Err(Inflate::TooLarge);
        }
        Ok(Bytes::from(out))
    }
}

/// Messages at least this large go out as they are, behind their prefix, not copied
/// into the outgoing buffer.
const ZERO_COPY: usize = 16 << 10;

/// Appends `message` to `buffer` as one envelope, compressed with `encoding` when given.
/// A large uncompressed message is not copied: only its prefix is appended, and the
/// message is returned, to go out right after the buffer.
pub(crate) fn write(
    buffer: &mut BytesMut,
    message: Bytes,
    encoding: Option<Encoding>,
) -> std::io::Result<Option<Bytes>> {
    let too_large = |_| std::io::Error::other("message over 4 GiB");
    let Some(encoding) = encoding else {
        let length = u32::try_from(message.len()).map_err(too_large)?;
        buffer.reserve(
            PREFIX
                + if message.len() < ZERO_COPY {
                    message.len()
                } else {
                    0
                },
        );
        buffer.put_u8(0);
        buffer.put_u32(length);
        if message.len() >= ZERO_COPY {
            return Ok(Some(message));
        }
        buffer.extend_from_slice(&message);
        return Ok(None);
    };
    let start = buffer.len();
    buffer.put_bytes(0, PREFIX);
    encoding.compress(&message, (&mut *buffer).writer())?;
    let length = u32::try_from(buffer.len() - start - PREFIX).map_err(too_large)?;
    buffer[start] = COMPRESSED;
    buffer[start + 1..start + PREFIX].copy_from_slice(&length.to_be_bytes());
    Ok(None)
}

/// The request messages in a body of envelopes, as the call core reads them: each one
/// checked against the limit as it comes and as it inflates.
pub(crate) struct Envelopes<B> {
    body: B,
    buffer: BytesMut,
    /// The request's encoding, for messages flagged compressed.
    encoding: Option<Encoding>,
    /// The plugin's `max_request_size`.
    limit: usize,
    /// The body ended or failed: nothing follows.
    done: bool,
}

impl<B> Envelopes<B> {
    /// The messages of `body`, compressed with `encoding` where flagged.
    pub(crate) fn new(body: B, encoding: Option<Encoding>, limit: usize) -> Self {
        Self {
            body,
            buffer: BytesMut::new(),
            encoding,
            limit,
            done: false,
        }
    }

    /// The next whole message in the buffer, if one is.
    fn next_message(&mut self) -> Option<Result<Received, InputError>> {
        if self.buffer.len() < PREFIX {
            return None;
        }
        let flags = self.buffer[0];
        let length = u32::from_be_bytes([
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
            self.buffer[4],
        ]) as usize;
        if flags & !COMPRESSED != 0 {
            return Some(Err(protocol(format!(
                "a request message has flags {flags:#04x}; only 0x00 and 0x01 (compressed) are valid"
            ))));
        }
        if length > self.limit {
            return Some(Err(InputError::TooLarge(length)));
        }
        if self.buffer.len() < PREFIX + length {
            // No reserve for the announced length: the buffer grows with what arrives, so
            // a prefix claiming megabytes on many streams holds nothing until they come
            // (and what comes is charged to the edge's request buffers).
            return None;
        }
        self.buffer.advance(PREFIX);
        let message = self.buffer.split_to(length).freeze();
        if flags & COMPRESSED == 0 {
            return Some(Ok(Received::plain(message)));
        }
        let Some(encoding) = self.encoding else {
            return Some(Err(protocol(
                "a request message is flagged compressed, but the request names no grpc-encoding"
                    .to_owned(),
            )));
        };
        Some(match encoding.decompress(&message, self.limit) {
            Ok(message) => Ok(Received {
                message,
                compressed: true,
            }),
            Err(Inflate::TooLarge) => Err(InputError::Inflated(length)),
            Err(corrupt) => Err(protocol(format!("a request message {corrupt}"))),
        })
    }
}

/// A request stream that breaks the envelope format: INTERNAL, as the gRPC spec has it.
fn protocol(message: String) -> InputError {
    InputError::Failed(status::to_guest(&tonic::Status::internal(message)))
}

impl<B> Stream for Envelopes<B>
where
    B: HttpBody<Data = Bytes, Error = Box<dyn std::error::Error + Send + Sync>> + Unpin,
{
    type Item = Result<Received, InputError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(next) = this.next_message() {
                this.done = next.is_err();
                return Poll::Ready(Some(next));
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers on a request carry nothing gRPC reads: skipped.
                    if let Ok(mut data) = frame.into_data() {
                        this.buffer.put(&mut data);
                    }
                }
                Some(Err(error)) => {
                    this.done = true;
                    let status = tonic::Status::from_error(error);
                    // A client that cancels its request stream has simply ended it; its
                    // reset reaches the response side on its own.
                    if status.code() == tonic::Code::Cancelled {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(InputError::Failed(status::to_guest(&status)))));
                }
                None => {
                    this.done = true;
                    if this.buffer.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(protocol(format!(
                        "the request ended inside a message ({} bytes of it arrived)",
                        this.buffer.len()
                    )))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(message: &[u8], encoding: Option<Encoding>) -> Vec<u8> {
        let mut buffer = BytesMut::new();
        let tail = write(&mut buffer, Bytes::copy_from_slice(message), encoding).unwrap();
        buffer.extend_from_slice(&tail.unwrap_or_default());
        buffer.to_vec()
    }

    /// A frame of a test body.
    type Chunk = Result<http_body::Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>;

    /// A body of `chunks` as they would come off the wire.
    fn body(
        chunks: Vec<Vec<u8>>,
    ) -> http_body_util::StreamBody<futures::stream::Iter<std::vec::IntoIter<Chunk>>> {
        let frames: Vec<Chunk> = chunks
            .into_iter()
            .map(|chunk| Ok(http_body::Frame::data(Bytes::from(chunk))))
            .collect();
        http_body_util::StreamBody::new(futures::stream::iter(frames))
    }

    async fn read_all(
        chunks: Vec<Vec<u8>>,
        encoding: Option<Encoding>,
        limit: usize,
    ) -> Vec<Result<Received, InputError>> {
        use futures::StreamExt;
        Envelopes::new(body(chunks), encoding, limit)
            .collect()
            .await
    }

    #[tokio::test]
    async fn every_encoding_round_trips_split_anywhere() {
        let message: Vec<u8> = (0..5000u32).flat_map(|n| n.to_le_bytes()).collect();
        for encoding in Encoding::ALL {
            let mut wire = envelope(&message, Some(encoding));
            wire.extend(envelope(b"plain", None));
            for split in [1, 4, 5, 6, wire.len() / 2, wire.len() - 1] {
                let chunks = vec![wire[..split].to_vec(), wire[split..].to_vec()];
                let read = read_all(chunks, Some(encoding), 1 << 20).await;
                let read: Vec<Received> = read.into_iter().map(Result::unwrap).collect();
                assert_eq!(read.len(), 2, "{encoding:?} split at {split}");
                assert_eq!(read[0].message, message);
                assert!(read[0].compressed);
                assert_eq!(read[1], Received::plain(Bytes::from_static(b"plain")));
            }
        }
    }

    #[tokio::test]
    async fn a_zip_bomb_stops_at_the_limit() {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gzip.write_all(&vec![0; 64 << 20]).unwrap();
        let zeros = gzip.finish().unwrap();
        assert!(zeros.len() < 128 << 10, "64 MiB of zeros gzip small");
        let mut bomb = vec![COMPRESSED];
        bomb.extend_from_slice(&u32::try_from(zeros.len()).unwrap().to_be_bytes());
        bomb.extend_from_slice(&zeros);
        let read = read_all(vec![bomb.clone()], Some(Encoding::Gzip), 4 << 20).await;
        assert!(
            matches!(read[..], [Err(InputError::Inflated(size))] if size == bomb.len() - PREFIX)
        );
    }

    #[tokio::test]
    async fn bad_envelopes_are_named_not_panicked_on() {
        let cases: [(Vec<u8>, Option<Encoding>, &str); 5] = [
            (vec![2, 0, 0, 0, 0], None, "flags 0x02"),
            (
                envelope(b"x", Some(Encoding::Gzip)),
                None,
                "names no grpc-encoding",
            ),
            (
                vec![1, 0, 0, 0, 3, 1, 2, 3],
                Some(Encoding::Gzip),
                "is not valid gzip",
            ),
            (
                vec![1, 0, 0, 0, 3, 1, 2, 3],
                Some(Encoding::Zstd),
                "is not valid zstd",
            ),
            (vec![0, 0, 0, 0, 9, 1], None, "ended inside a message"),
        ];
        for (wire, encoding, expected) in cases {
            let read = read_all(vec![wire], encoding, 1 << 20).await;
            match &read[..] {
                [Err(InputError::Failed(status))] => {
                    assert!(status.message.contains(expected), "{}", status.message)
                }
                other => panic!("{expected}: {other:?}"),
            }
        }
        let read = read_all(vec![vec![0, 0, 0x11, 0, 0]], None, 1 << 20).await;
        assert!(matches!(read[..], [Err(InputError::TooLarge(0x0011_0000))]));
    }

    #[test]
    fn the_response_encoding_follows_the_request_then_the_hosts_preference() {
        let accept = |text: &'static str| HeaderValue::from_static(text);
        let gzip = Some(Encoding::Gzip);
        assert_eq!(Encoding::negotiate(None, None), None);
        assert_eq!(Encoding::negotiate(gzip, None), None);
        assert_eq!(
            Encoding::negotiate(None, Some(&accept("identity, deflate, gzip"))),
            gzip
        );
        assert_eq!(
            Encoding::negotiate(Some(Encoding::Deflate), Some(&accept("deflate,gzip"))),
            Some(Encoding::Deflate)
        );
        assert_eq!(
            Encoding::negotiate(None, Some(&accept("identity,br"))),
            None
        );
        assert_eq!(Encoding::from_header(b"br"), Err(()));
        assert_eq!(Encoding::from_header(b"identity"), Ok(None));
    }
}
