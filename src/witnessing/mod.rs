//! The gateway's side of witnessing: every checkpoint the audit writer signs
//! goes to the configured witnesses (`[[witness]]`), and partners are shown
//! only a checkpoint that a quorum of them cosigned.
//!
//! Why: a checkpoint signed by the gateway alone proves nothing to a partner
//! who was shown a different history than the others (a split view). A
//! witness run by another partner cosigns a checkpoint only when it extends
//! every checkpoint of this log it cosigned before, so a checkpoint with a
//! quorum of cosignatures is one history that all of those witnesses saw.
//!
//! How, per witness, on its own task ([`Witnessing::run`]):
//! 1. wait for a signed checkpoint this witness has not cosigned; only the
//!    newest matters (a `watch` channel: no queue of old ones builds up);
//! 2. post `old N`, the consistency proof from `N` (the size the witness is
//!    known to hold) and the checkpoint ([`client`]); on 409 take the size
//!    from the answer and try once more with a proof from there;
//! 3. verify the cosignature with the configured key, append the checkpoint
//!    with every cosignature gathered for it to the cosigned file ([`store`])
//!    and sync it; then, once it has the quorum, publish it in the audit view
//!    ([`crate::audit::store::View::published_checkpoint`]);
//! 4. on failure: a warning, a metric, and another try after a back-off
//!    (or as soon as a newer checkpoint is signed).
//!
//! With `fail_closed_after` set, exchanges are refused
//! (`urn:ketenpoort:problem:log-not-witnessed`) once a signed checkpoint has
//! waited that long for its quorum: measured from when the gateway first
//! saw a signed checkpoint newer than the published one, and again from
//! each time a checkpoint reaches its quorum (or from the gateway's start).
//!
//! Without witnesses none of this runs, and the published checkpoint is the
//! latest signed one.

pub mod client;
pub mod store;
pub mod target;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::audit::checkpoint::Checkpoint;
use crate::audit::rotation::KeyHistory;
use crate::audit::store::View;
use crate::config::{ConfigError, GatewayConfig};
use crate::metrics::Metrics;
use crate::tls::TlsError;
use crate::witness::cosign::add_cosignatures;
use crate::witness::note::{Note, NoteSignature};

use client::{Answer, Failure, WitnessClient, request_body};
use store::CosignedFile;
use target::Target;

/// First wait before a failed witness is asked again.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between tries of a failing witness (the wait doubles).
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// How often the quorum state and its metrics are brought up to date.
pub const OBSERVE_EVERY: Duration = Duration::from_secs(1);
/// A missing quorum is logged once it lasts this long, and again at most
/// this often.
pub const QUORUM_WARNING: Duration = Duration::from_secs(60);
/// Checkpoints whose cosignatures are gathered at once; older ones are
/// dropped (only the newest matters).
pub const MAX_GATHERING: usize = 8;

/// Why witnessing could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessingError {
    /// A `[[witness]]` table is wrong (its vkey).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The trust anchors for `https://` witnesses could not be read.
    #[error("witness client: {0}")]
    Tls(#[from] TlsError),
    /// The cosigned file could not be read or opened.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The log's verifier keys do not parse or do not follow each other.
    #[error("the log's verifier keys do not parse or do not follow each other")]
    LogKey,
}

/// The cosignatures gathered for one checkpoint.
#[derive(Debug, Clone)]
struct Gathering {
    /// The checkpoint as the log signed it.
    checkpoint: Checkpoint,
    /// Per witness, its verified cosignature.
    cosignatures: Vec<Option<NoteSignature>>,
}

/// What the witness tasks share, under one short-held lock.
#[derive(Debug)]
struct Shared {
    /// Per witness, the size it is known to have cosigned last: where its
    /// next consistency proof starts.
    sizes: Vec<u64>,
    /// Size → cosignatures gathered for that checkpoint.
    gathering: BTreeMap<u64, Gathering>,
    /// Size and number of cosignatures of the published checkpoint.
    published: Option<(u64, usize)>,
    /// When a checkpoint was last published (or witnessing started).
    published_at: Instant,
    /// Since when a signed checkpoint newer than the published one waits
    /// for its quorum.
    behind_since: Option<Instant>,
    /// When a missing quorum was last logged.
    warned_at: Option<Instant>,
}

