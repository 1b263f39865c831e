//! The LVV registry over real mTLS: registrars open and end stays, checkers
//! learn "here" and "elsewhere" but never where, checks are limited and the
//! excess recorded, every step is an audit record, and no V-nummer is kept
//! in clear anywhere in the data directory.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::fixture::{self, Fixture, fixture_with, ids};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

const PERSON: &str = "5550007001";
const OTHER: &str = "5550007002";

const REGISTRATION: &str = r#"
[purposes.aanmelding]
description = "Aanmelding bij de LVV"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 730

[registration]
registrars = ["gemeente"]
checkers = ["gemeente", "ngo-kvk"]
purpose = "aanmelding"
checks_per_minute = 6
end_reasons = ["terugkeer", "overdracht"]
"#;

const TWEEDE: &str = r#"[pilot]
id = "tweede"
name = "LVV Tweede"
partners = ["gemeente", "ngo-kvk"]
[pilot.covenant]
id = "LVV-TWEEDE"
version = "1.0"
valid_from = 2019-01-01
valid_until = 2099-12-31

[purposes.aanmelding]
description = "Aanmelding bij de LVV"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 730

[registration]
registrars = ["ngo-kvk"]
checkers = ["gemeente"]
purpose = "aanmelding"
"#;

async fn setup() -> Fixture {
    fixture_with(|pki| {
        let proef = pki.pilots_dir().join("proef.toml");
        let text = std::fs::read_to_string(&proef).unwrap();
        pki.write_config("pilots/proef.toml", &(text + REGISTRATION));
        pki.write_config("pilots/tweede.toml", TWEEDE);
    })
    .await
}

async fn call(
    client: &ketenpoort::client::PartnerClient,
    method: Method,
    pilot: &str,
    v: &str,
    purpose: &str,
    body: Option<Value>,
) -> ketenpoort::client::Reply {
    client
        .send(
            method,
            &format!("/v1/pilots/{pilot}/registrations/{v}"),
            &[("Ketenpoort-Purpose", purpose)],
            body.as_ref(),
        )
        .await
        .unwrap()
}

fn problem_type(r: &ketenpoort::client::Reply) -> String {
    serde_json::from_slice::<Value>(&r.body).unwrap()["type"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stays_open_and_end_and_checks_learn_here_and_elsewhere_only() {
    let f = setup().await;
    let since = json!({"since": "2026-01-05"});
    // Registered in "tweede" by its registrar.
    let r = call(
        &f.ngo_kvk,
        Method::PUT,
        "tweede",
        PERSON,
        "aanmelding",
        Some(since.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let admitted = ids(&r);
    let r = call(
        &f.ngo_kvk,
        Method::PUT,
        "tweede",
        PERSON,
        "aanmelding",
        Some(since.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // Checked from "proef": elsewhere, without a name.
    let r = call(
        &f.gemeente,
        Method::GET,
        "proef",
        PERSON,
        "aanmelding",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"here": false, "elsewhere": true}));
    assert!(!String::from_utf8_lossy(&r.body).contains("tweede"));
    let checked = ids(&r);
    let r = call(&f.gemeente, Method::GET, "proef", OTHER, "aanmelding", None).await;
    assert_eq!(r.json(), json!({"here": false, "elsewhere": false}));
    // Registered here too.
    let r = call(
        &f.gemeente,
        Method::PUT,
        "proef",
        PERSON,
        "aanmelding",
        Some(since),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(
        &f.gemeente,
        Method::GET,
        "proef",
        PERSON,
        "aanmelding",
        None,
    )
    .await;
    assert_eq!(r.json(), json!({"here": true, "elsewhere": true}));
    // Ending: only with a listed reason ("tweede" keeps the default list).
    let r = call(
        &f.ngo_kvk,
        Method::DELETE,
        "tweede",
        PERSON,
        "aanmelding",
        Some(json!({"reason": "zomaar"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(problem_type(&r).ends_with("invalid-registration"));
    let r = call(
        &f.ngo_kvk,
        Method::DELETE,
        "tweede",
        PERSON,
        "aanmelding",
        Some(json!({"reason": "overdracht"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let ended = ids(&r);
    let r = call(
        &f.ngo_kvk,
        Method::DELETE,
        "tweede",
        PERSON,
        "aanmelding",
        Some(json!({"reason": "overdracht"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(problem_type(&r).ends_with("no-open-stay"));
    let r = call(
        &f.gemeente,
        Method::GET,
        "proef",
        PERSON,
        "aanmelding",
        None,
    )
    .await;
    assert_eq!(r.json(), json!({"here": true, "elsewhere": false}));

    // Every step is a record about the same data subject, pseudonymised
    // under its pilot's subject key of the month: one pseudonym per pilot,
    // each among the person's pseudonyms a search by V-nummer looks for.
    let known = f.gw.gateway.audit.subjects(PERSON).unwrap();
    let mut by_pilot = std::collections::BTreeMap::new();
    for id in [admitted, checked, ended].concat() {
        let rec = fixture::record(&f, id).await;
        assert_eq!(rec.entry.service, "ketenpoort/registratie");
        assert_eq!(rec.entry.purpose, "aanmelding");
        let s = rec.entry.subject.unwrap();
        assert!(known.contains(&s));
        assert_eq!(*by_pilot.entry(rec.entry.pilot.clone()).or_insert(s), s);
    }
    f.gw.stop().await;
    // Nothing in clear at rest: no V-nummer in any file of the data directory.
    for file in walk(&f.pki.data_dir()) {
        let bytes = std::fs::read(&file).unwrap();
        for v in [PERSON, OTHER] {
            assert!(
                !bytes.windows(10).any(|w| w == v.as_bytes()),
                "{} holds a V-nummer in clear",
                file.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_purpose_and_the_rate_limit_hold_and_show_in_the_log() {
    let f = setup().await;
    // A checker is no registrar; a registrar of another pilot is none here.
    let r = call(
        &f.ngo_kvk,
        Method::PUT,
        "proef",
        PERSON,
        "aanmelding",
        Some(json!({"since": "2026-01-05"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(problem_type(&r).ends_with("no-rule"));
    // Another purpose, and a partner that is neither.
    let r = call(
        &f.gemeente,
        Method::GET,
        "proef",
        PERSON,
        "casusoverleg",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(
        &f.ngo_pinned,
        Method::GET,
        "proef",
        PERSON,
        "aanmelding",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Not a V-nummer; a bad date.
    let r = call(
        &f.gemeente,
        Method::GET,
        "proef",
        "12345",
        "aanmelding",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(
        &f.gemeente,
        Method::PUT,
        "proef",
        PERSON,
        "aanmelding",
        Some(json!({"since": "gisteren"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Six checks a minute for ngo-kvk; the seventh is refused and recorded.
    for i in 0..6 {
        let v = format!("555000800{i}");
        let r = call(&f.ngo_kvk, Method::GET, "proef", &v, "aanmelding", None).await;
        assert_eq!(r.status, StatusCode::OK, "check {i}");
    }
    let r = call(
        &f.ngo_kvk,
        Method::GET,
        "proef",
        "5550008009",
        "aanmelding",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(problem_type(&r), "urn:ketenpoort:problem:too-many-checks");
    let rec = fixture::record(&f, ids(&r)[0]).await;
    assert_eq!(rec.entry.reason, "too-many-checks");
    assert_eq!(rec.entry.recipient, "ngo-kvk");
    assert!(rec.entry.subject.is_some());
    // Another partner's checks are not counted against it.
    let r = call(
        &f.gemeente,
        Method::GET,
        "proef",
        PERSON,
        "aanmelding",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    f.gw.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
