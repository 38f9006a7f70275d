//! The streaming task: one start of a job (recovery included). It opens
//! the source, checks it is the one the job was created on, recovers
//! ([`crate::recovery`]), starts the committer and the snapshot writer, and
//! runs the epoch loop until the source ends, `--epochs`, a stop request or
//! an error.

use std::sync::Arc;

use crate::error::{Context, Result, StreamError};
use exoflow_engine::store::Store;
use exoflow_engine::TaskContext;
use exoflow_graph::EdgeOp;
use exoflow_ingest::epoch::Cutter;
use exoflow_ingest::source::Position;

use crate::batch::Batcher;
use crate::committer::{committer, CommitterJob, Progress};
use crate::config::JobConfig;
use crate::epoch_log::{read_commit, read_epoch, EpochRecords};
use crate::epoch_loop::{stream_loop, Outlets};
use crate::layout::Layout;
use crate::recovery::{plan_from_store, rebuild};
use crate::runtime::Runtime;
use crate::snapshot::{snapshot_writer, write_snapshot, SnapshotJob};
use crate::state::{ops_of, rejected_bytes, EpochGraph, EpochOutput};
use crate::{write_once, StreamSummary};

/// Runs the job `cfg` as the workflow of `ctx`.
pub(crate) fn run_stream(
    ctx: &TaskContext<'_>,
    cfg: &JobConfig,
    runtime: &Runtime,
) -> Result<StreamSummary> {
    let store: Arc<dyn Store> = ctx.store_arc();
    let keys = Layout::new(ctx.workflow_id().as_str());
    let generation = ctx.generation();
    let source = runtime.open_source(&cfg.source, cfg.partitions, cfg.until.as_deref())?;
    let now = source.fingerprint();
    if now != cfg.fingerprint {
        return Err(StreamError::SourceChanged {
            recorded: cfg.fingerprint.clone(),
            now,
        });
    }
    write_once(
        store.as_ref(),
        &keys.config(),
        &serde_json::to_vec_pretty(cfg)?,
    )?;
    let cfg = &JobConfig {
        workers: runtime.workers(cfg.workers),
        ..cfg.clone()
    };
    let quiet = runtime.quiet();

    // Recovery: the committed prefix, and outputs rebuilt or compared.
    let plan = plan_from_store(store.as_ref(), cfg, &keys)?;
    let c = plan.committed;
    let progress = Arc::new(Progress::new(c));
    let cluster = runtime.cluster(cfg.workers)?;
    let mut batcher = Batcher::new(ctx, cfg.workers, progress.clone(), cluster, quiet);
    let t_recover = std::time::Instant::now();
    let (mut state, rebuilt) = rebuild(
        store.as_ref(),
        cfg,
        &keys,
        Some(source.as_ref()),
        plan.rebuild_at,
    )?;
    for e in plan.replay.clone() {
        let commit = read_commit(store.as_ref(), &keys, e)?;
        let EpochRecords { edges, bad } =
            read_epoch(store.as_ref(), &keys, Some(source.as_ref()), &commit)?;
        let ops: Vec<EdgeOp> = ops_of(&edges).collect();
        let EpochOutput { output, changes } = state.apply(e, &ops, cfg.emit_changes)?;
        write_once(store.as_ref(), &keys.online(e), &output)?;
        if let Some(ch) = changes {
            write_once(store.as_ref(), &keys.changes(e), &ch)?;
        }
        if !bad.is_empty() {
            write_once(
                store.as_ref(),
                &keys.rejected(e),
                &rejected_bytes(source.as_ref(), &bad),
            )?;
        }
        let batch_missing = cfg.batch_due(e) && store.get(&keys.batch(e))?.is_none();
        let snapshot = cfg.snapshot_due(e);
        if snapshot || batch_missing {
            // Recovery writes the snapshot now: no copy to sort later.
            let graph = if snapshot {
                EpochGraph::sorted(state.online.edges())
            } else {
                EpochGraph::of(&state)
            };
            if snapshot {
                write_snapshot(store.as_ref(), &keys, e, &graph.edges())?;
            }
            if batch_missing {
                batcher.launch(e, graph, state.online.table())?;
            }
        }
    }
    if c > 0 && !quiet {
        eprintln!(
            "exoflow: recovered at committed epoch {c} (generation {generation}) in {:.2} s: snapshot {} and {} epoch log(s) read in {:.2} s, state built in {:.2} s",
            t_recover.elapsed().as_secs_f64(),
            rebuilt.snapshot,
            rebuilt.replayed,
            rebuilt.read_s,
            rebuilt.build_s
        );
    }

    // Continue the source after the last committed epoch.
    let mut cutter = if c == 0 {
        Cutter::from_start(source.clone())?
    } else {
        let last = read_commit(store.as_ref(), &keys, c)?;
        let ends: Vec<Position> = last.ranges.iter().map(|r| r.1).collect();
        Cutter::new(source.clone(), &ends)?
    };

    let (tx, rx) = crossbeam_channel::bounded::<CommitterJob>(4);
    // At most two snapshots wait (each holds a copy of the graph): past
    // that, the epoch loop waits for the writer.
    let (snap_tx, snap_rx) = crossbeam_channel::bounded::<SnapshotJob>(2);
    let writer = {
        let (store, progress, keys) = (store.clone(), progress.clone(), keys.clone());
        std::thread::Builder::new()
            .name("exoflow-committer".into())
            .spawn(move || committer(store, keys, generation, rx, progress, quiet))
            .context("starting the committer thread")?
    };
    let snapshots = {
        let (store, progress, keys) = (store.clone(), progress.clone(), keys.clone());
        std::thread::Builder::new()
            .name("exoflow-snapshots".into())
            .spawn(move || snapshot_writer(store, keys, snap_rx, progress))
            .context("starting the snapshot thread")?
    };
    // A stop (the command turns SIGINT/SIGTERM into an engine stop request)
    // ends the run after the epoch in flight, leaving the workflow STOPPED.
    let stop = || ctx.stop_requested() || ctx.is_cancelled();
    let result = stream_loop(
        generation,
        cfg,
        source.as_ref(),
        &mut cutter,
        &mut state,
        c,
        &Outlets {
            jobs: &tx,
            snapshots: &snap_tx,
        },
        &progress,
        &stop,
        &mut batcher,
    );
    drop(tx);
    drop(snap_tx);
    let _ = writer.join();
    progress.close();
    // Every snapshot of a committed epoch is written before the run ends.
    let _ = snapshots.join();
    let batches = batcher.finish();
    if let Some(e) = progress.take_error() {
        return Err(StreamError::Failed(e));
    }
    let end = result?;
    batches?;
    if end.stopped {
        return Err(StreamError::StoppedOnRequest(end.last_epoch));
    }
    Ok(StreamSummary {
        last_epoch: end.last_epoch,
        graph_edges: state.online.edge_count() as u64,
    })
}
