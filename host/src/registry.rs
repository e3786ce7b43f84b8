//! Which plugin serves which method: the plugins folder (its `*.wasm` files are the
//! default tenant's, each subfolder's another tenant's), kept in sync with a routing table
//! the request path reads lock-free. Each sync loads what is new or changed off the
//! request path, refuses what cannot load or would break callers (keeping the version
//! that works), and swaps the whole table in one step. Calls in flight keep the version
//! they started on until they end.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use plugrpc_runtime::{Engine, Limits, LoadError, MethodKind, Plugin, Quota, QuotaLimits};
use tokio::sync::Mutex;

use crate::authz::{Pattern, Rules};
use crate::capabilities::Capabilities;
use crate::compat;
use crate::config::{DEFAULT_TENANT, HostConfig, is_tenant_name};
use crate::doors::http_rule::{self, BadRule, Binding};
use crate::hosts::HostPattern;
use crate::metrics::{Metrics, PluginMetrics, RouteMetrics};
use crate::traces::Traces;

/// Where one `/package.Service/Method` path goes.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) plugin: Arc<Plugin>,
    /// The tenant whose plugin it is.
    pub(crate) tenant: Arc<str>,
    /// Who may call it.
    pub(crate) rules: Rules,
    /// The hosts its tenant answers for; empty: any.
    pub(crate) hosts: Arc<[HostPattern]>,
    /// Its tenant's quota over all the tenant's plugins, if it has one.
    pub(crate) quota: Option<Arc<Quota>>,
    pub(crate) kind: MethodKind,
    /// The method's descriptor: its message types, for the doors that speak JSON.
    pub(crate) method: prost_reflect::MethodDescriptor,
    /// The path itself, made once at load for every call of it to share.
    pub(crate) path: Arc<str>,
    /// The method's metrics, when the host keeps them.
    pub(crate) metrics: Option<Arc<RouteMetrics>>,
}

/// An HTTP request a `google.api.http` binding matched.
pub(crate) struct Transcoded {
    /// The route of the bound method.
    pub(crate) route: Route,
    /// The binding.
    pub(crate) binding: Arc<Binding>,
    /// The values of its path variables, by field path.
    pub(crate) variables: Vec<(String, String)>,
}

/// Every routable method path of every serving plugin: one route per path, or several
/// of tenants told apart by host.
#[derive(Default)]
pub(crate) struct RouteTable {
    routes: HashMap<String, Vec<Route>>,
    /// Every `google.api.http` binding of every serving method, in load order.
    bindings: Vec<Arc<Binding>>,
}

/// A tenant's quota (none when its limits set none), and the limits it was made from.
type TenantQuota = (QuotaLimits, Option<Arc<Quota>>);

/// The live routing table, and the plugin serving from each file.
pub(crate) struct Registry {
    table: ArcSwap<RouteTable>,
    /// Each tenant's quota, made once: calls in flight and new ones share it across
    /// reloads.
    quotas: std::sync::Mutex<HashMap<Arc<str>, TenantQuota>>,
    /// Written by one sync at a time; the request path never touches it.
    files: Mutex<BTreeMap<PathBuf, Arc<Plugin>>>,
    /// Counts the tables swapped in, for health watchers to see a change.
    changes: tokio::sync::watch::Sender<u64>,
    /// What plugins are granted from: the key-value backend, outbound targets.
    capabilities: Capabilities,
    /// The config as the host last re-read it (SIGHUP, or a change to the watched file):
    /// limits, rules, grants and config values for every sync since; `None` until then.
    current: ArcSwapOption<HostConfig>,
    /// What serves now, by tenant, and the files the last sync refused: for the admin
    /// listener's `/plugins`.
    serving: ArcSwap<Serving>,
    /// Where calls, sandboxes and loads are counted, when the host keeps metrics.
    metrics: Option<Arc<Metrics>>,
    /// Where calls' spans go, when the host traces.
    traces: Option<Arc<Traces>>,
    /// Turns true when the host gives up on the calls still running at the end of its
    /// shutdown grace.
    stop: tokio::sync::watch::Sender<bool>,
}

