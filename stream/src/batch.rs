//! The batch stage: every B epochs from epoch S, a task of the
//! same workflow recomputes TunkRank from scratch (timely dataflow) on the
//! graph as committed at that epoch, beside the streaming stage, and
//! compares it with the online table at the same epoch.
//!
//! The stream hands the task the epoch's graph and online table in memory
//! (the paper's Fig 8b: no round trip through the store). The task is a
//! spawned engine task with id `stream.batch-<e>`: its small report is
//! checkpointed, so a resumed stream that spawns it again gets the report
//! back without recomputing. Its output `outputs/<wid>/batch/<e>` (the batch
//! table's digest and the difference report) is written once, only after
//! `COMMIT(e)`, and compared byte for byte when it exists. A difference
//! other than exactly 0 fails the job loudly: online and batch compute the
//! same fixed-point map from zero, so any difference is a bug.

use std::sync::Arc;
use std::time::Instant;

use crate::error::{Context, Result, StreamError};
use exoflow_engine::failpoint;
use exoflow_engine::store::Store;
use exoflow_engine::{Failure, Spawned, TaskContext, TaskOptions};
use exoflow_graph::cluster::Cluster;
use exoflow_graph::{digest, format_fixed, Table};
use serde::{Deserialize, Serialize};

use crate::committer::Progress;
use crate::layout::Layout;
use crate::priority::at_low_priority;
use crate::state::EpochGraph;
use crate::{now_ms, write_once};

/// Batch tasks in flight at most; the stream waits for the oldest beyond.
const IN_FLIGHT: usize = 2;

/// What a batch task reports (checkpointed by the engine).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchReport {
    /// The epoch.
    pub epoch: u64,
    /// Nodes in either table.
    pub nodes: u64,
    /// Nodes whose batch and online values differ.
    pub differing: u64,
    /// Largest |batch - online|, in fixed point.
    pub max_diff: u64,
    /// Mean |batch - online| over `nodes`, in influence units.
    pub mean_diff: f64,
}

/// The deterministic output `outputs/<wid>/batch/<e>`.
#[derive(Serialize)]
struct BatchOutput<'a> {
    epoch: u64,
    edges: u64,
    nodes: u64,
    rounds: usize,
    digest: String,
    online_digest: String,
    differing: u64,
    mean_diff: String,
    max_diff: String,
    top: &'a [(u64, String)],
}

/// A batch recomputation's results.
pub struct Recomputed {
    /// The output `outputs/<wid>/batch/<e>`.
    pub output: Vec<u8>,
    /// Its report.
    pub report: BatchReport,
    /// The batch table.
    pub table: Table,
}

/// Recomputes TunkRank of `edges` (sorted, distinct pairs) on the cluster
/// when there is one, otherwise on `workers` timely workers of this
/// process, and compares it with `online`.
pub fn recompute(
    epoch: u64,
    edges: Arc<Vec<(u64, u64)>>,
    online: &Table,
    workers: usize,
    cluster: Option<&Cluster>,
) -> Result<Recomputed> {
    let n_edges = edges.len() as u64;
    let (table, rounds) = match cluster {
        Some(c) => c.tunkrank(edges),
        None => exoflow_graph::batch::tunkrank(edges, timely::Config::process(workers.max(1))),
    }
    .with_context(|| format!("batch TunkRank at epoch {epoch}"))?;
    let report = compare(epoch, &table, online);
    let top: Vec<(u64, String)> = exoflow_graph::online::top_k(table.iter().copied(), 100)
        .into_iter()
        .map(|(n, x)| (n, format_fixed(x)))
        .collect();
    let out = BatchOutput {
        epoch,
        edges: n_edges,
        nodes: table.len() as u64,
        rounds,
        digest: format!("{:016x}", digest(&table)),
        online_digest: format!("{:016x}", digest(online)),
        differing: report.differing,
        mean_diff: format!("{:e}", report.mean_diff),
        max_diff: format_fixed(report.max_diff),
        top: &top,
    };
    let mut bytes = serde_json::to_vec_pretty(&out)?;
    bytes.push(b'\n');
    Ok(Recomputed {
        output: bytes,
        report,
        table,
    })
}

