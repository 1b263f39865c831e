//! Who is calling: every way a client certificate is accepted or refused, over
//! real TLS against the real gateway.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use ketenpoort::datadir::write_atomic;
use ketenpoort::pki::{Ca, LeafSpec};
use time::OffsetDateTime;

/// After a refusal the gateway must still serve a good partner.
async fn still_serves(pki: &TestPki, gw: &TestGateway) {
    let dtv = pki.oin_cert(DTV_OIN);
    let r = get(gw.addr, &pki.ca.cert_pem, Some(&dtv), "/v1/whoami")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

async fn assert_refused(pki: &TestPki, gw: &TestGateway, client: Option<&ketenpoort::pki::Issued>) {
    let r = get(gw.addr, &pki.ca.cert_pem, client, "/v1/whoami").await;
    assert!(r.is_err(), "expected a TLS refusal, got {r:?}");
    still_serves(pki, gw).await;
}

#[tokio::test]
async fn oin_partner_is_recognised() {
    let pki = TestPki::new();
    let gw = pki.start().await;
    let dtv = pki.oin_cert(DTV_OIN);
    let r = get(gw.addr, &pki.ca.cert_pem, Some(&dtv), "/v1/whoami")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["id"], "dtv");
    assert_eq!(j["kind"], "chain");
    assert_eq!(j["name"], "Dienst Terugkeer en Vertrek");
    gw.stop().await;
}

#[tokio::test]
async fn pinned_ngo_is_recognised() {
    let pki = TestPki::new();
    let gw = pki.start().await;
    let r = get(
        gw.addr,
        &pki.ca.cert_pem,
        Some(&pki.ngo_pinned),
        "/v1/whoami",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], "ngo-pinned");
    // Same CA, same subject, other key: the pin does not match.
    let other = pki.ca.issue(&LeafSpec::client("pinned NGO")).unwrap();
    let r = get(gw.addr, &pki.ca.cert_pem, Some(&other), "/v1/whoami")
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    gw.stop().await;
}

#[tokio::test]
async fn kvk_ngo_is_recognised_by_organization_identifier_and_hrn() {
    let pki = TestPki::new();
    let gw = pki.start().await;
    let g4 = pki
        .ca
        .issue(&LeafSpec {
            organization_identifier: Some(format!("NTRNL-{NGO_KVK}")),
            ..LeafSpec::client("NGO")
        })
        .unwrap();
    let r = get(gw.addr, &pki.ca.cert_pem, Some(&g4), "/v1/whoami")
        .await
        .unwrap();
    assert_eq!(r.json()["id"], "ngo-kvk");
    let hrn = pki.oin_cert(&format!("00000003{NGO_KVK}0000"));
    let r = get(gw.addr, &pki.ca.cert_pem, Some(&hrn), "/v1/whoami")
        .await
        .unwrap();
    assert_eq!(r.json()["id"], "ngo-kvk");
    gw.stop().await;
}

#[tokio::test]
async fn http2_is_offered_by_alpn() {
    let pki = TestPki::new();
    let gw = pki.start().await;
    let dtv = pki.oin_cert(DTV_OIN);
    let req = hyper::Request::get("https://localhost/v1/whoami")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = request(
        gw.addr,
        client_config(&pki.ca.cert_pem, Some(&dtv), &[b"h2"]),
        req,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], "dtv");
    gw.stop().await;
}

#[tokio::test]
async fn no_client_certificate_is_refused() {
    let pki = TestPki::new();
    let gw = pki.start().await;
    assert_refused(&pki, &gw, None).await;
    gw.stop().await;
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let pki = TestPki::new();
    let gw = pki.start().await;
    let other_ca = Ca::generate("someone else's CA").unwrap();
    let cert = other_ca
        .issue(&LeafSpec {
            serial_number: Some(DTV_OIN.into()),
            ..LeafSpec::client("fake DT&V")
        })
        .unwrap();
    assert_refused(&pki, &gw, Some(&cert)).await;
    gw.stop().await;
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let pki = TestPki::new();
    let gw = pki.start().await;
    let now = OffsetDateTime::now_utc();
    let cert = pki
        .ca
        .issue(&LeafSpec {
            serial_number: Some(DTV_OIN.into()),
            not_before: now - time::Duration::days(30),
            not_after: now - time::Duration::days(1),
            ..LeafSpec::client("DT&V")
        })
        .unwrap();
    assert_refused(&pki, &gw, Some(&cert)).await;
    gw.stop().await;
}

