//! Adjacency lists packed in one array (compressed sparse rows), edited in
//! place, kept sorted.
//!
//! A pass over every list then reads one array in order, where separately
//! allocated lists would cost a cache miss each. Every segment is packed with room to grow by an
//! eighth; what does not fit goes to a side list of the node until
//! [`Packed::repack`] folds the side lists back in. A node's segment and its
//! side list are each sorted, so whether an entry is there is two binary
//! searches, and an epoch's edits to a list are one merge
//! ([`Part::edit`]) instead of a scan per edit: a hub with 100,000
//! followers that gains 1,000 costs one pass over its list, not 1,000.

/// No side list.
const NONE: u32 = u32::MAX;

/// Adjacency lists of nodes `0..n` (see the module docs).
#[derive(Debug)]
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

impl Clone for Packed {
    /// A clone whose node arrays have room for an eighth more nodes (see
    /// `Recompute`'s `Clone`).
    fn clone(&self) -> Self {
        Self {
            start: with_room(&self.start, node_room(self.start.len())),
            len: with_room(&self.len, node_room(self.len.len())),
            flat: self.flat.clone(),
            side: with_room(&self.side, node_room(self.side.len())),
            side_lists: self.side_lists.clone(),
            spilled: self.spilled,
            total: self.total,
        }
    }
}

impl Default for Packed {
    fn default() -> Self {
        Self::from_lists(&[])
    }
}

impl Packed {
    /// Packs `lists` (list v belongs to node v; each a set, duplicates
    /// are dropped).
    pub(crate) fn from_lists(lists: &[Vec<u32>]) -> Self {
        let sorted: Vec<Vec<u32>> = lists
            .iter()
            .map(|l| {
                let mut l = l.clone();
                l.sort_unstable();
                l.dedup();
                l
            })
            .collect();
        Self::pack(sorted.len(), |v| (&sorted[v][..], &[][..]))
    }

    /// Packs lists given as offsets into one array: node v's list is
    /// `flat[offsets[v]..offsets[v + 1]]`, sorted and distinct.
    pub(crate) fn from_csr(offsets: &[usize], flat: &[u32]) -> Self {
        Self::pack(offsets.len().saturating_sub(1), |v| {
            (&flat[offsets[v]..offsets[v + 1]], &[][..])
        })
    }

    /// Packs the lists `parts(v)` of nodes `0..n` (two sorted parts each,
    /// merged), each in a segment with room to grow by an eighth (and one)
    /// before it spills.
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
            if b.is_empty() {
                p.flat.extend_from_slice(a);
            } else {
                crate::merge_sorted(&mut p.flat, a, b);
            }
            debug_assert!(p.flat[p.flat.len() - len..].is_sorted());
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
    #[cfg(test)]
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

    /// Makes room for `more` nodes without reallocation.
    pub(crate) fn reserve_nodes(&mut self, more: usize) {
        self.start.reserve(more);
        self.len.reserve(more);
        self.side.reserve(more);
    }

    /// Adds a node with an empty list.
    pub(crate) fn push_node(&mut self) {
        self.len.push(0);
        self.side.push(NONE);
        self.start.push(self.flat.len());
    }

    /// Node v's list, in two parts: its segment and its side list.
    #[inline(always)]
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
    #[cfg(test)]
    pub(crate) fn contains(&self, v: usize, x: u32) -> bool {
        let (seg, side) = self.list(v);
        seg.binary_search(&x).is_ok() || side.binary_search(&x).is_ok()
    }

