//! A plugin made ready to serve: compiled, linked, its contract version checked, its
//! manifest read and its descriptors checked, all at load time so the request path only
//! instantiates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost_reflect::{DescriptorPool, ServiceDescriptor};
use wasmtime::component::Component;

use crate::admission::Admission;
use crate::bindings::{Manifest, PluginPre};
use crate::capabilities::kv::KvGrant;
use crate::capabilities::logging::LogBudget;
use crate::capabilities::outbound::OutboundGrant;
use crate::engine::Engine;
use crate::limits::{DEFAULT_LIMITS, Limits};
use crate::sandbox::{CallState, CpuMeter, Deadline};
use crate::warm::{IdleBudget, WarmPool};

/// The contract this host serves, as plugins' export names carry it.
pub const CONTRACT: &str = "plugrpc:plugin@0.3.0";

/// The version part of [`CONTRACT`].
const CONTRACT_VERSION: &str = "0.3.0";

/// How long a plugin's `describe` may run before the plugin is refused.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A plugin's `wasi:config/store` values, by key.
pub use wasmtime_wasi_config::WasiConfigVariables as ConfigValues;

/// What a plugin's config gives it beyond its limits: its config values and the
/// capabilities it is granted (one it imports and is not granted refuses it at load).
#[derive(Default)]
pub struct Grants {
    /// Its `wasi:config/store` values.
    pub config: ConfigValues,
    /// Its key-value buckets, when granted.
    pub kv: Option<KvGrant>,
    /// Its outbound calls, when granted.
    pub outbound: Option<OutboundGrant>,
    /// The config table that grants them, for refusals to name (`plugins.users`).
    pub table: String,
}

/// A capability a plugin must be granted: its imports' prefix, the config key that
/// grants it, and whether a plugin's grants include it.
type Granted = (&'static str, &'static str, fn(&Grants) -> bool);

/// The capabilities a plugin must be granted to import.
const GRANTED_IMPORTS: [Granted; 2] = [
    ("wasi:keyvalue/", "kv", |grants| grants.kv.is_some()),
    ("plugrpc:plugin/outbound", "outbound", |grants| {
        grants.outbound.is_some()
    }),
];

/// Why a `.wasm` file could not become a serving plugin; each names the problem in one line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Read(#[from] std::io::Error),
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0:#}")]
    Compile(wasmtime::Error),
    /// A component that exports nothing of the plugin contract.
    #[error("not a plugrpc plugin: it exports nothing of {CONTRACT}")]
    NoContract,
    /// A plugin built against another version of the contract.
    #[error(
        "built against contract {found}, and this host serves {CONTRACT}: rebuild it with this host's plugrpc-guest"
    )]
    ContractVersion {
        /// The version the plugin was built against, e.g. `plugrpc:plugin@0.2.0`.
        found: String,
    },
    /// A plugin of this contract that does not link (an import this host does not
    /// provide, or a missing export).
    #[error("does not link against this host: {0:#}")]
    Link(wasmtime::Error),
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
    /// The plugin's config table cannot be applied (a value's source is missing).
    #[error("its config: {0}")]
    Config(String),
    /// The plugin imports a capability its config does not grant it.
    #[error("it imports {import}, which its config does not grant: add [{table}.{key}]")]
    NotGranted {
        /// The import, e.g. `wasi:keyvalue/store@0.2.0-draft2`.
        import: String,
        /// The plugin's config table, e.g. `plugins.users`.
        table: String,
        /// The key under it that grants the import, e.g. `kv`.
        key: &'static str,
    },
}

/// A loaded plugin: identity, linked component and the services it serves.
pub struct Plugin {
    name: String,
    version: String,
    file: PathBuf,
    hash: String,
    compile_time: Duration,
    loaded_at: std::time::SystemTime,
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
    /// Its config values, fixed at load: a changed config is a reload.
    config: Arc<ConfigValues>,
    kv: Option<Arc<KvGrant>>,
    outbound: Option<Arc<OutboundGrant>>,
}

impl Plugin {
    /// Compiles, links and describes `wasm` (the content of `file`, whose SHA-256 is
    /// `hash`); blocking work runs off the async workers. `settings` gives the limits and
    /// grants for the name the plugin's manifest declares.
    pub async fn load(
        engine: &Engine,
        file: &Path,
        wasm: Vec<u8>,
        hash: String,
        settings: impl FnOnce(&str) -> Result<(Limits, Grants), String>,
    ) -> Result<Self, LoadError> {
        let Inspection {
            component,
            pre,
            manifest,
            services,
            compile_time,
            ..
        } = Inspection::of(engine, wasm).await?;
        let (limits, grants) = settings(&manifest.name).map_err(LoadError::Config)?;
        check_grants(&component, &grants)?;
        let budget = engine.idle_budget();
        let warm = (manifest.stateless && limits.reuse_instances && budget.allows_idle())
            .then(|| WarmPool::new(limits.max_concurrent_calls, budget.clone()));
        Ok(Self {
            log_budget: LogBudget::new(manifest.name.as_str().into()),
            admission: Admission::new(
                limits.max_concurrent_calls,
                limits.max_queued_calls,
                limits.max_caller_share,
            ),
            name: manifest.name,
            version: manifest.version,
            file: file.to_owned(),
            hash,
            compile_time,
            loaded_at: std::time::SystemTime::now(),
            pre,
            services,
            limits,
            guest_stack: engine.guest_stack(),
            warm,
            idle: budget,
            config: Arc::new(grants.config),
            kv: grants.kv.map(Arc::new),
            outbound: grants.outbound.map(Arc::new),
        })
    }

    /// Its config values, as every call sees them (new values come with a reload).
    pub(crate) fn config(&self) -> Arc<ConfigValues> {
        self.config.clone()
    }