/// The serving plugins with their tenants, and the files refused, as of the last sync.
#[derive(Default)]
pub(crate) struct Serving {
    /// Each serving plugin, with its tenant.
    pub(crate) plugins: Vec<(Arc<str>, Arc<Plugin>)>,
    /// Each file the last sync did not load, and why.
    pub(crate) refused: Vec<Refusal>,
}

/// The services built into the host; no plugin may serve them.
pub(crate) const BUILT_IN_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

impl Registry {
    pub(crate) fn new(
        capabilities: Capabilities,
        metrics: Option<Arc<Metrics>>,
        traces: Option<Arc<Traces>>,
    ) -> Self {
        Self {
            metrics,
            traces,
            table: ArcSwap::from_pointee(RouteTable::default()),
            quotas: std::sync::Mutex::default(),
            files: Mutex::default(),
            changes: tokio::sync::watch::Sender::new(0),
            capabilities,
            current: ArcSwapOption::empty(),
            serving: ArcSwap::default(),
            stop: tokio::sync::watch::Sender::new(false),
        }
    }

    /// What every call hears when the host stops the calls still running.
    pub(crate) fn calls_stop(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Ends every call still running, UNAVAILABLE: the shutdown grace has passed.
    pub(crate) fn stop_calls(&self) {
        self.stop.send_replace(true);
    }

    /// What serves now and what the last sync refused.
    pub(crate) fn serving(&self) -> Arc<Serving> {
        self.serving.load_full()
    }

    /// The host's metrics, when it keeps them.
    pub(crate) fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// The host's tracer, when it traces.
    pub(crate) fn traces(&self) -> Option<&Arc<Traces>> {
        self.traces.as_ref()
    }

    /// The host's capabilities, for the server to open the local door.
    pub(crate) fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Told of every table swapped in from now on (the serving set may have changed).
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every service a caller with `identity` may call on `host`, by full name, with the
    /// plugin serving it: what health and reflection show that caller. A service is shown
    /// when the caller may call at least one of its methods.
    pub(crate) fn visible(
        &self,
        identity: Option<&str>,
        host: Option<&str>,
    ) -> BTreeMap<String, Arc<Plugin>> {
        let table = self.table.load();
        let mut services = BTreeMap::new();
        for (path, routes) in &table.routes {
            let Some((service, _method)) = path.trim_start_matches('/').split_once('/') else {
                continue;
            };
            if services.contains_key(service) {
                continue;
            }
            let serving = routes.iter().find(|route| {
                route.hosts.is_empty()
                    || host.is_some_and(|host| route.hosts.iter().any(|p| p.matches(host)))
            });
            if let Some(route) = serving.filter(|route| route.rules.check(identity).is_ok()) {
                services.insert(service.to_owned(), route.plugin.clone());
            }
        }
        services
    }

    /// The route for a request path, if any plugin serves it for the request's host
    /// (read only when tenants with `hosts` serve the path).
    pub(crate) fn lookup(
        &self,
        path: &str,
        host: impl FnOnce() -> Option<String>,
    ) -> Option<Route> {
        self.table.load().lookup(path, host)
    }

    /// The route and `google.api.http` binding for an HTTP request, with the values of
    /// the binding's path variables, if a serving method is bound to its verb and path.
    pub(crate) fn transcode(
        &self,
        verb: &http::Method,
        path: &str,
        host: impl Fn() -> Option<String>,
    ) -> Option<Transcoded> {
        let table = self.table.load();
        table
            .bindings
            .iter()
            .filter(|binding| binding.verb == *verb)
            .find_map(|binding| {
                let variables = binding.template.matches(path)?;
                let route = table.lookup(&binding.grpc_path, &host)?;
                Some(Transcoded {
                    route,
                    binding: binding.clone(),
                    variables,
                })
            })
    }

    /// `tenant`'s quota, made on first use.
    /// `tenant`'s quota, made on first use.
    fn quota(&self, config: &HostConfig, tenant: &Arc<str>) -> Option<Arc<Quota>> {
        let mut quotas = self.quotas.lock().unwrap_or_else(|e| e.into_inner());
        let limits = config.quota_of(tenant);
        // Kept while its limits stay (a reload must not hand a tenant a second quota
        // beside the one its calls in flight hold); changed limits start a fresh one.
        let made =
            || (limits != QuotaLimits::default()).then(|| Arc::new(Quota::new(tenant, &limits)));
        match quotas.get(tenant) {
            Some((kept, quota)) if *kept == limits => quota.clone(),
            _ => {
                let quota = made();
                quotas.insert(tenant.clone(), (limits.clone(), quota.clone()));
                quota
            }
        }
    }

    /// Brings the serving set in line with the plugins folder.
    pub(crate) async fn sync(
        &self,
        engine: &Engine,
        config: &HostConfig,
    ) -> Result<LoadReport, RegistryError> {
        self.load(engine, config, None).await
    }

    /// Makes `config` the host's from now on and reloads every plugin under it (its
    /// limits, rules, grants and config values): calls in flight finish on the version
    /// they started on, new calls take the new one; a plugin the new config refuses keeps
    /// serving as it was.
    pub(crate) async fn reconfigure(
        &self,
        engine: &Engine,
        config: HostConfig,
    ) -> Result<LoadReport, RegistryError> {
        let config = Arc::new(config);
        self.load(engine, &config.clone(), Some(config)).await
    }

    /// Loads the plugins folder and swaps the new routing table in, under the config
    /// current when it holds the lock (one sync at a time, so a watcher's sync never
    /// brings an older config back): the last reload's, else `started`. A `reload`
    /// becomes current once its folder reads, and has every plugin loaded again, not
    /// only changed files.
    async fn load(
        &self,
        engine: &Engine,
        started: &HostConfig,
        reload: Option<Arc<HostConfig>>,
    ) -> Result<LoadReport, RegistryError> {
        let mut files = self.files.lock().await;
        let every = reload.is_some();
        let current = reload.clone().or_else(|| self.current.load_full());
        let config = current.as_deref().unwrap_or(started);
        let found = plugin_files(&config.plugins_dir)?;
        if reload.is_some() {
            self.current.store(reload);
        }
        let mut report = LoadReport::default();
        let mut candidates = Vec::new();
        let settings = Settings {
            config,
            capabilities: &self.capabilities,
        };
        let total = found.len();
        for (done, (tenant, file)) in found.into_iter().enumerate() {
            let old = files.get(&file).cloned();
            match load_if_changed(engine, &settings, &tenant, &file, old.as_ref(), every).await {
                Ok(plugin) => {
                    // Progress through a folder of many: compiling each can take seconds.
                    if total > 1 && !old.as_ref().is_some_and(|old| Arc::ptr_eq(old, &plugin)) {
                        tracing::info!(
                            event = "compiled",
                            "[{}/{total}] {} compiled in {}",
                            done + 1,
                            file.display(),
                            plugrpc_runtime::duration(plugin.compile_time())
                        );
                    }
                    candidates.push((tenant, plugin));
                }
                Err(reason) => {
                    report.refuse(&file, reason);
                    // A version that works keeps serving.
                    candidates.extend(old.map(|old| (tenant, old)));
                }
            }
        }

        // Files already serving keep their services against new files (stable sort:
        // name order within each group).
        candidates.sort_by_key(|(_, p)| !files.contains_key(p.file()));
        let mut table = RouteTable::default();
        let mut next = BTreeMap::new();
        for (tenant, plugin) in candidates {
            // A new version that conflicts falls back to the version it replaces.
            let fallback = files
                .get(plugin.file())
                .filter(|old| !Arc::ptr_eq(old, &plugin));
            for plugin in std::iter::once(plugin).chain(fallback.cloned()) {
                let quota = self.quota(config, &tenant);
                let metrics = self
                    .metrics
                    .as_ref()
                    .map(|metrics| (metrics, metrics.plugin(&tenant, plugin.name())));
                match table.add(config, &tenant, quota, &plugin, metrics) {
                    Ok(()) => {
                        next.insert(plugin.file().to_owned(), plugin);
                        break;
                    }
                    Err(reason) => report.refuse(plugin.file(), reason),
                }
            }
        }
        self.table.store(Arc::new(table));
        self.changes.send_modify(|generation| *generation += 1);
        log_changes(&config.plugins_dir, &files, &next);
        if let Some(metrics) = &self.metrics {
            count_changes(metrics, &config.plugins_dir, &files, &next, &report);
        }
        report.loaded = next
            .values()
            .map(|p| summary(&tenant_of(&config.plugins_dir, p.file()), p))
            .collect();
        self.serving.store(Arc::new(Serving {
            plugins: next
                .values()
                .map(|p| (tenant_of(&config.plugins_dir, p.file()), p.clone()))
                .collect(),
            refused: report.refused.clone(),
        }));
        *files = next;
        if report.loaded.is_empty() {
            tracing::warn!(dir = %config.plugins_dir.display(), "no plugins are serving: every call will be UNIMPLEMENTED");
        }
        Ok(report)
    }
}

/// What a plugin loads with: the host's config and capabilities.
struct Settings<'a> {
    config: &'a HostConfig,
    capabilities: &'a Capabilities,
}

