//! RFC 6962 (Certificate Transparency) Merkle tree hashing, proofs and their
//! verification.
//!
//! Leaf = SHA-256(0x00 || record), node = SHA-256(0x01 || left || right). The
//! verification follows transparency-dev/merkle's algorithm, so proofs made
//! here check with any CT-style verifier, and proofs from elsewhere check here.
//! Verification never panics: every malformed input is an error.

use ring::digest::{Context, SHA256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    crate::identity::sha256(b"")
}

/// The leaf hash of a record's bytes.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0]);
    c.update(data);
    fin(c)
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[1]);
    c.update(left);
    c.update(right);
    fin(c)
}

fn fin(c: Context) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(c.finish().as_ref());
    out
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Source of perfect-subtree hashes, so proofs can be built from a node cache
/// or from leaves in memory alike.
pub trait Nodes {
    /// The error of the source.
    type Error;
    /// Hash of the perfect subtree of `2^level` leaves starting at
    /// `index << level`.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Leaves in memory, for tests and small trees.
impl Nodes for [Hash] {
    type Error = std::convert::Infallible;
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        let start = (index << level) as usize;
        Ok(range_hash(&self[start..start + (1usize << level)]))
    }
}

/// MTH of a slice of leaf hashes, straight from RFC 6962.
pub fn range_hash(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&range_hash(&leaves[..k]), &range_hash(&leaves[k..]))
        }
    }
}

/// MTH(D[start..start+size]) where `start` is aligned as the RFC's recursion
/// makes it: perfect subtrees come from the node source, the rest is split.
pub fn subtree<N: Nodes + ?Sized>(nodes: &N, start: u64, size: u64) -> Result<Hash, N::Error> {
    if size.is_power_of_two() && start.is_multiple_of(size) {
        return nodes.node(size.trailing_zeros(), start / size);
    }
    let k = split(size);
    Ok(node_hash(
        &subtree(nodes, start, k)?,
        &subtree(nodes, start + k, size - k)?,
    ))
}

/// Root of the first `size` leaves.
pub fn root<N: Nodes + ?Sized>(nodes: &N, size: u64) -> Result<Hash, N::Error> {
    if size == 0 {
        Ok(empty_root())
    } else {
        subtree(nodes, 0, size)
    }
}

/// Inclusion proof of leaf `index` in the tree of `size` leaves (RFC 6962 PATH).
pub fn inclusion_proof<N: Nodes + ?Sized>(
    nodes: &N,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, N::Error> {
    fn path<N: Nodes + ?Sized>(
        n: &N,
        m: u64,
        start: u64,
        size: u64,
        out: &mut Vec<Hash>,
    ) -> Result<(), N::Error> {
        if size <= 1 {
            return Ok(());
        }
        let k = split(size);
        if m < k {
            path(n, m, start, k, out)?;
            out.push(subtree(n, start + k, size - k)?);
        } else {
            path(n, m - k, start + k, size - k, out)?;
            out.push(subtree(n, start, k)?);
        }
        Ok(())
    }
    let mut out = Vec::new();
    if index < size {
        path(nodes, index, 0, size, &mut out)?;
    }
    Ok(out)
}

/// Consistency proof between the trees of `size1` and `size2` leaves
/// (RFC 6962 PROOF / SUBPROOF).
pub fn consistency_proof<N: Nodes + ?Sized>(
    nodes: &N,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, N::Error> {
    fn sub<N: Nodes + ?Sized>(
        n: &N,
        m: u64,
        start: u64,
        size: u64,
        whole: bool,
        out: &mut Vec<Hash>,
    ) -> Result<(), N::Error> {
        if m == size {
            if !whole {
                out.push(subtree(n, start, size)?);
            }
            return Ok(());
        }
        let k = split(size);
        if m <= k {
            sub(n, m, start, k, whole, out)?;
            out.push(subtree(n, start + k, size - k)?);
        } else {
            sub(n, m - k, start + k, size - k, false, out)?;
            out.push(subtree(n, start, k)?);
        }
        Ok(())
    }
    let mut out = Vec::new();
    if 0 < size1 && size1 < size2 {
        sub(nodes, size1, 0, size2, true, &mut out)?;
    }
    Ok(out)
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexBeyondSize {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// A hash is not 32 bytes.
    #[error("{what} is {len} bytes, not 32")]
    BadHashLength {
        /// Which hash.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has {got} hashes, {want} expected")]
    WrongProofSize {
        /// Hashes given.
        got: usize,
        /// Hashes needed.
        want: usize,
    },
    /// The computed root is not the one given.
    #[error("the proof leads to another root")]
    RootMismatch,
    /// The sizes cannot be consistent.
    #[error("{0}")]
    BadSizes(&'static str),
}

fn hash32(b: &[u8], what: &'static str) -> Result<Hash, ProofError> {
    b.try_into()
        .map_err(|_| ProofError::BadHashLength { what, len: b.len() })
}

fn decomp(index: u64, size: u64) -> (usize, usize) {
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    // A shift by 64 (a tree near u64::MAX) leaves nothing, as in Go.
    let border = index.checked_shr(inner as u32).unwrap_or(0).count_ones() as usize;
    (inner, border)
}

fn chain_inner(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        seed = if (index >> i) & 1 == 0 {
            node_hash(&seed, h)
        } else {
            node_hash(h, &seed)
        };
    }
    seed
}

fn chain_inner_right(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        if (index >> i) & 1 == 1 {
            seed = node_hash(h, &seed);
        }
    }
    seed
}

fn chain_border_right(mut seed: Hash, proof: &[Hash]) -> Hash {
    for h in proof {
        seed = node_hash(h, &seed);
    }
    seed
}

fn hashes(proof: &[Vec<u8>]) -> Result<Vec<Hash>, ProofError> {
    proof.iter().map(|p| hash32(p, "a proof hash")).collect()
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` leaves with
/// root `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[Vec<u8>],
    root: &[u8],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexBeyondSize { index, size });
    }
    let leaf = hash32(leaf_hash, "the leaf hash")?;
    let (inner, border) = decomp(index, size);
    if proof.len() != inner + border {
        return Err(ProofError::WrongProofSize {
            got: proof.len(),
            want: inner + border,
        });
    }
    let proof = hashes(proof)?;
    let r = chain_border_right(chain_inner(leaf, &proof[..inner], index), &proof[inner..]);
    if r.as_slice() != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `size2` leaves with root `root2` extends the tree
/// of `size1` leaves with root `root1`. A proof from the empty tree proves
/// nothing and is refused.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Vec<u8>],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size2 < size1 {
        return Err(ProofError::BadSizes("size2 is below size1"));
    }
    if size1 == 0 {
        return Err(ProofError::BadSizes(
            "a consistency proof from the empty tree proves nothing",
        ));
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofSize {
                got: proof.len(),
                want: 0,
            });
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongProofSize { got: 0, want: 1 });
    }
    let (mut inner, border) = decomp(size1 - 1, size2);
    let shift = size1.trailing_zeros() as usize;
    inner -= shift;
    let proof = hashes(proof)?;
    let (seed, start) = if size1 == 1u64 << shift {
        (hash32(root1, "root1")?, 0)
    } else {
        (proof[0], 1)
    };
    if proof.len() != start + inner + border {
        return Err(ProofError::WrongProofSize {
            got: proof.len(),
            want: start + inner + border,
        });
    }
    let proof = &proof[start..];
    let mask = (size1 - 1) >> shift;
    let h1 = chain_border_right(
        chain_inner_right(seed, &proof[..inner], mask),
        &proof[inner..],
    );
    if h1.as_slice() != root1 {
        return Err(ProofError::RootMismatch);
    }
    let h2 = chain_border_right(chain_inner(seed, &proof[..inner], mask), &proof[inner..]);
    if h2.as_slice() != root2 {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The right edge of the tree: one pending hash per level, enough to extend
/// the tree by a leaf and to compute the root, in O(log n) memory.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    /// `pending[l]`: the hash of a complete subtree of 2^l leaves awaiting its
    /// right sibling, present when bit l of `size` is set.
    pending: Vec<Option<Hash>>,
}

