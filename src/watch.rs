//! Noticing that files changed on disk (or that an operator sent SIGHUP), so
//! certificates, CRLs and policies are reloaded without a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::warn;

/// Quiet time after a change before reloading, so a file written in several
/// steps is read once, whole.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// A watch on some folders, filtered by a predicate on the changed path.
pub struct Watch {
    _watcher: Option<RecommendedWatcher>,
    rx: mpsc::Receiver<()>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Watch {
    /// Watches these files (through their folders, so a file replaced by a
    /// rename is seen too); also wakes on SIGHUP.
    pub fn files(files: &[PathBuf]) -> Self {
        let names: Vec<PathBuf> = files
            .iter()
            .filter_map(|f| f.file_name().map(PathBuf::from))
            .collect();
        Self::new(parents(files), move |p| {
            p.file_name().is_some_and(|n| names.iter().any(|m| m == n))
        })
    }

    /// Watches `dirs` (not recursively) for created, modified or removed files
    /// for which `wanted` is true; also wakes on SIGHUP.
    pub fn new(dirs: Vec<PathBuf>, wanted: impl Fn(&Path) -> bool + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel(1);
        let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            // Only changes count: reading the files opens them, and those
            // access events must not trigger another reload.
            if let Ok(ev) = ev
                && (ev.kind.is_create() || ev.kind.is_modify() || ev.kind.is_remove())
                && ev.paths.iter().any(|p| wanted(p))
            {
                let _ = tx.try_send(());
            }
        });
        let watcher = match watcher {
            Ok(mut w) => {
                let mut dirs = dirs;
                dirs.sort();
                dirs.dedup();
                for d in dirs {
                    if let Err(e) = w.watch(&d, RecursiveMode::NonRecursive) {
                        warn!(dir = %d.display(), error = %e, "cannot watch folder; send SIGHUP to reload");
                    }
                }
                Some(w)
            }
            Err(e) => {
                warn!(error = %e, "no file watcher; send SIGHUP to reload");
                None
            }
        };
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        Self {
            _watcher: watcher,
            rx,
            hup,
        }
    }

    /// Waits for the next change (or SIGHUP), then for things to settle.
    pub async fn changed(&mut self) {
        let hup = async {
            match &mut self.hup {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.rx.recv() => {}
            _ = hup => {}
        }
        tokio::time::sleep(DEBOUNCE).await;
        while self.rx.try_recv().is_ok() {}
    }
}

/// The folders that hold these files.
pub fn parents(files: &[PathBuf]) -> Vec<PathBuf> {
    files
        .iter()
        .map(|f| match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect()
}
