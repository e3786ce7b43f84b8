//! The google.rpc rich error model, so a plugin's errors carry machine-readable detail
//! that tonic-types, grpcio-status and other clients decode from `grpc-status-details-bin`.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;
use prost_types::Any;

use crate::status::Code;

/// Rich details for a [`Status`](crate::Status), built up with the `with_*` methods.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ErrorDetails {
    error_info: Option<ErrorInfo>,
    bad_request: Option<BadRequest>,
    resource_info: Option<ResourceInfo>,
    retry_info: Option<RetryInfo>,
    debug_info: Option<DebugInfo>,
    quota_failure: Option<QuotaFailure>,
    precondition_failure: Option<PreconditionFailure>,
    request_info: Option<RequestInfo>,
    help: Option<Help>,
    localized_message: Option<LocalizedMessage>,
}

impl ErrorDetails {
    /// No details yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Why the error happened, as a stable machine-readable reason within a domain.
    pub fn with_error_info(
        mut self,
        reason: impl Into<String>,
        domain: impl Into<String>,
        metadata: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        self.error_info = Some(ErrorInfo {
            reason: reason.into(),
            domain: domain.into(),
            metadata: metadata.into_iter().collect(),
        });
        self
    }

    /// Adds one invalid request field (repeatable).
    pub fn with_bad_request_violation(
        mut self,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        let violation = FieldViolation {
            field: field.into(),
            description: description.into(),
        };
        self.bad_request
            .get_or_insert_with(Default::default)
            .field_violations
            .push(violation);
        self
    }

    /// Names the resource the error is about.
    pub fn with_resource_info(
        mut self,
        resource_type: impl Into<String>,
        resource_name: impl Into<String>,
        owner: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        self.resource_info = Some(ResourceInfo {
            resource_type: resource_type.into(),
            resource_name: resource_name.into(),
            owner: owner.into(),
            description: description.into(),
        });
        self
    }