impl Frontier {
    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// A frontier from its pending subtrees: `(level, hash)` for every set bit
    /// of `size` (as a node cache holds them).
    pub fn from_pending(size: u64, pending: &[(u32, Hash)]) -> Self {
        let mut f = Self {
            size,
            pending: vec![None; 64 - size.leading_zeros() as usize],
        };
        for (l, h) in pending {
            if let Some(slot) = f.pending.get_mut(*l as usize) {
                *slot = Some(*h);
            }
        }
        f
    }

    /// Adds a leaf; calls `complete(level, index, hash)` for every perfect
    /// subtree that this leaf completes (the leaf itself at level 0).
    pub fn push(&mut self, leaf: Hash, mut complete: impl FnMut(u32, u64, &Hash)) {
        let mut h = leaf;
        let mut level = 0u32;
        let mut index = self.size;
        complete(0, index, &h);
        loop {
            if self.pending.len() <= level as usize {
                self.pending.push(None);
            }
            match self.pending[level as usize].take() {
                Some(left) => {
                    h = node_hash(&left, &h);
                    level += 1;
                    index >>= 1;
                    complete(level, index, &h);
                }
                None => {
                    self.pending[level as usize] = Some(h);
                    break;
                }
            }
        }
        self.size += 1;
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut acc: Option<Hash> = None;
        for h in self.pending.iter().flatten() {
            acc = Some(match acc {
                None => *h,
                Some(right) => node_hash(h, &right),
            });
        }
        acc.unwrap_or_else(empty_root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect()
    }

    #[test]
    fn known_answers() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let leaves = known_leaves();
        assert_eq!(
            hex::encode(root(leaves.as_slice(), 8).unwrap()),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
    }

    #[test]
    fn frontier_matches_rfc_root_at_every_size() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut f = Frontier::default();
        assert_eq!(f.root(), empty_root());
        for (i, l) in leaves.iter().enumerate() {
            f.push(*l, |_, _, _| {});
            assert_eq!(f.root(), range_hash(&leaves[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn proofs_made_here_verify_and_fail_when_tampered() {
        let leaves: Vec<Hash> = (0u32..37).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let v = |p: Vec<Hash>| p.into_iter().map(|h| h.to_vec()).collect::<Vec<_>>();
        for size in 1..=leaves.len() as u64 {
            let r = root(leaves.as_slice(), size).unwrap();
            for i in 0..size {
                let p = v(inclusion_proof(leaves.as_slice(), i, size).unwrap());
                verify_inclusion(i, size, &leaves[i as usize], &p, &r).unwrap();
                if let Some(first) = p.first() {
                    let mut bad = p.clone();
                    bad[0][0] ^= 1;
                    assert!(verify_inclusion(i, size, &leaves[i as usize], &bad, &r).is_err());
                    assert!(!first.is_empty());
                }
            }
            for s1 in 1..=size {
                let r1 = root(leaves.as_slice(), s1).unwrap();
                let p = v(consistency_proof(leaves.as_slice(), s1, size).unwrap());
                verify_consistency(s1, size, &p, &r1, &r).unwrap();
                if s1 < size {
                    let mut bad = p.clone();
                    let last = bad.len() - 1;
                    bad[last][31] ^= 1;
                    assert!(verify_consistency(s1, size, &bad, &r1, &r).is_err());
                }
            }
        }
    }
}