    /// The lists cut at the nodes `cuts` (ascending) into parts that
    /// threads edit at once, each its own nodes' lists: part i holds the
    /// nodes from `cuts[i - 1]` (0 for the first) to `cuts[i]` (the number
    /// of nodes for the last). `touched` (ascending) are the nodes that will
    /// be edited: their side lists are taken out for the parts to edit, and
    /// [`Packed::absorb`] puts them back, with the side lists the parts made.
    pub(crate) fn parts(&mut self, cuts: &[usize], touched: &[usize]) -> Vec<Part<'_>> {
        let n = self.nodes();
        let mut taken: Vec<(usize, Vec<u32>)> = Vec::new();
        for &v in touched {
            if self.side[v] != NONE {
                taken.push((
                    v,
                    std::mem::take(&mut self.side_lists[self.side[v] as usize]),
                ));
            }
        }
        let mut taken = taken.into_iter().peekable();
        let Self {
            start,
            len,
            flat,
            side,
            ..
        } = self;
        let (mut len_rest, mut flat_rest) = (&mut len[..], &mut flat[..]);
        let mut parts = Vec::with_capacity(cuts.len() + 1);
        let mut lo = 0;
        for hi in cuts.iter().copied().chain([n]) {
            let hi = hi.clamp(lo, n);
            let (l, rest) = std::mem::take(&mut len_rest).split_at_mut(hi - lo);
            len_rest = rest;
            let (f, rest) = std::mem::take(&mut flat_rest).split_at_mut(start[hi] - start[lo]);
            flat_rest = rest;
            let mut sides = Vec::new();
            while let Some(t) = taken.next_if(|t| t.0 < hi) {
                sides.push(t);
            }
            parts.push(Part {
                lo,
                start: &start[lo..=hi],
                len: l,
                flat: f,
                side: &side[lo..hi],
                sides,
                next_side: 0,
                made: Vec::new(),
                spilled: 0,
                total: 0,
                last: None,
                scratch: Default::default(),
            });
            lo = hi;
        }
        parts
    }

    /// Puts back what [`Packed::parts`] took, once the parts are done.
    pub(crate) fn absorb(&mut self, done: Vec<Edited>) {
        for d in done {
            for (v, l) in d.sides {
                self.side_lists[self.side[v] as usize] = l;
            }
            for (v, l) in d.made {
                self.side[v] = self.side_lists.len() as u32;
                self.side_lists.push(l);
            }
            self.spilled = self.spilled.wrapping_add_signed(d.spilled);
            self.total = self.total.wrapping_add_signed(d.total);
        }
    }

    /// Whether the side lists hold enough that a repack is due: a 64th of
    /// the entries. Each side list is an allocation of its own that every
    /// dense round visits, so the rounds slow down as they fill; a repack
    /// this early costs less than the slowdown it removes.
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

/// The lists of nodes `lo..hi` of a [`Packed`], edited by one thread
/// (see [`Packed::parts`]).
pub(crate) struct Part<'a> {
    lo: usize,
    /// `start[lo..=hi]`, and `len` and `side` of nodes `lo..hi`.
    start: &'a [usize],
    len: &'a mut [u32],
    side: &'a [u32],
    /// The array from `start[lo]` to `start[hi]`.
    flat: &'a mut [u32],
    /// The side lists of the touched nodes, by node, and the next one.
    sides: Vec<(usize, Vec<u32>)>,
    next_side: usize,
    /// Side lists made for nodes that had none.
    made: Vec<(usize, Vec<u32>)>,
    /// Changes to the counts of spilled and live entries.
    spilled: isize,
    total: isize,
    /// The last node edited (nodes come in ascending order).
    last: Option<usize>,
    scratch: (Vec<u32>, Vec<u32>),
}

/// What a [`Part`] changed outside the array, for [`Packed::absorb`].
pub(crate) struct Edited {
    sides: Vec<(usize, Vec<u32>)>,
    made: Vec<(usize, Vec<u32>)>,
    spilled: isize,
    total: isize,
}