    /// Tells the client when it may retry.
    pub fn with_retry_info(mut self, retry_delay: Duration) -> Self {
        self.retry_info = Some(RetryInfo {
            retry_delay: Some(prost_types::Duration {
                seconds: i64::try_from(retry_delay.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(retry_delay.subsec_nanos()).unwrap_or(0),
            }),
        });
        self
    }

    /// Debugging detail for the server's own developers.
    pub fn with_debug_info(
        mut self,
        stack_entries: impl IntoIterator<Item = String>,
        detail: impl Into<String>,
    ) -> Self {
        self.debug_info = Some(DebugInfo {
            stack_entries: stack_entries.into_iter().collect(),
            detail: detail.into(),
        });
        self
    }

    /// Adds one exhausted quota (repeatable).
    pub fn with_quota_failure_violation(
        mut self,
        subject: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        let violation = QuotaViolation {
            subject: subject.into(),
            description: description.into(),
        };
        self.quota_failure
            .get_or_insert_with(Default::default)
            .violations
            .push(violation);
        self
    }

    /// Adds one failed precondition (repeatable).
    pub fn with_precondition_failure_violation(
        mut self,
        kind: impl Into<String>,
        subject: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        let violation = PreconditionViolation {
            r#type: kind.into(),
            subject: subject.into(),
            description: description.into(),
        };
        self.precondition_failure
            .get_or_insert_with(Default::default)
            .violations
            .push(violation);
        self
    }

    /// Identifies the request, for support and log correlation.
    pub fn with_request_info(
        mut self,
        request_id: impl Into<String>,
        serving_data: impl Into<String>,
    ) -> Self {
        self.request_info = Some(RequestInfo {
            request_id: request_id.into(),
            serving_data: serving_data.into(),
        });
        self
    }

    /// Adds a link to documentation (repeatable).
    pub fn with_help_link(
        mut self,
        description: impl Into<String>,
        url: impl Into<String>,
    ) -> Self {
        let link = HelpLink {
            description: description.into(),
            url: url.into(),
        };
        self.help
            .get_or_insert_with(Default::default)
            .links
            .push(link);
        self
    }

    /// A message a person can read, in `locale` (e.g. `en-US`).
    pub fn with_localized_message(
        mut self,
        locale: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        self.localized_message = Some(LocalizedMessage {
            locale: locale.into(),
            message: message.into(),
        });
        self
    }

    /// Encodes the details as a `google.rpc.Status` with `code` and `message`.
    pub(crate) fn encode(self, code: Code, message: &str) -> Vec<u8> {
        let mut details = Vec::new();
        push(&mut details, "ErrorInfo", self.error_info);
        push(&mut details, "BadRequest", self.bad_request);
        push(&mut details, "ResourceInfo", self.resource_info);
        push(&mut details, "RetryInfo", self.retry_info);
        push(&mut details, "DebugInfo", self.debug_info);
        push(&mut details, "QuotaFailure", self.quota_failure);
        push(
            &mut details,
            "PreconditionFailure",
            self.precondition_failure,
        );
        push(&mut details, "RequestInfo", self.request_info);
        push(&mut details, "Help", self.help);
        push(&mut details, "LocalizedMessage", self.localized_message);
        RpcStatus {
            code: code.as_i32(),
            message: message.to_owned(),
            details,
        }
        .encode_to_vec()
    }
}

fn push(details: &mut Vec<Any>, name: &str, message: Option<impl Message>) {
    if let Some(message) = message {
        details.push(Any {
            type_url: format!("type.googleapis.com/google.rpc.{name}"),
            value: message.encode_to_vec(),
        });
    }
}

#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

#[derive(Clone, PartialEq, Message)]
struct ErrorInfo {
    #[prost(string, tag = "1")]
    reason: String,
    #[prost(string, tag = "2")]
    domain: String,
    #[prost(map = "string, string", tag = "3")]
    metadata: HashMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
struct BadRequest {
    #[prost(message, repeated, tag = "1")]
    field_violations: Vec<FieldViolation>,
}

#[derive(Clone, PartialEq, Message)]
struct FieldViolation {
    #[prost(string, tag = "1")]
    field: String,
    #[prost(string, tag = "2")]
    description: String,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceInfo {
    #[prost(string, tag = "1")]
    resource_type: String,
    #[prost(string, tag = "2")]
    resource_name: String,
    #[prost(string, tag = "3")]
    owner: String,
    #[prost(string, tag = "4")]
    description: String,
}

#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<prost_types::Duration>,
}

#[derive(Clone, PartialEq, Message)]
struct DebugInfo {
    #[prost(string, repeated, tag = "1")]
    stack_entries: Vec<String>,
    #[prost(string, tag = "2")]
    detail: String,
}

#[derive(Clone, PartialEq, Message)]
struct QuotaFailure {
    #[prost(message, repeated, tag = "1")]
    violations: Vec<QuotaViolation>,
}

#[derive(Clone, PartialEq, Message)]
struct QuotaViolation {
    #[prost(string, tag = "1")]
    subject: String,
    #[prost(string, tag = "2")]
    description: String,
}

#[derive(Clone, PartialEq, Message)]
struct PreconditionFailure {
    #[prost(message, repeated, tag = "1")]
    violations: Vec<PreconditionViolation>,
}

#[derive(Clone, PartialEq, Message)]
struct PreconditionViolation {
    #[prost(string, tag = "1")]
    r#type: String,
    #[prost(string, tag = "2")]
    subject: String,
    #[prost(string, tag = "3")]
    description: String,
}

#[derive(Clone, PartialEq, Message)]
struct RequestInfo {
    #[prost(string, tag = "1")]
    request_id: String,
    #[prost(string, tag = "2")]
    serving_data: String,
}

#[derive(Clone, PartialEq, Message)]
struct Help {
    #[prost(message, repeated, tag = "1")]
    links: Vec<HelpLink>,
}

#[derive(Clone, PartialEq, Message)]
struct HelpLink {
    #[prost(string, tag = "1")]
    description: String,
    #[prost(string, tag = "2")]
    url: String,
}

#[derive(Clone, PartialEq, Message)]
struct LocalizedMessage {
    #[prost(string, tag = "1")]
    locale: String,
    #[prost(string, tag = "2")]
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_google_rpc_status_with_one_any_per_kind() {
        let bytes = ErrorDetails::new()
            .with_bad_request_violation("email", "must not be empty")
            .with_bad_request_violation("name", "too long")
            .with_resource_info("user", "7", "", "no such user")
            .encode(Code::InvalidArgument, "bad");
        let status = RpcStatus::decode(bytes.as_slice()).unwrap();
        assert_eq!(status.code, 3);
        assert_eq!(status.message, "bad");
        let urls: Vec<_> = status.details.iter().map(|a| a.type_url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "type.googleapis.com/google.rpc.BadRequest",
                "type.googleapis.com/google.rpc.ResourceInfo"
            ]
        );
        let bad = BadRequest::decode(status.details[0].value.as_slice()).unwrap();
        assert_eq!(bad.field_violations.len(), 2);
    }
}
