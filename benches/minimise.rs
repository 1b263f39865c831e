//! JSON on the hot path: the old way (strict parse into a `Value`, minimise
//! into a new `Value`, serialise) against minimising while parsing
//! (`policy::stream`), on the ~2 KiB dossier and rule of bench/run.sh.
//! Prints figures; asserts none (but checks both give the same bytes).
//!
//!     cargo bench --bench minimise                        # full run, both
//!     cargo bench --bench minimise -- --only new --iters 10000   # one path, for
//!         valgrind --tool=callgrind (instruction counts, load-independent)
//!
//! Under `cargo test` (or with `--smoke`) it runs a few hundred documents, so
//! it cannot rot.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::hint::black_box;
use std::time::Instant;

use ketenpoort::exchange::json;
use ketenpoort::policy::fields::FieldPath;
use ketenpoort::policy::minimise::{Tree, minimise};
use ketenpoort::policy::stream::minimise_bytes;
use serde_json::json;

/// The dossier of bench/support.py, built the same way (synthetic).
fn dossier() -> Vec<u8> {
    let gesprekken: Vec<_> = (1..7)
        .map(|m| {
            json!({"datum": format!("2026-0{m}-1{m}"),
                   "verslag": format!("vertrekgesprek {m}, synthetisch verslag van enige lengte")})
        })
        .collect();
    let procedures: Vec<_> = [
        ("asiel", "afgewezen"),
        ("buitenschuld", "lopend"),
        ("herhaalde aanvraag", "afgewezen"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (s, t))| json!({"soort": s, "status": t, "kenmerk": format!("intern-{i}")}))
    .collect();
    let d = json!({
        "vnummer": "5550001234",
        "naam": "Testpersoon Benchmark (synthetisch)",
        "geboortedatum": "1987-03-14",
        "nationaliteit": "Testland",
        "regievoerder": "Regievoerder DT&V (synthetisch)",
        "terugkeer": {"status": "in gesprek", "land": "Testland", "reisdocument": "aangevraagd",
                      "gesprekken": gesprekken},
        "procedures": procedures,
        "medisch": {"bijzonderheden": "synthetisch medisch gegeven dat buiten het medisch traject niet gedeeld mag worden"},
        "intern": {"behandelaar": "Medewerker (synthetisch)",
                   "notitie": "interne notitie die de organisatie nooit verlaat ".repeat(14)},
    });
    // Python's json.dumps separators: ", " and ": ".
    let compact = serde_json::to_string(&d).unwrap();
    let mut out = String::with_capacity(compact.len() + 200);
    let mut in_str = false;
    let mut prev = ' ';
    for c in compact.chars() {
        out.push(c);
        if c == '"' && prev != '\\' {
            in_str = !in_str;
        } else if !in_str && (c == ',' || c == ':') {
            out.push(' ');
        }
        prev = if prev == '\\' && c == '\\' { ' ' } else { c };
    }
    out.into_bytes()
}

/// dtv/vertrekdossier's declared fields and utrecht-casus-dtv's response.
fn tree() -> Tree {
    let p = |s: &&str| FieldPath::parse(s).unwrap();
    let declared = [
        "vnummer",
        "naam",
        "geboortedatum",
        "nationaliteit",
        "regievoerder",
        "terugkeer.status",
        "terugkeer.land",
        "terugkeer.reisdocument",
        "terugkeer.gesprekken[].datum",
        "terugkeer.gesprekken[].verslag",
        "procedures[].soort",
        "procedures[].status",
        "medisch.bijzonderheden",
    ];
    let allowed = [
        "vnummer",
        "naam",
        "geboortedatum",
        "nationaliteit",
        "terugkeer.status",
        "terugkeer.land",
        "procedures[].soort",
        "procedures[].status",
    ];
    Tree::new(
        &declared.iter().map(p).collect::<Vec<_>>(),
        &allowed.iter().map(p).collect::<Vec<_>>(),
        &[],
    )
}

fn old(doc: &[u8], tree: &Tree, key: &ring::hmac::Key) -> Vec<u8> {
    let v = json::parse(doc).unwrap();
    let m = minimise(&v, tree, key);
    serde_json::to_vec(&m.value).unwrap()
}

fn new(doc: &[u8], tree: &Tree, key: &ring::hmac::Key, subject: &FieldPath) -> Vec<u8> {
    let mut d = minimise_bytes(doc, tree, key, subject, 1).unwrap();
    d.elements.pop().unwrap().bytes
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--smoke");
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let iters: u64 = arg("--iters")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 200_000 } else { 300 });
    let only = arg("--only");
    let doc = dossier();
    let tree = tree();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"bench");
    let subject = FieldPath::parse("vnummer").unwrap();
    let (a, b) = (old(&doc, &tree, &key), new(&doc, &tree, &key, &subject));
    assert_eq!(a, b, "the two paths must give the same bytes");
    println!(
        "minimise ({}): dossier {} bytes -> {} bytes, {iters} documents per path",
        if full { "full" } else { "smoke" },
        doc.len(),
        a.len()
    );
    for which in ["old", "new"] {
        if only.as_deref().is_some_and(|o| o != which) {
            continue;
        }
        let t = Instant::now();
        for _ in 0..iters {
            let out = if which == "old" {
                old(black_box(&doc), &tree, &key)
            } else {
                new(black_box(&doc), &tree, &key, &subject)
            };
            black_box(out);
        }
        let per = t.elapsed().as_secs_f64() / iters as f64;
        println!(
            "  {which}: {:.2} µs per document, {:.0} MB/s",
            per * 1e6,
            doc.len() as f64 / per / 1e6
        );
    }
}
