//! Field-level minimisation: keep what a rule allows, transform what it says to
//! transform, remove everything else at any depth.
//!
//! A rule's allowed paths are compiled once, at policy load, into a [`Tree`];
//! each document is then walked once. Array marks in paths document shape only:
//! an array met anywhere is walked element by element with the same node, so a
//! document whose shape differs from the declaration still loses every member
//! that is not allowed by name.

use std::collections::{BTreeMap, BTreeSet};

use ring::hmac;
use serde_json::{Map, Value};

use super::fields::FieldPath;

/// How precise a generalised date stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Granularity {
    /// `YYYY-MM`.
    Month,
    /// `YYYY`.
    Year,
}

/// What happens to an allowed field on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transform {
    /// A date cut down to month or year.
    Generalise(Granularity),
    /// Replaced by a keyed pseudonym, stable within one pilot and purpose.
    Pseudonymise,
}

impl std::fmt::Display for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Generalise(Granularity::Month) => f.write_str("generalised to month"),
            Self::Generalise(Granularity::Year) => f.write_str("generalised to year"),
            Self::Pseudonymise => f.write_str("pseudonymised"),
        }
    }
}

/// Prefix of pseudonyms, so a pseudonym is recognised and never pseudonymised
/// again (minimising twice equals minimising once).
pub const PSEUDONYM_PREFIX: &str = "ps1:";

/// A compiled set of allowed paths with their transforms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// Everything below this node is allowed.
    all: bool,
    /// Applied to the value at this node.
    transform: Option<Transform>,
    children: BTreeMap<String, Tree>,
}

impl Tree {
    /// Compiles allowed paths and the transforms that fall inside them.
    pub fn new(allowed: &[FieldPath], transforms: &[(FieldPath, Transform)]) -> Self {
        let mut root = Tree::default();
        for p in allowed {
            let mut n = &mut root;
            for seg in &p.0 {
                n = n.children.entry(seg.name.clone()).or_default();
            }
            n.all = true;
        }
        for (p, t) in transforms {
            if !allowed.iter().any(|a| a.covers(p)) {
                continue;
            }
            let mut n = &mut root;
            for seg in &p.0 {
                n = n.children.entry(seg.name.clone()).or_default();
            }
            n.transform = Some(*t);
        }
        root
    }

    /// True when nothing at all is allowed.
    pub fn is_empty(&self) -> bool {
        !self.all && self.children.is_empty()
    }
}

/// The result of minimising one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimised {
    /// The document as it may be delivered.
    pub value: Value,
    /// Leaf paths delivered (generic form, `[]` for arrays), sorted.
    pub disclosed: Vec<String>,
    /// Paths removed, sorted.
    pub withheld: Vec<String>,
}

/// Minimises `doc` with `tree`; `key` pseudonymises.
pub fn minimise(doc: &Value, tree: &Tree, key: &hmac::Key) -> Minimised {
    let mut acc = Acc::default();
    let value = walk(doc, tree, false, &mut String::new(), key, &mut acc).unwrap_or(Value::Null);
    Minimised {
        value,
        disclosed: acc.disclosed.into_iter().collect(),
        withheld: acc.withheld.into_iter().collect(),
    }
}

#[derive(Default)]
struct Acc {
    disclosed: BTreeSet<String>,
    withheld: BTreeSet<String>,
}

static EMPTY: Tree = Tree {
    all: false,
    transform: None,
    children: BTreeMap::new(),
};

fn with_segment<R>(path: &mut String, seg: &str, f: impl FnOnce(&mut String) -> R) -> R {
    let len = path.len();
    if !path.is_empty() && !seg.starts_with('[') {
        path.push('.');
    }
    path.push_str(seg);
    let r = f(path);
    path.truncate(len);
    r
}

fn walk(
    v: &Value,
    node: &Tree,
    inherited: bool,
    path: &mut String,
    key: &hmac::Key,
    acc: &mut Acc,
) -> Option<Value> {
    let all = inherited || node.all;
    match v {
        Value::Array(items) => {
            let out: Vec<Value> = with_segment(path, "[]", |path| {
                items
                    .iter()
                    .filter_map(|it| walk(it, node, inherited, path, key, acc))
                    .collect()
            });
            Some(Value::Array(out))
        }
        Value::Object(map) => {
            if node.transform.is_some() {
                // A transform is for a single value; an object in its place is
                // not what the declaration says, so it does not leave.
                acc.withheld.insert(path.clone());
                return None;
            }
            let mut out = Map::new();
            for (k, child) in map {
                let next = match node.children.get(k) {
                    Some(n) => Some(n),
                    None if all => Some(&EMPTY),
                    None => None,
                };
                with_segment(path, k, |path| match next {
                    Some(n) => {
                        if let Some(x) = walk(child, n, all, path, key, acc) {
                            out.insert(k.clone(), x);
                        }
                    }
                    None => {
                        acc.withheld.insert(path.clone());
                    }
                });
            }
            Some(Value::Object(out))
        }
        scalar => {
            if !all {
                // The rule allows something deeper, but here is a plain value.
                acc.withheld.insert(path.clone());
                return None;
            }
            let out = match node.transform {
                None => Some(scalar.clone()),
                Some(Transform::Generalise(g)) => generalise(scalar, g),
                Some(Transform::Pseudonymise) => pseudonymise(scalar, key),
            };
            match &out {
                Some(_) => acc.disclosed.insert(path.clone()),
                None => acc.withheld.insert(path.clone()),
            };
            out
        }
    }
}

