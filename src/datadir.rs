//! The data directory is the gateway's alone.
//!
//! The audit segments, the mailbox documents and the admin socket hold what
//! no other local user may read. The process umask is set to 077 at start, so
//! everything the gateway (and sled and fjall, underneath it) creates later is private,
//! and the modes of an existing data directory are tightened: directories
//! 0700, everything else 0600. Files are written whole ([`write_atomic`]),
//! so a crash or a watcher never sees half of one.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Sets the process umask to 077 (a safe wrapper: unsafe code is forbidden).
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates `dir` if needed and makes it and everything in it private.
pub fn secure(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    tighten(dir)
}

fn tighten(path: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        // Not followed: a link may point anywhere; the target is not ours to change.
        return Ok(());
    }
    let mode = if meta.is_dir() { 0o700 } else { 0o600 };
    if meta.permissions().mode() & 0o777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten(&entry?.path())?;
        }
    }
    Ok(())
}

/// Writes a file whole (temp file, synced, then renamed), so a watcher or a
/// restart never reads half of it; `mode` 0o600 for keys and personal data.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
