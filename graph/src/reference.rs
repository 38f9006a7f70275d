//! The single-threaded reference: a CSR of the graph, TunkRank in fixed
//! point (the oracle every other implementation must equal bit for bit) and
//! in f64 (to check the fixed point against real numbers). It is also the
//! COST baseline the parallel implementations must beat.

use std::collections::HashMap;

use crate::{term, EdgeOp, Overflow, Table, ONE, P};

/// The graph after applying `ops` in order, as sorted distinct pairs
/// `(a, b)` (b follows a): the last operation on a pair wins, self-loops are
/// dropped.
pub fn apply_ops(ops: &[EdgeOp]) -> Vec<(u64, u64)> {
    if ops.iter().all(|op| op.insert) {
        // Inserts only (a plain edge file): sort and dedup, no map needed.
        return inserted_pairs(ops);
    }
    let mut last: HashMap<(u64, u64), bool> = HashMap::with_capacity(ops.len());
    for op in ops {
        if op.src != op.dst {
            last.insert((op.src, op.dst), op.insert);
        }
    }
    let mut pairs: Vec<(u64, u64)> = last
        .into_iter()
        .filter(|&(_, ins)| ins)
        .map(|(p, _)| p)
        .collect();
    pairs.sort_unstable();
    pairs
}

/// The sorted, distinct pairs of operations that are all inserts,
/// self-loops dropped.
pub(crate) fn inserted_pairs(ops: &[EdgeOp]) -> Vec<(u64, u64)> {
    crate::pairs::union(vec![ops
        .iter()
        .map(|op| (op.src, op.dst))
        .collect::<Vec<_>>()])
}

/// A graph in compressed sparse rows: nodes renumbered densely in ascending
/// id order, followers of each node contiguous.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Node ids by dense index: first the nodes with followers, ascending,
    /// then the nodes that only follow (see [`crate::IdIndex::numbering`]).
    pub ids: Vec<u64>,
    /// How many nodes have followers (a prefix of `ids`).
    pub with_followers: usize,
    /// `following[i]`: how many nodes node i follows.
    pub following: Vec<u32>,
    /// Followers of node i are `followers[offsets[i]..offsets[i + 1]]`.
    pub offsets: Vec<usize>,
    /// Dense indices of followers.
    pub followers: Vec<u32>,
}

impl Graph {
    /// The graph after applying `ops` in order: the last operation on a pair
    /// wins, self-loops are dropped.
    pub fn from_ops(ops: &[EdgeOp]) -> Self {
        Self::from_sorted_pairs(&apply_ops(ops))
    }

    /// The graph of a set of pairs `(a, b)` (b follows a), sorted and without
    /// duplicates or self-loops.
    pub fn from_sorted_pairs(pairs: &[(u64, u64)]) -> Self {
        debug_assert!(pairs.windows(2).all(|w| w[0] < w[1]));
        // Followed nodes first, in ascending order (the pairs are sorted by
        // them), then nodes that only follow: no sort of all ids.
        let mut ids: Vec<u64> = Vec::new();
        let mut offsets: Vec<usize> = Vec::new();
        for (i, &(a, _)) in pairs.iter().enumerate() {
            if ids.last() != Some(&a) {
                ids.push(a);
                offsets.push(i);
            }
        }
        let with_followers = ids.len();
        let (_, ids, followers) = crate::IdIndex::numbering(&ids, pairs.iter().map(|&(_, b)| b));
        let n = ids.len();
        let mut following = vec![0u32; n];
        for &b in &followers {
            following[b as usize] += 1;
        }
        offsets.resize(n + 1, pairs.len());
        Self {
            ids,
            with_followers,
            following,
            offsets,
            followers,
        }
    }

    /// The dense index of a node with at least one follower.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.ids[..self.with_followers].binary_search(&id).ok()
    }

    /// Number of nodes (with an edge).
    pub fn nodes(&self) -> usize {
        self.ids.len()
    }

    /// Number of edges.
    pub fn edges(&self) -> usize {
        self.followers.len()
    }
}

/// One Jacobi round in fixed point: `next = F(x)`. Returns whether anything
/// changed.
pub fn round(
    g: &Graph,
    x: &[u64],
    terms: &mut Vec<u64>,
    next: &mut [u64],
) -> Result<bool, Overflow> {
    terms.clear();
    terms.extend(
        x.iter()
            .zip(&g.following)
            .map(|(&x, &f)| if f == 0 { 0 } else { term(x, u64::from(f)) }),
    );
    let mut changed = false;
    for a in 0..g.nodes() {
        let mut sum: u64 = 0;
        for &b in &g.followers[g.offsets[a]..g.offsets[a + 1]] {
            sum = sum
                .checked_add(terms[b as usize])
                .ok_or(Overflow { node: g.ids[a] })?;
        }
        changed |= sum != x[a];
        next[a] = sum;
    }
    Ok(changed)
}

