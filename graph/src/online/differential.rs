//! Incremental TunkRank on differential dataflow: the whole from-zero
//! iteration kept as a differential collection, so that it is exact by
//! construction.
//!
//! A value travels in the *difference* of a record, not in its data: node
//! `v` with value `x` is the record `v` with multiplicity `x + 1` (the `+ 1`
//! keeps nodes of value 0 present, so that their terms are pushed). One
//! round of the iteration is
//!
//! ```text
//! terms(b)  = threshold((b, following(b)) semijoin x, |m| term(m - 1, following))
//! next(a)   = 1 + sum over (b follows a) of terms(b)      (follows semijoin terms)
//! ```
//!
//! and consolidation does the sums: when one follower of a node with 100,000
//! followers changes its term, the node's value moves by the difference,
//! without a re-sum (the formulation of differential's own PageRank
//! example). `iterate` keeps every round of every epoch, so a change of the
//! graph updates the from-zero iteration round by round and the result is the
//! least fixpoint, the batch result, bit for bit. The price is memory (the
//! arrangements of every round) and time: a new follow changes the
//! follower's whole contribution, and on a power-law stream even a small
//! epoch touches much of the graph. [`crate::recompute::Recompute`] is the
//! fast path; this one is the concise, obviously-exact one to check it by.
//!
//! The dataflow runs on `W` timely worker threads that live as long as the
//! [`Differential`] value; each epoch is one timestamp of the input.
//!
//! ```
//! use exoflow_graph::online::{Differential, Online};
//! use exoflow_graph::{EdgeOp, ONE};
//! let mut online = Differential::new(2).unwrap();
//! online.apply(&[EdgeOp::insert(1, 2), EdgeOp::insert(1, 3)]).unwrap();
//! assert_eq!(online.value(1), Some(2 * ONE));
//! let update = online.apply(&[EdgeOp::insert(2, 3)]).unwrap();
//! assert_eq!(update.changes.len(), 2); // node 1 loses half of 3's term, node 2 enters
//! assert_eq!(online.value(2), Some(ONE / 2));
//! ```

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use differential_dataflow::input::InputSession;
use differential_dataflow::lattice::Lattice;
use differential_dataflow::operators::iterate::Variable;
use differential_dataflow::VecCollection;
use timely::dataflow::ProbeHandle;
use timely::order::Product;

use super::{Counts, Found, Online, OnlineError, Update};
use crate::{term, EdgeOp, IdMap, Overflow};

/// Multiplicities: values up to `u64::MAX + 1` and their sums fit.
type Diff = i128;

/// An edge `(a, b)`: b follows a.
type Edge = (u64, u64);

/// What the workers answer for one epoch: their share of the changed rows,
/// `(node, change of value + 1)`, or why they stopped.
type Reply = Result<Vec<(u64, Diff)>, String>;

/// Incremental TunkRank on differential dataflow (see the module docs).
pub struct Differential {
    /// One command channel per worker; an epoch sends each its share.
    commands: Vec<Sender<Vec<(Edge, Diff)>>>,
    replies: Receiver<Reply>,
    guards: Option<timely::communication::initialize::WorkerGuards<()>>,
    /// `out[b]`: the nodes b follows (the set semantics is applied here, so
    /// that the dataflow sees each edge with multiplicity 0 or 1).
    out: IdMap<Vec<u64>>,
    edge_count: usize,
    /// The table: nodes with a follower and their value.
    values: IdMap<u64>,
    digest: u64,
    /// Set after an error: the dataflow's state is unknown.
    broken: bool,
}

impl std::fmt::Debug for Differential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Differential")
            .field("workers", &self.commands.len())
            .field("edges", &self.edge_count)
            .field("nodes", &self.values.len())
            .finish_non_exhaustive()
    }
}

/// One round of the from-zero iteration, carried in multiplicities: `x` holds
/// each node with multiplicity value + 1.
fn tunkrank<'s, T>(edges: VecCollection<'s, T, Edge, Diff>) -> VecCollection<'s, T, u64, Diff>
where
    T: timely::progress::Timestamp + Lattice + Ord,
{
    // (b, a): b follows a, keyed by the follower.
    let follows = edges.clone().map(|(a, b)| (b, a));
    let following = follows.clone().map(|(b, _)| b).count_core::<Diff>();
    let nodes = edges
        .clone()
        .flat_map(|(a, b)| [a, b])
        .distinct_core::<Diff>();
    let followed = edges.map(|(a, _)| (a, ())).distinct_core::<Diff>();
    let outer = nodes.scope();
    let table = outer.iterative::<u32, _, _>(|inner| {
        let follows = follows.enter(inner);
        let following = following.enter(inner);
        let nodes = nodes.enter(inner);
        // x_0 = 0 everywhere: multiplicity 1.
        let (x_bind, x) = Variable::new_from(nodes.clone(), Product::new(Default::default(), 1));
        let terms = following
            .semijoin(x)
            .threshold(|&(_, f), &m| {
                if m <= 0 {
                    return 0;
                }
                // Beyond 64 bits the result is reported as an overflow;
                // saturate here so that the iteration still ends.
                let x = u64::try_from(m - 1).unwrap_or(u64::MAX);
                let f = u64::try_from(f).unwrap_or(u64::MAX);
                Diff::from(term(x, f))
            })
            .map(|(b, _)| b);
        let next = follows
            .semijoin(terms)
            .map(|(_, a)| a)
            .concat(nodes)
            .consolidate();
        x_bind.set(next.clone());
        next.leave(outer)
    });
    // Only nodes with a follower are in the table.
    followed.semijoin(table).map(|(a, ())| a)
}

