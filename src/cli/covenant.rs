//! `ketenpoort covenant`: a partner signs a pilot's covenant on its own side
//! (`sign` needs only its certificate and key, no gateway config), hands the
//! signature to the gateway over mutual TLS (`submit`), and anyone with the
//! gateway's config reads where each pilot stands (`status`).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;

use super::report::Report;
use crate::config::GatewayConfig;
use crate::covenant::jws::{self, Decision, Payload};
use crate::policy::terms::{version_from_hex, version_hex};

#[derive(Subcommand)]
#[allow(missing_docs)]
pub enum CovenantCommand {
    /// Sign (accept, or with --revoke withdraw) a version of a pilot's
    /// covenant with the key of your organisation certificate; prints the JWS.
    Sign {
        /// The pilot id.
        #[arg(long)]
        pilot: String,
        /// The version: `sha256:<hex>` or the hex alone.
        #[arg(long)]
        version: String,
        /// Your organisation certificate (PEM; the chain may follow the leaf).
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM, PKCS#8; PKCS#1 for RSA).
        #[arg(long)]
        key: PathBuf,
        /// Revoke your acceptance instead of accepting.
        #[arg(long)]
        revoke: bool,
        /// Write the JWS to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Send a signature (a file made by `covenant sign`) to the gateway.
    Submit {
        /// The JWS file (`-` for standard input).
        file: PathBuf,
        /// The gateway's partner API, `https://host:port`.
        #[arg(long)]
        gateway: String,
        /// Your organisation certificate (PEM), for mutual TLS.
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// The CA that the gateway's certificate chains to (PEM).
        #[arg(long)]
        cacert: PathBuf,
    },
    /// Show a pilot's covenant: the version in force and its signers, what
    /// waits for whose signature.
    Status {
        /// The pilot id.
        #[arg(long)]
        pilot: String,
    },
}

/// Runs a `covenant` subcommand.
pub fn run(config_file: &Path, command: CovenantCommand) -> Result<Report> {
    match command {
        CovenantCommand::Sign {
            pilot,
            version,
            cert,
            key,
            revoke,
            out,
        } => sign(&pilot, &version, &cert, &key, revoke, out.as_deref()),
        CovenantCommand::Submit {
            file,
            gateway,
            cert,
            key,
            cacert,
        } => submit(&file, &gateway, &cert, &key, &cacert),
        CovenantCommand::Status { pilot } => status(config_file, &pilot),
    }
}

fn read(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn sign(
    pilot: &str,
    version: &str,
    cert: &Path,
    key: &Path,
    revoke: bool,
    out: Option<&Path>,
) -> Result<Report> {
    let version = version_from_hex(version_hex(version))
        .ok_or_else(|| anyhow!("--version is sha256:<64 hex digits>"))?;
    let payload = Payload {
        decision: if revoke {
            Decision::Revoke
        } else {
            Decision::Accept
        },
        ..jws::acceptance(pilot, &version)
    };
    let jws = jws::sign_pem(&payload, &read(cert)?, &read(key)?)?;
    match out {
        Some(f) => {
            std::fs::write(f, format!("{jws}\n"))
                .with_context(|| format!("writing {}", f.display()))?;
            Ok(Report::new().err(format!("signature written to {}\n", f.display())))
        }
        None => Ok(Report::new().out(format!("{jws}\n"))),
    }
}

fn submit(file: &Path, gateway: &str, cert: &Path, key: &Path, cacert: &Path) -> Result<Report> {
    let jws = read(file)?.trim().to_string();
    let (pilot, version) =
        jws::peek(&jws).ok_or_else(|| anyhow!("{} is not a covenant signature", file.display()))?;
    let client = crate::client::PartnerClient::new(
        gateway,
        read(cacert)?.as_bytes(),
        read(cert)?.as_bytes(),
        read(key)?.as_bytes(),
    )
    .map_err(|e| anyhow!("client: {e}"))?;
    let path = format!(
        "/v1/pilots/{pilot}/covenant/versions/{}/signatures",
        version_hex(&version)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply = rt
        .block_on(client.send_bytes(
            hyper::Method::POST,
            &path,
            "application/jose",
            jws.into_bytes().into(),
        ))
        .map_err(|e| anyhow!("{gateway}: {e}"))?;
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    if reply.status != hyper::StatusCode::CREATED {
        bail!(
            "the gateway refused the signature ({}): {body}",
            reply.status
        );
    }
    Ok(Report::new().out(format!("{body}\n")))
}

fn status(config_file: &Path, pilot: &str) -> Result<Report> {
    let config = GatewayConfig::load(config_file)?;
    let set = crate::policy::PolicySet::load(&config.partners_file, &config.pilots_dir)?;
    let partners_bytes = std::fs::read(&config.partners_file)?;
    if !set.pilots.contains_key(pilot) {
        bail!("no pilot '{pilot}'");
    }
    let store = crate::covenant::store::Files::new(&config.data_dir);
    let v = crate::covenant::view::status(&store, &set, &partners_bytes, pilot)
        .map_err(|e| anyhow!(e))?;
    Ok(Report::new().out(render(&v)?))
}

fn names(list: &serde_json::Value) -> String {
    let v: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| match (s["partner"].as_str(), s["time"].as_str()) {
            (Some(p), Some(t)) => format!("{p} ({t})"),
            _ => s.as_str().unwrap_or("").to_string(),
        })
        .collect();
    if v.is_empty() {
        "nobody".into()
    } else {
        v.join(", ")
    }
}

fn render(v: &serde_json::Value) -> Result<String> {
    let mut t = String::new();
    writeln!(t, "pilot {}", v["pilot"].as_str().unwrap_or(""))?;
    match v["in_force"].as_object() {
        Some(f) => {
            writeln!(t, "in force: {}", f["version"].as_str().unwrap_or(""))?;
            writeln!(t, "  since {}", f["since"].as_str().unwrap_or("?"))?;
            writeln!(t, "  basis: {}", f["basis"].as_str().unwrap_or("?"))?;
            writeln!(t, "  signed by: {}", names(&f["signers"]))?;
            if f["revoked"].as_array().is_some_and(|r| !r.is_empty()) {
                writeln!(t, "  revoked by: {}", names(&f["revoked"]))?;
            }
        }
        None => writeln!(t, "in force: nothing (every flow is refused)")?,
    }
    for p in v["pending"].as_array().into_iter().flatten() {
        writeln!(t, "pending: {}", p["version"].as_str().unwrap_or(""))?;
        writeln!(t, "  signed by: {}", names(&p["signed"]))?;
        writeln!(t, "  waiting for: {}", names(&p["waiting_for"]))?;
        for (who, flows) in p["flows"].as_object().into_iter().flatten() {
            for f in flows.as_array().into_iter().flatten() {
                writeln!(t, "    {who}: {}", f.as_str().unwrap_or(""))?;
            }
        }
    }
    Ok(t)
}
