//! The store behind the plugin key-value capability (`wasi:keyvalue`): one [`Backend`]
//! for the whole host, an embedded redb file or a Redis server, with the same semantics
//! on both, so a deployment can move between them without a plugin noticing.
//!
//! Entries live in a [`Namespace`] (a tenant's bucket). Every mutating operation is
//! atomic, and the ones that can grow a namespace are charged to its byte quota (keys plus
//! values); an operation refused for any reason leaves the store as it was. Counters are
//! decimal ASCII, as Redis `INCRBY` keeps them.
//!
//! It knows neither plugins nor WIT, and never decides a status: the capability's glue
//! maps buckets to namespaces and [`BackendError`]s to what the guest sees.

use std::fmt;
use std::path::Path;

use super::embedded::EmbeddedStore;
use super::redis::RedisStore;

/// Where a bucket's entries live: a tenant and one of its buckets.
///
/// Backends encode both parts with their lengths, so no two distinct pairs ever share a
/// key (tenant `a/b` with bucket `c` and tenant `a` with bucket `b/c` stay apart).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Namespace {
    /// The tenant owning the bucket.
    pub tenant: String,
    /// The bucket's name, as the plugin opened it.
    pub bucket: String,
}

/// The store every plugin's buckets live in, shared by the whole host; cheap to clone.
#[derive(Clone)]
pub struct Backend(Store);

/// The two stores behind a [`Backend`].
#[derive(Clone)]
enum Store {
    Embedded(EmbeddedStore),
    Redis(RedisStore),
}

/// Runs the same call on whichever store the backend holds.
macro_rules! on_store {
    ($backend:expr, $store:ident => $call:expr) => {
        match &$backend.0 {
            Store::Embedded($store) => $call,
            Store::Redis($store) => $call,
        }
    };
}

impl Backend {
    /// Opens (creating if needed) the embedded store: one redb file, `kv.redb`, in `dir`
    /// (created too), so a single host needs no server.
    pub fn embedded(dir: &Path) -> Result<Self, BackendError> {
        EmbeddedStore::open(dir).map(|store| Self(Store::Embedded(store)))
    }

    /// A Redis store at `url` (`redis://host:port/db`, or `unix:///path?db=n`), so several
    /// hosts can share buckets. Only a malformed URL fails: a server that is down is
    /// reached later, and calls get [`BackendError::Unavailable`] until it is.
    pub async fn redis(url: &str) -> Result<Self, BackendError> {
        RedisStore::connect(url).map(|store| Self(Store::Redis(store)))
    }

