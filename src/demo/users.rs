//! The demo's way into the console: a privacy officer and an administrator,
//! each with a one-time link that logs the browser in, so nobody has to
//! copy a token out of a terminal to look at the log the demo just wrote.

use std::net::SocketAddr;

use crate::config::GatewayConfig;
use crate::console::users::{self, NewUser, Role};
use crate::gateway::Gateway;

/// The demo's privacy officer (of every partner) and administrator (of
/// every pilot).
pub const USERS: [(&str, Role, &str); 2] = [
    ("fg-demo", Role::PrivacyOfficer, "privacy officer"),
    ("beheerder-demo", Role::PolicyAdmin, "administrator"),
];

/// Adds the demo's users to a fresh demo folder, each without a token: the
/// link is their only way in. Blocking.
pub fn add(cfg: &GatewayConfig) -> Result<(), String> {
    for (name, role, _) in USERS {
        let new = NewUser {
            name: name.to_string(),
            role,
            partner: None,
            pilot: None,
            certificate: None,
            expires_days: Some(1),
        };
        users::add_user(cfg, new).map_err(|e| format!("console user {name}: {e}"))?;
    }
    Ok(())
}

/// Prints, for each demo user, a link that logs in once.
pub fn print_links(gw: &Gateway, console: SocketAddr) {
    println!("Open the console (each link works once):");
    for (name, _, what) in USERS {
        if let Some(token) = gw.console.sessions.issue_link(name) {
            println!(
                "  as {what} ({name}): https://127.0.0.1:{}/login?once={token}",
                console.port()
            );
        }
    }
}
