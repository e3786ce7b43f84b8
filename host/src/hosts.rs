//! Which tenant a request is for when two serve the same service: `[tenants.<t>] hosts`,
//! patterns of the request's `:authority` host (`acme.example.com`, or
//! `*.acme.example.com` for any name under it), and the parser that takes the host out
//! of an authority (`host`, `host:port`, `[v6]:port`; case-insensitive).

use std::fmt;

/// One `hosts` entry, lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// This host exactly.
    Exact(String),
    /// Any host ending in `.<suffix>` (not the suffix itself).
    Under(String),
}

impl HostPattern {
    /// The pattern `text` writes, or why it is not one.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.to_ascii_lowercase();
        let (pattern, name) = match text.strip_prefix("*.") {
            Some(suffix) => (Self::Under(suffix.to_owned()), suffix.to_owned()),
            None => (Self::Exact(text.clone()), text.clone()),
        };
        let fine = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            });
        if fine {
            Ok(pattern)
        } else {
            Err(format!(
                "{text:?} is not a host name, or *. and one (IP addresses are not supported)"
            ))
        }
    }

    /// Whether `host` (lowercase, as [`host_of`] gives it) matches.
    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host == name,
            Self::Under(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }

    /// Whether some host matches both.
    pub(crate) fn overlaps(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exact(a), _) => other.matches(a),
            (_, Self::Exact(b)) => self.matches(b),
            (Self::Under(a), Self::Under(b)) => {
                a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Under(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// The host of an authority, lowercase and without its port or trailing dot; `None`
/// when it has none.
pub(crate) fn host_of(authority: &str) -> Option<String> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // [v6] or [v6]:port
        &rest[..rest.find(']')?]
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            Some(_) => return None,
            None => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn authorities_give_their_host() {
        assert_eq!(
            host_of("Acme.Example.com:443").as_deref(),
            Some("acme.example.com")
        );
        assert_eq!(
            host_of("acme.example.com.").as_deref(),
            Some("acme.example.com")
        );
        assert_eq!(host_of("[::1]:50051").as_deref(), Some("::1"));
        assert_eq!(host_of("localhost").as_deref(), Some("localhost"));
        assert_eq!(host_of(""), None);
        assert_eq!(host_of(":80"), None);
        assert_eq!(host_of("[::1"), None);
        assert_eq!(host_of("a:b"), None);
    }

    #[test]
    fn patterns_match_and_overlap_as_written() {
        let p = |text: &str| HostPattern::parse(text).unwrap();
        assert!(p("*.acme.example.com").matches("api.acme.example.com"));
        assert!(!p("*.acme.example.com").matches("acme.example.com"));
        assert!(!p("*.acme.example.com").matches("xacme.example.com"));
        assert!(p("Acme.Example.com").matches("acme.example.com"));
        assert!(p("*.example.com").overlaps(&p("*.acme.example.com")));
        assert!(p("api.acme.example.com").overlaps(&p("*.acme.example.com")));
        assert!(!p("acme.example.com").overlaps(&p("*.acme.example.com")));
        assert!(!p("*.acme.example.com").overlaps(&p("*.globex.example.com")));
        for bad in ["", "*.", "a..b", "a b", "*.*.a", "acme.example.com:443"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// Any authority: a host or none, never a panic; a host never has a port.
        #[test]
        fn any_authority_parses_or_is_none(authority in "\\PC{0,40}") {
            if let Some(host) = host_of(&authority) {
                prop_assert!(!host.is_empty());
                prop_assert_eq!(host.to_ascii_lowercase(), host);
            }
        }

        /// `name:port` and `NAME` give `name`; overlap agrees with a host matching both.
        #[test]
        fn names_round_trip_and_overlap_means_a_shared_host(
            labels in proptest::collection::vec("[a-z0-9]{1,5}", 1..4),
            port in 0u16..,
            other in proptest::collection::vec("[a-z0-9]{1,5}", 1..4),
        ) {
            let name = labels.join(".");
            prop_assert_eq!(host_of(&format!("{name}:{port}")), Some(name.clone()));
            prop_assert_eq!(host_of(&name.to_ascii_uppercase()), Some(name.clone()));
            let under = HostPattern::parse(&format!("*.{}", other.join("."))).unwrap();
            let exact = HostPattern::parse(&name).unwrap();
            prop_assert_eq!(exact.overlaps(&under), under.matches(&name));
        }
    }
}
