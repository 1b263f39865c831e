//! The covenant registry: the one place that changes covenant state, and the
//! [`Enforce`] that tells the policy store which version of each pilot runs.
//!
//! Every change is recorded in the audit log before it is kept, and kept
//! before it takes effect: a proposal, a signature, a withdrawal, a version
//! taking effect. When the log cannot record it, it does not happen (the
//! version in force stays).

use std::sync::{Arc, Mutex, MutexGuard};

use rustls::server::danger::ClientCertVerifier;
use tracing::{error, info, warn};

use super::jws::{self, Decision, JwsError};
use super::state::{PilotState, Signature, Status, VersionEntry};
use super::store::{Files, Store};
use super::view;
use crate::audit::{Audit, Decision as Disclosure, Entry, RecordKind};
use crate::identity::{PartnerIndex, sha256};
use crate::policy::store::Enforce;
use crate::policy::terms::Terms;
use crate::policy::widen::{self, partners_in_flows};
use crate::policy::{Pilot, PolicySet};
use crate::problem::{self, Kind};

/// Why a signature or a withdrawal was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CovenantError {
    /// The JWS itself is wrong or not trusted.
    #[error(transparent)]
    Signature(#[from] JwsError),
    /// The JWS is for another pilot or version than the one it was sent to.
    #[error("{0}")]
    Mismatch(String),
    /// The signer may not sign here, or is not the one sending it.
    #[error("{0}")]
    NotAllowed(String),
    /// No such version of this pilot.
    #[error("{0}")]
    UnknownVersion(String),
    /// The version is no longer open (superseded or withdrawn).
    #[error("{0}")]
    Closed(String),
    /// The audit log could not record it, so it did not happen.
    #[error("the audit log cannot record this, so it did not happen")]
    Audit,
    /// The state could not be kept.
    #[error("covenant state: {0}")]
    Store(String),
}

impl CovenantError {
    /// The problem type partners see.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Signature(JwsError::Untrusted(_) | JwsError::NotAPartner(_)) => {
                problem::SIGNATURE_NOT_ACCEPTED
            }
            Self::Signature(_) | Self::Mismatch(_) => problem::INVALID_SIGNATURE,
            Self::NotAllowed(_) => problem::SIGNATURE_NOT_ACCEPTED,
            Self::UnknownVersion(_) => problem::UNKNOWN_VERSION,
            Self::Closed(_) => problem::VERSION_CLOSED,
            Self::Audit => problem::AUDIT_UNAVAILABLE,
            Self::Store(_) => problem::INTERNAL,
        }
    }
}

/// A signature taken.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The signer.
    pub partner: String,
    /// Accept or revoke.
    pub decision: Decision,
    /// The audit record of it.
    pub record: u64,
}

/// The covenant state of every pilot, and the policy that follows from it.
#[derive(Debug)]
pub struct Registry {
    store: Box<dyn Store>,
    audit: Arc<Audit>,
    /// One change at a time: a signature, a withdrawal or an enforcement.
    changing: Mutex<()>,
}

fn now() -> String {
    crate::audit::record::format_micros(crate::audit::record::now_micros())
}

fn entry(kind: RecordKind, pilot: &str, sender: &str, version: &str, reason: String) -> Entry {
    let mut e = Entry::exchange(
        pilot,
        sender,
        "ketenpoort",
        "covenant",
        format!("covenant/{pilot}"),
    );
    e.kind = kind;
    e.decision = Disclosure::Disclosed;
    e.policy_version = version.into();
    e.reason = reason;
    e
}

/// The files and bytes one enforcement works on.
struct Ctx<'a> {
    on_disk: &'a PolicySet,
    bytes: &'a [u8],
    pilot: &'a str,
}

impl Registry {
    /// The registry over files in the data directory, recording in `audit`.
    pub fn new(data_dir: &std::path::Path, audit: Arc<Audit>) -> Self {
        Self::with_store(Box::new(Files::new(data_dir)), audit)
    }

    /// The registry over another store.
    pub fn with_store(store: Box<dyn Store>, audit: Arc<Audit>) -> Self {
        Self {
            store,
            audit,
            changing: Mutex::new(()),
        }
    }

