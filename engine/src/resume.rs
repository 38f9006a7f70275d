//! Resuming a workflow: take over its ownership (waiting out a live lease,
//! or fencing a dead owner's), plan from what is committed, and run the
//! rest.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::{self, Kind};
use crate::dag::{Built, Data};
use crate::engine::{Engine, ResumeOptions, RunHandle};
use crate::error::EngineError;
use crate::id::WorkflowId;
use crate::journal;
use crate::layout::{meta_key, tasks_prefix};
use crate::lease::{latest_status, write_next, LeaseState};
use crate::plan::{plan, Plan};
use crate::run::Run;
use crate::status::{decide_resume, now_ms, Decision, Meta, State, StatusRecord};

impl Engine {
    pub(crate) fn resume_inner<O: Data>(
        &self,
        wid: &WorkflowId,
        given: Option<Arc<Built>>,
        opts: ResumeOptions,
    ) -> Result<RunHandle<O>, EngineError> {
        let _claim = self.claim(wid)?;
        let store = self.core.rt.store.clone();
        let Some(meta_bytes) = store.get(&meta_key(wid))? else {
            return self.resume_journaled(wid, given, opts);
        };
        let meta: Meta = codec::decode(&meta_key(wid), Kind::Meta, &meta_bytes)?;
        let built = match given {
            Some(b) => b,
            None => self.build(&meta.dag, &meta.args)?,
        };
        if built.fingerprint != meta.fingerprint {
            return Err(EngineError::DagChanged(wid.clone()));
        }
        let mut waited = false;
        let (current, generation) = loop {
            // Metadata without a status: its creator died between the two
            // writes; version 1 is then written by whoever resumes first.
            let current = latest_status(store.as_ref(), wid)?
                .unwrap_or_else(|| StatusRecord::unowned(0, State::Failed, 0, None));
            match decide_resume(&current, now_ms(), opts.force) {
                Decision::TakeOver { generation } => break (current, generation),
                Decision::AlreadySucceeded => return self.finished_output(wid, built, meta),
                Decision::Canceled => {
                    if current.state == State::CancelRequested {
                        // Make the cancel final, fencing the vanished owner.
                        let done = StatusRecord::unowned(
                            current.version + 1,
                            State::Canceled,
                            current.generation + 1,
                            None,
                        );
                        let _ = write_next(store.as_ref(), wid, &done)?;
                    }
                    return Err(EngineError::BadState {
                        wid: wid.clone(),
                        state: State::Canceled,
                        message: "a canceled workflow cannot be resumed".to_owned(),
                    });
                }
                Decision::Owned {
                    owner,
                    lease_until_ms,
                    alive,
                } => {
                    let remaining_ms = lease_until_ms.saturating_sub(now_ms());
                    if !opts.wait || waited || alive == Some(true) {
                        return Err(EngineError::Owned {
                            wid: wid.clone(),
                            owner,
                            remaining_ms,
                            alive: if alive == Some(true) {
                                ", process alive"
                            } else {
                                ""
                            },
                        });
                    }
                    tracing::info!(workflow = %wid, %owner, remaining_ms, "waiting for the owner's lease to expire");
                    std::thread::sleep(Duration::from_millis(remaining_ms + 50));
                    waited = true;
                }
            }
        };
        let status = StatusRecord {
            version: current.version + 1,
            state: State::Running,
            generation,
            owner: Some(self.core.rt.owner.clone()),
            lease_until_ms: now_ms() + self.core.rt.lease_ms(),
            updated_ms: now_ms(),
            error: None,
        };
        if let Err(winner) = write_next(store.as_ref(), wid, &status)? {
            return Err(EngineError::Conflict {
                wid: wid.clone(),
                message: format!(
                    "another process changed it while this one took over (now {:?}, generation {}, owner {}); try again",
                    winner.state,
                    winner.generation,
                    winner.owner.map(|o| o.to_string()).unwrap_or_else(|| "none".to_owned())
                ),
            });
        }
        let committed = match self.committed_tasks(wid) {
            Ok(c) => c,
            Err(e) => {
                // Do not leave the workflow owned by a run that never started.
                let failed = StatusRecord::unowned(
                    status.version + 1,
                    State::Failed,
                    generation,
                    Some(e.to_string()),
                );
                let _ = write_next(store.as_ref(), wid, &failed);
                return Err(e);
            }
        };
        let plans = plan(&built, |id| committed.contains(id));
        tracing::info!(
            workflow = %wid,
            generation,
            committed = plans.iter().filter(|p| **p == Plan::Stored).count(),
            to_run = plans.iter().filter(|p| **p == Plan::Run).count(),
            "resuming"
        );
        let st = LeaseState::new(status);
        let run = Run::new(
            self.core.rt.clone(),
            self.core.runs.clone(),
            wid.clone(),
            built,
            meta.dag,
            meta.args,
            generation,
            plans,
            Some(st),
        );
        Ok(self.launch(run))
    }

    fn finished_output<O: Data>(
        &self,
        wid: &WorkflowId,
        built: Arc<Built>,
        meta: Meta,
    ) -> Result<RunHandle<O>, EngineError> {
        let committed = self.committed_tasks(wid)?;
        let plans = plan(&built, |id| committed.contains(id));
        if plans[built.output] != Plan::Stored {
            return Err(EngineError::BadState {
                wid: wid.clone(),
                state: State::Successful,
                message: "it finished, and its output task does not checkpoint, so the output is not stored".to_owned(),
            });
        }
        // A run with only the output to load: no task runs, no status changes.
        let run = Run::new(
            self.core.rt.clone(),
            self.core.runs.clone(),
            wid.clone(),
            built,
            meta.dag,
            meta.args,
            0,
            plans,
            None,
        );
        run.complete_loaded();
        Ok(RunHandle::new(run))
    }

    fn resume_journaled<O: Data>(
        &self,
        wid: &WorkflowId,
        given: Option<Arc<Built>>,
        opts: ResumeOptions,
    ) -> Result<RunHandle<O>, EngineError> {
        let Some(rec) = journal::find(self.core.rt.store.as_ref(), wid)? else {
            return Err(EngineError::NotFound {
                wid: wid.clone(),
                store: self.core.rt.store.describe(),
            });
        };
        match rec.state {
            State::Running => {
                if !opts.force && rec.owner.is_alive_here() != Some(false) {
                    let alive = if rec.owner_alive() { ", process alive" } else { "" };
                    return Err(EngineError::Owned {
                        wid: wid.clone(),
                        owner: rec.owner,
                        remaining_ms: 0,
                        alive,
                    });
                }
            }
            state => {
                return Err(EngineError::BadState {
                    wid: wid.clone(),
                    state,
                    message: "a finished run of Skip tasks only keeps no outputs; run it again under a new id".to_owned(),
                })
            }
        }
        let built = match given {
            Some(b) => b,
            None => self.build(&rec.dag, &rec.args)?,
        };
        let plans = plan(&built, |_| false);
        let run = Run::new(
            self.core.rt.clone(),
            self.core.runs.clone(),
            wid.clone(),
            built,
            rec.dag,
            rec.args,
            1,
            plans,
            None,
        );
        run.record_start();
        Ok(self.launch(run))
    }

    pub(crate) fn committed_tasks(&self, wid: &WorkflowId) -> Result<HashSet<String>, EngineError> {
        let prefix = tasks_prefix(wid);
        Ok(self
            .core
            .rt
            .store
            .list(&prefix)?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
            .collect())
    }
}
