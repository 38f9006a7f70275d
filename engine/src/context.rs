//! What a running task sees: its ids, cancellation, write-once external
//! outputs, and spawning of child tasks.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::codec::{self, Kind};
use crate::id::{validate_component, WorkflowId};
use crate::layout::output_key;
use crate::store::{put_once, PutOnce, Store};
use crate::task::{Checkpoint, Data, Failure, TaskError, TaskOptions, TaskResult};

/// What a task sees of the run it belongs to.
pub(crate) trait TaskHost: Send + Sync {
    /// The workflow.
    fn workflow_id(&self) -> &WorkflowId;
    /// The id of task `node`.
    fn task_id(&self, node: usize) -> &str;
    /// The name of task `node`.
    fn task_name(&self, node: usize) -> &str;
    /// The owner generation of the run.
    fn generation(&self) -> u64;
    /// Whether the run stopped starting tasks (failed, canceled, stopping).
    fn is_halted(&self) -> bool;
    /// Whether a stop was requested.
    fn stop_requested(&self) -> bool;
    /// The store.
    fn store(&self) -> &crate::store::SharedStore;
    /// Blocks until every input of task `node` is committed; `false` if
    /// the run halts first.
    fn wait_inputs_committed(&self, node: usize) -> bool;
    /// Where the output of task `task_id` is committed.
    fn task_key(&self, task_id: &str) -> String;
}

/// The context of one task attempt.
pub struct TaskContext<'a> {
    pub(crate) run: &'a Arc<dyn TaskHost>,
    pub(crate) node: usize,
    pub(crate) attempt: u32,
}

