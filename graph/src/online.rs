//! Incremental TunkRank: per epoch, apply edge insertions and removals and
//! get the nodes whose influence changed, exactly equal to a from-scratch
//! computation on all edges so far.
//!
//! [`Layered`] keeps, as differential dataflow does, the values of every
//! round of the from-zero iteration (`x_1 .. x_R`, with `x_R == x_{R-1}` the
//! least fixpoint) and pushes only changes through them, round by round.
//! Round `r + 1` is `x_{r+1}(a) = sum over b in F(a) of term(x_r(b),
//! following(b))`; its value at `a` moves only when a follower of `a` changed
//! its term in round `r`, or when the edges of a follower changed, and then
//! by exactly `new term - old term` (integers: the update is exact, a node
//! with 100,000 followers is never re-summed when one of them changes).
//! The iteration is never warm-started from the previous epoch's fixpoint:
//! with integer rounding the map can have several fixpoints, and only the
//! from-zero iteration is guaranteed to give the batch result.
//!
//! ```
//! use exoflow_graph::online::{Layered, Online};
//! use exoflow_graph::{reference, EdgeOp, ONE};
//! let mut online = Layered::new();
//! let first = online.apply(&[EdgeOp::insert(1, 2), EdgeOp::insert(1, 3)]).unwrap();
//! assert_eq!(first.changes.len(), 1); // node 1 enters the table
//! assert_eq!(online.value(1), Some(2 * ONE));
//! // 3 now also follows 2: its term is split in two.
//! let second = online.apply(&[EdgeOp::insert(2, 3)]).unwrap();
//! let ops = [EdgeOp::insert(1, 2), EdgeOp::insert(1, 3), EdgeOp::insert(2, 3)];
//! assert_eq!(online.table(), reference::tunkrank(&reference::Graph::from_ops(&ops)).unwrap());
//! assert_eq!(second.changes.len(), 2);
//! ```

use crate::table::row_hash;
use crate::{term, EdgeOp, IdMap, Overflow, Table};

/// One node whose influence changed in an epoch. `None` means the node is not
/// in the table (it has no follower).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// The node.
    pub node: u64,
    /// Its influence before the epoch.
    pub old: Option<u64>,
    /// Its influence after the epoch.
    pub new: Option<u64>,
}

/// What an epoch changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// The nodes whose influence changed (entering or leaving the table
    /// counts), in no particular order (sort them to print them); empty
    /// when the state was asked not to list them (see
    /// [`Online::list_changes`]).
    pub changes: Vec<Change>,
    /// How many nodes changed, listed or not.
    pub counts: Counts,
    /// Edges inserted into the graph (not counting duplicates).
    pub inserted: u64,
    /// Edges removed from the graph (not counting removals of missing edges).
    pub removed: u64,
    /// Rounds of the from-zero iteration the graph now needs.
    pub rounds: usize,
}

/// How many nodes an epoch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Nodes whose influence changed (entering or leaving the table counts).
    pub changed: u64,
    /// Nodes that entered the table.
    pub entered: u64,
    /// Nodes that left the table.
    pub left: u64,
}

impl Counts {
    /// Counts one change of a node from `old` to `new` (which differ).
    #[inline]
    pub fn add(&mut self, old: Option<u64>, new: Option<u64>) {
        self.changed += 1;
        match (old, new) {
            (None, Some(_)) => self.entered += 1,
            (Some(_), None) => self.left += 1,
            _ => {}
        }
    }

    /// The counts of `changes`.
    pub fn of(changes: &[Change]) -> Self {
        let mut c = Self::default();
        for ch in changes {
            c.add(ch.old, ch.new);
        }
        c
    }
}

/// An epoch's changes as they are found: counted, and listed unless the
/// caller does not want the list.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub(crate) list: Vec<Change>,
    pub(crate) counts: Counts,
    listing: bool,
}

