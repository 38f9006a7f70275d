//! Incremental TunkRank by recomputation: the graph is maintained
//! incrementally (adjacency in both directions, edited in place), and each
//! epoch reruns the from-zero iteration over all of it, in parallel, then
//! reports the nodes whose value moved.
//!
//! On a power-law stream an epoch of new follows changes the terms of most
//! of the graph within a few rounds (a follower's new follow changes its
//! whole contribution), so pushing deltas through stored rounds
//! ([`crate::online::Layered`]) touches nearly every edge anyway, with
//! random writes. Recomputing reads each in-list sequentially and the terms
//! array at random, and splits the nodes over threads with no shared
//! writes: its cost is rounds x edges, whatever the epoch's size. Only
//! the first rounds move most values: once the terms that changed reach a
//! quarter of the edges or less, the iteration pushes their differences
//! along the follow edges instead of re-summing every list (integers: the
//! same sums exactly), and the last, confirming round costs nothing. The
//! iteration starts from zero every time (never from the previous
//! fixpoint), so the result is the least fixpoint, the batch result, bit
//! for bit.
//!
//! ```
//! use exoflow_graph::online::{Online, Recompute};
//! use exoflow_graph::{reference, EdgeOp};
//! let mut online = Recompute::new(2);
//! online.apply(&[EdgeOp::insert(1, 2), EdgeOp::insert(1, 3)]).unwrap();
//! let u = online.apply(&[EdgeOp::insert(2, 3)]).unwrap();
//! let ops = [EdgeOp::insert(1, 2), EdgeOp::insert(1, 3), EdgeOp::insert(2, 3)];
//! assert_eq!(online.table(), reference::tunkrank(&reference::Graph::from_ops(&ops)).unwrap());
//! assert_eq!(u.changes.len(), 2);
//! ```

mod edit;
mod iterate;

use super::{Found, Online, OnlineError, Update};
use crate::packed::{node_room, room, with_room, Packed};
use crate::parallel::{balanced, on_threads};
use crate::table::row_hash;
use crate::{EdgeOp, IdIndex, IdMap, Overflow};

/// The recomputing implementation.
#[derive(Debug, Default)]
pub struct Recompute {
    /// Dense index of each node id.
    dense: IdIndex,
    /// Node id of each dense index.
    ids: Vec<u64>,
    /// `out[b]`: the nodes b follows.
    out: Vec<Vec<u32>>,
    /// `following[b] = out[b].len()`, compact: the terms passes read it
    /// for every node, every round (not the 24-byte list headers).
    following: Vec<u32>,
    /// `followers[a]`: the nodes that follow a, packed: the dense rounds
    /// read them in order.
    followers: Packed,
    /// Number of edges.
    edge_count: usize,
    /// The least fixpoint (0 for a node without followers).
    x: Vec<u64>,
    /// Rounds the last iteration took.
    rounds: usize,
    /// The digest of the table.
    digest: u64,
    /// Threads per round.
    threads: usize,
    /// Nodes and edges at the last relabeling.
    labeled: (usize, usize),
    /// Growth below which no relabeling is due (nodes, edges).
    slack: (usize, usize),
    /// The iteration pushes differences once the changed terms reach at
    /// most 1/`sparse_from` of the edges.
    sparse_from: usize,
    /// Epochs of at least this many operations edit the lists on
    /// `threads` threads (smaller ones on the caller's).
    parallel_from: usize,
    /// Buffers of the node-sized arrays an epoch needs, kept from one epoch
    /// to the next.
    scratch: Scratch,
    /// Whether updates leave their changes unlisted (counted only).
    unlisted: bool,
}

/// Node-sized buffers reused by every epoch. Allocated afresh, they cost
/// page faults on first touch and, in glibc, consolidations of the small
/// chunks that the list edits free.
#[derive(Debug, Default)]
struct Scratch {
    /// The value buffer of the next iteration (the table before last).
    spare: Vec<u64>,
    prev: Vec<u64>,
    narrow: Vec<u32>,
    wide: Vec<u64>,
    touched: Vec<bool>,
    was_in: Vec<bool>,
}

