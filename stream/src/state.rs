//! The online state of a job (an incremental TunkRank, [`OnlineImpl`]) and
//! what an epoch makes of it: the epoch's deterministic output, its change
//! set, and the graph handed to snapshots and batch recomputations.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::error::{Context, Result};
use exoflow_graph::online::{Differential, EdgesLater, Layered, Online, Recompute};
use exoflow_graph::{format_fixed, EdgeOp};
use exoflow_ingest::edge::{Edge, Op};
use exoflow_ingest::source::{BadRecord, Source};
use serde::Serialize;

use crate::config::{JobConfig, OnlineImpl};

/// An epoch's edges as the graph's operations.
pub(crate) fn ops_of(edges: &[Edge]) -> impl Iterator<Item = EdgeOp> + '_ {
    edges.iter().map(|e| EdgeOp {
        src: e.src,
        dst: e.dst,
        insert: e.op == Op::Insert,
    })
}

/// The deterministic output of an epoch.
#[derive(Debug, Serialize)]
struct OnlineOutput<'a> {
    epoch: u64,
    edges: u64,
    inserted: u64,
    removed: u64,
    changed: u64,
    nodes: u64,
    digest: String,
    top: &'a [(u64, String)],
}

/// What an epoch publishes: its output, and its change set if asked.
pub(crate) struct EpochOutput {
    /// `outputs/<wid>/online/<e>`.
    pub(crate) output: Vec<u8>,
    /// `outputs/<wid>/changes/<e>` (CSV), with `--emit-changes`.
    pub(crate) changes: Option<Vec<u8>>,
}

/// The online state: the computation and what the outputs need besides.
pub(crate) struct OnlineState {
    pub(crate) online: Box<dyn Online + Send>,
    nodes: u64,
}

impl OnlineState {
    pub(crate) fn from_edges(cfg: &JobConfig, edges: &[(u64, u64)]) -> Result<Self> {
        let mut online: Box<dyn Online + Send> = match cfg.online {
            OnlineImpl::Recompute => Box::new(Recompute::from_pairs(edges, cfg.workers)?),
            OnlineImpl::Layered => Box::new(Layered::from_pairs(edges)?),
            OnlineImpl::Differential => Box::new(Differential::from_pairs(edges, cfg.workers)?),
        };
        // The outputs count the changes; only a change set lists them.
        online.list_changes(cfg.emit_changes);
        let nodes = online.rows().count() as u64;
        Ok(Self { online, nodes })
    }

    /// Applies an epoch; returns its output bytes and, if asked, its change
    /// set as CSV.
    pub(crate) fn apply(
        &mut self,
        epoch: u64,
        ops: &[EdgeOp],
        with_changes: bool,
    ) -> Result<EpochOutput> {
        let update = self
            .online
            .apply(ops)
            .with_context(|| format!("epoch {epoch}"))?;
        self.nodes = self.nodes + update.counts.entered - update.counts.left;
        let top: Vec<(u64, String)> = self
            .online
            .top(100)
            .into_iter()
            .map(|(n, x)| (n, format_fixed(x)))
            .collect();
        let out = OnlineOutput {
            epoch,
            edges: ops.len() as u64,
            inserted: update.inserted,
            removed: update.removed,
            changed: update.counts.changed,
            nodes: self.nodes,
            digest: format!("{:016x}", self.online.digest()),
            top: &top,
        };
        let mut bytes = serde_json::to_vec_pretty(&out)?;
        bytes.push(b'\n');
        let changes = with_changes.then(|| {
            let mut sorted = update.changes;
            sorted.sort_unstable();
            let mut s = String::from("node,old,new\n");
            for c in &sorted {
                let f = |x: Option<u64>| x.map(format_fixed).unwrap_or_default();
                let _ = writeln!(s, "{},{},{}", c.node, f(c.old), f(c.new));
            }
            s.into_bytes()
        });
        Ok(EpochOutput {
            output: bytes,
            changes,
        })
    }
}

/// The malformed records of an epoch, as `outputs/<wid>/rejected/<e>`.
pub(crate) fn rejected_bytes(source: &dyn Source, bad: &[BadRecord]) -> Vec<u8> {
    let mut s = format!(
        "# source: {}\npartition\tposition\treason\traw\n",
        source.describe()
    );
    for b in bad {
        let _ = writeln!(s, "{}\t{}\t{}\t{}", b.partition, b.at, b.reason, b.raw);
    }
    s.into_bytes()
}

/// The graph of an epoch for its snapshot and its batch task: copied when
/// the epoch is computed (cheap for the default online state), sorted when
/// first asked for, by the batch task or the snapshot writer, off the
/// streaming thread, which goes on with the next epochs meanwhile.
pub(crate) struct EpochGraph {
    sorted: std::sync::OnceLock<Arc<Vec<(u64, u64)>>>,
    make: parking_lot::Mutex<Option<EdgesLater>>,
}

impl EpochGraph {
    pub(crate) fn of(state: &OnlineState) -> Arc<Self> {
        Arc::new(Self {
            sorted: std::sync::OnceLock::new(),
            make: parking_lot::Mutex::new(Some(state.online.edges_later())),
        })
    }

    /// The graph already sorted, for a caller that needs it at once.
    pub(crate) fn sorted(edges: Vec<(u64, u64)>) -> Arc<Self> {
        Arc::new(Self {
            sorted: std::sync::OnceLock::from(Arc::new(edges)),
            make: parking_lot::Mutex::new(None),
        })
    }

    /// The edges `(a, b)`, sorted (computed by the first caller; the
    /// others wait for it).
    pub(crate) fn edges(&self) -> Arc<Vec<(u64, u64)>> {
        self.sorted
            .get_or_init(|| Arc::new(self.make.lock().take().map_or_else(Vec::new, |make| make())))
            .clone()
    }
}
