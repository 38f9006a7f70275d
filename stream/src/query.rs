//! Reading a job from outside its run: its configuration, the last
//! committed epoch, the online table at any committed epoch (`export`), a
//! batch recomputation at one (`batch --epoch`), and a summary for
//! `status`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{corrupt, Context, Result, StreamError};
use exoflow_engine::store::Store;
use serde::Serialize;

use crate::batch::{recompute, Recomputed};
use crate::config::{EpochCheckpoint, JobConfig};
use crate::epoch_log::committed_prefix;
use crate::layout::Layout;
use crate::recovery::rebuild;
use crate::runtime::Runtime;
use crate::state::OnlineState;
use crate::write_once;

/// The job's recorded configuration.
pub fn read_config(store: &dyn Store, wid: &str) -> Result<JobConfig> {
    let keys = Layout::new(wid);
    let key = keys.config();
    let bytes = store
        .get(&key)
        .with_context(|| format!("reading {key}"))?
        .ok_or_else(|| StreamError::NoJob {
            wid: wid.to_owned(),
            key: key.clone(),
        })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{key} is not a job configuration"))
}

/// The last committed epoch of a job.
pub fn last_committed(store: &dyn Store, wid: &str) -> Result<u64> {
    committed_prefix(store, &Layout::new(wid))
}

/// The online table of an epoch, and the digest its output recorded.
pub struct Exported {
    /// node, influence; sorted by node.
    pub table: exoflow_graph::Table,
    /// The digest in `outputs/<wid>/online/<e>`, if readable.
    pub recorded_digest: Option<String>,
}

/// The online table at committed epoch `at`, recomputed from the nearest
/// snapshot (checked against its recorded digest).
pub fn export(store: &dyn Store, runtime: &Runtime, wid: &str, at: u64) -> Result<Exported> {
    let state = state_at(store, runtime, wid, at)?;
    Ok(Exported {
        table: state.online.table(),
        recorded_digest: recorded_digest(store, wid, at)?,
    })
}

/// The online state at committed epoch `at` (snapshot and logs), checked
/// against the digest its output recorded.
fn state_at(store: &dyn Store, runtime: &Runtime, wid: &str, at: u64) -> Result<OnlineState> {
    let cfg = read_config(store, wid)?;
    let keys = Layout::new(wid);
    let c = committed_prefix(store, &keys)?;
    if at > c || at == 0 {
        return Err(StreamError::NotCommitted {
            epoch: at,
            committed: c,
        });
    }
    if let Some(k) = cfg.retain {
        if at + k <= c {
            return Err(StreamError::NotRetained {
                wid: wid.to_owned(),
                epoch: at,
                retain: k,
                committed: c,
            });
        }
    }
    // Logs with edges need no source: open it only for `none` logs.
    let source = match cfg.checkpoint {
        EpochCheckpoint::None => {
            Some(runtime.open_source(&cfg.source, cfg.partitions, cfg.until.as_deref())?)
        }
        _ => None,
    };
    let (state, _) = rebuild(store, &cfg, &keys, source.as_deref(), at)?;
    if let Some(r) = recorded_digest(store, wid, at)? {
        let digest = format!("{:016x}", state.online.digest());
        if r != digest {
            corrupt!("the recomputed table at epoch {at} has digest {digest}, but its output recorded {r}");
        }
    }
    Ok(state)
}

fn recorded_digest(store: &dyn Store, wid: &str, at: u64) -> Result<Option<String>> {
    let keys = Layout::new(wid);
    Ok(store
        .get(&keys.online(at))?
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("digest").and_then(|d| d.as_str()).map(str::to_owned)))
}

/// `exoflow batch --store ... --epoch E`: the batch recomputation at a
/// committed epoch, by hand. Writes (or compares) the same output
/// `outputs/<wid>/batch/<E>` as the batch task.
pub fn batch_at(
    store: &dyn Store,
    runtime: &Runtime,
    wid: &str,
    at: u64,
    workers: usize,
) -> Result<Recomputed> {
    let state = state_at(store, runtime, wid, at)?;
    let edges = Arc::new(state.online.edges());
    let online = state.online.table();
    let done = recompute(at, edges, &online, workers, None)?;
    let keys = Layout::new(wid);
    write_once(store, &keys.batch(at), &done.output)?;
    Ok(done)
}

/// What `status` shows of a streaming job.
#[derive(Debug, Serialize)]
pub struct StreamStatus {
    /// The source.
    pub source: String,
    /// The checkpoint mode.
    pub checkpoint: EpochCheckpoint,
    /// The last committed epoch (0: none yet).
    pub last_committed: u64,
    /// The output of that epoch (edges, changed, nodes, digest, top).
    pub last_output: BTreeMap<String, serde_json::Value>,
    /// The batch recomputations written so far: epoch, differing nodes,
    /// mean and max |batch - online|.
    pub batches: Vec<serde_json::Value>,
    /// What waited in the source when the last epoch of the latest run was
    /// cut, with its unit ("1234 messages"), if known.
    pub lag: Option<String>,
}

/// A summary of a streaming job for `status`, `None` when the workflow is
/// not one.
pub fn describe(store: &dyn Store, wid: &str) -> Result<Option<StreamStatus>> {
    let keys = Layout::new(wid);
    if store.get(&keys.config())?.is_none() {
        return Ok(None);
    }
    let cfg = read_config(store, wid)?;
    let c = committed_prefix(store, &keys)?;
    let last_output = match store.get(&keys.online(c))? {
        Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let mut batches = Vec::new();
    for key in store.list(&keys.batch_prefix())? {
        let Some(v) = store
            .get(&key)?
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        else {
            continue;
        };
        batches.push(serde_json::json!({
            "epoch": v["epoch"],
            "differing": v["differing"],
            "mean_diff": v["mean_diff"],
            "max_diff": v["max_diff"],
        }));
    }
    Ok(Some(StreamStatus {
        source: cfg.source,
        checkpoint: cfg.checkpoint,
        last_committed: c,
        last_output,
        batches,
        lag: last_lag(store, wid)?,
    }))
}

/// The lag column of the last row of the newest generation's epochs.csv.
fn last_lag(store: &dyn Store, wid: &str) -> Result<Option<String>> {
    let keys = Layout::new(wid);
    let newest = store
        .list(&keys.metrics_prefix())?
        .into_iter()
        .filter_map(|k| Some((keys.metrics_generation(&k)?, k)))
        .max();
    let Some((_, key)) = newest else {
        return Ok(None);
    };
    let Some(bytes) = store.get(&key)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(lag), Some(unit)) = (col("lag"), col("lag_unit")) else {
        return Ok(None);
    };
    let Some(last) = lines.rfind(|l| !l.is_empty()) else {
        return Ok(None);
    };
    let fields: Vec<&str> = last.split(',').collect();
    Ok(match (fields.get(lag), fields.get(unit)) {
        (Some(l), Some(u)) if !l.is_empty() => Some(format!("{l} {u}")),
        _ => None,
    })
}
