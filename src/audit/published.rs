//! STAND-IN for the published checkpoint (issue 16, publishing part).
//!
//! The real `View::published_checkpoint` returns the newest checkpoint that
//! gathered its quorum of witness cosignatures, with those cosignature lines.
//! It is built on another branch; until it is merged, this stand-in returns
//! the latest signed checkpoint without cosignatures, so that evidence files
//! can be made and tested. At merge, the real one replaces this file.

use super::view::View;

impl View {
    /// Size and full note (log signature and cosignature lines) of the newest
    /// checkpoint published with its quorum. Stand-in: the latest signed
    /// checkpoint, no cosignatures.
    pub fn published_checkpoint(&self) -> Option<(u64, String)> {
        self.latest_checkpoint().map(|cp| (cp.size, cp.note))
    }
}
