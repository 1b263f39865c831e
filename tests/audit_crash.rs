//! What a crash can leave of a log whose segments are made ahead and written
//! over, built by hand and reopened: a power loss keeps any subset of the
//! pages of the one write not yet synced; a kill between the steps of a roll
//! leaves the old segment cut or not, `next.tmp` renamed in or not. Each must
//! reopen with every answered record and go on, or be refused as damage
//! where it is damage.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ketenpoort::audit::segment::{self, End};
use ketenpoort::audit::{Audit, AuditError, verify};

#[path = "common/log.rs"]
mod log;
use log::{entry, frames, sized, verifier};

/// The size of a segment made ahead in these tests.
const SIZE: u64 = 1 << 20;
const PAGE: usize = 4096;

/// A log of `n` answered records in one segment, stopped.
fn fill(dir: &Path, n: u64) -> PathBuf {
    let o = sized(dir, SIZE);
    let a = Audit::open(o).unwrap();
    for i in 0..n {
        assert_eq!(a.record_blocking(entry(i, &a)).unwrap().id, i);
    }
    a.shutdown();
    drop(a);
    seg_path(dir, 0)
}

fn seg_path(dir: &Path, first: u64) -> PathBuf {
    dir.join("audit/segments").join(segment::file_name(first))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Opens the log, checks that records `0..answered` read back and that the
/// next record goes on after what it kept, stops it and verifies it.
fn reopens_with(dir: &Path, answered: u64) -> u64 {
    let o = sized(dir, SIZE);
    let a = Audit::open(o).unwrap();
    let size = a.view().head().size;
    assert!(
        size >= answered,
        "kept {size} of {answered} answered records"
    );
    for id in 0..answered {
        assert_eq!(a.view().record(id).unwrap().id, id);
    }
    assert_eq!(a.record_blocking(entry(size, &a)).unwrap().id, size);
    a.shutdown();
    drop(a);
    let rep = verify::verify(&dir.join("audit"), &verifier(dir), |_| {}).unwrap();
    assert_eq!((rep.records, rep.torn_tail), (size + 1, None));
    size
}

/// The next write of a segment made ahead, torn by a power loss that kept
/// some of its pages and lost others (zeros where they were): the gateway
/// keeps every answered record, drops the torn write, and goes on.
#[test]
fn a_power_loss_that_kept_later_pages_of_the_last_write_reopens() {
    let base = tempfile::tempdir().unwrap();
    let seg = fill(base.path(), 40);
    let acked = std::fs::read(&seg).unwrap();
    // The write the crash tore: the frames of the next 100 records, as
    // the writer would have written them (a twin of the log wrote them).
    let twin = tempfile::tempdir().unwrap();
    copy_dir(base.path(), twin.path());
    let twin_seg = fill_more(twin.path(), 40, 100);
    let write = std::fs::read(&twin_seg).unwrap()[acked.len()..].to_vec();
    assert!(write.len() > 3 * PAGE, "the write spans pages");

    // Pages (4 KiB of the file) of the write that reached the disk.
    let first_page = acked.len() / PAGE;
    let last_page = (acked.len() + write.len() - 1) / PAGE;
    type Landed = Box<dyn Fn(usize) -> bool>;
    let cases: Vec<(&str, Landed)> = vec![
        ("all but the first", Box::new(move |p| p != first_page)),
        (
            "the first and the last",
            Box::new(move |p| p == first_page || p == last_page),
        ),
        ("the last only", Box::new(move |p| p == last_page)),
        ("all but the last", Box::new(move |p| p != last_page)),
        ("every other", Box::new(move |p| (p - first_page) % 2 == 1)),
    ];
    for (what, landed) in cases {
        let d = tempfile::tempdir().unwrap();
        copy_dir(base.path(), d.path());
        let mut bytes = acked.clone();
        bytes.resize(SIZE as usize, 0);
        for (i, b) in write.iter().enumerate() {
            if landed((acked.len() + i) / PAGE) {
                bytes[acked.len() + i] = *b;
            }
        }
        std::fs::write(seg_path(d.path(), 0), &bytes).unwrap();
        let kept = reopens_with(d.path(), 40);
        assert!(kept < 140, "{what}: {kept}");
    }
}

/// Writes `n` more records after `from` into the log in `dir`; its segment.
fn fill_more(dir: &Path, from: u64, n: u64) -> PathBuf {
    let o = sized(dir, SIZE);
    let a = Audit::open(o).unwrap();
    for i in from..from + n {
        assert_eq!(a.record_blocking(entry(i, &a)).unwrap().id, i);
    }
    a.shutdown();
    drop(a);
    seg_path(dir, 0)
}

/// A broken frame of a record that was answered (its leaf is cached) is
/// damage even at the end of the frames: never cut, the start refused and
/// verify names it. Without the cache (it is rebuilt from the segments) the
/// same bytes read as a torn write, but a signed checkpoint covers them.
#[test]
fn a_broken_last_record_that_was_answered_is_damage_not_a_torn_write() {
    let d = tempfile::tempdir().unwrap();
    let seg = fill(d.path(), 12);
    let mut bytes = std::fs::read(&seg).unwrap();
    let (off, _) = frames(&seg)[11];
    bytes[off + segment::HEADER + 3] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let err = verify::verify(&d.path().join("audit"), &verifier(d.path()), |_| {}).unwrap_err();
    assert!(err.0.contains("record 11"), "{err}");
    let o = sized(d.path(), SIZE);
    assert!(matches!(
        Audit::open(o.clone()),
        Err(AuditError::Damaged(_))
    ));
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "nothing was cut");
    // Made ahead: the same before zeros.
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(SIZE).unwrap();
    drop(f);
    assert!(matches!(
        Audit::open(o.clone()),
        Err(AuditError::Damaged(_))
    ));
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        SIZE,
        "nothing was cut"
    );
    // Without the caches the scan alone cannot tell; the signed checkpoint
    // that covers the record still stops the start, before anything is cut.
    std::fs::remove_dir_all(d.path().join("audit/cache")).unwrap();
    assert!(matches!(Audit::open(o), Err(AuditError::Damaged(_))));
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        SIZE,
        "nothing was cut"
    );
}

