//! Hash tiles of the log's Merkle tree, as `c2sp.org/tlog-tiles` defines
//! them: tile height 8, SHA-256 hashes of 32 bytes.
//!
//! The tile at level `L` and index `N` holds the hashes
//! `MTH(D[(N*256 + i) * 256^L .. (N*256 + i + 1) * 256^L])` for `i` below its
//! width (256 for a full tile, 1 to 255 for a partial one). Each is a node
//! of the tree at height `8*L`, which the node cache already holds: a tile
//! is read, never rehashed. A tile is served only when every hash in it is
//! a complete subtree of the log as far as it is durable, so a tile, once
//! served, never changes.
//!
//! Paths are `tile/<L>/<N>[.p/<W>]` with `N` in zero-padded 3-digit
//! elements, all but the last prefixed with `x` (`x001/x234/067`). Only the
//! canonical spelling is accepted. Entry bundles (`tile/entries/...`) are not
//! served: a record is for the parties to its exchange, not for every
//! partner.

use super::merkle::Nodes;

/// Tree levels one tile spans.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// Highest tile level a path may name.
pub const MAX_LEVEL: u8 = 63;

/// One tile: its level, index and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRef {
    /// The tile level `L` (tree height `8*L`).
    pub level: u8,
    /// The tile's index within its level.
    pub index: u64,
    /// Its hashes: [`TILE_WIDTH`] for a full tile, fewer for a partial one.
    pub width: u64,
}

/// A decimal without leading zeroes.
fn decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

impl TileRef {
    /// Parses the path segments after `tile/`: `<L>`, the elements of `<N>`,
    /// and `.p/<W>` for a partial tile. `None` for anything else, entry
    /// bundles included.
    pub fn parse(segs: &[&str]) -> Option<Self> {
        let (level, rest) = segs.split_first()?;
        let level = u8::try_from(decimal(level)?)
            .ok()
            .filter(|l| *l <= MAX_LEVEL)?;
        let (rest, width) = match rest {
            [n @ .., w] if n.last().is_some_and(|l| l.ends_with(".p")) => {
                let w = decimal(w).filter(|w| (1..TILE_WIDTH).contains(w))?;
                (n, w)
            }
            n => (n, TILE_WIDTH),
        };
        let (last, front) = rest.split_last()?;
        let last: &str = last;
        let last = last.strip_suffix(".p").unwrap_or(last);
        let mut index: u64 = 0;
        for (i, e) in front.iter().chain(std::iter::once(&last)).enumerate() {
            let e: &str = e;
            let digits = if i < front.len() {
                e.strip_prefix('x')?
            } else {
                e
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let d: u64 = digits.parse().ok()?;
            index = index.checked_mul(1000)?.checked_add(d)?;
        }
        let tile = Self {
            level,
            index,
            width,
        };
        // One spelling per tile: no padding elements, `.p` only with a width.
        let canonical = tile.path();
        let given = format!("tile/{}", segs.join("/"));
        (canonical == given).then_some(tile)
    }

    /// The tile's path, `tile/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        let mut n = format!("{:03}", self.index % 1000);
        let mut rest = self.index / 1000;
        while rest > 0 {
            n = format!("x{:03}/{n}", rest % 1000);
            rest /= 1000;
        }
        if self.width < TILE_WIDTH {
            format!("tile/{}/{n}.p/{}", self.level, self.width)
        } else {
            format!("tile/{}/{n}", self.level)
        }
    }

    /// Leaves a tree needs for every hash of this tile to be complete;
    /// `None` when that is beyond any tree.
    pub fn needs(&self) -> Option<u64> {
        let span = 1u64.checked_shl(TILE_HEIGHT * u32::from(self.level))?;
        let first = self.index.checked_mul(TILE_WIDTH)?;
        first.checked_add(self.width)?.checked_mul(span)
    }
}

/// The tile's bytes (its hashes, 32 bytes each) from the node cache, or
/// `None` when the tree of `size` leaves does not complete it.
pub fn read<N: Nodes + ?Sized>(
    nodes: &N,
    tile: &TileRef,
    size: u64,
) -> Result<Option<Vec<u8>>, N::Error> {
    if tile.needs().is_none_or(|n| n > size) {
        return Ok(None);
    }
    let height = TILE_HEIGHT * u32::from(tile.level);
    let first = tile.index * TILE_WIDTH;
    let mut out = Vec::with_capacity(tile.width as usize * 32);
    for i in 0..tile.width {
        out.extend_from_slice(&nodes.node(height, first + i)?);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::super::merkle::{Hash, leaf_hash, range_hash};
    use super::*;

    fn tile(level: u8, index: u64, width: u64) -> TileRef {
        TileRef {
            level,
            index,
            width,
        }
    }

    #[test]
    fn paths_are_parsed_in_their_one_spelling() {
        let t = |p: &str| TileRef::parse(&p.split('/').collect::<Vec<_>>());
        assert_eq!(t("0/000"), Some(tile(0, 0, 256)));
        assert_eq!(t("1/x001/x234/067"), Some(tile(1, 1_234_067, 256)));
        assert_eq!(t("2/005.p/17"), Some(tile(2, 5, 17)));
        assert_eq!(tile(1, 1_234_067, 256).path(), "tile/1/x001/x234/067");
        assert_eq!(tile(0, 1000, 3).path(), "tile/0/x001/000.p/3");
        for bad in [
            "entries/000",
            "0/0",
            "0/x000/000",
            "00/000",
            "64/000",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/07",
            "0/000.p",
            "0/000/5",
            "0/x001",
            "0/1234",
            "0",
            "0/00a",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn tiles_hold_the_subtree_hashes_the_spec_names() {
        let leaves: Vec<Hash> = (0u32..600).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        // A node cache in memory: level h holds the complete subtrees of 2^h leaves.
        struct Cache(Vec<Vec<Hash>>);
        impl Nodes for Cache {
            type Error = ();
            fn node(&self, level: u32, index: u64) -> Result<Hash, ()> {
                self.0
                    .get(level as usize)
                    .and_then(|l| l.get(index as usize))
                    .copied()
                    .ok_or(())
            }
        }
        let mut levels = vec![leaves.clone()];
        for h in 1..=9usize {
            let w = 1usize << h;
            levels.push(leaves.chunks_exact(w).map(range_hash).collect());
        }
        let cache = Cache(levels);
        let full = read(&cache, &tile(0, 1, 256), 600).unwrap().unwrap();
        assert_eq!(full.len(), 256 * 32);
        assert_eq!(&full[..32], &leaves[256]);
        let partial = read(&cache, &tile(0, 2, 88), 600).unwrap().unwrap();
        assert_eq!(&partial[87 * 32..], &leaves[599]);
        let up = read(&cache, &tile(1, 0, 2), 600).unwrap().unwrap();
        assert_eq!(&up[32..], &range_hash(&leaves[256..512]));
        assert_eq!(read(&cache, &tile(0, 2, 89), 600).unwrap(), None);
        assert_eq!(read(&cache, &tile(1, 0, 3), 600).unwrap(), None);
        assert_eq!(read(&cache, &tile(0, 2, 256), 600).unwrap(), None);
        assert_eq!(read(&cache, &tile(63, u64::MAX, 256), 600).unwrap(), None);
    }
}
