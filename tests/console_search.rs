//! The V-nummer stays out of URLs: searches and reports by person are POSTs
//! with the V-nummer in the body, and the old GET forms still answer, marked
//! deprecated with a link to their successor. The report comes in the
//! language asked for; a record's proof carries the bytes its leaf hash is
//! taken of, so the page can hash them itself.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::fixture::*;
use common::*;
use http_body_util::Full;
use hyper::Method;
use serde_json::{Value, json};

const V: &str = "5550001234";

async fn call(f: &Fixture, method: Method, path: &str, token: &str, body: Option<Value>) -> Reply {
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(
            body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())),
        ))
        .unwrap();
    request(
        f.gw.console,
        client_config(&f.pki.ca.cert_pem, None, &[b"http/1.1"]),
        req,
    )
    .await
    .unwrap()
}

fn header(r: &Reply, name: &str) -> String {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_searches_are_posts_and_the_get_forms_are_deprecated() {
    let f = fixture().await;
    for path in [
        format!("/v1/pilots/proef/services/dtv/dossier/{V}"),
        "/v1/pilots/proef/services/dtv/dossier/5550009999".to_string(),
    ] {
        f.gemeente
            .send(
                Method::GET,
                &path,
                &[("ketenpoort-purpose", "casusoverleg")],
                None,
            )
            .await
            .unwrap();
    }
    let token = ketenpoort::console::users::add(
        &f.gw.gateway.config,
        "fg-post",
        ketenpoort::console::users::Role::PrivacyOfficer,
        None,
        None,
    )
    .unwrap();
    f.gw.gateway.console.users.reload().unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;

    // The POST form: the V-nummer in the body, other filters beside it.
    let body = json!({"subject": V, "pilot": "proef", "limit": 20});
    let r = call(
        &f,
        Method::POST,
        "/api/v1/disclosures/search",
        &token,
        Some(body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let recs = r.json()["records"].as_array().unwrap().clone();
    assert!(!recs.is_empty(), "the exchange about this person");
    assert!(
        recs.iter()
            .all(|x| x["pilot"] == "proef" && x["subject"] == recs[0]["subject"]),
        "one person's records: {recs:?}"
    );
    assert!(
        header(&r, "deprecation").is_empty(),
        "the successor is not deprecated"
    );
    // Only this person's records: the other person's exchange is not there.
    let all = call(
        &f,
        Method::GET,
        "/api/v1/disclosures?limit=100",
        &token,
        None,
    )
    .await;
    assert!(
        header(&all, "deprecation").is_empty(),
        "a search without a person is not deprecated"
    );
    assert!(all.json()["records"].as_array().unwrap().len() > recs.len());

    // A typo in a filter is refused instead of widening the search.
    let r = call(
        &f,
        Method::POST,
        "/api/v1/disclosures/search",
        &token,
        Some(json!({"subjct": V})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["type"], "urn:ketenpoort:problem:bad-query");

    // The GET forms still answer, marked deprecated, pointing to the POST.
    let old = call(
        &f,
        Method::GET,
        &format!("/api/v1/disclosures?subject={V}"),
        &token,
        None,
    )
    .await;
    assert_eq!(old.status, 200);
    assert!(
        header(&old, "deprecation").starts_with('@'),
        "{:?}",
        old.headers
    );
    assert!(
        header(&old, "link").contains("</api/v1/disclosures/search>; rel=\"successor-version\"")
    );
    let old = call(
        &f,
        Method::GET,
        &format!("/api/v1/subjects/{V}/report"),
        &token,
        None,
    )
    .await;
    assert_eq!(old.status, 200);
    assert!(header(&old, "deprecation").starts_with('@'));
    assert!(header(&old, "link").contains("</api/v1/subjects/report>"));

    // The report by POST, in the language asked for.
    let nl = call(
        &f,
        Method::POST,
        "/api/v1/subjects/report",
        &token,
        Some(json!({"vnummer": V, "format": "html", "lang": "nl"})),
    )
    .await;
    assert_eq!(nl.status, 200);
    let nl = String::from_utf8_lossy(&nl.body).to_string();
    assert!(
        nl.contains("<html lang=\"nl\">") && nl.contains("Verstrekt"),
        "{nl}"
    );
    assert!(
        !nl.contains("Shared") && !nl.contains("all partners"),
        "{nl}"
    );
    let en = call(
        &f,
        Method::POST,
        "/api/v1/subjects/report",
        &token,
        Some(json!({"vnummer": V, "format": "html", "lang": "en"})),
    )
    .await;
    let en = String::from_utf8_lossy(&en.body).to_string();
    assert!(
        en.contains("<html lang=\"en\">") && en.contains("Shared"),
        "{en}"
    );
    assert!(
        !en.contains("Verstrekt") && !en.contains("Grondslag"),
        "{en}"
    );
    let json_rep = call(
        &f,
        Method::POST,
        "/api/v1/subjects/report",
        &token,
        Some(json!({"vnummer": V})),
    )
    .await;
    assert_eq!(json_rep.json()["vnummer"], V);
    let bad = call(
        &f,
        Method::POST,
        "/api/v1/subjects/report",
        &token,
        Some(json!({"vnummer": "12"})),
    )
    .await;
    assert_eq!(bad.json()["type"], "urn:ketenpoort:problem:invalid-subject");

    // A proof carries the record's bytes; their RFC 6962 leaf hash is the
    // proof's leaf hash.
    let id = recs[0]["id"].as_u64().unwrap();
    let p = call(
        &f,
        Method::GET,
        &format!("/api/v1/audit/proof?index={id}"),
        &token,
        None,
    )
    .await;
    let p = p.json();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bytes = b64.decode(p["record_bytes"].as_str().unwrap()).unwrap();
    let leaf = ketenpoort::audit::merkle::leaf_hash(&bytes);
    assert_eq!(b64.encode(leaf), p["proof"]["leafHash"].as_str().unwrap());
    f.gw.stop().await;
}
