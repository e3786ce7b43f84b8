//! Metadata a guest sends must be what every gRPC transport can carry: keys of letters
//! (lowercased when sent), digits, `-`, `_` and `.`; values of keys not ending in `-bin`
//! printable ASCII.
//! Checked here, before anything is sent, so a plugin's bad entry fails its own call.

use crate::bindings::MetadataEntry;

/// An entry the guest sent that cannot be sent as gRPC metadata.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("metadata entry {key:?} is invalid: {reason}")]
pub struct InvalidMetadata {
    key: String,
    reason: &'static str,
}

/// Whether every entry can be sent as gRPC metadata.
pub(crate) fn validate(entries: &[MetadataEntry]) -> Result<(), InvalidMetadata> {
    for MetadataEntry { key, value } in entries {
        let invalid = |reason| InvalidMetadata {
            key: key.clone(),
            reason,
        };
        let key_ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.'));
        if !key_ok {
            return Err(invalid("not a valid header name"));
        }
        if !key.ends_with("-bin") && !value.iter().all(|b| (0x20..=0x7e).contains(b)) {
            return Err(invalid(
                "value is not printable ASCII (use a -bin key for bytes)",
            ));
        }
    }
    Ok(())
}

/// Entries compare by key and value (bindgen cannot derive it for the contract's types
/// alone: a derive would reach the resources some of them hold).
impl PartialEq for MetadataEntry {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.value == other.value
    }
}

impl Eq for MetadataEntry {}

/// Statuses compare by code, message and details.
impl PartialEq for crate::bindings::Status {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code && self.message == other.message && self.details == other.details
    }
}

impl Eq for crate::bindings::Status {}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &[u8]) -> MetadataEntry {
        MetadataEntry {
            key: key.to_owned(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn invalid_guest_entries_are_named() {
        assert!(validate(&[entry("x-id", b"42"), entry("trace-bin", &[0, 255])]).is_ok());
        let error = validate(&[entry("bad key", b"v")]).unwrap_err();
        assert!(error.to_string().contains("\"bad key\""), "{error}");
        let error = validate(&[entry("x-text", b"line\nbreak")]).unwrap_err();
        assert!(error.to_string().contains("-bin"), "{error}");
        assert!(validate(&[entry("", b"v")]).is_err());
    }
}
