//! Mailboxes for partners without a server of their own (`mailbox = true`).
//!
//! A document sent to such a partner's service is minimised, recorded in the
//! audit log, and kept here until the partner picks it up (`GET /v1/inbox`,
//! `GET /v1/inbox/{id}`) and acknowledges it (`DELETE /v1/inbox/{id}`). A
//! document never picked up is deleted when the purpose's retention ends, and
//! that expiry is itself recorded. Stored in sled, flushed on every change.
//!
//! Every mailbox has a quota and all of them together a ceiling: a partner
//! that never picks up, or a sender that fills one, must not fill the disk the
//! audit log needs. Room is reserved before the disclosure is recorded, so a
//! document is never recorded as delivered and then refused for lack of room.
//!
//! With `[storage] backend = "postgres"` the documents live in the shared
//! database instead (any node takes a document in, any node hands it out);
//! the quotas are then counted per node from what the database held at
//! start plus what this node added and removed, so they are approximate
//! across nodes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::pg::PgLog;

/// One document waiting in a mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Its id in the mailbox.
    pub id: u64,
    /// The partner it is for.
    pub recipient: String,
    /// The partner that sent it.
    pub sender: String,
    /// Pilot id.
    pub pilot: String,
    /// Purpose id.
    pub purpose: String,
    /// `provider/service` it was sent to.
    pub service: String,
    /// When it arrived (RFC 3339).
    pub received: String,
    /// When it will be deleted if not picked up (epoch µs).
    pub expires_micros: i64,
    /// Audit record of the disclosure that put it here.
    pub disclosure: u64,
    /// Subject pseudonym (hex), for the expiry record.
    pub subject: Option<String>,
    /// The minimised document.
    pub document: Value,
}

impl Item {
    /// The listing entry: everything but the document.
    pub fn summary(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "sender": self.sender,
            "pilot": self.pilot,
            "purpose": self.purpose,
            "service": self.service,
            "received": self.received,
            "expires": crate::audit::record::format_micros(self.expires_micros),
            "disclosure": self.disclosure,
        })
    }
}

/// The mailbox store.
pub struct Mailbox {
    db: sled::Db,
    items: sled::Tree,
    /// Bytes held and reserved, per recipient and in all: checked against the
    /// quotas before anything is recorded or stored.
    usage: Arc<Mutex<Usage>>,
    /// Bytes one mailbox may hold.
    quota: u64,
    /// Bytes all mailboxes together may hold.
    total_quota: u64,
    /// The shared database, when the documents live there.
    pg: Option<Arc<PgLog>>,
}

/// A database failure, in the error type the mailbox's callers handle.
fn pg_err(e: crate::audit::AuditError) -> sled::Error {
    sled::Error::Unsupported(e.to_string())
}

#[derive(Debug, Default)]
struct Usage {
    per: HashMap<String, u64>,
    total: u64,
}

impl Usage {
    fn add(&mut self, who: &str, n: u64) {
        *self.per.entry(who.to_string()).or_default() += n;
        self.total += n;
    }
    fn sub(&mut self, who: &str, n: u64) {
        if let Some(v) = self.per.get_mut(who) {
            *v = v.saturating_sub(n);
            if *v == 0 {
                self.per.remove(who);
            }
        }
        self.total = self.total.saturating_sub(n);
    }
}

/// The mailbox (or all of them) has no room for a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    /// The recipient's own quota.
    #[error("the recipient's mailbox is full")]
    Mailbox,
    /// The ceiling of all mailboxes together.
    #[error("the mailboxes together are full")]
    All,
}

/// Room held for one document until it is stored (or given back on drop).
#[derive(Debug)]
pub struct Reservation {
    usage: Arc<Mutex<Usage>>,
    recipient: String,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Ok(mut u) = self.usage.lock() {
            u.sub(&self.recipient, self.bytes);
        }
    }
}

/// Room an item needs besides its document: the listing fields.
const ITEM_OVERHEAD: u64 = 512;

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox").finish_non_exhaustive()
    }
}

