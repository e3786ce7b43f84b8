//! What the host gives plugins beyond their calls, made once per host: the key-value
//! backend every granted plugin's buckets live in, the door `local` outbound calls take
//! into the host's own stack, and each plugin's [`Grants`] (config values, key-value
//! grant, outbound targets) as its config table says, built when the plugin loads.

mod dialer;

use std::sync::Arc;

use plugrpc_runtime::{Backend, BackendError, Grants, KvGrant, OutboundGrant};

pub(crate) use dialer::{LocalDoor, LocalStack};

use crate::config::{HostConfig, Invalid, KvBackendKind, KvTable};
use crate::metrics::Metrics;
use crate::traces::Traces;
use dialer::PluginDialer;

/// Why the host's capabilities could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    /// The key-value backend could not be opened.
    #[error("the key-value store ({what}): {source}")]
    Kv {
        /// Which store, e.g. `embedded, data/kv.redb`.
        what: String,
        /// Why.
        source: BackendError,
    },
}

/// The host's capabilities, shared by every plugin load; cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Capabilities {
    /// The key-value backend, when any plugin is granted a store.
    kv: Option<Backend>,
    /// Where `local` outbound calls enter the host.
    local: LocalDoor,
    /// Where outbound calls are counted, when the host keeps metrics.
    metrics: Option<Arc<Metrics>>,
    /// Where outbound calls' spans go, when the host traces.
    traces: Option<Arc<Traces>>,
}

impl Capabilities {
    /// Opens what `config` grants any plugin: the key-value backend when a plugin has a
    /// `[kv]` table (a Redis that is down is not an error: its calls fail until it is up).
    pub(crate) async fn open(
        config: &HostConfig,
        metrics: Option<Arc<Metrics>>,
        traces: Option<Arc<Traces>>,
    ) -> Result<Self, CapabilityError> {
        if !config.grants_kv() {
            return Ok(Self {
                metrics,
                traces,
                ..Self::default()
            });
        }
        let backend = match config.kv.backend {
            KvBackendKind::Embedded => {
                Backend::embedded(&config.data_dir).map_err(|source| CapabilityError::Kv {
                    what: format!("embedded, under {}", config.data_dir.display()),
                    source,
                })?
            }
            KvBackendKind::Redis => {
                let url = config.kv.url.as_deref().unwrap_or_default();
                Backend::redis(url)
                    .await
                    .map_err(|source| CapabilityError::Kv {
                        what: "redis".into(),
                        source,
                    })?
            }
        };
        tracing::info!(backend = %backend.describe(), "key-value store open");
        Ok(Self {
            kv: Some(backend),
            local: LocalDoor::default(),
            metrics,
            traces,
        })
    }

    /// The door `local` outbound calls take into the host's stack.
    pub(crate) fn local_door(&self) -> &LocalDoor {
        &self.local
    }

    /// What `config` grants `tenant`'s plugin `name`: its config values and, as its table
    /// says, its buckets and outbound targets; an error is one line naming the key.
    pub(crate) fn grants(
        &self,
        config: &HostConfig,
        tenant: &str,
        name: &str,
    ) -> Result<Grants, String> {
        let table = config.plugin_table(tenant, name);
        let key = HostConfig::plugin_key(tenant, name);
        let values = config
            .config_values(tenant, name)
            .map_err(|invalid| invalid.to_string())?;
        let kv = match table.and_then(|t| t.kv.as_ref()) {
            None => None,
            Some(kv) => Some(
                self.kv_grant(kv, tenant, name, &key)
                    .map_err(|invalid| invalid.to_string())?,
            ),
        };
        let outbound = match table.filter(|t| !t.outbound.is_empty()) {
            None => None,
            Some(table) => {
                let dialer = PluginDialer::new(
                    &table.outbound,
                    tenant,
                    name,
                    tenant_authority(config, tenant),
                    &self.local,
                    self.metrics.as_ref().map(|m| m.plugin(tenant, name)),
                    self.traces.clone(),
                )
                .map_err(|error| format!("{key}: {error}"))?;
                let limits = config.tenant_limits_for(tenant, name);
                Some(OutboundGrant::new(
                    Arc::new(dialer),
                    limits.max_concurrent_outbound_calls,
                ))
            }
        };
        Ok(Grants {
            config: crate::config::to_guest(values),
            kv,
            outbound,
            table: key,
        })
    }

    /// A key-value grant for a plugin whose `[kv]` table is `table`.
    fn kv_grant(
        &self,
        table: &KvTable,
        tenant: &str,
        name: &str,
        key: &str,
    ) -> Result<KvGrant, Invalid> {
        let Some(backend) = &self.kv else {
            return Err(Invalid {
                key: format!("{key}.kv"),
                reason: "was added after the host started: restart it to open the key-value store"
                    .into(),
            });
        };
        Ok(KvGrant::new(
            backend.clone(),
            tenant,
            name,
            table.shared.clone(),
            table.limits(),
        ))
    }
}

/// A host `tenant` answers for, as local calls name it: its first `hosts` entry, a
/// wildcard's `*` read as `local` (`*.acme.test` -> `local.acme.test`); none when the
/// tenant answers for any host.
fn tenant_authority(config: &HostConfig, tenant: &str) -> Option<http::uri::Authority> {
    let host = config.tenants.get(tenant)?.hosts.first()?;
    let host = match host.strip_prefix("*.") {
        Some(domain) => format!("local.{domain}"),
        None => host.clone(),
    };
    host.parse().ok()
}
