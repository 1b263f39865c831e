//! D in the benchmark: a reverse proxy with ketenpoort's stack and none of
//! its work. Mutual TLS in (rustls, ring), HTTP/1 (hyper), the same pooled
//! back-end client over mutual TLS (hyper-util, hyper-rustls), the body read
//! whole and passed on. No policy, no minimising, no audit record.
//!
//! It answers one question for bench/README.md: how much of the distance
//! between ketenpoort (C) and nginx (B) is the stack, and how much is what
//! ketenpoort does on it.
//!
//! `bare-proxy LISTEN BACKEND CERTS`: serves on LISTEN with
//! CERTS/gateway.{crt,key}, asks CERTS/ca.crt-signed client certificates,
//! and forwards every request to https://BACKEND (`localhost:PORT`, the name
//! in the back-end's certificate) as CERTS/gateway-client.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Backend = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, certs] = &args[..] else {
        anyhow::bail!("usage: bare-proxy LISTEN BACKEND CERTS");
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let file = |n: &str| std::fs::read(format!("{certs}/{n}"));
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&file("ca.crt")?) {
        roots.add(c?)?;
    }
    let roots = Arc::new(roots);
    let chain = |n: &str| -> anyhow::Result<Vec<CertificateDer<'static>>> {
        Ok(CertificateDer::pem_slice_iter(&file(n)?).collect::<Result<_, _>>()?)
    };
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            chain("gateway.crt")?,
            PrivateKeyDer::from_pem_slice(&file("gateway.key")?)?,
        )?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            chain("gateway-client.crt")?,
            PrivateKeyDer::from_pem_slice(&file("gateway-client.key")?)?,
        )?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client)
        .https_only()
        .enable_http1()
        .build();
    let backend: Backend = Client::builder(TokioExecutor::new()).build(connector);
    let base = Arc::<str>::from(format!("https://{upstream}"));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen.as_str()).await?;
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let (acceptor, backend, base) = (acceptor.clone(), backend.clone(), base.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    forward(backend.clone(), base.clone(), req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    })
}

async fn forward(
    backend: Backend,
    base: Arc<str>,
    req: Request<Incoming>,
) -> anyhow::Result<Response<Full<Bytes>>> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let out = Request::get(format!("{base}{path}")).body(Full::new(Bytes::new()))?;
    let answer = backend.request(out).await?;
    let (parts, body) = answer.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}