fn key(recipient: &str, id: u64) -> Vec<u8> {
    let mut k = recipient.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn decode(v: &[u8]) -> sled::Result<Item> {
    serde_json::from_slice(v).map_err(|e| sled::Error::Unsupported(format!("mailbox item: {e}")))
}

impl Mailbox {
    /// Opens (or creates) the mailbox database with its quotas: bytes per
    /// mailbox and in all. Blocking (it counts what is held).
    pub fn open(path: &std::path::Path, quota: u64, total_quota: u64) -> sled::Result<Self> {
        // A small page cache: mailboxes hold few, small documents.
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(8 << 20)
            .open()?;
        let items = db.open_tree("items")?;
        let mut usage = Usage::default();
        for kv in items.iter() {
            let (k, v) = kv?;
            let who = k.split(|b| *b == 0).next().unwrap_or_default();
            usage.add(&String::from_utf8_lossy(who), v.len() as u64);
        }
        Ok(Self {
            items,
            db,
            usage: Arc::new(Mutex::new(usage)),
            quota,
            total_quota,
            pg: None,
        })
    }

    /// Keeps the documents in the shared database from now on, counting
    /// what it holds against the quotas. Blocking.
    pub fn shared(mut self, pg: Arc<PgLog>) -> sled::Result<Self> {
        let mut usage = Usage::default();
        for (who, n) in pg.mailbox_usage().map_err(pg_err)? {
            usage.add(&who, n);
        }
        self.usage = Arc::new(Mutex::new(usage));
        self.pg = Some(pg);
        Ok(self)
    }

    /// The embedded database, shared with the registry.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Holds room for a document of `document_bytes` for `recipient`, or says
    /// which quota it would break.
    pub fn reserve(&self, recipient: &str, document_bytes: usize) -> Result<Reservation, Full> {
        let bytes = document_bytes as u64 + ITEM_OVERHEAD;
        let mut u = self.usage.lock().map_err(|_| Full::All)?;
        if u.per.get(recipient).copied().unwrap_or(0) + bytes > self.quota {
            return Err(Full::Mailbox);
        }
        if u.total + bytes > self.total_quota {
            return Err(Full::All);
        }
        u.add(recipient, bytes);
        Ok(Reservation {
            usage: self.usage.clone(),
            recipient: recipient.to_string(),
            bytes,
        })
    }

    /// Stores a document in the room reserved for it; returns its id once
    /// flushed. Blocking.
    pub fn put(&self, mut item: Item, room: Reservation) -> sled::Result<u64> {
        if let Some(pg) = &self.pg {
            let mut made = Ok(());
            let recipient = item.recipient.clone();
            let (id, stored) = pg
                .mailbox_put(&recipient, item.expires_micros, |id| {
                    item.id = id;
                    serde_json::to_vec(&item).unwrap_or_else(|e| {
                        made = Err(sled::Error::Unsupported(e.to_string()));
                        Vec::new()
                    })
                })
                .map_err(pg_err)?;
            made?;
            if let Ok(mut u) = self.usage.lock() {
                u.add(&item.recipient, stored);
            }
            drop(room);
            return Ok(id);
        }
        item.id = self.db.generate_id()? + 1;
        let bytes =
            serde_json::to_vec(&item).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
        let stored = bytes.len() as u64;
        self.items.insert(key(&item.recipient, item.id), bytes)?;
        self.db.flush()?;
        // The reservation's estimate gives way to what is really held.
        if let Ok(mut u) = self.usage.lock() {
            u.add(&item.recipient, stored);
        }
        drop(room);
        Ok(item.id)
    }

    /// A recipient's documents, newest first, `limit` at most, below `before`.
    pub fn list(
        &self,
        recipient: &str,
        before: Option<u64>,
        limit: usize,
    ) -> sled::Result<(Vec<Item>, Option<u64>)> {
        if let Some(pg) = &self.pg {
            let rows = pg
                .mailbox_list(recipient, before, limit + 1)
                .map_err(pg_err)?;
            let mut out = Vec::with_capacity(limit);
            for (_, v) in &rows {
                if out.len() == limit {
                    let next = out.last().map(|i: &Item| i.id);
                    return Ok((out, next));
                }
                out.push(decode(v)?);
            }
            return Ok((out, None));
        }
        let lo = key(recipient, 0);
        let hi = key(recipient, before.unwrap_or(u64::MAX));
        let mut out = Vec::new();
        for kv in self.items.range(lo..hi).rev() {
            let (_, v) = kv?;
            if out.len() == limit {
                let next = out.last().map(|i: &Item| i.id);
                return Ok((out, next));
            }
            out.push(decode(&v)?);
        }
        Ok((out, None))
    }

    /// One document of a recipient.
    pub fn get(&self, recipient: &str, id: u64) -> sled::Result<Option<Item>> {
        if let Some(pg) = &self.pg {
            return pg
                .mailbox_get(recipient, id)
                .map_err(pg_err)?
                .map(|v| decode(&v))
                .transpose();
        }
        self.items
            .get(key(recipient, id))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Deletes a document of a recipient; false when there was none. Blocking.
    pub fn delete(&self, recipient: &str, id: u64) -> sled::Result<bool> {
        if let Some(pg) = &self.pg {
            let Some(n) = pg.mailbox_delete(recipient, id).map_err(pg_err)? else {
                return Ok(false);
            };
            if let Ok(mut u) = self.usage.lock() {
                u.sub(recipient, n);
            }
            return Ok(true);
        }
        let Some(old) = self.items.remove(key(recipient, id))? else {
            return Ok(false);
        };
        self.db.flush()?;
        if let Ok(mut u) = self.usage.lock() {
            u.sub(recipient, old.len() as u64);
        }
        Ok(true)
    }

    /// Documents whose retention ended before `now_micros`.
    pub fn expired(&self, now_micros: i64) -> sled::Result<Vec<Item>> {
        if let Some(pg) = &self.pg {
            return pg
                .mailbox_expired(now_micros)
                .map_err(pg_err)?
                .iter()
                .map(|v| decode(v))
                .collect();
        }
        let mut out = Vec::new();
        for kv in self.items.iter() {
            let (_, v) = kv?;
            let item = decode(&v)?;
            if item.expires_micros < now_micros {
                out.push(item);
            }
        }
        Ok(out)
    }
}
