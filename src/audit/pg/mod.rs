//! The audit log in PostgreSQL, so that several gateway processes share one
//! log (`[storage] backend = "postgres"`).
//!
//! The promises are the embedded store's, kept by the database instead of by
//! one writer thread:
//! - a record is durable when its transaction has committed, and `record`
//!   answers only then ([`append`]);
//! - ids are dense and unique across nodes: each batch takes its ids from a
//!   counter row in the same transaction, so a rollback leaves no gap and
//!   commits happen in id order;
//! - one node at a time integrates the Merkle tree and signs checkpoints,
//!   holding a session-level advisory lock on its own connection, which the
//!   database releases when that node dies ([`tree`]); the checkpoints table
//!   is keyed by size, so there are never two checkpoints for one size;
//! - reads, proofs and queries work from any node ([`read`]).
//!
//! Records are kept as their canonical bytes (what the Merkle leaf hashes)
//! plus the columns queries use, so new record fields never need a schema
//! change. The module owns a small tokio runtime of its own: the view's
//! methods are blocking (they are called from blocking threads, as file reads
//! are), and block on this runtime, never on the gateway's.

pub mod append;
pub mod check;
pub mod files;
pub mod keys;
pub mod kv;
pub mod mailbox;
pub mod read;
pub mod schema;
pub mod tree;

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;

use super::checkpoint::{Checkpoint, Signer, Verifier};
use super::common::Head;
use super::error::AuditError;
use super::merkle;
use super::options::Options;
use crate::config::Postgres;

/// Connections one node holds at most: the writer's, the integrator's own
/// (outside the pool), and readers'. Beyond it, readers wait (bounded by
/// [`WAIT`]).
pub const POOL_SIZE: usize = 12;
/// How long a caller waits for a connection, and a new connection for the
/// server: when the database is unreachable, exchanges are refused within
/// about this long instead of piling up.
pub const WAIT: Duration = Duration::from_secs(2);
/// The longest one batch of records may take to commit before its callers
/// are told it failed (fail closed; the transaction is abandoned).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Callback that shows a new checkpoint to the read view.
type OnCheckpoint = Box<dyn Fn(Checkpoint) + Send + Sync>;

/// A runtime dropped from async code must not block: it is shut down in the
/// background instead.
struct Rt(Option<tokio::runtime::Runtime>);

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The TLS connector, when `[storage] ca` asks for TLS.
type Tls = tokio_postgres_rustls::MakeRustlsConnect;

/// A connection to the deployment's PostgreSQL database.
pub struct PgLog {
    /// The runtime the connections live on (kept alive; dropped last).
    _rt: Rt,
    /// Its handle, to block on and spawn onto.
    handle: tokio::runtime::Handle,
    /// Pooled connections for writes and reads.
    pool: Pool,
    /// How to connect, for the integrator's own connection.
    config: tokio_postgres::Config,
    /// TLS to the server, or `None` for a plain connection.
    tls: Option<Tls>,
    /// The tree as far as it is integrated, as last seen in the database.
    head: RwLock<Head>,
    /// The newest signed checkpoint seen.
    latest: RwLock<Option<Checkpoint>>,
    /// Shows a newly seen checkpoint to the read view (set once at open).
    on_checkpoint: OnceLock<OnCheckpoint>,
    /// Set at shutdown: the leader signs a last checkpoint and lets go.
    closing: tokio::sync::watch::Sender<bool>,
    /// Set once the tree task has stopped (after that last checkpoint).
    closed: tokio::sync::watch::Sender<bool>,
    /// This node's name in the `nodes` table (its partner listen address).
    pub(super) node: String,
}

impl std::fmt::Debug for PgLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLog")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Any database failure, as the audit store reports it, with its causes
/// (a pool error's "TLS handshake" says little without the certificate
/// error below it); the message names no record content (statements carry
/// values as parameters).
pub(super) fn db(e: impl std::error::Error) -> AuditError {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    AuditError::Database(msg)
}

/// A failure of our own, in the audit store's terms.
pub(super) fn dbm(msg: impl Into<String>) -> AuditError {
    AuditError::Database(msg.into())
}

