//! `witness.toml`: where a witness listens, its key, its state folder, its
//! optional TLS certificate, and the logs it witnesses.
//!
//! ```toml
//! listen = "0.0.0.0:7380"
//! key = "witness.key"          # made by `ketenpoort witness keygen`
//! state = "state"              # folder, made 0700 if missing
//! # cert = "witness.crt"       # optional TLS: both or neither
//! # key_file = "witness.key.pem"
//!
//! [[log]]
//! origin = "ketenpoort/pilot-utrecht"
//! vkey = "ketenpoort/pilot-utrecht+1a2b3c4d+AQ..."
//! ```
//!
//! A log may appear more than once with different keys (a key rotation):
//! a checkpoint signed by any of them is accepted. Errors name the file, the
//! line and the column, as every config error of ketenpoort does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::audit::checkpoint::Verifier;
use crate::config::{ConfigError, Source, resolve};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWitness {
    listen: Spanned<String>,
    key: PathBuf,
    state: PathBuf,
    #[serde(default)]
    cert: Option<Spanned<PathBuf>>,
    #[serde(default)]
    key_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    log: Vec<RawLog>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    origin: Spanned<String>,
    vkey: Spanned<String>,
}

/// The TLS certificate a witness serves with, when it does not sit behind
/// a proxy that terminates TLS for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessTls {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// A witness's configuration, checked and with paths resolved.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// The file this was read from, for messages.
    pub file: PathBuf,
    /// Address the witness listens on.
    pub listen: SocketAddr,
    /// The witness's cosigning key file.
    pub key: PathBuf,
    /// The state folder.
    pub state: PathBuf,
    /// TLS, when configured; plain HTTP otherwise.
    pub tls: Option<WitnessTls>,
    /// Origin → the log keys trusted for it.
    pub logs: BTreeMap<String, Vec<Verifier>>,
}

/// An origin line: non-empty, no control characters (it must fit on one
/// line of a note).
fn origin(src: &Source, v: &Spanned<String>) -> Result<String, ConfigError> {
    let o = v.get_ref();
    if o.is_empty() || o.chars().any(char::is_control) {
        return Err(src.error(
            v,
            "origin must be the log's non-empty origin line, as in its checkpoints",
        ));
    }
    Ok(o.clone())
}

impl WitnessConfig {
    /// Reads and checks `witness.toml`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let src = Source::read(file)?;
        let raw: RawWitness = src.parse()?;
        let dir = src.dir();
        let listen = raw.listen.get_ref().parse().map_err(|_| {
            src.error(
                &raw.listen,
                format!(
                    "'{}' is not an address like 127.0.0.1:7380",
                    raw.listen.get_ref()
                ),
            )
        })?;
        let tls = match (&raw.cert, &raw.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(WitnessTls {
                cert: resolve(&dir, cert.get_ref()),
                key: resolve(&dir, key.get_ref()),
            }),
            (Some(v), None) | (None, Some(v)) => {
                return Err(src.error(v, "TLS needs both cert and key_file"));
            }
        };
        if raw.log.is_empty() {
            return Err(src.error_whole("no [[log]] to witness: add one with its origin and vkey"));
        }
        let mut logs: BTreeMap<String, Vec<Verifier>> = BTreeMap::new();
        for log in &raw.log {
            let origin = origin(&src, &log.origin)?;
            let verifier = Verifier::parse(log.vkey.get_ref()).map_err(|e| {
                src.error(
                    &log.vkey,
                    format!("vkey is not an Ed25519 signed-note verifier key (name+id+key, type 0x01): {e}"),
                )
            })?;
            logs.entry(origin).or_default().push(verifier);
        }
        Ok(Self {
            file: file.to_path_buf(),
            listen,
            key: resolve(&dir, &raw.key),
            state: resolve(&dir, &raw.state),
            tls,
            logs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<WitnessConfig, ConfigError> {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("witness.toml");
        std::fs::write(&f, text).unwrap();
        WitnessConfig::load(&f)
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let head = "listen = \"127.0.0.1:0\"\nkey = \"k\"\nstate = \"s\"\n";
        let e = load(&format!("{head}[[log]]\norigin = \"o\"\nvkey = \"nope\"\n")).unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(6), "{e}");
        assert!(e.to_string().contains("witness.toml:6:"), "{e}");
        assert!(e.reason.contains("vkey"), "{e}");
        let e = load("listen = \"here\"\nkey = \"k\"\nstate = \"s\"\n").unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(1), "{e}");
        let e = load(&format!("{head}cert = \"c\"\n")).unwrap_err();
        assert!(e.reason.contains("key_file"), "{e}");
        let e = load(&format!("{head}colour = 1\n")).unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(4), "{e}");
        let e = load(head).unwrap_err();
        assert!(e.reason.contains("[[log]]"), "{e}");
    }
}
