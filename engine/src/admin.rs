//! Operations on recorded workflows: their outputs and timings, status and
//! listing, cancel and stop requests, and deletion.

use std::collections::HashMap;
use std::sync::Weak;

use crate::codec::{self, Kind};
use crate::dag::Data;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::id::WorkflowId;
use crate::journal::{self, RunRecord};
use crate::layout::{meta_key, outputs_prefix, task_key, timings_prefix, workflow_prefix};
use crate::lease::{latest_status, write_next};
use crate::status::{decide_resume, now_ms, Decision, Meta, State, StatusRecord, WorkflowInfo};
use crate::task::TimingRecord;

impl Engine {
    /// The committed output of task `task_id` of a workflow, if committed.
    pub fn task_output<T: Data>(
        &self,
        wid: &WorkflowId,
        task_id: &str,
    ) -> Result<Option<T>, EngineError> {
        crate::id::validate_component("task id", task_id, 255)?;
        let key = task_key(wid, task_id);
        match self.core.rt.store.get(&key)? {
            Some(bytes) => Ok(Some(codec::decode(&key, Kind::TaskOutput, &bytes)?)),
            None => Ok(None),
        }
    }

    /// The timing records of a durable workflow's tasks, in commit order.
    pub fn task_timings(&self, wid: &WorkflowId) -> Result<Vec<TimingRecord>, EngineError> {
        let mut out = Vec::new();
        for key in self.core.rt.store.list(&timings_prefix(wid))? {
            if let Some(bytes) = self.core.rt.store.get(&key)? {
                let mut recs: Vec<TimingRecord> = codec::decode(&key, Kind::Timing, &bytes)?;
                out.append(&mut recs);
            }
        }
        Ok(out)
    }

    /// The recorded state of one workflow.
    pub fn status(&self, wid: &WorkflowId) -> Result<WorkflowInfo, EngineError> {
        let store = self.core.rt.store.as_ref();
        if let Some(meta_bytes) = store.get(&meta_key(wid))? {
            let meta: Meta = codec::decode(&meta_key(wid), Kind::Meta, &meta_bytes)?;
            let st = latest_status(store, wid)?.ok_or_else(|| EngineError::NotFound {
                wid: wid.clone(),
                store: store.describe(),
            })?;
            return Ok(WorkflowInfo {
                id: wid.clone(),
                dag: meta.dag,
                state: st.state,
                generation: st.generation,
                owner: st.owner,
                lease_until_ms: st.lease_until_ms,
                updated_ms: st.updated_ms,
                error: st.error,
                tasks: meta.tasks,
                durable: true,
            });
        }
        match journal::find(store, wid)? {
            Some(rec) => Ok(rec.info()),
            None => Err(EngineError::NotFound {
                wid: wid.clone(),
                store: store.describe(),
            }),
        }
    }

