//! TunkRank from scratch on timely dataflow: nodes partitioned over the
//! workers, iterated from zero to the exact fixpoint, the same bits as the
//! reference.
//!
//! Node `v` belongs to worker `owner(v)`. An edge `(a, b)` (b follows a) lives
//! with its follower's owner, so `following(b)` and `term(b)` are local. A
//! round is one timely timestamp: each worker sums the terms of its followers
//! per followed node (combining locally first), sends the partial sums to the
//! followed nodes' owners, which add them up into the new values and count
//! what changed; the counts are broadcast, and the iteration stops after the
//! first round in which nothing changed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Capability, Exchange, Operator, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};
use timely::progress::frontier::MutableAntichain;

use crate::{term, Overflow, Table};

/// Why a batch run failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// A value overflowed 64-bit fixed point.
    #[error(transparent)]
    Overflow(#[from] Overflow),
    /// Timely could not start or a worker failed.
    #[error("timely: {0}")]
    Timely(String),
}

/// The worker that owns node `v` among `peers`.
#[inline]
pub fn owner(v: u64, peers: usize) -> usize {
    // A fixed mix, so that ownership does not depend on a hasher's seed.
    let mut z = v.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    // The high word of mix x peers: a multiply, where `%` is a division
    // (every worker routes every edge through this).
    ((u128::from(z ^ (z >> 31)) * peers as u128) >> 64) as usize
}

/// A worker's share of the graph: the edges of the followers it owns.
pub(crate) struct Share {
    /// Distinct followed nodes of the local edges, ascending.
    targets: Vec<u64>,
    /// The local followers of `targets[i]` are `followers[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<usize>,
    /// Local follower indices (ranks: see [`by_following`]).
    followers: Vec<u32>,
    /// How many nodes each local follower follows, by local index.
    following: Vec<u32>,
    /// The number of each local follower id; `None` when the ids are the
    /// numbers (see [`ids_are_indices`]).
    index: Option<crate::IdIndex>,
    /// The local follower index of each number (see [`by_following`]), or
    /// [`NO_FOLLOWER`].
    rank: Vec<u32>,
}

impl Share {
    /// Takes the worker's edges in the pairs' order (sorted by followed
    /// node): no sort.
    pub(crate) fn new(pairs: &[(u64, u64)], index: usize, peers: usize) -> Self {
        let max_b = pairs.iter().map(|&(_, b)| b).max().unwrap_or(0);
        let mut local = Local::new(pairs.len() / peers, max_b);
        for &(a, b) in pairs {
            if owner(b, peers) == index {
                local.push(a, b);
            }
        }
        local.share()
    }

    /// The local follower index of node `b`, if it is a local follower.
    fn follower_index(&self, b: u64) -> Option<u32> {
        let number = match &self.index {
            Some(index) => index.get(b)? as usize,
            None => usize::try_from(b).ok()?,
        };
        self.rank.get(number).copied().filter(|&r| r != NO_FOLLOWER)
    }
}

/// Whether a worker with about `edges` edges and follower ids up to
/// `max_id` indexes its followers by id: no numbering, and arrays by id
/// that hold at most one slot per edge (so that a round's pass over them
/// costs no more than its pass over the edges), or are small anyway.
/// Most graph datasets number their nodes densely, and R-MAT ids are a
/// permutation of `0..2^scale`.
fn ids_are_indices(max_id: u64, edges: usize) -> bool {
    max_id < u64::from(NO_FOLLOWER) && max_id <= edges.max(1 << 16) as u64
}

/// A worker's edges as they come, sorted: the followed nodes and where
/// their followers start, the followers by id (or by index already, when
/// the ids are the indices).
struct Local {
    targets: Vec<u64>,
    offsets: Vec<usize>,
    /// Followers by id, when they need numbering.
    ids: Vec<u64>,
    /// Followers by index, when the ids are the indices.
    indices: Vec<u32>,
    /// The largest follower id, when the ids are the indices.
    direct: Option<u64>,
}

impl Local {
    /// For about `len` edges whose follower ids are at most `max_b`.
    fn new(len: usize, max_b: u64) -> Self {
        let cap = len + len / 32;
        let direct = ids_are_indices(max_b, len).then_some(max_b);
        let (ids, indices) = match direct {
            Some(_) => (Vec::new(), Vec::with_capacity(cap)),
            None => (Vec::with_capacity(cap), Vec::new()),
        };
        Self {
            targets: Vec::new(),
            offsets: Vec::new(),
            ids,
            indices,
            direct,
        }
    }

