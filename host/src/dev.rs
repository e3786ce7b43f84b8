//! `plugrpc dev`: the inner loop of writing a plugin. Watches a plugin crate, rebuilds it
//! for `wasm32-wasip2` once a burst of saves settles, and moves each new `.wasm` into a
//! plugins folder in one rename, so a host watching that folder never reads half a file.
//! A failed build leaves the file there as it was: the last version that built keeps
//! serving.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::mpsc;

/// Quiet time after the last save before building: an editor's save is several events,
/// and "save all" several files.
const SETTLE: Duration = Duration::from_millis(300);

/// What dev works on.
#[derive(Debug)]
pub struct DevLoop {
    /// The plugin crate's folder.
    pub crate_dir: PathBuf,
    /// The plugins folder each new build is moved into.
    pub plugins_dir: PathBuf,
}

/// Why dev could not start (build failures are not errors: they are reported and waited
/// out).
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// The crate's manifest cannot be read or names no package.
    #[error("{}: {why}", .file.display())]
    Manifest {
        /// The manifest.
        file: PathBuf,
        /// Why.
        why: String,
    },
    /// The plugins folder cannot be made.
    #[error("creating the plugins folder {}: {source}", .dir.display())]
    PluginsDir {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The crate cannot be watched.
    #[error("watching {}: {source}", .dir.display())]
    Watch {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: notify::Error,
    },
    /// cargo cannot be run at all.
    #[error("running cargo: {0}")]
    Cargo(std::io::Error),
}

impl DevLoop {
    /// Builds, then rebuilds on every settled change, until `shutdown` completes.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), DevError> {
        let name = package_name(&self.crate_dir)?;
        std::fs::create_dir_all(&self.plugins_dir).map_err(|source| DevError::PluginsDir {
            dir: self.plugins_dir.clone(),
            source,
        })?;
        let (changed, mut changes) = mpsc::channel::<()>(1);
        let crate_dir = self
            .crate_dir
            .canonicalize()
            .map_err(|e| DevError::Manifest {
                file: self.crate_dir.join("Cargo.toml"),
                why: e.to_string(),
            })?;
        let watched = crate_dir.clone();
        // Watching for as long as it lives, to the end of the loop.
        let _watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            if event.is_ok_and(|event| is_source_change(&watched, &event)) {
                // A full channel already means "build soon".
                let _ = changed.try_send(());
            }
        })
        .and_then(|mut watcher| {
            watcher.watch(&crate_dir, RecursiveMode::Recursive)?;
            Ok(watcher)
        })
        .map_err(|source| DevError::Watch {
            dir: self.crate_dir.clone(),
            source,
        })?;
        let target = self.plugins_dir.join(format!("{name}.wasm"));
        let work = async {
            loop {
                self.build_and_copy(&name, &crate_dir, &target).await?;
                eprintln!(
                    "plugrpc dev: watching {} for changes",
                    self.crate_dir.display()
                );
                if changes.recv().await.is_none() {
                    return Ok(());
                }
                while let Ok(Some(())) = tokio::time::timeout(SETTLE, changes.recv()).await {}
            }
        };
        tokio::select! {
            outcome = work => outcome,
            () = shutdown => Ok(()),
        }
    }

    /// One build, and the copy of what it built; a failure of either is reported and
    /// leaves `target` as it was.
    async fn build_and_copy(
        &self,
        name: &str,
        crate_dir: &Path,
        target: &Path,
    ) -> Result<(), DevError> {
        eprintln!("plugrpc dev: building {name}…");
        let started = Instant::now();
        let built = match build(crate_dir).await? {
            Some(built) => built,
            None => {
                eprintln!("plugrpc dev: build failed; {} unchanged", target.display());
                return Ok(());
            }
        };
        match std::fs::read(&built).and_then(|wasm| crate::watch::write_whole(target, &wasm)) {
            Ok(()) => eprintln!(
                "plugrpc dev: built in {:.1} s, copied to {}",
                started.elapsed().as_secs_f64(),
                target.display()
            ),
            Err(error) => eprintln!(
                "plugrpc dev: copying {} failed ({error}); {} unchanged",
                built.display(),
                target.display()
            ),
        }
        Ok(())
    }
}

