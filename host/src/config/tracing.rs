//! `[tracing]`: where the host sends its spans (OTLP over gRPC), when anywhere.

use std::time::Duration;

use serde::Deserialize;

use super::{Invalid, OutboundTls};

/// Span export, as `[tracing]` sets it: none until `otlp` names a collector.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// The OTLP/gRPC collector (`http://127.0.0.1:4317`, or `https://` for TLS); no
    /// spans are made without one.
    pub otlp: Option<String>,
    /// `[tracing.tls]`: how an `https` collector is trusted (`ca`, else the public web
    /// roots) and the client certificate shown to it, as outbound targets set them.
    pub tls: Option<OutboundTls>,
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
            tls: None,
            service_name: "plugrpc".into(),
            export_interval: Duration::from_secs(1),
        }
    }
}

impl TracingConfig {
    /// Whether the collector is reached over TLS (an `https` URL).
    pub(crate) fn is_https(&self) -> bool {
        self.otlp
            .as_deref()
            .and_then(|otlp| otlp.parse::<http::Uri>().ok())
            .is_some_and(|uri| uri.scheme() == Some(&http::uri::Scheme::HTTPS))
    }

    /// Refuses a collector address that is not `http(s)://host:port`, and TLS settings
    /// for a collector that is not `https`.
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let invalid = |reason: String| Invalid {
            key: "tracing.otlp".into(),
            reason,
        };
        if let Some(otlp) = &self.otlp {
            let uri: http::Uri = otlp
                .parse()
                .map_err(|error| invalid(format!("{otlp:?} is not a URL: {error}")))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
                return Err(invalid(format!(
                    "{otlp:?}: expected http://host:port or https://host:port (an OTLP/gRPC collector)"
                )));
            }
        }
        if let Some(table) = &self.tls {
            if !self.is_https() {
                return Err(Invalid {
                    key: "tracing.tls".into(),
                    reason: "applies to an https:// collector (tracing.otlp)".into(),
                });
            }
            table.validate("tracing.tls")?;
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
