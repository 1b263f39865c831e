//! The GDPR art. 15 access report for one person: which partners received
//! which categories of their data, for which purpose and on which legal basis,
//! when; what was refused; their stays in the LVVs as the registry keeps
//! them (pilot, since, until, reason), found under the registry's pseudonym;
//! and the consents the person gave and withdrew. Written to be handed to
//! the person, with Dutch and English headings.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::audit::{Decision, Record, RecordKind};
use crate::policy::PolicySet;
use crate::policy::fields::FieldPath;
use crate::storage::consent::Histories;
use crate::storage::registry::Stay;

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn name_of(policy: &PolicySet, id: &str) -> String {
    policy
        .partners
        .get(id)
        .map_or_else(|| id.to_string(), |p| p.name.clone())
}

/// The categories of the fields disclosed in a record, from the service's
/// declaration in the running policy.
fn categories(policy: &PolicySet, r: &Record) -> Vec<String> {
    let Some((provider, service)) = r.entry.service.split_once('/') else {
        return Vec::new();
    };
    let Some(svc) = policy
        .partners
        .get(provider)
        .and_then(|p| p.service(service))
    else {
        return Vec::new();
    };
    let mut cats = BTreeSet::new();
    for f in &r.entry.disclosed {
        let generic = f.replace("[]", "");
        if let Ok(p) = FieldPath::parse(&generic) {
            cats.extend(
                svc.categories_of(&p)
                    .into_iter()
                    .map(|c| c.as_str().to_string()),
            );
        }
    }
    cats.into_iter().collect()
}

fn purpose_text(policy: &PolicySet, r: &Record) -> String {
    policy
        .pilots
        .get(r.entry.pilot.as_str())
        .and_then(|p| p.purposes.get(r.entry.purpose.as_str()))
        .map_or_else(
            || r.entry.purpose.to_string(),
            |p| format!("{} ({})", p.id, p.description),
        )
}

/// The person's stays, as the report lists them: in scope of a partner's
/// officer only the pilots that partner signed.
fn registrations(stays: &[Stay], policy: &PolicySet, scope: Option<&str>) -> Vec<Value> {
    stays
        .iter()
        .filter(|s| {
            scope.is_none_or(|p| {
                policy
                    .pilots
                    .get(&s.pilot)
                    .is_some_and(|pl| pl.partners.iter().any(|x| x == p))
            })
        })
        .map(|s| {
            json!({
                "pilot": s.pilot,
                "pilot_name": policy.pilots.get(&s.pilot).map_or(s.pilot.as_str(), |p| p.name.as_str()),
                "since": s.since,
                "until": s.ended.as_ref().map(|e| e.until.clone()),
                "reason": s.ended.as_ref().map(|e| e.reason.clone()),
            })
        })
        .collect()
}

/// The person's consents and withdrawals, one entry per step, oldest first
/// per rule; an officer scoped to a partner sees the steps that partner
/// recorded.
fn consent_steps(consents: &Histories, policy: &PolicySet, scope: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    for (pilot, rule, history) in consents {
        for e in history {
            if scope.is_some_and(|p| p != e.by) {
                continue;
            }
            out.push(json!({
                "pilot": pilot,
                "rule": rule,
                "act": e.act,
                "recorded_at": e.recorded_at,
                "by": {"id": e.by, "name": name_of(policy, &e.by)},
                "record": e.record,
                "given_at": e.given_at,
                "expires": e.expires,
                "evidence": e.evidence,
                "reason": e.reason,
            }));
        }
    }
    out
}

/// The report as JSON.
pub fn json_report(
    vnummer: &str,
    records: &[Record],
    stays: &[Stay],
    consents: &Histories,
    policy: &PolicySet,
    scope: Option<&str>,
) -> Value {
    let exchanges: Vec<&Record> = records
        .iter()
        .filter(|r| r.entry.kind == RecordKind::Exchange)
        .collect();
    let disclosed: Vec<Value> = exchanges
        .iter()
        .filter(|r| r.entry.decision == Decision::Disclosed)
        .map(|r| {
            json!({
                "record": r.id,
                "time": r.time_rfc3339(),
                "pilot": r.entry.pilot,
                "from": {"id": r.entry.sender, "name": name_of(policy, &r.entry.sender)},
                "to": {"id": r.entry.recipient, "name": name_of(policy, &r.entry.recipient)},
                "purpose": purpose_text(policy, r),
                "legal_basis": r.entry.legal_basis,
                "categories": categories(policy, r),
                "fields": r.entry.disclosed,
            })
        })
        .collect();
    let refused: Vec<Value> = exchanges
        .iter()
        .filter(|r| r.entry.decision == Decision::Refused)
        .map(|r| {
            json!({
                "record": r.id,
                "time": r.time_rfc3339(),
                "pilot": r.entry.pilot,
                "asked_by": {"id": r.entry.recipient, "name": name_of(policy, &r.entry.recipient)},
                "from": {"id": r.entry.sender, "name": name_of(policy, &r.entry.sender)},
                "purpose": r.entry.purpose,
                "reason": r.entry.reason,
            })
        })
        .collect();
    json!({
        "vnummer": vnummer,
        "scope": scope.map_or("all partners".to_string(), |p| format!("exchanges with {p}")),
        "scope_partner": scope,
        "disclosed": disclosed,
        "refused": refused,
        "registrations": registrations(stays, policy, scope),
        "consents": consent_steps(consents, policy, scope),
    })
}

