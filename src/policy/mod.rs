//! The covenant as code: per pilot, per purpose rules that decide which fields
//! go from whom to whom. Default deny.
//!
//! - [`fields`]: field paths and GDPR categories;
//! - [`service`]: what a provider's document looks like (from partners.toml);
//! - [`load`]: reading and validating `config/pilots/<pilot>.toml`;
//! - [`minimise`]: keeping only allowed fields, with transforms;
//! - [`stream`]: the same, while parsing the document's bytes (the hot path);
//! - [`diff`]: the flows a policy set allows, and how two sets differ;
//! - [`decide`]: [`PolicySet::authorise`] and the [`Grant`] it gives, the one
//!   place that decides;
//! - [`terms`]: the covenant text partners sign and its version;
//! - [`widen`]: whether a new version narrows or widens the one in force,
//!   and whose signatures it needs;
//! - [`model`]: the compiled policy (pilots, purposes, rules, keys);
//! - [`registration`]: who registers stays in an LVV and who may check;
//! - [`transfer`] and [`agreement`]: moving a case from one LVV to another,
//!   one side per file, counted only where both files agree.

pub mod agreement;
pub mod consent;
pub mod decide;
pub mod diff;
pub mod explain;
pub mod fields;
pub mod graph;
pub mod load;
pub mod minimise;
pub mod model;
pub mod partners;
pub mod registration;
pub mod retention;
pub mod service;
pub mod store;
pub mod stream;
pub mod terms;
pub mod transfer;
pub mod widen;

pub use decide::{Grant, Query, Refusal, RefusalReason, Verdict, valid_vnummer};
pub use model::{
    ACTIVITY_PREFIX, Activities, Covenant, Direction, Pilot, PolicySet, PseudonymKeys, Purpose,
    Rule, Standing, activity_id,
};
