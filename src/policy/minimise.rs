//! Field-level minimisation: the service's declared fields are the schema, the
//! rule picks which of them go; everything else stays at the gateway.
//!
//! A rule's tree is compiled once, at policy load, from the service's declared
//! leaves: a leaf is allowed when an allowed path names it or one of its
//! ancestors. Each document is then walked once. Three promises hold for every
//! document, whatever a back-end or caller puts in it:
//! - only declared, allowed leaves are delivered; an allowed parent never lets
//!   undeclared keys below it through;
//! - a declared leaf delivers a scalar (or, for `x[]`, a list of scalars) and a
//!   declared parent an object (or, for `x[]`, a list of objects); anything else
//!   found there is withheld whole and counted as a shape violation;
//! - names of undeclared keys are data (a back-end can put a name in a key):
//!   they are counted, never echoed or recorded. `withheld` names declared
//!   paths only.

use std::collections::{BTreeMap, BTreeSet};

use ring::hmac;
use serde_json::{Map, Value};

use super::fields::FieldPath;
use crate::text::Text;

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

/// Prefix of pseudonyms, so a reader sees at once that a value is one.
pub const PSEUDONYM_PREFIX: &str = "ps1:";

/// A compiled rule direction: the service's declared fields as a tree, each
/// leaf marked allowed or not, with its transform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// The declared path of this node (`procedures[].status`), the only kind of
    /// name that may appear in `disclosed` and `withheld`.
    pub(super) path: Text,
    /// Declared as `x[]`: the member holds a list.
    pub(super) list: bool,
    /// A declared field: its value is a scalar (or list of scalars).
    pub(super) leaf: bool,
    /// Something at or below this node may be delivered.
    pub(super) allowed: bool,
    /// Applied to each scalar at an allowed leaf.
    pub(super) transform: Option<Transform>,
    /// Declared members, by name.
    pub(super) children: BTreeMap<String, Tree>,
    /// The place of `path` among the tree's paths in sorted order, so that
    /// a pass sorts the paths it met by number (policy::stream).
    pub(super) rank: u32,
}

impl Tree {
    /// Compiles the declared leaves of a service, the paths a rule allows
    /// (leaves or their ancestors) and the transforms on allowed leaves.
    pub fn new(
        declared: &[FieldPath],
        allowed: &[FieldPath],
        transforms: &[(FieldPath, Transform)],
    ) -> Self {
        let mut root = Tree::default();
        for field in declared {
            let ok = allowed.iter().any(|a| a.covers(field));
            let transform = transforms
                .iter()
                .find(|(p, _)| p == field)
                .map(|(_, t)| *t)
                .filter(|_| ok);
            let mut n = &mut root;
            n.allowed |= ok;
            let mut path = String::new();
            for seg in &field.0 {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&seg.name);
                if seg.array {
                    path.push_str("[]");
                }
                n = n.children.entry(seg.name.clone()).or_default();
                if *n.path != *path {
                    n.path = Text::from(path.as_str());
                }
                n.list |= seg.array;
                n.allowed |= ok;
            }
            n.leaf = true;
            n.transform = transform;
        }
        let mut paths = Vec::new();
        root.each(&mut |n| paths.push(n.path.clone()));
        paths.sort();
        paths.dedup();
        root.each_mut(&mut |n| {
            n.rank = paths
                .binary_search(&n.path)
                .map_or(0, |i| u32::try_from(i).unwrap_or(u32::MAX));
        });
        root
    }

    fn each<'t>(&'t self, f: &mut impl FnMut(&'t Tree)) {
        f(self);
        for c in self.children.values() {
            c.each(f);
        }
    }

    fn each_mut(&mut self, f: &mut impl FnMut(&mut Tree)) {
        f(self);
        for c in self.children.values_mut() {
            c.each_mut(f);
        }
    }

    /// True when nothing at all is allowed.
    pub fn is_empty(&self) -> bool {
        !self.allowed
    }
}

