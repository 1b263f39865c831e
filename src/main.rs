//! The `ketenpoort` command: a thin layer over the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

/// mimalloc instead of glibc's malloc: a profile under load showed a fifth of
/// the gateway's CPU time in malloc/free across the runtime's threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
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
    /// The audit log: checkpoints, verification, proofs, queries, export.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print the latest signed checkpoint and the key that verifies it.
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
    Query {
        /// V-nummer of the data subject (pseudonymised before the look-up).
        #[arg(long)]
        subject: Option<String>,
        /// Partner id, as sender or recipient.
        #[arg(long)]
        partner: Option<String>,
        /// Pilot id.
        #[arg(long)]
        pilot: Option<String>,
        /// Purpose id.
        #[arg(long)]
        purpose: Option<String>,
        /// From (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Until (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// disclosed or refused.
        #[arg(long)]
        decision: Option<String>,
        /// At most this many records.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: QueryFormat,
    },
    /// Write every record, streamed.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ketenpoort::audit::export::Format,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum QueryFormat {
    Table,
    Jsonl,
    Csv,
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

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GraphFormat {
    Svg,
    Dot,
}

#[derive(Subcommand)]
enum DpiaCommand {
    /// Write each pilot's annex (register of processing, flows) as Markdown,
    /// HTML and SVG.
    Render {
        /// Output folder.
        #[arg(long, default_value = "dpia/annex")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user and print its token (once; only its hash is kept).
    Add {
        /// Login name.
        name: String,
        /// What the user may do.
        #[arg(long, value_enum)]
        role: ketenpoort::console::users::Role,
        /// Bind a privacy officer to one partner's records.
        #[arg(long)]
        partner: Option<String>,
        /// Bind a policy admin to one pilot.
        #[arg(long)]
        pilot: Option<String>,
    },
    /// List the users (never their tokens).
    List,
    /// Remove a user; its token stops working at once.
    Revoke {
        /// Login name.
        name: String,
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
        Command::User { command } => user_cmd(&cli.config, command),
        Command::Dpia {
            command: DpiaCommand::Render { out },
        } => {
            let config = GatewayConfig::load(&cli.config)?;
            let set =
                ketenpoort::policy::PolicySet::load(&config.partners_file, &config.pilots_dir)?;
            let files = ketenpoort::dpia::render(&set, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{} files written to {}", files.len(), out.display());
            Ok(())
        }
        Command::Demo { once, dir } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            let ok = rt.block_on(ketenpoort::demo::run_demo(ketenpoort::demo::Options {
                config: cli.config.clone(),
                dir,
                once,
            }))?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Audit { command } => audit_cmd(&cli.config, command),
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
        PolicyCommand::Graph { pilot, format } => {
            let set = PolicySet::load(&config.partners_file, &config.pilots_dir)?;
            let p = set
                .pilots
                .get(&pilot)
                .with_context(|| format!("no pilot '{pilot}'"))?;
            print!(
                "{}",
                match format {
                    GraphFormat::Svg => ketenpoort::policy::graph::svg(&set, p),
                    GraphFormat::Dot => ketenpoort::policy::graph::dot(&set, p),
                }
            );
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

fn user_cmd(config_file: &std::path::Path, command: UserCommand) -> Result<()> {
    use ketenpoort::console::users;
    let config = GatewayConfig::load(config_file)?;
    match command {
        UserCommand::Add {
            name,
            role,
            partner,
            pilot,
        } => {
            let token = users::add(&config, &name, role, partner, pilot)?;
            eprintln!(
                "user {name} added as {}; its token (shown once, keep it safe):",
                role.as_str()
            );
            println!("{token}");
        }
        UserCommand::List => {
            for u in users::list(&config.data_dir)? {
                println!(
                    "{}\t{}\t{}\t{}",
                    u.name,
                    u.role.as_str(),
                    u.partner.or(u.pilot).unwrap_or_else(|| "-".into()),
                    u.created
                );
            }
        }
        UserCommand::Revoke { name } => {
            users::revoke(&config.data_dir, &name)?;
            println!("user {name} revoked");
        }
    }
    Ok(())
}

fn audit_cmd(config_file: &std::path::Path, command: AuditCommand) -> Result<()> {
    use ketenpoort::audit::{self, checkpoint::Verifier, export, proof, store::View};
    use std::io::IsTerminal;
    // check-proof runs on a partner's own machine: no config, no data.
    if let AuditCommand::CheckProof { file } = &command {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).unwrap_or_default()
        } else {
            match std::fs::read(file) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) => {
                    eprintln!("invalid: cannot read {}: {e}", file.display());
                    std::process::exit(1);
                }
            }
        };
        match proof::check(&text) {
            Ok(msg) => {
                println!("{msg}");
                return Ok(());
            }
            Err(msg) => {
                println!("invalid: {msg}");
                std::process::exit(1);
            }
        }
    }
    let config = GatewayConfig::load(config_file)?;
    let opts = audit::Options::new(&config.data_dir, &config.deployment);
    if !opts.dir.join("segments").is_dir() {
        anyhow::bail!(
            "no audit log in {} yet: the gateway makes it when it first starts",
            opts.dir.display()
        );
    }
    let verifier = || -> Result<Verifier> {
        let vkey = std::fs::read_to_string(opts.dir.join("checkpoint.vkey"))
            .with_context(|| format!("reading {}", opts.dir.join("checkpoint.vkey").display()))?;
        Ok(Verifier::parse(&vkey)?)
    };
    match command {
        AuditCommand::CheckProof { .. } => unreachable!("handled above"),
        AuditCommand::Head { now } => {
            if now {
                print!("{}", ketenpoort::admin::checkpoint_now(&config)?);
                return Ok(());
            }
            let v = verifier()?;
            let notes = audit::checkpoint::read_all(&opts.checkpoints())?;
            let cp = notes
                .iter()
                .rev()
                .find_map(|n| v.verify(n).ok())
                .context("no signed checkpoint yet")?;
            print!("{}", cp.note);
            eprintln!(
                "verifier key: {}",
                std::fs::read_to_string(opts.dir.join("checkpoint.vkey"))?.trim()
            );
            Ok(())
        }
        AuditCommand::Verify => {
            let v = verifier()?;
            let tty = std::io::stderr().is_terminal();
            let started = std::time::Instant::now();
            let r = audit::verify::verify(&opts.dir, &v, |n| {
                if tty {
                    eprint!("\rverified {n} records");
                }
            });
            if tty {
                eprintln!();
            }
            match r {
                Ok(rep) => {
                    println!(
                        "ok: {} records, {} signed checkpoints match, root {} ({:.1}s)",
                        rep.records,
                        rep.checkpoints,
                        hex::encode(rep.root),
                        started.elapsed().as_secs_f64()
                    );
                    if let Some(t) = rep.torn_tail {
                        println!(
                            "note: a torn last write of {t} bytes follows; the gateway cuts it at its next start"
                        );
                    }
                    Ok(())
                }
                Err(f) => {
                    println!("FAILED: {f}");
                    std::process::exit(1);
                }
            }
        }
        AuditCommand::Prove {
            index,
            size,
            from,
            to,
        } => {
            let view = View::open_readonly(&opts)?;
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
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        AuditCommand::Query {
            subject,
            partner,
            pilot,
            purpose,
            since,
            until,
            decision,
            limit,
            format,
        } => {
            let time = |s: &Option<String>, what: &str| -> Result<Option<i64>> {
                s.as_deref()
                    .map(|t| {
                        audit::record::parse_time(t)
                            .with_context(|| format!("--{what} {t}: use YYYY-MM-DD or RFC 3339"))
                    })
                    .transpose()
            };
            let query = ketenpoort::admin::Query {
                subject,
                partner,
                pilot,
                purpose,
                since: time(&since, "since")?,
                until: time(&until, "until")?,
                decision: decision
                    .as_deref()
                    .map(|d| {
                        audit::Decision::parse(d)
                            .with_context(|| format!("--decision {d}: disclosed or refused"))
                    })
                    .transpose()?,
                limit,
            };
            let records = ketenpoort::admin::query(&config, &query)?;
            let mut out = std::io::stdout().lock();
            use std::io::Write;
            match format {
                QueryFormat::Jsonl => {
                    for r in &records {
                        writeln!(out, "{}", r.to_json())?;
                    }
                }
                QueryFormat::Csv => {
                    writeln!(out, "{}", export::CSV_COLUMNS.join(","))?;
                    for r in &records {
                        writeln!(out, "{}", export::csv_row(r))?;
                    }
                }
                QueryFormat::Table => {
                    writeln!(
                        out,
                        "{:>8}  {:<27}  {:<9}  {:<10}  {:<24} {:<24} {:<18} service",
                        "id", "time", "decision", "pilot", "sender", "recipient", "purpose"
                    )?;
                    for r in &records {
                        let e = &r.entry;
                        writeln!(
                            out,
                            "{:>8}  {:<27}  {:<9}  {:<10}  {:<24} {:<24} {:<18} {}{}",
                            r.id,
                            r.time_rfc3339(),
                            e.decision.as_str(),
                            e.pilot,
                            e.sender,
                            e.recipient,
                            e.purpose,
                            e.service,
                            if e.reason.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", e.reason)
                            }
                        )?;
                    }
                    writeln!(out, "{} record(s)", records.len())?;
                }
            }
            Ok(())
        }
        AuditCommand::Export { format } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let n = export::export(&opts.dir, format, &mut out).map_err(anyhow::Error::msg)?;
            use std::io::Write;
            out.flush()?;
            eprintln!("{n} records exported");
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
            admin: Some(bind_admin(&c.data_dir)?),
        };
        tracing::info!(partners = %c.partners_addr, console = %c.console_addr, "ketenpoort listening");
        server::run(listeners, gateway, shutdown_signal()).await;
        Ok(())
    })
}

/// The admin socket for command-line tools, readable by the owner only.
fn bind_admin(data_dir: &std::path::Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = ketenpoort::admin::socket_path(data_dir);
    // A socket file left by a gateway that was killed: nobody listens on it.
    if std::os::unix::net::UnixStream::connect(&path).is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let l = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
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
