//! The streaming job's errors. Each names the key, epoch or source it is
//! about; [`StreamError::report`] (or anyhow's `{:#}` at the command) joins
//! an error with the chain of its causes.

use exoflow_engine::store::StoreError;
use exoflow_engine::EngineError;

use crate::config::InvalidRequest;

/// What went wrong in a streaming job, or in a query of its data.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The request's flags do not make a job.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source could not be opened or read.
    #[error(transparent)]
    Source(#[from] exoflow_ingest::source::SourceError),
    /// The online TunkRank failed (an arithmetic overflow).
    #[error(transparent)]
    Online(#[from] exoflow_graph::online::OnlineError),
    /// Building the online state overflowed.
    #[error(transparent)]
    Overflow(#[from] exoflow_graph::Overflow),
    /// A generator spec is malformed.
    #[error(transparent)]
    Spec(#[from] exoflow_ingest::rmat::SpecError),
    /// The batch TunkRank failed.
    #[error(transparent)]
    Batch(#[from] exoflow_graph::batch::BatchError),
    /// The batch cluster failed.
    #[error(transparent)]
    Cluster(#[from] exoflow_graph::cluster::ClusterError),
    /// A stored object does not decode.
    #[error(transparent)]
    Decode(#[from] exoflow_engine::codec::DecodeError),
    /// A record could not be encoded.
    #[error("encoding: {0}")]
    Encode(#[from] postcard::Error),
    /// A JSON record could not be read or written.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// An I/O operation outside the store failed (starting a thread).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A source spec names no kind of source.
    #[error("source {0}: expected file:PATH, kafka://HOST:PORT[,HOST:PORT]/TOPIC or gen:rmat?scale=S&edge-factor=F&seed=X")]
    UnknownSource(String),
    /// The source is not the one the job was created on.
    #[error("the source changed since the job was created: recorded `{recorded}`, now `{now}`; refusing to resume on other data")]
    SourceChanged {
        /// The fingerprint the job recorded.
        recorded: String,
        /// The source's fingerprint now.
        now: String,
    },
    /// The workflow has no streaming job in the store.
    #[error("workflow {wid} has no streaming job in this store ({key} is missing)")]
    NoJob {
        /// The workflow id.
        wid: String,
        /// The key of its configuration.
        key: String,
    },
    /// An epoch asked for is not committed.
    #[error("epoch {epoch} is not committed (committed epochs: 1..={committed})")]
    NotCommitted {
        /// The epoch asked for.
        epoch: u64,
        /// The last committed epoch.
        committed: u64,
    },
    /// An epoch asked for is older than what `--retain` keeps rebuildable.
    #[error("epoch {epoch} is older than the last {retain} epochs that --retain {retain} keeps rebuildable (committed: 1..={committed}); its outputs/{wid}/online/{epoch:010} remains")]
    NotRetained {
        /// The workflow id.
        wid: String,
        /// The epoch asked for.
        epoch: u64,
        /// The job's `--retain`.
        retain: u64,
        /// The last committed epoch.
        committed: u64,
    },
    /// An epoch was logged without its edges and no source was given to
    /// re-read them.
    #[error(
        "epoch {0} was logged without its edges (checkpoint none): re-reading it needs the source"
    )]
    NeedsSource(u64),
    /// An epoch has more malformed records than `--max-bad-ratio` allows.
    #[error("epoch {epoch}: {bad} of {records} records malformed, over --max-bad-ratio {ratio}{place}; nothing of this epoch was committed")]
    TooManyBad {
        /// The epoch.
        epoch: u64,
        /// Its malformed records.
        bad: usize,
        /// All its records.
        records: usize,
        /// The job's `--max-bad-ratio`.
        ratio: f64,
        /// Where the first malformed record is ("; first at ..."), or empty.
        place: String,
    },
    /// The batch recomputation and the online result differ.
    #[error("batch and online differ at epoch {epoch}: {differing} of {nodes} nodes, max |diff| {max_diff} (see outputs/{wid}/batch/{epoch:010})")]
    Differs {
        /// The workflow id.
        wid: String,
        /// The epoch.
        epoch: u64,
        /// Nodes whose values differ.
        differing: u64,
        /// Nodes compared.
        nodes: u64,
        /// The largest difference, in decimal.
        max_diff: String,
    },
    /// What the store holds contradicts the job's own records (a missing
    /// or altered object, or another owner's write).
    #[error("{0}")]
    Corrupt(String),
    /// A part of the job (a thread, a task) stopped or failed; the message
    /// is its report.
    #[error("{0}")]
    Failed(String),
    /// The run was asked to stop, and stopped after a committed epoch.
    #[error("stopped on request after epoch {0}; `exoflow resume` continues")]
    StoppedOnRequest(u64),
    /// An error, and what was being done.
    #[error("{what}")]
    Context {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: Box<StreamError>,
    },
}

impl StreamError {
    /// The error and its causes, joined by ": ".
    pub fn report(&self) -> String {
        let mut message = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        message
    }
}

/// The result of the streaming job's operations.
pub type Result<T, E = StreamError> = std::result::Result<T, E>;

/// Says what was being done when an error happened.
pub(crate) trait Context<T> {
    /// Wraps the error with `what`.
    fn context(self, what: &str) -> Result<T>;
    /// Wraps the error with what `what` returns (called on error only).
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<StreamError>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: &str) -> Result<T> {
        self.with_context(|| what)
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| StreamError::Context {
            what: what().into(),
            source: Box::new(e.into()),
        })
    }
}

/// Returns early with a [`StreamError::Corrupt`] of the formatted message.
macro_rules! corrupt {
    ($($arg:tt)*) => {
        return Err($crate::error::StreamError::Corrupt(format!($($arg)*)))
    };
}
pub(crate) use corrupt;
