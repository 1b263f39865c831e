//! Why the audit store failed.
//!
//! The gateway fails closed on any of these (nothing is delivered), and an
//! operator reads them in the log when it refuses to start or stops writing, so
//! each message says what happened in their terms. Each error keeps its cause
//! as a typed source (the I/O error, the index store's error, the decode error, the
//! damaged frame), so that a caller can tell a full disk from a damaged log
//! without parsing text. `AuditError` is `Clone` because one failed write
//! answers every waiter of its batch: I/O errors are shared behind an `Arc`.

use std::sync::Arc;

use super::checkpoint::CheckpointError;
use super::record::DecodeError;
use super::segment;

/// Why the audit store failed. Any error from `record` means nothing may be
/// delivered.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Writing or syncing failed (disk full, I/O error).
    #[error("the audit log could not write: {0}")]
    Write(#[source] Arc<std::io::Error>),
    /// Reading failed.
    #[error("the audit log could not be read: {0}")]
    Read(#[from] ReadError),
    /// The log is damaged; it will not be written to.
    #[error("the audit log is damaged: {0}")]
    Damaged(#[from] LogDamage),
    /// The writer has stopped.
    #[error("the audit log is closed")]
    Closed,
    /// No such record, or a size beyond the log.
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    /// The index database failed or is held by another process.
    #[error("audit index: {0}")]
    Index(#[from] IndexError),
    /// An entry too large to be a record.
    #[error("audit entry too large")]
    TooLarge,
    /// The checkpoint keys do not fit together: the key file is not the
    /// last key of the history, or the history does not verify.
    #[error("checkpoint key: {0}")]
    Key(String),
    /// The PostgreSQL database is unreachable, refused the work, or does not
    /// hold the log this node expects (the message says which).
    #[error("the audit database: {0}")]
    Database(String),
}

impl AuditError {
    /// A failed write or sync.
    pub(super) fn write(e: std::io::Error) -> Self {
        Self::Write(Arc::new(e))
    }

    /// A failed read.
    pub(super) fn read(e: impl Into<ReadError>) -> Self {
        Self::Read(e.into())
    }
}

impl From<fjall::Error> for AuditError {
    fn from(e: fjall::Error) -> Self {
        Self::Index(e.into())
    }
}

/// Why the log could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A segment, cache or checkpoint file could not be read.
    #[error(transparent)]
    Io(Arc<std::io::Error>),
    /// A frame of an earlier segment is damaged (found while rebuilding the
    /// caches from it).
    #[error(transparent)]
    Frame(#[from] segment::Damage),
    /// The log has no segment file to read from.
    #[error("no segment")]
    NoSegment,
    /// The node cache has fewer levels than the tree needs.
    #[error("node cache has no level {0}")]
    NoLevel(u32),
    /// The checkpoint verifier key does not parse.
    #[error(transparent)]
    Verifier(#[from] CheckpointError),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(Arc::new(e))
    }
}

/// How the log is damaged: what it holds is not what was written.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LogDamage {
    /// A record's bytes do not decode.
    #[error("record {id}: {source}")]
    Undecodable {
        /// The record's position in the log.
        id: u64,
        /// Why it does not decode.
        #[source]
        source: DecodeError,
    },
    /// A record sits at a position other than its own id.
    #[error("record at position {id} says it is {claims}")]
    Misplaced {
        /// The position in the log.
        id: u64,
        /// The id the record carries.
        claims: u64,
    },
    /// A record of the open segment no longer hashes to the leaf written
    /// when it was appended.
    #[error("record {id} differs from the leaf hash written when it was appended")]
    LeafChanged {
        /// The record.
        id: u64,
    },
    /// A frame in the middle of the open segment is damaged (not a torn tail).
    #[error(transparent)]
    Frame(#[from] segment::Damage),
    /// A closed segment does not end cleanly where the next one begins:
    /// a broken frame or zeros at its end, or records removed or inserted.
    #[error(
        "{path}: its whole records end at record {ends} but the next segment begins at {next}, or it ends in a broken frame or zeros"
    )]
    Gap {
        /// The closed segment.
        path: String,
        /// The id after its last whole record.
        ends: u64,
        /// The first id of the next segment.
        next: u64,
    },
    /// A signed checkpoint covers more records than the log has.
    #[error(
        "a signed checkpoint covers {signed} records but the log has {size}: records were lost"
    )]
    Lost {
        /// The checkpoint's size.
        signed: u64,
        /// The log's size.
        size: u64,
    },
    /// The log's root at a signed checkpoint's size is not the signed root.
    #[error(
        "the log's root at {signed} records differs from the signed checkpoint: records were changed"
    )]
    Changed {
        /// The checkpoint's size.
        signed: u64,
    },
}

