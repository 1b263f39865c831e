//! The console API as privacy officers and administrators use it, after real
//! exchanges through the gateway.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::fixture::*;
use common::*;
use http_body_util::Full;
use hyper::Method;
use serde_json::Value;

const V: &str = "5550001234";
const CASUS: &[(&str, &str)] = &[("ketenpoort-purpose", "casusoverleg")];

/// A console call with an optional bearer token.
async fn console(f: &Fixture, method: Method, path: &str, token: Option<&str>) -> Reply {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    request(
        f.gw.console,
        client_config(&f.pki.ca.cert_pem, None, &[b"http/1.1"]),
        req,
    )
    .await
    .unwrap()
}

fn add_user(f: &Fixture, name: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["user", "add", name])
        .args(args)
        .arg("--config")
        .arg(f.pki.config_file())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until the running console accepts a token (users file reload).
async fn accepted(f: &Fixture, token: &str) -> bool {
    for _ in 0..100 {
        if console(f, Method::GET, "/api/v1/whoami", Some(token))
            .await
            .status
            == 200
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn exchanges(f: &Fixture) {
    for (client, path) in [
        (
            &f.gemeente,
            format!("/v1/pilots/proef/services/dtv/dossier/{V}"),
        ),
        (
            &f.ngo_pinned,
            format!("/v1/pilots/proef/services/dtv/dossier/{V}"),
        ),
        (
            &f.ngo_pinned,
            "/v1/pilots/proef/services/dtv/lijst/a".to_string(),
        ),
        (
            &f.gemeente,
            "/v1/pilots/proef/services/dtv/dossier/5550009999".to_string(),
        ),
    ] {
        client.send(Method::GET, &path, CASUS, None).await.unwrap();
    }
}

fn records(r: &Reply) -> Vec<Value> {
    r.json()["records"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_scopes_lookups_reports_and_integrity() {
    let f = fixture().await;
    exchanges(&f).await;
    let officer = add_user(&f, "fg-landelijk", &["--role", "privacy-officer"]);
    let gemeente_officer = add_user(
        &f,
        "fg-gemeente",
        &["--role", "privacy-officer", "--partner", "gemeente"],
    );
    let admin = add_user(&f, "beheer", &["--role", "policy-admin"]);
    assert!(officer.starts_with("kp_") && officer.len() > 40);
    for t in [&officer, &gemeente_officer, &admin] {
        assert!(
            accepted(&f, t).await,
            "the running console picks up new users"
        );
    }

    // 401 without or with a wrong token.
    for t in [None, Some("kp_wrong")] {
        let r = console(&f, Method::GET, "/api/v1/disclosures", t).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.content_type, "application/problem+json");
    }

    // An unbound officer sees everything, newest first; the V-nummer only as a pseudonym.
    let r = console(
        &f,
        Method::GET,
        &format!("/api/v1/disclosures?subject={V}"),
        Some(&officer),
    )
    .await;
    assert_eq!(r.status, 200);
    let listed = records(&r);
    // Look-ups of this person are listed too, this one first: looking is processing.
    assert_eq!(listed[0]["kind"], "lookup");
    assert_eq!(listed[0]["recipient"], "console:fg-landelijk");
    let all: Vec<Value> = listed
        .iter()
        .filter(|r| r["kind"] == "exchange")
        .cloned()
        .collect();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[0]["id"].as_u64() > all[1]["id"].as_u64());
    assert!(!String::from_utf8_lossy(&r.body).contains(V));
    // The look-up itself is in the log.
    let head = f.gw.gateway.audit.view().head().size;
    let last = record(&f, head - 1).await;
    assert_eq!(last.entry.kind, ketenpoort::audit::RecordKind::Lookup);
    assert_eq!(last.entry.recipient, "console:fg-landelijk");
    assert_eq!(
        last.entry.subject,
        Some(
            f.gw.gateway
                .audit
                .subject(ketenpoort::audit::store::LOOKUP_SCOPE, V)
                .unwrap()
        )
    );

    // A partner-bound officer never sees other partners' records.
    let r = console(
        &f,
        Method::GET,
        "/api/v1/disclosures?limit=100",
        Some(&gemeente_officer),
    )
    .await;
    let mine = records(&r);
    assert!(!mine.is_empty());
    for rec in &mine {
        assert!(
            rec["sender"] == "gemeente" || rec["recipient"] == "gemeente",
            "{rec}"
        );
    }
    let r = console(
        &f,
        Method::GET,
        "/api/v1/disclosures?partner=ngo-pinned",
        Some(&gemeente_officer),
    )
    .await;
    assert_eq!(r.status, 403);
    let ngo_record = all.iter().find(|r| r["recipient"] == "ngo-pinned").unwrap()["id"]
        .as_u64()
        .unwrap();
    let r = console(
        &f,
        Method::GET,
        &format!("/api/v1/audit/proof?index={ngo_record}"),
        Some(&gemeente_officer),
    )
    .await;
    assert_eq!(r.status, 403);

    // A policy admin sees no personal records, but may see the log's integrity and figures.
    for p in [
        "/api/v1/disclosures".to_string(),
        format!("/api/v1/subjects/{V}/report"),
        "/api/v1/audit/proof?index=0".to_string(),
    ] {
        assert_eq!(
            console(&f, Method::GET, &p, Some(&admin)).await.status,
            403,
            "{p}"
        );
    }
    assert_eq!(
        console(&f, Method::GET, "/api/v1/audit/head", Some(&admin))
            .await
            .status,
        200
    );
    assert_eq!(
        console(&f, Method::GET, "/api/v1/stats?by=pilot", Some(&admin))
            .await
            .status,
        200
    );

    // The proof of a record checks like any other.
    let r = console(
        &f,
        Method::GET,
        &format!("/api/v1/audit/proof?index={ngo_record}"),
        Some(&officer),
    )
    .await;
    assert_eq!(r.status, 200);
    let proof = r.json()["proof"].to_string();
    assert!(ketenpoort::audit::proof::check(&proof).is_ok(), "{proof}");

    // The access report: who received which categories, and what was refused.
    let r = console(
        &f,
        Method::GET,
        &format!("/api/v1/subjects/{V}/report"),
        Some(&officer),
    )
    .await;
    assert_eq!(r.status, 200);
    let rep = r.json();
    let cats: Vec<String> = rep["disclosed"][0]["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert!(
        cats.contains(&"identity".to_string()) && cats.contains(&"contact".to_string()),
        "{cats:?}"
    );
    assert!(
        !cats.contains(&"health".to_string()),
        "no health data went out"
    );
    assert_eq!(rep["disclosed"].as_array().unwrap().len(), 2);
    let html = console(
        &f,
        Method::GET,
        &format!("/api/v1/subjects/{V}/report?format=html"),
        Some(&officer),
    )
    .await;
    let text = String::from_utf8_lossy(&html.body);
    assert!(
        text.contains("Verstrekt") && text.contains("Shared") && text.contains("Gemeente Proef"),
        "{text}"
    );
    let csv = console(
        &f,
        Method::GET,
        &format!("/api/v1/subjects/{V}/report?format=csv"),
        Some(&officer),
    )
    .await;
    assert!(String::from_utf8_lossy(&csv.body).lines().count() >= 3);
    let r = console(
        &f,
        Method::GET,
        "/api/v1/subjects/12/report",
        Some(&officer),
    )
    .await;
    assert_eq!(r.status, 400);

    // CSV of the log.
    let r = console(
        &f,
        Method::GET,
        "/api/v1/disclosures?format=csv&decision=refused",
        Some(&officer),
    )
    .await;
    let csv = String::from_utf8_lossy(&r.body).to_string();
    assert!(csv.starts_with("id,time,"));
    assert!(
        csv.lines().skip(1).all(|l| l.contains(",refused,")),
        "{csv}"
    );

    // Figures per day, pilot, partner, purpose.
    let r = console(&f, Method::GET, "/api/v1/stats?by=pilot", Some(&officer)).await;
    let rows = r.json()["rows"].as_array().unwrap().clone();
    let proef = rows.iter().find(|r| r["key"] == "proef").unwrap();
    assert_eq!(proef["disclosed"], 3, "{rows:?}");
    assert_eq!(proef["refused"], 1, "{rows:?}");
    for by in ["day", "partner", "purpose"] {
        let r = console(
            &f,
            Method::GET,
            &format!("/api/v1/stats?by={by}&since=2020-01-01&format=csv"),
            Some(&officer),
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(
            String::from_utf8_lossy(&r.body).lines().count() >= 2,
            "{by}"
        );
    }
    assert_eq!(
        console(&f, Method::GET, "/api/v1/stats?by=week", Some(&officer))
            .await
            .status,
        400
    );

    // Integrity: head, verify.
    let r = console(&f, Method::GET, "/api/v1/audit/head", Some(&officer)).await;
    assert!(
        r.json()["vkey"]
            .as_str()
            .unwrap()
            .starts_with("ketenpoort/test+")
    );
    let r = console(&f, Method::POST, "/api/v1/audit/verify", Some(&officer)).await;
    assert_eq!(r.json()["ok"], true, "{:?}", r.json());
    let r = console(&f, Method::GET, "/api/v1/audit/verify", Some(&officer)).await;
    assert_eq!(r.json()["last"]["ok"], true);

    // Revoking a user stops its token.
    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["user", "revoke", "beheer", "--config"])
        .arg(f.pki.config_file())
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut stopped = false;
    for _ in 0..100 {
        if console(&f, Method::GET, "/api/v1/whoami", Some(&admin))
            .await
            .status
            == 401
        {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stopped, "a revoked token still works");
    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["user", "list", "--config"])
        .arg(f.pki.config_file())
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("fg-gemeente\tprivacy-officer\tgemeente")
            && !list.contains("beheer")
            && !list.contains("kp_"),
        "{list}"
    );
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_page_need_no_token_and_hold_no_personal_data() {
    let f = fixture().await;
    exchanges(&f).await;
    let r = console(&f, Method::GET, "/healthz", None).await;
    assert_eq!(r.status, 200);
    let r = console(&f, Method::GET, "/metrics", None).await;
    assert_eq!(r.status, 200);
    let m = String::from_utf8_lossy(&r.body);
    for name in [
        "ketenpoort_exchanges_total",
        "ketenpoort_refusals_total",
        "ketenpoort_audit_records_total",
        "ketenpoort_audit_fsync_seconds",
        "ketenpoort_audit_wait_seconds",
        "ketenpoort_policy_version",
    ] {
        assert!(m.contains(name), "{name} missing in\n{m}");
    }
    assert!(m.contains("reason=\"no-rule\""));
    assert!(!m.contains(V) && !m.contains("Testpersoon"));
    let r = console(&f, Method::GET, "/", None).await;
    let page = String::from_utf8_lossy(&r.body);
    assert!(page.contains("<title data-i18n=\"title\">ketenpoort – console</title>"));
    // The page and its files load nothing from elsewhere (the SVG namespace
    // is a name, not a place).
    for path in [
        "/",
        "/console.css",
        "/i18n.js",
        "/proof.js",
        "/charts.js",
        "/app.js",
    ] {
        let r = console(&f, Method::GET, path, None).await;
        assert_eq!(r.status, 200, "{path}");
        let text = String::from_utf8_lossy(&r.body).replace("http://www.w3.org/2000/svg", "");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_security_headers_history_and_stats_keep_their_scope() {
    let f = fixture().await;
    exchanges(&f).await;
    let admin = add_user(&f, "beheer", &["--role", "policy-admin"]);
    let ngo_officer = add_user(
        &f,
        "fg-ngo",
        &["--role", "privacy-officer", "--partner", "ngo-pinned"],
    );
    for t in [&admin, &ngo_officer] {
        assert!(accepted(&f, t).await);
    }
    // Every console answer: no framing, sniffing, caching or referrer; the
    // page runs only its own script files.
    for (path, token) in [
        ("/", None),
        ("/api/v1/whoami", Some(ngo_officer.as_str())),
        (
            &*format!("/api/v1/subjects/{V}/report?format=html"),
            Some(ngo_officer.as_str()),
        ),
    ] {
        let r = console(&f, Method::GET, path, token).await;
        assert_eq!(r.status, 200, "{path}");
        let h = |n: &str| {
            r.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(h("cache-control"), "no-store", "{path}");
        assert_eq!(h("x-frame-options"), "DENY", "{path}");
        assert_eq!(h("referrer-policy"), "no-referrer", "{path}");
        let csp = h("content-security-policy");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("script-src 'unsafe"), "{path}: {csp}");
        if path == "/" {
            assert!(
                csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
                "{csp}"
            );
        }
    }
    // A pilot name is a name, never a path.
    for bad in ["..", "%2e%2e", "proef.."] {
        let r = console(
            &f,
            Method::GET,
            &format!("/api/v1/pilots/{bad}/history"),
            Some(&admin),
        )
        .await;
        assert_eq!(r.status, 404, "{bad}");
    }
    // An officer bound to an NGO sees the figures of its own exchanges only:
    // the municipality's exchange with DT&V is not among them.
    let r = console(
        &f,
        Method::GET,
        "/api/v1/stats?by=partner",
        Some(&ngo_officer),
    )
    .await;
    assert_eq!(r.status, 200);
    let rows = r.json()["rows"].as_array().unwrap().clone();
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert!(keys.contains(&"ngo-pinned"), "{rows:?}");
    assert!(
        !keys.contains(&"gemeente"),
        "another partner's figures: {rows:?}"
    );
    let r = console(
        &f,
        Method::GET,
        "/api/v1/stats?by=pilot",
        Some(&ngo_officer),
    )
    .await;
    let total: u64 = r.json()["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["disclosed"].as_u64().unwrap() + r["refused"].as_u64().unwrap())
        .sum();
    let own = console(
        &f,
        Method::GET,
        "/api/v1/disclosures?limit=1000",
        Some(&ngo_officer),
    )
    .await;
    let own_exchanges = records(&own)
        .iter()
        .filter(|r| r["kind"] == "exchange")
        .count() as u64;
    assert_eq!(
        total, own_exchanges,
        "the figures count exactly the officer's own records"
    );
    f.gw.stop().await;
}
