//! Adjacency lists packed in one array (compressed sparse rows), edited in
//! place.
//!
//! A pass over every list then reads one array in order, where separately
//! allocated lists would cost a cache miss each (four times slower on a
//! 16M-edge graph here). A list shrinks inside its segment on removals and
//! reuses the room on later inserts, and every segment is packed with room
//! to grow by an eighth; what does not fit goes to a side list of the node
//! until [`Packed::repack`] folds the side lists back in.

/// No side list.
const NONE: u32 = u32::MAX;

/// Adjacency lists of nodes `0..n` (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    /// Node v's segment is `flat[start[v]..start[v + 1]]`, its live entries
    /// the first `len[v]`.
    start: Vec<usize>,
    len: Vec<u32>,
    flat: Vec<u32>,
    /// Index of node v's side list in `side_lists`, or `NONE`.
    side: Vec<u32>,
    side_lists: Vec<Vec<u32>>,
    /// Entries in side lists.
    spilled: usize,
    /// Live entries in all.
    total: usize,
}

impl Default for Packed {
    fn default() -> Self {
        Self::from_lists(&[])
    }
}

impl Packed {
    /// Packs `lists` (list v belongs to node v).
    pub(crate) fn from_lists(lists: &[Vec<u32>]) -> Self {
        Self::pack(lists.len(), |v| (&lists[v][..], &[][..]))
    }

    /// Packs lists given as offsets into one array: node v's list is
    /// `flat[offsets[v]..offsets[v + 1]]`.
    pub(crate) fn from_csr(offsets: &[usize], flat: &[u32]) -> Self {
        Self::pack(offsets.len().saturating_sub(1), |v| {
            (&flat[offsets[v]..offsets[v + 1]], &[][..])
        })
    }

    /// Packs the lists `parts(v)` of nodes `0..n`, each in a segment with
    /// room to grow by an eighth (and one) before it spills.
    fn pack<'a>(n: usize, parts: impl Fn(usize) -> (&'a [u32], &'a [u32])) -> Self {
        let total: usize = (0..n).map(|v| parts(v).0.len() + parts(v).1.len()).sum();
        let mut p = Self {
            start: Vec::with_capacity(n + 1),
            len: Vec::with_capacity(n),
            flat: Vec::with_capacity(total + total / 8 + n),
            side: vec![NONE; n],
            side_lists: Vec::new(),
            spilled: 0,
            total,
        };
        p.start.push(0);
        for v in 0..n {
            let (a, b) = parts(v);
            let len = a.len() + b.len();
            p.flat.extend_from_slice(a);
            p.flat.extend_from_slice(b);
            p.flat.resize(p.flat.len() + room(len), 0);
            p.start.push(p.flat.len());
            p.len.push(len as u32);
        }
        p
    }

    /// The lists renumbered: node `order[v]`'s list becomes node v's, each
    /// entry x becomes `new_of[x]`, and each list is sorted.
    pub(crate) fn renumbered(&self, order: &[u32], new_of: &[u32]) -> Self {
        let n = order.len();
        let mut p = Self {
            start: Vec::with_capacity(n + 1),
            len: Vec::with_capacity(n),
            flat: Vec::with_capacity(self.total + self.total / 8 + n),
            side: vec![NONE; n],
            side_lists: Vec::new(),
            spilled: 0,
            total: self.total,
        };
        p.start.push(0);
        for &old in order {
            let (a, b) = self.list(old as usize);
            let s = p.flat.len();
            p.flat
                .extend(a.iter().chain(b).map(|&x| new_of[x as usize]));
            p.flat[s..].sort_unstable();
            let len = a.len() + b.len();
            p.flat.resize(p.flat.len() + room(len), 0);
            p.start.push(p.flat.len());
            p.len.push(len as u32);
        }
        p
    }

    /// The lists, one vector per node.
    pub(crate) fn to_lists(&self) -> Vec<Vec<u32>> {
        (0..self.nodes())
            .map(|v| {
                let (a, b) = self.list(v);
                let mut l = Vec::with_capacity(a.len() + b.len());
                l.extend_from_slice(a);
                l.extend_from_slice(b);
                l
            })
            .collect()
    }

    /// Number of nodes.
    pub(crate) fn nodes(&self) -> usize {
        self.len.len()
    }

    /// Adds a node with an empty list.
    pub(crate) fn push_node(&mut self) {
        self.len.push(0);
        self.side.push(NONE);
        self.start.push(self.flat.len());
    }

    /// Node v's list, in two parts: its segment and its side list.
    #[inline]
    pub(crate) fn list(&self, v: usize) -> (&[u32], &[u32]) {
        let s = self.start[v];
        let seg = &self.flat[s..s + self.len[v] as usize];
        let side = match self.side[v] {
            NONE => &[][..],
            i => &self.side_lists[i as usize][..],
        };
        (seg, side)
    }

    /// Length of node v's list.
    #[inline]
    pub(crate) fn len(&self, v: usize) -> usize {
        let side = match self.side[v] {
            NONE => 0,
            i => self.side_lists[i as usize].len(),
        };
        self.len[v] as usize + side
    }

    /// Live entries in all lists.
    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Whether node v's list holds `x`.
    pub(crate) fn contains(&self, v: usize, x: u32) -> bool {
        let (seg, side) = self.list(v);
        seg.contains(&x) || side.contains(&x)
    }

    /// Appends `x` to node v's list.
    pub(crate) fn push(&mut self, v: usize, x: u32) {
        self.total += 1;
        let s = self.start[v] + self.len[v] as usize;
        if s < self.start[v + 1] {
            self.flat[s] = x;
            self.len[v] += 1;
            return;
        }
        if self.side[v] == NONE {
            self.side[v] = self.side_lists.len() as u32;
            self.side_lists.push(Vec::new());
        }
        self.side_lists[self.side[v] as usize].push(x);
        self.spilled += 1;
    }

    /// Removes one `x` from node v's list (the order of the rest may
    /// change); returns whether it was there.
    pub(crate) fn remove(&mut self, v: usize, x: u32) -> bool {
        if self.side[v] != NONE {
            let l = &mut self.side_lists[self.side[v] as usize];
            if let Some(q) = l.iter().rposition(|&y| y == x) {
                l.swap_remove(q);
                self.spilled -= 1;
                self.total -= 1;
                return true;
            }
        }
        let s = self.start[v];
        let n = self.len[v] as usize;
        match self.flat[s..s + n].iter().rposition(|&y| y == x) {
            Some(q) => {
                self.flat.swap(s + q, s + n - 1);
                self.len[v] -= 1;
                self.total -= 1;
                true
            }
            None => false,
        }
    }

    /// Whether the side lists hold enough that a repack is due.
    pub(crate) fn repack_due(&self) -> bool {
        self.spilled > 1024 + self.total / 64
    }

    /// Folds the side lists back into the array, dropping the room left by
    /// removals.
    pub(crate) fn repack(&mut self) {
        let old = std::mem::take(self);
        *self = Self::pack(old.nodes(), |v| old.list(v));
    }

    /// Bytes held, approximately.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.start.capacity() * 8
            + self.len.capacity() * 4
            + self.flat.capacity() * 4
            + self.side.capacity() * 4
            + self
                .side_lists
                .iter()
                .map(|l| l.capacity() * 4 + 24)
                .sum::<usize>()
    }
}

