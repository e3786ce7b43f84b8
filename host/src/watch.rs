//! Watches the plugins folder and syncs the registry once each burst of changes settles,
//! so a copy in progress is read once it is complete (and, if read too early, refused
//! with the working version left serving until the next change).

use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::HostConfig;
use crate::registry::Registry;
use plugrpc_runtime::Engine;

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
