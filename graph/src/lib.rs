//! # exoflow-graph: exact TunkRank
//!
//! Influence on a follower graph. The graph, the value and the result file are
//! defined once, here, and every implementation computes the same bits.
//!
//! **The graph.** An edge operation `(a, b)` means *b follows a*. The graph
//! after a sequence of operations is the set of pairs `(a, b)` with `a != b`
//! whose last operation is an insert: duplicates and removals of missing
//! edges are no-ops, self-loops are dropped. `following(b)` is the number of
//! nodes b follows, `F(a)` the followers of a. The influence table lists
//! exactly the nodes with at least one follower.
//!
//! **The value.** In real numbers, with p = 0.00037,
//! `infl(a) = sum over b in F(a) of (1 + p * infl(b)) / following(b)`.
//! In fixed point (`x = value * 10^9`, `u64`, integer division):
//! `term(b) = (10^9 + (37 * x(b)) / 100000) / following(b)` (the product in
//! `u128`) and `F(x)(a) = sum over b in F(a) of term(b)` (checked). The result
//! is the **least fixpoint** of `F`, reached by iterating from `x = 0`: `F` is
//! monotone, so the iterates rise to it and stop there exactly.
//!
//! ```
//! use exoflow_graph::{reference, EdgeOp};
//! // 2 and 3 follow 1; 3 follows only 1, 2 also follows 3.
//! let ops = [EdgeOp::insert(1, 2), EdgeOp::insert(1, 3), EdgeOp::insert(3, 2)];
//! let table = reference::tunkrank(&reference::Graph::from_ops(&ops)).unwrap();
//! assert_eq!(table, vec![(1, 1_500_185_000), (3, 500_000_000)]);
//! ```
#![deny(missing_docs)]

pub mod batch;
pub mod cluster;
pub mod online;
mod packed;
mod pairs;
mod parallel;
pub mod reference;
mod sort;
pub mod table;

pub use pairs::{NarrowPairs, PairPart};
pub use table::{digest, format_fixed, write_csv, Table};

/// A hasher for node ids (a multiply-xorshift mix): ids are not adversarial
/// here, and SipHash would dominate the dense renumbering of a large graph.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let z = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z ^ (z >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A map from node ids.
pub type IdMap<V> = std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Dense `u32` indices of node ids: a direct table when the ids are small
/// next to the number of nodes (most graph datasets number their nodes
/// densely; R-MAT ids are a permutation of `0..2^scale`), a hash map
/// otherwise. The table is 4 bytes per possible id with no probing, so a
/// lookup is one access to a small array instead of a probe sequence in a
/// map several times larger.
#[derive(Debug, Clone)]
pub enum IdIndex {
    /// `table[id]` is the index, `u32::MAX` when absent.
    Direct(Vec<u32>),
    /// Any ids.
    Hashed(IdMap<u32>),
}

impl Default for IdIndex {
    /// An empty table: a graph that starts empty and streams dense ids
    /// (an R-MAT stream, a renumbered dataset) keeps a direct table, and
    /// moves to a map only at an id far past its nodes.
    fn default() -> Self {
        Self::Direct(Vec::new())
    }
}

/// The largest table for `nodes` nodes: 8 slots per node (32 bytes, about
/// a hash map's), at least 4M (16 MB), at most 2^30.
fn direct_limit(nodes: u64) -> u64 {
    nodes.saturating_mul(8).clamp(1 << 22, 1 << 30)
}

impl IdIndex {
    /// An empty index for ids up to `max_id`, about `expected` of them.
    pub fn for_ids(max_id: u64, expected: usize) -> Self {
        if max_id < direct_limit(expected as u64) {
            Self::Direct(vec![u32::MAX; max_id as usize + 1])
        } else {
            Self::Hashed(IdMap::with_capacity_and_hasher(
                expected,
                Default::default(),
            ))
        }
    }

    /// The index of `id`.
    #[inline]
    pub fn get(&self, id: u64) -> Option<u32> {
        match self {
            Self::Direct(t) => t.get(id as usize).copied().filter(|&i| i != u32::MAX),
            Self::Hashed(m) => m.get(&id).copied(),
        }
    }

