//! The exchange as partners use it: real mutual TLS to the gateway, real
//! back-end servers with mutual TLS behind it, a real audit log on disk.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hyper::{Method, StatusCode};
use ketenpoort::client::PartnerClient;
use ketenpoort::demo::backend::{self, Incoming, Reply};
use ketenpoort::pki::{Ca, Issued, LeafSpec};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const GEMEENTE_OIN: &str = "00000099000000102000";
const BUITEN_OIN: &str = "00000099000000999000";

const PILOT_PROEF: &str = r#"[pilot]
id = "proef"
name = "LVV Proef"
partners = ["gemeente", "dtv", "ngo-kvk", "ngo-pinned", "traag", "onzin", "groot", "vreemd", "dicht"]
[pilot.covenant]
id = "LVV-PROEF"
version = "1.0"
valid_from = 2019-01-01
valid_until = 2099-12-31

[purposes.casusoverleg]
description = "Casusoverleg"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 730

[purposes.begeleiding]
description = "Begeleiding"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 30

[[rules]]
id = "proef-casus"
purpose = "casusoverleg"
service = "dtv/dossier"
consumers = ["gemeente", "ngo-pinned"]
response = ["vnummer", "naam", "adres.woonplaats", "procedures[].status"]
request = ["vnummer", "naam"]

[[rules]]
id = "proef-lijst"
purpose = "casusoverleg"
service = "dtv/lijst"
consumers = ["gemeente"]
response = ["vnummer", "naam"]

[[rules]]
id = "proef-aanvraag"
purpose = "casusoverleg"
service = "dtv/aanvraag"
consumers = ["gemeente"]
request = ["vnummer", "naam"]
response = ["vnummer", "status"]

[[rules]]
id = "proef-bericht"
purpose = "begeleiding"
service = "ngo-kvk/bericht"
consumers = ["gemeente"]
request = ["vnummer", "onderwerp"]

[[rules]]
id = "proef-traag"
purpose = "casusoverleg"
service = "traag/dossier"
consumers = ["gemeente"]
response = ["vnummer"]

[[rules]]
id = "proef-onzin"
purpose = "casusoverleg"
service = "onzin/dossier"
consumers = ["gemeente"]
response = ["vnummer"]

[[rules]]
id = "proef-groot"
purpose = "casusoverleg"
service = "groot/dossier"
consumers = ["gemeente"]
response = ["vnummer"]

[[rules]]
id = "proef-vreemd"
purpose = "casusoverleg"
service = "vreemd/dossier"
consumers = ["gemeente"]
response = ["vnummer"]

[[rules]]
id = "proef-dicht"
purpose = "casusoverleg"
service = "dicht/dossier"
consumers = ["gemeente"]
response = ["vnummer"]
"#;

const PILOT_OUD: &str = r#"[pilot]
id = "oud"
name = "LVV Oud"
partners = ["gemeente", "dtv"]
[pilot.covenant]
id = "LVV-OUD"
version = "1.0"
valid_from = 2019-01-01
valid_until = 2020-12-31

[purposes.casusoverleg]
description = "Casusoverleg"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 730

[purposes.medisch]
description = "Medisch"
legal_basis = "AVG art. 9(2)(h)"
retention_days = 365
special_categories = ["health"]

[[rules]]
id = "oud-casus"
purpose = "casusoverleg"
service = "dtv/dossier"
consumers = ["gemeente"]
response = ["vnummer"]
"#;

fn simple_service(id: &str, port: u16) -> String {
    format!(
        r#"
[[partner]]
id = "{id}"
name = "{id}"
kind = "chain"
oin = "0000009900000050{:04}"
backend = "https://localhost:{port}"
[[partner.service]]
name = "dossier"
path = "/dossiers/{{vnummer}}"
methods = ["GET"]
subject = "vnummer"
[partner.service.fields]
vnummer = "identity"
"#,
        port % 10000
    )
}

/// What the main back-end saw.
type Seen = Arc<Mutex<Vec<Incoming>>>;

fn dossier(v: &str) -> Value {
    json!({
        "vnummer": v,
        "naam": "Testpersoon (synthetisch)",
        "geboortedatum": "1990-05-17",
        "adres": {"woonplaats": "Utrecht", "straat": "Teststraat 1", "geheim": {"diep": "x"}},
        "procedures": [{"status": "lopend", "besluit": "afwijzing", "intern": {"a": 1}}, {"status": "afgerond"}],
        "medisch": {"bijzonderheden": "synthetisch medisch gegeven"},
        "intern": {"notitie": "niet voor derden"}
    })
}

