//! gRPC metadata: ordered, repeatable keys; `-bin` keys hold raw bytes.

use crate::bindings::plugrpc::plugin::types::MetadataEntry;

/// Request metadata, response headers or trailers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Vec<u8>)>,
}

impl Metadata {
    /// The first value of an ASCII `key`, if present and valid UTF-8.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.get_bin(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `key` as bytes (for `-bin` keys, already base64-decoded).
    pub fn get_bin(&self, key: &str) -> Option<&[u8]> {
        self.get_all(key).next()
    }

    /// Every value of `key`, in the order received.
    pub fn get_all<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let key = key.to_ascii_lowercase();
        self.entries
            .iter()
            .filter(move |(k, _)| *k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// Appends a value; keys are lowercased, as HTTP/2 requires.
    pub fn insert(&mut self, key: &str, value: impl Into<Vec<u8>>) {
        self.entries.push((key.to_ascii_lowercase(), value.into()));
    }

    /// Every entry, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn from_entries(entries: Vec<MetadataEntry>) -> Self {
        Self {
            entries: entries.into_iter().map(|e| (e.key, e.value)).collect(),
        }
    }

    /// The entries as the contract spells them, keeping these.
    pub(crate) fn to_entries(&self) -> Vec<MetadataEntry> {
        self.iter()
            .map(|(key, value)| MetadataEntry {
                key: key.to_owned(),
                value: value.to_vec(),
            })
            .collect()
    }

    /// The entries as the contract spells them.
    pub(crate) fn into_entries(self) -> Vec<MetadataEntry> {
        self.entries
            .into_iter()
            .map(|(key, value)| MetadataEntry { key, value })
            .collect()
    }
}
