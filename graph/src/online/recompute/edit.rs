//! Editing the follower lists with an epoch's operations, on the threads
//! when the epoch is large.

use super::Recompute;
use crate::parallel::{even_cuts, on_threads, run_bounds};
use crate::sort::radix_sort_by;
use crate::EdgeOp;

/// `items` sorted by key (below `n`), keeping their order within a key: a
/// merge sort when they are few next to `n`, else a radix sort on digits
/// of 11 bits (two passes for up to 4M nodes), whose counts stay in the
/// first-level cache where a counting sort over `n` keys would miss on
/// every item.
pub(super) fn sort_by_key_stable<T: Copy>(n: usize, mut items: Vec<(u32, T)>) -> Vec<(u32, T)> {
    if items.len() < n / 8 || items.len() < 4096 {
        items.sort_by_key(|item| item.0);
        return items;
    }
    let bits = usize::BITS - n.leading_zeros();
    radix_sort_by::<_, 11>(&mut items, &mut Vec::new(), bits, |item| u64::from(item.0));
    items
}

/// What one thread's edits of the follower lists did.
#[derive(Default)]
struct Edits {
    /// Operations that took effect, counted in stream order: a pair
    /// inserted and removed in one epoch counts once each, as it would one
    /// operation at a time.
    inserted: u64,
    removed: u64,
    /// The edges that came and went, as (follower, followed).
    added: Vec<(u32, u32)>,
    gone: Vec<(u32, u32)>,
}

/// Applies `ops`, `(followed, (follower, insert))` grouped by followed node
/// (in stream order within a node), to the lists of `part`.
fn edit_part(part: &mut crate::packed::Part<'_>, ops: &mut [(u32, (u32, bool))]) -> Edits {
    let mut r = Edits::default();
    // Per pair: its last op, and its first op (with the state before the
    // epoch, it decides whether the first op took effect).
    let mut last_ops: Vec<(u32, bool)> = Vec::new();
    let mut first_ops: Vec<bool> = Vec::new();
    for group in ops.chunk_by_mut(|x, y| x.0 == y.0) {
        let a = group[0].0;
        // Stable: a pair's ops keep their stream order in its run.
        group.sort_by_key(|&(_, (b, _))| b);
        last_ops.clear();
        first_ops.clear();
        for run in group.chunk_by(|x, y| x.1 .0 == y.1 .0) {
            for w in run.windows(2) {
                match (w[0].1 .1, w[1].1 .1) {
                    (false, true) => r.inserted += 1,
                    (true, false) => r.removed += 1,
                    _ => {}
                }
            }
            first_ops.push(run[0].1 .1);
            last_ops.push(run[run.len() - 1].1);
        }
        let mut k = 0;
        part.edit(a as usize, &last_ops, |b, held| {
            match (held, first_ops[k]) {
                (false, true) => r.inserted += 1,
                (true, false) => r.removed += 1,
                _ => {}
            }
            let last = last_ops[k].1;
            if held != last {
                if last { &mut r.added } else { &mut r.gone }.push((b, a));
            }
            k += 1;
        });
    }
    r
}