fn dtv_handler(seen: Seen) -> backend::Handler {
    Arc::new(move |req: Incoming| {
        seen.lock().unwrap().push(req.clone());
        let path = req.path.clone();
        if let Some(v) = path.strip_prefix("/dossiers/") {
            if v == "5559999999" {
                return Reply::json(StatusCode::NOT_FOUND, &json!({"error": "onbekend"}));
            }
            return match req.method {
                Method::GET => Reply::json(StatusCode::OK, &dossier(v)),
                Method::DELETE => Reply {
                    status: StatusCode::NO_CONTENT,
                    body: Default::default(),
                    delay: None,
                },
                _ => {
                    let mut echo: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                    echo["intern"] = json!({"ontvangen": true});
                    echo["medisch"] = json!({"bijzonderheden": "synthetisch"});
                    Reply::json(StatusCode::OK, &echo)
                }
            };
        }
        if path.starts_with("/lijsten/") {
            let list: Vec<Value> = ["5550000001", "5550000002", "5550000003"]
                .iter()
                .map(|v| dossier(v))
                .collect();
            return Reply::json(StatusCode::OK, &Value::Array(list));
        }
        if path == "/aanvragen" {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            return Reply::json(
                StatusCode::CREATED,
                &json!({"vnummer": body["vnummer"], "status": "ontvangen", "intern": "x"}),
            );
        }
        Reply::json(StatusCode::NOT_FOUND, &json!({}))
    })
}

struct Fixture {
    pki: TestPki,
    gw: TestGateway,
    seen: Seen,
    gemeente: PartnerClient,
    ngo_pinned: PartnerClient,
    ngo_kvk: PartnerClient,
    buiten: PartnerClient,
    gemeente_cert: Issued,
}

