//! Refusals before the pipeline: a certificate of no partner (or of two), a
//! revoked or expired certificate on an open connection, a path that is no
//! route. Every refusal is recorded, but a stranger must not be able to grow
//! the append-only log at handshake rate: per source address and kind, at
//! most one record per minute, and the refusals folded into that minute are
//! counted in the next record (`folded`), or in one written when the minute
//! ends.

use std::net::IpAddr;

use tokio::time::Instant;
use tracing::warn;

use crate::audit::{Decision, Entry};
pub use crate::conn::Stranger;
use crate::gateway::Gateway;

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
