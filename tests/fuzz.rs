//! Fuzzing on the stable toolchain: proptest drives random and mutated input
//! into the four parsers that meet the outside world (the policy file parser,
//! the minimiser with its strict JSON reader (and the one that minimises while
//! parsing, which must agree with it), the route parser, and
//! `audit check-proof`). None may panic; the minimiser may never let a path
//! through that its rule does not allow.
//!
//! In the suite each target runs a few hundred cases; `scripts/fuzz.sh` runs
//! them longer (FUZZ_CASES) and keeps failing inputs in fuzz/regressions/, so
//! every finding is replayed by every later run.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use ketenpoort::config::Source;
use ketenpoort::exchange::{json, route};
use ketenpoort::policy::Pilot;
use ketenpoort::policy::fields::FieldPath;
use ketenpoort::policy::minimise::{Tree, minimise};
use ketenpoort::policy::partners::Partners;
use ketenpoort::policy::stream::minimise_bytes;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

fn config(target: &'static str) -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(match target {
            "policy" => "fuzz/regressions/policy.txt",
            "minimise" => "fuzz/regressions/minimise.txt",
            "route" => "fuzz/regressions/route.txt",
            _ => "fuzz/regressions/check-proof.txt",
        }))),
        ..ProptestConfig::default()
    }
}

fn shipped(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// Mutations of a valid input: flip, drop, duplicate or insert bytes.
fn mutate(base: String) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len().max(1);
    prop::collection::vec((0..len, 0u8..4, any::<u8>()), 1..12).prop_map(move |edits| {
        let mut b = base.clone().into_bytes();
        for (pos, op, byte) in edits {
            let p = pos.min(b.len().saturating_sub(1));
            match op {
                0 if !b.is_empty() => b[p] ^= byte | 1,
                1 if !b.is_empty() => {
                    b.remove(p);
                }
                2 => b.insert(p, byte),
                _ => {
                    let end = (p + 16).min(b.len());
                    let chunk = b[p..end].to_vec();
                    b.splice(p..p, chunk);
                }
            }
        }
        b
    })
}

proptest! {
    #![proptest_config(config("policy"))]
    #[test]
    fn policy_parser_never_panics(bytes in prop_oneof![mutate(shipped("config/pilots/utrecht.toml")), prop::collection::vec(any::<u8>(), 0..400)]) {
        let partners_text = shipped("config/partners.toml");
        let partners = Partners::from_source(&Source { file: "partners.toml".into(), text: partners_text.clone() }).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let src = Source { file: "pilots/utrecht.toml".into(), text };
        match Pilot::from_source(&src, &partners, partners_text.as_bytes()) {
            Ok(_) => {}
            Err(e) => prop_assert!(e.to_string().starts_with("pilots/utrecht.toml"), "{e}"),
        }
    }
}

proptest! {
    #![proptest_config(config("minimise"))]
    #[test]
    fn strict_json_and_minimiser_never_leak(
        bytes in prop_oneof![
            mutate(r#"{"vnummer":"5550001234","naam":"x","adres":{"woonplaats":"U","straat":"s"},"procedures":[{"status":"a","besluit":"b"}],"medisch":{"bijzonderheden":"m"}}"#.to_string()),
            prop::collection::vec(any::<u8>(), 0..200),
        ],
        allowed in prop::collection::vec(prop::sample::select(vec!["vnummer", "naam", "adres", "adres.woonplaats", "procedures[].status", "medisch"]), 0..4),
    ) {
        const SUBJECT: &str = "vnummer";
        let streamed = |tree: &Tree, key: &ring::hmac::Key| {
            minimise_bytes(&bytes, tree, key, &FieldPath::parse(SUBJECT).unwrap(), 1)
        };
        let Ok(doc) = json::parse(&bytes) else {
            // The minimiser that parses as it goes refuses alike.
            let tree = Tree::new(&[], &[], &[]);
            prop_assert!(streamed(&tree, &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k")).is_err());
            return Ok(())
        };
        const DECLARED: [&str; 7] = ["vnummer", "naam", "adres.woonplaats", "adres.straat", "procedures[].status", "procedures[].besluit", "medisch.bijzonderheden"];
        let declared: Vec<FieldPath> = DECLARED.iter().map(|p| FieldPath::parse(p).unwrap()).collect();
        let paths: Vec<FieldPath> = allowed.iter().map(|p| FieldPath::parse(p).unwrap()).collect();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let tree = Tree::new(&declared, &paths, &[]);
        let m = minimise(&doc, &tree, &key);
        if doc.is_object() {
            let s = streamed(&tree, &key).unwrap();
            prop_assert_eq!(&s.elements[0].bytes, &serde_json::to_vec(&m.value).unwrap());
            prop_assert_eq!(&s.elements[0].withheld, &m.withheld);
            prop_assert_eq!(s.elements[0].undeclared, m.undeclared);
        }
        for d in &m.disclosed {
            let p = FieldPath::parse(d).unwrap();
            prop_assert!(DECLARED.contains(&d.as_str()), "{d} is not declared");
            prop_assert!(paths.iter().any(|a| a.covers(&p)), "{d} left without a rule");
        }
        // What leaves parses again, strictly, and holds nothing withheld.
        let out = serde_json::to_vec(&m.value).unwrap();
        prop_assert!(json::parse(&out).is_ok());
        prop_assert!(!String::from_utf8_lossy(&out).contains("bijzonderheden") || allowed.contains(&"medisch"));
    }
}

proptest! {
    #![proptest_config(config("route"))]
    #[test]
    fn route_parser_never_panics_and_lets_no_traversal_through(s in prop_oneof![
        "/v1/pilots/[a-z.%/]{0,12}/services/[a-z0-9.%/]{0,10}/[a-z.]{0,8}/[0-9a-zA-Z.%/~_-]{0,20}",
        any::<String>(),
    ]) {
        if let Ok(route::Route::Service { pilot, provider, service, rest }) = route::parse(&s) {
            for seg in [pilot, provider, service].into_iter().chain(rest) {
                prop_assert!(seg != ".." && seg != "." && !seg.contains('%') && !seg.contains('/') && !seg.is_empty(), "{s}");
            }
        }
    }
}

proptest! {
    #![proptest_config(config("check-proof"))]
    #[test]
    fn check_proof_never_panics(bytes in prop_oneof![
        mutate(r#"{"leafIdx":0,"treeSize":8,"root":"XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=","leafHash":"bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=","proof":["lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=","Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=","a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="]}"#.to_string()),
        mutate(r#"{"size1":1,"size2":8,"root1":"bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=","root2":"XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=","proof":["lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=","Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=","a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="]}"#.to_string()),
        prop::collection::vec(any::<u8>(), 0..300),
    ]) {
        let _ = ketenpoort::audit::proof::check(&String::from_utf8_lossy(&bytes));
    }
}

/// Inputs once found by fuzzing, kept as plain regression tests.
#[test]
fn regressions() {
    // Huge sizes and indexes near u64::MAX must not overflow in the verifier.
    for text in [
        r#"{"leafIdx":18446744073709551614,"treeSize":18446744073709551615,"root":"","leafHash":"","proof":[]}"#,
        r#"{"size1":18446744073709551615,"size2":18446744073709551615,"root1":"","root2":"","proof":["AA=="]}"#,
        r#"{"size1":1,"size2":18446744073709551615,"root1":"bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=","root2":"","proof":["bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0="]}"#,
        r#"{"leafIdx":-1,"treeSize":1.5}"#,
        "[]",
        "",
    ] {
        assert!(ketenpoort::audit::proof::check(text).is_err(), "{text}");
    }
}
