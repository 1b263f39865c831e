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
    /// The pilots' covenants as code: check, explain, compare.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
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
    /// Which flows (who, to whom, purpose, fields) appear or disappear between
    /// two folders of pilot files.
    Diff {
        /// The old pilots folder.
        old: PathBuf,
        /// The new pilots folder.
        new: PathBuf,
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
        Command::Policy { command } => policy(&cli.config, command),
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

fn policy(config_file: &std::path::Path, command: PolicyCommand) -> Result<()> {
    use ketenpoort::policy::{PolicySet, diff};
    let config = GatewayConfig::load(config_file)?;
    match command {
        PolicyCommand::Check => {
            let set = PolicySet::load(&config.partners_file, &config.pilots_dir)?;
            println!(
                "{}: {} partners",
                config.partners_file.display(),
                set.partners.list.len()
            );
            for p in set.pilots.values() {
                println!(
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
                );
            }
            println!("ok");
            Ok(())
        }
        PolicyCommand::Explain {
            pilot,
            from,
            to,
            service,
            purpose,
            date,
            file,
        } => {
            let snap = ketenpoort::policy::store::Snapshot::load(
                &config.partners_file,
                &config.pilots_dir,
                &config.data_dir,
            )?;
            let today = match date {
                Some(d) => time::Date::parse(
                    &d,
                    &time::macros::format_description!("[year]-[month]-[day]"),
                )
                .with_context(|| format!("--date {d}: expected YYYY-MM-DD"))?,
                None => time::OffsetDateTime::now_utc().date(),
            };
            let doc = match &file {
                None => None,
                Some(f) => {
                    let text = if f.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin())
                            .context("reading standard input")?
                    } else {
                        std::fs::read_to_string(f)
                            .with_context(|| format!("reading {}", f.display()))?
                    };
                    Some(
                        serde_json::from_str::<serde_json::Value>(&text)
                            .context("the sample is not JSON")?,
                    )
                }
            };
            let text = ketenpoort::policy::explain::explain(
                &snap,
                &pilot,
                &from,
                &to,
                &service,
                &purpose,
                today,
                doc.as_ref(),
            )?;
            print!("{text}");
            Ok(())
        }
        PolicyCommand::Diff { old, new } => {
            let partners_text = std::fs::read(&config.partners_file)
                .with_context(|| format!("reading {}", config.partners_file.display()))?;
            let partners =
                std::sync::Arc::new(ketenpoort::config::Partners::load(&config.partners_file)?);
            let a = PolicySet::load_pilots(partners.clone(), &partners_text, &old)?;
            let b = PolicySet::load_pilots(partners, &partners_text, &new)?;
            let changes = diff::diff(&a, &b);
            if changes.is_empty() {
                println!("no flow appears, disappears or changes");
            }
            for c in changes {
                println!("{c}");
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
