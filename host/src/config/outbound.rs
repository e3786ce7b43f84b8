//! `[plugins.<p>.outbound.<alias>]`: one gRPC service a plugin is granted to call, by
//! alias — where it is, how calls are spread over its endpoints, bounded, retried and
//! secured. Parsed and checked here; the client that honours it is `crate::outbound`.
//! Nothing here opens a file or a socket: certificate files are read when the target is
//! built.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use plugrpc_runtime::duration;
use serde::{Deserialize, Deserializer};

use super::{Invalid, invalid};

/// A call's cap when `timeout` is not set: long enough for a slow unary call, short
/// enough that a hung server frees the caller's slot within a minute.
pub const DEFAULT_OUTBOUND_TIMEOUT: Duration = Duration::from_secs(30);

/// How often host names are resolved again when `resolve_every` is not set: grpc-go's
/// DNS resolver re-resolves at most this often, so servers are used to it.
pub const DEFAULT_RESOLVE_EVERY: Duration = Duration::from_secs(30);

/// In-flight calls per plugin per target when `max_concurrent_calls` is not set: the
/// streams RFC 9113 (6.5.2) recommends a server grant at least, so the default never
/// queues behind one server's own stream limit.
pub const DEFAULT_OUTBOUND_CONCURRENT_CALLS: usize = 100;

/// The most attempts a retry policy may ask for, the original included: gRFC A6 caps
/// `maxAttempts` at 5, so a larger value here is refused rather than silently lowered.
pub const MAX_ATTEMPTS: u32 = 5;

/// The longest `timeout` or backoff a config may ask for: a year, as `max_deadline`
/// allows, and far below what an `Instant` can hold.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Re-resolving more often than this is load on DNS for nothing: records live seconds.
const MIN_RESOLVE_EVERY: Duration = Duration::from_secs(1);

/// The most in-flight calls a config may grant per plugin per target.
const MAX_CONCURRENT_CALLS: usize = 100_000;

/// gRFC A6: `maxTokens` is in (0, 1000].
const MAX_TOKENS: u32 = 1000;

/// The endpoint value that means "this host's own router, in process".
const LOCAL: &str = "local";

/// Header names gRPC or HTTP/2 own on a call: copying them from the inbound call would
/// break the outbound one (`grpc-*` is refused as a prefix besides these).
const OWNED_HEADERS: [&str; 10] = [
    "content-type",
    "content-length",
    "te",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "user-agent",
];

/// `[plugins.<p>.outbound.<alias>]`: a service the plugin may call as `alias`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundTarget {
    /// Where the service is: `http(s)://host:port` URLs, or `["local"]` for this host.
    pub endpoints: Endpoints,
    /// How a call picks one of the live endpoints.
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    /// Cap on any one call; the inbound call's remaining time caps it further.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How often host names in `endpoints` are resolved again.
    #[serde(default = "default_resolve_every", with = "humantime_serde")]
    pub resolve_every: Duration,
    /// Inbound metadata keys copied onto every outbound call (lowercase header names).
    #[serde(default)]
    pub propagate_metadata: Vec<String>,
    /// In-flight calls the plugin may hold to this target; one more is refused at once.
    #[serde(default = "default_concurrent_calls")]
    pub max_concurrent_calls: usize,
    /// When a failed call is tried again; none: never (one attempt).
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    /// The retry budget; none: retries are not throttled (gRPC's default).
    #[serde(default)]
    pub retry_throttling: Option<RetryThrottling>,
    /// Trust, client certificate and name for `https` endpoints; none: the public roots.
    #[serde(default)]
    pub tls: Option<OutboundTls>,
}

/// The `endpoints` list, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoints {
    /// `["local"]`: the host's own router, called in process.
    Local,
    /// Servers elsewhere, at least one.
    Remote(Vec<EndpointUrl>),
}

/// One `http://host:port` or `https://host:port` endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointUrl {
    /// Whether calls to it use TLS (`https`).
    pub tls: bool,
    /// An address, or a name resolved every `resolve_every`.
    pub host: EndpointHost,
    /// The port, always written.
    pub port: u16,
}

/// The host part of an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointHost {
    /// An IP address: used as is.
    Ip(IpAddr),
    /// A DNS name (lowercase): each address it resolves to is an endpoint of its own.
    Name(String),
}

