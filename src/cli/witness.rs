//! `ketenpoort witness`: a C2SP tlog witness that a partner runs to cosign
//! the log's checkpoints (see [`crate::witness`] and `docs/witness.md`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::report::Report;
use crate::witness::server::{self, tls_config};
use crate::witness::{Cosigner, State, Witness, WitnessConfig};

#[derive(Subcommand)]
#[allow(missing_docs)]
pub enum WitnessCommand {
    /// Make a witness key (Ed25519, cosignature/v1; file mode 0600) and
    /// print its verifier key for the logs that will trust it.
    Keygen {
        /// The witness's name, a schema-less URL such as witness.dtv.example.
        #[arg(long)]
        name: String,
        /// Where to write the key (never over an existing file).
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve POST /add-checkpoint for the logs in the witness config
    /// (--config witness.toml).
    Serve,
}

/// Runs a `witness` subcommand; `config_file` is the global `--config`, if given.
pub fn run(config_file: Option<&Path>, command: WitnessCommand) -> Result<Report> {
    match command {
        WitnessCommand::Keygen { name, out } => {
            let c = Cosigner::generate(&name, &out)?;
            Ok(Report::new()
                .err(format!("witness key written to {}\n", out.display()))
                .out(format!("{}\n", c.vkey())))
        }
        WitnessCommand::Serve => serve(config_file),
    }
}

fn serve(config_file: Option<&Path>) -> Result<Report> {
    let Some(config_file) = config_file else {
        bail!("witness serve needs its own config: --config witness.toml");
    };
    let config = WitnessConfig::load(config_file)?;
    crate::datadir::private_umask();
    let cosigner = Cosigner::load(&config.key)?;
    let state = State::open(&config.state)?;
    let tls = match &config.tls {
        Some(files) => Some(tls_config(files)?),
        None => None,
    };
    let vkey = cosigner.vkey();
    let witness = Arc::new(Witness::new(cosigner, config.logs.clone(), state));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        tracing::info!(
            listen = %config.listen,
            tls = config.tls.is_some(),
            logs = config.logs.len(),
            %vkey,
            "witness listening"
        );
        server::run(listener, witness, tls, super::serve::shutdown_signal()).await;
        Ok(Report::new())
    })
}