#[tokio::test]
async fn not_yet_valid_certificate_is_refused() {
    let pki = TestPki::new();
    let gw = pki.start().await;
    let now = OffsetDateTime::now_utc();
    let cert = pki
        .ca
        .issue(&LeafSpec {
            serial_number: Some(DTV_OIN.into()),
            not_before: now + time::Duration::days(1),
            not_after: now + time::Duration::days(30),
            ..LeafSpec::client("DT&V")
        })
        .unwrap();
    assert_refused(&pki, &gw, Some(&cert)).await;
    gw.stop().await;
}

#[tokio::test]
async fn server_certificate_used_as_client_is_refused() {
    let pki = TestPki::new();
    let gw = pki.start().await;
    let cert = pki
        .ca
        .issue(&LeafSpec {
            serial_number: Some(DTV_OIN.into()),
            ..LeafSpec::server("dtv.example", &["dtv.example"])
        })
        .unwrap();
    assert_refused(&pki, &gw, Some(&cert)).await;
    gw.stop().await;
}

#[tokio::test]
async fn revoked_certificate_is_refused() {
    let pki = TestPki::new();
    let dtv = pki.oin_cert(DTV_OIN);
    write_atomic(
        &pki.crl_file(),
        pki.ca
            .crl(std::slice::from_ref(&dtv.serial))
            .unwrap()
            .as_bytes(),
        0o644,
    )
    .unwrap();
    let gw = pki.start().await;
    let r = get(gw.addr, &pki.ca.cert_pem, Some(&dtv), "/v1/whoami").await;
    assert!(r.is_err(), "revoked certificate accepted: {r:?}");
    still_serves(&pki, &gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn unknown_organisation_gets_403_problem() {
    let pki = TestPki::new();
    let gw = pki.start().await;
    let stranger = pki.oin_cert("00000099999999999000");
    let r = get(gw.addr, &pki.ca.cert_pem, Some(&stranger), "/v1/whoami")
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.content_type, "application/problem+json");
    let j = r.json();
    assert_eq!(j["type"], "urn:ketenpoort:problem:unknown-partner");
    assert_eq!(j["status"], 403);
    assert!(j["title"].is_string());
    still_serves(&pki, &gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn unknown_route_is_a_problem_without_echoing_identifiers() {
    let pki = TestPki::new();
    let gw = pki.start().await;
    let dtv = pki.oin_cert(DTV_OIN);
    let r = get(
        gw.addr,
        &pki.ca.cert_pem,
        Some(&dtv),
        "/v1/nothing/5550001234",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.content_type, "application/problem+json");
    assert!(!String::from_utf8_lossy(&r.body).contains("5550001234"));
    gw.stop().await;
}

#[tokio::test]
async fn new_crl_takes_effect_without_restart() {
    let pki = TestPki::new();
    let gw = pki.start().await;
    let dtv = pki.oin_cert(DTV_OIN);
    let r = get(gw.addr, &pki.ca.cert_pem, Some(&dtv), "/v1/whoami")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    write_atomic(
        &pki.crl_file(),
        pki.ca
            .crl(std::slice::from_ref(&dtv.serial))
            .unwrap()
            .as_bytes(),
        0o644,
    )
    .unwrap();
    // The watcher reloads within a fraction of a second; allow a generous bound.
    let mut refused = false;
    for _ in 0..100 {
        if get(gw.addr, &pki.ca.cert_pem, Some(&dtv), "/v1/whoami")
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "revocation was not picked up without a restart");
    // Other partners are unaffected.
    let r = get(
        gw.addr,
        &pki.ca.cert_pem,
        Some(&pki.ngo_pinned),
        "/v1/whoami",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn bad_crl_on_disk_keeps_the_running_one() {
    let pki = TestPki::new();
    let gw = pki.start().await;
    std::fs::write(pki.crl_file(), "not a CRL").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    still_serves(&pki, &gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn console_health_over_tls() {
    let pki = TestPki::new();
    let gw = pki.start().await;
    let r = get(gw.console, &pki.ca.cert_pem, None, "/healthz")
        .await
        .unwrap();
    // This deployment has partners but no pilot: it cannot serve an
    // exchange, and says so (tests/health.rs has the gateway that can).
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json(),
        serde_json::json!({"status": "fail", "failed": ["policy"],
            "details": {"policy": "no pilot's policy is loaded"}})
    );
    gw.stop().await;
}
