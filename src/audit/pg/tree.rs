//! The Merkle tree over the records, integrated by one node at a time, and
//! the checkpoints it signs; and how every node follows them.
//!
//! Whoever holds the advisory lock [`LEAD_LOCK`] (session-level, on a
//! connection of its own) reads the records past the tree's size in id
//! order, extends the frontier, stores the perfect-subtree hashes it
//! completed and the new head in one transaction, and signs a checkpoint
//! when one is due. The head update is guarded by the old size, and
//! checkpoints are keyed by size, so even two nodes that both believed they
//! lead could not store two different trees or two checkpoints for one
//! size. When the leader dies, the database ends its session and frees the
//! lock; another node takes it within [`TRY_LEAD`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{PgLog, db};
use crate::audit::checkpoint::{Checkpoint, Signer, Verifier};
use crate::audit::common::Head;
use crate::audit::error::AuditError;
use crate::audit::merkle::{Frontier, Hash};

/// The advisory lock of the node that integrates and signs.
pub const LEAD_LOCK: i64 = 0x6b70_7472_6565;
/// How often a node that does not lead tries to.
pub const TRY_LEAD: Duration = Duration::from_secs(1);
/// How often every node reads the head and the newest checkpoint.
pub const FOLLOW: Duration = Duration::from_millis(200);
/// How long `audit head --now` waits for the leader's checkpoint.
const FRESH_WAIT: Duration = Duration::from_secs(10);
/// Records integrated per transaction.
const STEP: i64 = 4096;

/// When the leader signs.
#[derive(Debug, Clone, Copy)]
pub struct Signing {
    /// A checkpoint at least this often while records arrive.
    pub interval: Duration,
    /// A checkpoint after this many new records.
    pub records: u64,
}

fn hash(v: &[u8]) -> Result<Hash, AuditError> {
    v.try_into()
        .map_err(|_| AuditError::Database("a stored hash is not 32 bytes".into()))
}

impl PgLog {
    /// Starts the tasks every node runs: trying to lead, following the head.
    pub fn start_tree(self: &Arc<Self>, signer: Signer, verifier: Verifier, signing: Signing) {
        let me = self.clone();
        self.spawn(async move {
            let signer = Arc::new(signer);
            let mut closing = me.closing.subscribe();
            while !*closing.borrow() {
                if let Err(e) = me.lead(&signer, signing, &mut closing).await {
                    warn!(error = %e, "integrating the audit tree stopped; another node may take over");
                }
                tokio::select! {
                    _ = tokio::time::sleep(TRY_LEAD) => {}
                    _ = closing.changed() => {}
                }
            }
            me.closed.send_replace(true);
        });
        let me = self.clone();
        self.spawn(async move {
            let mut beat = None;
            loop {
                if let Err(e) = me.follow(&verifier, &mut beat).await {
                    warn!(error = %e, "cannot read the audit head from the database");
                }
                tokio::time::sleep(FOLLOW).await;
            }
        });
    }

    /// Reads the head and the newest checkpoint once, now (at start, so the
    /// view begins where the log is). Blocking.
    pub fn follow_now(&self, verifier: &Verifier) -> Result<(), AuditError> {
        let mut beat = None;
        self.block_on(self.follow(verifier, &mut beat))
    }