/// The plugin for `file`: the one serving if its content is unchanged (and not asked to
/// load `again`), else a fresh load that must not break callers of the old version.
async fn load_if_changed(
    engine: &Engine,
    settings: &Settings<'_>,
    tenant: &str,
    file: &Path,
    old: Option<&Arc<Plugin>>,
    again: bool,
) -> Result<Arc<Plugin>, RefusalReason> {
    // Reading and hashing a few megabytes is blocking work: off the async workers.
    let path = file.to_owned();
    let (wasm, hash) = tokio::task::spawn_blocking(move || {
        let wasm = std::fs::read(path)?;
        let hash = plugrpc_runtime::content_hash(&wasm);
        Ok::<_, std::io::Error>((wasm, hash))
    })
    .await
    .map_err(|e| LoadError::Read(std::io::Error::other(e)))?
    .map_err(LoadError::Read)?;
    if let Some(old) = old.filter(|old| old.hash() == hash && !again) {
        return Ok(old.clone());
    }
    let config = settings.config;
    let new = Plugin::load(engine, file, wasm, hash, |name| {
        let grants = settings.capabilities.grants(config, tenant, name)?;
        Ok((config.tenant_limits_for(tenant, name), grants))
    })
    .await?;
    if let Some(old) = old {
        let changes = compat::breaking_changes(old.services(), new.services());
        if !changes.is_empty() && !new.limits().allow_breaking_changes {
            return Err(RefusalReason::Breaking {
                plugin: new.name().to_owned(),
                version: new.version().to_owned(),
                serving: old.version().to_owned(),
                changes,
            });
        }
    }
    Ok(Arc::new(new))
}