    /// The store, for views.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.changing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a record and waits until it is durable. On a thread of its own,
    /// so it works from the runtime's threads as from a blocking one.
    fn record(&self, e: Entry) -> Result<u64, CovenantError> {
        let audit = self.audit.clone();
        let done = std::thread::scope(|s| s.spawn(move || audit.record_blocking(e)).join());
        match done {
            Ok(Ok(r)) => Ok(r.id),
            Ok(Err(err)) => {
                error!(error = %err, "covenant change not recorded, so not made");
                Err(CovenantError::Audit)
            }
            Err(_) => Err(CovenantError::Audit),
        }
    }

    fn load(&self, pilot: &str) -> Result<PilotState, CovenantError> {
        self.store
            .load(pilot)
            .map(Option::unwrap_or_default)
            .map_err(|e| CovenantError::Store(e.to_string()))
    }

    /// Holds the other gateway nodes off covenant state (on a shared
    /// database) for as long as the guard lives.
    fn exclusive(&self) -> Result<Option<Box<dyn Send>>, CovenantError> {
        self.store
            .exclusive()
            .map_err(|e| CovenantError::Store(e.to_string()))
    }

    fn save(&self, pilot: &str, st: &PilotState) -> Result<(), CovenantError> {
        self.store
            .save(pilot, st)
            .map_err(|e| CovenantError::Store(e.to_string()))
    }

    /// Registers the file's version as a proposal when it is new (or was
    /// withdrawn or superseded and is in the file again).
    fn propose(
        &self,
        ctx: &Ctx<'_>,
        disk: &Pilot,
        st: &mut PilotState,
    ) -> Result<(), CovenantError> {
        let v = &disk.covenant_version;
        if matches!(
            st.entry(v).map(|e| e.status),
            Some(Status::Pending | Status::InForce)
        ) {
            return Ok(());
        }
        if !self.store.may_propose(ctx.pilot, &disk.text) {
            info!(
                pilot = ctx.pilot,
                "this node's pilot file is older than the deployment's: not proposed"
            );
            return Ok(());
        }
        self.store
            .put_terms(ctx.pilot, v, &Terms::of(disk))
            .map_err(|e| CovenantError::Store(e.to_string()))?;
        let needs = match &st.in_force {
            Some(cur) => view::build(self.store(), ctx.on_disk, ctx.bytes, ctx.pilot, cur)
                .ok()
                .map(|c| widen::assess(Some(&c), disk)),
            None => Some(widen::assess(None, disk)),
        };
        let reason = match needs.map(|a| a.required()) {
            Some(r) if r.is_empty() => "proposed; needs no signature".to_string(),
            Some(r) => format!(
                "proposed; needs {}",
                r.into_iter().collect::<Vec<_>>().join(", ")
            ),
            None => "proposed".to_string(),
        };
        let sender = format!("file:{}.toml", ctx.pilot);
        self.record(entry(
            RecordKind::CovenantProposal,
            ctx.pilot,
            &sender,
            v,
            reason,
        ))?;
        let mut next = st.clone();
        next.versions.retain(|e| e.version != *v);
        next.versions.push(VersionEntry {
            version: v.clone(),
            proposed: now(),
            status: Status::Pending,
            partners: disk.partners.clone(),
            took_effect: None,
            basis: None,
        });
        self.save(ctx.pilot, &next)?;
        *st = next;
        info!(pilot = ctx.pilot, version = %v, "covenant version proposed");
        Ok(())
    }

