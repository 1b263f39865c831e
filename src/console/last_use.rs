//! When each console user last came in, for the yearly access review (BIO
//! 5.18): an account nobody used for months should be ended.
//!
//! Kept apart from the users file (`<data_dir>/console-last-use.json`): the
//! running gateway writes this one, the command line writes that one, and a
//! write of either must not undo the other's. Written at most once a minute
//! per user, off the async threads; a crash loses at most that minute.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A new use is written when the last one written is this much older.
const PERSIST_AFTER_MICROS: i64 = 60_000_000;

/// The last-use file under a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("console-last-use.json")
}

/// Last use per user name (Unix microseconds), as the file holds it; an
/// absent or unreadable file is no uses. Blocking.
pub fn read(data_dir: &Path) -> BTreeMap<String, i64> {
    std::fs::read(path(data_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The running console's last-use times.
#[derive(Debug)]
pub struct LastUse {
    file: PathBuf,
    /// Per user: the last use, and the last use written to the file. One
    /// entry per user that came in, so bounded by the users file.
    seen: Mutex<BTreeMap<String, (i64, i64)>>,
    /// One write at a time (they share a temporary file).
    writing: Arc<Mutex<()>>,
}

impl LastUse {
    /// Starts from the file. Blocking.
    pub fn load(data_dir: &Path) -> Self {
        let seen = read(data_dir)
            .into_iter()
            .map(|(k, v)| (k, (v, v)))
            .collect();
        Self {
            file: path(data_dir),
            seen: Mutex::new(seen),
            writing: Arc::new(Mutex::new(())),
        }
    }

    /// The last use of every user that has one.
    pub fn snapshot(&self) -> BTreeMap<String, i64> {
        self.lock()
            .iter()
            .map(|(k, (v, _))| (k.clone(), *v))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (i64, i64)>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a use now; writes the file (on a blocking thread) when this
    /// user's written time is more than a minute old.
    pub fn touch(&self, name: &str) {
        let now = crate::audit::record::now_micros();
        let persist = {
            let mut seen = self.lock();
            let e = seen.entry(name.to_string()).or_insert((now, i64::MIN));
            e.0 = now;
            if now.saturating_sub(e.1) >= PERSIST_AFTER_MICROS {
                e.1 = now;
                Some(seen.iter().map(|(k, (v, _))| (k.clone(), *v)).collect())
            } else {
                None
            }
        };
        if let Some(all) = persist {
            self.write(all);
        }
    }

    fn write(&self, all: BTreeMap<String, i64>) {
        let (file, writing) = (self.file.clone(), self.writing.clone());
        let job = move || {
            let _one = writing.lock().unwrap_or_else(|e| e.into_inner());
            let bytes = serde_json::to_vec_pretty(&all).unwrap_or_default();
            if let Err(e) = crate::datadir::write_atomic(&file, &bytes, 0o600) {
                tracing::warn!(error = %e, "console last-use times could not be written");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(job);
            }
            Err(_) => job(),
        }
    }
}
