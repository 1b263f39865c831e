//! Audit store benchmark: durable records per second with 1, 16 and 256
//! concurrent writers, verify speed, and the time to list one subject's
//! records in a large log. Prints figures; asserts none.
//!
//!     cargo bench --bench audit                  # full run
//!     cargo bench --bench audit -- --log 10000000  # size of the look-up log
//!
//! Under `cargo test` (or with `--smoke`) it runs a few hundred records only,
//! so it cannot rot.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::Instant;

use ketenpoort::audit::checkpoint::Verifier;
use ketenpoort::audit::store::{Filter, Options};
use ketenpoort::audit::{Audit, Decision, Entry, verify};
use ketenpoort::text::Text;

// The allocator the shipped binary runs with (src/main.rs): verify and the
// look-ups allocate per record, so the figures are the binary's only with it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn entry(i: u64, audit: &Audit) -> Entry {
    let mut e = Entry::exchange(
        "utrecht",
        "dtv",
        "gemeente-utrecht",
        "casusoverleg",
        "dtv/vertrekdossier",
    );
    e.decision = Decision::Disclosed;
    e.legal_basis = "AVG art. 6(1)(e); Vreemdelingenwet 2000 art. 107 lid 4".into();
    e.rule_id = "utrecht-casus-dtv".into();
    e.policy_version =
        "sha256:e5cbd4dd4c77c84de65752dc609a48feb22c988fe4eb1bf9f1d5ba6585a21c82".into();
    e.disclosed = [
        "vnummer",
        "naam",
        "geboortedatum",
        "nationaliteit",
        "terugkeer.status",
    ]
    .map(Text::from)
    .to_vec();
    e.withheld = ["medisch", "regievoerder"].map(Text::from).to_vec();
    e.payload_sha256 = Some([3; 32]);
    e.subject = Some(
        audit
            .subject("utrecht", &format!("{:010}", 5_550_000_000 + i % 50_000))
            .unwrap(),
    );
    e.sender_cert_sha256 = Some([1; 32]);
    e.recipient_cert_sha256 = Some([2; 32]);
    e.trace_id = Some([9; 16]);
    e.span_id = Some([8; 8]);
    e
}

/// A child that holds the log open and writes until it is killed.
fn crash_child(dir: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let audit = Arc::new(Audit::open(Options::new(std::path::Path::new(dir), "bench")).unwrap());
    let mut i = 0u64;
    rt.block_on(async {
        loop {
            let entries: Vec<Entry> = (i..i + 1000).map(|k| entry(k, &audit)).collect();
            for r in audit.record_many(entries).await {
                r.unwrap();
            }
            if i == 0 {
                println!("ready");
            }
            i += 1000;
        }
    });
}

/// `kill -9` of a process writing to the log, then the time until the log
/// is open again and takes a durable record: what a restarted gateway waits
/// before it serves.
fn restart_after_kill(opts: &Options, size: u64) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--crash-child",
            opts.dir.parent().unwrap().to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let t = Instant::now();
    let audit = Audit::open(opts.clone()).unwrap();
    audit.record_blocking(entry(0, &audit)).unwrap();
    println!(
        "restart after kill -9 with a log of {size} records: {:.2}s to open and make a record durable",
        t.elapsed().as_secs_f64()
    );
    audit.shutdown();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--crash-child") {
        return crash_child(&args[i + 1]);
    }
    // cargo bench passes --bench; --smoke asks for the small run anyway
    // (bench/run.sh --smoke), and cargo test passes neither.
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--smoke");
    let log_size: u64 = args
        .iter()
        .position(|a| a == "--log")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 2_000 });
    let per_writer_total: u64 = if full { 100_000 } else { 300 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    println!(
        "# audit benchmark ({})",
        if full { "full" } else { "smoke" }
    );
    for writers in [1u64, 16, 256] {
        let dir = tempfile::tempdir().unwrap();
        let audit = Arc::new(Audit::open(Options::new(dir.path(), "bench")).unwrap());
        let total = if writers == 1 {
            per_writer_total / 20
        } else {
            per_writer_total
        };
        let each = total / writers;
        let started = Instant::now();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for w in 0..writers {
                let a = audit.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..each {
                        a.record(entry(w * each + i, &a)).await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        let secs = started.elapsed().as_secs_f64();
        println!(
            "durable records/s, {writers:>3} writers: {:>10.0}  ({} records in {secs:.2}s)",
            (each * writers) as f64 / secs,
            each * writers
        );
        audit.shutdown();
    }

    // A log for verify and look-ups: written through the same group commit,
    // in large batches (record_many), as a generator rather than over HTTP.
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::new(dir.path(), "bench");
    let audit = Arc::new(Audit::open(opts.clone()).unwrap());
    let started = Instant::now();
    rt.block_on(async {
        let writers = 4u64;
        let chunk = 2048u64;
        let mut tasks = Vec::new();
        for w in 0..writers {
            let a = audit.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = w * chunk;
                while i < log_size {
                    let end = (i + chunk).min(log_size);
                    let entries: Vec<Entry> = (i..end).map(|k| entry(k, &a)).collect();
                    for r in a.record_many(entries).await {
                        r.unwrap();
                    }
                    i += writers * chunk;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    println!(
        "generated a log of {log_size} records in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // The index is written behind the answers; the look-up is measured
    // with it caught up (queries scan what it lacks, which is slower).
    let behind = audit.view().unindexed().unwrap();
    let t = Instant::now();
    while audit.view().unindexed().unwrap() > 0 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    println!(
        "index caught up {:.1}s after the last record ({behind} records behind then)",
        t.elapsed().as_secs_f64()
    );

    let subject = audit
        .subject("utrecht", &format!("{:010}", 5_550_000_000u64 + 4242))
        .unwrap();
    let view = audit.view().clone();
    let mut best = f64::MAX;
    let mut found = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let page = view
            .query(&Filter {
                subject: Some(subject),
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        found = page.records.len();
    }
    println!(
        "one subject's records ({found}) from {log_size}: {:.3} ms (best of 5)",
        best * 1000.0
    );
    audit.shutdown();
    // The index database allows one process: let go of it for the child.
    drop((view, audit));
    restart_after_kill(&opts, log_size);

    let vkey = std::fs::read_to_string(dir.path().join("audit/checkpoint.vkey")).unwrap();
    let v = Verifier::parse(&vkey).unwrap();
    let t = Instant::now();
    let rep = verify::verify(&opts.dir, &v, |_| {}).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "verify: {:.0} records/s ({} records, {} checkpoints, {secs:.2}s)",
        rep.records as f64 / secs,
        rep.records,
        rep.checkpoints
    );
}