impl Part<'_> {
    /// One past the last node of this part.
    pub(crate) fn end(&self) -> usize {
        self.lo + self.len.len()
    }

    /// Applies `ops` to node v's list: `(x, insert)`, sorted by x, at most
    /// one per x; afterwards the list holds x if and only if `insert`.
    /// `was_there(x, held)` is called for every op, in order, with whether
    /// the list held x before. Costs one pass over the list for each kind
    /// of change. Nodes come in ascending order, each once, and each one
    /// given as touched to [`Packed::parts`].
    pub(crate) fn edit(
        &mut self,
        v: usize,
        ops: &[(u32, bool)],
        mut was_there: impl FnMut(u32, bool),
    ) {
        debug_assert!(ops.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            self.last.is_none_or(|l| l < v) && v < self.end(),
            "node {v} edited out of order or outside its part"
        );
        self.last = Some(v);
        let i = v - self.lo;
        while self.sides.get(self.next_side).is_some_and(|t| t.0 < v) {
            self.next_side += 1;
        }
        let side_ix = if self.side[i] == NONE {
            None
        } else {
            assert!(
                self.sides.get(self.next_side).is_some_and(|t| t.0 == v),
                "node {v}'s side list was not taken"
            );
            Some(self.next_side)
        };
        let (mut ins, mut rem) = std::mem::take(&mut self.scratch);
        ins.clear();
        rem.clear();
        let s = self.start[i] - self.start[0];
        let room = self.start[i + 1] - self.start[i];
        {
            let seg = &self.flat[s..s + self.len[i] as usize];
            let side: &[u32] = side_ix.map_or(&[], |k| &self.sides[k].1);
            // Each search gallops from where the last one ended (the ops
            // are sorted): k ops on a list of L cost about k log(L / k)
            // and touch nearby entries, never k log L scattered over it.
            let (mut i, mut j) = (0, 0);
            for &(x, insert) in ops {
                i = gallop(seg, i, x);
                j = gallop(side, j, x);
                let present = seg.get(i) == Some(&x) || side.get(j) == Some(&x);
                was_there(x, present);
                if present != insert {
                    if insert { &mut ins } else { &mut rem }.push(x);
                }
            }
        }
        if !rem.is_empty() {
            let n = self.len[i] as usize;
            self.len[i] = retain_absent(&mut self.flat[s..s + n], &rem) as u32;
            if let Some(k) = side_ix {
                let l = &mut self.sides[k].1;
                let before = l.len();
                let kept = retain_absent(l, &rem);
                l.truncate(kept);
                self.spilled -= (before - kept) as isize;
            }
            self.total -= rem.len() as isize;
        }
        if !ins.is_empty() {
            let n = self.len[i] as usize;
            // Into the segment if it has room and the merge moves no more
            // entries than one into the side list would: a hub's list of
            // 100,000 that gains a few takes them in its side list.
            let moved = n - self.flat[s..s + n].partition_point(|&y| y < ins[0]);
            let side_len = side_ix.map_or(0, |k| self.sides[k].1.len());
            if n + ins.len() <= room && moved <= side_len + ins.len() {
                merge_back(&mut self.flat[s..s + n + ins.len()], n, &ins);
                self.len[i] += ins.len() as u32;
            } else {
                let l = match side_ix {
                    Some(k) => &mut self.sides[k].1,
                    None => {
                        self.made.push((v, Vec::new()));
                        let last = self.made.len() - 1;
                        &mut self.made[last].1
                    }
                };
                let n = l.len();
                l.resize(n + ins.len(), 0);
                merge_back(l, n, &ins);
                self.spilled += ins.len() as isize;
            }
            self.total += ins.len() as isize;
        }
        self.scratch = (ins, rem);
    }

    /// What this part changed outside the array.
    pub(crate) fn finish(self) -> Edited {
        Edited {
            sides: self.sides,
            made: self.made,
            spilled: self.spilled,
            total: self.total,
        }
    }
}

/// Room left after a list of `len` entries when packing (and in the
/// following lists of `Recompute`): an eighth, and one, for a list that has
/// entries.
pub(crate) fn room(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        len / 8 + 1
    }
}

/// Room for the nodes to come in a node-indexed array of `n`: an eighth,
/// and 16.
pub(crate) fn node_room(n: usize) -> usize {
    n / 8 + 16
}

/// A copy of `v` with capacity for `extra` more, without reallocation:
/// `Vec::clone` allocates exactly.
pub(crate) fn with_room<T: Clone>(v: &[T], extra: usize) -> Vec<T> {
    let mut c = Vec::with_capacity(v.len() + extra);
    c.extend_from_slice(v);
    c
}

/// Merges the sorted `ins` into `list[..n]`, sorted, where `list` has
/// room for them after `n`: from the back, so the entries below the
/// smallest insert do not move.
fn merge_back(list: &mut [u32], n: usize, ins: &[u32]) {
    let (mut i, mut j, mut w) = (n, ins.len(), list.len());
    while j > 0 {
        w -= 1;
        if i > 0 && list[i - 1] > ins[j - 1] {
            list[w] = list[i - 1];
            i -= 1;
        } else {
            list[w] = ins[j - 1];
            j -= 1;
        }
    }
}

