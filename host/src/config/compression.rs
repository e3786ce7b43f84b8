//! `[compression]`: whether the host compresses response messages for clients that
//! accept it, and which are too small to be worth it. Compressed requests are always
//! accepted (gzip, zstd, deflate); a plugin may turn responses off for itself with
//! `compress_responses = false`.

use bytesize::ByteSize;
use serde::Deserialize;

/// Response compression, as `[compression]` sets it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompressionConfig {
    /// Compress response messages when the client accepts an encoding the host speaks.
    pub responses: bool,
    /// Response messages smaller than this go as they are: below it, the CPU spent
    /// outweighs the bytes saved.
    pub min_size: ByteSize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            responses: true,
            min_size: ByteSize::kib(1),
        }
    }
}

impl CompressionConfig {
    /// `min_size` in bytes.
    pub fn min_size_bytes(&self) -> usize {
        usize::try_from(self.min_size.as_u64()).unwrap_or(usize::MAX)
    }
}