    #[inline]
    fn push(&mut self, a: u64, b: u64) {
        if self.targets.last() != Some(&a) {
            self.targets.push(a);
            self.offsets.push(self.ids.len() + self.indices.len());
        }
        if self.direct.is_some() {
            // b <= max_b < NO_FOLLOWER.
            self.indices.push(b as u32);
        } else {
            self.ids.push(b);
        }
    }

    /// The share: the followers counted by id when the ids are the
    /// indices, else numbered by lookups that do not wait on one another
    /// (see [`crate::IdIndex::numbering`]).
    fn share(self) -> Share {
        let Self {
            targets,
            mut offsets,
            ids,
            indices,
            direct,
        } = self;
        let (mut followers, slots, index) = match direct {
            Some(max_b) => (indices, max_b as usize + 1, None),
            None => {
                let (index, numbered, followers) =
                    crate::IdIndex::numbering(&[], ids.iter().copied());
                (followers, numbered.len(), Some(index))
            }
        };
        offsets.push(followers.len());
        let mut counts = vec![0u32; slots];
        for &bi in &followers {
            counts[bi as usize] += 1;
        }
        let (rank, following) = by_following(&counts);
        drop(counts);
        for bi in &mut followers {
            *bi = rank[*bi as usize];
        }
        Share {
            targets,
            offsets,
            followers,
            following,
            index,
            rank,
        }
    }
}

/// The local followers ranked by how many nodes each follows, most first:
/// the rank of each index (of each id, when the ids are the indices), or
/// [`NO_FOLLOWER`] for one that follows no one, and the counts by rank.
///
/// A round reads a follower's term once per node it follows. Ranked so,
/// the terms read most sit together at the front of the array, in cache;
/// the ranking is done once and pays for itself within a few rounds. A
/// counting sort: counts from [`RANKED`] on share a bucket.
fn by_following(counts: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let bucket = |c: u32| RANKED - (c as usize).min(RANKED);
    let mut starts = vec![0u32; RANKED + 1];
    for &c in counts {
        if c > 0 {
            starts[bucket(c) + 1] += 1;
        }
    }
    for b in 0..RANKED {
        starts[b + 1] += starts[b];
    }
    let mut following = vec![0u32; starts[RANKED] as usize];
    let rank = counts
        .iter()
        .map(|&c| {
            if c == 0 {
                return NO_FOLLOWER;
            }
            let at = &mut starts[bucket(c)];
            let r = *at;
            following[r as usize] = c;
            *at += 1;
            r
        })
        .collect();
    (rank, following)
}

/// Follow counts from this one on rank alike.
const RANKED: usize = 1 << 12;

/// Removes and returns, in time order, the stashed rounds that the input
/// frontier has passed (a prefix, since rounds are totally ordered).
fn take_complete<V>(
    stash: &mut BTreeMap<u64, V>,
    frontier: &MutableAntichain<u64>,
) -> Vec<(u64, V)> {
    let mut out = Vec::new();
    while let Some(entry) = stash.first_entry() {
        if frontier.less_equal(entry.key()) {
            break;
        }
        out.push(entry.remove_entry());
    }
    out
}

/// What a round reports, broadcast to every worker: nodes changed, and the
/// first node whose sum overflowed.
type Report = (u64, Option<u64>);
/// Reports by round.
type Reports = Rc<RefCell<BTreeMap<u64, Report>>>;
/// Partial sums of a round waiting for its end: capability, sums by owned
/// index, overflow.
type SumStash = BTreeMap<u64, (Capability<u64>, Vec<u64>, Option<u64>)>;

/// `data` exchanged among all workers by `route`: what this worker
/// receives. Every worker must call it at the same point.
pub(crate) fn exchanged<D>(
    worker: &mut timely::worker::Worker,
    data: impl IntoIterator<Item = D>,
    route: impl Fn(&D) -> u64 + 'static,
) -> Vec<D>
where
    D: timely::ExchangeData + Clone,
{
    let received: Rc<RefCell<Vec<D>>> = Rc::default();
    let mut input = InputHandleVec::<u64, D>::new();
    let probe = ProbeHandle::new();
    {
        let received = received.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            input
                .to_stream(scope)
                .exchange(move |d: &D| route(d))
                .unary::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
                    Pipeline,
                    "Received",
                    move |_, _| {
                        move |input, _output| {
                            input.for_each_stamp(|_, data| {
                                let mut received = received.borrow_mut();
                                for batch in data {
                                    received.append(batch);
                                }
                            });
                        }
                    },
                )
                .probe_with(&probe);
        });
    }
    for d in data {
        input.send(d);
    }
    drop(input);
    while !probe.done() {
        worker.step_or_park(None);
    }
    received.take()
}