impl Shared {
    fn new(witnesses: usize) -> Self {
        Self {
            sizes: vec![0; witnesses],
            gathering: BTreeMap::new(),
            published: None,
            published_at: Instant::now(),
            behind_since: None,
            warned_at: None,
        }
    }

    /// Takes over what the cosigned file holds; gives the published
    /// checkpoint (size and note).
    fn seed(&mut self, loaded: store::Loaded) -> Option<(u64, String)> {
        self.sizes = loaded.sizes;
        let floor = loaded.published.as_ref().map_or(0, |p| p.checkpoint.size);
        for e in loaded
            .entries
            .into_iter()
            .filter(|e| e.checkpoint.size >= floor)
        {
            let g = Gathering {
                checkpoint: e.checkpoint,
                cosignatures: e.cosignatures,
            };
            let better = self
                .gathering
                .get(&g.checkpoint.size)
                .is_none_or(|old| count(old) <= count(&g));
            if better {
                self.gathering.insert(g.checkpoint.size, g);
            }
        }
        prune(&mut self.gathering);
        loaded.published.map(|p| {
            self.published = Some((p.checkpoint.size, p.count()));
            (p.checkpoint.size, p.note)
        })
    }
}

fn count(g: &Gathering) -> usize {
    g.cosignatures.iter().flatten().count()
}

/// The checkpoint's note with the cosignatures gathered for it.
fn with_cosignatures(g: &Gathering) -> Result<String, crate::witness::note::NoteError> {
    let sigs: Vec<NoteSignature> = g.cosignatures.iter().flatten().cloned().collect();
    add_cosignatures(&g.checkpoint.note, &sigs)
}

/// The gateway's witnessing: configured witnesses, their client, and what
/// they cosigned.
pub struct Witnessing {
    /// The configured witnesses, in the order of the file.
    targets: Vec<Target>,
    /// Cosignatures a checkpoint needs to be published.
    quorum: usize,
    /// Refuse exchanges when the quorum has been missing this long.
    fail_closed_after: Option<Duration>,
    /// The audit log's read side: checkpoints, proofs, the published head.
    view: Arc<View>,
    /// Counters and gauges.
    metrics: Arc<Metrics>,
    /// Posts to witnesses; `None` without witnesses.
    client: Option<WitnessClient>,
    /// The cosigned file, appended to from blocking threads.
    file: Arc<Mutex<Option<CosignedFile>>>,
    /// What the witness tasks share.
    shared: Mutex<Shared>,
}

impl std::fmt::Debug for Witnessing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witnessing")
            .field("witnesses", &self.targets.len())
            .field("quorum", &self.quorum)
            .finish_non_exhaustive()
    }
}

