//! The rule editor's side of the console: administrators change a pilot's
//! covenant by picking and ticking instead of writing TOML. The editor reads
//! the pilot's rules, purposes and the declared fields (with categories) of
//! the services its partners offer; an edit comes back as the new text of
//! the pilot file, written with `toml_edit` so that comments, order and
//! layout of everything else stay as they were. That text then goes through
//! the same dry run (flow diff) and apply as a hand-edited file, so the
//! editor can do nothing the raw editor could not, and validation (special
//! categories without a legal basis refused, as on load) happens in one place.

use serde::Deserialize;
use serde_json::{Value, json};
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, value};

use super::reply::{forbidden, json_ok};
use super::users::User;
use crate::gateway::{Body, Gateway};
use crate::policy::minimise::{Granularity, Transform};
use crate::problem::{self, Problem};
use hyper::Response;

/// `GET /api/v1/pilots/{pilot}/rules`: what the editor offers.
pub fn editor(gw: &Gateway, user: &User, pilot: &str) -> Response<Body> {
    if let Err(e) = user.may_edit(pilot) {
        return forbidden(e).response();
    }
    let snap = gw.policy.current();
    let Some(p) = snap.policy.pilots.get(pilot) else {
        return problem::respond(problem::UNKNOWN_PILOT, "no such pilot");
    };
    let services: Vec<Value> = p
        .partners
        .iter()
        .filter_map(|id| snap.policy.partners.get(id))
        .flat_map(|partner| partner.services.iter())
        .map(|s| {
            json!({
                "id": s.qualified(),
                "fields": s.fields.iter().map(|(f, c)| json!({
                    "path": f.to_string(), "category": c.as_str(), "special": c.is_special(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let transform = |t: &Transform| match t {
        Transform::Generalise(Granularity::Month) => "month",
        Transform::Generalise(Granularity::Year) => "year",
        Transform::Pseudonymise => "pseudonymise",
    };
    let rules: Vec<Value> = p
        .rules
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "purpose": r.purpose, "service": r.service.qualified(), "consumers": r.consumers,
                "response": r.response.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
                "request": r.request.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
                "transforms": r.transforms.iter().map(|(f, t)| json!({"field": f.to_string(), "kind": transform(t)})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json_ok(&json!({
        "pilot": p.id,
        "partners": p.partners.iter().map(|id| json!({
            "id": id,
            "name": snap.policy.partners.get(id).map_or(id.as_str(), |x| x.name.as_str()),
        })).collect::<Vec<_>>(),
        "purposes": p.purposes.values().map(|u| json!({
            "id": u.id, "legal_basis": u.legal_basis,
            "special_categories": u.special_categories.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "services": services,
        "rules": rules,
        "valid_from": p.covenant.valid_from.to_string(),
        "valid_until": p.covenant.valid_until.to_string(),
    }))
}

/// One transform as the editor sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditTransform {
    /// The field.
    pub field: String,
    /// `month`, `year` or `pseudonymise`.
    pub kind: String,
}

/// One rule as the editor sends it: the rule is found by id (or added).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    /// The rule's id; a new id adds a rule at the end.
    pub id: String,
    /// The purpose.
    pub purpose: String,
    /// `provider/service`.
    pub service: String,
    /// Who may call it.
    pub consumers: Vec<String>,
    /// Fields the provider gives.
    #[serde(default)]
    pub response: Vec<String>,
    /// Fields the consumer sends.
    #[serde(default)]
    pub request: Vec<String>,
    /// Transforms per field.
    #[serde(default)]
    pub transforms: Vec<EditTransform>,
    /// The covenant's first day, `YYYY-MM-DD`.
    pub valid_from: Option<String>,
    /// The covenant's last day, `YYYY-MM-DD`.
    pub valid_until: Option<String>,
}

/// A list as the pilot files write it: one entry a line when there are
/// several, on one line when there is one.
fn list(items: &[String]) -> Item {
    let mut a = Array::new();
    for s in items {
        a.push(s.as_str());
    }
    if items.len() > 1 {
        for v in a.iter_mut() {
            v.decor_mut().set_prefix("\n    ");
        }
        a.set_trailing_comma(true);
        a.set_trailing("\n");
    }
    value(a)
}

fn transforms(ts: &[EditTransform]) -> Result<Item, String> {
    let mut a = Array::new();
    for t in ts {
        let mut it = InlineTable::new();
        it.insert("field", t.field.as_str().into());
        match t.kind.as_str() {
            "month" | "year" => {
                it.insert("generalise", t.kind.as_str().into());
            }
            "pseudonymise" => {
                it.insert("pseudonymise", true.into());
            }
            other => {
                return Err(format!(
                    "transform '{other}'? use month, year or pseudonymise"
                ));
            }
        }
        a.push(it);
    }
    for v in a.iter_mut() {
        v.decor_mut().set_prefix("\n    ");
    }
    a.set_trailing_comma(true);
    a.set_trailing("\n");
    Ok(value(a))
}

fn date(s: &str) -> Result<Item, String> {
    let d: toml_edit::Datetime = s
        .parse()
        .map_err(|_| format!("'{s}' is not a date like 2026-01-31"))?;
    if d.time.is_some() || d.date.is_none() {
        return Err(format!("'{s}' is not a date like 2026-01-31"));
    }
    Ok(value(d))
}

/// The pilot file with one rule (and the validity dates) changed: every
/// other line, comment and the order of keys as it was.
pub fn apply_edit(text: &str, e: &Edit) -> Result<String, String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|x: toml_edit::TomlError| x.to_string())?;
    let set = |t: &mut Table, k: &str, items: &[String]| {
        if items.is_empty() {
            t.remove(k);
        } else {
            t[k] = list(items);
        }
    };
    {
        let rules = doc
            .entry("rules")
            .or_insert(Item::ArrayOfTables(Default::default()))
            .as_array_of_tables_mut()
            .ok_or("'rules' is not a list of tables")?;
        let at = rules
            .iter()
            .position(|t| t.get("id").and_then(Item::as_str) == Some(e.id.as_str()));
        let t = match at {
            Some(i) => rules.get_mut(i).ok_or("rule vanished")?,
            None => {
                let mut t = Table::new();
                t["id"] = value(e.id.as_str());
                rules.push(t);
                let last = rules.len() - 1;
                rules.get_mut(last).ok_or("rule vanished")?
            }
        };
        t["purpose"] = value(e.purpose.as_str());
        t["service"] = value(e.service.as_str());
        t["consumers"] = list(&e.consumers);
        set(t, "response", &e.response);
        set(t, "request", &e.request);
        if e.transforms.is_empty() {
            t.remove("transforms");
        } else {
            t["transforms"] = transforms(&e.transforms)?;
        }
    }
    for (k, v) in [
        ("valid_from", &e.valid_from),
        ("valid_until", &e.valid_until),
    ] {
        if let Some(v) = v {
            let cov = doc["pilot"]["covenant"]
                .as_table_mut()
                .ok_or("the file has no [pilot.covenant] table")?;
            cov[k] = date(v)?;
        }
    }
    Ok(doc.to_string())
}

/// `POST /api/v1/pilots/{pilot}/rules`: the file as it would be after this
/// edit. Nothing is written: the page shows the dry run of this text, and
/// applies it as any other file.
pub fn edit(gw: &Gateway, user: &User, pilot: &str, body: &[u8]) -> Response<Body> {
    if let Err(e) = user.may_edit(pilot) {
        return forbidden(e).response();
    }
    let e: Edit = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(x) => return Problem::new(problem::MALFORMED_JSON, x.to_string()).response(),
    };
    let snap = gw.policy.current();
    let Some(p) = snap.policy.pilots.get(pilot) else {
        return problem::respond(problem::UNKNOWN_PILOT, "no such pilot");
    };
    // The file as it is on disk, as the raw editor shows it.
    let text = snap
        .on_disk
        .pilots
        .get(pilot)
        .map_or(p.text.as_str(), |d| d.text.as_str());
    match apply_edit(text, &e) {
        Ok(file) => json_ok(&json!({"file": file})),
        Err(why) => Problem::new(problem::INVALID_POLICY, &why).response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# The covenant.
[pilot]
id = "p"

[pilot.covenant]
valid_from = 2019-06-01 # signed in June
valid_until = 2027-12-31

# The case consultation.
[[rules]]
id = "r1"
purpose = "casusoverleg"
service = "dtv/dossier"
consumers = ["gemeente"]
response = [
    "vnummer",
    "naam", # the name
    "adres",
]

# Keep this one as it is.
[[rules]]
id = "r2"
purpose = "x"
service = "a/b"
consumers = ["c"]
"#;

    #[test]
    fn an_edit_changes_one_rule_and_keeps_comments_and_order() {
        let e = Edit {
            id: "r1".into(),
            purpose: "casusoverleg".into(),
            service: "dtv/dossier".into(),
            consumers: vec!["gemeente".into(), "ngo".into()],
            response: vec!["vnummer".into(), "adres".into()],
            request: vec![],
            transforms: vec![EditTransform {
                field: "vnummer".into(),
                kind: "pseudonymise".into(),
            }],
            valid_from: None,
            valid_until: Some("2028-06-30".into()),
        };
        let out = apply_edit(FILE, &e).unwrap();
        assert!(out.starts_with("# The covenant.\n"), "{out}");
        assert!(
            out.contains("# The case consultation.\n[[rules]]\nid = \"r1\""),
            "{out}"
        );
        assert!(
            out.contains("# Keep this one as it is.\n[[rules]]\nid = \"r2\""),
            "{out}"
        );
        assert!(
            out.contains("valid_from = 2019-06-01 # signed in June"),
            "{out}"
        );
        assert!(out.contains("valid_until = 2028-06-30"), "{out}");
        assert!(!out.contains("\"naam\""), "{out}");
        assert!(
            out.contains("{ field = \"vnummer\", pseudonymise = true }"),
            "{out}"
        );
        let v: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(v["rules"][0]["consumers"].as_array().unwrap().len(), 2);
        assert_eq!(v["rules"][1]["id"].as_str(), Some("r2"));
        // A new id adds a rule at the end.
        let new = Edit {
            id: "r3".into(),
            transforms: vec![],
            ..e
        };
        let out = apply_edit(&out, &new).unwrap();
        let v: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(v["rules"][2]["id"].as_str(), Some("r3"));
        assert!(
            apply_edit(
                FILE,
                &Edit {
                    valid_from: Some("gisteren".into()),
                    ..new
                }
            )
            .is_err()
        );
    }
}