/// Keeps the entries of the sorted `list` that are not in the sorted
/// `gone`, in order, at its front; returns how many.
fn retain_absent(list: &mut [u32], gone: &[u32]) -> usize {
    let (mut w, mut j) = (0, 0);
    for r in 0..list.len() {
        let x = list[r];
        while j < gone.len() && gone[j] < x {
            j += 1;
        }
        if gone.get(j) != Some(&x) {
            list[w] = x;
            w += 1;
        }
    }
    w
}

/// The first index at or after `from` whose entry in sorted `list` is not
/// below `x` (`from` itself when every entry from there on is): an
/// exponential search from `from`, then a binary search in the last step.
fn gallop(list: &[u32], from: usize, x: u32) -> usize {
    let (mut lo, mut step) = (from, 1);
    // Invariant: every entry before `lo` is below x.
    while lo + step <= list.len() && list[lo + step - 1] < x {
        lo += step;
        step *= 2;
    }
    let hi = (lo + step).min(list.len());
    lo + list[lo..hi].partition_point(|&y| y < x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn gallop_finds_the_partition_point(
            mut list in proptest::collection::vec(0u32..200, 0..300),
            from in 0usize..320,
            x in 0u32..210,
        ) {
            list.sort_unstable();
            let from = from.min(list.len());
            let want = from + list[from..].partition_point(|&y| y < x);
            prop_assert_eq!(gallop(&list, from, x), want);
        }

        #[test]
        fn edits_match_plain_sets(
            init in proptest::collection::vec(proptest::collection::vec(0u32..20, 0..6), 0..8),
            epochs in proptest::collection::vec(
                (
                    proptest::collection::vec((0usize..10, 0u32..20, any::<bool>()), 0..40),
                    any::<bool>(),
                    proptest::collection::vec(0usize..11, 0..4),
                ),
                0..12,
            ),
        ) {
            let mut plain: Vec<BTreeSet<u32>> = init.iter().map(|l| l.iter().copied().collect()).collect();
            let mut p = Packed::from_lists(&init);
            for (edits, repack, mut cuts) in epochs {
                // One edit per node per epoch, its ops sorted, the last op
                // on an entry winning; the nodes cut into parts at `cuts`.
                let mut by_node: std::collections::BTreeMap<usize, Vec<(u32, bool)>> = Default::default();
                for (v, x, insert) in edits {
                    let ops = by_node.entry(v).or_default();
                    ops.retain(|o| o.0 != x);
                    ops.push((x, insert));
                    ops.sort_unstable();
                }
                while plain.len() <= by_node.keys().max().copied().unwrap_or(0) {
                    plain.push(BTreeSet::new());
                    p.push_node();
                }
                cuts.sort_unstable();
                cuts.dedup();
                let mut want = Vec::new();
                for (&v, ops) in &by_node {
                    for &(x, insert) in ops {
                        want.push((v, x, plain[v].contains(&x)));
                        if insert { plain[v].insert(x) } else { plain[v].remove(&x) };
                    }
                }
                let touched: Vec<usize> = by_node.keys().copied().collect();
                let mut parts = p.parts(&cuts, &touched);
                prop_assert_eq!(parts.len(), cuts.len() + 1);
                let mut got = Vec::new();
                for (&v, ops) in &by_node {
                    let part = parts.iter_mut().find(|part| v < part.end()).expect("a part");
                    part.edit(v, ops, |x, held| got.push((v, x, held)));
                }
                let done: Vec<Edited> = parts.into_iter().map(Part::finish).collect();
                p.absorb(done);
                prop_assert_eq!(got, want);
                for &v in &touched {
                    prop_assert_eq!(p.len(v), plain[v].len());
                    for x in 0..20 {
                        prop_assert_eq!(p.contains(v, x), plain[v].contains(&x));
                    }
                    let (seg, side) = p.list(v);
                    prop_assert!(seg.is_sorted() && side.is_sorted());
                }
                if repack {
                    p.repack();
                }
                prop_assert_eq!(p.total(), plain.iter().map(BTreeSet::len).sum::<usize>());
            }
            let want: Vec<Vec<u32>> = plain.iter().map(|l| l.iter().copied().collect()).collect();
            let got: Vec<Vec<u32>> = p.to_lists().into_iter().map(|mut l| { l.sort_unstable(); l }).collect();
            prop_assert_eq!(got, want.clone());
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
