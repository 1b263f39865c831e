//! Limits on connections, so that no client can lock partners out.
//!
//! An idle crowd (thousands of TCP or TLS connections that never send a
//! request, from one holder of any certificate or from no certificate at all)
//! once took every slot of a listener. The gateway now counts connections per
//! source address before the handshake and per partner after it, closes
//! connections that stay idle or grow old, and closes those of a certificate
//! that is revoked or expires while they are open; and refusals before the
//! pipeline are folded per source and minute ([`Folder`]), so that a stranger
//! cannot grow the append-only log at handshake rate.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::tls::TlsStore;

/// Open connections per key (a source address, a partner), up to a limit.
#[derive(Debug)]
pub struct Tally<K: Eq + Hash + Clone> {
    open: Arc<Mutex<HashMap<K, usize>>>,
    limit: usize,
}

/// One counted connection; uncounted on drop.
#[derive(Debug)]
pub struct Counted<K: Eq + Hash + Clone> {
    open: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Tally<K> {
    /// A tally allowing `limit` open connections per key.
    pub fn new(limit: usize) -> Self {
        Self {
            open: Arc::default(),
            limit,
        }
    }

    /// Counts one more connection for `key`, or `None` when it has its limit.
    pub fn take(&self, key: K) -> Option<Counted<K>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key.clone()).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Counted {
            open: self.open.clone(),
            key,
        })
    }
}

impl<K: Eq + Hash + Clone> Drop for Counted<K> {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// What one connection's tasks share: who is at the other end, whether it
/// is busy, and whether it must close.
#[derive(Debug)]
pub struct ConnState {
    /// The peer's address (for folding refusals per source; never recorded).
    pub addr: SocketAddr,
    /// Requests being served now.
    inflight: AtomicUsize,
    /// When the last request ended (or the connection began).
    last: Mutex<Instant>,
    /// Set when the certificate was revoked or expired: every further
    /// request on this connection is refused.
    revoked: AtomicBool,
    /// Wakes the connection's driver to close it gracefully.
    close: Notify,
    /// The certificate chain the peer presented (empty on the console).
    chain: Vec<CertificateDer<'static>>,
    /// When the leaf certificate stops being valid.
    not_after: Option<std::time::SystemTime>,
    /// The TLS generation the chain was last checked against: a request
    /// that finds a newer one checks again before it is served, so no
    /// request slips through between a CRL reload and the watcher.
    checked: AtomicU64,
}

/// Marks a request in flight; the connection is not idle until dropped.
pub struct Busy<'a>(&'a ConnState);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnState {
    /// When the peer's certificate stops being valid, if it presented one.
    pub fn not_after(&self) -> Option<std::time::SystemTime> {
        self.not_after
    }

    /// A fresh connection from `addr` without a client certificate.
    pub fn new(addr: SocketAddr) -> Self {
        Self::with_chain(addr, Vec::new(), 0)
    }

    /// A fresh connection from `addr` whose peer presented `chain`, checked
    /// at TLS generation `generation` (the handshake's).
    pub fn with_chain(
        addr: SocketAddr,
        chain: Vec<CertificateDer<'static>>,
        generation: u64,
    ) -> Self {
        let not_after = chain.first().and_then(not_after);
        Self {
            addr,
            inflight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
            revoked: AtomicBool::new(false),
            close: Notify::new(),
            chain,
            not_after,
            checked: AtomicU64::new(generation),
        }
    }

    /// Checks, before a request is served, that the connection's certificate
    /// still holds: not expired, and valid under the current CRLs when they
    /// changed since the last check. False (and the connection closing) when
    /// it does not.
    pub fn still_trusted(&self, tls: &TlsStore) -> bool {
        if self.revoked() {
            return false;
        }
        if self.chain.is_empty() {
            return true;
        }
        let expired = self
            .not_after
            .is_some_and(|t| std::time::SystemTime::now() >= t);
        let generation = tls.generation();
        let stale = self.checked.swap(generation, Ordering::AcqRel) != generation;
        if expired || (stale && !tls.still_valid(&self.chain)) {
            self.revoked.store(true, Ordering::Release);
            self.close();
            return false;
        }
        true
    }