impl Clone for Scratch {
    /// A clone starts with no buffers: they are scratch.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl Clone for Recompute {
    /// A clone keeps room to grow, as a state built by [`Recompute::from_pairs`]
    /// has: `Vec::clone` allocates exactly, and the first epoch of an exact
    /// clone reallocates every node array (for its new nodes) and every
    /// following list it appends to.
    fn clone(&self) -> Self {
        Self {
            dense: self.dense.clone(),
            ids: with_room(&self.ids, node_room(self.ids.len())),
            out: self
                .out
                .iter()
                .map(|l| with_room(l, room(l.len())))
                .collect::<Vec<_>>(),
            following: with_room(&self.following, node_room(self.following.len())),
            followers: self.followers.clone(),
            edge_count: self.edge_count,
            x: with_room(&self.x, node_room(self.x.len())),
            rounds: self.rounds,
            digest: self.digest,
            threads: self.threads,
            labeled: self.labeled,
            slack: self.slack,
            sparse_from: self.sparse_from,
            parallel_from: self.parallel_from,
            scratch: Scratch::default(),
            unlisted: self.unlisted,
        }
    }
}

/// `buf` holding `n` zeros, reusing its allocation.
fn zeroed<T: Copy + Default>(mut buf: Vec<T>, n: usize) -> Vec<T> {
    buf.clear();
    buf.resize(n, T::default());
    buf
}

impl Recompute {
    /// An empty graph, iterated on `threads` threads.
    pub fn new(threads: usize) -> Self {
        Self {
            threads: threads.max(1),
            slack: (1024, 4096),
            sparse_from: SPARSE_FROM,
            parallel_from: 1 << 14,
            ..Self::default()
        }
    }

    /// The state of a graph given as sorted, distinct pairs `(a, b)` (b
    /// follows a, no self-loops).
    pub fn from_pairs(pairs: &[(u64, u64)], threads: usize) -> Result<Self, Overflow> {
        let mut s = Self::new(threads);
        // Dense index = rank among the sorted distinct ids of both ends:
        // the followed nodes come sorted with the pairs, the followers are
        // sorted here once (no map that grows edge by edge).
        let mut followers_ids: Vec<u64> = pairs.iter().map(|&(_, b)| b).collect();
        followers_ids.sort_unstable();
        followers_ids.dedup();
        let mut ids: Vec<u64> = Vec::with_capacity(followers_ids.len() + pairs.len() / 8);
        let mut j = 0;
        for (i, &(a, _)) in pairs.iter().enumerate() {
            if i > 0 && pairs[i - 1].0 == a {
                continue;
            }
            while followers_ids.get(j).is_some_and(|&b| b < a) {
                ids.push(followers_ids[j]);
                j += 1;
            }
            if followers_ids.get(j) == Some(&a) {
                j += 1;
            }
            ids.push(a);
        }
        ids.extend_from_slice(&followers_ids[j..]);
        drop(followers_ids);
        let n = ids.len();
        let mut dense = IdIndex::for_ids(ids.last().copied().unwrap_or(0), n);
        for (i, &id) in ids.iter().enumerate() {
            dense.get_or_insert(id, i as u32);
        }
        // Each edge's follower index, looked up on the threads; in pair
        // order these are the follower lists, grouped by followed node.
        let chunk = pairs.len().div_ceil(s.threads).max(1);
        let jobs: Vec<_> = pairs
            .chunks(chunk)
            .map(|part| {
                let dense = &dense;
                move || {
                    part.iter()
                        .map(|&(_, b)| dense.get(b).unwrap_or(u32::MAX))
                        .collect::<Vec<u32>>()
                }
            })
            .collect();
        let mut flat: Vec<u32> = Vec::with_capacity(pairs.len());
        for part in on_threads(jobs) {
            flat.extend(part);
        }
        let mut offsets = vec![0usize; n + 1];
        let mut out_len = vec![0u32; n];
        let mut a_index: Vec<u32> = Vec::with_capacity(pairs.len());
        let mut k = 0usize;
        for (&(a, _), &bi) in pairs.iter().zip(&flat) {
            while ids[k] < a {
                k += 1;
            }
            offsets[k + 1] += 1;
            out_len[bi as usize] += 1;
            a_index.push(k as u32);
        }
        for v in 0..n {
            offsets[v + 1] += offsets[v];
        }
        // Room to grow by an eighth, as the packed lists have.
        s.out = out_len
            .iter()
            .map(|&len| Vec::with_capacity(len as usize + room(len as usize)))
            .collect();
        s.following = out_len;
        for (&ai, &bi) in a_index.iter().zip(&flat) {
            s.out[bi as usize].push(ai);
        }
        drop(a_index);
        s.followers = Packed::from_csr(&offsets, &flat);
        drop(flat);
        s.ids = ids;
        s.dense = dense;
        s.x = vec![0; n];
        s.edge_count = pairs.len();
        s.relabel();
        s.scratch.spare = s.iterate()?;
        s.digest = (0..s.ids.len())
            .filter(|&v| s.followers.len(v) > 0)
            .fold(0u64, |d, v| d.wrapping_add(row_hash(s.ids[v], s.x[v])));
        Ok(s)
    }

