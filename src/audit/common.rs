//! What the writer, the read view and the PostgreSQL backend share: the
//! head, query filters and pages, and the commands the `Audit` handle sends.
//! They sit in a module of their own so that the backends never import each
//! other (the view dispatches to PostgreSQL; PostgreSQL must not reach back).

use tokio::sync::oneshot;

use super::checkpoint::Checkpoint;
use super::error::AuditError;
use super::merkle::Hash;
use super::options::Receipt;
use super::record::{Decision, Entry, Record};
use super::rotation::Rotated;

/// Size and root of the log as far as it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Records.
    pub size: u64,
    /// Merkle root.
    pub root: Hash,
}

/// Query filters; all given filters must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Subject pseudonym.
    pub subject: Option<Hash>,
    /// Subject pseudonyms, any of which may match: a person's pseudonyms
    /// under every subject key that still exists
    /// (`Audit::subjects`). With `subject`, either matches.
    pub subjects: Vec<Hash>,
    /// Partner id as sender or recipient.
    pub partner: Option<String>,
    /// Pilot id.
    pub pilot: Option<String>,
    /// Purpose id.
    pub purpose: Option<String>,
    /// From this time (epoch µs, inclusive).
    pub since: Option<i64>,
    /// Until this time (epoch µs, inclusive).
    pub until: Option<i64>,
    /// Disclosed or refused.
    pub decision: Option<Decision>,
    /// Only ids below this one (the paging cursor).
    pub before: Option<u64>,
    /// Page size (capped at [`MAX_PAGE`](super::options::MAX_PAGE)).
    pub limit: usize,
}

impl Filter {
    /// Whether a record passes every given filter. The index narrows by one
    /// dimension only; this checks the rest.
    pub(super) fn matches(&self, r: &Record) -> bool {
        let e = &r.entry;
        let by_subject = match (&self.subject, self.subjects.is_empty()) {
            (None, true) => true,
            (s, _) => e
                .subject
                .is_some_and(|x| *s == Some(x) || self.subjects.contains(&x)),
        };
        by_subject
            && self
                .partner
                .as_ref()
                .is_none_or(|p| e.sender == *p || e.recipient == *p)
            && self.pilot.as_ref().is_none_or(|p| e.pilot == *p)
            && self.purpose.as_ref().is_none_or(|p| e.purpose == *p)
            && self.decision.is_none_or(|d| e.decision == d)
    }
}

/// One page of a query, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    /// The records.
    pub records: Vec<Record>,
    /// Pass as `before` for the next page; `None` when this was the last.
    pub next: Option<u64>,
}

/// Where the writer answers one append.
pub(super) type Reply = oneshot::Sender<Result<Receipt, AuditError>>;

/// What the `Audit` handle asks of the writer thread.
pub(super) enum Cmd {
    /// Append one entry; answer once it is durable.
    Append(Box<Entry>, Reply),
    /// Sign a checkpoint of the log as it is now.
    Checkpoint(oneshot::Sender<Result<Checkpoint, AuditError>>),
    /// Time passed: catch the caches up, sign if a checkpoint is due.
    Tick,
    /// Finish what is queued, sign a last checkpoint and stop.
    Shutdown,
    /// Replace the signing key, announced by both keys (see `rotation`).
    Rotate(oneshot::Sender<Result<Rotated, AuditError>>),
}
