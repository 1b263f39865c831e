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
        assert!(
            a.senders.contains(&e.sender.to_string())
                && a.recipients.contains(&e.recipient.to_string())
        );
        directions.push(a.direction);
    }
    assert_eq!(directions, ["request", "response"]);
    f.gw.stop().await;
}

/// The export's lines as JSON.
fn export_logboek(data_dir: &std::path::Path) -> Vec<Value> {
    let mut out = Vec::new();
    ketenpoort::audit::export::export(
        &data_dir.join("audit"),
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

/// One row of a transcribed table: field, type, required.
struct Field {
    name: String,
    ty: String,
    required: bool,
}

/// The rows of the first Markdown table after `heading` in the transcription.
fn table(doc: &str, heading: &str) -> Vec<Field> {
    let at = doc
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} not in the doc"));
    doc[at..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            Field {
                name: cells[1].trim_matches('`').to_string(),
                ty: cells[2].to_string(),
                required: match cells[3] {
                    "verplicht" => true,
                    "optioneel" => false,
                    other => panic!("{other}"),
                },
            }
        })
        .collect()
}

fn is_hex(v: &Value, bytes: usize) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == bytes * 2
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && s.bytes().any(|b| b != b'0')
    })
}

/// Checks `obj` against `fields`: every required field present, each of its
/// type, nothing else.
fn conforms(
    obj: &Value,
    fields: &[Field],
    statuses: &[u64],
    core: &[String],
) -> Result<(), String> {
    let map = obj.as_object().ok_or("not an object")?;
    for k in map.keys() {
        if !fields.iter().any(|f| &f.name == k) {
            return Err(format!("{k} is not a field of the standard"));
        }
    }
    for f in fields {
        let Some(v) = map.get(&f.name) else {
            if f.required {
                return Err(format!("{} is missing", f.name));
            }
            continue;
        };
        let ok = match f.ty.as_str() {
            "16 byte" => is_hex(v, 16),
            "8 byte" => is_hex(v, 8),
            "enum" => v.as_u64().is_some_and(|n| statuses.contains(&n)),
            "string" => v.as_str().is_some_and(|s| !s.is_empty()),
            "timestamp (ms)" => v
                .as_i64()
                .is_some_and(|t| t > 1_600_000_000_000 && t < 4_000_000_000_000),
            "URI" => v
                .as_str()
                .is_some_and(|s| s.contains(':') && !s.contains(' ')),
            "message" => v.is_object(),
            "list" => v.as_object().is_some_and(|m| {
                m.iter().all(|(k, x)| {
                    x.is_string() && (core.contains(k) || k.starts_with("ketenpoort."))
                })
            }),
            other => return Err(format!("type {other} unknown to this test")),
        };
        if !ok {
            return Err(format!("{} = {v} is not a {}", f.name, f.ty));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_logboek_line_conforms_to_the_standards_field_table() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ldv/component-logboek.md"),
    )
    .unwrap();
    let fields = table(&doc, "## Interface (transcribed)");
    let foreign = table(&doc, "`foreign_operation` (transcribed)");
    assert_eq!(fields.len(), 10);
    assert_eq!(foreign.len(), 3);
    let statuses: Vec<u64> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("* `")?.split(':').next()?.parse().ok())
        .collect();
    assert_eq!(statuses, [0, 1, 2]);
    let core: Vec<String> = doc
        .lines()
        .filter_map(|l| {
            Some(
                l.strip_prefix("* `dpl.core.")?
                    .split('`')
                    .next()?
                    .to_string(),
            )
        })
        .map(|k| format!("dpl.core.{k}"))
        .collect();
    assert_eq!(core.len(), 3);

    let f = fixture().await;
    let caller_span = "00f067aa0ba902b7";
    let trace = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{caller_span}-01");
    let mut h = CASUS.to_vec();
    h.push(("traceparent", &trace));
    let one = f
        .gemeente
        .send(Method::GET, DOSSIER, &h, None)
        .await
        .unwrap();
    assert_eq!(one.status, 200);
    let list = f
        .gemeente
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/lijst/a",
            CASUS,
            None,
        )
        .await
        .unwrap();
    assert_eq!(list.status, 200);
    let refused = f
        .gemeente
        .send(
            Method::GET,
            DOSSIER,
            &[("ketenpoort-purpose", "onderzoek")],
            None,
        )
        .await
        .unwrap();
    assert!(refused.status.is_client_error());
    let data_dir = f.pki.data_dir();
    f.gw.stop().await;

    let lines = export_logboek(&data_dir);
    assert!(lines.len() >= 5);
    for l in &lines {
        conforms(l, &fields, &statuses, &core).unwrap_or_else(|e| panic!("{e}: {l}"));
        if let Some(fo) = l.get("foreign_operation") {
            conforms(fo, &foreign, &statuses, &core).unwrap_or_else(|e| panic!("{e}: {l}"));
        }
        assert!(l["start_time"].as_i64() <= l["end_time"].as_i64());
    }
    let line_of = |id: u64| {
        lines
            .iter()
            .find(|l| {
                l["attributes"]["ketenpoort.record_id"].as_str() == Some(id.to_string().as_str())
            })
            .unwrap()
    };
    // The caller's traceparent is the foreign operation, the calling
    // organisation its entity; the gateway's span is the parent.
    let l = line_of(ids(&one)[0]);
    assert_eq!(l["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(l["foreign_operation"]["span_id"], caller_span);
    assert_eq!(l["foreign_operation"]["trace_id"], l["trace_id"]);
    assert_eq!(
        l["foreign_operation"]["entity"],
        "urn:ketenpoort:partner:gemeente"
    );
    let sent = one.header("traceparent").unwrap();
    assert_eq!(l["parent_span_id"], &sent[36..52]);
    assert_ne!(l["span_id"], l["parent_span_id"]);
    assert_eq!(l["status_code"], 1);
    assert_eq!(
        l["attributes"]["dpl.core.processing_activity_id"],
        "urn:ketenpoort:processing-activity:proef:casusoverleg:response"
    );
    assert_eq!(
        l["attributes"]["ketenpoort.fsc_transaction_id"],
        one.header("fsc-transaction-id").unwrap()
    );
    assert_eq!(
        l["attributes"]["dpl.core.data_subject_id_type"],
        "Vreemdelingennummer"
    );
    // One line per data subject, all under the exchange's span.
    let many: Vec<&Value> = ids(&list).into_iter().map(line_of).collect();
    assert_eq!(many.len(), 3);
    let parents: std::collections::BTreeSet<_> = many
        .iter()
        .map(|l| l["parent_span_id"].to_string())
        .collect();
    let spans: std::collections::BTreeSet<_> =
        many.iter().map(|l| l["span_id"].to_string()).collect();
    let subjects: std::collections::BTreeSet<_> = many
        .iter()
        .map(|l| l["attributes"]["dpl.core.data_subject_id"].to_string())
        .collect();
    assert_eq!((parents.len(), spans.len(), subjects.len()), (1, 3, 3));
    assert!(many.iter().all(|l| l.get("foreign_operation").is_none()));
    // A refusal: one line, no data subject, status unset (the gateway decided).
    let r = ids(&refused);
    assert_eq!(r.len(), 1);
    let l = line_of(r[0]);
    assert!(
        l["attributes"].get("dpl.core.data_subject_id").is_none(),
        "{l}"
    );
    assert_eq!(l["status_code"], 0);
    assert_eq!(l["attributes"]["ketenpoort.decision"], "refused");
    // No V-nummer in any line.
    for l in &lines {
        assert!(!l.to_string().contains("555000"), "{l}");
    }
}

const READ: &str = "/v1/logboek/processing-activities";

async fn read(c: &ketenpoort::client::PartnerClient, q: Value) -> ketenpoort::client::Reply {
    c.send(Method::POST, READ, &[], Some(&q)).await.unwrap()
}

fn lines_of(r: &ketenpoort::client::Reply) -> Vec<Value> {
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()["processingActivities"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logboek_read_api_answers_only_for_records_the_caller_is_party_to() {
    let f = fixture().await;
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut h = CASUS.to_vec();
    h.push(("traceparent", trace));
    let r = f
        .gemeente
        .send(Method::GET, DOSSIER, &h, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let disclosed = ids(&r)[0];
    let dtv = f.pki.client(f.gw.addr, &f.pki.oin_cert(common::DTV_OIN));
    let by_trace = serde_json::json!({"traceId": "0af7651916cd43dd8448eb211c80319c"});

    // Both parties find the line, by trace (either spelling) ...
    for (who, c) in [("gemeente", &f.gemeente), ("dtv", &dtv)] {
        let lines = lines_of(&read(c, by_trace.clone()).await);
        assert_eq!(lines.len(), 1, "{who}: {lines:?}");
        let l = &lines[0];
        assert_eq!(l["traceId"], "0af76519-16cd-43dd-8448-eb211c80319c");
        assert_eq!(
            l["attributes"]["ketenpoort.record_id"],
            disclosed.to_string()
        );
        assert_eq!(l["status"], "Ok");
        assert!(l["startTime"].as_str().unwrap().ends_with('Z'));
    }
    let uuid_form = serde_json::json!({"traceId": "0af76519-16cd-43dd-8448-eb211c80319c"});
    assert_eq!(
        lines_of(&read(&f.gemeente, uuid_form.clone()).await).len(),
        1
    );
    // ... a partner that was no party to it finds nothing, however it asks.
    for q in [
        by_trace.clone(),
        uuid_form,
        serde_json::json!({"dpl.core.data_subject_id": "5550001234"}),
        serde_json::json!({"dpl.core.processing_activity_id": "urn:ketenpoort:processing-activity:proef:casusoverleg:response"}),
    ] {
        for c in [&f.ngo_kvk, &f.buiten] {
            assert_eq!(
                lines_of(&read(c, q.clone()).await),
                Vec::<Value>::new(),
                "{q}"
            );
        }
    }

    // By data subject: the V-nummer goes in, only its pseudonym comes out,
    // and the look-up is recorded as one.
    let r = read(
        &f.gemeente,
        serde_json::json!({"dpl.core.data_subject_id": "5550001234", "dpl.core.data_subject_id_type": "Vreemdelingennummer"}),
    )
    .await;
    let lines = lines_of(&r);
    assert!(!lines.is_empty());
    let pseudonym = hex::encode(f.gw.gateway.audit.subject("proef", "5550001234").unwrap());
    assert!(
        lines
            .iter()
            .all(|l| l["attributes"]["dpl.core.data_subject_id"] == pseudonym)
    );
    assert!(!String::from_utf8_lossy(&r.body).contains("5550001234"));
    let lookup = record(&f, ids(&r)[0]).await;
    assert_eq!(lookup.entry.kind, ketenpoort::audit::RecordKind::Lookup);
    assert_eq!(lookup.entry.recipient, "gemeente");

    // By processing activity: only that activity's lines.
    let act = "urn:ketenpoort:processing-activity:proef:casusoverleg:response";
    let lines = lines_of(
        &read(
            &f.gemeente,
            serde_json::json!({"dpl.core.processing_activity_id": act}),
        )
        .await,
    );
    assert!(!lines.is_empty());
    assert!(
        lines
            .iter()
            .all(|l| l["attributes"]["dpl.core.processing_activity_id"] == act)
    );

    // Without a key, or with fields the extension does not name: 400.
    for q in [
        serde_json::json!({}),
        serde_json::json!({"startTime": "2026-01-01T00:00:00Z"}),
        serde_json::json!({"traceId": "0af7651916cd43dd8448eb211c80319c", "partner": "dtv"}),
    ] {
        let r = read(&f.gemeente, q).await;
        assert_eq!(r.status, 400, "{:?}", r.json());
        assert_eq!(r.json()["type"], "urn:ketenpoort:problem:bad-query");
    }
    f.gw.stop().await;
}
