//! `[storage]` in `ketenpoort.toml`: where the gateway keeps what it must not
//! lose. The embedded store (files under `data_dir`) serves one machine; a
//! PostgreSQL database lets several gateway processes share one log.
//!
//! Only the settings are read here; connecting is the audit store's business.
//! The password lives in its own file (never in `ketenpoort.toml`, which is
//! copied around and shown in reviews), and so does the CA that the
//! database's certificate must chain to.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// A mistake in `[storage]`: the byte offset it is at (if it has a place)
/// and why; the caller turns it into a located `ConfigError`. (This module
/// does not reach back into its parent for that type: no import cycle.)
pub(super) type Mistake = (Option<usize>, String);

fn at<T>(v: &Spanned<T>, why: impl Into<String>) -> Mistake {
    (Some(v.span().start), why.into())
}

/// `[storage]` as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    #[serde(default)]
    backend: Option<Spanned<String>>,
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    ca: Option<PathBuf>,
}

/// Which store holds the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Storage {
    /// Files under `data_dir` (the default): one gateway process.
    #[default]
    Embedded,
    /// A PostgreSQL database shared by any number of gateway processes.
    Postgres(Postgres),
}

/// How to reach the PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postgres {
    /// `postgresql://user@host:port/db` (or key=value form); no password in it.
    pub url: String,
    /// File whose first line is the password, if the server asks for one.
    pub password_file: Option<PathBuf>,
    /// CA certificate (PEM) the server's certificate must chain to: TLS is
    /// then required. Without it the connection is plain (a unix socket, or
    /// a network the operator trusts).
    pub ca: Option<PathBuf>,
}

/// Checks `[storage]`; absent means embedded. `resolve` makes a path from
/// the file relative to the file's folder.
pub(super) fn check(
    raw: Option<&RawStorage>,
    resolve: impl Fn(&Path) -> PathBuf,
) -> Result<Storage, Mistake> {
    let Some(raw) = raw else {
        return Ok(Storage::Embedded);
    };
    let backend = raw
        .backend
        .as_ref()
        .map_or("embedded", |b| b.get_ref().as_str());
    match backend {
        "embedded" => {
            if let Some(u) = &raw.url {
                return Err(at(u, "url needs backend = \"postgres\""));
            }
            Ok(Storage::Embedded)
        }
        "postgres" => {
            let Some(url) = &raw.url else {
                return Err(match &raw.backend {
                    Some(b) => at(b, "backend = \"postgres\" needs a url"),
                    None => (None, "[storage] needs a url".to_string()),
                });
            };
            let cfg: Result<tokio_postgres::Config, _> = url.get_ref().parse();
            match cfg {
                Err(e) => Err(at(url, format!("not a PostgreSQL connection url: {e}"))),
                Ok(c) if c.get_password().is_some() => Err(at(
                    url,
                    "the url holds a password: put it in password_file instead",
                )),
                Ok(_) => Ok(Storage::Postgres(Postgres {
                    url: url.get_ref().clone(),
                    password_file: raw.password_file.as_deref().map(&resolve),
                    ca: raw.ca.as_deref().map(&resolve),
                })),
            }
        }
        other => Err(match &raw.backend {
            Some(b) => at(
                b,
                format!("backend '{other}' is not one of \"embedded\", \"postgres\""),
            ),
            None => (None, "unknown backend".to_string()),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{ConfigError, GatewayConfig};

    /// A minimal gateway configuration with `extra` after it, loaded (also
    /// used by `config`'s own tests).
    pub(crate) fn load(extra: &str) -> Result<GatewayConfig, ConfigError> {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("ketenpoort.toml");
        let base = "deployment = \"t\"\npartners = \"p.toml\"\ndata_dir = \"d\"\n\
            [listen]\npartners = \"127.0.0.1:0\"\nconsole = \"127.0.0.1:0\"\n\
            [tls]\ncert = \"c\"\nkey = \"k\"\ntrust_anchors = [\"a\"]\n\
            client_cert = \"c\"\nclient_key = \"k\"\n";
        std::fs::write(&f, format!("{base}{extra}")).unwrap();
        GatewayConfig::load(&f)
    }

    #[test]
    fn storage_is_embedded_unless_a_database_is_named() {
        assert_eq!(load("").unwrap().storage, Storage::Embedded);
        assert_eq!(
            load("[storage]\nbackend = \"embedded\"\n").unwrap().storage,
            Storage::Embedded
        );
        let c = load(
            "[storage]\nbackend = \"postgres\"\nurl = \"postgresql://k@db:5432/k\"\n\
             password_file = \"pw\"\nca = \"../ca.pem\"\n",
        )
        .unwrap();
        let Storage::Postgres(p) = c.storage else {
            panic!("postgres expected")
        };
        assert_eq!(p.url, "postgresql://k@db:5432/k");
        assert!(p.password_file.unwrap().ends_with("pw"));
        assert!(p.ca.is_some());
    }

    #[test]
    fn storage_errors_name_their_line() {
        for (bad, line, why) in [
            ("[storage]\nbackend = \"mysql\"\n", 14, "not one of"),
            ("[storage]\nbackend = \"postgres\"\n", 14, "needs a url"),
            (
                "[storage]\nbackend = \"postgres\"\nurl = \"postgresql://k:geheim@db/k\"\n",
                15,
                "password_file",
            ),
            (
                "[storage]\nbackend = \"postgres\"\nurl = \"host=\"\n",
                15,
                "url",
            ),
            (
                "[storage]\nurl = \"postgresql://db/k\"\n",
                14,
                "backend = \"postgres\"",
            ),
            (
                "[storage]\nbackend = \"postgres\"\nuri = \"x\"\n",
                15,
                "unknown field",
            ),
        ] {
            let e = load(bad).unwrap_err();
            assert_eq!(e.at.map(|a| a.0), Some(line), "{e}");
            assert!(e.reason.contains(why), "{e}");
        }
    }
}
