//! `plugrpc check`: whether the host would serve a plugin file, and whether it may replace
//! the version serving now, answered before the file is deployed (for CI). It asks the
//! same questions as a load: the runtime's `Inspection`, `compat::breaking_changes`
//! against the old version and the registry's `conflict` against the other plugins of a
//! folder; it never serves, and never repeats those rules.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plugrpc_runtime::{Engine, Inspection, LoadError};

use crate::compat;
use crate::config::DEFAULT_TENANT;
use crate::inspect::{self, Report};
use crate::registry::{self, Claim, RegistryError};

/// What a plugin file is checked against, besides the host's own rules.
#[derive(Clone, Copy, Debug)]
pub enum Against<'a> {
    /// Nothing: only whether the host would load it.
    Nothing,
    /// The version it replaces, for the changes that break its callers.
    File(&'a Path),
    /// A plugins folder: the plugin of the same name there is the version it replaces,
    /// and every other one's services must not be its.
    Dir(&'a Path),
}

/// Why a check could not be made at all (a mistake in what was asked, not a finding).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The engine could not be built.
    #[error("starting the WebAssembly engine: {0}")]
    Engine(#[from] plugrpc_runtime::EngineError),
    /// The file to check cannot be read.
    #[error("{}: cannot read the file: {source}", .file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The version to compare with is not a plugin the host loads.
    #[error("{} (the version to compare with): {source}", .file.display())]
    Old {
        /// The file.
        file: PathBuf,
        /// Why.
        source: LoadError,
    },
    /// The plugins folder cannot be read.
    #[error(transparent)]
    Dir(#[from] RegistryError),
}

/// The outcome of a check: what the host sees, what it was compared with, what is wrong.
#[derive(Debug)]
pub struct Verdict {
    /// What the host sees in the file, as `plugrpc inspect` shows it; `None` when it would
    /// refuse the file outright.
    pub report: Option<Report>,
    /// What the file was compared with, one line each.
    pub compared: Vec<String>,
    /// Why the host would refuse the file or the change breaks callers, one line each.
    pub problems: Vec<String>,
}

impl Verdict {
    /// Whether the host would serve the file in place of what it was checked against.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// The verdict as a person (or a CI log) reads it.
    pub fn text(&self) -> String {
        let mut text = self.report.as_ref().map(Report::text).unwrap_or_default();
        for line in &self.compared {
            let _ = writeln!(text, "{line}");
        }
        for problem in &self.problems {
            let _ = writeln!(text, "problem: {problem}");
        }
        let _ = if self.passed() {
            writeln!(text, "ok: the host would serve it")
        } else {
            writeln!(text, "failed: {} problem(s)", self.problems.len())
        };
        text
    }
}

/// Checks the plugin file at `file`, and against `against`, the way the host loads it.
pub async fn check(file: &Path, against: Against<'_>) -> Result<Verdict, CheckError> {
    let engine = inspect::engine()?;
    let mut verdict = Verdict {
        report: None,
        compared: Vec::new(),
        problems: Vec::new(),
    };
    let new = match inspect::inspection(&engine, file).await {
        Ok(new) => new,
        Err(LoadError::Read(source)) => {
            return Err(CheckError::Read {
                file: file.to_owned(),
                source,
            });
        }
        Err(refused) => {
            verdict.problems.push(format!("refused: {refused}"));
            return Ok(verdict);
        }
    };
    verdict.report = Some(inspect::report(file.display().to_string(), &new));
    match against {
        Against::Nothing => {}
        Against::File(old_file) => {
            let old = inspect::inspection(&engine, old_file)
                .await
                .map_err(|source| CheckError::Old {
                    file: old_file.to_owned(),
                    source,
                })?;
            compare(&mut verdict, old_file, &old, &new);
        }
        Against::Dir(dir) => against_dir(&engine, &mut verdict, dir, &new).await?,
    }
    Ok(verdict)
}

/// Records what breaks callers of `old` (from `old_file`) if `new` replaces it.
fn compare(verdict: &mut Verdict, old_file: &Path, old: &Inspection, new: &Inspection) {
    let changes = compat::breaking_changes(old.services(), new.services());
    verdict.compared.push(format!(
        "compared with {} ({} {}): {}",
        old_file.display(),
        old.name(),
        old.version(),
        if changes.is_empty() {
            "no change breaks its callers".to_owned()
        } else {
            format!(
                "{} breaking change(s); the host refuses them unless [plugins.{}] allow_breaking_changes = true",
                changes.len(),
                new.name()
            )
        }
    ));
    verdict.problems.extend(
        changes
            .into_iter()
            .map(|change| format!("breaking: {change}")),
    );
}

/// Compares `new` with the plugin of its name in `dir` and checks its services against
/// every other plugin's there, as a host serving `dir` (without a config) would.
async fn against_dir(
    engine: &Engine,
    verdict: &mut Verdict,
    dir: &Path,
    new: &Inspection,
) -> Result<(), CheckError> {
    let mut old = None;
    let mut others = Vec::new();
    for (tenant, path) in registry::plugin_files(dir)? {
        let plugin = match inspect::inspection(engine, &path).await {
            Ok(plugin) => plugin,
            Err(refused) => {
                verdict.compared.push(format!(
                    "{} is refused by the host itself ({refused}): not compared",
                    path.display()
                ));
                continue;
            }
        };
        if old.is_none() && &*tenant == DEFAULT_TENANT && plugin.name() == new.name() {
            old = Some((path, plugin));
        } else {
            others.push((tenant, path, plugin));
        }
    }
    match &old {
        Some((path, plugin)) => compare(verdict, path, plugin, new),
        None => verdict.compared.push(format!(
            "{} serves no plugin named {:?}: nothing to compare with",
            dir.display(),
            new.name()
        )),
    }
    let claims: Vec<Claim<'_>> = others
        .iter()
        .flat_map(|(tenant, path, plugin)| {
            plugin.services().iter().map(move |service| Claim {
                tenant,
                plugin: plugin.name(),
                file: path,
                service: service.full_name(),
                hosts: &[],
            })
        })
        .collect();
    verdict.compared.push(format!(
        "checked against the services of {} other plugin(s) in {}",
        others.len(),
        dir.display()
    ));
    // One service at a time, so that every conflicting service is named.
    for service in new.services() {
        let single = std::slice::from_ref(service);
        if let Err(reason) = registry::conflict(DEFAULT_TENANT, new.name(), single, &[], &claims) {
            let problem = format!("conflict: {reason}");
            if !verdict.problems.contains(&problem) {
                verdict.problems.push(problem);
            }
        }
    }
    Ok(())
}