/// A kill or power loss between the steps of a roll: the old segment cut
/// or not, `next.tmp` made in part, made whole, or renamed in (with the
/// directory synced or not). Every state reopens with all records, goes
/// on, and verifies; a `next.tmp` left behind is never read as the log.
#[test]
fn every_state_a_roll_can_leave_reopens() {
    let base = tempfile::tempdir().unwrap();
    let seg = fill(base.path(), 30);
    let frames_len = std::fs::metadata(&seg).unwrap().len();
    let next = |d: &Path| d.join("audit/segments/next.tmp");
    let zeros = |p: &Path, len: u64| {
        let f = std::fs::File::create(p).unwrap();
        f.set_len(len).unwrap();
    };
    // (what, old segment's length, next.tmp's length, renamed in)
    let cases = [
        ("making under way", SIZE, Some(SIZE / 3), false),
        ("made, the old one not yet cut", SIZE, Some(SIZE), false),
        (
            "the old one cut, next not renamed",
            frames_len,
            Some(SIZE),
            false,
        ),
        ("renamed in, nothing written", frames_len, Some(SIZE), true),
        ("appended: an empty new segment", frames_len, None, true),
    ];
    for (what, old_len, made, renamed) in cases {
        let d = tempfile::tempdir().unwrap();
        copy_dir(base.path(), d.path());
        let old = seg_path(d.path(), 0);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&old)
            .unwrap()
            .set_len(old_len)
            .unwrap();
        let new = seg_path(d.path(), 30);
        match (made, renamed) {
            (Some(len), false) => zeros(&next(d.path()), len),
            (Some(len), true) => zeros(&new, len),
            (None, true) => zeros(&new, 0),
            (None, false) => {}
        }
        let kept = reopens_with(d.path(), 30);
        assert_eq!(kept, 30, "{what}");
        assert!(
            !next(d.path()).exists(),
            "{what}: an unused next.tmp is removed"
        );
        // The log goes on over a made-ahead segment's zeros, or appends.
        let last = segment::list(&d.path().join("audit/segments"))
            .unwrap()
            .pop()
            .unwrap();
        let end = segment::scan(&last.path, |_, _| Ok::<_, ()>(())).unwrap();
        assert!(
            matches!(end, End::Clean | End::ZeroTail { .. }),
            "{what}: {end:?}"
        );
        let o = sized(d.path(), SIZE);
        let a = Audit::open(o).unwrap();
        assert_eq!(a.record_blocking(entry(31, &a)).unwrap().id, 31, "{what}");
        a.shutdown();
    }
}

