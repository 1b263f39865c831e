//! Keeps the secondary indexes off the path of an answer.
//!
//! The writer answers its callers once their records are durable and
//! readable by id; it then offers the records to this thread, which adds them
//! to the index while the writer is already syncing the next batch. A query
//! never misses a record the index has not reached yet: it scans the few
//! records between the index's marker and the head itself (see
//! `View::query`), so "a query sent after a partner got its answer finds that
//! answer's record" holds without anyone waiting.
//!
//! The offer never blocks the writer. When the queue is full, or the index
//! cannot be written (a full disk), records are dropped here and read back
//! from the segments later: the segments are the truth, the index only a
//! faster way in. The same catch-up runs at start, so a restart after a crash
//! serves at once while the index fills behind it.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::error::AuditError;
use super::options::INDEX_BATCH;
use super::record::Record;
use super::view::View;

/// Batches that may wait for the indexer; more are dropped and read back
/// from the segments.
const QUEUE: usize = 256;

/// How often the indexer looks for records it has not been offered (dropped
/// offers, a failed write, the backlog at start).
const SWEEP: Duration = Duration::from_millis(250);

/// How long the indexer gathers the writer's batches into one of its own.
/// Queries scan what the index has not reached, so this adds at most a
/// gather's records to a query's scan.
const GATHER: Duration = Duration::from_millis(50);

/// The writer's end: offers batches of records, never waits.
pub(super) struct IndexFeed {
    tx: SyncSender<Vec<Record>>,
}

impl IndexFeed {
    /// Offers records (consecutive ids) to the indexer; drops them when its
    /// queue is full.
    pub(super) fn offer(&self, records: Vec<Record>) {
        let _ = self.tx.try_send(records);
    }
}

/// Starts the indexer for `view`. It stops once the feed is dropped, after
/// indexing up to the head.
pub(super) fn spawn(view: Arc<View>) -> std::io::Result<(IndexFeed, JoinHandle<()>)> {
    let (tx, rx) = sync_channel(QUEUE);
    let handle = std::thread::Builder::new()
        .name("audit-indexer".into())
        .spawn(move || {
            super::index::run_in_background();
            Indexer {
                view,
                failing: false,
            }
            .run(rx)
        })?;
    Ok((IndexFeed { tx }, handle))
}

/// Joins the writer's batches that follow `batch` for up to [`GATHER`] (or
/// [`INDEX_BATCH`] records): the index pays per batch as well as per record,
/// and partners, pilots and purposes get one chunk per batch. A batch that
/// does not follow on (an offer was dropped) ends the gathering; `add`
/// reads the gap back: it comes back as the second value, to be gathered
/// after this one. The flag is false once the writer is gone.
fn gather(
    rx: &Receiver<Vec<Record>>,
    mut batch: Vec<Record>,
) -> (Vec<Record>, Option<Vec<Record>>, bool) {
    let until = Instant::now() + GATHER;
    while batch.len() < INDEX_BATCH {
        match rx.try_recv() {
            Ok(more) => {
                let follows = match (batch.last(), more.first()) {
                    (Some(a), Some(b)) => a.id + 1 == b.id,
                    _ => true,
                };
                if !follows {
                    return (batch, Some(more), true);
                }
                batch.extend(more);
            }
            // Asleep rather than waiting on the queue: an offer to a thread
            // that is not waiting wakes nobody, so the writer's batches do
            // not each cost a wake-up here.
            Err(TryRecvError::Empty) => {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left);
            }
            Err(TryRecvError::Disconnected) => return (batch, None, false),
        }
    }
    (batch, None, true)
}

struct Indexer {
    view: Arc<View>,
    /// The last write failed: logged once, not per batch.
    failing: bool,
}

impl Indexer {
    fn run(mut self, rx: Receiver<Vec<Record>>) {
        self.sweep();
        loop {
            match rx.recv_timeout(SWEEP) {
                Ok(batch) => {
                    let (mut next, mut open) = (Some(batch), true);
                    while let Some(b) = next.take() {
                        let (b, rest, still) = gather(&rx, b);
                        self.add(b);
                        (next, open) = (rest, still);
                    }
                    if !open {
                        self.sweep();
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.sweep(),
                Err(RecvTimeoutError::Disconnected) => {
                    self.sweep();
                    return;
                }
            }
        }
    }

    /// Adds an offered batch, first reading back any records before it that
    /// were not offered.
    fn add(&mut self, batch: Vec<Record>) {
        let Some(first) = batch.first().map(|r| r.id) else {
            return;
        };
        let r = self.fill(first).and_then(|()| self.index_add(&batch));
        self.outcome(r);
    }

    /// Indexes up to the head from the segments.
    fn sweep(&mut self) {
        let head = self.view.head().size;
        let r = self.fill(head);
        self.outcome(r);
    }

    /// Reads records the index lacks below `to` from the segments and adds them.
    fn fill(&self, to: u64) -> Result<(), AuditError> {
        let Some(index) = &self.view.index else {
            return Ok(());
        };
        // Opened here, on first use, off the gateway's start.
        index.ensure_open()?;
        let from = index.indexed_upto()?;
        if from >= to {
            return Ok(());
        }
        if to - from > INDEX_BATCH as u64 {
            info!(from, to, "catching the audit index up from the segments");
        }
        let mut batch = Vec::with_capacity(INDEX_BATCH.min((to - from) as usize));
        for id in from..to {
            batch.push(self.view.record_unchecked(id)?);
            if batch.len() == INDEX_BATCH {
                index.add(&batch)?;
                batch.clear();
            }
        }
        Ok(index.add(&batch)?)
    }

    fn index_add(&self, batch: &[Record]) -> Result<(), AuditError> {
        match &self.view.index {
            Some(index) => Ok(index.add(batch)?),
            None => Ok(()),
        }
    }

    fn outcome(&mut self, r: Result<(), AuditError>) {
        match r {
            Ok(()) if self.failing => {
                self.failing = false;
                info!("audit index writable again; caught up");
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                warn!(error = %e, "audit index cannot be written; queries scan the records it lacks until it catches up");
            }
            Err(_) => {}
        }
    }
}
