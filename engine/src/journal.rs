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

use std::sync::Arc;

use crossbeam_channel::Receiver;
use serde::{Deserialize, Serialize};

use crate::codec::{self, Kind};
use crate::dag::Value;
use crate::engine::WorkflowInfo;
use crate::error::EngineError;
use crate::id::WorkflowId;
use crate::run::Run;
use crate::status::{Owner, State};
use crate::store::{SharedStore, Store, StoreError};
use crate::task::now_us;

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

pub(crate) struct JournalItem {
    record: RunRecord,
    run: Option<(Arc<Run>, Result<Value, EngineError>)>,
}

fn record(run: &Run, state: State, error: Option<String>) -> RunRecord {
    RunRecord {
        wid: run.wid.clone(),
        dag: run.dag_name.clone(),
        args: run.args.clone(),
        state,
        owner: run.inner.owner.clone(),
        started_us: run.started_us,
        finished_us: if state == State::Running { 0 } else { now_us() },
        error,
        tasks: run.dag.nodes.len() as u64,
    }
}

pub(crate) fn record_start(run: &Arc<Run>) {
    let _ = run.inner.journal.send(JournalItem {
        record: record(run, State::Running, None),
        run: None,
    });
}

pub(crate) fn record_final(run: &Arc<Run>, state: State, outcome: Result<Value, EngineError>) {
    let error = outcome.as_ref().err().map(|e| e.to_string());
    let item = JournalItem {
        record: record(run, state, error),
        run: Some((run.clone(), outcome)),
    };
    if let Err(e) = run.inner.journal.send(item) {
        if let Some((run, _)) = e.0.run {
            run.complete(Err(EngineError::Internal(
                "the journal writer stopped".to_owned(),
            )));
        }
    }
}

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
        let key = format!("journal/{instance}-{seq:010}");
        let result = codec::encode(Kind::Journal, &records)
            .map_err(|e| EngineError::Internal(format!("encoding the journal: {e}")))
            .and_then(|bytes| store.put_if_absent(&key, &bytes).map_err(EngineError::from));
        for item in items {
            if let Some((run, outcome)) = item.run {
                match &result {
                    Ok(_) => run.complete(outcome),
                    Err(e) => run.complete(Err(EngineError::Store(StoreError::Permanent {
                        op: "journal",
                        key: key.clone(),
                        message: e.to_string(),
                    }))),
                }
            }
        }
    }
}

/// Every journal record, segment by segment.
pub(crate) fn read_all(store: &dyn Store) -> Result<Vec<RunRecord>, EngineError> {
    let mut out = Vec::new();
    for key in store.list("journal/")? {
        if let Some(bytes) = store.get(&key)? {
            let mut recs: Vec<RunRecord> = codec::decode(&key, Kind::Journal, &bytes)?;
            out.append(&mut recs);
        }
    }
    Ok(out)
}

/// The latest record of `wid`, if any.
pub(crate) fn find(store: &dyn Store, wid: &WorkflowId) -> Result<Option<RunRecord>, EngineError> {
    Ok(read_all(store)?
        .into_iter()
        .filter(|r| &r.wid == wid)
        .max_by_key(|r| (r.finished_us.max(r.started_us), r.state != State::Running)))
}
