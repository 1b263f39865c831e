//! Test helpers gathered in one place: a PKI minted per test, a config tree in a
//! temp dir, the real gateway started on port 0, and a partner-side HTTPS client.
#![allow(dead_code)]

pub mod browser;
pub mod disk;
pub mod fixture;
pub mod node;
pub mod oidc;
pub mod pg;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ketenpoort::datadir::write_atomic;
use ketenpoort::gateway::Gateway;
use ketenpoort::pki::{Ca, Issued, LeafSpec};
use ketenpoort::server::{Listeners, run};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// OIN of the test DT&V.
pub const DTV_OIN: &str = "00000099000000201000";
/// KvK of the test NGO with a PKIoverheid private-services certificate.
pub const NGO_KVK: &str = "99000101";

/// A test deployment: CA, certificates and config files in a temp dir.
pub struct TestPki {
    /// Holds everything; removed on drop.
    pub dir: TempDir,
    /// The CA partners and the gateway chain to.
    pub ca: Ca,
    /// Certificate of the pinned NGO (its pin is in partners.toml).
    pub ngo_pinned: Issued,
}

impl TestPki {
    /// Mints a CA and the gateway's certificates, writes partners.toml with an
    /// OIN partner (dtv), a KvK partner (ngo-kvk) and a pinned NGO (ngo-pinned).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = Ca::generate("test CA").unwrap();
        let certs = dir.path().join("certs");
        let config = dir.path().join("config");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::create_dir_all(config.join("pilots")).unwrap();
        let server = ca
            .issue(&LeafSpec::server("gateway", &["localhost", "127.0.0.1"]))
            .unwrap();
        let client = ca.issue(&LeafSpec::client("gateway client")).unwrap();
        let ngo_pinned = ca.issue(&LeafSpec::client("pinned NGO")).unwrap();
        let w = |name: &str, s: &str| write_atomic(&certs.join(name), s.as_bytes(), 0o600).unwrap();
        w("ca.crt", &ca.cert_pem);
        w("gateway.crt", &server.cert_pem);
        w("gateway.key", &server.key_pem);
        w("gateway-client.crt", &client.cert_pem);
        w("gateway-client.key", &client.key_pem);
        w("crl.pem", &ca.crl(&[]).unwrap());
        std::fs::write(
            config.join("ketenpoort.toml"),
            r#"deployment = "test"
partners = "partners.toml"
data_dir = "../data"
[listen]
partners = "127.0.0.1:0"
console = "127.0.0.1:0"
[tls]
cert = "../certs/gateway.crt"
key = "../certs/gateway.key"
trust_anchors = ["../certs/ca.crt"]
crls = ["../certs/crl.pem"]
client_cert = "../certs/gateway-client.crt"
client_key = "../certs/gateway-client.key"
"#,
        )
        .unwrap();
        std::fs::write(
            config.join("partners.toml"),
            format!(
                r#"[[partner]]
id = "dtv"
name = "Dienst Terugkeer en Vertrek"
kind = "chain"
oin = "{DTV_OIN}"

[[partner]]
id = "ngo-kvk"
name = "NGO met PKIoverheid"
kind = "ngo"
kvk = "{NGO_KVK}"

[[partner]]
id = "ngo-pinned"
name = "NGO zonder PKIoverheid"
kind = "ngo"
spki_sha256 = ["{}"]
"#,
                hex::encode(ngo_pinned.spki_sha256)
            ),
        )
        .unwrap();
        Self {
            dir,
            ca,
            ngo_pinned,
        }
    }

    /// Replaces a config file (partners.toml, ketenpoort.toml, pilots/x.toml).
    pub fn write_config(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join("config").join(name), text).unwrap();
    }

    /// A client certificate for a partner known by KvK (organizationIdentifier).
    pub fn kvk_cert(&self, kvk: &str) -> Issued {
        self.ca
            .issue(&LeafSpec {
                organization_identifier: Some(format!("NTRNL-{kvk}")),
                ..LeafSpec::client("Test NGO")
            })
            .unwrap()
    }

    /// A partner-side client of the gateway at `addr` holding `cert`.
    pub fn client(&self, addr: SocketAddr, cert: &Issued) -> ketenpoort::client::PartnerClient {
        ketenpoort::client::PartnerClient::new(
            &format!("https://127.0.0.1:{}", addr.port()),
            self.ca.cert_pem.as_bytes(),
            cert.cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
        )
        .unwrap()
    }

    /// The gateway config file.
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("config/ketenpoort.toml")
    }

    /// The pilots folder of this deployment.
    pub fn pilots_dir(&self) -> PathBuf {
        self.dir.path().join("config/pilots")
    }

    /// The CRL file the gateway reads.
    pub fn crl_file(&self) -> PathBuf {
        self.dir.path().join("certs/crl.pem")
    }

    /// A client certificate like PKIoverheid's for an OIN.
    pub fn oin_cert(&self, oin: &str) -> Issued {
        self.ca
            .issue(&LeafSpec {
                serial_number: Some(oin.into()),
                organization: Some("Test organisation".into()),
                ..LeafSpec::client("Test organisation")
            })
            .unwrap()
    }

    /// Starts the real gateway on port 0, every pilot's covenant signed by
    /// all its partners (as `pki init` does for the shipped pilots).
    pub async fn start(&self) -> TestGateway {
        self.sign_all();
        start_gateway(&self.config_file(), false).await
    }

    /// Starts it without signing anything: no pilot has a covenant in force.
    pub async fn start_unsigned(&self) -> TestGateway {
        start_gateway(&self.config_file(), false).await
    }

    /// Starts it with its admin socket too, as `ketenpoort serve` does.
    pub async fn start_with_admin(&self) -> TestGateway {
        self.sign_all();
        start_gateway(&self.config_file(), true).await
    }

    /// A certificate (with key) of a partner as partners.toml recognises it:
    /// a fresh one for an OIN or KvK number, the pinned NGO's own for its pin.
    pub fn cert_of(&self, partner: &ketenpoort::policy::partners::Partner) -> Option<Issued> {
        if let Some(oin) = &partner.oin {
            return Some(self.oin_cert(oin));
        }
        if let Some(kvk) = &partner.kvk {
            return Some(self.kvk_cert(kvk));
        }
        partner
            .spki_sha256
            .contains(&self.ngo_pinned.spki_sha256)
            .then(|| self.ngo_pinned.clone())
    }

    /// Every partner of every pilot accepts the pilot's covenant as the files
    /// hold it now, with a certificate of its own; the signatures wait in the
    /// data directory's covenant inbox, where the gateway takes them at start
    /// or on its next policy reload. Files that do not load sign nothing.
    pub fn sign_all(&self) {
        use ketenpoort::covenant::{jws, store};
        let Ok(cfg) = ketenpoort::config::GatewayConfig::load(&self.config_file()) else {
            return;
        };
        let Ok(set) = ketenpoort::policy::PolicySet::load(&cfg.partners_file, &cfg.pilots_dir)
        else {
            return;
        };
        for pilot in set.pilots.values() {
            let payload = jws::acceptance(&pilot.id, &pilot.covenant_version);
            for id in &pilot.partners {
                let Some(cert) = set.partners.get(id).and_then(|p| self.cert_of(p)) else {
                    continue;
                };
                let signed = jws::sign_pem(&payload, &cert.cert_pem, &cert.key_pem).unwrap();
                let hex = ketenpoort::policy::terms::version_hex(&pilot.covenant_version);
                let name = format!("{}-{}-{id}", pilot.id, &hex[..12]);
                store::drop_in_inbox(&cfg.data_dir, &name, &signed).unwrap();
            }
        }
    }

    /// The gateway's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// A running gateway; stops on drop of the shutdown sender.
