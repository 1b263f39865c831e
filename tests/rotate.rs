//! Rotating the log's checkpoint signing key (`ketenpoort audit rotate-key`,
//! issue 21), as operators and partners meet it: the gateway runs with its
//! admin socket, partners call it over mutual TLS, and the command-line
//! tools run as processes beside it.
//!
//! - records before, the rotation through the running gateway, records
//!   after: the announcing checkpoint carries the old and the new key's
//!   signatures, later ones the new key's alone; `audit verify` passes;
//!   a partner's `audit monitor`, given the old key, follows the rotation;
//!   evidence made before it still checks with the old key; the gateway
//!   restarts on the new key, and a rotation with no gateway running works
//!   too;
//! - the attack: the data directory in other hands, the log's key replaced
//!   by another. A key history that "announces" the stranger's key with its
//!   own signature alone stops the gateway from starting; with the history
//!   replaced too, the gateway serves checkpoints signed by the stranger's
//!   key only, and the monitor raises the alarm and keeps what it had.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::fixture::*;
use common::{TestPki, start_gateway};
use hyper::Method;
use ketenpoort::audit::checkpoint::{CheckpointError, Signer, Verifier};
use ketenpoort::audit::rotation::{KeyHistory, LogKey};
use ketenpoort::client::PartnerClient;
use ketenpoort::gateway::Gateway;

const ORIGIN: &str = "ketenpoort/test";
const CASUS: &[(&str, &str)] = &[("ketenpoort-purpose", "casusoverleg")];

