//! The next segment, made ahead of time.
//!
//! On ext4 an `fdatasync` after an append writes more than the data: the
//! file's new size and the blocks allocated for it. Here that is about 60 µs
//! of CPU and 0.3 ms a sync, against 40 µs and 0.15 ms when the same bytes go
//! over zeros that are already on disk. At full load the writer syncs a few
//! thousand times a second, so while a segment fills, a background thread
//! makes the next one: `segments/next.tmp`, zero-filled to the segment size
//! and synced. The writer renames it in when it rolls, if it is ready (it
//! never waits for it), and writes over its zeros.
//!
//! The zeros cost disk space ahead of need, so a segment is made ahead only
//! while the disk keeps room for four more segments after it: a full disk
//! must not come sooner because of it.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// The file a segment is made ahead in, beside the segments. Its name does
/// not end in `.seg`: readers of the log never see it.
pub(super) const NEXT: &str = "next.tmp";

/// Free room, in segments, that must remain after a segment is made ahead.
const ROOM_AFTER: u64 = 4;

/// The making of the next segment: not begun, under way, or done.
#[derive(Default)]
pub(super) struct Ahead {
    making: Option<JoinHandle<std::io::Result<PathBuf>>>,
    /// Set when the writer stops: the making ends (and removes its file)
    /// before the writer is gone, so that no making outlives it and writes
    /// zeros into a file the next writer of this log renamed in.
    stop: Arc<AtomicBool>,
}

impl Ahead {
    /// Begins making a segment of `size` zero bytes in `dir`, unless one is
    /// being made or is ready.
    pub(super) fn begin(&mut self, dir: PathBuf, size: u64) {
        if self.making.is_some() {
            return;
        }
        let stop = self.stop.clone();
        let made = std::thread::Builder::new()
            .name("audit-ahead".into())
            .spawn(move || {
                super::index::run_in_background();
                make(dir, size, &stop)
            });
        // Without a thread, segments grow by appends as before.
        self.making = made.ok();
    }

    /// The segment made ahead, if it is ready; `None` (and nothing waited
    /// for) while it is being made, or when it could not be made (the next
    /// roll tries again).
    pub(super) fn take_ready(&mut self) -> Option<PathBuf> {
        if !self.making.as_ref().is_some_and(JoinHandle::is_finished) {
            return None;
        }
        self.making.take()?.join().ok()?.ok()
    }
}

impl Drop for Ahead {
    /// Stops a making under way and waits for it: at most one piece of
    /// zeros is still written.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.making.take() {
            let _ = h.join();
        }
    }
}

/// Zeros written at a time, between looks at the stop flag.
const PIECE: usize = 1 << 20;

fn make(dir: PathBuf, size: u64, stop: &AtomicBool) -> std::io::Result<PathBuf> {
    let path = dir.join(NEXT);
    // Left by a crash while it was made: never renamed in, so never part
    // of the log.
    let _ = std::fs::remove_file(&path);
    let st = rustix::fs::statvfs(&dir)?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if free < size.saturating_mul(ROOM_AFTER + 1) {
        return Err(std::io::Error::other(
            "not enough room to make a segment ahead",
        ));
    }
    let made = (|| {
        let mut f = File::create(&path)?;
        let zeros = vec![0u8; size.min(PIECE as u64) as usize];
        let mut left = size;
        while left > 0 {
            if stop.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("the writer stopped"));
            }
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()
    })();
    match made {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report
    use super::*;

    #[test]
    fn a_segment_is_made_ahead_only_with_room_to_spare() {
        let d = tempfile::tempdir().unwrap();
        let made = make(d.path().to_path_buf(), 10_000, &AtomicBool::new(false)).unwrap();
        assert_eq!(made, d.path().join(NEXT));
        let bytes = std::fs::read(&made).unwrap();
        assert_eq!(bytes.len(), 10_000);
        assert!(bytes.iter().all(|&b| b == 0));
        // A segment the disk could hold, but not four more after it.
        let st = rustix::fs::statvfs(d.path()).unwrap();
        let free = st.f_bavail * st.f_frsize;
        assert!(make(d.path().to_path_buf(), free / 3, &AtomicBool::new(false)).is_err());
        assert!(!made.exists(), "nothing left behind");
    }

    /// A making under way when the writer stops ends with it: it must not
    /// go on writing zeros into a file that the next writer of the log
    /// (in the same process: a test, a restore) renames in and writes over.
    #[test]
    fn a_making_under_way_stops_with_the_writer() {
        let d = tempfile::tempdir().unwrap();
        let mut ahead = Ahead::default();
        ahead.begin(d.path().to_path_buf(), 256 << 20);
        let next = d.path().join(NEXT);
        while !next.exists() {
            // A disk without room for it makes nothing: then there is
            // nothing to stop (and no file to wait for).
            if ahead.making.as_ref().is_none_or(JoinHandle::is_finished) {
                assert!(!next.exists());
                return;
            }
            std::thread::yield_now();
        }
        drop(ahead);
        assert!(!next.exists(), "the making went on after the writer");
    }
}