/// TunkRank in fixed point: the least fixpoint, iterated from zero. Returns
/// the table (nodes with at least one follower, ascending).
pub fn tunkrank(g: &Graph) -> Result<Table, Overflow> {
    Ok(tunkrank_rounds(g)?.0)
}

/// [`tunkrank`], also returning the number of rounds it took.
pub fn tunkrank_rounds(g: &Graph) -> Result<(Table, usize), Overflow> {
    let n = g.nodes();
    let mut x = vec![0u64; n];
    let mut next = vec![0u64; n];
    let mut terms = Vec::with_capacity(n);
    let mut rounds = 0;
    loop {
        rounds += 1;
        let changed = round(g, &x, &mut terms, &mut next)?;
        std::mem::swap(&mut x, &mut next);
        if !changed {
            break;
        }
    }
    Ok((table_of(g, &x), rounds))
}

fn table_of<T: Copy>(g: &Graph, x: &[T]) -> Vec<(u64, T)> {
    (0..g.nodes())
        .filter(|&a| g.offsets[a + 1] > g.offsets[a])
        .map(|a| (g.ids[a], x[a]))
        .collect()
}

/// TunkRank in f64, iterated until no value moves by more than 1e-12
/// relative.
pub fn tunkrank_f64(g: &Graph) -> Vec<(u64, f64)> {
    let n = g.nodes();
    let mut x = vec![0f64; n];
    let mut next = vec![0f64; n];
    for _ in 0..10_000 {
        let terms: Vec<f64> = x
            .iter()
            .zip(&g.following)
            .map(|(&x, &f)| {
                if f == 0 {
                    0.0
                } else {
                    (1.0 + P * x) / f64::from(f)
                }
            })
            .collect();
        let mut moved = false;
        for a in 0..n {
            let sum: f64 = g.followers[g.offsets[a]..g.offsets[a + 1]]
                .iter()
                .map(|&b| terms[b as usize])
                .sum();
            if (sum - x[a]).abs() > 1e-12 * sum.abs() {
                moved = true;
            }
            next[a] = sum;
        }
        std::mem::swap(&mut x, &mut next);
        if !moved {
            break;
        }
    }
    table_of(g, &x)
}

/// The documented bound between the fixed-point and the f64 result of a node
/// with `followers` followers and value `value`.
pub fn tolerance(followers: usize, value: f64) -> f64 {
    2e-9 * (followers as f64 + 1.0) + 1e-12 * value
}

/// Converts a fixed-point value to f64 (for comparisons only).
pub fn to_f64(x: u64) -> f64 {
    (x / ONE) as f64 + (x % ONE) as f64 / ONE as f64
}

