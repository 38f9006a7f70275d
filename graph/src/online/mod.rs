//! Incremental TunkRank: per epoch, apply edge insertions and removals and
//! get the nodes whose influence changed, exactly equal to a from-scratch
//! computation on all edges so far. The [`Online`] trait, and its three
//! implementations, all bit-equal:
//! - [`Recompute`]: keep the graph, rerun the exact from-zero iteration in
//!   parallel each epoch (the default; fastest by far);
//! - [`Layered`]: push deltas through every stored round;
//! - [`Differential`]: the iteration as a differential dataflow.
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

mod differential;
mod layered;
mod recompute;

pub use differential::Differential;
pub use layered::Layered;
pub use recompute::Recompute;

use crate::table::row_hash;
use crate::{EdgeOp, Overflow, Table};

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
        check_impl(super::Recompute::new(1), epochs);
        check_impl(super::Recompute::new(3), epochs);
        check_impl(super::Recompute::new(2).relabel_often(), epochs);
        check_impl(super::Recompute::new(2).push_always(true), epochs);
        check_impl(super::Recompute::new(1).push_always(false), epochs);
        check_listing(super::Recompute::new(2), epochs, false);
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
        let bulk = super::Recompute::from_pairs(&online.edges(), 2).expect("no overflow");
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
            let online = super::Differential::new(workers).expect("workers");
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
