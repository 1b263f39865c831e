//! The subject keys the nodes agree on, kept in the database sealed.
//!
//! A subject key in the clear beside the pseudonyms would let anyone who
//! reads the database test guessed V-nummers against them. So each key is
//! sealed (AES-256-GCM, ring) under the deployment's wrap key, which lives
//! in the keys directory like the checkpoint key and is copied to every
//! node the same way; its fingerprint is recorded at first start, so a node
//! with another wrap key refuses to start.

use std::io;
use std::path::Path;
use std::sync::Arc;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::{PgLog, db, dbm};
use crate::audit::error::AuditError;
use crate::audit::subject::SharedKeys;

/// The `kv` tree of the keys destroyed by retention (`<scope>\n<month>`):
/// every node shreds its own copy of each.
pub const DESTROYED: &str = "subject-key-destroyed";

/// The file of the wrap key in the keys directory.
pub const WRAP_KEY_FILE: &str = "subject-wrap.key";

/// The shared subject keys of one deployment.
pub struct PgKeys {
    /// The database.
    pg: Arc<PgLog>,
    /// Seals and opens the keys.
    wrap: LessSafeKey,
}

fn io_err(e: AuditError) -> io::Error {
    io::Error::other(e.to_string())
}

impl PgKeys {
    /// Loads (or, on the first node, makes) the wrap key and checks it
    /// against the one the database knows. Blocking.
    pub fn open(pg: Arc<PgLog>, keys_dir: &Path) -> Result<Self, AuditError> {
        let raw = crate::keys::load_or_create(&keys_dir.join(WRAP_KEY_FILE))
            .map_err(AuditError::write)?;
        let print = hex::encode(&crate::identity::sha256(&raw)[..8]);
        pg.check_key("subject-wrap-key sha256", &print)?;
        let key = UnboundKey::new(&AES_256_GCM, &raw)
            .map_err(|_| dbm("the wrap key is not an AES-256 key"))?;
        Ok(Self {
            pg,
            wrap: LessSafeKey::new(key),
        })
    }

    fn aad(scope: &str, month: &str) -> Vec<u8> {
        format!("ketenpoort subject key\n{scope}\n{month}").into_bytes()
    }

    fn seal(&self, scope: &str, month: &str, secret: &[u8; 32]) -> io::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| io::Error::other("no randomness"))?;
        let mut buf = secret.to_vec();
        self.wrap
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(scope, month)),
                &mut buf,
            )
            .map_err(|_| io::Error::other("cannot seal a subject key"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    fn open_sealed(&self, scope: &str, month: &str, sealed: &[u8]) -> io::Result<[u8; 32]> {
        let bad = || io::Error::other("a sealed subject key does not open with this wrap key");
        if sealed.len() < NONCE_LEN {
            return Err(bad());
        }
        let (n, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(n).map_err(|_| bad())?;
        let mut buf = ct.to_vec();
        let plain = self
            .wrap
            .open_in_place(nonce, Aad::from(Self::aad(scope, month)), &mut buf)
            .map_err(|_| bad())?;
        <[u8; 32]>::try_from(&*plain).map_err(|_| bad())
    }

    /// Runs a database call from any thread, async code included: the
    /// calls are rare (a key per pilot and month, and look-ups), so a
    /// short-lived thread is simpler than knowing the caller's context.
    fn run<T: Send>(&self, f: impl Future<Output = Result<T, AuditError>> + Send) -> io::Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| self.pg.block_on(f))
                .join()
                .unwrap_or_else(|_| Err(dbm("the key thread failed")))
        })
        .map_err(io_err)
    }
}

impl SharedKeys for PgKeys {
    fn agree(&self, scope: &str, month: &str, candidate: &[u8; 32]) -> io::Result<[u8; 32]> {
        let sealed = self.seal(scope, month, candidate)?;
        let pg = &self.pg;
        let stored: Vec<u8> = self.run(async move {
            let c = pg.client().await?;
            c.execute(
                "INSERT INTO subject_keys (scope, month, sealed) VALUES ($1, $2, $3)
                 ON CONFLICT (scope, month) DO NOTHING",
                &[&scope, &month, &sealed],
            )
            .await
            .map_err(db)?;
            let r = c
                .query_one(
                    "SELECT sealed FROM subject_keys WHERE scope = $1 AND month = $2",
                    &[&scope, &month],
                )
                .await
                .map_err(db)?;
            Ok(r.get(0))
        })?;
        self.open_sealed(scope, month, &stored)
    }

    fn all(&self) -> io::Result<Vec<(String, String, [u8; 32])>> {
        let pg = &self.pg;
        let rows: Vec<(String, String, Vec<u8>)> = self.run(async move {
            let c = pg.client().await?;
            let rows = c
                .query("SELECT scope, month, sealed FROM subject_keys", &[])
                .await
                .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect())
        })?;
        rows.into_iter()
            .map(|(s, m, sealed)| {
                let k = self.open_sealed(&s, &m, &sealed)?;
                Ok((s, m, k))
            })
            .collect()
    }

    fn forget(&self, scope: &str, month: &str) -> io::Result<()> {
        let pg = &self.pg;
        let mark = format!("{scope}\n{month}").into_bytes();
        self.run(async move {
            let mut c = pg.client().await?;
            let tx = c.transaction().await.map_err(db)?;
            tx.execute(
                "DELETE FROM subject_keys WHERE scope = $1 AND month = $2",
                &[&scope, &month],
            )
            .await
            .map_err(db)?;
            // The mark tells every node to shred its own copy.
            tx.execute(
                "INSERT INTO kv (space, key, value) VALUES ($1, $2, ''::bytea)
                 ON CONFLICT (space, key) DO NOTHING",
                &[&DESTROYED, &mark],
            )
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(())
        })
    }

    fn destroyed(&self) -> io::Result<Vec<(String, String)>> {
        let pg = &self.pg;
        let keys: Vec<Vec<u8>> = self.run(async move {
            let c = pg.client().await?;
            let rows = c
                .query("SELECT key FROM kv WHERE space = $1", &[&DESTROYED])
                .await
                .map_err(db)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })?;
        Ok(keys
            .iter()
            .filter_map(|k| {
                let t = std::str::from_utf8(k).ok()?;
                let (s, m) = t.split_once('\n')?;
                Some((s.to_string(), m.to_string()))
            })
            .collect())
    }
}
