//! Retention over the real gateway and CLI, with the day set by the test
//! (`audit retention --as-of`), not by waiting: a month past its pilot's
//! retention can no longer be linked to the person (no CLI query, no console
//! search, no access report finds it), while the log itself stays whole
//! (`audit verify` passes, a proof made before still checks), a month of a
//! pilot whose retention has not passed is untouched, and the destruction
//! is itself a record.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::fixture::{self, Fixture, fixture_with_admin, ids};
use common::*;
use http_body_util::Full;
use hyper::Method;
use serde_json::{Value, json};

const PERSON: &str = "5550006001";

/// A second pilot with a longer retention, where the person is registered.
const TWEEDE: &str = r#"[pilot]
id = "tweede"
name = "LVV Tweede"
partners = ["gemeente", "ngo-kvk"]
[pilot.covenant]
id = "LVV-TWEEDE"
version = "1.0"
valid_from = 2019-01-01
valid_until = 2099-12-31

[purposes.aanmelding]
description = "Aanmelding bij de LVV"
legal_basis = "AVG art. 6(1)(e)"
retention_days = 730

[registration]
registrars = ["ngo-kvk"]
checkers = ["gemeente"]
purpose = "aanmelding"

[retention]
audit = "P10Y"
"#;

async fn setup() -> Fixture {
    fixture_with_admin(|pki| {
        let proef = pki.pilots_dir().join("proef.toml");
        let text = std::fs::read_to_string(&proef).unwrap();
        pki.write_config(
            "pilots/proef.toml",
            &(text + "\n[retention]\naudit = \"P1Y\"\n"),
        );
        pki.write_config("pilots/tweede.toml", TWEEDE);
        // The expired pilot of the fixture states a retention too, so the
        // look-ups' key follows the longest (P10Y) rather than forever.
        let oud = pki.pilots_dir().join("oud.toml");
        let text = std::fs::read_to_string(&oud).unwrap();
        pki.write_config(
            "pilots/oud.toml",
            &(text + "\n[retention]\naudit = \"P1Y\"\n"),
        );
    })
    .await
}

fn cli(f: &Fixture, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ketenpoort"))
        .args(args)
        .arg("--config")
        .arg(f.pki.config_file())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `audit query --subject` from the CLI (through the running gateway): the
/// ids of the person's records of `pilot`.
fn cli_found(f: &Fixture, pilot: &str) -> Vec<u64> {
    let (ok, out, err) = cli(
        f,
        &["audit", "query", "--subject", PERSON, "--format", "jsonl"],
        None,
    );
    assert!(ok, "{err}");
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["pilot"] == pilot && r["kind"] == "exchange")
        .filter_map(|r| r["id"].as_u64())
        .collect()
}

