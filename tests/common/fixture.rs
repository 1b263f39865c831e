//! A deployment with services, two pilots and real back-ends (one healthy,
//! one slow, one answering garbage, one answering too much, one with a
//! certificate from another CA, one not listening), for exchange and console
//! tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use hyper::{Method, StatusCode};
use ketenpoort::client::PartnerClient;
use ketenpoort::demo::backend::{self, Canned, Incoming};
use ketenpoort::pki::{Ca, Issued, LeafSpec};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub const GEMEENTE_OIN: &str = "00000099000000102000";
pub const BUITEN_OIN: &str = "00000099000000999000";

const PILOT_PROEF: &str = r#"[pilot]
id = "proef"
name = "LVV Proef"
partners = ["gemeente", "dtv", "ngo-kvk", "ngo-pinned", "traag", "onzin", "groot", "vreemd", "dicht", "vijand"]
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

[purposes.monitoring]
description = "Monitoring door onderzoekers"
legal_basis = "AVG art. 6(1)(e); art. 89"
retention_days = 365

[[rules]]
id = "proef-vijand"
purpose = "casusoverleg"
service = "vijand/dossier"
consumers = ["gemeente"]
response = ["vnummer", "naam", "nationaliteit", "adres"]
request = ["vnummer", "naam"]

[[rules]]
id = "proef-vijand-lijst"
purpose = "casusoverleg"
service = "vijand/lijst"
consumers = ["gemeente"]
response = ["vnummer", "naam"]

[[rules]]
id = "proef-onderzoek"
purpose = "monitoring"
service = "vijand/dossier"
consumers = ["gemeente"]
response = ["vnummer", "naam"]
transforms = [{ field = "vnummer", pseudonymise = true }, { field = "naam", pseudonymise = true }]

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

/// A back-end partner with one dossier service. `n` numbers its OIN: the
/// port cannot, two ports alike modulo 10000 made two partners share one
/// and the fixture fail to load now and then.
fn simple_service(id: &str, n: usize, port: u16) -> String {
    format!(
        r#"
[[partner]]
id = "{id}"
name = "{id}"
kind = "chain"
oin = "00000099000000501{n:03}"
backend = "https://localhost:{port}"
[[partner.service]]
name = "dossier"
path = "/dossiers/{{vnummer}}"
methods = ["GET"]
subject = "vnummer"
[partner.service.fields]
vnummer = "identity"
"#
    )
}

/// What the main back-end saw.
pub type Seen = Arc<Mutex<Vec<Incoming>>>;

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
                return Canned::json(StatusCode::NOT_FOUND, &json!({"error": "onbekend"}));
            }
            return match req.method {
                Method::GET => Canned::json(StatusCode::OK, &dossier(v)),
                Method::DELETE => Canned {
                    status: StatusCode::NO_CONTENT,
                    body: Default::default(),
                    delay: None,
                },
                _ => {
                    let mut echo: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                    echo["intern"] = json!({"ontvangen": true});
                    echo["medisch"] = json!({"bijzonderheden": "synthetisch"});
                    Canned::json(StatusCode::OK, &echo)
                }
            };
        }
        if path.starts_with("/lijsten/") {
            let list: Vec<Value> = ["5550000001", "5550000002", "5550000003"]
                .iter()
                .map(|v| dossier(v))
                .collect();
            return Canned::json(StatusCode::OK, &Value::Array(list));
        }
        if path == "/aanvragen" {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            return Canned::json(
                StatusCode::CREATED,
                &json!({"vnummer": body["vnummer"], "status": "ontvangen", "intern": "x"}),
            );
        }
        Canned::json(StatusCode::NOT_FOUND, &json!({}))
    })
}

