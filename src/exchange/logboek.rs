//! The read extension of Logboek Dataverwerkingen on the partner API:
//! `POST /v1/logboek/processing-activities`, the one operation of the
//! extension's OpenAPI document (`Logius-standaarden/logboek-extensie-lezen`,
//! `media/openapi.json`, LDV lezen API 1.1.0).
//!
//! A partner's own Logboek tooling can follow a processing through ketenpoort
//! the way it follows it through its own systems. It sees only the lines of
//! records it is party to (sender or recipient), found by trace, processing
//! activity or data subject; a data subject is sent as a V-nummer and
//! pseudonymised here under every subject key that still exists, so the
//! V-nummer is neither kept nor matched in clear. Every answer is itself a
//! record (a look-up when it named a person). Results are capped: the
//! extension leaves the limit to the server and recommends one.

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::refusal::{Exchange, Refusal, Target, path_subject};
use super::request;
use super::trace::Trace;
use super::wire::{DISCLOSURE, TRACEPARENT, json_response};
use crate::audit::export::{logboek, processing_activity};
use crate::audit::record::{Record, RecordKind, format_micros, parse_time};
use crate::audit::{Decision, Filter};
use crate::gateway::{Body, Gateway};
use crate::identity::{Peer, sha256};
use crate::policy::Direction;
use crate::policy::partners::Partner;
use crate::problem;

/// The records' service name.
const SERVICE: &str = "logboek";
/// Largest query body: a handful of short strings.
const MAX_BODY: usize = 4096;
/// Most lines one answer carries, newest first.
pub const MAX_RESULTS: usize = 1000;
/// Most of the caller's records one query reads before it asks for a
/// narrower one (by time): a query must not walk a whole log.
const MAX_SCANNED: usize = 200_000;

/// The request body's fields, as the extension's schema names them.
const FIELDS: &[&str] = &[
    "traceId",
    "startTime",
    "endTime",
    "dpl.core.processing_activity_id",
    "dpl.core.data_subject_id",
    "dpl.core.data_subject_id_type",
    "dpl.core.foreign_operation.processor",
];

/// What a partner asks for.
#[derive(Debug, Default)]
struct Ask {
    trace_id: Option<[u8; 16]>,
    activity: Option<String>,
    vnummer: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
}

fn bad(detail: impl Into<String>) -> Refusal {
    Refusal::new(problem::BAD_QUERY, detail)
}

/// A trace id as the extension writes it (UUID form) or as the standard
/// does (32 hex characters).
fn trace_id(s: &str) -> Option<[u8; 16]> {
    let hex: String = match s.len() {
        32 => s.to_string(),
        36 => uuid::Uuid::try_parse(s).ok()?.simple().to_string(),
        _ => return None,
    };
    let mut b = [0u8; 16];
    hex::decode_to_slice(hex.to_ascii_lowercase(), &mut b).ok()?;
    Some(b)
}

fn ask(v: &Value) -> Result<Ask, Refusal> {
    let m = v
        .as_object()
        .ok_or_else(|| bad("the query is a JSON object"))?;
    if let Some(k) = m.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(format!(
            "'{}' is not a field of the query",
            k.chars().take(64).collect::<String>()
        )));
    }
    let text = |k: &str| -> Result<Option<&str>, Refusal> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(bad(format!("{k} is a string"))),
        }
    };
    let time = |k: &str| -> Result<Option<i64>, Refusal> {
        text(k)?
            .map(|s| parse_time(s).ok_or_else(|| bad(format!("{k} is an RFC 3339 date-time"))))
            .transpose()
    };
    if let Some(t) = text("dpl.core.data_subject_id_type")?
        && !t.eq_ignore_ascii_case("vreemdelingennummer")
    {
        return Err(bad("data subjects are found by Vreemdelingennummer"));
    }
    let a = Ask {
        trace_id: text("traceId")?
            .map(|s| trace_id(s).ok_or_else(|| bad("traceId is 32 hex characters or a UUID")))
            .transpose()?,
        activity: text("dpl.core.processing_activity_id")?.map(str::to_string),
        vnummer: text("dpl.core.data_subject_id")?.map(str::to_string),
        since: time("startTime")?,
        until: time("endTime")?,
    };
    if a.trace_id.is_none() && a.activity.is_none() && a.vnummer.is_none() {
        return Err(bad(
            "give at least one of traceId, dpl.core.processing_activity_id, dpl.core.data_subject_id",
        ));
    }
    Ok(a)
}

/// Serves one query.
pub async fn handle(
    gw: &Gateway,
    peer: &Peer,
    partner: &Partner,
    req: Request<Incoming>,
) -> Response<Body> {
    let snap = gw.policy.current();
    let target = Target::own("", SERVICE);
    let trace = Trace::from_headers(req.headers());
    let mut x = Exchange::new(gw, &snap, partner, peer, &target, trace);
    x.purpose = "logboek-lezen".into();
    match stages(&mut x, req).await {
        Ok(resp) => resp,
        Err(r) => x.refuse(r).await,
    }
}