/// The result of minimising one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimised {
    /// The document as it may be delivered.
    pub value: Value,
    /// Declared leaf paths delivered, sorted.
    pub disclosed: Vec<Text>,
    /// Declared paths present but not delivered, sorted.
    pub withheld: Vec<Text>,
    /// Keys the service does not declare: counted, never named.
    pub undeclared: u32,
    /// Declared positions holding the wrong shape (an object where a scalar
    /// belongs, a list where none is declared, ...), withheld whole.
    pub shape_violations: u32,
}

/// Minimises `doc` with `tree`; `key` pseudonymises. A root list is minimised
/// element by element (an answer about several subjects).
pub fn minimise(doc: &Value, tree: &Tree, key: &hmac::Key) -> Minimised {
    let mut acc = Acc::default();
    let value = match doc {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|it| root(it, tree, key, &mut acc))
                .collect(),
        ),
        other => root(other, tree, key, &mut acc),
    };
    Minimised {
        value,
        disclosed: acc.disclosed.into_iter().cloned().collect(),
        withheld: acc.withheld.into_iter().cloned().collect(),
        undeclared: acc.undeclared,
        shape_violations: acc.shape,
    }
}

#[derive(Default)]
struct Acc<'t> {
    disclosed: BTreeSet<&'t Text>,
    withheld: BTreeSet<&'t Text>,
    undeclared: u32,
    shape: u32,
}

fn root<'t>(v: &Value, tree: &'t Tree, key: &hmac::Key, acc: &mut Acc<'t>) -> Value {
    match v {
        Value::Object(map) => Value::Object(object(map, tree, key, acc)),
        _ => {
            acc.shape += 1;
            Value::Object(Map::new())
        }
    }
}

fn object<'t>(
    map: &Map<String, Value>,
    node: &'t Tree,
    key: &hmac::Key,
    acc: &mut Acc<'t>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in map {
        match node.children.get(k) {
            None => acc.undeclared = acc.undeclared.saturating_add(1),
            Some(child) => {
                if let Some(x) = member(v, child, key, acc) {
                    out.insert(k.clone(), x);
                }
            }
        }
    }
    out
}

/// The value of one declared member, or `None` when nothing of it goes.
fn member<'t>(v: &Value, node: &'t Tree, key: &hmac::Key, acc: &mut Acc<'t>) -> Option<Value> {
    let shaped = match (node.list, v) {
        (true, Value::Array(items)) => items.iter().all(|it| fits(it, node)),
        (true, _) => false,
        (false, v) => fits(v, node),
    };
    if !shaped {
        acc.shape = acc.shape.saturating_add(1);
        acc.withheld.insert(&node.path);
        return None;
    }
    if !node.allowed {
        withhold_present(v, node, acc);
        return None;
    }
    if node.leaf {
        let out = match v {
            Value::Array(items) => items
                .iter()
                .map(|it| scalar(it, node.transform, key))
                .collect::<Option<Vec<_>>>()
                .map(Value::Array),
            one => scalar(one, node.transform, key),
        };
        match out {
            Some(_) => acc.disclosed.insert(&node.path),
            None => acc.withheld.insert(&node.path),
        };
        return out;
    }
    Some(match v {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter_map(|it| {
                    it.as_object()
                        .map(|m| Value::Object(object(m, node, key, acc)))
                })
                .collect(),
        ),
        Value::Object(m) => Value::Object(object(m, node, key, acc)),
        _ => return None,
    })
}

/// One value (a list element, for `x[]`) has the declared shape.
fn fits(v: &Value, node: &Tree) -> bool {
    if node.leaf {
        !matches!(v, Value::Array(_) | Value::Object(_))
    } else {
        v.is_object()
    }
}

