//! The key-value capability (`wasi:keyvalue` store, atomics and batch), for a plugin
//! whose config grants it (`[plugins.<name>.kv]`). A plugin opens its own bucket (`""`
//! or `"default"`) and the tenant's shared buckets its config names; nothing of another
//! plugin's or another tenant's. Every operation is bounded: key and value size, bytes a
//! bucket holds, operations per call, and the call's deadline.
//!
//! The standard's `error` has no codes of its own, so a refusal is `other("<code>:
//! <message>")`, `<code>` a gRPC status name in kebab case (`resource-exhausted: kv
//! max_value_size ...`, `unavailable: ...`), which the SDK turns into that status.

pub(crate) mod backend;
mod embedded;
mod redis;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

pub use backend::{Backend, BackendError, Namespace};

use crate::bindings::keyvalue::{
    AtomicsHost, BatchHost, BucketHost, CasError, CasHost, KeyResponse, KvError, StoreHost,
    add_atomics_to_linker, add_batch_to_linker, add_store_to_linker,
};
use crate::limits::size;
use crate::observe::CallObserver;
use crate::sandbox::{CallState, Deadline};

/// Keys one `list-keys` answers at most; the cursor fetches the rest.
const LIST_PAGE: usize = 1000;

/// What bounds a plugin's use of its buckets; each names its config key in refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLimits {
    /// `max_bytes`: keys plus values one bucket may hold.
    pub max_bytes: u64,
    /// `max_key_size`: bytes of one key.
    pub max_key_size: usize,
    /// `max_value_size`: bytes of one value.
    pub max_value_size: usize,
    /// `max_ops_per_call`: operations one call may make (a batch counts its keys).
    pub max_ops_per_call: u32,
}

/// Limits for a plugin whose `[kv]` table sets none.
pub const DEFAULT_KV_LIMITS: KvLimits = KvLimits {
    max_bytes: 64 << 20,
    max_key_size: 1 << 10,
    max_value_size: 1 << 20,
    max_ops_per_call: 1000,
};

/// A plugin's grant: the backend, whose buckets it may open, and its limits.
pub struct KvGrant {
    backend: Backend,
    tenant: String,
    plugin: String,
    shared: Vec<String>,
    limits: KvLimits,
}

impl KvGrant {
    /// `tenant`'s plugin `plugin` may use its own bucket and the tenant's `shared` ones
    /// in `backend`, within `limits`.
    pub fn new(
        backend: Backend,
        tenant: &str,
        plugin: &str,
        shared: Vec<String>,
        limits: KvLimits,
    ) -> Self {
        Self {
            backend,
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
            shared,
            limits,
        }
    }

    /// Where the bucket a guest opens by `identifier` lives, if the grant covers it:
    /// the plugin's own (`""`, `"default"`) and the shared ones it names, in separate
    /// name spaces so no shared name can reach a plugin's own bucket.
    fn namespace(&self, identifier: &str) -> Option<Namespace> {
        let bucket = match identifier {
            "" | "default" => format!("plugin:{}", self.plugin),
            name if self.shared.iter().any(|shared| shared == name) => format!("shared:{name}"),
            _ => return None,
        };
        Some(Namespace {
            tenant: self.tenant.clone(),
            bucket,
        })
    }
}

/// One call's key-value state: the plugin's grant, and the operations the call made.
#[derive(Default)]
pub(crate) struct KvState {
    grant: Option<Arc<KvGrant>>,
    ops: u32,
    deadline: Option<Deadline>,
    /// Told of each operation and the bytes it moved.
    observer: Option<Arc<dyn CallObserver>>,
}

impl KvState {
    /// Arms the state for a call ending at `deadline`, observed by `observer`.
    pub(crate) fn begin(
        &mut self,
        grant: Option<Arc<KvGrant>>,
        deadline: Deadline,
        observer: Option<Arc<dyn CallObserver>>,
    ) {
        *self = Self {
            grant,
            ops: 0,
            deadline: Some(deadline),
            observer,
        };
    }

    /// Ends the call's use of the store: nothing of it (its observer above all) stays
    /// with an instance kept warm for the next call.
    pub(crate) fn end(&mut self) {
        *self = Self::default();
    }

