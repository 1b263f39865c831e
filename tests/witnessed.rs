#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

//! The gateway with witnesses, as partners meet it: three witnesses (the
//! crate's own `witness` server, each with its own key) run in this process
//! on 127.0.0.1, the gateway sends them its checkpoints over HTTP, and a
//! partner reads the published checkpoint, consistency proofs and hash
//! tiles over mutual TLS.
//!
//! The other half of issue 16 is checked against this one: a partner's
//! `audit monitor` follows the published checkpoints through the
//! consistency proofs served here, and `audit check-evidence` accepts the
//! evidence of a record with the witnesses' keys and the quorum.
//!
//! What is checked, each with something written here and not taken from
//! the crate: cosignatures (cosignature/v1 with ring alone), tree hashes and
//! tiles (RFC 6962 hashing with ring alone). The attacks: witnesses that go
//! away (one, then all of them, with fail-closed on), a witness entry whose
//! answers are another witness's, an https witness whose certificate the
//! gateway does not trust, and a gateway restarted on an older copy of its
//! data directory (a rollback).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::fixture::*;
use common::*;
use hyper::Method;
use ketenpoort::audit::checkpoint::{Signer, Verifier};
use ketenpoort::client::PartnerClient;
use ketenpoort::gateway::Gateway;
use ketenpoort::witness::{Cosigner, State, Witness, server};
use ring::digest::{SHA256, digest};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const ORIGIN: &str = "ketenpoort/test";
const CASUS: &[(&str, &str)] = &[("ketenpoort-purpose", "casusoverleg")];
const DOSSIER: &str = "/v1/pilots/proef/services/dtv/dossier/5550001234";
/// How long a poll waits before the test fails.
const DEADLINE: Duration = Duration::from_secs(120);

/// A witness in this process: its key and state live as long as the test,
/// its listener comes and goes.
struct TestWitness {
    name: String,
    vkey: String,
    addr: SocketAddr,
    witness: Arc<Witness>,
    running: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    /// Its TLS configuration when it serves https.
    tls: Option<Arc<rustls::ServerConfig>>,
    _dir: tempfile::TempDir,
}

impl TestWitness {
    /// A new witness of the log with verifier key `log_vkey`, listening.
    async fn start(name: &str, log_vkey: &str) -> Self {
        let (mut w, listener) = Self::bound(name, log_vkey).await;
        w.serve(listener);
        w
    }

    /// A new witness with its listener bound, not yet serving.
    async fn bound(name: &str, log_vkey: &str) -> (Self, TcpListener) {
        let dir = tempfile::tempdir().unwrap();
        let cosigner = Cosigner::generate(name, &dir.path().join("witness.key")).unwrap();
        let vkey = cosigner.vkey();
        let mut logs = BTreeMap::new();
        logs.insert(ORIGIN.to_string(), vec![Verifier::parse(log_vkey).unwrap()]);
        let state = State::open(&dir.path().join("state")).unwrap();
        let witness = Arc::new(Witness::new(cosigner, logs, state));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let w = Self {
            name: name.to_string(),
            vkey,
            addr,
            witness,
            running: None,
            tls: None,
            _dir: dir,
        };
        (w, listener)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (tx, rx) = oneshot::channel();
        let tls = self.tls.clone();
        let task = tokio::spawn(server::run(listener, self.witness.clone(), tls, async {
            let _ = rx.await;
        }));
        self.running = Some((tx, task));
    }

    /// Stops listening (the witness is down).
    async fn stop(&mut self) {
        if let Some((tx, task)) = self.running.take() {
            let _ = tx.send(());
            task.await.unwrap();
        }
    }

