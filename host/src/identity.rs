//! Who is calling. From the client certificate of the connection (its URI SAN, e.g. a
//! SPIFFE ID, else its DNS SAN, else its CN), or from `authorization: Bearer <key>`
//! when the key's SHA-256 is in `[api_keys]` (the caller is then `key:<name>`). A bearer
//! key that matches none is UNAUTHENTICATED; the comparison takes the same time whichever
//! key, if any, matches. The identity rides on the request to the doors, the log and
//! fair admission; a matched key never reaches a plugin.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::KeyHash;
use crate::server::{Peer, Wasted};
use crate::status;

/// The caller of a request, once known: its identity, and the key fair admission knows
/// it by (identities and addresses in separate namespaces, so no certificate can name
/// itself into another caller's share).
#[derive(Clone, Debug)]
pub(crate) struct CallerIdentity {
    /// What the plugin sees.
    pub(crate) identity: Arc<str>,
    /// `id:<identity>`.
    pub(crate) key: Arc<str>,
}

impl CallerIdentity {
    pub(crate) fn new(identity: &str) -> Self {
        Self {
            identity: Arc::from(identity),
            key: Arc::from(format!("id:{identity}")),
        }
    }
}

/// The identity a client certificate names: its first URI SAN, else its first DNS SAN,
/// else its subject's CN; `None` when it names none, does not parse, or names one in a
/// namespace the host gives out itself (`key:` for API keys, `plugin:` and `local:` for
/// plugins' own calls), which no certificate may claim.
pub(crate) fn from_certificate(der: &[u8]) -> Option<String> {
    named_by_certificate(der).filter(|name| !HOST_NAMESPACES.iter().any(|ns| name.starts_with(ns)))
}

/// What API-key identities start with.
const KEY_PREFIX: &str = "key:";

/// The identity namespaces only the host hands out: API keys, and the plugins that call
/// through `local` (`plugin:<tenant>/<name>`; `local:` is what fair admission knows them by).
const HOST_NAMESPACES: [&str; 3] = [KEY_PREFIX, "plugin:", "local:"];

fn named_by_certificate(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let names = &san.value.general_names;
        let uri = names.iter().find_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
        let dns = names.iter().find_map(|name| match name {
            GeneralName::DNSName(dns) => Some(*dns),
            _ => None,
        });
        if let Some(name) = uri.or(dns).filter(|name| !name.is_empty()) {
            return Some(name.to_owned());
        }
    }
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .map(str::to_owned)
}

/// The API keys of `[api_keys]`, by hash.
#[derive(Clone, Debug, Default)]
pub(crate) struct ApiKeys(Arc<Vec<(CallerIdentity, [u8; 32])>>);

impl ApiKeys {
    pub(crate) fn new(keys: &BTreeMap<String, KeyHash>) -> Self {
        Self(Arc::new(
            keys.iter()
                .map(|(name, hash)| (CallerIdentity::new(&format!("{KEY_PREFIX}{name}")), hash.0))
                .collect(),
        ))
    }

    /// The identity of the key whose hash `key` has, comparing every hash in full.
    fn identify(&self, key: &[u8]) -> Option<CallerIdentity> {
        let hash: [u8; 32] = Sha256::digest(key).into();
        let mut found = None;
        for (identity, known) in self.0.iter() {
            if bool::from(known.ct_eq(&hash)) {
                found = Some(identity.clone());
            }
        }
        found
    }
}

/// The identity layer: sets [`CallerIdentity`] on each request, or refuses a request
/// whose bearer key is unknown.
#[derive(Clone, Debug)]
pub(crate) struct IdentityLayer(pub(crate) ApiKeys);

impl<S> tower::Layer<S> for IdentityLayer {
    type Service = Identify<S>;

    fn layer(&self, inner: S) -> Identify<S> {
        Identify {
            inner,
            keys: self.0.clone(),
        }
    }
}

/// See [`IdentityLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Identify<S> {
    inner: S,
    keys: ApiKeys,
}

