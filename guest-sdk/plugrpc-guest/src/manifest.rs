//! The manifest the host reads at load: who the plugin is and every service it serves,
//! with one descriptor set that covers them all.

use std::collections::HashSet;

use prost::Message;
use prost_types::FileDescriptorSet;

use crate::bindings::plugrpc::plugin::types::Manifest;
use crate::export::Plugin;

/// The manifest of `plugin`, named `name` at `version`.
pub fn describe(name: &str, version: &str, stateless: bool, plugin: &Plugin) -> Manifest {
    Manifest {
        stateless,
        name: name.to_owned(),
        version: version.to_owned(),
        services: plugin.iter().map(|s| s.name().to_owned()).collect(),
        file_descriptor_set: union(plugin.iter().map(|s| s.file_descriptor_set())),
    }
}

/// One encoded FileDescriptorSet holding each file of `sets` once (by name), in the
/// order first met, so each file still follows its imports.
fn union<'a>(sets: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut union = FileDescriptorSet::default();
    let mut names = HashSet::new();
    for set in sets {
        let set = FileDescriptorSet::decode(set)
            .expect("plugrpc_build embeds an encoded FileDescriptorSet in every server");
        union.file.extend(
            set.file
                .into_iter()
                .filter(|f| names.insert(f.name.clone())),
        );
    }
    union.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use prost_types::FileDescriptorProto;

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
}