/// How a call picks among the live endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    /// Each in turn: even spread when calls cost about the same.
    #[default]
    RoundRobin,
    /// Power of two choices: of two endpoints at random, the one with fewer calls in
    /// flight; steers away from a slow endpoint.
    P2c,
}

/// `[...retry]`: gRPC's `retryPolicy` (gRFC A6), its field names in snake_case.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts at most, the original included: 2 ..= 5.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The first retry waits a random time up to this.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// No retry waits longer than this (before jitter).
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Each retry's cap is the previous one's times this.
    #[serde(default = "default_backoff_multiplier")]
    pub backoff_multiplier: f64,
    /// The statuses worth another attempt (names as gRPC spells them, any case).
    #[serde(default = "default_retryable_codes")]
    pub retryable_status_codes: Vec<GrpcCode>,
}

/// `[...retry_throttling]`: gRPC's `retryThrottling` (gRFC A6), a token bucket that stops
/// retries when most calls to the target fail.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryThrottling {
    /// Tokens the bucket holds (and starts with): 1 ..= 1000. Each failure takes one;
    /// retries stop while half or fewer remain.
    pub max_tokens: u32,
    /// Tokens a successful call gives back.
    pub token_ratio: f64,
}

/// `[...tls]`: how `https` endpoints are trusted and what the host shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundTls {
    /// PEM CA certificates servers must chain to, instead of the public web roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS, leaf first (needs `key`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (needs `cert`).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name sent as SNI and checked in the server's certificate, instead of the
    /// endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// A gRPC status code, named as gRPC spells it (`UNAVAILABLE`), in any case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcCode(pub tonic::Code);

/// Every code with its name, in wire order.
const CODE_NAMES: [(tonic::Code, &str); 17] = [
    (tonic::Code::Ok, "OK"),
    (tonic::Code::Cancelled, "CANCELLED"),
    (tonic::Code::Unknown, "UNKNOWN"),
    (tonic::Code::InvalidArgument, "INVALID_ARGUMENT"),
    (tonic::Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (tonic::Code::NotFound, "NOT_FOUND"),
    (tonic::Code::AlreadyExists, "ALREADY_EXISTS"),
    (tonic::Code::PermissionDenied, "PERMISSION_DENIED"),
    (tonic::Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (tonic::Code::FailedPrecondition, "FAILED_PRECONDITION"),
    (tonic::Code::Aborted, "ABORTED"),
    (tonic::Code::OutOfRange, "OUT_OF_RANGE"),
    (tonic::Code::Unimplemented, "UNIMPLEMENTED"),
    (tonic::Code::Internal, "INTERNAL"),
    (tonic::Code::Unavailable, "UNAVAILABLE"),
    (tonic::Code::DataLoss, "DATA_LOSS"),
    (tonic::Code::Unauthenticated, "UNAUTHENTICATED"),
];

impl GrpcCode {
    /// The code's name as gRPC spells it.
    pub fn name(self) -> &'static str {
        CODE_NAMES
            .iter()
            .find(|(code, _)| *code == self.0)
            .map_or("UNKNOWN", |(_, name)| name)
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> Deserialize<'de> for GrpcCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        CODE_NAMES
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(text.trim()))
            .map(|(code, _)| GrpcCode(*code))
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{text:?} is not a gRPC status code name (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, ...)"
                ))
            })
    }
}

impl<'de> Deserialize<'de> for Endpoints {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let list = Vec::<String>::deserialize(deserializer)?;
        Endpoints::parse(&list).map_err(serde::de::Error::custom)
    }
}

impl Endpoints {
    /// The list as written: `["local"]` alone, or URLs.
    fn parse(list: &[String]) -> Result<Self, String> {
        if list.is_empty() {
            return Err("at least one endpoint is needed".into());
        }
        if list.iter().any(|e| e.trim() == LOCAL) {
            return if list.len() == 1 {
                Ok(Endpoints::Local)
            } else {
                Err("\"local\" stands alone: it cannot be mixed with URLs".into())
            };
        }
        list.iter()
            .map(|text| EndpointUrl::parse(text).map_err(|why| format!("{text:?} {why}")))
            .collect::<Result<_, _>>()
            .map(Endpoints::Remote)
    }
}

