//! The audit log over many segments: rolling, segments made ahead and
//! written over, and what a crash can leave in their zeros.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ketenpoort::audit::segment::{self, End};
use ketenpoort::audit::store::Filter;
use ketenpoort::audit::{Audit, verify};

#[path = "common/log.rs"]
mod log;
use log::{entry, goes_on_and_verifies, sized, verifier};

/// The last segment and how its scan ends.
fn last_segment(dir: &Path) -> (PathBuf, End) {
    let path = segment::list(&dir.join("audit/segments"))
        .unwrap()
        .pop()
        .unwrap()
        .path;
    let end = segment::scan(&path, |_, _| Ok::<_, ()>(())).unwrap();
    (path, end)
}

/// A log over many segments (a few KiB each here, 64 MiB in service): every
/// record reads back by id, a query finds a subject's records across the
/// segment borders, the log reopens on its last segment and goes on from
/// the right id, and the whole of it verifies.
#[test]
fn a_log_over_many_segments_reads_queries_reopens_and_verifies() {
    let d = tempfile::tempdir().unwrap();
    let o = sized(d.path(), 4096);
    let a = Audit::open(o.clone()).unwrap();
    for i in 0..120 {
        assert_eq!(a.record_blocking(entry(i, &a)).unwrap().id, i);
    }
    let segs = std::fs::read_dir(d.path().join("audit/segments"))
        .unwrap()
        .count();
    assert!(segs > 5, "only {segs} segments");
    for id in [0, 1, 59, 60, 119] {
        assert_eq!(a.view().record(id).unwrap().id, id);
    }
    let subject = a.subjects("5550000003").unwrap();
    let page = a
        .view()
        .query(&Filter {
            subjects: subject,
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let want: Vec<u64> = (0..120).rev().filter(|i| i % 7 == 3).collect();
    assert_eq!(page.records.iter().map(|r| r.id).collect::<Vec<_>>(), want);
    a.shutdown();
    drop(a);
    goes_on_and_verifies(o, 120);
}

/// Segments made ahead (zeros, synced) are written over: a made-ahead
/// segment keeps its size while it fills, is cut to its last record when
/// the next one begins, and after a restart the writer goes on over its
/// zeros. A write a crash tore in those zeros is cut off at the next start,
/// with the zeros after it, and the log goes on and verifies.
#[test]
fn segments_made_ahead_are_written_over_and_survive_a_torn_write() {
    const SIZE: u64 = 4096;
    let d = tempfile::tempdir().unwrap();
    let o = sized(d.path(), SIZE);
    let next = d.path().join("audit/segments/next.tmp");
    let a = Audit::open(o.clone()).unwrap();
    let mut made_ahead = 0;
    let mut id = 0;
    while made_ahead < 3 {
        assert!(id < 2000, "no segment was made ahead in {id} records");
        assert_eq!(a.record_blocking(entry(id, &a)).unwrap().id, id);
        id += 1;
        if next.exists() {
            // Time for the making to finish before the roll: a segment
            // not ready then is used at the roll after.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let (path, end) = last_segment(d.path());
        if let End::ZeroTail { valid_len } = end {
            assert!(valid_len > 0 && valid_len < SIZE, "{valid_len}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), SIZE);
            made_ahead += 1;
        }
    }
    // Closed segments end at their last record.
    let segs = segment::list(&d.path().join("audit/segments")).unwrap();
    for s in &segs[..segs.len() - 1] {
        assert_eq!(
            segment::scan(&s.path, |_, _| Ok::<_, ()>(())).unwrap(),
            End::Clean,
            "{}",
            s.path.display()
        );
    }
    // Stop while the open segment has zeros left, and go on over them.
    while !matches!(last_segment(d.path()).1, End::ZeroTail { valid_len } if valid_len < SIZE - 600)
    {
        assert!(id < 4000);
        a.record_blocking(entry(id, &a)).unwrap();
        id += 1;
    }
    a.shutdown();
    drop(a);
    let (path, End::ZeroTail { valid_len: before }) = last_segment(d.path()) else {
        unreachable!()
    };
    let a = Audit::open(o.clone()).unwrap();
    assert_eq!(a.record_blocking(entry(id, &a)).unwrap().id, id);
    id += 1;
    a.shutdown();
    drop(a);
    let (after_path, end) = last_segment(d.path());
    assert_eq!(after_path, path, "the record went into the same segment");
    let End::ZeroTail { valid_len: grown } = end else {
        panic!("{end:?}")
    };
    assert!(grown > before);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        SIZE,
        "written over"
    );

    // A crash tore the next batch: a header and part of its record in the
    // zeros, the file's size unchanged.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[200, 1, 0, 0, 9, 9, 9, 9, 1, 2, 3], grown)
        .unwrap();
    drop(f);
    let rep = verify::verify(&d.path().join("audit"), &verifier(d.path()), |_| {}).unwrap();
    assert_eq!(rep.records, id);
    assert!(rep.torn_tail.is_some());
    let a = Audit::open(o).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), grown, "cut back");
    assert_eq!(a.record_blocking(entry(id, &a)).unwrap().id, id);
    for i in [0, id / 2, id - 1, id] {
        assert_eq!(a.view().record(i).unwrap().id, i);
    }
    a.shutdown();
    drop(a);
    let rep = verify::verify(&d.path().join("audit"), &verifier(d.path()), |_| {}).unwrap();
    assert_eq!((rep.records, rep.torn_tail), (id + 1, None));

    // Zeros after the frames of a closed segment are no made-ahead end.
    let first = &segment::list(&d.path().join("audit/segments")).unwrap()[0].path;
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(first)
        .unwrap();
    f.set_len(f.metadata().unwrap().len() + 100).unwrap();
    let err = verify::verify(&d.path().join("audit"), &verifier(d.path()), |_| {}).unwrap_err();
    assert!(err.0.contains("ends in zeros"), "{err}");
}

/// A batch larger than one write (`segment::MAX_WRITE`) is written in
/// parts, each synced, rolling segments between them: no segment outgrows
/// its size, every record reads back by id from where its part put it, the
/// log reopens and verifies.
#[test]
fn a_batch_larger_than_one_write_is_written_in_parts() {
    let d = tempfile::tempdir().unwrap();
    let o = sized(d.path(), 3 << 20);
    let a = Audit::open(o.clone()).unwrap();
    let big = |i: u64| {
        let mut e = entry(i, &a);
        e.disclosed = (0..3000)
            .map(|k| format!("veld-{i}-{k:0>90}").into())
            .collect();
        e
    };
    let entries: Vec<_> = (0..40).map(big).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let got = rt.block_on(a.record_many(entries));
    let ids: Vec<u64> = got.into_iter().map(|r| r.unwrap().id).collect();
    assert_eq!(ids, (0..40).collect::<Vec<_>>());
    let segs = segment::list(&d.path().join("audit/segments")).unwrap();
    let lens: Vec<u64> = segs
        .iter()
        .map(|s| std::fs::metadata(&s.path).unwrap().len())
        .collect();
    assert!(
        lens.iter().sum::<u64>() > 2 * segment::MAX_WRITE,
        "{lens:?}"
    );
    assert!(lens.iter().all(|&l| l <= 3 << 20), "{lens:?}");
    for id in 0..40 {
        let r = a.view().record(id).unwrap();
        assert_eq!((r.id, r.entry.disclosed.len()), (id, 3000));
        assert!(r.entry.disclosed[0].starts_with(&format!("veld-{id}-")));
    }
    a.shutdown();
    drop(a);
    goes_on_and_verifies(o, 40);
}

/// A backup taken while the open segment ends in the zeros of a segment
/// made ahead (and a closed one was cut at its roll) copies the frames
/// only, restores, opens and verifies.
#[test]
fn a_backup_of_a_log_that_ends_in_zeros_restores_and_verifies() {
    const SIZE: u64 = 8192;
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let o = sized(&data, SIZE);
    let a = Audit::open(o.clone()).unwrap();
    for i in 0..60 {
        a.record_blocking(entry(i, &a)).unwrap();
    }
    a.shutdown();
    drop(a);
    // The open segment as if made ahead: its frames, then zeros.
    let (path, _) = last_segment(&data);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(SIZE)
        .unwrap();
    let a = std::sync::Arc::new(Audit::open(o).unwrap());
    a.record_blocking(entry(60, &a)).unwrap();
    assert!(matches!(last_segment(&data).1, End::ZeroTail { .. }));
    assert!(segment::list(&data.join("audit/segments")).unwrap().len() > 1);
    let db = sled::open(d.path().join("sled")).unwrap();
    let to = d.path().join("backup");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let summary = rt
        .block_on(ketenpoort::backup::take(
            a.clone(),
            db,
            data.clone(),
            to.clone(),
            true,
        ))
        .unwrap();
    assert_eq!(summary.size, 61);
    a.shutdown();
    let restored = d.path().join("restored");
    ketenpoort::backup::restore::restore(&to, &restored, None).unwrap();
    let (rpath, end) = last_segment(&restored);
    assert_eq!(end, End::Clean, "no zeros copied");
    assert!(std::fs::metadata(rpath).unwrap().len() < SIZE);
    goes_on_and_verifies(sized(&restored, SIZE), 61);
}

/// An operator removes `segments/next.tmp` (a `*.tmp` file of 64 MiB) while
/// the gateway runs: the roll that would have used it begins the next
/// segment by appends, and no record fails.
#[test]
fn a_segment_made_ahead_removed_by_hand_fails_no_record() {
    const SIZE: u64 = 4096;
    let d = tempfile::tempdir().unwrap();
    let o = sized(d.path(), SIZE);
    let next = d.path().join("audit/segments/next.tmp");
    let a = Audit::open(o).unwrap();
    let mut id = 0;
    let mut removed = 0;
    while removed < 3 {
        assert!(id < 3000, "only {removed} removed in {id} records");
        assert_eq!(a.record_blocking(entry(id, &a)).unwrap().id, id);
        id += 1;
        if std::fs::remove_file(&next).is_ok() {
            removed += 1;
        }
    }
    let segs = segment::list(&d.path().join("audit/segments"))
        .unwrap()
        .len();
    while segment::list(&d.path().join("audit/segments"))
        .unwrap()
        .len()
        < segs + 3
    {
        assert_eq!(a.record_blocking(entry(id, &a)).unwrap().id, id);
        id += 1;
    }
    a.shutdown();
    drop(a);
    let report = verify::verify(&d.path().join("audit"), &verifier(d.path()), |_| {}).unwrap();
    assert_eq!(report.records, id);
}