    /// Relabels at every epoch that grows the graph (tests of that path).
    #[cfg(test)]
    pub(crate) fn relabel_often(mut self) -> Self {
        self.slack = (0, 0);
        self
    }

    /// Pushes differences from the second round on (`true`) or never
    /// (`false`): tests of both paths.
    #[cfg(test)]
    pub(crate) fn push_always(mut self, always: bool) -> Self {
        self.sparse_from = if always { 1 } else { usize::MAX };
        self
    }

    /// Edits the lists on all threads from epochs of `ops` operations on.
    #[cfg(test)]
    pub(crate) fn parallel_from(mut self, ops: usize) -> Self {
        self.parallel_from = ops;
        self
    }

    /// Rounds the last iteration took (the last one finds no change).
    pub fn rounds(&self) -> usize {
        self.rounds
    }

    /// Iterates on `threads` threads from now on.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    fn index(&mut self, id: u64) -> u32 {
        let next = self.ids.len() as u32;
        let i = self.dense.get_or_insert(id, next);
        if i == next {
            self.ids.push(id);
            self.out.push(Vec::new());
            self.following.push(0);
            self.followers.push_node();
            self.x.push(0);
        }
        i
    }

    /// Renumbers the nodes by how many nodes they follow, most first, and
    /// sorts every follower list: the terms that the sums read most often
    /// are then packed at the front of the terms array, where they stay in
    /// cache, and each list reads it in ascending order. Values and results
    /// do not depend on the numbering (sums of integers).
    fn relabel(&mut self) {
        let n = self.ids.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by_key(|&v| (std::cmp::Reverse(self.following[v as usize]), v));
        let mut new_of = vec![0u32; n];
        for (new, &old) in order.iter().enumerate() {
            new_of[old as usize] = new as u32;
        }
        // The following lists move to their new places and are renumbered
        // in place (no copy, no reallocation; their order does not
        // matter), while another thread repacks the follower lists.
        let mut old_out = std::mem::take(&mut self.out);
        let followers = &self.followers;
        let (out, packed) = std::thread::scope(|s| {
            let packed = s.spawn(|| followers.renumbered(&order, &new_of));
            let out: Vec<Vec<u32>> = order
                .iter()
                .map(|&v| {
                    let mut l = std::mem::take(&mut old_out[v as usize]);
                    for x in l.iter_mut() {
                        *x = new_of[*x as usize];
                    }
                    l
                })
                .collect();
            let packed = packed
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            (out, packed)
        });
        self.out = out;
        self.following = order.iter().map(|&v| self.following[v as usize]).collect();
        self.followers = packed;
        self.ids = order.iter().map(|&v| self.ids[v as usize]).collect();
        self.x = order.iter().map(|&v| self.x[v as usize]).collect();
        // Renumbered: the index is made anew, a direct table if the ids
        // seen so far are dense.
        let max_id = self.ids.iter().copied().max().unwrap_or(0);
        self.dense = IdIndex::for_ids(max_id, self.ids.len());
        for (i, &id) in self.ids.iter().enumerate() {
            self.dense.get_or_insert(id, i as u32);
        }
        self.labeled = (n, self.edge_count);
        // Room for the nodes of the next epochs (collected arrays are exact).
        let more = node_room(n);
        self.ids.reserve(more);
        self.following.reserve(more);
        self.x.reserve(more);
        self.out.reserve(more);
        self.followers.reserve_nodes(more);
    }

    /// Whether the graph doubled its nodes or edges since the last
    /// relabeling, so that new nodes (numbered at the end) may have become
    /// hot. Not sooner: a relabeling costs about two dense rounds, and on a
    /// power-law stream the hot nodes stay hot as the
    /// graph grows, so the order goes stale slowly; doubling keeps the cost
    /// per edge constant.
    fn relabel_due(&self) -> bool {
        let (n, e) = self.labeled;
        self.ids.len() > n + n + self.slack.0 || self.edge_count > e + e + self.slack.1
    }

    /// Node ranges of about equal edge counts, one per thread.
    fn ranges(&self) -> Vec<std::ops::Range<usize>> {
        let n = self.ids.len();
        let weights = (0..n).map(|v| self.followers.len(v) + 1);
        balanced(self.threads.min(n.max(1)), self.edge_count, weights)
    }
}