impl EndpointUrl {
    /// `http://host:port` or `https://host:port`, nothing more.
    fn parse(text: &str) -> Result<Self, String> {
        let shape = "is not an endpoint: http://host:port or https://host:port";
        let uri: http::Uri = text.trim().parse().map_err(|_| shape.to_owned())?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(shape.to_owned()),
        };
        let authority = uri.authority().ok_or_else(|| shape.to_owned())?;
        if authority.as_str().contains('@')
            || uri.query().is_some()
            || !matches!(uri.path(), "" | "/")
        {
            return Err(shape.to_owned());
        }
        let port = authority
            .port_u16()
            .filter(|&port| port != 0)
            .ok_or_else(|| "has no port: write http://host:port".to_owned())?;
        let host = authority.host();
        let host = match host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .parse::<IpAddr>()
        {
            Ok(ip) => EndpointHost::Ip(ip),
            Err(_) if is_dns_name(host) => EndpointHost::Name(host.to_ascii_lowercase()),
            Err(_) => return Err(format!("{shape}: {host:?} is not a host name")),
        };
        Ok(Self { tls, host, port })
    }

    /// `host:port`, as the `:authority` of calls to it.
    pub fn authority(&self) -> String {
        match &self.host {
            EndpointHost::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            EndpointHost::Ip(ip) => format!("{ip}:{}", self.port),
            EndpointHost::Name(name) => format!("{name}:{}", self.port),
        }
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

/// Letters, digits, `-` and `_` in dot-separated labels of 1 to 63, 253 at most in all.
fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl OutboundTarget {
    /// Checks the bounds of the table whose dotted key is `table`
    /// (e.g. `plugins.frontdesk.outbound.greeter`).
    pub fn validate(&self, table: &str) -> Result<(), Invalid> {
        let key = |name: &str| format!("{table}.{name}");
        if self.timeout.is_zero() || self.timeout > MAX_DURATION {
            return Err(invalid(
                &key("timeout"),
                format!(
                    "{} is outside 1ms ..= {}",
                    duration(self.timeout),
                    duration(MAX_DURATION)
                ),
            ));
        }
        if !(MIN_RESOLVE_EVERY..=MAX_DURATION).contains(&self.resolve_every) {
            return Err(invalid(
                &key("resolve_every"),
                format!(
                    "{} is outside {} ..= {}",
                    duration(self.resolve_every),
                    duration(MIN_RESOLVE_EVERY),
                    duration(MAX_DURATION)
                ),
            ));
        }
        if !(1..=MAX_CONCURRENT_CALLS).contains(&self.max_concurrent_calls) {
            return Err(invalid(
                &key("max_concurrent_calls"),
                format!(
                    "{} is outside 1 ..= {MAX_CONCURRENT_CALLS}",
                    self.max_concurrent_calls
                ),
            ));
        }
        for name in &self.propagate_metadata {
            check_metadata_key(name)
                .map_err(|why| invalid(&key("propagate_metadata"), format!("{name:?} {why}")))?;
        }
        if let Some(retry) = &self.retry {
            retry.validate(&key("retry"))?;
        }
        if let Some(throttling) = &self.retry_throttling {
            throttling.validate(&key("retry_throttling"))?;
        }
        if let Some(tls) = &self.tls {
            let https = match &self.endpoints {
                Endpoints::Local => false,
                Endpoints::Remote(urls) => urls.iter().any(|url| url.tls),
            };
            if !https {
                return Err(invalid(
                    &key("tls"),
                    "no https endpoint to use it: list https://host:port endpoints".into(),
                ));
            }
            tls.validate(&key("tls"))?;
        }
        Ok(())
    }
}

/// Why `name` cannot be copied as metadata, if it cannot.
fn check_metadata_key(name: &str) -> Result<(), &'static str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("is not lowercase: metadata keys are lowercase");
    }
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err("is not a header name");
    }
    if name.starts_with("grpc-") || OWNED_HEADERS.contains(&name) {
        return Err("is owned by gRPC or HTTP/2, not copied between calls");
    }
    Ok(())
}