impl<S, B> tower::Service<http::Request<B>> for Identify<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let mut identity = request
            .extensions()
            .get::<Peer>()
            .and_then(|peer| peer.identity.clone());

        let keyed = !self.keys.0.is_empty();
        if let Some(key) = keyed.then(|| bearer_key(request.headers())).flatten() {
            // One credential per request: with several headers, which one counts would
            // depend on who reads them.
            let single = request
                .headers()
                .get_all(http::header::AUTHORIZATION)
                .iter()
                .count()
                == 1;
            match self.keys.identify(key).filter(|_| single) {
                Some(named) => {
                    identity = Some(named);
                    request.headers_mut().remove(http::header::AUTHORIZATION);
                }
                None => {
                    let mut refused = status::unknown_api_key().into_http();
                    // Guessing keys costs the guesser its connection, like a reset.
                    refused.extensions_mut().insert(Wasted);
                    return Either::Right(ready(Ok(refused)));
                }
            }
        }
        if let Some(identity) = identity {
            tracing::Span::current().record("caller", &*identity.identity);
            request.extensions_mut().insert(identity);
        }
        Either::Left(self.inner.call(request))
    }
}

/// The key of an `authorization: Bearer <key>` header.
fn bearer_key(headers: &http::HeaderMap) -> Option<&[u8]> {
    let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_known_by_its_hash_and_an_unknown_one_is_not() {
        let hash = |key: &str| KeyHash(Sha256::digest(key).into());
        let keys = ApiKeys::new(&BTreeMap::from([
            ("ci".to_owned(), hash("s3cret")),
            ("ops".to_owned(), hash("other")),
        ]));
        let named = |key: &[u8]| keys.identify(key).map(|caller| caller.identity.to_string());
        assert_eq!(named(b"s3cret").as_deref(), Some("key:ci"));
        assert_eq!(named(b"other").as_deref(), Some("key:ops"));
        assert_eq!(named(b"s3cre"), None);
        assert_eq!(named(b""), None);
    }

    #[test]
    fn only_a_bearer_header_carries_a_key() {
        let headers = |value: &str| {
            let mut map = http::HeaderMap::new();
            map.insert(http::header::AUTHORIZATION, value.parse().unwrap());
            map
        };
        assert_eq!(bearer_key(&headers("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer_key(&headers("bearer  abc ")), Some(&b"abc"[..]));
        assert_eq!(bearer_key(&headers("Basic abc")), None);
        assert_eq!(bearer_key(&headers("Bearer")), None);
        assert_eq!(bearer_key(&http::HeaderMap::new()), None);
    }

    /// A certificate with these SANs (`uri:`/`dns:` prefixed) and CN, signed by itself.
    fn certificate(sans: &[String], cn: Option<&str>) -> Vec<u8> {
        use rcgen::{CertificateParams, DnType, KeyPair, SanType};
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.subject_alt_names = sans
            .iter()
            .map(|san| match san.split_once(':').unwrap() {
                ("uri", rest) => SanType::URI(rest.try_into().unwrap()),
                (_, rest) => SanType::DnsName(rest.try_into().unwrap()),
            })
            .collect();
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn no_certificate_can_claim_an_api_key_identity() {
        let der = certificate(&["uri:key:admin".to_owned()], Some("key:admin"));
        assert_eq!(from_certificate(&der), None);
    }

    #[test]
    fn no_certificate_can_claim_a_plugins_identity() {
        for name in ["plugin:default/frontdesk", "local:plugin:acme/caller"] {
            let der = certificate(&[format!("uri:{name}")], Some(name));
            assert_eq!(from_certificate(&der), None, "{name}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// The identity is the first URI SAN, else the first DNS SAN, else the CN.
        #[test]
        fn a_certificate_names_its_first_uri_san_then_dns_san_then_cn(
            sans in proptest::collection::vec(
                "(uri:spiffe://[a-z]{1,8}\\.org/[a-z]{1,8}|dns:[a-z]{1,8}\\.example)", 0..4),
            cn in proptest::option::of("[a-zA-Z0-9 ]{1,16}"),
        ) {
            let der = certificate(&sans, cn.as_deref());
            let first = |prefix: &str| {
                sans.iter().find_map(|san| san.strip_prefix(prefix).map(str::to_owned))
            };
            let expected = first("uri:").or_else(|| first("dns:")).or(cn);
            proptest::prop_assert_eq!(from_certificate(&der), expected);
        }

        /// Any bytes, or a real certificate cut or corrupted: an answer, never a panic.
        #[test]
        fn any_bytes_are_a_certificate_or_none(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            cut in 0usize..2000,
            flip in 0usize..2000,
        ) {
            let _ = from_certificate(&bytes);
            let mut der = certificate(&["uri:spiffe://a.org/b".to_owned()], Some("c"));
            let at = flip % der.len();
            der[at] ^= 0x5a;
            let _ = from_certificate(&der);
            der.truncate(cut % der.len());
            let _ = from_certificate(&der);
        }
    }
}
