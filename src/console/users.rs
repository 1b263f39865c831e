//! Console users: named, with a role, authenticated by a random token of which
//! only the SHA-256 is stored (`<data_dir>/console-users.json`, mode 0600).
//!
//! The running gateway reloads the file when it changes, so `ketenpoort user
//! add` and `user revoke` take effect without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::identity::sha256;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads the disclosure log, answers access requests, checks integrity.
    PrivacyOfficer,
    /// Maintains the pilots' policies; sees no personal records.
    PolicyAdmin,
}

impl Role {
    /// The word used in files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrivacyOfficer => "privacy-officer",
            Self::PolicyAdmin => "policy-admin",
        }
    }
}

/// One console user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// A privacy officer bound to a partner sees only that partner's records.
    #[serde(default)]
    pub partner: Option<String>,
    /// A policy admin bound to a pilot may change only that pilot.
    #[serde(default)]
    pub pilot: Option<String>,
    /// SHA-256 of the token, hex.
    pub token_sha256: String,
    /// When the user was added.
    pub created: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    users: Vec<User>,
}

/// Why a user command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// The users file could not be read or written.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The users file is not valid.
    #[error("{0}: {1}")]
    Invalid(PathBuf, String),
    /// A name that is taken, unknown or malformed.
    #[error("{0}")]
    Name(String),
}

/// The users file under a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("console-users.json")
}

fn read(p: &Path) -> Result<File, UserError> {
    match std::fs::read(p) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| UserError::Invalid(p.to_path_buf(), e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
        Err(e) => Err(UserError::Io(p.to_path_buf(), e)),
    }
}

fn write(p: &Path, f: &File) -> Result<(), UserError> {
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(|e| UserError::Io(dir.to_path_buf(), e))?;
    }
    let bytes = serde_json::to_vec_pretty(f)
        .map_err(|e| UserError::Invalid(p.to_path_buf(), e.to_string()))?;
    crate::datadir::write_atomic(p, &bytes, 0o600)
        .map_err(|e| UserError::Invalid(p.to_path_buf(), e.to_string()))
}

/// The hash under which a token is stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha256(token.as_bytes()))
}

/// Adds a user; returns the token, which is shown once and stored nowhere.
pub fn add(
    data_dir: &Path,
    name: &str,
    role: Role,
    partner: Option<String>,
    pilot: Option<String>,
) -> Result<String, UserError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
    {
        return Err(UserError::Name(format!(
            "'{name}' is not a user name (letters, digits, '-', '_', '.', '@')"
        )));
    }
    let p = path(data_dir);
    let mut f = read(&p)?;
    if f.users.iter().any(|u| u.name == name) {
        return Err(UserError::Name(format!(
            "user '{name}' exists; revoke it first to issue a new token"
        )));
    }
    let mut raw = [0u8; 32];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| UserError::Name("the system random number generator failed".into()))?;
    let token = format!("kp_{}", B64URL.encode(raw));
    f.users.push(User {
        name: name.to_string(),
        role,
        partner,
        pilot,
        token_sha256: token_hash(&token),
        created: crate::audit::record::format_micros(crate::audit::record::now_micros()),
    });
    write(&p, &f)?;
    Ok(token)
}

/// Every user.
pub fn list(data_dir: &Path) -> Result<Vec<User>, UserError> {
    Ok(read(&path(data_dir))?.users)
}

/// Removes a user; its token stops working.
pub fn revoke(data_dir: &Path, name: &str) -> Result<(), UserError> {
    let p = path(data_dir);
    let mut f = read(&p)?;
    let before = f.users.len();
    f.users.retain(|u| u.name != name);
    if f.users.len() == before {
        return Err(UserError::Name(format!("no user '{name}'")));
    }
    write(&p, &f)
}

/// The users as the running console sees them.
#[derive(Debug)]
pub struct UserStore {
    file: PathBuf,
    users: RwLock<Arc<Vec<User>>>,
}

impl UserStore {
    /// Reads the users file (absent: no users). Blocking.
    pub fn load(data_dir: &Path) -> Result<Self, UserError> {
        let file = path(data_dir);
        let users = read(&file)?.users;
        Ok(Self {
            file,
            users: RwLock::new(Arc::new(users)),
        })
    }

    /// The file, for the watcher.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Re-reads the file; keeps the old list if it does not parse. Blocking.
    pub fn reload(&self) -> Result<(), UserError> {
        let users = read(&self.file)?.users;
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(users);
        Ok(())
    }

    /// The user holding this token. Comparing hashes, not tokens: how long a
    /// comparison takes tells nothing about a token whose hash is unknown.
    pub fn authenticate(&self, token: &str) -> Option<User> {
        let h = token_hash(token);
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|u| u.token_sha256 == h)
            .cloned()
    }
}
