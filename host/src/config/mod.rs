//! Host settings: built-in defaults, then `plugrpc.toml`, then command-line flags. Parsed
//! and validated here and nowhere else; a bad file is refused at start with one line
//! naming the key and why.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use plugrpc_runtime::{DEFAULT_LIMITS, EngineConfig, Limits, QuotaLimits, duration, size};

use crate::hosts::HostPattern;
use serde::Deserialize;

mod capabilities;
mod compression;
mod cors;
mod edge;
mod outbound;
mod sources;
mod tls;
mod tracing;

pub(crate) use capabilities::to_guest;
pub use capabilities::{ConfigValue, KvBackendKind, KvConfig, KvTable};
pub use compression::CompressionConfig;
pub use cors::CorsConfig;
pub use edge::EdgeConfig;
pub use outbound::{
    DEFAULT_OUTBOUND_CONCURRENT_CALLS, DEFAULT_OUTBOUND_TIMEOUT, DEFAULT_RESOLVE_EVERY,
    EndpointHost, EndpointUrl, Endpoints, GrpcCode, LoadBalancing, MAX_ATTEMPTS, OutboundTarget,
    OutboundTls, RetryPolicy, RetryThrottling,
};
pub use sources::OciSource;
pub use tls::{ClientAuth, KeyHash, TlsConfig};
pub use tracing::TracingConfig;

/// The tenant of the plugins directly in the plugins folder (and of a `default/` folder).
pub const DEFAULT_TENANT: &str = "default";

/// Where the host listens when told nothing: loopback only, the usual gRPC port.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50051));

/// Where the admin endpoints listen when told nothing: loopback only, Envoy's admin port.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9901));

/// The plugins folder when told nothing, relative to the working directory.
pub const DEFAULT_PLUGINS_DIR: &str = "plugins";

/// Where the host keeps data (the embedded key-value store) when told nothing, relative
/// to the working directory.
pub const DEFAULT_DATA_DIR: &str = "data";

/// Wasm stack a guest may use, host-wide; deep recursion past it is RESOURCE_EXHAUSTED.
pub const DEFAULT_GUEST_STACK: usize = 512 << 10;

/// Sandboxes the host keeps in its pool unless `host.sandboxes` says otherwise: calls
/// running at once, host-wide (an open stream holds one for its whole life).
pub const DEFAULT_SANDBOXES: usize = 1000;

/// How long, after a shutdown signal and the drain delay, calls and connections in
/// flight may take before the host ends what is left and exits. Whatever supervises the
/// host must wait longer than drain delay + grace (Kubernetes waits 30 s unless told:
/// deploy/kubernetes sets `grace = "20s"` under it).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long, after a shutdown signal, the host keeps accepting while health checks and
/// `/readyz` already say NOT_SERVING, so that load balancers stop sending first.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);

/// The longest shutdown grace a config may ask for.
const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(3600);

/// The most sandboxes a host may pool; each reserves (but does not use) about 4 GiB of
/// address space, and a process has 128 TiB.
pub const MAX_SANDBOXES: usize = 16_384;

/// Bounds that keep a limit meaningful, checked for every plugin.
const MAX_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);
const MIN_MEMORY: usize = 1 << 20;
const MAX_MEMORY: usize = 4 << 30;
const MAX_MESSAGE_SIZE: usize = 1 << 30;
const MIN_GUEST_STACK: usize = 64 << 10;
const MAX_GUEST_STACK: usize = 64 << 20;

/// What a host serves, where, and within which limits.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Folder whose `.wasm` files are the plugins.
    pub plugins_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the admin endpoints (`/healthz`, `/readyz`, `/plugins`, `/metrics`) listen;
    /// `None`: off.
    pub admin_listen: Option<SocketAddr>,
    /// Whether calls, sandboxes and loads are counted for `/metrics` (`host.metrics`).
    pub metrics: bool,
    /// Wasm stack per guest, host-wide.
    pub guest_stack: usize,
    /// Sandboxes in the pool: calls that can run at once across all plugins.
    pub sandboxes: usize,
    /// Where compiled plugins are cached across restarts; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Whether the plugins folder (and the config file) is watched and reloaded while
    /// serving.
    pub watch: bool,
    /// Where the host keeps data: the embedded key-value store's file.
    pub data_dir: PathBuf,
    /// `[kv]`: the key-value backend granted plugins use.
    pub kv: KvConfig,
    /// The file this config was read from: re-read on SIGHUP and, with `watch`, when it
    /// changes.
    pub source: Option<PathBuf>,
    /// How long calls and connections may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// How long, after a shutdown signal, the host keeps accepting while it already
    /// reports NOT_SERVING, before it stops accepting and lets calls finish.
    pub drain_delay: Duration,
    /// What one client may hold of the host.
    pub edge: EdgeConfig,
    /// `[compression]`: response compression.
    pub compression: CompressionConfig,
    /// `[cors]`: browser origins that may call the default tenant (and tenants without
    /// their own).
    pub cors: CorsConfig,
    /// TLS on the listener; plaintext when `None`.
    pub tls: Option<TlsConfig>,
    /// `[tracing]`: where spans go, if anywhere.
    pub tracing: TracingConfig,
    /// `[sources.<tenant>]`: plugins pulled from OCI registries, by tenant.
    pub sources: BTreeMap<String, OciSource>,
    /// API keys by name, as hashes: a request bearing one is the caller `key:<name>`.
    pub api_keys: BTreeMap<String, KeyHash>,
    /// Limits for every plugin without overrides.
    pub defaults: Limits,
    /// Per-plugin overrides of the default tenant, by plugin name.
    pub plugins: BTreeMap<String, LimitOverrides>,
    /// The other tenants (a subfolder of the plugins folder each), by name.
    pub tenants: BTreeMap<String, TenantConfig>,
}

/// A `[...methods."<Method>"]` table: who may call one method (narrowing the plugin's).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodTable {
    /// Identity patterns that may call the method.
    pub allow: Option<Vec<String>>,
}