/// The report as CSV: one row per exchange.
pub fn csv_report(report: &Value) -> String {
    use crate::audit::export::csv_field as f;
    let mut out =
        String::from("decision,record,time,pilot,from,to,purpose,legal_basis,categories,reason\n");
    for d in report["disclosed"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "disclosed,{},{},{},{},{},{},{},{},\n",
            d["record"],
            f(d["time"].as_str().unwrap_or("")),
            f(d["pilot"].as_str().unwrap_or("")),
            f(d["from"]["id"].as_str().unwrap_or("")),
            f(d["to"]["id"].as_str().unwrap_or("")),
            f(d["purpose"].as_str().unwrap_or("")),
            f(d["legal_basis"].as_str().unwrap_or("")),
            f(&d["categories"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(";")),
        ));
    }
    for r in report["refused"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "refused,{},{},{},{},{},{},,,{}\n",
            r["record"],
            f(r["time"].as_str().unwrap_or("")),
            f(r["pilot"].as_str().unwrap_or("")),
            f(r["from"]["id"].as_str().unwrap_or("")),
            f(r["asked_by"]["id"].as_str().unwrap_or("")),
            f(r["purpose"].as_str().unwrap_or("")),
            f(r["reason"].as_str().unwrap_or("")),
        ));
    }
    for r in report["registrations"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "registration,,{},{},,,,,,{}\n",
            f(r["since"].as_str().unwrap_or("")),
            f(r["pilot"].as_str().unwrap_or("")),
            f(&match (r["until"].as_str(), r["reason"].as_str()) {
                (Some(u), Some(why)) => format!("ended {u}: {why}"),
                _ => "open".to_string(),
            }),
        ));
    }
    for c in report["consents"].as_array().into_iter().flatten() {
        let act = c["act"].as_str().unwrap_or("");
        out.push_str(&format!(
            "consent-{act},{},{},{},{},,{},,,{}\n",
            c["record"],
            f(c["recorded_at"].as_str().unwrap_or("")),
            f(c["pilot"].as_str().unwrap_or("")),
            f(c["by"]["id"].as_str().unwrap_or("")),
            f(c["rule"].as_str().unwrap_or("")),
            f(c["reason"].as_str().unwrap_or("")),
        ));
    }
    out
}

/// The stays as rows of the HTML report.
fn stay_rows(report: &Value) -> String {
    let s = |v: &Value| esc(v.as_str().unwrap_or(""));
    let mut rows = String::new();
    for r in report["registrations"].as_array().into_iter().flatten() {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            s(&r["pilot_name"]),
            s(&r["since"]),
            s(&r["until"]),
            s(&r["reason"]),
        ));
    }
    rows
}

/// The language of the printable report: Dutch or English for the person
/// it is handed to, or both side by side (the default of the API, kept for
/// callers from before the choice existed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Dutch only.
    Nl,
    /// English only.
    En,
    /// Dutch with the English after it.
    Both,
}

impl Lang {
    /// `nl`, `en`, or anything else for both.
    pub fn of(s: Option<&str>) -> Self {
        match s {
            Some("nl") => Self::Nl,
            Some("en") => Self::En,
            _ => Self::Both,
        }
    }

    /// A label in this language.
    fn t(self, nl: &str, en: &str) -> String {
        match self {
            Self::Nl => nl.to_string(),
            Self::En => en.to_string(),
            Self::Both => format!("{nl} <span class=\"en\" lang=\"en\">/ {en}</span>"),
        }
    }

    fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            _ => "nl",
        }
    }
}

/// A category of data as the person reads it.
fn category(l: Lang, c: &str) -> String {
    let nl = match c {
        "identity" => "identiteit",
        "residence" => "verblijf",
        "procedure" => "procedure",
        "shelter" => "opvang",
        "guidance" => "begeleiding",
        "return" => "terugkeer",
        "contact" => "contactgegevens",
        "health" => "gezondheid",
        "criminal" => "strafrechtelijke gegevens",
        other => other,
    };
    let en = if c == "contact" { "contact details" } else { c };
    l.t(&esc(nl), &esc(en))
}

