//! Append-only segment files: the durable home of the records.
//!
//! A segment is named by the id of its first record (`00000000000000000000.seg`)
//! and holds frames: `len: u32 LE | crc32: u32 LE | record bytes`. Durability
//! rests on these files and `fdatasync`, not on the index store. After a crash the last
//! frame may be torn; [`scan`] tells a torn tail (cut it back) from damage in
//! the middle (report it, never cut).
//!
//! A segment may be made ahead of time, zero-filled, and written over: its
//! frames are then followed by zeros up to its full size ([`End::ZeroTail`]).
//! Only the open (last) segment ends so; a closed one is cut to its last
//! frame when the next begins.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A segment grows to about this size before the next one starts.
pub const SEGMENT_MAX: u64 = 64 << 20;
/// Bytes of a frame header.
pub const HEADER: usize = 8;
/// Largest record accepted; anything larger is damage, not a record.
pub const MAX_RECORD: usize = 1 << 20;
/// The most bytes the writer puts in one write before it syncs (a larger
/// batch is written and synced in parts; one record may exceed it by its
/// header). Only the bytes of the one write not yet synced can be torn by a
/// crash, and a power loss may keep any of its pages and lose the others:
/// so after a broken frame, bytes within this reach are a torn write, and
/// bytes beyond it are damage.
pub const MAX_WRITE: u64 = 2 << 20;

/// Appends one framed record to `out`.
pub fn frame(record: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(record).to_le_bytes());
    out.extend_from_slice(record);
}

/// A segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Id of its first record.
    pub first_id: u64,
    /// Its path.
    pub path: PathBuf,
}

/// The file name of the segment starting at `first_id`.
pub fn file_name(first_id: u64) -> String {
    format!("{first_id:020}.seg")
}

/// The segments of a folder, in order.
pub fn list(dir: &Path) -> std::io::Result<Vec<Segment>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
        else {
            continue;
        };
        if let Ok(first_id) = stem.parse() {
            out.push(Segment { first_id, path });
        }
    }
    out.sort_by_key(|s| s.first_id);
    Ok(out)
}

/// How a scan of a segment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every byte belongs to a whole frame.
    Clean,
    /// The last frame is incomplete or damaged: a write cut off by a crash.
    /// `valid_len` is where the whole frames end.
    TornTail {
        /// Length of the whole frames.
        valid_len: u64,
    },
    /// The whole frames are followed by zeros only: the unused end of a
    /// segment made ahead of time (the writer overwrites zeros, so that a
    /// sync writes the data alone, not the file's size and new blocks), or
    /// a crash after an appended file grew but before its data landed.
    /// Nothing after `valid_len` was ever acknowledged.
    ZeroTail {
        /// Length of the whole frames.
        valid_len: u64,
    },
}

/// Damage that is not a torn tail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: damaged frame at byte {offset} (record {position} of the segment): {reason}")]
pub struct Damage {
    /// The segment.
    pub path: String,
    /// Byte offset of the frame.
    pub offset: u64,
    /// Position of the frame in the segment (0-based).
    pub position: u64,
    /// What is wrong.
    pub reason: &'static str,
}

/// Why a scan stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScanError<E> {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Damage in the middle.
    #[error(transparent)]
    Damage(Damage),
    /// The visitor refused a record.
    #[error("{0}")]
    Visit(E),
}

