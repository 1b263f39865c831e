//! What the console keeps between requests: its users, their sessions and
//! last use, and the state of the one full log check that may run at a time. Held by the running gateway,
//! so it sits apart from the console's routes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};

use serde_json::Value;

use super::idp::Oidc;
use super::last_use::LastUse;
use super::session::Sessions;
use super::users::UserStore;

/// What the console keeps between requests.
#[derive(Debug)]
pub struct ConsoleState {
    /// Who may log in.
    pub users: UserStore,
    /// Who is logged in, and the one-time links waiting.
    pub sessions: Sessions,
    /// When each user last came in.
    pub last_use: LastUse,
    /// The identity providers, and logins through them under way.
    pub oidc: Oidc,
    /// A full log check is running (one at a time: it reads every record).
    pub(crate) verify_running: AtomicBool,
    /// Records checked so far by the running check.
    pub(crate) verify_progress: AtomicU64,
    /// The last check's outcome, shown until the next one ends.
    pub(crate) verify_last: Mutex<Option<Value>>,
}

impl ConsoleState {
    /// Console state with these users, sessions and last-use times.
    pub fn new(users: UserStore, sessions: Sessions, last_use: LastUse, oidc: Oidc) -> Self {
        Self {
            users,
            sessions,
            last_use,
            oidc,
            verify_running: AtomicBool::new(false),
            verify_progress: AtomicU64::new(0),
            verify_last: Mutex::new(None),
        }
    }
}