    /// Every workflow in the store, newest update first.
    pub fn list(&self) -> Result<Vec<WorkflowInfo>, EngineError> {
        let store = self.core.rt.store.as_ref();
        let mut out = Vec::new();
        for name in store.list_dir("workflows/")? {
            let Some(id) = name.strip_suffix('/') else {
                continue;
            };
            let Ok(wid) = WorkflowId::new(id) else {
                continue;
            };
            match self.status(&wid) {
                Ok(info) => out.push(info),
                Err(EngineError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut latest: HashMap<WorkflowId, RunRecord> = HashMap::new();
        for rec in journal::read_all(store)? {
            latest.insert(rec.wid.clone(), rec);
        }
        out.extend(latest.into_values().map(|r| r.info()));
        out.sort_by(|a, b| {
            b.updated_ms
                .cmp(&a.updated_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Forgets the runs whose tasks all Skip (kept in the run journal, not
    /// as workflows of their own) that ended before `before_ms` (ms since
    /// the Unix epoch): what [`Engine::delete`] is to a durable workflow,
    /// for the journal, which otherwise grows with every such run. A run
    /// cut short stays, for `resume`. Returns how many journal segments
    /// were deleted.
    pub fn prune_journal(&self, before_ms: u64) -> Result<usize, EngineError> {
        journal::prune(self.core.rt.store.as_ref(), before_ms.saturating_mul(1000))
    }

    /// Cancels a workflow: a running one at its owner's next lease renewal
    /// (at once if the owner is this engine), one without a live owner at once.
    pub fn cancel(&self, wid: &WorkflowId) -> Result<(), EngineError> {
        self.request(wid, State::CancelRequested, State::Canceled)
    }

    /// Stops a running workflow, resumably.
    pub fn stop(&self, wid: &WorkflowId) -> Result<(), EngineError> {
        self.request(wid, State::StopRequested, State::Stopped)
    }

    fn request(
        &self,
        wid: &WorkflowId,
        requested: State,
        final_state: State,
    ) -> Result<(), EngineError> {
        if let Some(run) = self.core.runs.map.lock().get(wid).and_then(Weak::upgrade) {
            if final_state == State::Canceled {
                run.request_cancel();
            } else {
                run.request_stop();
            }
            return Ok(());
        }
        let store = self.core.rt.store.as_ref();
        if store.get(&meta_key(wid))?.is_none() {
            return Err(EngineError::NotFound {
                wid: wid.clone(),
                store: store.describe(),
            });
        }
        loop {
            let cur = latest_status(store, wid)?.ok_or_else(|| EngineError::NotFound {
                wid: wid.clone(),
                store: store.describe(),
            })?;
            if cur.state == State::Successful || cur.state == State::Canceled {
                return Err(EngineError::BadState {
                    wid: wid.clone(),
                    state: cur.state,
                    message: "it has finished".to_owned(),
                });
            }
            if final_state == State::Stopped && cur.state.is_final() {
                return Ok(());
            }
            let owned = matches!(decide_resume(&cur, now_ms(), false), Decision::Owned { .. });
            // Without a live owner the state is final at once, with a new
            // generation: an owner that wakes up late is fenced by it.
            let next = StatusRecord {
                version: cur.version + 1,
                state: if owned { requested } else { final_state },
                generation: if owned {
                    cur.generation
                } else {
                    cur.generation + 1
                },
                owner: if owned { cur.owner.clone() } else { None },
                lease_until_ms: if owned { cur.lease_until_ms } else { 0 },
                updated_ms: now_ms(),
                error: None,
            };
            if write_next(store, wid, &next)?.is_ok() {
                return Ok(());
            }
        }
    }

    /// Deletes a workflow's records, its outputs and the data kept under the
    /// prefixes of [`Engine::register_data_prefix`]; returns how many
    /// objects. A workflow with a live owner is refused unless `force`.
    pub fn delete(&self, wid: &WorkflowId, force: bool) -> Result<usize, EngineError> {
        let store = self.core.rt.store.as_ref();
        if let Some(cur) = latest_status(store, wid)? {
            if let Decision::Owned {
                owner,
                lease_until_ms,
                alive,
            } = decide_resume(&cur, now_ms(), force)
            {
                return Err(EngineError::Owned {
                    wid: wid.clone(),
                    owner,
                    remaining_ms: lease_until_ms.saturating_sub(now_ms()),
                    alive: if alive == Some(true) {
                        ", process alive"
                    } else {
                        ""
                    },
                });
            }
        }
        // Application data and outputs first, the workflow's record last: a
        // delete cut short is repeated by deleting again.
        let mut n = 0;
        let apps = self.core.data_prefixes.read().clone();
        for top in &apps {
            n += store.delete_prefix(&format!("{top}/{wid}/"))?;
        }
        n += store.delete_prefix(&outputs_prefix(wid))?;
        n += store.delete_prefix(&workflow_prefix(wid))?;
        Ok(n)
    }
}
