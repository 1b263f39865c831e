//! The audit record and its canonical byte encoding.
//!
//! The bytes of a record are what the Merkle tree hashes, so the encoding is
//! fixed, versioned and documented (docs/audit-format.md): any partner can
//! decode and re-hash a record without this code. No personal data in clear:
//! the data subject is a keyed pseudonym, payloads appear only as a hash.

use serde_json::{Value, json};

use super::merkle::Hash;
use crate::text::Text;

/// Version byte of the records this code writes. Version 2 added the counts
/// of undeclared content withheld and of refusals folded into one record;
/// version 3 the FSC transaction id, the processing activity (a URI into the
/// register), the exchange's start and the caller's span, so that a record
/// is a Logboek Dataverwerkingen line on its own. Records of versions 1 and
/// 2 still decode (and re-encode to the same bytes).
pub const FORMAT_VERSION: u8 = 3;

/// What kind of processing a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// Data went (or was refused) from one partner to another.
    Exchange,
    /// Someone looked up a data subject in the console: looking is processing too.
    Lookup,
    /// A pilot's policy was changed.
    PolicyChange,
    /// A mailbox document expired unread and was deleted.
    MailboxExpiry,
    /// A covenant version was proposed (or a proposal withdrawn, `refused`).
    CovenantProposal,
    /// A partner accepted or revoked a covenant version (`reason`).
    CovenantSignature,
    /// A covenant version took effect.
    CovenantInForce,
    /// Retention destroyed a month's subject key: its records can no
    /// longer be linked to a person.
    Retention,
}

impl RecordKind {
    /// Every kind, in code order.
    pub const ALL: [Self; 8] = [
        Self::Exchange,
        Self::Lookup,
        Self::PolicyChange,
        Self::MailboxExpiry,
        Self::CovenantProposal,
        Self::CovenantSignature,
        Self::CovenantInForce,
        Self::Retention,
    ];

    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exchange => "exchange",
            Self::Lookup => "lookup",
            Self::PolicyChange => "policy-change",
            Self::MailboxExpiry => "mailbox-expiry",
            Self::CovenantProposal => "covenant-proposal",
            Self::CovenantSignature => "covenant-signature",
            Self::CovenantInForce => "covenant-in-force",
            Self::Retention => "retention",
        }
    }
    fn code(self) -> u8 {
        match self {
            Self::Exchange => 0,
            Self::Lookup => 1,
            Self::PolicyChange => 2,
            Self::MailboxExpiry => 3,
            Self::CovenantProposal => 4,
            Self::CovenantSignature => 5,
            Self::CovenantInForce => 6,
            Self::Retention => 7,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => Self::Exchange,
            1 => Self::Lookup,
            2 => Self::PolicyChange,
            3 => Self::MailboxExpiry,
            4 => Self::CovenantProposal,
            5 => Self::CovenantSignature,
            6 => Self::CovenantInForce,
            7 => Self::Retention,
            _ => return None,
        })
    }
}

/// Disclosed or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Data was delivered.
    Disclosed,
    /// Nothing was delivered.
    Refused,
}

impl Decision {
    /// `disclosed` or `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disclosed => "disclosed",
            Self::Refused => "refused",
        }
    }
    /// Parses the word.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "disclosed" => Some(Self::Disclosed),
            "refused" => Some(Self::Refused),
            _ => None,
        }
    }
}

