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
//! let out: Arc<u64> = engine.workflow("sum-of-squares").args(&10u64).id(wid.clone()).run()?;
//! assert_eq!(*out, 385);
//! // Resuming a finished workflow whose output is not stored is refused;
//! // its state is recorded:
//! assert_eq!(engine.status(&wid)?.state, exoflow_engine::State::Successful);
//! # let _ = ResumeOptions::default();
//! # Ok(())
//! # }
//! ```
//!
//! ## Resume after a crash
//!
//! A failed (or killed) workflow resumes under its id: committed tasks are
//! not run again, and the output is the same.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
//! use exoflow_engine::{Dag, Engine, Failure, ResumeOptions, TaskOptions, WorkflowId};
//! use exoflow_engine::store::memory::MemStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemStore::new());
//! let loads = Arc::new(AtomicUsize::new(0));
//! let broken = Arc::new(AtomicBool::new(true));
//! let build = || {
//!     let (loads, broken) = (loads.clone(), broken.clone());
//!     let mut dag = Dag::new();
//!     let data = dag.task("load", TaskOptions::sync(), move |_| {
//!         loads.fetch_add(1, Ordering::SeqCst);
//!         Ok(vec![1u64, 2, 3])
//!     });
//!     let sum = dag.task1("sum", TaskOptions::sync().retries(0), data, move |_, v: &Vec<u64>| {
//!         if broken.load(Ordering::SeqCst) {
//!             return Err(Failure::msg("the sink is down"));
//!         }
//!         Ok(v.iter().sum::<u64>())
//!     });
//!     dag.finish(sum)
//! };
//! let wid = WorkflowId::new("nightly")?;
//! let engine = Engine::new(store.clone());
//! assert!(engine.workflow_of(&build()?).id(wid.clone()).run().is_err());
//! broken.store(false, Ordering::SeqCst);
//! // A new engine (think: a restarted process) resumes it.
//! let engine = Engine::new(store);
//! assert_eq!(*engine.resume(&wid).rebuilt_from(&build()?).run()?, 6);
//! assert_eq!(loads.load(Ordering::SeqCst), 1, "`load` was committed: not run again");
//! # Ok(())
//! # }
//! ```
//!
//! ## Services: register once, run many times, inspect
//!
//! ```
//! use std::sync::Arc;
//! use exoflow_engine::{Dag, Engine, State, TaskOptions, WorkflowId};
//! use exoflow_engine::store::memory::MemStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(Arc::new(MemStore::new()));
//! engine.register("double", |x: &u64| {
//!     let mut dag = Dag::new();
//!     let x = *x;
//!     let t = dag.task("double", TaskOptions::sync(), move |_| Ok(2 * x));
//!     dag.finish(t)
//! })?;
//! // Fresh ids each run; submit returns at once, wait gives the output.
//! let runs: Vec<_> = (0..10u64).map(|x| engine.workflow::<u64>("double").args(&x).submit()).collect::<Result<_, _>>()?;
//! for (x, run) in runs.iter().enumerate() {
//!     assert_eq!(*run.wait()?, 2 * x as u64);
//! }
//! let wid = WorkflowId::new("double-7")?;
//! engine.workflow::<u64>("double").args(&7).id(wid.clone()).run()?;
//! assert_eq!(engine.list()?.len(), 11);
//! assert_eq!(engine.status(&wid)?.state, State::Successful);
//! // A task's committed output and its timing record (ready, start, end, durable).
//! assert_eq!(engine.task_output::<u64>(&wid, "0000.double")?, Some(14));
//! let timing = &engine.task_timings(&wid)?[0];
//! assert!(timing.timing.start_us <= timing.timing.end_us && timing.timing.end_us <= timing.timing.durable_us);
//! engine.delete(&wid, false)?;
//! assert!(engine.status(&wid).is_err());
//! # Ok(())
//! # }
//! ```
//!
//! ## Choosing the store
//!
//! [`store::open`] takes a local directory (the default, `./exoflow-data` in
//! the command) or `s3://BUCKET/PREFIX`; for S3 the credentials come from the
//! usual AWS chain (environment, profile, SSO, instance metadata), and an
//! endpoint override (`AWS_ENDPOINT_URL`, or the argument) selects an
//! S3-compatible server with path-style addressing.
//!
//! ```
//! use exoflow_engine::{store, Engine};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("exoflow-doc-{}", std::process::id()));
//! let engine = Engine::new(store::open(dir.to_str().ok_or("path")?, None)?);
//! assert!(engine.list()?.is_empty());
//! // S3: Engine::new(store::open("s3://my-bucket/exoflow", Some("http://127.0.0.1:9000".into()))?)
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod admin;
pub mod codec;
mod commit;
mod context;
pub mod dag;
mod engine;
pub mod error;
pub mod failpoint;
pub mod id;
pub mod journal;
mod launch;
mod layout;
mod lease;
mod plan;
mod resume;
mod run;
mod runtime;
pub mod status;
pub mod store;
pub mod task;

pub use context::{SpawnContext, Spawned, TaskContext};
pub use dag::{Dag, DagError, Data, TaskRef, Workflow};
pub use engine::{Engine, ResumeOptions, RunHandle};
pub use error::EngineError;
pub use id::WorkflowId;
pub use launch::Launch;
pub use runtime::EngineOptions;
pub use status::{State, WorkflowInfo};
pub use task::{Checkpoint, Failure, TaskError, TaskOptions, TaskResult, Timing, TimingRecord};
