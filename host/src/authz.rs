//! Who may call what: `allow` rules of a tenant, of one of its plugins and of one of its
//! methods, each a list of identity patterns (`*` matches any run of characters, so
//! `spiffe://example.org/ns/acme/*` or `key:ci`). A tenant with no rule anywhere is open
//! to any caller the edge admits; once it has one, a call must match every rule list on
//! its way (tenant, plugin, method: each narrows the one before), and a call with none on
//! its way is refused. Compiled once per route when the routing table is built.

use std::sync::Arc;

/// One identity pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pattern(String);

impl Pattern {
    pub(crate) fn new(text: &str) -> Self {
        Self(text.to_owned())
    }

    /// Whether `identity` matches: `*` stands for any run of characters, all else for
    /// itself.
    pub(crate) fn matches(&self, identity: &str) -> bool {
        glob(self.0.as_bytes(), identity.as_bytes())
    }
}

/// `*`-only glob matching, linear in practice: on a mismatch, the last `*` takes one more
/// byte.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// The rules on one route's way.
#[derive(Clone, Debug, Default)]
pub(crate) enum Rules {
    /// The tenant has no rule: any caller.
    #[default]
    Open,
    /// Every list must have a pattern the caller matches (none: nobody may call).
    AllOf(Arc<[Vec<Pattern>]>),
}

/// Why a call is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    /// The route needs an identity and the call has none.
    Anonymous,
    /// The caller's identity is not allowed.
    NotAllowed,
}

impl Rules {
    /// Rules for a route of a tenant that `has_rules` anywhere, from the lists on its way.
    pub(crate) fn new(has_rules: bool, lists: Vec<Vec<Pattern>>) -> Self {
        if has_rules {
            Self::AllOf(lists.into())
        } else {
            Self::Open
        }
    }

    /// Whether `identity` may call the route.
    pub(crate) fn check(&self, identity: Option<&str>) -> Result<(), Denied> {
        let Self::AllOf(lists) = self else {
            return Ok(());
        };
        let identity = identity.ok_or(Denied::Anonymous)?;
        let allowed = !lists.is_empty()
            && lists
                .iter()
                .all(|list| list.iter().any(|pattern| pattern.matches(identity)));
        allowed.then_some(()).ok_or(Denied::NotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_star_stands_for_any_run_and_the_rest_for_itself() {
        let p = Pattern::new;
        assert!(p("spiffe://example.org/ns/acme/*").matches("spiffe://example.org/ns/acme/api"));
        assert!(p("spiffe://example.org/ns/acme/*").matches("spiffe://example.org/ns/acme/"));
        assert!(!p("spiffe://example.org/ns/acme/*").matches("spiffe://example.org/ns/acmex"));
        assert!(p("key:ci").matches("key:ci"));
        assert!(!p("key:ci").matches("key:cid"));
        assert!(p("*").matches(""));
        assert!(p("*.example.org").matches("a.b.example.org"));
        assert!(p("a*b*c").matches("aXbYbZc"));
        assert!(!p("a*b*c").matches("aXbYbZ"));
    }

    #[test]
    fn rules_narrow_and_a_tenant_with_rules_denies_what_none_allows() {
        let list = |patterns: &[&str]| patterns.iter().map(|p| Pattern::new(p)).collect();
        assert_eq!(Rules::new(false, vec![]).check(None), Ok(()));
        let narrowed = Rules::new(true, vec![list(&["key:*"]), list(&["key:ci"])]);
        assert_eq!(narrowed.check(Some("key:ci")), Ok(()));
        assert_eq!(narrowed.check(Some("key:ops")), Err(Denied::NotAllowed));
        assert_eq!(narrowed.check(None), Err(Denied::Anonymous));
        assert_eq!(
            Rules::new(true, vec![]).check(Some("key:ci")),
            Err(Denied::NotAllowed),
            "a tenant with rules elsewhere denies a route with none"
        );
    }

    /// A reference matcher: the obvious recursive definition.
    fn reference(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|i| reference(rest, &text[i..])),
            Some((c, rest)) => text.first() == Some(c) && reference(rest, &text[1..]),
        }
    }

    proptest! {
        /// The matcher agrees with the reference on any pattern and text.
        #[test]
        fn the_matcher_agrees_with_the_definition(
            pattern in "[ab*/:]{0,10}",
            text in "[ab/:]{0,12}",
        ) {
            prop_assert_eq!(glob(pattern.as_bytes(), text.as_bytes()), reference(pattern.as_bytes(), text.as_bytes()));
        }

        /// An identity cut anywhere with `*` put in matches; with no `*`, only itself.
        #[test]
        fn an_identity_matches_itself_with_stars_put_in(
            identity in "\\PC{0,30}",
            cuts in proptest::collection::vec(0usize..31, 0..4),
        ) {
            prop_assert!(Pattern::new(&identity).matches(&identity));
            let mut pattern = identity.clone();
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| identity.is_char_boundary(c.min(identity.len()))).map(|c| c.min(identity.len())).collect();
            cuts.sort_unstable();
            for cut in cuts.into_iter().rev() {
                pattern.insert(cut, '*');
            }
            prop_assert!(Pattern::new(&pattern).matches(&identity), "{pattern:?} {identity:?}");
        }
    }
}
