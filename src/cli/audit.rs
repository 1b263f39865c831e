//! `ketenpoort audit`: the log as a privacy officer or a partner checks it.
//!
//! Most subcommands read the data directory directly, read-only, so they work
//! beside a running gateway and on a copy of the log; `head --now` and `query`
//! go through the gateway's admin socket when one listens (see `admin`).
//! `check-proof`, `check-evidence` and `monitor` need nothing of the gateway
//! at all: a partner runs them on its own machine (see `evidence`).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::evidence::{self, CheckEvidenceArgs, MonitorArgs};
use super::records::{QueryFormat, render};
use super::report::Report;
use crate::audit::rotation::KeyHistory;
use crate::audit::{self, Options, checkpoint::Verifier, export, proof};
use crate::config::GatewayConfig;

#[derive(Subcommand)]
#[allow(missing_docs)]
pub enum AuditCommand {
    /// Print the published checkpoint (with its witness cosignatures when
    /// witnesses are configured) and the key that verifies it.
    Head {
        /// Ask the running gateway to sign a checkpoint of the log as it is now.
        #[arg(long)]
        now: bool,
    },
    /// Re-read every record, rebuild the tree, check every checkpoint; exit 1
    /// naming the first bad record.
    Verify,
    /// Print an inclusion proof (--index N [--size M]) or a consistency proof
    /// (--from N --to M), in the transparency-dev JSON format.
    Prove {
        /// Record index for an inclusion proof.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        index: Option<u64>,
        /// Tree size of the inclusion proof (default: the latest checkpoint's).
        #[arg(long, requires = "index")]
        size: Option<u64>,
        /// Older tree size of a consistency proof.
        #[arg(long, requires = "to")]
        from: Option<u64>,
        /// Newer tree size of a consistency proof.
        #[arg(long, requires = "from")]
        to: Option<u64>,
    },
    /// Check a proof (JSON file, or - for standard input); exit 0 valid, 1 not.
    /// Needs no data directory.
    CheckProof {
        /// The proof.
        file: PathBuf,
    },
    /// Find records through the indexes, newest first.
    Query(QueryArgs),
    /// Write the evidence of one disclosure: a c2sp.org/tlog-proof@v1 file
    /// (.tlog-proof) with the record, its inclusion proof and the published
    /// checkpoint with its cosignatures.
    Evidence {
        /// The record id.
        #[arg(long)]
        id: u64,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check an evidence file offline and print its record; exit 0 valid, 1
    /// not. Needs no data directory.
    CheckEvidence(CheckEvidenceArgs),
    /// Check the gateway's published checkpoint against the last one seen:
    /// exit 0 all well, 3 the log is inconsistent (rollback or fork; both
    /// checkpoints are printed), 2 any other failure. For cron; needs no data
    /// directory.
    Monitor(MonitorArgs),
    /// Destroy the subject keys of months past each pilot's audit retention
    /// (`[retention] audit`), so their records can no longer be linked to a
    /// person; the records stay and every proof still holds. Each destruction
    /// is recorded. The running gateway does this daily.
    Retention {
        /// Show what would be destroyed, destroy nothing.
        #[arg(long)]
        dry_run: bool,
        /// As if today were this day (YYYY-MM-DD), for planning and tests.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Replace the checkpoint signing key: the log as it is now is signed
    /// by the old and the new key together, so monitors and witnesses that
    /// trust the old key can follow; the new key alone signs from then on.
    /// Through the running gateway's admin socket, or on the data directory
    /// when no gateway runs.
    RotateKey,
    /// Write every record, streamed.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: export::Format,
    },
}

// The flags of `audit query`. No `///` on the struct: clap would take it as
// the subcommand's help instead of the variant's.
#[derive(Args)]
#[allow(missing_docs)]
pub struct QueryArgs {
    /// V-nummer of the data subject (pseudonymised before the look-up).
    #[arg(long)]
    pub subject: Option<String>,
    /// Partner id, as sender or recipient.
    #[arg(long)]
    pub partner: Option<String>,
    /// Pilot id.
    #[arg(long)]
    pub pilot: Option<String>,
    /// Purpose id.
    #[arg(long)]
    pub purpose: Option<String>,
    /// From (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Until (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// disclosed or refused.
    #[arg(long)]
    pub decision: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: QueryFormat,
}

/// Runs an `audit` subcommand.
pub fn run(config_file: &Path, command: AuditCommand) -> Result<Report> {
    let command = match command {
        AuditCommand::CheckProof { file } => return Ok(check_proof(&file)),
        AuditCommand::CheckEvidence(args) => return Ok(evidence::check(args)),
        AuditCommand::Monitor(args) => return Ok(evidence::monitor(args)),
        other => other,
    };
    let config = GatewayConfig::load(config_file)?;
    let opts = Options::of(&config);
    // On PostgreSQL the data directory holds no log: those commands that
    // read files read the database instead (`storage`).
    let shared = matches!(config.storage, crate::config::Storage::Postgres(_));
    if !shared && !opts.dir.join("segments").is_dir() {
        anyhow::bail!(
            "no audit log in {} yet: the gateway makes it when it first starts",
            opts.dir.display()
        );
    }
    match command {
        // Answered above, before a configuration was needed.
        AuditCommand::CheckProof { file } => Ok(check_proof(&file)),
        AuditCommand::CheckEvidence(args) => Ok(evidence::check(args)),
        AuditCommand::Monitor(args) => Ok(evidence::monitor(args)),
        AuditCommand::Evidence { id, out } => evidence::make(&opts, id, out.as_deref()),
        AuditCommand::Head { now: true } => {
            Ok(Report::new().out(crate::admin::checkpoint_now(&config)?))
        }
        AuditCommand::Head { now: false } if shared => super::storage::head(&opts),
        AuditCommand::Head { now: false } => head(&config, &opts),
        AuditCommand::Verify if shared => super::storage::verify(&opts),
        AuditCommand::Verify => verify(&opts),
        AuditCommand::Prove {
            index,
            size,
            from,
            to,
        } => prove(&opts, index, size, from, to),
        AuditCommand::Query(q) => query(&config, q),
        AuditCommand::Retention { dry_run, as_of } => retention(&config, dry_run, as_of),
        AuditCommand::RotateKey => rotate_key(&config),
        AuditCommand::Export { format } if shared => super::storage::export(&opts, format),
        AuditCommand::Export { format } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let n = export::export(&opts.dir, format, &mut out).map_err(anyhow::Error::msg)?;
            out.flush()?;
            Ok(Report::new().err(format!("{n} records exported\n")))
        }
    }
}

