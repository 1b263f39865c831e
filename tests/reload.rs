//! A running gateway picks up a changed policy file without a restart, and
//! keeps the last good policy when the new file does not validate.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::*;

const PILOT: &str = r#"[pilot]
id = "proef"
name = "LVV Proef"
partners = ["dtv", "ngo-kvk"]
[pilot.covenant]
id = "LVV-PROEF"
version = "1.0"
valid_from = 2019-01-01
valid_until = 2030-12-31
[purposes.casusoverleg]
description = "Casusoverleg"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 730
"#;

async fn version_changes(gw: &TestGateway, from: &str) -> Option<String> {
    for _ in 0..100 {
        let snap = gw.gateway.policy.current();
        let v = snap
            .policy
            .pilots
            .get("proef")
            .map(|p| p.version.to_string());
        if v.as_deref() != Some(from) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn policy_reloads_on_change_and_keeps_the_last_good_one() {
    let pki = TestPki::new();
    let file = pki.pilots_dir().join("proef.toml");
    std::fs::write(&file, PILOT).unwrap();
    let gw = pki.start().await;
    let v1 = gw.gateway.policy.current().policy.pilots["proef"]
        .version
        .clone();

    // A bad file: the running policy stays.
    std::fs::write(
        &file,
        PILOT.replace("valid_until = 2030-12-31", "valid_until = 2010-12-31"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        gw.gateway.policy.current().policy.pilots["proef"].version,
        v1
    );
    still_ok(&pki, &gw).await;

    // A good change takes effect without a restart.
    std::fs::write(
        &file,
        PILOT.replace("version = \"1.0\"", "version = \"1.1\""),
    )
    .unwrap();
    let v2 = version_changes(&gw, &v1)
        .await
        .expect("new policy picked up");
    assert_ne!(v2, v1);
    assert_eq!(
        gw.gateway.policy.current().policy.pilots["proef"]
            .covenant
            .version,
        "1.1"
    );
    gw.stop().await;
}

async fn still_ok(pki: &TestPki, gw: &TestGateway) {
    let dtv = pki.oin_cert(DTV_OIN);
    let r = get(gw.addr, &pki.ca.cert_pem, Some(&dtv), "/v1/whoami")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}