/// A table with these headings, or a line saying there is nothing.
fn table(l: Lang, heads: &[(&str, &str)], rows: &str) -> String {
    if rows.is_empty() {
        return format!("<p>{}</p>\n", l.t("Geen.", "None."));
    }
    let th: String = heads
        .iter()
        .map(|(nl, en)| format!("<th scope=\"col\">{}</th>", l.t(nl, en)))
        .collect();
    format!("<table><thead><tr>{th}</tr></thead><tbody>\n{rows}</tbody></table>\n")
}

/// The report as a printable HTML page, in Dutch, English or both.
pub fn html_report(report: &Value, l: Lang) -> String {
    let s = |v: &Value| esc(v.as_str().unwrap_or(""));
    let mut rows = String::new();
    for d in report["disclosed"].as_array().into_iter().flatten() {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            s(&d["time"]),
            s(&d["from"]["name"]),
            s(&d["to"]["name"]),
            d["categories"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|c| category(l, c))
                .collect::<Vec<_>>()
                .join(", "),
            s(&d["purpose"]),
            s(&d["legal_basis"]),
        ));
    }
    let mut refused = String::new();
    for r in report["refused"].as_array().into_iter().flatten() {
        refused.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            s(&r["time"]),
            s(&r["asked_by"]["name"]),
            s(&r["from"]["name"]),
            s(&r["purpose"]),
            s(&r["reason"]),
        ));
    }
    let mut consents = String::new();
    for c in report["consents"].as_array().into_iter().flatten() {
        let act = match c["act"].as_str() {
            Some("given") => l.t("toestemming gegeven", "consent given"),
            _ => l.t("toestemming ingetrokken", "consent withdrawn"),
        };
        consents.push_str(&format!(
            "<tr><td>{}</td><td>{act}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            s(&c["recorded_at"]),
            s(&c["by"]["name"]),
            s(&c["rule"]),
            s(&c["given_at"]),
            s(&c["expires"]),
        ));
    }
    let scope = match report["scope_partner"].as_str() {
        None => l.t("alle organisaties", "all partners"),
        Some(p) => format!("{} {}", l.t("uitwisselingen met", "exchanges with"), esc(p)),
    };
    let when = ("Wanneer", "When");
    let purpose = ("Doel", "Purpose");
    let reason = ("Reden", "Reason");
    format!(
        r#"<!doctype html>
<html lang="{code}"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em;color:#1b1f24}}table{{border-collapse:collapse;width:100%;margin-bottom:2em}}
td,th{{border:1px solid #767676;padding:4px 6px;text-align:left;font-size:90%}}th{{background:#eee}}.en{{color:#555;font-weight:normal}}</style></head>
<body>
<h1>{h1}</h1>
<p>{article} &mdash; V-nummer {vnummer} &mdash; {scope}</p>
<p>{intro}</p>
<h2>{shared}</h2>
{rows}<h2>{stays_h}</h2>
{stays}<h2>{refused_h}</h2>
{refused}<h2>{consent_h}</h2>
{consents}</body></html>
"#,
        code = l.code(),
        title = match l {
            Lang::En => "Access report",
            Lang::Nl => "Inzage",
            Lang::Both => "Inzage / Access report",
        },
        h1 = l.t("Overzicht van verstrekte gegevens", "Report of data shared"),
        article = l.t("AVG artikel 15", "GDPR article 15"),
        vnummer = s(&report["vnummer"]),
        intro = l.t(
            "Dit overzicht toont welke organisaties in de Landelijke Vreemdelingenvoorzieningen gegevens over u aan elkaar gaven, welke soorten gegevens, waarvoor en op welke grondslag, en welke verzoeken werden geweigerd.",
            "This report shows which organisations in the LVV shared data about you with each other, which kinds of data, for what purpose and on what legal basis, and which requests were refused."
        ),
        shared = l.t("Verstrekt", "Shared"),
        rows = table(
            l,
            &[when, ("Van", "From"), ("Aan", "To"), ("Soorten gegevens", "Kinds of data"), purpose, ("Grondslag", "Legal basis")],
            &rows
        ),
        stays_h = l.t("Verblijf in een LVV", "Stays in an LVV"),
        stays = table(
            l,
            &[("LVV", "LVV"), ("Sinds", "Since"), ("Tot", "Until"), reason],
            &stay_rows(report)
        ),
        refused_h = l.t("Geweigerd", "Refused"),
        refused = table(
            l,
            &[when, ("Gevraagd door", "Asked by"), ("Bij", "Of"), purpose, reason],
            &refused
        ),
        consent_h = l.t("Toestemming", "Consent"),
        consents = table(
            l,
            &[("Vastgelegd", "Recorded"), ("Wat", "What"), ("Door", "By"), ("Regel", "Rule"), ("Gegeven op", "Given on"), ("Geldig tot en met", "Valid until")],
            &consents
        ),
    )
}