impl TaskContext<'_> {
    /// The workflow id.
    pub fn workflow_id(&self) -> &WorkflowId {
        self.run.workflow_id()
    }

    /// This task's id (position and name).
    pub fn task_id(&self) -> &str {
        self.run.task_id(self.node)
    }

    /// This task's name.
    pub fn task_name(&self) -> &str {
        self.run.task_name(self.node)
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The ownership generation of this execution (1 for a first run, raised
    /// by every resume). Keys a long task writes itself should carry it.
    pub fn generation(&self) -> u64 {
        self.run.generation()
    }

    /// Whether the run is canceled or failed: a long task should return.
    pub fn is_cancelled(&self) -> bool {
        self.run.is_halted() && !self.run.stop_requested()
    }

    /// Whether a stop was requested: a long (streaming) task should finish
    /// what is in flight, commit it and return.
    pub fn stop_requested(&self) -> bool {
        self.run.stop_requested()
    }

    /// The engine's store, for tasks that keep their own durable state.
    pub fn store(&self) -> &dyn Store {
        self.run.store().as_ref()
    }

    /// The engine's store, shared (for threads the task starts).
    pub fn store_arc(&self) -> crate::store::SharedStore {
        self.run.store().clone()
    }

    /// Writes an external output `outputs/<wid>/<name>` once. It waits until
    /// every input of this task is committed, so nothing built on a value that
    /// a crash could still change becomes visible. Written again after a crash,
    /// it compares the bytes and fails loudly on a difference.
    pub fn publish(&self, name: &str, bytes: &[u8]) -> TaskResult<()> {
        for part in name.split('/') {
            validate_component("output name", part, 255).map_err(Failure::fatal)?;
        }
        if !self.run.wait_inputs_committed(self.node) {
            return Err(Failure::fatal(
                "the workflow halted before this task's inputs committed",
            ));
        }
        let key = output_key(self.run.workflow_id(), name);
        match put_once(self.store(), &key, bytes)? {
            PutOnce::Written => Ok(()),
            PutOnce::Differs(_) => Err(Failure::fatal(format!(
                "output {key} exists with other bytes: this task is not deterministic"
            ))),
        }
    }

    /// Spawns a child task with id `<this task id>.<key>`, run on its own
    /// thread. With a checkpoint its output is durable before
    /// [`Spawned::wait`] returns (Async is treated as Sync), and a resumed
    /// parent that spawns it again gets the committed output back without
    /// running it.
    pub fn spawn<O, F>(&self, key: &str, opts: TaskOptions, f: F) -> TaskResult<Spawned<O>>
    where
        O: Data,
        F: Fn(&SpawnContext) -> TaskResult<O> + Send + 'static,
    {
        validate_component("spawn key", key, 100).map_err(Failure::fatal)?;
        if opts.nondeterministic && opts.checkpoint == Checkpoint::Skip {
            return Err(Failure::fatal(format!(
                "spawned task {key} is nondeterministic, so its output must be checkpointed (Sync or Async), not Skip"
            )));
        }
        let id = format!("{}.{key}", self.task_id());
        let run = self.run.clone();
        let node = self.node;
        let handle = std::thread::Builder::new()
            .name(format!("exoflow-spawn-{key}"))
            .spawn(move || run_spawned(&run, node, id, opts, f))
            .map_err(Failure::from)?;
        Ok(Spawned {
            handle: Some(handle),
            _o: PhantomData,
        })
    }
}

/// The context of a spawned task attempt.
pub struct SpawnContext {
    wid: WorkflowId,
    id: String,
    attempt: u32,
    run: Arc<dyn TaskHost>,
}

impl SpawnContext {
    /// The workflow id.
    pub fn workflow_id(&self) -> &WorkflowId {
        &self.wid
    }

    /// The spawned task's id.
    pub fn task_id(&self) -> &str {
        &self.id
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether the run is canceled or failed.
    pub fn is_cancelled(&self) -> bool {
        self.run.is_halted() && !self.run.stop_requested()
    }
}

/// A spawned task: wait for its output.
pub struct Spawned<O> {
    handle: Option<std::thread::JoinHandle<Result<Arc<O>, TaskError>>>,
    _o: PhantomData<fn() -> O>,
}

impl<O> Drop for Spawned<O> {
    /// A spawned task never outlives the handle: dropping it waits for the
    /// task, so that nothing it writes lands after its parent's run ended.
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl<O> Spawned<O> {
    /// Whether the task has ended (so that [`Spawned::wait`] returns at once).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Waits for the output (committed, if the task checkpoints).
    pub fn wait(mut self) -> Result<Arc<O>, TaskError> {
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            _ => Err(TaskError {
                task: "spawned".to_owned(),
                message: "the spawned task's thread panicked".to_owned(),
                attempts: 0,
            }),
        }
    }
}

fn run_spawned<O, F>(
    run: &Arc<dyn TaskHost>,
    parent: usize,
    id: String,
    opts: TaskOptions,
    f: F,
) -> Result<Arc<O>, TaskError>
where
    O: Data,
    F: Fn(&SpawnContext) -> TaskResult<O>,
{
    let err = |message: String, attempts| TaskError {
        task: id.clone(),
        message,
        attempts,
    };
    let key = run.task_key(&id);
    let store = run.store().clone();
    let checkpointed = opts.checkpoint != Checkpoint::Skip;
    if checkpointed {
        match store.get(&key) {
            Ok(Some(bytes)) => {
                return codec::decode::<O>(&key, Kind::TaskOutput, &bytes)
                    .map(Arc::new)
                    .map_err(|e| err(e.to_string(), 0))
            }
            Ok(None) => {}
            Err(e) => return Err(err(e.to_string(), 0)),
        }
    }
    let mut attempt = 0;
    let value = loop {
        attempt += 1;
        let ctx = SpawnContext {
            wid: run.workflow_id().clone(),
            id: id.clone(),
            attempt,
            run: run.clone(),
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&ctx))) {
            Ok(Ok(v)) => break v,
            Ok(Err(failure)) if failure.is_fatal() || attempt > opts.max_retries => {
                return Err(err(failure.message().to_owned(), attempt))
            }
            Ok(Err(_)) => {}
            Err(_) if attempt > opts.max_retries => {
                return Err(err("panicked".to_owned(), attempt))
            }
            Err(_) => {}
        }
        std::thread::sleep(opts.backoff_for(attempt - 1));
    };
    if !checkpointed {
        return Ok(Arc::new(value));
    }
    let bytes = codec::encode(Kind::TaskOutput, &value)
        .map_err(|e| err(format!("cannot serialize: {e}"), attempt))?;
    if !run.wait_inputs_committed(parent) {
        return Err(err(
            "the workflow halted before the parent's inputs committed".to_owned(),
            attempt,
        ));
    }
    match put_once(store.as_ref(), &key, &bytes) {
        Ok(PutOnce::Written) => Ok(Arc::new(value)),
        Ok(PutOnce::Differs(stored)) if opts.nondeterministic => {
            codec::decode::<O>(&key, Kind::TaskOutput, &stored)
                .map(Arc::new)
                .map_err(|e| err(e.to_string(), attempt))
        }
        Ok(PutOnce::Differs(_)) => Err(err(
            format!(
                "output differs from the one committed at {key}: the task is not deterministic"
            ),
            attempt,
        )),
        Err(e) => Err(err(e.to_string(), attempt)),
    }
}