/// |batch - online| over the union of both tables' nodes (a missing row
/// is 0); both are sorted by node.
fn compare(epoch: u64, batch: &Table, online: &Table) -> BatchReport {
    let (mut i, mut j) = (0, 0);
    let (mut nodes, mut differing, mut max, mut sum) = (0u64, 0u64, 0u64, 0u128);
    while i < batch.len() || j < online.len() {
        let (b, o) = match (batch.get(i), online.get(j)) {
            (Some(&(nb, xb)), Some(&(no, xo))) if nb == no => {
                i += 1;
                j += 1;
                (xb, xo)
            }
            (Some(&(nb, xb)), Some(&(no, _))) if nb < no => {
                i += 1;
                (xb, 0)
            }
            (Some(&(_, xb)), None) => {
                i += 1;
                (xb, 0)
            }
            (_, Some(&(_, xo))) => {
                j += 1;
                (0, xo)
            }
            (None, None) => break,
        };
        nodes += 1;
        let d = b.abs_diff(o);
        if d > 0 {
            differing += 1;
            max = max.max(d);
            sum += u128::from(d);
        }
    }
    let mean_diff = if nodes == 0 {
        0.0
    } else {
        sum as f64 / nodes as f64 / exoflow_graph::ONE as f64
    };
    BatchReport {
        epoch,
        nodes,
        differing,
        max_diff: max,
        mean_diff,
    }
}

/// One row of `batches.csv`.
#[derive(Debug, Clone)]
struct BatchRow {
    epoch: u64,
    started_at: u64,
    finished_at: u64,
    report: BatchReport,
}

/// The batch tasks of a stream run.
pub(crate) struct Batcher<'a, 'c> {
    ctx: &'a TaskContext<'c>,
    store: Arc<dyn Store>,
    wid: String,
    generation: u64,
    workers: usize,
    cluster: Option<Arc<Cluster>>,
    progress: Arc<Progress>,
    quiet: bool,
    rows: Arc<parking_lot::Mutex<Vec<BatchRow>>>,
    pending: Vec<(u64, Spawned<BatchReport>)>,
}

impl<'a, 'c> Batcher<'a, 'c> {
    pub(crate) fn new(
        ctx: &'a TaskContext<'c>,
        workers: usize,
        progress: Arc<Progress>,
        cluster: Option<Arc<Cluster>>,
        quiet: bool,
    ) -> Self {
        Self {
            ctx,
            store: ctx.store_arc(),
            wid: ctx.workflow_id().as_str().to_owned(),
            generation: ctx.generation(),
            workers,
            cluster,
            progress,
            quiet,
            rows: Arc::new(parking_lot::Mutex::new(Vec::new())),
            pending: Vec::new(),
        }
    }

