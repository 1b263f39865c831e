//! One exchange's shared state, and the one place where a refusal is
//! recorded and answered.
//!
//! Every stage of the pipeline returns a [`Refusal`] when it stops the
//! exchange; [`Exchange::refuse`] turns it into an audit record (the reason
//! is the problem type's slug) and an RFC 9457 answer. Only a refusal because
//! the log cannot write is answered without a record: there is nowhere to
//! put it, and nothing is delivered.

use hyper::header::HeaderValue;
use hyper::{Method, Response};
use tracing::{info, warn};

use super::trace::Trace;
use super::wire::{DISCLOSURE, TRACEPARENT};
use crate::audit::{Decision, Entry, Receipt};
use crate::gateway::{Body, Gateway};
use crate::identity::Peer;
use crate::policy::partners::Partner;
use crate::policy::store::Snapshot;
use crate::policy::{self, Direction, Grant, Query};
use crate::problem::{self, Kind};
use crate::text::Text;

/// Why an exchange stopped: the problem type and what happened this time
/// (ids only, no personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The problem type; its slug is the audit record's reason.
    pub kind: Kind,
    /// What happened, for the problem's detail.
    pub detail: String,
    /// For 405: the methods the service does take (the `Allow` header).
    pub allow: Option<String>,
}

impl Refusal {
    /// A refusal of this kind.
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            allow: None,
        }
    }

    /// The log cannot write: nothing is delivered, and nothing recorded.
    pub fn audit_unavailable(what: &str) -> Self {
        Self::new(
            problem::AUDIT_UNAVAILABLE,
            format!("the audit log cannot write; nothing was {what}"),
        )
    }
}

impl From<policy::Refusal> for Refusal {
    fn from(r: policy::Refusal) -> Self {
        Self::new(r.reason.kind(), r.detail)
    }
}

/// Where an exchange goes, from the route: borrowed from the request's
/// path (or the policy), not copied per exchange.
#[derive(Debug)]
pub struct Target<'t> {
    /// Pilot id.
    pub pilot: &'t str,
    /// The partner whose service is called.
    pub provider: &'t str,
    /// The service's name.
    pub service: &'t str,
    /// The path values after the service.
    pub rest: Vec<&'t str>,
}

impl<'t> Target<'t> {
    /// A resource the gateway keeps itself (the registry, consents,
    /// figures): its records name the service `ketenpoort/<service>`.
    pub fn own(pilot: &'t str, service: &'t str) -> Self {
        Self {
            pilot,
            provider: "ketenpoort",
            service,
            rest: Vec::new(),
        }
    }

    /// `provider/service` as asked: what a record names when no rule's
    /// shared name is at hand.
    fn qualified(&self) -> Text {
        format!("{}/{}", self.provider, self.service).into()
    }
}

/// A V-nummer from the path as the exchange's data subject: refused unless
/// it has ten digits, then pseudonymised for the records.
pub fn path_subject(x: &mut Exchange<'_>, vnummer: &str) -> Result<(), Refusal> {
    if !crate::policy::valid_vnummer(vnummer) {
        return Err(Refusal::new(
            problem::INVALID_SUBJECT,
            "the V-nummer segment of the path must be ten digits",
        ));
    }
    x.subject = Some(subject_of(x, vnummer)?);
    Ok(())
}

/// What the audit records of one exchange share, from the rule on.
#[derive(Debug, Clone)]
/// Shared with the snapshot (`Text`): taking them per exchange copies no string.
struct Granted {
    rule_id: Text,
    legal_basis: Text,
    policy_version: Text,
    /// The purpose the grant is for: the processing activity of its records.
    purpose: Text,
    /// The pilot's id.
    pilot: Text,
    /// `provider/service`.
    service: Text,
    /// The processing activities of its records, request then response.
    activities: policy::Activities,
}