impl Differential {
    /// An empty graph, on `workers` timely worker threads.
    pub fn new(workers: usize) -> Result<Self, OnlineError> {
        let workers = workers.max(1);
        let (reply_tx, replies) = crossbeam_channel::unbounded::<Reply>();
        let mut commands = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = crossbeam_channel::unbounded::<Vec<(Edge, Diff)>>();
            commands.push(tx);
            receivers.push(Some(rx));
        }
        let receivers = Arc::new(parking_lot::Mutex::new(receivers));
        let config = if workers == 1 {
            timely::Config::thread()
        } else {
            timely::Config::process(workers)
        };
        let guards = timely::execute(config, move |worker| {
            let index = worker.index();
            let Some(commands) = receivers.lock().get_mut(index).and_then(Option::take) else {
                return;
            };
            let reply = reply_tx.clone();
            let mut input: InputSession<u64, Edge, Diff> = InputSession::new();
            let probe = ProbeHandle::new();
            let changed: Rc<RefCell<Vec<(u64, Diff)>>> = Rc::new(RefCell::new(Vec::new()));
            let sink = changed.clone();
            worker.dataflow::<u64, _, _>(|scope| {
                tunkrank(input.to_collection(scope))
                    .inspect(move |(node, _, diff)| sink.borrow_mut().push((*node, *diff)))
                    .probe_with(&probe);
            });
            // One epoch per command; a closed channel ends the worker.
            while let Ok(share) = commands.recv() {
                for (edge, diff) in share {
                    input.update(edge, diff);
                }
                let next = *input.time() + 1;
                input.advance_to(next);
                input.flush();
                while probe.less_than(input.time()) {
                    worker.step_or_park(None);
                }
                let rows = std::mem::take(&mut *changed.borrow_mut());
                if reply.send(Ok(rows)).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| OnlineError::Stopped(format!("starting the differential workers: {e}")))?;
        Ok(Self {
            commands,
            replies,
            guards: Some(guards),
            out: IdMap::default(),
            edge_count: 0,
            values: IdMap::default(),
            digest: 0,
            broken: false,
        })
    }

    /// The graph of `pairs` (b follows a; distinct, no self-loops), loaded as
    /// one epoch.
    pub fn from_pairs(pairs: &[(u64, u64)], workers: usize) -> Result<Self, OnlineError> {
        let mut d = Self::new(workers)?;
        let ops: Vec<EdgeOp> = pairs.iter().map(|&(a, b)| EdgeOp::insert(a, b)).collect();
        d.apply(&ops)?;
        Ok(d)
    }

    /// Sends one epoch's edge changes to the workers and gathers the changed
    /// rows, `(node, change of value + 1)`.
    fn run_epoch(&mut self, changes: Vec<(Edge, Diff)>) -> Result<IdMap<Diff>, String> {
        let w = self.commands.len();
        let mut shares: Vec<Vec<(Edge, Diff)>> = vec![Vec::new(); w];
        for (i, c) in changes.into_iter().enumerate() {
            shares[i % w].push(c);
        }
        for (tx, share) in self.commands.iter().zip(shares) {
            tx.send(share)
                .map_err(|_| "a differential worker stopped".to_owned())?;
        }
        let mut delta: IdMap<Diff> = IdMap::default();
        for _ in 0..w {
            let rows = self
                .replies
                .recv()
                .map_err(|_| "a differential worker stopped".to_owned())??;
            for (node, d) in rows {
                *delta.entry(node).or_insert(0) += d;
            }
        }
        Ok(delta)
    }
}

impl Drop for Differential {
    fn drop(&mut self) {
        // Closing the command channels ends the workers' loops.
        self.commands.clear();
        if let Some(g) = self.guards.take() {
            drop(g.join());
        }
    }
}

impl Online for Differential {
    fn apply(&mut self, ops: &[EdgeOp]) -> Result<Update, OnlineError> {
        if self.broken {
            return Err(OnlineError::Stopped(
                "an earlier epoch failed; the state is unknown".to_owned(),
            ));
        }
        // Applied in order, as the other implementations count them; the
        // dataflow gets each pair's net change (0 or +-1).
        let mut net: std::collections::HashMap<Edge, Diff> = std::collections::HashMap::new();
        let (mut inserted, mut removed) = (0u64, 0u64);
        for op in ops.iter().filter(|op| op.src != op.dst) {
            let (a, b) = (op.src, op.dst);
            let list = self.out.entry(b).or_default();
            let pos = list.iter().position(|&x| x == a);
            match (pos, op.insert) {
                (None, true) => {
                    list.push(a);
                    inserted += 1;
                    *net.entry((a, b)).or_insert(0) += 1;
                }
                (Some(p), false) => {
                    list.swap_remove(p);
                    removed += 1;
                    *net.entry((a, b)).or_insert(0) -= 1;
                }
                _ => {}
            }
            if list.is_empty() {
                self.out.remove(&b);
            }
        }
        let changes: Vec<(Edge, Diff)> = net.into_iter().filter(|&(_, d)| d != 0).collect();
        self.edge_count = self.edge_count + inserted as usize - removed as usize;
        let mut update = Update {
            changes: Vec::new(),
            counts: Counts::default(),
            inserted,
            removed,
            rounds: 0,
        };
        if changes.is_empty() {
            return Ok(update);
        }
        let delta = match self.run_epoch(changes) {
            Ok(d) => d,
            Err(e) => {
                self.broken = true;
                return Err(OnlineError::Stopped(e));
            }
        };
        let mut found = Found::new(true);
        for (node, d) in delta {
            if d == 0 {
                continue;
            }
            let old = self.values.get(&node).copied();
            let total = old.map_or(0, |x| Diff::from(x) + 1) + d;
            let new = if total <= 0 {
                None
            } else {
                match u64::try_from(total - 1) {
                    Ok(x) => Some(x),
                    Err(_) => {
                        self.broken = true;
                        return Err(Overflow { node }.into());
                    }
                }
            };
            match new {
                Some(x) => self.values.insert(node, x),
                None => self.values.remove(&node),
            };
            found.record(&mut self.digest, node, old, new);
        }
        update.changes = found.list;
        update.counts = found.counts;
        Ok(update)
    }

