//! The epoch loop of a run: a reader thread cuts epochs from the source
//! (at most one ahead), and the loop logs each epoch (through the
//! committer), applies it to the online state, hands its output to the
//! committer, and starts its snapshot and batch recomputation when due.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Context, Result, StreamError};
use crossbeam_channel::{Receiver, Sender};
use exoflow_graph::EdgeOp;
use exoflow_ingest::epoch::{Cutter, Slice, Stop};
use exoflow_ingest::source::{BadRecord, Source};

use crate::batch::Batcher;
use crate::committer::{CommitJob, CommitterJob, EpochMetrics, Progress};
use crate::config::{EpochCheckpoint, JobConfig};
use crate::epoch_log::EpochCommit;
use crate::now_ms;
use crate::snapshot::SnapshotJob;
use crate::state::{ops_of, rejected_bytes, EpochGraph, EpochOutput, OnlineState};

pub(crate) struct Outlets<'a> {
    /// To the committer.
    pub(crate) jobs: &'a Sender<CommitterJob>,
    /// To the snapshot writer.
    pub(crate) snapshots: &'a Sender<SnapshotJob>,
}

enum Read {
    /// The next epoch: its slices, when it was cut and what waited then.
    Epoch {
        slices: Vec<Slice>,
        closed_at: u64,
        lag: Option<(u64, &'static str)>,
    },
    /// A stop was requested.
    Stopped,
}

/// Cuts epochs on its own thread, so that the source is read while the
/// epoch before is computed (as a live source goes on arriving), at most
/// one epoch ahead: once it waits to be taken, reading pauses and what
/// arrives meanwhile shows as lag. Ends when the source ends, after
/// `--epochs`, on a stop (sent as [`Read::Stopped`]) or when the epoch loop
/// is gone.
fn reader(
    cfg: &JobConfig,
    committed: u64,
    cutter: &mut Cutter,
    stop: &Stop<'_>,
    out: Sender<Result<Read>>,
    base_done: Receiver<()>,
) {
    let mut e = committed;
    // Reads are paced at the rate, except a base graph: it is read at full
    // speed, and the rate applies from the epoch after it, once it is
    // processed (no backlog piles up meanwhile).
    let mut base_unpaced = e == 0 && cfg.base_edges.is_some();
    cutter.pace(if base_unpaced { None } else { cfg.rate });
    loop {
        if base_unpaced && e > 0 {
            if base_done.recv().is_err() {
                return;
            }
            cutter.pace(cfg.rate);
            base_unpaced = false;
        }
        if cfg.epochs.is_some_and(|k| e >= k) || cutter.at_end() {
            return;
        }
        if stop() {
            let _ = out.send(Ok(Read::Stopped));
            return;
        }
        let cut = match (cfg.base_edges, cfg.epoch_edges, cfg.epoch_ms) {
            (Some(n), _, _) if e == 0 => cutter.by_count(n, stop),
            (_, _, Some(ms)) => cutter.by_time(Duration::from_millis(ms), u64::MAX, stop),
            (_, n, None) => cutter.by_count(n.unwrap_or(100_000), stop),
        };
        let slices = match cut {
            Ok(s) => s,
            Err(err) => {
                let _ = out.send(Err(err.into()));
                return;
            }
        };
        let closed_at = now_ms();
        let lag = cutter.backlog();
        if slices
            .iter()
            .all(|s| s.edges.is_empty() && s.bad.is_empty() && s.start == s.end)
        {
            // Nothing read: the source ended or a stop came.
            continue;
        }
        e += 1;
        let epoch = Read::Epoch {
            slices,
            closed_at,
            lag,
        };
        if out.send(Ok(epoch)).is_err() {
            return;
        }
    }
}

/// How the epoch loop ended.
pub(crate) struct LoopEnd {
    /// The last epoch handed to the committer.
    pub(crate) last_epoch: u64,
    /// Whether it stopped on request.
    pub(crate) stopped: bool,
}

/// The epoch loop, with the reader beside it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stream_loop(
    generation: u64,
    cfg: &JobConfig,
    source: &dyn Source,
    cutter: &mut Cutter,
    state: &mut OnlineState,
    committed: u64,
    out: &Outlets<'_>,
    progress: &Progress,
    stop: &Stop<'_>,
    batcher: &mut Batcher<'_, '_>,
) -> Result<LoopEnd> {
    let quit = AtomicBool::new(false);
    let reading = || stop() || quit.load(Ordering::SeqCst);
    let (read_tx, read_rx) = crossbeam_channel::bounded::<Result<Read>>(1);
    let (base_tx, base_rx) = crossbeam_channel::bounded::<()>(1);
    std::thread::scope(|scope| {
        let reading = &reading;
        std::thread::Builder::new()
            .name("exoflow-reader".into())
            .spawn_scoped(scope, move || {
                reader(cfg, committed, cutter, reading, read_tx, base_rx)
            })
            .context("starting the reader thread")?;
        let result = epoch_loop(
            generation, cfg, source, state, committed, out, progress, batcher, read_rx, base_tx,
        );
        // The reader sees this at its next poll, or when it hands over an
        // epoch (the receiver is gone).
        quit.store(true, Ordering::SeqCst);
        result
    })
}

