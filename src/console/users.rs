//! Console users: named, with a role, authenticated by a personal certificate
//! (bound by its subject and public key) or by a random token of which only
//! the SHA-256 is stored (`<data_dir>/console-users.json`, mode 0600). A user
//! may have an end date (`expires`), after which no way in works: accounts
//! made for a project or a replacement end without anyone remembering them.
//!
//! The running gateway reloads the file when it changes, so `ketenpoort user
//! add` and `user revoke` take effect without a restart.
//!
//! [`add`] is the one way a user is made, by the command line, the tests or
//! any console page to come, because it also keeps the binding rules: a
//! privacy officer may be bound to a partner (and then sees only that
//! partner's records), a policy admin to a pilot (and then changes only that
//! pilot), and what a user is bound to must exist. A binding to a partner
//! that does not exist would scope the user to nothing, silently.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, GatewayConfig};
use crate::identity::sha256;
use crate::policy::partners::Partners;

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
    /// SHA-256 of the token, hex; none for a user who logs in with a
    /// certificate only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// The personal certificate this user logs in with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateBinding>,
    /// When the user was added.
    pub created: String,
    /// After this time (RFC 3339) the user is refused, however it logs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// A personal certificate, recognised by subject and public key together:
/// a renewed certificate with the same key still works, another person's
/// certificate with a look-alike subject never does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateBinding {
    /// The subject's distinguished name, as x509-parser writes it.
    pub subject: String,
    /// SHA-256 of the subject public key info, hex.
    pub spki_sha256: String,
}

impl CertificateBinding {
    /// The binding of a DER certificate.
    pub fn of_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        Some(Self {
            subject: cert.subject().to_string(),
            spki_sha256: hex::encode(sha256(cert.tbs_certificate.subject_pki.raw)),
        })
    }

    /// The binding of the first certificate of a PEM file. Blocking.
    pub fn of_pem_file(file: &Path) -> Result<Self, UserError> {
        let certs = crate::tls::read_certs(file)
            .map_err(|e| UserError::Invalid(file.to_path_buf(), e.to_string()))?;
        Self::of_der(&certs[0]).ok_or_else(|| {
            UserError::Invalid(file.to_path_buf(), "not an X.509 certificate".into())
        })
    }
}

/// Why a way in was refused: the reason counted in metrics and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No user holds this token or certificate.
    Unknown,
    /// The user exists, and its end date has passed.
    Expired,
}

impl Refused {
    /// The word in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Expired => "expired",
        }
    }
}

/// What `user add` is asked to make.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// A privacy officer's partner.
    pub partner: Option<String>,
    /// A policy admin's pilot.
    pub pilot: Option<String>,
    /// Log in with this certificate (and then no token is made).
    pub certificate: Option<CertificateBinding>,
    /// The user ends this many days from now.
    pub expires_days: Option<u32>,
}

impl User {
    /// Whether the user's end date has passed at `now` (Unix microseconds).
    /// An end date that does not parse counts as passed: fail closed.
    pub fn expired_at(&self, now: i64) -> bool {
        self.expires
            .as_deref()
            .is_some_and(|e| crate::audit::record::parse_time(e).is_none_or(|end| end <= now))
    }