/// `audit retention`: what is (or would be) unlinked, and where each pilot
/// stands.
fn retention(config: &GatewayConfig, dry_run: bool, as_of: Option<String>) -> Result<Report> {
    let as_of = match as_of {
        Some(d) => crate::policy::consent::parse_day(&d)
            .with_context(|| format!("--as-of {d}: give a day as YYYY-MM-DD"))?,
        None => time::OffsetDateTime::now_utc().date(),
    };
    let policy = crate::policy::PolicySet::load(&config.partners_file, &config.pilots_dir)?;
    let v = crate::admin::retention(config, &policy, as_of, dry_run)?;
    let mut out = String::new();
    let verb = if dry_run { "would unlink" } else { "unlinked" };
    let due = v["due"].as_array().cloned().unwrap_or_default();
    if due.is_empty() {
        writeln!(out, "as of {as_of}: no month is past retention")?;
    }
    for d in &due {
        let scope = d["scope"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("(all pilots)");
        writeln!(
            out,
            "{verb} {scope} {}: {} records (past retention since {})",
            d["month"].as_str().unwrap_or(""),
            d["records"],
            d["due_since"].as_str().unwrap_or("")
        )?;
    }
    for p in v["pilots"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "pilot {}: retention {}, oldest linkable month {}, next destruction {}",
            p["pilot"].as_str().unwrap_or(""),
            p["retention"].as_str().unwrap_or("not stated"),
            p["oldest_linkable"].as_str().unwrap_or("none"),
            p["next_destruction"].as_str().unwrap_or("none"),
        )?;
    }
    Ok(Report::new().out(out))
}

/// `audit rotate-key`: the new key on standard output (what operators hand
/// to monitors and witnesses), the rest on standard error.
fn rotate_key(config: &GatewayConfig) -> Result<Report> {
    let r = crate::admin::rotate_key(config)?;
    Ok(Report::new().out(format!("{}\n", r.new_vkey)).err(format!(
        "checkpoint key rotated at tree size {}\n\
         old verifier key (still checks the checkpoints up to size {}): {}\n\
         new verifier key (signs from size {} on):                     {}\n\
         announced in this checkpoint, signed by both:\n{}\n\
         Give the new verifier key to the witnesses (a second [[log]] with it, \
         docs/witness.md); monitors follow by themselves (docs/operations.md).\n",
        r.size, r.size, r.old_vkey, r.size, r.new_vkey, r.announcement
    )))
}

/// "valid" or "invalid: why"; never an error, because the exit status is the
/// answer a partner's script reads.
fn check_proof(file: &Path) -> Report {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).unwrap_or_default()
    } else {
        match std::fs::read(file) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                return Report::new()
                    .err(format!("invalid: cannot read {}: {e}\n", file.display()))
                    .failed();
            }
        }
    };
    match proof::check(&text) {
        Ok(msg) => Report::new().out(format!("{msg}\n")),
        Err(msg) => Report::new().out(format!("invalid: {msg}\n")).failed(),
    }
}

