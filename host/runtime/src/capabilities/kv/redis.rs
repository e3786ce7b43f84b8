//! The Redis key-value store, for hosts that share buckets or keep them off their own
//! disk. Nothing waits on Redis unbounded: every operation, reconnecting included, ends
//! within [`COMMAND_TIMEOUT`], as [`BackendError::Unavailable`] when the server is gone,
//! and the first operation after it is back reconnects.
//!
//! Key layout, every key under one namespace's prefix
//! `plugrpc:kv:{<n>:<tenant>:<m>:<bucket>}:` (`<n>` and `<m>` the byte lengths of the
//! tenant and the bucket, so no namespace's prefix starts another's; the braces are a
//! Redis Cluster hash tag, so one namespace's keys share a slot):
//! - `<prefix>v:<key>`: the value, a string.
//! - `<prefix>keys`: the namespace's keys, a sorted set with every score 0, so members
//!   sort by their bytes and `list_keys` pages with `ZRANGEBYLEX`.
//! - `<prefix>used`: bytes the namespace holds (keys plus values), in decimal; absent
//!   when it holds none.
//!
//! Every operation that changes a namespace is one Lua script (`EVALSHA`), so the quota
//! check, the writes, the key index and the usage counter change together or not at all.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, RedisError, RedisResult, Script, ScriptInvocation, Value};

use super::backend::{BackendError, Namespace};

/// Longest one operation waits on Redis, connecting included. A healthy server answers
/// within milliseconds, so 2 s means it is gone or stalled, and the call learns so well
/// inside a typical deadline instead of hanging until it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Connection attempts after one fails, within an operation: none. An operation that
/// finds the server gone answers at once instead of holding its call through a backoff;
/// the next one tries again (concurrent operations share one attempt), so the connection
/// is back as soon as the server is.
const RECONNECT_RETRIES: usize = 0;

/// Shared by every script: the namespace's usage (`KEYS[2]`), read and written back.
const USAGE_LUA: &str = r"
local function usage()
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
local function save_usage(used)
  if used == 0 then
    redis.call('DEL', KEYS[2])
  else
    redis.call('SET', KEYS[2], string.format('%d', used))
  end
end
";

/// Stores a batch or none of it. KEYS: index, usage, then each entry's value key; ARGV:
/// the quota, then each entry's key and value. A key given twice keeps its last value.
const SET_MANY_LUA: &str = r"
local used = usage()
local after = used
local pending = {}
for i = 3, #KEYS do
  local key, value = ARGV[2 * i - 4], ARGV[2 * i - 3]
  local old = pending[KEYS[i]]
  if old == nil then old = redis.call('GET', KEYS[i]) end
  if old then after = after - #key - #old end
  after = after + #key + #value
  pending[KEYS[i]] = value
end
if after > used and after > tonumber(ARGV[1]) then return {0, used, after - used} end
for i = 3, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2 * i - 3])
  redis.call('ZADD', KEYS[1], 0, ARGV[2 * i - 4])
end
save_usage(after)
return {1}
";

/// Removes a batch. KEYS: index, usage, then each value key; ARGV: each key.
const DELETE_MANY_LUA: &str = r"
local used = usage()
for i = 3, #KEYS do
  local old = redis.call('GET', KEYS[i])
  if old then
    used = used - #ARGV[i - 2] - #old
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], ARGV[i - 2])
  end
end
save_usage(used)
return {1}
";

/// Adds to a counter with `INCRBY`, whose rules decide what a number is, and undoes it
/// when the new digits pass the quota. KEYS: index, usage, value key; ARGV: key, delta,
/// quota. Replies with the counter as `INCRBY` left it.
const INCREMENT_LUA: &str = r"
local used = usage()
local old = redis.call('GET', KEYS[3])
local counted = redis.pcall('INCRBY', KEYS[3], ARGV[2])
if type(counted) == 'table' and counted.err then
  if string.find(counted.err, 'overflow', 1, true) then return {3} end
  if string.find(counted.err, 'not an integer', 1, true) then return {2} end
  return counted
end
local text = redis.call('GET', KEYS[3])
local after = used + #ARGV[1] + #text
if old then after = after - #ARGV[1] - #old end
if after > used and after > tonumber(ARGV[3]) then
  if old then redis.call('SET', KEYS[3], old) else redis.call('DEL', KEYS[3]) end
  return {0, used, after - used}
