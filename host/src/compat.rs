//! Whether a new version of a plugin breaks the callers of what the old version served:
//! a service or method gone, a method's request or response type or streaming kind
//! changed, or a field of those messages renumbered or retyped.

use std::collections::HashSet;

use prost_reflect::{
    Cardinality, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor, ServiceDescriptor,
};

use plugrpc_runtime::MethodKind;

/// Every change from `old` to `new` that breaks a caller, one line each; empty if none.
pub(crate) fn breaking_changes(
    old: &[ServiceDescriptor],
    new: &[ServiceDescriptor],
) -> Vec<String> {
    let mut changes = Vec::new();
    let mut compared = HashSet::new();
    for old_service in old {
        let Some(new_service) = new
            .iter()
            .find(|s| s.full_name() == old_service.full_name())
        else {
            changes.push(format!("service {} was removed", old_service.full_name()));
            continue;
        };
        for old_method in old_service.methods() {
            let path = format!("{}/{}", old_service.full_name(), old_method.name());
            let Some(new_method) = new_service
                .methods()
                .find(|m| m.name() == old_method.name())
            else {
                changes.push(format!("method {path} was removed"));
                continue;
            };
            if shape(&old_method) != shape(&new_method) {
                changes.push(format!(
                    "method {path} changed from {} to {}",
                    shape(&old_method),
                    shape(&new_method)
                ));
            }
            for (role, old_type, new_type) in [
                ("request", old_method.input(), new_method.input()),
                ("response", old_method.output(), new_method.output()),
            ] {
                if old_type.full_name() != new_type.full_name() {
                    changes.push(format!(
                        "method {path} {role} type changed from {} to {}",
                        old_type.full_name(),
                        new_type.full_name()
                    ));
                } else {
                    compare_fields(&old_type, &new_type, &mut compared, &mut changes);
                }
            }
        }
    }
    changes
}

fn shape(method: &MethodDescriptor) -> &'static str {
    MethodKind::of(method).name()
}

/// Fields kept by number must keep their type; fields kept by name must keep their number.
/// Nested message types are compared once each.
fn compare_fields(
    old: &MessageDescriptor,
    new: &MessageDescriptor,
    compared: &mut HashSet<String>,
    changes: &mut Vec<String>,
) {
    if !compared.insert(old.full_name().to_owned()) {
        return;
    }
    for old_field in old.fields() {
        let field = format!("{}.{}", old.full_name(), old_field.name());
        if let Some(new_field) = new.get_field(old_field.number()) {
            let (was, now) = (field_type(&old_field), field_type(&new_field));
            if was != now {
                changes.push(format!(
                    "field {field} (#{}) changed type from {was} to {now}",
                    old_field.number()
                ));
            } else if let (Kind::Message(old_inner), Kind::Message(new_inner)) =
                (old_field.kind(), new_field.kind())
            {
                compare_fields(&old_inner, &new_inner, compared, changes);
            }
        }
        if let Some(renamed) = new.get_field_by_name(old_field.name())
            && renamed.number() != old_field.number()
        {
            changes.push(format!(
                "field {field} changed number from {} to {}",
                old_field.number(),
                renamed.number()
            ));
        }
    }
}

/// A field's wire-relevant type, e.g. `repeated string` or `map<string, user.v1.User>`.
fn field_type(field: &FieldDescriptor) -> String {
    let kind = |kind: Kind| match kind {
        Kind::Message(message) => message.full_name().to_owned(),
        Kind::Enum(enumeration) => enumeration.full_name().to_owned(),
        scalar => format!("{scalar:?}").to_lowercase(),
    };
    if field.is_map()
        && let Kind::Message(entry) = field.kind()
    {
        let key = entry.map_entry_key_field().kind();
        let value = entry.map_entry_value_field().kind();
        return format!("map<{}, {}>", kind(key), kind(value));
    }
    match field.cardinality() {
        Cardinality::Repeated => format!("repeated {}", kind(field.kind())),
        _ => kind(field.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::DescriptorPool;

    /// The services of one .proto source.
    fn services(source: &str) -> Vec<ServiceDescriptor> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.proto"), source).unwrap();
        let fds = protox::compile(["s.proto"], [dir.path()]).unwrap();
        DescriptorPool::from_file_descriptor_set(fds)
            .unwrap()
            .services()
            .collect()
    }

    const V1: &str = r#"
        syntax = "proto3";
        package t.v1;
        service S {
          rpc Get(Req) returns (Res);
          rpc List(Req) returns (stream Res);
          rpc Gone(Req) returns (Res);
        }
        message Req { string id = 1; Inner inner = 2; }
        message Inner { int32 n = 1; }
        message Res { repeated string names = 1; map<string, int64> counts = 2; }
    "#;

    #[test]
    fn compatible_changes_are_not_reported() {
        let v2 = V1
            .replace("message Res {", "message Res { bool added = 9;")
            .replace(
                "rpc Gone(Req) returns (Res);",
                "rpc Gone(Req) returns (Res);\n rpc New(Req) returns (Res);",
            );
        assert_eq!(
            breaking_changes(&services(V1), &services(&v2)),
            Vec::<String>::new()
        );
        assert!(breaking_changes(&services(V1), &services(V1)).is_empty());
    }

    #[test]
    fn every_breaking_change_is_named() {
        let v2 = V1
            .replace(
                "rpc List(Req) returns (stream Res);",
                "rpc List(Req) returns (Res);",
            )
            .replace("rpc Gone(Req) returns (Res);", "")
            .replace("string id = 1;", "int64 id = 1;")
            .replace("int32 n = 1;", "int32 n = 3;")
            .replace(
                "map<string, int64> counts = 2;",
                "map<string, string> counts = 2;",
            );
        let changes = breaking_changes(&services(V1), &services(&v2));
        assert_eq!(
            changes,
            [
                "field t.v1.Req.id (#1) changed type from string to int64",
                "field t.v1.Inner.n changed number from 1 to 3",
                "field t.v1.Res.counts (#2) changed type from map<string, int64> to map<string, string>",
                "method t.v1.S/List changed from server-streaming to unary",
                "method t.v1.S/Gone was removed",
            ]
        );
    }

    #[test]
    fn a_removed_service_and_a_changed_request_type_are_named() {
        let v2 = V1.replace(
            "rpc Get(Req) returns (Res);",
            "rpc Get(Inner) returns (Res);",
        );
        let changes = breaking_changes(&services(V1), &services(&v2));
        assert_eq!(
            changes,
            ["method t.v1.S/Get request type changed from t.v1.Req to t.v1.Inner"]
        );
        let gone = breaking_changes(&services(V1), &[]);
        assert_eq!(gone, ["service t.v1.S was removed"]);
    }
}
