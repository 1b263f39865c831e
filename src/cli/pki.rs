//! `ketenpoort pki`: the development PKI. Real deployments bring their own
//! certificates; this makes a CA and every certificate the shipped config
//! names, so the gateway and the demo run on a fresh checkout.

use std::fmt::Write;
use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

use super::report::Report;
use crate::config::GatewayConfig;
use crate::pki;

#[derive(Subcommand)]
#[allow(missing_docs)]
pub enum PkiCommand {
    /// Make a development CA, gateway and partner certificates and a CRL.
    Init,
    /// Put a partner's development certificate on the CRL.
    Revoke {
        /// The partner id, as in partners.toml.
        partner: String,
    },
}

/// Runs a `pki` subcommand.
pub fn run(config_file: &Path, command: PkiCommand) -> Result<Report> {
    let config = GatewayConfig::load(config_file)?;
    match command {
        PkiCommand::Init => init(&config),
        PkiCommand::Revoke { partner } => {
            let crl = pki::revoke(&config, &partner)?;
            Ok(Report::new().out(format!(
                "{partner} revoked in {}; a running gateway picks it up by itself\n",
                crl.display()
            )))
        }
    }
}

fn init(config: &GatewayConfig) -> Result<Report> {
    let report = pki::init(config)?;
    let mut text = format!("development PKI written to {}\n", report.dir.display());
    for f in &report.files {
        writeln!(text, "  {}", f.display())?;
    }
    if !report.pinned.is_empty() {
        writeln!(
            text,
            "key pins of {} written to {}",
            report.pinned.join(", "),
            config.partners_file.display()
        )?;
    }
    if !report.signed.is_empty() {
        writeln!(
            text,
            "covenants of {} signed by their partners' development keys, waiting in {}",
            report.signed.join(", "),
            crate::covenant::store::inbox_dir(&config.data_dir).display()
        )?;
    }
    Ok(Report::new().out(text))
}
