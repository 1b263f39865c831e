//! Back-up and restore of the embedded data directory (BIO 8.13: restores
//! are tested, not assumed).
//!
//! The running gateway holds its stores (sled allows one process per
//! database, fjall too), so a backup is taken by the gateway itself, asked
//! over the admin socket ([`crate::admin`]); a restore runs with no gateway,
//! into an empty data directory ([`restore`]).
//!
//! What a backup holds, and why it is consistent:
//! - the audit log up to a checkpoint signed for the backup: segments are
//!   append-only, so the first `size` records copied while the writer goes
//!   on are exactly the records that checkpoint signs; later checkpoints
//!   are left out, so the restored log matches its latest one;
//! - the node and offset caches and the fjall index are not copied: the
//!   gateway rebuilds them from the segments when it opens the restored log;
//! - the sled stores (mailboxes, the LVV registry, consents), tree by tree,
//!   as JSON lines;
//! - the files written whole (console users, covenant state and inbox,
//!   policy history, the witnesses' cosigned checkpoints);
//! - the checkpoint verifier keys (public: the one in force and the history
//!   of earlier ones, `audit/checkpoint.keys`) always; the secret keys only when
//!   asked for, since whoever holds them can link records to persons and
//!   sign checkpoints;
//! - `manifest.json`, written last: the checkpoint, and every file with its
//!   SHA-256, so that a damaged or half-written backup is refused by name.
//!
//! A backup does not hold the configuration (`/etc/ketenpoort`): that is
//! the operator's to keep, with its certificates.

pub mod restore;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::audit::checkpoint::{self, Verifier};
use crate::audit::rotation::{self, KeyHistory};
use crate::audit::segment;

/// The manifest's format name; a restore refuses any other.
pub const FORMAT: &str = "ketenpoort-backup/1";
/// The manifest's file name in a backup.
pub const MANIFEST: &str = "manifest.json";
/// The sled stores' file in a backup.
pub const SLED_FILE: &str = "stores/sled.jsonl";
/// Folders of whole files copied as they are (under the data directory).
const PLAIN: &[&str] = &["console-users.json", "covenant", "policy-history"];

/// What a backup holds: written last, read first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// When it was taken (RFC 3339).
    pub created: String,
    /// The log's origin (`ketenpoort/<deployment>`).
    pub origin: String,
    /// The checkpoint verifier key of the log.
    pub vkey: String,
    /// The signed checkpoint the audit log was copied up to.
    pub checkpoint: String,
    /// Records in the copied log (the checkpoint's size).
    pub size: u64,
    /// Whether the secret keys are in the backup.
    pub secret_keys: bool,
    /// Every file of the backup but the manifest, with its checksum.
    pub files: Vec<FileSum>,
}

/// One file of a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileSum {
    /// Path relative to the backup folder (and to the data directory).
    pub path: String,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Its length.
    pub bytes: u64,
}

/// Why a backup or restore failed; each names the file or folder at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The target of a backup or restore is not an empty folder.
    #[error("{0}: not empty (a backup or restore goes into an empty folder)")]
    NotEmpty(String),
    /// A file of the backup is missing, damaged or not what the manifest says.
    #[error("damaged backup: {path}: {reason}")]
    Damaged {
        /// The file, relative to the backup folder.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The backup holds no secret keys and none were named.
    #[error(
        "the backup holds no secret keys: name the folder that holds them with --keys DIR (the old data directory's keys/)"
    )]
    NoKeys,
    /// The named keys do not sign for this log.
    #[error("{0}")]
    WrongKeys(String),
    /// The audit log could not be asked for a checkpoint or did not verify.
    #[error("audit log: {0}")]
    Audit(String),
    /// The sled stores could not be read or written.
    #[error("stores: {0}")]
    Store(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a finished backup reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Records of the audit log in it.
    pub size: u64,
    /// Files in it (besides the manifest).
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Whether the secret keys are in it.
    pub secret_keys: bool,
}