    /// Listens again on the same address, with the same key and state.
    async fn restart(&mut self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("rebinding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Its `[[witness]]` table, with the URL of the witness at `addr`.
    fn config(&self, addr: SocketAddr) -> String {
        self.config_url(&format!("http://{addr}/"))
    }

    fn config_url(&self, url: &str) -> String {
        format!(
            "[[witness]]\nname = \"{}\"\nurl = \"{url}\"\nvkey = \"{}\"\n",
            self.name, self.vkey
        )
    }
}

/// The gateway's checkpoint key, made before the gateway first starts so
/// the witnesses can be told its verifier key.
fn log_key(dir: &Path) -> (std::path::PathBuf, String) {
    let path = dir.join("checkpoint.ed25519");
    let vkey = Signer::load_or_create(&path, ORIGIN).unwrap().vkey();
    (path, vkey)
}

/// Three witnesses and a gateway that uses them with `settings` as its
/// `[witnesses]` table.
async fn setup(settings: &str) -> (Fixture, Vec<TestWitness>, tempfile::TempDir) {
    setup_with(settings, [0, 1, 2]).await
}

/// As [`setup`], with witness `i` configured at the address of witness
/// `urls[i]` (an impostor answers in another's name).
async fn setup_with(
    settings: &str,
    urls: [usize; 3],
) -> (Fixture, Vec<TestWitness>, tempfile::TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let (key, log_vkey) = log_key(keys.path());
    let mut witnesses = Vec::new();
    for name in ["witness-a.test", "witness-b.test", "witness-c.test"] {
        witnesses.push(TestWitness::start(name, &log_vkey).await);
    }
    let tables: String = witnesses
        .iter()
        .zip(urls)
        .map(|(w, at)| w.config(witnesses[at].addr))
        .collect();
    let settings = settings.to_string();
    let f = fixture_with(move |pki| {
        let signing = ketenpoort::audit::Options::new(&pki.data_dir(), "test").signing_key();
        std::fs::create_dir_all(signing.parent().unwrap()).unwrap();
        std::fs::copy(&key, &signing).unwrap();
        let cfg = std::fs::read_to_string(pki.config_file()).unwrap();
        pki.write_config(
            "ketenpoort.toml",
            &format!("{cfg}\n{tables}[witnesses]\n{settings}"),
        );
    })
    .await;
    assert_eq!(f.gw.gateway.audit.vkey(), log_vkey);
    (f, witnesses, keys)
}

/// `n` exchanges that are disclosed.
async fn exchanges(client: &PartnerClient, n: usize) {
    for _ in 0..n {
        let r = client
            .send(Method::GET, DOSSIER, CASUS, None)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
}

/// Signs a checkpoint of the log as it is now (what the writer does on its
/// own every few seconds); gives its size.
async fn sign_now(gw: &Gateway) -> u64 {
    gw.audit.checkpoint().await.unwrap().size
}

/// Waits until the published checkpoint has at least `size` records and
/// `cosignatures` cosignature lines.
async fn published(gw: &Gateway, size: u64, cosignatures: usize) -> (u64, String) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let p = gw.audit.view().published_checkpoint();
        if let Some((s, note)) = &p
            && *s >= size
            && note.matches("\u{2014} witness-").count() >= cosignatures
        {
            return p.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never published size {size} with {cosignatures} cosignatures; now {p:?}\n{}",
            gw.metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `done` holds; fails the test with the metrics at the deadline.
async fn until(gw: &Gateway, what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never: {what}\n{}",
            gw.metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let v: Vec<u8> = parts.concat();
    digest(&SHA256, &v).as_ref().try_into().unwrap()
}

/// The note's text: everything up to and including the blank line's newline.
fn text_of(note: &str) -> &str {
    &note[..note.rfind("\n\n").unwrap() + 1]
}

/// cosignature/v1 checked from the specification with ring alone: the
/// vkey's type byte and key ID, the line's name and key ID, the signed
/// message `cosignature/v1\ntime T\n<checkpoint text>`. Whether `note`
/// carries a valid cosignature by `vkey`.
fn cosigned_by(vkey: &str, note: &str) -> bool {
    use ring::signature::{ED25519, UnparsedPublicKey};
    let mut parts = vkey.splitn(3, '+');
    let (name, id, key) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let key = B64.decode(key).unwrap();
    assert_eq!((key.len(), key[0]), (33, 0x04));
    let key_id = &sha256(&[name.as_bytes(), b"\n", &key])[..4];
    assert_eq!(hex::encode(key_id), id);
    let text = text_of(note);
    note[text.len() + 1..].lines().any(|line| {
        let rest = line.strip_prefix("\u{2014} ").unwrap();
        let (line_name, sig) = rest.split_once(' ').unwrap();
        let sig = B64.decode(sig).unwrap();
        if line_name != name || &sig[..4] != key_id || sig.len() != 76 {
            return false;
        }
        let t = u64::from_be_bytes(sig[4..12].try_into().unwrap());
        let message = format!("cosignature/v1\ntime {t}\n{text}");
        UnparsedPublicKey::new(&ED25519, &key[1..])
            .verify(message.as_bytes(), &sig[12..])
            .is_ok()
    })
}

/// How many of the witnesses cosigned the note.
fn cosignatures(witnesses: &[TestWitness], note: &str) -> usize {
    witnesses
        .iter()
        .filter(|w| cosigned_by(&w.vkey, note))
        .count()
}

/// Size and root of a checkpoint note.
fn size_root(note: &str) -> (u64, Vec<u8>) {
    let mut lines = note.lines();
    assert_eq!(lines.next(), Some(ORIGIN));
    let size = lines.next().unwrap().parse().unwrap();
    (size, B64.decode(lines.next().unwrap()).unwrap())
}

/// RFC 6962 Merkle tree hash, written here with ring.
fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            sha256(&[&[1], &mth(&leaves[..k]), &mth(&leaves[k..])])
        }
    }
}

/// The leaf hashes of the first `n` records, hashed here from their bytes.
async fn leaves(gw: &Gateway, n: u64) -> Vec<[u8; 32]> {
    let view = gw.audit.view().clone();
    tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|i| sha256(&[&[0], &view.record(i).unwrap().encode()]))
            .collect()
    })
    .await
    .unwrap()
}