    /// The index of `id`, given `next` when it has none yet.
    #[inline]
    pub fn get_or_insert(&mut self, id: u64, next: u32) -> u32 {
        match self {
            Self::Direct(t) => match t.get_mut(id as usize) {
                Some(slot) => {
                    if *slot == u32::MAX {
                        *slot = next;
                    }
                    *slot
                }
                None if id < direct_limit(u64::from(next)) => {
                    // An id beyond the table, still dense next to the nodes
                    // (ids that grow with the graph): the table doubles.
                    let len = (id as usize + 1)
                        .max(t.len() * 2)
                        .min(direct_limit(u64::from(next)) as usize);
                    t.resize(len, u32::MAX);
                    self.get_or_insert(id, next)
                }
                None => {
                    // An id far beyond the table: move to a map.
                    let mut m: IdMap<u32> =
                        IdMap::with_capacity_and_hasher(t.len() / 4, Default::default());
                    for (i, &v) in t.iter().enumerate() {
                        if v != u32::MAX {
                            m.insert(i as u64, v);
                        }
                    }
                    *self = Self::Hashed(m);
                    self.get_or_insert(id, next)
                }
            },
            Self::Hashed(m) => *m.entry(id).or_insert(next),
        }
    }

    /// An index numbering `first` (distinct ids) `0, 1, …` in order, then
    /// the other ids of `more` (any order, repeats allowed) from
    /// `first.len()` on; also returns the ids by index, and the index of
    /// each item of `more`.
    ///
    /// With a direct table, the others are numbered in ascending id order
    /// and no lookup waits on another: `more` is marked in the table (stores
    /// only), then the table is swept once. Numbering id by id, as
    /// [`get_or_insert`](Self::get_or_insert) does, makes each lookup wait
    /// for the one before it (the next index depends on whether that id was
    /// new), and on a graph larger than the cache that is a memory latency
    /// per edge; this way the lookups overlap. With a map, they are
    /// numbered in first-seen order, each item's index found as it is
    /// numbered (one probe an item, where numbering then looking up takes
    /// two).
    pub fn numbering(
        first: &[u64],
        more: impl IntoIterator<Item = u64> + Clone,
    ) -> (Self, Vec<u64>, Vec<u32>) {
        let (count, max_id) = more
            .clone()
            .into_iter()
            .chain(first.iter().copied())
            .fold((0usize, 0u64), |(n, m), id| (n + 1, m.max(id)));
        let mut ids = first.to_vec();
        // A direct table for ids up to 8 per `more` item (an edge list
        // has at most as many distinct nodes as items): 4 bytes per item.
        let mut index = Self::for_ids(max_id, first.len().max(count / 8));
        if let Self::Direct(table) = &mut index {
            // Below u32::MAX: `direct_limit` keeps tables under 2^30 slots.
            const MARK: u32 = u32::MAX - 1;
            for id in more.clone() {
                table[id as usize] = MARK;
            }
            for (i, &id) in first.iter().enumerate() {
                table[id as usize] = i as u32;
            }
            for (id, slot) in table.iter_mut().enumerate() {
                if *slot == MARK {
                    *slot = ids.len() as u32;
                    ids.push(id as u64);
                }
            }
            // Independent lookups: every item is in the table.
            let of_more = more.into_iter().map(|id| table[id as usize]).collect();
            return (index, ids, of_more);
        }
        for (i, &id) in first.iter().enumerate() {
            index.get_or_insert(id, i as u32);
        }
        let mut of_more = Vec::with_capacity(count - first.len());
        for id in more {
            let next = ids.len() as u32;
            let i = index.get_or_insert(id, next);
            if i == next {
                ids.push(id);
            }
            of_more.push(i);
        }
        (index, ids, of_more)
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        match self {
            Self::Direct(t) => t.capacity() * 4,
            Self::Hashed(m) => m.capacity() * 16,
        }
    }
}

/// Appends the union of the sorted `a` and `b` to `out`, sorted: an entry
/// in both is appended once.
pub(crate) fn merge_sorted<T: Ord + Copy>(out: &mut Vec<T>, a: &[T], b: &[T]) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
}

/// The fixed-point scale: a value of 1.0 is `ONE`.
pub const ONE: u64 = 1_000_000_000;
/// p = `P_NUM / P_DEN` = 0.00037.
pub const P_NUM: u128 = 37;
/// See [`P_NUM`].
pub const P_DEN: u128 = 100_000;
/// p as a float, for the f64 reference.
pub const P: f64 = 0.00037;

/// One edge operation on the graph: `dst` follows (insert) or unfollows
/// (remove) `src`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeOp {
    /// The followed node.
    pub src: u64,
    /// The follower.
    pub dst: u64,
    /// Insert (true) or remove (false).
    pub insert: bool,
}

impl EdgeOp {
    /// `dst` follows `src`.
    pub fn insert(src: u64, dst: u64) -> Self {
        Self {
            src,
            dst,
            insert: true,
        }
    }

    /// `dst` unfollows `src`.
    pub fn remove(src: u64, dst: u64) -> Self {
        Self {
            src,
            dst,
            insert: false,
        }
    }
}

