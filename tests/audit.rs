//! The audit store over a real directory: durability, proofs, tamper
//! detection, recovery, queries, and the shared RFC 6962 vectors.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ketenpoort::audit::merkle::{self, leaf_hash};
use ketenpoort::audit::store::{Filter, View};
use ketenpoort::audit::{Audit, AuditError, Decision, proof, segment, verify};

#[path = "common/log.rs"]
mod log;
use log::{entry, frames, opts, verifier};

const BIN: &str = env!("CARGO_BIN_EXE_ketenpoort");

fn fill(dir: &Path, n: u64) {
    let audit = Audit::open(opts(dir)).unwrap();
    for i in 0..n {
        audit.record_blocking(entry(i, &audit)).unwrap();
    }
    audit.shutdown();
}

fn segment_file(dir: &Path) -> PathBuf {
    segment::list(&dir.join("audit/segments"))
        .unwrap()
        .remove(0)
        .path
}

#[test]
fn records_are_numbered_durable_and_provable() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 25);
    let audit = Audit::open(opts(d.path())).unwrap();
    let r = audit.record_blocking(entry(25, &audit)).unwrap();
    assert_eq!(r.id, 25);
    let view = audit.view().clone();
    assert_eq!(view.head().size, 26);
    let rec = view.record(7).unwrap();
    assert_eq!(rec.id, 7);
    assert_eq!(leaf_hash(&rec.encode()), view.leaf(7).unwrap());
    for size in [1, 8, 13, 26] {
        let root = view.root_at(size).unwrap();
        for i in 0..size {
            let p: Vec<Vec<u8>> = view
                .inclusion_proof(i, size)
                .unwrap()
                .iter()
                .map(|h| h.to_vec())
                .collect();
            merkle::verify_inclusion(i, size, &view.leaf(i).unwrap(), &p, &root).unwrap();
        }
    }
    let p: Vec<Vec<u8>> = view
        .consistency_proof(10, 26)
        .unwrap()
        .iter()
        .map(|h| h.to_vec())
        .collect();
    merkle::verify_consistency(
        10,
        26,
        &p,
        &view.root_at(10).unwrap(),
        &view.root_at(26).unwrap(),
    )
    .unwrap();
    audit.shutdown();
    // Checkpoints every 10 records, all verifying.
    let rep = verify::verify(&d.path().join("audit"), &verifier(d.path()), |_| {}).unwrap();
    assert_eq!(rep.records, 26);
    assert!(rep.checkpoints >= 2, "{rep:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_distinct_ids() {
    let d = tempfile::tempdir().unwrap();
    let audit = Arc::new(Audit::open(opts(d.path())).unwrap());
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let a = audit.clone();
        tasks.push(tokio::spawn(async move {
            a.record(entry(i, &a)).await.unwrap().id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort();
    assert_eq!(ids, (0..200).collect::<Vec<_>>());
    let a = audit.clone();
    tokio::task::spawn_blocking(move || a.shutdown())
        .await
        .unwrap();
}

#[test]
fn queries_use_the_indexes_newest_first_and_page() {
    let d = tempfile::tempdir().unwrap();
    let audit = Audit::open(opts(d.path())).unwrap();
    for i in 0..60 {
        audit.record_blocking(entry(i, &audit)).unwrap();
    }
    let view = audit.view().clone();
    // The person's pseudonyms under every subject key (one per pilot and month).
    let subject = audit.subjects("5550000003").unwrap();
    let page = view
        .query(&Filter {
            subjects: subject.clone(),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<u64> = page.records.iter().map(|r| r.id).collect();
    let want: Vec<u64> = (0..60).rev().filter(|i| i % 7 == 3).collect();
    assert_eq!(ids, want);
    // Paging.
    let p1 = view
        .query(&Filter {
            subjects: subject.clone(),
            limit: 3,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(p1.records.len(), 3);
    let p2 = view
        .query(&Filter {
            subjects: subject.clone(),
            limit: 100,
            before: p1.next,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(p2.records.len(), want.len() - 3);
    assert_eq!(p2.records[0].id, want[3]);
    // Partner, pilot, purpose, decision combined.
    let page = view
        .query(&Filter {
            partner: Some("gemeente-utrecht".into()),
            pilot: Some("utrecht".into()),
            decision: Some(Decision::Refused),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let want: Vec<u64> = (0..60)
        .rev()
        .filter(|i| i % 3 == 0 && i % 2 == 0 && i % 5 == 0)
        .collect();
    assert_eq!(page.records.iter().map(|r| r.id).collect::<Vec<_>>(), want);
    let page = view
        .query(&Filter {
            purpose: Some("medisch".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert!(page.records.iter().all(|r| r.entry.purpose == "medisch") && !page.records.is_empty());
    // Time bounds: everything was written just now.
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
    let page = view
        .query(&Filter {
            until: Some(now - 3_600_000_000),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert!(page.records.is_empty());
    let page = view
        .query(&Filter {
            since: Some(now - 3_600_000_000),
            limit: 5,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.records.len(), 5);
    audit.shutdown();
}

#[test]
fn verify_catches_an_altered_record_even_with_a_valid_checksum() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 30);
    let seg = segment_file(d.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let (off, len) = frames(&seg)[17];
    let body = off + segment::HEADER;
    // Change "dtv" into "dtw" inside record 17 and fix up the frame checksum,
    // as a deliberate forger would.
    let pos = body
        + bytes[body..off + len]
            .windows(3)
            .position(|w| w == b"dtv")
            .unwrap();
    bytes[pos + 2] = b'w';
    let crc = crc32fast::hash(&bytes[body..off + len]);
    bytes[off + 4..off + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    let err = verify::verify(&d.path().join("audit"), &verifier(d.path()), |_| {}).unwrap_err();
    assert!(err.0.contains("record 17"), "{err}");
    // The gateway refuses to start on a log that no longer matches its checkpoint.
    assert!(matches!(
        Audit::open(opts(d.path())),
        Err(AuditError::Damaged(_))
    ));
}

#[test]
fn verify_catches_a_removed_and_a_swapped_record() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 30);
    let seg = segment_file(d.path());
    let orig = std::fs::read(&seg).unwrap();
    let fr = frames(&seg);

    let (off, len) = fr[12];
    let mut removed = orig.clone();
    removed.drain(off..off + len);
    std::fs::write(&seg, &removed).unwrap();
    let err = verify::verify(&d.path().join("audit"), &verifier(d.path()), |_| {}).unwrap_err();
    assert!(err.0.contains("record 12"), "{err}");

    let (a, b) = (fr[20], fr[21]);
    let mut swapped = orig[..a.0].to_vec();
    swapped.extend_from_slice(&orig[b.0..b.0 + b.1]);
    swapped.extend_from_slice(&orig[a.0..a.0 + a.1]);
    swapped.extend_from_slice(&orig[b.0 + b.1..]);
    std::fs::write(&seg, &swapped).unwrap();
    let err = verify::verify(&d.path().join("audit"), &verifier(d.path()), |_| {}).unwrap_err();
    assert!(err.0.contains("record 20"), "{err}");

    std::fs::write(&seg, &orig).unwrap();
    verify::verify(&d.path().join("audit"), &verifier(d.path()), |_| {}).unwrap();
}

#[test]
fn a_torn_tail_is_cut_back_and_the_log_goes_on() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 12);
    let seg = segment_file(d.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let whole = bytes.len();
    bytes.extend_from_slice(&[200, 1, 0, 0, 9, 9, 9, 9, 1, 2, 3]);
    std::fs::write(&seg, &bytes).unwrap();
    let rep = verify::verify(&d.path().join("audit"), &verifier(d.path()), |_| {}).unwrap();
    assert_eq!(rep.torn_tail, Some(11));
    let audit = Audit::open(opts(d.path())).unwrap();
    assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, whole);
    assert_eq!(audit.record_blocking(entry(12, &audit)).unwrap().id, 12);
    audit.shutdown();
    let rep = verify::verify(&d.path().join("audit"), &verifier(d.path()), |_| {}).unwrap();
    assert_eq!((rep.records, rep.torn_tail), (13, None));
}

#[test]
fn damage_in_the_middle_is_reported_never_cut() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 12);
    let seg = segment_file(d.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let before = bytes.len();
    let (off, _) = frames(&seg)[5];
    bytes[off + segment::HEADER + 3] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let err = verify::verify(&d.path().join("audit"), &verifier(d.path()), |_| {}).unwrap_err();
    assert!(err.0.contains("record 5"), "{err}");
    assert!(matches!(
        Audit::open(opts(d.path())),
        Err(AuditError::Damaged(_))
    ));
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len() as usize,
        before,
        "nothing was cut"
    );
}

#[test]
fn lost_caches_and_index_are_rebuilt_from_the_segments() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 40);
    let root = {
        let a = Audit::open(opts(d.path())).unwrap();
        let r = a.view().head().root;
        a.shutdown();
        r
    };
    std::fs::remove_dir_all(d.path().join("audit/cache")).unwrap();
    std::fs::remove_dir_all(d.path().join("audit/index")).unwrap();
    let a = Audit::open(opts(d.path())).unwrap();
    assert_eq!(a.view().head().size, 40);
    assert_eq!(a.view().head().root, root);
    let page = a
        .view()
        .query(&Filter {
            pilot: Some("groningen".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.records.len(), 20);
    a.shutdown();
}

/// The index trails the head (it is written after the answers, by another
/// thread): a query must still find every record up to the head. Here the
/// index is emptied outright, so only the query's own scan of what the index
/// lacks can find them; no timing involved.
#[test]
fn a_query_finds_records_the_index_has_not_reached() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 50);
    let subject = {
        let a = Audit::open(opts(d.path())).unwrap();
        let s = a.subjects("5550000003").unwrap();
        a.shutdown();
        s
    };
    let ix = ketenpoort::audit::index::Index::open(&d.path().join("audit/index")).unwrap();
    ix.clear().unwrap();
    ix.flush().unwrap();
    drop(ix);
    let view = View::open_with_index(&opts(d.path())).unwrap();
    let want: Vec<u64> = (0..50).rev().filter(|i| i % 7 == 3).collect();
    let page = view
        .query(&Filter {
            subjects: subject.clone(),
            limit: 3,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        page.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        want[..3]
    );
    let rest = view
        .query(&Filter {
            subjects: subject.clone(),
            limit: 100,
            before: page.next,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        rest.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        want[3..]
    );
}

#[test]
fn record_fails_when_the_store_cannot_write() {
    let d = tempfile::tempdir().unwrap();
    let segs = d.path().join("audit/segments");
    std::fs::create_dir_all(&segs).unwrap();
    // A segment that is a full disk: every write fails with ENOSPC.
    std::os::unix::fs::symlink("/dev/full", segs.join(segment::file_name(0))).unwrap();
    let audit = Audit::open(opts(d.path())).unwrap();
    let err = audit.record_blocking(entry(0, &audit)).unwrap_err();
    assert!(matches!(err, AuditError::Write(_)), "{err:?}");
    assert_eq!(audit.view().head().size, 0);
    audit.shutdown();
}

// ---------------------------------------------------------------------------
// The command line

fn config_for(data: &Path) -> PathBuf {
    let cfg = data.join("ketenpoort.toml");
    std::fs::write(
        &cfg,
        r#"deployment = "test"
partners = "partners.toml"
data_dir = "."
[listen]
partners = "127.0.0.1:0"
console = "127.0.0.1:0"
[tls]
cert = "x"
key = "x"
trust_anchors = ["x"]
client_cert = "x"
client_key = "x"
"#,
    )
    .unwrap();
    cfg
}

fn run(args: &[&str], cfg: &Path, stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut c = Command::new(BIN);
    c.args(args).arg("--config").arg(cfg);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_head_verify_prove_check_query_export() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 23);
    let cfg = config_for(d.path());

    let (rc, out, err) = run(&["audit", "head"], &cfg, None);
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.starts_with("ketenpoort/test\n23\n") && out.contains("\u{2014} ketenpoort/test "),
        "{out}"
    );

    let (rc, out, _) = run(&["audit", "verify"], &cfg, None);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("23 records"), "{out}");

    let (rc, proof_json, err) = run(&["audit", "prove", "--index", "9"], &cfg, None);
    assert_eq!(rc, 0, "{err}");
    let (rc, out, _) = run(&["audit", "check-proof", "-"], &cfg, Some(&proof_json));
    assert_eq!(rc, 0, "{out}");
    let (rc, cons, _) = run(
        &["audit", "prove", "--from", "10", "--to", "23"],
        &cfg,
        None,
    );
    assert_eq!(rc, 0);
    assert_eq!(proof::check(&cons).map(|_| ()), Ok(()));
    let (rc, out, _) = run(
        &["audit", "check-proof", "-"],
        &cfg,
        Some("{\"leafIdx\": \"garbage"),
    );
    assert_eq!(rc, 1, "{out}");

    let (rc, out, err) = run(
        &[
            "audit",
            "query",
            "--subject",
            "5550000002",
            "--format",
            "jsonl",
        ],
        &cfg,
        None,
    );
    assert_eq!(rc, 0, "{err}");
    let found: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .collect();
    let ids: Vec<u64> = found.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    // The look-up itself is recorded first (record 23), as in the console.
    assert_eq!(ids, vec![23, 16, 9, 2]);
    assert_eq!(found[0]["kind"], "lookup");
    assert!(found[0]["recipient"].as_str().unwrap().starts_with("cli:"));
    assert!(
        !out.contains("5550000002"),
        "the V-nummer never appears in a record"
    );

    let (rc, out, _) = run(&["audit", "export", "--format", "csv"], &cfg, None);
    assert_eq!(rc, 0);
    assert_eq!(
        out.lines().count(),
        25,
        "header, 23 records and the look-up"
    );
    let (rc, out, _) = run(&["audit", "export", "--format", "logboek"], &cfg, None);
    assert_eq!(rc, 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Record 0 is a refusal: no data subject on its line; record 1 a
    // disclosure with the subject's pseudonym (tests/standards.rs checks
    // every field against the standard).
    assert!(
        lines[0]["attributes"]
            .get("dpl.core.data_subject_id")
            .is_none()
    );
    assert_eq!(
        lines[1]["attributes"]["dpl.core.data_subject_id_type"],
        "Vreemdelingennummer"
    );
    assert!(
        lines[1]["attributes"]["dpl.core.processing_activity_id"]
            .as_str()
            .unwrap()
            .starts_with("urn:ketenpoort:processing-activity:")
    );

    // A proof made now fails once one byte of that record is changed on disk
    // (checksum fixed, as a forger would).
    let seg = segment_file(d.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let (off, len) = frames(&seg)[9];
    let body = off + segment::HEADER;
    let pos = body
        + bytes[body..off + len]
            .windows(7)
            .position(|w| w == b"utrecht" || w == b"groning")
            .unwrap();
    bytes[pos] = b'X';
    let crc = crc32fast::hash(&bytes[body..off + len]);
    bytes[off + 4..off + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    let (rc, tampered, _) = run(&["audit", "prove", "--index", "9"], &cfg, None);
    assert_eq!(rc, 0);
    assert!(
        proof::check(&tampered).is_err(),
        "a changed record still proves"
    );
    let (rc, out, _) = run(&["audit", "verify"], &cfg, None);
    assert_eq!(rc, 1);
    assert!(out.contains("record 9"), "{out}");
}

#[test]
fn every_shared_rfc6962_vector_checks_as_expected() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/rfc6962-merkle");
    if !root.is_dir() {
        eprintln!("skipped: {} is not present", root.display());
        return;
    }
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 190, "only {} vectors found", files.len());
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let want_err = serde_json::from_str::<serde_json::Value>(&text).unwrap()["wantErr"]
            .as_bool()
            .unwrap_or(false);
        let got = proof::check(&text);
        assert_eq!(got.is_err(), want_err, "{}: {got:?}", f.display());
    }
    // And through the command line, which needs no data directory.
    for name in [
        "inclusion/1/happy-path.json",
        "consistency/1/truncated-proof.json",
    ] {
        let out = Command::new(BIN)
            .args(["audit", "check-proof"])
            .arg(root.join(name))
            .output()
            .unwrap();
        let want = if name.contains("happy") { 0 } else { 1 };
        assert_eq!(out.status.code(), Some(want), "{name}");
    }
}

#[test]
fn readonly_view_serves_proofs_beside_a_writer() {
    let d = tempfile::tempdir().unwrap();
    let audit = Audit::open(opts(d.path())).unwrap();
    for i in 0..20 {
        audit.record_blocking(entry(i, &audit)).unwrap();
    }
    let ro = View::open_readonly(&opts(d.path())).unwrap();
    assert_eq!(ro.head(), audit.view().head());
    audit.shutdown();
}

/// Two writers on one log would interleave records: the second is refused
/// while the first holds the log, and opens once it has stopped. (The index
/// is opened behind the writer now, so its own lock no longer guards this.)
#[test]
fn a_second_writer_on_the_same_log_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let first = Audit::open(opts(d.path())).unwrap();
    first.record_blocking(entry(0, &first)).unwrap();
    let err = Audit::open(opts(d.path())).unwrap_err();
    assert!(err.to_string().contains("held by another process"), "{err}");
    first.shutdown();
    drop(first);
    let second = Audit::open(opts(d.path())).unwrap();
    assert_eq!(second.record_blocking(entry(1, &second)).unwrap().id, 1);
    second.shutdown();
}

/// The log serves before its index is open (after a crash fjall replays its
/// journal first): here another holder keeps the index closed to the log.
/// Records are taken and found meanwhile (scanned), statistics say to try
/// again, and once the index is free the indexer opens it and catches up.
#[test]
fn the_log_serves_while_its_index_cannot_open_yet() {
    use ketenpoort::audit::index::{Dim, Index};
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 30);
    let holder = Index::open(&d.path().join("audit/index")).unwrap();
    let a = Audit::open(opts(d.path())).unwrap();
    let r = a.record_blocking(entry(30, &a)).unwrap();
    assert_eq!(r.id, 30);
    let subject = a.subjects("5550000002").unwrap();
    let page = a
        .view()
        .query(&Filter {
            subjects: subject.clone(),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let want: Vec<u64> = (0..31).rev().filter(|i| i % 7 == 2).collect();
    assert_eq!(page.records.iter().map(|r| r.id).collect::<Vec<_>>(), want);
    let err = a
        .view()
        .stats(Dim::Day, "2000-01-01", "2100-01-01")
        .unwrap_err();
    assert!(err.to_string().contains("being opened"), "{err}");
    drop(holder);
    // The indexer tries again every 250 ms; wait for the catch-up itself.
    let mut tries = 0;
    while a.view().unindexed().unwrap() > 0 {
        tries += 1;
        assert!(tries < 400, "the index never caught up");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let days = a
        .view()
        .stats(Dim::Day, "2000-01-01", "2100-01-01")
        .unwrap();
    assert_eq!(days.values().map(|(d, r)| d + r).sum::<u64>(), 31);
    a.shutdown();
}
