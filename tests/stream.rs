//! The minimiser that works while parsing (`policy::stream`, the hot path)
//! against the reference it replaced there: `exchange::json::parse`, then
//! `policy::minimise::minimise` per element, then `serde_json::to_vec`.
//! For generated documents (duplicate keys, escapes, odd numbers, deep
//! nesting, wrong shapes, mutated bytes) and generated rule trees (transforms
//! included) both must accept and refuse alike, with the same error text,
//! and produce the same bytes, disclosed and withheld paths, counts and
//! subject.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use ketenpoort::exchange::json;
use ketenpoort::policy::fields::FieldPath;
use ketenpoort::policy::minimise::{Granularity, Transform, Tree, minimise};
use ketenpoort::policy::stream::{Doc, Part, Root, minimise_bytes};
use proptest::prelude::*;
use serde_json::Value;

fn key() -> ring::hmac::Key {
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"stream test key")
}

/// `Service::subject_in`, as the exchange used it on the parsed document.
fn subject_in(doc: &Value, subject: &FieldPath) -> Option<Option<String>> {
    let mut v = doc;
    for seg in &subject.0 {
        v = v.get(&seg.name)?;
    }
    Some(match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// The old path, whole.
fn reference(bytes: &[u8], tree: &Tree, subject: &FieldPath, max: usize) -> Result<Doc, String> {
    let doc = json::parse(bytes).map_err(|e| e.0)?;
    let part = |el: &Value| {
        let m = minimise(el, tree, &key());
        Part {
            bytes: serde_json::to_vec(&m.value).unwrap(),
            disclosed: m.disclosed,
            withheld: m.withheld,
            undeclared: m.undeclared,
            shape_violations: m.shape_violations,
            subject: subject_in(el, subject),
        }
    };
    Ok(match &doc {
        Value::Object(_) => Doc {
            root: Root::Object,
            count: 1,
            elements: vec![part(&doc)],
        },
        Value::Array(items) => Doc {
            root: Root::Array,
            count: items.len(),
            elements: items.iter().take(max).map(part).collect(),
        },
        _ => Doc {
            root: Root::Scalar,
            count: 0,
            elements: Vec::new(),
        },
    })
}

fn streamed(bytes: &[u8], tree: &Tree, subject: &FieldPath, max: usize) -> Result<Doc, String> {
    minimise_bytes(bytes, tree, &key(), subject, max).map_err(|e| e.0)
}

/// Declared paths drawn from a small alphabet, so documents hit them often;
/// conflicting declarations (`a` and `a.b`, `a` and `a[]`) included.
fn path_pool() -> Vec<String> {
    let names = ["a", "b", "c"];
    let mut out = Vec::new();
    for n1 in names {
        for l1 in ["", "[]"] {
            out.push(format!("{n1}{l1}"));
            for n2 in names {
                for l2 in ["", "[]"] {
                    out.push(format!("{n1}{l1}.{n2}{l2}"));
                    out.push(format!("{n1}{l1}.{n2}{l2}.a"));
                }
            }
        }
    }
    out
}

fn tree_strategy() -> impl Strategy<Value = Tree> {
    let pool = path_pool();
    let t = prop_oneof![
        Just(Transform::Pseudonymise),
        Just(Transform::Generalise(Granularity::Year)),
        Just(Transform::Generalise(Granularity::Month)),
    ];
    (
        prop::sample::subsequence(pool, 1..10),
        prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        prop::collection::vec((any::<prop::sample::Index>(), t), 0..4),
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "a.b"]), 0..3),
    )
        .prop_map(|(declared, allowed, transforms, ancestors)| {
            let p = |s: &str| FieldPath::parse(s).unwrap();
            let declared: Vec<_> = declared.iter().map(|s| p(s)).collect();
            let pick = |i: &prop::sample::Index| declared[i.index(declared.len())].clone();
            let mut allowed: Vec<_> = allowed.iter().map(pick).collect();
            allowed.extend(ancestors.iter().map(|s| p(s)));
            let transforms: Vec<_> = transforms.iter().map(|(i, t)| (pick(i), *t)).collect();
            Tree::new(&declared, &allowed, &transforms)
        })
}

