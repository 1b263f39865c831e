//! CRLs that keep themselves fresh.
//!
//! PKIoverheid publishes its CRLs over HTTP and renews them daily; a file
//! copied by hand fails some night. So the gateway fetches them itself:
//! from `[tls] crl_urls`, from the CRL distribution points of the CAs it
//! trusts, and from those of the chains partners present (learned during
//! the handshake, fetched at once: the first handshake of a partner under
//! a new intermediate fails, the next one is served). Each good CRL is
//! kept on disk (`<data_dir>/crls/`), so a restart does not depend on the
//! publisher being up, and an older CRL never replaces a newer one (a
//! replayed CRL could hide a revocation).
//!
//! A CRL is used until its nextUpdate plus `[tls] crl_grace_hours`; after
//! that it is left out of the partner verifier, and a CA without a usable
//! CRL fails closed ([`Gate`]). The health check fails at nextUpdate
//! already (`console::health`), so operators hear of it in time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use tracing::{info, warn};

use crate::config::TlsFiles;

/// Largest CRL body accepted (PKIoverheid's largest are a few MB).
pub const MAX_CRL_BYTES: usize = 16 << 20;
/// Longest one fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Most URLs learned from partners' chains (a hostile partner must not
/// make the gateway fetch without end).
pub const MAX_LEARNED: usize = 64;

/// CRL URLs learned from chains partners presented, and a wake-up for the
/// refresher when a new one arrives.
#[derive(Debug, Default)]
pub struct Learned {
    urls: Mutex<BTreeSet<String>>,
    /// The intermediates on those verified paths (DER): CAs whose fetched
    /// CRLs must carry their signature.
    issuers: Mutex<Vec<Vec<u8>>>,
    /// Woken when a new URL is learned.
    pub wake: tokio::sync::Notify,
}

impl Learned {
    /// Notes the http distribution points of a verified chain's
    /// certificates on its path (see [`on_path`]); wakes the refresher when
    /// one is new.
    fn learn(&self, leaf: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) {
        // The cheap question first: most handshakes teach nothing new, and
        // only those that might pay for checking the path's signatures.
        {
            let urls = self.urls.lock().unwrap_or_else(|e| e.into_inner());
            let presented = std::iter::once(leaf).chain(intermediates);
            if urls.len() >= MAX_LEARNED
                || presented
                    .flat_map(|c| distribution_points(c))
                    .all(|u| urls.contains(&u))
            {
                return;
            }
        }
        let path = on_path(leaf, intermediates);
        {
            let mut issuers = self.issuers.lock().unwrap_or_else(|e| e.into_inner());
            for c in path.iter().skip(1) {
                if issuers.len() < MAX_LEARNED && !issuers.iter().any(|i| i == c.as_ref()) {
                    issuers.push(c.as_ref().to_vec());
                }
            }
        }
        let mut new = false;
        let mut urls = self.urls.lock().unwrap_or_else(|e| e.into_inner());
        for c in path {
            for u in distribution_points(c) {
                if urls.len() < MAX_LEARNED && urls.insert(u) {
                    new = true;
                }
            }
        }
        drop(urls);
        if new {
            self.wake.notify_one();
        }
    }

