//! CRLs that keep themselves fresh: fetched over HTTP from a server the
//! test runs, refreshed without a restart, used until nextUpdate plus the
//! grace and then failing closed; a trusted CA without any CRL source
//! stops the start instead of failing every handshake under it.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ketenpoort::pki::{Ca, Issued, LeafSpec};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use tokio::net::TcpListener;

type Served = Arc<Mutex<HashMap<String, String>>>;

/// A plain HTTP server answering each path with the text put there.
async fn crl_server(served: Served) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = l.accept().await.unwrap();
            let served = served.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let body = served.lock().unwrap().get(req.uri().path()).cloned();
                    async move {
                        Ok::<_, Infallible>(match body {
                            Some(b) => Response::new(Full::new(Bytes::from(b))),
                            None => {
                                let mut r = Response::new(Full::new(Bytes::new()));
                                *r.status_mut() = StatusCode::NOT_FOUND;
                                r
                            }
                        })
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    port
}

/// A partner's client that presents its certificate and the intermediate.
fn chain_client(ca_pem: &str, leaf: &Issued, intermediate: &Ca) -> Arc<rustls::ClientConfig> {
    chain_client_with(ca_pem, leaf, &[intermediate])
}

/// A partner's client that presents its certificate and these CA
/// certificates after it (the path's intermediate, and anything else).
fn chain_client_with(ca_pem: &str, leaf: &Issued, cas: &[&Ca]) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut chain = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
    for ca in cas {
        chain.push(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap());
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(ketenpoort::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            chain,
            PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

async fn whoami(gw: &TestGateway, cfg: &Arc<rustls::ClientConfig>) -> Result<StatusCode, String> {
    let req = Request::get("https://localhost/v1/whoami")
        .header(hyper::header::HOST, "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    request(gw.addr, cfg.clone(), req).await.map(|r| r.status)
}

/// Waits (bounded) until `whoami` answers as `want` says; the last answer.
async fn until(
    gw: &TestGateway,
    cfg: &Arc<rustls::ClientConfig>,
    want: impl Fn(&Result<StatusCode, String>) -> bool,
) -> Result<StatusCode, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = whoami(gw, cfg).await;
        if want(&r) || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn append_tls(pki: &TestPki, lines: &str) {
    // [tls] is the test config's last table.
    let cfg = std::fs::read_to_string(pki.config_file()).unwrap();
    assert!(cfg.trim_end().ends_with("gateway-client.key\""));
    pki.write_config("ketenpoort.toml", &format!("{cfg}{lines}\n"));
}

struct Chain {
    served: Served,
    port: u16,
    intermediate: Ca,
    leaf: Issued,
}

/// An intermediate under the test CA, a DT&V certificate under it naming
/// the intermediate's CRL, that CRL (empty) served.
async fn chain(pki: &TestPki) -> Chain {
    let served: Served = Arc::default();
    let port = crl_server(served.clone()).await;
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let intermediate = pki
        .ca
        .intermediate("test intermediate", &[url("/root.crl")])
        .unwrap();
    let leaf = intermediate
        .issue(&LeafSpec {
            serial_number: Some(DTV_OIN.into()),
            organization: Some("DT&V".into()),
            crl_urls: vec![url("/intermediate.crl")],
            ..LeafSpec::client("DT&V")
        })
        .unwrap();
    served
        .lock()
        .unwrap()
        .insert("/intermediate.crl".into(), intermediate.crl(&[]).unwrap());
    served
        .lock()
        .unwrap()
        .insert("/root.crl".into(), pki.ca.crl(&[]).unwrap());
    Chain {
        served,
        port,
        intermediate,
        leaf,
    }
}

/// [`chain`], with the intermediate's CRL URL configured and fetched every
/// second, the gateway started, and the DT&V client under the intermediate.
async fn refreshing(pki: &TestPki) -> (Chain, TestGateway, Arc<rustls::ClientConfig>) {
    let c = chain(pki).await;
    append_tls(
        pki,
        &format!(
            "crl_urls = [\"http://127.0.0.1:{}/intermediate.crl\"]\ncrl_refresh_secs = 1",
            c.port
        ),
    );
    let gw = pki.start().await;
    let client = chain_client(&pki.ca.cert_pem, &c.leaf, &c.intermediate);
    (c, gw, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_under_a_new_intermediate_is_served_then_refused_after_revocation() {
    let pki = TestPki::new();
    let (c, gw, client) = refreshing(&pki).await;
    assert_eq!(whoami(&gw, &client).await, Ok(StatusCode::OK));
    assert!(
        std::fs::read_dir(pki.data_dir().join("crls"))
            .unwrap()
            .count()
            > 0,
        "the fetched CRL is kept on disk"
    );

    // The partner's certificate goes on the served CRL: refused at the
    // next refresh, without a restart.
    c.served.lock().unwrap().insert(
        "/intermediate.crl".into(),
        c.intermediate
            .crl(std::slice::from_ref(&c.leaf.serial))
            .unwrap(),
    );
    let r = until(&gw, &client, |r| r.is_err()).await;
    assert!(r.is_err(), "still served after the revocation: {r:?}");
    // Only that certificate: another one under the same intermediate is served.
    let other = c
        .intermediate
        .issue(&LeafSpec {
            serial_number: Some(DTV_OIN.into()),
            ..LeafSpec::client("DT&V")
        })
        .unwrap();
    let other = chain_client(&pki.ca.cert_pem, &other, &c.intermediate);
    assert_eq!(whoami(&gw, &other).await, Ok(StatusCode::OK));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distribution_point_in_a_presented_chain_is_learned_and_fetched() {
    let pki = TestPki::new();
    let c = chain(&pki).await;
    append_tls(&pki, "crl_refresh_secs = 3600");
    let gw = pki.start().await;
    let client = chain_client(&pki.ca.cert_pem, &c.leaf, &c.intermediate);
    // The first handshake cannot know the intermediate's revocation status;
    // it names the CRL, which is fetched at once.
    let r = until(&gw, &client, |r| *r == Ok(StatusCode::OK)).await;
    assert_eq!(r, Ok(StatusCode::OK));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_past_next_update_and_the_grace_fails_closed() {
    let pki = TestPki::new();
    let late = OffsetDateTime::now_utc() - time::Duration::hours(2);
    std::fs::write(pki.crl_file(), pki.ca.crl_until(&[], late).unwrap()).unwrap();
    append_tls(&pki, "crl_grace_hours = 1");
    let gw = pki.start().await;
    let dtv = pki.oin_cert(DTV_OIN);
    let r = get(gw.addr, &pki.ca.cert_pem, Some(&dtv), "/v1/whoami").await;
    assert!(r.is_err(), "served on a CRL past its grace: {r:?}");
    gw.stop().await;

    // Within the grace (24 hours by default), exchanges go on.
    let cfg = std::fs::read_to_string(pki.config_file()).unwrap();
    pki.write_config("ketenpoort.toml", &cfg.replace("crl_grace_hours = 1", ""));
    let gw = pki.start().await;
    let r = get(gw.addr, &pki.ca.cert_pem, Some(&dtv), "/v1/whoami").await;
    assert_eq!(r.map(|r| r.status), Ok(StatusCode::OK));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_ca_without_a_crl_source_stops_the_start_by_name() {
    let pki = TestPki::new();
    let other = Ca::generate("CA zonder CRL").unwrap();
    std::fs::write(pki.dir.path().join("certs/other.crt"), &other.cert_pem).unwrap();
    let cfg = std::fs::read_to_string(pki.config_file()).unwrap();
    let two = cfg.replace(
        "trust_anchors = [\"../certs/ca.crt\"]",
        "trust_anchors = [\"../certs/ca.crt\", \"../certs/other.crt\"]",
    );
    assert_ne!(cfg, two);
    pki.write_config("ketenpoort.toml", &two);
    let err = ketenpoort::gateway::Gateway::load(&pki.config_file())
        .err()
        .expect("a CA without CRL source must stop the start")
        .to_string();
    assert!(err.contains("CA zonder CRL"), "{err}");
    assert!(err.contains("allow-unknown"), "{err}");

    append_tls(&pki, "revocation = \"allow-unknown\"");
    let gw = pki.start().await;
    let dtv = pki.oin_cert(DTV_OIN);
    let r = get(gw.addr, &pki.ca.cert_pem, Some(&dtv), "/v1/whoami").await;
    assert_eq!(r.map(|r| r.status), Ok(StatusCode::OK));
    gw.stop().await;
}

/// Attack: a partner adds to its (valid) chain a certificate of its own
/// making that names the real intermediate and a CRL server of its own.
/// The verifier never uses that certificate, but if its distribution point
/// were learned, the server's CRL (in the intermediate's name, newer than
/// the real one, signed by the partner's key) would push out the real CRL,
/// and every partner under the intermediate would be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_off_the_path_teaches_no_crl_url() {
    let pki = TestPki::new();
    let (c, gw, honest) = refreshing(&pki).await;
    assert_eq!(whoami(&gw, &honest).await, Ok(StatusCode::OK));

    let evil_url = format!("http://127.0.0.1:{}/evil.crl", c.port);
    let own_root = Ca::generate("own root").unwrap();
    let fake = own_root
        .intermediate("test intermediate", std::slice::from_ref(&evil_url))
        .unwrap();
    // A second later, so the fake CRL's thisUpdate is the newer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.served
        .lock()
        .unwrap()
        .insert("/evil.crl".into(), fake.crl(&[]).unwrap());
    let hostile = chain_client_with(&pki.ca.cert_pem, &c.leaf, &[&c.intermediate, &fake]);
    assert_eq!(
        whoami(&gw, &hostile).await,
        Ok(StatusCode::OK),
        "the partner's own chain is valid"
    );
    // Several refresh rounds (1 s) pass; a learned URL is fetched at once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let kept: Vec<String> = std::fs::read_dir(pki.data_dir().join("crls"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "url"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        !kept.contains(&evil_url),
        "the URL of a certificate off the path was fetched: {kept:?}"
    );
    assert_eq!(
        whoami(&gw, &honest).await,
        Ok(StatusCode::OK),
        "partners under the intermediate are still served"
    );
    gw.stop().await;
}

/// A hostile CRL server (or a tampered plain-HTTP answer) serves, at a CA's
/// own URL, a CRL in that CA's name but signed by another key, newer than
/// the real one. Kept, it would be "the newest" for that CA and every
/// partner under it refused until someone cleared the cache by hand; it is
/// not kept, and the genuine CRL that follows still takes effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_crl_in_a_known_cas_name_is_not_kept() {
    let pki = TestPki::new();
    let (c, gw, honest) = refreshing(&pki).await;
    assert_eq!(whoami(&gw, &honest).await, Ok(StatusCode::OK));

    let forger = Ca::generate("forger").unwrap();
    let fake = forger.intermediate("test intermediate", &[]).unwrap();
    // A second later, so the forged CRL's thisUpdate is the newer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.served
        .lock()
        .unwrap()
        .insert("/intermediate.crl".into(), fake.crl(&[]).unwrap());
    // Several refresh rounds (1 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        whoami(&gw, &honest).await,
        Ok(StatusCode::OK),
        "a forged CRL shut out the partners under the intermediate"
    );

    // The genuine CA revokes the certificate: that still takes effect.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.served.lock().unwrap().insert(
        "/intermediate.crl".into(),
        c.intermediate
            .crl(std::slice::from_ref(&c.leaf.serial))
            .unwrap(),
    );
    let r = until(&gw, &honest, |r| r.is_err()).await;
    assert!(r.is_err(), "still served after the revocation: {r:?}");
    gw.stop().await;
}