/// Room left after a list of `len` entries when packing: an eighth, and
/// one, for a list that has entries.
fn room(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        len / 8 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted(p: &Packed) -> Vec<Vec<u32>> {
        p.to_lists()
            .into_iter()
            .map(|mut l| {
                l.sort_unstable();
                l
            })
            .collect()
    }

    proptest! {
        #[test]
        fn edits_match_plain_lists(
            init in proptest::collection::vec(proptest::collection::vec(0u32..20, 0..6), 0..8),
            edits in proptest::collection::vec((0usize..10, 0u32..20, any::<bool>(), any::<bool>()), 0..200),
        ) {
            let mut plain = init.clone();
            let mut p = Packed::from_lists(&init);
            for (v, x, insert, repack) in edits {
                while plain.len() <= v {
                    plain.push(Vec::new());
                    p.push_node();
                }
                if insert {
                    plain[v].push(x);
                    p.push(v, x);
                } else {
                    let had = plain[v].iter().rposition(|&y| y == x).map(|q| plain[v].swap_remove(q)).is_some();
                    prop_assert_eq!(p.remove(v, x), had);
                }
                if repack {
                    p.repack();
                }
                prop_assert_eq!(p.len(v), plain[v].len());
                prop_assert_eq!(p.contains(v, x), plain[v].contains(&x));
                prop_assert_eq!(p.total(), plain.iter().map(Vec::len).sum::<usize>());
            }
            let want: Vec<Vec<u32>> = plain.into_iter().map(|mut l| { l.sort_unstable(); l }).collect();
            prop_assert_eq!(sorted(&p), want.clone());
            // Renumbered by reversing the node order.
            let n = want.len();
            let order: Vec<u32> = (0..n as u32).rev().collect();
            let new_of: Vec<u32> = (0..20u32).map(|x| 19 - x).collect();
            let r = p.renumbered(&order, &new_of);
            let expect: Vec<Vec<u32>> = (0..n)
                .map(|v| {
                    let mut l: Vec<u32> = want[n - 1 - v].iter().map(|&x| 19 - x).collect();
                    l.sort_unstable();
                    l
                })
                .collect();
            prop_assert_eq!(r.to_lists(), expect);
        }
    }
}