/// A JSON text written by hand, so objects can hold a key twice and keys
/// and strings can be escaped.
#[derive(Debug, Clone)]
enum Raw {
    Lit(&'static str),
    Str(String, bool),
    List(Vec<Raw>),
    Obj(Vec<(String, bool, Raw)>),
}

fn escaped(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        out.push_str(&format!("\\u{:04x}", c as u32));
    }
    out.push('"');
    out
}

fn render(r: &Raw, out: &mut String) {
    match r {
        Raw::Lit(l) => out.push_str(l),
        Raw::Str(s, true) => out.push_str(&escaped(s)),
        Raw::Str(s, false) => out.push_str(&serde_json::to_string(s).unwrap()),
        Raw::List(items) => {
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(it, out);
            }
            out.push(']');
        }
        Raw::Obj(members) => {
            out.push('{');
            for (i, (k, esc, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if *esc {
                    out.push_str(&escaped(k));
                } else {
                    out.push_str(&serde_json::to_string(k).unwrap());
                }
                out.push(':');
                render(v, out);
            }
            out.push('}');
        }
    }
}

fn raw_strategy() -> impl Strategy<Value = Raw> {
    let lit = prop::sample::select(vec![
        "null",
        "true",
        "false",
        "0",
        "-0",
        "7",
        "-12",
        "1.5",
        "1.50",
        "1e2",
        "-2.5E-3",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775809",
        "0.1",
        "123456789012345678901234567890",
        "1e400",
    ])
    .prop_map(Raw::Lit);
    let text = prop::sample::select(vec![
        "",
        "1990-05-17",
        "2019-03",
        "2019",
        "2019-03-01T10:00:00Z",
        "x",
        "Jan \"J\"",
        "é\u{1F600}",
        "ps1:00112233445566778899aabbccddeeff",
        "5550001234",
        "a\nb",
    ]);
    let leaf = prop_oneof![
        3 => lit,
        3 => (text, any::<bool>()).prop_map(|(s, e)| Raw::Str(s.to_string(), e)),
    ];
    let keys = prop::sample::select(vec!["a", "b", "c", "x", "é"]);
    let dates = prop::collection::vec(
        prop::sample::select(vec!["1990-05-17", "2019-03", "2019", "morgen", "7"]),
        1..4,
    )
    .prop_map(|d| {
        Raw::List(
            d.into_iter()
                .map(|s| match s {
                    "7" => Raw::Lit("7"),
                    s => Raw::Str(s.to_string(), false),
                })
                .collect(),
        )
    });
    let leaf = prop_oneof![4 => leaf, 1 => dates];
    leaf.prop_recursive(6, 48, 5, move |inner| {
        let obj = prop::collection::vec(
            (keys.clone(), prop::bool::weighted(0.1), inner.clone()),
            0..5,
        )
        .prop_map(|m| {
            Raw::Obj(
                m.into_iter()
                    .map(|(k, e, v)| (k.to_string(), e, v))
                    .collect(),
            )
        });
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Raw::List),
            // Objects, then (sometimes) one of another shape: the look-ahead.
            (
                prop::collection::vec(obj, 1..3),
                prop::option::of(inner.clone())
            )
                .prop_map(|(mut items, last)| {
                    items.extend(last);
                    Raw::List(items)
                }),
            prop::collection::vec((keys.clone(), prop::bool::weighted(0.1), inner), 0..5).prop_map(
                |m| Raw::Obj(
                    m.into_iter()
                        .map(|(k, e, v)| (k.to_string(), e, v))
                        .collect()
                )
            ),
        ]
    })
}

