//! `google.api.http` annotations (google/api/http.proto): each method's HTTP bindings,
//! read from its descriptor's options at load, and their path templates matched
//! against request paths (`/v1/{name=shelves/*/books/*}:publish`, `**`, verbs).

use std::sync::Arc;

use prost_reflect::{DynamicMessage, MethodDescriptor, Value};

/// One HTTP binding of a method: verb, path template, where the body goes and which
/// field of the response is the body.
#[derive(Clone, Debug)]
pub(crate) struct Binding {
    pub(crate) verb: http::Method,
    pub(crate) template: Template,
    /// `*` (the whole request message) or a field path; `None`: no body.
    pub(crate) body: Option<String>,
    /// The response field sent as the body; `None`: the whole response.
    pub(crate) response_body: Option<String>,
    /// The gRPC path of the method, `/package.Service/Method`.
    pub(crate) grpc_path: Arc<str>,
}

/// An annotation that cannot be served, naming the method.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("method {method}: its google.api.http annotation {reason}")]
pub(crate) struct BadRule {
    pub(crate) method: String,
    pub(crate) reason: String,
}

/// Every binding `method` declares (its rule and the rule's additional bindings).
pub(crate) fn bindings(
    method: &MethodDescriptor,
    grpc_path: &Arc<str>,
) -> Result<Vec<Binding>, BadRule> {
    let bad = |reason: String| BadRule {
        method: method.full_name().to_owned(),
        reason,
    };
    let Some(extension) = method
        .parent_pool()
        .get_extension_by_name("google.api.http")
    else {
        return Ok(Vec::new());
    };
    let options = method.options();
    if !options.has_extension(&extension) {
        return Ok(Vec::new());
    }
    let value = options.get_extension(&extension);
    let Some(rule) = value.as_message() else {
        return Ok(Vec::new());
    };
    if method.is_client_streaming() {
        return Err(bad(
            "is on a method that streams requests, which HTTP/JSON does not carry".into(),
        ));
    }
    let mut found = vec![binding(rule, grpc_path).map_err(&bad)?];
    if let Some(Value::List(more)) = rule.get_field_by_name("additional_bindings").as_deref() {
        for more in more {
            let more = more
                .as_message()
                .ok_or_else(|| bad("has a malformed additional binding".into()))?;
            found.push(binding(more, grpc_path).map_err(&bad)?);
        }
    }
    for binding in &found {
        binding.template.check_fields(method).map_err(&bad)?;
    }
    Ok(found)
}

/// One `HttpRule`, as a binding.
fn binding(rule: &DynamicMessage, grpc_path: &Arc<str>) -> Result<Binding, String> {
    let text = |name: &str| match rule.get_field_by_name(name).as_deref() {
        Some(Value::String(text)) if !text.is_empty() => Some(text.clone()),
        _ => None,
    };
    let simple = [
        ("get", http::Method::GET),
        ("put", http::Method::PUT),
        ("post", http::Method::POST),
        ("delete", http::Method::DELETE),
        ("patch", http::Method::PATCH),
    ];
    let (verb, path) = match simple
        .into_iter()
        .find_map(|(field, verb)| Some((verb, text(field)?)))
    {
        Some(found) => found,
        None => {
            let custom = rule
                .get_field_by_name("custom")
                .and_then(|v| v.as_message().cloned())
                .ok_or("names no verb and path")?;
            let kind = match custom.get_field_by_name("kind").as_deref() {
                Some(Value::String(kind)) => kind.clone(),
                _ => String::new(),
            };
            let path = match custom.get_field_by_name("path").as_deref() {
                Some(Value::String(path)) => path.clone(),
                _ => String::new(),
            };
            let verb = http::Method::from_bytes(kind.as_bytes())
                .map_err(|_| format!("has a custom kind {kind:?} that is not an HTTP method"))?;
            (verb, path)
        }
    };
    Ok(Binding {
        verb,
        template: Template::parse(&path)?,
        body: text("body"),
        response_body: text("response_body"),
        grpc_path: grpc_path.clone(),
    })
}