/// A power loss may keep frames of the torn write and lose a page before
/// them; the records of those frames were never answered, and whatever the
/// gateway keeps of them must still be a log that verifies. Here the write
/// that was torn is a batch over a segment's border: the new segment's
/// first write is torn while the old one is cut and closed.
#[test]
fn a_torn_first_write_of_a_renamed_segment_reopens() {
    let base = tempfile::tempdir().unwrap();
    let seg = fill(base.path(), 30);
    let twin = tempfile::tempdir().unwrap();
    copy_dir(base.path(), twin.path());
    let write = std::fs::read(fill_more(twin.path(), 30, 40)).unwrap()
        [std::fs::metadata(&seg).unwrap().len() as usize..]
        .to_vec();
    let new = seg_path(base.path(), 30);
    let mut bytes = vec![0u8; SIZE as usize];
    // The first page lost, the rest landed.
    bytes[PAGE..write.len()].copy_from_slice(&write[PAGE..]);
    std::fs::write(&new, &bytes).unwrap();
    assert_eq!(reopens_with(base.path(), 30), 30);
    let f = std::fs::File::open(&new).unwrap();
    let mut h = [0u8; 8];
    f.read_exact_at(&mut h, 0).unwrap();
    assert_ne!(h, [0u8; 8], "the next record was written at the start");
}

/// A closed segment whose last record is broken, in a log whose caches are
/// rebuilt and whose newest records no checkpoint covers yet (as after a
/// crash before the first): the scan reads the broken frame as a torn
/// write, but only the last segment can hold one. Replaying on past it
/// would give every later record another id; the start is refused.
#[test]
fn a_broken_end_of_a_closed_segment_is_damage_when_the_caches_are_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    let o = sized(d.path(), 4096);
    let a = Audit::open(o.clone()).unwrap();
    for i in 0..60 {
        a.record_blocking(entry(i, &a)).unwrap();
    }
    a.shutdown();
    drop(a);
    let segs = segment::list(&d.path().join("audit/segments")).unwrap();
    assert!(segs.len() > 2);
    let closed = &segs[0].path;
    let mut bytes = std::fs::read(closed).unwrap();
    let (off, _) = *frames(closed).last().unwrap();
    bytes[off + segment::HEADER + 3] ^= 0x40;
    std::fs::write(closed, &bytes).unwrap();
    std::fs::remove_dir_all(d.path().join("audit/cache")).unwrap();
    std::fs::remove_file(d.path().join("audit/checkpoints")).unwrap();
    let opened = Audit::open(o);
    assert!(
        matches!(opened, Err(AuditError::Damaged(_))),
        "{:?}",
        opened.map(|a| a.view().head().size)
    );
    assert_eq!(std::fs::read(closed).unwrap(), bytes, "nothing was cut");
    let err = verify::verify(&d.path().join("audit"), &verifier(d.path()), |_| {}).unwrap_err();
    assert!(err.0.contains("not the last segment"), "{err}");
}