/// One exchange: who asks what of whom, under which snapshot of the policy.
pub struct Exchange<'a> {
    /// The running gateway.
    pub gw: &'a Gateway,
    /// The one policy snapshot this exchange uses from start to end: a reload
    /// in the middle cannot mix two versions.
    pub snap: &'a Snapshot,
    /// The calling partner.
    pub consumer: &'a Partner,
    /// Its connection's certificate.
    pub peer: &'a Peer,
    /// Pilot, provider, service and path values.
    pub target: &'a Target<'a>,
    /// The stated purpose (empty until read).
    pub purpose: String,
    /// The caller's `Ketenpoort-Purpose` header, set with `purpose` by
    /// [`super::request::purpose`]: passed on to the provider as it came
    /// (its bytes are shared with the request's, so no copy is made).
    pub purpose_header: Option<HeaderValue>,
    /// The trace this exchange belongs to.
    pub trace: Trace,
    /// The data subject's pseudonym, once known.
    pub subject: Option<[u8; 32]>,
    /// Which way data was going when a refusal happens: the caller's body is
    /// a request disclosure, everything else is about the answer.
    pub direction: Direction,
    /// The rule and what it rests on, once the policy granted the exchange.
    granted: Option<Granted>,
    /// The audit record of the consent the flow rests on, when its rule
    /// requires one: disclosures name it in their `reason`.
    pub consent: Option<u64>,
    /// When the exchange began (epoch microseconds): its records' start.
    pub started_micros: i64,
}

/// The subject pseudonym of a V-nummer in this exchange's records: under
/// the pilot's subject key of this month. When the key cannot be made,
/// nothing can be recorded, so nothing goes.
pub fn subject_of(x: &Exchange<'_>, vnummer: &str) -> Result<[u8; 32], Refusal> {
    // A pilot the policy does not know gets no keys of its own: a caller
    // must not be able to make key files by naming pilots.
    let scope = if x.snap.policy.pilots.contains_key(x.target.pilot) {
        x.target.pilot
    } else {
        crate::audit::store::LOOKUP_SCOPE
    };
    x.gw.audit.subject(scope, vnummer).map_err(|e| {
        warn!(partner = %x.consumer.id, error = %e, "subject key unavailable; nothing delivered");
        Refusal::audit_unavailable("delivered")
    })
}

/// The `reason` of a disclosure that rests on consent: `consent <id>`, the
/// audit record that registered the consent (docs/audit-format.md).
pub fn consent_reason(record: u64) -> String {
    format!("consent {record}")
}

impl<'a> Exchange<'a> {
    /// An exchange before any stage ran.
    pub fn new(
        gw: &'a Gateway,
        snap: &'a Snapshot,
        consumer: &'a Partner,
        peer: &'a Peer,
        target: &'a Target<'a>,
        trace: Trace,
    ) -> Self {
        Self {
            gw,
            snap,
            consumer,
            peer,
            target,
            purpose: String::new(),
            purpose_header: None,
            trace,
            subject: None,
            direction: Direction::Response,
            granted: None,
            consent: None,
            started_micros: crate::audit::record::now_micros(),
        }
    }

