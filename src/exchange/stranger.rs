//! Refusals before the pipeline: a certificate of no partner (or of two), a
//! revoked or expired certificate on an open connection, a path that is no
//! route. Every refusal is recorded, but a stranger must not be able to grow
//! the append-only log at handshake rate: per source address and kind, at
//! most one record per minute, and the refusals folded into that minute are
//! counted in the next record (`folded`), or in one written when the minute
//! ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use crate::audit::{Decision, Entry};
use crate::server::Gateway;

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

fn entry(kind: &'static str, who: &Stranger, folded: u32) -> Entry {
    let mut e = Entry::exchange("", &who.sender, "ketenpoort", "", "");
    e.decision = Decision::Refused;
    e.reason = kind.to_string();
    e.sender_cert_sha256 = who.cert_sha256;
    e.folded = folded;
    e
}

/// Records one refusal before the pipeline, unless it is folded into its
/// source's window. Returns the record id when one was written.
pub async fn record(gw: &Gateway, ip: IpAddr, kind: &'static str, who: Stranger) -> Option<u64> {
    let n = gw.strangers.admit(ip, kind, &who, Instant::now())?;
    match gw.audit.record(entry(kind, &who, n)).await {
        Ok(r) => Some(r.id),
        Err(e) => {
            warn!(error = %e, reason = kind, "refusal before the pipeline could not be recorded");
            None
        }
    }
}

/// Records the refusals folded into windows that have ended.
pub async fn record_ended(gw: &Gateway) {
    for (kind, who, n) in gw.strangers.drain_ended(Instant::now()) {
        if let Err(e) = gw.audit.record(entry(kind, &who, n)).await {
            warn!(error = %e, reason = kind, "folded refusals could not be recorded");
        }
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
