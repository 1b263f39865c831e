//! The audit index against the log it indexes: what `ids()` returns across
//! chunk boundaries and range edges (checked against a plain list of
//! records), and an index that claims more than the log holds when it is
//! opened late, behind a serving gateway.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;

use ketenpoort::audit::index::{By, Dim, Index};
use ketenpoort::audit::store::{Filter, Options};
use ketenpoort::audit::{Audit, Decision, Entry, Record};
use proptest::prelude::*;

fn opts(dir: &Path) -> Options {
    let mut o = Options::new(dir, "test");
    o.checkpoint_records = 10;
    o
}

fn exchange(pilot: &str) -> Entry {
    let mut e = Entry::exchange(pilot, "dtv", "ngo-inlia", "casusoverleg", "dtv/dossier");
    e.decision = Decision::Disclosed;
    e
}

fn append(dir: &Path, pilot: &str, n: u64) {
    let a = Audit::open(opts(dir)).unwrap();
    for _ in 0..n {
        a.record_blocking(exchange(pilot)).unwrap();
    }
    a.shutdown();
}

fn copy_dir(from: &Path, to: &Path, skip: &str) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() == skip {
            continue;
        }
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target, skip);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A log restored from an older copy keeps its newer index (the index is
/// not part of a copy of the segments). The gateway serves before the index
/// opens; by the time it does, the log has grown past what the index
/// claims. The index must still be found ahead of the log *as it was
/// opened*, or its postings of the old records stand for the new ones, and
/// the new ones are never indexed.
#[test]
fn an_index_ahead_of_a_restored_log_is_rebuilt_even_when_it_opens_late() {
    let d = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    append(d.path(), "oud", 4);
    copy_dir(&d.path().join("audit"), saved.path(), "index");
    append(d.path(), "oud", 6);
    // Restore the copy of 4 records under the index of 10.
    for e in std::fs::read_dir(d.path().join("audit")).unwrap() {
        let e = e.unwrap();
        if e.file_name() == "index" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            std::fs::remove_dir_all(e.path()).unwrap();
        } else {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    copy_dir(saved.path(), &d.path().join("audit"), "index");

    // The index opens late: another holder keeps it closed meanwhile.
    let holder = Index::open(&d.path().join("audit/index")).unwrap();
    assert_eq!(holder.indexed_upto().unwrap(), 10);
    let a = Audit::open(opts(d.path())).unwrap();
    assert_eq!(a.view().head().size, 4);
    for _ in 0..10 {
        a.record_blocking(exchange("nieuw")).unwrap();
    }
    // fjall tries a held lock for 300 ms: every attempt begun before the
    // log reached 14 records has failed by now.
    std::thread::sleep(std::time::Duration::from_millis(700));
    drop(holder);
    caught_up(&a);
    let page = a
        .view()
        .query(&Filter {
            pilot: Some("nieuw".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<u64> = page.records.iter().map(|r| r.id).collect();
    assert_eq!(ids, (4..14).rev().collect::<Vec<u64>>());
    let pilots = a
        .view()
        .stats(Dim::Pilot, "2000-01-01", "2100-01-01")
        .unwrap();
    assert_eq!(pilots.get("nieuw"), Some(&(10, 0)), "{pilots:?}");
    assert_eq!(pilots.get("oud"), Some(&(4, 0)), "{pilots:?}");
    a.shutdown();
}

/// Waits until the indexer has reached the head.
fn caught_up(a: &Audit) {
    let mut tries = 0;
    while a.view().unindexed().unwrap() > 0 {
        tries += 1;
        assert!(tries < 400, "the index never caught up");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

const PILOTS: [&str; 3] = ["a", "ab", "b"];
const PARTNERS: [&str; 3] = ["x", "y", "dtv"];

/// A record of pilot, sender, recipient and subject chosen by small numbers.
fn record(id: u64, (p, s, r, subj): (usize, usize, usize, Option<u8>)) -> Record {
    let mut entry = Entry::exchange(PILOTS[p], PARTNERS[s], PARTNERS[r], "doel", "dtv/d");
    entry.decision = Decision::Disclosed;
    entry.subject = subj.map(|b| [b; 32]);
    Record {
        version: 2,
        id,
        time_micros: 1_767_312_000_000_000,
        entry,
    }
}

fn ids(ix: &Index, by: By, v: &[u8], lo: u64, hi: u64) -> Vec<u64> {
    ix.ids(by, v, lo, hi).collect::<Result<_, _>>().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// `ids()` against the records filtered by hand: every record filed
    /// under a value once, newest first, for any split into batches (some
    /// added twice, as after a crash) and any range, edges included.
    #[test]
    fn ids_match_a_plain_filter_of_the_records(
        kinds in proptest::collection::vec(
            (0..3usize, 0..3usize, 0..3usize, proptest::option::of(0..3u8)), 1..120),
        cuts in proptest::collection::vec(1..40usize, 1..12),
        again in proptest::collection::vec(any::<bool>(), 12),
        ranges in proptest::collection::vec((0..130u64, 0..130u64), 8),
    ) {
        let recs: Vec<Record> = kinds.iter().enumerate().map(|(i, k)| record(i as u64, *k)).collect();
        let d = tempfile::tempdir().unwrap();
        let ix = Index::open(d.path()).unwrap();
        let mut at = 0;
        let mut i = 0;
        while at < recs.len() {
            let n = cuts[i % cuts.len()];
            let end = (at + n).min(recs.len());
            // Added again from an earlier point: those below the marker are skipped.
            let from = if again[i % again.len()] { at.saturating_sub(n / 2) } else { at };
            ix.add(&recs[from..end]).unwrap();
            at = end;
            i += 1;
        }
        let n = recs.len() as u64;
        prop_assert_eq!(ix.indexed_upto().unwrap(), n);
        let mut all = ranges.clone();
        all.extend([(0, u64::MAX), (n, u64::MAX), (u64::MAX, u64::MAX), (0, 0), (n - 1, n)]);
        for (lo, hi) in all {
            let want = |f: &dyn Fn(&Record) -> bool| -> Vec<u64> {
                recs.iter().rev().filter(|r| r.id >= lo && r.id < hi && f(r)).map(|r| r.id).collect()
            };
            for p in PILOTS {
                prop_assert_eq!(ids(&ix, By::Pilot, p.as_bytes(), lo, hi),
                    want(&|r| r.entry.pilot == p), "pilot {} {}..{}", p, lo, hi);
            }
            for p in PARTNERS {
                prop_assert_eq!(ids(&ix, By::Partner, p.as_bytes(), lo, hi),
                    want(&|r| r.entry.sender == p || r.entry.recipient == p),
                    "partner {} {}..{}", p, lo, hi);
            }
            prop_assert_eq!(ids(&ix, By::Purpose, b"doel", lo, hi), want(&|_| true));
            for b in 0..3u8 {
                prop_assert_eq!(ids(&ix, By::Subject, &[b; 32], lo, hi),
                    want(&|r| r.entry.subject == Some([b; 32])), "subject {} {}..{}", b, lo, hi);
            }
        }
        let days = ix.stats(Dim::Day, "2026-01-01", "2026-01-03").unwrap();
        prop_assert_eq!(days.get("2026-01-02").copied(), Some((n, 0)), "counted once");
    }
}
