//! Posting a checkpoint to a witness: `add-checkpoint` of
//! `c2sp.org/tlog-witness` v1.0.0, over `http://` or `https://`.
//!
//! One pooled HTTP/1.1 client for all witnesses. `https://` witnesses are
//! checked against the gateway's trust anchors (no client certificate: a
//! witness authenticates nothing but the log's signature). Every request
//! has a deadline ([`REQUEST_TIMEOUT`]) and every answer a size limit
//! ([`MAX_ANSWER_BYTES`]), so a witness that hangs or babbles costs one
//! task a bounded wait and a bounded buffer.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::{ClientConfig, RootCertStore};

use crate::audit::merkle::Hash;
use crate::config::TlsFiles;
use crate::tls::{TlsError, provider, read_certs};

/// A witness gets this long to answer one `add-checkpoint`, connecting
/// and reading the answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to open a TCP connection to a witness.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read from a witness (cosignature lines are short).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The client all witness requests go through.
#[derive(Clone)]
pub struct WitnessClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for WitnessClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WitnessClient")
    }
}

/// What a witness answered, as far as the protocol cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: its signature lines.
    Cosigned(String),
    /// 409: the size it last cosigned (`None` when the body is not one).
    Conflict(Option<u64>),
    /// Another status.
    Refused(StatusCode),
}

/// Why no answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Connecting, TLS or HTTP failed.
    Unreachable,
    /// No answer within [`REQUEST_TIMEOUT`].
    Timeout,
    /// The answer was larger than [`MAX_ANSWER_BYTES`] or not UTF-8.
    BadAnswer,
}

/// The `add-checkpoint` body: `old N`, the proof lines, an empty line, the
/// checkpoint note.
pub fn request_body(old: u64, proof: &[Hash], note: &str) -> String {
    let mut body = format!("old {old}\n");
    for h in proof {
        body.push_str(&B64.encode(h));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

impl WitnessClient {
    /// A client that trusts the gateway's trust anchors for `https://`
    /// witnesses. Blocking (reads the anchors).
    pub fn new(files: &TlsFiles) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for path in &files.trust_anchors {
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|e| TlsError::File {
                    file: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
        }
        let tls = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(Arc::new(roots))
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let http = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(connector);
        Ok(Self { http })
    }

    /// Posts one `add-checkpoint` body and reads the answer.
    pub async fn add_checkpoint(&self, url: &Uri, body: String) -> Result<Answer, Failure> {
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = url.clone();
        req.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|_| Failure::Unreachable)?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|_| Failure::BadAnswer)?
                .to_bytes();
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| Failure::BadAnswer)?;
            Ok::<_, Failure>(match status {
                StatusCode::OK => Answer::Cosigned(text),
                StatusCode::CONFLICT => Answer::Conflict(
                    text.strip_suffix('\n')
                        .and_then(crate::witness::note::parse_decimal),
                ),
                s => Answer::Refused(s),
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or(Err(Failure::Timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_old_size_proof_lines_blank_line_note() {
        let note = "o\n2\nAAAA\n\n\u{2014} o AAAAAAA=\n";
        assert_eq!(request_body(0, &[], note), format!("old 0\n\n{note}"));
        let b = request_body(1, &[[0u8; 32], [255u8; 32]], note);
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(lines[0], "old 1");
        assert_eq!(B64.decode(lines[2]).unwrap(), [255u8; 32]);
        assert_eq!(lines[3], "");
        assert!(b.ends_with(note));
    }
}
