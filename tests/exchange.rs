//! The exchange as partners use it: real mutual TLS to the gateway, real
//! back-end servers with mutual TLS behind it, a real audit log on disk.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::fixture::*;
use common::*;
use hyper::Method;
use ketenpoort::client::PartnerClient;
use serde_json::{Value, json};

const CASUS: &[(&str, &str)] = &[("ketenpoort-purpose", "casusoverleg")];

/// Every leaf path of a document (`a.b`, arrays transparent).
fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                leaves(
                    x,
                    &if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    },
                    out,
                );
            }
        }
        Value::Array(a) => a.iter().for_each(|x| leaves(x, prefix, out)),
        _ => out.push(prefix.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_is_minimised_at_every_depth_recorded_and_traced() {
    let f = fixture().await;
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = f
        .gemeente
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/dossier/5550001234",
            &[
                ("ketenpoort-purpose", "casusoverleg"),
                ("traceparent", trace),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    let body = r.json();
    assert_eq!(
        body,
        json!({"vnummer": "5550001234", "naam": "Testpersoon (synthetisch)", "adres": {"woonplaats": "Utrecht"},
               "procedures": [{"status": "lopend"}, {"status": "afgerond"}]})
    );
    let mut got = Vec::new();
    leaves(&body, "", &mut got);
    for l in &got {
        assert!(
            ["vnummer", "naam", "adres.woonplaats", "procedures.status"].contains(&l.as_str()),
            "{l} leaked"
        );
    }
    // Declared paths withheld are named; undeclared keys (intern,
    // adres.geheim, procedures[].intern) only counted.
    assert_eq!(
        r.header("ketenpoort-withheld").unwrap(),
        "adres.straat,geboortedatum,medisch.bijzonderheden,procedures[].besluit"
    );
    assert_eq!(r.header("ketenpoort-withheld-undeclared"), Some("3"));
    // The back-end got the caller's trace, the purpose and who asks.
    let seen = f.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.path, "/dossiers/5550001234");
    assert!(
        seen.headers["traceparent"]
            .to_str()
            .unwrap()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    );
    assert_eq!(seen.headers["ketenpoort-consumer"], "gemeente");
    assert_eq!(seen.headers["ketenpoort-purpose"], "casusoverleg");
    assert_eq!(seen.headers["ketenpoort-pilot"], "proef");
    // Each once: made at load (consumer, pilot) or taken from the caller
    // (purpose), not added beside another.
    for h in [
        "ketenpoort-consumer",
        "ketenpoort-purpose",
        "ketenpoort-pilot",
    ] {
        assert_eq!(seen.headers.get_all(h).iter().count(), 1, "{h}");
    }
    // One Host, the back-end's authority as partners.toml gives it: the
    // gateway sets it (over HTTP/1 the client would otherwise format its
    // own per request; over HTTP/2 it travels beside an equal :authority).
    assert_eq!(seen.headers.get_all("host").iter().count(), 1);
    let host = seen.headers["host"].to_str().unwrap();
    assert!(host.starts_with("localhost:"), "{host}");
    // One record, durable, without the V-nummer.
    let id = ids(&r);
    assert_eq!(id.len(), 1);
    let rec = record(&f, id[0]).await;
    let e = &rec.entry;
    assert_eq!(
        (e.sender.as_str(), e.recipient.as_str(), e.rule_id.as_str()),
        ("dtv", "gemeente", "proef-casus")
    );
    assert_eq!(e.decision, ketenpoort::audit::Decision::Disclosed);
    assert_eq!(
        e.subject,
        Some(f.gw.gateway.audit.subject("proef", "5550001234").unwrap())
    );
    assert_eq!(
        e.trace_id.map(hex::encode).as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(
        e.payload_sha256,
        Some(ketenpoort::identity::sha256(&r.body))
    );
    let der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(f.gemeente_cert.cert_pem.as_bytes())
            .unwrap()
    };
    assert_eq!(
        e.recipient_cert_sha256,
        Some(ketenpoort::identity::sha256(&der))
    );
    let bytes = rec.encode();
    assert!(
        !bytes.windows(10).any(|w| w == b"5550001234"),
        "V-nummer in the audit record"
    );
    assert!(
        !bytes.windows(11).any(|w| w == b"Testpersoon"),
        "a name in the audit record"
    );
    // A garbage traceparent is replaced, not refused.
    let r = f
        .gemeente
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/dossier/5550001234",
            &[
                ("ketenpoort-purpose", "casusoverleg"),
                ("traceparent", "zz-garbage"),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("traceparent").unwrap().starts_with("00-"));
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_minimises_both_directions() {
    let f = fixture().await;
    for m in [Method::POST, Method::PUT, Method::PATCH] {
        let doc = json!({"vnummer": "5550001234", "naam": "Testpersoon", "medisch": {"bijzonderheden": "x"}, "adres": {"straat": "y"}});
        let r = f
            .gemeente
            .send(
                m.clone(),
                "/v1/pilots/proef/services/dtv/dossier/5550001234",
                CASUS,
                Some(&doc),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{m}: {:?}", r.json());
        let sent: Value =
            serde_json::from_slice(&f.seen.lock().unwrap().last().unwrap().body).unwrap();
        assert_eq!(
            sent,
            json!({"vnummer": "5550001234", "naam": "Testpersoon"}),
            "{m}: what reached the provider"
        );
        assert_eq!(
            r.json(),
            json!({"vnummer": "5550001234", "naam": "Testpersoon"}),
            "{m}: what came back"
        );
        let rec_ids = ids(&r);
        assert_eq!(rec_ids.len(), 2, "{m}: a record per direction");
        let req = record(&f, rec_ids[0]).await;
        assert_eq!(
            (req.entry.sender.as_str(), req.entry.recipient.as_str()),
            ("gemeente", "dtv")
        );
        assert!(
            req.entry
                .withheld
                .iter()
                .any(|w| w == "medisch.bijzonderheden")
        );
    }
    let r = f
        .gemeente
        .send(
            Method::DELETE,
            "/v1/pilots/proef/services/dtv/dossier/5550001234",
            CASUS,
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(ids(&r).len(), 1);
    assert_eq!(
        f.seen.lock().unwrap().last().unwrap().method,
        Method::DELETE
    );
    // POST to a service without the subject in its path: taken from the body.
    let r = f
        .gemeente
        .send(
            Method::POST,
            "/v1/pilots/proef/services/dtv/aanvraag",
            CASUS,
            Some(&json!({"vnummer": "5550004321", "naam": "T", "extra": 1})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(
        r.json(),
        json!({"vnummer": "5550004321", "status": "ontvangen"})
    );
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_answers_get_one_record_per_subject() {
    let f = fixture().await;
    let r = f
        .gemeente
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/lijst/groep-a",
            CASUS,
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body.as_array().unwrap().len(), 3);
    for el in body.as_array().unwrap() {
        assert_eq!(el.as_object().unwrap().len(), 2, "{el}");
    }
    let rec_ids = ids(&r);
    assert_eq!(rec_ids.len(), 3);
    for (i, id) in rec_ids.iter().enumerate() {
        let rec = record(&f, *id).await;
        assert_eq!(
            rec.entry.subject,
            Some(
                f.gw.gateway
                    .audit
                    .subject("proef", &format!("555000000{}", i + 1))
                    .unwrap()
            )
        );
    }
    f.gw.stop().await;
}

/// One refusal case: who, method, path, headers, body → status, problem type.
type Case<'a> = (
    &'a PartnerClient,
    Method,
    String,
    Vec<(&'a str, &'a str)>,
    Option<Value>,
    u16,
    &'a str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_a_recorded_problem_and_reaches_no_backend() {
    let f = fixture().await;
    let p = "/v1/pilots/proef/services/dtv/dossier/5550001234";
    let big = json!({"vnummer": "5550001234", "naam": "x".repeat(9000)});
    let cases: Vec<Case> = vec![
        (
            &f.ngo_pinned,
            Method::GET,
            "/v1/pilots/proef/services/dtv/lijst/a".into(),
            CASUS.to_vec(),
            None,
            403,
            "no-rule",
        ),
        (
            &f.gemeente,
            Method::GET,
            p.into(),
            vec![("ketenpoort-purpose", "medisch")],
            None,
            403,
            "purpose-not-in-covenant",
        ),
        (
            &f.gemeente,
            Method::GET,
            "/v1/pilots/oud/services/dtv/dossier/5550001234".into(),
            CASUS.to_vec(),
            None,
            403,
            "covenant-expired",
        ),
        (
            &f.buiten,
            Method::GET,
            p.into(),
            CASUS.to_vec(),
            None,
            403,
            "partner-not-in-pilot",
        ),
        (
            &f.gemeente,
            Method::GET,
            p.into(),
            vec![],
            None,
            400,
            "missing-purpose",
        ),
        (
            &f.gemeente,
            Method::GET,
            p.into(),
            vec![("ketenpoort-purpose", "nieuwsgierigheid")],
            None,
            400,
            "unknown-purpose",
        ),
        (
            &f.gemeente,
            Method::GET,
            p.into(),
            vec![
                ("ketenpoort-purpose", "casusoverleg"),
                ("ketenpoort-purpose", "medisch"),
            ],
            None,
            400,
            "invalid-purpose",
        ),
        (
            &f.gemeente,
            Method::GET,
            p.into(),
            vec![("ketenpoort-purpose", "Casus Overleg!")],
            None,
            400,
            "invalid-purpose",
        ),
        (
            &f.gemeente,
            Method::GET,
            "/v1/pilots/proef/services/dtv/dossier/12345".into(),
            CASUS.to_vec(),
            None,
            400,
            "invalid-subject",
        ),
        (
            &f.gemeente,
            Method::POST,
            "/v1/pilots/proef/services/dtv/aanvraag".into(),
            CASUS.to_vec(),
            Some(json!({"naam": "x"})),
            400,
            "subject-missing",
        ),
        (
            &f.gemeente,
            Method::POST,
            p.into(),
            CASUS.to_vec(),
            Some(json!({"vnummer": "5550009999"})),
            400,
            "invalid-subject",
        ),
        (
            &f.gemeente,
            Method::GET,
            "/v1/pilots/nergens/services/dtv/dossier/5550001234".into(),
            CASUS.to_vec(),
            None,
            404,
            "unknown-pilot",
        ),
        (
            &f.gemeente,
            Method::GET,
            "/v1/pilots/proef/services/niemand/dossier/5550001234".into(),
            CASUS.to_vec(),
            None,
            404,
            "unknown-provider",
        ),
        (
            &f.gemeente,
            Method::GET,
            "/v1/pilots/proef/services/dtv/niets/5550001234".into(),
            CASUS.to_vec(),
            None,
            404,
            "unknown-service",
        ),
        (
            &f.gemeente,
            Method::POST,
            "/v1/pilots/proef/services/dtv/lijst/a".into(),
            CASUS.to_vec(),
            Some(json!({})),
            405,
            "method-not-allowed",
        ),
        (
            &f.gemeente,
            Method::POST,
            p.into(),
            CASUS.to_vec(),
            Some(big),
            413,
            "body-too-large",
        ),
        (
            &f.gemeente,
            Method::GET,
            "/v1/pilots/proef/services/dtv/dossier/5559999999".into(),
            CASUS.to_vec(),
            None,
            404,
            "not-found-at-provider",
        ),
        (
            &f.gemeente,
            Method::GET,
            "/v1/pilots/proef/services/traag/dossier/5550001234".into(),
            CASUS.to_vec(),
            None,
            504,
            "backend-timeout",
        ),
        (
            &f.gemeente,
            Method::GET,
            "/v1/pilots/proef/services/onzin/dossier/5550001234".into(),
            CASUS.to_vec(),
            None,
            502,
            "backend-bad-answer",
        ),
        (
            &f.gemeente,
            Method::GET,
            "/v1/pilots/proef/services/groot/dossier/5550001234".into(),
            CASUS.to_vec(),
            None,
            502,
            "backend-bad-answer",
        ),
        (
            &f.gemeente,
            Method::GET,
            "/v1/pilots/proef/services/vreemd/dossier/5550001234".into(),
            CASUS.to_vec(),
            None,
            502,
            "backend-certificate",
        ),
        (
            &f.gemeente,
            Method::GET,
            "/v1/pilots/proef/services/dicht/dossier/5550001234".into(),
            CASUS.to_vec(),
            None,
            502,
            "backend-unreachable",
        ),
    ];
    for (client, method, path, headers, body, status, ty) in cases {
        let before = f.seen.lock().unwrap().len();
        let r = client
            .send(method.clone(), &path, &headers, body.as_ref())
            .await
            .unwrap();
        assert_eq!(
            r.status.as_u16(),
            status,
            "{method} {path} {headers:?}: {:?}",
            r.json()
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{path}"
        );
        let j = r.json();
        assert_eq!(
            j["type"],
            format!("urn:ketenpoort:problem:{ty}"),
            "{method} {path}"
        );
        assert_eq!(j["status"], status);
        let rec_ids = ids(&r);
        assert_eq!(rec_ids.len(), 1, "{ty}: the refusal is recorded");
        let rec = record(&f, rec_ids[0]).await;
        assert_eq!(
            rec.entry.decision,
            ketenpoort::audit::Decision::Refused,
            "{ty}"
        );
        if status != 404 || ty != "not-found-at-provider" {
            assert_eq!(
                f.seen.lock().unwrap().len(),
                before,
                "{ty}: the back-end was called"
            );
        }
        assert!(
            !String::from_utf8_lossy(&r.body).contains("5550001234"),
            "{ty}: a V-nummer in the problem"
        );
    }
    // Not JSON, and malformed JSON, and duplicate keys.
    for (ct, body, ty) in [
        ("text/plain", "hallo", "unsupported-media-type"),
        ("application/json", "{\"vnummer\": ", "malformed-json"),
        (
            "application/json",
            "{\"vnummer\": \"5550001234\", \"naam\": \"a\", \"naam\": \"b\"}",
            "malformed-json",
        ),
    ] {
        let req = hyper::Request::post(
            "https://localhost/v1/pilots/proef/services/dtv/dossier/5550001234",
        )
        .header("ketenpoort-purpose", "casusoverleg")
        .header("content-type", ct)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
        let r = request(
            f.gw.addr,
            client_config(&f.pki.ca.cert_pem, Some(&f.gemeente_cert), &[b"http/1.1"]),
            req,
        )
        .await
        .unwrap();
        assert_eq!(
            r.json()["type"],
            format!("urn:ketenpoort:problem:{ty}"),
            "{body}"
        );
    }
    // Path traversal and encoded slashes never reach a back-end path.
    for path in [
        "/v1/pilots/proef/services/dtv/dossier/..",
        "/v1/pilots/proef/services/dtv/dossier/a%2F..%2Fb",
    ] {
        let r = f
            .gemeente
            .send(Method::GET, path, CASUS, None)
            .await
            .unwrap();
        assert_eq!(
            r.json()["type"],
            "urn:ketenpoort:problem:bad-route",
            "{path}"
        );
    }
    let r = f
        .gemeente
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/dossier/5550001234?naam=x",
            CASUS,
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.json()["type"], "urn:ketenpoort:problem:query-not-allowed");
    // Other partners were served all along.
    let r = f.gemeente.send(Method::GET, p, CASUS, None).await.unwrap();
    assert_eq!(r.status, 200);
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_delivered_when_the_audit_log_cannot_write() {
    let f = fixture_with(|pki| {
        let segs = pki.data_dir().join("audit/segments");
        std::fs::create_dir_all(&segs).unwrap();
        std::os::unix::fs::symlink(
            "/dev/full",
            segs.join(ketenpoort::audit::segment::file_name(0)),
        )
        .unwrap();
    })
    .await;
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
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["type"], "urn:ketenpoort:problem:audit-unavailable");
    assert!(!String::from_utf8_lossy(&r.body).contains("Testpersoon"));
    let called = f.seen.lock().unwrap().len();
    let r = f
        .gemeente
        .send(
            Method::POST,
            "/v1/pilots/proef/services/dtv/aanvraag",
            CASUS,
            Some(&json!({"vnummer": "5550001234", "naam": "x"})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(
        f.seen.lock().unwrap().len(),
        called,
        "a request went out without its record"
    );
    let r = f
        .gemeente
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/dossier/5550001234",
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        r.status, 503,
        "a refusal that cannot be recorded is 503 too"
    );
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_round_trip_and_expiry() {
    let f = fixture().await;
    let path = "/v1/pilots/proef/services/ngo-kvk/bericht";
    let purpose = [("ketenpoort-purpose", "begeleiding")];
    for i in 0..2 {
        let doc = json!({"vnummer": "5550001234", "onderwerp": format!("bericht {i}"), "medisch": {"bijzonderheden": "x"}});
        let r = f
            .gemeente
            .send(Method::POST, path, &purpose, Some(&doc))
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{:?}", r.json());
        assert!(
            r.header("ketenpoort-withheld")
                .unwrap()
                .contains("medisch.bijzonderheden")
        );
    }
    let r = f
        .ngo_kvk
        .send(Method::GET, "/v1/inbox?limit=1", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let items = r.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    let cursor = r.json()["next_cursor"].as_u64().unwrap();
    let r = f
        .ngo_kvk
        .send(
            Method::GET,
            &format!("/v1/inbox?cursor={cursor}"),
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        r.json()["items"].as_array().unwrap().len(),
        1,
        "second page"
    );
    let id = items[0]["id"].as_u64().unwrap();
    let r = f
        .ngo_kvk
        .send(Method::GET, &format!("/v1/inbox/{id}"), &[], None)
        .await
        .unwrap();
    assert_eq!(
        r.json()["document"],
        json!({"vnummer": "5550001234", "onderwerp": "bericht 1"}),
        "newest first, minimised"
    );
    // Someone else's mailbox is not yours.
    let r = f
        .ngo_pinned
        .send(Method::GET, &format!("/v1/inbox/{id}"), &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = f
        .ngo_kvk
        .send(Method::DELETE, &format!("/v1/inbox/{id}"), &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let r = f
        .ngo_kvk
        .send(Method::GET, &format!("/v1/inbox/{id}"), &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    // The other one is never picked up: after the purpose's retention (30
    // days) it is deleted, and that is recorded.
    let in_40_days =
        (time::OffsetDateTime::now_utc() + time::Duration::days(40)).unix_timestamp() * 1_000_000;
    let head = f.gw.gateway.audit.view().head().size;
    assert_eq!(
        ketenpoort::exchange::inbox::sweep_mailboxes(&f.gw.gateway, in_40_days).await,
        1
    );
    let r = f
        .ngo_kvk
        .send(Method::GET, "/v1/inbox", &[], None)
        .await
        .unwrap();
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 0);
    let rec = record(&f, head).await;
    assert_eq!(rec.entry.kind, ketenpoort::audit::RecordKind::MailboxExpiry);
    assert_eq!(rec.entry.recipient, "ngo-kvk");
    // A mailbox does not answer GET on the service.
    let r = f
        .gemeente
        .send(Method::GET, path, &purpose, None)
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    f.gw.stop().await;
}

#[test]
fn openapi_lists_exactly_the_routes_served() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.yaml"),
    )
    .unwrap();
    let mut documented = Vec::new();
    let mut in_paths = false;
    let mut current = String::new();
    for line in text.lines() {
        if line.starts_with("paths:") {
            in_paths = true;
            continue;
        }
        if in_paths && !line.starts_with(' ') && !line.is_empty() {
            in_paths = false;
        }
        if !in_paths {
            continue;
        }
        // Paths are relative to the server URL, which ends in the major
        // version (API Design Rules, /core/uri-version).
        if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            current = format!("/v1/{p}");
        } else if let Some(m) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':'))
            && ["get", "post", "put", "patch", "delete"].contains(&m)
        {
            documented.push(format!("{} {current}", m.to_uppercase()));
        }
    }
    let mut served: Vec<String> = ketenpoort::exchange::route::ROUTES
        .iter()
        .flat_map(|(ms, p)| ms.iter().map(move |m| format!("{m} {p}")))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
    // Every problem type the gateway can send is documented.
    for k in ketenpoort::problem::ALL {
        assert!(
            text.contains(k.slug),
            "problem type {} is not in the OpenAPI document",
            k.slug
        );
    }
}

/// The JSON form served at `/v1/openapi.json` (API Design Rules) lists the
/// same routes and version as the YAML; every answer of the partner API,
/// refusals too, carries `API-Version`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_json_is_served_and_every_answer_names_the_api_version() {
    let f = fixture().await;
    let r = f
        .gemeente
        .send(Method::GET, "/v1/openapi.json", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        doc["info"]["version"],
        ketenpoort::exchange::wire::API_VERSION_VALUE
    );
    let mut documented: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
                .map(move |m| format!("{} /v1{p}", m.to_uppercase()))
        })
        .collect();
    let mut served: Vec<String> = ketenpoort::exchange::route::ROUTES
        .iter()
        .flat_map(|(ms, p)| ms.iter().map(move |m| format!("{m} {p}")))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
    for (path, status) in [("/v1/whoami", 200), ("/v1/nowhere", 404)] {
        let r = f.gemeente.send(Method::GET, path, &[], None).await.unwrap();
        assert_eq!(r.status, status);
        assert_eq!(
            r.header("api-version"),
            Some(ketenpoort::exchange::wire::API_VERSION_VALUE),
            "{path}"
        );
    }
    f.gw.stop().await;
}

#[test]
fn demo_once_plays_every_step_as_expected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::create_dir_all(cfg.join("pilots")).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for f in ["ketenpoort.toml", "partners.toml"] {
        std::fs::copy(src.join(f), cfg.join(f)).unwrap();
    }
    for e in std::fs::read_dir(src.join("pilots")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), cfg.join("pilots").join(e.file_name())).unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["demo", "--once"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verified"), "{stdout}");
    // A demo V-nummer as a word of its own: "5550" also turns up inside
    // timestamps' microseconds and hashes, which are no V-nummers.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let vnummer = stderr
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| w.len() == 10 && w.starts_with("5550") && w.bytes().all(|b| b.is_ascii_digit()));
    assert!(vnummer.is_none(), "a V-nummer in the log lines");
}
