//! `ketenpoort user`: console accounts, managed on the gateway's machine.
//! The rules of who may be bound to what live in `console::users`, shared
//! with every other way a user is made; this file only words the result.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;

use super::report::Report;
use crate::config::GatewayConfig;
use crate::console::users::{self, CertificateBinding, NewUser, Role};

#[derive(Subcommand)]
#[allow(missing_docs)]
pub enum UserCommand {
    /// Add a user and print its token (once; only its hash is kept), or bind
    /// it to a personal certificate (then no token is made).
    Add {
        /// Login name.
        name: String,
        /// What the user may do.
        #[arg(long, value_enum)]
        role: Role,
        /// Bind a privacy officer to one partner's records.
        #[arg(long)]
        partner: Option<String>,
        /// Bind a policy admin to one pilot.
        #[arg(long)]
        pilot: Option<String>,
        /// The user's personal certificate (PEM): it logs in with it, by
        /// subject and public key, and gets no token.
        #[arg(long)]
        certificate: Option<PathBuf>,
        /// The user ends this many days from now, however it logs in.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3660))]
        expires_days: Option<u32>,
    },
    /// List the users (never their tokens).
    List,
    /// Remove a user; its token stops working at once.
    Revoke {
        /// Login name.
        name: String,
    },
}

/// Runs a `user` subcommand.
pub fn run(config_file: &Path, command: UserCommand) -> Result<Report> {
    let config = GatewayConfig::load(config_file)?;
    match command {
        UserCommand::Add {
            name,
            role,
            partner,
            pilot,
            certificate,
            expires_days,
        } => {
            let certificate = certificate
                .map(|f| CertificateBinding::of_pem_file(&f))
                .transpose()?;
            let subject = certificate.as_ref().map(|c| c.subject.clone());
            let new = NewUser {
                name: name.clone(),
                role,
                partner,
                pilot,
                certificate,
                expires_days,
            };
            match (users::add_user(&config, new)?, subject) {
                // The token alone on standard output, so a script can capture
                // it; the words around it on standard error.
                (Some(token), _) => Ok(Report::new()
                    .err(format!(
                        "user {name} added as {}; its token (shown once, keep it safe):\n",
                        role.as_str()
                    ))
                    .out(format!("{token}\n"))),
                (None, subject) => Ok(Report::new().out(format!(
                    "user {name} added as {}; logs in with the certificate of {}\n",
                    role.as_str(),
                    subject.unwrap_or_default()
                ))),
            }
        }
        UserCommand::List => {
            let seen = crate::console::last_use::read(&config.data_dir);
            let mut text =
                String::from("name\trole\tbinding\tlogin\tcreated\texpires\tlast used\n");
            for u in users::list(&config.data_dir)? {
                let login = match (&u.certificate, &u.token_sha256) {
                    (Some(c), _) => format!("certificate {}", c.subject),
                    (None, Some(_)) => "token".to_string(),
                    (None, None) => "-".to_string(),
                };
                let last = seen
                    .get(&u.name)
                    .map(|t| crate::audit::record::format_micros(*t));
                text.push_str(&format!(
                    "{}\t{}\t{}\t{login}\t{}\t{}\t{}\n",
                    u.name,
                    u.role.as_str(),
                    u.partner.or(u.pilot).unwrap_or_else(|| "-".into()),
                    u.created,
                    u.expires.unwrap_or_else(|| "-".into()),
                    last.unwrap_or_else(|| "never".into()),
                ));
            }
            Ok(Report::new().out(text))
        }
        UserCommand::Revoke { name } => {
            users::revoke(&config.data_dir, &name)?;
            Ok(Report::new().out(format!("user {name} revoked\n")))
        }
    }
}
