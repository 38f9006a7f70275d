//! The engine's runtime: the worker pool that runs tasks, the committer
//! threads, the journal writer, and this engine instance's identity, shared
//! by every run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::commit::Commits;
use crate::journal::{self, JournalItem};
use crate::status::{now_ms, Owner};
use crate::store::retry::{RetryPolicy, RetryStore};
use crate::store::SharedStore;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Threads that run tasks.
    pub workers: usize,
    /// How long an owner's lease lasts; it is renewed every third of it.
    pub lease: Duration,
    /// Retries of transient store errors.
    pub retry: RetryPolicy,
    /// Most commits written in one group.
    pub commit_batch: usize,
    /// Group commits in flight at once, each taking the next group from the
    /// same queue: while one waits for its flush, the next one writes.
    /// Ordering between commits never depends on this: a commit is sent
    /// only after those it depends on are durable.
    pub committers: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2),
            lease: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            commit_batch: 1024,
            committers: 4,
        }
    }
}

/// Work for the pool.
pub(crate) type Work = Box<dyn FnOnce() + Send>;

/// The threads that run tasks (and a run's bookkeeping).
pub(crate) struct Pool {
    tx: Sender<Work>,
}

impl Pool {
    /// Starts `workers` threads.
    pub fn new(workers: usize) -> Self {
        let (tx, rx): (Sender<Work>, Receiver<Work>) = crossbeam_channel::unbounded();
        for i in 0..workers {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("exoflow-worker-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        // A job catches its own task's panics; this keeps the
                        // worker alive whatever else panics.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                            tracing::error!("a worker job panicked");
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a worker thread");
            }
        }
        Self { tx }
    }

    /// Whether no job waits for a worker.
    pub fn idle(&self) -> bool {
        self.tx.is_empty()
    }

    /// Runs `job` on a worker.
    pub fn spawn(&self, job: Work) {
        if let Err(e) = self.tx.send(job) {
            // Only after the engine is gone; run the job here so that nothing hangs.
            (e.0)();
        }
    }
}

/// What every run of an engine shares.
pub(crate) struct Runtime {
    /// The store, with retries of transient errors.
    pub store: SharedStore,
    /// Task threads.
    pub pool: Pool,
    /// The way to the committer threads.
    pub commits: Commits,
    /// The way to the journal writer.
    pub journal: Sender<JournalItem>,
    /// This engine instance's unique id.
    pub instance: String,
    /// This engine instance as an owner.
    pub owner: Owner,
    /// Its settings.
    pub opts: EngineOptions,
}

static ENGINES: AtomicU64 = AtomicU64::new(0);

impl Runtime {
    /// Starts the threads of an engine over `store`.
    pub fn start(store: SharedStore, opts: EngineOptions) -> Arc<Self> {
        let store: SharedStore = Arc::new(RetryStore::new(store, opts.retry));
        let instance = format!(
            "{}-{}-{}",
            now_ms(),
            std::process::id(),
            ENGINES.fetch_add(1, Ordering::Relaxed)
        );
        let commits = Commits::start(store.clone(), opts.committers, opts.commit_batch);
        let (jtx, jrx): (Sender<JournalItem>, Receiver<JournalItem>) =
            crossbeam_channel::unbounded();
        {
            let store = store.clone();
            let instance = instance.clone();
            let spawned = std::thread::Builder::new()
                .name("exoflow-journal".into())
                .spawn(move || journal::flusher(jrx, store, instance));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the journal thread");
            }
        }
        Arc::new(Self {
            store,
            pool: Pool::new(opts.workers.max(1)),
            commits,
            journal: jtx,
            owner: Owner::this_process(&instance),
            instance,
            opts,
        })
    }

    /// How long a lease lasts, in ms.
    pub fn lease_ms(&self) -> u64 {
        self.opts.lease.as_millis() as u64
    }
}

/// How often a lease of `lease` is renewed.
pub(crate) fn renew_every(lease: Duration) -> u64 {
    (lease.as_millis() as u64 / 3).max(1)
}