fn tls_config(ca: &std::path::Path) -> Result<Tls, AuditError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(ca).map_err(|e| dbm(format!("ca {}: {e}", ca.display())))?;
    for c in certs {
        let c = c.map_err(|e| dbm(format!("ca {}: {e}", ca.display())))?;
        roots
            .add(c)
            .map_err(|e| dbm(format!("ca {}: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(db)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(cfg))
}

impl PgLog {
    /// Connects (lazily: the pool opens connections when first asked) with
    /// the settings of `[storage]`. `node` names this process in `nodes`.
    pub fn connect(settings: &Postgres, node: &str) -> Result<Arc<Self>, AuditError> {
        let mut config: tokio_postgres::Config = settings.url.parse().map_err(db)?;
        if let Some(f) = &settings.password_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| dbm(format!("password_file {}: {e}", f.display())))?;
            config.password(text.lines().next().unwrap_or("").as_bytes());
        }
        config.connect_timeout(WAIT);
        config.keepalives_idle(Duration::from_secs(10));
        config.application_name("ketenpoort");
        let tls = match &settings.ca {
            Some(ca) => {
                config.ssl_mode(SslMode::Require);
                Some(tls_config(ca)?)
            }
            None => None,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("audit-pg")
            .enable_all()
            .build()
            .map_err(AuditError::write)?;
        let mgr_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let mgr = match &tls {
            Some(t) => Manager::from_config(config.clone(), t.clone(), mgr_config),
            None => Manager::from_config(config.clone(), tokio_postgres::NoTls, mgr_config),
        };
        let pool = Pool::builder(mgr)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT))
            .create_timeout(Some(WAIT))
            .recycle_timeout(Some(WAIT))
            .build()
            .map_err(db)?;
        Ok(Arc::new(Self {
            handle: rt.handle().clone(),
            _rt: Rt(Some(rt)),
            pool,
            config,
            tls,
            head: RwLock::new(Head {
                size: 0,
                root: merkle::empty_root(),
            }),
            latest: RwLock::new(None),
            on_checkpoint: OnceLock::new(),
            closing: tokio::sync::watch::Sender::new(false),
            closed: tokio::sync::watch::Sender::new(false),
            node: node.to_string(),
        }))
    }

    /// Runs a future on this module's runtime and waits for it. Must not be
    /// called from async code (the view's methods are for blocking threads).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }

    /// Starts a task on this module's runtime.
    pub(super) fn spawn<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(f);
    }

    /// A pooled connection, or an error within [`WAIT`].
    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object, AuditError> {
        self.pool.get().await.map_err(db)
    }

    /// A connection of its own, outside the pool (the integrator holds its
    /// advisory lock on it for as long as it lives).
    pub(super) async fn own_client(&self) -> Result<tokio_postgres::Client, AuditError> {
        match &self.tls {
            Some(t) => {
                let (c, conn) = self.config.connect(t.clone()).await.map_err(db)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(c)
            }
            None => {
                let (c, conn) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(db)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(c)
            }
        }
    }

    /// The checkpoint verifier of this node's keys (the signing key in the
    /// keys directory, else the `checkpoint.vkey` a gateway left): what
    /// tools check the database's checkpoints with.
    pub fn local_verifier(opts: &Options) -> Result<Verifier, AuditError> {
        let vkey = if opts.signing_key().exists() {
            Signer::load_or_create(&opts.signing_key(), &opts.origin)
                .map_err(AuditError::write)?
                .vkey()
        } else {
            std::fs::read_to_string(opts.dir.join("checkpoint.vkey")).map_err(|e| {
                dbm(format!(
                    "no checkpoint key in {} and no {}: {e}",
                    opts.keys_dir.display(),
                    opts.dir.join("checkpoint.vkey").display()
                ))
            })?
        };
        Verifier::parse(vkey.trim()).map_err(|e| dbm(format!("verifier key: {e}")))
    }

    /// The tree as far as it is integrated (as last seen).
    pub fn head(&self) -> Head {
        *self.head.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest signed checkpoint seen.
    pub fn latest(&self) -> Option<Checkpoint> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Who is shown new checkpoints (the read view); set once.
    pub fn on_checkpoint(&self, f: OnCheckpoint) {
        let _ = self.on_checkpoint.set(f);
    }

    /// Records a newer head and checkpoint, as the integrator or the
    /// follower saw them.
    pub(super) fn saw(&self, head: Head, cp: Option<Checkpoint>) {
        {
            let mut h = self.head.write().unwrap_or_else(|e| e.into_inner());
            if head.size >= h.size {
                *h = head;
            }
        }
        if let Some(cp) = cp {
            let newer = {
                let mut l = self.latest.write().unwrap_or_else(|e| e.into_inner());
                let newer = l.as_ref().is_none_or(|o| cp.size > o.size);
                if newer {
                    *l = Some(cp.clone());
                }
                newer
            };
            if newer && let Some(f) = self.on_checkpoint.get() {
                f(cp);
            }
        }
    }
}