impl Recompute {
    /// Applies an epoch's operations to the graph (the last one on a pair
    /// wins; self-loops are dropped); returns the edges inserted and
    /// removed. The operations are grouped by followed node (a stable
    /// sort: stream order within a group), so each follower list is edited
    /// by one merge whatever the number of its new entries.
    pub(super) fn edit(&mut self, ops: &[EdgeOp]) -> (u64, u64) {
        // The ids seen before, looked up on the threads (a small epoch on
        // this one); new ones get their indices here, in stream order.
        let known: Vec<Vec<(u32, u32)>> = {
            let dense = &self.dense;
            let chunk = ops.len().div_ceil(self.threads).max(self.parallel_from);
            on_threads(
                ops.chunks(chunk)
                    .map(|part| {
                        move || {
                            let look = |id| dense.get(id).unwrap_or(u32::MAX);
                            part.iter().map(|op| (look(op.src), look(op.dst))).collect()
                        }
                    })
                    .collect(),
            )
        };
        let mut dense: Vec<(u32, (u32, bool))> = Vec::with_capacity(ops.len());
        for (op, &(a, b)) in ops.iter().zip(known.iter().flatten()) {
            if op.src != op.dst {
                let a = if a == u32::MAX { self.index(op.src) } else { a };
                let b = if b == u32::MAX { self.index(op.dst) } else { b };
                dense.push((a, (b, op.insert)));
            }
        }
        drop(known);
        if dense.is_empty() {
            return (0, 0);
        }
        let n = self.ids.len();
        let mut grouped = sort_by_key_stable(n, dense);
        // Each thread edits the follower lists of a range of nodes, with
        // about equal numbers of operations: an epoch's edits are mostly
        // cache misses, one list each, and the threads wait on theirs at
        // once. A small epoch stays on this thread.
        let threads = if grouped.len() < self.parallel_from {
            1
        } else {
            self.threads
        };
        let cuts = even_cuts(&grouped, threads);
        let node_cuts: Vec<usize> = cuts.iter().map(|&i| grouped[i].0 as usize).collect();
        let touched: Vec<usize> = grouped
            .chunk_by(|x, y| x.0 == y.0)
            .map(|g| g[0].0 as usize)
            .collect();
        let bounds = run_bounds(&cuts, grouped.len());
        let mut pieces: Vec<&mut [(u32, (u32, bool))]> = Vec::with_capacity(bounds.len());
        let mut rest = &mut grouped[..];
        for r in &bounds {
            let (piece, tail) = std::mem::take(&mut rest).split_at_mut(r.len());
            pieces.push(piece);
            rest = tail;
        }
        let parts = self.followers.parts(&node_cuts, &touched);
        debug_assert_eq!(parts.len(), pieces.len());
        let done: Vec<(crate::packed::Edited, Edits)> = on_threads(
            parts
                .into_iter()
                .zip(pieces)
                .map(|(mut part, piece)| {
                    move || {
                        let edits = edit_part(&mut part, piece);
                        (part.finish(), edits)
                    }
                })
                .collect(),
        );
        let (mut inserted, mut removed) = (0u64, 0u64);
        let (mut added, mut gone) = (Vec::new(), Vec::new());
        let mut edited = Vec::with_capacity(done.len());
        for (e, d) in done {
            edited.push(e);
            inserted += d.inserted;
            removed += d.removed;
            added.extend(d.added);
            gone.extend(d.gone);
        }
        self.followers.absorb(edited);
        drop(grouped);
        // The new edges join the following lists, grouped by follower (one
        // visit and at most one reallocation per list), each thread on a
        // range of followers.
        self.edge_count = self.edge_count + added.len() - gone.len();
        let added = sort_by_key_stable(n, added);
        let cuts = even_cuts(&added, threads);
        let mut jobs = Vec::with_capacity(cuts.len() + 1);
        let (mut out, mut following, mut rest) =
            (&mut self.out[..], &mut self.following[..], &added[..]);
        let mut lo = 0;
        for r in run_bounds(&cuts, added.len()) {
            let hi = added.get(r.end).map_or(n, |x| x.0 as usize);
            let (o, o_rest) = std::mem::take(&mut out).split_at_mut(hi - lo);
            let (f, f_rest) = std::mem::take(&mut following).split_at_mut(hi - lo);
            let (piece, tail) = rest.split_at(r.len());
            (out, following, rest) = (o_rest, f_rest, tail);
            jobs.push(move || {
                for run in piece.chunk_by(|x, y| x.0 == y.0) {
                    let b = run[0].0 as usize - lo;
                    o[b].reserve(run.len());
                    o[b].extend(run.iter().map(|&(_, a)| a));
                    f[b] = o[b].len() as u32;
                }
            });
            lo = hi;
        }
        on_threads(jobs);
        // The removed edges leave them (rarer: sorted).
        gone.sort_unstable();
        for run in gone.chunk_by(|x, y| x.0 == y.0) {
            let out = &mut self.out[run[0].0 as usize];
            if run.len() <= 8 {
                for &(_, a) in run {
                    if let Some(p) = out.iter().rposition(|&x| x == a) {
                        out.swap_remove(p);
                    }
                }
            } else {
                out.retain(|x| run.binary_search_by_key(x, |&(_, a)| a).is_err());
            }
            self.following[run[0].0 as usize] = out.len() as u32;
        }
        (inserted, removed)
    }
}
