//! Streaming export of the whole log: JSON lines, CSV, or the fields of the
//! Logboek Dataverwerkingen standard. Reads the segments, one record at a time.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::record::{Decision, Record, format_micros};
use super::segment::{self, ScanError};

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per record.
    Jsonl,
    /// A header line and one row per record.
    Csv,
    /// Logboek Dataverwerkingen fields, one JSON object per record.
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

/// One record in Logboek Dataverwerkingen terms.
pub fn logboek(r: &Record) -> serde_json::Value {
    let e = &r.entry;
    json!({
        "trace_id": e.trace_id.map(hex::encode),
        "span_id": e.span_id.map(hex::encode),
        "name": format!("ketenpoort {} {}", e.kind.as_str(), e.service),
        "status": match e.decision { Decision::Disclosed => "STATUS_CODE_OK", Decision::Refused => "STATUS_CODE_ERROR" },
        "start_time": format_micros(r.time_micros),
        "end_time": format_micros(r.time_micros),
        "processing_activity_id": format!(
            "urn:ketenpoort:pilot:{}:purpose:{}:policy:{}",
            e.pilot, e.purpose, e.policy_version.trim_start_matches("sha256:")
        ),
        "data_subject_id": e.subject.map(hex::encode),
        "data_subject_id_type": e.subject.map(|_| "vreemdelingennummer"),
        "attributes": {
            "ketenpoort.record_id": r.id,
            "ketenpoort.sender": e.sender,
            "ketenpoort.recipient": e.recipient,
            "ketenpoort.rule_id": e.rule_id,
            "ketenpoort.legal_basis": e.legal_basis,
            "ketenpoort.reason": e.reason,
        },
    })
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