/// Makes `dir` (mode 0700) or checks that it is empty.
pub fn empty_dir(dir: &Path) -> Result<(), BackupError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(dir.display().to_string()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        Err(e) => return Err(io(dir)(e)),
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

/// Writes the files of a backup, summing each as it goes.
struct Out {
    root: PathBuf,
    files: Vec<FileSum>,
}

impl Out {
    /// A file at `rel`, written whole from `chunks` (each read then written),
    /// synced, mode 0600.
    fn write(&mut self, rel: &str, src: &mut dyn Read, limit: u64) -> Result<(), BackupError> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 1 << 16];
        let mut left = limit;
        let mut bytes = 0u64;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = src.read(&mut buf[..want]).map_err(io(&path))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
            f.write_all(&buf[..n]).map_err(io(&path))?;
            left -= n as u64;
            bytes += n as u64;
        }
        f.sync_all().map_err(io(&path))?;
        self.files.push(FileSum {
            path: rel.to_string(),
            sha256: hex::encode(ctx.finish()),
            bytes,
        });
        Ok(())
    }

    fn write_bytes(&mut self, rel: &str, bytes: &[u8]) -> Result<(), BackupError> {
        self.write(rel, &mut &bytes[..], bytes.len() as u64)
    }

    /// Copies every file under `data_dir/rel` (a file or a folder).
    fn copy_tree(&mut self, data_dir: &Path, rel: &str) -> Result<(), BackupError> {
        let path = data_dir.join(rel);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&path)(e)),
        };
        if meta.is_dir() {
            let mut names = Vec::new();
            for e in fs::read_dir(&path).map_err(io(&path))? {
                names.push(e.map_err(io(&path))?.file_name());
            }
            names.sort();
            for n in names {
                let Some(n) = n.to_str() else { continue };
                // Temporary files of an atomic write in progress.
                if n.ends_with(".tmp") {
                    continue;
                }
                self.copy_tree(data_dir, &format!("{rel}/{n}"))?;
            }
        } else if meta.is_file() {
            // Files written whole (temp file, rename): read whole, once.
            let bytes = fs::read(&path).map_err(io(&path))?;
            self.write_bytes(rel, &bytes)?;
        }
        Ok(())
    }
}

/// Takes a backup of the running gateway's data directory into `to` (an
/// empty or new folder). `audit` must be the running log; `sled` the
/// gateway's embedded database. Asks the log for a checkpoint first.
pub async fn take(
    audit: std::sync::Arc<Audit>,
    sled: sled::Db,
    data_dir: PathBuf,
    to: PathBuf,
    include_keys: bool,
) -> Result<Summary, BackupError> {
    empty_dir(&to)?;
    let cp = audit
        .checkpoint()
        .await
        .map_err(|e| BackupError::Audit(e.to_string()))?;
    // The keys as they were when `cp` was signed: a rotation that came
    // after it is not part of this backup.
    let mut keys = audit.key_history();
    while keys.keys.len() > 1
        && Verifier::parse(keys.current_vkey()).is_ok_and(|v| v.verify(&cp.note).is_err())
    {
        keys.keys.pop();
    }
    let vkey = keys.current_vkey().to_string();
    tokio::task::spawn_blocking(move || {
        let mut out = Out {
            root: to.clone(),
            files: Vec::new(),
        };
        copy_log(&mut out, &data_dir.join("audit"), &keys, cp.size)?;
        export_sled(&mut out, &sled)?;
        for rel in PLAIN {
            out.copy_tree(&data_dir, rel)?;
        }
        if include_keys {
            out.copy_tree(&data_dir, "keys")?;
            tracing::warn!(
                backup = %to.display(),
                "the backup holds the secret keys (subject pseudonyms, checkpoint signing): keep it as the data directory itself"
            );
        }
        let summary = Summary {
            size: cp.size,
            files: out.files.len(),
            bytes: out.files.iter().map(|f| f.bytes).sum(),
            secret_keys: include_keys,
        };
        let manifest = Manifest {
            format: FORMAT.into(),
            created: crate::audit::record::format_micros(crate::audit::record::now_micros()),
            origin: cp.origin.clone(),
            vkey,
            checkpoint: cp.note.clone(),
            size: cp.size,
            secret_keys: include_keys,
            files: out.files,
        };
        let text = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| BackupError::Store(e.to_string()))?;
        let path = to.join(MANIFEST);
        crate::datadir::write_atomic(&path, &text, 0o600).map_err(io(&path))?;
        File::open(&to)
            .and_then(|d| d.sync_all())
            .map_err(io(&to))?;
        tracing::info!(
            records = summary.size,
            files = summary.files,
            bytes = summary.bytes,
            "backup taken"
        );
        Ok(summary)
    })
    .await
    .map_err(|e| BackupError::Store(e.to_string()))?
}

