//! The capability tables of a plugin: `[plugins.<p>.config]` (its `wasi:config/store`
//! values, each a string, `{ env = "X" }` or `{ file = "path" }` so secrets stay out of
//! the config file), `[plugins.<p>.kv]` (its key-value grant and limits), and the
//! host's `[kv]` backend. Values are never printed: not in errors, not in `Debug`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use bytesize::ByteSize;
use plugrpc_runtime::{ConfigValues, DEFAULT_KV_LIMITS, KvLimits};
use serde::Deserialize;

use super::{Invalid, invalid};

/// A config value file larger than this is refused: values are settings and secrets,
/// not data (a plugin reads every value into its memory).
const MAX_VALUE_FILE: u64 = 64 << 10;

/// One `[plugins.<p>.config]` value, as written.
#[derive(Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a value is a string, { env = \"NAME\" } or { file = \"path\" }"
)]
pub enum ConfigValue {
    /// The value itself.
    Text(String),
    /// The value of an environment variable of the host.
    Env {
        /// The variable's name.
        env: String,
    },
    /// The content of a file of the host (UTF-8, one trailing newline dropped).
    File {
        /// The file's path, relative to the host's working directory.
        file: PathBuf,
    },
}

impl fmt::Debug for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(_) => f.write_str("<value>"),
            Self::Env { env } => write!(f, "{{ env = {env:?} }}"),
            Self::File { file } => write!(f, "{{ file = {:?} }}", file.display()),
        }
    }
}

impl ConfigValue {
    /// The value, read now; an error names `key` and the source, never the value.
    fn resolve(&self, key: &str) -> Result<String, Invalid> {
        match self {
            Self::Text(text) => Ok(text.clone()),
            Self::Env { env } => std::env::var(env).map_err(|error| {
                let why = match error {
                    std::env::VarError::NotPresent => "is not set",
                    std::env::VarError::NotUnicode(_) => "is not UTF-8",
                };
                invalid(key, format!("environment variable {env} {why}"))
            }),
            Self::File { file } => read_value_file(file)
                .map_err(|why| invalid(key, format!("{}: {why}", file.display()))),
        }
    }
}

/// A value file's text, without one trailing newline (as `echo secret > file` leaves).
fn read_value_file(file: &Path) -> Result<String, String> {
    let size = std::fs::metadata(file).map_err(|e| e.to_string())?.len();
    if size > MAX_VALUE_FILE {
        return Err(format!(
            "{} is larger than the {} a value may be",
            ByteSize::b(size).display().iec(),
            ByteSize::b(MAX_VALUE_FILE).display().iec()
        ));
    }
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
}

/// Every value of a `[...config]` table, read now; `table` is its dotted key.
pub(crate) fn resolve_values(
    values: &BTreeMap<String, ConfigValue>,
    table: &str,
) -> Result<BTreeMap<String, String>, Invalid> {
    values
        .iter()
        .map(|(name, value)| Ok((name.clone(), value.resolve(&format!("{table}.{name}"))?)))
        .collect()
}

/// Resolved values, as the guest reads them.
pub(crate) fn to_guest(values: BTreeMap<String, String>) -> ConfigValues {
    values.into_iter().collect()
}

/// A `[plugins.<p>.kv]` table: grants the plugin a key-value bucket of its own, with
/// these limits, and the tenant's shared buckets it names.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvTable {
    /// Bytes (keys plus values) one bucket may hold.
    max_bytes: Option<ByteSize>,
    /// Bytes of one key.
    max_key_size: Option<ByteSize>,
    /// Bytes of one value.
    max_value_size: Option<ByteSize>,
    /// Key-value operations one call may make (a batch counts its keys).
    max_ops_per_call: Option<u32>,
    /// Buckets of the tenant this plugin may open besides its own; the tenant's plugins
    /// that name the same bucket share it.
    #[serde(default)]
    pub shared: Vec<String>,
}

/// A shared bucket's name: what a guest passes to `open`.
fn is_bucket_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && name != "default"
}

impl KvTable {
    /// The limits it sets, the rest from the defaults.
    pub(crate) fn limits(&self) -> KvLimits {
        let bytes = |size: Option<ByteSize>, default: usize| {
            size.map_or(default, |size| {
                usize::try_from(size.as_u64()).unwrap_or(usize::MAX)
            })
        };
        KvLimits {
            max_bytes: self
                .max_bytes
                .map_or(DEFAULT_KV_LIMITS.max_bytes, |size| size.as_u64()),
            max_key_size: bytes(self.max_key_size, DEFAULT_KV_LIMITS.max_key_size),
            max_value_size: bytes(self.max_value_size, DEFAULT_KV_LIMITS.max_value_size),
            max_ops_per_call: self
                .max_ops_per_call
                .unwrap_or(DEFAULT_KV_LIMITS.max_ops_per_call),
        }
    }

