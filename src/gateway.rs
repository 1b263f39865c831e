//! The running gateway: everything the listeners share between connections,
//! built once from the configuration and partly swapped on reload.
//!
//! Configuration, the policy snapshot, the TLS configs and the console users
//! each live behind a [`crate::swap::Swap`]: replaced whole when their files
//! change, never half. The audit log, the mailboxes and the metrics live as
//! long as the process. Exchange and console code take a `&Gateway`; the
//! listeners in [`crate::server`] own it.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use crate::audit::pg::files::SharedDir;
use crate::audit::{self, Audit, AuditError};
use crate::config::{ConfigError, GatewayConfig};
use crate::console::state::ConsoleState;
use crate::console::users::UserStore;
use crate::covenant::Registry as Covenants;
use crate::metrics::Metrics;
use crate::policy::store::{Enforce, PolicyStore};
use crate::storage::consent::ConsentRegister;
use crate::storage::mailbox::Mailbox;
use crate::storage::registry::{CheckLimiter, Registry};
use crate::tls::{TlsError, TlsStore};
use crate::witnessing::{Witnessing, WitnessingError};

/// The response body type of every handler.
pub type Body = Full<Bytes>;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A config file is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A certificate, key or CRL could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The audit log could not be opened (or is damaged).
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The mailbox store could not be opened.
    #[error("mailbox: {0}")]
    Mailbox(String),
    /// The console users file is not valid.
    #[error("console users: {0}")]
    Console(String),
    /// The data directory cannot be made private.
    #[error("data directory: {0}")]
    DataDir(String),
    /// The witnesses cannot be used (a bad vkey, the cosigned file).
    #[error(transparent)]
    Witnessing(#[from] WitnessingError),
}

/// Everything a running gateway shares between connections.
pub struct Gateway {
    /// The gateway's configuration.
    pub config: GatewayConfig,
    /// Partners, their certificate index, the pilots' rules and pseudonym
    /// keys, reloaded when partners.toml or a policy file changes.
    pub policy: PolicyStore,
    /// TLS configs, reloaded when certificates or CRLs change.
    pub tls: TlsStore,
    /// Covenant versions and signatures: which version of each pilot runs.
    pub covenants: Arc<Covenants>,
    /// The audit log: every disclosure and refusal, durable before delivery.
    pub audit: Arc<Audit>,
    /// The witnesses that cosign the log's checkpoints, and what is
    /// published to partners.
    pub witnessing: Arc<Witnessing>,
    /// Documents waiting for partners without a server.
    pub mailbox: Arc<Mailbox>,
    /// Who has an open stay in which LVV, under keyed pseudonyms.
    pub registry: Arc<Registry>,
    /// Registration checks per partner per sliding minute.
    pub checks: CheckLimiter,
    /// Consents given and withdrawn, under keyed pseudonyms.
    pub consents: Arc<ConsentRegister>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Console users and state.
    pub console: ConsoleState,
    /// Request body bytes (in KiB) that may be buffered at once, all
    /// connections together.
    pub body_budget: Arc<Semaphore>,
    /// Refusals before the pipeline, folded per source, kind and minute.
    pub strangers: crate::conn::Folder,
    /// Set by `ketenpoort maintenance on` (admin socket): `/healthz` answers
    /// 503 "maintenance" so load balancers drain this node, while exchanges
    /// go on. Not kept across a restart.
    pub maintenance: std::sync::atomic::AtomicBool,
    /// Each partner's certificate notAfter (Unix seconds), as last seen in
    /// a handshake: for the expiry warnings.
    pub partner_expiry: std::sync::Mutex<std::collections::BTreeMap<String, i64>>,
}

/// The name partners.toml is shared under (on a shared database).
const PARTNERS_FILE: &str = "partners";

/// Free space on the data directory below this share (percent) is warned about.
pub const DISK_WARN_PERCENT: u64 = 10;
/// Free space on the data directory below this many bytes is warned about.
pub const DISK_WARN_BYTES: u64 = 1 << 30;

