//! The audit store's test helpers: options, a varied entry, the log's
//! verifier key, a segment's frames. Shared by the audit test files.
#![allow(dead_code)]

use std::path::Path;

use ketenpoort::audit::checkpoint::Verifier;
use ketenpoort::audit::store::Options;
use ketenpoort::audit::{Audit, Decision, Entry, segment, verify};

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

/// Options for a log whose segments roll at `size` bytes.
pub fn sized(dir: &Path, size: u64) -> Options {
    let mut o = opts(dir);
    o.segment_max = size;
    o
}

/// Reopens the log of `o`, writes record `next` (which must get that id),
/// stops it and verifies the whole: `next + 1` records, nothing torn.
pub fn goes_on_and_verifies(o: Options, next: u64) {
    let dir = o.dir.clone();
    let a = Audit::open(o).unwrap();
    assert_eq!(a.record_blocking(entry(next, &a)).unwrap().id, next);
    a.shutdown();
    drop(a);
    let key = std::fs::read_to_string(dir.join("checkpoint.vkey")).unwrap();
    let rep = verify::verify(&dir, &Verifier::parse(&key).unwrap(), |_| {}).unwrap();
    assert_eq!((rep.records, rep.torn_tail), (next + 1, None));
}