/// A `[tenants.<name>]` table: what one tenant's plugins run under.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Identity patterns that may call the tenant's services; with any rule in the
    /// tenant, what no rule allows is denied.
    pub allow: Option<Vec<String>>,
    /// The `:authority` hosts the tenant answers for (`name`, `*.name`); none: any.
    /// Two tenants may serve one service when their hosts do not overlap.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Calls of all the tenant's plugins running at once; more wait, then are refused.
    pub max_concurrent_calls: Option<usize>,
    /// Calls of the tenant waiting for one of those places (default 256).
    pub max_queued_calls: Option<usize>,
    /// Calls a second the tenant's plugins may be called, on average.
    pub rate: Option<f64>,
    /// Calls the tenant may make at once above its rate (default: the rate, at least 1).
    pub burst: Option<f64>,
    /// Cores of CPU time all the tenant's calls may use, averaged over a second
    /// (`cpu = "1.5"` or `cpu = 1.5`); past it, its calls are held back.
    #[serde(default, deserialize_with = "cores")]
    pub cpu: Option<f64>,
    /// Linear memory all the tenant's instances may hold at once, idle warm ones
    /// included.
    pub memory: Option<ByteSize>,
    /// Browser origins that may call the tenant's plugins (`[tenants.<name>.cors]`);
    /// `[cors]` when not set.
    pub cors: Option<CorsConfig>,
    /// Per-plugin overrides of the tenant's plugins, by plugin name
    /// (`[tenants.<name>.plugins.<plugin>]`).
    #[serde(default)]
    pub plugins: BTreeMap<String, LimitOverrides>,
}

/// A `[defaults]` or `[plugins.<name>]` table: any subset of the limits, and for a
/// plugin, who may call it (`allow`) and its methods' own rules.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Identity patterns that may call the plugin (narrowing the tenant's).
    pub allow: Option<Vec<String>>,
    /// Per-method rules, by method name (`[plugins.<p>.methods."GetUser"]`).
    #[serde(default)]
    pub methods: BTreeMap<String, MethodTable>,
    #[serde(default, with = "humantime_serde")]
    deadline: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_deadline: Option<Duration>,
    memory: Option<ByteSize>,
    #[serde(default, with = "humantime_serde")]
    cpu_time: Option<Duration>,
    max_concurrent_calls: Option<usize>,
    max_queued_calls: Option<usize>,
    max_caller_share: Option<u8>,
    max_request_size: Option<ByteSize>,
    max_response_size: Option<ByteSize>,
    allow_breaking_changes: Option<bool>,
    reuse_instances: Option<bool>,
    compress_responses: Option<bool>,
    max_outbound_calls_per_call: Option<usize>,
    max_concurrent_outbound_calls: Option<usize>,
    /// The plugin's `wasi:config/store` values (`[plugins.<p>.config]`).
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    /// Its key-value grant (`[plugins.<p>.kv]`); none: no key-value store.
    pub kv: Option<KvTable>,
    /// The services it may call, by alias (`[plugins.<p>.outbound.<alias>]`); none: no
    /// outbound calls.
    #[serde(default)]
    pub outbound: BTreeMap<String, OutboundTarget>,
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<SocketAddr>,
    plugins_dir: Option<PathBuf>,
    #[serde(default)]
    host: HostTable,
    #[serde(default)]
    shutdown: ShutdownTable,
    #[serde(default)]
    edge: EdgeConfig,
    #[serde(default)]
    compression: CompressionConfig,
    #[serde(default)]
    cors: CorsConfig,
    #[serde(default)]
    kv: KvConfig,
    tls: Option<TlsConfig>,
    #[serde(default)]
    tracing: TracingConfig,
    #[serde(default)]
    sources: BTreeMap<String, OciSource>,
    #[serde(default)]
    api_keys: BTreeMap<String, KeyHash>,
    #[serde(default)]
    defaults: LimitOverrides,
    #[serde(default)]
    plugins: BTreeMap<String, LimitOverrides>,
    #[serde(default)]
    tenants: BTreeMap<String, TenantConfig>,
}

/// `[host]`: settings that cannot differ between plugins.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostTable {
    guest_stack: Option<ByteSize>,
    sandboxes: Option<usize>,
    cache_dir: Option<PathBuf>,
    cache: Option<bool>,
    watch: Option<bool>,
    data_dir: Option<PathBuf>,
    admin_listen: Option<AdminListen>,
    metrics: Option<bool>,
}

/// `host.admin_listen`: an address, or `"off"`.
#[derive(Clone, Copy, Debug)]
pub enum AdminListen {
    /// No admin listener.
    Off,
    /// The admin listener's address.
    At(SocketAddr),
}

impl std::str::FromStr for AdminListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(Self::Off);
        }
        text.parse()
            .map(Self::At)
            .map_err(|_| format!("{text:?} is not an address (host:port) or \"off\""))
    }
}

impl<'de> Deserialize<'de> for AdminListen {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl AdminListen {
    /// The address, if on.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Self::Off => None,
            Self::At(addr) => Some(addr),
        }
    }
}

/// `[shutdown]`: how the host stops.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShutdownTable {
    #[serde(default, with = "humantime_serde")]
    grace: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    drain_delay: Option<Duration>,
}

/// Why a config was refused: one line, naming the file, key and reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why the OS refused.
        source: std::io::Error,
    },
    /// The text is not TOML.
    #[error("{file}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// The parser's message, with its line number.
        message: String,
    },
    /// A key is unknown or its value has the wrong type.
    #[error("{file}: {key}: {message}")]
    Key {
        /// The file.
        file: String,
        /// The dotted path of the key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A value is outside its bounds.
    #[error("{file}: {problem}")]
    Invalid {
        /// The file.
        file: String,
        /// The key and why.
        problem: Invalid,
    },
}

/// A setting outside its bounds, naming its key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct Invalid {
    /// The dotted path of the key, e.g. `plugins.users.memory`.
    pub key: String,
    /// Why the value is refused.
    pub reason: String,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            plugins_dir: PathBuf::from(DEFAULT_PLUGINS_DIR),
            listen: DEFAULT_LISTEN,
            admin_listen: Some(DEFAULT_ADMIN_LISTEN),
            metrics: true,
            guest_stack: DEFAULT_GUEST_STACK,
            sandboxes: DEFAULT_SANDBOXES,
            cache_dir: default_cache_dir(),
            watch: true,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            kv: KvConfig::default(),
            source: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            drain_delay: DEFAULT_DRAIN_DELAY,
            edge: EdgeConfig::default(),
            compression: CompressionConfig::default(),
            cors: CorsConfig::default(),
            tls: None,
            tracing: TracingConfig::default(),
            sources: BTreeMap::new(),
            api_keys: BTreeMap::new(),
            defaults: DEFAULT_LIMITS,
            plugins: BTreeMap::new(),
            tenants: BTreeMap::new(),
        }
    }
}