end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
save_usage(after)
return {1, text}
";

/// Stores a value if the current one's bytes are the expected ones. KEYS: index, usage,
/// value key; ARGV: key, value, quota, and the expected value unless the key must be
/// absent.
const SWAP_LUA: &str = r"
local old = redis.call('GET', KEYS[3])
if old ~= (ARGV[4] or false) then return {4} end
local used = usage()
local after = used + #ARGV[1] + #ARGV[2]
if old then after = after - #ARGV[1] - #old end
if after > used and after > tonumber(ARGV[3]) then return {0, used, after - used} end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[1], 0, ARGV[1])
save_usage(after)
return {1}
";

/// A script's reply status (its first element): done.
const DONE: i64 = 1;
/// Refused: the namespace would pass its quota; the usage and the growth follow.
const OVER_QUOTA: i64 = 0;
/// Refused: the counter is not a decimal `i64`.
const NOT_A_NUMBER: i64 = 2;
/// Refused: the counter would overflow.
const OVERFLOW: i64 = 3;
/// Not done: the current value is not the expected one.
const MISMATCH: i64 = 4;

/// [`SET_MANY_LUA`], its SHA-1 computed once.
static SET_MANY: LazyLock<Script> = LazyLock::new(|| script(SET_MANY_LUA));
/// [`DELETE_MANY_LUA`], its SHA-1 computed once.
static DELETE_MANY: LazyLock<Script> = LazyLock::new(|| script(DELETE_MANY_LUA));
/// [`INCREMENT_LUA`], its SHA-1 computed once.
static INCREMENT: LazyLock<Script> = LazyLock::new(|| script(INCREMENT_LUA));
/// [`SWAP_LUA`], its SHA-1 computed once.
static SWAP: LazyLock<Script> = LazyLock::new(|| script(SWAP_LUA));

/// A script body with the usage helpers it calls.
fn script(body: &str) -> Script {
    Script::new(&[USAGE_LUA, body].concat())
}

/// A Redis server's key-value store, shared by every clone.
#[derive(Clone)]
pub(super) struct RedisStore {
    connection: ConnectionManager,
    /// `host:port` or the socket's path, for messages.
    address: Arc<str>,
    /// The database number.
    db: i64,
}

