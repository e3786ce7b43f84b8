//! Which plugin serves which method: the plugins folder loaded into a routing table that
//! the request path reads lock-free. A plugin that cannot load is refused with one log
//! line and never takes the others down with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{HostConfig, Limits};
use crate::runtime::{Engine, LoadedPlugin};

/// How a method is called, as its descriptor declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MethodKind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, one response.
    ClientStreaming,
    /// Streams both ways.
    BidiStreaming,
}

/// Where one `/package.Service/Method` path goes.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) plugin: Arc<LoadedPlugin>,
    pub(crate) kind: MethodKind,
}

/// Every routable method path of every loaded plugin.
#[derive(Default)]
pub(crate) struct RouteTable {
    routes: HashMap<String, Route>,
}

/// The live routing table, swapped whole so readers never see half an update.
pub(crate) struct Registry {
    table: ArcSwap<RouteTable>,
}

impl Registry {
    pub(crate) fn new(table: RouteTable) -> Self {
        Self {
            table: ArcSwap::from_pointee(table),
        }
    }

    /// The route for a request path, if any plugin serves it.
    pub(crate) fn lookup(&self, path: &str) -> Option<Route> {
        self.table.load().routes.get(path).cloned()
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

/// A plugin that is serving.
#[derive(Clone, Debug)]
pub struct LoadedSummary {
    /// The plugin's name from its manifest.
    pub name: String,
    /// The plugin's version from its manifest.
    pub version: String,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// Fully qualified names of the services it serves.
    pub services: Vec<String>,
    /// The limits its calls run under.
    pub limits: Limits,
}

/// A file that is not serving.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The file.
    pub file: PathBuf,
    /// Why, in one line.
    pub reason: String,
}

/// Why the plugins folder could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the plugins folder {}: {source}", .dir.display())]
pub struct RegistryError {
    dir: PathBuf,
    source: std::io::Error,
}

/// Loads every `.wasm` file in `dir`, in name order; the first plugin to claim a service
/// keeps it.
pub(crate) async fn load_dir(
    engine: &Engine,
    config: &HostConfig,
) -> Result<(RouteTable, LoadReport), RegistryError> {
    let dir = config.plugins_dir.as_path();
    let mut table = RouteTable::default();
    let mut report = LoadReport::default();
    for file in wasm_files(dir)? {
        let loaded = match std::fs::read(&file) {
            Ok(wasm) => LoadedPlugin::load(engine, config, &file, wasm)
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(format!("cannot read the file: {error}")),
        };
        let outcome = loaded.and_then(|plugin| table.add(Arc::new(plugin)));
        match outcome {
            Ok(summary) => {
                tracing::info!(
                    plugin = %summary.name,
                    version = %summary.version,
                    file = %summary.file.display(),
                    services = ?summary.services,
                    limits = %summary.limits,
                    "plugin loaded"
                );
                report.loaded.push(summary);
            }
            Err(reason) => {
                tracing::warn!(file = %file.display(), "plugin refused: {reason}");
                report.refused.push(Refusal { file, reason });
            }
        }
    }
    for name in config.plugins.keys() {
        if !report.loaded.iter().any(|p| &p.name == name) {
            tracing::warn!(
                "the config sets limits for plugin {name:?}, but no plugin of that name is loaded"
            );
        }
    }
    if report.loaded.is_empty() {
        tracing::warn!(dir = %dir.display(), "no plugins are serving: every call will be UNIMPLEMENTED");
    }
    Ok((table, report))
}

fn wasm_files(dir: &Path) -> Result<Vec<PathBuf>, RegistryError> {
    let error = |source| RegistryError {
        dir: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(error)? {
        let path = entry.map_err(error)?.path();
        if path.extension().is_some_and(|ext| ext == "wasm") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

impl RouteTable {
    /// Adds every method of `plugin`, or nothing if it conflicts with what is loaded.
    fn add(&mut self, plugin: Arc<LoadedPlugin>) -> Result<LoadedSummary, String> {
        if let Some(other) = self
            .routes
            .values()
            .find(|r| r.plugin.name() == plugin.name())
        {
            return Err(format!(
                "a plugin named {:?} is already loaded from {}",
                plugin.name(),
                other.plugin.file().display()
            ));
        }
        for service in plugin.services() {
            let prefix = format!("/{}/", service.full_name());
            if let Some((_, other)) = self
                .routes
                .iter()
                .find(|(path, _)| path.starts_with(&prefix))
            {
                return Err(format!(
                    "service {} is already served by plugin {:?} ({})",
                    service.full_name(),
                    other.plugin.name(),
                    other.plugin.file().display()
                ));
            }
        }
        for service in plugin.services() {
            for method in service.methods() {
                let kind = match (method.is_client_streaming(), method.is_server_streaming()) {
                    (false, false) => MethodKind::Unary,
                    (false, true) => MethodKind::ServerStreaming,
                    (true, false) => MethodKind::ClientStreaming,
                    (true, true) => MethodKind::BidiStreaming,
                };
                let path = format!("/{}/{}", service.full_name(), method.name());
                self.routes.insert(
                    path,
                    Route {
                        plugin: plugin.clone(),
                        kind,
                    },
                );
            }
        }
        Ok(LoadedSummary {
            name: plugin.name().to_owned(),
            version: plugin.version().to_owned(),
            file: plugin.file().to_owned(),
            services: plugin
                .services()
                .iter()
                .map(|s| s.full_name().to_owned())
                .collect(),
            limits: *plugin.limits(),
        })
    }
}
