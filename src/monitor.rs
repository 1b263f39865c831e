//! A partner's monitor of the audit log (`ketenpoort audit monitor`): run
//! from cron on the partner's own machine, with nothing of the gateway but
//! its URL, the partner's certificate and the log's and witnesses' keys.
//!
//! Each run fetches the published checkpoint over mutual TLS and checks, in
//! this order:
//! 1. the log's signature (else: failure);
//! 2. that it extends the checkpoint this monitor saw last (kept in the state
//!    file): not smaller (a rollback), not another root at the same size (a
//!    fork), and an RFC 6962 consistency proof from the old size that
//!    verifies. Any of these is *inconsistency*: both checkpoints are
//!    printed, signed by the log, as evidence, and the state is kept as it
//!    was. This comes before the quorum, because a split view is worth
//!    reporting even when the witnesses were bypassed;
//! 3. the quorum of witness cosignatures (else: failure).
//!
//! Only when all hold is the new checkpoint written to the state file,
//! atomically (temporary file, fsync, rename, fsync of the folder).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::{Method, StatusCode};

use crate::audit::checkpoint::Checkpoint;
use crate::audit::merkle;
use crate::client::PartnerClient;
use crate::evidence::Trust;

/// How long one request to the gateway may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Where the partner API serves the published checkpoint.
pub const CHECKPOINT_PATH: &str = "/v1/audit/checkpoint";

/// What the monitor needs for one run.
#[derive(Debug, Clone)]
pub struct Monitor {
    /// The gateway's partner API, `https://host:port`.
    pub url: String,
    /// The partner's client certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA certificates that the gateway's certificate chains to (PEM).
    pub cacert: PathBuf,
    /// The log's and the witnesses' keys, and the quorum.
    pub trust: Trust,
    /// The file holding the last checkpoint that passed every check.
    pub state: PathBuf,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check passed; the state file holds the new checkpoint.
    Good(String),
    /// The log contradicts what this monitor saw before: the evidence.
    Inconsistent(String),
    /// Anything else went wrong: network, a bad signature, no quorum, files.
    Failed(String),
}

impl Outcome {
    /// The exit code: 0 good, 3 inconsistent, 2 failed.
    pub fn code(&self) -> u8 {
        match self {
            Outcome::Good(_) => 0,
            Outcome::Inconsistent(_) => 3,
            Outcome::Failed(_) => 2,
        }
    }
}

