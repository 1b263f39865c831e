//! `GET /healthz` over the real console listener: 200 only when the gateway
//! can serve, 503 naming each check that fails (a CRL past its nextUpdate,
//! the gateway's own certificate expired, no policy loaded, a full disk
//! under the data directory), and `ketenpoort maintenance on|off` draining
//! the node through the admin socket while exchanges go on.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::process::Command;

use common::disk::{fill, is_root, small_tmpfs};
use common::fixture::*;
use common::{Reply, TestPki, get};
use hyper::Method;
use ketenpoort::pki::LeafSpec;
use time::{Duration, OffsetDateTime};

const BIN: &str = env!("CARGO_BIN_EXE_ketenpoort");
const CASUS: &[(&str, &str)] = &[("ketenpoort-purpose", "casusoverleg")];
const DOSSIER: &str = "/v1/pilots/proef/services/dtv/dossier/5550001234";

async fn health(f: &Fixture) -> Reply {
    get(f.gw.console, &f.pki.ca.cert_pem, None, "/healthz")
        .await
        .unwrap()
}

/// The answer's status, and its failed checks.
fn verdict(r: &Reply) -> (u16, String, Vec<String>) {
    let v = r.json();
    let failed = v["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    (
        r.status.as_u16(),
        v["status"].as_str().unwrap().to_string(),
        failed,
    )
}

fn ok() -> (u16, String, Vec<String>) {
    (200, "ok".into(), vec![])
}

fn failing(check: &str) -> (u16, String, Vec<String>) {
    (503, "fail".into(), vec![check.to_string()])
}

async fn exchange_status(f: &Fixture) -> u16 {
    f.gemeente
        .send(Method::GET, DOSSIER, CASUS, None)
        .await
        .unwrap()
        .status
        .as_u16()
}

