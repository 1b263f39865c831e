//! The LVV registry over real mTLS: registrars open and end stays, checkers
//! learn "here" and "elsewhere" but never where, checks are limited and the
//! excess recorded, every step is an audit record, and no V-nummer is kept
//! in clear anywhere in the data directory. Transfers go only where both
//! pilots' files agree, with the fields both allow, and move the stay in one
//! step or not at all; figures go to figures readers only, small cells
//! suppressed.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::disk::assert_nothing_in_clear;
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
figures_readers = ["ngo-pinned"]
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
    assert_nothing_in_clear(&f.pki.data_dir(), &[PERSON, OTHER]);
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

/// A receiving back-end that never answers (port 1 is closed), for the
/// transfer that fails.
const STUK: &str = r#"
[[partner]]
id = "stuk"
name = "Ontvanger zonder verbinding"
kind = "municipality"
oin = "00000099000000507777"
backend = "https://localhost:1"
[[partner.service]]
name = "overdracht"
path = "/overdrachten"
methods = ["POST"]
subject = "vnummer"
[partner.service.fields]
vnummer = "identity"
naam = "identity"
"medisch.bijzonderheden" = "health"
"#;

/// Proef sends to "tweede" (DT&V's intake service) and to "derde" (a dead
/// back-end); what it gives.
const PROEF_SENDS: &str = r#"
[purposes.overdracht]
description = "Overdracht naar een andere LVV"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 730

[[transfer]]
to = "tweede"
service = "dtv/aanvraag"
purpose = "overdracht"
request = ["vnummer", "naam", "status"]

[[transfer]]
to = "derde"
service = "stuk/overdracht"
purpose = "overdracht"
request = ["vnummer", "naam"]

[[transfer]]
to = "vierde"
service = "ngo-kvk/bericht"
purpose = "overdracht"
request = ["vnummer", "onderwerp"]
"#;

/// Tweede accepts from proef, but not the status.
const TWEEDE_TAKES: &str = r#"
[purposes.overdracht]
description = "Overdracht uit een andere LVV"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 730

[[transfer]]
from = "proef"
service = "dtv/aanvraag"
purpose = "overdracht"
request = ["vnummer", "naam"]
"#;

const DERDE: &str = r#"[pilot]
id = "derde"
name = "LVV Derde"
partners = ["gemeente", "stuk"]
[pilot.covenant]
id = "LVV-DERDE"
version = "1.0"
valid_from = 2019-01-01
valid_until = 2099-12-31

[purposes.aanmelding]
description = "Aanmelding bij de LVV"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 730

[purposes.overdracht]
description = "Overdracht uit een andere LVV"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 730

[registration]
registrars = ["gemeente"]
checkers = ["gemeente"]
purpose = "aanmelding"

[[transfer]]
from = "proef"
service = "stuk/overdracht"
purpose = "overdracht"
request = ["vnummer", "naam"]
"#;

/// The three pilots' files, with transfers proef → tweede and proef → derde.
fn write_transfer_pilots(pki: &common::TestPki) {
    let partners =
        std::fs::read_to_string(pki.config_file().with_file_name("partners.toml")).unwrap();
    pki.write_config("partners.toml", &(partners + STUK));
    let proef = std::fs::read_to_string(pki.pilots_dir().join("proef.toml")).unwrap();
    pki.write_config(
        "pilots/proef.toml",
        &(proef.replace("\"vijand\"]", "\"vijand\", \"stuk\"]") + REGISTRATION + PROEF_SENDS),
    );
    let tweede = TWEEDE.replace(
        "partners = [\"gemeente\", \"ngo-kvk\"]",
        "partners = [\"gemeente\", \"ngo-kvk\", \"dtv\"]",
    );
    pki.write_config("pilots/tweede.toml", &(tweede + TWEEDE_TAKES));
    pki.write_config("pilots/derde.toml", DERDE);
    // Vierde's receiving service is a mailbox; it takes the V-nummer only.
    let vierde = DERDE
        .replace("derde", "vierde")
        .replace("DERDE", "VIERDE")
        .replace("\"stuk\"]", "\"ngo-kvk\"]")
        .replace("stuk/overdracht", "ngo-kvk/bericht")
        .replace(
            "request = [\"vnummer\", \"naam\"]",
            "request = [\"vnummer\"]",
        );
    pki.write_config("pilots/vierde.toml", &vierde);
}

async fn setup_transfers() -> Fixture {
    fixture_with(|pki| {
        write_transfer_pilots(pki);
        pki.sign_all();
    })
    .await
}

async fn transfer(
    client: &ketenpoort::client::PartnerClient,
    from: &str,
    to: &str,
    purpose: &str,
    body: &Value,
) -> ketenpoort::client::Reply {
    client
        .send(
            Method::POST,
            &format!("/v1/pilots/{from}/transfers/{to}"),
            &[("Ketenpoort-Purpose", purpose)],
            Some(body),
        )
        .await
        .unwrap()
}