impl Found {
    pub(crate) fn new(listing: bool) -> Self {
        Self {
            listing,
            ..Self::default()
        }
    }

    /// Records a node's change, if its value moved, and updates the table
    /// digest by it.
    #[inline]
    pub(crate) fn record(
        &mut self,
        digest: &mut u64,
        node: u64,
        old: Option<u64>,
        new: Option<u64>,
    ) {
        if old == new {
            return;
        }
        if let Some(o) = old {
            *digest = digest.wrapping_sub(row_hash(node, o));
        }
        if let Some(x) = new {
            *digest = digest.wrapping_add(row_hash(node, x));
        }
        self.counts.add(old, new);
        if self.listing {
            self.list.push(Change { node, old, new });
        }
    }

    /// Adds what `other` found.
    pub(crate) fn append(&mut self, other: Found) {
        self.counts.changed += other.counts.changed;
        self.counts.entered += other.counts.entered;
        self.counts.left += other.counts.left;
        self.list.extend(other.list);
    }
}

/// Why an epoch could not be applied. After either, the state is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnlineError {
    /// A value overflowed 64-bit fixed point.
    #[error(transparent)]
    Overflow(#[from] Overflow),
    /// The computation's workers stopped (a panic or a closed channel).
    #[error("the online computation stopped: {0}")]
    Stopped(String),
}

/// An incremental TunkRank computation.
pub trait Online {
    /// Applies one epoch of edge operations, in order (the last operation on a
    /// pair wins; self-loops are dropped), and returns what changed. After an
    /// error the state is unusable.
    fn apply(&mut self, ops: &[EdgeOp]) -> Result<Update, OnlineError>;
    /// The influence of a node, `None` if it has no follower.
    fn value(&self, node: u64) -> Option<u64>;
    /// The rows of the table (nodes with a follower and their influence),
    /// in no particular order.
    fn rows(&self) -> Box<dyn Iterator<Item = (u64, u64)> + '_>;
    /// The whole table, ascending by node.
    fn table(&self) -> Table {
        let mut t: Table = self.rows().collect();
        t.sort_unstable();
        t
    }
    /// The `k` most influential nodes, by influence descending then node
    /// ascending.
    fn top(&self, k: usize) -> Table {
        top_k(self.rows(), k)
    }
    /// The digest of the table (see [`crate::digest`]), kept up to date from
    /// the changes.
    fn digest(&self) -> u64;
    /// The edges of the graph, `(a, b)` with b following a, sorted.
    fn edges(&self) -> Vec<(u64, u64)>;
    /// The edges of the graph as they are now, as [`Online::edges`], but
    /// sorted when the returned function is called, on whatever thread
    /// calls it: a state that can copy its lists quickly does only that
    /// here, so that the caller can go on updating it meanwhile.
    fn edges_later(&self) -> EdgesLater {
        let edges = self.edges();
        Box::new(move || edges)
    }
    /// How many edges the graph has.
    fn edge_count(&self) -> usize;
    /// Bytes of memory held by the state, approximately.
    fn memory_bytes(&self) -> usize;
    /// Whether [`Update::changes`] lists the changes (the default) or stays
    /// empty, [`Update::counts`] alone counting them: a caller that only
    /// counts spares listing much of the table every epoch (on a power-law
    /// stream an epoch changes most nodes). A state may list anyway.
    fn list_changes(&mut self, list: bool) {
        let _ = list;
    }
}

/// The layered-deltas implementation: the graph kept as per-follower
/// adjacency, and the values of every round of the from-zero iteration.
#[derive(Debug, Clone, Default)]
pub struct Layered {
    /// Dense index of each node id.
    dense: IdMap<u32>,
    /// Node id of each dense index.
    ids: Vec<u64>,
    /// `out[b]`: the nodes b follows.
    out: Vec<Vec<u32>>,
    /// Number of followers of each node.
    followers: Vec<u32>,
    /// Number of edges.
    edge_count: usize,
    /// `rounds[r]` is `x_{r+1}`; the last two are equal (or there is at most
    /// one round, for an empty graph). `x_0` is zero.
    rounds: Vec<Vec<u64>>,
    /// The digest of the table.
    digest: u64,
}

