//! Restore: a backup into an empty data directory, with no gateway running.
//!
//! Nothing is written before the whole backup has been checked: the
//! manifest's format, every file's checksum (a damaged file is named), the
//! checkpoint's signature, and that the secret keys (from the backup or
//! `--keys`) are the ones that signed it. After the copy the restored log
//! is verified in full and must hold exactly the checkpoint's records. A
//! restore reads only plain files inside the backup (no links, devices or
//! pipes), never more of one than the manifest says, and copies only bytes
//! whose sum it checked while copying. The
//! caches and the index are left for the gateway to rebuild when it opens
//! the log.

use std::fs;
use std::io::Read;
use std::path::{Component, Path};

use std::os::unix::fs::OpenOptionsExt;

use super::{BackupError, FORMAT, FileSum, MANIFEST, Manifest, SLED_FILE, SledLine, empty_dir, io};
use crate::audit::checkpoint::{Signer, Verifier};
use crate::audit::rotation::KeyHistory;

/// What a finished restore reports.
#[derive(Debug, Clone)]
pub struct Restored {
    /// Records of the restored audit log.
    pub size: u64,
    /// Files restored (the sled stores counted as one).
    pub files: usize,
    /// Whether the keys came from `--keys` rather than the backup.
    pub keys_from_elsewhere: bool,
}

/// Reads and checks the manifest and every file it names. Blocking.
pub fn check(from: &Path) -> Result<Manifest, BackupError> {
    let damaged = |path: &str, reason: String| BackupError::Damaged {
        path: path.to_string(),
        reason,
    };
    let text = fs::read(from.join(MANIFEST)).map_err(|e| damaged(MANIFEST, e.to_string()))?;
    let m: Manifest =
        serde_json::from_slice(&text).map_err(|e| damaged(MANIFEST, e.to_string()))?;
    if m.format != FORMAT {
        return Err(damaged(
            MANIFEST,
            format!("format {:?}, expected {FORMAT:?}", m.format),
        ));
    }
    if !m.files.iter().any(|f| f.path == SLED_FILE) {
        return Err(damaged(SLED_FILE, "the manifest does not list it".into()));
    }
    for f in &m.files {
        let rel = Path::new(&f.path);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(damaged(&f.path, "not a plain relative path".into()));
        }
        plain_file(from, rel).map_err(|why| damaged(&f.path, why))?;
        copy_checked(&from.join(rel), f, None).map_err(|why| damaged(&f.path, why))?;
    }
    let cp = Verifier::parse(&m.vkey)
        .and_then(|v| v.verify(&m.checkpoint))
        .map_err(|e| damaged(MANIFEST, format!("the checkpoint: {e}")))?;
    if cp.size != m.size {
        return Err(damaged(
            MANIFEST,
            "the checkpoint's size is not the manifest's".into(),
        ));
    }
    Ok(m)
}

/// Whether `rel` under `from` is a regular file reached through folders
/// only: a symbolic link (to a file or a folder) would make the restore
/// read from outside the backup it was pointed at, and a device or pipe
/// could be read without end.
fn plain_file(from: &Path, rel: &Path) -> Result<(), String> {
    let mut at = from.to_path_buf();
    let mut parts = rel.components().peekable();
    while let Some(c) = parts.next() {
        at.push(c);
        let meta = fs::symlink_metadata(&at).map_err(|e| e.to_string())?;
        let ok = if parts.peek().is_some() {
            meta.is_dir()
        } else {
            meta.is_file()
        };
        if !ok {
            return Err(format!(
                "'{}' is a link or special file, not a plain file or folder of the backup",
                c.as_os_str().to_string_lossy()
            ));
        }
    }
    Ok(())
}

