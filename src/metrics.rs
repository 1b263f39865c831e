//! Prometheus metrics (prometheus-client), served on the console at `/metrics`.
//!
//! Only counts, reasons, ids of pilots and policy versions: nothing here names
//! a person, a payload or a field value.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label sets are plain name/value pairs.
pub type Labels = Vec<(String, String)>;

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    /// Exchanges by outcome (`disclosed`, `refused`).
    pub exchanges: Family<Labels, Counter>,
    /// The two series of `exchanges`, looked up once: counting one is then
    /// an atomic add, not a label set built and hashed per exchange.
    outcomes: [Counter; 2],
    /// Refusals by reason code.
    pub refusals: Family<Labels, Counter>,
    /// Audit records made durable.
    pub audit_records: Counter,
    /// Time of each audit fsync (one per batch).
    pub audit_fsync_seconds: Histogram,
    /// Records per audit batch (group commit).
    pub audit_batch_records: Histogram,
    /// Time a caller waits for its records to be durable.
    pub audit_wait_seconds: Histogram,
    /// 1 for the policy version running per pilot.
    pub policy_version: Family<Labels, Gauge>,
    /// Declared positions where a document held the wrong shape, per
    /// service: a back-end (or caller) that does not keep to its declaration.
    pub shape_violations: Family<Labels, Counter>,
    /// Connections refused or closed by a limit, per limit.
    pub connections_limited: Family<Labels, Counter>,
    /// Witness requests that brought no valid cosignature, per witness and
    /// reason (`unreachable`, `timeout`, `conflict`, `inconsistent`, ...).
    pub witness_failures: Family<Labels, Counter>,
    /// Valid cosignatures received, per witness.
    pub witness_cosignatures: Family<Labels, Counter>,
    /// 1 when the latest signed checkpoint has its quorum of cosignatures
    /// (is published), 0 while partners are shown an older one.
    pub witness_quorum_met: Gauge,
    /// Seconds since a checkpoint was last published (reached its quorum).
    pub witness_published_age_seconds: Gauge,
    /// Size of the published checkpoint.
    pub witness_published_size: Gauge,
    /// notAfter (Unix seconds) of the gateway's own certificates, by
    /// `certificate` (`server`, `client`).
    pub certificate_expiry: Family<Labels, Gauge>,
    /// notAfter (Unix seconds) of each partner's certificate, as last seen
    /// in a handshake.
    pub partner_certificate_expiry: Family<Labels, Gauge>,
    /// nextUpdate (Unix seconds) of each CRL loaded, by file.
    pub crl_next_update: Family<Labels, Gauge>,
    /// Bytes free for the gateway on the file system of the data directory.
    pub data_free_bytes: Gauge,
    /// Bytes of that file system in all.
    pub data_size_bytes: Gauge,
    /// Audit writes (a batch's write and sync) that failed: a full or
    /// failing disk; nothing was delivered for them.
    pub audit_write_errors: Counter,
    /// Log lines dropped because the log's reader fell behind
    /// ([`crate::logging`]); brought up to date when the metrics are read.
    pub log_lines_dropped: Counter,
    /// Console logins, by method (`token`, `certificate`, `link`).
    pub console_logins: Family<Labels, Counter>,
    /// Refused console logins and credentials, by method and reason
    /// (`unknown`, `expired`).
    pub console_login_failures: Family<Labels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The witnesses' metrics: failures and cosignatures per witness, the
/// quorum, and the published checkpoint's age and size.
#[allow(clippy::type_complexity)] // five metrics, named where they are used
fn register_witness(
    registry: &mut Registry,
) -> (
    Family<Labels, Counter>,
    Family<Labels, Counter>,
    Gauge,
    Gauge,
    Gauge,
) {
    let witness_failures = Family::<Labels, Counter>::default();
    let witness_cosignatures = Family::<Labels, Counter>::default();
    let (witness_quorum_met, witness_published_age_seconds, witness_published_size) =
        (Gauge::default(), Gauge::default(), Gauge::default());
    registry.register(
        "witness_failures",
        "Witness requests that brought no valid cosignature, by witness and reason",
        witness_failures.clone(),
    );
    registry.register(
        "witness_cosignatures",
        "Valid cosignatures received, by witness",
        witness_cosignatures.clone(),
    );
    registry.register(
        "witness_quorum_met",
        "1 when the latest signed checkpoint has its quorum of cosignatures",
        witness_quorum_met.clone(),
    );
    registry.register(
        "witness_published_age_seconds",
        "Seconds since a checkpoint last reached its quorum of cosignatures",
        witness_published_age_seconds.clone(),
    );
    registry.register(
        "witness_published_size",
        "Tree size of the published (cosigned) checkpoint",
        witness_published_size.clone(),
    );
    (
        witness_failures,
        witness_cosignatures,
        witness_quorum_met,
        witness_published_age_seconds,
        witness_published_size,
    )
}

