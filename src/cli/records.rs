//! Records printed for a person (a table) or a program (JSON lines, CSV):
//! shared by `audit query` and `audit check-evidence`.

use std::fmt::Write as _;

use crate::audit::export;
use crate::audit::record::Record;

// No `///` on the variants: clap would list them as help for each value.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[allow(missing_docs)]
pub enum QueryFormat {
    Table,
    Jsonl,
    Csv,
}

/// Records as a table for a person, or as JSON lines or CSV for a program
/// (the same shapes `audit export` writes).
pub fn render(records: &[Record], format: QueryFormat) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    match format {
        QueryFormat::Jsonl => {
            for r in records {
                writeln!(out, "{}", r.to_json())?;
            }
        }
        QueryFormat::Csv => {
            writeln!(out, "{}", export::CSV_COLUMNS.join(","))?;
            for r in records {
                writeln!(out, "{}", export::csv_row(r))?;
            }
        }
        QueryFormat::Table => {
            writeln!(
                out,
                "{:>8}  {:<27}  {:<9}  {:<10}  {:<24} {:<24} {:<18} service",
                "id", "time", "decision", "pilot", "sender", "recipient", "purpose"
            )?;
            for r in records {
                let e = &r.entry;
                writeln!(
                    out,
                    "{:>8}  {:<27}  {:<9}  {:<10}  {:<24} {:<24} {:<18} {}{}",
                    r.id,
                    r.time_rfc3339(),
                    e.decision.as_str(),
                    e.pilot,
                    e.sender,
                    e.recipient,
                    e.purpose,
                    e.service,
                    if e.reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", e.reason)
                    }
                )?;
            }
            writeln!(out, "{} record(s)", records.len())?;
        }
    }
    Ok(out)
}
