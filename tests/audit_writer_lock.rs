//! One process writes an audit log (`audit/writer.lock`): a tool that reads
//! the whole log to move it elsewhere must not run while another process
//! still writes it, nor let a gateway start writing it halfway.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::process::Command;

use common::TestPki;
use ketenpoort::audit::{Audit, Decision, Entry, Options};

/// `storage copy` checks the admin socket for a running gateway; a gateway
/// that holds the log without it (starting up, before the socket is bound;
/// its socket file removed) must still keep the copy out: records written
/// after the copy read the log would be lost at the switch.
#[test]
fn storage_copy_is_refused_while_another_process_writes_the_log() {
    let pki = TestPki::new();
    let audit = Audit::open(Options::new(&pki.data_dir(), "test")).unwrap();
    let mut e = Entry::exchange("utrecht", "dtv", "ngo-kvk", "casusoverleg", "dtv/x");
    e.decision = Decision::Disclosed;
    audit.record_blocking(e).unwrap();
    // The destination is never reached: the copy stops before it connects.
    pki.write_config(
        "pg.toml",
        &std::fs::read_to_string(pki.config_file())
            .unwrap()
            .replace(
                "data_dir = \"../data\"",
                "data_dir = \"../data-pg\"\n[storage]\nbackend = \"postgres\"\nurl = \"host=/nonexistent port=1 user=x dbname=x\"",
            ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(["storage", "copy", "--config"])
        .arg(pki.config_file())
        .arg("--to-config")
        .arg(pki.config_file().with_file_name("pg.toml"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("held by another process"), "{text}");
    audit.shutdown();
}