/// The time an exchange waits for its records to be durable: the writer's
/// queue, the group commit it joins and that batch's sync. Beside the
/// exchange's own duration it tells how much of a slow answer was the log.
fn register_audit_wait(registry: &mut Registry) -> Histogram {
    let wait = Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 1.0,
    ]);
    registry.register(
        "audit_wait_seconds",
        "Time a caller waits for its audit records to be durable (queue, group commit, sync)",
        wait.clone(),
    );
    wait
}

/// The disk's metrics: space left for the log, failed writes.
fn register_disk(registry: &mut Registry) -> (Gauge, Gauge, Counter) {
    let free = Gauge::default();
    let size = Gauge::default();
    let errors = Counter::default();
    registry.register(
        "data_free_bytes",
        "Bytes free for the gateway on the data directory's file system",
        free.clone(),
    );
    registry.register(
        "data_size_bytes",
        "Bytes of the data directory's file system",
        size.clone(),
    );
    registry.register(
        "audit_write_errors",
        "Audit writes that failed (nothing was delivered for them)",
        errors.clone(),
    );
    (free, size, errors)
}

/// The console's login counters: logins by method, refusals by method and
/// reason.
fn register_console(registry: &mut Registry) -> (Family<Labels, Counter>, Family<Labels, Counter>) {
    let logins = Family::<Labels, Counter>::default();
    let failures = Family::<Labels, Counter>::default();
    registry.register(
        "console_logins",
        "Console logins, by method",
        logins.clone(),
    );
    registry.register(
        "console_login_failures",
        "Refused console logins and credentials, by method and reason",
        failures.clone(),
    );
    (logins, failures)
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ketenpoort");
        let exchanges = Family::<Labels, Counter>::default();
        let refusals = Family::<Labels, Counter>::default();
        let audit_records = Counter::default();
        let audit_fsync_seconds = Histogram::new([
            0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
        ]);
        let audit_batch_records = Histogram::new([
            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
        ]);
        let policy_version = Family::<Labels, Gauge>::default();
        let shape_violations = Family::<Labels, Counter>::default();
        let connections_limited = Family::<Labels, Counter>::default();
        let certificate_expiry = Family::<Labels, Gauge>::default();
        let partner_certificate_expiry = Family::<Labels, Gauge>::default();
        let crl_next_update = Family::<Labels, Gauge>::default();
        let (data_free_bytes, data_size_bytes, audit_write_errors) = register_disk(&mut registry);
        let audit_wait_seconds = register_audit_wait(&mut registry);
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log's reader fell behind (the audit log is unaffected)",
            log_lines_dropped.clone(),
        );
        let (console_logins, console_login_failures) = register_console(&mut registry);
        let (
            witness_failures,
            witness_cosignatures,
            witness_quorum_met,
            witness_published_age_seconds,
            witness_published_size,
        ) = register_witness(&mut registry);
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the gateway's own certificates (server, client), Unix seconds",
            certificate_expiry.clone(),
        );
        registry.register(
            "partner_certificate_expiry_timestamp_seconds",
            "notAfter of each partner's certificate as last seen in a handshake, Unix seconds",
            partner_certificate_expiry.clone(),
        );
        registry.register(
            "crl_next_update_timestamp_seconds",
            "nextUpdate of each CRL loaded, by file, Unix seconds",
            crl_next_update.clone(),
        );
        registry.register(
            "shape_violations",
            "Declared fields that held the wrong shape, withheld whole",
            shape_violations.clone(),
        );
        registry.register(
            "connections_limited",
            "Connections refused or closed by a limit",
            connections_limited.clone(),
        );
        registry.register("exchanges", "Exchanges by outcome", exchanges.clone());
        registry.register("refusals", "Refused exchanges by reason", refusals.clone());
        registry.register(
            "audit_records",
            "Audit records made durable",
            audit_records.clone(),
        );
        registry.register(
            "audit_fsync_seconds",
            "Duration of each audit fsync",
            audit_fsync_seconds.clone(),
        );
        registry.register(
            "audit_batch_records",
            "Records per audit group commit",
            audit_batch_records.clone(),
        );
        registry.register(
            "policy_version",
            "The policy version running per pilot",
            policy_version.clone(),
        );
        let outcomes = ["disclosed", "refused"].map(|o| {
            exchanges
                .get_or_create(&vec![("outcome".into(), o.into())])
                .clone()
        });
        Self {
            registry,
            exchanges,
            outcomes,
            refusals,
            audit_records,
            audit_fsync_seconds,
            audit_batch_records,
            audit_wait_seconds,
            policy_version,
            shape_violations,
            connections_limited,
            witness_failures,
            witness_cosignatures,
            witness_quorum_met,
            witness_published_age_seconds,
            witness_published_size,
            certificate_expiry,
            partner_certificate_expiry,
            crl_next_update,
            data_free_bytes,
            data_size_bytes,
            audit_write_errors,
            log_lines_dropped,
            console_logins,
            console_login_failures,
        }
    }

    /// Counts a console login, or a refused one with its reason.
    pub fn console_login(&self, method: &str, refused: Option<&str>) {
        let mut labels = vec![("method".to_string(), method.to_string())];
        match refused {
            None => self.console_logins.get_or_create(&labels).inc(),
            Some(reason) => {
                labels.push(("reason".to_string(), reason.to_string()));
                self.console_login_failures.get_or_create(&labels).inc()
            }
        };
    }

    /// Shows the dates of the TLS set in force: own certificates' notAfter
    /// and CRLs' nextUpdate (a CRL without one is left out).
    pub fn set_tls_dates(&self, own: &[(&str, i64)], crls: &[(String, Option<i64>)]) {
        self.certificate_expiry.clear();
        for (what, not_after) in own {
            self.certificate_expiry
                .get_or_create(&vec![("certificate".into(), (*what).into())])
                .set(*not_after);
        }
        self.crl_next_update.clear();
        for (file, next) in crls {
            if let Some(t) = next {
                self.crl_next_update
                    .get_or_create(&vec![("file".into(), file.clone())])
                    .set(*t);
            }
        }
    }

    /// Shows a partner's certificate notAfter, as seen in a handshake.
    pub fn partner_certificate(&self, partner: &str, not_after: i64) {
        self.partner_certificate_expiry
            .get_or_create(&vec![("partner".into(), partner.into())])
            .set(not_after);
    }

    /// Counts a witness request that brought no valid cosignature.
    pub fn witness_failed(&self, witness: &str, reason: &'static str) {
        self.witness_failures
            .get_or_create(&vec![
                ("witness".into(), witness.into()),
                ("reason".into(), reason.into()),
            ])
            .inc();
    }

    /// Counts a valid cosignature of a witness.
    pub fn witness_cosigned(&self, witness: &str) {
        self.witness_cosignatures
            .get_or_create(&vec![("witness".into(), witness.into())])
            .inc();
    }

    /// Counts shape violations in a document of `service` (`provider/name`).
    pub fn shape_violations(&self, service: &str, n: u32) {
        if n > 0 {
            self.shape_violations
                .get_or_create(&vec![("service".into(), service.into())])
                .inc_by(u64::from(n));
        }
    }

    /// Counts a connection refused or closed by `limit`.
    pub fn connection_limited(&self, limit: &'static str) {
        self.connections_limited
            .get_or_create(&vec![("limit".into(), limit.into())])
            .inc();
    }

    /// Counts one exchange outcome.
    pub fn exchange(&self, disclosed: bool, reason: &str) {
        self.outcomes[usize::from(!disclosed)].inc();
        if !disclosed {
            self.refusals
                .get_or_create(&vec![("reason".into(), reason.into())])
                .inc();
        }
    }

    /// Shows the running policy versions.
    pub fn set_policy<'a>(&self, pilots: impl Iterator<Item = (&'a str, &'a str)>) {
        self.policy_version.clear();
        for (pilot, version) in pilots {
            self.policy_version
                .get_or_create(&vec![
                    ("pilot".into(), pilot.into()),
                    ("version".into(), version.into()),
                ])
                .set(1);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        static SYNC: std::sync::Mutex<()> = std::sync::Mutex::new(());
        {
            // One reader at a time, so two do not add the same drops twice.
            let _one = SYNC
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (now, shown) = (
                crate::logging::dropped_lines(),
                self.log_lines_dropped.get(),
            );
            if now > shown {
                self.log_lines_dropped.inc_by(now - shown);
            }
        }
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
