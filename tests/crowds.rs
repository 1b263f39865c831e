//! Crowds and long-lived connections against the running gateway: an idle
//! crowd from another address must not lock partners out, a revoked
//! certificate must not keep its open connection, and HTTP/2 streams that
//! each send most of a large body and wait must not exhaust memory.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fixture::*;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};

/// Opens `n` TCP connections from 127.0.0.2 that never start TLS.
async fn idle_crowd(to: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let s = TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(2), s.connect(to)).await {
            held.push(c);
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_crowd_from_another_address_does_not_lock_partners_out() {
    let f = fixture().await;
    let path = "/v1/pilots/proef/services/dtv/dossier/5550001234";
    let purpose = &[("ketenpoort-purpose", "casusoverleg")];
    let t = Instant::now();
    let r = f
        .gemeente
        .send(Method::GET, path, purpose, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let quiet = t.elapsed();

    let crowd_p = idle_crowd(f.gw.addr, 5000).await;
    let crowd_c = idle_crowd(f.gw.console, 5000).await;
    assert!(
        crowd_p.len() + crowd_c.len() >= 5000,
        "the crowd did not connect"
    );
    // A fresh partner connection (not the pooled one) on both listeners.
    let fresh = f.pki.client(f.gw.addr, &f.pki.oin_cert(GEMEENTE_OIN));
    let t = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        fresh.send(Method::GET, path, purpose, None),
    )
    .await
    .expect("a partner waited more than 2 s behind the crowd")
    .unwrap();
    assert_eq!(r.status, 200);
    let crowded = t.elapsed();
    let t = Instant::now();
    let c = tokio::time::timeout(
        Duration::from_secs(2),
        get(f.gw.console, &f.pki.ca.cert_pem, None, "/healthz"),
    )
    .await
    .expect("the console waited more than 2 s behind the crowd")
    .unwrap();
    assert_eq!(c.status, 200);
    eprintln!(
        "partner request: {quiet:?} without the crowd, {crowded:?} with 5,000 idle connections on each listener; console {:?}",
        t.elapsed()
    );
    drop((crowd_p, crowd_c));
    f.gw.stop().await;
}

/// An HTTP/2 connection of its own to the gateway, as `cert`'s holder.
async fn h2_connection<B>(
    f: &Fixture,
    cert: &ketenpoort::pki::Issued,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<()>,
)
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let cfg = client_config(&f.pki.ca.cert_pem, Some(cert), &[b"h2"]);
    let tcp = TcpStream::connect(f.gw.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, task)
}

