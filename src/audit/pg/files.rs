//! Files every node must hold alike (the console users, partners.toml, the
//! pilot files and their console history), mirrored through the database:
//! a change on one node's disk is uploaded as a new version, and a newer
//! version is written to the other nodes' disks, where their file watchers
//! reload it as they would an edit. So a user added once, or a policy
//! applied once, on any node, is in force on every node within a few
//! seconds, and operators who keep the pilot files in git can go on
//! editing them on any node's disk.
//!
//! The contents are opaque here; a [`Gate`] from above says whether this
//! node's content may be published (a pilot file only once this node has
//! validated and loaded it, so a broken edit never leaves its disk). When a
//! file and the database both changed since they last agreed, the newer one
//! wins (the file's modification time against the version's), and the
//! other is logged as overwritten. Files are never deleted through the
//! mirror: a pilot is retired by an edit, not by removing its file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{PgLog, db};
use crate::audit::error::AuditError;

/// How often each node compares its files with the database.
pub const MIRROR_EVERY: Duration = Duration::from_secs(1);
/// The most files one node mirrors (each round reads the changeable ones):
/// the policy history grows with every console change, but slowly.
pub const MAX_MIRRORED: usize = 20_000;

/// Whether this node's content of a mirrored file (by its name) may be
/// published.
pub type Gate = Arc<dyn Fn(&str, &[u8]) -> bool + Send + Sync>;

/// A folder whose files are mirrored, under `prefix` + their path in it.
#[derive(Debug, Clone)]
pub struct SharedDir {
    /// Names in `shared_files` start with this (`pilot/`).
    pub prefix: String,
    /// The folder on this node.
    pub dir: PathBuf,
    /// Only files whose name ends so (`.toml`).
    pub suffix: &'static str,
    /// Files in its subfolders too (one level: `<pilot>/<version>.json`).
    pub nested: bool,
    /// Files are written once and never change (the history): once
    /// agreed, they are not read again.
    pub write_once: bool,
}

/// One mirrored file and what this node last agreed on for it.
struct Mirrored {
    /// Its name in `shared_files`.
    name: String,
    /// Where it is on this node.
    path: PathBuf,
    /// The version last written or uploaded here (0: none yet).
    version: i64,
    /// SHA-256 of the content at that version.
    hash: Option<[u8; 32]>,
    /// Never read again once agreed.
    write_once: bool,
    /// The content last refused by the gate (warned about once).
    refused: Option<[u8; 32]>,
}

impl Mirrored {
    fn new(name: String, path: PathBuf, write_once: bool) -> Self {
        Self {
            name,
            path,
            version: 0,
            hash: None,
            write_once,
            refused: None,
        }
    }
}

/// A path below a shared folder, as named in the database or found on
/// disk: plain names only (no `..`, no hidden files, no absolute paths).
fn safe_rel(rel: &str, nested: bool) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    let depth_ok = parts.len() == 1 || (nested && parts.len() == 2);
    depth_ok
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
}

/// The files of a shared folder on this node, as paths relative to it.
fn local_names(d: &SharedDir) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&d.dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(t) = e.file_type() else { continue };
        if t.is_file() && name.ends_with(d.suffix) {
            out.push(name);
        } else if t.is_dir() && d.nested && safe_rel(&name, false) {
            for f in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                let n = f.file_name().to_string_lossy().into_owned();
                if n.ends_with(d.suffix) && f.file_type().is_ok_and(|t| t.is_file()) {
                    out.push(format!("{name}/{n}"));
                }
            }
        }
    }
    out.retain(|r| safe_rel(r, d.nested));
    out
}

/// What the database holds for a file: version, content, when written.
type Remote = (i64, Vec<u8>, SystemTime);

impl PgLog {
    /// Starts mirroring `(name, path)` files, any content published.
    pub fn start_mirror(self: &Arc<Self>, files: Vec<(String, PathBuf)>) {
        self.start_mirror_with(files, Vec::new(), Arc::new(|_, _| true));
    }

    /// Starts mirroring `(name, path)` files and the files of `dirs` (those
    /// on this node's disk and those in the database), publishing this
    /// node's content only where `gate` allows.
    pub fn start_mirror_with(
        self: &Arc<Self>,
        files: Vec<(String, PathBuf)>,
        dirs: Vec<SharedDir>,
        gate: Gate,
    ) {
        let mut files: Vec<Mirrored> = files
            .into_iter()
            .map(|(name, path)| Mirrored::new(name, path, false))
            .collect();
        let me = self.clone();
        self.spawn(async move {
            loop {
                if let Err(e) = me.discover(&dirs, &mut files).await {
                    warn!(error = %e, "cannot list the shared files");
                }
                for f in &mut files {
                    if f.write_once && f.version > 0 && f.hash.is_some() {
                        continue;
                    }
                    if let Err(e) = me.mirror(f, &gate).await {
                        warn!(file = %f.path.display(), error = %e, "cannot mirror a shared file");
                    }
                }
                tokio::time::sleep(MIRROR_EVERY).await;
            }
        });
    }