    /// Tells the observer of bytes read and written.
    fn moved(&self, read: usize, written: usize) {
        if let Some(observer) = &self.observer {
            observer.kv_bytes(read, written);
        }
    }
}

/// What `value` and `key` weigh together, when there is a value.
fn weight<V: AsRef<[u8]>>(key: &str, value: Option<V>) -> usize {
    value.map_or(0, |value| key.len() + value.as_ref().len())
}

/// An open bucket, as the guest holds it.
#[allow(unreachable_pub)] // `pub` because bindgen names it in public traits
pub struct Bucket {
    grant: Arc<KvGrant>,
    namespace: Namespace,
}

/// A compare-and-swap under way: the value the guest saw, to compare at the swap.
#[allow(unreachable_pub)] // `pub` because bindgen names it in public traits
pub struct Cas {
    grant: Arc<KvGrant>,
    namespace: Namespace,
    key: String,
    seen: Option<Vec<u8>>,
}

/// Links `wasi:keyvalue` store, atomics and batch to the Store's key-value state.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    fn view(state: &mut CallState) -> KvView<'_> {
        let (table, kv) = state.kv_view();
        KvView { table, kv }
    }
    add_store_to_linker::<CallState, Kv>(linker, view)?;
    add_atomics_to_linker::<CallState, Kv>(linker, view)?;
    add_batch_to_linker::<CallState, Kv>(linker, view)
}

/// The [`HasData`] of the key-value capability.
struct Kv;

impl HasData for Kv {
    type Data<'a> = KvView<'a>;
}

/// What the key-value functions see of a Store.
struct KvView<'a> {
    table: &'a mut ResourceTable,
    kv: &'a mut KvState,
}

/// A key-value answer for the guest.
type KvResult<T> = wasmtime::Result<Result<T, KvError>>;

/// A refusal for the guest: a gRPC status name, then what happened.
fn refused(code: &str, message: impl std::fmt::Display) -> KvError {
    KvError::Other(format!("{code}: {message}"))
}

/// The guest hears of a backend that failed in general terms (its address and errors are
/// the host's); the host log has the details, at most every this many seconds.
const FAILURE_LOG_EVERY_SECS: u64 = 10;

impl From<BackendError> for KvError {
    fn from(error: BackendError) -> Self {
        match &error {
            BackendError::Unavailable(_) => {
                log_failure(&error);
                refused("unavailable", "the key-value store is unavailable")
            }
            BackendError::Quota { .. } => {
                refused("resource-exhausted", format!("kv max_bytes: {error}"))
            }
            BackendError::NotANumber | BackendError::Overflow => {
                refused("failed-precondition", error)
            }
            _ => {
                log_failure(&error);
                refused("internal", "the key-value store failed")
            }
        }
    }
}

/// Logs a backend failure, at most once every [`FAILURE_LOG_EVERY_SECS`]: an outage
/// fails every call, and one line says so.
fn log_failure(error: &BackendError) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    // Seconds since START of the last line, plus one (0: none yet).
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs()
        + 1;
    let last = LAST.load(Ordering::Relaxed);
    let due = last == 0 || now >= last + FAILURE_LOG_EVERY_SECS;
    if due
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!("key-value store: {error} (calls that need it fail until it is back)");
    }
}

impl KvView<'_> {
    /// Counts `ops` operations against the call's budget.
    fn spend(&mut self, ops: usize) -> Result<(), KvError> {
        let limit = self
            .kv
            .grant
            .as_ref()
            .map_or(0, |grant| grant.limits.max_ops_per_call);
        let ops = u32::try_from(ops).unwrap_or(u32::MAX);
        if self.kv.ops.saturating_add(ops) > limit {
            return Err(refused(
                "resource-exhausted",
                format!("kv max_ops_per_call: a call may make {limit} key-value operations"),
            ));
        }
        self.kv.ops += ops;
        Ok(())
    }

    /// The bucket behind `bucket`, after counting `ops` operations (of kind `op`) and
    /// checking `keys`.
    fn bucket<'k>(
        &mut self,
        bucket: &Resource<Bucket>,
        op: &'static str,
        ops: usize,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> wasmtime::Result<Result<(Arc<KvGrant>, Namespace), KvError>> {
        let open = self.table.get(bucket)?;
        let (grant, namespace) = (open.grant.clone(), open.namespace.clone());
        if let Err(error) = self.spend(ops) {
            return Ok(Err(error));
        }
        if let Some(observer) = &self.kv.observer {
            observer.kv_operation(op, ops);
        }
        for key in keys {
            if let Err(error) = check_key(&grant.limits, key) {
                return Ok(Err(error));
            }
        }
        Ok(Ok((grant, namespace)))
    }

    /// When the call must be over: what bounds every wait on the backend.
    fn deadline(&self) -> Deadline {
        self.kv
            .deadline
            .unwrap_or_else(|| Deadline::at(std::time::Instant::now()))
    }
}

