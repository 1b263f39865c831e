//! Secrets the gateway keeps in its data directory: one pseudonym secret per
//! pilot (the audit log keeps its own keys beside them, see
//! [`crate::audit::store::Options`]). Each is 32 random bytes in its own file,
//! mode 0600, made on first use and never logged.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};

use crate::policy::PseudonymKeys;

/// The folder of secrets under the data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// Reads a 32-byte secret, or makes one if the file does not exist. Blocking.
pub fn load_or_create(path: &Path) -> std::io::Result<[u8; 32]> {
    match fs::read(path) {
        Ok(b) if b.len() == 32 => {
            let mut out = [0u8; 32];
            out.copy_from_slice(&b);
            return Ok(out);
        }
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: a secret must be exactly 32 bytes", path.display()),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
        fs::set_permissions(parent, fs::Permissions::from_mode(0o700))?;
    }
    let mut secret = [0u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| std::io::Error::other("system random number generator failed"))?;
    // create_new: two processes starting at once must not overwrite each other.
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(&secret)?;
            f.sync_all()?;
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
        Err(e) => Err(e),
    }
}

/// The pseudonym secrets of these pilots, made where missing. Blocking.
pub fn pseudonym_keys<'a>(
    data_dir: &Path,
    pilots: impl IntoIterator<Item = &'a str>,
) -> std::io::Result<PseudonymKeys> {
    let mut secrets = HashMap::new();
    for p in pilots {
        let secret = load_or_create(&dir(data_dir).join(format!("pseudonym-{p}.key")))?;
        secrets.insert(p.to_string(), secret);
    }
    Ok(PseudonymKeys::new(secrets))
}