/// One structured log event per plugin that came, changed or went.
fn log_changes(
    dir: &Path,
    before: &BTreeMap<PathBuf, Arc<Plugin>>,
    after: &BTreeMap<PathBuf, Arc<Plugin>>,
) {
    for (file, plugin) in after {
        let event = match before.get(file) {
            Some(old) if Arc::ptr_eq(old, plugin) => continue,
            Some(_) => "reloaded",
            None => "loaded",
        };
        tracing::info!(
            event,
            tenant = %tenant_of(dir, file),
            plugin = plugin.name(),
            version = plugin.version(),
            hash = plugin.hash(),
            file = %file.display(),
            services = ?plugin.services().iter().map(|s| s.full_name()).collect::<Vec<_>>(),
            compile_ms = plugin.compile_time().as_millis(),
            limits = %plugin.limits(),
            instances = if plugin.reuses_instances() { "warm" } else { "fresh" },
            "plugin {event}"
        );
    }
    for (file, plugin) in before {
        if !after.contains_key(file) {
            tracing::info!(
                event = "unloaded",
                tenant = %tenant_of(dir, file),
                plugin = plugin.name(),
                version = plugin.version(),
                hash = plugin.hash(),
                file = %file.display(),
                "plugin unloaded: its calls in flight finish, new calls are UNIMPLEMENTED"
            );
        }
    }
}

/// Counts the plugin versions a sync loaded (with their compile time) and the files it
/// refused.
fn count_changes(
    metrics: &Metrics,
    dir: &Path,
    before: &BTreeMap<PathBuf, Arc<Plugin>>,
    after: &BTreeMap<PathBuf, Arc<Plugin>>,
    report: &LoadReport,
) {
    for (file, plugin) in after {
        if !before.get(file).is_some_and(|old| Arc::ptr_eq(old, plugin)) {
            let tenant = tenant_of(dir, file);
            metrics.loaded(&tenant, plugin.name(), plugin.compile_time());
        }
    }
    for refusal in &report.refused {
        metrics.refused(&tenant_of(dir, &refusal.file), refusal.reason.kind());
    }
}