impl HostConfig {
    /// Reads and validates a `plugrpc.toml`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let mut config = Self::from_toml(&file, &text)?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses and validates config text; `source_name` names it in errors.
    pub fn from_toml(source_name: &str, text: &str) -> Result<Self, ConfigError> {
        let name = || source_name.to_owned();
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    file: name(),
                    message: syntax_error(text, &e),
                })?;
        let file: ConfigFile = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Key {
                file: name(),
                key: e.path().to_string(),
                message: e.inner().message().to_owned(),
            })?;

        if file.defaults.allow.is_some() || !file.defaults.methods.is_empty() {
            return Err(ConfigError::Invalid {
                file: name(),
                problem: invalid(
                    "defaults",
                    "allow rules go under [tenants.<t>] or a plugin, not [defaults]".into(),
                ),
            });
        }
        if !file.defaults.config.is_empty()
            || file.defaults.kv.is_some()
            || !file.defaults.outbound.is_empty()
        {
            return Err(ConfigError::Invalid {
                file: name(),
                problem: invalid(
                    "defaults",
                    "config values and grants go under a plugin, not [defaults]".into(),
                ),
            });
        }
        let sandboxes = file.host.sandboxes.unwrap_or(DEFAULT_SANDBOXES);
        // The built-in concurrency default never asks for more than the pool holds.
        let built_in = Limits {
            max_concurrent_calls: DEFAULT_LIMITS.max_concurrent_calls.min(sandboxes),
            ..DEFAULT_LIMITS
        };
        let defaults = apply(built_in, &file.defaults);
        let config = Self {
            plugins_dir: file
                .plugins_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PLUGINS_DIR)),
            listen: file.listen.unwrap_or(DEFAULT_LISTEN),
            admin_listen: file
                .host
                .admin_listen
                .map_or(Some(DEFAULT_ADMIN_LISTEN), AdminListen::addr),
            metrics: file.host.metrics.unwrap_or(true),
            guest_stack: file.host.guest_stack.map_or(DEFAULT_GUEST_STACK, to_usize),
            sandboxes,
            cache_dir: match file.host.cache {
                Some(false) => None,
                _ => file.host.cache_dir.or_else(default_cache_dir),
            },
            watch: file.host.watch.unwrap_or(true),
            data_dir: file
                .host
                .data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            kv: file.kv,
            source: None,
            shutdown_grace: file.shutdown.grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            drain_delay: file.shutdown.drain_delay.unwrap_or(DEFAULT_DRAIN_DELAY),
            edge: file.edge,
            compression: file.compression,
            cors: file.cors,
            tls: file.tls,
            tracing: file.tracing,
            sources: file.sources,
            api_keys: file.api_keys,
            defaults,
            plugins: file.plugins,
            tenants: file.tenants,
        };
        config.validate().map_err(|problem| ConfigError::Invalid {
            file: name(),
            problem,
        })?;
        Ok(config)
    }

    /// The limits that apply to the default tenant's plugin called `name`.
    pub fn limits_for(&self, name: &str) -> Limits {
        self.tenant_limits_for(DEFAULT_TENANT, name)
    }

    /// The limits that apply to `tenant`'s plugin called `name`.
    pub fn tenant_limits_for(&self, tenant: &str, name: &str) -> Limits {
        self.plugin_tables(tenant)
            .and_then(|plugins| plugins.get(name))
            .map_or(self.defaults, |o| apply(self.defaults, o))
    }

    /// The rule lists on the way to `tenant`'s `plugin`'s `method`, outermost first, and
    /// whether the tenant has any rule at all.
    pub(crate) fn allow_lists(
        &self,
        tenant: &str,
        plugin: &str,
        method: &str,
    ) -> (bool, Vec<&[String]>) {
        let tenant_allow = self.tenants.get(tenant).and_then(|t| t.allow.as_deref());
        let tables = self.plugin_tables(tenant);
        let has_rules = tenant_allow.is_some()
            || tables.is_some_and(|plugins| {
                plugins
                    .values()
                    .any(|p| p.allow.is_some() || p.methods.values().any(|m| m.allow.is_some()))
            });
        let table = tables.and_then(|plugins| plugins.get(plugin));
        let lists = [
            tenant_allow,
            table.and_then(|p| p.allow.as_deref()),
            table
                .and_then(|p| p.methods.get(method))
                .and_then(|m| m.allow.as_deref()),
        ];
        (has_rules, lists.into_iter().flatten().collect())
    }

    /// The quota over all of `tenant`'s plugins (none set: unbounded).
    pub(crate) fn quota_of(&self, tenant: &str) -> QuotaLimits {
        let Some(table) = self.tenants.get(tenant) else {
            return QuotaLimits::default();
        };
        QuotaLimits {
            concurrency: table
                .max_concurrent_calls
                .map(|running| (running, table.max_queued_calls.unwrap_or(256))),
            rate: table
                .rate
                .map(|rate| (rate, table.burst.unwrap_or(rate.max(1.0)))),
            cpu: table.cpu,
            memory: table.memory.map(to_usize),
        }
    }

    /// The folder `tenant`'s plugins are in: the plugins folder for the default tenant, a
    /// subfolder named for it otherwise.
    pub(crate) fn tenant_dir(&self, tenant: &str) -> PathBuf {
        if tenant == DEFAULT_TENANT {
            self.plugins_dir.clone()
        } else {
            self.plugins_dir.join(tenant)
        }
    }

    /// The hosts `tenant` answers for (validated at load); none: any host.
    pub(crate) fn hosts_of(&self, tenant: &str) -> Vec<HostPattern> {
        self.tenants.get(tenant).map_or_else(Vec::new, |t| {
            t.hosts
                .iter()
                .filter_map(|h| HostPattern::parse(h).ok())
                .collect()
        })
    }

    /// `tenant`'s table for its plugin `name`, if the config has one.
    pub(crate) fn plugin_table(&self, tenant: &str, name: &str) -> Option<&LimitOverrides> {
        self.plugin_tables(tenant)
            .and_then(|plugins| plugins.get(name))
    }

    /// The dotted key of `tenant`'s table for its plugin `name`.
    pub(crate) fn plugin_key(tenant: &str, name: &str) -> String {
        if tenant == DEFAULT_TENANT {
            format!("plugins.{name}")
        } else {
            format!("tenants.{tenant}.plugins.{name}")
        }
    }

    /// `tenant`'s plugin `name`'s config values, read now (environment, files).
    pub(crate) fn config_values(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<BTreeMap<String, String>, Invalid> {
        match self.plugin_table(tenant, name) {
            Some(table) => capabilities::resolve_values(
                &table.config,
                &format!("{}.config", Self::plugin_key(tenant, name)),
            ),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Whether any plugin is granted a key-value store: the backend is opened then only.
    pub(crate) fn grants_kv(&self) -> bool {
        self.configured_plugins().any(|(tenant, name, _)| {
            self.plugin_table(tenant, name)
                .is_some_and(|t| t.kv.is_some())
        })
    }

    /// What the config resolves to, as `plugrpc config check` prints it: the defaults,
    /// then each plugin table's limits and grants (config values by key only).
    pub fn resolved(&self) -> String {
        use std::fmt::Write as _;
        let mut text = format!(
            "listen {}, admin {}, plugins {}, data {}\n[defaults] {}\n",
            self.listen,
            self.admin_listen
                .map_or_else(|| "off".to_owned(), |addr| addr.to_string()),
            self.plugins_dir.display(),
            self.data_dir.display(),
            self.defaults
        );
        for (tenant, name, key) in self.configured_plugins() {
            let limits = self.tenant_limits_for(tenant, name);
            let _ = writeln!(text, "[{key}] {limits}");
            let Some(table) = self.plugin_table(tenant, name) else {
                continue;
            };
            if !table.config.is_empty() {
                let keys: Vec<&str> = table.config.keys().map(String::as_str).collect();
                let _ = writeln!(text, "  config values: {}", keys.join(", "));
            }
            if let Some(kv) = &table.kv {
                let kv_limits = kv.limits();
                let _ = writeln!(
                    text,
                    "  kv: max_bytes {}, max_key_size {}, max_value_size {}, max_ops_per_call {}{}",
                    ByteSize::b(kv_limits.max_bytes).display().iec(),
                    size(kv_limits.max_key_size),
                    size(kv_limits.max_value_size),
                    kv_limits.max_ops_per_call,
                    if kv.shared.is_empty() {
                        String::new()
                    } else {
                        format!(", shared {}", kv.shared.join(", "))
                    }
                );
            }
            for (alias, target) in &table.outbound {
                let endpoints = match &target.endpoints {
                    Endpoints::Local => "local".to_owned(),
                    Endpoints::Remote(urls) => urls
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                let _ = writeln!(
                    text,
                    "  outbound {alias}: {endpoints} ({:?}, timeout {}, {} attempts at most)",
                    target.load_balancing,
                    duration(target.timeout),
                    target.retry.as_ref().map_or(1, |retry| retry.max_attempts)
                );
            }
        }
        text
    }

    /// The `[plugins.*]` tables of `tenant`, if the config has any.
    fn plugin_tables(&self, tenant: &str) -> Option<&BTreeMap<String, LimitOverrides>> {
        if tenant == DEFAULT_TENANT {
            Some(&self.plugins)
        } else {
            self.tenants.get(tenant).map(|t| &t.plugins)
        }
    }

    /// Every (tenant, plugin) the config sets limits for, with its table's dotted key.
    pub(crate) fn configured_plugins(&self) -> impl Iterator<Item = (&str, &str, String)> {
        let default = self
            .plugins
            .keys()
            .map(|name| (DEFAULT_TENANT, name.as_str(), format!("plugins.{name}")));
        let tenants = self.tenants.iter().flat_map(|(tenant, table)| {
            table.plugins.keys().map(move |name| {
                (
                    tenant.as_str(),
                    name.as_str(),
                    format!("tenants.{tenant}.plugins.{name}"),
                )
            })
        });
        default.chain(tenants)
    }

    /// The largest memory any plugin may use: what the sandbox pool must hold.
    pub(crate) fn largest_memory(&self) -> usize {
        self.configured_plugins()
            .map(|(tenant, name, _)| self.tenant_limits_for(tenant, name).memory)
            .fold(self.defaults.memory, usize::max)
    }

    /// What the wasmtime engine is built for.
    pub(crate) fn engine(&self) -> EngineConfig {
        EngineConfig {
            sandboxes: self.sandboxes,
            guest_stack: self.guest_stack,
            max_memory: self.largest_memory(),
            // wasmtime wants it absolute; a config names it relative to where the host runs.
            cache_dir: self
                .cache_dir
                .as_ref()
                .map(|dir| std::path::absolute(dir).unwrap_or_else(|_| dir.clone())),
        }
    }

    /// Every bound the file's parser checks, for a config built in code too.
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if !(MIN_GUEST_STACK..=MAX_GUEST_STACK).contains(&self.guest_stack) {
            return Err(invalid(
                "host.guest_stack",
                format!(
                    "{} is outside {} ..= {}",
                    size(self.guest_stack),
                    size(MIN_GUEST_STACK),
                    size(MAX_GUEST_STACK)
                ),
            ));
        }
        if !(1..=MAX_SANDBOXES).contains(&self.sandboxes) {
            return Err(invalid(
                "host.sandboxes",
                format!("{} is outside 1 ..= {MAX_SANDBOXES}", self.sandboxes),
            ));
        }
        if self.admin_listen == Some(self.listen) && self.listen.port() != 0 {
            return Err(invalid(
                "host.admin_listen",
                format!(
                    "{} is the gRPC listen address; the admin endpoints need a port of their own",
                    self.listen
                ),
            ));
        }
        if self.drain_delay > MAX_SHUTDOWN_GRACE {
            return Err(invalid(
                "shutdown.drain_delay",
                format!(
                    "{} is longer than {}",
                    duration(self.drain_delay),
                    duration(MAX_SHUTDOWN_GRACE)
                ),
            ));
        }
        if self.shutdown_grace > MAX_SHUTDOWN_GRACE {
            return Err(invalid(
                "shutdown.grace",
                format!(
                    "{} is longer than {}",
                    duration(self.shutdown_grace),
                    duration(MAX_SHUTDOWN_GRACE)
                ),
            ));
        }
        self.edge.validate()?;
        self.tracing.validate()?;
        for (tenant, source) in &self.sources {
            if tenant != DEFAULT_TENANT && !is_tenant_name(tenant) {
                return Err(Invalid {
                    key: format!("sources.{tenant}"),
                    reason: "is not a tenant name (lowercase letters, digits and '-')".into(),
                });
            }
            source.validate(&format!("sources.{tenant}"))?;
        }
        self.cors.validate("cors")?;
        for (name, tenant) in &self.tenants {
            if let Some(cors) = &tenant.cors {
                cors.validate(&format!("tenants.{name}.cors"))?;
            }
        }
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        tls::validate_key_names(self.api_keys.keys())?;
        validate_limits(&self.defaults, "defaults", self.sandboxes)?;
        for (tenant, table) in &self.tenants {
            let key = |name: &str| format!("tenants.{tenant}.{name}");
            if table.max_concurrent_calls == Some(0) {
                return Err(invalid(
                    &key("max_concurrent_calls"),
                    "must be at least 1".into(),
                ));
            }
            if table.max_queued_calls.is_some() && table.max_concurrent_calls.is_none() {
                return Err(invalid(
                    &key("max_queued_calls"),
                    "needs max_concurrent_calls, the places the queue waits for".into(),
                ));
            }
            for (name, value) in [
                ("rate", table.rate),
                ("burst", table.burst),
                ("cpu", table.cpu),
            ] {
                if let Some(value) = value
                    && !(value.is_finite() && value > 0.0)
                {
                    return Err(invalid(
                        &key(name),
                        format!("{value} is not a positive number"),
                    ));
                }
            }
            if table.cpu.is_some_and(|cores| cores < 0.01) {
                return Err(invalid(
                    &key("cpu"),
                    "is at least 0.01 (a hundredth of a core)".into(),
                ));
            }
            if table.burst.is_some_and(|burst| burst < 1.0)
                || (table.burst.is_some() && table.rate.is_none())
            {
                return Err(invalid(
                    &key("burst"),
                    "needs rate, and is at least 1".into(),
                ));
            }
            for host in &table.hosts {
                HostPattern::parse(host)
                    .map_err(|why| invalid(&format!("tenants.{tenant}.hosts"), why))?;
            }
            if tenant == DEFAULT_TENANT {
                if table.plugins.is_empty() {
                    continue;
                }
                return Err(invalid(
                    "tenants.default",
                    "the default tenant's plugins are configured under [plugins.<name>]".into(),
                ));
            }
            if !is_tenant_name(tenant) {
                return Err(invalid(
                    &format!("tenants.{tenant}"),
                    "a tenant's name is its folder's: lowercase letters, digits, '-' and '_'"
                        .into(),
                ));
            }
        }
        self.kv.validate()?;
        for (tenant, name, key) in self.configured_plugins() {
            validate_limits(&self.tenant_limits_for(tenant, name), &key, self.sandboxes)?;
            if let Some(table) = self.plugin_table(tenant, name) {
                if let Some(kv) = &table.kv {
                    kv.validate(&format!("{key}.kv"))?;
                }
                for (alias, target) in &table.outbound {
                    if !is_alias(alias) {
                        return Err(invalid(
                            &format!("{key}.outbound.{alias}"),
                            "an alias is 1 to 64 letters, digits, '-' or '_'".into(),
                        ));
                    }
                    target.validate(&format!("{key}.outbound.{alias}"))?;
                }
            }
            self.config_values(tenant, name)?;
        }
        Ok(())
    }
}

/// A number of cores, written as a number or a string of one (`cpu = "1.5"`).
fn cores<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Cores {
        Number(f64),
        Text(String),
    }
    match Cores::deserialize(deserializer)? {
        Cores::Number(cores) => Ok(Some(cores)),
        Cores::Text(text) => text.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("{text:?} is not a number of cores, like \"1.5\""))
        }),
    }
}

