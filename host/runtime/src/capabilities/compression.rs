//! The compression capability (`plugrpc:plugin/compression`): how each request message
//! arrived, and the guest's say over whether its response messages may be compressed
//! (the interop suite's `expect_compressed` and `response_compressed` need both). The
//! front door decides the rest: which encoding, and which messages are worth it.

use wasmtime::component::{HasData, Linker};

use crate::bindings::{CompressionHost, add_compression_to_linker};
use crate::capabilities::io::CallIo;
use crate::sandbox::CallState;

/// Links `plugrpc:plugin/compression` to the Store's call I/O.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    add_compression_to_linker::<CallState, Compression>(linker, |state| CallCompression {
        io: state.io.as_mut(),
    })
}

/// The [`HasData`] of the compression capability.
struct Compression;

impl HasData for Compression {
    type Data<'a> = CallCompression<'a>;
}

/// The call running in a Store, as the compression functions see it.
struct CallCompression<'a> {
    io: Option<&'a mut CallIo>,
}

impl CompressionHost for CallCompression<'_> {
    fn request_compressed(&mut self, index: u64) -> wasmtime::Result<Option<bool>> {
        Ok(self.io.as_ref().and_then(|io| io.request_compressed(index)))
    }

    fn compress_responses(&mut self, enabled: bool) -> wasmtime::Result<()> {
        if let Some(io) = self.io.as_mut() {
            io.compress_responses(enabled);
        }
        Ok(())
    }
}
