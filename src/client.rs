//! A partner-side HTTPS client: what a partner's system does to call the
//! gateway. Used by the demo (and handy for integration engineers' tests).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::tls::BackendClient;

/// A partner's connection to the gateway.
#[derive(Clone)]
pub struct PartnerClient {
    client: BackendClient,
    base: String,
}

/// An answer as the partner sees it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl PartnerClient {
    /// A client for `base` (`https://127.0.0.1:8443`) trusting `ca_pem`,
    /// presenting the partner's certificate and key (PEM).
    pub fn new(base: &str, ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem) {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| e.to_string())?;
        let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(Arc::new(roots))
            .with_client_auth_cert(chain, key)
            .map_err(|e| e.to_string())?;
        let connector = crate::backend::CertConnector(
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(cfg)
                .https_only()
                .enable_all_versions()
                .build(),
        );
        Ok(Self {
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build(connector),
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// Sends one request; `body` is sent as JSON.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
                HeaderValue::from_str(v).map_err(|e| e.to_string())?,
            );
        }
        let bytes = match body {
            Some(b) => {
                req = req.header(CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(b).map_err(|e| e.to_string())?)
            }
            None => Bytes::new(),
        };
        self.finish(req, bytes).await
    }

    /// Sends one request with a body of another media type (a JWS as
    /// `application/jose`).
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<Reply, String> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(
                CONTENT_TYPE,
                HeaderValue::from_str(content_type).map_err(|e| e.to_string())?,
            );
        self.finish(req, body).await
    }

    async fn finish(
        &self,
        req: hyper::http::request::Builder,
        bytes: Bytes,
    ) -> Result<Reply, String> {
        let resp = self
            .client
            .request(req.body(Full::new(bytes)).map_err(|e| e.to_string())?)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}
