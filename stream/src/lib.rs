//! # exoflow-stream: the online-offline streaming job
//!
//! The paper's online-offline graph processing (ExoFlow §5.3) as a library
//! on the engine: one streaming task of an engine workflow reads a
//! partitioned edge source in epochs, logs each epoch, keeps the exact
//! TunkRank influence up to date incrementally, and publishes one output
//! per committed epoch, exactly once; every B epochs a batch task of the
//! same workflow recomputes the table from scratch beside the stream and
//! checks that both agree.
//!
//! Per epoch e, in order:
//! 1. cut: per partition a position range (by count, reproducible; or by
//!    time, recorded before anything of e is published);
//! 2. log (`epoch_log`): `streams/<wid>/epochs/<e>/g<gen>/part-<p>`: the
//!    range, and in `sync`/`async` mode the edges and malformed records;
//!    `none` logs only the range. `sync` waits for the parts before the
//!    online update; `async` overlaps them with it;
//! 3. online update of the epoch's edges (`state`);
//! 4. `COMMIT(e)` (write-once, after every part and after `COMMIT(e-1)`),
//!    then the output `outputs/<wid>/online/<e>` (and `rejected/<e>`),
//!    compared byte for byte if it exists (`committer`); every K epochs
//!    a snapshot of the graph, valid only with its MANIFEST, written last
//!    (`snapshot`).
//!
//! Every start of the task is a recovery ([`recovery`]): the committed
//! prefix of epochs is found; the online state is rebuilt from the newest
//! snapshot at or below the first epoch whose output is missing, replaying
//! the committed epochs after it from their logs (`none`: from the source
//! by the recorded ranges), comparing outputs that exist; the source
//! continues from the end positions of the last committed epoch.
//!
//! The command builds a [`Runtime`] (Kafka settings, workers, the cluster
//! it leads), [`register`]s the job's DAG on an engine, and submits a
//! [`JobConfig`]:
//!
//! ```
//! use std::sync::Arc;
//! use exoflow_engine::{store::memory::MemStore, Engine};
//! use exoflow_stream::{JobRequest, Runtime, DAG};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(Arc::new(MemStore::new()));
//! let runtime = Arc::new(Runtime::new().with_quiet(true));
//! exoflow_stream::register(&engine, runtime.clone())?;
//! let request = JobRequest {
//!     epochs: Some(3),
//!     epoch_edges: Some(500),
//!     ..JobRequest::new("gen:rmat?scale=8&edge-factor=8&seed=1")
//! };
//! let cfg = exoflow_stream::prepare(request, &runtime)?.config;
//! let summary = engine.workflow::<exoflow_stream::StreamSummary>(DAG).args(&cfg).run()?;
//! assert_eq!(summary.last_epoch, 3);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod batch;
mod committer;
pub mod config;
mod epoch_log;
mod epoch_loop;
mod error;
pub mod layout;
mod priority;
pub mod query;
pub mod recovery;
mod run;
pub mod runtime;
mod snapshot;
mod state;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use error::{corrupt, Context};
use exoflow_engine::store::{put_once, PutOnce, Store};
use exoflow_engine::{Dag, DagError, Engine, EngineError, Failure, TaskOptions, Workflow};
use exoflow_ingest::kafka::Until;
use serde::{Deserialize, Serialize};

pub use batch::BatchReport;
pub use config::{EpochCheckpoint, InvalidRequest, JobConfig, JobRequest, OnlineImpl, DAG};
pub use error::{Result, StreamError};
pub use query::StreamStatus;
pub use runtime::Runtime;

/// What the streaming task returns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamSummary {
    /// The last committed epoch.
    pub last_epoch: u64,
    /// Edges in the graph then.
    pub graph_edges: u64,
}

/// Registers the streaming job's DAG ([`DAG`]) on `engine`, its runs served
/// with `runtime`, and the prefixes of its data, so that deleting a
/// workflow deletes them too.
pub fn register(engine: &Engine, runtime: Arc<Runtime>) -> Result<(), EngineError> {
    register_data(engine)?;
    engine.register(DAG, move |cfg: &JobConfig| workflow(cfg, runtime.clone()))
}

/// Declares the prefixes of a job's data to `engine`, so that deleting a
/// workflow deletes them too (what [`register`] does besides the DAG).
pub fn register_data(engine: &Engine) -> Result<(), EngineError> {
    for top in layout::PREFIXES {
        engine.register_data_prefix(top)?;
    }
    Ok(())
}

/// The workflow of a streaming job: one nondeterministic task (its epoch
/// cuts by time, and its outputs, are facts once written), never retried
/// by the engine (a resume is its retry).
pub fn workflow(
    cfg: &JobConfig,
    runtime: Arc<Runtime>,
) -> std::result::Result<Workflow<StreamSummary>, DagError> {
    let cfg = cfg.clone();
    let mut dag = Dag::new();
    let stream = dag.task(
        "stream",
        TaskOptions::sync().nondeterministic().retries(0),
        move |ctx| run::run_stream(ctx, &cfg, &runtime).map_err(|e| Failure::fatal(e.report())),
    );
    dag.finish(stream)
}

/// A job ready to submit, and its source.
pub struct Prepared {
    /// The job's configuration: the workflow's arguments.
    pub config: JobConfig,
    /// The source, open.
    pub source: Arc<dyn exoflow_ingest::source::Source>,
}

/// Validates `request`, opens its source (to learn its partitions and
/// fingerprint, and with `--until-end` the end offsets to stop at) and
/// returns the job's configuration.
pub fn prepare(request: JobRequest, runtime: &Runtime) -> Result<Prepared> {
    let partitions = request.validate()?;
    let (source, until): (Arc<dyn exoflow_ingest::source::Source>, _) = if request.until_end {
        let k = runtime.open_kafka(&request.source, Until::EndNow)?;
        let ends = k.end_offsets().map(<[u64]>::to_vec);
        (Arc::new(k), ends)
    } else {
        (
            runtime.open_source(&request.source, partitions, None)?,
            None,
        )
    };
    let config = request.into_config(source.partitions(), source.fingerprint(), until);
    Ok(Prepared { config, source })
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes `bytes` at `key` once; an existing object must hold the same bytes.
fn write_once(store: &dyn Store, key: &str, bytes: &[u8]) -> Result<()> {
    match put_once(store, key, bytes).with_context(|| format!("writing {key}"))? {
        PutOnce::Written => Ok(()),
        PutOnce::Differs(_) => corrupt!(
            "{key} exists with other bytes: the recomputed output differs from the committed one (nondeterminism, or another owner wrote it)"
        ),
    }
}