/// `YYYY-MM-DD…` → `YYYY-MM` or `YYYY`. Values already coarser stay as they
/// are; anything that is not a date is withheld (fail closed).
fn generalise(v: &Value, g: Granularity) -> Option<Value> {
    let s = v.as_str()?;
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    let year = digits(0..4) && (b.len() == 4 || b.get(4) == Some(&b'-'));
    let month = year && digits(5..7) && (b.len() == 7 || b.get(7) == Some(&b'-'));
    let day = month && digits(8..10) && (b.len() == 10 || matches!(b.get(10), Some(b'T' | b' ')));
    let well_formed = if b.len() == 4 {
        year
    } else if b.len() == 7 {
        month
    } else {
        day
    };
    if !well_formed {
        return None;
    }
    let keep = match g {
        Granularity::Year => 4,
        Granularity::Month => 7.min(b.len()),
    };
    Some(Value::String(s[..keep].to_string()))
}

/// A keyed pseudonym of a string or number.
fn pseudonymise(v: &Value, key: &hmac::Key) -> Option<Value> {
    let text = match v {
        Value::String(s) if is_pseudonym(s) => return Some(v.clone()),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let tag = hmac::sign(key, text.as_bytes());
    Some(Value::String(format!(
        "{PSEUDONYM_PREFIX}{}",
        hex::encode(&tag.as_ref()[..16])
    )))
}

fn is_pseudonym(s: &str) -> bool {
    s.strip_prefix(PSEUDONYM_PREFIX).is_some_and(|h| {
        h.len() == 32
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, b"test key")
    }

    fn tree(paths: &[&str], transforms: &[(&str, Transform)]) -> Tree {
        let p: Vec<_> = paths.iter().map(|s| FieldPath::parse(s).unwrap()).collect();
        let t: Vec<_> = transforms
            .iter()
            .map(|(s, t)| (FieldPath::parse(s).unwrap(), *t))
            .collect();
        Tree::new(&p, &t)
    }

    #[test]
    fn keeps_allowed_removes_rest_at_any_depth() {
        let doc = json!({
            "vnummer": "5550001234",
            "naam": "Test Persoon",
            "adres": {"woonplaats": "Utrecht", "straat": "Teststraat 1"},
            "procedures": [{"status": "lopend", "besluit": "x"}, {"status": "afgewezen", "notitie": "y"}],
            "medisch": {"bijzonderheden": "z"}
        });
        let m = minimise(
            &doc,
            &tree(&["vnummer", "adres.woonplaats", "procedures[].status"], &[]),
            &key(),
        );
        assert_eq!(
            m.value,
            json!({"vnummer": "5550001234", "adres": {"woonplaats": "Utrecht"},
                   "procedures": [{"status": "lopend"}, {"status": "afgewezen"}]})
        );
        assert_eq!(
            m.disclosed,
            ["adres.woonplaats", "procedures[].status", "vnummer"]
        );
        assert_eq!(
            m.withheld,
            [
                "adres.straat",
                "medisch",
                "naam",
                "procedures[].besluit",
                "procedures[].notitie"
            ]
        );
    }

    #[test]
    fn parent_path_allows_subtree() {
        let doc = json!({"adres": {"woonplaats": "U", "straat": "S", "x": {"y": 1}}, "naam": "N"});
        let m = minimise(&doc, &tree(&["adres"], &[]), &key());
        assert_eq!(
            m.value,
            json!({"adres": {"woonplaats": "U", "straat": "S", "x": {"y": 1}}})
        );
    }

    #[test]
    fn scalar_where_object_expected_is_withheld() {
        let doc = json!({"adres": "Teststraat 1, Utrecht"});
        let m = minimise(&doc, &tree(&["adres.woonplaats"], &[]), &key());
        assert_eq!(m.value, json!({}));
        assert_eq!(m.withheld, ["adres"]);
    }

    #[test]
    fn dates_generalise_and_non_dates_are_withheld() {
        let t = tree(
            &["a", "b", "c"],
            &[
                ("a", Transform::Generalise(Granularity::Year)),
                ("b", Transform::Generalise(Granularity::Month)),
                ("c", Transform::Generalise(Granularity::Year)),
            ],
        );
        let m = minimise(
            &json!({"a": "1990-05-17", "b": "2019-03-01T10:00:00Z", "c": "morgen"}),
            &t,
            &key(),
        );
        assert_eq!(m.value, json!({"a": "1990", "b": "2019-03"}));
        assert_eq!(m.withheld, ["c"]);
        assert_eq!(minimise(&m.value, &t, &key()).value, m.value);
    }

    #[test]
    fn pseudonyms_are_keyed_stable_and_idempotent() {
        let t = tree(&["vnummer"], &[("vnummer", Transform::Pseudonymise)]);
        let doc = json!({"vnummer": "5550001234"});
        let a = minimise(&doc, &t, &key());
        let b = minimise(&doc, &t, &key());
        assert_eq!(a.value, b.value);
        let p = a.value["vnummer"].as_str().unwrap();
        assert!(p.starts_with(PSEUDONYM_PREFIX) && !p.contains("5550001234"));
        let other = minimise(&doc, &t, &hmac::Key::new(hmac::HMAC_SHA256, b"other"));
        assert_ne!(other.value, a.value);
        assert_eq!(minimise(&a.value, &t, &key()).value, a.value);
    }

    #[test]
    fn root_arrays_are_minimised_per_element() {
        let m = minimise(
            &json!([{"a": 1, "b": 2}, {"a": 3}]),
            &tree(&["a"], &[]),
            &key(),
        );
        assert_eq!(m.value, json!([{"a": 1}, {"a": 3}]));
        assert_eq!(m.withheld, ["[].b"]);
    }
}
