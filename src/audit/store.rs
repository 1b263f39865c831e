//! The audit store as the gateway holds it: the [`Audit`] handle, where the
//! store lives ([`Options`]), and the paths the rest of the crate uses.
//!
//! `Audit::record` hands an entry to the writer and returns once the record is
//! in a segment file and `fdatasync` has returned (on PostgreSQL: once its
//! transaction has committed, see [`super::pg`]); an error means nothing may
//! be delivered. The work is split by concern:
//! - `writer`: the one thread that appends, with group commit;
//! - `indexer`: the thread that indexes answered records, off their path;
//! - `view`: reads, proofs, queries and statistics ([`View`]);
//! - `recovery`: opening the log after a stop or a crash;
//! - `subject`: the per-pilot, per-month keys of subject pseudonyms ([`SubjectKeys`]);
//! - `retention`: destroying the keys of months past retention;
//! - `error`: why the store failed ([`AuditError`]).
//!
//! This module re-exports their public items, so that `audit::store::View`
//! and the like stay the one path callers use.

use std::fs;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::checkpoint::{Checkpoint, Signer, Verifier};
use super::merkle::Hash;
use super::pg::PgLog;
use super::pg::tree::Signing;
use super::record::Entry;
use super::rotation::{KeyHistory, Rotated, SharedKeys};
use super::writer::{Cmd, Writer};

pub use super::error::{AuditError, IndexError, LogDamage, OutOfRange, ReadError};
pub use super::options::{MAX_BATCH, MAX_PAGE, Options, QUEUE, Receipt};
pub use super::subject::{KeyId, LOOKUP_SCOPE, SubjectKeys};
pub use super::view::{Filter, Head, Page, View};

/// Takes the log's writer lock (`<dir>/writer.lock`, as the writer holds
/// it) for a tool that reads the whole log and must not run while another
/// process writes it, nor let one start: held until the file is dropped.
pub fn lock_writer(dir: &std::path::Path) -> Result<fs::File, AuditError> {
    super::writer::lock_log(dir)
}

/// The audit log, as the gateway uses it.
pub struct Audit {
    /// The writer's queue; bounded, so callers wait when it is full.
    tx: mpsc::Sender<Cmd>,
    /// The read side, shared with the writer, which publishes to it.
    view: Arc<View>,
    /// Turns V-nummers into the subject pseudonyms of records and queries.
    pub(super) subject_keys: SubjectKeys,
    /// Every checkpoint key of the log, the current one last: handed to
    /// partners who check the log. The writer changes it on a rotation.
    keys: SharedKeys,
    /// The writer thread, joined at shutdown so its last checkpoint lands,
    /// then the indexer, so the index reaches the head before it is flushed.
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Where callers' waits are timed (the gateway's metrics).
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