async fn console(f: &Fixture, path: &str, token: &str) -> Value {
    let req = hyper::Request::builder()
        .method(Method::GET)
        .uri(format!("https://localhost{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = request(
        f.gw.console,
        client_config(&f.pki.ca.cert_pem, None, &[b"http/1.1"]),
        req,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

/// The console's search by subject and the access report: ids of the
/// person's exchange records of `pilot`.
async fn console_found(f: &Fixture, token: &str, pilot: &str) -> (Vec<u64>, Vec<u64>) {
    let listed = console(f, &format!("/api/v1/disclosures?subject={PERSON}"), token).await;
    let search = listed["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["pilot"] == pilot && r["kind"] == "exchange")
        .filter_map(|r| r["id"].as_u64())
        .collect();
    let rep = console(f, &format!("/api/v1/subjects/{PERSON}/report"), token).await;
    let report = ["disclosed", "refused"]
        .iter()
        .flat_map(|k| rep[k].as_array().cloned().unwrap_or_default())
        .filter(|r| r["pilot"] == pilot)
        .filter_map(|r| r["record"].as_u64())
        .collect();
    (search, report)
}

async fn officer(f: &Fixture) -> String {
    let (ok, out, err) = cli(f, &["user", "add", "fg", "--role", "privacy-officer"], None);
    assert!(ok, "{err}");
    let token = out.trim().to_string();
    for _ in 0..100 {
        let req = hyper::Request::builder()
            .uri("https://localhost/api/v1/whoami")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = request(
            f.gw.console,
            client_config(&f.pki.ca.cert_pem, None, &[b"http/1.1"]),
            req,
        )
        .await
        .unwrap();
        if r.status == 200 {
            return token;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the console did not pick up the new officer");
}

fn this_month() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}", d.year(), d.month() as u8)
}

/// The day this month is past a retention of `years`: the first of the
/// month after it, `years` later.
fn past_retention(years: i32) -> String {
    let d = time::OffsetDateTime::now_utc().date();
    let (y, m) = if d.month() == time::Month::December {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() as u8 + 1)
    };
    format!("{:04}-{m:02}-01", y + years)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_past_retention_is_unlinked_and_the_log_stays_whole() {
    let f = setup().await;
    // Records about the person in "proef" (P1Y) and in "tweede" (P10Y).
    let r = f
        .gemeente
        .send(
            Method::GET,
            &format!("/v1/pilots/proef/services/dtv/dossier/{PERSON}"),
            &[("Ketenpoort-Purpose", "casusoverleg")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let proef_ids = ids(&r);
    let r = f
        .ngo_kvk
        .send(
            Method::PUT,
            &format!("/v1/pilots/tweede/registrations/{PERSON}"),
            &[("Ketenpoort-Purpose", "aanmelding")],
            Some(&json!({"since": "2026-01-05"})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{:?}", r.body);
    let tweede_ids = ids(&r);
    let token = officer(&f).await;
    assert_eq!(cli_found(&f, "proef").len(), proef_ids.len());
    assert_eq!(cli_found(&f, "tweede"), tweede_ids);
    let (search, report) = console_found(&f, &token, "proef").await;
    assert!(!search.is_empty() && !report.is_empty());

    // A proof of a proef record, made before (to a checkpoint signed now).
    let (ok, _, err) = cli(&f, &["audit", "head", "--now"], None);
    assert!(ok, "{err}");
    let (ok, proof, err) = cli(
        &f,
        &["audit", "prove", "--index", &proef_ids[0].to_string()],
        None,
    );
    assert!(ok, "{err}");

    // The day before the month passes its retention: nothing happens.
    let eve = time::Date::parse(
        &past_retention(1),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap()
    .previous_day()
    .unwrap()
    .to_string();
    let (ok, out, err) = cli(&f, &["audit", "retention", "--as-of", &eve], None);
    assert!(ok, "{err}");
    assert!(out.contains("no month is past retention"), "{out}");
    assert_eq!(cli_found(&f, "proef").len(), proef_ids.len());

    // A dry run names what would go, and changes nothing.
    let day = past_retention(1);
    let (ok, out, err) = cli(
        &f,
        &["audit", "retention", "--dry-run", "--as-of", &day],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("would unlink proef {}", this_month())),
        "{out}"
    );
    assert!(!out.contains("unlink tweede"), "{out}");
    assert_eq!(cli_found(&f, "proef").len(), proef_ids.len());

    // Done: proef's month is unlinked, tweede's (P10Y) untouched.
    let size_before = f.gw.gateway.audit.view().head().size;
    let (ok, out, err) = cli(&f, &["audit", "retention", "--as-of", &day], None);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("unlinked proef {}", this_month())),
        "{out}"
    );
    assert!(
        cli_found(&f, "proef").is_empty(),
        "CLI still finds proef records"
    );
    assert_eq!(cli_found(&f, "tweede"), tweede_ids);
    let (search, report) = console_found(&f, &token, "proef").await;
    assert!(search.is_empty(), "console search still finds {search:?}");
    assert!(report.is_empty(), "access report still shows {report:?}");
    let (search, _) = console_found(&f, &token, "tweede").await;
    assert!(!search.is_empty(), "tweede's month is within retention");

    // The destruction is a record: pilot, month, how many records.
    let head = f.gw.gateway.audit.view().head().size;
    let mut found = None;
    for id in size_before..head {
        let rec = fixture::record(&f, id).await;
        if rec.entry.kind == ketenpoort::audit::RecordKind::Retention && rec.entry.pilot == "proef"
        {
            found = Some(rec);
        }
    }
    let rec = found.expect("no retention record for proef");
    assert!(
        rec.entry
            .reason
            .starts_with(&format!("unlinked {}: ", this_month())),
        "{}",
        rec.entry.reason
    );
    let n: usize = rec
        .entry
        .reason
        .rsplit(": ")
        .next()
        .unwrap()
        .trim_end_matches(" records")
        .parse()
        .unwrap();
    assert!(n >= proef_ids.len(), "{n} records unlinked");
    assert!(rec.entry.subject.is_none());

    // The records themselves are there byte for byte; the log verifies and
    // the old proof still checks.
    let still = fixture::record(&f, proef_ids[0]).await;
    assert!(still.entry.subject.is_some());
    let (ok, _, _) = cli(&f, &["audit", "head", "--now"], None);
    assert!(ok);
    let (ok, out, err) = cli(&f, &["audit", "verify"], None);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = cli(&f, &["audit", "check-proof", "-"], Some(&proof));
    assert!(ok && !out.contains("invalid"), "{out}{err}");

    // The console shows where each pilot stands.
    let pilots = console(&f, "/api/v1/pilots", &token).await;
    let tweede = pilots["pilots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "tweede")
        .unwrap()
        .clone();
    assert_eq!(tweede["retention"]["audit"], "P10Y");
    assert_eq!(tweede["retention"]["oldest_linkable"], this_month());
    assert_eq!(tweede["retention"]["next_destruction"], past_retention(10));
    let proef = pilots["pilots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "proef")
        .unwrap()
        .clone();
    assert!(proef["retention"]["oldest_linkable"].is_null(), "{proef}");
    let data = f.pki.data_dir();
    f.gw.stop().await;

    // The index no longer files the unlinked records under their old
    // pseudonym; the records of the month within retention still are.
    let ix = ketenpoort::audit::index::Index::open(&data.join("audit/index")).unwrap();
    let by = ketenpoort::audit::index::By::Subject;
    let old = still.entry.subject.unwrap();
    assert_eq!(ix.ids(by, &old, 0, u64::MAX).count(), 0);
    let kept = fixture_record_subject(&data, tweede_ids[0]);
    assert_eq!(ix.ids(by, &kept, 0, u64::MAX).count(), tweede_ids.len());
}

/// The subject of a record, read from the log on disk.
fn fixture_record_subject(data: &std::path::Path, id: u64) -> [u8; 32] {
    let opts = ketenpoort::audit::Options::new(data, "test");
    let view = ketenpoort::audit::store::View::open_readonly(&opts).unwrap();
    view.record(id).unwrap().entry.subject.unwrap()
}

/// A log begun before keys were per month: its single legacy key is one
/// "month", the month of the newest record written before the first start
/// with per-month keys, destroyed when that month passes the longest
/// retention of any pilot, with every legacy record's posting; and it is
/// kept while any pilot states no retention.
#[test]
fn the_legacy_key_goes_as_one_month_after_the_longest_retention() {
    use ketenpoort::audit::retention::Retentions;
    use ketenpoort::audit::{Audit, Decision, Entry, Options};
    use ketenpoort::policy::retention::Retention;
    let d = tempfile::tempdir().unwrap();
    let opts = || Options::new(d.path(), "test");
    let write = |audit: &Audit, n: u64| {
        for _ in 0..n {
            let mut e = Entry::exchange("utrecht", "dtv", "gemeente", "casusoverleg", "dtv/x");
            e.decision = Decision::Disclosed;
            e.subject = Some(audit.subject("utrecht", PERSON).unwrap());
            audit.record_blocking(e).unwrap();
        }
    };
    let audit = Audit::open(opts()).unwrap();
    write(&audit, 4);
    audit.shutdown();
    drop(audit);
    // As an older gateway left it: one subject key for everything.
    let legacy = d.path().join("keys/audit-subject.key");
    std::fs::write(&legacy, [9u8; 32]).unwrap();
    let audit = Audit::open(opts()).unwrap();
    write(&audit, 2);
    assert_eq!(
        audit.subjects(PERSON).unwrap().len(),
        2,
        "legacy and this month"
    );

    let mut r: Retentions = [
        ("utrecht".to_string(), Retention::parse("P1Y")),
        ("groningen".to_string(), None),
    ]
    .into_iter()
    .collect();
    let far = time::macros::date!(2099 - 01 - 01);
    // A pilot without retention keeps the shared keys.
    let due = audit.retention_due(&r, far).unwrap();
    assert!(due.iter().all(|x| x.month != "legacy"), "{due:?}");
    r.insert("groningen".into(), Retention::parse("P3Y"));
    let due = audit.retention_due(&r, far).unwrap();
    let leg = due.iter().find(|x| x.month == "legacy").unwrap();
    assert_eq!(leg.records, 4, "the records before the marker");
    // Within the longest retention (P3Y) of the legacy month: kept.
    let soon = time::OffsetDateTime::now_utc().date() + time::Duration::days(800);
    let due = audit.retention_due(&r, soon).unwrap();
    assert!(due.iter().all(|x| x.month != "legacy"), "{due:?}");
    let done = audit.retention_run(&r, far).unwrap();
    assert!(done.iter().any(|x| x.month == "legacy"));
    assert!(!legacy.exists(), "the legacy key is destroyed");
    assert!(audit.subjects(PERSON).unwrap().is_empty());
    audit.shutdown();
}