fn summary(tenant: &str, plugin: &Plugin) -> LoadedSummary {
    LoadedSummary {
        tenant: tenant.to_owned(),
        name: plugin.name().to_owned(),
        version: plugin.version().to_owned(),
        file: plugin.file().to_owned(),
        services: plugin
            .services()
            .iter()
            .map(|s| s.full_name().to_owned())
            .collect(),
        hash: plugin.hash().to_owned(),
        limits: *plugin.limits(),
    }
}

/// What loading the plugins folder did: for the log, operators and tests.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Plugins now serving.
    pub loaded: Vec<LoadedSummary>,
    /// Files that were not loaded, and why.
    pub refused: Vec<Refusal>,
}

impl LoadReport {
    /// Records and logs, in one line, a file that is not (or no longer) serving.
    fn refuse(&mut self, file: &Path, reason: RefusalReason) {
        tracing::warn!(event = "refused", file = %file.display(), "plugin refused: {reason}");
        self.refused.push(Refusal {
            file: file.to_owned(),
            reason: Arc::new(reason),
        });
    }
}

/// A plugin that is serving.
#[derive(Clone, Debug)]
pub struct LoadedSummary {
    /// The tenant it belongs to (`default` for files directly in the plugins folder).
    pub tenant: String,
    /// The plugin's name from its manifest.
    pub name: String,
    /// The plugin's version from its manifest.
    pub version: String,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// Fully qualified names of the services it serves.
    pub services: Vec<String>,
    /// SHA-256 of the file's content, hex.
    pub hash: String,
    /// The limits its calls run under.
    pub limits: Limits,
}

/// A file that is not serving.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The file.
    pub file: PathBuf,
    /// Why; its `Display` is one line.
    pub reason: Arc<RefusalReason>,
}

/// Why a plugin file is not serving.
#[derive(Debug, thiserror::Error)]
pub enum RefusalReason {
    /// It could not be read, compiled, linked or described.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// It would replace a serving version in a way that breaks that version's callers.
    #[error(
        "version {version} would break callers of version {serving}: {} (set allow_breaking_changes = true in [plugins.{plugin}] to allow)",
        changes.join("; ")
    )]
    Breaking {
        /// The plugin's name.
        plugin: String,
        /// The version refused.
        version: String,
        /// The version that keeps serving.
        serving: String,
        /// Each breaking change, one line each.
        changes: Vec<String>,
    },
    /// Another file of the same tenant serves a plugin of the same name.
    #[error("a plugin named {name:?} is already loaded from {}", other.display())]
    NameTaken {
        /// The name.
        name: String,
        /// The file serving it.
        other: PathBuf,
    },
    /// Two tenants claim a service for hosts that overlap: a request could not tell them
    /// apart.
    #[error(
        "service {service} of tenant {tenant:?} is also served by tenant {other:?}, and their hosts overlap ({mine} and {theirs})"
    )]
    AmbiguousHosts {
        /// The service's full name.
        service: String,
        /// The tenant refused.
        tenant: String,
        /// The tenant serving it.
        other: String,
        /// The refused tenant's host pattern.
        mine: String,
        /// The serving tenant's host pattern it overlaps.
        theirs: String,
    },
    /// It declares a service the host itself serves.
    #[error("service {service} is built into the host and cannot be served by a plugin")]
    BuiltIn {
        /// The service's full name.
        service: String,
    },
    /// Another plugin serves one of its services.
    #[error("service {service} is already served by plugin {plugin:?} of tenant {tenant:?} ({})", file.display())]
    ServiceTaken {
        /// The service's full name.
        service: String,
        /// The tenant of the plugin serving it.
        tenant: String,
        /// The plugin serving it.
        plugin: String,
        /// That plugin's file.
        file: PathBuf,
    },
}