    /// The value under `key`, if there is one.
    pub async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        on_store!(self, store => store.get(ns, key).await)
    }

    /// Stores `value` under `key`, refused with [`BackendError::Quota`] when the namespace
    /// would grow past `max_bytes` (an overwrite counts only the difference).
    pub async fn set(
        &self,
        ns: &Namespace,
        key: &str,
        value: &[u8],
        max_bytes: u64,
    ) -> Result<(), BackendError> {
        on_store!(self, store => store.set_many(ns, &[(key, value)], max_bytes).await)
    }

    /// Removes `key`; an absent key is not an error.
    pub async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), BackendError> {
        on_store!(self, store => store.delete_many(ns, &[key]).await)
    }

    /// Whether `key` holds a value.
    pub async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, BackendError> {
        on_store!(self, store => store.exists(ns, key).await)
    }

    /// One page of the namespace's keys in byte order, strictly after `after`: at most
    /// `limit` keys (at least one, so paging always advances) and the cursor to pass as
    /// `after` for the next page, `None` once no key remains.
    pub async fn list_keys(
        &self,
        ns: &Namespace,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), BackendError> {
        let limit = limit.max(1);
        let mut keys =
            on_store!(self, store => store.keys_after(ns, after, limit.saturating_add(1)).await)?;
        if keys.len() > limit {
            keys.truncate(limit);
            let cursor = keys.last().cloned();
            Ok((keys, cursor))
        } else {
            Ok((keys, None))
        }
    }

    /// Adds `delta` to the counter under `key` (absent counts as 0) and returns the new
    /// value; a value that is not a decimal `i64` is [`BackendError::NotANumber`], a result
    /// past `i64` is [`BackendError::Overflow`]. The counter's digits count against
    /// `max_bytes`.
    pub async fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: i64,
        max_bytes: u64,
    ) -> Result<i64, BackendError> {
        on_store!(self, store => store.increment(ns, key, delta, max_bytes).await)
    }

    /// Stores `value` only if the current value is `expected` (`None`: the key is absent);
    /// `Ok(false)`, with the store unchanged, when it is not.
    pub async fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        max_bytes: u64,
    ) -> Result<bool, BackendError> {
        on_store!(self, store => store.compare_and_swap(ns, key, expected, value, max_bytes).await)
    }

    /// The values under `keys`, in their order.
    pub async fn get_many(
        &self,
        ns: &Namespace,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        on_store!(self, store => store.get_many(ns, keys).await)
    }

    /// Stores every entry or none: the quota is checked for the whole batch, and a key
    /// given twice keeps its last value.
    pub async fn set_many(
        &self,
        ns: &Namespace,
        entries: &[(String, Vec<u8>)],
        max_bytes: u64,
    ) -> Result<(), BackendError> {
        let entries: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_slice()))
            .collect();
        on_store!(self, store => store.set_many(ns, &entries, max_bytes).await)
    }

    /// Removes every key in `keys` at once; absent ones are skipped.
    pub async fn delete_many(&self, ns: &Namespace, keys: &[String]) -> Result<(), BackendError> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        on_store!(self, store => store.delete_many(ns, &keys).await)
    }

    /// Bytes the namespace holds (keys plus values), what its quota is measured against.
    pub async fn used_bytes(&self, ns: &Namespace) -> Result<u64, BackendError> {
        on_store!(self, store => store.used_bytes(ns).await)
    }

    /// Which store this is, for the startup log line: `embedded (path)` or
    /// `redis (host:port)`; never a password.
    pub fn describe(&self) -> String {
        on_store!(self, store => store.describe())
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Why a key-value operation did not happen; in every case the store is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The store could not be reached, timed out or failed an I/O: worth retrying later.
    #[error("key-value store unavailable: {0}")]
    Unavailable(String),
    /// The namespace would grow past its quota.
    #[error(
        "key-value quota exceeded: the bucket holds {used} bytes, {adding} more would pass its {max}"
    )]
    Quota {
        /// Bytes the namespace held before the operation.
        used: u64,
        /// Bytes the operation would have added.
        adding: u64,
        /// The namespace's quota.
        max: u64,
    },
    /// An increment found a value that is not a decimal 64-bit integer.
    #[error("the value is not a decimal 64-bit integer")]
    NotANumber,
    /// An increment's result does not fit in 64 bits.
    #[error("the increment overflows a 64-bit integer")]
    Overflow,
    /// The store could not be opened: a bad embedded path or Redis URL, a startup error.
    #[error("cannot open the key-value store: {0}")]
    Open(String),
    /// The store held data no backend of ours writes.
    #[error("unexpected data in the key-value store: {0}")]
    Corrupt(String),
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use tempfile::TempDir;

    use super::*;

    /// A quota no scenario reaches unless it means to.
    const ROOMY: u64 = 1 << 20;

    /// Bounds a call to a stopped server: generous, so only a hang fails it.
    const HANG: Duration = Duration::from_secs(5);

    fn ns(tenant: &str, bucket: &str) -> Namespace {
        Namespace {
            tenant: tenant.to_owned(),
            bucket: bucket.to_owned(),
        }
    }

    fn bytes(value: &str) -> Option<Vec<u8>> {
        Some(value.as_bytes().to_vec())
    }

    fn strings(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|key| (*key).to_owned()).collect()
    }

    /// Every key of `ns`, a page of `limit` at a time, and how many pages it took.
    async fn all_keys(backend: &Backend, ns: &Namespace, limit: usize) -> (Vec<String>, usize) {
        let (mut keys, mut pages, mut cursor) = (Vec::new(), 0, None);
        loop {
            let (page, next) = backend
                .list_keys(ns, cursor.as_deref(), limit)
                .await
                .unwrap();
            assert!(page.len() <= limit.max(1), "a page holds at most its limit");
            keys.extend(page);
            pages += 1;
            match next {
                Some(next) => cursor = Some(next),
                None => return (keys, pages),
            }
        }
    }

    /// Runs each scenario on both backends, as a test named after it in
    /// `embedded_backend` and in `redis_backend`.
    macro_rules! on_both_backends {
        ($($scenario:ident),* $(,)?) => {
            mod embedded_backend {
                $(
                    #[tokio::test]
                    async fn $scenario() {
                        let dir = super::TempDir::new().unwrap();
                        let backend = super::Backend::embedded(dir.path()).unwrap();
                        super::$scenario(&backend).await;
                    }
                )*
            }

            mod redis_backend {
                $(
                    #[tokio::test]
                    async fn $scenario() {
                        let server = super::RedisServer::start();
                        let backend = super::Backend::redis(&server.url()).await.unwrap();
                        super::$scenario(&backend).await;
                    }
                )*
            }
        };
    }

    on_both_backends!(
        set_get_overwrite_delete_and_exists,
        list_keys_pages_in_byte_order_without_duplicates,
        namespaces_never_share_keys,
        increment_counts_from_absent_and_refuses_non_numbers_and_overflow,
        compare_and_swap_writes_only_when_the_value_matches,
        batches_get_set_and_delete_many_keys,
        quota_refuses_growth_past_max_bytes_and_changes_nothing,
        set_many_over_quota_changes_nothing,
    );

    async fn set_get_overwrite_delete_and_exists(backend: &Backend) {
        let ns = ns("acme", "plugin:greeter");
        assert_eq!(backend.get(&ns, "k").await.unwrap(), None);
        assert!(!backend.exists(&ns, "k").await.unwrap());

        backend.set(&ns, "k", b"one", ROOMY).await.unwrap();
        assert_eq!(backend.get(&ns, "k").await.unwrap(), bytes("one"));
        assert!(backend.exists(&ns, "k").await.unwrap());

        backend.set(&ns, "k", b"two!", ROOMY).await.unwrap();
        assert_eq!(backend.get(&ns, "k").await.unwrap(), bytes("two!"));
        assert_eq!(backend.used_bytes(&ns).await.unwrap(), 5);

        backend.set(&ns, "empty", b"", ROOMY).await.unwrap();
        assert_eq!(backend.get(&ns, "empty").await.unwrap(), bytes(""));
        assert!(backend.exists(&ns, "empty").await.unwrap());

        backend.delete(&ns, "k").await.unwrap();
        assert_eq!(backend.get(&ns, "k").await.unwrap(), None);
        assert!(!backend.exists(&ns, "k").await.unwrap());
        backend.delete(&ns, "k").await.unwrap();
        assert_eq!(backend.used_bytes(&ns).await.unwrap(), 5);
    }

    async fn list_keys_pages_in_byte_order_without_duplicates(backend: &Backend) {
        let numbered = ns("acme", "numbered");
        for i in (0..25).rev() {
            let key = format!("key-{i:02}");
            backend.set(&numbered, &key, b"v", ROOMY).await.unwrap();
        }
        let expected: Vec<String> = (0..25).map(|i| format!("key-{i:02}")).collect();
        assert_eq!(
            all_keys(backend, &numbered, 10).await,
            (expected.clone(), 3)
        );
        assert_eq!(
            all_keys(backend, &numbered, 25).await,
            (expected.clone(), 1)
        );
        assert_eq!(all_keys(backend, &numbered, 0).await, (expected, 25));

        let (first, cursor) = backend.list_keys(&numbered, None, 10).await.unwrap();
        assert_eq!(cursor.as_deref(), Some("key-09"));
        assert_eq!(first.last().map(String::as_str), Some("key-09"));
        let (last, cursor) = backend
            .list_keys(&numbered, Some("key-19"), 10)
            .await
            .unwrap();
        assert_eq!((last.len(), cursor), (5, None));

        let mixed = ns("acme", "mixed");
        for key in ["z", "é", "a", "", "B", "a\u{0}"] {
            backend.set(&mixed, key, b"v", ROOMY).await.unwrap();
        }
        assert_eq!(
            all_keys(backend, &mixed, 2).await.0,
            strings(&["", "B", "a", "a\u{0}", "z", "é"])
        );
        assert_eq!(
            backend.list_keys(&mixed, Some(""), 10).await.unwrap().0,
            strings(&["B", "a", "a\u{0}", "z", "é"])
        );
        let (empty, cursor) = backend
            .list_keys(&ns("acme", "none"), None, 10)
            .await
            .unwrap();
        assert_eq!((empty.len(), cursor), (0, None));
    }

    async fn namespaces_never_share_keys(backend: &Backend) {
        let namespaces = [
            ns("t1", "b"),
            ns("t2", "b"),
            ns("t1", "c"),
            ns("a/b", "c"),
            ns("a", "b/c"),
            ns("a:1:b", "c"),
            ns("a", "b:1:c"),
            ns("a}:1:{b", "c"),
            ns("ab", ""),
            ns("a", "b"),
            ns("", "ab"),
        ];
        for (i, ns) in namespaces.iter().enumerate() {
            let value = format!("value {i}");
            backend
                .set(ns, "shared", value.as_bytes(), ROOMY)
                .await
                .unwrap();
            backend
                .set(ns, &format!("own-{i}"), b"", ROOMY)
                .await
                .unwrap();
        }
        for (i, ns) in namespaces.iter().enumerate() {
            let value = format!("value {i}");
            assert_eq!(backend.get(ns, "shared").await.unwrap(), bytes(&value));
            assert_eq!(
                all_keys(backend, ns, 10).await.0,
                vec![format!("own-{i}"), "shared".to_owned()],
                "{ns:?}"
            );
            let own = format!("own-{i}").len() + "shared".len() + value.len();
            assert_eq!(backend.used_bytes(ns).await.unwrap(), own as u64, "{ns:?}");
        }

        backend.delete(&namespaces[0], "shared").await.unwrap();
        assert_eq!(
            backend.get(&namespaces[1], "shared").await.unwrap(),
            bytes("value 1")
        );
        assert_eq!(
            backend.get(&namespaces[2], "shared").await.unwrap(),
            bytes("value 2")
        );
    }

    async fn increment_counts_from_absent_and_refuses_non_numbers_and_overflow(backend: &Backend) {
        let ns = ns("acme", "counters");
        assert_eq!(backend.increment(&ns, "n", 5, ROOMY).await.unwrap(), 5);
        assert_eq!(backend.increment(&ns, "n", -7, ROOMY).await.unwrap(), -2);
        assert_eq!(backend.get(&ns, "n").await.unwrap(), bytes("-2"));
        assert_eq!(backend.increment(&ns, "n", 0, ROOMY).await.unwrap(), -2);
        assert_eq!(backend.used_bytes(&ns).await.unwrap(), 3);

        backend.set(&ns, "zero", b"0", ROOMY).await.unwrap();
        assert_eq!(backend.increment(&ns, "zero", 1, ROOMY).await.unwrap(), 1);

        let not_numbers = [
            "abc",
            "",
            "1.5",
            " 5",
            "5 ",
            "+5",
            "012",
            "-0",
            "--1",
            "99999999999999999999",
        ];
        for text in not_numbers {
            backend
                .set(&ns, "text", text.as_bytes(), ROOMY)
                .await
                .unwrap();
            let refused = backend.increment(&ns, "text", 1, ROOMY).await;
            assert!(
                matches!(refused, Err(BackendError::NotANumber)),
                "{text:?}: {refused:?}"
            );
            assert_eq!(backend.get(&ns, "text").await.unwrap(), bytes(text));
        }

        let max = i64::MAX.to_string();
        backend
            .set(&ns, "big", max.as_bytes(), ROOMY)
            .await
            .unwrap();
        let refused = backend.increment(&ns, "big", 1, ROOMY).await;
        assert!(
            matches!(refused, Err(BackendError::Overflow)),
            "{refused:?}"
        );
        assert_eq!(backend.get(&ns, "big").await.unwrap(), bytes(&max));

        let min = i64::MIN.to_string();
        backend
            .set(&ns, "small", min.as_bytes(), ROOMY)
            .await
            .unwrap();
        let refused = backend.increment(&ns, "small", -1, ROOMY).await;
        assert!(
            matches!(refused, Err(BackendError::Overflow)),
            "{refused:?}"
        );
        assert_eq!(
            backend.increment(&ns, "small", 1, ROOMY).await.unwrap(),
            i64::MIN + 1
        );
    }

    async fn compare_and_swap_writes_only_when_the_value_matches(backend: &Backend) {
        let ns = ns("acme", "cas");
        assert!(
            backend
                .compare_and_swap(&ns, "k", None, b"first", ROOMY)
                .await
                .unwrap()
        );
        assert_eq!(backend.get(&ns, "k").await.unwrap(), bytes("first"));

        assert!(
            !backend
                .compare_and_swap(&ns, "k", None, b"again", ROOMY)
                .await
                .unwrap()
        );
        assert!(
            !backend
                .compare_and_swap(&ns, "k", Some(b"other"), b"x", ROOMY)
                .await
                .unwrap()
        );
        assert!(
            !backend
                .compare_and_swap(&ns, "k", Some(b"firs"), b"x", ROOMY)
                .await
                .unwrap()
        );
        assert_eq!(backend.get(&ns, "k").await.unwrap(), bytes("first"));

        assert!(
            backend
                .compare_and_swap(&ns, "k", Some(b"first"), b"second", ROOMY)
                .await
                .unwrap()
        );
        assert_eq!(backend.get(&ns, "k").await.unwrap(), bytes("second"));
        assert_eq!(backend.used_bytes(&ns).await.unwrap(), 7);

        assert!(
            !backend
                .compare_and_swap(&ns, "absent", Some(b""), b"x", ROOMY)
                .await
                .unwrap()
        );
        assert_eq!(backend.get(&ns, "absent").await.unwrap(), None);
    }

    async fn batches_get_set_and_delete_many_keys(backend: &Backend) {
        let ns = ns("acme", "batch");
        let entries = [("a", "1"), ("b", "22"), ("c", "333")]
            .map(|(key, value)| (key.to_owned(), value.as_bytes().to_vec()));
        backend.set_many(&ns, &entries, ROOMY).await.unwrap();
        assert_eq!(
            backend
                .get_many(&ns, &strings(&["a", "missing", "c"]))
                .await
                .unwrap(),
            vec![bytes("1"), None, bytes("333")]
        );
        assert_eq!(backend.used_bytes(&ns).await.unwrap(), 9);

        let twice = [("d", "x"), ("d", "yy")]
            .map(|(key, value)| (key.to_owned(), value.as_bytes().to_vec()));
        backend.set_many(&ns, &twice, ROOMY).await.unwrap();
        assert_eq!(backend.get(&ns, "d").await.unwrap(), bytes("yy"));
        assert_eq!(backend.used_bytes(&ns).await.unwrap(), 12);

        backend
            .delete_many(&ns, &strings(&["a", "missing", "b", "a"]))
            .await
            .unwrap();
        assert_eq!(
            backend
                .get_many(&ns, &strings(&["a", "b", "c"]))
                .await
                .unwrap(),
            vec![None, None, bytes("333")]
        );
        backend
            .delete_many(&ns, &strings(&["c", "d"]))
            .await
            .unwrap();
        assert_eq!(backend.used_bytes(&ns).await.unwrap(), 0);
        assert!(all_keys(backend, &ns, 10).await.0.is_empty());

        assert!(backend.get_many(&ns, &[]).await.unwrap().is_empty());
        backend.set_many(&ns, &[], 0).await.unwrap();
        backend.delete_many(&ns, &[]).await.unwrap();
    }

    async fn quota_refuses_growth_past_max_bytes_and_changes_nothing(backend: &Backend) {
        let ns = ns("acme", "quota");
        let ten = [b'x'; 10];
        backend.set(&ns, "k", &ten, 20).await.unwrap();
        assert_eq!(backend.used_bytes(&ns).await.unwrap(), 11);

        let refused = backend.set(&ns, "j", &ten, 20).await;
        assert!(
            matches!(
                refused,
                Err(BackendError::Quota {
                    used: 11,
                    adding: 11,
                    max: 20
                })
            ),
            "{refused:?}"
        );
        assert_eq!(backend.get(&ns, "j").await.unwrap(), None);
        assert_eq!(backend.used_bytes(&ns).await.unwrap(), 11);

        backend.set(&ns, "k", &[b'y'; 19], 20).await.unwrap();
        let refused = backend.set(&ns, "k", &[b'z'; 20], 20).await;
        assert!(
            matches!(
                refused,
                Err(BackendError::Quota {
                    used: 20,
                    adding: 1,
                    max: 20
                })
            ),
            "{refused:?}"
        );
        assert_eq!(backend.get(&ns, "k").await.unwrap(), Some(vec![b'y'; 19]));

        backend.set(&ns, "k", b"abcd", 20).await.unwrap();
        assert_eq!(backend.used_bytes(&ns).await.unwrap(), 5);
        backend.set(&ns, "k", b"abc", 2).await.unwrap();
        assert_eq!(backend.used_bytes(&ns).await.unwrap(), 4);

        let refused = backend.increment(&ns, "n", 10, 5).await;
        assert!(
            matches!(
                refused,
                Err(BackendError::Quota {
                    used: 4,
                    adding: 3,
                    max: 5
                })
            ),
            "{refused:?}"
        );
        assert_eq!(backend.get(&ns, "n").await.unwrap(), None);
        let refused = backend
            .compare_and_swap(&ns, "k", Some(b"abc"), &ten, 5)
            .await;
        assert!(
            matches!(
                refused,
                Err(BackendError::Quota {
                    used: 4,
                    adding: 7,
                    max: 5
                })
            ),
            "{refused:?}"
        );
        assert_eq!(backend.get(&ns, "k").await.unwrap(), bytes("abc"));
        assert_eq!(all_keys(backend, &ns, 10).await.0, strings(&["k"]));

        backend.delete(&ns, "k").await.unwrap();
        assert_eq!(backend.used_bytes(&ns).await.unwrap(), 0);
    }

    async fn set_many_over_quota_changes_nothing(backend: &Backend) {
        let ns = ns("acme", "batch-quota");
        backend.set(&ns, "a", b"1234", 12).await.unwrap();
        let batch = [("b", "1234"), ("c", "1234")]
            .map(|(key, value)| (key.to_owned(), value.as_bytes().to_vec()));
        let refused = backend.set_many(&ns, &batch, 12).await;
        assert!(
            matches!(
                refused,
                Err(BackendError::Quota {
                    used: 5,
                    adding: 10,
                    max: 12
                })
            ),
            "{refused:?}"
        );
        assert_eq!(
            backend
                .get_many(&ns, &strings(&["a", "b", "c"]))
                .await
                .unwrap(),
            vec![bytes("1234"), None, None]
        );
        assert_eq!(backend.used_bytes(&ns).await.unwrap(), 5);
        assert_eq!(all_keys(backend, &ns, 10).await.0, strings(&["a"]));

        let shrink_then_add = [("a", ""), ("b", "1234")]
            .map(|(key, value)| (key.to_owned(), value.as_bytes().to_vec()));
        backend.set_many(&ns, &shrink_then_add, 6).await.unwrap();
        assert_eq!(backend.used_bytes(&ns).await.unwrap(), 6);
    }

    #[tokio::test]
    async fn embedded_store_keeps_its_data_across_a_reopen() {
        let dir = TempDir::new().unwrap();
        let ns = ns("acme", "durable");
        let backend = Backend::embedded(dir.path()).unwrap();
        backend.set(&ns, "k", b"kept", ROOMY).await.unwrap();
        backend.increment(&ns, "n", 41, ROOMY).await.unwrap();
        drop(backend);

        let reopened = Backend::embedded(dir.path()).unwrap();
        assert_eq!(reopened.get(&ns, "k").await.unwrap(), bytes("kept"));
        assert_eq!(reopened.increment(&ns, "n", 1, ROOMY).await.unwrap(), 42);
        assert_eq!(reopened.used_bytes(&ns).await.unwrap(), 8);
        assert_eq!(
            reopened.describe(),
            format!("embedded ({})", dir.path().join("kv.redb").display())
        );
    }

    #[test]
    fn embedded_store_names_the_path_it_cannot_open() {
        let dir = TempDir::new().unwrap();
        let file = dir.path().join("occupied");
        std::fs::write(&file, b"not a directory").unwrap();
        match Backend::embedded(&file) {
            Err(BackendError::Open(message)) => {
                assert!(message.contains(&*file.to_string_lossy()), "{message}");
            }
            other => panic!("expected an open error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn redis_backend_starts_without_a_server_and_answers_unavailable() {
        let backend = Backend::redis(&format!("redis://127.0.0.1:{}/", free_port()))
            .await
            .unwrap();
        let answer = tokio::time::timeout(HANG, backend.get(&ns("acme", "b"), "k"))
            .await
            .expect("a call to an absent server returns");
        assert!(
            matches!(answer, Err(BackendError::Unavailable(_))),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn redis_calls_answer_unavailable_while_the_server_is_down_and_recover_after() {
        let mut server = RedisServer::start();
        let backend = Backend::redis(&server.url()).await.unwrap();
        let ns = ns("acme", "flaky");
        backend.set(&ns, "k", b"before", ROOMY).await.unwrap();

        server.stop();
        let answer = tokio::time::timeout(HANG, backend.get(&ns, "k"))
            .await
            .expect("a get on a stopped server returns");
        assert!(
            matches!(answer, Err(BackendError::Unavailable(_))),
            "{answer:?}"
        );
        let answer = tokio::time::timeout(HANG, backend.set(&ns, "k", b"during", ROOMY))
            .await
            .expect("a set on a stopped server returns");
        assert!(
            matches!(answer, Err(BackendError::Unavailable(_))),
            "{answer:?}"
        );

        server.restart();
        let mut recovered = false;
        for _ in 0..50 {
            let attempt = tokio::time::timeout(HANG, backend.set(&ns, "k", b"after", ROOMY));
            if let Ok(Ok(())) = attempt.await {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            recovered,
            "the backend reconnected once the server was back"
        );
        assert_eq!(backend.get(&ns, "k").await.unwrap(), bytes("after"));
    }

    #[tokio::test]
    async fn redis_calls_to_a_stalled_server_answer_unavailable_and_recover_after() {
        let server = RedisServer::start();
        let backend = Backend::redis(&server.url()).await.unwrap();
        let ns = ns("acme", "stalled");
        backend.set(&ns, "k", b"before", ROOMY).await.unwrap();

        server.signal("STOP");
        let answer = tokio::time::timeout(HANG, backend.get(&ns, "k"))
            .await
            .expect("a get on a stalled server returns");
        server.signal("CONT");
        assert!(
            matches!(answer, Err(BackendError::Unavailable(_))),
            "{answer:?}"
        );

        let mut recovered = false;
        for _ in 0..50 {
            let attempt = tokio::time::timeout(HANG, backend.get(&ns, "k"));
            if let Ok(Ok(value)) = attempt.await {
                assert_eq!(value, bytes("before"));
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(recovered, "the backend answered again once the server did");
    }

    #[tokio::test]
    async fn malformed_redis_url_is_an_open_error_that_hides_the_password() {
        for url in [
            "redis://:hunter2@cache:notaport/0",
            "http://:hunter2@cache/",
            "redis://:hunter2@cache/notadb",
        ] {
            match Backend::redis(url).await {
                Err(BackendError::Open(message)) => {
                    assert!(!message.contains("hunter2"), "{message}");
                    assert!(message.contains("cache"), "{message}");
                }
                other => panic!("{url}: expected an open error, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn redis_describe_names_the_address_and_never_the_password() {
        let backend = Backend::redis("redis://user:hunter2@127.0.0.1:6390/3")
            .await
            .unwrap();
        assert_eq!(backend.describe(), "redis (127.0.0.1:6390, db 3)");
        let backend = Backend::redis("redis://127.0.0.1:6390").await.unwrap();
        assert_eq!(backend.describe(), "redis (127.0.0.1:6390)");
    }

    /// A loopback port nothing listens on, for the moment.
    fn free_port() -> u16 {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// A throwaway `redis-server` on a loopback port, without persistence, in a directory
    /// of its own; killed on drop.
    struct RedisServer {
        port: u16,
        dir: TempDir,
        child: Option<Child>,
    }

    impl RedisServer {
        fn start() -> Self {
            let mut server = Self {
                port: free_port(),
                dir: TempDir::new().unwrap(),
                child: None,
            };
            server.restart();
            server
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/", self.port)
        }

        /// Starts the server on its port and waits until it accepts connections.
        fn restart(&mut self) {
            let child = Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(self.dir.path())
                .current_dir(self.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                    "redis-server is not installed: install it (apt-get install redis-server) to run the Redis key-value tests"
                ),
                Err(error) => panic!("cannot start redis-server: {error}"),
            };
            self.child = Some(child);
            let started = Instant::now();
            while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
                if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                    panic!("redis-server on port {} exited: {status}", self.port);
                }
                assert!(
                    started.elapsed() < HANG,
                    "redis-server did not listen on port {} within {HANG:?}",
                    self.port
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        /// Kills the server, as a crash would.
        fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        /// Freezes (`STOP`) or thaws (`CONT`) the server: connected, answering nothing.
        fn signal(&self, signal: &str) {
            let pid = self.child.as_ref().expect("a running server").id();
            let status = Command::new("kill")
                .args([format!("-{signal}"), pid.to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "kill -{signal} {pid}: {status}");
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            self.stop();
        }
    }
}