/// Who sends what to whom, agreed before the rounds. A round's partial
/// sums travel as one array per destination worker, in the order of the
/// sender's targets that the destination owns; the destination learned
/// those targets once, here, and adds each array into its own by a slot
/// list. So a round moves 8 bytes per (sender, target) through timely and
/// no per-record routing, where `(owner, index, sum)` records cost 16 and
/// a push, a route and a pull each.
struct Routes {
    /// The worker that owns each of `share.targets`.
    dest: Vec<u32>,
    /// How many of `share.targets` each worker owns.
    sizes: Vec<usize>,
    /// The nodes this worker owns that have a follower.
    ids: Vec<u64>,
    /// Per sending worker: the index in `ids` of each target it sends.
    slots: Vec<Vec<u32>>,
    /// The local follower index of each of `ids`, or [`NO_FOLLOWER`].
    as_follower: Vec<u32>,
}

/// A partial sums array: destination, sender, sums.
type Sums = (u32, u32, Vec<u64>);

impl Routes {
    fn agree(worker: &mut timely::worker::Worker, share: &Share) -> Self {
        let (me, peers) = (worker.index() as u32, worker.peers());
        let mut lists: Vec<Vec<u64>> = vec![Vec::new(); peers];
        let dest: Vec<u32> = share
            .targets
            .iter()
            .map(|&a| {
                let d = owner(a, peers);
                lists[d].push(a);
                d as u32
            })
            .collect();
        let sizes = lists.iter().map(Vec::len).collect();
        // Every worker sends every worker a list, empty or not.
        let received = exchanged(
            worker,
            lists
                .into_iter()
                .enumerate()
                .map(|(d, list)| (d as u32, me, list)),
            |&(d, _, _)| u64::from(d),
        );
        let (_, ids, of_lists) =
            crate::IdIndex::numbering(&[], received.iter().flat_map(|(_, _, l)| l.iter().copied()));
        // The slots of each sender's list, in the order received.
        let mut slots = vec![Vec::new(); peers];
        let mut at = 0;
        for (_, from, list) in &received {
            slots[*from as usize] = of_lists[at..at + list.len()].to_vec();
            at += list.len();
        }
        let as_follower = ids
            .iter()
            .map(|&a| share.follower_index(a).unwrap_or(NO_FOLLOWER))
            .collect();
        Self {
            dest,
            sizes,
            ids,
            slots,
            as_follower,
        }
    }
}

/// An owned node that follows no one.
const NO_FOLLOWER: u32 = u32::MAX;

