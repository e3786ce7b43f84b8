//! Test-only plugin: the key-value store and config values of a plugin, one RPC each,
//! so end-to-end tests see them as a client does. Stateless: nothing is kept in the
//! instance, only in the store.

plugrpc_guest::include_proto!("keeper.v1");

use keeper_server::{Keeper, KeeperServer};
use plugrpc_guest::kv::Bucket;
use plugrpc_guest::{Config, Context, FromConfig, Status};

/// The handlers, built with the `greeting` config value the instance started with.
struct Keep {
    greeting: String,
}

impl FromConfig for Keep {
    fn from_config(config: &Config) -> Result<Self, Status> {
        if config.get("refuse_to_start").is_some() {
            return Err(Status::failed_precondition("refuse_to_start is set"));
        }
        Ok(Self {
            greeting: config.get("greeting").unwrap_or("hello").to_owned(),
        })
    }
}

/// The bucket a request names: "" is the plugin's own.
fn bucket(name: &str) -> Result<Bucket, Status> {
    if name.is_empty() {
        Bucket::open_default()
    } else {
        Bucket::open(name)
    }
}

impl Keeper for Keep {
    fn put(&self, _cx: &Context, request: Entry) -> Result<Done, Status> {
        bucket(&request.bucket)?.set(&request.key, &request.value)?;
        Ok(Done {})
    }

    fn get(&self, _cx: &Context, request: Key) -> Result<Found, Status> {
        let value = bucket(&request.bucket)?.get(&request.key)?;
        Ok(Found {
            found: value.is_some(),
            value: value.unwrap_or_default(),
        })
    }

    fn delete(&self, _cx: &Context, request: Key) -> Result<Done, Status> {
        bucket(&request.bucket)?.delete(&request.key)?;
        Ok(Done {})
    }

    fn increment(&self, _cx: &Context, request: Step) -> Result<Count, Status> {
        let value = bucket(&request.bucket)?.increment(&request.key, request.delta)?;
        Ok(Count { value })
    }

    fn insert(&self, _cx: &Context, request: Entry) -> Result<Inserted, Status> {
        let inserted = bucket(&request.bucket)?.insert_new(&request.key, &request.value)?;
        Ok(Inserted { inserted })
    }

    fn keys(&self, _cx: &Context, request: Key) -> Result<KeyList, Status> {
        let bucket = bucket(&request.bucket)?;
        let (mut keys, mut pages, mut cursor) = (Vec::new(), 0, None);
        loop {
            let (page, next) = bucket.keys(cursor.as_deref())?;
            keys.extend(page);
            pages += 1;
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(KeyList { keys, pages })
    }

    fn put_many(&self, _cx: &Context, request: Entries) -> Result<Entries, Status> {
        let bucket = bucket(&request.bucket)?;
        let entries: Vec<(String, Vec<u8>)> = request
            .entries
            .into_iter()
            .map(|entry| (entry.key, entry.value))
            .collect();
        bucket.set_many(&entries)?;
        let keys: Vec<String> = entries.into_iter().map(|(key, _)| key).collect();
        let values = bucket.get_many(&keys)?;
        Ok(Entries {
            bucket: request.bucket,
            entries: keys
                .into_iter()
                .zip(values)
                .filter_map(|(key, value)| {
                    value.map(|value| Entry {
                        bucket: String::new(),
                        key,
                        value,
                    })
                })
                .collect(),
        })
    }

    fn setting(&self, _cx: &Context, request: Key) -> Result<SettingValue, Status> {
        let now = Config::load()?.get(&request.key).map(str::to_owned);
        Ok(SettingValue {
            built_with: self.greeting.clone(),
            set: now.is_some(),
            now: now.unwrap_or_default(),
        })
    }
}

plugrpc_guest::export!(stateless: KeeperServer<Keep>);