/// Whether `name` can name a tenant: a folder name without surprises.
/// Whether `name` may name an outbound target: what a plugin passes as its target.
fn is_alias(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(crate) fn is_tenant_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
}

fn invalid(key: &str, reason: String) -> Invalid {
    Invalid {
        key: key.to_owned(),
        reason,
    }
}

/// `limits` with `overrides` applied.
fn apply(limits: Limits, overrides: &LimitOverrides) -> Limits {
    Limits {
        deadline: overrides.deadline.unwrap_or(limits.deadline),
        max_deadline: overrides.max_deadline.unwrap_or(limits.max_deadline),
        memory: overrides.memory.map_or(limits.memory, to_usize),
        cpu_time: overrides.cpu_time.unwrap_or(limits.cpu_time),
        max_concurrent_calls: overrides
            .max_concurrent_calls
            .unwrap_or(limits.max_concurrent_calls),
        max_queued_calls: overrides
            .max_queued_calls
            .unwrap_or(limits.max_queued_calls),
        max_caller_share: overrides
            .max_caller_share
            .unwrap_or(limits.max_caller_share),
        max_request_size: overrides
            .max_request_size
            .map_or(limits.max_request_size, to_usize),
        max_response_size: overrides
            .max_response_size
            .map_or(limits.max_response_size, to_usize),
        allow_breaking_changes: overrides
            .allow_breaking_changes
            .unwrap_or(limits.allow_breaking_changes),
        reuse_instances: overrides.reuse_instances.unwrap_or(limits.reuse_instances),
        compress_responses: overrides
            .compress_responses
            .unwrap_or(limits.compress_responses),
        max_outbound_calls_per_call: overrides
            .max_outbound_calls_per_call
            .unwrap_or(limits.max_outbound_calls_per_call),
        max_concurrent_outbound_calls: overrides
            .max_concurrent_outbound_calls
            .unwrap_or(limits.max_concurrent_outbound_calls),
    }
}

