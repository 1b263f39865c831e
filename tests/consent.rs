//! The consent register over real mTLS: a flow whose rule rests on consent
//! is refused without one and recorded, passes with one and its records cite
//! it, stops at once on withdrawal and on expiry, every step of the register
//! is an audit record, and no V-nummer is kept in clear in the data
//! directory.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::disk::assert_nothing_in_clear;
use common::fixture::{self, Fixture, fixture_with, ids};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

const PERSON: &str = "5550009001";
const OTHER: &str = "5550009002";

/// A purpose and a rule of the test pilot that rest on consent, recorded by
/// ngo-kvk.
const ZORG: &str = r#"
[purposes.zorg]
description = "Zorg met toestemming"
legal_basis = "AVG art. 6(1)(a), toestemming"
retention_days = 90

[[rules]]
id = "proef-zorg"
purpose = "zorg"
service = "dtv/dossier"
consumers = ["gemeente"]
response = ["vnummer", "naam"]
consent = "required"
"#;

async fn setup() -> Fixture {
    fixture_with(|pki| {
        let proef = pki.pilots_dir().join("proef.toml");
        let text = std::fs::read_to_string(&proef).unwrap().replacen(
            "[pilot.covenant]",
            "consent_recorders = [\"ngo-kvk\"]\n[pilot.covenant]",
            1,
        );
        pki.write_config("pilots/proef.toml", &(text + ZORG));
    })
    .await
}

async fn consent(
    client: &ketenpoort::client::PartnerClient,
    method: Method,
    v: &str,
    body: Option<Value>,
) -> ketenpoort::client::Reply {
    client
        .send(
            method,
            &format!("/v1/pilots/proef/consents/{v}/proef-zorg"),
            &[("Ketenpoort-Purpose", "zorg")],
            body.as_ref(),
        )
        .await
        .unwrap()
}

async fn dossier(f: &Fixture, v: &str) -> ketenpoort::client::Reply {
    f.gemeente
        .send(
            Method::GET,
            &format!("/v1/pilots/proef/services/dtv/dossier/{v}"),
            &[("Ketenpoort-Purpose", "zorg")],
            None,
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

fn today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_consent_refused_with_it_passes_and_cites_it_and_withdrawal_stops_it() {
    let f = setup().await;
    // No consent: refused, and the refusal is a record about the person.
    let r = dossier(&f, PERSON).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(problem_type(&r), "urn:ketenpoort:problem:consent-missing");
    let refused = fixture::record(&f, ids(&r)[0]).await;
    assert_eq!(refused.entry.reason, "consent-missing");
    assert_eq!(refused.entry.rule_id, "proef-zorg");
    let person = refused.entry.subject.unwrap();
    assert!(
        f.seen.lock().unwrap().is_empty(),
        "nothing went to the provider"
    );

    // Only a recorder records, under the rule's purpose; no expiry in the past.
    let give = json!({"given_at": "2026-01-05", "evidence": "dossier map 12, formulier T1"});
    let r = consent(&f.gemeente, Method::PUT, PERSON, Some(give.clone())).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = f
        .ngo_kvk
        .send(
            Method::PUT,
            &format!("/v1/pilots/proef/consents/{PERSON}/proef-zorg"),
            &[("Ketenpoort-Purpose", "casusoverleg")],
            Some(&give),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let past = json!({"given_at": "2026-01-05", "expires": "2026-01-06", "evidence": "map 12"});
    let r = consent(&f.ngo_kvk, Method::PUT, PERSON, Some(past)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(problem_type(&r), "urn:ketenpoort:problem:invalid-consent");
    assert_eq!(dossier(&f, PERSON).await.status, StatusCode::FORBIDDEN);

    // Given (valid through today): the flow passes and its records cite it.
    let give = json!({"given_at": "2026-01-05", "expires": today(), "evidence": "dossier map 12"});
    let r = consent(&f.ngo_kvk, Method::PUT, PERSON, Some(give)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let given = ids(&r)[0];
    let r = dossier(&f, PERSON).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    for id in ids(&r) {
        let rec = fixture::record(&f, id).await;
        assert_eq!(rec.entry.reason, format!("consent {given}"));
        assert_eq!(rec.entry.subject, Some(person));
    }
    // Another person has no consent.
    assert_eq!(dossier(&f, OTHER).await.status, StatusCode::FORBIDDEN);

    // Withdrawn: stops at once.
    let r = consent(
        &f.ngo_kvk,
        Method::DELETE,
        PERSON,
        Some(json!({"reason": "ingetrokken bij gesprek"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let withdrawn = ids(&r)[0];
    let r = dossier(&f, PERSON).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(problem_type(&r), "urn:ketenpoort:problem:consent-missing");
    let r = consent(&f.ngo_kvk, Method::DELETE, PERSON, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // State and history, for a recorder and for the rule's consumer.
    let r = consent(&f.gemeente, Method::GET, PERSON, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let body = r.json();
    assert_eq!(body["state"], "withdrawn");
    let history = body["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["record"], given);
    assert_eq!(history[1]["act"], "withdrawn");
    let shown = ids(&r)[0];

    // Every step of the register is a record about the same person.
    for id in [given, withdrawn, shown] {
        let rec = fixture::record(&f, id).await;
        assert_eq!(rec.entry.service, "ketenpoort/toestemming");
        assert_eq!(rec.entry.rule_id, "proef-zorg");
        assert_eq!(rec.entry.purpose, "zorg");
        assert_eq!(rec.entry.subject, Some(person));
    }
    f.gw.stop().await;
    // Nothing in clear at rest.
    assert_nothing_in_clear(&f.pki.data_dir(), &[PERSON, OTHER]);
}

/// Expiry ends the flow on the day after the last valid day, decided by
/// the policy (the one place that decides) on the consent as the register
/// keeps it; the gateway asks it with today's date on every exchange.
#[test]
fn expiry_stops_the_flow_the_day_after_its_last_valid_day() {
    use ketenpoort::policy::consent::{ConsentAct, ConsentEvent};
    use time::macros::date;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let set = ketenpoort::policy::PolicySet::load(
        &root.join("config/partners.toml"),
        &root.join("config/pilots"),
    )
    .unwrap();
    let pilot = &set.pilots["groningen"];
    let rule = pilot
        .rules
        .iter()
        .find(|r| r.id == "groningen-medisch-gemeente")
        .unwrap();
    assert!(rule.consent, "the shipped GGZ rule rests on consent");
    let grant = ketenpoort::policy::Grant {
        pilot,
        purpose: &pilot.purposes[rule.purpose.as_str()],
        rule,
        path_subject: None,
    };
    let history = vec![ConsentEvent {
        act: ConsentAct::Given,
        recorded_at: "2026-01-05T10:00:00Z".into(),
        by: "ngo-inlia".into(),
        record: 41,
        given_at: Some("2026-01-05".into()),
        expires: Some("2026-03-31".into()),
        evidence: Some("map 3".into()),
        reason: None,
    }];
    assert_eq!(
        grant
            .consent(Some(&history), date!(2026 - 03 - 31))
            .unwrap(),
        Some(41)
    );
    let after = grant
        .consent(Some(&history), date!(2026 - 04 - 01))
        .unwrap_err();
    assert_eq!(after.reason.code(), "consent-missing");
    assert!(after.detail.contains("expired"), "{}", after.detail);
    assert!(grant.consent(Some(&[]), date!(2026 - 03 - 01)).is_err());
    assert!(grant.consent(None, date!(2026 - 03 - 01)).is_err());
}
