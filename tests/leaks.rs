//! Issue 12's attacks, each played against the running gateway over real
//! mutual TLS: a hostile back-end that hides data where a scalar belongs or
//! in key names, answers about too many people, or holds a revoked
//! certificate. Each test fails without the code that holds the promise.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::fixture::*;
use hyper::Method;
use serde_json::{Value, json};

const CASUS: &[(&str, &str)] = &[("ketenpoort-purpose", "casusoverleg")];
const DOSSIER: &str = "/v1/pilots/proef/services/vijand/dossier/5550001234";

fn answer(f: &Fixture, v: &Value) {
    *f.hostile.lock().unwrap() = serde_json::to_vec(v).unwrap();
}

/// Every audit segment byte on disk.
fn segments(f: &Fixture) -> Vec<u8> {
    let mut all = Vec::new();
    let dir = f.pki.data_dir().join("audit/segments");
    for e in std::fs::read_dir(&dir).unwrap() {
        all.extend(std::fs::read(e.unwrap().path()).unwrap());
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_nested_under_allowed_fields_never_leaves() {
    let f = fixture().await;
    answer(
        &f,
        &json!({
            "vnummer": "5550001234",
            "naam": {"medisch": {"bijzonderheden": "GEHEIM-medisch"}},
            "nationaliteit": [{"strafblad": "GEHEIM-strafblad"}],
            "adres": {"woonplaats": "Utrecht", "geheim": {"x": "GEHEIM-adres"}},
        }),
    );
    let r = f
        .gemeente
        .send(Method::GET, DOSSIER, CASUS, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(
        !contains(&r.body, "GEHEIM"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.json(),
        json!({"vnummer": "5550001234", "adres": {"woonplaats": "Utrecht"}})
    );
    let rec = record(&f, ids(&r)[0]).await;
    assert_eq!(rec.entry.disclosed, ["adres.woonplaats", "vnummer"]);
    assert_eq!(rec.entry.withheld, ["naam", "nationaliteit[]"]);
    assert_eq!(rec.entry.withheld_undeclared, 1);
    let metrics = f.gw.gateway.metrics.render();
    assert!(
        metrics.contains(r#"ketenpoort_shape_violations_total{service="vijand/dossier"} 2"#),
        "{metrics}"
    );

    // The researcher: a pseudonymised V-nummer, and nothing next to it, also
    // when the back-end hands over a value already shaped like a pseudonym.
    answer(
        &f,
        &json!({"vnummer": "5550001234", "naam": "ps1:00112233445566778899aabbccddeeff", "strafblad": "GEHEIM"}),
    );
    let r = f
        .gemeente
        .send(
            Method::GET,
            DOSSIER,
            &[("ketenpoort-purpose", "monitoring")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    let body = r.json();
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    assert!(!body.to_string().contains("5550001234"));
    let p = body["naam"].as_str().unwrap();
    assert!(p.starts_with("ps1:") && p != "ps1:00112233445566778899aabbccddeeff");

    // The same in a request body: nothing nested reaches the provider.
    answer(&f, &json!({"vnummer": "5550001234"}));
    let r = f
        .gemeente
        .send(
            Method::POST,
            DOSSIER,
            CASUS,
            Some(&json!({"vnummer": "5550001234", "naam": {"strafblad": "GEHEIM"}, "x": 1})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    let seen = f.hostile_seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&seen.body).unwrap(),
        json!({"vnummer": "5550001234"})
    );
    // This back-end speaks HTTP/1.1 only, where the HTTP client would add
    // a Host of its own were the gateway's missing: one, the back-end's.
    assert_eq!(seen.headers.get_all("host").iter().count(), 1);
    assert!(
        seen.headers["host"]
            .to_str()
            .unwrap()
            .starts_with("localhost:")
    );
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_of_withheld_keys_are_neither_echoed_nor_stored() {
    let f = fixture().await;
    let mut doc = serde_json::Map::new();
    doc.insert("vnummer".into(), json!("5550001234"));
    doc.insert("Jan Jansen, BSN 123456782".into(), json!("x"));
    for i in 0..2500 {
        doc.insert(format!("onbekend-{i:05}"), json!(1));
    }
    answer(&f, &Value::Object(doc));
    let before = segments(&f).len();
    let r = f
        .gemeente
        .send(Method::GET, DOSSIER, CASUS, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.header("ketenpoort-withheld-undeclared"), Some("2501"));
    let withheld = r.header("ketenpoort-withheld").unwrap_or("");
    assert!(
        !withheld.contains("Jan") && !withheld.contains("onbekend"),
        "{withheld}"
    );
    let rec = record(&f, ids(&r)[0]).await;
    assert_eq!(rec.entry.withheld_undeclared, 2501);
    let log = segments(&f);
    assert!(
        !contains(&log, "Jan Jansen"),
        "a key name reached the audit log"
    );
    assert!(
        !contains(&log, "onbekend-"),
        "a key name reached the audit log"
    );
    // 2,501 unknown keys cost the append-only log one small record.
    assert!(log.len() - before < 2048, "{} bytes", log.len() - before);
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_about_many_subjects_are_bounded_and_well_formed() {
    let f = fixture().await;
    let list = |n: usize| {
        Value::Array(
            (0..n)
                .map(|i| json!({"vnummer": format!("55{:08}", i), "naam": "T"}))
                .collect(),
        )
    };
    let lijst = "/v1/pilots/proef/services/vijand/lijst/alle";
    answer(&f, &list(1000));
    let r = f
        .gemeente
        .send(Method::GET, lijst, CASUS, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let header = r.header("ketenpoort-disclosure").unwrap();
    assert!(header.len() < 8192, "{} bytes", header.len());
    assert_eq!(ids(&r).len(), 1000);
    let first = record(&f, ids(&r)[0]).await;
    assert_eq!(
        first.entry.subject,
        Some(f.gw.gateway.audit.subject("proef", "5500000000").unwrap())
    );

    answer(&f, &list(1001));
    let size = f.gw.gateway.audit.view().head().size;
    let r = f
        .gemeente
        .send(Method::GET, lijst, CASUS, None)
        .await
        .unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["type"], "urn:ketenpoort:problem:too-many-subjects");
    assert_eq!(
        f.gw.gateway.audit.view().head().size,
        size + 1,
        "one refusal record"
    );

    // An element naming its subject with a list or null would be recorded
    // under the wrong person: refused.
    for bad in [json!(["5550000001", "5550000002"]), Value::Null] {
        answer(
            &f,
            &json!([{"vnummer": "5550000001"}, {"vnummer": bad, "naam": "T"}]),
        );
        let r = f
            .gemeente
            .send(Method::GET, lijst, CASUS, None)
            .await
            .unwrap();
        assert_eq!(r.status, 502, "{bad}");
        assert_eq!(
            r.json()["type"],
            "urn:ketenpoort:problem:backend-bad-answer"
        );
    }
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_record_the_backend_certificate_and_a_revoked_backend_gets_nothing() {
    let f = fixture().await;
    answer(&f, &json!({"vnummer": "5550001234"}));
    let r = f
        .gemeente
        .send(Method::GET, DOSSIER, CASUS, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let rec = record(&f, ids(&r)[0]).await;
    let der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(f.hostile_cert.cert_pem.as_bytes())
            .unwrap()
    };
    assert_eq!(
        rec.entry.sender_cert_sha256,
        Some(ketenpoort::identity::sha256(&der)),
        "the record names the certificate that answered"
    );

    std::fs::write(
        f.pki.crl_file(),
        f.pki
            .ca
            .crl(std::slice::from_ref(&f.hostile_cert.serial))
            .unwrap(),
    )
    .unwrap();
    f.gw.gateway.reload_tls().await;
    let seen = f.hostile_seen.lock().unwrap().len();
    // A fresh client: the pooled back-end connection of before is the
    // gateway's, and a new set brings a new pool.
    let r = f
        .gemeente
        .send(Method::GET, DOSSIER, CASUS, None)
        .await
        .unwrap();
    assert_eq!(r.status, 502, "{:?}", r.json());
    assert_eq!(
        r.json()["type"],
        "urn:ketenpoort:problem:backend-certificate"
    );
    assert_eq!(
        f.hostile_seen.lock().unwrap().len(),
        seen,
        "the revoked back-end was called"
    );
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailboxes_have_quotas() {
    let f = fixture_with_limits(&[("mailbox_quota_bytes", "4096")]).await;
    let path = "/v1/pilots/proef/services/ngo-kvk/bericht";
    let purpose = &[("ketenpoort-purpose", "begeleiding")];
    let doc = json!({"vnummer": "5550001234", "onderwerp": "x".repeat(1000)});
    let mut stored = 0;
    let last = loop {
        let r = f
            .gemeente
            .send(Method::POST, path, purpose, Some(&doc))
            .await
            .unwrap();
        if r.status != 201 {
            break r;
        }
        stored += 1;
        assert!(stored < 10, "no quota");
    };
    assert_eq!(last.status, 507, "{:?}", last.json());
    assert_eq!(last.json()["type"], "urn:ketenpoort:problem:mailbox-full");
    assert!(stored >= 1);
    // Picking one up makes room again.
    let list = f
        .ngo_kvk
        .send(Method::GET, "/v1/inbox", &[], None)
        .await
        .unwrap();
    let id = list.json()["items"][0]["id"].as_u64().unwrap();
    let del = f
        .ngo_kvk
        .send(Method::DELETE, &format!("/v1/inbox/{id}"), &[], None)
        .await
        .unwrap();
    assert_eq!(del.status, 204);
    let r = f
        .gemeente
        .send(Method::POST, path, purpose, Some(&doc))
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_the_gateways_alone() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture_with(|pki| {
        // An existing data directory with the usual modes.
        let d = pki.data_dir();
        std::fs::create_dir_all(d.join("old")).unwrap();
        std::fs::write(d.join("old/file"), b"x").unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(d.join("old/file"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    })
    .await;
    let path = "/v1/pilots/proef/services/ngo-kvk/bericht";
    let r = f
        .gemeente
        .send(
            Method::POST,
            path,
            &[("ketenpoort-purpose", "begeleiding")],
            Some(&json!({"vnummer": "5550001234", "onderwerp": "x"})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let mut open = Vec::new();
    let mut stack = vec![f.pki.data_dir()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.permissions().mode() & 0o077 != 0 {
            open.push(format!("{} {:o}", p.display(), m.permissions().mode()));
        }
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(open.is_empty(), "readable by others: {open:#?}");
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_recorded_but_cannot_grow_the_log_at_handshake_rate() {
    let f = fixture().await;
    // A valid certificate of the trusted CA, of no partner.
    let stranger = f
        .pki
        .client(f.gw.addr, &f.pki.oin_cert("00000099000000777000"));
    let size = f.gw.gateway.audit.view().head().size;
    let r = stranger
        .send(Method::GET, "/v1/whoami", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["type"], "urn:ketenpoort:problem:unknown-partner");
    let rec = record(&f, ids(&r)[0]).await;
    assert_eq!(rec.entry.reason, "unknown-partner");
    assert_eq!(rec.entry.sender, "unknown");
    assert_eq!(rec.entry.decision, ketenpoort::audit::Decision::Refused);
    // Fifty more within the minute: folded, not one record each.
    for _ in 0..50 {
        let r = stranger.send(Method::GET, "/v1/whoami", &[], None).await;
        if let Ok(r) = r {
            assert_eq!(r.status, 403);
            assert!(r.header("ketenpoort-disclosure").is_none());
        }
    }
    assert_eq!(f.gw.gateway.audit.view().head().size, size + 1);
    // A partner's path that is no route is recorded too (its own window).
    let r = f
        .gemeente
        .send(Method::GET, "/v1/nergens", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let rec = record(&f, ids(&r)[0]).await;
    assert_eq!(
        (rec.entry.reason.as_str(), rec.entry.sender.as_str()),
        ("not-found", "gemeente")
    );
    f.gw.stop().await;
}