impl RedisStore {
    /// A store at `url`, connected on first use: only a malformed URL fails here.
    pub(super) fn connect(url: &str) -> Result<Self, BackendError> {
        let cannot =
            |error: RedisError| BackendError::Open(format!("redis URL {}: {error}", redacted(url)));
        let client = Client::open(url).map_err(cannot)?;
        let info = client.get_connection_info();
        let address = info.addr().to_string().into();
        let db = info.redis_settings().db();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES);
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(cannot)?;
        Ok(Self {
            connection,
            address,
            db,
        })
    }

    /// `redis (host:port)`, with the database when not 0; never the URL's password.
    pub(super) fn describe(&self) -> String {
        match self.db {
            0 => format!("redis ({})", self.address),
            db => format!("redis ({}, db {db})", self.address),
        }
    }

    /// The value under `key`.
    pub(super) async fn get(
        &self,
        ns: &Namespace,
        key: &str,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        let keys = Keys::of(ns);
        self.run(|mut connection| async move {
            redis::cmd("GET")
                .arg(keys.value(key))
                .query_async(&mut connection)
                .await
        })
        .await
    }

    /// Whether `key` holds a value.
    pub(super) async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, BackendError> {
        let keys = Keys::of(ns);
        self.run(|mut connection| async move {
            redis::cmd("EXISTS")
                .arg(keys.value(key))
                .query_async(&mut connection)
                .await
        })
        .await
    }

    /// The values under `keys`, in their order.
    pub(super) async fn get_many(
        &self,
        ns: &Namespace,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names = Keys::of(ns);
        self.run(|mut connection| async move {
            let mut mget = redis::cmd("MGET");
            for key in keys {
                mget.arg(names.value(key));
            }
            mget.query_async(&mut connection).await
        })
        .await
    }

    /// Up to `count` keys in byte order, strictly after `after`.
    pub(super) async fn keys_after(
        &self,
        ns: &Namespace,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<String>, BackendError> {
        let keys = Keys::of(ns);
        let start = match after {
            Some(after) => [b"(", after.as_bytes()].concat(),
            None => b"-".to_vec(),
        };
        self.run(|mut connection| async move {
            redis::cmd("ZRANGEBYLEX")
                .arg(&keys.index)
                .arg(start)
                .arg("+")
                .arg("LIMIT")
                .arg(0)
                .arg(i64::try_from(count).unwrap_or(i64::MAX))
                .query_async(&mut connection)
                .await
        })
        .await
    }

    /// Bytes the namespace holds.
    pub(super) async fn used_bytes(&self, ns: &Namespace) -> Result<u64, BackendError> {
        let keys = Keys::of(ns);
        let used: Option<u64> = self
            .run(|mut connection| async move {
                redis::cmd("GET")
                    .arg(&keys.used)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        Ok(used.unwrap_or(0))
    }

    /// Stores every entry, or none when the namespace would grow past `max_bytes`.
    pub(super) async fn set_many(
        &self,
        ns: &Namespace,
        entries: &[(&str, &[u8])],
        max_bytes: u64,
    ) -> Result<(), BackendError> {
        if entries.is_empty() {
            return Ok(());
        }
        let keys = Keys::of(ns);
        let mut invocation = keys.invocation(&SET_MANY);
        invocation.arg(max_bytes);
        for (key, value) in entries {
            invocation.key(keys.value(key)).arg(*key).arg(*value);
        }
        self.invoke(&invocation, max_bytes).await?;
        Ok(())
    }

    /// Removes every key in `keys`; absent ones are skipped.
    pub(super) async fn delete_many(
        &self,
        ns: &Namespace,
        keys: &[&str],
    ) -> Result<(), BackendError> {
        if keys.is_empty() {
            return Ok(());
        }
        let names = Keys::of(ns);
        let mut invocation = names.invocation(&DELETE_MANY);
        for key in keys {
            invocation.key(names.value(key)).arg(*key);
        }
        self.invoke(&invocation, u64::MAX).await?;
        Ok(())
    }

    /// Adds `delta` to the counter under `key` and returns the new value.
    pub(super) async fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: i64,
        max_bytes: u64,
    ) -> Result<i64, BackendError> {
        let keys = Keys::of(ns);
        let mut invocation = keys.invocation(&INCREMENT);
        invocation
            .key(keys.value(key))
            .arg(key)
            .arg(delta)
            .arg(max_bytes);
        match self.invoke(&invocation, max_bytes).await? {
            Outcome::Done(Some(text)) => std::str::from_utf8(&text)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| self.corrupt("INCRBY left a value that is not a number")),
            _ => Err(self.corrupt("the increment script answered without the counter")),
        }
    }

    /// Stores `value` if the current value is `expected`; whether it did.
    pub(super) async fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        max_bytes: u64,
    ) -> Result<bool, BackendError> {
        let keys = Keys::of(ns);
        let mut invocation = keys.invocation(&SWAP);
        invocation
            .key(keys.value(key))
            .arg(key)
            .arg(value)
            .arg(max_bytes);
        if let Some(expected) = expected {
            invocation.arg(expected);
        }
        Ok(matches!(
            self.invoke(&invocation, max_bytes).await?,
            Outcome::Done(_)
        ))
    }

    /// Runs one of the scripts and reads its status.
    async fn invoke(
        &self,
        invocation: &ScriptInvocation<'_>,
        max_bytes: u64,
    ) -> Result<Outcome, BackendError> {
        let reply: Vec<Value> = self
            .run(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        let mut reply = reply.into_iter();
        match (reply.next(), reply.next(), reply.next()) {
            (Some(Value::Int(DONE)), None, _) => Ok(Outcome::Done(None)),
            (Some(Value::Int(DONE)), Some(Value::BulkString(text)), _) => {
                Ok(Outcome::Done(Some(text)))
            }
            (Some(Value::Int(MISMATCH)), ..) => Ok(Outcome::Mismatch),
            (Some(Value::Int(NOT_A_NUMBER)), ..) => Err(BackendError::NotANumber),
            (Some(Value::Int(OVERFLOW)), ..) => Err(BackendError::Overflow),
            (Some(Value::Int(OVER_QUOTA)), Some(Value::Int(used)), Some(Value::Int(adding))) => {
                match (u64::try_from(used), u64::try_from(adding)) {
                    (Ok(used), Ok(adding)) => Err(BackendError::Quota {
                        used,
                        adding,
                        max: max_bytes,
                    }),
                    _ => Err(self.corrupt("a namespace's usage is negative")),
                }
            }
            _ => Err(self.corrupt("a script answered with an unknown status")),
        }
    }

    /// Runs `op` on a handle to the shared connection, bounded by [`COMMAND_TIMEOUT`].
    async fn run<T, F>(&self, op: impl FnOnce(ConnectionManager) -> F) -> Result<T, BackendError>
    where
        F: Future<Output = RedisResult<T>>,
    {
        match tokio::time::timeout(COMMAND_TIMEOUT, op(self.connection.clone())).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(self.failure(&error)),
            Err(_) => Err(BackendError::Unavailable(format!(
                "redis at {} did not answer within {COMMAND_TIMEOUT:?}",
                self.address
            ))),
        }
    }

    /// A Redis failure as the caller sees it: an answer we cannot read is corrupt data;
    /// anything else (I/O, a refused connection, a loading or busy server) leaves the
    /// store unavailable.
    fn failure(&self, error: &RedisError) -> BackendError {
        let unreadable = matches!(
            error.kind(),
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType
        ) || error.code() == Some("WRONGTYPE");
        if unreadable {
            self.corrupt(error)
        } else {
            BackendError::Unavailable(format!("redis at {}: {error}", self.address))
        }
    }

    /// Unexpected data, naming the server.
    fn corrupt(&self, what: impl std::fmt::Display) -> BackendError {
        BackendError::Corrupt(format!("redis at {}: {what}", self.address))
    }
}

