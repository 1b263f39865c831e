//! Where covenant state lives: one small interface ([`Store`]) with files in
//! the data directory behind it on one node, and the database
//! ([`super::shared`]) when several gateway nodes share one log.
//!
//! Layout under `<data_dir>/covenant/`: `<pilot>/state.json` (versions,
//! signatures, revocations, the version in force), `<pilot>/terms/<hex>.json`
//! (the parts of every version seen, so an older one can be enforced again)
//! and `inbox/*.jws` (signatures handed over without the API, as `pki init`
//! and offline tools do; read at start and on reload). Files are 0600,
//! written whole and synced, with their folder synced after the rename.

use std::path::{Path, PathBuf};

use super::state::PilotState;
use crate::policy::terms::{Terms, version_hex};

/// Durable covenant state.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// A pilot's state, `None` when it never had any.
    fn load(&self, pilot: &str) -> std::io::Result<Option<PilotState>>;
    /// Replaces a pilot's state, durably.
    fn save(&self, pilot: &str, state: &PilotState) -> std::io::Result<()>;
    /// Keeps the parts of a version.
    fn put_terms(&self, pilot: &str, version: &str, terms: &Terms) -> std::io::Result<()>;
    /// The parts of a version, if kept.
    fn terms(&self, pilot: &str, version: &str) -> std::io::Result<Option<Terms>>;
    /// Signatures waiting in the inbox: (name, JWS).
    fn inbox(&self) -> std::io::Result<Vec<(String, String)>>;
    /// Removes a handled inbox entry.
    fn inbox_done(&self, name: &str) -> std::io::Result<()>;
    /// Excludes other gateway nodes from changing covenant state until the
    /// returned guard is dropped (`None`: this node is the only one).
    fn exclusive(&self) -> std::io::Result<Option<Box<dyn Send>>> {
        Ok(None)
    }
    /// Whether this node's pilot file (`text`) may be proposed as a
    /// version; on one node always.
    fn may_propose(&self, _pilot: &str, _text: &str) -> bool {
        true
    }
}

/// The folder of covenant state under a data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("covenant")
}

/// The folder where signatures wait to be read, under a data directory.
pub fn inbox_dir(data_dir: &Path) -> PathBuf {
    dir(data_dir).join("inbox")
}

/// Puts a signature into the inbox of a data directory (for `pki init` and
/// tools that sign without a running gateway).
pub fn drop_in_inbox(data_dir: &Path, name: &str, jws: &str) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let d = inbox_dir(data_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&d)?;
    write_synced(&d.join(format!("{name}.jws")), jws.as_bytes())
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::datadir::write_atomic(path, bytes, 0o600)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// The files implementation.
#[derive(Debug)]
pub struct Files {
    dir: PathBuf,
}

impl Files {
    /// State under `<data_dir>/covenant/`.
    pub fn new(data_dir: &Path) -> Self {
        Self { dir: dir(data_dir) }
    }

    fn pilot_dir(&self, pilot: &str) -> std::io::Result<PathBuf> {
        if !crate::config::valid_id(pilot) {
            return Err(std::io::Error::other("not a pilot id"));
        }
        Ok(self.dir.join(pilot))
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Store for Files {
    fn load(&self, pilot: &str) -> std::io::Result<Option<PilotState>> {
        read_json(&self.pilot_dir(pilot)?.join("state.json"))
    }

    fn save(&self, pilot: &str, state: &PilotState) -> std::io::Result<()> {
        let d = self.pilot_dir(pilot)?;
        std::fs::create_dir_all(&d)?;
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        write_synced(&d.join("state.json"), &bytes)
    }

    fn put_terms(&self, pilot: &str, version: &str, terms: &Terms) -> std::io::Result<()> {
        let d = self.pilot_dir(pilot)?.join("terms");
        std::fs::create_dir_all(&d)?;
        let bytes = serde_json::to_vec_pretty(terms).map_err(std::io::Error::other)?;
        write_synced(&d.join(format!("{}.json", version_hex(version))), &bytes)
    }

    fn terms(&self, pilot: &str, version: &str) -> std::io::Result<Option<Terms>> {
        let hex = version_hex(version);
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        read_json(
            &self
                .pilot_dir(pilot)?
                .join("terms")
                .join(format!("{hex}.json")),
        )
    }

    fn inbox(&self) -> std::io::Result<Vec<(String, String)>> {
        let d = self.dir.join("inbox");
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for e in rd {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "jws")
                && let Some(name) = p.file_name().and_then(|n| n.to_str())
            {
                out.push((name.to_string(), std::fs::read_to_string(&p)?));
            }
        }
        out.sort();
        Ok(out)
    }

    fn inbox_done(&self, name: &str) -> std::io::Result<()> {
        if name.contains('/') || name.starts_with('.') {
            return Err(std::io::Error::other("not an inbox name"));
        }
        std::fs::remove_file(self.dir.join("inbox").join(name))
    }
}
