//! The gateway's own configuration (`ketenpoort.toml`: where it listens, which
//! certificates it uses, where it keeps data, its limits), and what every
//! config file shares: reading TOML with positions, and errors that name file,
//! line and column.
//!
//! `ketenpoort.toml` is read at start (a change needs a restart: listeners and
//! the data directory cannot move under a running gateway). The partners and
//! pilots files it points to are the policy's ([`crate::policy::partners`],
//! [`crate::policy::load`]) and are reloaded when they change. Relative paths
//! are resolved against the folder of the file that names them, so a config
//! tree can be copied anywhere.
//!
//! Every error names the file, the line and the column, and what is wrong: an
//! administrator editing a file at night should not have to guess.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub mod console;
mod source;
mod tls;

pub use source::{ConfigError, Source, line_col, resolve};
use source::{between, secs};

use tls::RawTls;
pub use tls::TlsFiles;
mod storage;
pub use storage::{Postgres, Storage};

/// Where the gateway looks first when no `--config` is given: a checkout or
/// a folder laid out like one.
pub const DEFAULT_CONFIG: &str = "config/ketenpoort.toml";

/// Where a system install keeps its configuration (the Debian package's
/// `/etc/ketenpoort/`); the default when `./config/ketenpoort.toml` is absent.
pub const SYSTEM_CONFIG: &str = "/etc/ketenpoort/ketenpoort.toml";

/// The configuration file used without `--config`: `./config/ketenpoort.toml`
/// when present, else `/etc/ketenpoort/ketenpoort.toml`, so that an installed
/// binary works from any directory.
pub fn default_config() -> PathBuf {
    let local = Path::new(DEFAULT_CONFIG);
    if local.exists() {
        local.to_path_buf()
    } else {
        PathBuf::from(SYSTEM_CONFIG)
    }
}

