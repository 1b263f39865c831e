//! rustls configurations, built with the ring provider only, and their reload.
//!
//! Three configs come from the same files: the partner listener (client
//! certificate required, chain checked against the trust anchors, CRLs checked),
//! the console listener (a personal client certificate asked for but not
//! required: people log in with it, with a token or a one-time link) and
//! the client config used to call back-ends (the gateway's own client certificate,
//! back-end certificates checked against the same anchors).
//!
//! A CRL or certificate replaced on disk must take effect without a restart, so
//! the configs live behind [`TlsStore`], which builds a complete new set and swaps
//! it in whole; a set that fails to build leaves the running one in place.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file is missing, unreadable or holds nothing usable.
    #[error("{file}: {reason}")]
    File {
        /// The file.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the combination (key does not match certificate...).
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// A certificate verifier could not be built (a bad CRL, no trust anchor).
    #[error(transparent)]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// Trusted CAs whose revocation status nothing tells.
    #[error(
        "no CRL source for the trusted CA {0}: add its CRL file to [tls] crls, its CRL URL to [tls] crl_urls, or set [tls] revocation = \"allow-unknown\" (every partner under it would be refused)"
    )]
    NoCrlSource(String),
}

fn file_err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        file: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The one crypto provider of ketenpoort.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate in file"));
    }
    Ok(certs)
}

/// Reads the private key of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, e))
}

fn read_roots(files: &TlsFiles) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for path in &files.trust_anchors {
        for cert in read_certs(path)? {
            roots.add(cert).map_err(|e| file_err(path, e))?;
        }
    }
    Ok(Arc::new(roots))
}

/// What health checks and metrics need to know of the files one set was
/// built from: when each CRL must be renewed, when the gateway's own
/// certificates are valid. Read once per build (start and every reload).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validity {
    /// Every CRL loaded: its file and its nextUpdate (Unix seconds), `None`
    /// for a CRL without one.
    pub crls: Vec<(String, Option<i64>)>,
    /// The gateway's own certificates (the server certificate, then the
    /// client certificate for back-ends): what, notBefore and notAfter
    /// (Unix seconds).
    pub own: Vec<(&'static str, i64, i64)>,
}

