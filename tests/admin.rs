//! Command-line tools beside a running gateway: sled allows one process per
//! database, so `audit query` asks the gateway over its admin socket.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::process::Command;

use common::*;
use ketenpoort::audit::{Decision, Entry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_query_asks_the_running_gateway() {
    let pki = TestPki::new();
    let gw = pki.start_with_admin().await;
    let audit = gw.gateway.audit.clone();
    for i in 0..5u32 {
        let mut e = Entry::exchange(
            "utrecht",
            "dtv",
            "gemeente-utrecht",
            "casusoverleg",
            "dtv/vertrekdossier",
        );
        e.decision = Decision::Disclosed;
        e.subject = Some(
            audit
                .subject(
                    "utrecht",
                    if i % 2 == 0 {
                        "5550001111"
                    } else {
                        "5550002222"
                    },
                )
                .unwrap(),
        );
        audit.record(e).await.unwrap();
    }
    let cfg = pki.config_file();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
            .args([
                "audit",
                "query",
                "--subject",
                "5550001111",
                "--format",
                "jsonl",
                "--config",
            ])
            .arg(&cfg)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    // The look-up is recorded first, through the running gateway (record 5).
    assert_eq!(ids, vec![5, 4, 2, 0]);
    gw.stop().await;
}