/// What the caller of `Audit::record` supplies; the log adds id and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What kind of processing.
    pub kind: RecordKind,
    /// Pilot id.
    pub pilot: Text,
    /// Who gave the data (partner id, or `console:<user>`).
    pub sender: Text,
    /// Who received it.
    pub recipient: Text,
    /// Purpose id.
    pub purpose: Text,
    /// Legal basis of the purpose, as the covenant cites it.
    pub legal_basis: Text,
    /// `provider/service`.
    pub service: Text,
    /// Rule that allowed it (empty when refused before a rule was found).
    pub rule_id: Text,
    /// Policy version (`sha256:…`) of the pilot.
    pub policy_version: Text,
    /// Disclosed or refused.
    pub decision: Decision,
    /// Refusal reason code, empty when disclosed.
    pub reason: String,
    /// Field paths delivered.
    pub disclosed: Vec<Text>,
    /// Declared field paths removed.
    pub withheld: Vec<Text>,
    /// How many undeclared keys were removed: counted, never named, since a
    /// back-end can put personal data in a key name.
    pub withheld_undeclared: u32,
    /// How many further refusals of the same kind from the same source this
    /// record stands for (refusals before the pipeline are folded per minute,
    /// so a stranger cannot grow the log at handshake rate).
    pub folded: u32,
    /// SHA-256 of the bytes delivered.
    pub payload_sha256: Option<Hash>,
    /// HMAC-SHA256 of the subject's V-nummer under the audit key.
    pub subject: Option<Hash>,
    /// SHA-256 of the sender's certificate.
    pub sender_cert_sha256: Option<Hash>,
    /// SHA-256 of the recipient's certificate.
    pub recipient_cert_sha256: Option<Hash>,
    /// W3C trace id.
    pub trace_id: Option<[u8; 16]>,
    /// W3C span id.
    pub span_id: Option<[u8; 8]>,
    /// FSC transaction id (a UUIDv7), the caller's or one the gateway made:
    /// FSC-speaking partners find their call by it. Version 3.
    pub fsc_transaction_id: Option<[u8; 16]>,
    /// The register's URI of the processing activity
    /// (`urn:ketenpoort:processing-activity:<pilot>:<purpose>:<direction>`),
    /// empty when no rule was found. Version 3.
    pub processing_activity_id: Text,
    /// When the exchange began, microseconds since the epoch: the record's
    /// own time is its end. Version 3.
    pub started_micros: Option<i64>,
    /// The caller's span from its `traceparent` (Logboek's
    /// `foreign_operation`), when it sent one. Version 3.
    pub foreign_span_id: Option<[u8; 8]>,
}

impl Entry {
    /// An exchange entry with every optional part empty; callers fill in.
    /// The names may be the policy's shared texts (no copy) or `&str`s.
    pub fn exchange(
        pilot: impl Into<Text>,
        sender: impl Into<Text>,
        recipient: impl Into<Text>,
        purpose: impl Into<Text>,
        service: impl Into<Text>,
    ) -> Self {
        Self {
            kind: RecordKind::Exchange,
            pilot: pilot.into(),
            sender: sender.into(),
            recipient: recipient.into(),
            purpose: purpose.into(),
            legal_basis: Text::default(),
            service: service.into(),
            rule_id: Text::default(),
            policy_version: Text::default(),
            decision: Decision::Refused,
            reason: String::new(),
            disclosed: Vec::new(),
            withheld: Vec::new(),
            withheld_undeclared: 0,
            folded: 0,
            payload_sha256: None,
            subject: None,
            sender_cert_sha256: None,
            recipient_cert_sha256: None,
            trace_id: None,
            span_id: None,
            fsc_transaction_id: None,
            processing_activity_id: Text::default(),
            started_micros: None,
            foreign_span_id: None,
        }
    }
}

impl Entry {
    /// Retention unlinked a month: `scope` is the pilot (empty for the
    /// look-ups' or the legacy key), `month` `YYYY-MM` (or `legacy`), and
    /// `records` how many records can no longer be linked to a person.
    pub fn retention(scope: &str, month: &str, records: u64) -> Self {
        let mut e = Self::exchange(
            scope,
            "ketenpoort",
            "ketenpoort",
            "retention",
            "ketenpoort/retention",
        );
        e.kind = RecordKind::Retention;
        e.decision = Decision::Disclosed;
        e.reason = format!("unlinked {month}: {records} records");
        e
    }

    /// A look-up of a data subject in the log by `who` (`console:<user>`,
    /// `cli:<user>`): looking is processing too, recorded the same way
    /// wherever it happens.
    pub fn lookup(who: &str, what: &str, subject: Hash) -> Self {
        let mut e = Self::exchange("", "ketenpoort", who, "audit-lookup", what);
        e.kind = RecordKind::Lookup;
        e.decision = Decision::Disclosed;
        e.subject = Some(subject);
        e.disclosed = vec!["audit-records".into()];
        e
    }
}

