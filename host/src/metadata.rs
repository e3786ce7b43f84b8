//! gRPC metadata between tonic's maps and the guest's entry lists: binary `-bin` values
//! cross as raw bytes, framing headers never reach the guest.

use tonic::metadata::{
    AsciiMetadataKey, AsciiMetadataValue, BinaryMetadataKey, BinaryMetadataValue, KeyAndValueRef,
    MetadataMap,
};

use plugrpc_runtime::MetadataEntry;

/// Headers that belong to HTTP/2 and gRPC framing, not to the application.
const FRAMING_HEADERS: &[&str] = &[
    "te",
    "content-type",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
];

/// An entry the guest sent that cannot be sent as gRPC metadata.
#[derive(Clone, Debug, thiserror::Error)]
#[error("metadata entry {key:?} is invalid: {reason}")]
pub(crate) struct InvalidMetadata {
    key: String,
    reason: &'static str,
}

/// Request metadata as the guest sees it.
pub(crate) fn to_guest(map: &MetadataMap) -> Vec<MetadataEntry> {
    map.iter()
        .filter_map(|entry| match entry {
            KeyAndValueRef::Ascii(key, value) => {
                Some((key.as_str(), value.as_encoded_bytes().to_vec()))
            }
            // A value that is not valid base64 was never real binary metadata: drop it.
            KeyAndValueRef::Binary(key, value) => {
                value.to_bytes().ok().map(|v| (key.as_str(), v.to_vec()))
            }
        })
        .filter(|(key, _)| !FRAMING_HEADERS.contains(key))
        .map(|(key, value)| MetadataEntry {
            key: key.to_owned(),
            value,
        })
        .collect()
}

/// Guest headers or trailers as a tonic map; tonic strips reserved keys when sending.
pub(crate) fn from_guest(entries: Vec<MetadataEntry>) -> Result<MetadataMap, InvalidMetadata> {
    let mut map = MetadataMap::with_capacity(entries.len());
    for MetadataEntry { key, value } in entries {
        let invalid = |reason| InvalidMetadata {
            key: key.clone(),
            reason,
        };
        if key.ends_with("-bin") {
            let name = BinaryMetadataKey::from_bytes(key.as_bytes())
                .map_err(|_| invalid("not a valid header name"))?;
            map.append_bin(name, BinaryMetadataValue::from_bytes(&value));
        } else {
            let name = AsciiMetadataKey::from_bytes(key.as_bytes())
                .map_err(|_| invalid("not a valid header name"))?;
            let value = AsciiMetadataValue::try_from(value.as_slice())
                .map_err(|_| invalid("value is not printable ASCII (use a -bin key for bytes)"))?;
            map.append(name, value);
        }
    }
    Ok(map)
}

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
    fn binary_values_cross_as_raw_bytes_both_ways() {
        let sent = vec![entry("trace-bin", &[0, 159, 255]), entry("x-id", b"42")];
        let map = from_guest(sent.clone()).unwrap();
        assert_eq!(
            map.get_bin("trace-bin").unwrap().as_encoded_bytes(),
            b"AJ//"
        );
        let mut back = to_guest(&map);
        back.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(back, sent);
    }

    #[test]
    fn framing_headers_do_not_reach_the_guest() {
        let mut map = MetadataMap::new();
        map.insert("grpc-timeout", "5S".parse().unwrap());
        map.insert("te", "trailers".parse().unwrap());
        map.insert("x-user", "ada".parse().unwrap());
        assert_eq!(to_guest(&map), vec![entry("x-user", b"ada")]);
    }

    #[test]
    fn invalid_guest_entries_are_named() {
        let error = from_guest(vec![entry("bad key", b"v")]).unwrap_err();
        assert!(error.to_string().contains("\"bad key\""), "{error}");
        let error = from_guest(vec![entry("x-text", b"line\nbreak")]).unwrap_err();
        assert!(error.to_string().contains("-bin"), "{error}");
    }
}