    /// Starts the batch task of epoch `e` on the graph and online table
    /// of that epoch.
    pub(crate) fn launch(&mut self, e: u64, graph: Arc<EpochGraph>, online: Table) -> Result<()> {
        self.reap()?;
        while self.pending.len() >= IN_FLIGHT {
            let (epoch, oldest) = self.pending.remove(0);
            self.check(epoch, oldest)?;
        }
        let online = Arc::new(online);
        let (store, progress, rows) =
            (self.store.clone(), self.progress.clone(), self.rows.clone());
        let keys = Layout::new(&self.wid);
        let quiet = self.quiet;
        let (generation, workers, cluster) = (self.generation, self.workers, self.cluster.clone());
        let spawned = self
            .ctx
            .spawn(
                &format!("batch-{e:010}"),
                TaskOptions::sync(),
                move |_| {
                    let started_at = now_ms();
                    let t = Instant::now();
                    let Recomputed {
                        output: bytes,
                        report,
                        ..
                    } = at_low_priority(|| {
                        recompute(e, graph.edges(), &online, workers, cluster.as_deref())
                    })
                    .map_err(|err| Failure::fatal(err.report()))?;
                    failpoint::hit("stream.batch_done");
                    // The graph of epoch e is only a fact once COMMIT(e) is.
                    progress.wait_committed(e).map_err(|err| Failure::fatal(err.report()))?;
                    write_once(store.as_ref(), &keys.batch(e), &bytes)
                        .map_err(|err| Failure::fatal(err.report()))?;
                    let finished_at = now_ms();
                    if !quiet {
                        eprintln!(
                            "batch {e:>5}: {} nodes recomputed in {} ms, {} differ from online (max |diff| {})",
                            report.nodes,
                            t.elapsed().as_millis(),
                            report.differing,
                            format_fixed(report.max_diff)
                        );
                    }
                    let csv = {
                        let mut rows = rows.lock();
                        rows.push(BatchRow {
                            epoch: e,
                            started_at,
                            finished_at,
                            report: report.clone(),
                        });
                        batches_csv(&rows)
                    };
                    store
                        .put(&keys.batches_metrics(generation), csv.as_bytes())
                        .map_err(|err| Failure::fatal(format!("writing batch metrics: {err}")))?;
                    Ok(report)
                },
            )
            .map_err(|f| {
                StreamError::Failed(format!(
                    "starting the batch task of epoch {e}: {}",
                    f.message()
                ))
            })?;
        self.pending.push((e, spawned));
        Ok(())
    }

    /// The oldest epoch whose batch task is still running.
    pub(crate) fn oldest_pending(&self) -> Option<u64> {
        self.pending.iter().map(|(e, _)| *e).min()
    }

    /// Collects the tasks that ended.
    fn reap(&mut self) -> Result<()> {
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(_, s)| s.is_finished());
        self.pending = running;
        for (e, s) in done {
            self.check(e, s)?;
        }
        Ok(())
    }

    fn check(&self, e: u64, s: Spawned<BatchReport>) -> Result<()> {
        let report = s.wait().map_err(|err| {
            StreamError::Failed(format!(
                "the batch task of epoch {e} failed: {}",
                err.message
            ))
        })?;
        if report.differing > 0 {
            return Err(StreamError::Differs {
                wid: self.wid.clone(),
                epoch: e,
                differing: report.differing,
                nodes: report.nodes,
                max_diff: format_fixed(report.max_diff),
            });
        }
        Ok(())
    }

    /// Waits for every batch task.
    pub(crate) fn finish(mut self) -> Result<()> {
        let mut first = Ok(());
        for (e, s) in std::mem::take(&mut self.pending) {
            if let Err(err) = self.check(e, s) {
                if first.is_ok() {
                    first = Err(err);
                }
            }
        }
        first
    }
}

fn batches_csv(rows: &[BatchRow]) -> String {
    use std::fmt::Write as _;
    let mut rows: Vec<&BatchRow> = rows.iter().collect();
    rows.sort_by_key(|r| r.epoch);
    let mut csv = String::from("epoch,started_at,finished_at,latency_ms,mean_diff,max_diff\n");
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{:e},{}",
            r.epoch,
            r.started_at,
            r.finished_at,
            r.finished_at.saturating_sub(r.started_at),
            r.report.mean_diff,
            format_fixed(r.report.max_diff)
        );
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_counted_over_the_union_of_nodes() {
        let one = exoflow_graph::ONE;
        let batch = vec![(1, one), (2, 2 * one), (4, one)];
        let online = vec![(1, one), (3, one), (4, 3 * one)];
        let r = compare(7, &batch, &online);
        assert_eq!((r.nodes, r.differing, r.max_diff), (4, 3, 2 * one));
        assert!((r.mean_diff - 5.0 / 4.0).abs() < 1e-12);
        assert_eq!(compare(7, &batch, &batch).differing, 0);
    }
}
