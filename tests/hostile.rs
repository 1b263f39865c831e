//! Hostile and broken peers: a slow client, a crowd of idle connections,
//! oversized headers, request smuggling, and certificates replaced while the
//! gateway serves. Each is refused or timed out, and others keep being served.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use common::fixture::*;
use common::*;
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CASUS: &[(&str, &str)] = &[("ketenpoort-purpose", "casusoverleg")];

async fn served(f: &Fixture) -> Duration {
    let started = Instant::now();
    let r = f
        .gemeente
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/dossier/5550001234",
            CASUS,
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    started.elapsed()
}

/// A raw TLS connection as `gemeente`, for writing bytes by hand.
async fn raw(f: &Fixture) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(f.gw.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(client_config(
        &f.pki.ca.cert_pem,
        Some(&f.gemeente_cert),
        &[b"http/1.1"],
    ))
    .connect(
        rustls_pki_types::ServerName::try_from("localhost").unwrap(),
        tcp,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_crowds_and_slow_clients_do_not_starve_others() {
    let f = fixture().await;
    // Two thousand connections that never start TLS.
    let mut idle = Vec::new();
    // (From another address: one source gets max_connections_per_source.)
    for _ in 0..2000 {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(c) = s.connect(f.gw.addr).await {
            idle.push(c);
        }
    }
    // A slowloris: a request head dribbled out a byte at a time.
    let mut slow = raw(&f).await;
    let slow_task = tokio::spawn(async move {
        let head = b"GET /v1/whoami HTTP/1.1\r\nhost: localhost\r\nx-slow: ";
        slow.write_all(head).await.unwrap();
        for _ in 0..40 {
            if slow.write_all(b"a").await.is_err() {
                return true; // the gateway hung up on it
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut buf = [0u8; 256];
        matches!(slow.read(&mut buf).await, Ok(0) | Err(_))
            || String::from_utf8_lossy(&buf).contains("408")
    });
    // Everyone else is served all along, promptly.
    for _ in 0..20 {
        let t = served(&f).await;
        assert!(t < Duration::from_secs(5), "a partner waited {t:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(idle);
    assert!(
        slow_task.await.unwrap(),
        "the slow client was never cut off"
    );
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_and_smuggling_are_refused() {
    let f = fixture().await;
    // Oversized header.
    let mut s = raw(&f).await;
    let big = format!(
        "GET /v1/whoami HTTP/1.1\r\nhost: localhost\r\nx-big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let _ = s.write_all(big.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        out.is_empty() || text.starts_with("HTTP/1.1 431") || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );

    // Content-Length with Transfer-Encoding: refused, nothing smuggled.
    let before = f.seen.lock().unwrap().len();
    let mut s = raw(&f).await;
    let req = "POST /v1/pilots/proef/services/dtv/aanvraag HTTP/1.1\r\nhost: localhost\r\nketenpoort-purpose: casusoverleg\r\ncontent-type: application/json\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/whoami HTTP/1.1\r\nhost: localhost\r\n\r\n";
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        !text.contains("\"id\":\"gemeente\""),
        "a smuggled request was answered: {text}"
    );
    assert_eq!(
        f.seen.lock().unwrap().len(),
        before,
        "the back-end was called"
    );
    served(&f).await;
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_replaced_on_disk_is_used_without_restart() {
    let f = fixture().await;
    let fingerprint = |der: &[u8]| ketenpoort::identity::sha256(der);
    let first = {
        let s = raw(&f).await;
        fingerprint(s.get_ref().1.peer_certificates().unwrap()[0].as_ref())
    };
    let new = f
        .pki
        .ca
        .issue(&ketenpoort::pki::LeafSpec::server(
            "gateway renewed",
            &["localhost", "127.0.0.1"],
        ))
        .unwrap();
    let certs = f.pki.dir.path().join("certs");
    ketenpoort::datadir::write_atomic(&certs.join("gateway.key"), new.key_pem.as_bytes(), 0o600)
        .unwrap();
    ketenpoort::datadir::write_atomic(&certs.join("gateway.crt"), new.cert_pem.as_bytes(), 0o644)
        .unwrap();
    let want = {
        use rustls_pki_types::pem::PemObject;
        fingerprint(
            rustls_pki_types::CertificateDer::from_pem_slice(new.cert_pem.as_bytes())
                .unwrap()
                .as_ref(),
        )
    };
    let mut now = first;
    for _ in 0..100 {
        let s = raw(&f).await;
        now = fingerprint(s.get_ref().1.peer_certificates().unwrap()[0].as_ref());
        if now == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(now, first, "the old certificate is still served");
    assert_eq!(now, want);
    served(&f).await;
    f.gw.stop().await;
}
