//! Crash safety: load against the gateway (a process of its own, with a real
//! back-end), killed with SIGKILL at random moments and restarted, twenty
//! times. Afterwards the log verifies, and every disclosure id a client
//! received is in it, with the subject and the hash of exactly the bytes that
//! client got. Bounded: about half a minute.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fixture::*;
use hyper::Method;
use ketenpoort::audit::store::{Options, View};

const KILLS: usize = 20;

/// Disclosure id → (subject V-nummer, SHA-256 of the body received).
type Received = BTreeMap<u64, (String, [u8; 32])>;
const CLIENTS: usize = 8;

fn spawn(cfg: &std::path::Path, port: u16, console: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["serve", "--config"])
        .arg(cfg)
        .args([
            "--partners-addr",
            &format!("127.0.0.1:{port}"),
            "--console-addr",
            &format!("127.0.0.1:{console}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway starts")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A small deterministic generator (no extra crate for randomness in tests).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_delivered_disclosure() {
    let (pki, _seen) = prepare().await;
    let cfg = pki.config_file();
    let (port, console) = (free_port(), free_port());
    let gemeente_cert = pki.oin_cert(GEMEENTE_OIN);
    let client = pki.client(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        &gemeente_cert,
    );

    let received: Arc<Mutex<Received>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for c in 0..CLIENTS {
        let (client, received, stop) = (client.clone(), received.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let v = format!("555{:03}{:04}", c, n % 10_000);
                let path = format!("/v1/pilots/proef/services/dtv/dossier/{v}");
                match client
                    .send(
                        Method::GET,
                        &path,
                        &[("ketenpoort-purpose", "casusoverleg")],
                        None,
                    )
                    .await
                {
                    Ok(r) if r.status == 200 => {
                        let id: u64 = r.header("ketenpoort-disclosure").unwrap().parse().unwrap();
                        received
                            .lock()
                            .unwrap()
                            .insert(id, (v, ketenpoort::identity::sha256(&r.body)));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }));
    }

    let mut rng = Lcg(0x5eed);
    let mut restarts = Vec::new();
    let mut child = spawn(&cfg, port, console);
    for _ in 0..KILLS {
        // Wait until it serves, and time it.
        let started = Instant::now();
        loop {
            let r = client.send(Method::GET, "/v1/whoami", &[], None).await;
            if matches!(r, Ok(ref r) if r.status == 200) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the gateway did not come back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        restarts.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100 + rng.next(400))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        child = spawn(&cfg, port, console);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    // A clean stop, then check with the tools a privacy officer has.
    stop_gracefully(&mut child);

    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["audit", "verify", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let data = pki.data_dir();
    let view = View::open_readonly(&Options::new(&data, "test")).unwrap();
    let keys = ketenpoort::audit::store::SubjectKeys::new(&Options::new(&data, "test").keys_dir);
    let received = received.lock().unwrap().clone();
    assert!(
        received.len() > 100,
        "too little load: {} disclosures",
        received.len()
    );
    for (id, (v, body_hash)) in &received {
        let r = view
            .record(*id)
            .unwrap_or_else(|e| panic!("record {id}, received by a client, is missing: {e}"));
        let subject = r.entry.subject.unwrap();
        assert!(
            keys.pseudonyms(v).unwrap().contains(&subject),
            "record {id}"
        );
        assert_eq!(
            r.entry.payload_sha256,
            Some(*body_hash),
            "record {id}: another payload"
        );
    }
    restarts.sort();
    eprintln!(
        "crash test: {KILLS} SIGKILLs, {} disclosures received and found, {} records in the log, restart to serving: median {:?}, max {:?}",
        received.len(),
        view.head().size,
        restarts[restarts.len() / 2],
        restarts.last().unwrap()
    );
}

/// Ends the gateway with SIGTERM (graceful: final checkpoint) and waits.
fn stop_gracefully(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
