//! Tenants' OCI sources (`[sources.<tenant>]`): each plugin's tag is polled for a new
//! digest; a new one is pulled pinned to that digest and checked, written into the
//! tenant's folder whole (a temporary file renamed over the old), and the registry
//! synced: the same load, compatibility check and swap as a file dropped in, refusals
//! included. The digest serving is kept beside the file, so a restart does not pull
//! again. A registry that cannot be reached never stops what serves: the source retries
//! with backoff (from 1 s, doubling, up to its poll interval), and `/readyz` and the
//! metrics say so until it answers again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use plugrpc_runtime::Engine;
use tokio::task::JoinHandle;

use crate::config::{HostConfig, OciSource};
use crate::metrics::Metrics;
use crate::oci::{Artifact, OciError, Transport};
use crate::registry::Registry;

/// The first backoff after a failed round.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// How long the pulls before the host first serves may take, all sources together.
const FIRST_ROUND: Duration = Duration::from_secs(60);

/// Why the sources cannot start: the host refuses to.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    /// A tenant folder to pull into could not be made.
    #[error("cannot make the tenant folder {}: {source}", .dir.display())]
    Folder {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A source's CA file does not load.
    #[error("sources.{tenant}.ca: {}: {problem}", .path.display())]
    Ca {
        /// The source's tenant.
        tenant: String,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

/// Which sources are failing now, and since when, for `/readyz`.
#[derive(Default)]
pub(crate) struct SourceHealth {
    failing: Mutex<BTreeMap<String, (SystemTime, String)>>,
}

impl SourceHealth {
    /// One line per failing source: its tenant, since when, and why.
    pub(crate) fn report(&self) -> Vec<String> {
        let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        failing
            .iter()
            .map(|(tenant, (since, why))| {
                format!(
                    "source {tenant}: failing since {}: {why}",
                    humantime::format_rfc3339_seconds(*since)
                )
            })
            .collect()
    }

    fn is_failing(&self, tenant: &str) -> bool {
        let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        failing.contains_key(tenant)
    }

    fn failed(&self, tenant: &str, why: String) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        let since = failing
            .get(tenant)
            .map_or_else(SystemTime::now, |(since, _)| *since);
        failing.insert(tenant.to_owned(), (since, why));
    }

    fn recovered(&self, tenant: &str) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        failing.remove(tenant);
    }
}

/// One plugin of a source: where it comes from, where it goes, what serves now.
struct Pulled {
    reference: String,
    file: PathBuf,
    digest: Option<String>,
    artifact: Option<Artifact>,
}

impl Pulled {
    fn new(reference: String, file: PathBuf) -> Self {
        // A file pulled before, with its digest beside it: serving that, no need to pull.
        let digest = file
            .exists()
            .then(|| std::fs::read_to_string(digest_file(&file)).ok())
            .flatten()
            .map(|digest| digest.trim().to_owned());
        Self {
            reference,
            file,
            digest,
            artifact: None,
        }
    }

    /// Pulls the artifact if its tag moved; whether the file changed.
    async fn refresh(&mut self, transport: &Transport) -> Result<bool, OciError> {
        if self.artifact.is_none() {
            self.artifact = Some(Artifact::new(&self.reference, transport).await?);
        }
        let artifact = self.artifact.as_ref().expect("made above");
        let digest = artifact.digest().await?;
        if self.digest.as_deref() == Some(digest.as_str()) {
            return Ok(false);
        }
        let wasm = artifact.pull(&digest).await?;
        crate::watch::write_whole(&self.file, &wasm).map_err(|error| OciError::NotWasm {
            reference: self.reference.clone(),
            reason: format!("writing {}: {error}", self.file.display()),
        })?;
        let _ = std::fs::write(digest_file(&self.file), &digest);
        tracing::info!(
            event = "pulled",
            reference = %self.reference,
            digest = %digest,
            file = %self.file.display(),
            "plugin pulled from its registry"
        );
        self.digest = Some(digest);
        Ok(true)
    }
}

/// One tenant's source, with its plugins.
struct Source {
    tenant: String,
    config: OciSource,
    transport: Transport,
    plugins: Vec<Pulled>,
}

impl Source {
    /// The source, its tenant folder made and its CA file read.
    fn new(tenant: &str, config: &OciSource, dir: &Path) -> Result<Self, SourcesError> {
        std::fs::create_dir_all(dir).map_err(|source| SourcesError::Folder {
            dir: dir.to_owned(),
            source,
        })?;
        let transport =
            Transport::new(config.insecure, config.ca.as_deref()).map_err(|problem| {
                SourcesError::Ca {
                    tenant: tenant.to_owned(),
                    path: config.ca.clone().unwrap_or_default(),
                    problem,
                }
            })?;
        let plugins = config
            .artifacts()
            .into_iter()
            .map(|(reference, file)| Pulled::new(reference, dir.join(file)))
            .collect();
        Ok(Self {
            tenant: tenant.to_owned(),
            config: config.clone(),
            transport,
            plugins,
        })
    }