/// A record as stored: its index in the log, its time, and the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Format version of the bytes (1, 2 or 3): kept so that a record read back
    /// encodes to exactly the bytes that were hashed.
    pub version: u8,
    /// Index in the log (leaf index in the Merkle tree).
    pub id: u64,
    /// UTC, microseconds since the Unix epoch; never decreases along the log.
    pub time_micros: i64,
    /// The rest.
    pub entry: Entry,
}

/// Why bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record encoding: {0}")]
pub struct DecodeError(pub &'static str);

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            out.extend_from_slice(b);
        }
    }
}

/// Reads a record's fields in order. Without `keep` it checks each field as
/// strictly and keeps none (empty strings and lists, which allocate
/// nothing): [`Record::check`], for `audit verify`, which needs only that
/// a record decodes and its id.
struct Reader<'a> {
    bytes: &'a [u8],
    keep: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (a, b) = self.bytes.split_at(n);
        self.bytes = b;
        Ok(a)
    }
    fn utf8(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError("string is not UTF-8"))
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let s = self.utf8()?;
        Ok(if self.keep {
            s.to_string()
        } else {
            String::new()
        })
    }
    /// A string field shared once read: one allocation, as for a `String`.
    fn text(&mut self) -> Result<Text, DecodeError> {
        let s = self.utf8()?;
        Ok(if self.keep {
            Text::from(s)
        } else {
            Text::default()
        })
    }
    fn list(&mut self) -> Result<Vec<Text>, DecodeError> {
        let n = self.u32()? as usize;
        if n > self.bytes.len() / 4 {
            return Err(DecodeError("list longer than the record"));
        }
        if !self.keep {
            for _ in 0..n {
                self.utf8()?;
            }
            return Ok(Vec::new());
        }
        (0..n).map(|_| self.text()).collect()
    }
    fn opt<const N: usize>(&mut self) -> Result<Option<[u8; N]>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(
                self.take(N)?
                    .try_into()
                    .map_err(|_| DecodeError("truncated"))?,
            )),
            _ => Err(DecodeError("bad option tag")),
        }
    }
}