/// The from-zero iteration on this worker's share, with every other worker
/// of the computation running the same: this worker's rows of the table
/// (in no order) and the number of rounds, or the first overflow it saw.
pub(crate) fn iterate(
    worker: &mut timely::worker::Worker,
    share: Share,
) -> (Vec<(u64, u64)>, Result<usize, Overflow>) {
    let me = worker.index() as u32;
    let routes = Rc::new(Routes::agree(worker, &share));
    let Share {
        targets,
        offsets,
        followers,
        following,
        index: _,
        rank: _,
    } = share;
    // Terms of the local followers, by local index, kept by the summing
    // operator as the followers' values change (every value starts at 0).
    let terms: Rc<RefCell<Vec<u64>>> = Rc::new(RefCell::new(
        following.iter().map(|&f| term(0, u64::from(f))).collect(),
    ));
    // Values of the nodes this worker owns, as `routes.ids`.
    let values: Rc<RefCell<Vec<u64>>> = Rc::new(RefCell::new(vec![0; routes.ids.len()]));
    let reports: Reports = Rc::new(RefCell::new(BTreeMap::new()));
    let mut input = InputHandleVec::<u64, Sums>::new();
    let probe = ProbeHandle::new();
    {
        let values = values.clone();
        let reports = reports.clone();
        let routes = routes.clone();
        let terms = terms.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            input
                .to_stream(scope)
                .exchange(|&(to, _, _): &Sums| u64::from(to))
                .unary_frontier(Pipeline, "Sum", move |_cap, _info| {
                    let mut stash: SumStash = BTreeMap::new();
                    move |(input, frontier), output| {
                        input.for_each_stamp(|cap, data| {
                            if let Some(cap) = cap.retain_least(output.output_index()) {
                                let t = *cap.time();
                                let entry = stash
                                    .entry(t)
                                    .or_insert_with(|| (cap, vec![0; routes.ids.len()], None));
                                for batch in data {
                                    for (_, from, sums) in batch.drain(..) {
                                        let slots = &routes.slots[from as usize];
                                        for (&i, partial) in slots.iter().zip(sums) {
                                            let slot = &mut entry.1[i as usize];
                                            match slot.checked_add(partial) {
                                                Some(v) => *slot = v,
                                                None => {
                                                    entry.2 =
                                                        entry.2.or(Some(routes.ids[i as usize]))
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        });
                        for (_, (cap, sums, overflow)) in take_complete(&mut stash, frontier) {
                            let mut values = values.borrow_mut();
                            let mut terms = terms.borrow_mut();
                            let mut changed = 0u64;
                            for (i, x) in sums.into_iter().enumerate() {
                                if values[i] != x {
                                    values[i] = x;
                                    changed += 1;
                                    // The same worker holds the node as a
                                    // follower, if it follows anyone.
                                    let bi = routes.as_follower[i];
                                    if bi != NO_FOLLOWER {
                                        let f = u64::from(following[bi as usize]);
                                        terms[bi as usize] = term(x, f);
                                    }
                                }
                            }
                            output.session(&cap).give((changed, overflow));
                        }
                    }
                })
                .container::<Vec<Report>>()
                .broadcast()
                .unary_frontier(Pipeline, "Total", move |_cap, _info| {
                    let mut stash: BTreeMap<u64, (Capability<u64>, u64, Option<u64>)> =
                        BTreeMap::new();
                    move |(input, frontier), output| {
                        input.for_each_stamp(|cap, data| {
                            if let Some(cap) = cap.retain_least(output.output_index()) {
                                let t = *cap.time();
                                let entry = stash.entry(t).or_insert_with(|| (cap, 0, None));
                                for batch in data {
                                    for (changed, overflow) in batch.drain(..) {
                                        entry.1 += changed;
                                        entry.2 = entry.2.or(overflow);
                                    }
                                }
                            }
                        });
                        for (t, (cap, total, overflow)) in take_complete(&mut stash, frontier) {
                            reports.borrow_mut().insert(t, (total, overflow));
                            output.session(&cap).give(());
                        }
                    }
                })
                .container::<Vec<()>>()
                .probe_with(&probe);
        });
    }
    let mut round: u64 = 0;
    let result: Result<usize, Overflow> = loop {
        let mut local_overflow = None;
        let mut out: Vec<Vec<u64>> = routes
            .sizes
            .iter()
            .map(|&n| Vec::with_capacity(n))
            .collect();
        {
            let terms = terms.borrow();
            for (i, &a) in targets.iter().enumerate() {
                let mut sum: u64 = 0;
                for &b in &followers[offsets[i]..offsets[i + 1]] {
                    match sum.checked_add(terms[b as usize]) {
                        Some(v) => sum = v,
                        None => local_overflow = local_overflow.or(Some(a)),
                    }
                }
                out[routes.dest[i] as usize].push(sum);
            }
        }
        for (to, sums) in out.into_iter().enumerate() {
            input.send((to as u32, me, sums));
        }
        round += 1;
        input.advance_to(round);
        // Parked, not spinning, while other workers (perhaps other
        // processes on the same cores) finish the round.
        while probe.less_than(input.time()) {
            worker.step_or_park(None);
        }
        let (changed, overflow) = reports
            .borrow()
            .get(&(round - 1))
            .copied()
            .unwrap_or((0, None));
        if let Some(node) = overflow.or(local_overflow) {
            break Err(Overflow { node });
        }
        if changed == 0 {
            break Ok(round as usize);
        }
    };
    drop(input);
    let table: Vec<(u64, u64)> = routes
        .ids
        .iter()
        .copied()
        .zip(values.borrow().iter().copied())
        .collect();
    (table, result)
}

/// The graph of parts of an edge file that are all inserts (see
/// [`crate::reference::apply_ops`]): sorted, distinct pairs without
/// self-loops, the parts scattered on a thread each, then sorted bucket by
/// bucket on this thread. Removals need the operations' order: the
/// reference builds those.
pub fn graph_of_inserts<P: crate::PairPart>(parts: Vec<P>) -> Vec<(u64, u64)> {
    crate::pairs::union(parts)
}

/// The graph of an edge file's insert-only parts, split among `workers`
/// timely workers of one process: what [`tunkrank_shares`] computes on.
/// The pairs are packed and scattered by worker here; each worker sorts
/// its own, bucket by bucket, as it builds its share, so that no worker
/// scans the whole graph and the sorted graph is never written out.
pub struct Shares {
    split: Arc<crate::pairs::Split>,
    workers: usize,
}

impl Shares {
    /// The graph of `parts` (see [`graph_of_inserts`]), scattered on a
    /// thread per part, split for `workers` workers.
    pub fn of_inserts<P: crate::PairPart>(parts: Vec<P>, workers: usize) -> Self {
        let peers = workers.max(1);
        Self {
            split: Arc::new(crate::pairs::Split::new(parts, peers, move |b| {
                owner(b, peers)
            })),
            workers: peers,
        }
    }
}

/// [`tunkrank`] of the graph in `shares`, on as many timely workers of
/// this process as it was split for: the table, the number of rounds and
/// the number of edges.
pub fn tunkrank_shares(shares: Shares) -> Result<(Table, usize, usize), BatchError> {
    let split = shares.split;
    run(timely::Config::process(shares.workers), move |worker| {
        let w = worker.index();
        let mut local = Local::new(split.bound(w), split.max_follower());
        split.for_each(w, |a, b| local.push(a, b));
        local.share()
    })
}

/// TunkRank of the graph `pairs` (b follows a; sorted, distinct, no
/// self-loops) on timely workers as configured. Returns the table and the
/// number of rounds.
pub fn tunkrank(
    pairs: Arc<Vec<(u64, u64)>>,
    config: timely::Config,
) -> Result<(Table, usize), BatchError> {
    let (table, rounds, _) = run(config, move |worker| {
        Share::new(&pairs, worker.index(), worker.peers())
    })?;
    Ok((table, rounds))
}

/// Runs the iteration on timely workers as configured, each on the share
/// `share` gives it: the table, the rounds, the edges.
fn run(
    config: timely::Config,
    share: impl Fn(&mut timely::worker::Worker) -> Share + Send + Sync + 'static,
) -> Result<(Table, usize, usize), BatchError> {
    let guards = timely::execute(config, move |worker| {
        let share = share(worker);
        let edges = share.followers.len();
        let (part, rounds) = iterate(worker, share);
        rounds.map(|n| (part, n, edges))
    })
    .map_err(BatchError::Timely)?;
    let mut table = Vec::new();
    let (mut rounds, mut edges) = (0, 0);
    for r in guards.join() {
        let (part, n, e) = r.map_err(BatchError::Timely)??;
        rounds = rounds.max(n);
        edges += e;
        table.extend(part);
    }
    table.sort_unstable();
    Ok((table, rounds, edges))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{self, Graph};
    use crate::EdgeOp;
    use proptest::prelude::*;

    fn pairs(ops: &[EdgeOp]) -> Vec<(u64, u64)> {
        reference::apply_ops(ops)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]

        #[test]
        fn batch_equals_the_reference_with_1_2_and_3_workers(
            ops in proptest::collection::vec((0u64..40, 0u64..40, proptest::bool::weighted(0.85)), 0..300)
        ) {
            let ops: Vec<EdgeOp> = ops.into_iter().map(|(a, b, ins)| EdgeOp { src: a, dst: b, insert: ins }).collect();
            let want = reference::tunkrank(&Graph::from_ops(&ops)).expect("no overflow");
            let p = Arc::new(pairs(&ops));
            for workers in [1, 2, 3] {
                let (got, _) = tunkrank(p.clone(), timely::Config::process(workers)).expect("batch");
                prop_assert_eq!(&got, &want, "{} workers", workers);
                if ops.iter().all(|o| o.insert) {
                    let parts = ops.chunks(ops.len().div_ceil(workers).max(1)).map(|c| c.iter().map(|o| (o.src, o.dst)).collect::<Vec<_>>()).collect();
                    let (got, _, _) = tunkrank_shares(Shares::of_inserts(parts, workers)).expect("batch");
                    prop_assert_eq!(&got, &want, "{} workers, shares", workers);
                }
            }
        }
    }

    /// An edge file's parts, sorted and split among the workers as they
    /// are: the reference's table. Large enough to take the packed sort.
    #[test]
    fn shares_of_inserted_parts_equal_the_reference() {
        let mut s = 3u64;
        let dense: Vec<EdgeOp> = (0..300_000)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Skewed: low ids are followed far more often.
                let a = (s >> 40) % ((s >> 20) % 20_000 + 1);
                EdgeOp::insert(a, (s >> 3) % 20_000)
            })
            .collect();
        // The same graph on sparse 64-bit ids: they do not pack (a
        // comparison sort) and take the hashed index.
        let sparse: Vec<EdgeOp> = dense
            .iter()
            .map(|o| EdgeOp::insert(o.src << 40 | 7, o.dst << 40 | 7))
            .collect();
        // Ids below 2^32 that pack but are sparse next to the edges: the
        // packed sort, and followers numbered by a hashed index.
        let spread: Vec<EdgeOp> = dense
            .iter()
            .map(|o| EdgeOp::insert(o.src * 100_003 + 1, o.dst * 100_003 + 1))
            .collect();
        for ops in [dense, sparse, spread] {
            let want = reference::tunkrank(&Graph::from_ops(&ops)).expect("no overflow");
            shares_equal(&ops, &want);
        }
    }

    fn shares_equal(ops: &[EdgeOp], want: &Table) {
        for (parts, workers) in [(1, 1), (2, 2), (3, 2), (2, 3)] {
            let chunk = ops.len().div_ceil(parts);
            let parts: Vec<Vec<(u64, u64)>> = ops
                .chunks(chunk)
                .map(|c| c.iter().map(|o| (o.src, o.dst)).collect())
                .collect();
            if ops.iter().all(|o| (o.src | o.dst) >> 32 == 0) {
                let narrow: Vec<crate::NarrowPairs> = parts
                    .iter()
                    .map(|p| crate::NarrowPairs(p.iter().map(|&(a, b)| a << 32 | b).collect()))
                    .collect();
                let (got, _, _) =
                    tunkrank_shares(Shares::of_inserts(narrow, workers)).expect("batch");
                assert_eq!(&got, want, "{workers} workers, narrow");
            }
            let shares = Shares::of_inserts(parts, workers);
            let (got, _, edges) = tunkrank_shares(shares).expect("batch");
            assert_eq!(edges, pairs(ops).len());
            assert_eq!(&got, want, "{workers} workers");
        }
    }

    /// Sparse 64-bit ids take the hashed index, dense ones the direct
    /// table: the same bits either way.
    #[test]
    fn sparse_and_dense_ids_give_the_same_table() {
        let ops: Vec<EdgeOp> = (0..3000u64)
            .map(|i| {
                let z = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                EdgeOp {
                    src: (z >> 11) % 300,
                    dst: (z >> 37) % 300,
                    insert: true,
                }
            })
            .collect();
        let sparse: Vec<EdgeOp> = ops
            .iter()
            .map(|o| EdgeOp {
                src: o.src << 40 | 7,
                dst: o.dst << 40 | 7,
                insert: true,
            })
            .collect();
        let (dense_t, _) =
            tunkrank(Arc::new(pairs(&ops)), timely::Config::process(2)).expect("dense");
        let (sparse_t, _) =
            tunkrank(Arc::new(pairs(&sparse)), timely::Config::process(2)).expect("sparse");
        let want = reference::tunkrank(&Graph::from_ops(&sparse)).expect("reference");
        assert_eq!(sparse_t, want);
        let relabeled: Vec<(u64, u64)> = dense_t.iter().map(|&(n, x)| (n << 40 | 7, x)).collect();
        assert_eq!(sparse_t, relabeled);
    }

    /// Followers that follow more nodes than the ranking tells apart
    /// ([`RANKED`]), and fewer: the reference's table.
    #[test]
    fn followers_of_any_follow_count_rank_and_sum_right() {
        let wide = RANKED as u64 + 900;
        let mut ops: Vec<EdgeOp> = Vec::new();
        for v in 1..=wide {
            // 0 and 1 follow every v; v follows 2; every third v follows 3.
            ops.push(EdgeOp::insert(v, 0));
            ops.push(EdgeOp::insert(v, 1));
            ops.push(EdgeOp::insert(2, v));
            if v % 3 == 0 {
                ops.push(EdgeOp::insert(3, v));
            }
        }
        let want = reference::tunkrank(&Graph::from_ops(&ops)).expect("no overflow");
        let p = Arc::new(pairs(&ops));
        for workers in [1, 2] {
            let (got, _) = tunkrank(p.clone(), timely::Config::process(workers)).expect("batch");
            assert_eq!(got, want, "{workers} workers");
        }
    }

    #[test]
    fn an_empty_graph_has_an_empty_table() {
        let (t, _) = tunkrank(Arc::new(Vec::new()), timely::Config::process(2)).expect("batch");
        assert!(t.is_empty());
    }
}