async fn start_backend(pki_ca: &Ca, handler: backend::Handler, trusted_ca: &str) -> u16 {
    let cert = pki_ca
        .issue(&LeafSpec::server("backend", &["localhost", "127.0.0.1"]))
        .unwrap();
    let tls = backend::tls_config(
        trusted_ca.as_bytes(),
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )
    .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(backend::serve(l, tls, handler, std::future::pending()));
    port
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

async fn fixture_with(before_start: impl FnOnce(&TestPki)) -> Fixture {
    let pki = TestPki::new();
    let seen: Seen = Arc::default();
    let ca = &pki.ca;
    let dtv = start_backend(ca, dtv_handler(seen.clone()), &ca.cert_pem).await;
    let slow = start_backend(
        ca,
        Arc::new(|_| Reply {
            delay: Some(Duration::from_secs(3)),
            ..Reply::json(StatusCode::OK, &json!({"vnummer": "5550000001"}))
        }),
        &ca.cert_pem,
    )
    .await;
    let garbage = start_backend(
        ca,
        Arc::new(|_| Reply {
            status: StatusCode::OK,
            body: "<html>dit is geen JSON".into(),
            delay: None,
        }),
        &ca.cert_pem,
    )
    .await;
    let huge = start_backend(
        ca,
        Arc::new(|_| {
            Reply::json(
                StatusCode::OK,
                &json!({"vnummer": "5550000001", "blob": "x".repeat(200_000)}),
            )
        }),
        &ca.cert_pem,
    )
    .await;
    let other_ca = Ca::generate("another CA").unwrap();
    let strange = start_backend(
        &other_ca,
        Arc::new(|_| Reply::json(StatusCode::OK, &json!({}))),
        &ca.cert_pem,
    )
    .await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };

    let mut partners = format!(
        r#"[[partner]]
id = "dtv"
name = "Dienst Terugkeer en Vertrek"
kind = "chain"
oin = "{DTV_OIN}"
backend = "https://localhost:{dtv}"
[[partner.service]]
name = "dossier"
path = "/dossiers/{{vnummer}}"
methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
subject = "vnummer"
[partner.service.fields]
vnummer = "identity"
naam = "identity"
geboortedatum = "identity"
"adres.woonplaats" = "contact"
"adres.straat" = "contact"
"procedures[].status" = "procedure"
"procedures[].besluit" = "procedure"
"medisch.bijzonderheden" = "health"
[[partner.service]]
name = "lijst"
path = "/lijsten/{{groep}}"
methods = ["GET"]
subject = "vnummer"
[partner.service.fields]
vnummer = "identity"
naam = "identity"
[[partner.service]]
name = "aanvraag"
path = "/aanvragen"
methods = ["POST"]
subject = "vnummer"
[partner.service.fields]
vnummer = "identity"
naam = "identity"
status = "procedure"

[[partner]]
id = "gemeente"
name = "Gemeente Proef"
kind = "municipality"
oin = "{GEMEENTE_OIN}"

[[partner]]
id = "buiten"
name = "Buitenstaander"
kind = "chain"
oin = "{BUITEN_OIN}"

[[partner]]
id = "ngo-kvk"
name = "NGO met PKIoverheid"
kind = "ngo"
kvk = "{NGO_KVK}"
mailbox = true
[[partner.service]]
name = "bericht"
methods = ["POST", "PUT"]
subject = "vnummer"
[partner.service.fields]
vnummer = "identity"
onderwerp = "guidance"
"medisch.bijzonderheden" = "health"

[[partner]]
id = "ngo-pinned"
name = "NGO zonder PKIoverheid"
kind = "ngo"
spki_sha256 = ["{}"]
"#,
        hex::encode(pki.ngo_pinned.spki_sha256)
    );
    for (id, port) in [
        ("traag", slow),
        ("onzin", garbage),
        ("groot", huge),
        ("vreemd", strange),
        ("dicht", closed),
    ] {
        partners.push_str(&simple_service(id, port));
    }
    pki.write_config("partners.toml", &partners);
    pki.write_config("pilots/proef.toml", PILOT_PROEF);
    pki.write_config("pilots/oud.toml", PILOT_OUD);
    let cfg = std::fs::read_to_string(pki.config_file()).unwrap();
    pki.write_config(
        "ketenpoort.toml",
        &format!(
            "{cfg}\n[limits]\nmax_body_bytes = 8192\nmax_response_bytes = 65536\nbackend_timeout_secs = 1\nmailbox_sweep_secs = 3600\n"
        ),
    );
    before_start(&pki);
    let gw = pki.start().await;
    let gemeente_cert = pki.oin_cert(GEMEENTE_OIN);
    let gemeente = pki.client(gw.addr, &gemeente_cert);
    let ngo_pinned = pki.client(gw.addr, &pki.ngo_pinned);
    let ngo_kvk = pki.client(gw.addr, &pki.kvk_cert(NGO_KVK));
    let buiten = pki.client(gw.addr, &pki.oin_cert(BUITEN_OIN));
    Fixture {
        pki,
        gw,
        seen,
        gemeente,
        ngo_pinned,
        ngo_kvk,
        buiten,
        gemeente_cert,
    }
}

fn ids(r: &ketenpoort::client::Reply) -> Vec<u64> {
    r.header("ketenpoort-disclosure")
        .unwrap_or("")
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect()
}

async fn record(f: &Fixture, id: u64) -> ketenpoort::audit::Record {
    let view = f.gw.gateway.audit.view().clone();
    tokio::task::spawn_blocking(move || view.record(id).unwrap())
        .await
        .unwrap()
}

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
    let withheld = r.header("ketenpoort-withheld").unwrap();
    for w in [
        "medisch",
        "intern",
        "adres.straat",
        "adres.geheim",
        "procedures[].besluit",
        "geboortedatum",
    ] {
        assert!(withheld.split(',').any(|x| x == w), "{w} not in {withheld}");
    }
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
    assert_eq!(e.subject, Some(f.gw.gateway.audit.subject("5550001234")));
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
        assert!(req.entry.withheld.contains(&"medisch".to_string()));
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
            Some(f.gw.gateway.audit.subject(&format!("555000000{}", i + 1)))
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
        assert!(r.header("ketenpoort-withheld").unwrap().contains("medisch"));
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
        ketenpoort::exchange::sweep_mailboxes(&f.gw.gateway, in_40_days).await,
        1
    );
    let r = f
        .ngo_kvk
        .send(Method::GET, "/v1/inbox", &[], None)
        .await
        .unwrap();
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 0);
    let rec = record(&f, head).await;
    assert_eq!(rec.entry.kind, ketenpoort::audit::Kind::MailboxExpiry);
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
        if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            current = format!("/{p}");
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
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("5550"),
        "a V-nummer in the log lines"
    );
}