impl Record {
    /// The canonical bytes: what is stored and hashed.
    pub fn encode(&self) -> Vec<u8> {
        let e = &self.entry;
        let mut out = Vec::with_capacity(512);
        out.push(self.version);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.time_micros.to_be_bytes());
        out.push(e.kind.code());
        for s in [
            e.pilot.as_str(),
            &e.sender,
            &e.recipient,
            &e.purpose,
            &e.legal_basis,
            &e.service,
            &e.rule_id,
            &e.policy_version,
        ] {
            put_str(&mut out, s);
        }
        out.push(match e.decision {
            Decision::Disclosed => 0,
            Decision::Refused => 1,
        });
        put_str(&mut out, &e.reason);
        for list in [&e.disclosed, &e.withheld] {
            out.extend_from_slice(&(list.len() as u32).to_be_bytes());
            for s in list {
                put_str(&mut out, s);
            }
        }
        if self.version >= 2 {
            out.extend_from_slice(&e.withheld_undeclared.to_be_bytes());
            out.extend_from_slice(&e.folded.to_be_bytes());
        }
        for h in [
            &e.payload_sha256,
            &e.subject,
            &e.sender_cert_sha256,
            &e.recipient_cert_sha256,
        ] {
            put_opt(&mut out, h.as_ref().map(|h| h.as_slice()));
        }
        put_opt(&mut out, e.trace_id.as_ref().map(|h| h.as_slice()));
        put_opt(&mut out, e.span_id.as_ref().map(|h| h.as_slice()));
        if self.version >= 3 {
            put_opt(
                &mut out,
                e.fsc_transaction_id.as_ref().map(|h| h.as_slice()),
            );
            put_str(&mut out, &e.processing_activity_id);
            put_opt(
                &mut out,
                e.started_micros
                    .map(i64::to_be_bytes)
                    .as_ref()
                    .map(|b| b.as_slice()),
            );
            put_opt(&mut out, e.foreign_span_id.as_ref().map(|h| h.as_slice()));
        }
        out
    }

    /// Decodes canonical bytes; anything else (other version, trailing bytes,
    /// bad UTF-8) is an error, never a guess.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::read(Reader { bytes, keep: true })
    }

    /// Whether `bytes` decode, as strictly as [`Record::decode`], and the
    /// record's id; allocates nothing.
    pub fn check(bytes: &[u8]) -> Result<u64, DecodeError> {
        Self::read(Reader { bytes, keep: false }).map(|r| r.id)
    }

    fn read(mut r: Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if !(1..=FORMAT_VERSION).contains(&version) {
            return Err(DecodeError("unknown format version"));
        }
        let id = r.u64()?;
        let time_micros = r.u64()? as i64;
        let kind = RecordKind::from_code(r.u8()?).ok_or(DecodeError("unknown kind"))?;
        let pilot = r.text()?;
        let (sender, recipient) = (r.text()?, r.text()?);
        let purpose = r.text()?;
        let legal_basis = r.text()?;
        let service = r.text()?;
        let (rule_id, policy_version) = (r.text()?, r.text()?);
        let decision = match r.u8()? {
            0 => Decision::Disclosed,
            1 => Decision::Refused,
            _ => return Err(DecodeError("unknown decision")),
        };
        let reason = r.str()?;
        let disclosed = r.list()?;
        let withheld = r.list()?;
        let (withheld_undeclared, folded) = if version >= 2 {
            (r.u32()?, r.u32()?)
        } else {
            (0, 0)
        };
        let payload_sha256 = r.opt::<32>()?;
        let subject = r.opt::<32>()?;
        let sender_cert_sha256 = r.opt::<32>()?;
        let recipient_cert_sha256 = r.opt::<32>()?;
        let trace_id = r.opt::<16>()?;
        let span_id = r.opt::<8>()?;
        let (fsc_transaction_id, processing_activity_id, started_micros, foreign_span_id) =
            if version >= 3 {
                (
                    r.opt::<16>()?,
                    r.text()?,
                    r.opt::<8>()?.map(i64::from_be_bytes),
                    r.opt::<8>()?,
                )
            } else {
                (None, Text::default(), None, None)
            };
        if !r.bytes.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(Self {
            version,
            id,
            time_micros,
            entry: Entry {
                kind,
                pilot,
                sender,
                recipient,
                purpose,
                legal_basis,
                service,
                rule_id,
                policy_version,
                decision,
                reason,
                disclosed,
                withheld,
                withheld_undeclared,
                folded,
                payload_sha256,
                subject,
                sender_cert_sha256,
                recipient_cert_sha256,
                trace_id,
                span_id,
                fsc_transaction_id,
                processing_activity_id,
                started_micros,
                foreign_span_id,
            },
        })
    }

    /// The record's time as RFC 3339 UTC with microseconds.
    pub fn time_rfc3339(&self) -> String {
        format_micros(self.time_micros)
    }

    /// The record as JSON (hashes in hex), for queries, exports and the console.
    pub fn to_json(&self) -> Value {
        let e = &self.entry;
        let h = |x: &Option<Hash>| x.map(hex::encode);
        json!({
            "id": self.id,
            "time": self.time_rfc3339(),
            "kind": e.kind.as_str(),
            "pilot": e.pilot,
            "sender": e.sender,
            "recipient": e.recipient,
            "purpose": e.purpose,
            "legal_basis": e.legal_basis,
            "service": e.service,
            "rule_id": e.rule_id,
            "policy_version": e.policy_version,
            "decision": e.decision.as_str(),
            "reason": e.reason,
            "disclosed": e.disclosed,
            "withheld": e.withheld,
            "withheld_undeclared": e.withheld_undeclared,
            "folded": e.folded,
            "payload_sha256": h(&e.payload_sha256),
            "subject": h(&e.subject),
            "sender_cert_sha256": h(&e.sender_cert_sha256),
            "recipient_cert_sha256": h(&e.recipient_cert_sha256),
            "trace_id": e.trace_id.map(hex::encode),
            "span_id": e.span_id.map(hex::encode),
            "fsc_transaction_id": e.fsc_transaction_id.map(|u| uuid::Uuid::from_bytes(u).hyphenated().to_string()),
            "processing_activity_id": e.processing_activity_id,
            "started": e.started_micros.map(format_micros),
            "foreign_span_id": e.foreign_span_id.map(hex::encode),
        })
    }
}

