//! `ketenpoort user`: console accounts, managed on the gateway's machine.
//! The rules of who may be bound to what live in `console::users`, shared
//! with every other way a user is made; this file only words the result.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

use super::report::Report;
use crate::config::GatewayConfig;
use crate::console::users::{self, Role};

#[derive(Subcommand)]
#[allow(missing_docs)]
pub enum UserCommand {
    /// Add a user and print its token (once; only its hash is kept).
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
        } => {
            let token = users::add(&config, &name, role, partner, pilot)?;
            // The token alone on standard output, so a script can capture it;
            // the words around it on standard error.
            Ok(Report::new()
                .err(format!(
                    "user {name} added as {}; its token (shown once, keep it safe):\n",
                    role.as_str()
                ))
                .out(format!("{token}\n")))
        }
        UserCommand::List => {
            let mut text = String::new();
            for u in users::list(&config.data_dir)? {
                text.push_str(&format!(
                    "{}\t{}\t{}\t{}\n",
                    u.name,
                    u.role.as_str(),
                    u.partner.or(u.pilot).unwrap_or_else(|| "-".into()),
                    u.created
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
