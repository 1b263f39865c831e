//! The DPIA annex per pilot, generated from the policy that runs: the register
//! of processing (GDPR art. 30) with purposes, legal bases, categories of data
//! per recipient, special categories, retention and the covenant's validity,
//! and the flow picture. Markdown and HTML, byte for byte reproducible (no
//! dates of generation), so a test can hold the committed annex to the policy.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::identity::sha256;
use crate::policy::fields::Category;
use crate::policy::graph;
use crate::policy::{Pilot, PolicySet};

/// One row of the register: a flow with everything art. 30 asks.
struct Row {
    purpose: String,
    from: String,
    to: String,
    service: String,
    categories: BTreeSet<Category>,
    fields: Vec<String>,
}

fn rows(pilot: &Pilot) -> Vec<Row> {
    let mut out: Vec<Row> = pilot
        .flows()
        .map(|(rule, d, from, to)| {
            let allowed = rule.allowed(d);
            Row {
                purpose: rule.purpose.to_string(),
                from: from.to_string(),
                to: to.to_string(),
                service: rule.service.qualified().to_string(),
                categories: allowed
                    .iter()
                    .flat_map(|p| rule.service.categories_of(p))
                    .collect(),
                fields: allowed.iter().map(|p| rule.field_label(p)).collect(),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.purpose, &a.from, &a.to, &a.service).cmp(&(&b.purpose, &b.from, &b.to, &b.service))
    });
    out
}

