//! Re-reading the config file while serving, on SIGHUP or (with `host.watch`) when the
//! file changes: the new limits, rules, grants and config values apply to every plugin,
//! reloaded behind the calls in flight; a config that does not parse or validate is
//! refused with one line and the running one stays. Settings of the host itself
//! (addresses, TLS, the sandbox pool, the key-value backend) apply at the next start.

use std::path::PathBuf;
use std::sync::Arc;

use plugrpc_runtime::Engine;

use crate::config::{ConfigError, HostConfig};
use crate::registry::{LoadReport, Registry, RegistryError};

/// Re-reads the host's config file on demand; cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    registry: Arc<Registry>,
    engine: Engine,
    /// The config the host started with: what host-wide settings stay.
    started: Arc<HostConfig>,
}

/// Why a reload left the running config in place.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The host was started without a config file.
    #[error("the host was started without --config: there is no file to re-read")]
    NoFile,
    /// The file does not parse or validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The plugins folder could not be read.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl Reloader {
    pub(crate) fn new(registry: Arc<Registry>, engine: Engine, started: Arc<HostConfig>) -> Self {
        Self {
            registry,
            engine,
            started,
        }
    }

    /// Re-reads the config file and reloads every plugin under it; what loaded and what
    /// was refused.
    pub async fn reload(&self) -> Result<LoadReport, ReloadError> {
        let file = self.started.source.clone().ok_or(ReloadError::NoFile)?;
        let mut config = HostConfig::from_file(&file)?;
        // The folder being served, whatever the file says now (as `--plugins` may have
        // set it at start).
        config.plugins_dir.clone_from(&self.started.plugins_dir);
        for setting in self.restart_only(&config) {
            tracing::warn!(
                "{setting} changed in {}: it applies at the next start",
                file.display()
            );
        }
        Ok(self.registry.reconfigure(&self.engine, config).await?)
    }

    /// Re-reads the config file because of `trigger` (a signal, a change to the file) and
    /// logs what came of it, one line either way.
    pub async fn apply(&self, trigger: &str) {
        match self.reload().await {
            Ok(report) => tracing::info!(
                event = "config reloaded",
                serving = report.loaded.len(),
                refused = report.refused.len(),
                "{trigger}: config reloaded; every plugin now runs under it ({} serving, {} refused)",
                report.loaded.len(),
                report.refused.len()
            ),
            Err(error) => tracing::warn!(
                event = "config refused",
                "{trigger}: config not reloaded, the running one stays: {}",
                crate::one_line(&error)
            ),
        }
    }

    /// The host-wide settings `config` changes, which a running host cannot.
    fn restart_only(&self, config: &HostConfig) -> Vec<&'static str> {
        let was = &self.started;
        [
            ("listen", was.listen != config.listen),
            ("host.admin_listen", was.admin_listen != config.admin_listen),
            ("host.sandboxes", was.sandboxes != config.sandboxes),
            ("host.guest_stack", was.guest_stack != config.guest_stack),
            ("host.data_dir", was.data_dir != config.data_dir),
            ("host.metrics", was.metrics != config.metrics),
            ("[tls]", was.tls.is_some() != config.tls.is_some()),
            ("[kv] backend", was.kv.backend != config.kv.backend),
            ("[sources]", was.sources != config.sources),
            ("[tracing]", was.tracing != config.tracing),
        ]
        .into_iter()
        .filter_map(|(setting, changed)| changed.then_some(setting))
        .collect()
    }

    /// The config file a reload re-reads, if the host has one.
    pub fn file(&self) -> Option<PathBuf> {
        self.started.source.clone()
    }
}
