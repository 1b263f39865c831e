//! `ketenpoort maintenance on|off|status`: drain this node before an upgrade.
//! The running gateway is told over its admin socket; `/healthz` then
//! answers 503 "maintenance" so load balancers send new work elsewhere,
//! while exchanges on this node go on. A restart ends maintenance.

use std::path::Path;

use anyhow::{Context, Result};
use clap::ValueEnum;

use super::report::Report;
use crate::config::GatewayConfig;

/// What to do with maintenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// /healthz answers 503 "maintenance"; exchanges go on.
    On,
    /// /healthz answers by its checks again.
    Off,
    /// Says whether maintenance is on.
    Status,
}

/// Runs `maintenance`.
pub fn run(config_file: &Path, switch: Switch) -> Result<Report> {
    let config = GatewayConfig::load(config_file)?;
    let want = match switch {
        Switch::On => Some(true),
        Switch::Off => Some(false),
        Switch::Status => None,
    };
    let on = crate::admin::maintenance(&config, want).with_context(|| {
        format!(
            "no running gateway answered on {} (maintenance is a state of the running gateway)",
            crate::admin::socket_path(&config.data_dir).display()
        )
    })?;
    Ok(Report::new().out(if on {
        "maintenance on: /healthz answers 503, exchanges go on\n"
    } else {
        "maintenance off: /healthz answers by its checks\n"
    }))
}