// ---------------------------------------------------------------------------
// ketenpoort.toml

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    deployment: Spanned<String>,
    partners: PathBuf,
    #[serde(default)]
    pilots: Option<PathBuf>,
    data_dir: PathBuf,
    listen: RawListen,
    tls: RawTls,
    #[serde(default)]
    pki: Option<RawPki>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    witness: Vec<RawWitness>,
    #[serde(default)]
    witnesses: Option<RawWitnesses>,
    #[serde(default)]
    console: console::RawConsole,
    storage: Option<storage::RawStorage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWitness {
    name: Spanned<String>,
    url: Spanned<String>,
    vkey: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWitnesses {
    #[serde(default)]
    quorum: Option<Spanned<u64>>,
    #[serde(default)]
    fail_closed_after: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    max_body_bytes: Spanned<u64>,
    max_response_bytes: Spanned<u64>,
    backend_timeout_secs: Spanned<u64>,
    mailbox_sweep_secs: Spanned<u64>,
    handshake_timeout_secs: Spanned<u64>,
    idle_timeout_secs: Spanned<u64>,
    max_connection_age_secs: Spanned<u64>,
    max_connections_per_source: Spanned<u64>,
    max_connections_per_partner: Spanned<u64>,
    max_buffered_body_bytes: Spanned<u64>,
    max_subjects_per_answer: Spanned<u64>,
    mailbox_quota_bytes: Spanned<u64>,
    mailbox_total_bytes: Spanned<u64>,
}

impl Default for RawLimits {
    fn default() -> Self {
        let d = Limits::default();
        let s = |v: u64| Spanned::new(0..0, v);
        Self {
            max_body_bytes: s(d.max_body_bytes as u64),
            max_response_bytes: s(d.max_response_bytes as u64),
            backend_timeout_secs: s(d.backend_timeout.as_secs()),
            mailbox_sweep_secs: s(d.mailbox_sweep.as_secs()),
            handshake_timeout_secs: s(d.handshake_timeout.as_secs()),
            idle_timeout_secs: s(d.idle_timeout.as_secs()),
            max_connection_age_secs: s(d.max_connection_age.as_secs()),
            max_connections_per_source: s(d.max_connections_per_source as u64),
            max_connections_per_partner: s(d.max_connections_per_partner as u64),
            max_buffered_body_bytes: s(d.max_buffered_body_bytes as u64),
            max_subjects_per_answer: s(d.max_subjects_per_answer as u64),
            mailbox_quota_bytes: s(d.mailbox_quota_bytes),
            mailbox_total_bytes: s(d.mailbox_total_bytes),
        }
    }
}

/// Limits that keep one partner from hurting the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body a partner may send (413 beyond).
    pub max_body_bytes: usize,
    /// Largest answer read from a back-end (502 beyond).
    pub max_response_bytes: usize,
    /// How long a back-end may take (504 beyond).
    pub backend_timeout: std::time::Duration,
    /// How often expired mailbox documents are swept.
    pub mailbox_sweep: std::time::Duration,
    /// A TLS handshake (or a client that never starts one) gets this long.
    pub handshake_timeout: std::time::Duration,
    /// A connection with no request in flight is closed after this long, so
    /// idle crowds cannot hold the slots partners need.
    pub idle_timeout: std::time::Duration,
    /// Every connection is closed (gracefully) after this long, so a revoked
    /// or expired certificate never rides an old connection for long.
    pub max_connection_age: std::time::Duration,
    /// Open connections from one source address, counted before the handshake.
    pub max_connections_per_source: usize,
    /// Open connections of one partner, counted after the handshake.
    pub max_connections_per_partner: usize,
    /// Request body bytes buffered at once across all connections; beyond it
    /// a request waits its turn (then 503), so many streams each sending most
    /// of a large body cannot exhaust memory.
    pub max_buffered_body_bytes: usize,
    /// Data subjects in one answer; beyond it the answer is refused (502).
    pub max_subjects_per_answer: usize,
    /// Bytes one partner's mailbox may hold (507 beyond).
    pub mailbox_quota_bytes: u64,
    /// Bytes all mailboxes together may hold (507 beyond).
    pub mailbox_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_response_bytes: 8 << 20,
            backend_timeout: std::time::Duration::from_secs(10),
            mailbox_sweep: std::time::Duration::from_secs(60),
            handshake_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(30),
            max_connection_age: std::time::Duration::from_secs(3600),
            max_connections_per_source: 256,
            max_connections_per_partner: 512,
            max_buffered_body_bytes: 64 << 20,
            max_subjects_per_answer: 1000,
            mailbox_quota_bytes: 50 << 20,
            mailbox_total_bytes: 1 << 30,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    partners: Spanned<String>,
    console: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPki {
    dev_dir: PathBuf,
}

/// The gateway's own configuration (`ketenpoort.toml`), paths resolved.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The file this was read from, for messages.
    pub file: PathBuf,
    /// Name of this deployment; the audit log's origin is `ketenpoort/<deployment>`.
    pub deployment: String,
    /// Where `partners.toml` is.
    pub partners_file: PathBuf,
    /// Folder of per-pilot policy files.
    pub pilots_dir: PathBuf,
    /// Folder for the audit log, indexes and mailboxes.
    pub data_dir: PathBuf,
    /// Address of the partner API (mutual TLS).
    pub partners_addr: SocketAddr,
    /// Address of the console (privacy officers, administrators).
    pub console_addr: SocketAddr,
    /// Certificate files and trust settings.
    pub tls: TlsFiles,
    /// Where `pki init` writes the development PKI.
    pub dev_pki_dir: PathBuf,
    /// Request, answer and time limits.
    pub limits: Limits,
    /// The witnesses that cosign the audit log's checkpoints, and how many
    /// cosignatures a checkpoint needs before partners are shown it.
    pub witnesses: Witnesses,
    /// `[console]`: session idle timeout, identity providers.
    pub console: console::ConsoleSettings,
    /// Where the log lives: embedded files or a shared PostgreSQL database.
    pub storage: Storage,
}

/// One `[[witness]]` table: a witness the gateway sends its checkpoints to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessEntry {
    /// The witness's name, as in its verifier key (metrics and logs use it).
    pub name: String,
    /// Its submission prefix (`http://` or `https://`); `add-checkpoint` is
    /// posted below it.
    pub url: String,
    /// Its cosignature/v1 verifier key, checked when the gateway starts
    /// (the module that knows the format is above this one).
    pub vkey: String,
    /// Line and column of `vkey`, for an error about it.
    pub vkey_at: (usize, usize),
}

/// `[[witness]]` and `[witnesses]`: who cosigns, and how many must.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Witnesses {
    /// The witnesses, in the order of the file.
    pub list: Vec<WitnessEntry>,
    /// Cosignatures a checkpoint needs to be published: between 1 and the
    /// number of witnesses (all of them by default); 0 without witnesses.
    pub quorum: usize,
    /// Refuse exchanges when no checkpoint reached the quorum for this long
    /// while newer records exist (off by default).
    pub fail_closed_after: Option<std::time::Duration>,
}

fn parse_addr(src: &Source, v: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
    v.get_ref().parse().map_err(|_| {
        src.error(
            v,
            format!("'{}' is not an address like 127.0.0.1:8443", v.get_ref()),
        )
    })
}

