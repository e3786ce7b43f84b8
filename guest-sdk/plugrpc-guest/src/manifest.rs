//! The manifest the host reads at load: who the plugin is and every service it serves,
//! with one descriptor set that covers them all.

use std::collections::HashSet;

use prost::Message;

use crate::bindings::plugrpc::plugin::types::Manifest;

/// The manifest of a plugin named `name` at `version` serving `services` (each a name
/// and the encoded FileDescriptorSet it was generated from); no handler is built for it.
pub fn describe(
    name: &str,
    version: &str,
    stateless: bool,
    services: &[(&str, &[u8])],
) -> Manifest {
    Manifest {
        stateless,
        name: name.to_owned(),
        version: version.to_owned(),
        services: services
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect(),
        file_descriptor_set: union(services.iter().map(|(_, set)| *set)),
    }
}

/// A `FileDescriptorSet` whose files stay encoded: decoding them into prost's types
/// would drop their options' extensions (`google.api.http`), which the host reads.
#[derive(Clone, PartialEq, Message)]
struct EncodedFiles {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// The one field of a `FileDescriptorProto` the union needs.
#[derive(Clone, PartialEq, Message)]
struct FileName {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
}

/// One encoded FileDescriptorSet holding each file of `sets` once (by name), in the
/// order first met, so each file still follows its imports; each file's bytes as built.
fn union<'a>(sets: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut union = EncodedFiles::default();
    let mut names = HashSet::new();
    for set in sets {
        let set = EncodedFiles::decode(set)
            .expect("plugrpc_build embeds an encoded FileDescriptorSet in every server");
        union.file.extend(set.file.into_iter().filter(|file| {
            let name = FileName::decode(file.as_slice()).map(|f| f.name).ok();
            names.insert(name.flatten())
        }));
    }
    union.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use prost_types::{FileDescriptorProto, FileDescriptorSet};

    use super::*;

    fn set(names: &[&str]) -> Vec<u8> {
        FileDescriptorSet {
            file: names
                .iter()
                .map(|n| FileDescriptorProto {
                    name: Some((*n).to_owned()),
                    ..FileDescriptorProto::default()
                })
                .collect(),
        }
        .encode_to_vec()
    }

    #[test]
    fn union_keeps_each_file_once_in_first_met_order() {
        let (a, b) = (
            set(&["common.proto", "a.proto"]),
            set(&["common.proto", "b.proto"]),
        );
        let union = FileDescriptorSet::decode(&union([&a[..], &b[..]].into_iter())[..]).unwrap();
        let names: Vec<_> = union.file.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["common.proto", "a.proto", "b.proto"]);
    }

    #[test]
    fn union_keeps_each_files_bytes_as_built() {
        // A file with a field prost's types do not know (an option extension, say).
        let mut file = FileDescriptorProto {
            name: Some("annotated.proto".to_owned()),
            ..FileDescriptorProto::default()
        }
        .encode_to_vec();
        file.extend_from_slice(&[0x98, 0x06, 0x07]); // field 99, varint 7
        let set = EncodedFiles {
            file: vec![file.clone()],
        }
        .encode_to_vec();
        let union = EncodedFiles::decode(&union([&set[..]].into_iter())[..]).unwrap();
        assert_eq!(union.file, [file]);
    }
}
