//! `[tracing]`: where the host sends its spans (OTLP over gRPC), when anywhere.

use std::time::Duration;

use serde::Deserialize;

use super::Invalid;

/// Span export, as `[tracing]` sets it: none until `otlp` names a collector.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// The OTLP/gRPC collector (`http://127.0.0.1:4317`); no spans are made without one.
    pub otlp: Option<String>,
    /// The `service.name` the spans carry.
    pub service_name: String,
    /// How often batched spans go to the collector.
    #[serde(with = "humantime_serde")]
    pub export_interval: Duration,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp: None,
            service_name: "plugrpc".into(),
            export_interval: Duration::from_secs(1),
        }
    }
}

impl TracingConfig {
    /// Refuses a collector address that is not `http://host:port`.
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let invalid = |reason: String| Invalid {
            key: "tracing.otlp".into(),
            reason,
        };
        if let Some(otlp) = &self.otlp {
            let uri: http::Uri = otlp
                .parse()
                .map_err(|error| invalid(format!("{otlp:?} is not a URL: {error}")))?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                return Err(invalid(format!(
                    "{otlp:?}: expected http://host:port (an OTLP/gRPC collector)"
                )));
            }
        }
        if self.export_interval.is_zero() {
            return Err(Invalid {
                key: "tracing.export_interval".into(),
                reason: "must be more than 0".into(),
            });
        }
        Ok(())
    }
}