/// Reads at most the manifest's length of `src` (one byte more shows it is
/// longer), checks length and SHA-256, and writes the bytes to `to` when
/// given (a temporary file, renamed once the sum is right). The copy checks
/// what it copies: a file changed after [`check`] is not restored.
fn copy_checked(src: &Path, f: &FileSum, to: Option<&Path>) -> Result<(), String> {
    use std::io::Write;
    let mut input = fs::File::open(src).map_err(|e| e.to_string())?;
    let tmp = to.map(|t| t.with_extension("restore.tmp"));
    let mut out = match &tmp {
        Some(t) => Some(
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(t)
                .map_err(|e| format!("{}: {e}", t.display()))?,
        ),
        None => None,
    };
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut n_all = 0u64;
    let limit = f.bytes.saturating_add(1);
    while n_all < limit {
        let want = usize::try_from(limit - n_all).map_or(buf.len(), |l| l.min(buf.len()));
        let n = input.read(&mut buf[..want]).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        if let Some(o) = out.as_mut() {
            o.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        }
        n_all += n as u64;
    }
    let fail = |why: String| {
        if let Some(t) = &tmp {
            let _ = fs::remove_file(t);
        }
        Err(why)
    };
    if n_all > f.bytes {
        return fail(format!(
            "longer than the {} bytes the manifest says",
            f.bytes
        ));
    }
    if n_all != f.bytes {
        return fail(format!("{n_all} bytes, the manifest says {}", f.bytes));
    }
    if hex::encode(ctx.finish()) != f.sha256 {
        return fail("its SHA-256 is not the manifest's".into());
    }
    if let (Some(o), Some(t), Some(to)) = (out, &tmp, to) {
        o.sync_all().map_err(|e| e.to_string())?;
        fs::rename(t, to).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Restores the backup in `from` into `data_dir`, which must be empty or
/// absent; `keys` names a folder of secret keys (a data directory's
/// `keys/`) when the backup holds none. Blocking.
pub fn restore(from: &Path, data_dir: &Path, keys: Option<&Path>) -> Result<Restored, BackupError> {
    let m = check(from)?;
    if !m.secret_keys && keys.is_none() {
        return Err(BackupError::NoKeys);
    }
    let keys_dir = match keys {
        Some(k) => k.to_path_buf(),
        None => from.join("keys"),
    };
    let signer = Signer::load(&keys_dir.join("checkpoint.ed25519"), &m.origin)
        .map_err(|e| BackupError::WrongKeys(format!("{}: {e}", keys_dir.display())))?;
    if signer.vkey() != m.vkey.trim() {
        return Err(BackupError::WrongKeys(format!(
            "{}: the checkpoint signing key there is not the one that signed this log ({})",
            keys_dir.display(),
            m.vkey.trim()
        )));
    }
    empty_dir(data_dir)?;
    let mut files = 0;
    for f in &m.files {
        if f.path == SLED_FILE || (keys.is_some() && f.path.starts_with("keys/")) {
            continue;
        }
        let dst = data_dir.join(&f.path);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        copy_checked(&from.join(&f.path), f, Some(&dst)).map_err(|reason| {
            BackupError::Damaged {
                path: f.path.clone(),
                reason,
            }
        })?;
        files += 1;
    }
    if let Some(k) = keys {
        files += copy_keys(k, &crate::keys::dir(data_dir))?;
    }
    let sled = m
        .files
        .iter()
        .find(|f| f.path == SLED_FILE)
        .ok_or_else(|| BackupError::Damaged {
            path: SLED_FILE.into(),
            reason: "the manifest does not list it".into(),
        })?;
    import_sled(&from.join(SLED_FILE), sled, &data_dir.join("mailbox"))?;
    crate::datadir::secure(data_dir).map_err(io(data_dir))?;
    let audit_dir = data_dir.join("audit");
    // A backup from before the key history existed has checkpoint.vkey alone.
    let history = KeyHistory::read(&audit_dir).map_err(io(&audit_dir))?;
    if history.current_vkey() != m.vkey.trim() {
        return Err(BackupError::Audit(format!(
            "the restored key history ends with {}, the backup was signed by {}",
            history.current_vkey(),
            m.vkey.trim()
        )));
    }
    let report = crate::audit::verify::verify_keys(&audit_dir, &history, |_| {})
        .map_err(|e| BackupError::Audit(format!("the restored log does not verify: {e}")))?;
    if report.records != m.size {
        return Err(BackupError::Audit(format!(
            "the restored log holds {} records, the backup's checkpoint {}",
            report.records, m.size
        )));
    }
    Ok(Restored {
        size: m.size,
        files: files + 1,
        keys_from_elsewhere: keys.is_some(),
    })
}

/// Copies a folder of keys (files and one level of folders below, as
/// `keys/subject/<pilot>/`) into the new data directory.
fn copy_keys(from: &Path, to: &Path) -> Result<usize, BackupError> {
    let mut n = 0;
    for e in fs::read_dir(from).map_err(io(from))? {
        let e = e.map_err(io(from))?;
        let src = e.path();
        let dst = to.join(e.file_name());
        let meta = fs::symlink_metadata(&src).map_err(io(&src))?;
        if meta.is_dir() {
            n += copy_keys(&src, &dst)?;
        } else if meta.is_file() {
            fs::create_dir_all(to).map_err(io(to))?;
            let bytes = fs::read(&src).map_err(io(&src))?;
            crate::datadir::write_atomic(&dst, &bytes, 0o600).map_err(io(&dst))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Writes the sled stores' entries into a new database at `dir`.
fn import_sled(file: &Path, sum: &FileSum, dir: &Path) -> Result<(), BackupError> {
    let damaged = |reason: String| BackupError::Damaged {
        path: SLED_FILE.into(),
        reason,
    };
    let store = |e: sled::Error| BackupError::Store(e.to_string());
    let mut text = Vec::new();
    fs::File::open(file)
        .and_then(|f| f.take(sum.bytes).read_to_end(&mut text))
        .map_err(io(file))?;
    // What is imported is what the manifest summed, not what the file
    // became after the check.
    if hex::encode(ring::digest::digest(&ring::digest::SHA256, &text)) != sum.sha256 {
        return Err(damaged("its SHA-256 is not the manifest's".into()));
    }
    let db = sled::Config::new().path(dir).open().map_err(store)?;
    let mut tree: Option<(String, sled::Tree)> = None;
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let l: SledLine =
            serde_json::from_slice(line).map_err(|e| damaged(format!("line {}: {e}", i + 1)))?;
        let unhex = |s: &str| hex::decode(s).map_err(|e| damaged(format!("line {}: {e}", i + 1)));
        if tree.as_ref().is_none_or(|(name, _)| *name != l.tree) {
            let t = db.open_tree(unhex(&l.tree)?).map_err(store)?;
            tree = Some((l.tree.clone(), t));
        }
        if let Some((_, t)) = &tree {
            t.insert(unhex(&l.key)?, unhex(&l.value)?).map_err(store)?;
        }
    }
    db.flush().map_err(store)?;
    Ok(())
}