impl RetryPolicy {
    fn validate(&self, table: &str) -> Result<(), Invalid> {
        let key = |name: &str| format!("{table}.{name}");
        if !(2..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(invalid(
                &key("max_attempts"),
                format!(
                    "{} is outside 2 ..= {MAX_ATTEMPTS} (gRFC A6; leave out [retry] for no retries)",
                    self.max_attempts
                ),
            ));
        }
        for (name, value) in [
            ("initial_backoff", self.initial_backoff),
            ("max_backoff", self.max_backoff),
        ] {
            if value.is_zero() || value > MAX_DURATION {
                return Err(invalid(
                    &key(name),
                    format!(
                        "{} is outside 1ms ..= {}",
                        duration(value),
                        duration(MAX_DURATION)
                    ),
                ));
            }
        }
        if !(self.backoff_multiplier.is_finite() && self.backoff_multiplier > 0.0) {
            return Err(invalid(
                &key("backoff_multiplier"),
                format!("{} is not a positive number", self.backoff_multiplier),
            ));
        }
        if self.retryable_status_codes.is_empty() {
            return Err(invalid(
                &key("retryable_status_codes"),
                "list at least one code (leave out [retry] for no retries)".into(),
            ));
        }
        if self
            .retryable_status_codes
            .contains(&GrpcCode(tonic::Code::Ok))
        {
            return Err(invalid(
                &key("retryable_status_codes"),
                "OK is not a failure".into(),
            ));
        }
        Ok(())
    }

    /// Whether a call that failed with `code` may be tried again.
    pub fn retries(&self, code: tonic::Code) -> bool {
        self.retryable_status_codes.contains(&GrpcCode(code))
    }
}

impl RetryThrottling {
    fn validate(&self, table: &str) -> Result<(), Invalid> {
        if !(1..=MAX_TOKENS).contains(&self.max_tokens) {
            return Err(invalid(
                &format!("{table}.max_tokens"),
                format!(
                    "{} is outside 1 ..= {MAX_TOKENS} (gRFC A6)",
                    self.max_tokens
                ),
            ));
        }
        if !(self.token_ratio.is_finite() && self.token_ratio > 0.0) {
            return Err(invalid(
                &format!("{table}.token_ratio"),
                format!("{} is not a positive number", self.token_ratio),
            ));
        }
        Ok(())
    }
}

impl OutboundTls {
    /// Refuses a `cert` without its `key` (or the other way) and a server name that is
    /// neither a DNS name nor an IP address, naming the key under `table`.
    pub(super) fn validate(&self, table: &str) -> Result<(), Invalid> {
        match (&self.cert, &self.key) {
            (Some(_), None) => {
                return Err(invalid(
                    &format!("{table}.key"),
                    "needed with cert: the client certificate's private key".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    &format!("{table}.cert"),
                    "needed with key: the client certificate the key goes with".into(),
                ));
            }
            _ => {}
        }
        if let Some(name) = &self.server_name
            && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            return Err(invalid(
                &format!("{table}.server_name"),
                format!("{name:?} is not a DNS name or an IP address"),
            ));
        }
        Ok(())
    }
}

fn default_timeout() -> Duration {
    DEFAULT_OUTBOUND_TIMEOUT
}

fn default_resolve_every() -> Duration {
    DEFAULT_RESOLVE_EVERY
}

fn default_concurrent_calls() -> usize {
    DEFAULT_OUTBOUND_CONCURRENT_CALLS
}

/// Three attempts: grpc's examples' choice, two retries ride out one restart.
fn default_max_attempts() -> u32 {
    3
}

/// 100 ms: a retry soon enough to hide a blip, late enough not to pile on.
fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}

/// 1 s: ten times the first wait, as in gRPC's examples.
fn default_max_backoff() -> Duration {
    Duration::from_secs(1)
}

/// Doubling, as in gRPC's examples.
fn default_backoff_multiplier() -> f64 {
    2.0
}