    /// Whether this user may change (and withdraw proposals of) a pilot's
    /// policy: a policy admin of that pilot, or of every pilot.
    pub fn may_edit(&self, pilot: &str) -> Result<(), &'static str> {
        if self.role != Role::PolicyAdmin {
            return Err("only a policy admin changes policies");
        }
        match &self.pilot {
            Some(own) if own != pilot => Err("you administer another pilot"),
            _ => Ok(()),
        }
    }
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
    /// The partners file, needed to check a partner binding, does not load.
    #[error(transparent)]
    Partners(#[from] ConfigError),
    /// The partner to bind to is not in the partners file.
    #[error("no partner '{partner}' in {}", file.display())]
    UnknownPartner {
        /// The partner asked for.
        partner: String,
        /// The partners file looked in.
        file: PathBuf,
    },
    /// The pilot to bind to has no file in the pilots folder.
    #[error("no pilot '{pilot}' in {}", dir.display())]
    UnknownPilot {
        /// The pilot asked for.
        pilot: String,
        /// The pilots folder looked in.
        dir: PathBuf,
    },
    /// A partner binding for a role whose access is not scoped by partner.
    /// (Worded as the command line's flag, its first user.)
    #[error("--partner binds a privacy officer")]
    PartnerNeedsPrivacyOfficer,
    /// A pilot binding for a role whose access is not scoped by pilot.
    #[error("--pilot binds a policy admin")]
    PilotNeedsPolicyAdmin,
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

/// Adds a user to the gateway's users file, bound to a partner or a pilot if
/// one is given; returns the token, which is shown once and stored nowhere.
///
/// The binding is checked against the configuration's files, not a running
/// gateway's policy, so that a user can be made before the gateway starts.
pub fn add(
    config: &GatewayConfig,
    name: &str,
    role: Role,
    partner: Option<String>,
    pilot: Option<String>,
) -> Result<String, UserError> {
    let made = add_user(
        config,
        NewUser {
            name: name.to_string(),
            role,
            partner,
            pilot,
            certificate: None,
            expires_days: None,
        },
    )?;
    made.ok_or_else(|| UserError::Name("no token was made".into()))
}

/// Adds a user as [`add`] does, with a certificate or an end date if asked;
/// returns the token when one is made (not for a certificate user).
pub fn add_user(config: &GatewayConfig, new: NewUser) -> Result<Option<String>, UserError> {
    check_binding(
        config,
        new.role,
        new.partner.as_deref(),
        new.pilot.as_deref(),
    )?;
    insert(&config.data_dir, new)
}

/// The binding rules; the existence of what is named is checked first, so
/// that a typo is reported as a typo, not as a role mismatch.
fn check_binding(
    config: &GatewayConfig,
    role: Role,
    partner: Option<&str>,
    pilot: Option<&str>,
) -> Result<(), UserError> {
    if let Some(p) = partner {
        let partners = Partners::load(&config.partners_file)?;
        if partners.get(p).is_none() {
            return Err(UserError::UnknownPartner {
                partner: p.to_string(),
                file: config.partners_file.clone(),
            });
        }
        if role != Role::PrivacyOfficer {
            return Err(UserError::PartnerNeedsPrivacyOfficer);
        }
    }
    if let Some(p) = pilot {
        // The file, not a loaded policy (as the command line always checked):
        // a pilot whose file does not validate can still get an administrator.
        if !config.pilots_dir.join(format!("{p}.toml")).is_file() {
            return Err(UserError::UnknownPilot {
                pilot: p.to_string(),
                dir: config.pilots_dir.clone(),
            });
        }
        if role != Role::PolicyAdmin {
            return Err(UserError::PilotNeedsPolicyAdmin);
        }
    }
    Ok(())
}

/// Stores a user whose binding has been checked.
fn insert(data_dir: &Path, new: NewUser) -> Result<Option<String>, UserError> {
    let name = new.name.as_str();
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
    if let Some(c) = &new.certificate
        && let Some(other) = f.users.iter().find(|u| u.certificate.as_ref() == Some(c))
    {
        return Err(UserError::Name(format!(
            "this certificate is bound to user '{}' already",
            other.name
        )));
    }
    let token = match new.certificate {
        Some(_) => None,
        None => {
            let mut raw = [0u8; 32];
            SystemRandom::new()
                .fill(&mut raw)
                .map_err(|_| UserError::Name("the system random number generator failed".into()))?;
            Some(format!("kp_{}", B64URL.encode(raw)))
        }
    };
    let now = crate::audit::record::now_micros();
    f.users.push(User {
        name: name.to_string(),
        role: new.role,
        partner: new.partner,
        pilot: new.pilot,
        token_sha256: token.as_deref().map(token_hash),
        certificate: new.certificate,
        created: crate::audit::record::format_micros(now),
        expires: new
            .expires_days
            .map(|d| crate::audit::record::format_micros(now + i64::from(d) * 86_400_000_000)),
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
    /// The users as last read, replaced whole when the file changes.
    users: crate::swap::Swap<Vec<User>>,
}

impl UserStore {
    /// Reads the users file (absent: no users). Blocking.
    pub fn load(data_dir: &Path) -> Result<Self, UserError> {
        let file = path(data_dir);
        let users = read(&file)?.users;
        Ok(Self {
            file,
            users: crate::swap::Swap::new(users),
        })
    }

    /// The file, for the watcher.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Re-reads the file; keeps the old list if it does not parse. Blocking.
    pub fn reload(&self) -> Result<(), UserError> {
        self.users
            .replace_with(|| read(&self.file).map(|f| f.users))
    }

    /// The user holding this token. Comparing hashes, not tokens: how long a
    /// comparison takes tells nothing about a token whose hash is unknown.
    pub fn authenticate(&self, token: &str) -> Option<User> {
        self.by_token(token).ok()
    }

    /// The user holding this token, or why there is none.
    pub fn by_token(&self, token: &str) -> Result<User, Refused> {
        let h = token_hash(token);
        self.live(|u| u.token_sha256.as_deref() == Some(h.as_str()))
    }

    /// The user bound to this certificate (DER, already verified in the
    /// handshake), or why there is none.
    pub fn by_certificate(&self, der: &[u8]) -> Result<User, Refused> {
        let Some(b) = CertificateBinding::of_der(der) else {
            return Err(Refused::Unknown);
        };
        self.live(|u| u.certificate.as_ref() == Some(&b))
    }

    /// The user of this name as the file says now: a session re-reads its
    /// user on every request, so a revoked or changed user takes effect.
    pub fn by_name(&self, name: &str) -> Result<User, Refused> {
        self.live(|u| u.name == name)
    }

    /// Every user as last read.
    pub fn all(&self) -> std::sync::Arc<Vec<User>> {
        self.users.get()
    }

    fn live(&self, matches: impl Fn(&User) -> bool) -> Result<User, Refused> {
        let users = self.users.get();
        let u = users.iter().find(|u| matches(u)).ok_or(Refused::Unknown)?;
        if u.expired_at(crate::audit::record::now_micros()) {
            return Err(Refused::Expired);
        }
        Ok(u.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped configuration, with its data directory moved to a temp dir
    /// so a test never writes into the checkout.
    fn config(data: &Path) -> GatewayConfig {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ketenpoort.toml");
        let mut c = GatewayConfig::load(&file).unwrap();
        c.data_dir = data.to_path_buf();
        c
    }

    #[test]
    fn bindings_must_name_something_that_exists_and_suit_the_role() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let partner = || Some("gemeente-utrecht".to_string());
        let pilot = || Some("utrecht".to_string());
        let add = |role, partner, pilot| add(&c, "u", role, partner, pilot);

        assert!(matches!(
            add(Role::PrivacyOfficer, Some("gemeente-nergens".into()), None),
            Err(UserError::UnknownPartner { .. })
        ));
        // A typo is a typo, even when the role would not fit either.
        assert!(matches!(
            add(Role::PrivacyOfficer, None, Some("nergens".into())),
            Err(UserError::UnknownPilot { .. })
        ));
        assert!(matches!(
            add(Role::PolicyAdmin, partner(), None),
            Err(UserError::PartnerNeedsPrivacyOfficer)
        ));
        assert!(matches!(
            add(Role::PrivacyOfficer, None, pilot()),
            Err(UserError::PilotNeedsPolicyAdmin)
        ));
        assert!(
            list(dir.path()).unwrap().is_empty(),
            "a refused user is not stored"
        );
    }

    #[test]
    fn a_bound_user_is_stored_with_its_binding_and_its_token_works() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let token = add(
            &c,
            "fg-utrecht",
            Role::PrivacyOfficer,
            Some("gemeente-utrecht".into()),
            None,
        )
        .unwrap();
        add(
            &c,
            "beheer",
            Role::PolicyAdmin,
            None,
            Some("utrecht".into()),
        )
        .unwrap();
        let store = UserStore::load(dir.path()).unwrap();
        let u = store.authenticate(&token).unwrap();
        assert_eq!(
            (u.name.as_str(), u.partner.as_deref()),
            ("fg-utrecht", Some("gemeente-utrecht"))
        );
        assert_eq!(
            list(dir.path()).unwrap()[1].pilot.as_deref(),
            Some("utrecht")
        );
    }
}