    /// The newest pending version whose needed signatures are all there, and
    /// why it may take effect.
    fn ready(&self, ctx: &Ctx<'_>, st: &PilotState) -> Option<(String, String)> {
        let current = st
            .in_force
            .as_ref()
            .and_then(|v| view::build(self.store(), ctx.on_disk, ctx.bytes, ctx.pilot, v).ok());
        for v in st.pending_newest_first() {
            let Ok(cand) = view::build(self.store(), ctx.on_disk, ctx.bytes, ctx.pilot, &v) else {
                continue;
            };
            let a = widen::assess(current.as_ref(), &cand);
            let required = a.required();
            let accepted = st.accepted(&v);
            if required.iter().all(|p| accepted.contains_key(p)) {
                let basis = match (&st.in_force, required.is_empty()) {
                    (Some(cur), true) => format!("narrows {cur}"),
                    (None, true) => "no flows".to_string(),
                    (_, false) => format!(
                        "signed by {}",
                        required.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                };
                return Some((v, basis));
            }
        }
        None
    }

    /// Lets every version take effect that may, newest first, each recorded
    /// before it is kept.
    fn settle(&self, ctx: &Ctx<'_>, st: &mut PilotState) -> Result<(), CovenantError> {
        while let Some((v, basis)) = self.ready(ctx, st) {
            let reason = match &st.in_force {
                Some(cur) => format!("{basis}; replaces {cur}"),
                None => basis.clone(),
            };
            self.record(entry(
                RecordKind::CovenantInForce,
                ctx.pilot,
                "ketenpoort",
                &v,
                reason,
            ))?;
            let mut next = st.clone();
            next.take_effect(&v, &now(), &basis);
            self.save(ctx.pilot, &next)?;
            *st = next;
            info!(pilot = ctx.pilot, version = %v, "covenant version in force");
        }
        Ok(())
    }

    /// The pilot as it runs: the version in force with who revoked it, or
    /// the file's with every flow refused when no version is in force (or
    /// the one in force cannot be built: fail closed).
    fn running(&self, ctx: &Ctx<'_>, disk: &Pilot, st: &PilotState) -> Pilot {
        let unsigned = || {
            let mut p = disk.clone();
            p.standing.unsigned = true;
            p
        };
        let Some(v) = &st.in_force else {
            return unsigned();
        };
        match view::build(self.store(), ctx.on_disk, ctx.bytes, ctx.pilot, v) {
            Ok(mut p) => {
                let in_flows = partners_in_flows(&p);
                p.standing.revoked = st
                    .revoked
                    .keys()
                    .filter(|r| in_flows.contains(*r))
                    .cloned()
                    .collect();
                p
            }
            Err(e) => {
                error!(pilot = ctx.pilot, error = %e, "the covenant version in force cannot be built; every flow of the pilot is refused");
                unsigned()
            }
        }
    }

    /// Takes a signature: checks it, records it, keeps it. `caller` is the
    /// partner on the mutual-TLS connection it came on (`None` for the
    /// inbox); it must be the signer. The policy store is refreshed by the
    /// caller afterwards, which lets a completed version take effect.
    pub fn submit(
        &self,
        jws: &str,
        pilot: &str,
        version: &str,
        caller: Option<&str>,
        verifier: &dyn ClientCertVerifier,
        partners: &PartnerIndex,
    ) -> Result<Submitted, CovenantError> {
        let v = jws::verify(jws, verifier, partners)?;
        let signer = v.partner.id.to_string();
        if v.payload.pilot != pilot {
            return Err(CovenantError::Mismatch(format!(
                "the signature is for pilot '{}', not '{pilot}'",
                v.payload.pilot
            )));
        }
        if v.payload.version != version {
            return Err(CovenantError::Mismatch(format!(
                "the signature is over {}, not {version}",
                v.payload.version
            )));
        }
        if let Some(c) = caller
            && c != signer
        {
            return Err(CovenantError::NotAllowed(format!(
                "signed by '{signer}': only '{signer}' submits its own signature"
            )));
        }
        let _one = self.lock();
        let _everywhere = self.exclusive()?;
        let st = self.load(pilot)?;
        let Some(e) = st.entry(version) else {
            return Err(CovenantError::UnknownVersion(format!(
                "pilot '{pilot}' has no covenant version {version}"
            )));
        };
        if !e.partners.contains(&signer) {
            return Err(CovenantError::NotAllowed(format!(
                "'{signer}' is not a party to the covenant of pilot '{pilot}'"
            )));
        }
        if !matches!(e.status, Status::Pending | Status::InForce) {
            return Err(CovenantError::Closed(format!(
                "version {version} is {}",
                view::status_word(e.status)
            )));
        }
        let in_force = e.status == Status::InForce;
        let decision = v.payload.decision;
        let mut rec = entry(
            RecordKind::CovenantSignature,
            pilot,
            &signer,
            version,
            decision.as_str().to_string(),
        );
        rec.sender_cert_sha256 = Some(v.cert_sha256);
        rec.payload_sha256 = Some(sha256(jws.trim().as_bytes()));
        let record = self.record(rec)?;
        let mut next = st.clone();
        let time = now();
        next.signatures.push(Signature {
            version: version.to_string(),
            partner: signer.clone(),
            decision,
            time: time.clone(),
            cert_sha256: hex::encode(v.cert_sha256),
            record,
            jws: jws.trim().to_string(),
        });
        if in_force {
            match decision {
                Decision::Accept => {
                    next.revoked.remove(&signer);
                }
                Decision::Revoke => {
                    next.revoked.insert(signer.clone(), time);
                }
            }
        }
        self.save(pilot, &next)?;
        info!(pilot, version, partner = %signer, decision = decision.as_str(), "covenant signature taken");
        Ok(Submitted {
            partner: signer,
            decision,
            record,
        })
    }

    /// Takes the signatures waiting in the inbox; `true` when any was taken.
    /// One that is refused is renamed `*.rejected` and logged.
    pub fn take_inbox(&self, verifier: &dyn ClientCertVerifier, partners: &PartnerIndex) -> bool {
        let items = match self.store.inbox() {
            Ok(i) => i,
            Err(e) => {
                error!(error = %e, "covenant inbox cannot be read");
                return false;
            }
        };
        let mut taken = false;
        for (name, jws) in items {
            let target = jws::peek(&jws);
            let result = match &target {
                Some((pilot, version)) => {
                    self.submit(&jws, pilot, version, None, verifier, partners)
                }
                None => Err(CovenantError::Mismatch("not a covenant signature".into())),
            };
            match result {
                Ok(_) => taken = true,
                Err(e) => {
                    warn!(file = %name, error = %e, "covenant signature in the inbox refused")
                }
            }
            if let Err(e) = self.store.inbox_done(&name) {
                error!(file = %name, error = %e, "covenant inbox entry cannot be removed");
            }
        }
        taken
    }

    /// Withdraws a pending version (an administrator's `by`).
    pub fn withdraw(&self, pilot: &str, version: &str, by: &str) -> Result<u64, CovenantError> {
        let _one = self.lock();
        let _everywhere = self.exclusive()?;
        let st = self.load(pilot)?;
        match st.entry(version).map(|e| e.status) {
            None => Err(CovenantError::UnknownVersion(format!(
                "pilot '{pilot}' has no covenant version {version}"
            ))),
            Some(Status::Pending) => {
                let mut rec = entry(
                    RecordKind::CovenantProposal,
                    pilot,
                    by,
                    version,
                    "withdrawn".into(),
                );
                rec.decision = Disclosure::Refused;
                let record = self.record(rec)?;
                let mut next = st.clone();
                if let Some(e) = next.entry_mut(version) {
                    e.status = Status::Withdrawn;
                }
                self.save(pilot, &next)?;
                Ok(record)
            }
            Some(s) => Err(CovenantError::Closed(format!(
                "version {version} is {}, not pending",
                view::status_word(s)
            ))),
        }
    }
}

impl Enforce for Registry {
    fn enforce(&self, on_disk: &PolicySet, partners_bytes: &[u8]) -> PolicySet {
        let _one = self.lock();
        // Without the other nodes held off, nothing is changed: the
        // versions are only read, and the next enforcement settles.
        let everywhere = self.exclusive();
        if let Err(e) = &everywhere {
            error!(error = %e, "covenant state cannot be locked; no proposal or version change now");
        }
        let mut out = on_disk.clone();
        for (id, disk) in &on_disk.pilots {
            let ctx = Ctx {
                on_disk,
                bytes: partners_bytes,
                pilot: id,
            };
            let mut st = match self.load(id) {
                Ok(s) => s,
                Err(e) => {
                    error!(pilot = %id, error = %e, "covenant state unreadable; every flow of the pilot is refused");
                    let mut p = disk.clone();
                    p.standing.unsigned = true;
                    out.pilots.insert(id.clone(), p);
                    continue;
                }
            };
            if everywhere.is_ok() {
                if let Err(e) = self.propose(&ctx, disk, &mut st) {
                    error!(pilot = %id, error = %e, "covenant proposal not registered");
                }
                if let Err(e) = self.settle(&ctx, &mut st) {
                    error!(pilot = %id, error = %e, "covenant version not brought into force");
                }
            }
            out.pilots.insert(id.clone(), self.running(&ctx, disk, &st));
        }
        out
    }
}