    /// Adds the files of `dirs` not mirrored yet: new on this node's disk,
    /// or new in the database (another node's).
    async fn discover(
        &self,
        dirs: &[SharedDir],
        files: &mut Vec<Mirrored>,
    ) -> Result<(), AuditError> {
        if dirs.is_empty() {
            return Ok(());
        }
        let local = {
            let dirs = dirs.to_vec();
            tokio::task::spawn_blocking(move || dirs.iter().map(local_names).collect::<Vec<_>>())
                .await
                .map_err(db)?
        };
        let c = self.client().await?;
        for (d, here) in dirs.iter().zip(local) {
            let rows = c
                .query(
                    "SELECT name FROM shared_files WHERE starts_with(name, $1) ORDER BY name LIMIT $2",
                    &[&d.prefix, &(MAX_MIRRORED as i64)],
                )
                .await
                .map_err(db)?;
            let there = rows
                .iter()
                .filter_map(|r| {
                    r.get::<_, String>(0)
                        .strip_prefix(&d.prefix)
                        .map(String::from)
                })
                .filter(|rel| rel.ends_with(d.suffix) && safe_rel(rel, d.nested));
            for rel in here.into_iter().chain(there) {
                let name = format!("{}{rel}", d.prefix);
                if files.len() < MAX_MIRRORED && !files.iter().any(|f| f.name == name) {
                    files.push(Mirrored::new(name, d.dir.join(&rel), d.write_once));
                }
            }
        }
        Ok(())
    }

    async fn remote(&self, name: &str) -> Result<Option<Remote>, AuditError> {
        let c = self.client().await?;
        let r = c
            .query_opt(
                "SELECT version, content, updated_at FROM shared_files WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(db)?;
        Ok(r.map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    /// The database's copy of a shared file and when it was stored, for
    /// callers on blocking threads.
    pub fn shared_file(&self, name: &str) -> Result<Option<(Vec<u8>, SystemTime)>, AuditError> {
        self.block_on(async {
            Ok(self
                .remote(name)
                .await?
                .map(|(_, content, at)| (content, at)))
        })
    }

    /// One comparison of one file.
    async fn mirror(&self, f: &mut Mirrored, gate: &Gate) -> Result<(), AuditError> {
        let local = match tokio::fs::read(&f.path).await {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(AuditError::write(e)),
        };
        let local_hash = local.as_deref().map(crate::identity::sha256);
        let changed_here = local_hash.is_some() && local_hash != f.hash;
        let remote = self.remote(&f.name).await?;
        match remote {
            Some((v, content, at)) if v > f.version => {
                // (A newer file this node may not publish loses.)
                let newer_here = changed_here
                    && f.hash.is_none()
                    && {
                        let m = tokio::fs::metadata(&f.path).await.ok();
                        m.and_then(|m| m.modified().ok()).is_some_and(|t| t > at)
                    }
                    && gate(&f.name, local.as_deref().unwrap_or_default());
                if local_hash == Some(crate::identity::sha256(&content)) {
                    f.version = v;
                    f.hash = local_hash;
                } else if newer_here {
                    f.version = v;
                    self.upload(f, local.unwrap_or_default(), local_hash, gate)
                        .await?;
                } else {
                    if changed_here {
                        warn!(file = %f.path.display(), "changed here and on another node: the other node's version wins");
                    }
                    let path = f.path.clone();
                    let bytes = content.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Some(d) = path.parent() {
                            std::fs::create_dir_all(d)?;
                        }
                        crate::datadir::write_atomic(&path, &bytes, 0o600)
                    })
                    .await
                    .map_err(db)?
                    .map_err(AuditError::write)?;
                    info!(file = %f.path.display(), version = v, "took a shared file changed on another node");
                    f.version = v;
                    f.hash = Some(crate::identity::sha256(&content));
                }
            }
            _ if changed_here => {
                self.upload(f, local.unwrap_or_default(), local_hash, gate)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Stores this node's content as the next version, unless the gate
    /// refuses it (not valid, or not loaded yet: the next round asks again)
    /// or another node stored one since this node last agreed (then the
    /// next round takes it).
    async fn upload(
        &self,
        f: &mut Mirrored,
        content: Vec<u8>,
        hash: Option<[u8; 32]>,
        gate: &Gate,
    ) -> Result<(), AuditError> {
        if !gate(&f.name, &content) {
            if f.refused != hash {
                f.refused = hash;
                info!(file = %f.path.display(), "changed on this node but not (yet) in force here: not shared");
            }
            return Ok(());
        }
        let c = self.client().await?;
        let r = c
            .query_opt(
                "INSERT INTO shared_files (name, version, content) VALUES ($1, 1, $2)
                 ON CONFLICT (name) DO UPDATE
                   SET version = shared_files.version + 1, content = EXCLUDED.content,
                       updated_at = now()
                   WHERE shared_files.version = $3
                 RETURNING version",
                &[&f.name, &content, &f.version],
            )
            .await
            .map_err(db)?;
        if let Some(r) = r {
            f.version = r.get(0);
            f.hash = hash;
            info!(file = %f.path.display(), version = f.version, "shared a file changed on this node");
        }
        Ok(())
    }
}
