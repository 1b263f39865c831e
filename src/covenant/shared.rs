//! Covenant state on the deployment's PostgreSQL database, so several
//! gateway nodes keep one covenant: one proposal record per change, a
//! signature sent to any node counts on every node, and every node runs the
//! same version. Kept in the `kv` table (`covenant-state`: a pilot's
//! [`PilotState`]; `covenant-terms`: `<pilot>/<hex>` the parts of a
//! version); changes are made under one deployment-wide lock, so two nodes
//! never propose or bring into force the same version twice.
//!
//! The inbox stays in the node's data directory: a signature dropped there
//! is taken by that node into the shared state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::state::PilotState;
use super::store::{Files, Store};
use crate::audit::pg::PgLog;
use crate::policy::terms::{Terms, version_hex};

/// The tree of pilot states.
pub const STATE: &str = "covenant-state";
/// The tree of version parts.
pub const TERMS: &str = "covenant-terms";
/// The advisory lock covenant changes hold (distinct from the others).
const LOCK: i64 = 0x6b70_636f_7665;

/// Covenant state in the database.
#[derive(Debug)]
pub struct Shared {
    pg: Arc<PgLog>,
    inbox: Files,
    pilots_dir: PathBuf,
}

impl Shared {
    /// State in `pg`; the inbox under `data_dir`; this node's pilot files
    /// in `pilots_dir` (to tell an edit from a stale file).
    pub fn new(pg: Arc<PgLog>, data_dir: &Path, pilots_dir: &Path) -> Self {
        Self {
            pg,
            inbox: Files::new(data_dir),
            pilots_dir: pilots_dir.to_path_buf(),
        }
    }
}

/// Runs a database call off any async thread (the registry is called from
/// the runtime's threads as from blocking ones).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|s| s.spawn(f).join())
        .map_err(|_| std::io::Error::other("covenant store call failed"))
}

fn io(e: crate::audit::AuditError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn check(pilot: &str) -> std::io::Result<()> {
    if crate::config::valid_id(pilot) {
        Ok(())
    } else {
        Err(std::io::Error::other("not a pilot id"))
    }
}

impl Store for Shared {
    fn load(&self, pilot: &str) -> std::io::Result<Option<PilotState>> {
        check(pilot)?;
        match off_runtime(|| self.pg.kv_get(STATE, pilot.as_bytes()))?.map_err(io)? {
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(std::io::Error::other),
            None => Ok(None),
        }
    }

    fn save(&self, pilot: &str, state: &PilotState) -> std::io::Result<()> {
        check(pilot)?;
        let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
        off_runtime(|| self.pg.kv_put(STATE, pilot.as_bytes(), &bytes))?.map_err(io)
    }

    fn put_terms(&self, pilot: &str, version: &str, terms: &Terms) -> std::io::Result<()> {
        check(pilot)?;
        let key = format!("{pilot}/{}", version_hex(version));
        let bytes = serde_json::to_vec(terms).map_err(std::io::Error::other)?;
        off_runtime(|| self.pg.kv_put(TERMS, key.as_bytes(), &bytes))?.map_err(io)
    }

    fn terms(&self, pilot: &str, version: &str) -> std::io::Result<Option<Terms>> {
        check(pilot)?;
        let key = format!("{pilot}/{}", version_hex(version));
        match off_runtime(|| self.pg.kv_get(TERMS, key.as_bytes()))?.map_err(io)? {
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(std::io::Error::other),
            None => Ok(None),
        }
    }

    fn inbox(&self) -> std::io::Result<Vec<(String, String)>> {
        self.inbox.inbox()
    }

    fn inbox_done(&self, name: &str) -> std::io::Result<()> {
        self.inbox.inbox_done(name)
    }

    fn exclusive(&self) -> std::io::Result<Option<Box<dyn Send>>> {
        let lock = off_runtime(|| self.pg.kv_lock(LOCK))?.map_err(io)?;
        Ok(Some(Box::new(lock)))
    }

    /// A node proposes its file's version only when that file is the
    /// deployment's: the database holds the same text, holds none yet, or
    /// holds an older one (an edit on this node, still on its disk, which
    /// its mirror shares once the node runs it). A file older than the database's is stale
    /// (the mirror will overwrite it): proposing it would bring back a
    /// superseded version.
    fn may_propose(&self, pilot: &str, text: &str) -> bool {
        if check(pilot).is_err() {
            return false;
        }
        let name = format!("pilot/{pilot}.toml");
        let remote = match off_runtime(|| self.pg.shared_file(&name)) {
            Ok(Ok(r)) => r,
            _ => return false,
        };
        let Some((content, at)) = remote else {
            return true;
        };
        if content == text.as_bytes() {
            return true;
        }
        // The text enforced may be older than the disk (the mirror just
        // wrote the deployment's file, and the reload is still to come):
        // only the disk's own, newer, text is an edit.
        let path = self.pilots_dir.join(format!("{pilot}.toml"));
        let newer = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > at);
        newer && std::fs::read(&path).is_ok_and(|b| b == text.as_bytes())
    }
}

/// Copies a node's covenant state (`<data_dir>/covenant`) into the
/// database, for `storage copy`: every pilot whose state the database does
/// not hold yet, with the parts of its versions. A pilot the database
/// already knows is left as it is (the deployment's state wins). The number
/// of pilots copied.
pub fn import(pg: &PgLog, data_dir: &Path) -> std::io::Result<usize> {
    let dir = super::store::dir(data_dir);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut copied = 0;
    for e in rd {
        let e = e?;
        let Some(pilot) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !crate::config::valid_id(&pilot) {
            continue; // the inbox
        }
        let Ok(state) = std::fs::read(e.path().join("state.json")) else {
            continue;
        };
        if let Ok(terms) = std::fs::read_dir(e.path().join("terms")) {
            for t in terms {
                let t = t?.path();
                if let Some(hex) = t.file_stem().and_then(|s| s.to_str()) {
                    let key = format!("{pilot}/{hex}");
                    pg.kv_insert_new(TERMS, key.as_bytes(), &std::fs::read(&t)?)
                        .map_err(io)?;
                }
            }
        }
        if pg
            .kv_insert_new(STATE, pilot.as_bytes(), &state)
            .map_err(io)?
        {
            copied += 1;
        }
    }
    Ok(copied)
}
