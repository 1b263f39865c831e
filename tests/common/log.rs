//! The audit store's test helpers: options, a varied entry, the log's
//! verifier key, a segment's frames. Shared by the audit test files.
#![allow(dead_code)]

use std::path::Path;

use ketenpoort::audit::checkpoint::Verifier;
use ketenpoort::audit::store::Options;
use ketenpoort::audit::{Audit, Decision, Entry, segment};

pub fn opts(dir: &Path) -> Options {
    let mut o = Options::new(dir, "test");
    o.checkpoint_records = 10;
    o
}

pub fn entry(i: u64, audit: &Audit) -> Entry {
    let pilots = ["utrecht", "groningen"];
    let mut e = Entry::exchange(
        pilots[(i % 2) as usize],
        "dtv",
        if i.is_multiple_of(3) {
            "gemeente-utrecht"
        } else {
            "ngo-inlia"
        },
        if i.is_multiple_of(4) {
            "medisch"
        } else {
            "casusoverleg"
        },
        "dtv/vertrekdossier",
    );
    e.decision = if i.is_multiple_of(5) {
        Decision::Refused
    } else {
        Decision::Disclosed
    };
    e.reason = if i.is_multiple_of(5) {
        "no-rule".into()
    } else {
        String::new()
    };
    e.subject = Some(
        audit
            .subject(pilots[(i % 2) as usize], &format!("555000{:04}", i % 7))
            .unwrap(),
    );
    e.disclosed = vec!["vnummer".into(), "naam".into()];
    e
}

pub fn verifier(dir: &Path) -> Verifier {
    Verifier::parse(&std::fs::read_to_string(dir.join("audit/checkpoint.vkey")).unwrap()).unwrap()
}

/// The frames of a segment: (offset, length including header).
pub fn frames(path: &Path) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    segment::scan(path, |off, b| {
        v.push((off as usize, b.len() + segment::HEADER));
        Ok::<_, ()>(())
    })
    .unwrap();
    v
}
