//! The database schema, as numbered migrations recorded in
//! `schema_migrations`, and what the deployment's keys are.
//!
//! Migrations run under a transaction-level advisory lock, so that several
//! nodes starting at once (or `storage migrate` beside them) apply each one
//! exactly once; running them again changes nothing. A node whose
//! checkpoint key differs from the one the database knows refuses to start:
//! two keys would sign two views of one log.

use super::{PgLog, db};
use crate::audit::error::AuditError;

/// The advisory lock key migrations hold (an arbitrary constant, distinct
/// from the integrator's).
const MIGRATE_LOCK: i64 = 0x6b70_6d69_6772;

/// Each migration: its version and its SQL. Never edit one that shipped;
/// add the next.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE log_counter (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        next bigint NOT NULL,
        last_time bigint NOT NULL
    );
    INSERT INTO log_counter VALUES (true, 0, 0);
    CREATE TABLE records (
        id bigint PRIMARY KEY,
        time_micros bigint NOT NULL,
        kind text NOT NULL,
        pilot text NOT NULL,
        sender text NOT NULL,
        recipient text NOT NULL,
        purpose text NOT NULL,
        decision text NOT NULL,
        subject bytea,
        leaf bytea NOT NULL,
        bytes bytea NOT NULL
    );
    CREATE INDEX records_subject ON records (subject, id) WHERE subject IS NOT NULL;
    CREATE INDEX records_sender ON records (sender, id);
    CREATE INDEX records_recipient ON records (recipient, id);
    CREATE INDEX records_pilot ON records (pilot, id);
    CREATE INDEX records_purpose ON records (purpose, id);
    CREATE INDEX records_time ON records (time_micros);
    CREATE TABLE tree_nodes (
        level integer NOT NULL,
        idx bigint NOT NULL,
        hash bytea NOT NULL,
        PRIMARY KEY (level, idx)
    );
    CREATE TABLE tree_head (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        size bigint NOT NULL,
        root bytea NOT NULL
    );
    INSERT INTO tree_head VALUES (true, 0, sha256(''::bytea));
    CREATE TABLE checkpoints (
        size bigint PRIMARY KEY,
        note text NOT NULL,
        signed_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE deployment_keys (
        name text PRIMARY KEY,
        value text NOT NULL
    );
    CREATE TABLE nodes (
        name text PRIMARY KEY,
        seen timestamptz NOT NULL,
        leader boolean NOT NULL DEFAULT false
    );",
    ),
    (
        2,
        "CREATE TABLE subject_keys (
        scope text NOT NULL,
        month text NOT NULL,
        sealed bytea NOT NULL,
        PRIMARY KEY (scope, month)
    );",
    ),
    (
        3,
        "CREATE SEQUENCE mailbox_ids;
    CREATE TABLE mailbox (
        recipient text NOT NULL,
        id bigint NOT NULL,
        expires_micros bigint NOT NULL,
        item bytea NOT NULL,
        PRIMARY KEY (recipient, id)
    );
    CREATE INDEX mailbox_expires ON mailbox (expires_micros);",
    ),
    (
        4,
        "CREATE TABLE kv (
        space text NOT NULL,
        key bytea NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (space, key)
    );",
    ),
    (
        5,
        "CREATE TABLE shared_files (
        name text PRIMARY KEY,
        version bigint NOT NULL,
        content bytea NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    );",
    ),
];

/// The newest schema version this build knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// What `storage status` shows.
#[derive(Debug, Clone)]
pub struct Status {
    /// Schema version applied (0: none).
    pub version: i32,
    /// Records committed.
    pub records: u64,
    /// Size and root of the integrated tree.
    pub head: (u64, String),
    /// Size of the newest checkpoint.
    pub checkpoint: Option<u64>,
    /// Nodes seen in the last minute, with seconds since, and which leads.
    pub nodes: Vec<(String, f64, bool)>,
    /// The keys the database knows (name, value).
    pub keys: Vec<(String, String)>,
}

impl PgLog {
    /// Applies the migrations not yet applied; gives the versions applied now.
    pub fn migrate(&self) -> Result<Vec<i32>, AuditError> {
        self.block_on(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(db)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
                .await
                .map_err(db)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version integer PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )
            .await
            .map_err(db)?;
            let have = applied_version(&tx).await?;
            let mut applied = Vec::new();
            for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > have) {
                tx.batch_execute(sql).await.map_err(db)?;
                tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[v])
                    .await
                    .map_err(db)?;
                applied.push(*v);
            }
            tx.commit().await.map_err(db)?;
            Ok(applied)
        })
    }

    /// The schema version applied (0 when none).
    pub fn version(&self) -> Result<i32, AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            let exists: bool = c
                .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
                .await
                .map_err(db)?
                .get(0);
            if !exists {
                return Ok(0);
            }
            applied_version(&c).await
        })
    }

    /// Records `value` as the deployment's key `name` if none is recorded;
    /// refuses when a different one is.
    pub fn check_key(&self, name: &str, value: &str) -> Result<(), AuditError> {
        self.block_on(async {
            let c = self.client().await?;
            c.execute(
                "INSERT INTO deployment_keys (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &value],
            )
            .await
            .map_err(db)?;
            let known: String = c
                .query_one(
                    "SELECT value FROM deployment_keys WHERE name = $1",
                    &[&name],
                )
                .await
                .map_err(db)?
                .get(0);
            if known != value {
                return Err(AuditError::Database(format!(
                    "this node's {name} is {value}, but the database's log is signed with {known}: \
                     copy the keys directory of the deployment to this node"
                )));
            }
            Ok(())
        })
    }

    /// Backend state for `storage status`.
    pub fn status(&self) -> Result<Status, AuditError> {
        let version = self.version()?;
        if version == 0 {
            return Ok(Status {
                version,
                records: 0,
                head: (0, String::new()),
                checkpoint: None,
                nodes: Vec::new(),
                keys: Vec::new(),
            });
        }
        self.block_on(async {
            let c = self.client().await?;
            let records: i64 = c
                .query_one("SELECT next FROM log_counter", &[])
                .await
                .map_err(db)?
                .get(0);
            let h = c
                .query_one("SELECT size, root FROM tree_head", &[])
                .await
                .map_err(db)?;
            let cp: Option<i64> = c
                .query_one("SELECT max(size) FROM checkpoints", &[])
                .await
                .map_err(db)?
                .get(0);
            let nodes = c
                .query(
                    "SELECT name, extract(epoch FROM now() - seen)::float8, leader FROM nodes
                     WHERE seen > now() - interval '1 minute' ORDER BY name",
                    &[],
                )
                .await
                .map_err(db)?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            let keys = c
                .query("SELECT name, value FROM deployment_keys ORDER BY name", &[])
                .await
                .map_err(db)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let size: i64 = h.get(0);
            let root: Vec<u8> = h.get(1);
            Ok(Status {
                version,
                records: records as u64,
                head: (size as u64, hex::encode(root)),
                checkpoint: cp.map(|s| s as u64),
                nodes,
                keys,
            })
        })
    }
}

/// The highest schema version applied (0 before the first).
async fn applied_version(c: &impl deadpool_postgres::GenericClient) -> Result<i32, AuditError> {
    Ok(c.query_one(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        &[],
    )
    .await
    .map_err(db)?
    .get(0))
}