pub struct TestGateway {
    /// Partner API address.
    pub addr: SocketAddr,
    /// Console address.
    pub console: SocketAddr,
    /// The running gateway's shared state.
    pub gateway: Arc<Gateway>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    /// Stops the gateway and waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Loads the config and serves it on fresh ports, as `ketenpoort serve` does.
pub async fn start_gateway(config: &Path, admin: bool) -> TestGateway {
    let gw = Arc::new(Gateway::load(config).expect("config loads"));
    let admin = admin.then(|| {
        tokio::net::UnixListener::bind(ketenpoort::admin::socket_path(&gw.config.data_dir))
            .expect("admin socket")
    });
    let listeners = Listeners {
        partners: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        console: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin,
    };
    let addr = listeners.partners.local_addr().unwrap();
    let console = listeners.console.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listeners, gw.clone(), async {
        let _ = rx.await;
    }));
    TestGateway {
        addr,
        console,
        gateway: gw,
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// A partner-side TLS client config: trusts `ca_pem`, presents `client` if given.
pub fn client_config(
    ca_pem: &str,
    client: Option<&Issued>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(ketenpoort::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match client {
        Some(c) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cfg)
}

/// A response as the test sees it.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Content-Type header.
    pub content_type: String,
    /// Every header.
    pub headers: hyper::HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// One request over a fresh connection, HTTP/1.1 or HTTP/2 as ALPN decides.
/// `Err` holds the TLS or HTTP error when the gateway refuses the connection.
pub async fn request(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    req: Request<Full<Bytes>>,
) -> Result<Reply, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        send.send_request(req).await
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("http1 handshake: {e}"))?;
        tokio::spawn(conn);
        send.send_request(req).await
    }
    .map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let content_type = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Reply {
        status,
        content_type,
        headers,
        body,
    })
}

/// GET a path as the holder of `client`.
pub async fn get(
    addr: SocketAddr,
    ca_pem: &str,
    client: Option<&Issued>,
    path: &str,
) -> Result<Reply, String> {
    let req = Request::get(format!("https://localhost{path}"))
        .header(hyper::header::HOST, "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    request(addr, client_config(ca_pem, client, &[b"http/1.1"]), req).await
}