/// Scratch space for one round's deltas.
struct Deltas {
    acc: Vec<i128>,
    seen: Vec<bool>,
    touched: Vec<u32>,
}

impl Deltas {
    fn new(n: usize) -> Self {
        Self {
            acc: vec![0; n],
            seen: vec![false; n],
            touched: Vec::new(),
        }
    }

    #[inline]
    fn add(&mut self, a: u32, d: i128) {
        let i = a as usize;
        if !self.seen[i] {
            self.seen[i] = true;
            self.touched.push(a);
        }
        self.acc[i] += d;
    }
}

#[inline]
fn term_of(x: u64, following: usize) -> u64 {
    if following == 0 {
        0
    } else {
        term(x, following as u64)
    }
}

impl Layered {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of a graph given as sorted, distinct pairs `(a, b)` (b
    /// follows a, no self-loops), computed in bulk: the same state as
    /// applying them as one epoch, faster.
    pub fn from_pairs(pairs: &[(u64, u64)]) -> Result<Self, Overflow> {
        let mut s = Self::new();
        debug_assert!(pairs.windows(2).all(|w| w[0] < w[1]));
        for &(a, b) in pairs {
            let (ai, bi) = (s.index(a), s.index(b));
            s.out[bi as usize].push(ai);
            s.followers[ai as usize] += 1;
        }
        s.edge_count = pairs.len();
        s.recompute()?;
        Ok(s)
    }

    fn index(&mut self, id: u64) -> u32 {
        let next = self.ids.len() as u32;
        let i = *self.dense.entry(id).or_insert(next);
        if i == next {
            self.ids.push(id);
            self.out.push(Vec::new());
            self.followers.push(0);
            for r in &mut self.rounds {
                r.push(0);
            }
        }
        i
    }

    /// Recomputes every round from zero (bulk load).
    fn recompute(&mut self) -> Result<(), Overflow> {
        let n = self.ids.len();
        self.rounds.clear();
        let mut prev = vec![0u64; n];
        loop {
            let mut next = vec![0u64; n];
            for (b, out) in self.out.iter().enumerate() {
                let t = term_of(prev[b], out.len());
                for &a in out {
                    let slot = &mut next[a as usize];
                    *slot = slot.checked_add(t).ok_or(Overflow {
                        node: self.ids[a as usize],
                    })?;
                }
            }
            let done = next == prev;
            self.rounds.push(next.clone());
            prev = next;
            if done {
                break;
            }
        }
        self.digest = (0..n)
            .filter(|&v| self.followers[v] > 0)
            .fold(0u64, |d, v| d.wrapping_add(row_hash(self.ids[v], prev[v])));
        Ok(())
    }

    fn final_value(&self, v: usize) -> u64 {
        self.rounds.last().map_or(0, |r| r[v])
    }

    /// The value of round `r` (1-based; round 0 is zero), past the last
    /// stored round the fixpoint.
    fn round_value(rounds: &[Vec<u64>], r: usize, v: usize) -> u64 {
        if r == 0 {
            0
        } else {
            rounds[(r - 1).min(rounds.len() - 1)][v]
        }
    }

    /// Adds `deltas` to the round array `r` (0-based index), returning the
    /// nodes whose value changed.
    fn settle(&mut self, r: usize, deltas: &mut Deltas) -> Result<Vec<(u32, u64)>, Overflow> {
        let mut changed = Vec::new();
        for &a in &deltas.touched {
            let i = a as usize;
            let d = std::mem::take(&mut deltas.acc[i]);
            deltas.seen[i] = false;
            if d == 0 {
                continue;
            }
            let old = self.rounds[r][i];
            let v = i128::from(old) + d;
            debug_assert!(v >= 0, "a sum of terms is never negative");
            self.rounds[r][i] = u64::try_from(v).map_err(|_| Overflow { node: self.ids[i] })?;
            changed.push((a, old));
        }
        deltas.touched.clear();
        Ok(changed)
    }
}

impl Online for Layered {
    fn apply(&mut self, ops: &[EdgeOp]) -> Result<Update, OnlineError> {
        if self.edge_count == 0 && ops.iter().all(|op| op.insert) {
            // Bulk load of a first epoch of inserts.
            let pairs = crate::reference::apply_ops(ops);
            let fresh = Self::from_pairs(&pairs)?;
            *self = fresh;
            let mut changes: Vec<Change> = (0..self.ids.len())
                .filter(|&v| self.followers[v] > 0)
                .map(|v| Change {
                    node: self.ids[v],
                    old: None,
                    new: Some(self.final_value(v)),
                })
                .collect();
            changes.sort_unstable();
            return Ok(Update {
                counts: Counts::of(&changes),
                changes,
                inserted: pairs.len() as u64,
                removed: 0,
                rounds: self.rounds.len(),
            });
        }

        // 1. The effective edge changes, and the old adjacency of every
        //    follower whose edges change.
        let mut old_out: IdMap<Vec<u32>> = IdMap::default();
        let mut had_followers: IdMap<bool> = IdMap::default();
        let (mut inserted, mut removed) = (0u64, 0u64);
        for op in ops {
            if op.src == op.dst {
                continue;
            }
            let (a, b) = (self.index(op.src), self.index(op.dst));
            // Membership by a scan of b's following list (16 on average on
            // R-MAT): cheaper in memory and time than a set of all edges.
            let pos = self.out[b as usize].iter().position(|&x| x == a);
            if pos.is_some() == op.insert {
                continue;
            }
            old_out
                .entry(u64::from(b))
                .or_insert_with(|| self.out[b as usize].clone());
            had_followers
                .entry(u64::from(a))
                .or_insert(self.followers[a as usize] > 0);
            if op.insert {
                self.out[b as usize].push(a);
                self.edge_count += 1;
                self.followers[a as usize] += 1;
                inserted += 1;
            } else {
                if let Some(pos) = pos {
                    self.out[b as usize].swap_remove(pos);
                }
                self.edge_count -= 1;
                self.followers[a as usize] -= 1;
                removed += 1;
            }
        }
        // Followers whose adjacency is, in the end, what it was (an insert
        // undone in the same epoch) change nothing.
        let mut graph_changed: Vec<(u32, Vec<u32>)> = old_out
            .into_iter()
            .filter_map(|(b, mut old)| {
                let b = b as u32;
                let mut now = self.out[b as usize].clone();
                old.sort_unstable();
                now.sort_unstable();
                (old != now).then_some((b, old))
            })
            .collect();
        graph_changed.sort_unstable_by_key(|(b, _)| *b);

        let n = self.ids.len();
        if self.rounds.is_empty() {
            self.rounds.push(vec![0; n]);
        }
        let mut deltas = Deltas::new(n);
        let mut in_graph_changed = vec![false; n];
        for (b, _) in &graph_changed {
            in_graph_changed[*b as usize] = true;
        }

        // 2. Push the changes through the stored rounds. Iteration r computes
        //    x_{r+1} (`rounds[r]`) from x_r, whose changed entries (with their
        //    old values) are `prev`: round r + 1 moves by the difference of
        //    their terms, and by the whole old and new terms of the followers
        //    whose edges changed.
        let stored = self.rounds.len();
        let mut prev: Vec<(u32, u64)> = Vec::new();
        let mut before_last: Vec<u32> = Vec::new();
        let mut gc_old_xr: IdMap<u64> = IdMap::default();
        for r in 0..stored {
            gc_old_xr.clear();
            for &(b, old_xr) in &prev {
                let bi = b as usize;
                if in_graph_changed[bi] {
                    gc_old_xr.insert(u64::from(b), old_xr);
                    continue;
                }
                let new_xr = Self::round_value(&self.rounds, r, bi);
                let f = self.out[bi].len();
                let d = i128::from(term_of(new_xr, f)) - i128::from(term_of(old_xr, f));
                if d != 0 {
                    for &a in &self.out[bi] {
                        deltas.add(a, d);
                    }
                }
            }
            for (b, old) in &graph_changed {
                let bi = *b as usize;
                let new_xr = Self::round_value(&self.rounds, r, bi);
                let old_xr = gc_old_xr.get(&u64::from(*b)).copied().unwrap_or(new_xr);
                let t_old = i128::from(term_of(old_xr, old.len()));
                let t_new = i128::from(term_of(new_xr, self.out[bi].len()));
                for &a in old {
                    deltas.add(a, -t_old);
                }
                for &a in &self.out[bi] {
                    deltas.add(a, t_new);
                }
            }
            let changed = self.settle(r, &mut deltas)?;
            before_last = prev.iter().map(|&(a, _)| a).collect();
            prev = changed;
        }
        // The old fixpoint of the nodes that round S moved.
        let old_fixpoint = prev;

        // 3. Extend the iteration while its last two rounds differ. Before
        //    the epoch they were equal, so only nodes changed in the last two
        //    rounds can differ now; after each new round, exactly the nodes
        //    it moved.
        let mut frontier: Vec<u32> = before_last;
        frontier.extend(old_fixpoint.iter().map(|&(a, _)| a));
        frontier.sort_unstable();
        frontier.dedup();
        let mut extended: Vec<u32> = Vec::new();
        loop {
            let last = self.rounds.len();
            let moving: Vec<(u32, u64, u64)> = frontier
                .iter()
                .map(|&v| {
                    let x_last = self.rounds[last - 1][v as usize];
                    let x_prev = Self::round_value(&self.rounds, last - 1, v as usize);
                    (v, x_prev, x_last)
                })
                .filter(|&(_, p, l)| p != l)
                .collect();
            if moving.is_empty() {
                break;
            }
            // x_{L+1} = x_L + sum over moving b of (t(x_L) - t(x_{L-1})).
            for &(b, x_prev, x_last) in &moving {
                let f = self.out[b as usize].len();
                let d = i128::from(term_of(x_last, f)) - i128::from(term_of(x_prev, f));
                if d != 0 {
                    for &a in &self.out[b as usize] {
                        deltas.add(a, d);
                    }
                }
            }
            let copy = self.rounds[last - 1].clone();
            self.rounds.push(copy);
            frontier = self
                .settle(last, &mut deltas)?
                .into_iter()
                .map(|(a, _)| a)
                .collect();
            extended.extend(&frontier);
        }

        // 4. What changed at the fixpoint: nodes moved in round S or later,
        //    and nodes that gained or lost their last follower.
        //    A node untouched by round S still has its old fixpoint in
        //    `rounds[S-1]`.
        let mut candidates = old_fixpoint;
        let seen = &mut deltas.seen;
        for &(a, _) in &candidates {
            seen[a as usize] = true;
        }
        for a in extended
            .into_iter()
            .chain(had_followers.keys().map(|&a| a as u32))
        {
            if !std::mem::replace(&mut seen[a as usize], true) {
                candidates.push((a, self.rounds[stored - 1][a as usize]));
            }
        }
        let mut found = Found::new(true);
        for (a, old_x) in candidates {
            let i = a as usize;
            seen[i] = false;
            let was_in = had_followers
                .get(&u64::from(a))
                .copied()
                .unwrap_or(self.followers[i] > 0);
            let old = was_in.then_some(old_x);
            let new = (self.followers[i] > 0).then(|| self.final_value(i));
            found.record(&mut self.digest, self.ids[i], old, new);
        }
        let mut changes = found.list;
        changes.sort_unstable();
        Ok(Update {
            changes,
            counts: found.counts,
            inserted,
            removed,
            rounds: self.rounds.len(),
        })
    }

