//! Synthetic dossiers for the demo and the tests: every field a service
//! declares, with invented values, and more fields than any rule allows
//! (internal notes, at any depth). No real person is in here.

use serde_json::{Map, Value, json};

use crate::policy::fields::{Category, Segment};
use crate::policy::service::Service;

fn leaf(name: &str, cat: Category, vnummer: &str, seed: u64) -> Value {
    let n = name.to_ascii_lowercase();
    if n == "vnummer" {
        return json!(vnummer);
    }
    if n.contains("datum") {
        return json!(format!(
            "{}-{:02}-{:02}",
            1970 + seed % 40,
            1 + seed % 12,
            1 + seed % 28
        ));
    }
    if n == "naam" {
        return json!(format!("Testpersoon {seed} (synthetisch)"));
    }
    match cat {
        Category::Health => json!("synthetisch medisch gegeven"),
        Category::Criminal => json!("synthetisch strafrechtelijk gegeven"),
        _ if n == "status" => json!("lopend"),
        _ if n == "nationaliteit" => json!("Testland"),
        _ => json!(format!("{name} (synthetisch)")),
    }
}

fn insert(target: &mut Map<String, Value>, segs: &[Segment], value: &Value) {
    let Some((first, rest)) = segs.split_first() else {
        return;
    };
    if rest.is_empty() && !first.array {
        target.insert(first.name.clone(), value.clone());
        return;
    }
    if first.array {
        let arr = target
            .entry(first.name.clone())
            .or_insert_with(|| json!([{"kenmerk": "intern-1"}, {"kenmerk": "intern-2"}]));
        if let Value::Array(items) = arr {
            for it in items.iter_mut() {
                if let Value::Object(m) = it {
                    insert(m, rest, value);
                }
            }
        }
    } else {
        let obj = target
            .entry(first.name.clone())
            .or_insert_with(|| json!({"intern_kenmerk": "synthetisch"}));
        if let Value::Object(m) = obj {
            insert(m, rest, value);
        }
    }
}

/// A full dossier for `vnummer` as the provider's back-end would hold it.
pub fn dossier(svc: &Service, vnummer: &str, seed: u64) -> Value {
    let mut root = Map::new();
    for (path, cat) in &svc.fields {
        let name = path.0.last().map(|s| s.name.as_str()).unwrap_or("");
        insert(&mut root, &path.0, &leaf(name, *cat, vnummer, seed));
    }
    root.insert(
        "intern".into(),
        json!({"behandelaar": "Medewerker (synthetisch)", "notitie": "interne notitie (synthetisch)"}),
    );
    Value::Object(root)
}
