//! HTTP/JSON transcoding from `google.api.http` annotations: a request to a bound verb
//! and path becomes the method's request message (the body where the binding says, path
//! variables, then query parameters for the fields left), and the response its JSON
//! (the `response_body` field alone when named). A server-streaming method answers
//! newline-delimited JSON (`application/x-ndjson`), one message a line, and an error
//! after the first message as a last line `{"error":{...}}`. Errors before any message
//! are the code's HTTP status with Connect's error JSON.

use bytes::Bytes;
use futures::StreamExt as _;
use http::HeaderValue;
use plugrpc_runtime::{BodyPart, MethodKind, Received, Response};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::doors::connect::{add_metadata, error_json, error_response, whole};
use crate::doors::front::{self, Front, WEB_FRAMING, guest_metadata};
use crate::doors::grpc::HttpResponse;
use crate::doors::http_rule::Binding;
use crate::doors::json;
use crate::metrics::Door;
use crate::registry::{Route, Transcoded};
use crate::server::Wasted;
use crate::status;
use crate::tally::CallMeter;

/// Parts a field path may have: deeper than JSON's own nesting bound is never a field.
const MAX_FIELD_DEPTH: usize = 32;
/// Query parameters one request may set.
const MAX_QUERY_PARAMETERS: usize = 256;

/// Serves a request a binding matched, with the path's variable values.
pub(crate) async fn serve<B>(
    front: &Front,
    request: http::Request<B>,
    transcoded: Transcoded,
) -> HttpResponse
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let Transcoded {
        route,
        binding,
        variables,
    } = transcoded;
    let meter = front.meter(&route, Door::Json, request.headers());
    let streams = route.kind == MethodKind::ServerStreaming;
    match answer(front, request, route, &binding, variables, &meter).await {
        // A stream's body counts its own end.
        Ok(response) if streams => response,
        answered => whole(&meter, answered),
    }
}

async fn answer<B>(
    front: &Front,
    request: http::Request<B>,
    route: Route,
    binding: &Binding,
    variables: Vec<(String, String)>,
    meter: &CallMeter,
) -> Result<HttpResponse, HttpResponse>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let error = |status: Status| error_response(&status);
    let (parts, body) = request.into_parts();
    let caller = front.admit(&route, &parts.extensions).map_err(error)?;
    let bytes = front::read_whole(front, body, &caller, &route)
        .await
        .map_err(error)?;
    let input = route.method.input();
    let message =
        request_message(&input, binding, &variables, parts.uri.query(), &bytes).map_err(error)?;
    let metadata = front::metadata_to_guest(
        &MetadataMap::from_headers(parts.headers.clone()),
        WEB_FRAMING,
    );
    let call = front.call(&route, caller, None, metadata, meter);
    let requests = futures::stream::once(async move { Ok(Received::plain(message)) });
    let (headers, body) = match call.run(Box::pin(requests)).await {
        Response::Failed {
            metadata,
            error: failure,
        } => {
            let (status, wasted) = front::failed(&route, meter, metadata, failure);
            let mut response = error(status);
            if wasted {
                response.extensions_mut().insert(Wasted);
            }
            return Err(response);
        }
        Response::Started { headers, body } => (headers, body),
    };
    let headers = guest_metadata(headers, front::for_call(&route)).map_err(error)?;
    let output = Output {
        descriptor: route.method.output(),
        response_body: binding.response_body.clone(),
    };
    if route.kind == MethodKind::ServerStreaming {
        return Ok(ndjson(route, headers, body, output, meter.clone()));
    }
    unary(route, headers, body, output, meter).await
}

/// How a response message becomes the response body.
struct Output {
    descriptor: MessageDescriptor,
    /// The field to send alone, by proto name.
    response_body: Option<String>,
}

