//! `ketenpoort storage`: the PostgreSQL backend's schema and state, moving
//! an embedded log into it, and the `audit` subcommands when the log lives
//! there (the data directory then holds no log to read).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::report::Report;
use crate::audit::pg::PgLog;
use crate::audit::record::Record;
use crate::audit::{Options, checkpoint, export, segment};
use crate::config::{GatewayConfig, Postgres, Storage};

#[derive(Subcommand)]
#[allow(missing_docs)]
pub enum StorageCommand {
    /// Create or upgrade the PostgreSQL schema (versioned migrations;
    /// running it again changes nothing).
    Migrate,
    /// Backend, schema version, log size, head, nodes seen recently, keys.
    Status,
    /// Copy an embedded log (--config, stopped) into the PostgreSQL database
    /// of --to-config: the same records with the same ids, and the signed
    /// checkpoints, so every proof made before still verifies.
    Copy {
        /// The configuration whose `[storage]` names the database.
        #[arg(long)]
        to_config: PathBuf,
    },
}

fn postgres(config: &GatewayConfig) -> Result<&Postgres> {
    match &config.storage {
        Storage::Postgres(p) => Ok(p),
        Storage::Embedded => bail!(
            "{}: [storage] backend is \"embedded\": the log is the files in {}",
            config.file.display(),
            config.data_dir.join("audit").display()
        ),
    }
}

/// Runs a `storage` subcommand.
pub fn run(config_file: &Path, command: StorageCommand) -> Result<Report> {
    let config = GatewayConfig::load(config_file)?;
    match command {
        StorageCommand::Migrate => {
            let pg = PgLog::connect(postgres(&config)?, "")?;
            let applied = pg.migrate()?;
            let v = pg.version()?;
            Ok(Report::new().out(if applied.is_empty() {
                format!("schema version {v}: nothing to do\n")
            } else {
                format!("schema version {v}: applied {applied:?}\n")
            }))
        }
        StorageCommand::Status => status(&config),
        StorageCommand::Copy { to_config } => copy(&config, &GatewayConfig::load(&to_config)?),
    }
}

fn status(config: &GatewayConfig) -> Result<Report> {
    let Storage::Postgres(p) = &config.storage else {
        let opts = Options::of(config);
        let v = crate::audit::store::View::open_readonly(&opts)?;
        return Ok(Report::new().out(format!(
            "backend: embedded ({})\nlog size: {} records\nhead: {}\n",
            opts.dir.display(),
            v.head().size,
            hex::encode(v.head().root)
        )));
    };
    let pg = PgLog::connect(p, "")?;
    let s = pg.status()?;
    let mut out = String::new();
    writeln!(out, "backend: postgres")?;
    writeln!(
        out,
        "schema version: {} (this build: {})",
        s.version,
        crate::audit::pg::schema::latest()
    )?;
    writeln!(out, "log size: {} records", s.records)?;
    writeln!(out, "head: {} records, root {}", s.head.0, s.head.1)?;
    match s.checkpoint {
        Some(c) => writeln!(out, "latest checkpoint: {c} records")?,
        None => writeln!(out, "latest checkpoint: none")?,
    }
    writeln!(out, "nodes seen in the last minute: {}", s.nodes.len())?;
    for (name, ago, leader) in &s.nodes {
        let lead = if *leader {
            " (integrates and signs)"
        } else {
            ""
        };
        writeln!(out, "  {name}: {ago:.1}s ago{lead}")?;
    }
    for (name, value) in &s.keys {
        writeln!(out, "key {name}: {value}")?;
    }
    Ok(Report::new().out(out))
}

/// Records copied per transaction.
const COPY_BATCH: usize = 2000;

