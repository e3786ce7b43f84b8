//! Test-only plugin: `versioned.v1.Versioned` with Count made unary and `seq` a string,
//! so reloading it over a compatible version must be refused.

plugrpc_guest::include_proto!("versioned.v1");

use plugrpc_guest::{Context, Status};
use versioned_server::{Versioned, VersionedServer};

/// The incompatible handlers.
#[derive(Default)]
struct Broken;

impl Versioned for Broken {
    fn version(&self, _cx: &Context, _request: VersionRequest) -> Result<VersionReply, Status> {
        Ok(VersionReply {
            version: "broken".to_owned(),
            seq: String::new(),
        })
    }

    fn count(&self, _cx: &Context, request: CountRequest) -> Result<VersionReply, Status> {
        Ok(VersionReply {
            version: "broken".to_owned(),
            seq: request.n.to_string(),
        })
    }
}

plugrpc_guest::export!(VersionedServer<Broken>);
