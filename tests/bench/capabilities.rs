//! The loadgen workloads of the benchmark's capabilities section: the keeper service's
//! Get and Put (a key-value read and write per call) and the caller service's Hello (one
//! outbound unary hop per call), the same calls whether a plugin or its native twin
//! serves them.

use plugrpc_tests::pb::caller::Relay;
use plugrpc_tests::pb::caller::caller_client::CallerClient;
use plugrpc_tests::pb::keeper::keeper_client::KeeperClient;
use plugrpc_tests::pb::keeper::{Entry, Key};
use tonic::transport::Channel;

/// The key every call reads and writes: one key, so the store's size stays the same.
const KEY: &str = "bench";

/// Reads the key (one message answered).
pub(crate) async fn kv_get(channel: &Channel) -> Result<u64, tonic::Status> {
    KeeperClient::new(channel.clone())
        .get(Key {
            bucket: String::new(),
            key: KEY.into(),
        })
        .await
        .map(|_| 1)
}

/// Writes `size` bytes to the key.
pub(crate) async fn kv_put(channel: &Channel, size: usize) -> Result<u64, tonic::Status> {
    KeeperClient::new(channel.clone())
        .put(Entry {
            bucket: String::new(),
            key: KEY.into(),
            value: vec![b'x'; size],
        })
        .await
        .map(|_| 1)
}

/// One Hello relayed to the greeter at `target` (`local`, or the alias of one over the
/// network).
pub(crate) async fn hop(channel: &Channel, target: &str) -> Result<u64, tonic::Status> {
    CallerClient::new(channel.clone())
        .hello(Relay {
            target: target.into(),
            name: "bench".into(),
            ..Relay::default()
        })
        .await
        .map(|_| 1)
}