/// Names the declared paths present in a value that is not allowed, and
/// counts the undeclared keys in it, so a record says what stayed behind.
fn withhold_present<'t>(v: &Value, node: &'t Tree, acc: &mut Acc<'t>) {
    if node.leaf {
        acc.withheld.insert(&node.path);
        return;
    }
    let maps: Vec<&Map<String, Value>> = match v {
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        Value::Object(m) => vec![m],
        _ => Vec::new(),
    };
    for m in maps {
        for (k, x) in m {
            match node.children.get(k) {
                None => acc.undeclared = acc.undeclared.saturating_add(1),
                Some(child) => {
                    let shaped = match (child.list, x) {
                        (true, Value::Array(items)) => items.iter().all(|it| fits(it, child)),
                        (true, _) => false,
                        (false, x) => fits(x, child),
                    };
                    if shaped {
                        withhold_present(x, child, acc);
                    } else {
                        acc.shape = acc.shape.saturating_add(1);
                        acc.withheld.insert(&child.path);
                    }
                }
            }
        }
    }
}

/// An allowed scalar, transformed; `None` when the transform cannot apply.
fn scalar(v: &Value, transform: Option<Transform>, key: &hmac::Key) -> Option<Value> {
    match transform {
        None => Some(v.clone()),
        Some(Transform::Generalise(g)) => generalise(v, g),
        Some(Transform::Pseudonymise) => pseudonymise(v, key),
    }
}

/// `YYYY-MM-DD…` → `YYYY-MM` or `YYYY`. Values already coarser stay as they
/// are; anything that is not a date is withheld (fail closed).
fn generalise(v: &Value, g: Granularity) -> Option<Value> {
    generalise_str(v.as_str()?, g).map(|s| Value::String(s.to_string()))
}

/// [`generalise`] on the text of a string value (shared with the minimiser
/// that works while parsing, so both cut dates alike).
pub(super) fn generalise_str(s: &str, g: Granularity) -> Option<&str> {
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
    s.get(..keep)
}

/// A keyed pseudonym of a string or number. Every value is keyed, also one
/// that already looks like a pseudonym: passing those through would let a
/// back-end hand researchers 128 bits of its own choosing.
fn pseudonymise(v: &Value, key: &hmac::Key) -> Option<Value> {
    match v {
        Value::String(s) => Some(Value::String(pseudonym(key, s.as_bytes()))),
        Value::Number(n) => Some(Value::String(pseudonym(key, n.to_string().as_bytes()))),
        _ => None,
    }
}