impl Monitor {
    /// One run. Blocking: it runs its own small runtime.
    pub fn run(&self) -> Outcome {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return Outcome::Failed(format!("cannot start: {e}")),
        };
        match rt.block_on(self.check()) {
            Ok(o) | Err(o) => o,
        }
    }

    fn client(&self) -> Result<PartnerClient, Outcome> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| Outcome::Failed(format!("{}: {e}", p.display())))
        };
        PartnerClient::new(
            &self.url,
            &read(&self.cacert)?,
            &read(&self.cert)?,
            &read(&self.key)?,
        )
        .map_err(|e| Outcome::Failed(format!("the TLS client cannot be set up: {e}")))
    }

    /// The checks in order; `Err` ends the run early with its outcome.
    async fn check(&self) -> Result<Outcome, Outcome> {
        let client = self.client()?;
        let old = self.load_state()?;
        let note = get(&client, &self.url, CHECKPOINT_PATH).await?;
        let new = self.trust.signed(&note).map_err(|e| {
            Outcome::Failed(format!("the checkpoint the gateway serves is refused: {e}"))
        })?;
        let grew = match &old {
            None => None,
            Some(old) => {
                self.consistent(&client, old, &new).await?;
                Some(old.size)
            }
        };
        let cosigners = self.trust.cosigned(&note).map_err(|e| {
            Outcome::Failed(format!(
                "the checkpoint of size {} lacks its quorum: {e}",
                new.size
            ))
        })?;
        save_state(&self.state, &note)
            .map_err(|e| Outcome::Failed(format!("cannot save {}: {e}", self.state.display())))?;
        let since = match grew {
            None => "first checkpoint seen, kept".to_string(),
            Some(s) if s == new.size => "unchanged".to_string(),
            Some(s) => format!("grew from {s}, consistent"),
        };
        let by = if cosigners.is_empty() {
            String::new()
        } else {
            format!(", cosigned by {}", cosigners.join(", "))
        };
        Ok(Outcome::Good(format!(
            "ok: {} at size {} ({since}){by}\n",
            new.origin, new.size
        )))
    }

    /// The last checkpoint that passed, if any; it must still verify.
    fn load_state(&self) -> Result<Option<Checkpoint>, Outcome> {
        let text = match std::fs::read_to_string(&self.state) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Outcome::Failed(format!("{}: {e}", self.state.display())));
            }
        };
        self.trust.signed(&text).map(Some).map_err(|e| {
            Outcome::Failed(format!(
                "{}: the checkpoint kept there does not verify with the log's key: {e}",
                self.state.display()
            ))
        })
    }

    /// Step 2: the new checkpoint extends the old one.
    async fn consistent(
        &self,
        client: &PartnerClient,
        old: &Checkpoint,
        new: &Checkpoint,
    ) -> Result<(), Outcome> {
        if new.origin != old.origin {
            return Err(Outcome::Failed(format!(
                "the gateway serves the log '{}', the state file holds '{}'",
                new.origin, old.origin
            )));
        }
        let evidence = |what: String, extra: &str| {
            Outcome::Inconsistent(format!(
                "INCONSISTENT: {what}\n\n\
                 checkpoint seen before (kept in {}):\n{}\n\
                 checkpoint served now by {}:\n{}{extra}",
                self.state.display(),
                old.note,
                self.url,
                new.note
            ))
        };
        if new.size < old.size {
            return Err(evidence(
                format!(
                    "rollback: the log now has {} records, it had {} before",
                    new.size, old.size
                ),
                "",
            ));
        }
        if new.size == old.size {
            if new.root != old.root {
                return Err(evidence(
                    format!("fork: two different trees of {} records", new.size),
                    "",
                ));
            }
            return Ok(());
        }
        if old.size == 0 {
            return Ok(());
        }
        let path = format!(
            "/v1/audit/proof/consistency?from={}&to={}",
            old.size, new.size
        );
        let body = get(client, &self.url, &path).await?;
        let proof: Result<Vec<Vec<u8>>, _> = body.lines().map(|l| B64.decode(l)).collect();
        let why = match proof {
            Err(_) => "it is not base64 lines".to_string(),
            Ok(p) => match merkle::verify_consistency(old.size, new.size, &p, &old.root, &new.root)
            {
                Ok(()) => return Ok(()),
                Err(e) => e.to_string(),
            },
        };
        Err(evidence(
            format!(
                "no valid consistency proof from size {} to {}: {why}",
                old.size, new.size
            ),
            &format!("\nconsistency proof served:\n{body}"),
        ))
    }
}

/// GET a text resource of the partner API; anything but 200 is a failure.
async fn get(client: &PartnerClient, base: &str, path: &str) -> Result<String, Outcome> {
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, client.send(Method::GET, path, &[], None))
        .await
        .map_err(|_| Outcome::Failed(format!("{base}{path}: no answer in time")))?
        .map_err(|e| Outcome::Failed(format!("{base}{path}: {e}")))?;
    if reply.status != StatusCode::OK {
        return Err(Outcome::Failed(format!(
            "{base}{path}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
        )));
    }
    String::from_utf8(reply.body.to_vec())
        .map_err(|_| Outcome::Failed(format!("{base}{path}: the answer is not UTF-8 text")))
}

/// Writes the state file whole: a temporary file beside it, synced, renamed
/// into place, then the folder synced, so a crash leaves the old or the new
/// checkpoint, never half of one.
fn save_state(path: &Path, note: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(note.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()
}