/// The outcome of one try at one witness.
enum Try {
    /// A cosignature that verifies.
    Cosigned(NoteSignature),
    /// 409 with the witness's size.
    Conflict(u64),
    /// Anything else: the metric's reason and what to log.
    Failed(&'static str, String),
}

impl Witnessing {
    /// Reads the witnesses from the configuration and what the cosigned
    /// file holds, checked against the log; the view is told to publish
    /// only cosigned checkpoints from now on. Without witnesses, an inert
    /// value. Blocking.
    pub fn open(
        config: &GatewayConfig,
        view: Arc<View>,
        log_keys: &KeyHistory,
        metrics: Arc<Metrics>,
    ) -> Result<Self, WitnessingError> {
        let targets = target::targets(config)?;
        let mut shared = Shared::new(targets.len());
        let (mut client, mut file) = (None, None);
        if !targets.is_empty() {
            let log = log_keys.check().map_err(|_| WitnessingError::LogKey)?;
            let path = store::path(&config.data_dir.join("audit"));
            let io = |source| WitnessingError::Io {
                path: path.clone(),
                source,
            };
            let quorum = config.witnesses.quorum;
            let loaded = store::load(&path, &log, &targets, quorum, |size, root| {
                view.root_at(size).is_ok_and(|r| r == *root)
            })
            .map_err(io)?;
            file = Some(CosignedFile::open(&path).map_err(io)?);
            client = Some(WitnessClient::new(&config.tls)?);
            let published = shared.seed(loaded);
            if let Some((size, _)) = &published {
                metrics
                    .witness_published_size
                    .set(i64::try_from(*size).unwrap_or(i64::MAX));
            }
            view.require_witnesses(published);
        }
        Ok(Self {
            targets,
            quorum: config.witnesses.quorum,
            fail_closed_after: config.witnesses.fail_closed_after,
            view,
            metrics,
            client,
            file: Arc::new(Mutex::new(file)),
            shared: Mutex::new(shared),
        })
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether any witnesses are configured.
    pub fn enabled(&self) -> bool {
        !self.targets.is_empty()
    }

    /// Whether exchanges must be refused: `fail_closed_after` is set and a
    /// signed checkpoint has waited longer than that for its quorum.
    pub fn refuses(&self) -> bool {
        let Some(limit) = self.fail_closed_after else {
            return false;
        };
        self.shared()
            .behind_since
            .is_some_and(|t| t.elapsed() >= limit)
    }

    /// Runs the witness tasks until aborted: one per witness, and one that
    /// keeps the quorum state and its metrics current. Returns at once
    /// without witnesses.
    pub async fn run(self: Arc<Self>) {
        if self.targets.is_empty() {
            return;
        }
        let mut tasks = JoinSet::new();
        for i in 0..self.targets.len() {
            tasks.spawn(self.clone().serve(i));
        }
        tasks.spawn(self.clone().observe());
        while tasks.join_next().await.is_some() {}
    }

    /// Keeps `behind_since` and the gauges current, and warns while the
    /// quorum is missing.
    async fn observe(self: Arc<Self>) {
        let mut signed = self.view.subscribe_checkpoints();
        let mut tick = tokio::time::interval(OBSERVE_EVERY);
        loop {
            tokio::select! {
                r = signed.changed() => if r.is_err() { return },
                _ = tick.tick() => {}
            }
            let latest = signed.borrow_and_update().as_ref().map(|c| c.size);
            self.update_quorum_state(latest);
        }
    }

    /// Compares the latest signed checkpoint with the published one.
    fn update_quorum_state(&self, latest: Option<u64>) {
        let mut s = self.shared();
        let published = s.published.map(|p| p.0);
        let behind = latest.is_some_and(|l| published.is_none_or(|p| l > p));
        if !behind {
            s.behind_since = None;
        } else if s.behind_since.is_none() {
            s.behind_since = Some(Instant::now());
        }
        self.metrics.witness_quorum_met.set(i64::from(!behind));
        let age = s.published_at.elapsed().as_secs();
        self.metrics
            .witness_published_age_seconds
            .set(i64::try_from(age).unwrap_or(i64::MAX));
        let waiting = s.behind_since.map(|t| t.elapsed());
        if let Some(waiting) = waiting.filter(|w| *w >= QUORUM_WARNING)
            && s.warned_at.is_none_or(|t| t.elapsed() >= QUORUM_WARNING)
        {
            s.warned_at = Some(Instant::now());
            warn!(
                latest = latest.unwrap_or(0),
                published = published.unwrap_or(0),
                quorum = self.quorum,
                waiting_secs = waiting.as_secs(),
                "no checkpoint has reached its quorum of witness cosignatures; partners are shown an older one"
            );
        }
    }

    /// One witness's task: the newest signed checkpoint it has not
    /// cosigned, tried until it is, with a back-off between failures.
    async fn serve(self: Arc<Self>, i: usize) {
        let mut signed = self.view.subscribe_checkpoints();
        let mut backoff = RETRY_FIRST;
        loop {
            let newest = signed.borrow_and_update().clone();
            let done = match newest {
                Some(cp) if !self.has_cosigned(i, &cp) => self.submit(i, &cp).await,
                _ => true,
            };
            if done {
                backoff = RETRY_FIRST;
                if signed.changed().await.is_err() {
                    return;
                }
                continue;
            }
            tokio::select! {
                r = signed.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    fn has_cosigned(&self, i: usize, cp: &Checkpoint) -> bool {
        self.shared()
            .gathering
            .get(&cp.size)
            .is_some_and(|g| g.checkpoint.root == cp.root && g.cosignatures[i].is_some())
    }

    /// Sends `cp` to witness `i` (again from the size a 409 names, once);
    /// gives whether it was cosigned and kept.
    async fn submit(&self, i: usize, cp: &Checkpoint) -> bool {
        let old = self.shared().sizes[i];
        let mut outcome = self.try_once(i, cp, old).await;
        if let Try::Conflict(size) = outcome {
            self.shared().sizes[i] = size;
            outcome = self.try_once(i, cp, size).await;
        }
        let name = &self.targets[i].name;
        let (reason, detail) = match outcome {
            Try::Cosigned(sig) => {
                self.metrics.witness_cosigned(name);
                return self.keep(i, cp, sig).await;
            }
            Try::Conflict(size) => (
                "conflict",
                format!("the witness holds size {size} and refused again"),
            ),
            Try::Failed(reason, detail) => (reason, detail),
        };
        self.metrics.witness_failed(name, reason);
        warn!(witness = %name, size = cp.size, reason, %detail, "the witness did not cosign the checkpoint");
        false
    }

    /// One `add-checkpoint` with a proof from `old`.
    async fn try_once(&self, i: usize, cp: &Checkpoint, old: u64) -> Try {
        if old > cp.size {
            return Try::Failed(
                "conflict",
                format!(
                    "the witness has cosigned size {old}, beyond this checkpoint's {}: was the log rolled back?",
                    cp.size
                ),
            );
        }
        let proof = if old == 0 || old == cp.size {
            Vec::new()
        } else {
            let view = self.view.clone();
            let size = cp.size;
            match tokio::task::spawn_blocking(move || view.consistency_proof(old, size)).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => return Try::Failed("proof", e.to_string()),
                Err(e) => return Try::Failed("proof", e.to_string()),
            }
        };
        let Some(client) = &self.client else {
            return Try::Failed("unreachable", "no client".into());
        };
        let t = &self.targets[i];
        let body = request_body(old, &proof, &cp.note);
        match client.add_checkpoint(&t.add_checkpoint, body).await {
            Ok(Answer::Cosigned(lines)) => {
                let text = match Note::parse(&cp.note) {
                    Ok(n) => n.text,
                    Err(e) => return Try::Failed("bad-cosignature", e.to_string()),
                };
                match t.verifier.verify_response(&text, &lines) {
                    Ok(sig) => Try::Cosigned(sig),
                    Err(e) => Try::Failed("bad-cosignature", e.to_string()),
                }
            }
            Ok(Answer::Conflict(Some(size))) => Try::Conflict(size),
            Ok(Answer::Conflict(None)) => Try::Failed("conflict", "409 without a size".into()),
            Ok(Answer::Refused(status)) => Try::Failed(status_reason(status), status.to_string()),
            Err(Failure::Unreachable) => {
                Try::Failed("unreachable", "no connection or no HTTP answer".into())
            }
            Err(Failure::Timeout) => Try::Failed("timeout", "no answer in time".into()),
            Err(Failure::BadAnswer) => {
                Try::Failed("bad-answer", "the answer is too large or not text".into())
            }
        }
    }

    /// Keeps a verified cosignature: gathered with the others for this
    /// checkpoint, appended to the cosigned file, and published once the
    /// quorum is there.
    async fn keep(&self, i: usize, cp: &Checkpoint, sig: NoteSignature) -> bool {
        let n = self.targets.len();
        let note = {
            let mut s = self.shared();
            s.sizes[i] = cp.size;
            let g = s.gathering.entry(cp.size).or_insert_with(|| Gathering {
                checkpoint: cp.clone(),
                cosignatures: vec![None; n],
            });
            if g.checkpoint.root != cp.root {
                *g = Gathering {
                    checkpoint: cp.clone(),
                    cosignatures: vec![None; n],
                };
            }
            g.cosignatures[i] = Some(sig);
            prune(&mut s.gathering);
            s.gathering
                .get(&cp.size)
                .map(|g| with_cosignatures(g).map(|note| (note, count(g))))
        };
        let (note, count) = match note {
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                error!(error = %e, "cannot add a cosignature to the checkpoint");
                return false;
            }
            // Pruned at once: older than every checkpoint gathering now.
            None => return false,
        };
        let current = self.current_notes();
        // Durable before it counts.
        let file = self.file.clone();
        let kept = note.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            match f.as_mut() {
                Some(f) => f.append(&kept, &current),
                None => Err(std::io::Error::other("the cosigned file is not open")),
            }
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            error!("cannot keep a cosigned checkpoint on disk; it is not published");
            return false;
        }
        if count >= self.quorum {
            self.publish(cp, note, count);
        }
        true
    }

    /// What the cosigned file must keep when it is compacted: the published
    /// checkpoint, then every newer one with the cosignatures gathered.
    fn current_notes(&self) -> Vec<String> {
        let published = self.view.published_checkpoint();
        let floor = published.as_ref().map_or(0, |p| p.0);
        let mut notes: Vec<String> = published.into_iter().map(|p| p.1).collect();
        let s = self.shared();
        for g in s.gathering.range(floor..).map(|(_, g)| g) {
            if count(g) > 0
                && let Ok(note) = with_cosignatures(g)
            {
                notes.push(note);
            }
        }
        notes
    }

    /// Publishes a checkpoint that reached its quorum, unless a newer one
    /// (or this one with more cosignatures) already is.
    fn publish(&self, cp: &Checkpoint, note: String, count: usize) {
        {
            let mut s = self.shared();
            if s.published.is_some_and(|p| p >= (cp.size, count)) {
                return;
            }
            s.published = Some((cp.size, count));
            s.published_at = Instant::now();
            // A checkpoint just reached its quorum: a newer one still
            // waiting gets its grace period from now.
            s.behind_since = None;
            self.view.publish_witnessed(cp.size, note);
        }
        self.metrics
            .witness_published_size
            .set(i64::try_from(cp.size).unwrap_or(i64::MAX));
        info!(
            size = cp.size,
            cosignatures = count,
            "checkpoint published with its quorum of witness cosignatures"
        );
        let latest = self.view.latest_checkpoint().map(|c| c.size);
        self.update_quorum_state(latest);
    }
}

/// The metric's reason for a status other than 200 and 409.
fn status_reason(status: hyper::StatusCode) -> &'static str {
    match status.as_u16() {
        422 => "inconsistent",
        403 => "forbidden",
        404 => "unknown-log",
        400..=499 => "rejected",
        _ => "unavailable",
    }
}

/// Keeps the newest [`MAX_GATHERING`] checkpoints.
fn prune(g: &mut BTreeMap<u64, Gathering>) {
    while g.len() > MAX_GATHERING {
        g.pop_first();
    }
}

/// The published checkpoint as a tool reads it from the data directory,
/// without a running gateway: the newest in the cosigned file with the
/// quorum of the configuration. Blocking.
pub fn published_on_disk(
    config: &GatewayConfig,
    log_keys: &KeyHistory,
) -> Result<Option<(u64, String)>, WitnessingError> {
    let targets = target::targets(config)?;
    let log = log_keys.check().map_err(|_| WitnessingError::LogKey)?;
    let path = store::path(&config.data_dir.join("audit"));
    let loaded = store::load(&path, &log, &targets, config.witnesses.quorum, |_, _| true).map_err(
        |source| WitnessingError::Io {
            path: path.clone(),
            source,
        },
    )?;
    Ok(loaded.published.map(|p| (p.checkpoint.size, p.note)))
}