impl Audit {
    /// Opens the store: recovers a torn tail, catches the caches and indexes up,
    /// checks the latest checkpoint, and starts the writer thread. Blocking.
    pub fn open(opts: Options) -> Result<Self, AuditError> {
        if let crate::config::Storage::Postgres(settings) = &opts.storage {
            return Self::open_pg(&opts, settings);
        }
        let (mut writer, view) = Writer::open(opts.clone())?;
        let mut threads = Vec::new();
        if view.index.is_some() {
            let (feed, indexer) = super::indexer::spawn(view.clone()).map_err(AuditError::write)?;
            writer.index_feed = Some(feed);
            threads.push(indexer);
        }
        let subject_keys = SubjectKeys::new(&opts.keys_dir);
        subject_keys
            .mark_legacy(view.head().size)
            .map_err(AuditError::write)?;
        let keys = writer.keys.clone();
        let vkey = writer.signer.vkey();
        let _ = fs::write(opts.dir.join("checkpoint.vkey"), format!("{vkey}\n"));
        let (tx, rx) = mpsc::channel(QUEUE);
        let ticker = tx.downgrade();
        let interval = opts.checkpoint_interval;
        std::thread::Builder::new()
            .name("audit-ticker".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let Some(tx) = ticker.upgrade() else { break };
                    if tx.blocking_send(Cmd::Tick).is_err() {
                        break;
                    }
                }
            })
            .map_err(AuditError::write)?;
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(AuditError::write)?;
        threads.insert(0, handle);
        Ok(Self {
            tx,
            view,
            subject_keys,
            keys,
            threads: std::sync::Mutex::new(threads),
            metrics: opts.metrics.clone(),
        })
    }

    /// Opens the shared log in PostgreSQL: applies migrations, refuses a
    /// checkpoint key other than the one the database knows, reads the head,
    /// then starts the writer thread and the tree tasks. Blocking.
    fn open_pg(opts: &Options, settings: &crate::config::Postgres) -> Result<Self, AuditError> {
        let pg = PgLog::connect(settings, &opts.node)?;
        pg.migrate()?;
        let signer =
            Signer::load_or_create(&opts.signing_key(), &opts.origin).map_err(AuditError::write)?;
        let vkey = signer.vkey();
        pg.check_key("checkpoint-vkey", &vkey)?;
        let verifier = Verifier::parse(&vkey)
            .map_err(|e| AuditError::Database(format!("own verifier key: {e}")))?;
        pg.follow_now(&verifier)?;
        let view = Arc::new(View::for_pg(opts.dir.clone(), pg.clone()));
        let shown = Arc::downgrade(&view);
        pg.on_checkpoint(Box::new(move |cp| {
            if let Some(v) = shown.upgrade() {
                v.set_latest(cp);
            }
        }));
        let signing = Signing {
            interval: opts.checkpoint_interval,
            records: opts.checkpoint_records,
        };
        let shared = super::pg::keys::PgKeys::open(pg.clone(), &opts.keys_dir)?;
        pg.start_tree(signer, verifier, signing);
        let subject_keys = SubjectKeys::shared(&opts.keys_dir, Arc::new(shared));
        subject_keys
            .mark_legacy(view.head().size)
            .map_err(AuditError::write)?;
        if fs::create_dir_all(&opts.dir).is_ok() {
            let _ = fs::write(opts.dir.join("checkpoint.vkey"), format!("{vkey}\n"));
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || pg.run_writer(rx))
            .map_err(AuditError::write)?;
        // One key for the deployment: rotating it on PostgreSQL is not
        // built yet (the writer refuses), so the history is that key alone.
        let keys = Arc::new(std::sync::RwLock::new(KeyHistory::first(&vkey)));
        Ok(Self {
            tx,
            view,
            subject_keys,
            keys,
            threads: std::sync::Mutex::new(vec![handle]),
            metrics: opts.metrics.clone(),
        })
    }

    /// Writes a record and returns once it is durable. An error means it is
    /// not, and nothing may be delivered.
    pub async fn record(&self, entry: Entry) -> Result<Receipt, AuditError> {
        let started = std::time::Instant::now();
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Append(Box::new(entry), tx))
            .await
            .map_err(|_| AuditError::Closed)?;
        let r = rx.await.map_err(|_| AuditError::Closed)?;
        self.waited(started);
        r
    }

    /// Counts a caller's wait for durability in the gateway's metrics.
    fn waited(&self, started: std::time::Instant) {
        if let Some(m) = &self.metrics {
            m.audit_wait_seconds
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// `rotate_key` for a tool that opened the log itself (no gateway
    /// runs). Blocking.
    pub fn rotate_key_blocking(&self) -> Result<Rotated, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .blocking_send(Cmd::Rotate(tx))
            .map_err(|_| AuditError::Closed)?;
        rx.blocking_recv().map_err(|_| AuditError::Closed)?
    }

    /// Writes several records at once (one batch, one sync); all or nothing
    /// is reported durable per record, in order.
    pub async fn record_many(&self, entries: Vec<Entry>) -> Vec<Result<Receipt, AuditError>> {
        let started = std::time::Instant::now();
        let mut waiting = Vec::with_capacity(entries.len());
        for e in entries {
            let (tx, rx) = oneshot::channel();
            match self.tx.send(Cmd::Append(Box::new(e), tx)).await {
                Ok(()) => waiting.push(Some(rx)),
                Err(_) => waiting.push(None),
            }
        }
        let mut out = Vec::with_capacity(waiting.len());
        for rx in waiting {
            out.push(match rx {
                Some(rx) => rx.await.unwrap_or(Err(AuditError::Closed)),
                None => Err(AuditError::Closed),
            });
        }
        self.waited(started);
        out
    }

    /// `record` for threads outside the runtime (tools, generators).
    pub fn record_blocking(&self, entry: Entry) -> Result<Receipt, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .blocking_send(Cmd::Append(Box::new(entry), tx))
            .map_err(|_| AuditError::Closed)?;
        rx.blocking_recv().map_err(|_| AuditError::Closed)?
    }

    /// Signs a checkpoint of the log as it is now.
    pub async fn checkpoint(&self) -> Result<Checkpoint, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Checkpoint(tx))
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Read access: records, proofs, queries. Its methods block on file
    /// reads: call them from blocking threads.
    pub fn view(&self) -> &Arc<View> {
        &self.view
    }

    /// The subject pseudonym of a V-nummer in a record of `pilot` written
    /// now (under the pilot's key of this month; [`LOOKUP_SCOPE`] for
    /// look-ups). An error means the key cannot be made: nothing may be
    /// recorded, so nothing may be delivered.
    pub fn subject(&self, pilot: &str, vnummer: &str) -> Result<Hash, AuditError> {
        self.subject_keys
            .pseudonym_now(pilot, vnummer)
            .map_err(AuditError::write)
    }

    /// The pseudonyms of a V-nummer under every subject key that still
    /// exists: what a search by subject looks for.
    pub fn subjects(&self, vnummer: &str) -> Result<Vec<Hash>, AuditError> {
        self.subject_keys
            .pseudonyms(vnummer)
            .map_err(AuditError::write)
    }

    /// The subject keys (for retention and its status).
    pub fn subject_keys(&self) -> &SubjectKeys {
        &self.subject_keys
    }

    /// The checkpoint verifier key in force (`name+hash+base64`).
    pub fn vkey(&self) -> String {
        self.key_history().current_vkey().to_string()
    }

    /// Every checkpoint key of the log, with the sizes each signs from and
    /// the checkpoints that announced them.
    pub fn key_history(&self) -> KeyHistory {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the checkpoint signing key: the writer signs a checkpoint
    /// of the log as it is now with the old and the new key, records the
    /// new key in the history, and signs with it alone from then on.
    pub async fn rotate_key(&self) -> Result<Rotated, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Rotate(tx))
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Stops the writer after what is queued (a final checkpoint included) and
    /// flushes the index; later `record` calls fail. Blocking.
    pub fn shutdown(&self) {
        let _ = self.tx.blocking_send(Cmd::Shutdown);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for h in threads {
            let _ = h.join();
        }
        if let Some(ix) = &self.view.index {
            let _ = ix.flush();
        }
    }
}
