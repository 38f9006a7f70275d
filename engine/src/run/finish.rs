//! How a run ends: its final state decided, its timings and final status
//! group-committed (or its journal record written), and its outcome
//! delivered to waiters.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Run;
use crate::codec::{self, Kind};
use crate::commit::{log_failure, Commit};
use crate::dag::Value;
use crate::error::EngineError;
use crate::journal::{JournalItem, RunRecord};
use crate::layout::{status_key, timings_key};
use crate::lease;
use crate::status::{State, StatusRecord};
use crate::store::{PutOutcome, StoreError};
use crate::task::now_us;

impl Run {
    pub(super) fn finish(self: Arc<Self>) {
        let failure = self.failure.lock().take();
        let uncommitted = self.uncommitted.load(Ordering::SeqCst);
        if self.is_fenced() {
            // Not ours to write any more.
            let e = failure
                .unwrap_or_else(|| EngineError::Internal("fenced without an error".to_owned()));
            self.complete(Err(e));
            return;
        }
        let (state, outcome): (State, Result<Value, EngineError>) = if self.cancel_requested() {
            (
                State::Canceled,
                Err(EngineError::Canceled(self.wid.clone())),
            )
        } else if self.stop_requested() && (failure.is_some() || uncommitted > 0) {
            let message = match failure {
                Some(e) => format!("stopped on request ({e}); resume to continue"),
                None => "stopped on request; resume to continue".to_owned(),
            };
            (
                State::Stopped,
                Err(EngineError::BadState {
                    wid: self.wid.clone(),
                    state: State::Stopped,
                    message,
                }),
            )
        } else if let Some(e) = failure {
            (State::Failed, Err(e))
        } else if uncommitted != 0 {
            (
                State::Failed,
                Err(EngineError::Internal(format!(
                    "workflow {} stalled with {uncommitted} task(s) uncommitted",
                    self.wid
                ))),
            )
        } else {
            match self.input_value(self.dag.output) {
                Ok(v) => (State::Successful, Ok(v)),
                Err(e) => (State::Failed, Err(e)),
            }
        };
        if self.durable {
            self.write_final(state, outcome);
        } else {
            self.record_final(state, outcome);
        }
    }

    /// Group-commits the timing records and the final status, then completes.
    fn write_final(self: Arc<Self>, state: State, outcome: Result<Value, EngineError>) {
        let error = outcome.as_ref().err().map(|e| e.to_string());
        let records = self.timings.lock().clone();
        let mut timing = None;
        if !records.is_empty() {
            let seq = self.timing_seq.fetch_add(1, Ordering::SeqCst);
            let key = timings_key(&self.wid, self.generation, seq);
            match codec::encode(Kind::Timing, &records) {
                Ok(bytes) => timing = Some((key, bytes)),
                Err(e) => {
                    tracing::warn!(workflow = %self.wid, error = %e, "timing records not encoded")
                }
            }
        }
        let next = {
            let guard = self.status.lock();
            guard.as_ref().map(|st| {
                StatusRecord::unowned(
                    st.current.version + 1,
                    state,
                    self.generation,
                    error.clone(),
                )
            })
        };
        let Some(next) = next else {
            if let Some((key, bytes)) = timing {
                let _ = self.rt.commits.send(Commit::Record {
                    done: log_failure(key.clone()),
                    key,
                    bytes,
                    companion: None,
                });
            }
            self.complete(outcome);
            return;
        };
        let bytes = match codec::encode(Kind::Status, &next) {
            Ok(b) => b,
            Err(e) => {
                self.complete(Err(EngineError::Internal(format!(
                    "encoding a status: {e}"
                ))));
                return;
            }
        };
        let key = status_key(&self.wid, next.version);
        let run = self.clone();
        let sent = self.rt.commits.send(Commit::Record {
            key,
            bytes,
            companion: timing,
            done: Box::new(move |r| match r {
                Ok(PutOutcome::Created) => {
                    if let Some(st) = run.status.lock().as_mut() {
                        st.current = next;
                    }
                    run.complete(outcome);
                }
                // Someone wrote a version meanwhile (a cancel or stop request,
                // a takeover): settle it on the slow path.
                _ => {
                    let r2 = run.clone();
                    run.rt.pool.spawn(Box::new(move || {
                        let written = r2.write_final_status(state, error);
                        r2.complete(match (outcome, written) {
                            (Ok(v), Ok(())) => Ok(v),
                            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                        });
                    }));
                }
            }),
        });
        if let Err(e) = sent {
            if let Commit::Record { done, .. } = e.0 {
                done(Err(StoreError::Permanent {
                    op: "final status",
                    key: String::new(),
                    message: "the committer stopped".to_owned(),
                }));
            }
        }
    }

