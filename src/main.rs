//! The `ketenpoort` command: a thin layer over the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ketenpoort::config::{DEFAULT_CONFIG, GatewayConfig};
use ketenpoort::logging::{self, LogFormat};
use ketenpoort::{pki, server};

#[derive(Parser)]
#[command(
    name = "ketenpoort",
    version,
    about = "Exchange gateway for the LVV pilots"
)]
struct Cli {
    /// The gateway configuration file.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: the partner API (mutual TLS) and the console.
    Serve {
        /// Listen address of the partner API (overrides the config).
        #[arg(long)]
        partners_addr: Option<std::net::SocketAddr>,
        /// Listen address of the console (overrides the config).
        #[arg(long)]
        console_addr: Option<std::net::SocketAddr>,
    },
    /// Development PKI.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Make a development CA, gateway and partner certificates and a CRL.
    Init,
    /// Put a partner's development certificate on the CRL.
    Revoke {
        /// The partner id, as in partners.toml.
        partner: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Serve {
            partners_addr,
            console_addr,
        } => serve(&cli.config, partners_addr, console_addr),
        Command::Pki { command } => {
            let config = GatewayConfig::load(&cli.config)?;
            match command {
                PkiCommand::Init => {
                    let report = pki::init(&config)?;
                    println!("development PKI written to {}", report.dir.display());
                    for f in &report.files {
                        println!("  {}", f.display());
                    }
                    if !report.pinned.is_empty() {
                        println!(
                            "key pins of {} written to {}",
                            report.pinned.join(", "),
                            config.partners_file.display()
                        );
                    }
                }
                PkiCommand::Revoke { partner } => {
                    let crl = pki::revoke(&config, &partner)?;
                    println!(
                        "{partner} revoked in {}; a running gateway picks it up by itself",
                        crl.display()
                    );
                }
            }
            Ok(())
        }
    }
}

fn serve(
    config_file: &std::path::Path,
    partners_addr: Option<std::net::SocketAddr>,
    console_addr: Option<std::net::SocketAddr>,
) -> Result<()> {
    let mut config = GatewayConfig::load(config_file)?;
    if let Some(a) = partners_addr {
        config.partners_addr = a;
    }
    if let Some(a) = console_addr {
        config.console_addr = a;
    }
    let gateway = Arc::new(server::Gateway::from_config(config)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let c = &gateway.config;
        let listeners = server::Listeners {
            partners: tokio::net::TcpListener::bind(c.partners_addr)
                .await
                .with_context(|| format!("listening on {}", c.partners_addr))?,
            console: tokio::net::TcpListener::bind(c.console_addr)
                .await
                .with_context(|| format!("listening on {}", c.console_addr))?,
        };
        tracing::info!(partners = %c.partners_addr, console = %c.console_addr, "ketenpoort listening");
        server::run(listeners, gateway, shutdown_signal()).await;
        Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
