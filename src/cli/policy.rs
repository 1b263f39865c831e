//! `ketenpoort policy`: the pilots' covenants as code, read the way an
//! administrator needs before a change goes live: does it load, what does it
//! decide for one exchange, how does it look, what flows does a change add or
//! remove. Each reads the files only; none touches a running gateway.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::report::Report;
use crate::config::GatewayConfig;
use crate::policy::partners::Partners;
use crate::policy::{PolicySet, diff, explain, graph, store::Snapshot};

#[derive(Subcommand)]
#[allow(missing_docs)]
pub enum PolicyCommand {
    /// Validate partners.toml and every pilot file; exit 1 naming file:line.
    Check,
    /// Show what the policy decides for one exchange, and the minimised document.
    Explain {
        /// Pilot id.
        #[arg(long)]
        pilot: String,
        /// The partner the data comes from.
        #[arg(long)]
        from: String,
        /// The partner the data goes to.
        #[arg(long)]
        to: String,
        /// The service, as provider/service (or just its name).
        #[arg(long)]
        service: String,
        /// The purpose.
        #[arg(long)]
        purpose: String,
        /// Decide as of this day (YYYY-MM-DD) instead of today.
        #[arg(long)]
        date: Option<String>,
        /// A sample JSON document, or - for standard input.
        file: Option<PathBuf>,
    },
    /// Draw a pilot's flows: partners as nodes, one edge per giver → recipient
    /// with the purposes and categories of data.
    Graph {
        /// Pilot id.
        #[arg(long)]
        pilot: String,
        /// svg (drawn by ketenpoort itself) or dot (for Graphviz).
        #[arg(long, value_enum, default_value = "svg")]
        format: GraphFormat,
    },
    /// Which flows (who, to whom, purpose, fields) appear or disappear between
    /// two folders of pilot files.
    Diff {
        /// The old pilots folder.
        old: PathBuf,
        /// The new pilots folder.
        new: PathBuf,
    },
}

// No `///` on the variants: clap would list them as help for each value.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[allow(missing_docs)]
pub enum GraphFormat {
    Svg,
    Dot,
}

/// One exchange to explain, as given on the command line.
struct Exchange {
    pilot: String,
    from: String,
    to: String,
    service: String,
    purpose: String,
    date: Option<String>,
    file: Option<PathBuf>,
}

/// Runs a `policy` subcommand.
pub fn run(config_file: &Path, command: PolicyCommand) -> Result<Report> {
    let config = GatewayConfig::load(config_file)?;
    let text = match command {
        PolicyCommand::Check => check(&config)?,
        PolicyCommand::Explain {
            pilot,
            from,
            to,
            service,
            purpose,
            date,
            file,
        } => explain(
            &config,
            Exchange {
                pilot,
                from,
                to,
                service,
                purpose,
                date,
                file,
            },
        )?,
        PolicyCommand::Graph { pilot, format } => draw(&config, &pilot, format)?,
        PolicyCommand::Diff { old, new } => compare(&config, &old, &new)?,
    };
    Ok(Report::new().out(text))
}

/// One line per file that loaded, then "ok"; a file that does not load is
/// the error, with its file:line.
fn check(config: &GatewayConfig) -> Result<String> {
    let set = PolicySet::load(&config.partners_file, &config.pilots_dir)?;
    let mut text = format!(
        "{}: {} partners\n",
        config.partners_file.display(),
        set.partners.list.len()
    );
    for p in set.pilots.values() {
        writeln!(
            text,
            "{}: pilot {} ({}), covenant {} {} valid {} to {}, {} purposes, {} rules, version {}",
            p.file.display(),
            p.id,
            p.name,
            p.covenant.id,
            p.covenant.version,
            p.covenant.valid_from,
            p.covenant.valid_until,
            p.purposes.len(),
            p.rules.len(),
            p.version
        )?;
    }
    text.push_str("ok\n");
    Ok(text)
}

fn explain(config: &GatewayConfig, x: Exchange) -> Result<String> {
    // The snapshot, not just the policy set: explaining pseudonymisation needs
    // the pilots' keys from the data directory.
    let snap = Snapshot::load(&config.partners_file, &config.pilots_dir, &config.data_dir)?;
    let today = match x.date {
        Some(d) => time::Date::parse(
            &d,
            &time::macros::format_description!("[year]-[month]-[day]"),
        )
        .with_context(|| format!("--date {d}: expected YYYY-MM-DD"))?,
        None => time::OffsetDateTime::now_utc().date(),
    };
    let doc = x.file.as_deref().map(sample).transpose()?;
    Ok(explain::explain(
        &snap,
        &x.pilot,
        &x.from,
        &x.to,
        &x.service,
        &x.purpose,
        today,
        doc.as_ref(),
    )?)
}

/// The sample document, from a file or (`-`) standard input.
fn sample(f: &Path) -> Result<serde_json::Value> {
    let text = if f.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
    };
    serde_json::from_str(&text).context("the sample is not JSON")
}

fn draw(config: &GatewayConfig, pilot: &str, format: GraphFormat) -> Result<String> {
    let set = PolicySet::load(&config.partners_file, &config.pilots_dir)?;
    let p = set
        .pilots
        .get(pilot)
        .with_context(|| format!("no pilot '{pilot}'"))?;
    Ok(match format {
        GraphFormat::Svg => graph::svg(&set, p),
        GraphFormat::Dot => graph::dot(&set, p),
    })
}

/// Both folders are read against today's partners file: a diff is about the
/// rules, not about partners that changed in between.
fn compare(config: &GatewayConfig, old: &Path, new: &Path) -> Result<String> {
    let partners_text = std::fs::read(&config.partners_file)
        .with_context(|| format!("reading {}", config.partners_file.display()))?;
    let partners = Arc::new(Partners::load(&config.partners_file)?);
    let a = PolicySet::load_pilots(partners.clone(), &partners_text, old)?;
    let b = PolicySet::load_pilots(partners, &partners_text, new)?;
    let changes = diff::diff(&a, &b);
    let mut text = String::new();
    if changes.is_empty() {
        text.push_str("no flow appears, disappears or changes\n");
    }
    for c in changes {
        writeln!(text, "{c}")?;
    }
    Ok(text)
}
