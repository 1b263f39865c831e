//! Mailboxes for partners without a server of their own (`mailbox = true`).
//!
//! A document sent to such a partner's service is minimised, recorded in the
//! audit log, and kept here until the partner picks it up (`GET /v1/inbox`,
//! `GET /v1/inbox/{id}`) and acknowledges it (`DELETE /v1/inbox/{id}`). A
//! document never picked up is deleted when the purpose's retention ends, and
//! that expiry is itself recorded. Stored in sled, flushed on every change.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}

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
    /// Opens (or creates) the mailbox database. Blocking.
    pub fn open(path: &std::path::Path) -> sled::Result<Self> {
        // A small page cache: mailboxes hold few, small documents.
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(8 << 20)
            .open()?;
        Ok(Self {
            items: db.open_tree("items")?,
            db,
        })
    }

    /// Stores a document; returns its id once flushed. Blocking.
    pub fn put(&self, mut item: Item) -> sled::Result<u64> {
        item.id = self.db.generate_id()? + 1;
        let bytes =
            serde_json::to_vec(&item).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
        self.items.insert(key(&item.recipient, item.id), bytes)?;
        self.db.flush()?;
        Ok(item.id)
    }

    /// A recipient's documents, newest first, `limit` at most, below `before`.
    pub fn list(
        &self,
        recipient: &str,
        before: Option<u64>,
        limit: usize,
    ) -> sled::Result<(Vec<Item>, Option<u64>)> {
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
        self.items
            .get(key(recipient, id))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Deletes a document of a recipient; false when there was none. Blocking.
    pub fn delete(&self, recipient: &str, id: u64) -> sled::Result<bool> {
        let gone = self.items.remove(key(recipient, id))?.is_some();
        if gone {
            self.db.flush()?;
        }
        Ok(gone)
    }

    /// Documents whose retention ended before `now_micros`.
    pub fn expired(&self, now_micros: i64) -> sled::Result<Vec<Item>> {
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
