//! The iteration: from zero to the least fixpoint, summing every list in
//! the first rounds and pushing the changed terms along the edges after.

use super::{zeroed, Recompute};
use crate::parallel::{on_threads, par_ranges};
use crate::{term, Overflow};

impl Recompute {
    /// Iterates from zero to the least fixpoint into `self.x`; returns the
    /// values it replaced.
    pub(super) fn iterate(&mut self) -> Result<Vec<u64>, Overflow> {
        let n = self.ids.len();
        debug_assert!(self
            .out
            .iter()
            .zip(&self.following)
            .all(|(o, &f)| o.len() == f as usize));
        let ranges = self.ranges();
        // `x` is round r's values, `prev` round r - 1's.
        let mut x = zeroed(std::mem::take(&mut self.scratch.spare), n);
        let mut prev = zeroed(std::mem::take(&mut self.scratch.prev), n);
        // Terms fit in 32 bits unless a follower's influence is in the
        // thousands: half the bytes to keep in cache, and sums of fewer than
        // 2^32 such terms cannot overflow 64 bits. Wide terms otherwise.
        let mut narrow = zeroed(std::mem::take(&mut self.scratch.narrow), n);
        let mut wide: Vec<u64> = zeroed(std::mem::take(&mut self.scratch.wide), 0);
        let mut touched = zeroed(std::mem::take(&mut self.scratch.touched), n);
        let mut rounds = 0;
        // Whether round r - 1's terms overflowed 32 bits (then `narrow`
        // holds them truncated), and how far its changed terms reached.
        let (mut prev_too_wide, mut last_reach) = (false, usize::MAX);
        // The iteration pushes differences once the terms that changed
        // reach at most this many edges.
        let sparse = self.edge_count / self.sparse_from.max(1);
        loop {
            let (following, followers, ids) = (&self.following, &self.followers, &self.ids);
            let (x_ref, prev_ref) = (&x, &prev);
            let term_of = |v: usize| node_term(x_ref[v], following[v]);
            // Round r's terms, each thread on its range of nodes, and how
            // many follow edges the terms that moved since round r - 1
            // reach. Round r - 1's term is the one it overwrites (one
            // division per node, not two); when the reach is near the
            // point of pushing, the moved terms' differences are kept too.
            let narrow_exact = !prev_too_wide;
            let keep = rounds > 0 && last_reach <= sparse.saturating_mul(4);
            let parts = par_ranges(&ranges, &mut narrow, |range, terms| {
                let (mut too_wide, mut reach) = (false, 0usize);
                let mut moved: Option<Vec<(u32, i128)>> = keep.then(Vec::new);
                for (t, v) in terms.iter_mut().zip(range) {
                    let w = term_of(v);
                    if rounds > 0 {
                        let old = if narrow_exact {
                            u64::from(*t)
                        } else if x_ref[v] == prev_ref[v] {
                            w
                        } else {
                            node_term(prev_ref[v], following[v])
                        };
                        if old != w {
                            reach += following[v] as usize;
                            if let Some(m) = &mut moved {
                                if reach <= sparse {
                                    m.push((v as u32, i128::from(w) - i128::from(old)));
                                } else {
                                    moved = None;
                                }
                            }
                        }
                    }
                    too_wide |= w > u64::from(u32::MAX);
                    *t = w as u32;
                }
                Ok((too_wide, reach, moved))
            })?;
            let too_wide = parts.iter().any(|p| p.0);
            let reach: usize = parts.iter().map(|p| p.1).sum();
            // Later rounds move few values: once the terms that changed
            // reach a small part of the edges, push their differences
            // instead of re-summing every list.
            if rounds > 0 && reach <= sparse {
                let deltas: Vec<(u32, i128)> = if parts.iter().all(|p| p.2.is_some()) {
                    parts
                        .into_iter()
                        .flat_map(|p| p.2.unwrap_or_default())
                        .collect()
                } else {
                    on_threads(
                        ranges
                            .iter()
                            .map(|r| {
                                let r = r.clone();
                                move || {
                                    term_deltas(
                                        following,
                                        r.map(|v| (v as u32, prev_ref[v], x_ref[v])),
                                    )
                                }
                            })
                            .collect(),
                    )
                    .concat()
                };
                rounds += self.push_rounds(&mut x, deltas, &mut touched)?;
                break;
            }
            if rounds > 0 {
                last_reach = reach;
            }
            prev_too_wide = too_wide;
            if too_wide {
                wide.resize(n, 0);
                par_ranges(&ranges, &mut wide, |range, terms| {
                    for (t, v) in terms.iter_mut().zip(range) {
                        *t = term_of(v);
                    }
                    Ok(())
                })?;
            }
            rounds += 1;
            // Round r + 1's sums, into the buffer of round r - 1.
            let (narrow, wide) = (&narrow, &wide);
            let changed = par_ranges(&ranges, &mut prev, |range, next| {
                let mut changed = false;
                for (slot, a) in next.iter_mut().zip(range) {
                    let sum = if too_wide {
                        let (mut sum, mut overflow) = (0u64, false);
                        let (seg, side) = followers.list(a);
                        for &b in seg.iter().chain(side) {
                            let (s, o) = sum.overflowing_add(wide[b as usize]);
                            sum = s;
                            overflow |= o;
                        }
                        if overflow {
                            return Err(Overflow { node: ids[a] });
                        }
                        sum
                    } else {
                        // Two plain loops: the side list is usually empty.
                        let (seg, side) = followers.list(a);
                        let sum: u64 = seg.iter().map(|&b| u64::from(narrow[b as usize])).sum();
                        sum + side
                            .iter()
                            .map(|&b| u64::from(narrow[b as usize]))
                            .sum::<u64>()
                    };
                    changed |= sum != x_ref[a];
                    *slot = sum;
                }
                Ok(changed)
            })?
            .contains(&true);
            std::mem::swap(&mut x, &mut prev);
            if !changed {
                break;
            }
        }
        // The buffers for the next epoch; the table before goes to the
        // caller, for its comparison.
        self.scratch.prev = prev;
        self.scratch.narrow = narrow;
        self.scratch.wide = wide;
        self.scratch.touched = touched;
        self.rounds = rounds;
        Ok(std::mem::replace(&mut self.x, x))
    }