pub struct Fixture {
    /// What the hostile back-end (partner `vijand`) answers next: any bytes.
    pub hostile: Arc<Mutex<Vec<u8>>>,
    /// What the hostile back-end received.
    pub hostile_seen: Seen,
    /// The hostile back-end's certificate (to revoke it).
    pub hostile_cert: Issued,
    pub pki: TestPki,
    pub gw: TestGateway,
    pub seen: Seen,
    pub gemeente: PartnerClient,
    pub ngo_pinned: PartnerClient,
    pub ngo_kvk: PartnerClient,
    pub buiten: PartnerClient,
    pub gemeente_cert: Issued,
}

/// A port on which connections are refused, for the whole test process.
/// Its socket stays bound without listening: a port bound and released at
/// once could be taken by another process on the machine (a gateway
/// started by another test), which would then answer instead of refusing.
fn refused_port() -> u16 {
    static RESERVED: std::sync::OnceLock<tokio::net::TcpSocket> = std::sync::OnceLock::new();
    let s = RESERVED.get_or_init(|| {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        s
    });
    s.local_addr().unwrap().port()
}

async fn start_backend(pki_ca: &Ca, handler: backend::Handler, trusted_ca: &str) -> u16 {
    start_backend_with_cert(pki_ca, handler, trusted_ca, false)
        .await
        .0
}

/// A back-end with its certificate; `http1_only` leaves HTTP/2 out of its
/// ALPN, so the gateway speaks HTTP/1.1 to it (the other back-ends prefer h2).
async fn start_backend_with_cert(
    pki_ca: &Ca,
    handler: backend::Handler,
    trusted_ca: &str,
    http1_only: bool,
) -> (u16, Issued) {
    let cert = pki_ca
        .issue(&LeafSpec::server("backend", &["localhost", "127.0.0.1"]))
        .unwrap();
    let tls = backend::tls_config(
        trusted_ca.as_bytes(),
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )
    .unwrap();
    let tls = if http1_only {
        let mut c = (*tls).clone();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    } else {
        tls
    };
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(backend::serve(l, tls, handler, std::future::pending()));
    (port, cert)
}

pub async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

/// The fixture with some `[limits]` of ketenpoort.toml set (the table is
/// the file's last, so new keys go at its end).
pub async fn fixture_with_limits(limits: &[(&str, &str)]) -> Fixture {
    let limits: Vec<(String, String)> = limits
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    fixture_with(move |pki| {
        let cfg = std::fs::read_to_string(pki.config_file()).unwrap();
        let mut lines: Vec<String> = cfg.lines().map(str::to_string).collect();
        for (k, v) in &limits {
            let line = format!("{k} = {v}");
            match lines.iter_mut().find(|l| l.starts_with(&format!("{k} ="))) {
                Some(l) => *l = line,
                None => lines.push(line),
            }
        }
        pki.write_config("ketenpoort.toml", &(lines.join("\n") + "\n"));
    })
    .await
}

pub async fn fixture_with(before_start: impl FnOnce(&TestPki)) -> Fixture {
    fixture_started(before_start, false).await
}

/// [`fixture_with`], with the gateway's admin socket listening, so
/// command-line tools run beside it as beside `ketenpoort serve`.
pub async fn fixture_with_admin(before_start: impl FnOnce(&TestPki)) -> Fixture {
    fixture_started(before_start, true).await
}