/// `work`'s answer, or a refusal once `deadline` passes.
async fn bound<T>(
    deadline: Deadline,
    work: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, KvError> {
    match deadline.bound(work).await {
        Some(result) => result.map_err(KvError::from),
        None => Err(refused(
            "deadline-exceeded",
            "the key-value store did not answer within the call's deadline",
        )),
    }
}

/// Refuses a key longer than `max_key_size`.
fn check_key(limits: &KvLimits, key: &str) -> Result<(), KvError> {
    if key.len() > limits.max_key_size {
        return Err(refused(
            "resource-exhausted",
            format!(
                "kv max_key_size: a key of {} is over the {} limit",
                size(key.len()),
                size(limits.max_key_size)
            ),
        ));
    }
    Ok(())
}

/// Refuses a value longer than `max_value_size`.
fn check_value(limits: &KvLimits, value: &[u8]) -> Result<(), KvError> {
    if value.len() > limits.max_value_size {
        return Err(refused(
            "resource-exhausted",
            format!(
                "kv max_value_size: a value of {} is over the {} limit",
                size(value.len()),
                size(limits.max_value_size)
            ),
        ));
    }
    Ok(())
}

/// Unwraps a step's refusal into the guest's answer.
macro_rules! attempt {
    ($step:expr) => {
        match $step {
            Ok(value) => value,
            Err(error) => return Ok(Err(error)),
        }
    };
}

impl StoreHost for KvView<'_> {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<Bucket>> {
        let Some(grant) = self.kv.grant.clone() else {
            return Ok(Err(KvError::AccessDenied));
        };
        let Some(namespace) = grant.namespace(&identifier) else {
            return Ok(Err(refused(
                "permission-denied",
                format!(
                    "bucket {identifier:?} is not granted: the plugin's own is \"default\"; shared ones are named in its [kv] shared list"
                ),
            )));
        };
        Ok(Ok(self.table.push(Bucket { grant, namespace })?))
    }
}

