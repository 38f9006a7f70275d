//! Task options, task errors and the context a running task sees.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a task's output is checkpointed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Checkpoint {
    /// Durable in the store before any downstream task starts.
    Sync,
    /// Downstream starts on the in-memory value at once; the write goes on in
    /// the background; the task counts as committed only once it is durable.
    Async,
    /// Never written; recomputed on recovery, so the task must be
    /// deterministic.
    Skip,
}

/// Per-task options.
#[derive(Debug, Clone)]
pub struct TaskOptions {
    /// How the output is checkpointed.
    pub checkpoint: Checkpoint,
    /// Retries after the first attempt before the task fails.
    pub max_retries: u32,
    /// Wait before the first retry; doubles each retry.
    pub backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// The output may differ between runs: once committed it is never
    /// recomputed, and it must be checkpointed (Sync or Async).
    pub nondeterministic: bool,
    /// The task starts only once its inputs are committed (durable, or for
    /// a Skip input, once that input's own inputs are), not merely
    /// computed: ExoFlow's `wait_until_committed`.
    pub wait_until_committed: bool,
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self {
            checkpoint: Checkpoint::Sync,
            max_retries: 3,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            nondeterministic: false,
            wait_until_committed: false,
        }
    }
}

impl TaskOptions {
    /// Options with the given checkpoint mode and the other defaults.
    pub fn checkpoint(mode: Checkpoint) -> Self {
        Self {
            checkpoint: mode,
            ..Self::default()
        }
    }

    /// Sync checkpoint (the default).
    pub fn sync() -> Self {
        Self::checkpoint(Checkpoint::Sync)
    }

    /// Async checkpoint.
    pub fn asynchronous() -> Self {
        Self::checkpoint(Checkpoint::Async)
    }

    /// No checkpoint.
    pub fn skip() -> Self {
        Self::checkpoint(Checkpoint::Skip)
    }

    /// Sets the number of retries.
    pub fn retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Sets the backoff between retries.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = initial;
        self.max_backoff = max;
        self
    }

    /// Marks the task nondeterministic.
    pub fn nondeterministic(mut self) -> Self {
        self.nondeterministic = true;
        self
    }

    /// Starts the task only once its inputs are committed, not merely
    /// computed: its inputs may then checkpoint asynchronously (overlapping
    /// with their siblings) while this task never acts on a value that a
    /// crash could take back (a reservation's `order` after its locks, say).
    pub fn wait_until_committed(mut self) -> Self {
        self.wait_until_committed = true;
        self
    }

    pub(crate) fn backoff_for(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// The error a task function returns: any error converts into it with `?`.
///
/// A failure is retried up to the task's `max_retries`, unless it was made
/// with [`Failure::fatal`].
pub struct Failure {
    message: String,
    fatal: bool,
}

impl Failure {
    /// A retryable failure with a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            fatal: false,
        }
    }

    /// A failure that retrying cannot fix (bad input, a bug).
    pub fn fatal(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            fatal: true,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retries are skipped.
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Failure({:?}, fatal: {})", self.message, self.fatal)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        let mut message = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            message.push_str(": ");
            message.push_str(&s.to_string());
            src = s.source();
        }
        Self {
            message,
            fatal: false,
        }
    }
}

/// What a task function returns.
pub type TaskResult<T> = Result<T, Failure>;

/// A task's failure after its retries, as recorded and as seen downstream by a
/// `catch_errors` task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("task {task} failed after {attempts} attempt(s): {message}")]
pub struct TaskError {
    /// Task name.
    pub task: String,
    /// The last failure's message.
    pub message: String,
    /// Attempts made.
    pub attempts: u32,
}

/// Timestamps of one task execution, in microseconds since the Unix epoch (the
/// paper's task metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// When the task became ready to run (all inputs available).
    pub ready_us: u64,
    /// When its function started (last attempt).
    pub start_us: u64,
    /// When its function returned.
    pub end_us: u64,
    /// When its checkpoint was durable (0 if not checkpointed).
    pub durable_us: u64,
}

/// A task's timing record, with its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimingRecord {
    /// Task id.
    pub task_id: String,
    /// Task name.
    pub name: String,
    /// Attempts made.
    pub attempts: u32,
    /// Timestamps.
    pub timing: Timing,
}

pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What a task's output must be: serde-serializable, shareable.
pub trait Data: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {}
impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static> Data for T {}
