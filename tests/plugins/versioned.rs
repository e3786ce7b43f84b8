// The shared source of the versioned-v1 and versioned-v2 test plugins; each crate sets
// VERSION and includes this file.

plugrpc_guest::include_proto!("versioned.v1");

use std::time::Duration;

use plugrpc_guest::{Context, Sink, Status};
use versioned_server::{Versioned, VersionedServer};

/// The Versioned handlers of this version.
#[derive(Default)]
struct This;

impl Versioned for This {
    fn version(&self, _cx: &Context, _request: VersionRequest) -> Result<VersionReply, Status> {
        Ok(VersionReply { version: VERSION.to_owned(), seq: 0 })
    }

    fn count(&self, _cx: &Context, request: CountRequest, out: &mut Sink<VersionReply>) -> Result<(), Status> {
        for seq in 0..request.n {
            out.send(VersionReply { version: VERSION.to_owned(), seq })?;
            // Each reply must reach the client before the pause, not wait in the batch.
            out.flush()?;
            std::thread::sleep(Duration::from_millis(u64::try_from(request.pause_ms).unwrap_or(0)));
        }
        Ok(())
    }
}

plugrpc_guest::export!(VersionedServer<This>);
