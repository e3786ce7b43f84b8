//! `[cors]` and `[tenants.<t>.cors]`: which web origins may call from a browser. A
//! tenant's table applies to its routes (its `hosts`), `[cors]` to the default tenant's
//! and to any tenant without one. No origin is allowed until one is listed.

use std::time::Duration;

use serde::Deserialize;

use super::Invalid;

/// Cross-origin access for browsers, as one `cors` table sets it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins (`https://app.example`) whose pages may call; `"*"` for any.
    pub allowed_origins: Vec<String>,
    /// Request headers a page may send beyond the protocols' own and `authorization`.
    pub allowed_headers: Vec<String>,
    /// Response headers a page may read beyond the protocols' status headers.
    pub exposed_headers: Vec<String>,
    /// How long a browser may keep a preflight's answer.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Whether pages may send cookies and client certificates (`"*"` is then refused).
    pub allow_credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_headers: Vec::new(),
            exposed_headers: Vec::new(),
            max_age: Duration::from_secs(7200),
            allow_credentials: false,
        }
    }
}

impl CorsConfig {
    /// Checks the table named `table`.
    pub(crate) fn validate(&self, table: &str) -> Result<(), Invalid> {
        for origin in &self.allowed_origins {
            let valid = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.ends_with('/')
                    && http::HeaderValue::from_str(origin).is_ok());
            if !valid {
                return Err(Invalid {
                    key: format!("{table}.allowed_origins"),
                    reason: format!(
                        "{origin:?} is not an origin: scheme://host[:port] with no path, or \"*\""
                    ),
                });
            }
        }
        if self.allow_credentials && self.allowed_origins.iter().any(|o| o == "*") {
            return Err(Invalid {
                key: format!("{table}.allow_credentials"),
                reason: "browsers refuse credentials with a \"*\" origin: list the origins".into(),
            });
        }
        for header in self.allowed_headers.iter().chain(&self.exposed_headers) {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(Invalid {
                    key: table.to_owned(),
                    reason: format!("{header:?} is not a header name"),
                });
            }
        }
        Ok(())
    }
}
