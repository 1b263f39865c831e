//! The `[tls]` table: the gateway's certificates, the trust anchors and
//! their revocation lists (files, fetched URLs, how fresh they must be),
//! and the console's client CA. Apart from `config.rs` so that each file
//! stays readable; the table is read with the rest of `ketenpoort.toml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::console;
use super::source::{ConfigError, Source, between, resolve};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    pub(super) trust_anchors: Spanned<Vec<PathBuf>>,
    #[serde(default)]
    crls: Vec<PathBuf>,
    client_cert: PathBuf,
    client_key: PathBuf,
    #[serde(default)]
    crl_urls: Vec<Spanned<String>>,
    crl_refresh_secs: Option<Spanned<u64>>,
    crl_grace_hours: Option<Spanned<u64>>,
    revocation: Option<Spanned<String>>,
}

/// The certificate files the gateway reads, and reads again on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The gateway's server certificate chain (PEM).
    pub cert: PathBuf,
    /// The key of the server certificate (PEM, PKCS#8 or SEC1).
    pub key: PathBuf,
    /// CA certificates that partner and back-end certificates must chain to.
    pub trust_anchors: Vec<PathBuf>,
    /// Certificate revocation lists (PEM) for those CAs.
    pub crls: Vec<PathBuf>,
    /// The gateway's client certificate, presented to back-ends.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// CRLs to fetch over HTTP besides the distribution points of the
    /// trusted CAs and of the chains partners present.
    pub crl_urls: Vec<String>,
    /// How often fetched CRLs are fetched again (`crl_refresh_secs`).
    pub crl_refresh: std::time::Duration,
    /// How long past its nextUpdate a CRL is still used (`crl_grace_hours`).
    pub crl_grace: std::time::Duration,
    /// `revocation = "allow-unknown"`: a certificate whose CA has no CRL is
    /// accepted (default: refused, and a trusted CA without any CRL
    /// source stops the start).
    pub allow_unknown_revocation: bool,
    /// Where fetched CRLs are kept (`<data_dir>/crls`).
    pub crl_cache: PathBuf,
    /// The CA personal certificates on the console must chain to
    /// (`[console] client_ca`); `None`: the trust anchors, with their CRLs.
    pub console_client_ca: Option<PathBuf>,
    /// CRLs of `console_client_ca` (`[console] client_crls`).
    pub console_crls: Vec<PathBuf>,
}

impl TlsFiles {
    /// Every file the TLS set-up depends on: a change to any means a reload.
    pub fn all(&self) -> Vec<PathBuf> {
        let mut v = vec![self.cert.clone(), self.key.clone()];
        v.extend(self.trust_anchors.iter().cloned());
        v.extend(self.crls.iter().cloned());
        v.push(self.client_cert.clone());
        v.push(self.client_key.clone());
        v.extend(self.console_client_ca.iter().cloned());
        v.extend(self.console_crls.iter().cloned());
        v
    }
}

impl RawTls {
    pub(super) fn resolve(
        &self,
        src: &Source,
        dir: &Path,
        data_dir: &Path,
        console: &console::RawConsole,
    ) -> Result<TlsFiles, ConfigError> {
        let r = |p: &PathBuf| resolve(dir, p);
        for u in &self.crl_urls {
            if !u.get_ref().starts_with("http://") || u.get_ref().len() <= "http://".len() {
                return Err(src.error(
                    u,
                    "a CRL URL is http://host/path (CRLs are signed; https is not needed)",
                ));
            }
        }
        let allow_unknown_revocation = match &self.revocation {
            None => false,
            Some(v) if v.get_ref() == "require" => false,
            Some(v) if v.get_ref() == "allow-unknown" => true,
            Some(v) => return Err(src.error(v, "revocation is \"require\" or \"allow-unknown\"")),
        };
        let refresh = match &self.crl_refresh_secs {
            Some(v) => between(src, v, 1, 86_400, "crl_refresh_secs")?,
            None => 3600,
        };
        let grace = match &self.crl_grace_hours {
            Some(v) => between(src, v, 0, 24 * 30, "crl_grace_hours")?,
            None => 24,
        };
        Ok(TlsFiles {
            crl_urls: self.crl_urls.iter().map(|u| u.get_ref().clone()).collect(),
            crl_refresh: std::time::Duration::from_secs(refresh),
            crl_grace: std::time::Duration::from_secs(grace * 3600),
            allow_unknown_revocation,
            crl_cache: data_dir.join("crls"),
            console_client_ca: console.client_ca.as_ref().map(r),
            console_crls: console.client_crls.iter().map(r).collect(),
            cert: r(&self.cert),
            key: r(&self.key),
            trust_anchors: self.trust_anchors.get_ref().iter().map(r).collect(),
            crls: self.crls.iter().map(r).collect(),
            client_cert: r(&self.client_cert),
            client_key: r(&self.client_key),
        })
    }
}