async fn fixture_started(before_start: impl FnOnce(&TestPki), admin: bool) -> Fixture {
    let (pki, seen, hostile) = prepare_all().await;
    before_start(&pki);
    let gw = if admin {
        pki.start_with_admin().await
    } else {
        pki.start().await
    };
    let gemeente_cert = pki.oin_cert(GEMEENTE_OIN);
    let gemeente = pki.client(gw.addr, &gemeente_cert);
    let ngo_pinned = pki.client(gw.addr, &pki.ngo_pinned);
    let ngo_kvk = pki.client(gw.addr, &pki.kvk_cert(NGO_KVK));
    let buiten = pki.client(gw.addr, &pki.oin_cert(BUITEN_OIN));
    Fixture {
        hostile: hostile.answer,
        hostile_seen: hostile.seen,
        hostile_cert: hostile.cert,
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

/// The deployment's files and its back-ends, without the gateway (tests
/// that run the gateway as a process of its own start it themselves).
pub async fn prepare() -> (TestPki, Seen) {
    let (pki, seen, _) = prepare_all().await;
    (pki, seen)
}

/// The hostile back-end: answers whatever the test puts in `answer`.
pub struct Hostile {
    pub answer: Arc<Mutex<Vec<u8>>>,
    pub seen: Seen,
    pub cert: Issued,
}

async fn prepare_all() -> (TestPki, Seen, Hostile) {
    let pki = TestPki::new();
    let seen: Seen = Arc::default();
    let ca = &pki.ca;
    let answer: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(b"{}".to_vec()));
    let hostile_seen: Seen = Arc::default();
    let (vijand, hostile_cert) = {
        let (answer, seen) = (answer.clone(), hostile_seen.clone());
        start_backend_with_cert(
            ca,
            Arc::new(move |req: Incoming| {
                seen.lock().unwrap().push(req);
                Canned {
                    status: StatusCode::OK,
                    body: answer.lock().unwrap().clone().into(),
                    delay: None,
                }
            }),
            &ca.cert_pem,
            true,
        )
        .await
    };
    let dtv = start_backend(ca, dtv_handler(seen.clone()), &ca.cert_pem).await;
    let slow = start_backend(
        ca,
        Arc::new(|_| Canned {
            delay: Some(Duration::from_secs(3)),
            ..Canned::json(StatusCode::OK, &json!({"vnummer": "5550000001"}))
        }),
        &ca.cert_pem,
    )
    .await;
    let garbage = start_backend(
        ca,
        Arc::new(|_| Canned {
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
            Canned::json(
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
        Arc::new(|_| Canned::json(StatusCode::OK, &json!({}))),
        &ca.cert_pem,
    )
    .await;
    let closed = refused_port();

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
    partners.push_str(&format!(
        r#"
[[partner]]
id = "vijand"
name = "Vijandige back-end"
kind = "chain"
oin = "00000099000000508888"
backend = "https://localhost:{vijand}"
[[partner.service]]
name = "dossier"
path = "/dossiers/{{vnummer}}"
methods = ["GET", "POST"]
subject = "vnummer"
[partner.service.fields]
vnummer = "identity"
naam = "identity"
"nationaliteit[]" = "identity"
"adres.woonplaats" = "contact"
"adres.straat" = "contact"
"medisch.bijzonderheden" = "health"
[[partner.service]]
name = "lijst"
path = "/lijsten/{{groep}}"
methods = ["GET"]
subject = "vnummer"
[partner.service.fields]
vnummer = "identity"
naam = "identity"
"#
    ));
    for (n, (id, port)) in [
        ("traag", slow),
        ("onzin", garbage),
        ("groot", huge),
        ("vreemd", strange),
        ("dicht", closed),
    ]
    .into_iter()
    .enumerate()
    {
        partners.push_str(&simple_service(id, n, port));
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
    // Gateways started as a process of their own find the pilots signed too.
    pki.sign_all();
    (
        pki,
        seen,
        Hostile {
            answer,
            seen: hostile_seen,
            cert: hostile_cert,
        },
    )
}

/// The record ids of `Ketenpoort-Disclosure`, ranges (`4-9`) expanded.
pub fn ids(r: &ketenpoort::client::Reply) -> Vec<u64> {
    r.header("ketenpoort-disclosure")
        .unwrap_or("")
        .split(',')
        .flat_map(|s| match s.split_once('-') {
            Some((a, b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
                (Ok(a), Ok(b)) => (a..=b).collect(),
                _ => Vec::new(),
            },
            None => s.parse().ok().into_iter().collect(),
        })
        .collect()
}

pub async fn record(f: &Fixture, id: u64) -> ketenpoort::audit::Record {
    let view = f.gw.gateway.audit.view().clone();
    tokio::task::spawn_blocking(move || view.record(id).unwrap())
        .await
        .unwrap()
}
