//! The run journal: group-committed records of runs whose tasks all Skip.
//!
//! Such a run keeps no outputs, so it needs no per-workflow objects; its
//! record (DAG, arguments, state, owner, times) goes into a journal segment
//! `journal/<engine instance>-<seq>` that holds every record that arrived while
//! the previous segment was being written (group commit). A run's output is
//! handed to its caller only once its final record is durable. A start record
//! is written too, unawaited, so that a run cut short by a crash is seen as
//! interrupted and can be run again from the start by `resume`; when both
//! records of a run fall into one segment only the final one is kept.

use crossbeam_channel::Receiver;
use serde::{Deserialize, Serialize};

use crate::codec::{self, Kind};
use crate::error::EngineError;
use crate::id::WorkflowId;
use crate::layout::{journal_key, JOURNAL_PREFIX};
use crate::status::{Owner, State, WorkflowInfo};
use crate::store::{SharedStore, Store, StoreError};

/// Most records in one segment.
const SEGMENT_MAX: usize = 16_384;

/// One run's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The workflow id.
    pub wid: WorkflowId,
    /// Registered DAG name.
    pub dag: String,
    /// Arguments (JSON).
    pub args: Vec<u8>,
    /// Running (start record) or final state.
    pub state: State,
    /// The engine that ran it.
    pub owner: Owner,
    /// Start (µs since the Unix epoch).
    pub started_us: u64,
    /// End (µs since the Unix epoch; 0 in a start record).
    pub finished_us: u64,
    /// Error of a failed run.
    pub error: Option<String>,
    /// Number of tasks.
    pub tasks: u64,
}

impl RunRecord {
    pub(crate) fn info(&self) -> WorkflowInfo {
        WorkflowInfo {
            id: self.wid.clone(),
            dag: self.dag.clone(),
            state: self.state,
            generation: 1,
            owner: (self.state == State::Running).then(|| self.owner.clone()),
            lease_until_ms: 0,
            updated_ms: self.finished_us.max(self.started_us) / 1000,
            error: self.error.clone(),
            tasks: self.tasks,
            durable: false,
        }
    }

    pub(crate) fn owner_alive(&self) -> bool {
        self.owner.is_alive_here() == Some(true)
    }
}

/// What the journal writer is told to append, and whom to tell once it is
/// durable.
pub(crate) struct JournalItem {
    /// The record.
    pub record: RunRecord,
    /// Called with the segment's outcome (a run's final record).
    pub done: Option<JournalDone>,
}

/// Called once a record's segment is durable, or failed.
pub(crate) type JournalDone = Box<dyn FnOnce(Result<(), EngineError>) + Send>;

/// The journal writer: appends the records that arrive, one segment per
/// group, and tells each final record's run once its segment is durable.
pub(crate) fn flusher(rx: Receiver<JournalItem>, store: SharedStore, instance: String) {
    let mut seq: u64 = 0;
    while let Ok(first) = rx.recv() {
        let mut items = vec![first];
        while items.len() < SEGMENT_MAX {
            match rx.try_recv() {
                Ok(i) => items.push(i),
                Err(_) => break,
            }
        }
        let finals: std::collections::HashSet<&WorkflowId> = items
            .iter()
            .filter(|i| i.record.state != State::Running)
            .map(|i| &i.record.wid)
            .collect();
        let records: Vec<&RunRecord> = items
            .iter()
            .filter(|i| i.record.state != State::Running || !finals.contains(&i.record.wid))
            .map(|i| &i.record)
            .collect();
        seq += 1;
        let key = journal_key(&instance, seq);
        let result = codec::encode(Kind::Journal, &records)
            .map_err(|e| EngineError::Internal(format!("encoding the journal: {e}")))
            .and_then(|bytes| store.put_if_absent(&key, &bytes).map_err(EngineError::from));
        for item in items {
            if let Some(done) = item.done {
                done(match &result {
                    Ok(_) => Ok(()),
                    Err(e) => Err(EngineError::Store(StoreError::Permanent {
                        op: "journal",
                        key: key.clone(),
                        message: e.to_string(),
                    })),
                });
            }
        }
    }
}

/// Every journal record, segment by segment.
pub(crate) fn read_all(store: &dyn Store) -> Result<Vec<RunRecord>, EngineError> {
    let mut out = Vec::new();
    for key in store.list(JOURNAL_PREFIX)? {
        if let Some(bytes) = store.get(&key)? {
            let mut recs: Vec<RunRecord> = codec::decode(&key, Kind::Journal, &bytes)?;
            out.append(&mut recs);
        }
    }
    Ok(out)
}

/// Deletes the segments that hold only records of runs that ended before
/// `before_us`: their final records, and start records of runs that
/// ended. A segment with the start record of a run that never ended (cut
/// short, for `resume`) stays. Returns how many segments.
pub(crate) fn prune(store: &dyn Store, before_us: u64) -> Result<usize, EngineError> {
    let mut segments = Vec::new();
    let mut ended = std::collections::HashSet::new();
    for key in store.list(JOURNAL_PREFIX)? {
        if let Some(bytes) = store.get(&key)? {
            let recs: Vec<RunRecord> = codec::decode(&key, Kind::Journal, &bytes)?;
            ended.extend(
                recs.iter()
                    .filter(|r| r.state != State::Running)
                    .map(|r| r.wid.clone()),
            );
            segments.push((key, recs));
        }
    }
    let mut deleted = 0;
    for (key, recs) in &segments {
        let old = recs.iter().all(|r| {
            if r.state == State::Running {
                ended.contains(&r.wid) && r.started_us < before_us
            } else {
                r.finished_us < before_us
            }
        });
        if old {
            store.delete(key)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The latest record of `wid`, if any.
pub(crate) fn find(store: &dyn Store, wid: &WorkflowId) -> Result<Option<RunRecord>, EngineError> {
    Ok(read_all(store)?
        .into_iter()
        .filter(|r| &r.wid == wid)
        .max_by_key(|r| (r.finished_us.max(r.started_us), r.state != State::Running)))
}