/// The audit log's records `0..size`, the checkpoints up to `size`, the
/// verifier keys and the cosigned checkpoints.
fn copy_log(
    out: &mut Out,
    audit_dir: &Path,
    keys: &KeyHistory,
    size: u64,
) -> Result<(), BackupError> {
    let seg_dir = audit_dir.join("segments");
    let segs = segment::list(&seg_dir).map_err(io(&seg_dir))?;
    for (i, s) in segs.iter().enumerate() {
        if s.first_id >= size && s.first_id > 0 {
            break;
        }
        let next = segs.get(i + 1).map(|n| n.first_id);
        let len = match next {
            // Synced whole before the next segment began.
            Some(n) if n <= size => fs::metadata(&s.path).map_err(io(&s.path))?.len(),
            _ => prefix_len(&s.path, size - s.first_id)?,
        };
        let mut f = File::open(&s.path).map_err(io(&s.path))?;
        let rel = format!("audit/segments/{}", segment::file_name(s.first_id));
        out.write(&rel, &mut f, len)?;
        if next.is_some_and(|n| n > size) {
            break;
        }
    }
    let verifier = keys.check().map_err(BackupError::Audit)?;
    let cps_path = audit_dir.join("checkpoints");
    let mut cps = Vec::new();
    for note in checkpoint::read_all(&cps_path).map_err(io(&cps_path))? {
        if verifier.verify(&note).is_ok_and(|c| c.size <= size) {
            cps.extend_from_slice(&(note.len() as u32).to_le_bytes());
            cps.extend_from_slice(note.as_bytes());
        }
    }
    out.write_bytes("audit/checkpoints", &cps)?;
    let vkey = keys.current_vkey();
    out.write_bytes("audit/checkpoint.vkey", format!("{vkey}\n").as_bytes())?;
    let history = serde_json::to_vec_pretty(keys).map_err(|e| BackupError::Audit(e.to_string()))?;
    out.write_bytes(&format!("audit/{}", rotation::FILE), &history)?;
    // Entries beyond the copied log are ignored when it is opened.
    out.copy_tree(audit_dir.parent().unwrap_or(audit_dir), "audit/cosigned")?;
    Ok(())
}

/// Bytes of a segment that hold its first `records` records.
fn prefix_len(path: &Path, records: u64) -> Result<u64, BackupError> {
    if records == 0 {
        return Ok(0);
    }
    let mut seen = 0u64;
    let mut end = 0u64;
    let scanned = segment::scan(path, |off, bytes| {
        seen += 1;
        end = off + (segment::HEADER + bytes.len()) as u64;
        if seen == records { Err(()) } else { Ok(()) }
    });
    match scanned {
        Err(segment::ScanError::Visit(())) => Ok(end),
        Err(segment::ScanError::Io(e)) => Err(io(path)(e)),
        Err(segment::ScanError::Damage(d)) => Err(BackupError::Audit(d.to_string())),
        Ok(_) => Err(BackupError::Audit(format!(
            "{}: holds {seen} records, the checkpoint needs {records}",
            path.display()
        ))),
    }
}

/// One entry of a sled tree in the backup.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SledLine {
    /// The tree's name, hex.
    pub tree: String,
    /// Key, hex.
    pub key: String,
    /// Value, hex.
    pub value: String,
}

/// Every tree of the embedded database, entry by entry. sled has no
/// snapshot across trees: each entry is copied as it stood when read.
fn export_sled(out: &mut Out, db: &sled::Db) -> Result<(), BackupError> {
    let store = |e: sled::Error| BackupError::Store(e.to_string());
    let mut text = Vec::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).map_err(store)?;
        for kv in tree.iter() {
            let (k, v) = kv.map_err(store)?;
            let line = SledLine {
                tree: hex::encode(&name),
                key: hex::encode(&k),
                value: hex::encode(&v),
            };
            serde_json::to_writer(&mut text, &line)
                .map_err(|e| BackupError::Store(e.to_string()))?;
            text.push(b'\n');
        }
    }
    out.write_bytes(SLED_FILE, &text)
}