/// A generated document: mostly as written, sometimes nested near the depth
/// limit, sometimes with bytes damaged or trailing.
fn doc_strategy() -> impl Strategy<Value = Vec<u8>> {
    (
        raw_strategy(),
        0u8..10,
        60usize..67,
        any::<u8>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(raw, how, depth, byte, at)| {
            let mut s = String::new();
            render(&raw, &mut s);
            let mut b = s.into_bytes();
            match how {
                0 => {
                    let open = "[".repeat(depth);
                    let close = "]".repeat(depth);
                    b = [open.as_bytes(), &b, close.as_bytes()].concat();
                }
                1 => {
                    let open = "{\"a\":".repeat(depth);
                    let close = "}".repeat(depth);
                    b = [open.as_bytes(), &b, close.as_bytes()].concat();
                }
                2 if !b.is_empty() => {
                    let i = at.index(b.len());
                    b[i] = byte;
                }
                3 => b.extend_from_slice(b" x"),
                4 if !b.is_empty() => {
                    let i = at.index(b.len());
                    b.remove(i);
                }
                _ => {}
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn streaming_minimiser_matches_the_reference(
        bytes in doc_strategy(),
        tree in tree_strategy(),
        subject in prop::sample::select(vec!["a", "a.b", "b.c.a", "x"]),
        max in 0usize..4,
    ) {
        let subject = FieldPath::parse(subject).unwrap();
        let old = reference(&bytes, &tree, &subject, max);
        let new = streamed(&bytes, &tree, &subject, max);
        prop_assert_eq!(&new, &old, "document {}", String::from_utf8_lossy(&bytes));
    }
}

/// The cases the reference treats specially, spelled out.
#[test]
fn look_ahead_cases_match() {
    let p = |s: &str| FieldPath::parse(s).unwrap();
    let declared = [p("a[]"), p("b[].c"), p("b[].a"), p("c"), p("x.a")];
    let tree = Tree::new(
        &declared,
        &[p("a"), p("b"), p("x")],
        &[(p("a[]"), Transform::Generalise(Granularity::Year))],
    );
    for doc in [
        // A later item of the wrong shape withholds the whole list, and what
        // the earlier items counted is not counted.
        r#"{"b": [{"c": 1, "q": 2}, {"a": 3}, 4], "c": 5}"#,
        r#"{"b": [{"c": 1, "q": 2}, [1]], "c": 5}"#,
        // A later item its transform cannot apply to withholds the list.
        r#"{"a": ["2020-01-01", "morgen"], "c": 1}"#,
        r#"{"a": ["2020-01-01", "2021-02"], "c": 1}"#,
        r#"{"a": [], "b": []}"#,
        r#"[{"a": ["1999"]}, [{"c": 1}, 2], 3, [[1]]]"#,
        r#"{"x": {"a": {"k": 1}, "a2": 1}, "c": {"a": 1}}"#,
        r#"{"\u0061": 1, "a": 2}"#,
        r#"{"x": {"b": 1, "b": 2}}"#,
        r#"{"c": 1, "q": {"r": 1, "r": 2}}"#,
    ] {
        for max in [0, 1, 5] {
            assert_eq!(
                streamed(doc.as_bytes(), &tree, &p("x.a"), max),
                reference(doc.as_bytes(), &tree, &p("x.a"), max),
                "{doc}"
            );
        }
    }
}

/// An object wider than the linear duplicate scan still refuses a key
/// twice, wherever the second one is.
#[test]
fn wide_objects_refuse_duplicates() {
    let tree = Tree::new(&[FieldPath::parse("k1").unwrap()], &[], &[]);
    let keys: Vec<String> = (0..100).map(|i| format!("\"k{i}\": {i}")).collect();
    let ok = format!("{{{}}}", keys.join(","));
    let subject = FieldPath::parse("k1").unwrap();
    let good = streamed(ok.as_bytes(), &tree, &subject, 1).unwrap();
    assert_eq!(good.elements[0].undeclared, 99);
    for dup in [0, 15, 16, 17, 99] {
        let twice = format!("{{{}, \"k{dup}\": 0}}", keys.join(","));
        let err = streamed(twice.as_bytes(), &tree, &subject, 1).unwrap_err();
        assert!(err.contains("twice"), "{err}");
        assert_eq!(Err(err), reference(twice.as_bytes(), &tree, &subject, 1));
    }
}