    /// Its key-value grant, if any.
    pub(crate) fn kv(&self) -> Option<&Arc<KvGrant>> {
        self.kv.as_ref()
    }

    /// Its outbound grant, if any.
    pub(crate) fn outbound(&self) -> Option<&Arc<OutboundGrant>> {
        self.outbound.as_ref()
    }

    /// The name its manifest declares: what config and logs call it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version its manifest declares.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The file it was loaded from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// SHA-256 of the plugin file, hex: its identity across reloads and in the log.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// When it was loaded.
    pub fn loaded_at(&self) -> std::time::SystemTime {
        self.loaded_at
    }

    /// How long compiling (or fetching it from the cache) took.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// The services it serves, with their descriptors.
    pub fn services(&self) -> &[ServiceDescriptor] {
        &self.services
    }

    /// The limits its calls run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Calls of it running now (each in an instance of its own).
    pub fn running_calls(&self) -> usize {
        self.admission.running()
    }

    /// Its warm instances idle now, ready for the next call.
    pub fn idle_instances(&self) -> usize {
        self.warm.as_ref().map_or(0, |warm| warm.idle())
    }

    /// Whether its calls are served from reused (warm) instances.
    pub fn reuses_instances(&self) -> bool {
        self.warm.is_some()
    }

    pub(crate) fn pre(&self) -> &PluginPre<CallState> {
        &self.pre
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

/// What a `.wasm` file is, as far as the host can tell without serving it: checked
/// against the contract, described, its descriptors linked. What `load` starts from, and
/// what `plugrpc inspect` shows.
pub struct Inspection {
    component: Component,
    pre: PluginPre<CallState>,
    manifest: Manifest,
    services: Vec<ServiceDescriptor>,
    compile_time: Duration,
    size: usize,
}

impl Inspection {
    /// Compiles (off the async workers), checks the contract, links and describes `wasm`.
    pub async fn of(engine: &Engine, wasm: Vec<u8>) -> Result<Self, LoadError> {
        let size = wasm.len();
        let started = Instant::now();
        let compiler = engine.clone();
        let component = tokio::task::spawn_blocking(move || compiler.compile(&wasm))
            .await
            .map_err(|e| {
                LoadError::Compile(wasmtime::Error::msg(format!("compiler task failed: {e}")))
            })?
            .map_err(LoadError::Compile)?;
        let compile_time = started.elapsed();
        check_contract(&component)?;
        let pre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(LoadError::Link)?;
        let pre = PluginPre::new(pre).map_err(LoadError::Link)?;
        let manifest = describe(&pre, engine.guest_stack(), engine.max_memory()).await?;

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
        Ok(Self {
            component,
            pre,
            manifest,
            services,
            compile_time,
            size,
        })
    }

    /// The name its manifest declares.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The version its manifest declares.
    pub fn version(&self) -> &str {
        &self.manifest.version
    }

    /// Whether it declares itself stateless (warm instances allowed).
    pub fn stateless(&self) -> bool {
        self.manifest.stateless
    }

    /// The services it serves, with their descriptors.
    pub fn services(&self) -> &[ServiceDescriptor] {
        &self.services
    }

    /// What it imports from the host, by interface name.
    pub fn imports(&self) -> Vec<String> {
        let engine = self.component.engine();
        self.component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// The config keys that must grant what it imports (`kv`, `outbound`): what its
    /// load checks against the plugin's grants.
    pub fn needs_grants(&self) -> Vec<&'static str> {
        let imports = self.imports();
        GRANTED_IMPORTS
            .iter()
            .filter(|(prefix, _, _)| imports.iter().any(|import| import.starts_with(prefix)))
            .map(|(_, key, _)| *key)
            .collect()
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// How long compiling (or fetching it from the cache) took.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
}

/// Refuses a component that does not export this host's contract, naming the version it
/// was built against when that is the reason.
fn check_contract(component: &Component) -> Result<(), LoadError> {
    let engine = component.engine();
    let ty = component.component_type();
    let mut found = None;
    for (name, _) in ty.exports(engine) {
        let Some(rest) = name.strip_prefix("plugrpc:plugin/") else {
            continue;
        };
        let version = rest.split_once('@').map_or("", |(_, version)| version);
        if version == CONTRACT_VERSION {
            return Ok(());
        }
        found = Some(format!("plugrpc:plugin@{version}"));
    }
    Err(
        found.map_or(LoadError::NoContract, |found| LoadError::ContractVersion {
            found,
        }),
    )
}

/// Refuses a plugin that imports a capability `grants` does not give it.
fn check_grants(component: &Component, grants: &Grants) -> Result<(), LoadError> {
    let engine = component.engine();
    for (import, _) in component.component_type().imports(engine) {
        for (prefix, key, granted) in GRANTED_IMPORTS {
            if import.starts_with(prefix) && !granted(grants) {
                return Err(LoadError::NotGranted {
                    import: import.to_owned(),
                    table: grants.table.clone(),
                    key,
                });
            }
        }
    }
    Ok(())
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
    let deadline = Deadline::at(Instant::now() + DESCRIBE_TIMEOUT);
    let mut store = state.into_store(pre.engine(), deadline, meter.clone());
    let run = async {
        let guest = pre.instantiate_async(&mut store).await?;
        guest
            .plugrpc_plugin_describe()
            .call_describe(&mut store)
            .await
    };
    match tokio::time::timeout(DESCRIBE_TIMEOUT, meter.meter(run, None)).await {
        Ok(result) => result.map_err(LoadError::Describe),
        Err(_) => Err(LoadError::Describe(wasmtime::Error::msg(format!(
            "did not return within {DESCRIBE_TIMEOUT:?}"
        )))),
    }
}

/// The content hash that identifies a plugin file's version.
pub fn content_hash(wasm: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