/// A record or tree size the log does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutOfRange {
    /// No record with this id (yet).
    #[error("no record {0}")]
    NoRecord(u64),
    /// A tree size beyond the durable head.
    #[error("the log has {head} records, not {size}")]
    BeyondHead {
        /// The size asked for.
        size: u64,
        /// The durable head's size.
        head: u64,
    },
    /// An inclusion proof for a record outside the tree.
    #[error("record {index} is not in a tree of {size}")]
    NotInTree {
        /// The record.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof between sizes that have none.
    #[error("no consistency proof from {size1} to {size2}")]
    NoConsistency {
        /// The older size.
        size1: u64,
        /// The newer size.
        size2: u64,
    },
}

/// Why the index failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The index database (fjall) failed, or is held by another process.
    /// Shared behind an `Arc` because `fjall::Error` is not `Clone`.
    #[error("{}", describe(.0))]
    Store(#[source] Arc<fjall::Error>),
    /// The index database is being opened: at the gateway's start, behind
    /// a gateway that already serves, or again after a failed write.
    #[error("the index database is being opened; try again in a few seconds")]
    Reopening,
    /// This view was opened without the index.
    #[error("no index in this view")]
    NotOpen,
    /// The index lags the log by more than a query scans itself: it cannot
    /// be written (a full disk) or is still being rebuilt.
    #[error("the index is {missing} records behind the log; try again when it has caught up")]
    Behind {
        /// Records the index lacks.
        missing: u64,
    },
}

impl From<fjall::Error> for IndexError {
    fn from(e: fjall::Error) -> Self {
        Self::Store(Arc::new(e))
    }
}

/// fjall's own messages are its `Debug` output; say it in an operator's terms.
fn describe(e: &fjall::Error) -> String {
    match e {
        fjall::Error::Io(io) => format!("the index database could not read or write: {io}"),
        fjall::Error::Locked => {
            "the index database is held by another process (is a gateway running?)".into()
        }
        fjall::Error::Poisoned => {
            "the index database refuses writes after a failed write (disk full?); it is reopened"
                .into()
        }
        fjall::Error::Storage(fjall::LsmError::Io(io)) => {
            format!("the index database could not read or write: {io}")
        }
        fjall::Error::Storage(s) => format!("the index database is damaged or unreadable: {s:?}"),
        other => format!("the index database failed: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// Operators read these in the log; they read as they did when the
    /// errors carried strings.
    #[test]
    fn messages_read_as_before() {
        let cases: Vec<(AuditError, &str)> = vec![
            (
                AuditError::write(std::io::Error::other("disk full")),
                "the audit log could not write: disk full",
            ),
            (
                AuditError::read(ReadError::NoLevel(3)),
                "the audit log could not be read: node cache has no level 3",
            ),
            (
                LogDamage::Undecodable {
                    id: 5,
                    source: DecodeError("truncated"),
                }
                .into(),
                "the audit log is damaged: record 5: record encoding: truncated",
            ),
            (
                LogDamage::Lost {
                    signed: 10,
                    size: 7,
                }
                .into(),
                "the audit log is damaged: a signed checkpoint covers 10 records but the log has 7: records were lost",
            ),
            (
                OutOfRange::BeyondHead { size: 9, head: 4 }.into(),
                "the log has 4 records, not 9",
            ),
            (
                IndexError::NotOpen.into(),
                "audit index: no index in this view",
            ),
            (
                IndexError::from(fjall::Error::Locked).into(),
                "audit index: the index database is held by another process (is a gateway running?)",
            ),
            (
                IndexError::from(fjall::Error::Io(std::io::Error::other("disk full"))).into(),
                "audit index: the index database could not read or write: disk full",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }

    /// The cause is there to inspect, not only as text.
    #[test]
    fn sources_are_typed() {
        let e = AuditError::write(std::io::Error::from(std::io::ErrorKind::StorageFull));
        let AuditError::Write(io) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(io.kind(), std::io::ErrorKind::StorageFull);
        assert!(e.source().is_some());

        let e: AuditError = LogDamage::Undecodable {
            id: 1,
            source: DecodeError("trailing bytes"),
        }
        .into();
        let damage = e.source().and_then(|s| s.downcast_ref::<LogDamage>());
        let decode = damage
            .and_then(|d| d.source())
            .and_then(|s| s.downcast_ref::<DecodeError>());
        assert_eq!(decode, Some(&DecodeError("trailing bytes")));
    }
}
