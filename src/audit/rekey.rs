//! The writer's half of a key rotation: making and announcing the new key,
//! and at start finishing (or dropping) a rotation a crash cut short. What
//! a rotation is, its steps and what a crash leaves: [`super::rotation`].
//! Apart from it because the writer uses the history's types, and this
//! uses the writer.

use std::fs;

use tracing::{info, warn};

use super::checkpoint::{self, Signer};
use super::error::AuditError;
use super::options::Options;
use super::rotation::{KeyHistory, LogKey, NEXT_KEY, Rotated};
use super::writer::{Writer, sync_dir};

/// Brings the keys to the state the last rotation left: finishes one cut
/// short after it was announced, drops one cut short before; makes the
/// history of a log that has none. Gives the signing key and the history,
/// which must agree and verify. Blocking.
pub(super) fn open_keys(opts: &Options) -> Result<(Signer, KeyHistory), AuditError> {
    let history = KeyHistory::load(&opts.dir).map_err(AuditError::write)?;
    let next = opts.keys_dir.join(NEXT_KEY);
    if next.exists() {
        // A file cut off while it was written is no key, and was never
        // announced: the history is written only after it is synced.
        let named = Signer::load(&next, &opts.origin).is_ok_and(|candidate| {
            history
                .as_ref()
                .is_some_and(|h| h.current_vkey() == candidate.vkey())
        });
        if named {
            fs::rename(&next, opts.signing_key()).map_err(AuditError::write)?;
            info!("finished a checkpoint key rotation that was cut short after its announcement");
        } else {
            fs::remove_file(&next).map_err(AuditError::write)?;
            warn!(
                "a checkpoint key rotation was cut short before it took effect; the old key stays"
            );
        }
        sync_dir(&opts.keys_dir).map_err(AuditError::write)?;
    }
    let signer =
        Signer::load_or_create(&opts.signing_key(), &opts.origin).map_err(AuditError::write)?;
    let history = match history {
        Some(h) => h,
        None => {
            let h = KeyHistory::first(&signer.vkey());
            h.save(&opts.dir).map_err(AuditError::write)?;
            h
        }
    };
    history
        .check()
        .map_err(|e| AuditError::Key(format!("{}: {e}", KeyHistory::path(&opts.dir).display())))?;
    if history.current_vkey() != signer.vkey() {
        return Err(AuditError::Key(format!(
            "{} is not the last key of {} ({}): put the right key back or restore the data directory whole",
            opts.signing_key().display(),
            KeyHistory::path(&opts.dir).display(),
            history.current_vkey()
        )));
    }
    Ok((signer, history))
}

impl Writer {
    /// Replaces the signing key, announced in a checkpoint of the log as it
    /// is now signed by the old and the new key (see the module comment for
    /// the steps and what a crash leaves). Runs on the writer thread.
    pub(super) fn rotate(&mut self) -> Result<Rotated, AuditError> {
        let keys_dir = self.opts.keys_dir.clone();
        let next = keys_dir.join(NEXT_KEY);
        let new = Signer::create(&next, &self.opts.origin).map_err(AuditError::write)?;
        sync_dir(&keys_dir).map_err(AuditError::write)?;
        let size = self.frontier.size();
        let ann = checkpoint::sign_together(&[&self.signer, &new], size, &self.frontier.root());
        checkpoint::append(&mut self.checkpoints, &ann).map_err(AuditError::write)?;
        let mut history = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let old_vkey = history.current_vkey().to_string();
        history.keys.push(LogKey {
            vkey: new.vkey(),
            from_size: size,
            announcement: Some(ann.note.clone()),
        });
        history.save(&self.opts.dir).map_err(AuditError::write)?;
        // The rotation has happened: from here the new key signs, even if
        // a file below cannot be written (the next start finishes step 4).
        let renamed = fs::rename(&next, self.opts.signing_key()).and_then(|_| sync_dir(&keys_dir));
        let vkey_file = crate::datadir::write_atomic(
            &self.opts.dir.join("checkpoint.vkey"),
            format!("{}\n", new.vkey()).as_bytes(),
            0o600,
        );
        let new_vkey = new.vkey();
        self.signer = new;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = history;
        self.last_cp_size = size;
        self.last_cp_at = std::time::Instant::now();
        self.view.set_latest(ann.clone());
        renamed.and(vkey_file).map_err(AuditError::write)?;
        Ok(Rotated {
            size,
            old_vkey,
            new_vkey,
            announcement: ann.note,
        })
    }
}