    /// Delivers the outcome to waiters.
    pub fn complete(&self, outcome: Result<Value, EngineError>) {
        self.runs.forget(&self.wid, self);
        *self.done.lock() = Some(outcome);
        self.done_cv.notify_all();
    }

    /// Waits for the outcome. The first waiter gets the error itself, later
    /// ones its message.
    pub fn wait(&self) -> Result<Value, EngineError> {
        let mut g = self.done.lock();
        while g.is_none() {
            self.done_cv.wait(&mut g);
        }
        match g.take() {
            Some(Ok(v)) => {
                *g = Some(Ok(v.clone()));
                Ok(v)
            }
            Some(Err(e)) => {
                *g = Some(Err(EngineError::Internal(format!(
                    "(reported earlier) {e}"
                ))));
                Err(e)
            }
            None => Err(EngineError::Internal("no outcome".to_owned())),
        }
    }

    /// Writes the final status of a durable run (the slow path, after a
    /// version written by someone else).
    fn write_final_status(&self, state: State, error: Option<String>) -> Result<(), EngineError> {
        let mut guard = self.status.lock();
        let Some(st) = guard.as_mut() else {
            return Ok(());
        };
        lease::write_final(
            self.rt.store.as_ref(),
            &self.wid,
            self.generation,
            st,
            state,
            error,
        )
    }

    /// This run's journal record in `state`.
    fn journal_record(&self, state: State, error: Option<String>) -> RunRecord {
        RunRecord {
            wid: self.wid.clone(),
            dag: self.dag_name.clone(),
            args: self.args.clone(),
            state,
            owner: self.rt.owner.clone(),
            started_us: self.started_us,
            finished_us: if state == State::Running { 0 } else { now_us() },
            error,
            tasks: self.dag.nodes.len() as u64,
        }
    }

    /// Journals the start of a run of Skip tasks only (unawaited).
    pub fn record_start(&self) {
        let _ = self.rt.journal.send(JournalItem {
            record: self.journal_record(State::Running, None),
            done: None,
        });
    }

    /// Journals the end of a run of Skip tasks only; the outcome is
    /// delivered once the record is durable.
    fn record_final(self: &Arc<Self>, state: State, outcome: Result<Value, EngineError>) {
        let error = outcome.as_ref().err().map(|e| e.to_string());
        let run = self.clone();
        let item = JournalItem {
            record: self.journal_record(state, error),
            done: Some(Box::new(move |written| {
                run.complete(written.and(outcome));
            })),
        };
        if let Err(e) = self.rt.journal.send(item) {
            if let Some(done) = e.0.done {
                done(Err(EngineError::Internal(
                    "the journal writer stopped".to_owned(),
                )));
            }
        }
    }

    /// Completes a run that only loads the stored output.
    pub fn complete_loaded(&self) {
        let key = self.task_key(&self.dag.nodes[self.dag.output].id);
        let outcome = (|| -> Result<Value, EngineError> {
            let bytes = self.rt.store.get(&key)?.ok_or_else(|| {
                EngineError::Internal(format!("committed output {key} disappeared"))
            })?;
            Ok((self.dag.nodes[self.dag.output].codec.decode)(
                &key, &bytes,
            )?)
        })();
        self.complete(outcome);
    }

    /// Whether the outcome is there.
    pub fn is_done(&self) -> bool {
        self.done.lock().is_some()
    }
}