/// A parsed path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
    /// Field paths of the variables, by index.
    variables: Vec<String>,
    verb: Option<String>,
}

/// One path segment of a template, and the variable it belongs to, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Piece {
    kind: PieceKind,
    variable: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PieceKind {
    Literal(String),
    /// `*`: one segment.
    One,
    /// `**`: the rest of the path.
    Rest,
}

impl Template {
    /// `/segments[:verb]`, as google/api/http.proto defines the syntax.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("has path {text:?}, which {why}");
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| bad("does not start with /"))?;
        // The verb follows the last ':' that is not inside a variable.
        let (rest, verb) = match rest.rfind(':').filter(|&at| !rest[at..].contains('}')) {
            Some(at) => (&rest[..at], Some(rest[at + 1..].to_owned())),
            None => (rest, None),
        };
        let mut template = Self {
            pieces: Vec::new(),
            variables: Vec::new(),
            verb,
        };
        let mut chars = rest;
        while !chars.is_empty() {
            if let Some(inner) = chars.strip_prefix('{') {
                let end = inner.find('}').ok_or_else(|| bad("has an unclosed {"))?;
                let (field, pattern) = match inner[..end].split_once('=') {
                    Some((field, pattern)) => (field, pattern),
                    None => (&inner[..end], "*"),
                };
                let valid = !field.is_empty()
                    && field.split('.').all(|part| {
                        !part.is_empty()
                            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    });
                if !valid {
                    return Err(bad("has a variable that is not a field path"));
                }
                let index = template.variables.len();
                template.variables.push(field.to_owned());
                for segment in pattern.split('/') {
                    template.pieces.push(Piece {
                        kind: segment_kind(segment)
                            .ok_or_else(|| bad("has a malformed variable pattern"))?,
                        variable: Some(index),
                    });
                }
                chars = &inner[end + 1..];
            } else {
                let end = chars.find('/').unwrap_or(chars.len());
                let segment = &chars[..end];
                if segment.contains(['{', '}']) {
                    return Err(bad("has a segment mixing text and a variable"));
                }
                template.pieces.push(Piece {
                    kind: segment_kind(segment).ok_or_else(|| bad("has an empty segment"))?,
                    variable: None,
                });
                chars = &chars[end..];
            }
            chars = match chars.strip_prefix('/') {
                Some("") => return Err(bad("ends with /")),
                Some(next) => next,
                None if chars.is_empty() => chars,
                None => return Err(bad("has text after a variable")),
            };
        }
        let rest_at = template
            .pieces
            .iter()
            .position(|p| p.kind == PieceKind::Rest);
        if rest_at.is_some_and(|at| at + 1 != template.pieces.len()) {
            return Err(bad("has ** before its last segment"));
        }
        Ok(template)
    }

    /// Every variable names a field of the request message.
    fn check_fields(&self, method: &MethodDescriptor) -> Result<(), String> {
        for variable in &self.variables {
            let mut message = method.input();
            let mut parts = variable.split('.').peekable();
            while let Some(part) = parts.next() {
                let field = message.get_field_by_name(part).ok_or_else(|| {
                    format!(
                        "binds {variable:?}, which is not a field of {}",
                        method.input().full_name()
                    )
                })?;
                if parts.peek().is_some() {
                    message = field.kind().as_message().cloned().ok_or_else(|| {
                        format!("binds {variable:?} through a field that is not a message")
                    })?;
                }
            }
        }
        Ok(())
    }

    /// The variables' values when `path` matches, each as (field path, value).
    pub(crate) fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let rest = path.strip_prefix('/')?;
        let rest = match &self.verb {
            Some(verb) => rest.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => rest,
        };
        let segments: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut captured: Vec<Vec<&str>> = vec![Vec::new(); self.variables.len()];
        let mut at = 0;
        for piece in &self.pieces {
            let taken: &[&str] = match &piece.kind {
                PieceKind::Literal(literal) => {
                    if segments.get(at) != Some(&literal.as_str()) {
                        return None;
                    }
                    &segments[at..=at]
                }
                PieceKind::One => {
                    let segment = segments.get(at).filter(|s| !s.is_empty())?;
                    std::slice::from_ref(segment)
                }
                PieceKind::Rest => &segments[at.min(segments.len())..],
            };
            at += taken.len();
            if let Some(variable) = piece.variable {
                captured[variable].extend_from_slice(taken);
            }
        }
        if at != segments.len() {
            return None;
        }
        Some(
            self.variables
                .iter()
                .zip(captured)
                .map(|(field, parts)| {
                    let value = parts.join("/");
                    let decoded = percent_encoding::percent_decode_str(&value)
                        .decode_utf8_lossy()
                        .into_owned();
                    (field.clone(), decoded)
                })
                .collect(),
        )
    }
}

