//! A full disk under the data directory: exchanges are refused with 503 and
//! nothing is delivered; once space is freed the gateway goes on without a
//! restart, and the log verifies. Needs root to mount a small tmpfs; without
//! it the test says so and skips (CI runs as root, so it never skips there).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::process::Command;

use common::disk::{Mount, fill, is_root, small_tmpfs};
use common::fixture::*;
use hyper::Method;

const CASUS: &[(&str, &str)] = &[("ketenpoort-purpose", "casusoverleg")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_503_and_recovers_without_restart() {
    if !is_root() {
        eprintln!("skipped: mounting a size-limited tmpfs needs root");
        return;
    }
    let mut mount = None;
    let f = fixture_with(|pki| mount = small_tmpfs(&pki.data_dir())).await;
    if mount.is_none() {
        eprintln!("skipped: this machine does not allow mounting a tmpfs");
        return;
    }
    let path = "/v1/pilots/proef/services/dtv/dossier/5550001234";
    let r = f
        .gemeente
        .send(Method::GET, path, CASUS, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    // A policy administrator, made while there is room for the users file.
    let admin = ketenpoort::console::users::add(
        &f.gw.gateway.config,
        "beheer",
        ketenpoort::console::users::Role::PolicyAdmin,
        None,
        None,
    )
    .unwrap();
    f.gw.gateway.console.users.reload().unwrap();

    let ballast = fill(&f.pki.data_dir());
    // Records still fit in the pages the segment already has; once a write
    // needs a new page, the disk is full for the log.
    let mut first_refusal = None;
    for i in 0..300 {
        let r = f
            .gemeente
            .send(Method::GET, path, CASUS, None)
            .await
            .unwrap();
        if r.status == 503 {
            first_refusal = Some(i);
            break;
        }
        assert_eq!(r.status, 200);
    }
    assert!(
        first_refusal.is_some(),
        "a full disk never refused an exchange"
    );
    for _ in 0..5 {
        let r = f
            .gemeente
            .send(Method::GET, path, CASUS, None)
            .await
            .unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.json()["type"], "urn:ketenpoort:problem:audit-unavailable");
        assert!(
            !String::from_utf8_lossy(&r.body).contains("Testpersoon"),
            "data delivered without a record"
        );
    }
    // The operator saw it coming and sees it now: space left and failed
    // writes in the metrics.
    f.gw.gateway.check_disk();
    let r = common::get(f.gw.console, &f.pki.ca.cert_pem, None, "/metrics")
        .await
        .unwrap();
    let m = String::from_utf8_lossy(&r.body).into_owned();
    let value = |prefix: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} missing in\n{m}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(value("ketenpoort_data_free_bytes ") < 1024.0 * 1024.0);
    assert_eq!(value("ketenpoort_data_size_bytes "), 16.0 * 1024.0 * 1024.0);
    assert!(value("ketenpoort_audit_write_errors_total ") >= 1.0);
    // A policy change the log cannot record does not take effect, and no
    // record claims it.
    let size = f.gw.gateway.audit.view().head().size;
    let pilot_file = f.pki.pilots_dir().join("proef.toml");
    let before = std::fs::read_to_string(&pilot_file).unwrap();
    let version = f.gw.gateway.policy.current().policy.pilots["proef"]
        .version
        .clone();
    let changed = format!(
        "{before}\n[[rules]]\nid = \"proef-lijst-ngo\"\npurpose = \"casusoverleg\"\nservice = \"dtv/lijst\"\nconsumers = [\"ngo-pinned\"]\nresponse = [\"vnummer\"]\n"
    );
    let req = hyper::Request::put("https://localhost/api/v1/pilots/proef/policy")
        .header("authorization", format!("Bearer {admin}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(changed)))
        .unwrap();
    let r = common::request(
        f.gw.console,
        common::client_config(&f.pki.ca.cert_pem, None, &[b"http/1.1"]),
        req,
    )
    .await
    .unwrap();
    // Its history or its record cannot be written: refused either way.
    assert!(
        r.status == 500 || r.status == 503,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(std::fs::read_to_string(&pilot_file).unwrap(), before);
    assert_eq!(
        f.gw.gateway.policy.current().policy.pilots["proef"].version,
        version,
        "an unrecorded policy change took effect"
    );
    assert_eq!(
        f.gw.gateway.audit.view().head().size,
        size,
        "a record claims a change that did not happen"
    );

    // A refusal is smaller: recorded if it still fits, else 503 as well.
    let r = f
        .gemeente
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/lijst/a",
            &[("ketenpoort-purpose", "begeleiding")],
            None,
        )
        .await
        .unwrap();
    assert!(r.status == 403 || r.status == 503, "{}", r.status);

    std::fs::remove_file(ballast).unwrap();
    let r = f
        .gemeente
        .send(Method::GET, path, CASUS, None)
        .await
        .unwrap();
    assert_eq!(
        r.status,
        200,
        "no recovery after space was freed: {:?}",
        r.json()
    );
    let id: u64 = r.header("ketenpoort-disclosure").unwrap().parse().unwrap();

    f.gw.gateway.audit.checkpoint().await.unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["audit", "verify", "--config"])
        .arg(f.pki.config_file())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let view = f.gw.gateway.audit.view().clone();
    let rec = tokio::task::spawn_blocking(move || view.record(id).unwrap())
        .await
        .unwrap();
    assert_eq!(
        rec.entry.payload_sha256,
        Some(ketenpoort::identity::sha256(&r.body))
    );
    // The index failed with the disk (fjall refuses writes after a failed
    // one) and caught up without a restart: the answer's record is found
    // through it, and it reaches the head.
    let view = f.gw.gateway.audit.view().clone();
    let page = tokio::task::spawn_blocking(move || {
        view.query(&ketenpoort::audit::store::Filter {
            pilot: Some("proef".into()),
            limit: 1,
            ..Default::default()
        })
        .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        page.records.first().map(|r| r.id),
        Some(id),
        "the index did not catch up after space was freed"
    );
    f.gw.stop().await;
    drop(mount);
}

/// The index alone on a full disk: fjall poisons its database on the failed
/// write and refuses every later one; the index opens it again once space
/// is back, and counts every record exactly once.
#[test]
fn the_index_reopens_after_a_full_disk() {
    use ketenpoort::audit::index::{By, Dim, Index};
    use ketenpoort::audit::record::{Decision, Entry, Record};

    if !is_root() {
        eprintln!("skipped: mounting a size-limited tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(dir.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipped: this machine does not allow mounting a tmpfs");
        return;
    }
    let _mount = Mount(dir.path().to_path_buf());
    let rec = |id: u64| {
        let mut entry = Entry::exchange("proef", "gemeente", "dtv", "casusoverleg", "dtv/dossier");
        entry.decision = Decision::Disclosed;
        entry.subject = Some([(id % 251) as u8; 32]);
        Record {
            version: 2,
            id,
            time_micros: 1_767_312_000_000_000,
            entry,
        }
    };
    let ix = Index::open(&dir.path().join("index")).unwrap();
    ix.add(&(0..100).map(rec).collect::<Vec<_>>()).unwrap();
    let ballast = fill(dir.path());
    // Batches of 100 until a write fails; they fit in the journal's last
    // page for a while.
    let mut next = 100;
    let failed_at = loop {
        let batch: Vec<Record> = (next..next + 100).map(rec).collect();
        if ix.add(&batch).is_err() {
            break next;
        }
        next += 100;
        assert!(next < 1_000_000, "a full disk never failed an index write");
    };
    // The writer goes on retrying what the index lacks while the disk is
    // full: each try reopens the poisoned database, and may fail again.
    let end = failed_at + 300;
    for _ in 0..3 {
        let _ = ix.add(&(failed_at..end).map(rec).collect::<Vec<_>>());
    }

    std::fs::remove_file(ballast).unwrap();
    // Space is back: the next retry goes through, without a restart.
    ix.add(&(failed_at..end).map(rec).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(ix.indexed_upto().unwrap(), end);
    let day = ix.stats(Dim::Day, "2026-01-02", "2026-01-02").unwrap();
    assert_eq!(day["2026-01-02"], (end, 0), "counted once each");
    let ids: Vec<u64> = ix
        .ids(By::Pilot, b"proef", 0, u64::MAX)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids, (0..end).rev().collect::<Vec<_>>());
    ix.flush().unwrap();
}

/// The log alone on a disk that fills while its open segment was made
/// ahead: records go on over the segment's own zeros (they are the log's
/// room, taken while the disk had four more segments of it), nothing is
/// made ahead on the full disk, the first write that needs new room fails
/// whole, and once space is freed the log goes on and verifies.
#[test]
fn a_log_made_ahead_fills_its_zeros_then_fails_whole_on_a_full_disk() {
    use ketenpoort::audit::segment::{self, End};
    use ketenpoort::audit::{Audit, Decision, Entry, verify};

    if !is_root() {
        eprintln!("skipped: mounting a size-limited tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = small_tmpfs(dir.path()) else {
        eprintln!("skipped: this machine does not allow mounting a tmpfs");
        return;
    };
    const SIZE: u64 = 256 << 10;
    let mut o = ketenpoort::audit::Options::new(dir.path(), "test");
    o.segment_max = SIZE;
    let a = Audit::open(o).unwrap();
    let entry = || {
        let mut e = Entry::exchange("proef", "gemeente", "dtv", "casusoverleg", "dtv/dossier");
        e.decision = Decision::Disclosed;
        e
    };
    let segs = dir.path().join("audit/segments");
    let next = segs.join("next.tmp");
    let last_end = || {
        let last = segment::list(&segs).unwrap().pop().unwrap();
        segment::scan(&last.path, |_, _| Ok::<_, ()>(())).unwrap()
    };
    let mut written = 0u64;
    // Until the open segment is one made ahead, with most of it left.
    while !matches!(last_end(), End::ZeroTail { valid_len } if valid_len < SIZE / 4) {
        assert!(written < 20_000, "no segment was made ahead");
        a.record_blocking(entry()).unwrap();
        written += 1;
        while next.exists() && std::fs::metadata(&next).unwrap().len() < SIZE {
            std::thread::yield_now();
        }
    }
    let ballast = fill(dir.path());
    let before = written;
    let failed = loop {
        match a.record_blocking(entry()) {
            Ok(r) => assert_eq!(r.id, written),
            Err(e) => break e,
        }
        written += 1;
        assert!(!next.exists(), "a segment made ahead on a full disk");
        assert!(
            written < before + 20_000,
            "a full disk never failed a write"
        );
    };
    assert!(written > before, "no record went over the zeros: {failed}");
    std::fs::remove_file(ballast).unwrap();
    assert_eq!(a.record_blocking(entry()).unwrap().id, written);
    a.shutdown();
    drop(a);
    let vkey = std::fs::read_to_string(dir.path().join("audit/checkpoint.vkey")).unwrap();
    let v = ketenpoort::audit::checkpoint::Verifier::parse(&vkey).unwrap();
    let rep = verify::verify(&dir.path().join("audit"), &v, |_| {}).unwrap();
    assert_eq!(rep.records, written + 1);
}
