//! Where the audit store lives, how often it signs, and its fixed limits:
//! shared by the writer, the read view and recovery, so it sits below them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::merkle::Hash;

/// Most entries written in one batch (one write, one sync).
pub const MAX_BATCH: usize = 4096;
/// Records the index takes in one write while it catches up from the segments.
pub const INDEX_BATCH: usize = 10_000;
/// Records a query scans itself beyond the index's marker (the index lags
/// the head by a batch or two; more means it cannot be written).
pub const MAX_UNINDEXED_SCAN: u64 = 1_000_000;
/// Entries that may wait for the writer; callers wait (backpressure) beyond.
pub const QUEUE: usize = 8192;
/// After a batch of several records, the writer waits up to this long
/// from the start of that batch for more entries to share the next sync.
/// At full load that makes
/// batches of about 16 instead of 4 to 7 and leaves the CPU of the syncs
/// saved to the exchanges (bench/README.md); a caller that writes one
/// record at a time never waits for it.
pub const SYNC_INTERVAL: Duration = Duration::from_micros(500);
/// Most records a query page returns.
pub const MAX_PAGE: usize = 1000;

/// Where the audit store lives and how often it signs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `<data_dir>/audit`.
    pub dir: PathBuf,
    /// `<data_dir>/keys`.
    pub keys_dir: PathBuf,
    /// `ketenpoort/<deployment>`.
    pub origin: String,
    /// A checkpoint at least this often while records arrive.
    pub checkpoint_interval: Duration,
    /// A checkpoint after this many new records.
    pub checkpoint_records: u64,
    /// Where to count records and time syncs (the gateway's metrics).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Embedded files under `dir`, or a shared PostgreSQL database.
    pub storage: crate::config::Storage,
    /// This node's name in the shared database (its partner address).
    pub node: String,
    /// A segment is closed and the next begun once a batch would take it
    /// past this many bytes ([`super::segment::SEGMENT_MAX`]; tests set it
    /// small to make the log roll).
    pub segment_max: u64,
    /// The least time between the starts of two batches
    /// ([`SYNC_INTERVAL`]).
    pub sync_interval: Duration,
}

impl Options {
    /// The usual layout under a data directory.
    pub fn new(data_dir: &Path, deployment: &str) -> Self {
        Self {
            dir: data_dir.join("audit"),
            keys_dir: crate::keys::dir(data_dir),
            origin: format!("ketenpoort/{deployment}"),
            checkpoint_interval: Duration::from_secs(10),
            checkpoint_records: 1000,
            metrics: None,
            storage: crate::config::Storage::Embedded,
            node: String::new(),
            segment_max: super::segment::SEGMENT_MAX,
            sync_interval: SYNC_INTERVAL,
        }
    }
    /// The layout of a gateway's configuration: its data directory and
    /// deployment, its storage backend, its partner address as node name.
    pub fn of(config: &crate::config::GatewayConfig) -> Self {
        let mut o = Self::new(&config.data_dir, &config.deployment);
        o.storage = config.storage.clone();
        o.node = config.partners_addr.to_string();
        o
    }
    /// The folder of the segment files.
    pub(super) fn segments(&self) -> PathBuf {
        self.dir.join("segments")
    }
    /// The offsets cache.
    pub(super) fn offsets(&self) -> PathBuf {
        self.dir.join("cache/offsets")
    }
    /// The node cache file of one tree level.
    pub(super) fn level(&self, level: usize) -> PathBuf {
        self.dir.join("cache").join(format!("level-{level:02}"))
    }
    /// The checkpoints file.
    pub fn checkpoints(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }
    /// The checkpoint signing key.
    pub fn signing_key(&self) -> PathBuf {
        self.keys_dir.join("checkpoint.ed25519")
    }
    /// The key of subject pseudonyms.
    pub fn subject_key(&self) -> PathBuf {
        self.keys_dir.join("audit-subject.key")
    }
}

/// What `record` returns once the record is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The record's id (its index in the log).
    pub id: u64,
    /// Its leaf hash.
    pub leaf: Hash,
}
