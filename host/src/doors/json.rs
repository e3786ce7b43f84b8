//! Messages as JSON for the web doors, by the proto3 JSON mapping (prost-reflect's
//! serde), using the method's own descriptors: the host never needs a plugin's code to
//! read or write its messages as JSON. A request that is not the message's JSON is
//! INVALID_ARGUMENT naming the field where it went wrong.

use bytes::Bytes;
use prost::Message as _;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use tonic::Status;

/// `json` as the protobuf encoding of a `descriptor` message.
pub(crate) fn to_proto(descriptor: &MessageDescriptor, json: &[u8]) -> Result<Bytes, Status> {
    let json = if json.iter().all(u8::is_ascii_whitespace) {
        // An empty body is the empty message, as Connect and transcoding take it.
        &b"{}"[..]
    } else {
        json
    };
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let mut track = serde_path_to_error::Track::new();
    // Unknown fields are ignored, as Connect's servers do: a client built against a newer
    // schema still gets its call through.
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let message = DynamicMessage::deserialize_with_options(
        descriptor.clone(),
        serde_path_to_error::Deserializer::new(&mut deserializer, &mut track),
        &options,
    )
    .and_then(|message| deserializer.end().map(|()| message));
    match message {
        Ok(message) => Ok(Bytes::from(message.encode_to_vec())),
        Err(error) => {
            let path = track.path().to_string();
            let at = if path == "." || path.is_empty() {
                String::new()
            } else {
                format!(" at {path}")
            };
            Err(Status::invalid_argument(format!(
                "the request is not a valid {} in JSON{at}: {error}",
                descriptor.full_name()
            )))
        }
    }
}

/// The protobuf bytes of a `descriptor` message as JSON; a message the plugin sent that
/// does not decode is INTERNAL.
pub(crate) fn to_json(descriptor: &MessageDescriptor, proto: &[u8]) -> Result<Vec<u8>, Status> {
    let message = DynamicMessage::decode(descriptor.clone(), proto).map_err(|error| {
        Status::internal(format!(
            "the plugin's response is not a valid {}: {error}",
            descriptor.full_name()
        ))
    })?;
    let mut json = Vec::with_capacity(proto.len() * 2);
    let mut serializer = serde_json::Serializer::new(&mut json);
    message
        .serialize_with_options(&mut serializer, &SerializeOptions::new())
        .map_err(|error| Status::internal(format!("writing the response as JSON: {error}")))?;
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor() -> MessageDescriptor {
        let files = protox::compile(["user/v1/user_service.proto"], ["../proto"]).unwrap();
        let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(files).unwrap();
        pool.get_message_by_name("user.v1.User").unwrap()
    }

    #[test]
    fn json_round_trips_by_the_proto3_mapping() {
        let user = descriptor();
        let proto = to_proto(
            &user,
            br#"{"id":"7","name":"ada","createdAt":"2024-01-01T00:00:07Z"}"#,
        )
        .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&to_json(&user, &proto).unwrap()).unwrap();
        assert_eq!(json["id"], "7", "int64 is a string");
        assert_eq!(json["name"], "ada");
        assert_eq!(json["createdAt"], "2024-01-01T00:00:07Z");
        assert!(json.get("email").is_none(), "defaults are left out");
        assert_eq!(to_proto(&user, b"").unwrap(), Bytes::new());
        assert_eq!(
            to_proto(&user, br#"{"nosuch":1}"#).unwrap(),
            Bytes::new(),
            "unknown fields are ignored"
        );
    }

    #[test]
    fn bad_json_names_the_field_and_never_panics() {
        let user = descriptor();
        for (json, expected) in [
            (&br#"{"id":"seven"}"#[..], "at id"),
            (br#"{"name":5}"#, "at name"),
            (br#"{"id":1"#, "EOF"),
            (br#"[1,2]"#, "user.v1.User"),
            (br#"{"id":1} trailing"#, "trailing"),
        ] {
            let error = to_proto(&user, json).unwrap_err();
            assert_eq!(error.code(), tonic::Code::InvalidArgument);
            assert!(
                error.message().contains(expected),
                "{}: {}",
                String::from_utf8_lossy(json),
                error.message()
            );
        }
    }
}
