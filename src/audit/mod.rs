//! The audit log: every disclosure and every refusal, append-only, in a Merkle
//! tree that any partner can check on its own.
//!
//! - [`record`]: the record and its canonical bytes;
//! - [`segment`]: append-only segment files, the durable home of records;
//! - [`merkle`]: RFC 6962 hashing, proofs and their verification;
//! - [`checkpoint`]: signed tree heads (C2SP signed notes, Ed25519);
//! - [`index`]: fjall indexes by subject, partner, pilot, purpose;
//! - [`store`]: the store as the gateway holds it ([`Audit`]), split by
//!   concern into `writer` (group commit), `view` (reads, proofs, queries),
//!   `recovery` (start after a stop or crash), `subject` (subject pseudonyms,
//!   one key per pilot and month),
//!   `options` (where it lives, its limits)
//!   and `error`;
//! - [`retention`]: destroying the subject keys of months past retention;
//! - [`proof`]: proofs in the transparency-dev JSON format, and their check;
//! - [`tile`]: hash tiles of the tree (`c2sp.org/tlog-tiles`), from the node cache;
//! - [`rotation`]: a new checkpoint key announced by the old and the new
//!   one, and the history of the log's keys;
//! - [`verify`]: the full check of a log on disk;
//! - [`export`]: records as JSON lines, CSV or Logboek Dataverwerkingen;
//! - [`pg`]: the same log in PostgreSQL, shared by several gateway processes
//!   (`[storage] backend = "postgres"`); the view and the `Audit` handle
//!   dispatch to it, so callers never know which store runs.

mod ahead;
pub mod checkpoint;
mod common;
mod error;
pub mod export;
pub mod index;
mod indexer;
pub mod merkle;
mod options;
pub mod pg;
mod postings;
pub mod proof;
pub mod record;
mod recovery;
mod rekey;
pub mod retention;
pub mod rotation;
pub mod segment;
pub mod store;
mod subject;
pub mod tile;
pub mod verify;
mod view;
mod writer;

pub use record::{Decision, Entry, Record, RecordKind};
pub use store::{Audit, AuditError, Filter, Options, Page, Receipt};