/// The key that checks this log's checkpoints, as the gateway wrote it.
fn verifier(opts: &Options) -> Result<Verifier> {
    let file = opts.dir.join("checkpoint.vkey");
    let vkey =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    Ok(Verifier::parse(&vkey)?)
}

/// The published checkpoint: with witnesses configured, the newest one with
/// its quorum of cosignatures, cosignature lines included; without, the
/// newest checkpoint whose signature holds (one that does not is skipped,
/// not shown as the head).
fn head(config: &GatewayConfig, opts: &Options) -> Result<Report> {
    let v = verifier(opts)?;
    if !config.witnesses.list.is_empty() {
        let vkey = std::fs::read_to_string(opts.dir.join("checkpoint.vkey"))?;
        let keys = KeyHistory::read(&opts.dir)?;
        let (_, note) =
            crate::witnessing::published_on_disk(config, &keys)?.with_context(|| {
                format!(
                    "no checkpoint has reached its quorum of {} witness cosignatures yet",
                    config.witnesses.quorum
                )
            })?;
        return Ok(Report::new()
            .out(note)
            .err(format!("verifier key: {}\n", vkey.trim())));
    }
    let notes = audit::checkpoint::read_all(&opts.checkpoints())?;
    let cp = notes
        .iter()
        .rev()
        .find_map(|n| v.verify(n).ok())
        .context("no signed checkpoint yet")?;
    let vkey = std::fs::read_to_string(opts.dir.join("checkpoint.vkey"))?;
    Ok(Report::new()
        .out(cp.note)
        .err(format!("verifier key: {}\n", vkey.trim())))
}

fn verify(opts: &Options) -> Result<Report> {
    let keys = KeyHistory::read(&opts.dir)
        .with_context(|| format!("reading the log's keys in {}", opts.dir.display()))?;
    // Progress only for a person watching; a log file gets the result alone.
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let r = audit::verify::verify_keys(&opts.dir, &keys, |n| {
        if tty {
            eprint!("\rverified {n} records");
        }
    });
    if tty {
        eprintln!();
    }
    let rep = match r {
        Ok(rep) => rep,
        Err(f) => return Ok(Report::new().out(format!("FAILED: {f}\n")).failed()),
    };
    let mut text = format!(
        "ok: {} records, {} signed checkpoints match, root {} ({:.1}s)\n",
        rep.records,
        rep.checkpoints,
        hex::encode(rep.root),
        started.elapsed().as_secs_f64()
    );
    if let Some(t) = rep.torn_tail {
        writeln!(
            text,
            "note: a torn last write of {t} bytes follows; the gateway cuts it at its next start"
        )?;
    }
    Ok(Report::new().out(text))
}

fn prove(
    opts: &Options,
    index: Option<u64>,
    size: Option<u64>,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<Report> {
    let view = audit::store::View::open_readonly(opts)?;
    let out = match (index, from, to) {
        (Some(i), _, _) => {
            let n = match size {
                Some(n) => n,
                None => {
                    view.latest_checkpoint()
                        .context("no signed checkpoint yet: give --size")?
                        .size
                }
            };
            let p = view.inclusion_proof(i, n)?;
            // The leaf comes from the record as it is on disk now, so
            // a record changed after the fact no longer proves.
            let leaf = audit::merkle::leaf_hash(&view.record(i)?.encode());
            proof::inclusion_json(i, n, &view.root_at(n)?, &leaf, &p)
        }
        (None, Some(a), Some(b)) => {
            let p = view.consistency_proof(a, b)?;
            proof::consistency_json(a, b, &view.root_at(a)?, &view.root_at(b)?, &p)
        }
        _ => anyhow::bail!("give --index N [--size M], or --from N --to M"),
    };
    Ok(Report::new().out(format!("{}\n", serde_json::to_string_pretty(&out)?)))
}

fn query(config: &GatewayConfig, q: QueryArgs) -> Result<Report> {
    let time = |s: &Option<String>, what: &str| -> Result<Option<i64>> {
        s.as_deref()
            .map(|t| {
                audit::record::parse_time(t)
                    .with_context(|| format!("--{what} {t}: use YYYY-MM-DD or RFC 3339"))
            })
            .transpose()
    };
    let query = crate::admin::Query {
        since: time(&q.since, "since")?,
        until: time(&q.until, "until")?,
        decision: q
            .decision
            .as_deref()
            .map(|d| {
                audit::Decision::parse(d)
                    .with_context(|| format!("--decision {d}: disclosed or refused"))
            })
            .transpose()?,
        subject: q.subject,
        partner: q.partner,
        pilot: q.pilot,
        purpose: q.purpose,
        limit: q.limit,
    };
    let records = crate::admin::query(config, &query)?;
    Ok(Report::new().out(render(&records, q.format)?))
}
