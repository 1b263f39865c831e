//! A witness for transparency logs, as the C2SP specifications define one
//! (`c2sp.org/tlog-witness` v1.0.0, cosignatures `cosignature/v1` of
//! `c2sp.org/tlog-cosignature`, notes of `c2sp.org/signed-note`).
//!
//! Why it exists: the audit log is tamper-evident only for someone who keeps
//! old checkpoints and compares. A gateway operator could show one history to
//! one partner and another to the next (a split view). A witness, run by a
//! partner, cosigns a checkpoint only when it is consistent with every
//! checkpoint of that log it cosigned before, and never cosigns two roots
//! for one size. A checkpoint that carries the cosignatures of a quorum of
//! witnesses run by different partners is therefore the one history all of
//! them saw. Because it speaks the public protocol, any conforming witness
//! can stand in for this one, and this one can witness any conforming log.
//!
//! - [`note`]: signed notes, verifier keys, checkpoint texts;
//! - [`cosign`]: making ([`Cosigner`]) and checking ([`CosignatureVerifier`])
//!   cosignatures; what the gateway uses to check its witnesses' answers and
//!   to assemble the cosigned checkpoint ([`add_cosignatures`]);
//! - [`state`]: what the witness has cosigned, on disk, under one lock;
//! - [`config`]: the file `witness.toml`;
//! - [`service`]: `add-checkpoint`'s checks, without HTTP;
//! - [`server`]: the HTTP(S) listener.

pub mod config;
pub mod cosign;
pub mod note;
pub mod server;
pub mod service;
pub mod state;

pub use config::WitnessConfig;
pub use cosign::{CosignError, CosignatureVerifier, Cosigner, add_cosignatures};
pub use note::{Note, NoteSignature};
pub use service::{Answer, Witness};
pub use state::State;
