//! The data directory is the gateway's alone.
//!
//! The audit segments, the mailbox documents and the admin socket hold what
//! no other local user may read. The process umask is set to 077 at start, so
//! everything the gateway (and sled, underneath it) creates later is private,
//! and the modes of an existing data directory are tightened: directories
//! 0700, everything else 0600.

use std::os::unix::fs::PermissionsExt;
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
