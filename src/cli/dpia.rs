//! `ketenpoort dpia`: the DPIA annex, written from the same policy files the
//! gateway enforces, so the document cannot drift from what runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

use super::report::Report;
use crate::config::GatewayConfig;
use crate::policy::PolicySet;

#[derive(Subcommand)]
#[allow(missing_docs)]
pub enum DpiaCommand {
    /// Write each pilot's annex (register of processing, flows) as Markdown,
    /// HTML and SVG.
    Render {
        /// Output folder.
        #[arg(long, default_value = "dpia/annex")]
        out: PathBuf,
    },
    /// The register of processing activities (GDPR art. 30): one activity
    /// per pilot, purpose and direction, with its URI, on stdout.
    Register {
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: RegisterFormat,
    },
}

/// How `dpia register` writes the register.
#[derive(Clone, Copy, clap::ValueEnum)]
#[allow(missing_docs)]
pub enum RegisterFormat {
    Json,
    Md,
}

/// Runs a `dpia` subcommand.
pub fn run(config_file: &Path, command: DpiaCommand) -> Result<Report> {
    match command {
        DpiaCommand::Render { out } => render(config_file, &out),
        DpiaCommand::Register { format } => register(config_file, format),
    }
}

fn register(config_file: &Path, format: RegisterFormat) -> Result<Report> {
    let config = GatewayConfig::load(config_file)?;
    let set = PolicySet::load(&config.partners_file, &config.pilots_dir)?;
    let acts = crate::register::activities(&set);
    let text = match format {
        RegisterFormat::Json => serde_json::to_string_pretty(&acts)? + "\n",
        RegisterFormat::Md => crate::register::markdown(&acts),
    };
    Ok(Report::new().out(text))
}

fn render(config_file: &Path, out: &Path) -> Result<Report> {
    let config = GatewayConfig::load(config_file)?;
    let set = &PolicySet::load(&config.partners_file, &config.pilots_dir)?;
    let partners_bytes = std::fs::read(&config.partners_file)?;
    // Who signed which version lives in the data directory; a pilot without
    // covenant state there is rendered without signatures.
    let store = crate::covenant::store::Files::new(&config.data_dir);
    let mut covenants = std::collections::BTreeMap::new();
    for id in set.pilots.keys() {
        if let Ok(Some(_)) = crate::covenant::store::Store::load(&store, id) {
            let v = crate::covenant::view::status(&store, set, &partners_bytes, id)
                .map_err(anyhow::Error::msg)?;
            covenants.insert(id.clone(), v);
        }
    }
    let files = crate::dpia::render_signed(set, &covenants, out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(Report::new().out(format!(
        "{} files written to {}\n",
        files.len(),
        out.display()
    )))
}
