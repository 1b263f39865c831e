//! The `ketenpoort` command line: what each subcommand does, as library code.
//!
//! The binary (`src/main.rs`) only parses, starts logging and prints what
//! [`run`] hands back, so the commands can be read, reused and tested without a
//! process in between. One file per command group, each with its clap
//! definitions beside the code that runs them.
//!
//! This module is the binary's half of the library: it is the one place in
//! `src/` besides `main.rs` that uses `anyhow`, because its errors end as a
//! message to an operator, not as something a caller matches on. Everything it
//! calls returns typed errors.
//!
//! The command-line surface (names, flags, output, exit codes) is a contract:
//! operators' scripts and `contract-check` read it. Doc comments on the clap
//! items below are help text, so a `//` comment explains them where a `///`
//! would change `--help`.

mod audit;
mod backup;
mod covenant;
mod demo;
mod dpia;
mod evidence;
mod maintenance;
mod pki;
mod policy;
mod records;
mod report;
mod serve;
mod storage;
mod user;
mod witness;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::default_config;
use crate::logging::LogFormat;
pub use report::{Report, Status, Stream};

pub use audit::AuditCommand;
pub use covenant::CovenantCommand;
pub use dpia::DpiaCommand;
pub use evidence::{CheckEvidenceArgs, KeyArgs, MonitorArgs};
pub use pki::PkiCommand;
pub use policy::{GraphFormat, PolicyCommand};
pub use records::QueryFormat;
pub use storage::StorageCommand;
pub use user::UserCommand;
pub use witness::WitnessCommand;

#[derive(Parser)]
#[command(
    name = "ketenpoort",
    version,
    about = "Exchange gateway for the LVV pilots"
)]
// No `///` here: clap would show it as the long help.
#[allow(missing_docs)]
pub struct Cli {
    /// The gateway configuration file [default: ./config/ketenpoort.toml when
    /// present, else /etc/ketenpoort/ketenpoort.toml].
    // An `Option`, not a clap default: the demo and `witness serve` need to
    // know whether it was given (the demo then plays its built-in config).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
#[allow(missing_docs)]
pub enum Command {
    /// Run the gateway: the partner API (mutual TLS) and the console.
    Serve {
        /// Listen address of the partner API (overrides the config).
        #[arg(long)]
        partners_addr: Option<std::net::SocketAddr>,
        /// Listen address of the console (overrides the config).
        #[arg(long)]
        console_addr: Option<std::net::SocketAddr>,
    },
    /// The whole gateway on this machine with simulated back-ends, playing a
    /// scripted case consultation in each pilot; then keeps serving.
    Demo {
        /// Exit after the script: 0 only if every step did what it should.
        #[arg(long)]
        once: bool,
        /// The demo folder (made anew each run).
        #[arg(long, default_value = "demo-data")]
        dir: PathBuf,
    },
    /// The DPIA annex, generated from the running policy.
    Dpia {
        #[command(subcommand)]
        command: DpiaCommand,
    },
    /// Console users: privacy officers and policy administrators.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Development PKI.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// The pilots' covenants as code: check, explain, compare.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The pilots' covenants as signed: sign, submit, status.
    Covenant {
        #[command(subcommand)]
        command: CovenantCommand,
    },
    /// The audit log: checkpoints, verification, proofs, queries, export.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Drain this node: /healthz answers 503 "maintenance" while exchanges
    /// go on (through the running gateway's admin socket).
    Maintenance {
        /// on, off or status.
        #[arg(value_enum)]
        switch: maintenance::Switch,
    },
    /// Back up the data directory while the gateway runs (through its
    /// admin socket): the audit log up to a signed checkpoint, the stores,
    /// a manifest with SHA-256 checksums.
    Backup {
        /// The backup folder (new or empty).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Put the secret keys in it too (warned about).
        #[arg(long)]
        include_keys: bool,
    },
    /// Restore a backup into the configuration's data directory, which
    /// must be empty; no gateway may run on it.
    Restore {
        /// The backup folder.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The secret keys, when the backup holds none (a data directory's keys/).
        #[arg(long, value_name = "DIR")]
        keys: Option<PathBuf>,
    },
    /// A C2SP witness that cosigns a log's checkpoints (run by a partner).
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
    },
    /// The storage backend: PostgreSQL schema, status, moving a log into it.
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
}

impl Cli {
    /// The configuration file: `--config`, or [`default_config`].
    pub fn config_file(&self) -> PathBuf {
        self.config.clone().unwrap_or_else(default_config)
    }
}

/// Runs one command. An `Err` is a command that could not do its work (main
/// prints it and exits 1); a [`Report`] with [`Status::Failure`] is a command
/// that did its work and whose answer is "no" (an invalid proof, a log that
/// does not verify, a demo step that went wrong).
pub fn run(cli: Cli) -> Result<Report> {
    let config = &cli.config_file();
    match cli.command {
        Command::Serve {
            partners_addr,
            console_addr,
        } => serve::serve(config, partners_addr, console_addr),
        Command::Demo { once, dir } => demo::demo(cli.config.as_deref(), once, dir),
        Command::Dpia { command } => dpia::run(config, command),
        Command::User { command } => user::run(config, command),
        Command::Pki { command } => pki::run(config, command),
        Command::Policy { command } => policy::run(config, command),
        Command::Covenant { command } => covenant::run(config, command),
        Command::Audit { command } => audit::run(config, command),
        Command::Maintenance { switch } => maintenance::run(config, switch),
        Command::Backup { to, include_keys } => backup::backup(config, &to, include_keys),
        Command::Restore { from, keys } => backup::restore(config, &from, keys),
        Command::Witness { command } => witness::run(cli.config.as_deref(), command),
        Command::Storage { command } => storage::run(config, command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/ketenpoort.toml");
        Cli::parse_from(
            ["ketenpoort"]
                .iter()
                .chain(args)
                .chain(&["--config", config]),
        )
    }

    #[test]
    fn a_command_hands_back_its_output_instead_of_printing_it() {
        let r = run(cli(&["policy", "check"])).unwrap();
        assert_eq!(r.status, Status::Success);
        assert!(r.stdout().ends_with("ok\n"), "{}", r.stdout());
        assert!(r.stderr().is_empty());
    }

    #[test]
    fn a_no_is_a_status_not_an_error() {
        let r = run(cli(&["audit", "check-proof", "/nonexistent/proof.json"])).unwrap();
        assert_eq!(r.status, Status::Failure);
        assert!(r.stdout().is_empty());
        assert!(
            r.stderr().starts_with("invalid: cannot read"),
            "{}",
            r.stderr()
        );
    }
}
