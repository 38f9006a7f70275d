//! The engine's error type.

use crate::codec::DecodeError;
use crate::dag::DagError;
use crate::id::{InvalidId, WorkflowId};
use crate::status::{Owner, State};
use crate::store::StoreError;
use crate::task::TaskError;

/// An engine error: what happened, to which workflow, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed (after retries for transient errors).
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A stored object is corrupt or of another format version.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// A name was refused.
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    /// The DAG is malformed.
    #[error("DAG: {0}")]
    Dag(#[from] DagError),
    /// A task failed after its retries.
    #[error("workflow {wid}: {error}")]
    TaskFailed {
        /// The workflow.
        wid: WorkflowId,
        /// The task's error.
        error: TaskError,
    },
    /// A deterministic task produced bytes other than its committed output.
    #[error("workflow {wid}: task {task} produced an output that differs from the one committed at {key}: the task is not deterministic (mark it nondeterministic, or make it so)")]
    Nondeterministic {
        /// The workflow.
        wid: WorkflowId,
        /// The task id.
        task: String,
        /// The key of the committed output.
        key: String,
    },
    /// An output could not be serialized.
    #[error("workflow {wid}: task {task}: cannot serialize its output: {message}")]
    Encode {
        /// The workflow.
        wid: WorkflowId,
        /// The task id.
        task: String,
        /// Why.
        message: String,
    },
    /// `run` on an id that exists.
    #[error("workflow {0} exists already: resume it, or choose another id")]
    AlreadyExists(WorkflowId),
    /// No such workflow.
    #[error("workflow {wid} not found in {store}")]
    NotFound {
        /// The workflow.
        wid: WorkflowId,
        /// The store searched.
        store: String,
    },
    /// The registered DAG name is unknown to this engine.
    #[error(
        "no DAG named {0:?} is registered in this engine: register it before running or resuming"
    )]
    UnknownDag(String),
    /// The DAG built on resume differs from the workflow's.
    #[error("workflow {0}: the DAG built now differs from the one the workflow was created with (task names, inputs or options changed); resume it with the code that created it")]
    DagChanged(WorkflowId),
    /// A live owner holds the workflow.
    #[error("workflow {wid} is owned by {owner} (lease valid for {remaining_ms} ms more{alive}); wait for it, stop it, or take over with --force")]
    Owned {
        /// The workflow.
        wid: WorkflowId,
        /// Its owner.
        owner: Owner,
        /// Lease time left.
        remaining_ms: u64,
        /// ", process alive" when known.
        alive: &'static str,
    },
    /// Another process changed the status first (a concurrent resume or
    /// takeover).
    #[error("workflow {wid}: {message}")]
    Conflict {
        /// The workflow.
        wid: WorkflowId,
        /// What happened.
        message: String,
    },
    /// This process lost ownership: a newer owner took over.
    #[error("workflow {wid}: ownership lost to {by} (generation {generation}); this process stopped writing")]
    Fenced {
        /// The workflow.
        wid: WorkflowId,
        /// The new owner.
        by: String,
        /// Its generation.
        generation: u64,
    },
    /// The workflow was canceled.
    #[error("workflow {0} was canceled")]
    Canceled(WorkflowId),
    /// The workflow is in a state that does not allow the operation.
    #[error("workflow {wid} is {state:?}: {message}")]
    BadState {
        /// The workflow.
        wid: WorkflowId,
        /// Its state.
        state: State,
        /// What cannot be done.
        message: String,
    },
    /// The output is not of the type asked for.
    #[error("workflow {0}: its output is not of the requested type")]
    OutputType(WorkflowId),
    /// The engine's API was used in a way that cannot work.
    #[error("{0}")]
    Usage(&'static str),
    /// Something the engine itself got wrong.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// Whether running `resume` again may succeed (the error came from a store
    /// outage, a lost race or a fenced owner, not from the workflow itself).
    pub fn is_resumable(&self) -> bool {
        match self {
            EngineError::Store(e) => e.is_transient(),
            EngineError::Conflict { .. }
            | EngineError::Fenced { .. }
            | EngineError::Owned { .. } => true,
            EngineError::TaskFailed { .. } => true,
            _ => false,
        }
    }
}