impl RawLimits {
    /// Each limit within its range, checked in the order of [`Limits`].
    fn check(&self, src: &Source) -> Result<Limits, ConfigError> {
        let n = |v: &Spanned<u64>, lo: u64, hi: u64, what: &str| between(src, v, lo, hi, what);
        let s = |v: &Spanned<u64>, lo: u64, hi: u64, what: &str| secs(src, v, lo, hi, what);
        let limits = Limits {
            max_body_bytes: n(&self.max_body_bytes, 1024, 64 << 20, "max_body_bytes")? as usize,
            max_response_bytes: n(
                &self.max_response_bytes,
                1024,
                256 << 20,
                "max_response_bytes",
            )? as usize,
            backend_timeout: s(&self.backend_timeout_secs, 1, 600, "backend_timeout_secs")?,
            mailbox_sweep: s(&self.mailbox_sweep_secs, 1, 86_400, "mailbox_sweep_secs")?,
            handshake_timeout: s(
                &self.handshake_timeout_secs,
                1,
                300,
                "handshake_timeout_secs",
            )?,
            idle_timeout: s(&self.idle_timeout_secs, 1, 3600, "idle_timeout_secs")?,
            max_connection_age: s(
                &self.max_connection_age_secs,
                10,
                7 * 86_400,
                "max_connection_age_secs",
            )?,
            max_connections_per_source: n(
                &self.max_connections_per_source,
                1,
                100_000,
                "max_connections_per_source",
            )? as usize,
            max_connections_per_partner: n(
                &self.max_connections_per_partner,
                1,
                100_000,
                "max_connections_per_partner",
            )? as usize,
            max_buffered_body_bytes: n(
                &self.max_buffered_body_bytes,
                1 << 20,
                16 << 30,
                "max_buffered_body_bytes",
            )? as usize,
            max_subjects_per_answer: n(
                &self.max_subjects_per_answer,
                1,
                1_000_000,
                "max_subjects_per_answer",
            )? as usize,
            mailbox_quota_bytes: n(
                &self.mailbox_quota_bytes,
                1024,
                1 << 40,
                "mailbox_quota_bytes",
            )?,
            mailbox_total_bytes: n(
                &self.mailbox_total_bytes,
                1024,
                1 << 44,
                "mailbox_total_bytes",
            )?,
        };
        // One request body must fit in the shared buffer, or it could never
        // be taken in.
        if limits.max_body_bytes > limits.max_buffered_body_bytes {
            return Err(src.error(
                &self.max_buffered_body_bytes,
                "max_buffered_body_bytes must be at least max_body_bytes",
            ));
        }
        Ok(limits)
    }
}

/// The deployment's name, which becomes part of the audit log's origin.
fn deployment(src: &Source, v: &Spanned<String>) -> Result<String, ConfigError> {
    let deployment = v.get_ref().clone();
    if deployment.is_empty()
        || !deployment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(src.error(
            v,
            "deployment must be letters, digits, '-' or '.' (it names the audit log)",
        ));
    }
    Ok(deployment)
}

impl GatewayConfig {
    /// Reads and checks `ketenpoort.toml`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let src = Source::read(file)?;
        let raw: RawGateway = src.parse()?;
        let dir = src.dir();
        let deployment = deployment(&src, &raw.deployment)?;
        if raw.tls.trust_anchors.get_ref().is_empty() {
            return Err(src.error(
                &raw.tls.trust_anchors,
                "at least one trust anchor is needed",
            ));
        }
        let limits = raw.limits.check(&src)?;
        let witnesses = witnesses(&src, &raw.witness, raw.witnesses.as_ref())?;
        let storage = storage::check(raw.storage.as_ref(), |p| resolve(&dir, p)).map_err(
            |(at, why)| match at {
                Some(offset) => src.error_at(offset, why),
                None => src.error_whole(why),
            },
        )?;
        let r = |p: &Path| resolve(&dir, p);
        Ok(Self {
            limits,
            witnesses,
            storage,
            file: file.to_path_buf(),
            deployment,
            partners_file: r(&raw.partners),
            pilots_dir: r(raw.pilots.as_deref().unwrap_or(Path::new("pilots"))),
            data_dir: r(&raw.data_dir),
            partners_addr: parse_addr(&src, &raw.listen.partners)?,
            console_addr: parse_addr(&src, &raw.listen.console)?,
            tls: raw
                .tls
                .resolve(&src, &dir, &r(&raw.data_dir), &raw.console)?,
            console: raw.console.check(r, |at, why| src.error_at(at, why))?,
            dev_pki_dir: r(raw
                .pki
                .as_ref()
                .map_or(Path::new("../certs/dev"), |p| p.dev_dir.as_path())),
        })
    }
}