/// Reads every frame of a segment in order, calling `visit(offset, bytes)` for
/// each whole frame whose checksum matches.
pub fn scan<E>(
    path: &Path,
    mut visit: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<End, ScanError<E>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut offset = 0u64;
    let mut position = 0u64;
    let mut buf = Vec::new();
    while offset < len {
        let rest = len - offset;
        if rest < HEADER as u64 {
            return Ok(End::TornTail { valid_len: offset });
        }
        let mut h = [0u8; HEADER];
        if let Err(e) = r.read_exact(&mut h) {
            // The writer cut the open segment's zeros (at a roll) while
            // this scan read it: its frames end here.
            if r.get_ref().metadata()?.len() <= offset {
                return Ok(End::Clean);
            }
            return Err(e.into());
        }
        let n = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let after_header = offset + HEADER as u64;
        if n == 0 && crc == 0 {
            // Zeros to the end: a segment made ahead, or a file that grew
            // before its data landed. Read in pieces, not into memory: it
            // may be 64 MiB.
            return match nonzero_end(&mut r, after_header)? {
                None => Ok(End::ZeroTail { valid_len: offset }),
                Some(end) => torn_or_damage(path, end, offset, position, "impossible frame length"),
            };
        }
        if n == 0 || n > MAX_RECORD {
            // A header half written over zeros, by a write a crash cut off.
            let end = nonzero_end(&mut r, after_header)?.unwrap_or(after_header);
            return torn_or_damage(path, end, offset, position, "impossible frame length");
        }
        if (n as u64) > rest - HEADER as u64 {
            return Ok(End::TornTail { valid_len: offset });
        }
        buf.resize(n, 0);
        r.read_exact(&mut buf)?;
        if crc32fast::hash(&buf) != crc {
            // The last write, cut off by a crash: at the end of the file,
            // before the zeros of a segment made ahead, or with some of its
            // later pages on disk. Anything further means the damage is in
            // the middle.
            let end = nonzero_end(&mut r, after_header + n as u64)?.unwrap_or(0);
            return torn_or_damage(path, end, offset, position, "checksum mismatch");
        }
        visit(offset, &buf).map_err(ScanError::Visit)?;
        offset += (HEADER + n) as u64;
        position += 1;
    }
    Ok(End::Clean)
}

/// A frame broken at `offset`, with non-zero bytes up to `end`: the torn
/// last write if they lie within one write's reach of it, damage if not.
fn torn_or_damage<E>(
    path: &Path,
    end: u64,
    offset: u64,
    position: u64,
    reason: &'static str,
) -> Result<End, ScanError<E>> {
    if end <= offset + MAX_WRITE {
        return Ok(End::TornTail { valid_len: offset });
    }
    Err(ScanError::Damage(Damage {
        path: path.display().to_string(),
        offset,
        position,
        reason,
    }))
}

/// Where the last non-zero byte left in `r` ends (`r` being at byte `at`
/// of the file), or `None` when only zeros are left.
fn nonzero_end(r: &mut impl Read, mut at: u64) -> std::io::Result<Option<u64>> {
    let mut buf = [0u8; 1 << 14];
    let mut end = None;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(end);
        }
        if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
            end = Some(at + i as u64 + 1);
        }
        at += n as u64;
    }
}

