//! Streaming export of the whole log: JSON lines, CSV, or Logboek
//! Dataverwerkingen lines (the Logius standard, its field table transcribed
//! in `docs/ldv/`). Reads the segments, one record at a time.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::record::{Decision, Entry, Record, RecordKind};
use super::segment::{self, ScanError};
use crate::policy::{Direction, activity_id};

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per record.
    Jsonl,
    /// A header line and one row per record.
    Csv,
    /// Logboek Dataverwerkingen, one line per record (`docs/ldv/`).
    Logboek,
}

/// CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "time",
    "kind",
    "pilot",
    "sender",
    "recipient",
    "purpose",
    "legal_basis",
    "service",
    "rule_id",
    "policy_version",
    "decision",
    "reason",
    "disclosed",
    "withheld",
    "withheld_undeclared",
    "folded",
    "payload_sha256",
    "subject",
    "sender_cert_sha256",
    "recipient_cert_sha256",
    "trace_id",
    "span_id",
    "fsc_transaction_id",
    "processing_activity_id",
    "started",
    "foreign_span_id",
];

/// Quotes a CSV field when it needs it, and neutralises a cell that a
/// spreadsheet would run as a formula (OWASP: a leading `=`, `+`, `-`, `@`,
/// tab or carriage return gets a `'` in front).
pub fn csv_field(s: &str) -> String {
    let s: std::borrow::Cow<'_, str> = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}").into()
    } else {
        s.into()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}