impl Output {
    /// A response message as the body's JSON, in the message's field order.
    fn json(&self, message: &[u8]) -> Result<Vec<u8>, Status> {
        let json = json::to_json(&self.descriptor, message)?;
        let Some(field) = &self.response_body else {
            return Ok(json);
        };
        let whole: Value = serde_json::from_slice(&json)
            .map_err(|e| Status::internal(format!("re-reading the response JSON: {e}")))?;
        // The JSON names fields by their JSON name; the binding by their proto name.
        let name = self
            .descriptor
            .get_field_by_name(field)
            .map_or_else(|| field.clone(), |f| f.json_name().to_owned());
        let part = whole.get(&name).cloned().unwrap_or(Value::Null);
        Ok(serde_json::to_vec(&part).unwrap_or_default())
    }
}

/// A unary answer: the message as JSON, headers and `trailer-` headers.
async fn unary(
    route: Route,
    headers: MetadataMap,
    body: plugrpc_runtime::Body,
    output: Output,
    meter: &CallMeter,
) -> Result<HttpResponse, HttpResponse> {
    let answer = front::unary_answer(&route, meter, body).await;
    if let Some(status) = answer.failed {
        let mut response = error_response(&status);
        add_metadata(response.headers_mut(), headers, "");
        return Err(response);
    }
    let (reply, trailers) = (answer.reply, answer.trailers);
    let json = output
        .json(&reply)
        .map_err(|status| error_response(&status))?;
    let mut response = http::Response::new(tonic::body::Body::new(http_body_util::Full::new(
        Bytes::from(json),
    )));
    let out = response.headers_mut();
    add_metadata(out, headers, "");
    add_metadata(out, trailers, "trailer-");
    out.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// A server stream as newline-delimited JSON, ended by an error line if it failed.
fn ndjson(
    route: Route,
    headers: MetadataMap,
    body: plugrpc_runtime::Body,
    output: Output,
    meter: CallMeter,
) -> HttpResponse {
    let lines = body.filter_map(move |part| {
        let line = match part {
            BodyPart::Message { message, .. } => {
                Some(output.json(&message).unwrap_or_else(|status| {
                    serde_json::to_vec(&serde_json::json!({ "error": error_json(&status) }))
                        .unwrap_or_default()
                }))
            }
            BodyPart::End { trailers, result } => {
                if let Err(error) = &result {
                    meter.failed(error);
                }
                let call = front::for_call(&route);
                let status = match guest_metadata(trailers, call) {
                    Ok(trailers) => status::end(result, trailers, call),
                    Err(invalid) => Some(invalid),
                };
                meter.end(status.as_ref().map_or(Code::Ok, Status::code));
                status.filter(|s| s.code() != Code::Ok).map(|status| {
                    serde_json::to_vec(&serde_json::json!({ "error": error_json(&status) }))
                        .unwrap_or_default()
                })
            }
        };
        futures::future::ready(line.map(|mut line| {
            line.push(b'\n');
            Ok::<_, Status>(http_body::Frame::data(Bytes::from(line)))
        }))
    });
    let mut response = http::Response::new(tonic::body::Body::new(
        http_body_util::StreamBody::new(lines),
    ));
    let out = response.headers_mut();
    add_metadata(out, headers, "");
    out.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// The request message a binding makes of the body, the path's variables and the query.
fn request_message(
    input: &MessageDescriptor,
    binding: &Binding,
    variables: &[(String, String)],
    query: Option<&str>,
    body: &[u8],
) -> Result<Bytes, Status> {
    let has_body = !body.iter().all(u8::is_ascii_whitespace);
    let parsed = || {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| Status::invalid_argument(format!("the request body is not JSON: {e}")))
    };
    let mut root = Map::new();
    match binding.body.as_deref() {
        Some("*") if has_body => match parsed()? {
            Value::Object(object) => root = object,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "the request body must be a JSON object: a {}",
                    input.full_name()
                )));
            }
        },
        Some(field) if has_body && field != "*" => set(&mut root, input, field, parsed()?, false)?,
        _ if has_body => {
            return Err(Status::invalid_argument(format!(
                "{} {} takes no body",
                binding.verb, binding.grpc_path
            )));
        }
        _ => {}
    }
    for (field, value) in variables {
        set_text(&mut root, input, field, value, false)?;
    }
    if binding.body.as_deref() != Some("*") {
        let parameters = form_urlencoded::parse(query.unwrap_or_default().as_bytes());
        for (count, (key, value)) in parameters.enumerate() {
            if count == MAX_QUERY_PARAMETERS {
                return Err(Status::invalid_argument(format!(
                    "more than {MAX_QUERY_PARAMETERS} query parameters"
                )));
            }
            if variables.iter().any(|(field, _)| *field == key) {
                continue;
            }
            set_text(&mut root, input, &key, &value, true)?;
        }
    }
    json::to_proto(
        input,
        &serde_json::to_vec(&Value::Object(root)).unwrap_or_default(),
    )
}