    /// Asks the policy (the one place that decides) whether this call may
    /// happen.
    pub fn authorise(&mut self, method: &Method) -> Result<Grant<'a>, Refusal> {
        let t = self.target;
        let q = Query {
            pilot: t.pilot,
            consumer: &self.consumer.id,
            provider: t.provider,
            service: t.service,
            purpose: &self.purpose,
            today: time::OffsetDateTime::now_utc().date(),
            call: Some((method.as_str(), &t.rest)),
        };
        let snap: &'a Snapshot = self.snap;
        let grant = snap.policy.authorise(&q).map_err(|r| {
            let mut refusal = Refusal::from(r.clone());
            if r.reason == policy::RefusalReason::MethodNotAllowed
                && let Some(svc) = snap
                    .policy
                    .partners
                    .get(t.provider)
                    .and_then(|p| p.service(t.service))
            {
                refusal.allow = Some(svc.methods.join(", "));
            }
            refusal
        })?;
        self.granted = Some(Granted {
            rule_id: grant.rule.id.clone(),
            legal_basis: grant.purpose.legal_basis.clone(),
            policy_version: grant.pilot.version.clone(),
            purpose: grant.rule.purpose.clone(),
            pilot: grant.pilot.id.clone(),
            service: grant.rule.service.qualified().clone(),
            activities: grant.purpose.activities.clone(),
        });
        if let Some(s) = &grant.path_subject {
            self.subject = Some(subject_of(self, s)?);
        }
        Ok(grant)
    }

    /// Grants an exchange that no rule of the pilot's covenant names but
    /// another part of its file does (the registration): what the records
    /// name as its rule and legal basis.
    pub fn grant_by(&mut self, rule_id: &str, legal_basis: &str, policy_version: &str) {
        self.granted = Some(Granted {
            rule_id: rule_id.into(),
            legal_basis: legal_basis.into(),
            policy_version: policy_version.into(),
            purpose: self.purpose.as_str().into(),
            pilot: self.target.pilot.into(),
            service: self.target.qualified(),
            activities: policy::Activities::of(self.target.pilot, &self.purpose),
        });
    }

    /// An audit entry for data going `d`, with the rule once granted.
    pub fn entry(&self, d: Direction) -> Entry {
        let t = self.target;
        // The policy's shared names where a rule granted the exchange; a
        // refusal names what the caller asked for.
        let (pilot, service) = match &self.granted {
            Some(g) => (g.pilot.clone(), g.service.clone()),
            None => (t.pilot.into(), t.qualified()),
        };
        // The snapshot's shared id where the provider is a partner of it.
        let provider = match self.snap.policy.partners.get(t.provider) {
            Some(p) => p.id.clone(),
            None => Text::from(t.provider),
        };
        let consumer = self.consumer.id.clone();
        let (sender, recipient) = match d {
            Direction::Request => (consumer, provider),
            Direction::Response => (provider, consumer),
        };
        let purpose = match &self.granted {
            Some(g) if *g.purpose == *self.purpose => g.purpose.clone(),
            _ => self.purpose.as_str().into(),
        };
        let mut e = Entry::exchange(pilot, sender, recipient, purpose, service);
        e.subject = self.subject;
        e.trace_id = Some(self.trace.trace_id);
        e.span_id = Some(self.trace.span_id);
        e.foreign_span_id = self.trace.parent_span_id;
        e.fsc_transaction_id = Some(self.trace.fsc_transaction_id);
        e.started_micros = Some(self.started_micros);
        match d {
            Direction::Request => e.sender_cert_sha256 = Some(self.peer.cert_sha256),
            Direction::Response => e.recipient_cert_sha256 = Some(self.peer.cert_sha256),
        }
        if let Some(c) = self.consent {
            e.reason = consent_reason(c);
        }
        if let Some(g) = &self.granted {
            e.legal_basis = g.legal_basis.clone();
            e.rule_id = g.rule_id.clone();
            e.policy_version = g.policy_version.clone();
            e.processing_activity_id = g.activities.get(d).clone();
        }
        e
    }

    /// Makes a disclosure durable; when the log cannot write, the exchange
    /// stops with nothing `what` (forwarded, delivered).
    pub async fn record(&self, e: Entry, what: &str) -> Result<Receipt, Refusal> {
        self.gw.audit.record(e).await.map_err(|err| {
            warn!(partner = %self.consumer.id, error = %err, "disclosure could not be recorded; nothing {what}");
            Refusal::audit_unavailable(what)
        })
    }

    /// Records the refusal and answers it; only "the log cannot write" goes
    /// unrecorded.
    pub async fn refuse(&self, r: Refusal) -> Response<Body> {
        let mut resp = problem::respond(r.kind, r.detail);
        if let Some(allow) = r.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            resp.headers_mut().insert(hyper::header::ALLOW, allow);
        }
        resp.headers_mut().insert(TRACEPARENT, self.trace.header());
        self.gw.metrics.exchange(false, r.kind.slug);
        if r.kind == problem::AUDIT_UNAVAILABLE {
            return resp;
        }
        let mut entry = self.entry(self.direction);
        entry.decision = Decision::Refused;
        entry.reason = r.kind.slug.to_string();
        match self.gw.audit.record(entry).await {
            Ok(rec) => {
                info!(partner = %self.consumer.id, pilot = %self.target.pilot, service = %self.target.service, reason = r.kind.slug, record = rec.id, "exchange refused");
                resp.headers_mut()
                    .insert(DISCLOSURE, HeaderValue::from(rec.id));
                resp
            }
            Err(e) => {
                warn!(partner = %self.consumer.id, error = %e, "refusal could not be recorded");
                problem::respond(
                    problem::AUDIT_UNAVAILABLE,
                    "the audit log cannot write; try again later",
                )
            }
        }
    }
}
