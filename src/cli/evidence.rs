//! `ketenpoort audit monitor`, `audit evidence` and `audit check-evidence`:
//! what a partner runs to watch the log and to prove one disclosure.
//!
//! `monitor` and `check-evidence` need no gateway configuration: a partner
//! runs them on its own machine with the log's verifier key (and its
//! witnesses' keys). `evidence` reads the data directory, read-only, like
//! `audit prove`, so it works beside a running gateway.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::records::{QueryFormat, render};
use super::report::Report;
use crate::audit::Options;
use crate::audit::store::View;
use crate::evidence::{self, Trust};
use crate::monitor::{Monitor, Outcome};

// The flags of `audit monitor`. No `///` on the struct: clap would take it as
// the subcommand's help instead of the variant's.
#[derive(Args)]
#[allow(missing_docs)]
pub struct MonitorArgs {
    /// The gateway's partner API, e.g. https://gateway.example:8443.
    #[arg(long)]
    pub url: String,
    /// Your organisation's client certificate (PEM).
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// The CA certificate(s) the gateway's certificate chains to (PEM).
    #[arg(long)]
    pub cacert: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// The file where the monitor keeps the last checkpoint it accepted.
    #[arg(long)]
    pub state: PathBuf,
}

// The keys that say who to trust, shared by `monitor` and `check-evidence`.
#[derive(Args)]
#[allow(missing_docs)]
pub struct KeyArgs {
    /// The log's checkpoint verifier key (name+id+key), or a file holding it.
    #[arg(long)]
    pub vkey: String,
    /// A witness's verifier key, or a file holding it; repeat for each witness.
    #[arg(long = "witness-vkey")]
    pub witness_vkey: Vec<String>,
    /// Valid witness cosignatures needed (default: every witness given).
    #[arg(long)]
    pub quorum: Option<usize>,
}

// The flags of `audit check-evidence`.
#[derive(Args)]
#[allow(missing_docs)]
pub struct CheckEvidenceArgs {
    /// The evidence file (.tlog-proof), or - for standard input.
    pub file: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// How to print the record.
    #[arg(long, value_enum, default_value = "table")]
    pub format: QueryFormat,
}

/// A key given on the command line: the key itself, or a file holding it.
fn key_text(arg: &str) -> Result<String> {
    let path = Path::new(arg);
    if path.is_file() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(text.trim().to_string())
    } else {
        Ok(arg.trim().to_string())
    }
}

fn trust(keys: &KeyArgs) -> Result<Trust> {
    let witnesses = keys
        .witness_vkey
        .iter()
        .map(|k| key_text(k))
        .collect::<Result<Vec<_>>>()?;
    Ok(Trust::new(&key_text(&keys.vkey)?, &witnesses, keys.quorum)?)
}

/// `audit monitor`: never an `Err`, since main would exit 1; a failure is
/// exit 2 and an inconsistent log exit 3, with the reason.
pub fn monitor(args: MonitorArgs) -> Report {
    let (trust, vkey) = match trust(&args.keys).and_then(|t| Ok((t, key_text(&args.keys.vkey)?))) {
        Ok(t) => t,
        Err(e) => return Report::new().err(format!("FAILED: {e:#}\n")).exit(2),
    };
    let m = Monitor {
        vkey,
        url: args.url,
        cert: args.cert,
        key: args.key,
        cacert: args.cacert,
        trust,
        state: args.state,
    };
    let outcome = m.run();
    let code = outcome.code();
    match outcome {
        Outcome::Good(text) => Report::new().out(text),
        Outcome::Inconsistent(text) => Report::new().out(text).exit(code),
        Outcome::Failed(text) => Report::new().err(format!("FAILED: {text}\n")).exit(code),
    }
}

/// `audit evidence`: the proof file of one record, to standard output or a file.
pub fn make(opts: &Options, id: u64, out: Option<&Path>) -> Result<Report> {
    let view = View::open_readonly(opts)?;
    let text = evidence::make(&view, id, None)?;
    match out {
        None => Ok(Report::new().out(text)),
        Some(path) => {
            crate::datadir::write_atomic(path, text.as_bytes(), 0o600)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(Report::new().err(format!(
                "evidence of record {id} written to {}\n",
                path.display()
            )))
        }
    }
}

/// `audit check-evidence`: the record on standard output with "valid: ..."
/// on standard error, or "invalid: why" on standard error and exit 1.
pub fn check(args: CheckEvidenceArgs) -> Report {
    let invalid = |why: String| Report::new().err(format!("invalid: {why}\n")).failed();
    let trust = match trust(&args.keys) {
        Ok(t) => t,
        Err(e) => return invalid(format!("{e:#}")),
    };
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read(&args.file).map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => return invalid(format!("cannot read {}: {e}", args.file.display())),
    };
    let v = match evidence::check(&text, &trust) {
        Ok(v) => v,
        Err(e) => return invalid(e.to_string()),
    };
    let by = if v.cosigners.is_empty() {
        "no witness cosignatures asked for".to_string()
    } else {
        format!(
            "cosigned by {} (quorum {})",
            v.cosigners.join(", "),
            trust.quorum()
        )
    };
    let head = format!(
        "valid: record {} is entry {} of the log {} of {} records, signed by the log, {by}\n",
        v.record.id, v.record.id, v.checkpoint.origin, v.checkpoint.size
    );
    match render(std::slice::from_ref(&v.record), args.format) {
        Ok(rec) => Report::new().err(head).out(rec),
        Err(e) => invalid(e.to_string()),
    }
}
