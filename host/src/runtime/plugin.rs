//! A plugin made ready to serve: compiled, linked, its manifest read and its descriptors
//! checked, all at load time so the request path only instantiates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost_reflect::{DescriptorPool, ServiceDescriptor};

use super::admission::Admission;
use super::bindings::{Manifest, PluginPre};
use super::call::CallState;
use super::engine::Engine;
use super::output::LogBudget;
use super::sandbox::CpuMeter;
use super::warm::{IdleBudget, WarmPool};
use crate::config::{DEFAULT_LIMITS, HostConfig, Limits};

/// How long a plugin's `describe` may run before the plugin is refused.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a `.wasm` file could not become a serving plugin; each names the problem in one line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Read(#[from] std::io::Error),
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0:#}")]
    Compile(wasmtime::Error),
    /// A component, but not one built against this host's plugin contract.
    #[error(
        "not a plugrpc plugin (a component of world plugrpc:plugin/plugin@0.2.0 is expected): {0:#}"
    )]
    NotAPlugin(wasmtime::Error),
    /// The plugin's `describe` export trapped or ran too long.
    #[error("its describe() failed: {0:#}")]
    Describe(wasmtime::Error),
    /// The manifest's FileDescriptorSet does not decode or link.
    #[error("its file descriptor set is invalid: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    /// The manifest names a service its descriptors do not define.
    #[error("it declares service {0:?}, which its file descriptor set does not define")]
    UnknownService(String),
    /// The manifest names no services at all.
    #[error("it declares no services")]
    NoServices,
}

/// A loaded plugin: identity, linked component and the services it serves.
pub(crate) struct LoadedPlugin {
    name: String,
    version: String,
    file: PathBuf,
    hash: String,
    compile_time: Duration,
    pre: PluginPre<CallState>,
    services: Vec<ServiceDescriptor>,
    limits: Limits,
    admission: Admission,
    log_budget: Arc<LogBudget>,
    guest_stack: usize,
    /// Idle instances, for a stateless plugin whose limits let it reuse them.
    warm: Option<Arc<WarmPool>>,
    /// Every plugin's idle instances, to free when the sandbox pool runs out.
    idle: IdleBudget,
}

impl LoadedPlugin {
    /// Compiles, links and describes `wasm`; blocking work runs off the async workers.
    /// Limits come from `config` by the name the plugin's manifest gives.
    pub(crate) async fn load(
        engine: &Engine,
        config: &HostConfig,
        file: &Path,
        wasm: Vec<u8>,
        hash: String,
    ) -> Result<Self, LoadError> {
        let started = Instant::now();
        let compiler = engine.clone();
        let component = tokio::task::spawn_blocking(move || compiler.compile(&wasm))
            .await
            .map_err(|e| {
                LoadError::Compile(wasmtime::Error::msg(format!("compiler task failed: {e}")))
            })?
            .map_err(LoadError::Compile)?;
        let compile_time = started.elapsed();
        let pre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(LoadError::NotAPlugin)?;
        let pre = PluginPre::new(pre).map_err(LoadError::NotAPlugin)?;
        let manifest = describe(&pre, engine.guest_stack(), config.largest_memory()).await?;

        let pool = DescriptorPool::decode(manifest.file_descriptor_set.as_slice())?;
        if manifest.services.is_empty() {
            return Err(LoadError::NoServices);
        }
        let services = manifest
            .services
            .iter()
            .map(|name| {
                pool.get_service_by_name(name)
                    .ok_or_else(|| LoadError::UnknownService(name.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let limits = config.limits_for(&manifest.name);
        let budget = engine.idle_budget();
        let warm = (manifest.stateless && limits.reuse_instances && budget.allows_idle())
            .then(|| WarmPool::new(limits.max_concurrent_calls, budget.clone()));
        Ok(Self {
            log_budget: LogBudget::new(manifest.name.as_str().into()),
            admission: Admission::new(limits.max_concurrent_calls, limits.max_queued_calls),
            name: manifest.name,
            version: manifest.version,
            file: file.to_owned(),
            hash,
            compile_time,
            pre,
            services,
            limits,
            guest_stack: engine.guest_stack(),
            warm,
            idle: budget,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn version(&self) -> &str {
        &self.version
    }

    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// SHA-256 of the plugin file, hex: its identity across reloads and in the log.
    pub(crate) fn hash(&self) -> &str {
        &self.hash
    }

    /// How long compiling (or fetching it from the cache) took.
    pub(crate) fn compile_time(&self) -> Duration {
        self.compile_time
    }

    pub(crate) fn services(&self) -> &[ServiceDescriptor] {
        &self.services
    }

    pub(crate) fn pre(&self) -> &PluginPre<CallState> {
        &self.pre
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn admission(&self) -> &Admission {
        &self.admission
    }

    pub(crate) fn log_budget(&self) -> Arc<LogBudget> {
        self.log_budget.clone()
    }

    pub(crate) fn guest_stack(&self) -> usize {
        self.guest_stack
    }

    /// Where calls find and leave warm instances; `None` when every call gets a fresh one.
    pub(crate) fn warm(&self) -> Option<&WarmPool> {
        self.warm.as_deref()
    }

    /// Frees every plugin's idle instances; how many there were.
    pub(crate) fn evict_idle(&self) -> usize {
        self.idle.evict()
    }
}

/// Reads the manifest in a throwaway instance, bounded in time.
async fn describe(
    pre: &PluginPre<CallState>,
    guest_stack: usize,
    memory: usize,
) -> Result<Manifest, LoadError> {
    let limits = Limits {
        cpu_time: DESCRIBE_TIMEOUT,
        memory,
        ..DEFAULT_LIMITS
    };
    let state = CallState::new(LogBudget::new("describe".into()), limits, guest_stack);
    let meter = CpuMeter::default();
    let mut store = state.into_store(
        pre.engine(),
        Instant::now() + DESCRIBE_TIMEOUT,
        meter.clone(),
    );
    let run = async {
        let guest = pre.instantiate_async(&mut store).await?;
        guest
            .plugrpc_plugin_handler()
            .call_describe(&mut store)
            .await
    };
    match tokio::time::timeout(DESCRIBE_TIMEOUT, meter.meter(run)).await {
        Ok(result) => result.map_err(LoadError::Describe),
        Err(_) => Err(LoadError::Describe(wasmtime::Error::msg(format!(
            "did not return within {DESCRIBE_TIMEOUT:?}"
        )))),
    }
}

/// The content hash that identifies a plugin file's version.
pub(crate) fn content_hash(wasm: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