/// Now, in microseconds since the epoch (the unit of record times).
pub fn now_micros() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

/// Microseconds since the epoch as RFC 3339 UTC.
pub fn format_micros(micros: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    ))
    .unwrap_or_default()
}

/// Parses `YYYY-MM-DD` (start of that day) or RFC 3339 into epoch microseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1000) as i64);
    }
    let d = time::Date::parse(
        s,
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    Some(d.midnight().assume_utc().unix_timestamp() * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(id: u64) -> Record {
        let mut e = Entry::exchange(
            "utrecht",
            "dtv",
            "gemeente-utrecht",
            "casusoverleg",
            "dtv/vertrekdossier",
        );
        e.decision = Decision::Disclosed;
        e.disclosed = vec!["vnummer".into(), "naam".into()];
        e.withheld = vec!["medisch".into()];
        e.subject = Some([7; 32]);
        e.trace_id = Some([1; 16]);
        Record {
            version: FORMAT_VERSION,
            id,
            time_micros: 1_700_000_000_000_000,
            entry: e,
        }
    }

    #[test]
    fn round_trip_and_strictness() {
        let r = sample(42);
        let b = r.encode();
        assert_eq!(Record::decode(&b).unwrap(), r);
        let mut more = b.clone();
        more.push(0);
        assert!(Record::decode(&more).is_err());
        for cut in 0..b.len() {
            assert!(Record::decode(&b[..cut]).is_err());
        }
        let mut v4 = b;
        v4[0] = 4;
        assert!(Record::decode(&v4).is_err());
    }

    /// `audit verify` checks records without decoding them into memory:
    /// the check must refuse every byte string decode refuses, and no other.
    #[test]
    fn check_refuses_what_decode_refuses() {
        let b = sample(42).encode();
        assert_eq!(Record::check(&b), Ok(42));
        let mut variants: Vec<Vec<u8>> = (0..b.len()).map(|cut| b[..cut].to_vec()).collect();
        for i in 0..b.len() {
            for x in [0x00, 0x01, 0x7f, 0x80, 0xc3, 0xff] {
                let mut v = b.clone();
                v[i] = x;
                variants.push(v);
            }
        }
        let mut longer = b;
        longer.push(0);
        variants.push(longer);
        let mut refused = 0;
        for v in &variants {
            let decoded = Record::decode(v).map(|r| r.id);
            assert_eq!(Record::check(v), decoded, "{v:?}");
            refused += usize::from(decoded.is_err());
        }
        assert!(refused > 500, "{refused}");
    }

    #[test]
    fn version_1_records_still_decode_and_keep_their_bytes() {
        let mut r = sample(7);
        r.version = 1;
        let b = r.encode();
        assert_eq!(b[0], 1);
        let back = Record::decode(&b).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.encode(), b);
        let mut r2 = sample(7);
        r2.version = 2;
        r2.entry.withheld_undeclared = 70_000;
        r2.entry.folded = 3;
        let b2 = r2.encode();
        assert_eq!(b2.len(), b.len() + 8);
        assert_eq!(Record::decode(&b2).unwrap(), r2);
    }

    #[test]
    fn version_2_records_keep_their_bytes_and_version_3_carries_the_new_fields() {
        let mut r = sample(9);
        r.version = 2;
        let b = r.encode();
        let back = Record::decode(&b).unwrap();
        assert_eq!(back.encode(), b);
        assert_eq!(back.entry.processing_activity_id, "");
        let mut r3 = sample(9);
        r3.entry.fsc_transaction_id = Some([0x42; 16]);
        r3.entry.processing_activity_id =
            "urn:ketenpoort:processing-activity:utrecht:casusoverleg:response".into();
        r3.entry.started_micros = Some(1_699_999_999_000_123);
        r3.entry.foreign_span_id = Some([3; 8]);
        let b3 = r3.encode();
        assert_eq!(b3[0], 3);
        assert_eq!(Record::decode(&b3).unwrap(), r3);
        for cut in 0..b3.len() {
            assert!(Record::decode(&b3[..cut]).is_err());
        }
    }

    #[test]
    fn times_format_and_parse() {
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(parse_time("1970-01-02"), Some(86_400_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_time("gisteren"), None);
    }
}