fn copy(src: &GatewayConfig, dst: &GatewayConfig) -> Result<Report> {
    if !matches!(src.storage, Storage::Embedded) {
        bail!("{}: the source must be an embedded log", src.file.display());
    }
    let opts = Options::of(src);
    let segs = opts.dir.join("segments");
    if !segs.is_dir() {
        bail!("no audit log in {}", opts.dir.display());
    }
    if crate::admin::socket_path(&src.data_dir).exists()
        && std::os::unix::net::UnixStream::connect(crate::admin::socket_path(&src.data_dir)).is_ok()
    {
        bail!(
            "a gateway runs on {}: stop it first",
            src.data_dir.display()
        );
    }
    // The socket answers only once a gateway serves: its writer's lock also
    // covers one starting up, and keeps one from starting during the copy.
    let _writer = crate::audit::store::lock_writer(&opts.dir)?;
    let vkey = std::fs::read_to_string(opts.dir.join("checkpoint.vkey"))
        .context("reading the source's checkpoint.vkey")?;
    let verifier = checkpoint::Verifier::parse(vkey.trim())?;
    let pg = PgLog::connect(postgres(dst)?, "")?;
    pg.migrate()?;
    pg.check_key("checkpoint-vkey", vkey.trim())?;
    let have = pg.committed()?;
    let mut batch: Vec<(Record, Vec<u8>)> = Vec::with_capacity(COPY_BATCH);
    let mut seen = 0u64;
    for seg in segment::list(&segs)? {
        segment::scan(&seg.path, |_, bytes| -> Result<(), String> {
            let id = seen;
            seen += 1;
            if id < have {
                return Ok(()); // copied by an earlier run
            }
            let r = Record::decode(bytes).map_err(|e| format!("record {id}: {e}"))?;
            if r.id != id {
                return Err(format!("record {id} says it is record {}", r.id));
            }
            batch.push((r, bytes.to_vec()));
            if batch.len() == COPY_BATCH {
                pg.import(std::mem::take(&mut batch))
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("{}: {e}", seg.path.display()))?;
    }
    pg.import(batch)?;
    let mut cps = Vec::new();
    for note in checkpoint::read_all(&opts.checkpoints())? {
        if let Ok(cp) = verifier.verify(&note)
            && cp.size <= seen
        {
            cps.push(cp);
        }
    }
    let new_cps = pg.import_checkpoints(&cps)?;
    // The signed covenant versions move too: without them every pilot
    // would start over unsigned.
    let pilots = crate::covenant::shared::import(&pg, &src.data_dir)
        .context("copying the covenant state")?;
    Ok(Report::new().out(format!(
        "copied {} records (of {seen}; {have} were there before), {new_cps} checkpoints and the covenant state of {pilots} pilots into {}\n",
        seen.saturating_sub(have),
        dst.file.display()
    )))
}

/// `audit head` on the shared log: the newest signed checkpoint.
pub(super) fn head(opts: &Options) -> Result<Report> {
    let view = crate::audit::store::View::open_readonly(opts)?;
    let cp = view
        .latest_checkpoint()
        .context("no signed checkpoint yet")?;
    Ok(Report::new().out(cp.note))
}

/// `audit export` on the shared log.
pub(super) fn export(opts: &Options, format: export::Format) -> Result<Report> {
    let view = crate::audit::store::View::open_readonly(opts)?;
    let pg = view.postgres().context("not a PostgreSQL log")?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let n = export_all(pg, format, &mut out)?;
    out.flush()?;
    Ok(Report::new().err(format!("{n} records exported\n")))
}

/// `audit verify` on the shared log.
pub(super) fn verify(opts: &Options) -> Result<Report> {
    let verifier = PgLog::local_verifier(opts)?;
    let view = crate::audit::store::View::open_readonly(opts)?;
    let pg = view.postgres().context("not a PostgreSQL log")?;
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let r = pg.verify(&verifier, |n| {
        if tty {
            eprint!("\rverified {n} records");
        }
    });
    if tty {
        eprintln!();
    }
    match r {
        Ok(c) => Ok(Report::new().out(format!(
            "ok: {} records, {} signed checkpoints match, root {} ({:.1}s){}\n",
            c.records,
            c.checkpoints,
            hex::encode(c.root),
            started.elapsed().as_secs_f64(),
            if c.unintegrated > 0 {
                format!("; {} not yet in the tree", c.unintegrated)
            } else {
                String::new()
            }
        ))),
        Err(f) => Ok(Report::new().out(format!("FAILED: {f}\n")).failed()),
    }
}

/// Every record of the shared log, in id order, in the export format.
fn export_all(pg: &PgLog, format: export::Format, out: &mut dyn Write) -> Result<u64> {
    if format == export::Format::Csv {
        writeln!(out, "{}", export::CSV_COLUMNS.join(","))?;
    }
    let mut n = 0u64;
    loop {
        let rows = pg.walk(n)?;
        if rows.is_empty() {
            return Ok(n);
        }
        for (id, bytes, _) in rows {
            let r = Record::decode(&bytes).map_err(|e| anyhow::anyhow!("record {id}: {e}"))?;
            let line = match format {
                export::Format::Jsonl => r.to_json().to_string(),
                export::Format::Csv => export::csv_row(&r),
                export::Format::Logboek => export::logboek(&r).to_string(),
            };
            writeln!(out, "{line}")?;
            n += 1;
        }
    }
}
