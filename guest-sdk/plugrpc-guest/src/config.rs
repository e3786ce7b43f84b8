//! The plugin's config values, as the host's config gives them (`[plugins.<name>.config]`,
//! read through `wasi:config/store`), and handlers built from them.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::bindings::wasi::config::store;
use crate::status::Status;

/// A snapshot of the plugin's config values, read when the instance built its handlers.
/// The host starts new instances when the values change. Its `Debug` shows the keys only:
/// values may be secrets.
#[derive(Clone, Default)]
pub struct Config {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Config {
    /// Every value the host gives this plugin, read now.
    pub fn load() -> Result<Self, Status> {
        let values = store::get_all().map_err(|error| {
            Status::internal(format!("reading the plugin's config: {}", describe(&error)))
        })?;
        Ok(Self {
            values: values.into_iter().collect(),
        })
    }

    /// A config made in code, for tests of handlers built from config.
    pub fn from_values<K: Into<String>, V: Into<String>>(
        values: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            values: values
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `key`, if the config sets it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value of `key`, or FAILED_PRECONDITION naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, Status> {
        self.get(key).ok_or_else(|| {
            Status::failed_precondition(format!(
                "the plugin's config has no value {key:?}: set it in the host's [plugins.<name>.config]"
            ))
        })
    }

    /// The value of `key` parsed as a `T`, if set; FAILED_PRECONDITION naming the key when
    /// it does not parse.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>, Status>
    where
        T::Err: std::fmt::Display,
    {
        self.get(key)
            .map(|value| {
                value.parse().map_err(|error| {
                    Status::failed_precondition(format!(
                        "the plugin's config value {key:?}: {error}"
                    ))
                })
            })
            .transpose()
    }

    /// Every key the config sets, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

/// How a handler is made from the plugin's config; any `Default` handler is made by
/// `default()`, ignoring it. Implement it for a handler that needs settings or secrets:
/// a failure answers every call of the instance with that status.
pub trait FromConfig: Sized {
    /// The handler for `config`.
    fn from_config(config: &Config) -> Result<Self, Status>;
}

impl<T: Default> FromConfig for T {
    fn from_config(_: &Config) -> Result<Self, Status> {
        Ok(T::default())
    }
}

/// The host's error, in words.
fn describe(error: &store::Error) -> &str {
    match error {
        store::Error::Upstream(message) | store::Error::Io(message) => message,
    }
}