fn segment_kind(segment: &str) -> Option<PieceKind> {
    match segment {
        "" => None,
        "*" => Some(PieceKind::One),
        "**" => Some(PieceKind::Rest),
        literal => Some(PieceKind::Literal(literal.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matched(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        Template::parse(template).unwrap().matches(path)
    }

    fn vars(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn templates_match_literals_variables_patterns_and_verbs() {
        assert_eq!(
            matched("/v1/users/{id}", "/v1/users/7"),
            vars(&[("id", "7")])
        );
        assert_eq!(matched("/v1/users/{id}", "/v1/users"), None);
        assert_eq!(matched("/v1/users/{id}", "/v1/users/7/x"), None);
        assert_eq!(matched("/v1/users", "/v1/users"), vars(&[]));
        assert_eq!(
            matched("/v1/{name=shelves/*/books/*}", "/v1/shelves/1/books/2"),
            vars(&[("name", "shelves/1/books/2")])
        );
        assert_eq!(
            matched("/v1/{name=shelves/*/books/*}", "/v1/shelves/1/cds/2"),
            None
        );
        assert_eq!(
            matched(
                "/v1/{book.name=shelves/*}/x:publish",
                "/v1/shelves/a%20b/x:publish"
            ),
            vars(&[("book.name", "shelves/a b")])
        );
        assert_eq!(matched("/v1/x:publish", "/v1/x"), None);
        assert_eq!(
            matched("/files/{path=**}", "/files/a/b/c.txt"),
            vars(&[("path", "a/b/c.txt")])
        );
        assert_eq!(matched("/v1/*/tail", "/v1/anything/tail"), vars(&[]));
    }

    #[test]
    fn malformed_templates_are_named() {
        for bad in [
            "v1/x",
            "/v1/{id",
            "/v1/{}",
            "/v1//x",
            "/v1/x/",
            "/v1/**/x",
            "/v1/a{id}",
            "/v1/{a-b}",
        ] {
            let error = Template::parse(bad).unwrap_err();
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }
}

#[cfg(test)]
mod descriptor_tests {
    use super::*;

    #[test]
    fn the_users_example_binds_get_user_and_list_users() {
        let mut compiler = protox::Compiler::new(["../proto"]).unwrap();
        compiler
            .include_imports(true)
            .open_file("user/v1/user_service.proto")
            .unwrap();
        let pool = compiler.descriptor_pool();
        let service = pool.get_service_by_name("user.v1.UserService").unwrap();
        let get = service.methods().find(|m| m.name() == "GetUser").unwrap();
        let path: Arc<str> = Arc::from("/user.v1.UserService/GetUser");
        let found = bindings(&get, &path).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].verb, http::Method::GET);
        assert!(found[0].template.matches("/v1/users/7").is_some());
    }
}
