//! A run as an owner: its lease renewed and acted on, what it lets its
//! tasks see ([`TaskHost`]) and how the commit path writes for it
//! ([`CommitOwner`]).

use std::sync::Arc;

use super::Run;
use crate::commit::CommitOwner;
use crate::context::TaskHost;
use crate::error::EngineError;
use crate::id::WorkflowId;
use crate::layout::status_key;
use crate::lease::{self, RenewOutcome};
use crate::status::{now_ms, State};
use crate::store::{PutOnce, SharedStore, StoreError};

impl Run {
    /// Whether a task's output may be committed on its own thread: no job
    /// waits for a worker and no other run is in flight (many runs at once
    /// want their commits grouped, and their tasks the workers).
    pub(super) fn quiet(&self) -> bool {
        self.rt.pool.idle() && self.runs.len() <= 1
    }

    /// Whether the lease is due for renewal at `now`.
    pub fn renewal_due(&self, now: u64) -> bool {
        let every = crate::runtime::renew_every(self.rt.opts.lease);
        self.status
            .lock()
            .as_ref()
            .is_some_and(|s| now >= s.last_renew_ms + every)
    }

    /// Renews the lease of a durable run, and acts on what the renewal
    /// found: a cancel or stop request, or a takeover.
    pub fn renew_lease(&self) {
        let renewal = {
            let mut guard = self.status.lock();
            let Some(st) = guard.as_mut() else { return };
            lease::renew(
                self.rt.store.as_ref(),
                &self.wid,
                self.generation,
                self.rt.opts.lease,
                st,
            )
        };
        match renewal.requested {
            Some(State::CancelRequested) => self.request_cancel(),
            Some(State::StopRequested) => self.request_stop(),
            _ => {}
        }
        match renewal.outcome {
            RenewOutcome::Renewed => {}
            RenewOutcome::Fenced { by, generation } => self.fail(EngineError::Fenced {
                wid: self.wid.clone(),
                by,
                generation,
            }),
            RenewOutcome::Failed(e) => {
                tracing::warn!(workflow = %self.wid, error = %e, "lease renewal failed; will retry");
            }
        }
    }
}

impl TaskHost for Run {
    fn workflow_id(&self) -> &WorkflowId {
        &self.wid
    }
    fn task_id(&self, node: usize) -> &str {
        &self.dag.nodes[node].id
    }
    fn task_name(&self, node: usize) -> &str {
        &self.dag.nodes[node].name
    }
    fn generation(&self) -> u64 {
        self.generation
    }
    fn is_halted(&self) -> bool {
        Run::is_halted(self)
    }
    fn stop_requested(&self) -> bool {
        Run::stop_requested(self)
    }
    fn store(&self) -> &SharedStore {
        &self.rt.store
    }
    fn wait_inputs_committed(&self, node: usize) -> bool {
        Run::wait_inputs_committed(self, node)
    }
    fn task_key(&self, task_id: &str) -> String {
        Run::task_key(self, task_id)
    }
}

impl CommitOwner for Run {
    fn may_write(&self) -> bool {
        let now = now_ms();
        let lapsed = self
            .status
            .lock()
            .as_ref()
            .is_some_and(|s| s.current.lease_until_ms <= now);
        if lapsed {
            self.renew_lease();
            let still = self
                .status
                .lock()
                .as_ref()
                .is_some_and(|s| s.current.lease_until_ms <= now_ms());
            if still && !self.is_fenced() {
                self.fail(EngineError::Store(StoreError::Transient {
                    op: "renew lease",
                    key: status_key(&self.wid, 0),
                    message: "the lease lapsed and could not be renewed; nothing more is written"
                        .to_owned(),
                }));
                self.fence();
            }
        }
        !self.is_fenced()
    }

    fn committed(self: Arc<Self>, node: usize, key: &str, result: Result<PutOnce, EngineError>) {
        Run::committed(&self, node, key, result);
    }

    fn released(self: Arc<Self>) {
        self.deactivate();
    }
}
