//! What a call tells its observer as it runs: the runtime measures (how long it queued,
//! which sandbox it got, the messages, CPU and memory, key-value use) and the host counts
//! (metrics). An observer is per call and optional; a call without one measures nothing.

use std::fmt;
use std::time::Duration;

/// Hears the events of one call, from any task the call runs in.
pub trait CallObserver: Send + Sync + fmt::Debug {
    /// The call got its slot after waiting this long (its tenant's quota and its
    /// plugin's admission together).
    fn admitted(&self, waited: Duration);
    /// The call got a sandbox: an idle warm instance (`warm`) or a fresh one, which took
    /// `took` to make.
    fn sandbox(&self, warm: bool, took: Duration);
    /// A request message reached the call.
    fn received(&self);
    /// A response message left the call for the client.
    fn sent(&self);
    /// The guest's part ended after running for `ran`, having used `cpu` of CPU time
    /// (the call's, host work included); its instance had grown to `memory` bytes of
    /// linear memory.
    fn used(&self, ran: Duration, cpu: Duration, memory: usize);
    /// The guest made a key-value operation `op` over `keys` keys.
    fn kv_operation(&self, op: &'static str, keys: usize);
    /// Key-value bytes (keys and values) the guest read and wrote.
    fn kv_bytes(&self, read: usize, written: usize);
}
