//! Key-value storage (`wasi:keyvalue`), for a plugin whose host config grants it
//! (`[plugins.<name>.kv]`): [`Bucket::open_default`] is the plugin's own bucket,
//! [`Bucket::open`] one of its tenant's shared buckets. Every error is a [`Status`] with
//! the code the host chose (RESOURCE_EXHAUSTED naming the limit, UNAVAILABLE when the
//! store is down), so a handler can return it with `?`.

use prost::Message;

use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use crate::status::{Code, Status};

/// An open bucket.
#[derive(Debug)]
pub struct Bucket {
    bucket: store::Bucket,
}

impl Bucket {
    /// The plugin's own bucket.
    pub fn open_default() -> Result<Self, Status> {
        Self::open("default")
    }

    /// The bucket `name`: `default` is the plugin's own; another name is a shared bucket
    /// of its tenant that its config names.
    pub fn open(name: &str) -> Result<Self, Status> {
        let bucket = store::open(name).map_err(status)?;
        Ok(Self { bucket })
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Status> {
        self.bucket.get(key).map_err(status)
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), Status> {
        self.bucket.set(key, value).map_err(status)
    }

    /// Removes `key` (nothing happens if it is not set).
    pub fn delete(&self, key: &str) -> Result<(), Status> {
        self.bucket.delete(key).map_err(status)
    }

    /// Whether `key` is set.
    pub fn exists(&self, key: &str) -> Result<bool, Status> {
        self.bucket.exists(key).map_err(status)
    }

    /// One page of keys in byte order, after `cursor` (`None`: from the first); the next
    /// page's cursor, `None` at the end.
    pub fn keys(&self, cursor: Option<&str>) -> Result<(Vec<String>, Option<String>), Status> {
        let page = self
            .bucket
            .list_keys(cursor.map(str::to_owned).as_deref())
            .map_err(status)?;
        Ok((page.keys, page.cursor))
    }

    /// Adds `delta` to the number at `key` (0 when unset) and returns the sum, atomically.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Status> {
        atomics::increment(&self.bucket, key, delta).map_err(status)
    }

    /// Sets `key` to `value` only when it is not set; whether it was set now.
    pub fn insert_new(&self, key: &str, value: &[u8]) -> Result<bool, Status> {
        let cas = atomics::Cas::new(&self.bucket, key).map_err(status)?;
        if cas.current().map_err(status)?.is_some() {
            return Ok(false);
        }
        match atomics::swap(cas, value) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(error)) => Err(status(error)),
        }
    }

    /// Updates `key` atomically: `update` gets the current value and returns the new one
    /// (`None` leaves the key as it is); retried while other writers get there first, at
    /// most `attempts` times (ABORTED after).
    pub fn update(
        &self,
        key: &str,
        attempts: u32,
        mut update: impl FnMut(Option<&[u8]>) -> Result<Option<Vec<u8>>, Status>,
    ) -> Result<(), Status> {
        let mut cas = atomics::Cas::new(&self.bucket, key).map_err(status)?;
        for _ in 0..attempts.max(1) {
            let current = cas.current().map_err(status)?;
            let Some(value) = update(current.as_deref())? else {
                return Ok(());
            };
            match atomics::swap(cas, &value) {
                Ok(()) => return Ok(()),
                Err(atomics::CasError::CasFailed(again)) => cas = again,
                Err(atomics::CasError::StoreError(error)) => return Err(status(error)),
            }
        }
        Err(Status::aborted(format!(
            "key {key:?} kept changing under {attempts} attempts to update it"
        )))
    }

    /// The values of `keys`, in their order (`None` for one not set).
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Status> {
        let found = batch::get_many(&self.bucket, keys).map_err(status)?;
        Ok(found
            .into_iter()
            .map(|entry| entry.map(|(_, value)| value))
            .collect())
    }

    /// Sets every key to its value, all or none.
    pub fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), Status> {
        batch::set_many(&self.bucket, entries).map_err(status)
    }

    /// Removes every key.
    pub fn delete_many(&self, keys: &[String]) -> Result<(), Status> {
        batch::delete_many(&self.bucket, keys).map_err(status)
    }

    /// The message stored at `key`, if set; DATA_LOSS when it does not decode as `M`.
    pub fn get_message<M: Message + Default>(&self, key: &str) -> Result<Option<M>, Status> {
        self.get(key)?
            .map(|bytes| {
                M::decode(bytes.as_slice()).map_err(|error| {
                    Status::new(
                        Code::DataLoss,
                        format!("the value of {key:?} does not decode: {error}"),
                    )
                })
            })
            .transpose()
    }

    /// Stores `message` at `key`.
    pub fn set_message<M: Message>(&self, key: &str, message: &M) -> Result<(), Status> {
        self.set(key, &message.encode_to_vec())
    }
}

/// The status a store error stands for: the host writes `other("<code>: <message>")`,
/// the code a gRPC status name in kebab case.
fn status(error: store::Error) -> Status {
    match error {
        store::Error::NoSuchStore => Status::not_found("no such key-value bucket"),
        store::Error::AccessDenied => Status::permission_denied(
            "this plugin is not granted a key-value store: its host config needs [plugins.<name>.kv]",
        ),
        store::Error::Other(text) => {
            let (code, message) = text
                .split_once(": ")
                .and_then(|(name, message)| Some((code_named(name)?, message)))
                .unwrap_or((Code::Internal, text.as_str()));
            Status::new(code, message.to_owned())
        }
    }
}

/// The code a kebab-case status name names.
fn code_named(name: &str) -> Option<Code> {
    (0..17)
        .filter_map(Code::from_i32)
        .find(|code| kebab(*code) == name)
}

/// A code's name in kebab case, as the host writes it.
fn kebab(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_refusals_become_their_codes() {
        let exhausted = status(store::Error::Other(
            "resource-exhausted: kv max_value_size: a value of 2 MiB is over the 1 MiB limit"
                .into(),
        ));
        assert_eq!(exhausted.code(), Code::ResourceExhausted);
        assert!(exhausted.message().starts_with("kv max_value_size"));
        assert_eq!(
            status(store::Error::Other("unavailable: down".into())).code(),
            Code::Unavailable
        );
        assert_eq!(
            status(store::Error::Other("no code here".into())).code(),
            Code::Internal
        );
        assert_eq!(kebab(Code::DeadlineExceeded), "deadline-exceeded");
    }
}