    /// One look at every plugin's tag; whether any file changed, or the first failure
    /// (the plugins before it stay pulled).
    async fn round(&mut self, metrics: Option<&Metrics>) -> Result<bool, OciError> {
        let mut changed = false;
        for plugin in &mut self.plugins {
            let refreshed = plugin.refresh(&self.transport).await;
            if let Some(metrics) = metrics {
                let result = match &refreshed {
                    Ok(true) => "pulled",
                    Ok(false) => "unchanged",
                    Err(_) => "failed",
                };
                metrics.source(&self.tenant, result);
            }
            changed |= refreshed?;
        }
        Ok(changed)
    }
}

/// The running sources; their pollers stop when this is dropped.
pub(crate) struct Sources {
    sources: Vec<Source>,
    health: Arc<SourceHealth>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Sources {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Sources {
    /// The sources `config` names, their tenant folders made, nothing pulled yet.
    pub(crate) fn new(config: &HostConfig) -> Result<Self, SourcesError> {
        let mut sources = Vec::new();
        for (tenant, source) in &config.sources {
            sources.push(Source::new(tenant, source, &config.tenant_dir(tenant))?);
        }
        Ok(Self {
            sources,
            health: Arc::default(),
            tasks: Vec::new(),
        })
    }

    /// Stops the pollers and waits until they are gone, with the registry they held.
    pub(crate) async fn stop(mut self) {
        for task in std::mem::take(&mut self.tasks) {
            task.abort();
            let _ = task.await;
        }
    }

    /// Which sources are failing, for the admin listener.
    pub(crate) fn health(&self) -> Arc<SourceHealth> {
        self.health.clone()
    }

    /// The first round, before the host loads its folder: what can be pulled in a
    /// minute is there at the first load; what cannot is logged, and the files pulled
    /// before (if any) serve meanwhile.
    pub(crate) async fn first_round(&mut self, metrics: Option<&Metrics>) {
        let health = &self.health;
        let rounds = self.sources.iter_mut().map(|source| async move {
            if let Err(error) = source.round(metrics).await {
                let why = crate::one_line(&error);
                tracing::warn!(tenant = %source.tenant, "plugin source: {why}; retrying");
                health.failed(&source.tenant, why);
            }
        });
        if tokio::time::timeout(FIRST_ROUND, futures::future::join_all(rounds))
            .await
            .is_err()
        {
            tracing::warn!(
                "plugin sources: the first pulls took over {FIRST_ROUND:?}; serving what is here"
            );
        }
    }

    /// Polls every source from now on, syncing `registry` when a plugin changed.
    pub(crate) fn start(
        &mut self,
        registry: Arc<Registry>,
        engine: Engine,
        config: Arc<HostConfig>,
    ) {
        for mut source in std::mem::take(&mut self.sources) {
            let (registry, engine, config) = (registry.clone(), engine.clone(), config.clone());
            let health = self.health.clone();
            self.tasks.push(tokio::spawn(async move {
                let poll = source.config.poll_interval;
                let mut backoff = FIRST_BACKOFF;
                // The first round's failure retries soon, not a poll interval later.
                let mut wait = if health.is_failing(&source.tenant) {
                    backoff
                } else {
                    poll
                };
                loop {
                    tokio::time::sleep(wait).await;
                    let metrics = registry.metrics().cloned();
                    match source.round(metrics.as_deref()).await {
                        Ok(changed) => {
                            if let Some(metrics) = &metrics {
                                metrics.source_up(&source.tenant, true);
                            }
                            health.recovered(&source.tenant);
                            if changed && let Err(error) = registry.sync(&engine, &config).await {
                                tracing::warn!("plugin source: {}", crate::one_line(&error));
                            }
                            backoff = FIRST_BACKOFF;
                            wait = poll;
                        }
                        Err(error) => {
                            if let Some(metrics) = &metrics {
                                metrics.source_up(&source.tenant, false);
                            }
                            let why = crate::one_line(&error);
                            tracing::warn!(tenant = %source.tenant, "plugin source: {why}; retrying in {backoff:?}");
                            health.failed(&source.tenant, why);
                            wait = backoff;
                            backoff = (backoff * 2).min(poll);
                        }
                    }
                }
            }));
        }
    }
}

/// The file beside a pulled plugin holding its manifest's digest.
fn digest_file(file: &Path) -> PathBuf {
    crate::watch::hidden_beside(file, "digest")
}
