//! `[sources.<tenant>]`: plugins a tenant gets from an OCI registry besides its folder,
//! each `repository:tag` under the source's `oci` prefix, pulled into the tenant's
//! folder and polled for new digests.

use std::time::Duration;

use serde::Deserialize;

use super::Invalid;

/// Bounds of `poll_interval`: often enough to deploy in seconds, seldom enough not to
/// hammer a registry.
const MIN_POLL: Duration = Duration::from_secs(1);
const MAX_POLL: Duration = Duration::from_secs(24 * 3600);

/// One tenant's OCI source.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OciSource {
    /// The registry and the namespace the plugins' repositories are under
    /// (`registry.example/acme`).
    pub oci: String,
    /// Each plugin, as `repository:tag` under `oci` (`users:1.4`, `greeter:stable`).
    pub plugins: Vec<String>,
    /// How often each tag is checked for a new digest.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Plain HTTP to the registry: a loopback or test registry, never a shared network.
    #[serde(default)]
    pub insecure: bool,
    /// PEM CA certificates the registry's certificate may chain to, besides the system's
    /// roots: a private registry's own CA.
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
}

fn default_poll() -> Duration {
    Duration::from_secs(30)
}

impl OciSource {
    /// Each plugin's full reference and the file it is pulled into (`<repository>.wasm`,
    /// the repository's last path segment).
    pub fn artifacts(&self) -> Vec<(String, String)> {
        let prefix = self.oci.trim_end_matches('/');
        self.plugins
            .iter()
            .map(|plugin| {
                let repository = plugin.split([':', '@']).next().unwrap_or(plugin);
                let name = repository.rsplit('/').next().unwrap_or(repository);
                (format!("{prefix}/{plugin}"), format!("{name}.wasm"))
            })
            .collect()
    }

    /// Refuses a source with nothing to pull, a plugin without a tag, two plugins into
    /// one file, an interval out of bounds, or a CA for plain HTTP.
    pub(crate) fn validate(&self, table: &str) -> Result<(), Invalid> {
        let invalid = |key: &str, reason: String| Invalid {
            key: format!("{table}.{key}"),
            reason,
        };
        if self.oci.trim().is_empty() || self.oci.contains("://") {
            return Err(invalid(
                "oci",
                format!("{:?}: expected registry/namespace, no scheme", self.oci),
            ));
        }
        if self.plugins.is_empty() {
            return Err(invalid("plugins", "lists no plugin".into()));
        }
        let mut files = std::collections::BTreeSet::new();
        for (plugin, (reference, file)) in self.plugins.iter().zip(self.artifacts()) {
            let tagged = plugin
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':'))
                || plugin.contains('@');
            if !tagged {
                return Err(invalid(
                    "plugins",
                    format!("{plugin:?} names no tag (repository:tag or repository@sha256:...)"),
                ));
            }
            if let Err(error) = reference.parse::<oci_client::Reference>() {
                return Err(invalid("plugins", format!("{reference:?}: {error}")));
            }
            if !files.insert(file.clone()) {
                return Err(invalid(
                    "plugins",
                    format!("two plugins would be pulled into {file}"),
                ));
            }
        }
        if !(MIN_POLL..=MAX_POLL).contains(&self.poll_interval) {
            return Err(invalid(
                "poll_interval",
                "must be between 1s and 24h".into(),
            ));
        }
        if self.insecure && self.ca.is_some() {
            return Err(invalid(
                "ca",
                "is for TLS, and insecure = true speaks plain HTTP".into(),
            ));
        }
        Ok(())
    }
}
