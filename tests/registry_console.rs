//! The LVV registry in the console: a person's art. 15 report shows their
//! stays (pilot, since, until, reason), found under the registry's own
//! pseudonym; privacy officers see the figures, suppressed as the programme
//! sees them, and administrators do not.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::fixture::*;
use common::*;
use http_body_util::Full;
use hyper::{Method, StatusCode};
use serde_json::json;

const PERSON: &str = "5550007101";

const REGISTRATION: &str = r#"
[purposes.aanmelding]
description = "Aanmelding bij de LVV"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 730

[registration]
registrars = ["gemeente"]
checkers = ["gemeente"]
purpose = "aanmelding"
end_reasons = ["terugkeer", "overdracht"]
"#;

async fn console(f: &Fixture, path: &str, token: &str) -> Reply {
    let req = hyper::Request::builder()
        .method(Method::GET)
        .uri(format!("https://localhost{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    request(
        f.gw.console,
        client_config(&f.pki.ca.cert_pem, None, &[b"http/1.1"]),
        req,
    )
    .await
    .unwrap()
}

fn add_user(f: &Fixture, name: &str, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["user", "add", name, "--role", role, "--config"])
        .arg(f.pki.config_file())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn accepted(f: &Fixture, token: &str) {
    for _ in 0..100 {
        if console(f, "/api/v1/whoami", token).await.status == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the console does not accept the token");
}

async fn registry(f: &Fixture, method: Method, body: serde_json::Value) -> StatusCode {
    f.gemeente
        .send(
            method,
            &format!("/v1/pilots/proef/registrations/{PERSON}"),
            &[("Ketenpoort-Purpose", "aanmelding")],
            Some(&body),
        )
        .await
        .unwrap()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_report_shows_stays_and_officers_see_figures() {
    let f = fixture_with(|pki| {
        let proef = pki.pilots_dir().join("proef.toml");
        let text = std::fs::read_to_string(&proef).unwrap();
        pki.write_config("pilots/proef.toml", &(text + REGISTRATION));
    })
    .await;
    let since = json!({"since": "2025-03-04"});
    assert_eq!(registry(&f, Method::PUT, since).await, StatusCode::CREATED);
    let end = json!({"reason": "terugkeer"});
    assert_eq!(
        registry(&f, Method::DELETE, end).await,
        StatusCode::NO_CONTENT
    );
    let again = json!({"since": "2026-02-01"});
    assert_eq!(registry(&f, Method::PUT, again).await, StatusCode::CREATED);
    let officer = add_user(&f, "fg-registry", "privacy-officer");
    let admin = add_user(&f, "beheer-registry", "policy-admin");
    accepted(&f, &officer).await;
    accepted(&f, &admin).await;

    let r = console(&f, &format!("/api/v1/subjects/{PERSON}/report"), &officer).await;
    assert_eq!(r.status, 200);
    let stays = r.json()["registrations"].clone();
    assert_eq!(stays.as_array().unwrap().len(), 2, "{stays}");
    assert_eq!(stays[0]["pilot"], "proef");
    assert_eq!(stays[0]["since"], "2025-03-04");
    assert_eq!(stays[0]["reason"], "terugkeer");
    assert!(stays[0]["until"].is_string());
    assert_eq!(stays[1]["since"], "2026-02-01");
    assert!(stays[1]["until"].is_null());
    let html = console(
        &f,
        &format!("/api/v1/subjects/{PERSON}/report?format=html"),
        &officer,
    )
    .await;
    let text = String::from_utf8_lossy(&html.body);
    assert!(
        text.contains("Stays in an LVV") && text.contains("terugkeer"),
        "{text}"
    );

    let q = "/api/v1/figures?pilot=proef&from=2025-03&to=2026-02";
    let r = console(&f, q, &officer).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let months = r.json()["months"].as_array().unwrap().clone();
    assert_eq!(months.len(), 12);
    assert_eq!(months[0]["intakes"], "<10");
    assert_eq!(console(&f, q, &admin).await.status, 403);
    f.gw.stop().await;
}

/// Issue 18's console part: an officer sees per partner how often it
/// checked and how often it was refused for checking too often, as counts;
/// a walk through V-nummers shows there, and no person does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn officers_see_checks_and_refused_checks_per_partner_never_people() {
    let f = fixture_with(|pki| {
        let proef = pki.pilots_dir().join("proef.toml");
        let text = std::fs::read_to_string(&proef).unwrap();
        let reg = REGISTRATION.replace(
            "purpose = \"aanmelding\"",
            "purpose = \"aanmelding\"\nchecks_per_minute = 3",
        );
        pki.write_config("pilots/proef.toml", &(text + &reg));
    })
    .await;
    assert_eq!(
        registry(&f, Method::PUT, json!({"since": "2026-01-05"})).await,
        StatusCode::CREATED
    );
    // A walk: five people checked in a row, two over the limit.
    let mut refused = 0;
    for i in 0..5 {
        let r = f
            .gemeente
            .send(
                Method::GET,
                &format!("/v1/pilots/proef/registrations/555000720{i}"),
                &[("Ketenpoort-Purpose", "aanmelding")],
                None,
            )
            .await
            .unwrap();
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert_eq!(refused, 2);
    let officer = add_user(&f, "fg-checks", "privacy-officer");
    let admin = add_user(&f, "beheer-checks", "policy-admin");
    accepted(&f, &officer).await;
    accepted(&f, &admin).await;
    let q = "/api/v1/registrations/checks?pilot=proef";
    let r = console(&f, q, &officer).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["complete"], true);
    let rows = v["partners"].as_array().unwrap();
    let g = rows.iter().find(|x| x["partner"] == "gemeente").unwrap();
    assert_eq!(g["checks"], 3, "{v}");
    assert_eq!(g["refused_limit"], 2, "{v}");
    assert_eq!(g["registrations"], 1, "{v}");
    assert_eq!(g["name"], "Gemeente Proef");
    // Figures only: no V-nummer, no pseudonym, no record id of a person.
    let body = String::from_utf8_lossy(&r.body);
    assert!(!body.contains("555000"), "{body}");
    assert!(
        !body.contains("subject") && !body.contains("record"),
        "{body}"
    );
    // A day range that ends before the checks counts none of them.
    let r = console(
        &f,
        "/api/v1/registrations/checks?pilot=proef&until=2020-01-01",
        &officer,
    )
    .await;
    assert!(r.json()["partners"].as_array().unwrap().is_empty());
    assert_eq!(console(&f, q, &admin).await.status, 403);
    let r = console(&f, "/api/v1/registrations/checks?pilot=nergens", &officer).await;
    assert_eq!(r.status, 404);
    f.gw.stop().await;
}