    /// The intermediates learned so far (DER).
    pub fn issuers(&self) -> Vec<Vec<u8>> {
        self.issuers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The URLs learned so far.
    pub fn urls(&self) -> Vec<String> {
        let urls = self.urls.lock().unwrap_or_else(|e| e.into_inner());
        urls.iter().cloned().collect()
    }
}

/// The http:// CRL distribution points of a certificate.
pub fn distribution_points(der: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for p in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &p.distribution_point {
                    for n in names {
                        if let GeneralName::URI(u) = n
                            && u.starts_with("http://")
                        {
                            out.push(u.to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

/// The presented certificates on the chain's path: the leaf, then each
/// intermediate whose key signed the certificate before it. A partner may
/// send extra certificates the verifier never uses, made by anyone; one of
/// those must not teach a URL, or its server could answer with a CRL in
/// the name of a real CA, newer than the real one, that does not verify,
/// and every partner under that CA would be refused.
fn on_path<'a>(
    leaf: &'a CertificateDer<'a>,
    intermediates: &'a [CertificateDer<'a>],
) -> Vec<&'a CertificateDer<'a>> {
    let mut out = vec![leaf];
    let Ok((_, mut cur)) = x509_parser::parse_x509_certificate(leaf) else {
        return out;
    };
    let mut left: Vec<_> = intermediates
        .iter()
        .filter_map(|c| Some((c, x509_parser::parse_x509_certificate(c).ok()?.1)))
        .collect();
    while let Some(i) = left.iter().position(|(_, c)| {
        c.subject().as_raw() == cur.issuer().as_raw()
            && cur.verify_signature(Some(c.public_key())).is_ok()
    }) {
        let (der, c) = left.swap_remove(i);
        out.push(der);
        cur = c;
    }
    out
}

/// The certificates of a trust anchor file (errors are reported when the
/// TLS set is built).
fn anchors(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .map(|it| it.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Every URL to fetch: configured, in the trust anchors, learned.
pub fn sources(files: &TlsFiles, learned: &Learned) -> Vec<String> {
    let mut urls: BTreeSet<String> = files.crl_urls.iter().cloned().collect();
    for path in &files.trust_anchors {
        for c in anchors(path) {
            urls.extend(distribution_points(&c));
        }
    }
    urls.extend(learned.urls());
    urls.into_iter().collect()
}

/// The cache file of a URL.
fn cache_file(dir: &Path, url: &str) -> PathBuf {
    dir.join(format!(
        "{}.crl",
        &hex::encode(ring::digest::digest(&ring::digest::SHA256, url.as_bytes()))[..24]
    ))
}

/// A CRL's issuer (DER), thisUpdate and nextUpdate (Unix seconds).
pub fn dates(der: &[u8]) -> Option<(Vec<u8>, i64, Option<i64>)> {
    let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
    Some((
        crl.issuer().as_raw().to_vec(),
        crl.last_update().timestamp(),
        crl.next_update().map(|t| t.timestamp()),
    ))
}

/// The CRL in a body: DER, or the first CRL of a PEM text.
fn parse_body(body: &[u8]) -> Option<Vec<u8>> {
    let der = if body.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::pem_slice_iter(body)
            .next()?
            .ok()?
            .as_ref()
            .to_vec()
    } else {
        body.to_vec()
    };
    dates(&der).map(|_| der)
}

/// GET one URL (http only), at most [`MAX_CRL_BYTES`].
async fn get(url: &str) -> Result<Bytes, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// CRL URLs are fetched".into());
    }
    let host = uri.host().ok_or("no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let fetch = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, &host)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        if resp.status() != hyper::StatusCode::OK {
            return Err(format!("HTTP {}", resp.status()));
        }
        Limited::new(resp.into_body(), MAX_CRL_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// Fetches every source and keeps each CRL that parses and is not older
/// than the one kept; `true` when any kept CRL changed. Failures are
/// logged and leave the kept CRL in place.
pub async fn refresh(files: &TlsFiles, learned: &Learned) -> bool {
    let mut changed = false;
    for url in sources(files, learned) {
        let body = match get(&url).await {
            Ok(b) => b,
            Err(e) => {
                warn!(%url, error = %e, "CRL not fetched; the kept one stays in use");
                continue;
            }
        };
        let Some(der) = parse_body(&body) else {
            warn!(%url, "the answer is no CRL; the kept one stays in use");
            continue;
        };
        let dir = files.crl_cache.clone();
        let url2 = url.clone();
        let anchor_files = files.trust_anchors.clone();
        let issuers = learned.issuers();
        let kept = tokio::task::spawn_blocking(move || {
            let mut cas: Vec<Vec<u8>> = anchor_files
                .iter()
                .flat_map(|p| anchors(p))
                .map(|c| c.as_ref().to_vec())
                .collect();
            cas.extend(issuers);
            keep(&dir, &url2, &der, &cas)
        });
        match kept.await {
            Ok(Ok(true)) => {
                info!(%url, "new CRL fetched");
                changed = true;
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => warn!(%url, error = %e, "CRL not kept"),
            Err(e) => warn!(%url, error = %e, "CRL not kept"),
        }
    }
    changed
}

/// Whether a CRL carries the signature of its issuer, when the issuer is
/// one of `cas` (DER certificates: the trust anchors and the intermediates
/// learned on verified paths); `None` when its issuer is none of them (not
/// yet seen: rustls checks the signature when it uses the CRL).
fn signed_by_issuer(der: &[u8], cas: &[Vec<u8>]) -> Option<bool> {
    let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
    let mut known = false;
    for c in cas {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(c) else {
            continue;
        };
        if cert.subject().as_raw() == crl.issuer().as_raw() {
            known = true;
            if crl.verify_signature(cert.public_key()).is_ok() {
                return Some(true);
            }
        }
    }
    known.then_some(false)
}

/// Keeps a fetched CRL unless the kept one is as new or newer. A CRL in the
/// name of a known CA without that CA's signature is never kept, and never
/// stands in the way of a genuine one: a forged CRL, newer than the real
/// one, would otherwise be "the newest" and every partner under that CA
/// refused (rustls rejects it at use) until someone cleared the cache by
/// hand. Blocking.
fn keep(dir: &Path, url: &str, der: &[u8], cas: &[Vec<u8>]) -> std::io::Result<bool> {
    let file = cache_file(dir, url);
    if signed_by_issuer(der, cas) == Some(false) {
        warn!(%url, "the fetched CRL is not signed by the CA it names; not kept");
        return Ok(false);
    }
    let new = dates(der).map(|d| d.1);
    let old = std::fs::read(&file).ok();
    if old.as_deref() == Some(der) {
        return Ok(false);
    }
    if let Some(old_der) = old.as_deref()
        && signed_by_issuer(old_der, cas) != Some(false)
        && let Some(old) = dates(old_der)
        && new.is_some_and(|n| n < old.1)
    {
        warn!(%url, "the fetched CRL is older than the kept one; kept the newer");
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    crate::datadir::write_atomic(&file.with_extension("url"), url.as_bytes(), 0o600)?;
    crate::datadir::write_atomic(&file, der, 0o600)?;
    Ok(true)
}

/// [`refresh`] from a thread of its own, for the start (which may run
/// inside or outside a runtime). Blocking.
pub fn refresh_blocking(files: &TlsFiles) {
    let files = files.clone();
    let done = std::thread::Builder::new()
        .name("crl-fetch".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    rt.block_on(refresh(&files, &Learned::default()));
                }
                Err(e) => warn!(error = %e, "no runtime to fetch CRLs"),
            }
        });
    if let Ok(h) = done {
        let _ = h.join();
    }
}

/// The fetched CRLs kept on disk: (URL, DER). Blocking.
pub fn read_cache(dir: &Path) -> Vec<(String, CertificateRevocationListDer<'static>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "crl") {
            continue;
        }
        let Ok(der) = std::fs::read(&p) else { continue };
        let name = std::fs::read_to_string(p.with_extension("url"))
            .unwrap_or_else(|_| p.display().to_string());
        out.push((name, CertificateRevocationListDer::from(der)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The partner verifier as the gateway uses it: the WebPKI one, and
/// closed when a CA's CRL ran out past its grace and nothing replaced it
/// (rustls checks nothing at all when it is given no CRL), learning the
/// distribution points of every chain it sees.
#[derive(Debug)]
pub struct Gate {
    /// The WebPKI verifier with the usable CRLs.
    pub inner: Arc<dyn ClientCertVerifier>,
    /// Refuse every certificate: revocation status cannot be known.
    pub closed: bool,
    /// Where learned URLs go.
    pub learned: Arc<Learned>,
}

impl ClientCertVerifier for Gate {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        // Only a chain that verifies up to its revocation status teaches a
        // URL: a stranger's certificate must not make the gateway fetch.
        if matches!(
            verdict,
            Ok(_)
                | Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownRevocationStatus
                ))
        ) {
            self.learned.learn(end_entity, intermediates);
        }
        if self.closed {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownRevocationStatus,
            ));
        }
        verdict
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The CRLs a verifier may use now: per issuer the newest (rustls takes
/// the first that matches), none past nextUpdate + grace. `closed` when a
/// CRL was left out for that reason and no other covers its issuer.
pub fn usable(
    crls: &[(String, CertificateRevocationListDer<'static>)],
    grace: Duration,
    now: i64,
) -> (Vec<CertificateRevocationListDer<'static>>, bool) {
    let mut best: Vec<(Vec<u8>, i64, CertificateRevocationListDer<'static>)> = Vec::new();
    let mut expired: BTreeSet<Vec<u8>> = BTreeSet::new();
    for (name, der) in crls {
        let Some((issuer, this, next)) = dates(der) else {
            continue;
        };
        if next.is_some_and(|n| n + grace.as_secs() as i64 <= now) {
            warn!(crl = %name, "CRL past its nextUpdate and the grace: not used; its CA's partners are refused until a new one arrives");
            expired.insert(issuer);
            continue;
        }
        match best.iter_mut().find(|b| b.0 == issuer) {
            Some(b) if b.1 < this => *b = (issuer, this, der.clone()),
            Some(_) => {}
            None => best.push((issuer, this, der.clone())),
        }
    }
    let closed = expired.iter().any(|i| !best.iter().any(|b| &b.0 == i));
    (best.into_iter().map(|b| b.2).collect(), closed)
}

/// The trust anchors without any CRL source (no CRL loaded for them, no
/// distribution point), by subject; empty when a configured URL has not
/// been fetched yet (its issuer is unknown).
pub fn uncovered(
    files: &TlsFiles,
    crls: &[(String, CertificateRevocationListDer<'static>)],
) -> Vec<String> {
    let cached: BTreeSet<String> = read_cache(&files.crl_cache)
        .into_iter()
        .map(|c| c.0)
        .collect();
    if files.crl_urls.iter().any(|u| !cached.contains(u)) {
        return Vec::new();
    }
    let issuers: BTreeSet<Vec<u8>> = crls
        .iter()
        .filter_map(|c| dates(&c.1))
        .map(|d| d.0)
        .collect();
    let mut out = Vec::new();
    for path in &files.trust_anchors {
        for c in anchors(path) {
            let Ok((_, cert)) = x509_parser::parse_x509_certificate(&c) else {
                continue;
            };
            if !issuers.contains(cert.subject().as_raw()) && distribution_points(&c).is_empty() {
                out.push(format!("{} ({})", cert.subject(), path.display()));
            }
        }
    }
    out
}