/// The fixed-point sum overflowed 64 bits at a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the influence of node {node} overflows 64-bit fixed point")]
pub struct Overflow {
    /// The node.
    pub node: u64,
}

/// `term(b)` for a follower with value `x` that follows `following` nodes.
#[inline]
pub fn term(x: u64, following: u64) -> u64 {
    let f = following.max(1);
    // The same value in 64-bit arithmetic while the product fits (it does
    // for any influence below 5 * 10^8): the u128 division is much slower.
    if x <= u64::MAX / P_NUM as u64 {
        if let Some(num) = ONE.checked_add((P_NUM as u64 * x) / P_DEN as u64) {
            return num / f;
        }
    }
    let boost = (P_NUM * u128::from(x)) / P_DEN;
    // x <= u64::MAX, so boost < 2^64 / 2700 and the sum fits in u128.
    let num = u128::from(ONE) + boost;
    (num / u128::from(f)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_id_index_grows_from_a_table_into_a_map() {
        let mut ix = IdIndex::for_ids(10, 4);
        assert!(matches!(ix, IdIndex::Direct(_)));
        assert_eq!(ix.get_or_insert(3, 0), 0);
        assert_eq!(ix.get_or_insert(3, 1), 0);
        assert_eq!(ix.get(4), None);
        // An id past the table but dense: the table grows.
        assert_eq!(ix.get_or_insert(5000, 1), 1);
        assert!(matches!(ix, IdIndex::Direct(_)));
        // From an empty index too.
        let mut empty = IdIndex::default();
        assert_eq!(empty.get_or_insert(3_000_000, 0), 0);
        assert_eq!((empty.get(3_000_000), empty.get(7)), (Some(0), None));
        assert!(matches!(empty, IdIndex::Direct(_)));
        assert!(matches!(ix, IdIndex::Direct(_)));
        assert_eq!(
            (ix.get(3), ix.get(5000), ix.get(4999)),
            (Some(0), Some(1), None)
        );
        // An id far past the table: the same answers from a map.
        assert_eq!(ix.get_or_insert(1 << 50, 2), 2);
        assert!(matches!(ix, IdIndex::Hashed(_)));
        assert_eq!(
            (ix.get(3), ix.get(5000), ix.get(1 << 50), ix.get(4)),
            (Some(0), Some(1), Some(2), None)
        );
        assert!(matches!(IdIndex::for_ids(u64::MAX, 4), IdIndex::Hashed(_)));
    }

    #[test]
    fn a_numbering_gives_first_its_order_and_every_other_id_one_index() {
        let first = [40u64, 7, 12];
        let more = [5u64, 7, 99, 5, 3, 40, 99, 1000];
        for shift in [0, 50] {
            // Dense ids take the direct table, ids far apart the map.
            let first: Vec<u64> = first.iter().map(|&v| v << shift).collect();
            let more: Vec<u64> = more.iter().map(|&v| v << shift).collect();
            let (ix, ids, of_more) = IdIndex::numbering(&first, more.iter().copied());
            assert_eq!(matches!(ix, IdIndex::Direct(_)), shift == 0);
            let looked_up: Vec<u32> = more
                .iter()
                .map(|&id| ix.get(id).unwrap_or(u32::MAX))
                .collect();
            assert_eq!(of_more, looked_up);
            assert_eq!(&ids[..3], &first[..]);
            let mut others = ids[3..].to_vec();
            others.sort_unstable();
            assert_eq!(others, [3u64, 5, 99, 1000].map(|v| v << shift));
            if shift == 0 {
                // Ascending with a table.
                assert_eq!(&ids[3..], &others[..]);
            }
            for (i, &id) in ids.iter().enumerate() {
                assert_eq!(ix.get(id), Some(i as u32));
            }
            assert_eq!(ix.get(4 << shift), None);
        }
        let (ix, ids, of_more) = IdIndex::numbering(&[], std::iter::empty());
        assert!(ids.is_empty() && of_more.is_empty() && ix.get(0).is_none());
    }

    fn term_u128(x: u64, following: u64) -> u64 {
        let num = u128::from(ONE) + (P_NUM * u128::from(x)) / P_DEN;
        (num / u128::from(following.max(1))) as u64
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn the_64_bit_term_equals_the_128_bit_one(
            x in prop_oneof![any::<u64>(), 0..u64::MAX / 30, u64::MAX / 37 - 1000..u64::MAX / 37 + 1000],
            f in prop_oneof![1..100u64, any::<u64>(), Just(0u64)],
        ) {
            prop_assert_eq!(term(x, f), term_u128(x, f));
        }
    }
}