/// What a script that did not fail reported.
enum Outcome {
    /// It did its work; the increment script adds the counter's text.
    Done(Option<Vec<u8>>),
    /// A compare-and-swap found another value.
    Mismatch,
}

/// One namespace's keys (see the module's layout).
struct Keys {
    /// `<prefix>`, before a value's key.
    prefix: String,
    /// `<prefix>keys`: the key index.
    index: String,
    /// `<prefix>used`: the usage counter.
    used: String,
}

impl Keys {
    /// The keys of `ns`.
    fn of(ns: &Namespace) -> Self {
        let (tenant, bucket) = (&ns.tenant, &ns.bucket);
        let prefix = format!(
            "plugrpc:kv:{{{}:{tenant}:{}:{bucket}}}:",
            tenant.len(),
            bucket.len()
        );
        Self {
            index: format!("{prefix}keys"),
            used: format!("{prefix}used"),
            prefix,
        }
    }

    /// Where `key`'s value lives.
    fn value(&self, key: &str) -> String {
        format!("{}v:{key}", self.prefix)
    }

    /// An invocation of `script` with the index and the usage as its first two keys.
    fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut invocation = script.prepare_invoke();
        invocation.key(&self.index).key(&self.used);
        invocation
    }
}

/// `url` fit for a message: no user or password, no query (a socket URL's `pass=`).
fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let scheme = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    let (credentials, location) = match rest.rsplit_once('@') {
        Some((_, location)) => ("***@", location),
        None => ("", rest),
    };
    let location = location.split(['?', '#']).next().unwrap_or_default();
    format!("{scheme}{credentials}{location}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_keep_the_address_and_drop_credentials() {
        assert_eq!(
            redacted("redis://:s3cret@cache:6380/2"),
            "redis://***@cache:6380/2"
        );
        assert_eq!(
            redacted("redis://user:p@ss#w?rd@cache/0"),
            "redis://***@cache/0"
        );
        assert_eq!(
            redacted("unix:///run/redis.sock?db=1&pass=s3cret"),
            "unix:///run/redis.sock"
        );
        assert_eq!(redacted("not a url"), "not a url");
    }

    #[test]
    fn namespace_keys_carry_lengths_so_no_prefix_starts_another() {
        let a = Keys::of(&Namespace {
            tenant: "a:1:b".to_owned(),
            bucket: "c".to_owned(),
        });
        let b = Keys::of(&Namespace {
            tenant: "a".to_owned(),
            bucket: "b:1:c".to_owned(),
        });
        assert_eq!(a.prefix, "plugrpc:kv:{5:a:1:b:1:c}:");
        assert_eq!(b.prefix, "plugrpc:kv:{1:a:5:b:1:c}:");
        assert!(!a.prefix.starts_with(&b.prefix) && !b.prefix.starts_with(&a.prefix));
    }
}