async fn stays_of(f: &Fixture, v: &str) -> Vec<String> {
    let r = f.gw.gateway.registry.clone();
    r.stays(&r.pseudonym(v)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_goes_where_both_files_agree_with_the_fields_both_allow_and_moves_the_stay() {
    let f = setup_transfers().await;
    let since = json!({"since": "2026-01-05"});
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
    // Checked from "tweede", which takes cases from "proef": elsewhere, and
    // a transfer is possible; still no pilot named.
    let r = call(
        &f.gemeente,
        Method::GET,
        "tweede",
        PERSON,
        "aanmelding",
        None,
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"here": false, "elsewhere": true, "transfer_possible": true})
    );
    let checked = ids(&r);
    let dossier = json!({"vnummer": PERSON, "naam": "Testpersoon (synthetisch)", "status": "lopend", "geheim": "x"});
    let before = f.seen.lock().unwrap().len();
    // Not a registrar of proef; not the transfer's purpose; not the
    // direction both files name.
    let r = transfer(&f.ngo_kvk, "proef", "tweede", "overdracht", &dossier).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(problem_type(&r).ends_with("no-rule"));
    let r = transfer(&f.gemeente, "proef", "tweede", "aanmelding", &dossier).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = transfer(&f.ngo_kvk, "tweede", "proef", "overdracht", &dossier).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(problem_type(&r).ends_with("no-transfer"));
    let refused = ids(&r);
    assert_eq!(
        f.seen.lock().unwrap().len(),
        before,
        "a refusal delivers nothing"
    );
    assert_eq!(stays_of(&f, PERSON).await, vec!["proef"]);

    let r = transfer(&f.gemeente, "proef", "tweede", "overdracht", &dossier).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let moved = ids(&r);
    assert_eq!(moved.len(), 1, "recorded once");
    // What arrived: the fields both files allow, nothing else.
    let seen = f.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.path, "/aanvragen");
    // What the back-end is told: the pilot moved from, the transfer's
    // purpose and who asks, each once (the consumer's and pilot's headers
    // are made at load, the purpose's taken from the caller, who must state
    // the transfer's).
    for (h, want) in [
        ("ketenpoort-pilot", "proef"),
        ("ketenpoort-purpose", "overdracht"),
        ("ketenpoort-consumer", "gemeente"),
    ] {
        assert_eq!(seen.headers.get_all(h).iter().count(), 1, "{h}");
        assert_eq!(seen.headers[h], want, "{h}");
    }
    let got: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        got,
        json!({"vnummer": PERSON, "naam": "Testpersoon (synthetisch)"})
    );
    let rec = fixture::record(&f, moved[0]).await;
    assert_eq!(rec.entry.pilot, "proef");
    assert_eq!(rec.entry.recipient, "dtv");
    assert_eq!(rec.entry.service, "dtv/aanvraag");
    assert_eq!(rec.entry.rule_id, "transfer:proef->tweede");
    assert_eq!(rec.entry.purpose, "overdracht");
    assert!(rec.entry.withheld.iter().any(|w| w == "status"));
    // The stay moved: ended in proef for "overdracht", open in tweede.
    assert_eq!(stays_of(&f, PERSON).await, vec!["tweede"]);
    let ended = f.gw.gateway.registry.ended_stays("proef").unwrap();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].reason, "overdracht");
    let r = call(
        &f.gemeente,
        Method::GET,
        "tweede",
        PERSON,
        "aanmelding",
        None,
    )
    .await;
    assert_eq!(r.json(), json!({"here": true, "elsewhere": false}));
    // From proef, which takes nothing from tweede: no transfer_possible.
    let r = call(
        &f.gemeente,
        Method::GET,
        "proef",
        PERSON,
        "aanmelding",
        None,
    )
    .await;
    assert_eq!(r.json(), json!({"here": false, "elsewhere": true}));
    // Nothing left to move: refused, nothing delivered.
    let n = f.seen.lock().unwrap().len();
    let r = transfer(&f.gemeente, "proef", "tweede", "overdracht", &dossier).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(problem_type(&r).ends_with("no-open-stay"));
    assert_eq!(f.seen.lock().unwrap().len(), n);

    // Every step is in the log, about the same person (the refusal before
    // the dossier was read knows no person).
    let rec = fixture::record(&f, refused[0]).await;
    assert_eq!(rec.entry.reason, "no-transfer");
    assert_eq!(rec.entry.pilot, "tweede");
    // Subject pseudonyms are per pilot and month (retention): the same
    // person has one pseudonym within a pilot.
    let mut subjects: std::collections::BTreeMap<String, Vec<[u8; 32]>> = Default::default();
    for id in [checked, moved, ids(&r)].concat() {
        let e = fixture::record(&f, id).await.entry;
        subjects
            .entry(e.pilot.to_string())
            .or_default()
            .push(e.subject.unwrap());
    }
    assert!(
        subjects
            .values()
            .all(|s| s.windows(2).all(|w| w[0] == w[1]))
    );
    f.gw.stop().await;
    assert_nothing_in_clear(&f.pki.data_dir(), &[PERSON]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_moves_nothing() {
    let f = setup_transfers().await;
    let r = call(
        &f.gemeente,
        Method::PUT,
        "proef",
        OTHER,
        "aanmelding",
        Some(json!({"since": "2026-02-01"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let dossier = json!({"vnummer": OTHER, "naam": "Testpersoon (synthetisch)"});
    let r = transfer(&f.gemeente, "proef", "derde", "overdracht", &dossier).await;
    assert!(r.status.is_server_error(), "{}", r.status);
    assert!(problem_type(&r).ends_with("backend-unreachable"));
    // The attempt and its failure are in the log; the stay did not move.
    let steps = ids(&r);
    let last = fixture::record(&f, *steps.last().unwrap()).await;
    assert_eq!(last.entry.reason, "backend-unreachable");
    assert_eq!(last.entry.rule_id, "transfer:proef->derde");
    assert_eq!(stays_of(&f, OTHER).await, vec!["proef"]);
    assert!(
        f.gw.gateway
            .registry
            .ended_stays("proef")
            .unwrap()
            .is_empty()
    );
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_side_alone_and_special_categories_without_a_basis_are_refused() {
    let (pki, _) = fixture::prepare().await;
    write_transfer_pilots(&pki);
    let load = |pki: &common::TestPki| {
        ketenpoort::policy::PolicySet::load(
            &pki.config_file().with_file_name("partners.toml"),
            &pki.pilots_dir(),
        )
    };
    let set = load(&pki).unwrap();
    assert!(set.transfer("proef", "tweede").is_some());
    assert!(set.transfer("tweede", "proef").is_none());
    // Derde withdraws its side: proef's is refused, naming both files.
    let derde = DERDE[..DERDE.find("[[transfer]]").unwrap()].to_string();
    pki.write_config("pilots/derde.toml", &derde);
    let e = load(&pki).unwrap_err();
    assert!(e.file.ends_with("proef.toml"), "{e}");
    assert!(e.reason.contains("derde.toml"), "{e}");
    // Health data in a transfer whose purpose carries none.
    pki.write_config(
        "pilots/derde.toml",
        &DERDE.replace(
            "request = [\"vnummer\", \"naam\"]",
            "request = [\"vnummer\", \"medisch.bijzonderheden\"]",
        ),
    );
    let e = load(&pki).unwrap_err();
    assert!(e.file.ends_with("derde.toml"), "{e}");
    assert!(e.reason.contains("health"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_go_to_figures_readers_only_and_small_cells_are_suppressed() {
    let f = setup().await;
    for i in 0..12 {
        let v = format!("55500090{i:02}");
        let r = call(
            &f.gemeente,
            Method::PUT,
            "proef",
            &v,
            "aanmelding",
            Some(json!({"since": "2026-01-05"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
        if i < 3 {
            let r = call(
                &f.gemeente,
                Method::DELETE,
                "proef",
                &v,
                "aanmelding",
                Some(json!({"reason": "terugkeer"})),
            )
            .await;
            assert_eq!(r.status, StatusCode::NO_CONTENT);
        }
    }

    let q = "pilot=proef&from=2026-01&to=2026-12";
    let r = figures(&f.gemeente, q).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(problem_type(&r).ends_with("not-a-figures-reader"));
    let rec = fixture::record(&f, ids(&r)[0]).await;
    assert_eq!(rec.entry.reason, "not-a-figures-reader");
    let r = figures(&f.ngo_pinned, "pilot=proef&from=2026-05&to=2026-01").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = figures(&f.ngo_pinned, q).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let body = r.json();
    let jan = &body["months"][0];
    assert_eq!(jan["month"], "2026-01");
    assert_eq!(jan["intakes"], 12);
    assert_eq!(jan["endings_by_reason"]["overdracht"], "<10");
    // No count under ten anywhere; the three endings are among the "<10".
    fn numbers(v: &Value, out: &mut Vec<u64>) {
        match v {
            Value::Number(n) => out.push(n.as_u64().unwrap()),
            Value::Array(a) => a.iter().for_each(|x| numbers(x, out)),
            Value::Object(o) => o.values().for_each(|x| numbers(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    numbers(&body["months"], &mut all);
    assert!(all.iter().all(|n| *n >= 10), "{all:?}");
    assert!(String::from_utf8_lossy(&r.body).contains("<10"));
    let rec = fixture::record(&f, ids(&r)[0]).await;
    assert_eq!(rec.entry.service, "ketenpoort/figures");
    assert_eq!(rec.entry.recipient, "ngo-pinned");
    assert!(rec.entry.subject.is_none());
    f.gw.stop().await;
}

async fn figures(c: &ketenpoort::client::PartnerClient, q: &str) -> ketenpoort::client::Reply {
    c.send(Method::GET, &format!("/v1/figures?{q}"), &[], None)
        .await
        .unwrap()
}
