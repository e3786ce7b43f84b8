//! Watches the plugins folder and syncs the registry once each burst of changes settles,
//! so a copy in progress is read once it is complete (and, if read too early, refused
//! with the working version left serving until the next change).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::HostConfig;
use crate::registry::Registry;
use crate::reload::Reloader;
use plugrpc_runtime::Engine;

/// Writes `bytes` to `file` whole: into a temporary file beside it (same folder, so the
/// rename never crosses file systems; not `*.wasm`, which a host reads), then renamed
/// over it, so a watcher sees the old file or the new one, never part of one.
pub(crate) fn write_whole(file: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let part = hidden_beside(file, "part");
    std::fs::write(&part, bytes)
        .and_then(|()| std::fs::rename(&part, file))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&part);
        })
}

/// The hidden file `.<name>.<suffix>` beside `file`: the host reads no such file as a
/// plugin.
pub(crate) fn hidden_beside(file: &Path, suffix: &str) -> PathBuf {
    let name = file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.with_file_name(format!(".{name}.{suffix}"))
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

/// Starts watching the config file `file`, read at start as `read`: once a change
/// settles, the host re-reads it as SIGHUP has it do (`reloader`); a file that no longer
/// parses or validates is logged and changes nothing.
///
/// A change to the file counts, and so does one to an entry named `..*`: Kubernetes
/// updates a mounted ConfigMap or Secret by swapping its `..data` symlink, which never
/// names the file. The file is then compared with the version last read: a swap reloads
/// only when the file's content changed (the kubelet rewrites every key of the volume,
/// so a Secret beside it changes the file's time too), a write to the file itself also
/// when its time did (a `touch`, to re-read the secret files its values name). Other
/// files in the folder (a key-value store kept beside it) are not looked at.
pub(crate) fn watch_config(
    reloader: Reloader,
    file: PathBuf,
    read: ConfigVersion,
) -> Result<FolderWatch, notify::Error> {
    let (changed, mut changes) = mpsc::channel::<()>(1);
    let touched = Arc::new(AtomicBool::new(false));
    let name = file.file_name().map(ToOwned::to_owned);
    let seen_by_callback = touched.clone();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<Event>| match event {
            Ok(event) if !matches!(event.kind, EventKind::Access(_)) => {
                let entries = || event.paths.iter().filter_map(|p| p.file_name());
                if entries().any(|entry| Some(entry) == name.as_deref()) {
                    seen_by_callback.store(true, Ordering::Relaxed);
                } else if !entries().any(|entry| entry.as_encoded_bytes().starts_with(b"..")) {
                    return;
                }
                // A full channel already means "look again soon".
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
    tracing::info!(file = %file.display(), "watching the config file for changes");
    let mut seen = read;
    let task = tokio::spawn(async move {
        while changes.recv().await.is_some() {
            loop {
                match tokio::time::timeout(SETTLE, changes.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let now = ConfigVersion::of(&file);
            if now.differs_from(&seen, touched.swap(false, Ordering::Relaxed)) {
                seen = now;
                reloader.apply("the config file changed").await;
            }
        }
    });
    Ok(FolderWatch {
        _watcher: watcher,
        task,
    })
}

/// One version of the config file: its modification time and content (through
/// symlinks); nothing while it cannot be read.
pub(crate) struct ConfigVersion(Option<(SystemTime, Vec<u8>)>);

impl ConfigVersion {
    /// The version of `file` now.
    pub(crate) fn of(file: &Path) -> Self {
        let read = || {
            let modified = std::fs::metadata(file).and_then(|m| m.modified()).ok()?;
            Some((modified, std::fs::read(file).ok()?))
        };
        Self(read())
    }

    /// Whether this is another version than `before`: other content, or another time
    /// when the file itself was `touched`.
    fn differs_from(&self, before: &Self, touched: bool) -> bool {
        match (&self.0, &before.0) {
            (Some((time, content)), Some((time_before, content_before))) => {
                content != content_before || (touched && time != time_before)
            }
            (now, before) => now.is_some() != before.is_some(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn version(seconds: u64, content: &str) -> ConfigVersion {
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
        ConfigVersion(Some((time, content.as_bytes().to_vec())))
    }

    #[test]
    fn a_new_version_is_new_content_or_a_touch_of_the_file_itself() {
        let read = version(1, "a = 1");
        assert!(
            version(2, "a = 2").differs_from(&read, false),
            "new content"
        );
        assert!(
            !version(2, "a = 1").differs_from(&read, false),
            "a symlink swap rewriting the same content"
        );
        assert!(version(2, "a = 1").differs_from(&read, true), "a touch");
        assert!(!version(1, "a = 1").differs_from(&read, true), "no change");
        assert!(
            ConfigVersion(None).differs_from(&read, false),
            "the file gone"
        );
        assert!(!ConfigVersion(None).differs_from(&ConfigVersion(None), true));
    }
}