/// A certificate this many days or fewer from its notAfter is warned about.
pub const EXPIRY_WARN_DAYS: i64 = 30;

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Gateway {
    /// Reads the whole configuration; any error stops the start.
    pub fn load(config_file: &Path) -> Result<Self, StartError> {
        Self::from_config(GatewayConfig::load(config_file)?)
    }

    /// Builds the gateway from a configuration already read (and perhaps
    /// adjusted, as `serve --partners-addr` does).
    pub fn from_config(config: GatewayConfig) -> Result<Self, StartError> {
        crate::datadir::private_umask();
        crate::datadir::secure(&config.data_dir)
            .map_err(|e| StartError::DataDir(format!("{}: {e}", config.data_dir.display())))?;
        // The files an operator edits are checked first, so their mistakes
        // are the ones reported (with file and line), before certificates.
        crate::policy::PolicySet::load(&config.partners_file, &config.pilots_dir)?;
        // Fetched CRLs first, so a CA whose CRL is only published over HTTP
        // is covered from the first handshake.
        crate::crl::refresh_blocking(&config.tls);
        let tls = TlsStore::new(config.tls.clone())?;
        let metrics = Arc::new(Metrics::new());
        let mut audit_opts = audit::Options::new(&config.data_dir, &config.deployment);
        audit_opts.metrics = Some(metrics.clone());
        audit_opts.storage = config.storage.clone();
        audit_opts.node = config.partners_addr.to_string();
        let audit = Arc::new(Audit::open(audit_opts)?);
        let witnessing = Arc::new(Witnessing::open(
            &config,
            audit.view().clone(),
            &audit.key_history(),
            metrics.clone(),
        )?);
        // The covenant registry needs the log (every proposal, signature and
        // version taking effect is recorded), the policy needs the registry.
        // On a shared database, one covenant state for every node.
        let covenants = Arc::new(match audit.view().postgres() {
            Some(pg) => Covenants::with_store(
                Box::new(crate::covenant::shared::Shared::new(
                    pg.clone(),
                    &config.data_dir,
                    &config.pilots_dir,
                )),
                audit.clone(),
            ),
            None => Covenants::new(&config.data_dir, audit.clone()),
        });
        let enforce: Arc<dyn Enforce> = covenants.clone();
        let policy = PolicyStore::load_enforced(&config, Some(enforce))?;
        take_inbox(&covenants, &policy, &tls);
        let snap = policy.current();
        metrics.set_policy(
            snap.policy
                .pilots
                .values()
                .map(|p| (p.id.as_str(), p.version.as_str())),
        );
        let console = ConsoleState::new(
            UserStore::load(&config.data_dir).map_err(|e| StartError::Console(e.to_string()))?,
            crate::console::session::Sessions::new(config.console.session_idle),
            crate::console::last_use::LastUse::load(&config.data_dir),
            crate::console::idp::Oidc::new(&config.console, &config.tls.trust_anchors)
                .map_err(StartError::Console)?,
        );
        let mut mailbox = Mailbox::open(
            &config.data_dir.join("mailbox"),
            config.limits.mailbox_quota_bytes,
            config.limits.mailbox_total_bytes,
        )
        .map_err(|e| StartError::Mailbox(e.to_string()))?;
        if let Some(pg) = audit.view().postgres() {
            mailbox = mailbox
                .shared(pg.clone())
                .map_err(|e| StartError::Mailbox(e.to_string()))?;
        }
        let mailbox = Arc::new(mailbox);
        let registry_key =
            crate::keys::load_or_create(&crate::keys::dir(&config.data_dir).join("registry.key"))
                .map_err(|e| StartError::Mailbox(format!("registry key: {e}")))?;
        let consent_key =
            crate::keys::load_or_create(&crate::keys::dir(&config.data_dir).join("consent.key"))
                .map_err(|e| StartError::Mailbox(format!("consent key: {e}")))?;
        let mut registry = Registry::open(mailbox.db(), &registry_key)
            .map_err(|e| StartError::Mailbox(format!("registry: {e}")))?;
        let mut consents = ConsentRegister::open(mailbox.db(), &consent_key)
            .map_err(|e| StartError::Mailbox(format!("consent register: {e}")))?;
        // On a shared database, every node answers from one registry and
        // one consent register (the keys directory, copied to every node,
        // holds their keys).
        if let Some(pg) = audit.view().postgres() {
            // Another registry or consent key would file the same person
            // under another pseudonym: such a node refuses to start.
            for (name, key) in [
                ("registry-key", &registry_key),
                ("consent-key", &consent_key),
            ] {
                let print = hex::encode(&crate::identity::sha256(key)[..8]);
                pg.check_key(&format!("{name} sha256"), &print)
                    .map_err(|e| StartError::Mailbox(e.to_string()))?;
            }
            registry = registry.shared(pg.clone());
            consents = consents.shared(pg.clone());
            // A user added on any node signs in on every node.
            let users = console.users.file().to_path_buf();
            pg.start_mirror(vec![("console-users".to_string(), users)]);
        }
        let (registry, consents) = (Arc::new(registry), Arc::new(consents));
        let gw = Self {
            registry,
            consents,
            checks: CheckLimiter::default(),
            body_budget: Arc::new(Semaphore::new(config.limits.max_buffered_body_bytes / 1024)),
            strangers: crate::conn::Folder::default(),
            maintenance: std::sync::atomic::AtomicBool::new(false),
            partner_expiry: std::sync::Mutex::default(),
            config,
            policy,
            tls,
            covenants,
            audit,
            witnessing,
            mailbox,
            metrics,
            console,
        };
        gw.check_expiry();
        Ok(gw)
    }

    /// On a shared database, shares the policy between the nodes: the
    /// pilot files, partners.toml and the console's policy history are
    /// mirrored through the database, and a node's watcher reloads what
    /// another node changed. A file changed on this node is published only
    /// once this node runs it (so it validated and was recorded as a
    /// proposal); a broken edit stays on its disk, logged, and the other
    /// nodes keep the last good policy.
    pub fn share_policy(self: &Arc<Self>) {
        let Some(pg) = self.audit.view().postgres() else {
            return;
        };
        // Weak: the mirror runs on the database's runtime, which must not
        // keep a stopped gateway alive.
        let gw = Arc::downgrade(self);
        let gate: crate::audit::pg::files::Gate = Arc::new(move |name: &str, content: &[u8]| {
            let Some(gw) = gw.upgrade() else {
                return false;
            };
            let snap = gw.policy.current();
            if name == PARTNERS_FILE {
                return *snap.partners_bytes == *content;
            }
            match name
                .strip_prefix("pilot/")
                .and_then(|n| n.strip_suffix(".toml"))
            {
                Some(id) => snap
                    .on_disk
                    .pilots
                    .get(id)
                    .is_some_and(|p| p.text.as_bytes() == content),
                None => true,
            }
        });
        let dirs = vec![
            SharedDir {
                prefix: "pilot/".into(),
                dir: self.config.pilots_dir.clone(),
                suffix: ".toml",
                nested: false,
                write_once: false,
            },
            SharedDir {
                prefix: "policy-history/".into(),
                dir: self.config.data_dir.join("policy-history"),
                suffix: ".json",
                nested: true,
                write_once: true,
            },
        ];
        let partners = (PARTNERS_FILE.to_string(), self.config.partners_file.clone());
        pg.start_mirror_with(vec![partners], dirs, gate);
        self.follow_covenants(pg.clone());
    }

    /// Runs the covenant registry again whenever another node changed the
    /// shared covenant state (a signature it took, a version it brought
    /// into force), so every node runs the same version within a few
    /// seconds; and shreds the subject keys retention destroyed elsewhere.
    fn follow_covenants(self: &Arc<Self>, pg: Arc<crate::audit::pg::PgLog>) {
        let gw = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("covenant-follow".into())
            .spawn(move || {
                let mut seen: Option<Vec<u8>> = None;
                loop {
                    std::thread::sleep(crate::audit::pg::files::MIRROR_EVERY);
                    let Some(gw) = gw.upgrade() else {
                        return;
                    };
                    // A subject key retention destroyed on another node
                    // goes from this node's disk too.
                    if let Err(e) = gw.audit.subject_keys().sync() {
                        warn!(error = %e, "subject keys not synced with the database");
                    }
                    match pg.kv_digest(crate::covenant::shared::STATE) {
                        Ok(d) if seen.as_ref() != Some(&d) => {
                            // The first round too: another node may have
                            // changed the state since this one started.
                            gw.refresh_policy();
                            seen = Some(d);
                        }
                        Ok(_) => {}
                        Err(e) => warn!(error = %e, "shared covenant state not readable"),
                    }
                }
            })
            .map(drop)
            .unwrap_or_else(|e| error!(error = %e, "covenant follower not started"));
    }

    /// Runs a blocking reload off the async threads and logs its outcome;
    /// a part that fails to load keeps running as it was.
    async fn reload(
        self: &Arc<Self>,
        what: &'static str,
        load: impl FnOnce(&Gateway) -> Result<(), String> + Send + 'static,
    ) -> bool {
        let gw = self.clone();
        match tokio::task::spawn_blocking(move || load(&gw)).await {
            Ok(Ok(())) => {
                info!(what, "reloaded");
                true
            }
            Ok(Err(e)) => {
                error!(what, error = %e, "not reloaded; keeping the running one");
                false
            }
            Err(e) => {
                error!(what, error = %e, "reload task failed");
                false
            }
        }
    }

    /// Re-reads certificates and CRLs, keeping the running ones if the new ones
    /// do not build.
    pub async fn reload_tls(self: &Arc<Self>) {
        self.reload("certificates and CRLs", |gw| {
            gw.tls.reload().map_err(|e| e.to_string())
        })
        .await;
        self.check_expiry();
    }

    /// Shows the certificate and CRL dates in the metrics and logs a warning
    /// for each that is near: the gateway's own certificates and partners'
    /// (as last seen) within [`EXPIRY_WARN_DAYS`], a CRL within a day of its
    /// nextUpdate or past it.
    pub fn check_expiry(&self) {
        let now = unix_now();
        let tls = self.tls.current();
        let own: Vec<(&str, i64)> = tls.validity.own.iter().map(|(w, _, a)| (*w, *a)).collect();
        self.metrics.set_tls_dates(&own, &tls.validity.crls);
        let soon = EXPIRY_WARN_DAYS * 86_400;
        for (what, at) in own {
            if at - now < soon {
                warn!(
                    certificate = what,
                    days_left = (at - now) / 86_400,
                    "the gateway's own certificate expires soon: renew it"
                );
            }
        }
        for (file, next) in &tls.validity.crls {
            if let Some(t) = next
                && *t - now < 86_400
            {
                warn!(crl = %file, hours_left = (*t - now) / 3600, "CRL nextUpdate is near or past: renew the CRL file");
            }
        }
        let partners = self
            .partner_expiry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (partner, at) in partners.iter() {
            if at - now < soon {
                warn!(%partner, days_left = (at - now) / 86_400, "a partner's certificate expires soon");
            }
        }
    }

    /// Shows the space left on the data directory's file system (metrics)
    /// and warns when the log is about to run out of it: below
    /// [`DISK_WARN_PERCENT`] or [`DISK_WARN_BYTES`] free. Blocking (statvfs).
    pub fn check_disk(&self) {
        let Ok(st) = rustix::fs::statvfs(&self.config.data_dir) else {
            return;
        };
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        let size = st.f_blocks.saturating_mul(st.f_frsize);
        self.metrics
            .data_free_bytes
            .set(i64::try_from(free).unwrap_or(i64::MAX));
        self.metrics
            .data_size_bytes
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        if free < DISK_WARN_BYTES
            || free.saturating_mul(100) < size.saturating_mul(DISK_WARN_PERCENT)
        {
            warn!(
                free_bytes = free,
                size_bytes = size,
                data_dir = %self.config.data_dir.display(),
                "little disk space left for the audit log: when it is full, exchanges are refused"
            );
        }
    }

    /// Notes a partner's certificate notAfter seen in a handshake (metric);
    /// a new date within [`EXPIRY_WARN_DAYS`] is warned about at once.
    pub fn saw_partner_certificate(&self, partner: &str, not_after: std::time::SystemTime) {
        let at = not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.metrics.partner_certificate(partner, at);
        let mut partners = self
            .partner_expiry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if partners.insert(partner.to_string(), at) != Some(at)
            && at - unix_now() < EXPIRY_WARN_DAYS * 86_400
        {
            warn!(%partner, days_left = (at - unix_now()) / 86_400, "a partner's certificate expires soon");
        }
    }

    /// Re-reads partners and policies, keeping the running ones if any file
    /// does not validate.
    pub async fn reload_policy(self: &Arc<Self>) {
        let loaded = self
            .reload("partners and policies", |gw| {
                gw.policy.reload().map_err(|e| e.to_string())?;
                take_inbox(&gw.covenants, &gw.policy, &gw.tls);
                Ok(())
            })
            .await;
        if loaded {
            let snap = self.policy.current();
            self.metrics.set_policy(
                snap.policy
                    .pilots
                    .values()
                    .map(|p| (p.id.as_str(), p.version.as_str())),
            );
            for p in snap.policy.pilots.values() {
                info!(pilot = %p.id, version = %p.version, rules = p.rules.len(), "policy loaded");
            }
        }
    }

    /// Runs the covenant registry again on the files as last read (a
    /// signature arrived, a proposal was withdrawn). Blocking.
    pub fn refresh_policy(&self) {
        if let Err(e) = self.policy.refresh() {
            error!(error = %e, "policy not refreshed");
        }
    }

    /// Re-reads the console users (`ketenpoort user add/revoke` changed them).
    pub async fn reload_users(self: &Arc<Self>) {
        self.reload("console users", |gw| {
            gw.console.users.reload().map_err(|e| e.to_string())
        })
        .await;
    }
}

/// Takes covenant signatures left in the data directory's inbox (by `pki
/// init`, or a tool), checked exactly as those sent to the API; the policy
/// is enforced again when any was taken. Blocking.
fn take_inbox(covenants: &Covenants, policy: &PolicyStore, tls: &TlsStore) {
    let verifier = tls.current().partner_verifier.clone();
    if covenants.take_inbox(verifier.as_ref(), &policy.current().identities)
        && let Err(e) = policy.refresh()
    {
        error!(error = %e, "policy not refreshed after covenant signatures");
    }
}
