//! One execution of a workflow: planning from what is committed, scheduling
//! ready tasks, committing outputs, and finishing.
//!
//! Each planned task has two gates:
//! - the *start gate* counts inputs whose value is not yet available (a Sync
//!   input becomes available when durable, Async and Skip ones at once);
//! - the *commit gate* counts inputs not yet committed, plus one for the task's
//!   own completion. When it reaches zero the task's output is written (Sync,
//!   Async) or counts as committed (Skip). So a task never commits before its
//!   inputs, even when it ran on an Async parent's in-memory value.
//!
//! A task that waits until its inputs are committed
//! ([`crate::TaskOptions::wait_until_committed`]) has its start gate opened
//! by its inputs' commits instead of their values.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex};

mod finish;
mod ownership;

use std::collections::HashMap;
use std::sync::Weak;

use crate::commit::CommitReq;
use crate::context::{TaskContext, TaskHost};
use crate::dag::{Built, Value};
use crate::error::EngineError;
use crate::failpoint;
use crate::id::WorkflowId;
use crate::layout::task_key;
use crate::lease::LeaseState;
use crate::plan::Plan;
use crate::runtime::Runtime;
use crate::store::PutOnce;
use crate::task::{now_us, Checkpoint, TaskError, Timing, TimingRecord};

/// The runs of an engine in flight, by workflow id.
#[derive(Default)]
pub(crate) struct Runs {
    pub map: Mutex<HashMap<WorkflowId, Weak<Run>>>,
}

impl Runs {
    /// Registers `run`.
    pub fn insert(&self, run: &Arc<Run>) {
        self.map.lock().insert(run.wid.clone(), Arc::downgrade(run));
    }

    /// Removes `run` (and not a later run of the same id).
    pub fn forget(&self, wid: &WorkflowId, run: &Run) {
        let mut runs = self.map.lock();
        if let Some(w) = runs.get(wid) {
            if std::ptr::eq(w.as_ptr(), run) {
                runs.remove(wid);
            }
        }
    }

    /// How many runs are in flight.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// The runs in flight.
    pub fn live(&self) -> Vec<Arc<Run>> {
        self.map.lock().values().filter_map(Weak::upgrade).collect()
    }
}

pub(crate) struct NodeRt {
    pub plan: Plan,
    start_gate: AtomicUsize,
    commit_gate: AtomicUsize,
    pub value: OnceLock<Value>,
    /// A Sync output waiting for its commit, with its bytes.
    pending: Mutex<Option<Value>>,
    bytes: Mutex<Option<Vec<u8>>>,
    committed: AtomicBool,
    timing: Mutex<Timing>,
    attempts: AtomicU32,
    children: Vec<usize>,
}

/// Why a run stops early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Halt {
    None = 0,
    Cancel = 1,
    Stop = 2,
}

/// One execution of a workflow.
pub(crate) struct Run {
    pub rt: Arc<Runtime>,
    pub runs: Arc<Runs>,
    pub wid: WorkflowId,
    pub dag: Arc<Built>,
    pub dag_name: String,
    pub args: Vec<u8>,
    pub durable: bool,
    pub generation: u64,
    pub nodes: Vec<NodeRt>,
    active: AtomicUsize,
    uncommitted: AtomicUsize,
    failure: Mutex<Option<EngineError>>,
    failed: AtomicBool,
    fenced: AtomicBool,
    halt: AtomicU32,
    pub status: Mutex<Option<LeaseState>>,
    timings: Mutex<Vec<TimingRecord>>,
    timing_seq: AtomicU32,
    commit_cv: (Mutex<()>, Condvar),
    done: Mutex<Option<Result<Value, EngineError>>>,
    done_cv: Condvar,
    pub started_us: u64,
}