/// Checks one `[defaults]` or `[plugins.<name>]` table's resolved limits.
fn validate_limits(limits: &Limits, table: &str, sandboxes: usize) -> Result<(), Invalid> {
    let bad = |key: &str, why: String| Err(invalid(&format!("{table}.{key}"), why));
    if limits.deadline.is_zero() {
        return bad("deadline", "must be longer than zero".into());
    }
    if limits.max_deadline < limits.deadline {
        return bad(
            "deadline",
            format!(
                "{} is longer than max_deadline ({})",
                duration(limits.deadline),
                duration(limits.max_deadline)
            ),
        );
    }
    if limits.max_deadline > MAX_DEADLINE {
        return bad(
            "max_deadline",
            format!(
                "{} is longer than {}",
                duration(limits.max_deadline),
                duration(MAX_DEADLINE)
            ),
        );
    }
    if limits.cpu_time.is_zero() {
        return bad("cpu_time", "must be longer than zero".into());
    }
    if !(MIN_MEMORY..=MAX_MEMORY).contains(&limits.memory) {
        return bad(
            "memory",
            format!(
                "{} is outside {} ..= {}",
                size(limits.memory),
                size(MIN_MEMORY),
                size(MAX_MEMORY)
            ),
        );
    }
    if !(1..=sandboxes).contains(&limits.max_concurrent_calls) {
        return bad(
            "max_concurrent_calls",
            format!(
                "{} is outside 1 ..= {sandboxes} (the host's sandbox pool, host.sandboxes)",
                limits.max_concurrent_calls
            ),
        );
    }
    if !(1..=100).contains(&limits.max_caller_share) {
        return bad(
            "max_caller_share",
            format!(
                "{}% is outside 1 ..= 100 (percent of the slots and queue one caller may hold)",
                limits.max_caller_share
            ),
        );
    }
    if limits.max_concurrent_outbound_calls == 0 {
        return bad("max_concurrent_outbound_calls", "must be at least 1".into());
    }
    for (key, value) in [
        ("max_request_size", limits.max_request_size),
        ("max_response_size", limits.max_response_size),
    ] {
        if !(1..=MAX_MESSAGE_SIZE).contains(&value) {
            return bad(
                key,
                format!(
                    "{} is outside 1 B ..= {}",
                    size(value),
                    size(MAX_MESSAGE_SIZE)
                ),
            );
        }
    }
    Ok(())
}