fn cats(c: &BTreeSet<Category>) -> String {
    c.iter()
        .map(|c| {
            if c.is_special() {
                format!("**{}** (special)", c.as_str())
            } else {
                c.as_str().to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn name(set: &PolicySet, id: &str) -> String {
    set.partners
        .get(id)
        .map_or_else(|| id.to_string(), |p| p.name.clone())
}

/// The annex of one pilot as Markdown. `covenant` is the pilot's covenant
/// status ([`crate::covenant::view::status`]) when the gateway's data
/// directory is at hand: the version in force and who signed it when.
pub fn markdown(set: &PolicySet, pilot: &Pilot, covenant: Option<&Value>) -> String {
    let rows = rows(pilot);
    let mut s = String::new();
    md_summary(&mut s, set, pilot);
    md_signatures(&mut s, pilot, covenant);
    md_purposes(&mut s, pilot);
    md_consent(&mut s, set, pilot);
    md_recipients(&mut s, set, &rows);
    md_special(&mut s, set, pilot, &rows);
    md_receive_nothing(&mut s, set, pilot, &rows);
    md_transfers(&mut s, set, pilot);
    let _ = writeln!(
        s,
        "\n## Data flows\n\n![Data flows of {}]({}-flows.svg)",
        pilot.name, pilot.id
    );
    s
}

/// The covenant version of the file, and the version in force with who
/// signed it when (from the gateway's data directory, when at hand).
fn md_signatures(s: &mut String, pilot: &Pilot, covenant: Option<&Value>) {
    let _ = writeln!(
        s,
        "## Covenant signatures
"
    );
    let _ = writeln!(
        s,
        "The covenant text of this policy file (the file and the declared fields of its services) has version `{}`.\n",
        pilot.covenant_version
    );
    let Some(c) = covenant else {
        let _ = writeln!(
            s,
            "Who signed which version is kept by the gateway: `ketenpoort covenant status --pilot {}` (this annex was rendered without its data directory).\n",
            pilot.id
        );
        return;
    };
    let Some(f) = c["in_force"].as_object() else {
        let _ = writeln!(
            s,
            "No version is in force: no partner data flows in this pilot.\n"
        );
        return;
    };
    let _ = writeln!(
        s,
        "In force: `{}` since {} ({}).\n",
        f["version"].as_str().unwrap_or(""),
        f["since"].as_str().unwrap_or("?"),
        md_cell(f["basis"].as_str().unwrap_or(""))
    );
    let _ = writeln!(s, "| partner | accepted |\n|---|---|");
    for sig in f["signers"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| `{}` | {} |",
            sig["partner"].as_str().unwrap_or(""),
            sig["time"].as_str().unwrap_or("")
        );
    }
    for r in f["revoked"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| `{}` | **revoked** {} |",
            r["partner"].as_str().unwrap_or(""),
            r["time"].as_str().unwrap_or("")
        );
    }
    s.push('\n');
}

/// Title and the table of pilot, covenant, policy file and parties.
fn md_summary(s: &mut String, set: &PolicySet, pilot: &Pilot) {
    let file = pilot
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "# DPIA annex: {} — register of processing (GDPR art. 30)\n",
        pilot.name
    );
    let _ = writeln!(
        s,
        "Generated by `ketenpoort dpia render` from the policy the gateway enforces; do not edit by hand. A test fails when this file no longer matches the policy.\n"
    );
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| Pilot | {} (`{}`) |", md_cell(&pilot.name), pilot.id);
    let _ = writeln!(
        s,
        "| Covenant | {} version {}, valid from {} to {} |",
        md_cell(&pilot.covenant.id),
        md_cell(&pilot.covenant.version),
        pilot.covenant.valid_from,
        pilot.covenant.valid_until
    );
    let _ = writeln!(
        s,
        "| Policy file | `config/pilots/{file}`, SHA-256 `{}` |",
        hex::encode(sha256(pilot.text.as_bytes()))
    );
    let _ = writeln!(
        s,
        "| Controllers (signed the covenant) | {} |",
        pilot
            .partners
            .iter()
            .map(|p| format!("{} (`{p}`)", md_cell(&name(set, p))))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        s,
        "| Processor | the operator of the ketenpoort gateway (transport, minimisation, audit log; it keeps no case data) |"
    );
    let _ = writeln!(
        s,
        "| Data subjects | foreign nationals without right of residence in {} |\n",
        md_cell(&pilot.name)
    );
}

/// Cases moved to or from other LVVs: the fields both pilots' files allow,
/// which are the only ones that go.
fn md_transfers(s: &mut String, set: &PolicySet, pilot: &Pilot) {
    if pilot.transfers.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Transfers between LVVs\n\nA case moves with its dossier to the receiving municipality; the stay ends here and starts there in one step. Only the fields both pilots' files allow go.\n\n| Direction | Other LVV | Service | Purpose | Fields delivered |\n|---|---|---|---|---|"
    );
    for t in &pilot.transfers {
        use crate::policy::transfer::Side;
        let (dir, agreed) = match &t.side {
            Side::To(o) => ("sends to", set.transfer(&pilot.id, o)),
            Side::From(o) => ("receives from", set.transfer(o, &pilot.id)),
        };
        let fields = agreed.map_or_else(
            || "none (the other file does not agree)".to_string(),
            |a| {
                a.rule
                    .request
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
        let _ = writeln!(
            s,
            "| {dir} | {} | `{}` | `{}` | {fields} |",
            name_of_pilot(set, t.other()),
            t.service.qualified(),
            t.purpose
        );
    }
}

fn name_of_pilot(set: &PolicySet, id: &str) -> String {
    set.pilots
        .get(id)
        .map_or_else(|| id.to_string(), |p| md_cell(&p.name))
}

fn md_purposes(s: &mut String, pilot: &Pilot) {
    let _ = writeln!(s, "## Purposes, legal bases and retention\n");
    let _ = writeln!(
        s,
        "| Purpose | Description | Legal basis | Retention by the recipient | Special categories |\n|---|---|---|---|---|"
    );
    for p in pilot.purposes.values() {
        let special: Vec<&str> = p.special_categories.iter().map(|c| c.as_str()).collect();
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} days | {} |",
            p.id,
            md_cell(&p.description),
            md_cell(&p.legal_basis),
            p.retention_days,
            if special.is_empty() {
                "none".to_string()
            } else {
                special.join(", ")
            }
        );
    }
}