    fn value(&self, node: u64) -> Option<u64> {
        let &i = self.dense.get(&node)?;
        (self.followers[i as usize] > 0).then(|| self.final_value(i as usize))
    }

    fn rows(&self) -> Box<dyn Iterator<Item = (u64, u64)> + '_> {
        Box::new(
            (0..self.ids.len())
                .filter(|&v| self.followers[v] > 0)
                .map(|v| (self.ids[v], self.final_value(v))),
        )
    }

    fn digest(&self) -> u64 {
        self.digest
    }

    fn edges(&self) -> Vec<(u64, u64)> {
        sorted_pairs(&self.ids, &self.out, |b, a| (a, b))
    }

    fn edge_count(&self) -> usize {
        self.edge_count
    }

    fn memory_bytes(&self) -> usize {
        let n = self.ids.len();
        let adj: usize = self.out.iter().map(|o| o.capacity() * 4).sum();
        self.dense.capacity() * 13
            + self.ids.capacity() * 8
            + n * 24
            + adj
            + self.followers.capacity() * 4
            + self.rounds.iter().map(|r| r.capacity() * 8).sum::<usize>()
    }
}

/// The edges `(a, b)` (b follows a) of adjacency `lists` (list `i` holds
/// dense indices `j`; `pair(i, j)` says which is a), as sorted node ids.
pub(crate) fn sorted_pairs(
    ids: &[u64],
    lists: &[Vec<u32>],
    pair: impl Fn(u32, u32) -> (u32, u32),
) -> Vec<(u64, u64)> {
    let mut e: Vec<(u64, u64)> = lists
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |&j| (i as u32, j)))
        .map(|(i, j)| {
            let (a, b) = pair(i, j);
            (ids[a as usize], ids[b as usize])
        })
        .collect();
    e.sort_unstable();
    e
}