impl Run {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rt: Arc<Runtime>,
        runs: Arc<Runs>,
        wid: WorkflowId,
        dag: Arc<Built>,
        dag_name: String,
        args: Vec<u8>,
        generation: u64,
        plans: Vec<Plan>,
        status: Option<LeaseState>,
    ) -> Arc<Self> {
        let n = dag.nodes.len();
        let mut children = vec![Vec::new(); n];
        for (i, node) in dag.nodes.iter().enumerate() {
            for &p in &node.inputs {
                if plans[i] == Plan::Run {
                    children[p].push(i);
                }
            }
        }
        let nodes: Vec<NodeRt> = dag
            .nodes
            .iter()
            .zip(children)
            .enumerate()
            .map(|(i, (node, children))| {
                let running_inputs = if plans[i] == Plan::Run {
                    node.inputs
                        .iter()
                        .filter(|&&p| plans[p] == Plan::Run)
                        .count()
                } else {
                    0
                };
                NodeRt {
                    plan: plans[i],
                    start_gate: AtomicUsize::new(running_inputs),
                    commit_gate: AtomicUsize::new(running_inputs + 1),
                    value: OnceLock::new(),
                    pending: Mutex::new(None),
                    bytes: Mutex::new(None),
                    committed: AtomicBool::new(plans[i] == Plan::Stored),
                    timing: Mutex::new(Timing {
                        ready_us: 0,
                        start_us: 0,
                        end_us: 0,
                        durable_us: 0,
                    }),
                    attempts: AtomicU32::new(0),
                    children,
                }
            })
            .collect();
        let uncommitted = plans.iter().filter(|p| **p == Plan::Run).count();
        let durable = dag.durable();
        Arc::new(Self {
            rt,
            runs,
            wid,
            dag,
            dag_name,
            args,
            durable,
            generation,
            nodes,
            active: AtomicUsize::new(0),
            uncommitted: AtomicUsize::new(uncommitted),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            halt: AtomicU32::new(Halt::None as u32),
            status: Mutex::new(status),
            timings: Mutex::new(Vec::new()),
            timing_seq: AtomicU32::new(0),
            commit_cv: (Mutex::new(()), Condvar::new()),
            done: Mutex::new(None),
            done_cv: Condvar::new(),
            started_us: now_us(),
        })
    }

    pub fn task_key(&self, task_id: &str) -> String {
        task_key(&self.wid, task_id)
    }

    /// Starts the tasks whose inputs are all available.
    pub fn start(self: &Arc<Self>) {
        // Hold one unit of activity while seeding, so that finishing cannot
        // begin before every ready task is scheduled.
        self.active.fetch_add(1, Ordering::SeqCst);
        let ready: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].plan == Plan::Run
                    && self.nodes[i].start_gate.load(Ordering::SeqCst) == 0
            })
            .collect();
        for i in ready {
            self.schedule(i);
        }
        self.deactivate();
    }

    fn schedule(self: &Arc<Self>, i: usize) {
        self.nodes[i].timing.lock().ready_us = now_us();
        self.active.fetch_add(1, Ordering::SeqCst);
        let run = self.clone();
        self.rt.pool.spawn(Box::new(move || {
            // The task's own panics are caught in `execute`; this catches the
            // rest (a panicking Serialize, say) so that the run still ends.
            if std::panic::catch_unwind(AssertUnwindSafe(|| run.execute(i))).is_err() {
                run.fail(EngineError::Internal(format!(
                    "task {} panicked outside its function (serializing its output?)",
                    run.dag.nodes[i].id
                )));
            }
            run.deactivate();
        }));
    }

    pub fn deactivate(self: &Arc<Self>) {
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            let run = self.clone();
            self.rt.pool.spawn(Box::new(move || run.finish()));
        }
    }

    pub fn is_halted(&self) -> bool {
        self.failed.load(Ordering::SeqCst) || self.halt.load(Ordering::SeqCst) != Halt::None as u32
    }

    pub fn request_cancel(&self) {
        let _ = self.halt.compare_exchange(
            Halt::None as u32,
            Halt::Cancel as u32,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.commit_cv.1.notify_all();
    }

    pub fn request_stop(&self) {
        let _ = self.halt.compare_exchange(
            Halt::None as u32,
            Halt::Stop as u32,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    pub fn stop_requested(&self) -> bool {
        self.halt.load(Ordering::SeqCst) == Halt::Stop as u32
    }

    pub fn cancel_requested(&self) -> bool {
        self.halt.load(Ordering::SeqCst) == Halt::Cancel as u32
    }

    /// Stops all further writes of this run.
    pub fn fence(&self) {
        self.fenced.store(true, Ordering::SeqCst);
    }

    /// Whether this run lost ownership: it must write nothing more.
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    pub fn fail(&self, e: EngineError) {
        if matches!(e, EngineError::Fenced { .. }) {
            self.fenced.store(true, Ordering::SeqCst);
        }
        let mut f = self.failure.lock();
        if f.is_none() {
            if self.stop_requested() {
                tracing::info!(workflow = %self.wid, error = %e, "workflow stopping");
            } else {
                tracing::warn!(workflow = %self.wid, error = %e, "workflow failing");
            }
            *f = Some(e);
        }
        self.failed.store(true, Ordering::SeqCst);
        self.commit_cv.1.notify_all();
    }

    /// The value of input `p`, loading a stored one.
    fn input_value(&self, p: usize) -> Result<Value, EngineError> {
        if let Some(v) = self.nodes[p].value.get() {
            return Ok(v.clone());
        }
        let node = &self.dag.nodes[p];
        let key = self.task_key(&node.id);
        let bytes = self.rt.store.get(&key)?.ok_or_else(|| {
            EngineError::Internal(format!("committed output {key} disappeared from the store"))
        })?;
        let v = (node.codec.decode)(&key, &bytes)?;
        Ok(self.nodes[p].value.get_or_init(|| v).clone())
    }

    fn execute(self: &Arc<Self>, i: usize) {
        if self.is_halted() {
            return;
        }
        let node = &self.dag.nodes[i];
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for &p in &node.inputs {
            match self.input_value(p) {
                Ok(v) => inputs.push(v),
                Err(e) => return self.fail(e),
            }
        }
        let mut attempt = 0u32;
        let outcome = loop {
            attempt += 1;
            if self.is_halted() {
                return;
            }
            self.nodes[i].timing.lock().start_us = now_us();
            let host: Arc<dyn TaskHost> = self.clone();
            let ctx = TaskContext {
                run: &host,
                node: i,
                attempt,
            };
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| (node.func)(&ctx, &inputs)));
            let failure = match r {
                Ok(Ok(v)) => break Ok(v),
                Ok(Err(f)) => f,
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_owned());
                    crate::task::Failure::msg(format!("panicked: {msg}"))
                }
            };
            if failure.is_fatal() || attempt > node.opts.max_retries {
                break Err(TaskError {
                    task: node.name.clone(),
                    message: failure.message().to_owned(),
                    attempts: attempt,
                });
            }
            tracing::debug!(workflow = %self.wid, task = %node.name, attempt, error = %failure, "task failed, retrying");
            std::thread::sleep(node.opts.backoff_for(attempt - 1));
        };
        self.nodes[i].timing.lock().end_us = now_us();
        self.nodes[i].attempts.store(attempt, Ordering::Relaxed);
        let value = match (node.codec.finish)(outcome) {
            Ok(v) => v,
            Err(error) => {
                return self.fail(EngineError::TaskFailed {
                    wid: self.wid.clone(),
                    error,
                })
            }
        };
        failpoint::hit("task.after_compute");
        // Async and Skip outputs go downstream at once; the Async encoding
        // then overlaps with the readers.
        let keep = match node.opts.checkpoint {
            Checkpoint::Sync => Some(value),
            Checkpoint::Async | Checkpoint::Skip => {
                let _ = self.nodes[i].value.set(value.clone());
                self.release_value(i);
                (node.opts.checkpoint == Checkpoint::Async).then_some(value)
            }
        };
        if let Some(value) = &keep {
            match (node.codec.encode)(&**value) {
                Ok(b) => *self.nodes[i].bytes.lock() = Some(b),
                Err(e) => {
                    return self.fail(EngineError::Encode {
                        wid: self.wid.clone(),
                        task: node.id.clone(),
                        message: e.to_string(),
                    })
                }
            }
        }
        if node.opts.checkpoint == Checkpoint::Sync {
            *self.nodes[i].pending.lock() = keep;
        }
        self.commit_gate_down(i);
    }

    fn release_value(self: &Arc<Self>, i: usize) {
        for &c in &self.nodes[i].children {
            if self.dag.nodes[c].opts.wait_until_committed {
                continue; // opened by the commit instead
            }
            if self.nodes[c].start_gate.fetch_sub(1, Ordering::SeqCst) == 1 && !self.is_halted() {
                self.schedule(c);
            }
        }
    }

    /// The task's own completion: the last unit of its commit gate, unless an
    /// input is still uncommitted.
    fn commit_gate_down(self: &Arc<Self>, i: usize) {
        if self.nodes[i].commit_gate.fetch_sub(1, Ordering::SeqCst) != 1 {
            // Computed on an input's in-memory value; that input's commit
            // will open the gate.
            failpoint::hit("commit.waiting_for_parent");
            return;
        }
        match self.dag.nodes[i].opts.checkpoint {
            Checkpoint::Skip => self.mark_committed(i),
            Checkpoint::Sync | Checkpoint::Async => self.enqueue_commit(i),
        }
    }

    fn enqueue_commit(self: &Arc<Self>, i: usize) {
        let Some(bytes) = self.nodes[i].bytes.lock().take() else {
            return self.fail(EngineError::Internal(format!(
                "task {} has no bytes to commit",
                self.dag.nodes[i].id
            )));
        };
        // A failed or canceled run still commits what it computed; a fenced
        // one writes nothing more.
        if self.is_fenced() {
            return;
        }
        self.active.fetch_add(1, Ordering::SeqCst);
        let req = CommitReq {
            owner: self.clone(),
            node: i,
            key: self.task_key(&self.dag.nodes[i].id),
            bytes,
        };
        if self.rt.commits.send_output(req, || self.quiet()).is_err() {
            self.fail(EngineError::Internal("the committer stopped".to_owned()));
            self.deactivate();
        }
    }

    /// Called by the committer with the store's answer for node `i`.
    pub fn committed(self: &Arc<Self>, i: usize, key: &str, result: Result<PutOnce, EngineError>) {
        let node = &self.dag.nodes[i];
        match result {
            Ok(PutOnce::Written) => {}
            Ok(PutOnce::Differs(stored)) => {
                if !node.opts.nondeterministic {
                    return self.fail(EngineError::Nondeterministic {
                        wid: self.wid.clone(),
                        task: node.id.clone(),
                        key: key.to_owned(),
                    });
                }
                // A nondeterministic task committed by an earlier owner: its
                // value wins. With Sync nothing read ours yet; with Async a
                // reader may have, so the run must stop and be resumed.
                if node.opts.checkpoint == Checkpoint::Async {
                    return self.fail(EngineError::Conflict {
                        wid: self.wid.clone(),
                        message: format!("the output of nondeterministic task {} was committed by another owner while this one ran; resume to continue from the committed value", node.id),
                    });
                }
                match (node.codec.decode)(key, &stored) {
                    Ok(v) => {
                        *self.nodes[i].pending.lock() = Some(v);
                    }
                    Err(e) => return self.fail(e.into()),
                }
            }
            Err(e) => return self.fail(e),
        }
        if node.opts.checkpoint == Checkpoint::Sync {
            if let Some(v) = self.nodes[i].pending.lock().take() {
                let _ = self.nodes[i].value.set(v);
            }
            self.release_value(i);
        }
        self.mark_committed(i);
    }

    fn mark_committed(self: &Arc<Self>, i: usize) {
        let mut stack = vec![i];
        while let Some(n) = stack.pop() {
            self.nodes[n].committed.store(true, Ordering::SeqCst);
            if self.dag.nodes[n].opts.checkpoint != Checkpoint::Skip {
                self.nodes[n].timing.lock().durable_us = now_us();
            }
            self.record_timing(n);
            self.uncommitted.fetch_sub(1, Ordering::SeqCst);
            for &c in &self.nodes[n].children {
                if self.dag.nodes[c].opts.wait_until_committed
                    && self.nodes[c].start_gate.fetch_sub(1, Ordering::SeqCst) == 1
                    && !self.is_halted()
                {
                    self.schedule(c);
                }
                if self.nodes[c].commit_gate.fetch_sub(1, Ordering::SeqCst) == 1 {
                    if self.dag.nodes[c].opts.checkpoint == Checkpoint::Skip {
                        stack.push(c);
                    } else {
                        self.enqueue_commit(c);
                    }
                }
            }
        }
        let _g = self.commit_cv.0.lock();
        self.commit_cv.1.notify_all();
    }

    fn record_timing(&self, n: usize) {
        let rec = TimingRecord {
            task_id: self.dag.nodes[n].id.clone(),
            name: self.dag.nodes[n].name.clone(),
            attempts: self.nodes[n].attempts.load(Ordering::Relaxed),
            timing: *self.nodes[n].timing.lock(),
        };
        self.timings.lock().push(rec);
    }

    /// Whether every input of node `i` is committed.
    pub fn inputs_committed(&self, i: usize) -> bool {
        self.dag.nodes[i]
            .inputs
            .iter()
            .all(|&p| self.nodes[p].committed.load(Ordering::SeqCst))
    }

    /// Blocks until every input of node `i` is committed, or the run halts.
    pub fn wait_inputs_committed(&self, i: usize) -> bool {
        let mut g = self.commit_cv.0.lock();
        loop {
            if self.inputs_committed(i) {
                return true;
            }
            if self.failed.load(Ordering::SeqCst) || self.cancel_requested() {
                return false;
            }
            self.commit_cv
                .1
                .wait_for(&mut g, std::time::Duration::from_millis(50));
        }
    }

    /// Timing records gathered so far.
    pub fn timings(&self) -> Vec<TimingRecord> {
        self.timings.lock().clone()
    }
}