/// The default of [`Recompute::sparse_from`].
const SPARSE_FROM: usize = 4;

impl Recompute {
    /// The changes against the old table given by id (after a relabeling).
    fn changes_by_id(&mut self, old: Vec<(u64, bool, u64)>, inserted: u64, removed: u64) -> Update {
        let mut before: IdMap<u64> = IdMap::default();
        for (id, was_in, x) in old {
            if was_in {
                before.insert(id, x);
            }
        }
        let found = self.collect_changes(|_, id| before.get(&id).copied());
        Update {
            changes: found.list,
            counts: found.counts,
            inserted,
            removed,
            rounds: self.rounds,
        }
    }
}

impl Recompute {
    /// The nodes whose value moved from `old(index, id)`, found on the
    /// iteration's threads (listed unless [`Online::list_changes`] said
    /// not to); updates the digest by them.
    fn collect_changes(&mut self, old: impl Fn(usize, u64) -> Option<u64> + Sync) -> Found {
        let n = self.ids.len();
        let parts = self.threads.min(n.max(1));
        let this = &*self;
        let part = |range: std::ops::Range<usize>| {
            let (mut digest, mut found) = (0u64, Found::new(!this.unlisted));
            for v in range {
                let new = (this.followers.len(v) > 0).then(|| this.x[v]);
                found.record(&mut digest, this.ids[v], old(v, this.ids[v]), new);
            }
            (digest, found)
        };
        let part = &part;
        let results: Vec<(u64, Found)> = on_threads(
            (0..parts)
                .map(|i| move || part(n * i / parts..n * (i + 1) / parts))
                .collect(),
        );
        let mut all = Found::new(!self.unlisted);
        all.list
            .reserve_exact(results.iter().map(|r| r.1.list.len()).sum());
        for (d, found) in results {
            // Digests are sums (wrapping): the parts add up.
            self.digest = self.digest.wrapping_add(d);
            all.append(found);
        }
        all
    }
}

impl Online for Recompute {
    fn apply(&mut self, ops: &[EdgeOp]) -> Result<Update, OnlineError> {
        // The table before: who was in it, with which value.
        let before_n = self.ids.len();
        let mut was_in = std::mem::take(&mut self.scratch.was_in);
        was_in.clear();
        was_in.extend((0..before_n).map(|v| self.followers.len(v) > 0));
        let (inserted, removed) = self.edit(ops);
        // The values before (the edit only appends new nodes' zeros).
        let old_x = if inserted + removed > 0 {
            if self.followers.repack_due() && !self.relabel_due() {
                self.followers.repack();
            }
            if self.relabel_due() {
                // Numbers change: keep the old values by id.
                let old: Vec<(u64, bool, u64)> = (0..before_n)
                    .map(|v| (self.ids[v], was_in[v], self.x[v]))
                    .collect();
                self.relabel();
                self.scratch.spare = self.iterate()?;
                self.scratch.was_in = was_in;
                return Ok(self.changes_by_id(old, inserted, removed));
            }
            self.iterate()?
        } else {
            self.x.clone()
        };
        let found = self.collect_changes(|v, _| (v < before_n && was_in[v]).then(|| old_x[v]));
        self.scratch.spare = old_x;
        self.scratch.was_in = was_in;
        Ok(Update {
            changes: found.list,
            counts: found.counts,
            inserted,
            removed,
            rounds: self.rounds,
        })
    }

    fn value(&self, node: u64) -> Option<u64> {
        let i = self.dense.get(node)?;
        (self.followers.len(i as usize) > 0).then(|| self.x[i as usize])
    }