    /// Reads the head and the newest checkpoint; says this node is alive.
    async fn follow(
        &self,
        verifier: &Verifier,
        beat: &mut Option<Instant>,
    ) -> Result<(), AuditError> {
        let c = self.client().await?;
        let h = c
            .query_one("SELECT size, root FROM tree_head", &[])
            .await
            .map_err(db)?;
        let head = Head {
            size: h.get::<_, i64>(0) as u64,
            root: hash(h.get(1))?,
        };
        let seen = self.latest().map_or(0, |c| c.size);
        let cp = c
            .query_opt(
                "SELECT note FROM checkpoints WHERE size > $1 ORDER BY size DESC LIMIT 1",
                &[&(seen as i64)],
            )
            .await
            .map_err(db)?
            .and_then(|r| verifier.verify(r.get(0)).ok());
        self.saw(head, cp);
        if !self.node.is_empty() && beat.is_none_or(|b| b.elapsed() >= Duration::from_secs(5)) {
            c.execute(
                "INSERT INTO nodes (name, seen) VALUES ($1, now())
                 ON CONFLICT (name) DO UPDATE SET seen = now()",
                &[&self.node],
            )
            .await
            .map_err(db)?;
            *beat = Some(Instant::now());
        }
        Ok(())
    }

    /// A checkpoint of every record committed now (`audit head --now`),
    /// signed by the leader, whichever node that is: the size asked for is
    /// left in the database (`kv`, `checkpoint`/`asked`; the largest asked
    /// wins), the leader signs once it has integrated that far, and every
    /// node sees the checkpoint as it follows the head.
    pub(super) async fn fresh_checkpoint(&self) -> Result<Checkpoint, AuditError> {
        let want: i64 = {
            let c = self.client().await?;
            let want: i64 = c
                .query_one("SELECT next FROM log_counter", &[])
                .await
                .map_err(db)?
                .get(0);
            c.execute(
                "INSERT INTO kv (space, key, value) VALUES ('checkpoint', 'asked'::bytea, $1)
                 ON CONFLICT (space, key) DO UPDATE SET value = EXCLUDED.value
                   WHERE convert_from(kv.value, 'UTF8')::bigint
                         < convert_from(EXCLUDED.value, 'UTF8')::bigint",
                &[&want.to_string().into_bytes()],
            )
            .await
            .map_err(db)?;
            want
        };
        if want == 0 {
            return Err(AuditError::Database("the log has no records yet".into()));
        }
        let started = Instant::now();
        loop {
            if let Some(cp) = self.latest()
                && cp.size as i64 >= want
            {
                return Ok(cp);
            }
            if started.elapsed() >= FRESH_WAIT {
                return Err(AuditError::Database(format!(
                    "no checkpoint of size {want} within {FRESH_WAIT:?}: is a node leading?"
                )));
            }
            tokio::time::sleep(FOLLOW).await;
        }
    }