/// The package name in `crate_dir`'s manifest.
fn package_name(crate_dir: &Path) -> Result<String, DevError> {
    let file = crate_dir.join("Cargo.toml");
    let error = |why: String| DevError::Manifest {
        file: file.clone(),
        why,
    };
    let text = std::fs::read_to_string(&file).map_err(|e| error(e.to_string()))?;
    let manifest: toml::Table = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
    manifest
        .get("package")
        .and_then(|package| package.get("name"))
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| error("names no [package]: plugrpc dev builds one plugin crate".into()))
}

/// Whether `event` touches what a build reads: `src/`, `build.rs`, `Cargo.toml`, or a
/// `.proto` anywhere but `target/`.
fn is_source_change(crate_dir: &Path, event: &Event) -> bool {
    let relevant_kind = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    relevant_kind
        && event.paths.iter().any(|path| {
            let Ok(relative) = path.strip_prefix(crate_dir) else {
                return false;
            };
            relative.starts_with("src")
                || relative == Path::new("build.rs")
                || relative == Path::new("Cargo.toml")
                || (!relative.starts_with("target")
                    && relative.extension().is_some_and(|ext| ext == "proto"))
        })
}

/// Runs `cargo build --target wasm32-wasip2 --release` in `crate_dir`, its diagnostics on
/// this process's stderr; the `.wasm` it built, or `None` if it failed.
async fn build(crate_dir: &Path) -> Result<Option<PathBuf>, DevError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = tokio::process::Command::new(cargo)
        .args(["build", "--target", "wasm32-wasip2", "--release"])
        // The artifacts' paths as JSON on stdout; the diagnostics as cargo renders them.
        .arg("--message-format=json-render-diagnostics")
        .current_dir(crate_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Ctrl-C during a build stops the build too.
        .kill_on_drop(true)
        .spawn()
        .map_err(DevError::Cargo)?;
    let mut wasm = None;
    if let Some(stdout) = child.stdout.take() {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await.map_err(DevError::Cargo)? {
            wasm = wasm.or_else(|| built_wasm(&line, crate_dir));
        }
    }
    let status = child.wait().await.map_err(DevError::Cargo)?;
    Ok(wasm.filter(|_| status.success()))
}

/// The `.wasm` a line of cargo's JSON output says the crate in `crate_dir` built.
fn built_wasm(line: &str, crate_dir: &Path) -> Option<PathBuf> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message["reason"] != "compiler-artifact"
        || Path::new(message["manifest_path"].as_str()?) != crate_dir.join("Cargo.toml")
    {
        return None;
    }
    message["filenames"]
        .as_array()?
        .iter()
        .filter_map(|file| file.as_str())
        .find(|file| file.ends_with(".wasm"))
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_watches_sources_and_not_its_own_output() {
        let dir = Path::new("/p");
        let event = |path: &str| Event::new(EventKind::Any).add_path(PathBuf::from(path));
        for changed in [
            "/p/src/lib.rs",
            "/p/build.rs",
            "/p/Cargo.toml",
            "/p/proto/x.proto",
        ] {
            assert!(is_source_change(dir, &event(changed)), "{changed}");
        }
        for ignored in [
            "/p/target/release/build/x/out/a.rs",
            "/p/target/x.proto",
            "/p/Cargo.lock",
            "/q/src/lib.rs",
        ] {
            assert!(!is_source_change(dir, &event(ignored)), "{ignored}");
        }
    }

    #[test]
    fn only_the_crates_own_wasm_is_taken_from_cargos_output() {
        let line = r#"{"reason":"compiler-artifact","manifest_path":"/p/Cargo.toml","filenames":["/p/target/wasm32-wasip2/release/x.wasm"]}"#;
        assert_eq!(
            built_wasm(line, Path::new("/p")),
            Some(PathBuf::from("/p/target/wasm32-wasip2/release/x.wasm"))
        );
        let dependency = line.replace("/p/Cargo.toml", "/deps/prost/Cargo.toml");
        assert_eq!(built_wasm(&dependency, Path::new("/p")), None);
        assert_eq!(built_wasm("not json", Path::new("/p")), None);
    }
}