    /// A request begins.
    pub fn busy(&self) -> Busy<'_> {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        Busy(self)
    }

    /// Resolves once no request has been in flight for `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
            let due = last + timeout;
            if self.inflight.load(Ordering::Acquire) == 0 && Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.max(Instant::now() + Duration::from_millis(100))).await;
        }
    }

    /// True once the certificate of this connection no longer holds.
    pub fn revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Asks the connection to close once its requests are answered.
    pub fn close(&self) {
        self.close.notify_one();
    }

    /// Resolves when [`ConnState::close`] was called.
    pub async fn closing(&self) {
        self.close.notified().await
    }

    /// Watches the connection's certificate until it is revoked by a
    /// reloaded CRL (or no longer verifies for another reason) or expires;
    /// then marks the connection revoked and closes it.
    pub async fn watch_certificate(&self, tls: &TlsStore) {
        let mut reloads = tls.subscribe();
        let expiry = match self
            .not_after
            .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
        {
            Some(left) => Instant::now() + left,
            None => Instant::now(),
        };
        let expired = tokio::time::sleep_until(expiry);
        tokio::pin!(expired);
        loop {
            tokio::select! {
                changed = reloads.changed() => {
                    if changed.is_err() {
                        return std::future::pending().await;
                    }
                    if !tls.still_valid(&self.chain) {
                        break;
                    }
                }
                _ = &mut expired => break,
            }
        }
        self.revoked.store(true, Ordering::Release);
        self.close();
    }
}

/// When a certificate stops being valid, from its DER.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<std::time::SystemTime> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    let secs = c.validity().not_after.timestamp();
    Some(std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Raises the soft limit of open files to the hard limit: every connection
/// is a descriptor, and the default soft limit (1024) is below the limits
/// above.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::warn!(error = %e, "could not raise the open-files limit");
        }
    }
}

/// One record per source and kind per this window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Sources tracked at once; beyond it, refusals of new sources share one
/// window (the address is not what matters, the bound is).
const MAX_SOURCES: usize = 4096;

/// Who was refused, as far as the record may say (never the address).
#[derive(Debug, Clone)]
pub struct Stranger {
    /// The partner, when the certificate named one; else `unknown`.
    pub sender: String,
    /// SHA-256 of the certificate presented.
    pub cert_sha256: Option<[u8; 32]>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    folded: u32,
    last: Stranger,
}

/// The windows of refusals per source and kind.
#[derive(Debug, Default)]
pub struct Folder {
    windows: Mutex<HashMap<(IpAddr, &'static str), Window>>,
}

impl Folder {
    /// One refusal of `kind` from `ip`: `Some(n)` when it is to be recorded
    /// now, standing for `n` earlier ones folded; `None` when it is folded.
    pub fn admit(
        &self,
        ip: IpAddr,
        kind: &'static str,
        who: &Stranger,
        now: Instant,
    ) -> Option<u32> {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = (ip, kind);
        if w.len() >= MAX_SOURCES && !w.contains_key(&key) {
            w.retain(|_, win| now.duration_since(win.start) < WINDOW || win.folded > 0);
            if w.len() >= MAX_SOURCES {
                key = (IpAddr::from([0u8, 0, 0, 0]), kind);
            }
        }
        match w.get_mut(&key) {
            Some(win) if now.duration_since(win.start) < WINDOW => {
                win.folded = win.folded.saturating_add(1);
                win.last = who.clone();
                None
            }
            Some(win) => {
                let n = std::mem::take(&mut win.folded);
                win.start = now;
                win.last = who.clone();
                Some(n)
            }
            None => {
                w.insert(
                    key,
                    Window {
                        start: now,
                        folded: 0,
                        last: who.clone(),
                    },
                );
                Some(0)
            }
        }
    }

    /// Windows that ended: the ones with folded refusals to record, and
    /// forgets them all.
    pub fn drain_ended(&self, now: Instant) -> Vec<(&'static str, Stranger, u32)> {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        w.retain(|(_, kind), win| {
            if now.duration_since(win.start) < WINDOW {
                return true;
            }
            if win.folded > 0 {
                out.push((*kind, win.last.clone(), win.folded));
            }
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_per_source_kind_and_minute_with_the_rest_counted() {
        let f = Folder::default();
        let who = Stranger {
            sender: "unknown".into(),
            cert_sha256: None,
        };
        let a = IpAddr::from([127, 0, 0, 2]);
        let t0 = Instant::now();
        assert_eq!(f.admit(a, "unknown-partner", &who, t0), Some(0));
        for i in 1..=100 {
            assert_eq!(
                f.admit(a, "unknown-partner", &who, t0 + Duration::from_millis(i)),
                None
            );
        }
        // Another kind, another source: their own windows.
        assert_eq!(f.admit(a, "bad-route", &who, t0), Some(0));
        assert_eq!(
            f.admit(IpAddr::from([127, 0, 0, 3]), "unknown-partner", &who, t0),
            Some(0)
        );
        // The next minute's first refusal carries the count.
        assert_eq!(f.admit(a, "unknown-partner", &who, t0 + WINDOW), Some(100));
        assert_eq!(f.admit(a, "unknown-partner", &who, t0 + WINDOW), None);
        let ended = f.drain_ended(t0 + WINDOW * 3);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].2, 1);
        assert!(f.drain_ended(t0 + WINDOW * 3).is_empty());
    }
}