/// Runs the binary with the deployment's configuration, off the runtime.
async fn ketenpoort(args: &[&str], config: &Path) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let config = config.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
            .args(&args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `ketenpoort audit monitor` as a partner runs it from cron: its own
/// certificate, the log's key it was given, its state file.
async fn monitor(pki: &TestPki, port: u16, vkey: &str, state: &Path) -> Output {
    let d = pki.dir.path();
    let cert = pki.oin_cert(GEMEENTE_OIN);
    std::fs::write(d.join("monitor.crt"), &cert.cert_pem).unwrap();
    std::fs::write(d.join("monitor.key"), &cert.key_pem).unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let (crt, key, ca) = (
        d.join("monitor.crt"),
        d.join("monitor.key"),
        d.join("certs/ca.crt"),
    );
    let s = |p: &Path| p.display().to_string();
    let args = [
        "audit",
        "monitor",
        "--url",
        &url,
        "--cert",
        &s(&crt),
        "--key",
        &s(&key),
        "--cacert",
        &s(&ca),
        "--vkey",
        vkey,
        "--state",
        &s(state),
    ];
    // `monitor` needs no configuration; the flag is harmless.
    ketenpoort(&args, &pki.config_file()).await
}

/// `n` disclosures; their record ids.
async fn exchanges(client: &PartnerClient, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..n {
        let path = format!("/v1/pilots/proef/services/dtv/dossier/555000{i:04}");
        let r = client.send(Method::GET, &path, CASUS, None).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        out.extend(ids(&r));
    }
    out
}

/// Has the gateway sign a checkpoint of the log as it is now.
async fn sign_now(gw: &Gateway) -> ketenpoort::audit::checkpoint::Checkpoint {
    gw.audit.checkpoint().await.unwrap()
}

async fn get_text(client: &PartnerClient, path: &str) -> String {
    let r = client.send(Method::GET, path, &[], None).await.unwrap();
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    String::from_utf8(r.body.to_vec()).unwrap()
}

/// What `ketenpoort serve` does at start: a socket left by the stopped
/// gateway is removed.
fn remove_socket(data: &Path) {
    let _ = std::fs::remove_file(ketenpoort::admin::socket_path(data));
}

fn keys_file(data: &Path) -> PathBuf {
    data.join("audit/checkpoint.keys")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_followed_by_verify_and_the_monitor_and_old_evidence_still_checks() {
    let f = fixture_with_admin(|_| {}).await;
    let cfg = f.pki.config_file();
    let data = f.pki.data_dir();
    let gw = f.gw.gateway.clone();
    let port = f.gw.addr.port();
    let old_vkey = gw.audit.vkey();
    let old = Verifier::parse(&old_vkey).unwrap();
    let state = f.pki.dir.path().join("monitor.state");

    // Records before; the partner's monitor starts from the old key.
    let before = exchanges(&f.gemeente, 3).await;
    sign_now(&gw).await;
    let out = monitor(&f.pki, port, &old_vkey, &state).await;
    assert!(out.status.success(), "{}", text(&out));
    // Evidence of a record from before the rotation.
    let evidence = get_text(
        &f.gemeente,
        &format!("/v1/audit/records/{}/evidence", before[0]),
    )
    .await;
    let evidence_file = f.pki.dir.path().join("before.tlog-proof");
    std::fs::write(&evidence_file, &evidence).unwrap();

    // The rotation, through the running gateway's admin socket.
    let out = ketenpoort(&["audit", "rotate-key"], &cfg).await;
    assert!(out.status.success(), "{}", text(&out));
    let new_vkey = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let new = Verifier::parse(&new_vkey).unwrap();
    assert_ne!(new_vkey, old_vkey);
    assert_eq!(
        gw.audit.vkey(),
        new_vkey,
        "the gateway signs with the new key"
    );
    assert!(text(&out).contains(&old_vkey), "{}", text(&out));
    let key_file = data.join("keys/checkpoint.ed25519");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the new key file is private");
    assert!(!data.join("keys/checkpoint.ed25519.new").exists());
    assert_eq!(
        std::fs::read_to_string(data.join("audit/checkpoint.vkey"))
            .unwrap()
            .trim(),
        new_vkey
    );

    // Partners read the history: the new key, announced by both keys.
    let doc: serde_json::Value =
        serde_json::from_str(&get_text(&f.gemeente, "/v1/audit/keys").await).unwrap();
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{doc}");
    assert_eq!(keys[0]["vkey"], old_vkey.as_str());
    assert_eq!(keys[1]["vkey"], new_vkey.as_str());
    let announcement = keys[1]["announcement"].as_str().unwrap();
    let by_old = old.verify(announcement).unwrap();
    let by_new = new.verify(announcement).unwrap();
    assert_eq!(by_old, by_new);
    assert_eq!(keys[1]["from_size"], by_old.size);
    assert!(by_old.size >= before.len() as u64);

    // Records after, signed by the new key alone; the partner API serves it.
    let after = exchanges(&f.gemeente, 3).await;
    assert!(after[0] >= by_old.size);
    let cp = sign_now(&gw).await;
    assert!(cp.size > by_old.size);
    assert!(matches!(
        old.verify(&cp.note),
        Err(CheckpointError::NoSignature(_))
    ));
    let served = get_text(&f.gemeente, "/v1/audit/checkpoint").await;
    assert!(new.verify(&served).unwrap().size > by_old.size);
    assert!(old.verify(&served).is_err());

    // The whole log verifies beside the running gateway: every checkpoint
    // by the key in force at its size.
    let out = ketenpoort(&["audit", "verify"], &cfg).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).starts_with("ok: "), "{}", text(&out));

    // The monitor, given the old key only, follows the rotation.
    let out = monitor(&f.pki, port, &old_vkey, &state).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("rotated at size {}", by_old.size)),
        "{}",
        text(&out)
    );
    let kept = std::fs::read_to_string(&state).unwrap();
    assert!(new.verify(&kept).unwrap().size > by_old.size);
    let adopted: KeyHistory =
        serde_json::from_slice(&std::fs::read(state.with_file_name("monitor.state.keys")).unwrap())
            .unwrap();
    assert_eq!(adopted.current_vkey(), new_vkey);
    // ... and on its next run trusts the new key by itself.
    exchanges(&f.gemeente, 1).await;
    sign_now(&gw).await;
    let out = monitor(&f.pki, port, &old_vkey, &state).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("consistent"), "{}", text(&out));
    // A cron line changed to the new key goes on from the same state.
    let out = monitor(&f.pki, port, &new_vkey, &state).await;
    assert!(out.status.success(), "{}", text(&out));

    // Evidence made before the rotation still checks with the old key.
    let file = evidence_file.display().to_string();
    let out = ketenpoort(
        &["audit", "check-evidence", &file, "--vkey", &old_vkey],
        &cfg,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    // Evidence made now proves an old record under the new key.
    let now = get_text(
        &f.gemeente,
        &format!("/v1/audit/records/{}/evidence", before[0]),
    )
    .await;
    let now_file = f.pki.dir.path().join("after.tlog-proof");
    std::fs::write(&now_file, &now).unwrap();
    let file = now_file.display().to_string();
    let out = ketenpoort(
        &["audit", "check-evidence", &file, "--vkey", &new_vkey],
        &cfg,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    drop(gw);
    f.gw.stop().await;

    // The gateway starts again on the new key.
    remove_socket(&data);
    let gw2 = start_gateway(&cfg, true).await;
    assert_eq!(gw2.gateway.audit.vkey(), new_vkey);
    gw2.stop().await;
    // In this process the stopped gateway's admin listener may linger until
    // its task is dropped (a real gateway's socket closes with its process):
    // the socket file goes, as after a process exit.
    remove_socket(&data);

    // With no gateway running the command opens the log itself.
    let out = ketenpoort(&["audit", "rotate-key"], &cfg).await;
    assert!(out.status.success(), "{}", text(&out));
    let third = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let history = KeyHistory::load(&data.join("audit")).unwrap().unwrap();
    assert_eq!(history.keys.len(), 3);
    assert_eq!(history.current_vkey(), third);
    let out = ketenpoort(&["audit", "verify"], &cfg).await;
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_signed_only_by_a_key_the_monitor_cannot_follow_is_an_alarm() {
    let f = fixture_with_admin(|_| {}).await;
    let cfg = f.pki.config_file();
    let data = f.pki.data_dir();
    let port = f.gw.addr.port();
    let old_vkey = f.gw.gateway.audit.vkey();
    let state = f.pki.dir.path().join("monitor.state");
    exchanges(&f.gemeente, 2).await;
    let cp = sign_now(&f.gw.gateway).await;
    let out = monitor(&f.pki, port, &old_vkey, &state).await;
    assert!(out.status.success(), "{}", text(&out));
    let kept = std::fs::read_to_string(&state).unwrap();
    f.gw.stop().await;

    // The data directory in other hands, without the log's key: a key of
    // the intruder's, "announced" with its own signature alone.
    let evil_dir = tempfile::tempdir().unwrap();
    let evil = Signer::load_or_create(&evil_dir.path().join("k"), ORIGIN).unwrap();
    let key_file = data.join("keys/checkpoint.ed25519");
    std::fs::copy(evil_dir.path().join("k"), &key_file).unwrap();
    let mut forged = KeyHistory::first(&old_vkey);
    forged.keys.push(LogKey {
        vkey: evil.vkey(),
        from_size: cp.size,
        announcement: Some(evil.sign(cp.size, &cp.root).note),
    });
    std::fs::write(
        keys_file(&data),
        serde_json::to_vec_pretty(&forged).unwrap(),
    )
    .unwrap();
    let refused = Gateway::load(&cfg).map(|_| ()).unwrap_err().to_string();
    assert!(refused.contains("key before it"), "{refused}");

    // With the history replaced by the intruder's key alone, the gateway
    // starts and signs with it.
    std::fs::write(
        keys_file(&data),
        serde_json::to_vec_pretty(&KeyHistory::first(&evil.vkey())).unwrap(),
    )
    .unwrap();
    remove_socket(&data);
    let gw = start_gateway(&cfg, true).await;
    let gemeente = f.pki.client(gw.addr, &f.gemeente_cert);
    exchanges(&gemeente, 2).await;
    let forged_cp = sign_now(&gw.gateway).await;
    assert!(
        Verifier::parse(&evil.vkey())
            .unwrap()
            .verify(&forged_cp.note)
            .is_ok()
    );

    // The monitor raises the alarm, keeps what it had and adopts nothing.
    let out = monitor(&f.pki, gw.addr.port(), &old_vkey, &state).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("not signed by the log's key"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&state).unwrap(), kept);
    assert!(!state.with_file_name("monitor.state.keys").exists());
    // The log's own check fails too: its old checkpoints are not the
    // intruder's key's.
    let out = ketenpoort(&["audit", "verify"], &cfg).await;
    assert!(!out.status.success(), "{}", text(&out));
    gw.stop().await;
}

/// A witness of the log in this process (the crate's own server): its key
/// and state in `dir` (kept across restarts), trusting `log_vkeys`.
fn serve_witness(
    dir: &Path,
    listener: tokio::net::TcpListener,
    log_vkeys: &[&str],
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    use ketenpoort::witness::{Cosigner, State, Witness, server};
    let key = dir.join("witness.key");
    let cosigner = if key.exists() {
        Cosigner::load(&key).unwrap()
    } else {
        Cosigner::generate("witness.test", &key).unwrap()
    };
    let mut logs = std::collections::BTreeMap::new();
    logs.insert(
        ORIGIN.to_string(),
        log_vkeys
            .iter()
            .map(|k| Verifier::parse(k).unwrap())
            .collect(),
    );
    let state = State::open(&dir.join("state")).unwrap();
    let witness = std::sync::Arc::new(Witness::new(cosigner, logs, state));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(server::run(listener, witness, None, async {
        let _ = rx.await;
    }));
    (tx, task)
}

/// Waits until the published checkpoint covers `size` records with the
/// witness's cosignature; gives its note.
async fn published(gw: &Gateway, size: u64) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some((s, note)) = gw.audit.view().published_checkpoint()
            && s >= size
            && note.contains("\u{2014} witness.test ")
        {
            return note;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never published size {size}\n{}",
            gw.metrics.render()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn witness_failures(gw: &Gateway, reason: &str) -> f64 {
    gw.metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("ketenpoort_witness_failures_total") && l.contains(reason))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witnessing_goes_on_after_a_rotation_once_the_witness_has_the_new_key() {
    // The log's key is made first, so the witness can be told its vkey.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("checkpoint.ed25519");
    let old_vkey = Signer::load_or_create(&key, ORIGIN).unwrap().vkey();
    let wdir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let waddr = listener.local_addr().unwrap();
    let (wstop, wtask) = serve_witness(wdir.path(), listener, &[&old_vkey]);
    let wvkey = ketenpoort::witness::Cosigner::load(&wdir.path().join("witness.key"))
        .unwrap()
        .vkey();
    let f = fixture_with_admin(move |pki| {
        let signing = ketenpoort::audit::Options::new(&pki.data_dir(), "test").signing_key();
        std::fs::create_dir_all(signing.parent().unwrap()).unwrap();
        std::fs::copy(&key, &signing).unwrap();
        let cfg = std::fs::read_to_string(pki.config_file()).unwrap();
        pki.write_config(
            "ketenpoort.toml",
            &format!(
                "{cfg}\n[[witness]]\nname = \"witness.test\"\nurl = \"http://{waddr}/\"\nvkey = \"{wvkey}\"\n[witnesses]\nquorum = 1\n"
            ),
        );
    })
    .await;
    let gw = f.gw.gateway.clone();
    exchanges(&f.gemeente, 2).await;
    let before = sign_now(&gw).await;
    published(&gw, before.size).await;

    let out = ketenpoort(&["audit", "rotate-key"], &f.pki.config_file()).await;
    assert!(out.status.success(), "{}", text(&out));
    let new_vkey = String::from_utf8_lossy(&out.stdout).trim().to_string();

    // The witness knows the old key only: it refuses what the new key alone
    // signed, and partners go on seeing the older checkpoint.
    exchanges(&f.gemeente, 2).await;
    let after = sign_now(&gw).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while witness_failures(&gw, "forbidden") < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            gw.metrics.render()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let shown = gw.audit.view().published_checkpoint().unwrap();
    assert!(shown.0 < after.size);

    // Its operator adds the new key (a second [[log]]) and restarts it: the
    // checkpoints the new key signs are cosigned and published again.
    let _ = wstop.send(());
    wtask.await.unwrap();
    let listener = loop {
        match tokio::net::TcpListener::bind(waddr).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    };
    let (wstop, wtask) = serve_witness(wdir.path(), listener, &[&old_vkey, &new_vkey]);
    exchanges(&f.gemeente, 1).await;
    let last = sign_now(&gw).await;
    let note = published(&gw, last.size).await;
    let cp = Verifier::parse(&new_vkey).unwrap().verify(&note).unwrap();
    assert!(cp.size >= last.size);
    let served = get_text(&f.gemeente, "/v1/audit/checkpoint").await;
    assert_eq!(served, note);
    drop(gw);
    f.gw.stop().await;
    let _ = wstop.send(());
    wtask.await.unwrap();
}

#[test]
fn a_rotation_cut_short_by_a_crash_is_finished_or_dropped_at_the_next_start() {
    use ketenpoort::audit::{Audit, Entry, Options, verify};
    let d = tempfile::tempdir().unwrap();
    let opts = Options::new(d.path(), "test");
    let key = opts.signing_key();
    let next = key.with_file_name("checkpoint.ed25519.new");
    let audit = Audit::open(opts.clone()).unwrap();
    for i in 0..5u8 {
        audit
            .record_blocking(Entry::lookup("cli:test", "rotate", [i; 32]))
            .unwrap();
    }
    let old_key = std::fs::read(&key).unwrap();
    let rotated = audit.rotate_key_blocking().unwrap();
    assert_eq!(rotated.size, 5);
    audit.shutdown();
    drop(audit);

    // Cut after the history named the new key, before the key file was
    // replaced: the next start finishes the rotation.
    std::fs::rename(&key, &next).unwrap();
    std::fs::write(&key, &old_key).unwrap();
    let audit = Audit::open(opts.clone()).unwrap();
    assert_eq!(audit.vkey(), rotated.new_vkey);
    assert!(!next.exists());
    audit.shutdown();
    drop(audit);

    // Cut before the history named it (an announcement may already be in
    // the checkpoints file): the old key stays, the stray key is removed.
    let stray = Signer::create(&next, ORIGIN).unwrap();
    let cp = ketenpoort::audit::store::View::open_readonly(&opts)
        .unwrap()
        .latest_checkpoint()
        .unwrap();
    let current = Signer::load(&key, ORIGIN).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(opts.checkpoints())
        .unwrap();
    ketenpoort::audit::checkpoint::append(
        &mut f,
        &ketenpoort::audit::checkpoint::sign_together(&[&current, &stray], cp.size, &cp.root),
    )
    .unwrap();
    let audit = Audit::open(opts.clone()).unwrap();
    assert_eq!(audit.vkey(), rotated.new_vkey);
    assert!(!next.exists());
    audit.shutdown();
    drop(audit);
    // Cut while the new key was being written: half a key file.
    std::fs::write(&next, &old_key[..old_key.len() / 2]).unwrap();
    let audit = Audit::open(opts.clone()).unwrap();
    assert_eq!(audit.vkey(), rotated.new_vkey);
    assert!(!next.exists());
    audit
        .record_blocking(Entry::lookup("cli:test", "rotate", [9; 32]))
        .unwrap();
    audit.shutdown();
    let history = KeyHistory::read(&opts.dir).unwrap();
    assert_eq!(history.keys.len(), 2);
    let rep = verify::verify_keys(&opts.dir, &history, |_| {}).unwrap();
    assert_eq!(rep.records, 6);
    // The old key alone no longer checks this log: its later checkpoints
    // are the new key's.
    let old = Verifier::parse(&rotated.old_vkey).unwrap();
    assert!(verify::verify(&opts.dir, &old, |_| {}).is_err());
}