    /// Continues the iteration from `x` (round r) by pushing `deltas`, the
    /// terms that changed from round r - 1 to r, along the follow edges:
    /// `x_{r+1}(a) = x_r(a) + sum over b in F(a) of (term_r(b) -
    /// term_{r-1}(b))`, exact in integers. Returns the rounds taken, the
    /// last one finding no change.
    /// `first_touch` is all false, as long as `x`, and left so.
    fn push_rounds(
        &self,
        x: &mut [u64],
        mut deltas: Vec<(u32, i128)>,
        first_touch: &mut [bool],
    ) -> Result<usize, Overflow> {
        let mut touched: Vec<(u32, u64)> = Vec::new();
        let mut rounds = 0;
        loop {
            rounds += 1;
            if deltas.is_empty() {
                return Ok(rounds);
            }
            for &(b, d) in &deltas {
                for &a in &self.out[b as usize] {
                    let i = a as usize;
                    if !first_touch[i] {
                        first_touch[i] = true;
                        touched.push((a, x[i]));
                    }
                    x[i] = u64::try_from(i128::from(x[i]) + d)
                        .map_err(|_| Overflow { node: self.ids[i] })?;
                }
            }
            for &(a, _) in &touched {
                first_touch[a as usize] = false;
            }
            deltas = term_deltas(
                &self.following,
                touched.drain(..).map(|(a, old)| (a, old, x[a as usize])),
            );
        }
    }
}

/// The term of a node of value `x` that follows `following` nodes (0 for
/// a node that follows none: it is in no list).
fn node_term(x: u64, following: u32) -> u64 {
    match following {
        0 => 0,
        f => term(x, u64::from(f)),
    }
}

/// The terms that changed between two rounds, from `(node, old value, new
/// value)`: `(node, new term - old term)`.
fn term_deltas(
    following: &[u32],
    values: impl Iterator<Item = (u32, u64, u64)>,
) -> Vec<(u32, i128)> {
    let mut deltas = Vec::new();
    for (v, old, new) in values {
        if old == new {
            continue;
        }
        let f = following[v as usize];
        let d = i128::from(node_term(new, f)) - i128::from(node_term(old, f));
        if d != 0 {
            deltas.push((v, d));
        }
    }
    deltas
}