/// UNAVAILABLE alone: the one code that says the server did not act on the call.
fn default_retryable_codes() -> Vec<GrpcCode> {
    vec![GrpcCode(tonic::Code::Unavailable)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` as the table `plugins.frontdesk.outbound.greeter` and checks it;
    /// either failure as the one line an operator reads.
    fn parse(text: &str) -> Result<OutboundTarget, String> {
        let table = "plugins.frontdesk.outbound.greeter";
        let value: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
        let target: OutboundTarget = serde_path_to_error::deserialize(toml::Value::Table(value))
            .map_err(|e| format!("{table}.{}: {}", e.path(), e.inner().message()))?;
        target.validate(table).map_err(|e| e.to_string())?;
        Ok(target)
    }

    #[test]
    fn the_documented_table_parses() {
        let target = parse(
            r#"
            endpoints = ["http://127.0.0.1:50052", "https://greeter.example:443", "http://[::1]:7"]
            load_balancing = "p2c"
            timeout = "10s"
            resolve_every = "1m"
            propagate_metadata = ["x-request-id", "traceparent"]
            max_concurrent_calls = 20
            [retry]
            max_attempts = 4
            initial_backoff = "50ms"
            max_backoff = "2s"
            backoff_multiplier = 1.5
            retryable_status_codes = ["unavailable", "RESOURCE_EXHAUSTED"]
            [retry_throttling]
            max_tokens = 10
            token_ratio = 0.1
            [tls]
            ca = "certs/ca.pem"
            cert = "certs/client.pem"
            key = "certs/client.key"
            server_name = "greeter.internal"
            "#,
        )
        .unwrap();
        let Endpoints::Remote(urls) = &target.endpoints else {
            panic!("remote endpoints")
        };
        assert_eq!(urls[0].to_string(), "http://127.0.0.1:50052");
        assert_eq!(
            urls[1].host,
            EndpointHost::Name("greeter.example".to_owned())
        );
        assert!(urls[1].tls);
        assert_eq!(urls[2].authority(), "[::1]:7");
        assert_eq!(target.load_balancing, LoadBalancing::P2c);
        assert_eq!(target.timeout, Duration::from_secs(10));
        let retry = target.retry.unwrap();
        assert_eq!(retry.max_attempts, 4);
        assert!(retry.retries(tonic::Code::Unavailable));
        assert!(retry.retries(tonic::Code::ResourceExhausted));
        assert!(!retry.retries(tonic::Code::Internal));
        assert_eq!(target.retry_throttling.unwrap().max_tokens, 10);
    }

    #[test]
    fn a_bare_table_means_the_documented_defaults() {
        let target = parse(r#"endpoints = ["http://localhost:50051"]"#).unwrap();
        assert_eq!(target.load_balancing, LoadBalancing::RoundRobin);
        assert_eq!(target.timeout, DEFAULT_OUTBOUND_TIMEOUT);
        assert_eq!(target.resolve_every, DEFAULT_RESOLVE_EVERY);
        assert_eq!(
            target.max_concurrent_calls,
            DEFAULT_OUTBOUND_CONCURRENT_CALLS
        );
        assert_eq!((target.retry, target.retry_throttling), (None, None));
        let retry = parse("endpoints = [\"http://a:1\"]\n[retry]")
            .unwrap()
            .retry;
        let retry = retry.expect("an empty [retry] is the default policy");
        assert_eq!(retry.max_attempts, 3);
        assert_eq!(retry.retryable_status_codes, default_retryable_codes());
    }

    #[test]
    fn local_stands_alone() {
        assert_eq!(
            parse(r#"endpoints = ["local"]"#).unwrap().endpoints,
            Endpoints::Local
        );
    }

    #[test]
    fn bad_tables_are_one_line_naming_the_key() {
        let key = "plugins.frontdesk.outbound.greeter";
        let cases = [
            ("endpoints = []", "endpoints: at least one endpoint"),
            (
                r#"endpoints = ["local", "http://a:1"]"#,
                "endpoints: \"local\" stands alone",
            ),
            (
                r#"endpoints = ["ftp://a:1"]"#,
                "endpoints: \"ftp://a:1\" is not an endpoint",
            ),
            (
                r#"endpoints = ["dns:///greeter.internal:50051"]"#,
                "endpoints: \"dns:///greeter.internal:50051\" is not an endpoint",
            ),
            (
                r#"endpoints = ["http://a"]"#,
                "endpoints: \"http://a\" has no port",
            ),
            (
                r#"endpoints = ["http://a:1/path"]"#,
                "endpoints: \"http://a:1/path\" is not an endpoint",
            ),
            (
                r#"endpoints = ["http://user@a:1"]"#,
                "endpoints: \"http://user@a:1\" is not an endpoint",
            ),
            (
                r#"endpoints = ["http://a!b:1"]"#,
                "endpoints: \"http://a!b:1\" is not an endpoint",
            ),
            (
                "load_balancing = \"random\"\nendpoints = [\"http://a:1\"]",
                "load_balancing: unknown variant `random`",
            ),
            (
                "endpoints = [\"http://a:1\"]\ncolour = 1",
                "colour: unknown field",
            ),
            (
                "endpoints = [\"http://a:1\"]\ntimeout = \"0s\"",
                "timeout: 0s is outside",
            ),
            (
                "endpoints = [\"http://a:1\"]\ntimeout = \"5 parsecs\"",
                "timeout",
            ),
            (
                "endpoints = [\"http://a:1\"]\nresolve_every = \"10ms\"",
                "resolve_every: 10ms is outside 1s",
            ),
            (
                "endpoints = [\"http://a:1\"]\nmax_concurrent_calls = 0",
                "max_concurrent_calls: 0 is outside",
            ),
            (
                "endpoints = [\"http://a:1\"]\npropagate_metadata = [\"X-Request-Id\"]",
                "propagate_metadata: \"X-Request-Id\" is not lowercase",
            ),
            (
                "endpoints = [\"http://a:1\"]\npropagate_metadata = [\"grpc-timeout\"]",
                "propagate_metadata: \"grpc-timeout\" is owned by gRPC",
            ),
            (
                "endpoints = [\"http://a:1\"]\npropagate_metadata = [\"a b\"]",
                "propagate_metadata: \"a b\" is not a header name",
            ),
            (
                "endpoints = [\"http://a:1\"]\n[retry]\nmax_attempts = 0",
                "retry.max_attempts: 0 is outside 2 ..= 5",
            ),
            (
                "endpoints = [\"http://a:1\"]\n[retry]\nmax_attempts = 6",
                "retry.max_attempts: 6 is outside 2 ..= 5",
            ),
            (
                "endpoints = [\"http://a:1\"]\n[retry]\nretryable_status_codes = [\"UNAVAIL\"]",
                "retry.retryable_status_codes[0]: \"UNAVAIL\" is not a gRPC status code name",
            ),
            (
                "endpoints = [\"http://a:1\"]\n[retry]\nretryable_status_codes = []",
                "retry.retryable_status_codes: list at least one",
            ),
            (
                "endpoints = [\"http://a:1\"]\n[retry]\nretryable_status_codes = [\"ok\"]",
                "retry.retryable_status_codes: OK is not a failure",
            ),
            (
                "endpoints = [\"http://a:1\"]\n[retry]\nbackoff_multiplier = 0.0",
                "retry.backoff_multiplier: 0 is not a positive number",
            ),
            (
                "endpoints = [\"http://a:1\"]\n[retry]\ninitial_backoff = \"0s\"",
                "retry.initial_backoff: 0s is outside",
            ),
            (
                "endpoints = [\"http://a:1\"]\n[retry]\nhedging = true",
                "retry.hedging: unknown field",
            ),
            (
                "endpoints = [\"http://a:1\"]\n[retry_throttling]\nmax_tokens = 0\ntoken_ratio = 0.1",
                "retry_throttling.max_tokens: 0 is outside 1 ..= 1000",
            ),
            (
                "endpoints = [\"http://a:1\"]\n[retry_throttling]\nmax_tokens = 10\ntoken_ratio = -1.0",
                "retry_throttling.token_ratio: -1 is not a positive number",
            ),
            (
                "endpoints = [\"http://a:1\"]\n[retry_throttling]\nmax_tokens = 10",
                "retry_throttling: missing field `token_ratio`",
            ),
            (
                "endpoints = [\"http://a:1\"]\n[tls]\nca = \"ca.pem\"",
                "tls: no https endpoint to use it",
            ),
            (
                "endpoints = [\"local\"]\n[tls]\nca = \"ca.pem\"",
                "tls: no https endpoint to use it",
            ),
            (
                "endpoints = [\"https://a:1\"]\n[tls]\ncert = \"c.pem\"",
                "tls.key: needed with cert",
            ),
            (
                "endpoints = [\"https://a:1\"]\n[tls]\nkey = \"c.key\"",
                "tls.cert: needed with key",
            ),
            (
                "endpoints = [\"https://a:1\"]\n[tls]\nserver_name = \"not a name\"",
                "tls.server_name: \"not a name\" is not a DNS name",
            ),
            ("timeout = \"1s\"", "missing field `endpoints`"),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text);
            assert!(
                error.contains(&format!("{key}.{expected}"))
                    || (error.starts_with(key) && error.contains(expected)),
                "{text:?} gave {error:?}, expected {expected:?}"
            );
            assert!(!error.contains('\n'), "one line: {error:?}");
        }
    }

    #[test]
    fn every_code_name_reads_back_as_itself() {
        for (code, name) in CODE_NAMES {
            let parsed: GrpcCode =
                serde_json::from_str(&format!("{:?}", name.to_lowercase())).unwrap();
            assert_eq!((parsed.0, parsed.name()), (code, name));
        }
    }
}
