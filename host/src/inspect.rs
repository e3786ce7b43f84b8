//! `plugrpc inspect`: what a `.wasm` file is, as the host sees it at load (contract,
//! manifest, services and methods with their shapes and types, imports and the grants
//! they ask for, size, compile time), without serving it.

use std::fmt::Write as _;
use std::path::Path;

use plugrpc_runtime::{CONTRACT, Engine, Inspection, LoadError, MethodKind};
use serde::Serialize;

use crate::config::HostConfig;

/// Why a file could not be inspected; one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The engine could not be built.
    #[error("starting the WebAssembly engine: {0}")]
    Engine(#[from] plugrpc_runtime::EngineError),
    /// The file is not a plugin this host would load.
    #[error("{file}: {source}")]
    Load {
        /// The file.
        file: String,
        /// Why.
        source: LoadError,
    },
}

/// A plugin file, described.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The file.
    pub file: String,
    /// Its manifest's name.
    pub name: String,
    /// Its manifest's version.
    pub version: String,
    /// The contract it was built against (the one this host serves, or it would fail).
    pub contract: &'static str,
    /// Whether it declares itself stateless.
    pub stateless: bool,
    /// Its size in bytes.
    pub size: usize,
    /// How long compiling it took, in milliseconds.
    pub compile_ms: u128,
    /// Everything it imports.
    pub imports: Vec<String>,
    /// The config keys that must grant what it imports (`kv`, `outbound`).
    pub needs_grants: Vec<&'static str>,
    /// Its services and their methods.
    pub services: Vec<ServiceReport>,
}

/// One service of a plugin.
#[derive(Debug, Serialize)]
pub struct ServiceReport {
    /// Fully qualified name.
    pub name: String,
    /// Its methods.
    pub methods: Vec<MethodReport>,
}

/// One method of a service.
#[derive(Debug, Serialize)]
pub struct MethodReport {
    /// Short name.
    pub name: String,
    /// Call shape: unary, server_streaming, client_streaming, bidi_streaming.
    pub kind: &'static str,
    /// Request message type.
    pub input: String,
    /// Response message type.
    pub output: String,
}

/// Inspects the plugin file at `path` with a default host's engine.
pub async fn inspect(path: &Path) -> Result<Report, InspectError> {
    let file = path.display().to_string();
    let engine = engine()?;
    let inspection = inspection(&engine, path)
        .await
        .map_err(|source| InspectError::Load {
            file: file.clone(),
            source,
        })?;
    Ok(report(file, &inspection))
}

/// An engine like a default host's, for looking at plugins without serving them.
pub(crate) fn engine() -> Result<Engine, plugrpc_runtime::EngineError> {
    let mut engine_config = HostConfig::default().engine();
    // Nothing is served: no compile cache to write, one sandbox to describe with.
    engine_config.cache_dir = None;
    engine_config.sandboxes = 1;
    Engine::new(&engine_config)
}

/// The first half of a load of the file at `path`: read, compile, contract, describe.
pub(crate) async fn inspection(engine: &Engine, path: &Path) -> Result<Inspection, LoadError> {
    let wasm = std::fs::read(path).map_err(LoadError::Read)?;
    Inspection::of(engine, wasm).await
}

/// What `inspection` of `file` shows.
pub(crate) fn report(file: String, inspection: &Inspection) -> Report {
    let imports = inspection.imports();
    let needs_grants = inspection.needs_grants();
    Report {
        file,
        name: inspection.name().to_owned(),
        version: inspection.version().to_owned(),
        contract: CONTRACT,
        stateless: inspection.stateless(),
        size: inspection.size(),
        compile_ms: inspection.compile_time().as_millis(),
        imports,
        needs_grants,
        services: inspection
            .services()
            .iter()
            .map(|service| ServiceReport {
                name: service.full_name().to_owned(),
                methods: service
                    .methods()
                    .map(|method| MethodReport {
                        name: method.name().to_owned(),
                        kind: MethodKind::of(&method).name(),
                        input: method.input().full_name().to_owned(),
                        output: method.output().full_name().to_owned(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

impl Report {
    /// The report as a person reads it.
    pub fn text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{} {} ({}{})",
            self.name,
            self.version,
            self.contract,
            if self.stateless { ", stateless" } else { "" }
        );
        let _ = writeln!(
            text,
            "file: {}, {}, compiled in {} ms",
            self.file,
            plugrpc_runtime::size(self.size),
            self.compile_ms
        );
        let grants = if self.needs_grants.is_empty() {
            "none".to_owned()
        } else {
            self.needs_grants
                .iter()
                .map(|key| format!("[plugins.{}.{key}]", self.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(text, "grants it needs: {grants}");
        let _ = writeln!(text, "imports:");
        for import in &self.imports {
            let _ = writeln!(text, "  {import}");
        }
        let _ = writeln!(text, "services:");
        for service in &self.services {
            let _ = writeln!(text, "  {}", service.name);
            for method in &service.methods {
                let _ = writeln!(
                    text,
                    "    {} ({}): {} -> {}",
                    method.name, method.kind, method.input, method.output
                );
            }
        }
        text
    }
}