    fn value(&self, node: u64) -> Option<u64> {
        self.values.get(&node).copied()
    }

    fn rows(&self) -> Box<dyn Iterator<Item = (u64, u64)> + '_> {
        Box::new(self.values.iter().map(|(&n, &x)| (n, x)))
    }

    fn digest(&self) -> u64 {
        self.digest
    }

    fn edges(&self) -> Vec<(u64, u64)> {
        let mut e: Vec<(u64, u64)> = self
            .out
            .iter()
            .flat_map(|(&b, l)| l.iter().map(move |&a| (a, b)))
            .collect();
        e.sort_unstable();
        e
    }

    fn edge_count(&self) -> usize {
        self.edge_count
    }

    fn memory_bytes(&self) -> usize {
        // The driver's own maps; the dataflow's arrangements are not
        // counted here (see the benchmark for the process's resident size).
        let lists: usize = self.out.values().map(|l| l.capacity() * 8 + 24).sum();
        self.out.capacity() * 9 + lists + self.values.capacity() * 17
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online::tests::{check_impl, epochs_strategy, spread};
    use proptest::prelude::*;

    proptest! {
        // Each case starts timely workers: fewer cases than the other
        // implementations' tests, the same checks after every epoch.
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn every_epoch_equals_the_reference_with_1_and_2_workers(epochs in epochs_strategy(12)) {
            for workers in [1, 2] {
                check_impl(Differential::new(workers).expect("workers"), &epochs);
            }
        }

        #[test]
        fn sparse_ids(epochs in epochs_strategy(40)) {
            check_impl(Differential::new(2).expect("workers"), &spread(&epochs));
        }
    }

    #[test]
    fn a_bulk_load_equals_the_reference_and_then_stays_equal() {
        let ops: Vec<EdgeOp> = (0..400u64)
            .map(|i| EdgeOp::insert(i % 37, (i * 7 + 3) % 53))
            .collect();
        let pairs = crate::reference::apply_ops(&ops);
        let mut d = Differential::from_pairs(&pairs, 2).expect("load");
        let want = crate::reference::tunkrank(&crate::reference::Graph::from_sorted_pairs(&pairs))
            .expect("no overflow");
        assert_eq!(d.table(), want);
        assert_eq!(d.edge_count(), pairs.len());
        // Removing every edge empties the table.
        let all: Vec<EdgeOp> = pairs.iter().map(|&(a, b)| EdgeOp::remove(a, b)).collect();
        let u = d.apply(&all).expect("apply");
        assert_eq!(u.removed, pairs.len() as u64);
        assert_eq!(u.changes.len(), want.len());
        assert!(d.table().is_empty());
        assert_eq!(d.digest(), crate::digest(&[]));
    }
}