    /// Checks the table; `table` is its dotted key.
    pub(crate) fn validate(&self, table: &str) -> Result<(), Invalid> {
        let limits = self.limits();
        let bad = |key: &str, why: &str| Err(invalid(&format!("{table}.{key}"), why.into()));
        if limits.max_bytes == 0 {
            return bad("max_bytes", "must be more than zero");
        }
        if !(1..=MAX_KEY_SIZE).contains(&limits.max_key_size) {
            return bad("max_key_size", "is between 1 B and 64 KiB");
        }
        if !(1..=MAX_VALUE_SIZE).contains(&limits.max_value_size) {
            return bad("max_value_size", "is between 1 B and 64 MiB");
        }
        if limits.max_ops_per_call == 0 {
            return bad("max_ops_per_call", "must be at least 1");
        }
        if let Some(name) = self.shared.iter().find(|name| !is_bucket_name(name)) {
            return Err(invalid(
                &format!("{table}.shared"),
                format!(
                    "{name:?} is not a bucket name: 1 to 64 letters, digits, '-', '_' or '.', and not \"default\""
                ),
            ));
        }
        Ok(())
    }
}

/// The longest key a plugin may be allowed: Redis and redb keep keys in memory pages.
const MAX_KEY_SIZE: usize = 64 << 10;

/// The largest value a plugin may be allowed: one value is read whole into a call.
const MAX_VALUE_SIZE: usize = 64 << 20;

/// `[kv]`: where every plugin's buckets live. Its `Debug` leaves the URL out: it may
/// carry a password.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KvConfig {
    /// `embedded` (a redb file under the host's data folder) or `redis`.
    pub backend: KvBackendKind,
    /// The Redis URL (`redis://host:port/db`), for `backend = "redis"`.
    pub url: Option<String>,
}

impl fmt::Debug for KvConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvConfig")
            .field("backend", &self.backend)
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// The key-value backends a host can use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvBackendKind {
    /// A redb file under the data folder: no service to run, one host's data.
    #[default]
    Embedded,
    /// A Redis server: data shared by the hosts that use it.
    Redis,
}

impl KvConfig {
    /// Checks that `redis` has a URL and `embedded` none.
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        match (self.backend, &self.url) {
            (KvBackendKind::Redis, None) => Err(invalid(
                "kv.url",
                "backend = \"redis\" needs url = \"redis://host:port\"".into(),
            )),
            (KvBackendKind::Redis, Some(url))
                if !url.starts_with("redis://")
                    && !url.starts_with("rediss://")
                    && !url.starts_with("unix://")
                    && !url.starts_with("redis+unix://") =>
            {
                Err(invalid(
                    "kv.url",
                    "is a redis://, rediss:// or unix:// URL".into(),
                ))
            }
            (KvBackendKind::Embedded, Some(_)) => Err(invalid(
                "kv.url",
                "is for backend = \"redis\"; the embedded store lives under host.data_dir".into(),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_value() {
        let value = ConfigValue::Text("hunter2".into());
        assert!(!format!("{value:?}").contains("hunter2"));
        let kv = KvConfig {
            backend: KvBackendKind::Redis,
            url: Some("redis://:hunter2@db:6379".into()),
        };
        assert!(!format!("{kv:?}").contains("hunter2"));
        let env = ConfigValue::Env {
            env: "TOKEN".into(),
        };
        assert_eq!(format!("{env:?}"), "{ env = \"TOKEN\" }");
    }

    #[test]
    fn values_come_from_text_environment_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\n").unwrap();
        // A variable no environment sets.
        let name = "PLUGRPC_TEST_CONFIG_VALUE_FROM_ENV";
        let values = BTreeMap::from([
            ("plain".to_owned(), ConfigValue::Text("hello".into())),
            ("path".to_owned(), ConfigValue::Env { env: "PATH".into() }),
            ("secret".to_owned(), ConfigValue::File { file }),
        ]);
        let resolved = resolve_values(&values, "plugins.p.config").unwrap();
        assert_eq!(resolved["plain"], "hello");
        assert_eq!(resolved["secret"], "s3cret");
        assert_eq!(Some(&resolved["path"]), std::env::var("PATH").ok().as_ref());

        let missing = BTreeMap::from([("token".to_owned(), ConfigValue::Env { env: name.into() })]);
        let error = resolve_values(&missing, "plugins.p.config").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("plugins.p.config.token: environment variable {name} is not set")
        );
        let gone = BTreeMap::from([(
            "cert".to_owned(),
            ConfigValue::File {
                file: dir.path().join("nope"),
            },
        )]);
        let error = resolve_values(&gone, "plugins.p.config").unwrap_err();
        assert!(
            error.to_string().starts_with("plugins.p.config.cert: "),
            "{error}"
        );
    }
}
