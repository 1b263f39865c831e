//! The audit log: every disclosure and every refusal, append-only, in a Merkle
//! tree that any partner can check on its own.
//!
//! - [`record`]: the record and its canonical bytes;
//! - [`segment`]: append-only segment files, the durable home of records;
//! - [`merkle`]: RFC 6962 hashing, proofs and their verification;
//! - [`checkpoint`]: signed tree heads (C2SP signed notes, Ed25519);
//! - [`index`]: sled indexes by subject, partner, pilot, purpose;
//! - [`store`]: the writer (group commit), recovery, reads and queries;
//! - [`proof`]: proofs in the transparency-dev JSON format, and their check;
//! - [`verify`]: the full check of a log on disk;
//! - [`export`]: records as JSON lines, CSV or Logboek Dataverwerkingen.

pub mod checkpoint;
pub mod export;
pub mod index;
pub mod merkle;
pub mod proof;
pub mod record;
pub mod segment;
pub mod store;
pub mod verify;

pub use record::{Decision, Entry, Kind, Record};
pub use store::{Audit, AuditError, Filter, Options, Page, Receipt};