    /// Leads while this node holds the lock; returns at once when another does.
    /// On `closing`, it integrates what is there, signs a last checkpoint
    /// and lets go of the lock.
    async fn lead(
        &self,
        signer: &Signer,
        signing: Signing,
        closing: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), AuditError> {
        let mut c = self.own_client().await?;
        let got: bool = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEAD_LOCK])
            .await
            .map_err(db)?
            .get(0);
        if !got {
            return Ok(());
        }
        info!(node = %self.node, "this node integrates the audit tree and signs its checkpoints");
        c.execute("UPDATE nodes SET leader = (name = $1)", &[&self.node])
            .await
            .map_err(db)?;
        let mut frontier = load_frontier(&c).await?;
        let mut last_cp: i64 = c
            .query_one("SELECT coalesce(max(size), 0) FROM checkpoints", &[])
            .await
            .map_err(db)?
            .get(0);
        // A new leader signs the tree as it finds it at once, so a takeover
        // never leaves records long without a checkpoint.
        let mut last_cp_at: Option<Instant> = None;
        loop {
            let ending = *closing.borrow();
            let size = frontier.size() as i64;
            let rows = c
                .query(
                    "SELECT id, leaf FROM records WHERE id >= $1 ORDER BY id LIMIT $2",
                    &[&size, &STEP],
                )
                .await
                .map_err(db)?;
            let full = rows.len() as i64 == STEP;
            if !rows.is_empty() {
                let mut levels = Vec::new();
                let mut idxs = Vec::new();
                let mut hashes = Vec::new();
                for r in &rows {
                    let id: i64 = r.get(0);
                    if id as u64 != frontier.size() {
                        break; // a gap is a batch still committing: later
                    }
                    frontier.push(hash(r.get(1))?, |level, index, h| {
                        if level > 0 {
                            levels.push(level as i32);
                            idxs.push(index as i64);
                            hashes.push(h.to_vec());
                        }
                    });
                }
                let tx = c.transaction().await.map_err(db)?;
                tx.execute(
                    "INSERT INTO tree_nodes (level, idx, hash)
                     SELECT * FROM unnest($1::int4[], $2::int8[], $3::bytea[])
                     ON CONFLICT (level, idx) DO NOTHING",
                    &[&levels, &idxs, &hashes],
                )
                .await
                .map_err(db)?;
                let root = frontier.root().to_vec();
                let n = tx
                    .execute(
                        "UPDATE tree_head SET size = $1, root = $2 WHERE size = $3",
                        &[&(frontier.size() as i64), &root, &size],
                    )
                    .await
                    .map_err(db)?;
                if n != 1 {
                    return Err(AuditError::Database(
                        "the tree head moved under this node: it no longer leads".into(),
                    ));
                }
                tx.commit().await.map_err(db)?;
            }
            let now = frontier.size() as i64;
            let asked = asked(&c).await?;
            let due = now > last_cp
                && ((now - last_cp) as u64 >= signing.records
                    || (asked > last_cp && now >= asked)
                    || last_cp_at.is_none_or(|t| t.elapsed() >= signing.interval)
                    || (ending && !full));
            if due {
                let cp = signer.sign(now as u64, &frontier.root());
                c.execute(
                    "INSERT INTO checkpoints (size, note) VALUES ($1, $2)
                     ON CONFLICT (size) DO NOTHING",
                    &[&now, &cp.note],
                )
                .await
                .map_err(db)?;
                last_cp = now;
                last_cp_at = Some(Instant::now());
                self.saw(
                    Head {
                        size: now as u64,
                        root: frontier.root(),
                    },
                    Some(cp),
                );
            }
            if ending && !full {
                return Ok(());
            }
            if !full {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = closing.changed() => {}
                }
            }
        }
    }
}

/// The largest size some node asked a checkpoint of (0: none).
async fn asked(c: &tokio_postgres::Client) -> Result<i64, AuditError> {
    let r = c
        .query_opt(
            "SELECT convert_from(value, 'UTF8')::bigint FROM kv
             WHERE space = 'checkpoint' AND key = 'asked'::bytea",
            &[],
        )
        .await
        .map_err(db)?;
    Ok(r.map_or(0, |r| r.get(0)))
}

/// The frontier of the stored tree: for each set bit `l` of its size, the
/// perfect subtree at level `l` that ends there. Checked against the
/// stored root.
async fn load_frontier(c: &tokio_postgres::Client) -> Result<Frontier, AuditError> {
    let h = c
        .query_one("SELECT size, root FROM tree_head", &[])
        .await
        .map_err(db)?;
    let size = h.get::<_, i64>(0) as u64;
    let root = hash(h.get(1))?;
    let mut pending = Vec::new();
    for l in 0..64u32 {
        if size >> l & 1 == 0 {
            continue;
        }
        let idx = ((size >> l) - 1) as i64;
        let row = if l == 0 {
            c.query_one("SELECT leaf FROM records WHERE id = $1", &[&idx])
                .await
        } else {
            c.query_one(
                "SELECT hash FROM tree_nodes WHERE level = $1 AND idx = $2",
                &[&(l as i32), &idx],
            )
            .await
        }
        .map_err(db)?;
        pending.push((l, hash(row.get(0))?));
    }
    let f = Frontier::from_pending(size, &pending);
    if f.root() != root {
        return Err(AuditError::Database(format!(
            "the stored tree of {size} records does not match its stored root: the tables were altered"
        )));
    }
    Ok(f)
}
