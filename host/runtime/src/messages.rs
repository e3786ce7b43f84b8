//! Batches of messages as they cross the boundary: each message prefixed with its length
//! as a protobuf varint, all in one buffer (one allocation and one copy per batch, not
//! per message).

use bytes::{Buf, Bytes};
use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};

/// A batch whose lengths do not add up: the plugin broke the contract.
#[derive(Clone, Debug, thiserror::Error)]
#[error("a message batch is malformed: {0}")]
pub(crate) struct MalformedBatch(&'static str);

/// The messages of a batch, each a slice of the one buffer.
pub(crate) fn split(batch: Vec<u8>) -> Result<Vec<Bytes>, MalformedBatch> {
    let mut rest = Bytes::from(batch);
    let mut messages = Vec::new();
    while rest.has_remaining() {
        let len = decode_varint(&mut rest).map_err(|_| MalformedBatch("bad length prefix"))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= rest.len())
            .ok_or(MalformedBatch("a length runs past the end"))?;
        messages.push(rest.split_to(len));
    }
    Ok(messages)
}

/// Builds a batch for the guest.
#[derive(Default)]
pub(crate) struct Packer {
    buffer: Vec<u8>,
    count: usize,
}

impl Packer {
    /// A batch holding `message` alone.
    pub(crate) fn one(message: &[u8]) -> Vec<u8> {
        let mut packer = Self::default();
        packer.push(message);
        packer.buffer
    }

    pub(crate) fn push(&mut self, message: &[u8]) {
        self.buffer
            .reserve(encoded_len_varint(message.len() as u64) + message.len());
        encode_varint(message.len() as u64, &mut self.buffer);
        self.buffer.extend_from_slice(message);
        self.count += 1;
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    pub(crate) fn len(&self) -> usize {
        self.buffer.len()
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_messages_split_back_in_order() {
        let mut packer = Packer::default();
        let big = vec![9u8; 300];
        for message in [&b"a"[..], b"", &big] {
            packer.push(message);
        }
        assert_eq!(packer.count(), 3);
        let messages = split(packer.finish()).unwrap();
        assert_eq!(messages, [&b"a"[..], b"", &big[..]]);
        assert!(split(Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn malformed_batches_are_refused() {
        assert!(split(vec![5, 1, 2]).is_err(), "length past the end");
        assert!(split(vec![0x80]).is_err(), "truncated varint");
        assert!(split(vec![0xff; 11]).is_err(), "overlong varint");
    }
}
