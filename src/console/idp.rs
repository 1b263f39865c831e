//! The organisations' identity providers as the console keeps them: an
//! HTTPS client each, their discovery documents and keys (cached), and the
//! logins under way, whose state, nonce and PKCE verifier stay here on the
//! server (bounded, expiring, used once). The login flow itself is
//! [`super::oidc`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header;
use hyper::{Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;

use super::jwt::{Jwk, JwkSet};
use crate::config::console::{ConsoleSettings, OidcProvider, acceptable_url};

/// Logins started and not yet back from the provider, at most.
pub const MAX_PENDING: usize = 1024;
/// A login not back from the provider within this time is forgotten.
pub const PENDING_LIFETIME: Duration = Duration::from_secs(600);
/// The discovery document is fetched again after this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// The key set is fetched again for an unknown key id, at most this often.
const JWKS_REFRESH: Duration = Duration::from_secs(60);
/// One request to the provider, connecting and reading included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from the provider.
const MAX_ANSWER: usize = 256 * 1024;

pub(super) type Http = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What the provider's discovery document says (the parts used).
#[derive(Debug, Clone)]
pub(super) struct Discovery {
    pub(super) issuer: String,
    pub(super) authorization_endpoint: String,
    pub(super) token_endpoint: String,
    pub(super) jwks_uri: String,
}

pub(super) struct Provider {
    pub(super) cfg: OidcProvider,
    pub(super) http: Http,
    discovery: tokio::sync::Mutex<Option<(Discovery, Instant)>>,
    keys: tokio::sync::Mutex<Option<(Vec<Jwk>, Instant)>>,
}

pub(super) struct Pending {
    pub(super) provider: usize,
    pub(super) verifier: String,
    pub(super) nonce: String,
    pub(super) redirect_uri: String,
    pub(super) made: Instant,
}

/// The identity providers and the logins under way.
pub struct Oidc {
    pub(super) providers: Vec<Provider>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Oidc({} providers)", self.providers.len())
    }
}

/// Why a login through a provider failed: the word logged and counted.
#[derive(Debug)]
pub(super) struct Failed(pub(super) &'static str, pub(super) String);

fn http_client(ca: &[PathBuf]) -> Result<Http, String> {
    let mut roots = RootCertStore::empty();
    for path in ca {
        for cert in crate::tls::read_certs(path).map_err(|e| e.to_string())? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let tls = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(REQUEST_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(2)
        .build(connector))
}

/// A JSON answer of the provider, bounded in time and size.
pub(super) async fn fetch_json(http: &Http, req: Request<Full<Bytes>>) -> Result<Value, Failed> {
    let what = req.uri().path().to_string();
    let exchange = async {
        let resp = http
            .request(req)
            .await
            .map_err(|e| Failed("provider-unreachable", e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|_| Failed("provider-bad-answer", format!("{what}: too large")))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(Failed("provider-refused", format!("{what}: {status}")));
        }
        serde_json::from_slice(&body)
            .map_err(|_| Failed("provider-bad-answer", format!("{what}: not JSON")))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| Failed("provider-unreachable", format!("{what}: timed out")))?
}

fn get(url: &str) -> Result<Request<Full<Bytes>>, Failed> {
    Request::get(url)
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|_| Failed("provider-bad-answer", format!("not a URL: {url}")))
}

impl Provider {
    pub(super) async fn discovery(&self) -> Result<Discovery, Failed> {
        let mut cached = self.discovery.lock().await;
        if let Some((d, at)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(d.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.cfg.issuer);
        let v = fetch_json(&self.http, get(&url)?).await?;
        let field = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|u| k == "issuer" || acceptable_url(u))
                .map(str::to_string)
                .ok_or_else(|| Failed("provider-bad-answer", format!("discovery: no usable {k}")))
        };
        let d = Discovery {
            issuer: field("issuer")?,
            authorization_endpoint: field("authorization_endpoint")?,
            token_endpoint: field("token_endpoint")?,
            jwks_uri: field("jwks_uri")?,
        };
        // A document for another issuer is another provider's.
        if d.issuer.trim_end_matches('/') != self.cfg.issuer {
            return Err(Failed(
                "provider-bad-answer",
                "discovery names another issuer".into(),
            ));
        }
        *cached = Some((d.clone(), Instant::now()));
        Ok(d)
    }

    /// The provider's keys; fetched again when a token names a key id not
    /// among them (the provider rolled its keys), at most once a minute.
    pub(super) async fn keys(&self, d: &Discovery, kid: Option<&str>) -> Result<Vec<Jwk>, Failed> {
        let mut cached = self.keys.lock().await;
        if let Some((keys, at)) = cached.as_ref() {
            let known = kid.is_none_or(|k| keys.iter().any(|j| j.kid.as_deref() == Some(k)));
            if known || at.elapsed() < JWKS_REFRESH {
                return Ok(keys.clone());
            }
        }
        let v = fetch_json(&self.http, get(&d.jwks_uri)?).await?;
        let set: JwkSet = serde_json::from_value(v)
            .map_err(|_| Failed("provider-bad-answer", "jwks: not a key set".into()))?;
        *cached = Some((set.keys.clone(), Instant::now()));
        Ok(set.keys)
    }
}

impl Oidc {
    /// The providers of `[[console.oidc]]`, each with an HTTPS client that
    /// trusts its `ca` or else the trust anchors. Blocking (reads CA files).
    pub fn new(settings: &ConsoleSettings, trust_anchors: &[PathBuf]) -> Result<Self, String> {
        let mut providers = Vec::new();
        for cfg in &settings.oidc {
            let ca = match &cfg.ca {
                Some(f) => vec![f.clone()],
                None => trust_anchors.to_vec(),
            };
            providers.push(Provider {
                http: http_client(&ca)
                    .map_err(|e| format!("[[console.oidc]] {}: {e}", cfg.name))?,
                cfg: cfg.clone(),
                discovery: tokio::sync::Mutex::new(None),
                keys: tokio::sync::Mutex::new(None),
            });
        }
        Ok(Self {
            providers,
            pending: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn remember(&self, state: String, p: Pending) {
        let mut t = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        t.retain(|_, p| p.made.elapsed() < PENDING_LIFETIME);
        if t.len() >= MAX_PENDING
            && let Some(oldest) = t.iter().min_by_key(|(_, p)| p.made).map(|(k, _)| k.clone())
        {
            t.remove(&oldest);
        }
        t.insert(state, p);
    }

    pub(super) fn take(&self, state: &str) -> Option<Pending> {
        let mut t = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        t.remove(state)
            .filter(|p| p.made.elapsed() < PENDING_LIFETIME)
    }

    /// Logins under way (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