impl Validity {
    /// Reads the dates out of the DER a set was built from.
    fn read(
        crls: &[(String, CertificateRevocationListDer<'static>)],
        server: &CertificateDer<'static>,
        client: &CertificateDer<'static>,
        files: &TlsFiles,
    ) -> Result<Self, TlsError> {
        let mut out = Self::default();
        for (file, der) in crls {
            let (_, crl) = x509_parser::parse_x509_crl(der)
                .map_err(|e| file_err(Path::new(file), format!("CRL: {e}")))?;
            out.crls
                .push((file.clone(), crl.next_update().map(|t| t.timestamp())));
        }
        for (what, der, file) in [
            ("server", server, &files.cert),
            ("client", client, &files.client_cert),
        ] {
            let (_, cert) = x509_parser::parse_x509_certificate(der)
                .map_err(|e| file_err(file, format!("certificate: {e}")))?;
            let v = cert.validity();
            out.own
                .push((what, v.not_before.timestamp(), v.not_after.timestamp()));
        }
        Ok(out)
    }
}

fn read_crls(
    files: &TlsFiles,
) -> Result<Vec<(String, CertificateRevocationListDer<'static>)>, TlsError> {
    let mut crls = Vec::new();
    for path in &files.crls {
        let found = CertificateRevocationListDer::pem_file_iter(path)
            .map_err(|e| file_err(path, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_err(path, e))?;
        if found.is_empty() {
            return Err(file_err(path, "no CRL in file"));
        }
        let file = path.display().to_string();
        crls.extend(found.into_iter().map(|c| (file.clone(), c)));
    }
    Ok(crls)
}

/// The console's check of a personal certificate: asked for, not required
/// (a browser without one still reaches the login page), and when one is
/// presented it must chain to `[console] client_ca` (with its own CRLs) or
/// else to the trust anchors (with theirs). Which user it is, if any, the
/// console decides from the users file.
fn console_verifier(
    files: &TlsFiles,
    anchors: &Arc<RootCertStore>,
    anchor_crls: &[CertificateRevocationListDer<'static>],
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let (roots, crls) = match &files.console_client_ca {
        None => (anchors.clone(), anchor_crls.to_vec()),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|e| file_err(path, e))?;
            }
            let mut crls = Vec::new();
            for path in &files.console_crls {
                for crl in CertificateRevocationListDer::pem_file_iter(path)
                    .map_err(|e| file_err(path, e))?
                {
                    crls.push(crl.map_err(|e| file_err(path, e))?);
                }
            }
            (Arc::new(roots), crls)
        }
    };
    Ok(
        WebPkiClientVerifier::builder_with_provider(roots, provider())
            .with_crls(crls)
            .allow_unauthenticated()
            .build()?,
    )
}

/// ALPN: HTTP/2 preferred, HTTP/1.1 for simple clients (curl, scripts).
fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

/// The HTTPS client that calls back-ends: pooled connections, mutual TLS,
/// the back-end's certificate fingerprint in each response's extensions.
pub type BackendClient = hyper_util::client::legacy::Client<
    crate::backend::CertConnector,
    http_body_util::Full<bytes::Bytes>,
>;

/// One complete, consistent set of TLS configs built from the files at one moment.
pub struct TlsSet {
    /// Partner listener: mutual TLS.
    pub partners: Arc<ServerConfig>,
    /// The partner listener's certificate check, kept to check the
    /// certificates of connections already open again after a reload (a
    /// revoked partner must not keep an old connection).
    pub partner_verifier: Arc<dyn ClientCertVerifier>,
    /// Console listener: a personal client certificate optional.
    pub console: Arc<ServerConfig>,
    /// The console's certificate check, kept to check a certificate
    /// session's certificate again on each request (a revoked card must
    /// not keep its session).
    pub console_verifier: Arc<dyn ClientCertVerifier>,
    /// Calls to back-ends: the gateway's client certificate.
    pub backend_client: Arc<ClientConfig>,
    /// The pooled HTTPS client built on `backend_client`.
    pub backends: BackendClient,
    /// CRL and own-certificate dates, for health and metrics.
    pub validity: Validity,
}

impl TlsSet {
    /// Builds all configs from the files as they are now. Blocking file I/O: call
    /// it at start or from a blocking thread.
    pub fn build(files: &TlsFiles) -> Result<Self, TlsError> {
        Self::build_learning(files, &Arc::default())
    }

    /// [`TlsSet::build`], the partner verifier noting the CRL distribution
    /// points of the chains it sees in `learned`.
    pub fn build_learning(
        files: &TlsFiles,
        learned: &Arc<crate::crl::Learned>,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let roots = read_roots(files)?;
        let mut named_crls = read_crls(files)?;
        named_crls.extend(crate::crl::read_cache(&files.crl_cache));
        let now = rustls_pki_types::UnixTime::now().as_secs() as i64;
        let (crls, closed) = crate::crl::usable(&named_crls, files.crl_grace, now);
        let server_chain = read_certs(&files.cert)?;
        // read_certs never hands back an empty chain.
        let server_leaf = server_chain[0].clone();
        let server_key = read_key(&files.key)?;

        // Revocation status must be known for every certificate in the chain:
        // a CA without a CRL fails closed rather than letting a revoked
        // certificate through.
        let mut builder =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .with_crls(crls.clone());
        if files.allow_unknown_revocation {
            builder = builder.allow_unknown_revocation_status();
        }
        let verifier: Arc<dyn ClientCertVerifier> = Arc::new(crate::crl::Gate {
            inner: builder.build()?,
            closed: closed && !files.allow_unknown_revocation,
            learned: learned.clone(),
        });
        let mut partners = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(server_chain.clone(), server_key.clone_key())?;
        partners.alpn_protocols = alpn();

        let console_verifier = console_verifier(files, &roots, &crls)?;
        let mut console = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(console_verifier.clone())
            .with_single_cert(server_chain, server_key)?;
        console.alpn_protocols = alpn();

        let client_chain = read_certs(&files.client_cert)?;
        let client_key = read_key(&files.client_key)?;
        let validity = Validity::read(&named_crls, &server_leaf, &client_chain[0], files)?;
        // Back-ends are held to the same CRLs as partners: a revoked back-end
        // must not receive a V-nummer.
        let mut backend_builder =
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).with_crls(crls);
        if files.allow_unknown_revocation {
            backend_builder = backend_builder.allow_unknown_revocation_status();
        }
        let backend_verifier = backend_builder.build()?;
        // ALPN for back-ends is set by the HTTPS connector (hyper-rustls).
        let backend_client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_webpki_verifier(backend_verifier)
            .with_client_auth_cert(client_chain, client_key)?;