async fn get(client: &PartnerClient, path: &str) -> ketenpoort::client::Reply {
    client.send(Method::GET, path, &[], None).await.unwrap()
}

/// A metric line's value, by name prefix and label fragments.
fn metric(gw: &Gateway, name: &str, labels: &[&str]) -> f64 {
    gw.metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_see_the_checkpoint_a_quorum_cosigned_also_with_a_witness_down() {
    let (f, mut witnesses, _keys) = setup("quorum = 2\n").await;
    let gw = f.gw.gateway.clone();
    exchanges(&f.gemeente, 3).await;
    let size = sign_now(&gw).await;
    let (s1, note1) = published(&gw, size, 3).await;
    assert_eq!(s1, size);
    assert_eq!(cosignatures(&witnesses, &note1), 3, "{note1}");
    Verifier::parse(&gw.audit.vkey())
        .unwrap()
        .verify(&note1)
        .unwrap();

    // Over the partner API, as a signed note with the cosignature lines.
    let r = get(&f.ngo_pinned, "/v1/audit/checkpoint").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let served = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(size_root(&served).0 >= s1);
    assert!(cosignatures(&witnesses, &served) >= 2, "{served}");

    // A partner's monitor (cron) keeps this checkpoint as the one it saw.
    let wkeys: Vec<String> = witnesses.iter().map(|w| w.vkey.clone()).collect();
    let monitor = || {
        let d = f.pki.dir.path();
        std::fs::write(d.join("gemeente.crt"), &f.gemeente_cert.cert_pem).unwrap();
        std::fs::write(d.join("gemeente.key"), &f.gemeente_cert.key_pem).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ketenpoort"));
        cmd.args(["audit", "monitor", "--url"])
            .arg(format!("https://127.0.0.1:{}", f.gw.addr.port()))
            .arg("--cert")
            .arg(d.join("gemeente.crt"))
            .arg("--key")
            .arg(d.join("gemeente.key"))
            .arg("--cacert")
            .arg(d.join("certs/ca.crt"))
            .args(["--vkey", &gw.audit.vkey(), "--quorum", "2", "--state"])
            .arg(d.join("monitor.state"));
        for k in &wkeys {
            cmd.args(["--witness-vkey", k]);
        }
        cmd.output().unwrap()
    };
    let out = monitor();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One witness goes away: the quorum of two still publishes.
    witnesses[2].stop().await;
    let r = f
        .gemeente
        .send(Method::GET, DOSSIER, CASUS, None)
        .await
        .unwrap();
    let id = ids(&r)[0];
    exchanges(&f.gemeente, 1).await;
    let size = sign_now(&gw).await;
    let (s2, note2) = published(&gw, size, 2).await;
    assert_eq!(s2, size);
    assert_eq!(cosignatures(&witnesses[..2], &note2), 2, "{note2}");
    assert!(!cosigned_by(&witnesses[2].vkey, &note2));
    until(&gw, "witness-c.test failed", || {
        metric(
            &gw,
            "ketenpoort_witness_failures_total",
            &["witness=\"witness-c.test\""],
        ) >= 1.0
    })
    .await;
    assert!(
        metric(
            &gw,
            "ketenpoort_witness_cosignatures_total",
            &["witness-a.test"]
        ) >= 2.0
    );

    // `audit head` shows the same, read from the data directory.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["audit", "head", "--config"])
        .arg(f.pki.config_file())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = String::from_utf8(out.stdout).unwrap();
    assert_eq!(size_root(&head).0, s2);
    assert_eq!(cosignatures(&witnesses, &head), 2, "{head}");

    // The monitor proves the new checkpoint consistent with the one it kept.
    let out = monitor();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Evidence of one disclosure carries the cosigned checkpoint and checks
    // offline with the witnesses' keys and the quorum.
    let r = get(&f.gemeente, &format!("/v1/audit/records/{id}/evidence")).await;
    assert_eq!(r.status, 200);
    let evidence = std::str::from_utf8(&r.body).unwrap();
    let (_, cosigned) = evidence.split_once("\n\n").unwrap();
    assert_eq!(cosignatures(&witnesses, cosigned), 2, "{evidence}");
    let file = f.pki.dir.path().join("record.tlog-proof");
    std::fs::write(&file, evidence).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ketenpoort"));
    cmd.args(["audit", "check-evidence"]).arg(&file).args([
        "--vkey",
        &gw.audit.vkey(),
        "--quorum",
        "2",
    ]);
    for w in &witnesses {
        cmd.args(["--witness-vkey", &w.vkey]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The two published checkpoints are consistent, by the proof served.
    let (_, root1) = size_root(&note1);
    let (_, root2) = size_root(&note2);
    let r = get(
        &f.ngo_pinned,
        &format!("/v1/audit/proof/consistency?from={s1}&to={s2}"),
    )
    .await;
    assert_eq!(r.status, 200);
    let proof: Vec<Vec<u8>> = String::from_utf8(r.body.to_vec())
        .unwrap()
        .lines()
        .map(|l| B64.decode(l).unwrap())
        .collect();
    assert!(!proof.is_empty());
    ketenpoort::audit::merkle::verify_consistency(s1, s2, &proof, &root1, &root2).unwrap();
    let mut bad = proof.clone();
    bad[0][0] ^= 1;
    assert!(ketenpoort::audit::merkle::verify_consistency(s1, s2, &bad, &root1, &root2).is_err());
    // And the roots are the RFC 6962 hashes of the records, computed here.
    let all = leaves(&gw, s2).await;
    assert_eq!(mth(&all[..s1 as usize]).to_vec(), root1);
    assert_eq!(mth(&all).to_vec(), root2);
    for (q, status) in [
        (format!("from={s2}&to={s1}"), 404),
        ("from=1&to=999999".to_string(), 404),
        ("from=1".to_string(), 400),
        ("from=01&to=2".to_string(), 400),
    ] {
        let r = get(&f.ngo_pinned, &format!("/v1/audit/proof/consistency?{q}")).await;
        assert_eq!(r.status, status, "{q}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }

    // Only one witness left: it cosigns, but one is not the quorum, and
    // partners keep seeing the last checkpoint two witnesses cosigned.
    witnesses[1].stop().await;
    let before = metric(
        &gw,
        "ketenpoort_witness_cosignatures_total",
        &["witness-a.test"],
    );
    exchanges(&f.gemeente, 2).await;
    let size = sign_now(&gw).await;
    until(&gw, "witness-a cosigned the newest checkpoint", || {
        metric(
            &gw,
            "ketenpoort_witness_cosignatures_total",
            &["witness-a.test"],
        ) > before
    })
    .await;
    assert!(size > s2);
    assert_eq!(gw.audit.view().published_checkpoint().unwrap().0, s2);
    let r = get(&f.ngo_pinned, "/v1/audit/checkpoint").await;
    assert_eq!(size_root(std::str::from_utf8(&r.body).unwrap()).0, s2);
    until(&gw, "the missing quorum shows", || {
        metric(&gw, "ketenpoort_witness_quorum_met", &[]) == 0.0
    })
    .await;
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_whose_answers_do_not_verify_does_not_count() {
    // witness-b's table points at witness-a's server: it answers, but with
    // witness-a's cosignature, not one by the key configured for b.
    let (f, mut witnesses, _keys) = setup_with("quorum = 2\n", [0, 0, 2]).await;
    let gw = f.gw.gateway.clone();
    witnesses[2].stop().await;
    exchanges(&f.gemeente, 2).await;
    sign_now(&gw).await;
    until(&gw, "b's answer was refused", || {
        metric(
            &gw,
            "ketenpoort_witness_failures_total",
            &["witness-b.test", "reason=\"bad-cosignature\""],
        ) >= 1.0
    })
    .await;
    until(&gw, "witness-a cosigned", || {
        metric(
            &gw,
            "ketenpoort_witness_cosignatures_total",
            &["witness-a.test"],
        ) >= 1.0
    })
    .await;
    assert_eq!(
        metric(
            &gw,
            "ketenpoort_witness_cosignatures_total",
            &["witness-b.test"]
        ),
        0.0
    );
    assert_eq!(gw.audit.view().published_checkpoint(), None);
    let r = get(&f.ngo_pinned, "/v1/audit/checkpoint").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["type"], "urn:ketenpoort:problem:not-found");
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_witnesses_are_checked_against_the_trust_anchors() {
    use ketenpoort::pki::{Ca, LeafSpec};
    use ketenpoort::witness::config::WitnessTls;
    let keys = tempfile::tempdir().unwrap();
    let (key, log_vkey) = log_key(keys.path());
    let (mut trusted, l1) = TestWitness::bound("witness-a.test", &log_vkey).await;
    let (mut stranger, l2) = TestWitness::bound("witness-b.test", &log_vkey).await;
    let tables = format!(
        "{}{}",
        trusted.config_url(&format!("https://{}/", trusted.addr)),
        stranger.config_url(&format!("https://{}/", stranger.addr))
    );
    let certs = tempfile::tempdir().unwrap();
    let other_ca = Ca::generate("a CA the gateway does not trust").unwrap();
    let mut files = Vec::new();
    for (name, ca) in [("trusted", None), ("stranger", Some(&other_ca))] {
        let spec = LeafSpec::server("witness", &["localhost", "127.0.0.1"]);
        let issued = ca.map(|c| c.issue(&spec).unwrap());
        files.push((name, issued, spec));
    }
    let f = fixture_with(|pki| {
        let signing = ketenpoort::audit::Options::new(&pki.data_dir(), "test").signing_key();
        std::fs::create_dir_all(signing.parent().unwrap()).unwrap();
        std::fs::copy(&key, &signing).unwrap();
        for (name, issued, spec) in &mut files {
            // The trusted witness's certificate comes from the gateway's CA.
            let issued = issued.get_or_insert_with(|| pki.ca.issue(spec).unwrap());
            let d = certs.path();
            std::fs::write(d.join(format!("{name}.crt")), &issued.cert_pem).unwrap();
            std::fs::write(d.join(format!("{name}.key")), &issued.key_pem).unwrap();
        }
        let cfg = std::fs::read_to_string(pki.config_file()).unwrap();
        pki.write_config(
            "ketenpoort.toml",
            &format!("{cfg}\n{tables}[witnesses]\nquorum = 1\n"),
        );
    })
    .await;
    for (w, l, name) in [
        (&mut trusted, l1, "trusted"),
        (&mut stranger, l2, "stranger"),
    ] {
        w.tls = Some(
            server::tls_config(&WitnessTls {
                cert: certs.path().join(format!("{name}.crt")),
                key: certs.path().join(format!("{name}.key")),
            })
            .unwrap(),
        );
        w.serve(l);
    }
    let gw = f.gw.gateway.clone();
    exchanges(&f.gemeente, 1).await;
    let size = sign_now(&gw).await;
    let (_, note) = published(&gw, size, 1).await;
    assert!(cosigned_by(&trusted.vkey, &note));
    assert!(!cosigned_by(&stranger.vkey, &note));
    until(&gw, "the stranger's certificate was refused", || {
        metric(
            &gw,
            "ketenpoort_witness_failures_total",
            &["witness-b.test", "reason=\"unreachable\""],
        ) >= 1.0
    })
    .await;
    assert_eq!(
        metric(
            &gw,
            "ketenpoort_witness_cosignatures_total",
            &["witness-b.test"]
        ),
        0.0
    );
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_tiles_hold_the_hashes_of_the_records() {
    let f = fixture().await;
    let gw = f.gw.gateway.clone();
    // A new log without witnesses: its first checkpoint is there to fetch.
    let r = get(&f.ngo_kvk, "/v1/audit/checkpoint").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let first = std::str::from_utf8(&r.body).unwrap();
    Verifier::parse(&gw.audit.vkey())
        .unwrap()
        .verify(first)
        .unwrap();
    // Over one full tile of leaves: 300 records.
    while gw.audit.view().head().size < 300 {
        exchanges(&f.gemeente, 20).await;
    }
    let size = gw.audit.view().head().size;
    let all = leaves(&gw, size).await;
    let r = get(&f.ngo_kvk, "/v1/audit/tile/0/000").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.body.as_ref(), all[..256].concat().as_slice());
    let w = size - 256;
    let r = get(&f.ngo_kvk, &format!("/v1/audit/tile/0/001.p/{w}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_ref(), all[256..].concat().as_slice());
    // Level 1: the hash of each full tile below.
    let r = get(&f.ngo_kvk, "/v1/audit/tile/1/000.p/1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_ref(), mth(&all[..256]).as_slice());
    // What the log does not (yet) hold, other spellings, entries: 404.
    for path in [
        "/v1/audit/tile/0/001".to_string(),
        format!("/v1/audit/tile/0/001.p/{}", w + 1),
        "/v1/audit/tile/1/000".to_string(),
        "/v1/audit/tile/0/x000/000".to_string(),
        "/v1/audit/tile/entries/000".to_string(),
    ] {
        let r = get(&f.ngo_kvk, &path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    // Without witnesses the published checkpoint is the latest signed one.
    let cp = gw.audit.checkpoint().await.unwrap();
    let r = get(&f.ngo_kvk, "/v1/audit/checkpoint").await;
    assert_eq!(String::from_utf8(r.body.to_vec()).unwrap(), cp.note);
    let r = f
        .ngo_kvk
        .send(Method::POST, "/v1/audit/checkpoint", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    f.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_for_too_long_exchanges_are_refused_until_witnesses_return() {
    let (f, mut witnesses, _keys) = setup("quorum = 2\nfail_closed_after = \"1s\"\n").await;
    let gw = f.gw.gateway.clone();
    exchanges(&f.gemeente, 1).await;
    let size = sign_now(&gw).await;
    published(&gw, size, 2).await;
    for w in &mut witnesses {
        w.stop().await;
    }
    // New records and a new checkpoint find no witness; after the grace
    // period the gateway refuses, and records the refusal.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let refused = loop {
        let r = f
            .gemeente
            .send(Method::GET, DOSSIER, CASUS, None)
            .await
            .unwrap();
        if r.status == 503 {
            break r;
        }
        assert_eq!(r.status, 200);
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        sign_now(&gw).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        refused.json()["type"],
        "urn:ketenpoort:problem:log-not-witnessed"
    );
    let id = ids(&refused)[0];
    let rec = record(&f, id).await;
    assert_eq!(rec.entry.decision, ketenpoort::audit::Decision::Refused);
    assert_eq!(rec.entry.reason, "log-not-witnessed");
    assert!(
        metric(&gw, "ketenpoort_refusals_total", &["log-not-witnessed"]) >= 1.0,
        "{}",
        gw.metrics.render()
    );
    assert_eq!(metric(&gw, "ketenpoort_witness_quorum_met", &[]), 0.0);
    for w in &mut witnesses {
        w.restart().await;
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let r = f
            .gemeente
            .send(Method::GET, DOSSIER, CASUS, None)
            .await
            .unwrap();
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    f.gw.stop().await;
}

/// Copies a stopped gateway's data directory.
/// `ketenpoort audit monitor` as a partner runs it from cron, against the
/// gateway at `port`, keeping what it saw in `state`.
fn run_monitor(
    pki: &TestPki,
    port: u16,
    log_vkey: &str,
    witnesses: &[TestWitness],
    state: &Path,
) -> std::process::Output {
    let d = pki.dir.path();
    let cert = pki.oin_cert(GEMEENTE_OIN);
    std::fs::write(d.join("monitor.crt"), &cert.cert_pem).unwrap();
    std::fs::write(d.join("monitor.key"), &cert.key_pem).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ketenpoort"));
    cmd.args(["audit", "monitor", "--url"])
        .arg(format!("https://127.0.0.1:{port}"))
        .arg("--cert")
        .arg(d.join("monitor.crt"))
        .arg("--key")
        .arg(d.join("monitor.key"))
        .arg("--cacert")
        .arg(d.join("certs/ca.crt"))
        .args(["--vkey", log_vkey, "--quorum", "2", "--state"])
        .arg(state);
    for w in witnesses {
        cmd.args(["--witness-vkey", &w.vkey]);
    }
    cmd.output().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let kind = e.file_type().unwrap();
        if kind.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else if kind.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The gateway's config with its data directory at `data`, as another file.
fn config_with_data_dir(pki: &TestPki, name: &str, data: &Path) -> std::path::PathBuf {
    let cfg = std::fs::read_to_string(pki.config_file()).unwrap();
    let cfg = cfg.replace(
        "data_dir = \"../data\"",
        &format!("data_dir = \"{}\"", data.display()),
    );
    let file = pki.config_file().with_file_name(name);
    std::fs::write(&file, cfg).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_rolled_back_to_an_older_copy_of_its_data_is_refused_and_publishes_nothing_newer()
{
    let (f, witnesses, _keys) = setup("quorum = 2\n").await;
    let gw = f.gw.gateway.clone();
    exchanges(&f.gemeente, 2).await;
    let size = sign_now(&gw).await;
    let (p1, _) = published(&gw, size, 3).await;
    drop(gw);
    let Fixture {
        pki, gw: running, ..
    } = f;
    running.stop().await;
    let old = tempfile::tempdir().unwrap();
    copy_dir(&pki.data_dir(), old.path());

    // The gateway goes on (on its data, moved, without its cosigned file:
    // it learns where each witness stands from their 409 answers) and the
    // witnesses see more.
    let now = tempfile::tempdir().unwrap();
    copy_dir(&pki.data_dir(), now.path());
    std::fs::remove_file(now.path().join("audit/cosigned")).unwrap();
    let second = start_gateway(&config_with_data_dir(&pki, "now.toml", now.path()), false).await;
    let client = pki.client(second.addr, &pki.oin_cert(GEMEENTE_OIN));
    exchanges(&client, 4).await;
    let size = sign_now(&second.gateway).await;
    let (p2, _) = published(&second.gateway, size, 3).await;
    assert!(p2 > p1);
    // A partner's monitor saw the log at p2.
    let log_vkey = second.gateway.audit.vkey().to_string();
    let state = pki.dir.path().join("rollback-monitor.state");
    let out = run_monitor(&pki, second.addr.port(), &log_vkey, &witnesses, &state);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    second.stop().await;

    // Restarted on the older copy: its new history differs from what the
    // witnesses cosigned, and grows past it. Each witness answers 409 (it
    // holds a larger size), then 422 to the proof from there.
    let third = start_gateway(&config_with_data_dir(&pki, "old.toml", old.path()), false).await;
    let gw = third.gateway.clone();
    assert_eq!(gw.audit.view().published_checkpoint().unwrap().0, p1);
    let client = pki.client(third.addr, &pki.oin_cert(GEMEENTE_OIN));
    exchanges(&client, 8).await;
    let size = sign_now(&gw).await;
    assert!(size > p2);
    until(
        &gw,
        "every witness answered 422 to the rolled-back log",
        || {
            witnesses.iter().all(|w| {
                let name = format!("witness=\"{}\"", w.name);
                metric(
                    &gw,
                    "ketenpoort_witness_failures_total",
                    &[&name, "reason=\"inconsistent\""],
                ) >= 1.0
            })
        },
    )
    .await;
    assert_eq!(
        metric(&gw, "ketenpoort_witness_cosignatures_total", &[]),
        0.0
    );
    assert_eq!(gw.audit.view().published_checkpoint().unwrap().0, p1);
    let r = get(&client, "/v1/audit/checkpoint").await;
    assert_eq!(size_root(std::str::from_utf8(&r.body).unwrap()).0, p1);
    // The monitor that saw p2 now sees p1: a rollback, exit 3, with both
    // checkpoints printed as evidence.
    let out = run_monitor(&pki, third.addr.port(), &log_vkey, &witnesses, &state);
    let printed =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{printed}");
    assert!(
        printed.contains(&format!("\n{p1}\n")) && printed.contains(&format!("\n{p2}\n")),
        "{printed}"
    );
    third.stop().await;
}