/// The field at `path` (dotted proto names) of `message`, naming the path if absent.
fn field_at(
    message: &MessageDescriptor,
    path: &str,
) -> Result<(Vec<FieldDescriptor>, FieldDescriptor), Status> {
    let unknown = || {
        Status::invalid_argument(format!(
            "{path:?} is not a field of {}",
            message.full_name()
        ))
    };
    if path.split('.').nth(MAX_FIELD_DEPTH).is_some() {
        return Err(Status::invalid_argument(format!(
            "a field path has more than {MAX_FIELD_DEPTH} parts"
        )));
    }
    let mut parents = Vec::new();
    let mut current = message.clone();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        // Proto names, or the JSON names clients of grpc-gateway also send (`pageSize`).
        let field = current
            .get_field_by_name(part)
            .or_else(|| current.get_field_by_json_name(part))
            .ok_or_else(unknown)?;
        if parts.peek().is_none() {
            return Ok((parents, field));
        }
        current = field.kind().as_message().cloned().ok_or_else(unknown)?;
        parents.push(field);
    }
    Err(unknown())
}

/// Sets `value` at `path` in the JSON object `root` (repeated fields gain an element
/// when `append`).
fn set(
    root: &mut Map<String, Value>,
    message: &MessageDescriptor,
    path: &str,
    value: Value,
    append: bool,
) -> Result<(), Status> {
    let (parents, field) = field_at(message, path)?;
    let mut object = root;
    for parent in parents {
        let entry = object
            .entry(parent.name().to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        object = entry
            .as_object_mut()
            .ok_or_else(|| Status::invalid_argument(format!("{path:?} is set twice")))?;
    }
    if field.is_list() && append {
        let list = object
            .entry(field.name().to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            list.push(value);
        }
    } else {
        object.insert(field.name().to_owned(), value);
    }
    Ok(())
}

/// Sets the text of a path variable or query parameter at `path`, as the field's JSON:
/// booleans as JSON booleans, everything else as the string proto3 JSON accepts.
fn set_text(
    root: &mut Map<String, Value>,
    message: &MessageDescriptor,
    path: &str,
    text: &str,
    append: bool,
) -> Result<(), Status> {
    let (_, field) = field_at(message, path)?;
    let value = match field.kind() {
        Kind::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => {
                return Err(Status::invalid_argument(format!(
                    "{path} is a bool: true or false, not {text:?}"
                )));
            }
        },
        Kind::Message(_)
            if field
                .kind()
                .as_message()
                .is_some_and(|m| !is_json_scalar(m)) =>
        {
            return Err(Status::invalid_argument(format!(
                "{path} is a message: set its fields ({path}.<field>) instead"
            )));
        }
        _ => Value::String(text.to_owned()),
    };
    set(root, message, path, value, append)
}

/// Messages proto3 JSON writes as one string (timestamps, durations, wrappers...).
fn is_json_scalar(message: &MessageDescriptor) -> bool {
    message.full_name().starts_with("google.protobuf.")
        && !matches!(
            message.full_name(),
            "google.protobuf.Struct" | "google.protobuf.Any"
        )
}