        let connector = crate::backend::CertConnector(
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(backend_client.clone())
                .https_only()
                .enable_all_versions()
                .build(),
        );
        let backends =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(std::time::Duration::from_secs(30))
                .build(connector);
        Ok(Self {
            partners: Arc::new(partners),
            partner_verifier: verifier,
            console: Arc::new(console),
            console_verifier,
            backend_client: Arc::new(backend_client),
            backends,
            validity,
        })
    }
}

/// The current TLS set, swappable while connections are served.
///
/// Each new connection takes the set current at its start; connections already
/// open keep theirs. A new set also brings a new session cache, so a session
/// made before a revocation cannot be resumed after it.
pub struct TlsStore {
    files: TlsFiles,
    /// CRL URLs learned from partners' chains, kept across sets.
    learned: Arc<crate::crl::Learned>,
    /// The set for new connections; its generation tells open connections
    /// to check their certificate again against the new CRLs.
    current: crate::swap::Swap<TlsSet>,
}

impl TlsStore {
    /// Builds the first set; failure here stops the gateway before it listens.
    pub fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let learned = Arc::default();
        let set = TlsSet::build_learning(&files, &learned)?;
        let mut named = read_crls(&files)?;
        named.extend(crate::crl::read_cache(&files.crl_cache));
        let uncovered = crate::crl::uncovered(&files, &named);
        if !uncovered.is_empty() {
            if !files.allow_unknown_revocation {
                return Err(TlsError::NoCrlSource(uncovered.join(", ")));
            }
            for ca in &uncovered {
                tracing::warn!(%ca, "no CRL source for this trusted CA: its partners' revocation is not checked (revocation = \"allow-unknown\")");
            }
        }
        Ok(Self {
            learned,
            files,
            current: crate::swap::Swap::new(set),
        })
    }

    /// The files this store is built from (for the watcher).
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The set to use for a new connection.
    pub fn current(&self) -> Arc<TlsSet> {
        self.current.get()
    }

    /// Re-reads the files; swaps only when the whole new set builds. Blocking.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current
            .replace_with(|| TlsSet::build_learning(&self.files, &self.learned))
    }

    /// CRL URLs learned from partners' chains (the refresher fetches them).
    pub fn learned(&self) -> &Arc<crate::crl::Learned> {
        &self.learned
    }

    /// The number of sets swapped in since start.
    pub fn generation(&self) -> u64 {
        self.current.generation()
    }

    /// Changes when a new set is swapped in.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.current.subscribe()
    }

    /// Whether a personal certificate chain, accepted when its console
    /// connection began, still verifies now under the current set.
    pub fn console_still_valid(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some((leaf, rest)) = chain.split_first() else {
            return false;
        };
        let now = rustls_pki_types::UnixTime::now();
        self.current()
            .console_verifier
            .verify_client_cert(leaf, rest, now)
            .is_ok()
    }

    /// Whether a partner's certificate chain, accepted when its connection
    /// began, still verifies now (not revoked, not expired) under the current
    /// set.
    pub fn still_valid(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some((leaf, rest)) = chain.split_first() else {
            return false;
        };
        let now = rustls_pki_types::UnixTime::now();
        self.current()
            .partner_verifier
            .verify_client_cert(leaf, rest, now)
            .is_ok()
    }
}