/// `$XDG_CACHE_HOME/plugrpc`, else `$HOME/.cache/plugrpc`; none without either.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("plugrpc"))
}

fn to_usize(size: ByteSize) -> usize {
    usize::try_from(size.as_u64()).unwrap_or(usize::MAX)
}

/// A TOML syntax error as one line with its line number.
fn syntax_error(text: &str, error: &toml::de::Error) -> String {
    let line = error.span().map(|span| {
        let before = &text.as_bytes()[..span.start.min(text.len())];
        before.iter().filter(|&&b| b == b'\n').count() + 1
    });
    match line {
        Some(line) => format!("line {line}: {}", error.message().trim()),
        None => error.message().trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HostConfig, String> {
        HostConfig::from_toml("plugrpc.toml", text).map_err(|e| e.to_string())
    }

    #[test]
    fn no_file_means_the_documented_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.defaults, DEFAULT_LIMITS);
        assert_eq!(config.listen, DEFAULT_LISTEN);
        assert_eq!(config.guest_stack, DEFAULT_GUEST_STACK);
        assert_eq!(config.limits_for("anyone"), DEFAULT_LIMITS);
    }

    #[test]
    fn a_small_pool_lowers_the_built_in_concurrency_default_only() {
        let config = parse("[host]\nsandboxes = 32").unwrap();
        assert_eq!(config.defaults.max_concurrent_calls, 32);
        let config = parse("[host]\nsandboxes = 32\n[defaults]\nmax_concurrent_calls = 8").unwrap();
        assert_eq!(config.defaults.max_concurrent_calls, 8);
    }

    #[test]
    fn human_units_and_per_plugin_overrides_apply() {
        let config = parse(
            r#"
            listen = "127.0.0.1:6000"
            [host]
            guest_stack = "1MiB"
            [defaults]
            deadline = "5s"
            memory = "32MiB"
            cpu_time = "250ms"
            max_request_size = "1 MiB"
            [plugins.users]
            memory = "128MiB"
            max_concurrent_calls = 4
            "#,
        )
        .unwrap();
        assert_eq!(config.guest_stack, 1 << 20);
        assert_eq!(config.defaults.deadline, Duration::from_secs(5));
        assert_eq!(config.defaults.cpu_time, Duration::from_millis(250));
        assert_eq!(config.defaults.max_request_size, 1 << 20);
        let users = config.limits_for("users");
        assert_eq!((users.memory, users.max_concurrent_calls), (128 << 20, 4));
        assert_eq!(
            users.deadline,
            Duration::from_secs(5),
            "unset keys come from [defaults]"
        );
        assert_eq!(config.limits_for("greeter").memory, 32 << 20);
        assert_eq!(config.largest_memory(), 128 << 20);
    }

    #[test]
    fn a_tenants_plugin_takes_its_own_table_over_the_defaults() {
        let config = parse(
            "[defaults]\ndeadline = \"5s\"\n[plugins.users]\nmemory = \"32MiB\"\n\
             [tenants.acme.plugins.users]\nmemory = \"128MiB\"\n",
        )
        .unwrap();
        let acme = config.tenant_limits_for("acme", "users");
        assert_eq!(
            (acme.memory, acme.deadline),
            (128 << 20, Duration::from_secs(5))
        );
        assert_eq!(config.limits_for("users").memory, 32 << 20);
        assert_eq!(config.tenant_limits_for("globex", "users").memory, 64 << 20);
        assert_eq!(config.largest_memory(), 128 << 20);
    }

    #[test]
    fn the_tenants_example_is_valid() {
        let config = parse(include_str!("../../../examples/tenants/plugrpc.toml")).unwrap();
        let acme = config.quota_of("acme");
        assert_eq!(acme.concurrency, Some((64, 128)));
        assert_eq!((acme.rate, acme.cpu), (Some((500.0, 100.0)), Some(1.0)));
        assert_eq!(config.tenant_limits_for("acme", "users").memory, 128 << 20);
        let (has_rules, lists) = config.allow_lists("acme", "users", "CreateUsers");
        assert!(has_rules);
        assert_eq!(lists.len(), 2, "the tenant's list, then the method's");
        assert_eq!(config.hosts_of("globex").len(), 1);
    }

    #[test]
    fn a_cpu_share_is_a_number_or_a_string_of_one() {
        assert_eq!(
            parse("[tenants.a]\ncpu = \"1.5\"")
                .unwrap()
                .quota_of("a")
                .cpu,
            Some(1.5)
        );
        assert_eq!(
            parse("[tenants.a]\ncpu = 0.5").unwrap().quota_of("a").cpu,
            Some(0.5)
        );
    }

    #[test]
    fn the_documented_example_is_valid() {
        let config = parse(include_str!("../../../examples/plugrpc.toml")).unwrap();
        assert_eq!(
            config.limits_for("users").deadline,
            Duration::from_secs(600)
        );
        assert_eq!(config.limits_for("greeter").memory, 16 << 20);
        assert_eq!(config.shutdown_grace, Duration::from_secs(30));
    }

    #[test]
    fn the_tls_example_is_valid() {
        let config = parse(include_str!("../../../examples/tls/plugrpc.toml")).unwrap();
        let tls = config.tls.expect("a [tls] table");
        assert_eq!(tls.client_auth(), Some(ClientAuth::Required));
        assert_eq!(config.api_keys.len(), 1);
    }

    #[test]
    fn bad_configs_are_one_line_naming_the_key() {
        let cases = [
            (
                "[defaults]\nmemroy = \"1MiB\"",
                "defaults.memroy: unknown field `memroy`, expected one of",
            ),
            (
                "[host]\nadmin_listen = \"nowhere\"",
                "host.admin_listen: \"nowhere\" is not an address (host:port) or \"off\"",
            ),
            (
                "listen = \"127.0.0.1:7000\"\n[host]\nadmin_listen = \"127.0.0.1:7000\"",
                "host.admin_listen: 127.0.0.1:7000 is the gRPC listen address",
            ),
            (
                "[plugins.users.kv]\nshared = [\"no spaces\"]",
                "plugins.users.kv.shared: \"no spaces\" is not a bucket name",
            ),
            (
                "[plugins.users.kv]\nmax_value_size = \"1GiB\"",
                "plugins.users.kv.max_value_size: is between 1 B and 64 MiB",
            ),
            (
                "[plugins.users.kv]\nmax_ops_per_call = 0",
                "plugins.users.kv.max_ops_per_call: must be at least 1",
            ),
            (
                "[plugins.users.kv]\nmax_byte = \"1MiB\"",
                "plugins.users.kv.max_byte: unknown field",
            ),
            (
                "[kv]\nbackend = \"redis\"",
                "kv.url: backend = \"redis\" needs url",
            ),
            (
                "[kv]\nbackend = \"mongo\"",
                "kv.backend: unknown variant `mongo`",
            ),
            (
                "[kv]\nurl = \"redis://x\"",
                "kv.url: is for backend = \"redis\"",
            ),
            (
                "[defaults.kv]\n",
                "defaults: config values and grants go under a plugin",
            ),
            (
                "[plugins.p.config]\ntoken = { env = \"PLUGRPC_TEST_SURELY_UNSET\" }",
                "plugins.p.config.token: environment variable PLUGRPC_TEST_SURELY_UNSET is not set",
            ),
            (
                "[plugins.p.config]\ntoken = { file = \"/nonexistent/secret\" }",
                "plugins.p.config.token: /nonexistent/secret: ",
            ),
            (
                "[plugins.p.config]\ntoken = 7",
                "plugins.p.config.token: a value is a string, { env = \"NAME\" } or { file = \"path\" }",
            ),
            (
                "[plugins.p.outbound.\"bad alias\"]\nendpoints = [\"http://a:1\"]",
                "plugins.p.outbound.bad alias: an alias is 1 to 64 letters",
            ),
            (
                "[plugins.p]\nmax_concurrent_outbound_calls = 0",
                "plugins.p.max_concurrent_outbound_calls: must be at least 1",
            ),
            ("[plugins.users]\nmemory = \"lots\"", "plugins.users.memory"),
            ("[defaults]\ndeadline = \"5 parsecs\"", "defaults.deadline"),
            (
                "[defaults]\ncpu_time = \"0s\"",
                "defaults.cpu_time: must be longer than zero",
            ),
            (
                "[plugins.x]\ndeadline = \"2h\"",
                "plugins.x.deadline: 2h is longer than max_deadline (1h)",
            ),
            (
                "[plugins.x]\nmax_concurrent_calls = 0",
                "plugins.x.max_concurrent_calls: 0 is outside",
            ),
            (
                "[plugins.x]\nmemory = \"16KiB\"",
                "plugins.x.memory: 16.0 KiB is outside",
            ),
            ("[host]\nguest_stack = \"1KiB\"", "host.guest_stack"),
            (
                "[host]\nsandboxes = 20000",
                "host.sandboxes: 20000 is outside 1 ..= 16384",
            ),
            (
                "[host]\nsandboxes = 0",
                "host.sandboxes: 0 is outside 1 ..= 16384",
            ),
            (
                "[host]\nsandboxes = 10\n[defaults]\nmax_concurrent_calls = 11",
                "defaults.max_concurrent_calls: 11 is outside 1 ..= 10 (the host's sandbox pool, host.sandboxes)",
            ),
            (
                "[defaults]\nmax_deadline = \"1000years\"",
                "defaults.max_deadline: 1000years",
            ),
            ("a = 1\n[defaults\n", "line 2:"),
            ("listen = \"nowhere\"", "listen"),
            ("[defaults\nmemory = 1", "line 1:"),
            ("colour = \"blue\"", "unknown field `colour`"),
            (
                "[shutdown]\ngrace = \"2h\"",
                "shutdown.grace: 2h is longer than 1h",
            ),
            (
                "[tracing]\notlp = \"grpc://collector:4317\"",
                "tracing.otlp: \"grpc://collector:4317\": expected http://host:port or https://host:port",
            ),
            (
                "[tracing]\notlp = \"http://collector:4317\"\n[tracing.tls]\nca = \"ca.crt\"",
                "tracing.tls: applies to an https:// collector",
            ),
            (
                "[tracing]\notlp = \"https://collector:4317\"\n[tracing.tls]\ncert = \"c.crt\"",
                "tracing.tls.key: needed with cert",
            ),
            (
                "[sources.default]\noci = \"r.example/a\"\nplugins = [\"x:1\"]\ninsecure = true\nca = \"ca.crt\"",
                "sources.default.ca: is for TLS, and insecure = true speaks plain HTTP",
            ),
            (
                "[shutdown]\ndrain = \"1s\"",
                "shutdown.drain: unknown field",
            ),
            (
                "[edge]\nmax_connections = 0",
                "edge.max_connections: must be at least 1",
            ),
            (
                "[edge]\nidle_timeout = \"0s\"",
                "edge.idle_timeout: 0s is outside 1ms ..= 7days",
            ),
            (
                "[edge]\nrequest_buffer = \"1MiB\"",
                "edge.request_buffer: 1.0 MiB is less than request_buffer_per_connection (32.0 MiB)",
            ),
            ("[edge]\nmax_streams = 5", "edge.max_streams: unknown field"),
            (
                "[cors]\nallowed_origins = [\"app.example\"]",
                "cors.allowed_origins: \"app.example\" is not an origin",
            ),
            (
                "[tenants.acme.cors]\nallowed_origins = [\"https://a.example/\"]",
                "tenants.acme.cors.allowed_origins: \"https://a.example/\" is not an origin",
            ),
            (
                "[cors]\nallowed_origins = [\"*\"]\nallow_credentials = true",
                "cors.allow_credentials: browsers refuse credentials",
            ),
            (
                "[cors]\nexposed_headers = [\"bad header\"]",
                "cors: \"bad header\" is not a header name",
            ),
            (
                "[compression]\nlevel = 9",
                "compression.level: unknown field",
            ),
            ("[compression]\nmin_size = \"lots\"", "compression.min_size"),
            ("[tls]\ncert = \"a.pem\"", "tls: missing field `key`"),
            (
                "[tls]\ncert = \"a\"\nkey = \"b\"\nclient_auth = \"optional\"",
                "tls.client_auth: needs tls.client_ca",
            ),
            (
                "[tls]\ncert = \"a\"\nkey = \"b\"\nclient_ca = \"c\"\nclient_auth = \"sometimes\"",
                "tls.client_auth: unknown variant `sometimes`",
            ),
            (
                "[api_keys]\nci = \"hunter2\"",
                "api_keys.ci: not a SHA-256 hash (64 hex digits)",
            ),
            (
                "[api_keys]\n\"a b\" = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"",
                "api_keys.a b: a key's name is letters",
            ),
            (
                "[defaults]\nallow = [\"key:ci\"]",
                "defaults: allow rules go under [tenants.<t>] or a plugin",
            ),
            (
                "[plugins.x.methods.Get]\nallow = \"key:ci\"",
                "plugins.x.methods.Get.allow: invalid type",
            ),
            (
                "[tenants.default.plugins.x]\nmemory = \"8MiB\"",
                "tenants.default: the default tenant's plugins are configured under [plugins.<name>]",
            ),
            (
                "[tenants.Acme]",
                "tenants.Acme: a tenant's name is its folder's",
            ),
            (
                "[tenants.acme.plugins.users]\nmemory = \"1KiB\"",
                "tenants.acme.plugins.users.memory: 1.0 KiB is outside",
            ),
            (
                "[tenants.acme]\nquota = 1",
                "tenants.acme.quota: unknown field",
            ),
            (
                "[tenants.acme]\ncpu = \"lots\"",
                "tenants.acme.cpu: \"lots\" is not a number of cores",
            ),
            (
                "[tenants.acme]\ncpu = \"0\"",
                "tenants.acme.cpu: 0 is not a positive number",
            ),
            (
                "[tenants.acme]\nrate = 0",
                "tenants.acme.rate: 0 is not a positive number",
            ),
            (
                "[tenants.acme]\nmax_queued_calls = 4",
                "tenants.acme.max_queued_calls: needs max_concurrent_calls",
            ),
            (
                "[tenants.acme]\nhosts = [\"acme.example.com:443\"]",
                "tenants.acme.hosts: \"acme.example.com:443\" is not a host name",
            ),
            (
                "[defaults]\nmax_caller_share = 0",
                "defaults.max_caller_share: 0% is outside 1 ..= 100",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text);
            assert!(error.starts_with("plugrpc.toml: "), "{error}");
            assert!(
                error.contains(expected),
                "{text:?} gave {error:?}, expected {expected:?}"
            );
            assert!(!error.contains('\n'), "one line: {error:?}");
        }
    }

    /// One TOML value of a kind a config key might be given, right or wrong.
    fn any_value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            (0u64..100_000).prop_map(|n| n.to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            "[0-9]{1,6}(ms|s|m|h|days|years|parsecs)?".prop_map(|s| format!("{s:?}")),
            "[0-9]{1,5}(B|KiB|MiB|GiB|MB)?".prop_map(|s| format!("{s:?}")),
            "(required|optional|sometimes|[a-f0-9]{64}|127.0.0.1:[0-9]{1,5}|\\PC{0,10})"
                .prop_map(|s| format!("{s:?}")),
            Just("[1, 2]".to_owned()),
            Just("{ a = 1 }".to_owned()),
        ]
    }

    /// A plausible config: tables and keys the host knows, and some it does not.
    fn any_config() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let table = prop::sample::select(vec![
            "",
            "[host]",
            "[edge]",
            "[compression]",
            "[cors]",
            "[defaults]",
            "[plugins.users]",
            "[plugins.x]",
            "[tls]",
            "[api_keys]",
            "[shutdown]",
            "[nonsense]",
        ]);
        let key = prop::sample::select(vec![
            "listen",
            "plugins_dir",
            "sandboxes",
            "guest_stack",
            "watch",
            "cache",
            "grace",
            "max_connections",
            "max_connections_per_ip",
            "idle_timeout",
            "handshake_timeout",
            "first_request_timeout",
            "max_connection_age",
            "max_streams_per_connection",
            "max_resets_per_second",
            "request_buffer",
            "request_buffer_per_connection",
            "message_timeout",
            "stream_idle_timeout",
            "deadline",
            "max_deadline",
            "memory",
            "cpu_time",
            "max_concurrent_calls",
            "max_queued_calls",
            "max_caller_share",
            "max_request_size",
            "max_response_size",
            "reuse_instances",
            "compress_responses",
            "responses",
            "min_size",
            "allowed_origins",
            "max_age",
            "cert",
            "key",
            "client_ca",
            "client_auth",
            "ci",
            "colour",
        ]);
        prop::collection::vec(
            (table, prop::collection::vec((key, any_value()), 0..4)),
            0..5,
        )
        .prop_map(|tables| {
            let mut text = String::new();
            for (table, entries) in tables {
                text.push_str(table);
                text.push('\n');
                for (key, value) in entries {
                    text.push_str(&format!("{key} = {value}\n"));
                }
            }
            text
        })
    }

    proptest::proptest! {
        /// Any config the grammar makes is accepted (and then valid) or refused in one
        /// line naming the file: never a panic.
        #[test]
        fn any_config_is_valid_or_refused_in_one_line(text in any_config()) {
            match HostConfig::from_toml("plugrpc.toml", &text) {
                Ok(config) => proptest::prop_assert!(config.validate().is_ok()),
                Err(error) => {
                    let line = error.to_string();
                    proptest::prop_assert!(line.starts_with("plugrpc.toml: "), "{line}");
                    proptest::prop_assert!(!line.contains('\n'), "{line:?}");
                }
            }
        }

        /// Any text at all: an answer, never a panic.
        #[test]
        fn any_text_is_a_config_or_an_error(text in "\\PC{0,200}") {
            let _ = HostConfig::from_toml("plugrpc.toml", &text);
        }
    }
}
