//! Snapshots of the graph at committed epochs, bounding what a recovery
//! replays, and the retention they allow (`--retain K`).
//!
//! A snapshot of epoch e is its edges (`snapshots/<e>/edges`) and then its
//! MANIFEST (length and checksum of the edges): written last, the MANIFEST
//! makes the snapshot exist, so a crash between the two leaves none. The
//! writer runs on its own low-priority thread, in epoch order, each
//! snapshot only after its epoch's COMMIT.

use std::ops::RangeInclusive;
use std::sync::Arc;

use crate::error::{corrupt, Context, Result, StreamError};
use crossbeam_channel::Receiver;
use exoflow_engine::codec::{self, Kind};
use exoflow_engine::failpoint;
use exoflow_engine::store::Store;
use serde::{Deserialize, Serialize};

use crate::committer::Progress;
use crate::layout::Layout;
use crate::priority::lower_this_thread;
use crate::state::EpochGraph;
use crate::write_once;

/// A snapshot's manifest: written last, it makes the snapshot exist.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    epoch: u64,
    edges: u64,
    data_len: u64,
    data_crc: u32,
}

/// A snapshot: its epoch and the graph's edges then.
pub(crate) type Snapshot = (u64, Vec<(u64, u64)>);

/// The epochs that have a snapshot MANIFEST, ascending.
pub(crate) fn snapshot_epochs(store: &dyn Store, keys: &Layout) -> Result<Vec<u64>> {
    let prefix = keys.snapshots();
    let listed = store.list(&prefix).context("listing snapshots")?;
    let mut epochs: Vec<u64> = listed
        .iter()
        .filter_map(|k| Layout::epoch_of(&prefix, k, "/MANIFEST"))
        .collect();
    epochs.sort_unstable();
    Ok(epochs)
}

/// The newest valid snapshot at or below `at_most`: its epoch and edges.
pub(crate) fn load_snapshot(
    store: &dyn Store,
    keys: &Layout,
    at_most: u64,
) -> Result<Option<Snapshot>> {
    let epochs = snapshot_epochs(store, keys)?;
    for &e in epochs.iter().rev().filter(|&&e| e <= at_most) {
        let mkey = keys.manifest(e);
        let Some(mbytes) = store.get(&mkey)? else {
            continue;
        };
        let manifest: Manifest = codec::decode(&mkey, Kind::Manifest, &mbytes)?;
        let dkey = keys.snapshot_data(e);
        let data = store.get(&dkey)?.ok_or_else(|| {
            StreamError::Corrupt(format!("{dkey} is missing though its MANIFEST exists"))
        })?;
        if data.len() as u64 != manifest.data_len || crc32c::crc32c(&data) != manifest.data_crc {
            corrupt!("{dkey} does not match its MANIFEST (corrupt snapshot)");
        }
        let edges: Vec<(u64, u64)> = codec::decode(&dkey, Kind::Snapshot, &data)?;
        return Ok(Some((e, edges)));
    }
    Ok(None)
}

/// A snapshot to write once its epoch is committed.
pub(crate) struct SnapshotJob {
    pub(crate) epoch: u64,
    pub(crate) graph: Arc<EpochGraph>,
    /// `--retain`: after the snapshot, drop what rebuilding epochs from
    /// this one on does not need.
    pub(crate) keep_from: Option<u64>,
}

/// Writes snapshots in epoch order, each after its epoch's COMMIT, at the
/// batch tasks' low priority: the graph is sorted and encoded here, not on
/// the streaming thread.
pub(crate) fn snapshot_writer(
    store: Arc<dyn Store>,
    keys: Layout,
    jobs: Receiver<SnapshotJob>,
    progress: Arc<Progress>,
) {
    lower_this_thread();
    let mut pruned_to = 0u64;
    for job in jobs {
        if progress.failed() {
            continue; // drain without acting
        }
        let e = job.epoch;
        if progress.wait_committed(e).is_err() {
            continue; // the run ended before the epoch committed
        }
        let written = write_snapshot(store.as_ref(), &keys, e, &job.graph.edges()).and_then(|()| {
            job.keep_from
                .map_or(Ok(()), |k| prune(store.as_ref(), &keys, k, &mut pruned_to))
        });
        if let Err(err) = written {
            progress.fail(StreamError::Context {
                what: format!("snapshot of epoch {e}"),
                source: Box::new(err),
            });
        }
    }
}

/// Writes the snapshot of committed epoch `e`: its edges, then its
/// MANIFEST.
pub(crate) fn write_snapshot(
    store: &dyn Store,
    keys: &Layout,
    e: u64,
    edges: &[(u64, u64)],
) -> Result<()> {
    let data = codec::encode(Kind::Snapshot, edges)?;
    // A snapshot of a committed epoch is deterministic: an existing one
    // (from before a crash) must be identical.
    write_once(store, &keys.snapshot_data(e), &data)?;
    failpoint::hit("stream.snapshot_data");
    let manifest = Manifest {
        epoch: e,
        edges: edges.len() as u64,
        data_len: data.len() as u64,
        data_crc: crc32c::crc32c(&data),
    };
    write_once(
        store,
        &keys.manifest(e),
        &codec::encode(Kind::Manifest, &manifest)?,
    )
}

