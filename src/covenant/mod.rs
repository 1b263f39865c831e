//! The covenant is signed by its parties: no flow opens without the
//! signatures of the partners at both of its ends.
//!
//! A pilot's covenant has versions, the SHA-256 of its text
//! ([`crate::policy::terms`]). Partners sign a version (accept or revoke) with
//! a JWS made with the key of their organisation certificate ([`jws`]), the
//! way FSC contracts are signed, but at the level of fields and purposes. The
//! gateway enforces, per pilot, the newest version every partner it concerns
//! has accepted ([`registry`]):
//! - a version that only narrows the one in force (fewer flows, fields,
//!   purposes, days) or changes no flow takes effect at once;
//! - a version that widens anything waits for the acceptance of both ends of
//!   every flow it opens or widens; the previous version stays in force,
//!   whole, meanwhile. A version that narrows one flow and widens another
//!   is a widening: none of it takes effect before it is signed (an
//!   administrator who wants the narrowing now makes it a change of its own);
//! - a partner that revokes its acceptance of the version in force stops
//!   every flow of that pilot where it gives or receives, until it accepts
//!   again or a version without flows of it takes effect.
//!
//! State is kept behind [`store::Store`] (files in the data directory, or
//! PostgreSQL through [`shared`] when nodes share a database);
//! [`view`] renders it for partners, the console, the CLI and the DPIA annex.

pub mod jws;
pub mod registry;
pub mod shared;
pub mod state;
pub mod store;
pub mod view;

pub use registry::{CovenantError, Registry, Submitted};
