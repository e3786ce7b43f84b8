//! CORS for the web doors: a preflight answered from the policy of the tenant the path
//! routes to (`[tenants.<t>.cors]`, else `[cors]`), and an allowed origin's response
//! marked so the page may read it, the protocols' status headers included.

use std::collections::HashMap;

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::config::{CorsConfig, HostConfig};
use crate::doors::front::{Front, request_host};
use crate::doors::grpc::HttpResponse;

/// Request headers the web protocols (and API keys) use, always allowed.
const PROTOCOL_REQUEST_HEADERS: &str = "content-type, authorization, x-grpc-web, x-user-agent, \
     grpc-timeout, grpc-encoding, grpc-accept-encoding, connect-protocol-version, \
     connect-timeout-ms, connect-content-encoding, connect-accept-encoding";

/// Response headers the web protocols answer with, always exposed.
const PROTOCOL_RESPONSE_HEADERS: &str = "grpc-status, grpc-message, grpc-status-details-bin, \
     grpc-encoding, grpc-accept-encoding, connect-content-encoding, connect-accept-encoding, \
     content-encoding";

/// One table's policy, its header values made once.
#[derive(Clone, Debug)]
struct Policy {
    any_origin: bool,
    origins: Vec<HeaderValue>,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
    max_age: HeaderValue,
    credentials: bool,
}

impl Policy {
    fn new(config: &CorsConfig) -> Self {
        let joined = |base: &str, extra: &[String]| {
            let mut value = base.to_owned();
            for header in extra {
                value.push_str(", ");
                value.push_str(header);
            }
            // Validated at load: names only.
            HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(""))
        };
        Self {
            any_origin: config.allowed_origins.iter().any(|o| o == "*"),
            origins: config
                .allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect(),
            allow_headers: joined(PROTOCOL_REQUEST_HEADERS, &config.allowed_headers),
            expose_headers: joined(PROTOCOL_RESPONSE_HEADERS, &config.exposed_headers),
            max_age: HeaderValue::from(config.max_age.as_secs()),
            credentials: config.allow_credentials,
        }
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.any_origin || self.origins.contains(origin)
    }

    /// The headers every answer to an allowed origin carries.
    fn mark(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.append(header::VARY, HeaderValue::from_static("origin"));
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

/// Every table's policy, by tenant.
#[derive(Clone, Debug)]
pub(crate) struct Cors {
    default: Policy,
    tenants: HashMap<String, Policy>,
}

impl Cors {
    pub(crate) fn new(config: &HostConfig) -> Self {
        Self {
            default: Policy::new(&config.cors),
            tenants: config
                .tenants
                .iter()
                .filter_map(|(name, tenant)| {
                    Some((name.clone(), Policy::new(tenant.cors.as_ref()?)))
                })
                .collect(),
        }
    }

    /// The policy for a request: that of the tenant its path routes to.
    fn policy(&self, front: &Front, parts: &http::request::Parts) -> &Policy {
        let registry = front.registry();
        let host = || request_host(parts);
        // A preflight names the verb it is for; a request is its own.
        let verb = parts
            .headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .filter(|_| parts.method == Method::OPTIONS)
            .and_then(|verb| Method::from_bytes(verb.as_bytes()).ok())
            .unwrap_or_else(|| parts.method.clone());
        registry
            .lookup(parts.uri.path(), host)
            .or_else(|| Some(registry.transcode(&verb, parts.uri.path(), host)?.route))
            .and_then(|route| self.tenants.get(&*route.tenant))
            .unwrap_or(&self.default)
    }

    /// The answer to a CORS preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`), if the request is one.
    pub(crate) fn preflight(
        &self,
        front: &Front,
        parts: &http::request::Parts,
    ) -> Option<HttpResponse> {
        if parts.method != Method::OPTIONS
            || !parts
                .headers
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let origin = parts.headers.get(header::ORIGIN)?;
        let policy = self.policy(front, parts);
        let mut response = http::Response::new(tonic::body::Body::empty());
        if !policy.allows(origin) {
            *response.status_mut() = StatusCode::FORBIDDEN;
            return Some(response);
        }
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        policy.mark(origin, headers);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            policy.allow_headers.clone(),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, policy.max_age.clone());
        Some(response)
    }

    /// The headers that let the page of an allowed origin read the response to this
    /// request; none for a request with no `Origin` or one the policy does not allow.
    pub(crate) fn marks(&self, front: &Front, parts: &http::request::Parts) -> HeaderMap {
        let mut marks = HeaderMap::new();
        let Some(origin) = parts.headers.get(header::ORIGIN) else {
            return marks;
        };
        let policy = self.policy(front, parts);
        if policy.allows(origin) {
            policy.mark(origin, &mut marks);
            marks.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                policy.expose_headers.clone(),
            );
        }
        marks
    }
}