impl RefusalReason {
    /// The reason in a word, as metrics label it.
    pub fn kind(&self) -> &'static str {
        match self {
            RefusalReason::Load(_) => "load",
            RefusalReason::Breaking { .. } => "breaking",
            RefusalReason::NameTaken { .. } => "name_taken",
            RefusalReason::AmbiguousHosts { .. } => "ambiguous_hosts",
            RefusalReason::BuiltIn { .. } => "built_in",
            RefusalReason::ServiceTaken { .. } => "service_taken",
        }
    }
}

/// Why the plugins folder could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the plugins folder {}: {source}", .dir.display())]
pub struct RegistryError {
    dir: PathBuf,
    source: std::io::Error,
}

/// Every plugin file with its tenant: `*.wasm` directly in `dir` are the default
/// tenant's, those of each subfolder named like a tenant are that tenant's (a `default/`
/// folder is the default tenant's too). Other subfolders are logged and skipped.
pub(crate) fn plugin_files(dir: &Path) -> Result<Vec<(Arc<str>, PathBuf)>, RegistryError> {
    let error = |source| RegistryError {
        dir: dir.to_owned(),
        source,
    };
    let default: Arc<str> = Arc::from(DEFAULT_TENANT);
    let mut files: Vec<(Arc<str>, PathBuf)> = wasm_files(dir)
        .map_err(error)?
        .into_iter()
        .map(|path| (default.clone(), path))
        .collect();
    for entry in std::fs::read_dir(dir).map_err(error)? {
        let path = entry.map_err(error)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !path.is_dir() || name.starts_with('.') {
            continue;
        }
        if !is_tenant_name(name) {
            tracing::warn!(
                folder = %path.display(),
                "not a tenant: a tenant's folder is named with lowercase letters, digits, '-' and '_'"
            );
            continue;
        }
        let tenant: Arc<str> = Arc::from(name);
        // A tenant folder that cannot be read serves nothing; the others go on.
        match wasm_files(&path) {
            Ok(found) => files.extend(found.into_iter().map(|file| (tenant.clone(), file))),
            Err(source) => {
                tracing::warn!(folder = %path.display(), "cannot read a tenant folder: {source}")
            }
        }
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(files)
}

/// The `*.wasm` files directly in `dir`.
fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "wasm") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The tenant of a plugin file under `dir`.
fn tenant_of(dir: &Path, file: &Path) -> Arc<str> {
    match file.parent() {
        Some(parent) if parent != dir => parent
            .file_name()
            .and_then(|n| n.to_str())
            .map_or_else(|| Arc::from(DEFAULT_TENANT), Arc::from),
        _ => Arc::from(DEFAULT_TENANT),
    }
}

impl RouteTable {
    /// The route for `path` on the request's host.
    fn lookup(&self, path: &str, host: impl FnOnce() -> Option<String>) -> Option<Route> {
        let candidates = self.routes.get(path)?;
        if let [only] = candidates.as_slice()
            && only.hosts.is_empty()
        {
            return Some(only.clone());
        }
        let host = host();
        candidates
            .iter()
            .find(|route| {
                route.hosts.is_empty()
                    || host
                        .as_deref()
                        .is_some_and(|host| route.hosts.iter().any(|p| p.matches(host)))
            })
            .cloned()
    }

