//! Recovery: every start of the streaming task is one. From what the store
//! holds it decides ([`plan`], a pure function of the committed prefix and
//! of which outputs exist) at which epoch to rebuild the online state and
//! which committed epochs to apply again one by one, comparing their
//! outputs; `rebuild` builds the state from the newest snapshot and the
//! logs after it.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use crate::error::{Context, Result};
use exoflow_engine::store::Store;
use exoflow_graph::EdgeOp;
use exoflow_ingest::source::Source;

use crate::config::JobConfig;
use crate::epoch_log::{committed_prefix, read_commit, read_epoch};
use crate::layout::Layout;
use crate::snapshot::{load_snapshot, snapshot_epochs};
use crate::state::{ops_of, OnlineState};

/// What a resume does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// The committed prefix: COMMIT(1..=committed) exist.
    pub committed: u64,
    /// The state is rebuilt at this epoch, the last before the first
    /// committed epoch with an output missing, in one go (0: empty).
    pub rebuild_at: u64,
    /// The snapshot the rebuild starts from (0: none), the newest at or
    /// below `rebuild_at`; the logs after it are folded in.
    pub snapshot: u64,
    /// Epochs applied one by one after the rebuild, their outputs written
    /// or compared byte for byte.
    pub replay: RangeInclusive<u64>,
}

/// The plan for a job whose committed prefix ends at `committed`, whose
/// outputs of epoch e are all written when `complete(e)`, and whose
/// snapshots are at the epochs `snapshots` (ascending).
pub fn plan(committed: u64, complete: impl Fn(u64) -> bool, snapshots: &[u64]) -> RecoveryPlan {
    let first_missing = (1..=committed)
        .find(|&e| !complete(e))
        .unwrap_or(committed + 1);
    let rebuild_at = first_missing - 1;
    RecoveryPlan {
        committed,
        rebuild_at,
        snapshot: snapshots
            .iter()
            .rev()
            .copied()
            .find(|&s| s <= rebuild_at)
            .unwrap_or(0),
        replay: rebuild_at + 1..=committed,
    }
}

/// The plan for the job of `keys` as its store holds it: one listing per
/// kind of output, not one read per epoch.
pub(crate) fn plan_from_store(
    store: &dyn Store,
    cfg: &JobConfig,
    keys: &Layout,
) -> Result<RecoveryPlan> {
    let committed = committed_prefix(store, keys)?;
    let written: HashSet<String> = store
        .list(&keys.online_prefix())?
        .into_iter()
        .chain(store.list(&keys.batch_prefix())?)
        .collect();
    let complete = |e| {
        written.contains(&keys.online(e)) && (!cfg.batch_due(e) || written.contains(&keys.batch(e)))
    };
    Ok(plan(committed, complete, &snapshot_epochs(store, keys)?))
}

/// Edge operations folded at once, at most, when rebuilding.
const REPLAY_CHUNK: usize = 1 << 22;

/// What a rebuild did, for the recovery message.
#[derive(Debug, Default)]
pub(crate) struct Rebuilt {
    /// The snapshot it started from (0: none).
    pub(crate) snapshot: u64,
    /// Epoch logs read after it.
    pub(crate) replayed: u64,
    /// Seconds reading the snapshot and the logs, and building the state.
    pub(crate) read_s: f64,
    pub(crate) build_s: f64,
}