/// `[[witness]]` and `[witnesses]`, checked: names unique and usable as
/// note key names, URLs `http://` or `https://` with a host, the quorum
/// within reach.
fn witnesses(
    src: &Source,
    list: &[RawWitness],
    settings: Option<&RawWitnesses>,
) -> Result<Witnesses, ConfigError> {
    let mut out = Vec::with_capacity(list.len());
    for w in list {
        let name = w.name.get_ref();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
            return Err(src.error(
                &w.name,
                "a witness name must be non-empty, without spaces or '+' (as in its vkey)",
            ));
        }
        if out.iter().any(|e: &WitnessEntry| e.name == *name) {
            return Err(src.error(&w.name, format!("witness '{name}' is configured twice")));
        }
        let url = w.url.get_ref();
        let ok = url
            .parse::<hyper::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
            .filter(|u| u.host().is_some_and(|h| !h.is_empty()) && u.query().is_none());
        if ok.is_none() {
            return Err(src.error(
                &w.url,
                format!("'{url}' is not an http:// or https:// URL with a host and no query"),
            ));
        }
        out.push(WitnessEntry {
            name: name.clone(),
            url: url.clone(),
            vkey: w.vkey.get_ref().clone(),
            vkey_at: line_col(&src.text, w.vkey.span().start),
        });
    }
    let quorum = match settings.and_then(|s| s.quorum.as_ref()) {
        None => out.len(),
        Some(q) if out.is_empty() && *q.get_ref() > 0 => {
            return Err(src.error(q, "a quorum needs witnesses: add [[witness]] tables"));
        }
        Some(_) if out.is_empty() => 0,
        Some(q) => between(src, q, 1, out.len() as u64, "quorum")? as usize,
    };
    let fail_closed_after = match settings.and_then(|s| s.fail_closed_after.as_ref()) {
        None => None,
        Some(_) if out.is_empty() => {
            return Err(src.error_whole(
                "fail_closed_after needs witnesses: add [[witness]] tables",
            ));
        }
        Some(v) => Some(duration(v.get_ref()).ok_or_else(|| {
            src.error(
                v,
                "fail_closed_after must be a number with a unit, like \"90s\", \"30m\", \"4h\" or \"1d\"",
            )
        })?),
    };
    Ok(Witnesses {
        list: out,
        quorum,
        fail_closed_after,
    })
}

/// `"90s"`, `"30m"`, `"4h"`, `"1d"` → a duration above zero.
pub fn duration(s: &str) -> Option<std::time::Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(secs).map(std::time::Duration::from_secs)
}

/// A partner id: lowercase letters, digits and dashes, so it is safe in paths and logs.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::storage::tests::load;
    use super::*;

    #[test]
    fn witnesses_are_checked_with_their_place() {
        let c = load("").unwrap();
        assert_eq!(c.witnesses, Witnesses::default());
        let w = |n: &str, url: &str| {
            format!("[[witness]]\nname = \"{n}\"\nurl = \"{url}\"\nvkey = \"v\"\n")
        };
        let two = format!(
            "{}{}",
            w("a", "http://127.0.0.1:1/"),
            w("b", "https://b.example/w")
        );
        let c = load(&two).unwrap();
        assert_eq!(c.witnesses.quorum, 2);
        assert_eq!(c.witnesses.list[1].vkey_at, (20, 8));
        let c = load(&format!(
            "{two}[witnesses]\nquorum = 1\nfail_closed_after = \"4h\"\n"
        ))
        .unwrap();
        assert_eq!(c.witnesses.quorum, 1);
        assert_eq!(
            c.witnesses.fail_closed_after,
            Some(std::time::Duration::from_secs(4 * 3600))
        );
        for (bad, line, why) in [
            (format!("{two}[witnesses]\nquorum = 3\n"), 22, "quorum"),
            (format!("{two}[witnesses]\nquorum = 0\n"), 22, "quorum"),
            (
                format!("{two}[witnesses]\nfail_closed_after = \"4 hours\"\n"),
                22,
                "fail_closed_after",
            ),
            (w("a", "ftp://x/"), 15, "http"),
            (w("a b", "http://x/"), 14, "name"),
            (
                format!("{}{}", w("a", "http://x/"), w("a", "http://y/")),
                18,
                "twice",
            ),
            ("[witnesses]\nquorum = 1\n".to_string(), 14, "witness"),
        ] {
            let e = load(&bad).unwrap_err();
            assert_eq!(e.at.map(|a| a.0), Some(line), "{e}");
            assert!(e.reason.contains(why), "{e}");
        }
        assert_eq!(duration("90s"), Some(std::time::Duration::from_secs(90)));
        for bad in ["", "4", "h", "0s", "-1s", "1.5h", "4H"] {
            assert_eq!(duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a\nbc\nd", 0), (1, 1));
        assert_eq!(line_col("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_col("a\nbc\nd", 5), (3, 1));
    }
}