/// The edge set `base` (sorted, distinct, no self-loops) after `ops` in
/// order (the last operation on a pair wins; self-loops are dropped), by
/// one stable sort of the operations and a merge: what recovery uses to
/// fold many epochs' logs into a snapshot without a step per epoch.
pub fn apply_ops_to(base: Vec<(u64, u64)>, ops: &[EdgeOp]) -> Vec<(u64, u64)> {
    use std::cmp::Ordering;
    if ops.is_empty() {
        return base;
    }
    let mut last: Vec<(u64, u64, bool)> = ops
        .iter()
        .filter(|op| op.src != op.dst)
        .map(|op| (op.src, op.dst, op.insert))
        .collect();
    // Stable: the operations on one pair stay in order; keep the last.
    last.sort_by_key(|&(a, b, _)| (a, b));
    let mut w = 0;
    for i in 0..last.len() {
        if last
            .get(i + 1)
            .is_none_or(|n| (n.0, n.1) != (last[i].0, last[i].1))
        {
            last[w] = last[i];
            w += 1;
        }
    }
    last.truncate(w);
    let mut out = Vec::with_capacity(base.len() + last.len());
    let (mut i, mut j) = (0, 0);
    loop {
        match (base.get(i), last.get(j)) {
            (Some(&p), Some(&(a, b, insert))) => match p.cmp(&(a, b)) {
                Ordering::Less => {
                    out.push(p);
                    i += 1;
                }
                Ordering::Equal => {
                    if insert {
                        out.push(p);
                    }
                    i += 1;
                    j += 1;
                }
                Ordering::Greater => {
                    if insert {
                        out.push((a, b));
                    }
                    j += 1;
                }
            },
            (Some(&p), None) => {
                out.push(p);
                i += 1;
            }
            (None, Some(&(a, b, insert))) => {
                if insert {
                    out.push((a, b));
                }
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(ops: &[EdgeOp]) -> Table {
        tunkrank(&Graph::from_ops(ops)).expect("no overflow")
    }

    #[test]
    fn a_star_gives_the_center_one_per_follower() {
        // 1..=4 follow 0 and nobody else: each contributes (1 + p*0)/1.
        let ops: Vec<_> = (1..=4).map(|b| EdgeOp::insert(0, b)).collect();
        assert_eq!(run(&ops), vec![(0, 4 * ONE)]);
    }

    #[test]
    fn a_chain_propagates_influence_with_p() {
        // 2 follows 1, 1 follows 0.  x(1) = 1.0; x(0) = 1 + p * 1.0.
        let ops = [EdgeOp::insert(0, 1), EdgeOp::insert(1, 2)];
        let x1 = ONE;
        let x0 = ONE + (37 * x1) / 100_000;
        assert_eq!(run(&ops), vec![(0, x0), (1, x1)]);
        assert_eq!(x0, 1_000_370_000);
    }

    #[test]
    fn a_cycle_converges_to_the_least_fixpoint() {
        // 0 -> 1 -> 2 -> 0 (each follows the next one): x = 1 + p x, every
        // node alike; by hand in fixed point from zero: 1e9, then
        // 1e9 + 37*1e9/1e5 = 1_000_370_000, then 1e9 + 370_136, then stable.
        let ops = [
            EdgeOp::insert(0, 1),
            EdgeOp::insert(1, 2),
            EdgeOp::insert(2, 0),
        ];
        let mut x = 0u64;
        loop {
            let next = ONE + (37 * x) / 100_000;
            if next == x {
                break;
            }
            x = next;
        }
        assert_eq!(x, 1_000_370_136);
        assert_eq!(run(&ops), vec![(0, x), (1, x), (2, x)]);
    }

    #[test]
    fn a_node_that_follows_everyone_splits_its_term() {
        // 9 follows 1, 2, 3: each gets 1/3 of 10^9 (integer division).
        let ops = [
            EdgeOp::insert(1, 9),
            EdgeOp::insert(2, 9),
            EdgeOp::insert(3, 9),
        ];
        assert_eq!(
            run(&ops),
            vec![(1, 333_333_333), (2, 333_333_333), (3, 333_333_333)]
        );
    }

    #[test]
    fn set_semantics_last_operation_wins_self_loops_dropped() {
        let ops = [
            EdgeOp::insert(1, 2),
            EdgeOp::insert(1, 2),
            EdgeOp::remove(5, 6),
            EdgeOp::insert(3, 3),
            EdgeOp::insert(1, 4),
            EdgeOp::remove(1, 4),
            EdgeOp::remove(7, 8),
            EdgeOp::insert(7, 8),
        ];
        assert_eq!(run(&ops), vec![(1, ONE), (7, ONE)]);
        assert!(run(&[EdgeOp::insert(3, 3)]).is_empty());
    }

    #[test]
    fn the_doc_example_by_hand() {
        // 2 follows 1 and 3; 3 follows 1. term(3) = 1e9 (+ p x(3)); x(3) = term(2) = 5e8.
        // x(1) = term(2) + term(3) = 5e8 + (1e9 + 37*5e8/1e5) = 5e8 + 1_000_185_000.
        assert_eq!(
            run(&[
                EdgeOp::insert(1, 2),
                EdgeOp::insert(1, 3),
                EdgeOp::insert(3, 2)
            ]),
            vec![(1, 1_500_185_000), (3, 500_000_000)]
        );
    }

    fn ops_strategy() -> impl Strategy<Value = Vec<EdgeOp>> {
        proptest::collection::vec((0u64..30, 0u64..30, proptest::bool::weighted(0.85)), 0..200)
            .prop_map(|v| {
                v.into_iter()
                    .map(|(a, b, ins)| EdgeOp {
                        src: a,
                        dst: b,
                        insert: ins,
                    })
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn ops_folded_into_a_base_equal_ops_applied_in_order(a in ops_strategy(), b in ops_strategy()) {
            let all: Vec<EdgeOp> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(apply_ops_to(apply_ops(&a), &b), apply_ops(&all));
            prop_assert_eq!(apply_ops_to(Vec::new(), &all), apply_ops(&all));
        }

        #[test]
        fn fixed_point_is_within_the_bound_of_f64(ops in ops_strategy()) {
            let g = Graph::from_ops(&ops);
            let fixed = tunkrank(&g).expect("no overflow");
            let float = tunkrank_f64(&g);
            prop_assert_eq!(fixed.len(), float.len());
            for (i, (&(n, x), &(m, y))) in fixed.iter().zip(&float).enumerate() {
                prop_assert_eq!(n, m);
                let a = g.index_of(n).unwrap_or(0);
                let followers = g.offsets[a + 1] - g.offsets[a];
                let diff = (to_f64(x) - y).abs();
                prop_assert!(diff <= tolerance(followers, y), "row {} node {}: fixed {} f64 {} diff {}", i, n, x, y, diff);
            }
        }
    }
}
