//! Console sessions, held on the server: a browser gets a random session id
//! in a cookie and nothing else; who it is, since when, and its CSRF token
//! stay here. Also the one-time login links (`/login?once=`).
//!
//! Kept in memory only: a restart logs everyone out, which is the safe
//! direction. Both tables are bounded; a full session table drops the
//! session idle the longest, so logging in always works and a crowd of
//! logins cannot grow memory.
//!
//! Ids and link tokens are stored by their SHA-256, like user tokens, so a
//! look at this process's memory or a debug print gives nothing to replay.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::rand::{SecureRandom, SystemRandom};

use crate::identity::sha256;

/// Most sessions held at once.
pub const MAX_SESSIONS: usize = 10_000;
/// A session ends this long after login however active it is: a stolen
/// cookie does not live forever.
pub const MAX_SESSION_AGE: Duration = Duration::from_secs(12 * 3600);
/// Most one-time links waiting to be used.
pub const MAX_LINKS: usize = 256;
/// A one-time link not used within this time is gone.
pub const LINK_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// How a session was opened, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A bearer token given to `POST /api/v1/session`.
    Token,
    /// A personal certificate presented in the TLS handshake.
    Certificate,
    /// A one-time link.
    Link,
    /// An organisation's identity provider (OpenID Connect).
    Oidc,
}

impl Method {
    /// The word in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Certificate => "certificate",
            Self::Link => "link",
            Self::Oidc => "oidc",
        }
    }
}

/// One session as the console sees it on a request.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user's name; the user itself is read again on every request.
    pub user: String,
    /// A user from an identity provider's claims, who is in no users file:
    /// the session holds it whole.
    pub external: Option<super::users::User>,
    /// The token a state-changing request must carry in `X-CSRF-Token`.
    pub csrf: String,
    /// How it was opened.
    pub method: Method,
    /// For a session opened with a certificate: the SHA-256 of that
    /// certificate, which every request of the session must come with.
    pub certificate: Option<[u8; 32]>,
    opened: Instant,
    last: Instant,
}

/// Why a session cookie did not lead to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// No such session: never was, logged out, or dropped when full.
    Unknown,
    /// Idle longer than the idle timeout, or past its maximum age.
    Expired,
}

/// The sessions and the one-time links.
#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    links: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

/// 32 random bytes, base64url: a session id, CSRF token or link token.
fn random_token() -> Option<String> {
    let mut raw = [0u8; 32];
    SystemRandom::new().fill(&mut raw).ok()?;
    Some(B64URL.encode(raw))
}

fn key(secret: &str) -> [u8; 32] {
    sha256(secret.as_bytes())
}

impl Sessions {
    /// An empty table whose sessions end after `idle` without a request.
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            sessions: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
        }
    }

    /// The idle timeout.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.last) < self.idle && now.duration_since(s.opened) < MAX_SESSION_AGE
    }

    /// Opens a session for a user; returns the id for the cookie and the
    /// session. `None` only when the system's random source fails.
    pub fn open(
        &self,
        user: &super::users::User,
        method: Method,
        certificate: Option<[u8; 32]>,
        external: bool,
    ) -> Option<(String, Session)> {
        let id = random_token()?;
        let now = Instant::now();
        let s = Session {
            user: user.name.clone(),
            external: external.then(|| user.clone()),
            csrf: random_token()?,
            method,
            certificate,
            opened: now,
            last: now,
        };
        let mut t = self.table();
        if t.len() >= MAX_SESSIONS {
            t.retain(|_, s| now.duration_since(s.last) < self.idle);
        }
        if t.len() >= MAX_SESSIONS
            && let Some(oldest) = t.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| *k)
        {
            t.remove(&oldest);
        }
        t.insert(key(&id), s.clone());
        Some((id, s))
    }

    /// The session of a cookie's id, its idle clock restarted; an expired
    /// one is removed.
    pub fn get(&self, id: &str) -> Result<Session, Ended> {
        let k = key(id);
        let now = Instant::now();
        let mut t = self.table();
        let s = t.get_mut(&k).ok_or(Ended::Unknown)?;
        if !self.alive(s, now) {
            t.remove(&k);
            return Err(Ended::Expired);
        }
        s.last = now;
        Ok(s.clone())
    }

    /// Ends a session (logout); true when there was one.
    pub fn close(&self, id: &str) -> bool {
        self.table().remove(&key(id)).is_some()
    }

    /// Ends every session of a user.
    pub fn close_user(&self, user: &str) {
        self.table().retain(|_, s| s.user != user);
    }

    /// Sessions held now (live or not yet swept).
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A one-time link token for a user, valid for [`LINK_LIFETIME`]; the
    /// oldest waiting link makes room when [`MAX_LINKS`] wait.
    pub fn issue_link(&self, user: &str) -> Option<String> {
        let token = random_token()?;
        let now = Instant::now();
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|_, (_, made)| now.duration_since(*made) < LINK_LIFETIME);
        if links.len() >= MAX_LINKS
            && let Some(oldest) = links.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k)
        {
            links.remove(&oldest);
        }
        links.insert(key(&token), (user.to_string(), now));
        Some(token)
    }

    /// Takes a link token: the user it was made for, once; `None` for a
    /// token used before, expired or never made.
    pub fn redeem_link(&self, token: &str) -> Option<String> {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        let (user, made) = links.remove(&key(token))?;
        (made.elapsed() < LINK_LIFETIME).then_some(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> crate::console::users::User {
        crate::console::users::User {
            name: name.into(),
            role: crate::console::users::Role::PrivacyOfficer,
            partner: None,
            pilot: None,
            token_sha256: None,
            certificate: None,
            created: String::new(),
            expires: None,
        }
    }

    #[test]
    fn the_table_stays_bounded_and_drops_the_longest_idle() {
        let s = Sessions::new(Duration::from_secs(900));
        let (first, _) = s.open(&user("a"), Method::Token, None, false).unwrap();
        for _ in 1..MAX_SESSIONS {
            s.open(&user("b"), Method::Token, None, false).unwrap();
        }
        // The first is used again, so another one is the longest idle.
        assert!(s.get(&first).is_ok());
        s.open(&user("c"), Method::Token, None, false).unwrap();
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get(&first).is_ok(), "the session in use stays");
    }

    #[test]
    fn a_link_works_once() {
        let s = Sessions::new(Duration::from_secs(900));
        let t = s.issue_link("fg").unwrap();
        assert_eq!(s.redeem_link(&t).as_deref(), Some("fg"));
        assert_eq!(s.redeem_link(&t), None);
        assert_eq!(s.redeem_link("made-up"), None);
    }
}