fn write(path: &std::path::Path, text: &str) {
    ketenpoort::datadir::write_atomic(path, text.as_bytes(), 0o600).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_for_a_late_crl_an_expired_own_certificate_and_no_policy_in_turn() {
    let f = fixture().await;
    let r = health(&f).await;
    assert_eq!(verdict(&r), ok(), "{:?}", r.json());
    assert_eq!(r.json(), serde_json::json!({"status": "ok", "failed": []}));

    // A CRL not renewed before its nextUpdate: `crl` fails at once, while
    // exchanges go on for `[tls] crl_grace_hours` (24 by default; tests/crl.rs
    // shows them stop after it).
    let good_crl = std::fs::read_to_string(f.pki.crl_file()).unwrap();
    let late = OffsetDateTime::now_utc() - Duration::hours(2);
    write(&f.pki.crl_file(), &f.pki.ca.crl_until(&[], late).unwrap());
    f.gw.gateway.reload_tls().await;
    let r = health(&f).await;
    assert_eq!(verdict(&r), failing("crl"), "{:?}", r.json());
    assert!(
        r.json()["details"]["crl"]
            .as_str()
            .unwrap()
            .contains("nextUpdate"),
        "{:?}",
        r.json()
    );
    assert_eq!(exchange_status(&f).await, 200);
    write(&f.pki.crl_file(), &good_crl);
    f.gw.gateway.reload_tls().await;
    assert_eq!(verdict(&health(&f).await), ok());

    // The gateway's own client certificate (presented to back-ends) expired.
    let certs = f.pki.dir.path().join("certs");
    let good = (
        std::fs::read_to_string(certs.join("gateway-client.crt")).unwrap(),
        std::fs::read_to_string(certs.join("gateway-client.key")).unwrap(),
    );
    let expired = f
        .pki
        .ca
        .issue(&LeafSpec {
            not_before: OffsetDateTime::now_utc() - Duration::days(30),
            not_after: OffsetDateTime::now_utc() - Duration::days(1),
            ..LeafSpec::client("gateway client")
        })
        .unwrap();
    write(&certs.join("gateway-client.crt"), &expired.cert_pem);
    write(&certs.join("gateway-client.key"), &expired.key_pem);
    f.gw.gateway.reload_tls().await;
    let r = health(&f).await;
    assert_eq!(verdict(&r), failing("certificates"), "{:?}", r.json());
    assert!(
        r.json()["details"]["certificates"]
            .as_str()
            .unwrap()
            .starts_with("client certificate expired"),
        "{:?}",
        r.json()
    );
    write(&certs.join("gateway-client.crt"), &good.0);
    write(&certs.join("gateway-client.key"), &good.1);
    f.gw.gateway.reload_tls().await;
    assert_eq!(verdict(&health(&f).await), ok());

    // No pilot's policy loaded (every pilot file taken away and reloaded).
    let pilots = f.pki.pilots_dir();
    let kept = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&pilots).unwrap() {
        let p = e.unwrap().path();
        std::fs::rename(&p, kept.path().join(p.file_name().unwrap())).unwrap();
    }
    f.gw.gateway.reload_policy().await;
    let r = health(&f).await;
    assert_eq!(verdict(&r), failing("policy"), "{:?}", r.json());
    for e in std::fs::read_dir(kept.path()).unwrap() {
        let p = e.unwrap().path();
        std::fs::rename(&p, pilots.join(p.file_name().unwrap())).unwrap();
    }
    f.gw.gateway.reload_policy().await;
    assert_eq!(verdict(&health(&f).await), ok());
    assert_eq!(exchange_status(&f).await, 200);
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_drains_the_node_while_exchanges_go_on() {
    let (pki, _seen) = prepare().await;
    let gw = pki.start_with_admin().await;
    let gemeente = pki.client(gw.addr, &pki.oin_cert(GEMEENTE_OIN));
    let cli = |args: &'static [&'static str], pki: &TestPki| {
        let config = pki.config_file();
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(args)
                .arg("--config")
                .arg(config)
                .output()
                .unwrap()
        })
    };
    let status = |r: Reply| {
        (
            r.status.as_u16(),
            r.json()["status"].as_str().unwrap().to_string(),
        )
    };
    let healthz = || get(gw.console, &pki.ca.cert_pem, None, "/healthz");
    assert_eq!(status(healthz().await.unwrap()), (200, "ok".into()));

    let out = cli(&["maintenance", "on"], &pki).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("maintenance on"));
    let r = healthz().await.unwrap();
    assert_eq!(r.json()["failed"], serde_json::json!([]));
    assert_eq!(status(r), (503, "maintenance".into()));
    // The node drains, it does not refuse: exchanges still pass.
    let r = gemeente
        .send(Method::GET, DOSSIER, CASUS, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let out = cli(&["maintenance", "status"], &pki).await.unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("maintenance on"));

    let out = cli(&["maintenance", "off"], &pki).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(status(healthz().await.unwrap()), (200, "ok".into()));
    gw.stop().await;

    // Without a running gateway there is nothing to drain: said, exit 1.
    let out = cli(&["maintenance", "on"], &pki).await.unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no running gateway answered"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_audit_check_until_space_is_freed() {
    if !is_root() {
        eprintln!("skipped: mounting a size-limited tmpfs needs root");
        return;
    }
    let mut mount = None;
    let f = fixture_with(|pki| mount = small_tmpfs(&pki.data_dir())).await;
    if mount.is_none() {
        eprintln!("skipped: this machine does not allow mounting a tmpfs");
        return;
    }
    assert_eq!(verdict(&health(&f).await), ok());
    let ballast = fill(&f.pki.data_dir());
    let r = health(&f).await;
    assert_eq!(verdict(&r), failing("audit"), "{:?}", r.json());
    std::fs::remove_file(ballast).unwrap();
    assert_eq!(verdict(&health(&f).await), ok());
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_when_certificates_expire_and_crls_must_be_renewed() {
    let f = fixture().await;
    assert_eq!(exchange_status(&f).await, 200);
    let r = get(f.gw.console, &f.pki.ca.cert_pem, None, "/metrics")
        .await
        .unwrap();
    let m = String::from_utf8_lossy(&r.body).into_owned();
    let value = |prefix: &str| -> i64 {
        let line = m
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} missing in\n{m}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let year = 365 * 86_400;
    // Test certificates and CRLs are made valid for a year.
    for metric in [
        "ketenpoort_certificate_expiry_timestamp_seconds{certificate=\"server\"}",
        "ketenpoort_certificate_expiry_timestamp_seconds{certificate=\"client\"}",
        "ketenpoort_crl_next_update_timestamp_seconds{file=",
        "ketenpoort_partner_certificate_expiry_timestamp_seconds{partner=\"gemeente\"}",
    ] {
        let t = value(metric);
        assert!((t - now - year).abs() < 86_400, "{metric} = {t}");
    }
    f.gw.stop().await;
}