/// One record as a CSV row (lists joined with `;`).
pub fn csv_row(r: &Record) -> String {
    let j = r.to_json();
    CSV_COLUMNS
        .iter()
        .map(|c| match &j[*c] {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => csv_field(s),
            serde_json::Value::Array(a) => csv_field(
                &a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(";"),
            ),
            other => csv_field(&other.to_string()),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The URI of a processing activity of the gateway's own (console look-ups,
/// policy changes, covenant steps, retention): not one of the pilots'
/// activities in the register, but named so every Logboek line has one.
pub const OWN_ACTIVITY_PREFIX: &str = "urn:ketenpoort:processing-activity:ketenpoort:";

/// The calling organisation in a Logboek `foreign_operation.entity`.
pub const PARTNER_URI_PREFIX: &str = "urn:ketenpoort:partner:";

/// `dpl.core.data_subject_id_type`: the standard's own word for the
/// V-nummer; the id beside it is the record's keyed pseudonym of it (the
/// standard asks for it "versleuteld").
pub const DATA_SUBJECT_ID_TYPE: &str = "Vreemdelingennummer";

/// Which way an exchange record's data went: the provider is the first
/// part of `service`, so a record it sent is an answer.
fn direction(r: &Record) -> Direction {
    let e = &r.entry;
    let provider = e.service.split('/').next().unwrap_or_default();
    if e.sender == provider {
        Direction::Response
    } else {
        Direction::Request
    }
}

/// The record's processing activity: its own (format 3), else the one its
/// pilot, purpose and direction name (an older exchange record under a
/// rule), else one of the gateway's own.
pub fn processing_activity(r: &Record) -> String {
    let e = &r.entry;
    if !e.processing_activity_id.is_empty() {
        return e.processing_activity_id.to_string();
    }
    if e.kind == RecordKind::Exchange && !e.rule_id.is_empty() && !e.pilot.is_empty() {
        return activity_id(&e.pilot, &e.purpose, direction(r));
    }
    format!("{OWN_ACTIVITY_PREFIX}{}", e.kind.as_str())
}

/// Eight bytes of SHA-256 over a label and parts: Logboek wants ids a
/// record does not hold (a span per record, a trace for records made
/// outside any exchange); derived, so anyone re-derives them from the log.
fn derived<const N: usize>(label: &str, parts: &[&[u8]]) -> [u8; N] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(label.as_bytes());
    for p in parts {
        ctx.update(p);
    }
    let d = ctx.finish();
    let mut out = [0u8; N];
    out.copy_from_slice(&d.as_ref()[..N]);
    out
}

/// `status_code` as the standard numbers it: a disclosure is marked `1`
/// (ok); a refusal is `0` (unset: the processing ran and decided, as a
/// 4xx does) unless the gateway or a back-end failed (a 5xx), then `2`.
pub fn status_code(e: &Entry) -> u8 {
    match e.decision {
        Decision::Disclosed => 1,
        Decision::Refused => {
            let server = crate::problem::ALL
                .iter()
                .find(|k| k.slug == e.reason)
                .is_some_and(|k| k.status.is_server_error());
            if server { 2 } else { 0 }
        }
    }
}

/// One record as one line of Logboek Dataverwerkingen
/// (`docs/ldv/component-logboek.md`): its own span, whose parent is the
/// exchange's span, so an answer about several people is several lines
/// under one exchange; a refusal names no data subject.
pub fn logboek(r: &Record) -> serde_json::Value {
    let e = &r.entry;
    let id = r.id.to_be_bytes();
    let trace_id = e
        .trace_id
        .unwrap_or_else(|| derived("ketenpoort-trace", &[&id]));
    let span_id: [u8; 8] = derived(
        "ketenpoort-span",
        &[
            &trace_id,
            e.span_id.as_ref().map_or(&[][..], |s| &s[..]),
            &id,
        ],
    );
    let ms = |micros: i64| micros.div_euclid(1000);
    let mut attributes = serde_json::Map::new();
    let mut put = |k: &str, v: String| {
        attributes.insert(k.to_string(), serde_json::Value::String(v));
    };
    put("dpl.core.processing_activity_id", processing_activity(r));
    if let (Some(subject), Decision::Disclosed) = (e.subject, e.decision) {
        put("dpl.core.data_subject_id", hex::encode(subject));
        put("dpl.core.data_subject_id_type", DATA_SUBJECT_ID_TYPE.into());
    }
    put("ketenpoort.record_id", r.id.to_string());
    put("ketenpoort.kind", e.kind.as_str().into());
    for (k, v) in [
        ("ketenpoort.pilot", &*e.pilot),
        ("ketenpoort.sender", &*e.sender),
        ("ketenpoort.recipient", &*e.recipient),
        ("ketenpoort.purpose", &*e.purpose),
        ("ketenpoort.legal_basis", &*e.legal_basis),
        ("ketenpoort.service", &*e.service),
        ("ketenpoort.rule_id", &*e.rule_id),
        ("ketenpoort.policy_version", &*e.policy_version),
        ("ketenpoort.reason", &*e.reason),
    ] {
        put(k, v.to_string());
    }
    put("ketenpoort.decision", e.decision.as_str().into());
    put("ketenpoort.disclosed", e.disclosed.join(","));
    put("ketenpoort.withheld", e.withheld.join(","));
    if let Some(u) = e.fsc_transaction_id {
        put(
            "ketenpoort.fsc_transaction_id",
            uuid::Uuid::from_bytes(u).hyphenated().to_string(),
        );
    }
    if let Some(h) = e.payload_sha256 {
        put("ketenpoort.payload_sha256", hex::encode(h));
    }
    let mut line = json!({
        "trace_id": hex::encode(trace_id),
        "span_id": hex::encode(span_id),
        "status_code": status_code(e),
        "name": format!("ketenpoort {} {}", e.kind.as_str(), e.service),
        "start_time": ms(e.started_micros.unwrap_or(r.time_micros)),
        "end_time": ms(r.time_micros),
        "resource": {"attributes": {"service.name": "ketenpoort", "service.version": env!("CARGO_PKG_VERSION")}},
        "attributes": attributes,
    });
    if let Some(parent) = e.span_id {
        line["parent_span_id"] = json!(hex::encode(parent));
    }
    if let Some(foreign) = e.foreign_span_id {
        let caller = match direction(r) {
            Direction::Request => &e.sender,
            Direction::Response => &e.recipient,
        };
        line["foreign_operation"] = json!({
            "trace_id": hex::encode(trace_id),
            "span_id": hex::encode(foreign),
            "entity": format!("{PARTNER_URI_PREFIX}{caller}"),
        });
    }
    line
}

/// Writes every record of the log in `audit_dir` to `out`.
pub fn export(audit_dir: &Path, format: Format, out: &mut dyn Write) -> Result<u64, String> {
    if format == Format::Csv {
        writeln!(out, "{}", CSV_COLUMNS.join(",")).map_err(|e| e.to_string())?;
    }
    let mut n = 0u64;
    for seg in segment::list(&audit_dir.join("segments")).map_err(|e| e.to_string())? {
        segment::scan(&seg.path, |_, bytes| {
            let r = Record::decode(bytes).map_err(|e| e.to_string())?;
            let line = match format {
                Format::Jsonl => r.to_json().to_string(),
                Format::Csv => csv_row(&r),
                Format::Logboek => logboek(&r).to_string(),
            };
            writeln!(out, "{line}").map_err(|e| e.to_string())?;
            n += 1;
            Ok::<_, String>(())
        })
        .map_err(|e| match e {
            ScanError::Io(e) => e.to_string(),
            ScanError::Damage(d) => d.to_string(),
            ScanError::Visit(s) => s,
        })?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formulas_are_neutralised_and_quotes_doubled() {
        use super::csv_field;
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-2"), "'-2");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("casusoverleg"), "casusoverleg");
    }
}