/// The flows that rest on the person's consent instead of a legal duty,
/// who records consent, and how long the audit log links a record to a
/// person.
fn md_consent(s: &mut String, set: &PolicySet, pilot: &Pilot) {
    let _ = writeln!(s, "\n## Flows that rest on consent\n");
    let rules: Vec<_> = pilot.rules.iter().filter(|r| r.consent).collect();
    if rules.is_empty() {
        let _ = writeln!(
            s,
            "None: every flow of this pilot rests on the legal basis of its purpose."
        );
    } else {
        let _ = writeln!(
            s,
            "These flows pass only for a person with a consent in force (GDPR art. 6(1)(a), 9(2)(a)); a withdrawal or the consent's expiry stops them at once. Every disclosure under them names the consent it rests on.\n"
        );
        let _ = writeln!(
            s,
            "| Rule | Purpose | Service | Consumers |\n|---|---|---|---|"
        );
        for r in rules {
            let _ = writeln!(
                s,
                "| `{}` | `{}` | `{}` | {} |",
                r.id,
                r.purpose,
                r.service.qualified(),
                r.consumers
                    .iter()
                    .map(|c| md_cell(&name(set, c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let recorders = if pilot.consent_recorders.is_empty() {
        "none".to_string()
    } else {
        pilot
            .consent_recorders
            .iter()
            .map(|c| md_cell(&name(set, c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(s, "\nConsent recorders: {recorders}.\n");
    let _ = writeln!(
        s,
        "Audit retention: {}",
        match &pilot.retention {
            Some(r) => format!(
                "`{r}`: after a calendar month's last day is older than this, the key that links its audit records to people is destroyed; the records stay, unlinkable."
            ),
            None => "not stated: audit records stay linkable.".to_string(),
        }
    );
}

fn md_recipients(s: &mut String, set: &PolicySet, rows: &[Row]) {
    let _ = writeln!(s, "\n## Recipients and categories of data\n");
    let _ = writeln!(
        s,
        "One row per flow: who gives which categories of data to whom, through which service, for which purpose. Fields not listed never leave the giver.\n"
    );
    let _ = writeln!(
        s,
        "| Purpose | From | To | Service | Categories | Fields (transforms) |\n|---|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | `{}` | {} | {} |",
            r.purpose,
            md_cell(&name(set, &r.from)),
            md_cell(&name(set, &r.to)),
            r.service,
            cats(&r.categories),
            md_cell(&r.fields.join(", "))
        );
    }
}

fn md_special(s: &mut String, set: &PolicySet, pilot: &Pilot, rows: &[Row]) {
    let _ = writeln!(s, "\n## Special categories of data (GDPR art. 9 and 10)\n");
    let special: Vec<&Row> = rows
        .iter()
        .filter(|r| r.categories.iter().any(|c| c.is_special()))
        .collect();
    if special.is_empty() {
        let _ = writeln!(s, "No flow of this pilot carries health or criminal data.");
        return;
    }
    for r in special {
        let basis = pilot
            .purposes
            .get(&r.purpose)
            .map(|p| p.legal_basis.clone())
            .unwrap_or_default();
        let sc: Vec<&str> = r
            .categories
            .iter()
            .filter(|c| c.is_special())
            .map(|c| c.as_str())
            .collect();
        let _ = writeln!(
            s,
            "- {} from {} to {} for `{}`, on the basis of: {}",
            sc.join(", "),
            name(set, &r.from),
            name(set, &r.to),
            r.purpose,
            basis
        );
    }
}

fn md_receive_nothing(s: &mut String, set: &PolicySet, pilot: &Pilot, rows: &[Row]) {
    let receiving: BTreeSet<&str> = rows.iter().map(|r| r.to.as_str()).collect();
    let none: Vec<String> = pilot
        .partners
        .iter()
        .filter(|p| !receiving.contains(p.as_str()))
        .map(|p| format!("{} (`{p}`)", name(set, p)))
        .collect();
    let _ = writeln!(s, "\n## Parties that receive no personal data\n");
    let _ = writeln!(
        s,
        "{}",
        if none.is_empty() {
            "None: every party receives something.".to_string()
        } else {
            none.join("; ")
        }
    );
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The annex of one pilot as HTML, the flow picture inline.
pub fn html(set: &PolicySet, pilot: &Pilot, covenant: Option<&Value>) -> String {
    // The Markdown above uses only headings, paragraphs, tables, lists and
    // inline code/bold, so a small converter renders it faithfully.
    let md = markdown(set, pilot, covenant);
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>DPIA annex: {}</title>\n<style>body{{font-family:sans-serif;max-width:75em;margin:2em auto;padding:0 1em}}table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #aaa;padding:3px 6px;text-align:left;vertical-align:top;font-size:90%}}th{{background:#eee}}code{{background:#f2f2f2}}</style></head><body>\n",
        esc(&pilot.name)
    );
    let inline = |t: &str| {
        let mut r = String::new();
        let mut code = false;
        let mut bold = false;
        let mut chars = esc(t)
            .replace("\\|", "|")
            .chars()
            .peekable()
            .collect::<Vec<_>>()
            .into_iter()
            .peekable();
        while let Some(c) = chars.next() {
            if c == '`' {
                r.push_str(if code { "</code>" } else { "<code>" });
                code = !code;
            } else if c == '*' && chars.peek() == Some(&'*') {
                chars.next();
                r.push_str(if bold { "</strong>" } else { "<strong>" });
                bold = !bold;
            } else {
                r.push(c);
            }
        }
        r
    };
    let mut in_table = false;
    let mut in_list = false;
    for line in md.lines() {
        let is_row = line.starts_with('|');
        if !is_row && in_table {
            out.push_str("</table>\n");
            in_table = false;
        }
        if !line.starts_with("- ") && in_list {
            out.push_str("</ul>\n");
            in_list = false;
        }
        if let Some(h) = line.strip_prefix("## ") {
            let _ = writeln!(out, "<h2>{}</h2>", inline(h));
        } else if let Some(h) = line.strip_prefix("# ") {
            let _ = writeln!(out, "<h1>{}</h1>", inline(h));
        } else if is_row {
            if line.starts_with("|---") {
                continue;
            }
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            let tag = if in_table { "td" } else { "th" };
            if !in_table {
                out.push_str("<table>\n");
                in_table = true;
            }
            let _ = writeln!(
                out,
                "<tr>{}</tr>",
                cells
                    .iter()
                    .map(|c| format!("<{tag}>{}</{tag}>", inline(c.trim())))
                    .collect::<String>()
            );
        } else if let Some(item) = line.strip_prefix("- ") {
            if !in_list {
                out.push_str("<ul>\n");
                in_list = true;
            }
            let _ = writeln!(out, "<li>{}</li>", inline(item));
        } else if line.starts_with("![") {
            out.push_str(&graph::svg(set, pilot));
        } else if !line.trim().is_empty() {
            let _ = writeln!(out, "<p>{}</p>", inline(line));
        }
    }
    if in_table {
        out.push_str("</table>\n");
    }
    if in_list {
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    out
}

/// Writes every pilot's annex into `out` without the signatures (which
/// live in the gateway's data directory): see [`render_signed`].
pub fn render(set: &PolicySet, out: &Path) -> std::io::Result<Vec<PathBuf>> {
    render_signed(set, &BTreeMap::new(), out)
}

/// Writes every pilot's annex into `out`: `<pilot>.md`, `<pilot>.html`,
/// `<pilot>-flows.svg`, and a README listing them, each with its covenant
/// status from `covenants` when there. Returns the files written.
pub fn render_signed(
    set: &PolicySet,
    covenants: &BTreeMap<String, Value>,
    out: &Path,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut files = Vec::new();
    let mut index = String::from(
        "# DPIA annexes per pilot\n\nGenerated by `ketenpoort dpia render` from `config/`; do not edit by hand.\nThe DPIA itself is `../DPIA.md`.\n\n",
    );
    for pilot in set.pilots.values() {
        for (name, text) in [
            (
                format!("{}.md", pilot.id),
                markdown(set, pilot, covenants.get(pilot.id.as_str())),
            ),
            (
                format!("{}.html", pilot.id),
                html(set, pilot, covenants.get(pilot.id.as_str())),
            ),
            (format!("{}-flows.svg", pilot.id), graph::svg(set, pilot)),
        ] {
            let p = out.join(name);
            std::fs::write(&p, text)?;
            files.push(p);
        }
        let _ = writeln!(
            index,
            "- [{}]({}.md) ([HTML]({}.html), [flows]({}-flows.svg))",
            pilot.name, pilot.id, pilot.id, pilot.id
        );
    }
    let p = out.join("README.md");
    std::fs::write(&p, index)?;
    files.push(p);
    Ok(files)
}