    fn rows(&self) -> Box<dyn Iterator<Item = (u64, u64)> + '_> {
        Box::new(
            (0..self.ids.len())
                .filter(|&v| self.followers.len(v) > 0)
                .map(|v| (self.ids[v], self.x[v])),
        )
    }

    fn digest(&self) -> u64 {
        self.digest
    }

    fn list_changes(&mut self, list: bool) {
        self.unlisted = !list;
    }

    fn edges(&self) -> Vec<(u64, u64)> {
        sorted_edges(&self.ids, &self.followers, self.edge_count, self.threads)
    }

    fn edges_later(&self) -> super::EdgesLater {
        // A copy of the ids and the packed lists: a few flat arrays.
        let (ids, followers) = (self.ids.clone(), self.followers.clone());
        let (edge_count, threads) = (self.edge_count, self.threads);
        Box::new(move || sorted_edges(&ids, &followers, edge_count, threads))
    }

    fn edge_count(&self) -> usize {
        self.edge_count
    }

    fn memory_bytes(&self) -> usize {
        let n = self.ids.len();
        let out: usize = self.out.iter().map(|o| o.capacity() * 4).sum();
        self.dense.memory_bytes()
            + self.ids.capacity() * 8
            + n * 24
            + out
            + self.followers.memory_bytes()
            + n * 8
    }
}

/// The edges `(a, b)` of the lists (`followers[a]` holds b), sorted.
fn sorted_edges(
    ids: &[u64],
    followers: &Packed,
    edge_count: usize,
    threads: usize,
) -> Vec<(u64, u64)> {
    // The followed nodes in id order, each one's pairs sorted on their
    // own: sorted in all without one sort of all of them, split over the
    // threads by edges.
    let mut order: Vec<u32> = (0..ids.len() as u32)
        .filter(|&v| followers.len(v as usize) > 0)
        .collect();
    order.sort_unstable_by_key(|&v| ids[v as usize]);
    let weights = order.iter().map(|&v| followers.len(v as usize));
    let pieces = on_threads(
        balanced(threads, edge_count, weights)
            .into_iter()
            .map(|range| {
                let part = &order[range];
                move || {
                    let mut out: Vec<(u64, u64)> = Vec::new();
                    for &a in part {
                        let (seg, side) = followers.list(a as usize);
                        let from = out.len();
                        let id = ids[a as usize];
                        out.extend(seg.iter().chain(side).map(|&b| (id, ids[b as usize])));
                        out[from..].sort_unstable_by_key(|p| p.1);
                    }
                    out
                }
            })
            .collect(),
    );
    let mut edges = Vec::with_capacity(edge_count);
    for piece in pieces {
        edges.extend(piece);
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::edit::sort_by_key_stable;
    use super::*;
    use crate::online::tests::check_impl;

    /// A small deterministic generator (xorshift64*).
    fn numbers(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut s = seed | 1;
        move |below| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            s.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
        }
    }

    #[test]
    fn the_radix_sort_is_stable_and_sorted() {
        let mut next = numbers(7);
        for n in [1usize, 300, 5000, 1 << 23] {
            let items: Vec<(u32, u32)> =
                (0..20_000u32).map(|i| (next(n as u64) as u32, i)).collect();
            let mut want = items.clone();
            want.sort_by_key(|x| x.0);
            assert_eq!(sort_by_key_stable(n, items), want, "n = {n}");
        }
    }

    #[test]
    fn big_epochs_equal_the_reference() {
        // Epochs of thousands of ops on a few hundred nodes: the radix
        // paths, hub lists that spill, pairs inserted and removed within an
        // epoch, removals grouped by follower.
        let mut next = numbers(11);
        let epochs: Vec<Vec<EdgeOp>> = (0..6)
            .map(|e| {
                (0..[6000, 9000, 300, 20_000, 5000, 8000][e])
                    .map(|_| {
                        // Skewed ends: hubs on both sides.
                        let (ra, rb) = (next(400) + 1, next(400) + 1);
                        let (a, b) = (next(ra), next(rb));
                        EdgeOp {
                            src: a,
                            dst: b,
                            insert: next(10) < [9, 7, 5, 8, 3, 9][e],
                        }
                    })
                    .collect()
            })
            .collect();
        check_impl(Recompute::new(1), &epochs);
        check_impl(Recompute::new(2), &epochs);
        check_impl(Recompute::new(2).relabel_often(), &epochs);
        // Every epoch's lists edited on several threads.
        check_impl(Recompute::new(2).parallel_from(1), &epochs);
        check_impl(Recompute::new(3).parallel_from(1).relabel_often(), &epochs);
    }
}
