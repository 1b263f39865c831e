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

use super::{ConfigError, Source, resolve};

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

/// Checks `[storage]`; absent means embedded.
pub(super) fn check(src: &Source, raw: Option<&RawStorage>) -> Result<Storage, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Storage::Embedded);
    };
    let dir = src.dir();
    let backend = raw.backend.as_ref().map_or("embedded", |b| b.get_ref().as_str());
    match backend {
        "embedded" => {
            if let Some(u) = &raw.url {
                return Err(src.error(u, "url needs backend = \"postgres\""));
            }
            Ok(Storage::Embedded)
        }
        "postgres" => {
            let Some(url) = &raw.url else {
                return Err(match &raw.backend {
                    Some(b) => src.error(b, "backend = \"postgres\" needs a url"),
                    None => src.error_whole("[storage] needs a url"),
                });
            };
            let cfg: Result<tokio_postgres::Config, _> = url.get_ref().parse();
            match cfg {
                Err(e) => Err(src.error(url, format!("not a PostgreSQL connection url: {e}"))),
                Ok(c) if c.get_password().is_some() => Err(src.error(
                    url,
                    "the url holds a password: put it in password_file instead",
                )),
                Ok(_) => Ok(Storage::Postgres(Postgres {
                    url: url.get_ref().clone(),
                    password_file: raw.password_file.as_deref().map(|p| r(&dir, p)),
                    ca: raw.ca.as_deref().map(|p| r(&dir, p)),
                })),
            }
        }
        other => Err(match &raw.backend {
            Some(b) => src.error(
                b,
                format!("backend '{other}' is not one of \"embedded\", \"postgres\""),
            ),
            None => src.error_whole("unknown backend"),
        }),
    }
}

fn r(dir: &Path, p: &Path) -> PathBuf {
    resolve(dir, p)
}
