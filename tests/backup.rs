//! Back-up and restore, tested as the government baseline asks (BIO 8.13):
//! a backup taken through the admin socket while exchanges run restores
//! into a gateway whose log verifies and holds every record up to the
//! backup's checkpoint, with its mailboxes; a damaged backup, a non-empty
//! target and a backup without keys are refused.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::fixture::*;
use common::{NGO_KVK, TestPki, start_gateway};
use hyper::Method;
use ketenpoort::audit::store::{Options, View};
use serde_json::json;

fn ketenpoort(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A second configuration beside the first, on another data directory.
fn restored_config(pki: &TestPki) -> (PathBuf, PathBuf) {
    let cfg = std::fs::read_to_string(pki.config_file()).unwrap();
    let changed = cfg.replace("data_dir = \"../data\"", "data_dir = \"../restored\"");
    assert_ne!(cfg, changed, "the fixture's data_dir moved");
    pki.write_config("restored.toml", &changed);
    (
        pki.dir.path().join("config/restored.toml"),
        pki.dir.path().join("restored"),
    )
}

async fn backup(cfg: PathBuf, to: PathBuf, keys: bool) -> Output {
    tokio::task::spawn_blocking(move || {
        let to = to.to_str().unwrap().to_string();
        let mut args = vec!["backup", "--to", &to];
        if keys {
            args.push("--include-keys");
        }
        ketenpoort(&args, &cfg)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_into_a_gateway_whose_log_verifies() {
    let f = fixture_with_admin(|_| {}).await;
    let doc = json!({"vnummer": "5550001234", "onderwerp": "voor de backup"});
    let r = f
        .gemeente
        .send(
            Method::POST,
            "/v1/pilots/proef/services/ngo-kvk/bericht",
            &[("ketenpoort-purpose", "begeleiding")],
            Some(&doc),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{:?}", r.json());

    // Exchanges go on while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for c in 0..4u64 {
        let (client, stop, served) = (f.gemeente.clone(), stop.clone(), served.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let path = format!(
                    "/v1/pilots/proef/services/dtv/dossier/555{c:03}{:04}",
                    n % 10_000
                );
                let purpose = [("ketenpoort-purpose", "casusoverleg")];
                if let Ok(r) = client.send(Method::GET, &path, &purpose, None).await
                    && r.status == 200
                {
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = served.load(Ordering::Relaxed);
    let to = f.pki.dir.path().join("backup");
    let out = backup(f.pki.config_file(), to.clone(), true).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("warning: this backup holds the secret keys"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert!(
        served.load(Ordering::Relaxed) > before && before > 0,
        "no load around the backup"
    );
    f.gw.stop().await;

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(to.join("manifest.json")).unwrap()).unwrap();
    let size = manifest["size"].as_u64().unwrap();
    assert!(
        manifest["checkpoint"]
            .as_str()
            .unwrap()
            .contains(&format!("\n{size}\n"))
    );
    let original = View::open_readonly(&Options::new(&f.pki.data_dir(), "test")).unwrap();
    assert!(original.head().size > size, "the log grew after the backup");
    // No index, no caches in the backup: rebuilt on restore.
    assert!(!to.join("audit/index").exists() && !to.join("audit/cache").exists());

    let (cfg2, data2) = restored_config(&f.pki);
    let out = ketenpoort(&["restore", "--from", to.to_str().unwrap()], &cfg2);
    assert!(out.status.success(), "{}", text(&out));
    let out = ketenpoort(&["audit", "verify"], &cfg2);
    assert!(out.status.success(), "{}", text(&out));
    let notes = ketenpoort::audit::checkpoint::read_all(&data2.join("audit/checkpoints")).unwrap();
    assert_eq!(
        notes.last().map(String::as_str),
        manifest["checkpoint"].as_str(),
        "the backup's checkpoint is the restored log's latest"
    );
    // The restored gateway serves, with the mailbox and the signed covenant.
    let gw2 = start_gateway(&cfg2, true).await;
    let ngo = f.pki.client(gw2.addr, &f.pki.kvk_cert(NGO_KVK));
    let r = ngo.send(Method::GET, "/v1/inbox", &[], None).await.unwrap();
    assert_eq!(r.status, 200);
    let items = r.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "the mailbox came back");
    let gemeente = f.pki.client(gw2.addr, &f.gemeente_cert);
    let r = gemeente
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/dossier/5550009999",
            &[("ketenpoort-purpose", "casusoverleg")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.json());
    let id: u64 = r.header("ketenpoort-disclosure").unwrap().parse().unwrap();
    assert!(id >= size, "the restored log goes on from its checkpoint");
    // Its index was rebuilt: a query finds records from before the backup.
    let out = tokio::task::spawn_blocking({
        let cfg2 = cfg2.clone();
        move || {
            ketenpoort(
                &["audit", "query", "--pilot", "proef", "--format", "jsonl"],
                &cfg2,
            )
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let ids: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(ids.iter().any(|i| *i < size), "{ids:?}");
    gw2.stop().await;
    let restored = View::open_readonly(&Options::new(&data2, "test")).unwrap();
    assert!(restored.head().size > size);
    for id in 0..size {
        assert_eq!(
            restored.record(id).unwrap(),
            original.record(id).unwrap(),
            "record {id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_backup_a_full_target_and_missing_keys_are_refused() {
    let f = fixture_with_admin(|_| {}).await;
    let r = f
        .gemeente
        .send(
            Method::GET,
            "/v1/pilots/proef/services/dtv/dossier/5550001111",
            &[("ketenpoort-purpose", "casusoverleg")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let to = f.pki.dir.path().join("backup");
    let out = backup(f.pki.config_file(), to.clone(), false).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!to.join("keys").exists(), "secret keys only when asked");
    assert!(
        to.join("audit/checkpoint.vkey").exists(),
        "the public key always"
    );
    // A second backup into the same folder is refused.
    let out = backup(f.pki.config_file(), to.clone(), false).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    f.gw.stop().await;

    let (cfg2, data2) = restored_config(&f.pki);
    let from = to.to_str().unwrap();
    let keys = f.pki.data_dir().join("keys");
    let keys = keys.to_str().unwrap();

    // Without keys, and none named.
    let out = ketenpoort(&["restore", "--from", from], &cfg2);
    assert!(!out.status.success());
    assert!(text(&out).contains("--keys"), "{}", text(&out));

    // One byte of a segment changed: refused, the file named, nothing written.
    let seg = to.join("audit/segments/00000000000000000000.seg");
    let good = std::fs::read(&seg).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    std::fs::write(&seg, &bad).unwrap();
    let out = ketenpoort(&["restore", "--from", from, "--keys", keys], &cfg2);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("damaged backup: audit/segments/00000000000000000000.seg"),
        "{}",
        text(&out)
    );
    assert!(!data2.exists(), "nothing restored from a damaged backup");
    std::fs::write(&seg, &good).unwrap();

    // Attack: a crafted backup whose files lead out of it. A file replaced
    // by a link to a copy elsewhere (the same bytes, so every sum fits), a
    // folder replaced by a link, a link to a device that never ends: each
    // refused by name, nothing written; a restore reads only the backup.
    let refused_as = |what: &str| {
        let out = ketenpoort(&["restore", "--from", from, "--keys", keys], &cfg2);
        assert!(!out.status.success(), "{what}: restored");
        assert!(
            text(&out).contains(&format!("damaged backup: {what}")),
            "{}",
            text(&out)
        );
        assert!(!data2.join("audit").exists(), "{what}: something restored");
    };
    let vkey = to.join("audit/checkpoint.vkey");
    let outside = f.pki.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::rename(&vkey, outside.join("checkpoint.vkey")).unwrap();
    std::os::unix::fs::symlink(outside.join("checkpoint.vkey"), &vkey).unwrap();
    refused_as("audit/checkpoint.vkey");
    std::fs::remove_file(&vkey).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &vkey).unwrap();
    refused_as("audit/checkpoint.vkey");
    std::fs::remove_file(&vkey).unwrap();
    std::fs::rename(outside.join("checkpoint.vkey"), &vkey).unwrap();
    let segs = to.join("audit/segments");
    std::fs::rename(&segs, outside.join("segments")).unwrap();
    std::os::unix::fs::symlink(outside.join("segments"), &segs).unwrap();
    refused_as("audit/segments/00000000000000000000.seg");
    std::fs::remove_file(&segs).unwrap();
    std::fs::rename(outside.join("segments"), &segs).unwrap();
    // The stores' export left out of the manifest is not imported unchecked.
    let manifest = to.join("manifest.json");
    let kept = std::fs::read(&manifest).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&kept).unwrap();
    m["files"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["path"] != "stores/sled.jsonl");
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    refused_as("stores/sled.jsonl");
    std::fs::write(&manifest, &kept).unwrap();
    let _ = std::fs::remove_dir_all(&data2);

    // A data directory that is not empty.
    std::fs::create_dir_all(&data2).unwrap();
    std::fs::write(data2.join("something"), b"x").unwrap();
    let out = ketenpoort(&["restore", "--from", from, "--keys", keys], &cfg2);
    assert!(!out.status.success());
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    std::fs::remove_file(data2.join("something")).unwrap();

    // Keys that did not sign this log.
    let other = f.pki.dir.path().join("other-keys");
    std::fs::create_dir_all(&other).unwrap();
    ketenpoort::audit::checkpoint::Signer::load_or_create(
        &other.join("checkpoint.ed25519"),
        "ketenpoort/test",
    )
    .unwrap();
    let out = ketenpoort(
        &["restore", "--from", from, "--keys", other.to_str().unwrap()],
        &cfg2,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not the one that signed"),
        "{}",
        text(&out)
    );

    // The right keys, named: restored, and the log verifies.
    let out = ketenpoort(&["restore", "--from", from, "--keys", keys], &cfg2);
    assert!(out.status.success(), "{}", text(&out));
    let out = ketenpoort(&["audit", "verify"], &cfg2);
    assert!(out.status.success(), "{}", text(&out));
}
