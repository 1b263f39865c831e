//! A partner's monitor of the audit log (`ketenpoort audit monitor`): run
//! from cron on the partner's own machine, with nothing of the gateway but
//! its URL, the partner's certificate and the log's and witnesses' keys.
//!
//! Each run fetches the published checkpoint over mutual TLS and checks, in
//! this order:
//! 1. the log's signature (else: failure). A checkpoint that the key this
//!    monitor trusts did not sign may follow a key rotation: the monitor
//!    then reads the log's key history (`/v1/audit/keys`) and adopts a new
//!    key only through an announcing checkpoint that the trusted key and
//!    the new one both signed, and that extends the checkpoint it kept.
//!    The keys adopted are kept beside the state file (`<state>.keys`),
//!    each with its announcement, and checked again at every run. A
//!    checkpoint signed only by keys it cannot reach that way is a failure,
//!    as is one by an old key beyond the size at which it was replaced;
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

use crate::audit::checkpoint::{Checkpoint, CheckpointError, Verifier};
use crate::audit::merkle;
use crate::audit::rotation::{KeyHistory, KeyRing};
use crate::client::PartnerClient;
use crate::evidence::Trust;

/// How long one request to the gateway may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Where the partner API serves the published checkpoint.
pub const CHECKPOINT_PATH: &str = "/v1/audit/checkpoint";
/// Where the partner API serves the log's key history.
pub const KEYS_PATH: &str = "/v1/audit/keys";

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
    /// The log's verifier key as given (`--vkey`): where the chain of keys
    /// this monitor follows starts.
    pub vkey: String,
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
        let keys = self.load_keys()?;
        let ring = keys
            .check()
            .map_err(|e| Outcome::Failed(format!("{}: {e}", keys_path(&self.state).display())))?;
        let old = self.load_state(&ring)?;
        let note = get(&client, &self.url, CHECKPOINT_PATH).await?;
        let (new, adopted) = match ring.verify(&note) {
            Ok(cp) => (cp, None),
            Err(CheckpointError::NoSignature(_)) => {
                let (cp, keys) = self
                    .follow_rotation(&client, &keys, old.as_ref(), &note)
                    .await?;
                (cp, Some(keys))
            }
            Err(e) => {
                return Err(Outcome::Failed(format!(
                    "the checkpoint the gateway serves is refused: {e}"
                )));
            }
        };
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
        // The keys before the checkpoint they verify: a crash between the
        // two leaves a state that the keys still check.
        let mut rotated = String::new();
        if let Some(keys) = &adopted {
            let text =
                serde_json::to_vec_pretty(keys).map_err(|e| Outcome::Failed(e.to_string()))?;
            let path = keys_path(&self.state);
            save_state(&path, &String::from_utf8_lossy(&text))
                .map_err(|e| Outcome::Failed(format!("cannot save {}: {e}", path.display())))?;
            let last = keys.keys.last().map(|k| (k.from_size, k.vkey.as_str()));
            if let Some((size, vkey)) = last {
                rotated =
                    format!("; the log's key was rotated at size {size}, now trusting {vkey}");
            }
        }
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
            "ok: {} at size {} ({since}){by}{rotated}\n",
            new.origin, new.size
        )))
    }

    /// The keys this monitor trusts: the one it was given, then those it
    /// adopted through announcements (kept in `<state>.keys`).
    fn load_keys(&self) -> Result<KeyHistory, Outcome> {
        let given = KeyHistory::first(&self.vkey);
        let path = keys_path(&self.state);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(given),
            Err(e) => return Err(Outcome::Failed(format!("{}: {e}", path.display()))),
        };
        let kept: KeyHistory = serde_json::from_slice(&bytes)
            .map_err(|e| Outcome::Failed(format!("{}: {e}", path.display())))?;
        // The key given may be the first (as when the keys were adopted) or
        // a later one (the cron line updated after a rotation): either way
        // every key kept was reached from a key this monitor was given.
        let given = Verifier::parse(&self.vkey).ok();
        let listed = given.is_some_and(|g| {
            kept.keys
                .iter()
                .any(|k| Verifier::parse(&k.vkey).is_ok_and(|v| v == g))
        });
        if !listed {
            return Err(Outcome::Failed(format!(
                "{}: the keys kept there do not include the key given (--vkey); \
                 to start afresh with this key, remove it and the state file",
                path.display()
            )));
        }
        Ok(kept)
    }

    /// A checkpoint the trusted key did not sign: adopts the keys the
    /// gateway's history announces after it, each through a checkpoint that
    /// the key before it and the key itself signed, and that extends the
    /// checkpoint kept; the checkpoint served must then verify. Anything
    /// less is a failure: an unknown key is no rotation.
    async fn follow_rotation(
        &self,
        client: &PartnerClient,
        mine: &KeyHistory,
        old: Option<&Checkpoint>,
        note: &str,
    ) -> Result<(Checkpoint, KeyHistory), Outcome> {
        let trusted = Verifier::parse(mine.current_vkey())
            .map(|v| v.id())
            .unwrap_or_default();
        let alarm = |why: String| {
            Outcome::Failed(format!(
                "the checkpoint the gateway serves is refused: it is not signed by the log's key \
                 {trusted}, and no rotation from that key explains it: {why}\n\n\
                 checkpoint served:\n{note}"
            ))
        };
        let body = get(client, &self.url, KEYS_PATH)
            .await
            .map_err(|o| match o {
                Outcome::Failed(why) => alarm(why),
                other => other,
            })?;
        let theirs: KeyHistory = serde_json::from_str(&body)
            .map_err(|e| alarm(format!("{KEYS_PATH} is not a key history: {e}")))?;
        let keys = follow(mine, &theirs).map_err(alarm)?;
        let ring = keys.check().map_err(alarm)?;
        let cp = ring.verify(note).map_err(|e| alarm(e.to_string()))?;
        if let Some(old) = old {
            for a in &ring.announcements()[mine.keys.len() - 1..] {
                if a.size < old.size {
                    return Err(Outcome::Inconsistent(format!(
                        "INCONSISTENT: a key announced at size {}, but the previous key signed the checkpoint of size {} kept in {}:\n{}\nannouncement:\n{}",
                        a.size,
                        old.size,
                        self.state.display(),
                        old.note,
                        a.note
                    )));
                }
                self.consistent(client, old, a).await?;
            }
        }
        Ok((cp, keys))
    }

    /// The last checkpoint that passed, if any; it must still verify.
    fn load_state(&self, keys: &KeyRing) -> Result<Option<Checkpoint>, Outcome> {
        let text = match std::fs::read_to_string(&self.state) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Outcome::Failed(format!("{}: {e}", self.state.display())));
            }
        };
        keys.verify(&text).map(Some).map_err(|e| {
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

/// The monitor's keys after `mine`'s newest: those `theirs` lists after it,
/// each announced by the key before it and itself (checked here).
pub fn follow(mine: &KeyHistory, theirs: &KeyHistory) -> Result<KeyHistory, String> {
    let current = Verifier::parse(mine.current_vkey()).map_err(|e| e.to_string())?;
    let at = theirs
        .keys
        .iter()
        .position(|k| Verifier::parse(&k.vkey).is_ok_and(|v| v == current))
        .ok_or_else(|| format!("the log's key history does not list {}", current.id()))?;
    let newer = &theirs.keys[at + 1..];
    if newer.is_empty() {
        return Err(format!(
            "the log's key history announces no key after {}",
            current.id()
        ));
    }
    let mut keys = mine.clone();
    keys.keys.extend(newer.iter().cloned());
    keys.check()
        .map_err(|e| format!("a key rotation the trusted key did not sign: {e}"))?;
    Ok(keys)
}

/// Where the keys a monitor adopted are kept: beside its state file.
pub fn keys_path(state: &Path) -> PathBuf {
    let mut name = state.file_name().unwrap_or_default().to_os_string();
    name.push(".keys");
    state.with_file_name(name)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::{Signer, sign_together};
    use crate::audit::rotation::LogKey;

    #[test]
    fn a_monitor_follows_only_keys_its_trusted_key_announced() {
        let d = tempfile::tempdir().unwrap();
        let key = |n: &str| Signer::load_or_create(&d.path().join(n), "o").unwrap();
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let announce = |old: &Signer, new: &Signer, size: u64| LogKey {
            vkey: new.vkey(),
            from_size: size,
            announcement: Some(sign_together(&[old, new], size, &[size as u8; 32]).note),
        };
        let mut theirs = KeyHistory::first(&a.vkey());
        theirs.keys.push(announce(&a, &b, 4));
        theirs.keys.push(announce(&b, &c, 9));
        // From the first key through both rotations; from the second, the last.
        let mine = KeyHistory::first(&a.vkey());
        assert_eq!(follow(&mine, &theirs).unwrap().current_vkey(), c.vkey());
        let mut from_b = mine.clone();
        from_b.keys.push(theirs.keys[1].clone());
        assert_eq!(follow(&from_b, &theirs).unwrap().keys.len(), 3);
        // Nothing after the trusted key, or a history without it: no rotation.
        let mut at_c = from_b.clone();
        at_c.keys.push(theirs.keys[2].clone());
        assert!(follow(&at_c, &theirs).is_err());
        assert!(follow(&KeyHistory::first(&c.vkey()), &KeyHistory::first(&b.vkey())).is_err());
        // A "rotation" the trusted key did not sign is not followed.
        let mut forged = KeyHistory::first(&a.vkey());
        forged.keys.push(LogKey {
            vkey: c.vkey(),
            from_size: 4,
            announcement: Some(c.sign(4, &[4; 32]).note),
        });
        assert!(follow(&mine, &forged).unwrap_err().contains("did not sign"));
    }
}