/// Reads the record bytes of the frame at `offset`, checking its checksum.
pub fn read_at(file: &File, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut h = [0u8; HEADER];
    file.read_exact_at(&mut h, offset)?;
    let n = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if n == 0 || n > MAX_RECORD {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "impossible frame length",
        ));
    }
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, offset + HEADER as u64)?;
    if crc32fast::hash(&buf) != crc {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "checksum mismatch",
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, records: &[&[u8]], extra: &[u8]) {
        let mut out = Vec::new();
        for r in records {
            frame(r, &mut out);
        }
        out.extend_from_slice(extra);
        std::fs::write(path, out).unwrap();
    }

    fn count(path: &Path) -> Result<(u64, End), ScanError<()>> {
        let mut n = 0;
        let end = scan(path, |_, _| {
            n += 1;
            Ok::<_, ()>(())
        })?;
        Ok((n, end))
    }

    #[test]
    fn torn_tails_are_told_from_damage() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.seg");
        write(&p, &[b"aaa", b"bbbb"], b"");
        assert_eq!(count(&p).unwrap(), (2, End::Clean));
        // A long zero tail (a segment made ahead; read in pieces), then
        // zeros followed by anything else: within one write's reach, pages
        // of a torn write that landed after one that did not; beyond it,
        // damage.
        let far = MAX_WRITE as usize + (100 << 10);
        let mut zeros = vec![0u8; far];
        write(&p, &[b"aaa", b"bbbb"], &zeros);
        assert_eq!(count(&p).unwrap(), (2, End::ZeroTail { valid_len: 23 }));
        write(&p, &[b"aaa", b"bbbb"], &[0u8; 40]);
        assert_eq!(count(&p).unwrap(), (2, End::ZeroTail { valid_len: 23 }));
        zeros[MAX_WRITE as usize - 1] = 1;
        write(&p, &[b"aaa", b"bbbb"], &zeros);
        assert_eq!(count(&p).unwrap(), (2, End::TornTail { valid_len: 23 }));
        *zeros.last_mut().unwrap() = 1;
        write(&p, &[b"aaa", b"bbbb"], &zeros);
        assert!(matches!(count(&p), Err(ScanError::Damage(_))));
        // Half a header, half a body: torn, at the end of the file or
        // before the zeros of a segment made ahead.
        let half_body = b"\x10\x00\x00\x00\x00\x00\x00\x00abc";
        let half_header = b"\x05\x00\x00\x00\x00\x00\x00\x00";
        let bad_crc = b"\x03\x00\x00\x00\x01\x02\x03\x04abc";
        for tail in [&b"\x05\x00"[..], half_body] {
            write(&p, &[b"aaa", b"bbbb"], tail);
            assert_eq!(
                count(&p).unwrap(),
                (2, End::TornTail { valid_len: 23 }),
                "{tail:?}"
            );
        }
        for tail in [&half_body[..], &half_header[..2], bad_crc] {
            let mut t = tail.to_vec();
            t.resize(far, 0);
            write(&p, &[b"aaa", b"bbbb"], &t);
            assert_eq!(
                count(&p).unwrap(),
                (2, End::TornTail { valid_len: 23 }),
                "{tail:?} before zeros"
            );
            t[8192] = 1;
            write(&p, &[b"aaa", b"bbbb"], &t);
            assert_eq!(
                count(&p).unwrap(),
                (2, End::TornTail { valid_len: 23 }),
                "{tail:?} before a later page of its write"
            );
            // The same followed by anything beyond one write: damage.
            *t.last_mut().unwrap() = 1;
            write(&p, &[b"aaa", b"bbbb"], &t);
            assert!(
                matches!(count(&p), Err(ScanError::Damage(_))),
                "{tail:?} before data"
            );
        }
        // A bad checksum on the last frame: torn.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(23);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(count(&p).unwrap(), (1, End::TornTail { valid_len: 11 }));
        // A bad checksum with more than one write after it: damage in the
        // middle. (Closer to the end the caches tell: see recovery.)
        let big = vec![7u8; MAX_RECORD];
        write(&p, &[b"aaa", &big, &big, &big], b"");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[9] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            count(&p),
            Err(ScanError::Damage(Damage { position: 0, .. }))
        ));
    }

    /// The writer cuts the open segment's zeros at a roll while a reader
    /// (verify, export) scans it: the frames end where the file now ends.
    #[test]
    fn a_segment_cut_while_it_is_scanned_ends_cleanly() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.seg");
        let records: Vec<Vec<u8>> = (0..200u8).map(|i| vec![i | 1; 1000]).collect();
        let refs: Vec<&[u8]> = records.iter().map(|r| &r[..]).collect();
        write(&p, &refs, &[0u8; 200 << 10]);
        let frames_len = 200 * (1000 + HEADER as u64);
        let mut n = 0;
        let end = scan(&p, |_, _| {
            if n == 0 {
                let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                f.set_len(frames_len).unwrap();
            }
            n += 1;
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!((n, end), (200, End::Clean));
    }
}