/// What `--retain` deletes once a snapshot is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pruning {
    /// The snapshot that rebuilding from `keep_from` on starts from.
    pub(crate) base: u64,
    /// Epochs whose logs go (their COMMIT records stay).
    pub(crate) logs: RangeInclusive<u64>,
    /// Snapshots older than `base`.
    pub(crate) snapshots: Vec<u64>,
}

/// With the snapshots `valid` (ascending) and `keep_from` the oldest epoch
/// that must stay rebuildable: the newest snapshot `b` at or below
/// `keep_from` stays, with the logs after it; the logs of epochs up to `b`
/// not pruned yet (after `pruned_to`) and the snapshots before `b` go.
/// `None` when no snapshot is old enough.
pub(crate) fn plan_pruning(valid: &[u64], keep_from: u64, pruned_to: u64) -> Option<Pruning> {
    let base = *valid.iter().rev().find(|&&e| e <= keep_from)?;
    Some(Pruning {
        base,
        logs: pruned_to + 1..=base,
        snapshots: valid.iter().copied().filter(|&s| s < base).collect(),
    })
}

/// Carries out [`plan_pruning`]. COMMIT records and outputs stay. A
/// snapshot's MANIFEST goes before its data, so a crash in between leaves
/// no snapshot that looks valid.
fn prune(store: &dyn Store, keys: &Layout, keep_from: u64, pruned_to: &mut u64) -> Result<()> {
    let valid = snapshot_epochs(store, keys)?;
    let Some(plan) = plan_pruning(&valid, keep_from, *pruned_to) else {
        return Ok(());
    };
    for e in plan.logs {
        store
            .delete_prefix(&keys.epoch_parts(e))
            .with_context(|| format!("dropping the logs of epoch {e}"))?;
    }
    for old in plan.snapshots {
        store.delete(&keys.manifest(old))?;
        store.delete(&keys.snapshot_data(old))?;
    }
    *pruned_to = (*pruned_to).max(plan.base);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoflow_engine::store::memory::MemStore;

    #[test]
    fn retention_keeps_the_newest_snapshot_at_or_below_the_bound() {
        assert_eq!(plan_pruning(&[], 50, 0), None);
        assert_eq!(plan_pruning(&[20, 40], 15, 0), None);
        let p = plan_pruning(&[20, 40, 60], 45, 0).expect("a base");
        assert_eq!(p.base, 40);
        assert_eq!(p.logs, 1..=40);
        assert_eq!(p.snapshots, vec![20]);
        // Logs already pruned are not listed again; a snapshot at the bound
        // itself is the base.
        let p = plan_pruning(&[40, 60], 60, 40).expect("a base");
        assert_eq!((p.base, p.logs, p.snapshots), (60, 41..=60, vec![40]));
    }

    #[test]
    fn pruning_leaves_commits_and_what_rebuilding_needs() -> Result<()> {
        let store = MemStore::new();
        let keys = Layout::new("w");
        for e in 1..=25 {
            store.put(&keys.commit(e), b"c")?;
            store.put(&keys.part(e, 1, 0), b"p")?;
        }
        for e in [10, 20] {
            write_snapshot(&store, &keys, e, &[(1, 2), (2, 3)])?;
        }
        let mut pruned_to = 0;
        // Keep epochs 17.. rebuildable: snapshot 10 and logs 1..=10 go.
        prune(&store, &keys, 17, &mut pruned_to)?;
        assert_eq!(pruned_to, 10);
        let snaps = snapshot_epochs(&store, &keys)?;
        assert_eq!(snaps, vec![10, 20], "snapshot 10 is the base: it stays");
        for e in 1..=25 {
            assert!(store.get(&keys.commit(e))?.is_some(), "COMMIT({e}) stays");
            let part = store.get(&keys.part(e, 1, 0))?;
            assert_eq!(part.is_some(), e > 10, "log of epoch {e}");
        }
        // Keep 21..: snapshot 20 is the base; 10 and logs 11..=20 go.
        prune(&store, &keys, 21, &mut pruned_to)?;
        assert_eq!(snapshot_epochs(&store, &keys)?, vec![20]);
        assert!(store.get(&keys.snapshot_data(10))?.is_none());
        assert_eq!(load_snapshot(&store, &keys, 25)?.map(|s| s.0), Some(20));
        assert_eq!(load_snapshot(&store, &keys, 19)?, None);
        for e in 1..=25 {
            let part = store.get(&keys.part(e, 1, 0))?;
            assert_eq!(part.is_some(), e > 20, "log of epoch {e}");
        }
        Ok(())
    }

    #[test]
    fn a_snapshot_without_its_manifest_does_not_exist() -> Result<()> {
        let store = MemStore::new();
        let keys = Layout::new("w");
        write_snapshot(&store, &keys, 10, &[(1, 2)])?;
        store.put(&keys.snapshot_data(20), b"half written")?;
        assert_eq!(snapshot_epochs(&store, &keys)?, vec![10]);
        assert_eq!(load_snapshot(&store, &keys, 30)?, Some((10, vec![(1, 2)])));
        // Damaged data under a MANIFEST is an error, never an empty graph.
        store.put(&keys.snapshot_data(10), b"damaged")?;
        assert!(load_snapshot(&store, &keys, 30).is_err());
        Ok(())
    }
}