/// The pseudonym of a value's text: a string's characters, a number as
/// serde_json prints it.
pub(super) fn pseudonym(key: &hmac::Key, text: &[u8]) -> String {
    let tag = hmac::sign(key, text);
    format!("{PSEUDONYM_PREFIX}{}", hex::encode(&tag.as_ref()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, b"test key")
    }

    const DECLARED: &[&str] = &[
        "vnummer",
        "naam",
        "nationaliteit[]",
        "adres.woonplaats",
        "adres.straat",
        "procedures[].status",
        "procedures[].besluit",
        "medisch.bijzonderheden",
    ];

    fn tree(paths: &[&str], transforms: &[(&str, Transform)]) -> Tree {
        let p = |s: &&str| FieldPath::parse(s).unwrap();
        let declared: Vec<_> = DECLARED.iter().map(p).collect();
        let allowed: Vec<_> = paths.iter().map(p).collect();
        let t: Vec<_> = transforms.iter().map(|(s, t)| (p(s), *t)).collect();
        Tree::new(&declared, &allowed, &t)
    }

    #[test]
    fn keeps_allowed_removes_rest_and_counts_undeclared() {
        let doc = json!({
            "vnummer": "5550001234",
            "naam": "Test Persoon",
            "adres": {"woonplaats": "Utrecht", "straat": "Teststraat 1", "Jan Jansen": 1},
            "procedures": [{"status": "lopend", "besluit": "x"}, {"status": "afgewezen", "notitie": "y"}],
            "medisch": {"bijzonderheden": "z"},
            "strafblad": "geheim"
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
                "medisch.bijzonderheden",
                "naam",
                "procedures[].besluit"
            ]
        );
        assert_eq!(m.undeclared, 3, "Jan Jansen, notitie, strafblad");
        assert_eq!(m.shape_violations, 0);
    }

    #[test]
    fn parent_path_allows_declared_descendants_only() {
        let doc = json!({"adres": {"woonplaats": "U", "straat": "S", "x": {"y": 1}}, "naam": "N"});
        let m = minimise(&doc, &tree(&["adres"], &[]), &key());
        assert_eq!(
            m.value,
            json!({"adres": {"woonplaats": "U", "straat": "S"}})
        );
        assert_eq!(m.undeclared, 1);
    }

    #[test]
    fn wrong_shapes_are_withheld_whole_and_counted() {
        let doc = json!({
            "vnummer": {"medisch": {"bijzonderheden": "ziek"}},
            "naam": ["a", "b"],
            "nationaliteit": [{"strafblad": "x"}],
            "adres": "Teststraat 1, Utrecht",
            "procedures": {"status": "lopend"},
        });
        let m = minimise(
            &doc,
            &tree(
                &["vnummer", "naam", "nationaliteit", "adres", "procedures"],
                &[],
            ),
            &key(),
        );
        assert_eq!(m.value, json!({}));
        assert_eq!(m.shape_violations, 5);
        assert_eq!(
            m.withheld,
            [
                "adres",
                "naam",
                "nationaliteit[]",
                "procedures[]",
                "vnummer"
            ]
        );
        let ok = minimise(
            &json!({"nationaliteit": ["NL", "SY"]}),
            &tree(&["nationaliteit"], &[]),
            &key(),
        );
        assert_eq!(ok.value, json!({"nationaliteit": ["NL", "SY"]}));
        assert_eq!(ok.disclosed, ["nationaliteit[]"]);
    }

    #[test]
    fn dates_generalise_and_non_dates_are_withheld() {
        let t = tree(
            &["vnummer", "naam", "adres.woonplaats"],
            &[
                ("vnummer", Transform::Generalise(Granularity::Year)),
                ("naam", Transform::Generalise(Granularity::Month)),
                ("adres.woonplaats", Transform::Generalise(Granularity::Year)),
            ],
        );
        let m = minimise(
            &json!({"vnummer": "1990-05-17", "naam": "2019-03-01T10:00:00Z", "adres": {"woonplaats": "morgen"}}),
            &t,
            &key(),
        );
        assert_eq!(
            m.value,
            json!({"vnummer": "1990", "naam": "2019-03", "adres": {}})
        );
        assert_eq!(m.withheld, ["adres.woonplaats"]);
        assert_eq!(minimise(&m.value, &t, &key()).value, m.value);
    }

    #[test]
    fn pseudonyms_are_keyed_and_stable_and_never_passed_through() {
        let t = tree(&["vnummer"], &[("vnummer", Transform::Pseudonymise)]);
        let doc = json!({"vnummer": "5550001234"});
        let a = minimise(&doc, &t, &key());
        let b = minimise(&doc, &t, &key());
        assert_eq!(a.value, b.value);
        let p = a.value["vnummer"].as_str().unwrap();
        assert!(p.starts_with(PSEUDONYM_PREFIX) && !p.contains("5550001234"));
        let other = minimise(&doc, &t, &hmac::Key::new(hmac::HMAC_SHA256, b"other"));
        assert_ne!(other.value, a.value);
        // A back-end that sends a value shaped like a pseudonym does not get
        // its own 128 bits delivered.
        let chosen = json!({"vnummer": "ps1:00112233445566778899aabbccddeeff"});
        assert_ne!(minimise(&chosen, &t, &key()).value, chosen);
    }

    #[test]
    fn root_lists_are_minimised_per_element() {
        let m = minimise(
            &json!([{"naam": 1, "vnummer": 2}, {"naam": 3}, "los"]),
            &tree(&["naam"], &[]),
            &key(),
        );
        assert_eq!(m.value, json!([{"naam": 1}, {"naam": 3}, {}]));
        assert_eq!(m.withheld, ["vnummer"]);
        assert_eq!(m.shape_violations, 1);
    }
}