    /// Adds every method of `tenant`'s `plugin`, or nothing if it conflicts with what is
    /// in the table: plugin names are unique within a tenant, services across all.
    fn add(
        &mut self,
        config: &HostConfig,
        tenant: &Arc<str>,
        quota: Option<Arc<Quota>>,
        plugin: &Arc<Plugin>,
        metrics: Option<(&Arc<Metrics>, Arc<PluginMetrics>)>,
    ) -> Result<(), RefusalReason> {
        let hosts: Arc<[HostPattern]> = config.hosts_of(tenant).into();
        let claims: Vec<Claim<'_>> = self
            .routes
            .values()
            .flatten()
            .map(|route| Claim {
                tenant: &route.tenant,
                plugin: route.plugin.name(),
                file: route.plugin.file(),
                // The path is `/package.Service/Method`.
                service: route.path[1..]
                    .rsplit_once('/')
                    .map_or(&route.path[..], |(service, _)| service),
                hosts: &route.hosts,
            })
            .collect();
        conflict(tenant, plugin.name(), plugin.services(), &hosts, &claims)?;
        let mut bindings = Vec::new();
        for service in plugin.services() {
            for method in service.methods() {
                let path: Arc<str> =
                    Arc::from(format!("/{}/{}", service.full_name(), method.name()));
                // A binding the host cannot serve costs the plugin its HTTP/JSON door for
                // that method only: it is still served on every other door.
                let found = http_rule::bindings(&method, &path).unwrap_or_else(|bad: BadRule| {
                    tracing::warn!(
                        tenant = %tenant,
                        plugin = plugin.name(),
                        "{bad}: not served as HTTP/JSON (gRPC, gRPC-Web and Connect serve it)"
                    );
                    Vec::new()
                });
                bindings.extend(found.into_iter().map(Arc::new));
            }
        }
        for service in plugin.services() {
            for method in service.methods() {
                let kind = MethodKind::of(&method);
                let path = format!("/{}/{}", service.full_name(), method.name());
                let (has_rules, lists) = config.allow_lists(tenant, plugin.name(), method.name());
                let lists = lists
                    .into_iter()
                    .map(|list| list.iter().map(|p| Pattern::new(p)).collect())
                    .collect();
                let route = Route {
                    plugin: plugin.clone(),
                    tenant: tenant.clone(),
                    rules: Rules::new(has_rules, lists),
                    hosts: hosts.clone(),
                    quota: quota.clone(),
                    kind,
                    metrics: metrics
                        .as_ref()
                        .map(|(metrics, plugin)| metrics.route(tenant, plugin, &method)),
                    method: method.clone(),
                    path: Arc::from(path.as_str()),
                };
                self.routes.entry(path).or_default().push(route);
            }
        }
        self.bindings.extend(bindings);
        Ok(())
    }
}

/// A service a plugin already serves, as [`conflict`] sees it.
pub(crate) struct Claim<'a> {
    /// The tenant of the plugin serving it.
    pub(crate) tenant: &'a str,
    /// The plugin serving it.
    pub(crate) plugin: &'a str,
    /// That plugin's file.
    pub(crate) file: &'a Path,
    /// The service's full name.
    pub(crate) service: &'a str,
    /// The hosts that plugin's tenant answers for; empty: any.
    pub(crate) hosts: &'a [HostPattern],
}

/// Why `tenant`'s plugin `name`, serving `services` for `hosts`, cannot serve beside the
/// plugins that made `claims`: the one rule for loading (plugin names are unique within a
/// tenant, services across all unless hosts tell them apart), which `plugrpc check` asks
/// too.
pub(crate) fn conflict(
    tenant: &str,
    name: &str,
    services: &[prost_reflect::ServiceDescriptor],
    hosts: &[HostPattern],
    claims: &[Claim<'_>],
) -> Result<(), RefusalReason> {
    if let Some(other) = claims
        .iter()
        .find(|claim| claim.tenant == tenant && claim.plugin == name)
    {
        return Err(RefusalReason::NameTaken {
            name: name.to_owned(),
            other: other.file.to_owned(),
        });
    }
    if let Some(service) = services
        .iter()
        .find(|service| BUILT_IN_SERVICES.contains(&service.full_name()))
    {
        return Err(RefusalReason::BuiltIn {
            service: service.full_name().to_owned(),
        });
    }
    for service in services {
        // Every method's claim: another tenant's version may have other methods.
        for other in claims.iter().filter(|c| c.service == service.full_name()) {
            if hosts.is_empty() || other.hosts.is_empty() {
                return Err(RefusalReason::ServiceTaken {
                    service: service.full_name().to_owned(),
                    tenant: other.tenant.to_owned(),
                    plugin: other.plugin.to_owned(),
                    file: other.file.to_owned(),
                });
            }
            let overlap = hosts.iter().find_map(|mine| {
                other
                    .hosts
                    .iter()
                    .find(|theirs| mine.overlaps(theirs))
                    .map(|theirs| (mine, theirs))
            });
            if let Some((mine, theirs)) = overlap {
                return Err(RefusalReason::AmbiguousHosts {
                    service: service.full_name().to_owned(),
                    tenant: tenant.to_owned(),
                    other: other.tenant.to_owned(),
                    mine: mine.to_string(),
                    theirs: theirs.to_string(),
                });
            }
        }
    }
    Ok(())
}
