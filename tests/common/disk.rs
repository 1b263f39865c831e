//! The disk as tests attack it: a size-limited tmpfs that fills up, and a
//! walk over every file a gateway left, to look for what must not be kept.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted by a test; unmounted (lazily) when dropped.
pub struct Mount(pub PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounting needs root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Mounts a 16 MiB tmpfs at `dir` (made if missing). `None` where the
/// machine does not allow it; in CI that is a failure, not a skip.
pub fn small_tmpfs(dir: &Path) -> Option<Mount> {
    std::fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok || std::env::var("CI").is_err(),
        "cannot mount a tmpfs as root in CI"
    );
    ok.then(|| Mount(dir.to_path_buf()))
}

/// Fills the file system under `dir` with a ballast file until it is full.
pub fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("ballast");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    // Fill the last partial chunk's worth too.
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    p
}

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Fails when any file under `dir` holds one of `values` (V-nummers) in
/// clear: what the gateway keeps holds keyed pseudonyms only.
pub fn assert_nothing_in_clear(dir: &Path, values: &[&str]) {
    for file in walk(dir) {
        let bytes = std::fs::read(&file).unwrap();
        for v in values {
            assert!(
                !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                "{} holds a V-nummer in clear",
                file.display()
            );
        }
    }
}
