//! # exoflow-engine: the ExoFlow layer
//!
//! A **workflow** is a DAG of named **tasks**. Each task's output can be
//! checkpointed *sync* (durable before anything downstream starts), *async*
//! (downstream starts on the in-memory value; the task counts as committed once
//! the write is durable) or *skipped* (recomputed on recovery), to a local
//! directory or to S3. A crashed workflow resumes under the same id: committed
//! tasks are not run again, the others are, and every output is produced
//! exactly once.
//!
//! The rules that make it exactly-once:
//! - task ids come from the DAG (position and name), never from a counter, so
//!   a rebuilt DAG finds its committed outputs;
//! - an output is committed by one atomic, write-once object, checksummed;
//! - a task commits only after its inputs have committed;
//! - a workflow has one owner at a time: its status is a sequence of
//!   write-once versions (a compare-and-swap on both backends) carrying the
//!   owner's lease and generation.
//!
//! ```
//! use std::sync::Arc;
//! use exoflow_engine::{Dag, Engine, TaskOptions, WorkflowId, ResumeOptions};
//! use exoflow_engine::store::memory::MemStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(Arc::new(MemStore::new()));
//! engine.register("sum-of-squares", |n: &u64| {
//!     let mut dag = Dag::new();
//!     let n = *n;
//!     let xs = dag.task("numbers", TaskOptions::sync(), move |_| Ok((1..=n).collect::<Vec<u64>>()));
//!     let sq = dag.task1("squares", TaskOptions::asynchronous(), xs, |_, xs: &Vec<u64>| {
//!         Ok(xs.iter().map(|x| x * x).collect::<Vec<u64>>())
//!     });
//!     let total = dag.task1("total", TaskOptions::skip(), sq, |_, v: &Vec<u64>| Ok(v.iter().sum::<u64>()));
//!     dag.finish(total)
//! })?;
//! let wid = WorkflowId::new("example-1")?;
//! let out: Arc<u64> = engine.run("sum-of-squares", Some(wid.clone()), &10u64)?;
//! assert_eq!(*out, 385);
//! // Resuming a finished workflow whose output is not stored is refused;
//! // its state is recorded:
//! assert_eq!(engine.status(&wid)?.state, exoflow_engine::State::Successful);
//! # let _ = ResumeOptions::default();
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod codec;
mod context;
pub mod dag;
mod engine;
pub mod error;
pub mod failpoint;
pub mod id;
pub mod journal;
mod run;
pub mod status;
pub mod store;
pub mod task;

pub use context::{SpawnContext, Spawned, TaskContext};
pub use dag::{Dag, DagError, Data, TaskRef, Workflow};
pub use engine::{Engine, EngineOptions, ResumeOptions, RunHandle, WorkflowInfo};
pub use error::EngineError;
pub use id::WorkflowId;
pub use status::State;
pub use task::{Checkpoint, Failure, TaskError, TaskOptions, TaskResult, Timing, TimingRecord};