/// The sorted edges of a graph, computed when called (see
/// [`Online::edges_later`]).
pub type EdgesLater = Box<dyn FnOnce() -> Vec<(u64, u64)> + Send>;

/// The `k` largest rows by influence descending, then node ascending.
pub fn top_k(rows: impl Iterator<Item = (u64, u64)>, k: usize) -> Table {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    if k == 0 {
        return Vec::new();
    }
    // A min-heap of the best k under the order (x desc, node asc): its top
    // is the worst kept row.
    let mut heap: BinaryHeap<Reverse<(u64, Reverse<u64>)>> = BinaryHeap::with_capacity(k + 1);
    for (node, x) in rows {
        let item = Reverse((x, Reverse(node)));
        if heap.len() < k {
            heap.push(item);
        } else if let Some(worst) = heap.peek() {
            if item < *worst {
                heap.pop();
                heap.push(item);
            }
        }
    }
    let mut out: Vec<(u64, u64)> = heap
        .into_iter()
        .map(|Reverse((x, Reverse(n)))| (n, x))
        .collect();
    out.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::reference::{tunkrank, Graph};
    use crate::{digest, ONE};
    use proptest::prelude::*;

    /// The changes between two tables, as the online computation reports them.
    fn diff(old: &Table, new: &Table) -> Vec<Change> {
        let o: std::collections::BTreeMap<u64, u64> = old.iter().copied().collect();
        let n: std::collections::BTreeMap<u64, u64> = new.iter().copied().collect();
        let mut nodes: Vec<u64> = o.keys().chain(n.keys()).copied().collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
            .into_iter()
            .filter_map(|node| {
                let (old, new) = (o.get(&node).copied(), n.get(&node).copied());
                (old != new).then_some(Change { node, old, new })
            })
            .collect()
    }

    /// Applies the epochs one by one and checks every result against the
    /// reference on all operations so far.
    fn check_epochs(epochs: &[Vec<EdgeOp>]) {
        check_impl(Layered::new(), epochs);
        check_impl(crate::recompute::Recompute::new(1), epochs);
        check_impl(crate::recompute::Recompute::new(3), epochs);
        check_impl(crate::recompute::Recompute::new(2).relabel_often(), epochs);
        check_impl(
            crate::recompute::Recompute::new(2).push_always(true),
            epochs,
        );
        check_impl(
            crate::recompute::Recompute::new(1).push_always(false),
            epochs,
        );
        check_listing(crate::recompute::Recompute::new(2), epochs, false);
    }

    pub(crate) fn check_impl<O: Online>(online: O, epochs: &[Vec<EdgeOp>]) {
        check_listing(online, epochs, true);
    }

    /// [`check_impl`], of a state that lists its changes (`listed`) or was
    /// told not to (then it lists none, and counts them all the same).
    fn check_listing<O: Online>(mut online: O, epochs: &[Vec<EdgeOp>], listed: bool) {
        online.list_changes(listed);
        let mut all: Vec<EdgeOp> = Vec::new();
        let mut before: Table = Vec::new();
        // The edge set, to count effective inserts and removals in order.
        let mut set = std::collections::HashSet::new();
        for (e, ops) in epochs.iter().enumerate() {
            // The graph before this epoch, sorted only after the epoch
            // changed the state: still the graph before it.
            let later = online.edges_later();
            let edges_before = crate::reference::apply_ops(&all);
            all.extend_from_slice(ops);
            let update = online.apply(ops).expect("no overflow");
            assert_eq!(later(), edges_before, "edges taken before epoch {e}");
            let (mut inserted, mut removed) = (0, 0);
            for op in ops.iter().filter(|op| op.src != op.dst) {
                if op.insert && set.insert((op.src, op.dst)) {
                    inserted += 1;
                } else if !op.insert && set.remove(&(op.src, op.dst)) {
                    removed += 1;
                }
            }
            assert_eq!(
                (update.inserted, update.removed),
                (inserted, removed),
                "counts of epoch {e}"
            );
            let expected = tunkrank(&Graph::from_ops(&all)).expect("no overflow");
            assert_eq!(online.table(), expected, "table after epoch {e}");
            let want = diff(&before, &expected);
            assert_eq!(update.counts, Counts::of(&want), "counts of epoch {e}");
            let mut changes = update.changes.clone();
            changes.sort_unstable();
            if listed {
                assert_eq!(changes, want, "changes of epoch {e}");
            } else {
                assert!(changes.is_empty(), "changes of epoch {e} listed");
            }
            assert_eq!(online.digest(), digest(&expected), "digest after epoch {e}");
            assert_eq!(
                online.edges(),
                crate::reference::apply_ops(&all),
                "edges after epoch {e}"
            );
            for &(node, x) in &expected {
                assert_eq!(online.value(node), Some(x));
            }
            before = expected;
        }
        // The bulk load of the final graph gives the same state.
        let bulk =
            crate::recompute::Recompute::from_pairs(&online.edges(), 2).expect("no overflow");
        assert_eq!(bulk.table(), online.table());
        assert_eq!(bulk.digest(), online.digest());
    }

    #[test]
    fn hand_checked_epochs() {
        // Epoch 0: a star, 1..=3 follow 0. Epoch 1: 3 also follows 9, so its
        // term to 0 halves: x(0) = 2 + 1/2, x(9) = 1/2. Epoch 2: 3 unfollows 9.
        let mut online = Layered::new();
        let u = online
            .apply(&[
                EdgeOp::insert(0, 1),
                EdgeOp::insert(0, 2),
                EdgeOp::insert(0, 3),
            ])
            .expect("apply");
        assert_eq!(
            u.changes,
            vec![Change {
                node: 0,
                old: None,
                new: Some(3 * ONE)
            }]
        );
        let u = online.apply(&[EdgeOp::insert(9, 3)]).expect("apply");
        assert_eq!(
            u.changes,
            vec![
                Change {
                    node: 0,
                    old: Some(3 * ONE),
                    new: Some(2 * ONE + ONE / 2)
                },
                Change {
                    node: 9,
                    old: None,
                    new: Some(ONE / 2)
                },
            ]
        );
        let u = online
            .apply(&[EdgeOp::remove(9, 3), EdgeOp::remove(9, 3)])
            .expect("apply");
        assert_eq!(u.removed, 1);
        assert_eq!(
            u.changes,
            vec![
                Change {
                    node: 0,
                    old: Some(2 * ONE + ONE / 2),
                    new: Some(3 * ONE)
                },
                Change {
                    node: 9,
                    old: Some(ONE / 2),
                    new: None
                },
            ]
        );
        // An insert undone in the same epoch changes nothing.
        let u = online
            .apply(&[EdgeOp::insert(5, 1), EdgeOp::remove(5, 1)])
            .expect("apply");
        assert!(u.changes.is_empty());
        assert_eq!(online.top(2), vec![(0, 3 * ONE)]);
    }

    #[test]
    fn a_cycle_closed_late_needs_more_rounds() {
        // A chain grows into a cycle: the iteration gets longer than any
        // stored before, and the extension rounds must reach the fixpoint.
        let epochs = [
            vec![EdgeOp::insert(0, 1), EdgeOp::insert(1, 2)],
            vec![EdgeOp::insert(2, 3), EdgeOp::insert(3, 4)],
            vec![EdgeOp::insert(4, 0)],
            vec![EdgeOp::remove(2, 3)],
            vec![
                EdgeOp::insert(2, 3),
                EdgeOp::insert(0, 4),
                EdgeOp::insert(4, 0),
            ],
        ];
        check_epochs(&epochs);
        for workers in [1, 2] {
            let online = crate::differential::Differential::new(workers).expect("workers");
            check_impl(online, &epochs);
        }
    }

    #[test]
    fn top_k_orders_by_influence_then_node() {
        let rows = vec![(5, 10), (1, 10), (3, 30), (2, 5)];
        assert_eq!(
            top_k(rows.clone().into_iter(), 3),
            vec![(3, 30), (1, 10), (5, 10)]
        );
        assert_eq!(top_k(rows.into_iter(), 0), vec![]);
    }

    /// The same epochs with node ids spread over the 64-bit range.
    pub(crate) fn spread(epochs: &[Vec<EdgeOp>]) -> Vec<Vec<EdgeOp>> {
        let far = |v: u64| v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        epochs
            .iter()
            .map(|ops| {
                ops.iter()
                    .map(|op| EdgeOp {
                        src: far(op.src),
                        dst: far(op.dst),
                        insert: op.insert,
                    })
                    .collect()
            })
            .collect()
    }

    pub(crate) fn epochs_strategy(nodes: u64) -> impl Strategy<Value = Vec<Vec<EdgeOp>>> {
        proptest::collection::vec(
            proptest::collection::vec((0..nodes, 0..nodes, proptest::bool::weighted(0.8)), 0..40),
            1..8,
        )
        .prop_map(|epochs| {
            epochs
                .into_iter()
                .map(|ops| {
                    ops.into_iter()
                        .map(|(a, b, ins)| EdgeOp {
                            src: a,
                            dst: b,
                            insert: ins,
                        })
                        .collect()
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn every_epoch_equals_the_reference(epochs in epochs_strategy(12)) {
            check_epochs(&epochs);
        }

        #[test]
        fn sparse_ids_and_many_epochs(epochs in epochs_strategy(40)) {
            check_epochs(&spread(&epochs));
        }
    }
}