impl BucketHost for KvView<'_> {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        let (grant, ns) = attempt!(self.bucket(&bucket, "get", 1, [key.as_str()])?);
        let value = attempt!(bound(self.deadline(), grant.backend.get(&ns, &key)).await);
        self.kv.moved(weight(&key, value.as_ref()), 0);
        Ok(Ok(value))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        let (grant, ns) = attempt!(self.bucket(&bucket, "set", 1, [key.as_str()])?);
        attempt!(check_value(&grant.limits, &value));
        let set = bound(
            self.deadline(),
            grant.backend.set(&ns, &key, &value, grant.limits.max_bytes),
        )
        .await;
        if set.is_ok() {
            self.kv.moved(0, weight(&key, Some(&value)));
        }
        Ok(set)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<()> {
        let (grant, ns) = attempt!(self.bucket(&bucket, "delete", 1, [key.as_str()])?);
        Ok(bound(self.deadline(), grant.backend.delete(&ns, &key)).await)
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<bool> {
        let (grant, ns) = attempt!(self.bucket(&bucket, "exists", 1, [key.as_str()])?);
        Ok(bound(self.deadline(), grant.backend.exists(&ns, &key)).await)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> KvResult<KeyResponse> {
        let (grant, ns) = attempt!(self.bucket(&bucket, "list_keys", 1, cursor.as_deref())?);
        let (keys, cursor) = attempt!(
            bound(
                self.deadline(),
                grant.backend.list_keys(&ns, cursor.as_deref(), LIST_PAGE)
            )
            .await
        );
        self.kv.moved(keys.iter().map(String::len).sum(), 0);
        Ok(Ok(KeyResponse { keys, cursor }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl AtomicsHost for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> KvResult<i64> {
        let (grant, ns) = attempt!(self.bucket(&bucket, "increment", 1, [key.as_str()])?);
        Ok(bound(
            self.deadline(),
            grant
                .backend
                .increment(&ns, &key, delta, grant.limits.max_bytes),
        )
        .await)
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), CasError>> {
        let Cas {
            grant,
            namespace,
            key,
            seen,
        } = self.table.delete(cas)?;
        if let Err(error) = self
            .spend(1)
            .and_then(|()| check_value(&grant.limits, &value))
        {
            return Ok(Err(CasError::StoreError(error)));
        }
        if let Some(observer) = &self.kv.observer {
            observer.kv_operation("swap", 1);
        }
        let swapped = bound(
            self.deadline(),
            grant.backend.compare_and_swap(
                &namespace,
                &key,
                seen.as_deref(),
                &value,
                grant.limits.max_bytes,
            ),
        )
        .await;
        match swapped {
            Ok(true) => {
                self.kv.moved(0, weight(&key, Some(&value)));
                Ok(Ok(()))
            }
            Err(error) => Ok(Err(CasError::StoreError(error))),
            Ok(false) => {
                // Another writer won: the guest gets a fresh compare-and-swap to retry.
                let seen = match bound(self.deadline(), grant.backend.get(&namespace, &key)).await {
                    Ok(seen) => seen,
                    Err(error) => return Ok(Err(CasError::StoreError(error))),
                };
                let retry = self.table.push(Cas {
                    grant,
                    namespace,
                    key,
                    seen,
                })?;
                Ok(Err(CasError::CasFailed(retry)))
            }
        }
    }
}

impl CasHost for KvView<'_> {
    async fn new(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<Resource<Cas>> {
        let (grant, namespace) = attempt!(self.bucket(&bucket, "cas", 1, [key.as_str()])?);
        let seen = attempt!(bound(self.deadline(), grant.backend.get(&namespace, &key)).await);
        self.kv.moved(weight(&key, seen.as_ref()), 0);
        Ok(Ok(self.table.push(Cas {
            grant,
            namespace,
            key,
            seen,
        })?))
    }

    async fn current(&mut self, cas: Resource<Cas>) -> KvResult<Option<Vec<u8>>> {
        Ok(Ok(self.table.get(&cas)?.seen.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl BatchHost for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        let (grant, ns) = attempt!(self.bucket(
            &bucket,
            "get_many",
            keys.len(),
            keys.iter().map(String::as_str)
        )?);
        let values = attempt!(bound(self.deadline(), grant.backend.get_many(&ns, &keys)).await);
        let read = keys
            .iter()
            .zip(&values)
            .map(|(key, value)| weight(key, value.as_ref()))
            .sum();
        self.kv.moved(read, 0);
        Ok(Ok(keys
            .into_iter()
            .zip(values)
            .map(|(key, value)| value.map(|value| (key, value)))
            .collect()))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        entries: Vec<(String, Vec<u8>)>,
    ) -> KvResult<()> {
        let (grant, ns) = attempt!(self.bucket(
            &bucket,
            "set_many",
            entries.len(),
            entries.iter().map(|(key, _)| key.as_str())
        )?);
        for (_, value) in &entries {
            attempt!(check_value(&grant.limits, value));
        }
        let set = bound(
            self.deadline(),
            grant
                .backend
                .set_many(&ns, &entries, grant.limits.max_bytes),
        )
        .await;
        if set.is_ok() {
            let written = entries
                .iter()
                .map(|(key, value)| weight(key, Some(value)))
                .sum();
            self.kv.moved(0, written);
        }
        Ok(set)
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
        let (grant, ns) = attempt!(self.bucket(
            &bucket,
            "delete_many",
            keys.len(),
            keys.iter().map(String::as_str)
        )?);
        Ok(bound(self.deadline(), grant.backend.delete_many(&ns, &keys)).await)
    }
}
