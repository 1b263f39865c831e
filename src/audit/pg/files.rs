//! Files every node must hold alike (the console users), mirrored through
//! the database: a change on one node's disk is uploaded as a new version,
//! and a newer version is written to the other nodes' disks, where their
//! file watchers reload it as they would an edit. So a user added once, on
//! any node, can sign in on every node within a few seconds.
//!
//! The contents are opaque here. When a file and the database both changed
//! since they last agreed, the newer one wins (the file's modification time
//! against the version's), and the other is logged as overwritten.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{PgLog, db};
use crate::audit::error::AuditError;

/// How often each node compares its files with the database.
pub const MIRROR_EVERY: Duration = Duration::from_secs(1);

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
}

/// What the database holds for a file: version, content, when written.
type Remote = (i64, Vec<u8>, SystemTime);

impl PgLog {
    /// Starts mirroring `(name, path)` files.
    pub fn start_mirror(self: &Arc<Self>, files: Vec<(String, PathBuf)>) {
        let mut files: Vec<Mirrored> = files
            .into_iter()
            .map(|(name, path)| Mirrored {
                name,
                path,
                version: 0,
                hash: None,
            })
            .collect();
        let me = self.clone();
        self.spawn(async move {
            loop {
                for f in &mut files {
                    if let Err(e) = me.mirror(f).await {
                        warn!(file = %f.path.display(), error = %e, "cannot mirror a shared file");
                    }
                }
                tokio::time::sleep(MIRROR_EVERY).await;
            }
        });
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

    /// One comparison of one file.
    async fn mirror(&self, f: &mut Mirrored) -> Result<(), AuditError> {
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
                let newer_here = changed_here && f.hash.is_none() && {
                    let m = tokio::fs::metadata(&f.path).await.ok();
                    m.and_then(|m| m.modified().ok()).is_some_and(|t| t > at)
                };
                if local_hash == Some(crate::identity::sha256(&content)) {
                    f.version = v;
                    f.hash = local_hash;
                } else if newer_here {
                    f.version = v;
                    self.upload(f, local.unwrap_or_default(), local_hash)
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
                self.upload(f, local.unwrap_or_default(), local_hash)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Stores this node's content as the next version, unless another node
    /// stored one since this node last agreed (then the next round takes it).
    async fn upload(
        &self,
        f: &mut Mirrored,
        content: Vec<u8>,
        hash: Option<[u8; 32]>,
    ) -> Result<(), AuditError> {
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