async fn stages(x: &mut Exchange<'_>, req: Request<Incoming>) -> Result<Response<Body>, Refusal> {
    if req.method() != Method::POST {
        let mut r = Refusal::new(problem::METHOD_NOT_ALLOWED, "the query is a POST");
        r.allow = Some("POST".into());
        return Err(r);
    }
    request::no_query(req.uri())?;
    x.direction = Direction::Request;
    let (bytes, _budget) = request::read_body(x.gw, req, MAX_BODY).await?;
    let v = super::json::parse(&bytes).map_err(|e| Refusal::new(problem::MALFORMED_JSON, e.0))?;
    let a = ask(&v)?;
    x.direction = Direction::Response;
    let mut filter = Filter {
        partner: Some(x.consumer.id.to_string()),
        since: a.since,
        until: a.until,
        limit: crate::audit::store::MAX_PAGE,
        ..Filter::default()
    };
    if let Some(v) = &a.vnummer {
        path_subject(x, v)?;
        filter.subjects = x.gw.audit.subjects(v).map_err(|_| {
            Refusal::new(
                problem::AUDIT_UNAVAILABLE,
                "the subject keys cannot be read",
            )
        })?;
        if filter.subjects.is_empty() {
            filter.subjects = x.subject.into_iter().collect();
        }
    }
    let view = x.gw.audit.view().clone();
    let want = (a.trace_id, a.activity.clone());
    let found = tokio::task::spawn_blocking(move || search(&view, filter, &want))
        .await
        .map_err(|_| Refusal::new(problem::INTERNAL, "the search stopped"))??;
    let lines: Vec<Value> = found.iter().map(|r| activity(&logboek(r))).collect();
    let body = json!({
        "metadata": {
            "logbookId": format!("ketenpoort/{}", x.gw.config.deployment),
            "organizationName": "ketenpoort",
        },
        "processingActivities": lines,
    });
    let mut e = x.entry(Direction::Response);
    if a.vnummer.is_some() {
        e.kind = RecordKind::Lookup;
    }
    e.decision = Decision::Disclosed;
    e.disclosed = vec!["logboek-lines".into()];
    e.reason = format!("{} lines", found.len());
    e.payload_sha256 = Some(sha256(&serde_json::to_vec(&body).unwrap_or_default()));
    let rec = x.record(e, "delivered").await?;
    let mut resp = json_response(StatusCode::OK, &body);
    resp.headers_mut()
        .insert(DISCLOSURE, HeaderValue::from(rec.id));
    resp.headers_mut().insert(TRACEPARENT, x.trace.header());
    Ok(resp)
}

/// The caller's records that match, newest first, at most [`MAX_RESULTS`].
fn search(
    view: &crate::audit::store::View,
    mut filter: Filter,
    want: &(Option<[u8; 16]>, Option<String>),
) -> Result<Vec<Record>, Refusal> {
    let mut out = Vec::new();
    let mut scanned = 0usize;
    loop {
        let page = view
            .query(&filter)
            .map_err(|_| Refusal::new(problem::AUDIT_UNAVAILABLE, "the log cannot be read now"))?;
        scanned += page.records.len();
        for r in page.records {
            let by_trace = want.0.is_none_or(|t| r.entry.trace_id == Some(t));
            let by_activity = want
                .1
                .as_ref()
                .is_none_or(|a| *a == processing_activity(&r));
            if by_trace && by_activity {
                out.push(r);
                if out.len() == MAX_RESULTS {
                    return Ok(out);
                }
            }
        }
        match page.next {
            Some(next) if scanned < MAX_SCANNED => filter.before = Some(next),
            Some(_) => {
                return Err(bad(
                    "the query reads too much of the log; narrow it with startTime and endTime",
                ));
            }
            None => return Ok(out),
        }
    }
}

/// A Logboek line in the extension's `ProcessingActivity` shape: camelCase,
/// the trace as a UUID, times as RFC 3339, the status by name.
fn activity(line: &Value) -> Value {
    let ms = |k: &str| line[k].as_i64().map(|t| format_micros(t * 1000));
    let trace = line["trace_id"]
        .as_str()
        .and_then(|s| uuid::Uuid::try_parse(s).ok())
        .map(|u| u.hyphenated().to_string());
    let mut m = Map::new();
    m.insert("traceId".into(), json!(trace));
    m.insert("spanId".into(), line["span_id"].clone());
    let status = ["Unset", "Ok", "Error"]
        .get(line["status_code"].as_u64().unwrap_or(0) as usize)
        .copied()
        .unwrap_or("Unset");
    m.insert("status".into(), json!(status));
    m.insert("name".into(), line["name"].clone());
    m.insert("startTime".into(), json!(ms("start_time")));
    m.insert("endTime".into(), json!(ms("end_time")));
    if let Some(p) = line.get("parent_span_id") {
        m.insert("parentSpanId".into(), p.clone());
    }
    m.insert("resource".into(), line["resource"].clone());
    m.insert("attributes".into(), line["attributes"].clone());
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report
    use super::*;

    #[test]
    fn a_query_needs_one_key_and_only_the_extensions_fields() {
        assert!(ask(&json!({})).is_err());
        assert!(ask(&json!({"startTime": "2026-01-01T00:00:00Z"})).is_err());
        assert!(ask(&json!({"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "x": 1})).is_err());
        let a = ask(&json!({"traceId": "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"})).unwrap();
        assert_eq!(
            a.trace_id.map(hex::encode).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert!(ask(&json!({"traceId": "kort"})).is_err());
        assert!(
            ask(&json!({"dpl.core.data_subject_id": "5550001234", "dpl.core.data_subject_id_type": "BSN"}))
                .is_err()
        );
    }
}
