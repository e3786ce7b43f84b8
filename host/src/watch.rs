//! Watches the plugins folder and syncs the registry once each burst of changes settles,
//! so a copy in progress is read once it is complete (and, if read too early, refused
//! with the working version left serving until the next change).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::HostConfig;
use crate::registry::Registry;
use plugrpc_runtime::Engine;

/// Writes `bytes` to `file` whole: into a temporary file beside it (same folder, so the
/// rename never crosses file systems; not `*.wasm`, which a host reads), then renamed
/// over it, so a watcher sees the old file or the new one, never part of one.
pub(crate) fn write_whole(file: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let part = file.with_file_name(format!(".{name}.part"));
    std::fs::write(&part, bytes)
        .and_then(|()| std::fs::rename(&part, file))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&part);
        })
}

/// Quiet time after the last change before the folder is read.
const SETTLE: Duration = Duration::from_millis(250);

/// A running watch; stops when dropped.
pub(crate) struct FolderWatch {
    _watcher: RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Drop for FolderWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FolderWatch {
    /// Stops the watch and waits until its task is gone, with the registry it held.
    pub(crate) async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

/// Starts watching `config.plugins_dir`, syncing `registry` after every settled change.
pub(crate) fn watch(
    registry: Arc<Registry>,
    engine: Engine,
    config: Arc<HostConfig>,
) -> Result<FolderWatch, notify::Error> {
    let (changed, mut changes) = mpsc::channel::<()>(1);
    let dir = config.plugins_dir.clone();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<Event>| match event {
            // A full channel already means "sync soon": nothing is lost by dropping this one.
            Ok(event) if is_plugin_change(&dir, &event) => drop(changed.try_send(())),
            Ok(_) => {}
            Err(error) => tracing::warn!("watching the plugins folder: {error}"),
        })?;
    // Recursive: each tenant's folder is watched too, and one added while serving.
    watcher.watch(&config.plugins_dir, RecursiveMode::Recursive)?;
    tracing::info!(dir = %config.plugins_dir.display(), "watching the plugins folder for changes");
    let task = tokio::spawn(async move {
        while changes.recv().await.is_some() {
            loop {
                match tokio::time::timeout(SETTLE, changes.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if let Err(error) = registry.sync(&engine, &config).await {
                tracing::error!("reloading plugins: {error}");
            }
        }
    });
    Ok(FolderWatch {
        _watcher: watcher,
        task,
    })
}

/// Starts watching the config file `file`: once a change settles, every serving plugin
/// gets the file's config values; a file that no longer parses is logged and changes
/// nothing. Other settings apply when the host restarts.
pub(crate) fn watch_config(
    registry: Arc<Registry>,
    file: PathBuf,
    plugins_dir: PathBuf,
) -> Result<FolderWatch, notify::Error> {
    let (changed, mut changes) = mpsc::channel::<()>(1);
    let name = file.file_name().map(ToOwned::to_owned);
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<Event>| match event {
            Ok(event)
                if !matches!(event.kind, EventKind::Access(_))
                    && event.paths.iter().any(|p| p.file_name() == name.as_deref()) =>
            {
                // A full channel already means "reload soon".
                let _ = changed.try_send(());
            }
            Ok(_) => {}
            Err(error) => tracing::warn!("watching the config file: {error}"),
        })?;
    // The folder, not the file: an editor that saves by renaming replaces the file.
    let folder = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    watcher.watch(&folder, RecursiveMode::NonRecursive)?;
    tracing::info!(file = %file.display(), "watching the config file for config value changes");
    let task = tokio::spawn(async move {
        while changes.recv().await.is_some() {
            loop {
                match tokio::time::timeout(SETTLE, changes.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            match HostConfig::from_file(&file) {
                Ok(mut config) => {
                    // The folder being served, whatever the file says now.
                    config.plugins_dir.clone_from(&plugins_dir);
                    let updated = registry.update_config_values(&config).await;
                    tracing::info!(
                        file = %file.display(),
                        "config values reloaded for {updated} plugins; other settings apply at restart"
                    );
                }
                Err(error) => tracing::warn!("config file not reloaded: {error}"),
            }
        }
    });
    Ok(FolderWatch {
        _watcher: watcher,
        task,
    })
}

/// A change to a `.wasm` file, or to a tenant folder itself (one moved in or out holds
/// plugins whose files see no event of their own); reads (our own included) are not
/// changes.
fn is_plugin_change(dir: &std::path::Path, event: &Event) -> bool {
    let relevant_kind = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    relevant_kind
        && event.paths.iter().any(|p| {
            p.extension().is_some_and(|ext| ext == "wasm")
                || (p.parent() == Some(dir) && p.extension().is_none())
        })
}
