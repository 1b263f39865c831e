//! Where the gateway keeps what is not the audit log: the mailboxes of
//! partners without a server of their own, the LVV registry of stays, and
//! the register of consents.
//! Exchange code reaches them only through this module, so that where they
//! live (embedded sled, or the shared PostgreSQL database of
//! [`crate::audit::pg`] when `[storage]` names one) can change without the
//! pipeline knowing.

pub mod consent;
pub mod mailbox;
pub mod registry;