/// Computes and commits the epochs the reader cuts.
#[allow(clippy::too_many_arguments)]
fn epoch_loop(
    generation: u64,
    cfg: &JobConfig,
    source: &dyn Source,
    state: &mut OnlineState,
    committed: u64,
    out: &Outlets<'_>,
    progress: &Progress,
    batcher: &mut Batcher<'_, '_>,
    reads: Receiver<Result<Read>>,
    base_done: Sender<()>,
) -> Result<LoopEnd> {
    let mut e = committed;
    loop {
        if progress.failed() {
            return Ok(LoopEnd {
                last_epoch: e,
                stopped: false,
            });
        }
        let (slices, closed_at, lag) = match reads.recv() {
            Ok(Ok(Read::Epoch {
                slices,
                closed_at,
                lag,
            })) => (slices, closed_at, lag),
            Ok(Ok(Read::Stopped)) => {
                return Ok(LoopEnd {
                    last_epoch: e,
                    stopped: true,
                })
            }
            Ok(Err(err)) => return Err(err),
            // The source ended, or --epochs.
            Err(_) => {
                return Ok(LoopEnd {
                    last_epoch: e,
                    stopped: false,
                })
            }
        };
        let edges_n: usize = slices.iter().map(|s| s.edges.len()).sum();
        let bad_n: usize = slices.iter().map(|s| s.bad.len()).sum();
        e += 1;
        if bad_n > 0 && bad_n as f64 > cfg.max_bad_ratio * (edges_n + bad_n) as f64 {
            let first = slices.iter().flat_map(|s| s.bad.first()).next();
            let place = first.map_or(String::new(), |b| {
                format!(
                    "; first at partition {} {} of {}: {} (`{}`)",
                    b.partition,
                    b.at,
                    source.describe(),
                    b.reason,
                    b.raw
                )
            });
            return Err(StreamError::TooManyBad {
                epoch: e,
                bad: bad_n,
                records: edges_n + bad_n,
                ratio: cfg.max_bad_ratio,
                place,
            });
        }
        let slices = Arc::new(slices);
        let mut commit = EpochCommit {
            epoch: e,
            generation,
            ranges: slices.iter().map(|s| (s.start, s.end)).collect(),
            part_crcs: Vec::new(), // known once the parts are encoded
            edges: edges_n as u64,
        };
        let (dtx, drx) = crossbeam_channel::bounded(1);
        out.jobs
            .send(CommitterJob::Parts {
                epoch: e,
                slices: slices.clone(),
                full: cfg.checkpoint != EpochCheckpoint::None,
                durable: dtx,
            })
            .map_err(|_| StreamError::Failed("the committer stopped".into()))?;
        let mut metrics = EpochMetrics {
            epoch: e,
            edges: edges_n as u64,
            closed_at,
            lag,
            ..Default::default()
        };
        let mut durable = Some(drx);
        if cfg.checkpoint == EpochCheckpoint::Sync {
            match durable.take().map(|rx| rx.recv()) {
                Some(Ok(Ok((at, crcs)))) => {
                    metrics.log_durable_at = at;
                    commit.part_crcs = crcs;
                }
                Some(Ok(Err(msg))) => return Err(StreamError::Failed(format!("epoch {e}: {msg}"))),
                _ => {
                    return Err(StreamError::Failed(format!(
                        "epoch {e}: the log writer stopped"
                    )))
                }
            }
        }
        // One copy of the edges, in the graph's form; the slices stay with
        // the committer until their log is written.
        let ops: Vec<EdgeOp> = slices.iter().flat_map(|s| ops_of(&s.edges)).collect();
        let bad: Vec<BadRecord> = slices.iter().flat_map(|s| s.bad.iter().cloned()).collect();
        drop(slices);
        let EpochOutput { output, changes } = state.apply(e, &ops, cfg.emit_changes)?;
        metrics.online_done_at = now_ms();
        if e == 1 {
            // A base graph is processed: the reader may start its pacing.
            let _ = base_done.try_send(());
        }
        out.jobs
            .send(CommitterJob::Commit(Box::new(CommitJob {
                commit,
                output,
                changes,
                rejected: (!bad.is_empty()).then(|| rejected_bytes(source, &bad)),
                metrics,
                durable,
            })))
            .map_err(|_| StreamError::Failed("the committer stopped".into()))?;
        // The graph for a snapshot or a batch task is taken after the
        // epoch's output is on its way: its commit does not wait for it.
        let (snapshot_now, batch_now) = (cfg.snapshot_due(e), cfg.batch_due(e));
        if snapshot_now || batch_now {
            let graph = EpochGraph::of(state);
            if batch_now {
                batcher.launch(e, graph.clone(), state.online.table())?;
            }
            if snapshot_now {
                out.snapshots
                    .send(SnapshotJob {
                        epoch: e,
                        graph,
                        keep_from: cfg.keep_from(e, batcher.oldest_pending()),
                    })
                    .map_err(|_| StreamError::Failed("the snapshot writer stopped".into()))?;
            }
        }
    }
}