/// Rebuilds the online state at committed epoch `at`: the newest snapshot
/// at or below it, then the logs after it. The epochs' outputs exist, so
/// their operations are folded into the snapshot's edge set (in order, the
/// last operation on a pair winning) and the state is built once: the
/// table is a function of the edge set, so this is the state that epoch
/// by epoch replay reaches, at the cost of one from-zero iteration instead
/// of one per epoch.
pub(crate) fn rebuild(
    store: &dyn Store,
    cfg: &JobConfig,
    keys: &Layout,
    source: Option<&dyn Source>,
    at: u64,
) -> Result<(OnlineState, Rebuilt)> {
    let t = std::time::Instant::now();
    let (from, mut edges) = load_snapshot(store, keys, at)?.unwrap_or((0, Vec::new()));
    let mut pending: Vec<EdgeOp> = Vec::new();
    for e in from + 1..=at {
        let commit = read_commit(store, keys, e)?;
        let log = read_epoch(store, keys, source, &commit)?;
        pending.extend(ops_of(&log.edges));
        if pending.len() >= REPLAY_CHUNK {
            edges = exoflow_graph::reference::apply_ops_to(edges, &pending);
            pending.clear();
        }
    }
    let edges = exoflow_graph::reference::apply_ops_to(edges, &pending);
    drop(pending);
    let read_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let state = OnlineState::from_edges(cfg, &edges)
        .with_context(|| format!("rebuilding the online state at epoch {at}"))?;
    Ok((
        state,
        Rebuilt {
            snapshot: from,
            replayed: at - from,
            read_s,
            build_s: t.elapsed().as_secs_f64(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EpochCheckpoint, OnlineImpl};
    use exoflow_engine::store::memory::MemStore;

    fn config() -> JobConfig {
        JobConfig {
            source: "gen:rmat?scale=6".into(),
            partitions: 1,
            epoch_edges: Some(10),
            epoch_ms: None,
            base_edges: None,
            epochs: None,
            checkpoint: EpochCheckpoint::Sync,
            rate: None,
            snapshot_every: 4,
            emit_changes: false,
            max_bad_ratio: 0.0,
            fingerprint: String::new(),
            batch_every: 3,
            batch_from: 3,
            workers: 1,
            online: OnlineImpl::Recompute,
            retain: None,
            until: None,
        }
    }

    #[test]
    fn a_finished_job_replays_nothing() {
        let p = plan(7, |_| true, &[4]);
        assert_eq!((p.committed, p.rebuild_at, p.snapshot), (7, 7, 4));
        assert!(p.replay.is_empty());
    }

    #[test]
    fn the_first_missing_output_bounds_the_rebuild() {
        // Outputs of 1..=5 written, 6 and 7 committed without theirs.
        let p = plan(7, |e| e <= 5, &[4, 8]);
        assert_eq!((p.rebuild_at, p.snapshot), (5, 4));
        assert_eq!(p.replay, 6..=7);
        // A hole earlier wins over later outputs.
        let p = plan(7, |e| e != 2, &[4]);
        assert_eq!((p.rebuild_at, p.snapshot, p.replay), (1, 0, 2..=7));
        // Nothing committed: nothing to rebuild.
        let p = plan(0, |_| false, &[]);
        assert_eq!((p.rebuild_at, p.snapshot), (0, 0));
        assert!(p.replay.is_empty());
    }

    /// A job run on the in-memory store, then its last outputs lost (a
    /// crash after their COMMITs): the plan rebuilds from the snapshot
    /// below them, and replaying the logs gives the lost bytes again.
    #[test]
    fn a_rebuild_and_replay_give_the_lost_outputs_again() -> Result<()> {
        use crate::{JobRequest, Runtime, StreamSummary, DAG};
        use exoflow_engine::{Engine, WorkflowId};
        use std::sync::Arc;

        let store = Arc::new(MemStore::new());
        let engine = Engine::new(store.clone());
        let runtime = Arc::new(Runtime::new().with_quiet(true));
        crate::register(&engine, runtime.clone())?;
        let request = JobRequest {
            epochs: Some(7),
            epoch_edges: Some(400),
            snapshot_every: 3,
            checkpoint: EpochCheckpoint::Sync,
            ..JobRequest::new("gen:rmat?scale=8&edge-factor=16&seed=5")
        };
        let cfg = crate::prepare(request, &runtime)?.config;
        let wid = WorkflowId::new("job").expect("a valid id");
        let done = engine
            .workflow::<StreamSummary>(DAG)
            .args(&cfg)
            .id(wid.clone())
            .run()?;
        assert_eq!(done.last_epoch, 7);
        let keys = Layout::new("job");
        let lost: Vec<Vec<u8>> = (5..=7)
            .map(|e| {
                store
                    .get(&keys.online(e))?
                    .ok_or_else(|| crate::StreamError::Corrupt("an output is missing".into()))
            })
            .collect::<Result<_>>()?;
        for e in 5..=7 {
            store.delete(&keys.online(e))?;
        }
        let p = plan_from_store(store.as_ref(), &cfg, &keys)?;
        assert_eq!((p.committed, p.rebuild_at, p.snapshot), (7, 4, 3));
        assert_eq!(p.replay, 5..=7);
        let (mut state, rebuilt) = rebuild(store.as_ref(), &cfg, &keys, None, p.rebuild_at)?;
        assert_eq!((rebuilt.snapshot, rebuilt.replayed), (3, 1));
        for (e, want) in p.replay.zip(lost) {
            let commit = read_commit(store.as_ref(), &keys, e)?;
            let log = read_epoch(store.as_ref(), &keys, None, &commit)?;
            let ops: Vec<EdgeOp> = ops_of(&log.edges).collect();
            let out = state.apply(e, &ops, false)?;
            assert_eq!(out.output, want, "epoch {e}");
        }
        // Queries name what they cannot give.
        use crate::query::export;
        use crate::StreamError;
        let err = export(store.as_ref(), &runtime, "job", 8).err();
        assert!(
            matches!(
                err,
                Some(StreamError::NotCommitted {
                    epoch: 8,
                    committed: 7
                })
            ),
            "{err:?}"
        );
        let err = export(store.as_ref(), &runtime, "other", 1).err();
        assert!(
            matches!(&err, Some(StreamError::NoJob { wid, .. }) if wid == "other"),
            "{err:?}"
        );
        // Deleting the workflow deletes the job's data too.
        engine.delete(&wid, false)?;
        assert_eq!(store.list("")?, Vec::<String>::new());
        Ok(())
    }

    #[test]
    fn a_missing_batch_report_is_a_missing_output() -> Result<()> {
        let store = MemStore::new();
        let keys = Layout::new("w");
        let cfg = config();
        for e in 1..=7 {
            store.put(&keys.commit(e), b"c")?;
            store.put(&keys.online(e), b"o")?;
        }
        store.put(&keys.online(9), b"o")?; // after a gap: not committed
        store.put(&keys.commit(9), b"c")?;
        store.put(&keys.batch(3), b"b")?; // epoch 6's batch is missing
        let p = plan_from_store(&store, &cfg, &keys)?;
        assert_eq!((p.committed, p.rebuild_at, p.replay), (7, 5, 6..=7));
        store.put(&keys.batch(6), b"b")?;
        let p = plan_from_store(&store, &cfg, &keys)?;
        assert_eq!((p.rebuild_at, p.replay.is_empty()), (7, true));
        Ok(())
    }
}