fn dossier_request() -> Request<Full<Bytes>> {
    Request::get("https://localhost/v1/pilots/proef/services/dtv/dossier/5550001234")
        .header("ketenpoort-purpose", "casusoverleg")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_loses_its_open_connection() {
    let f = fixture().await;
    let cert = f.pki.oin_cert(GEMEENTE_OIN);
    let (mut send, conn) = h2_connection(&f, &cert).await;
    let r = send.send_request(dossier_request()).await.unwrap();
    assert_eq!(r.status(), 200);

    std::fs::write(
        f.pki.crl_file(),
        f.pki.ca.crl(std::slice::from_ref(&cert.serial)).unwrap(),
    )
    .unwrap();
    f.gw.gateway.reload_tls().await;
    let revoked_at = Instant::now();
    // The very next request is checked against the new CRL, whatever the
    // watcher has done yet: refused, or the connection is already closing.
    // Every request on the open connection from now on is refused or finds
    // it closed; within 2 s it is closed.
    let mut refused = 0;
    while revoked_at.elapsed() < Duration::from_secs(3) && !conn.is_finished() {
        match send.send_request(dossier_request()).await {
            Ok(r) => {
                assert_eq!(r.status(), 403, "a revoked certificate got an answer");
                let body = r.into_body().collect().await.unwrap().to_bytes();
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["type"], "urn:ketenpoort:problem:certificate-revoked");
                refused += 1;
            }
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::timeout(Duration::from_secs(2), conn)
        .await
        .expect("the revoked connection stayed open")
        .unwrap();
    assert!(revoked_at.elapsed() < Duration::from_secs(2) + Duration::from_millis(500));
    if refused > 0 {
        let reasons = f.gw.gateway.metrics.render();
        assert!(reasons.contains("certificate-revoked"), "{reasons}");
    }
    f.gw.stop().await;
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

static CHUNK: [u8; 16 * 1024] = [b' '; 16 * 1024];

/// A request body that sends `limit` bytes of a claimed 1,000,000 and then
/// waits forever: the attacker's half-sent upload. Its chunks are one static
/// buffer, so the test itself holds no memory for them.
struct HalfSent {
    sent: usize,
    limit: usize,
}

impl hyper::body::Body for HalfSent {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.sent >= self.limit {
            return std::task::Poll::Pending;
        }
        self.sent += CHUNK.len();
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(
            &CHUNK,
        )))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_sending_most_of_a_large_body_do_not_exhaust_memory() {
    let f = fixture_with_limits(&[("max_body_bytes", "1048576")]).await;
    let before = rss_kib();
    let cert = f.pki.oin_cert(GEMEENTE_OIN);
    let mut streams = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..6 {
        let (send, conn) = h2_connection::<HalfSent>(&f, &cert).await;
        conns.push(conn);
        for _ in 0..256 {
            let mut send = send.clone();
            streams.push(tokio::spawn(async move {
                let req = Request::post(
                    "https://localhost/v1/pilots/proef/services/dtv/dossier/5550001234",
                )
                .header("ketenpoort-purpose", "casusoverleg")
                .header("content-type", "application/json")
                .header("content-length", "1000000")
                .body(HalfSent {
                    sent: 0,
                    limit: 950_000,
                })
                .unwrap();
                let _ = send.send_request(req).await;
            }));
        }
    }
    let mut peak = before;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(rss_kib());
    }
    // Partners are still served meanwhile.
    let r = f
        .gemeente
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/dossier/5550001234",
            &[("ketenpoort-purpose", "casusoverleg")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let grew = (peak - before) / 1024;
    eprintln!(
        "resident memory: {} MiB before, peak {} MiB (+{grew} MiB)",
        before / 1024,
        peak / 1024
    );
    assert!(grew <= 256, "resident memory grew by {grew} MiB");
    for s in streams {
        s.abort();
    }
    for c in conns {
        c.abort();
    }
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_partner_holds_at_most_its_share_of_connections_and_idle_ones_are_closed() {
    let f = fixture_with_limits(&[
        ("max_connections_per_partner", "2"),
        ("idle_timeout_secs", "1"),
    ])
    .await;
    let cert = f.pki.oin_cert(GEMEENTE_OIN);
    let (mut a, conn_a) = h2_connection(&f, &cert).await;
    let (mut b, _conn_b) = h2_connection(&f, &cert).await;
    for s in [&mut a, &mut b] {
        assert_eq!(
            s.send_request(dossier_request()).await.unwrap().status(),
            200
        );
    }
    // A third connection of the same partner is closed after the handshake.
    let (mut c, conn_c) = h2_connection(&f, &cert).await;
    assert!(
        c.send_request(dossier_request()).await.is_err(),
        "a third connection was served"
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), conn_c).await;
    // Another partner is not affected.
    let r = f
        .ngo_pinned
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/dossier/5550001234",
            &[("ketenpoort-purpose", "casusoverleg")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Idle connections are closed after idle_timeout_secs, which frees the slot.
    tokio::time::timeout(Duration::from_secs(4), conn_a)
        .await
        .expect("an idle connection stayed open")
        .unwrap();
    let (mut d, _conn_d) = h2_connection(&f, &cert).await;
    assert_eq!(
        d.send_request(dossier_request()).await.unwrap().status(),
        200
    );
    f.gw.stop().await;
}
