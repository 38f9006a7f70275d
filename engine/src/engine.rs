//! The engine: registered DAGs, a worker pool, the committer, the lease keeper
//! and the operations on workflows (run, resume, status, list, cancel, stop,
//! delete).

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};
use serde::{de::DeserializeOwned, Serialize};

use crate::codec::{self, Kind};
use crate::dag::{Built, DagError, Data, Value, Workflow};
use crate::error::EngineError;
use crate::failpoint;
use crate::id::WorkflowId;
use crate::journal::{self, JournalItem, RunRecord};
use crate::run::{plan, Commit, CommitReq, Plan, Run, StatusState};
use crate::status::{decide_resume, now_ms, Decision, Meta, Owner, State, StatusRecord};
use crate::store::retry::{RetryPolicy, RetryStore};
use crate::store::{compare_existing, PutOnce, PutOutcome, SharedStore, Store};
use crate::task::TimingRecord;

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

/// How `resume` treats a workflow held by another owner.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResumeOptions {
    /// Take over even a live owner's workflow.
    pub force: bool,
    /// Wait for a lease to expire instead of failing at once; a lease that is
    /// renewed meanwhile (a live owner) still fails.
    pub wait: bool,
}

pub(crate) type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct Pool {
    tx: Sender<Job>,
}

impl Pool {
    fn new(workers: usize) -> Self {
        let (tx, rx): (Sender<Job>, Receiver<Job>) = crossbeam_channel::unbounded();
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

    pub fn spawn(&self, job: Job) {
        if let Err(e) = self.tx.send(job) {
            // Only after the engine is gone; run the job here so that nothing hangs.
            (e.0)();
        }
    }
}

/// The way to the committer threads, with a count of the commits queued
/// or being written.
#[derive(Clone)]
pub(crate) struct Commits {
    tx: Sender<Commit>,
    busy: Arc<AtomicUsize>,
    store: SharedStore,
}

impl Commits {
    /// Queues a commit for the committer threads.
    pub fn send(&self, c: Commit) -> Result<(), crossbeam_channel::SendError<Commit>> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.tx.send(c).inspect_err(|_| {
            self.busy.fetch_sub(1, Ordering::SeqCst);
        })
    }

    /// Commits a task's output: on this thread when no other commit is
    /// queued or being written (it would join no group, and a committer's
    /// wake-up is latency that a lone Sync hop pays in full) and
    /// `may_block()` (asked only then: nothing else wants this thread while
    /// it waits out the flush), else queued, to be written with the group
    /// it joins.
    pub fn send_output(
        &self,
        req: CommitReq,
        may_block: impl FnOnce() -> bool,
    ) -> Result<(), crossbeam_channel::SendError<Commit>> {
        if self.busy.load(Ordering::SeqCst) == 0
            && may_block()
            && self
                .busy
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            commit_group(vec![Commit::Output(req)], &self.store);
            self.busy.fetch_sub(1, Ordering::SeqCst);
            return Ok(());
        }
        self.send(Commit::Output(req))
    }
}

type BuildFn = Arc<dyn Fn(&[u8]) -> Result<Arc<Built>, EngineError> + Send + Sync>;

pub(crate) struct Inner {
    pub store: SharedStore,
    pub pool: Pool,
    pub commits: Commits,
    pub journal: Sender<JournalItem>,
    pub instance: String,
    pub owner: Owner,
    pub opts: EngineOptions,
    registry: RwLock<HashMap<String, BuildFn>>,
    /// Top-level prefixes under which applications keep a workflow's data
    /// (`<prefix>/<wid>/`), deleted with it.
    data_prefixes: RwLock<Vec<String>>,
    runs: Mutex<HashMap<WorkflowId, Weak<Run>>>,
    /// Ids being started or resumed by this engine (taken under `runs`).
    claims: Mutex<HashSet<WorkflowId>>,
    counter: AtomicU64,
}

impl Inner {
    /// Hands a record to the committer; `done` gets the store's answer.
    pub fn send_record(
        &self,
        key: String,
        bytes: Vec<u8>,
        done: Box<dyn FnOnce(Result<PutOutcome, crate::store::StoreError>) + Send>,
    ) {
        if let Err(e) = self.commits.send(Commit::Record {
            key,
            bytes,
            done,
            companion: None,
        }) {
            if let Commit::Record { done, key, .. } = e.0 {
                done(Err(crate::store::StoreError::Permanent {
                    op: "commit",
                    key,
                    message: "the committer stopped".to_owned(),
                }));
            }
        }
    }

    /// Whether a task's output may be committed on its own thread: no job
    /// waits for a worker and no other run is in flight (many runs at once
    /// want their commits grouped, and their tasks the workers).
    pub fn quiet(&self) -> bool {
        self.pool.idle() && self.runs.lock().len() <= 1
    }

    pub fn forget(&self, wid: &WorkflowId, run: &Run) {
        let mut runs = self.runs.lock();
        if let Some(w) = runs.get(wid) {
            if std::ptr::eq(w.as_ptr(), run) {
                runs.remove(wid);
            }
        }
    }
}

/// The ExoFlow engine over one store.
pub struct Engine {
    inner: Arc<Inner>,
}

/// A workflow's state as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkflowInfo {
    /// Its id.
    pub id: WorkflowId,
    /// Name of the registered DAG ("" if unregistered).
    pub dag: String,
    /// Its state.
    pub state: State,
    /// Ownership generation.
    pub generation: u64,
    /// Current owner, while running.
    pub owner: Option<Owner>,
    /// Lease end (ms since the Unix epoch).
    pub lease_until_ms: u64,
    /// Last update (ms since the Unix epoch).
    pub updated_ms: u64,
    /// The error of a failed run.
    pub error: Option<String>,
    /// Number of tasks.
    pub tasks: u64,
    /// Whether it has per-workflow records (some task checkpoints); a run of
    /// Skip tasks only is recorded in the group-committed run journal.
    pub durable: bool,
}

/// A running workflow: wait for its output or cancel it.
pub struct RunHandle<O> {
    run: Arc<Run>,
    _o: PhantomData<fn() -> O>,
}

impl<O: Data> RunHandle<O> {
    /// The workflow id.
    pub fn id(&self) -> &WorkflowId {
        &self.run.wid
    }

    /// Waits for the output.
    pub fn wait(&self) -> Result<Arc<O>, EngineError> {
        let v = self.run.wait()?;
        v.downcast::<O>()
            .map_err(|_| EngineError::OutputType(self.run.wid.clone()))
    }

    /// Asks the run to stop starting tasks; running ones see
    /// `TaskContext::is_cancelled`.
    pub fn cancel(&self) {
        self.run.request_cancel();
    }

    /// Asks the run to stop, resumable (`TaskContext::stop_requested`).
    pub fn stop(&self) {
        self.run.request_stop();
    }

    /// Whether the run has finished.
    pub fn is_done(&self) -> bool {
        self.run.is_done()
    }

    /// Timing records of the tasks committed so far in this run.
    pub fn timings(&self) -> Vec<TimingRecord> {
        self.run.timings()
    }
}

/// Where a workflow's task outputs are: `<prefix><task id>`.
pub(crate) fn tasks_prefix(wid: &WorkflowId) -> String {
    format!("workflows/{wid}/tasks/")
}

fn meta_key(wid: &WorkflowId) -> String {
    format!("workflows/{wid}/meta")
}

pub(crate) fn status_key(wid: &WorkflowId, version: u64) -> String {
    format!("workflows/{wid}/status/{version:012}")
}

fn encode<T: Serialize>(kind: Kind, v: &T) -> Result<Vec<u8>, EngineError> {
    codec::encode(kind, v).map_err(|e| EngineError::Internal(format!("encoding a record: {e}")))
}

/// Reads the current status version of a workflow.
pub(crate) fn latest_status(
    store: &dyn Store,
    wid: &WorkflowId,
) -> Result<Option<StatusRecord>, EngineError> {
    let keys = store.list(&format!("workflows/{wid}/status/"))?;
    let Some(last) = keys.last() else {
        return Ok(None);
    };
    let Some(bytes) = store.get(last)? else {
        return Err(EngineError::Internal(format!(
            "status {last} listed but not readable"
        )));
    };
    Ok(Some(codec::decode(last, Kind::Status, &bytes)?))
}

/// Writes the next status version; on a lost race returns the winner.
fn write_next(
    store: &dyn Store,
    wid: &WorkflowId,
    rec: &StatusRecord,
) -> Result<Result<(), StatusRecord>, EngineError> {
    let key = status_key(wid, rec.version);
    let bytes = encode(Kind::Status, rec)?;
    failpoint::hit("status.before_write");
    match store.put_if_absent(&key, &bytes)? {
        PutOutcome::Created => {
            failpoint::hit("status.after_write");
            Ok(Ok(()))
        }
        PutOutcome::AlreadyExists => {
            if let PutOnce::Written = compare_existing(store, &key, &bytes)? {
                return Ok(Ok(()));
            }
            let latest = latest_status(store, wid)?.ok_or_else(|| {
                EngineError::Internal(format!("status of {wid} vanished during an update"))
            })?;
            Ok(Err(latest))
        }
    }
}

/// Renews the lease of a durable run (or learns of a cancel, stop or
/// takeover).
pub(crate) fn renew(run: &Arc<Run>) {
    let store = run.inner.store.clone();
    let mut guard = run.status.lock();
    let Some(st) = guard.as_mut() else { return };
    loop {
        let mut next = st.current.clone();
        next.version += 1;
        next.lease_until_ms = now_ms() + run.inner.opts.lease.as_millis() as u64;
        next.updated_ms = now_ms();
        match write_next(store.as_ref(), &run.wid, &next) {
            Ok(Ok(())) => {
                st.current = next;
                st.last_renew_ms = now_ms();
                return;
            }
            Ok(Err(latest)) => {
                if latest.generation != run.generation {
                    let by = latest
                        .owner
                        .as_ref()
                        .map(|o| o.to_string())
                        .unwrap_or_else(|| "another process".to_owned());
                    run.fail(EngineError::Fenced {
                        wid: run.wid.clone(),
                        by,
                        generation: latest.generation,
                    });
                    st.current = latest;
                    return;
                }
                match latest.state {
                    State::CancelRequested => run.request_cancel(),
                    State::StopRequested => run.request_stop(),
                    _ => {}
                }
                st.current = latest;
                // Renew on top of the request so that the lease stays ours.
            }
            Err(e) => {
                tracing::warn!(workflow = %run.wid, error = %e, "lease renewal failed; will retry");
                return;
            }
        }
    }
}

/// Writes the final status of a durable run.
pub(crate) fn write_final_status(
    run: &Arc<Run>,
    state: State,
    error: Option<String>,
) -> Result<(), EngineError> {
    let store = run.inner.store.clone();
    let mut guard = run.status.lock();
    let Some(st) = guard.as_mut() else {
        return Ok(());
    };
    loop {
        let next =
            StatusRecord::unowned(st.current.version + 1, state, run.generation, error.clone());
        match write_next(store.as_ref(), &run.wid, &next)? {
            Ok(()) => {
                st.current = next;
                return Ok(());
            }
            Err(latest) => {
                if latest.generation != run.generation {
                    return Err(EngineError::Fenced {
                        wid: run.wid.clone(),
                        by: latest
                            .owner
                            .as_ref()
                            .map(|o| o.to_string())
                            .unwrap_or_default(),
                        generation: latest.generation,
                    });
                }
                st.current = latest;
            }
        }
    }
}

/// What a record's writer is told.
pub(crate) type RecordDone = Box<dyn FnOnce(Result<PutOutcome, crate::store::StoreError>) + Send>;

/// The `done` of a best-effort record: a failure is logged.
pub(crate) fn log_failure(key: String) -> RecordDone {
    Box::new(move |r| {
        if let Err(e) = r {
            tracing::warn!(key = %key, error = %e, "record not written");
        }
    })
}

fn committer(rx: Receiver<Commit>, store: SharedStore, batch_max: usize, busy: Arc<AtomicUsize>) {
    const BATCH_BYTES: usize = 64 << 20;
    let size = |c: &Commit| match c {
        Commit::Output(r) => r.bytes.len(),
        Commit::Record {
            bytes, companion, ..
        } => bytes.len() + companion.as_ref().map_or(0, |c| c.1.len()),
    };
    while let Ok(first) = rx.recv() {
        let mut bytes = size(&first);
        let mut batch = vec![first];
        while batch.len() < batch_max && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(c) => {
                    bytes += size(&c);
                    batch.push(c);
                }
                Err(_) => break,
            }
        }
        let n = batch.len();
        commit_group(batch, &store);
        busy.fetch_sub(n, Ordering::SeqCst);
    }
}

/// Writes one group of commits with one store call, then answers each.
fn commit_group(batch: Vec<Commit>, store: &SharedStore) {
    let mut outputs: Vec<CommitReq> = Vec::new();
    let mut records = Vec::new();
    for c in batch {
        match c {
            Commit::Output(r) => outputs.push(r),
            Commit::Record {
                key,
                bytes,
                done,
                companion,
            } => {
                if let Some((k, b)) = companion {
                    let log = log_failure(k.clone());
                    records.push((k, b, log));
                }
                records.push((key, bytes, done))
            }
        }
    }
    // A run whose lease lapsed (the process was paused, say) must learn
    // whether it still owns the workflow before it writes.
    let now = now_ms();
    let mut checked: HashSet<*const Run> = HashSet::new();
    for req in &outputs {
        if checked.insert(Arc::as_ptr(&req.run)) {
            let lapsed = req
                .run
                .status
                .lock()
                .as_ref()
                .is_some_and(|s| s.current.lease_until_ms <= now);
            if lapsed {
                renew(&req.run);
                let still = req
                    .run
                    .status
                    .lock()
                    .as_ref()
                    .is_some_and(|s| s.current.lease_until_ms <= now_ms());
                if still && !req.run.is_fenced() {
                    req.run
                        .fail(EngineError::Store(crate::store::StoreError::Transient {
                            op: "renew lease",
                            key: status_key(&req.run.wid, 0),
                            message:
                                "the lease lapsed and could not be renewed; nothing more is written"
                                    .to_owned(),
                        }));
                    req.run.fence();
                }
            }
        }
    }
    let (live, dead): (Vec<CommitReq>, Vec<CommitReq>) =
        outputs.into_iter().partition(|r| !r.run.is_fenced());
    for r in dead {
        r.run.deactivate();
    }
    if live.is_empty() && records.is_empty() {
        return;
    }
    let has_status = records.iter().any(|(k, _, _)| k.contains("/status/"));
    if has_status {
        failpoint::hit("status.before_write");
    }
    failpoint::hit("commit.before_write");
    let items: Vec<(&str, &[u8])> = live
        .iter()
        .map(|r| (r.key.as_str(), r.bytes.as_slice()))
        .chain(records.iter().map(|(k, b, _)| (k.as_str(), b.as_slice())))
        .collect();
    let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.put_many_if_absent(&items)
    }))
    .unwrap_or_else(|_| {
        items
            .iter()
            .map(|(k, _)| {
                Err(crate::store::StoreError::Permanent {
                    op: "commit",
                    key: (*k).to_owned(),
                    message: "the store panicked".to_owned(),
                })
            })
            .collect()
    });
    let mut results = results.into_iter();
    failpoint::hit("commit.after_write");
    if has_status {
        failpoint::hit("status.after_write");
    }
    for req in &live {
        let r = match results.next() {
            Some(Ok(PutOutcome::Created)) => Ok(PutOnce::Written),
            Some(Ok(PutOutcome::AlreadyExists)) => {
                compare_existing(store.as_ref(), &req.key, &req.bytes).map_err(EngineError::from)
            }
            Some(Err(e)) => Err(EngineError::from(e)),
            None => Err(EngineError::Internal(
                "the store answered fewer items than asked".to_owned(),
            )),
        };
        req.run.committed(req.node, &req.key, r);
    }
    for (key, _, done) in records {
        done(results.next().unwrap_or_else(|| {
            Err(crate::store::StoreError::Permanent {
                op: "commit",
                key,
                message: "the store answered fewer items than asked".to_owned(),
            })
        }));
    }
    for req in live {
        req.run.deactivate();
    }
}

fn lease_keeper(inner: Weak<Inner>) {
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let Some(inner) = inner.upgrade() else { return };
        let every = (inner.opts.lease.as_millis() as u64 / 3).max(1);
        let runs: Vec<Arc<Run>> = inner
            .runs
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        drop(inner);
        let now = now_ms();
        for run in runs {
            let due = run
                .status
                .lock()
                .as_ref()
                .is_some_and(|s| now >= s.last_renew_ms + every);
            if due && !run.is_done() {
                renew(&run);
            }
        }
    }
}

static ENGINES: AtomicU64 = AtomicU64::new(0);

/// A reservation of a workflow id in one engine (see `Engine::claim`).
struct Claim<'a> {
    inner: &'a Inner,
    wid: WorkflowId,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.inner.claims.lock().remove(&self.wid);
    }
}

impl Engine {
    /// An engine over `store` with default options.
    pub fn new(store: SharedStore) -> Self {
        Self::with_options(store, EngineOptions::default())
    }

    /// An engine over `store`.
    pub fn with_options(store: SharedStore, opts: EngineOptions) -> Self {
        let store: SharedStore = Arc::new(RetryStore::new(store, opts.retry));
        let instance = format!(
            "{}-{}-{}",
            now_ms(),
            std::process::id(),
            ENGINES.fetch_add(1, Ordering::Relaxed)
        );
        let (ctx, crx) = crossbeam_channel::unbounded();
        let (jtx, jrx) = crossbeam_channel::unbounded();
        let busy = Arc::new(AtomicUsize::new(0));
        for i in 0..opts.committers.max(1) {
            let store = store.clone();
            let crx = crx.clone();
            let batch = opts.commit_batch.max(1);
            let busy = busy.clone();
            let _ = std::thread::Builder::new()
                .name(format!("exoflow-committer-{i}"))
                .spawn(move || committer(crx, store, batch, busy));
        }
        let commits = Commits {
            tx: ctx,
            busy,
            store: store.clone(),
        };
        {
            let store = store.clone();
            let instance = instance.clone();
            let _ = std::thread::Builder::new()
                .name("exoflow-journal".into())
                .spawn(move || journal::flusher(jrx, store, instance));
        }
        let inner = Arc::new(Inner {
            store,
            pool: Pool::new(opts.workers.max(1)),
            commits,
            journal: jtx,
            owner: Owner::this_process(&instance),
            instance,
            opts,
            registry: RwLock::new(HashMap::new()),
            data_prefixes: RwLock::new(Vec::new()),
            runs: Mutex::new(HashMap::new()),
            claims: Mutex::new(HashSet::new()),
            counter: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&inner);
        let _ = std::thread::Builder::new()
            .name("exoflow-lease".into())
            .spawn(move || lease_keeper(weak));
        Self { inner }
    }

    /// The store (with retries on transient errors).
    pub fn store(&self) -> &SharedStore {
        &self.inner.store
    }

    /// This engine instance's owner identity.
    pub fn owner(&self) -> &Owner {
        &self.inner.owner
    }

    /// Registers a DAG builder under `name`: runs and resumes rebuild the DAG
    /// from its arguments.
    pub fn register<A, O, F>(&self, name: &str, build: F) -> Result<(), EngineError>
    where
        A: Serialize + DeserializeOwned + 'static,
        O: Data,
        F: Fn(&A) -> Result<Workflow<O>, DagError> + Send + Sync + 'static,
    {
        crate::id::validate_component("DAG name", name, 64)?;
        let f: BuildFn = Arc::new(move |args: &[u8]| {
            let a: A = serde_json::from_slice(args).map_err(|e| {
                EngineError::Internal(format!("arguments do not fit the registered DAG: {e}"))
            })?;
            Ok(build(&a)?.erase())
        });
        self.inner.registry.write().insert(name.to_owned(), f);
        Ok(())
    }

    /// Declares that an application keeps data of workflows under
    /// `<top>/<wid>/` (a single path component, not the engine's own
    /// `workflows` or `outputs`): [`Engine::delete`] removes it with the
    /// workflow.
    pub fn register_data_prefix(&self, top: &str) -> Result<(), EngineError> {
        crate::id::validate_component("data prefix", top, 64)?;
        if top == "workflows" || top == "outputs" {
            return Err(EngineError::Internal(format!(
                "{top}/ is the engine's own prefix: it is deleted with every workflow already"
            )));
        }
        let mut prefixes = self.inner.data_prefixes.write();
        if !prefixes.iter().any(|p| p == top) {
            prefixes.push(top.to_owned());
        }
        Ok(())
    }

    fn build(&self, name: &str, args: &[u8]) -> Result<Arc<Built>, EngineError> {
        let f = self
            .inner
            .registry
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownDag(name.to_owned()))?;
        f(args)
    }

    /// Runs the registered DAG `dag` with `args` under `wid` (a fresh id if
    /// `None`) and waits for its output.
    pub fn run<A: Serialize, O: Data>(
        &self,
        dag: &str,
        wid: Option<WorkflowId>,
        args: &A,
    ) -> Result<Arc<O>, EngineError> {
        self.submit::<A, O>(dag, wid, args)?.wait()
    }

    /// Starts the registered DAG `dag`; returns at once.
    pub fn submit<A: Serialize, O: Data>(
        &self,
        dag: &str,
        wid: Option<WorkflowId>,
        args: &A,
    ) -> Result<RunHandle<O>, EngineError> {
        let args = serde_json::to_vec(args)
            .map_err(|e| EngineError::Internal(format!("encoding arguments: {e}")))?;
        let built = self.build(dag, &args)?;
        let wid = match wid {
            Some(w) => w,
            None => self.fresh_id(dag)?,
        };
        self.start_new(wid, dag.to_owned(), args, built)
    }

    /// Runs an unregistered workflow under `wid` and waits for its output.
    /// Resume it with [`Engine::resume_workflow`] and the same DAG.
    pub fn run_workflow<O: Data>(
        &self,
        wid: &WorkflowId,
        wf: &Workflow<O>,
    ) -> Result<Arc<O>, EngineError> {
        self.submit_workflow(wid, wf)?.wait()
    }

    /// Starts an unregistered workflow; returns at once.
    pub fn submit_workflow<O: Data>(
        &self,
        wid: &WorkflowId,
        wf: &Workflow<O>,
    ) -> Result<RunHandle<O>, EngineError> {
        self.start_new(wid.clone(), String::new(), Vec::new(), wf.clone().erase())
    }

    fn fresh_id(&self, dag: &str) -> Result<WorkflowId, EngineError> {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        Ok(WorkflowId::new(format!(
            "{dag}.{}.{n}",
            self.inner.instance
        ))?)
    }

    /// Reserves `wid` in this engine: a second start or resume of the same id
    /// in this process fails at once. The reservation ends when the claim is
    /// dropped, after the run (if any) is registered.
    fn claim(&self, wid: &WorkflowId) -> Result<Claim<'_>, EngineError> {
        let runs = self.inner.runs.lock();
        let mut claims = self.inner.claims.lock();
        if runs.get(wid).and_then(Weak::upgrade).is_some() || claims.contains(wid) {
            return Err(EngineError::Owned {
                wid: wid.clone(),
                owner: self.inner.owner.clone(),
                remaining_ms: self.inner.opts.lease.as_millis() as u64,
                alive: ", this very process",
            });
        }
        claims.insert(wid.clone());
        Ok(Claim {
            inner: &self.inner,
            wid: wid.clone(),
        })
    }

    fn start_new<O: Data>(
        &self,
        wid: WorkflowId,
        dag_name: String,
        args: Vec<u8>,
        built: Arc<Built>,
    ) -> Result<RunHandle<O>, EngineError> {
        let _claim = self.claim(&wid)?;
        let plans = plan(&built, |_| false);
        if !built.durable() {
            let run = Run::new(
                self.inner.clone(),
                wid,
                built,
                dag_name,
                args,
                1,
                plans,
                None,
            );
            journal::record_start(&run);
            return Ok(self.launch(run));
        }
        let meta = Meta {
            dag: dag_name.clone(),
            args: args.clone(),
            fingerprint: built.fingerprint,
            created_ms: now_ms(),
            tasks: built.nodes.len() as u64,
        };
        let status = StatusRecord {
            version: 1,
            state: State::Running,
            generation: 1,
            owner: Some(self.inner.owner.clone()),
            lease_until_ms: now_ms() + self.inner.opts.lease.as_millis() as u64,
            updated_ms: now_ms(),
            error: None,
        };
        let meta_bytes = encode(Kind::Meta, &meta)?;
        let status_bytes = encode(Kind::Status, &status)?;
        // Made ready now (a local directory) and durable by the metadata's
        // commit, so that the first output's commit needs no flush of it.
        self.inner.store.prepare(&tasks_prefix(&wid));
        // The run holds no status until its first version is durable, so
        // that the lease keeper cannot write one before it.
        let run = Run::new(
            self.inner.clone(),
            wid.clone(),
            built,
            dag_name,
            args,
            1,
            plans,
            None,
        );
        self.inner
            .runs
            .lock()
            .insert(wid.clone(), Arc::downgrade(&run));
        // The metadata, then the first status version, group-committed with
        // other runs' records; the run starts once both are durable.
        let r = run.clone();
        let commits = self.inner.commits.clone();
        let status_key = status_key(&wid, 1);
        self.inner.send_record(
            meta_key(&wid),
            meta_bytes,
            Box::new(move |res| match res {
                Ok(PutOutcome::Created) => {
                    let r2 = r.clone();
                    let record = Commit::Record {
                        companion: None,
                        key: status_key,
                        bytes: status_bytes,
                        done: Box::new(move |res| match res {
                            Ok(PutOutcome::Created) => {
                                *r2.status.lock() = Some(StatusState {
                                    current: status,
                                    last_renew_ms: now_ms(),
                                });
                                r2.start()
                            }
                            Ok(PutOutcome::AlreadyExists) => {
                                r2.complete(Err(EngineError::Conflict {
                                    wid: r2.wid.clone(),
                                    message:
                                        "another process wrote its first status at the same time"
                                            .to_owned(),
                                }))
                            }
                            Err(e) => r2.complete(Err(e.into())),
                        }),
                    };
                    if commits.send(record).is_err() {
                        r.complete(Err(EngineError::Internal(
                            "the committer stopped".to_owned(),
                        )));
                    }
                }
                Ok(PutOutcome::AlreadyExists) => {
                    r.complete(Err(EngineError::AlreadyExists(r.wid.clone())))
                }
                Err(e) => r.complete(Err(e.into())),
            }),
        );
        Ok(RunHandle {
            run,
            _o: PhantomData,
        })
    }

    fn launch<O: Data>(&self, run: Arc<Run>) -> RunHandle<O> {
        self.inner
            .runs
            .lock()
            .insert(run.wid.clone(), Arc::downgrade(&run));
        run.start();
        RunHandle {
            run,
            _o: PhantomData,
        }
    }

    /// Resumes a workflow of a registered DAG and waits for its output.
    pub fn resume<O: Data>(
        &self,
        wid: &WorkflowId,
        opts: ResumeOptions,
    ) -> Result<Arc<O>, EngineError> {
        self.resume_submit::<O>(wid, opts)?.wait()
    }

    /// Resumes a workflow of a registered DAG; returns at once.
    pub fn resume_submit<O: Data>(
        &self,
        wid: &WorkflowId,
        opts: ResumeOptions,
    ) -> Result<RunHandle<O>, EngineError> {
        self.resume_inner(wid, None, opts)
    }

    /// Resumes an unregistered workflow, rebuilt by the caller from the same code.
    pub fn resume_workflow<O: Data>(
        &self,
        wid: &WorkflowId,
        wf: &Workflow<O>,
        opts: ResumeOptions,
    ) -> Result<Arc<O>, EngineError> {
        self.resume_submit_workflow(wid, wf, opts)?.wait()
    }

    /// Resumes an unregistered workflow; returns at once.
    pub fn resume_submit_workflow<O: Data>(
        &self,
        wid: &WorkflowId,
        wf: &Workflow<O>,
        opts: ResumeOptions,
    ) -> Result<RunHandle<O>, EngineError> {
        self.resume_inner(wid, Some(wf.clone().erase()), opts)
    }

    fn resume_inner<O: Data>(
        &self,
        wid: &WorkflowId,
        given: Option<Arc<Built>>,
        opts: ResumeOptions,
    ) -> Result<RunHandle<O>, EngineError> {
        let _claim = self.claim(wid)?;
        let store = self.inner.store.clone();
        let Some(meta_bytes) = store.get(&meta_key(wid))? else {
            return self.resume_journaled(wid, given, opts);
        };
        let meta: Meta = codec::decode(&meta_key(wid), Kind::Meta, &meta_bytes)?;
        let built = match given {
            Some(b) => b,
            None => self.build(&meta.dag, &meta.args)?,
        };
        if built.fingerprint != meta.fingerprint {
            return Err(EngineError::DagChanged(wid.clone()));
        }
        let mut waited = false;
        let (current, generation) = loop {
            // Metadata without a status: its creator died between the two
            // writes; version 1 is then written by whoever resumes first.
            let current = latest_status(store.as_ref(), wid)?
                .unwrap_or_else(|| StatusRecord::unowned(0, State::Failed, 0, None));
            match decide_resume(&current, now_ms(), opts.force) {
                Decision::TakeOver { generation } => break (current, generation),
                Decision::AlreadySucceeded => return self.finished_output(wid, built, meta),
                Decision::Canceled => {
                    if current.state == State::CancelRequested {
                        // Make the cancel final, fencing the vanished owner.
                        let done = StatusRecord::unowned(
                            current.version + 1,
                            State::Canceled,
                            current.generation + 1,
                            None,
                        );
                        let _ = write_next(store.as_ref(), wid, &done)?;
                    }
                    return Err(EngineError::BadState {
                        wid: wid.clone(),
                        state: State::Canceled,
                        message: "a canceled workflow cannot be resumed".to_owned(),
                    });
                }
                Decision::Owned {
                    owner,
                    lease_until_ms,
                    alive,
                } => {
                    let remaining_ms = lease_until_ms.saturating_sub(now_ms());
                    if !opts.wait || waited || alive == Some(true) {
                        return Err(EngineError::Owned {
                            wid: wid.clone(),
                            owner,
                            remaining_ms,
                            alive: if alive == Some(true) {
                                ", process alive"
                            } else {
                                ""
                            },
                        });
                    }
                    tracing::info!(workflow = %wid, %owner, remaining_ms, "waiting for the owner's lease to expire");
                    std::thread::sleep(Duration::from_millis(remaining_ms + 50));
                    waited = true;
                }
            }
        };
        let status = StatusRecord {
            version: current.version + 1,
            state: State::Running,
            generation,
            owner: Some(self.inner.owner.clone()),
            lease_until_ms: now_ms() + self.inner.opts.lease.as_millis() as u64,
            updated_ms: now_ms(),
            error: None,
        };
        if let Err(winner) = write_next(store.as_ref(), wid, &status)? {
            return Err(EngineError::Conflict {
                wid: wid.clone(),
                message: format!(
                    "another process changed it while this one took over (now {:?}, generation {}, owner {}); try again",
                    winner.state,
                    winner.generation,
                    winner.owner.map(|o| o.to_string()).unwrap_or_else(|| "none".to_owned())
                ),
            });
        }
        let committed = match self.committed_tasks(wid) {
            Ok(c) => c,
            Err(e) => {
                // Do not leave the workflow owned by a run that never started.
                let failed = StatusRecord::unowned(
                    status.version + 1,
                    State::Failed,
                    generation,
                    Some(e.to_string()),
                );
                let _ = write_next(store.as_ref(), wid, &failed);
                return Err(e);
            }
        };
        let plans = plan(&built, |id| committed.contains(id));
        tracing::info!(
            workflow = %wid,
            generation,
            committed = plans.iter().filter(|p| **p == Plan::Stored).count(),
            to_run = plans.iter().filter(|p| **p == Plan::Run).count(),
            "resuming"
        );
        let st = StatusState {
            current: status,
            last_renew_ms: now_ms(),
        };
        let run = Run::new(
            self.inner.clone(),
            wid.clone(),
            built,
            meta.dag,
            meta.args,
            generation,
            plans,
            Some(st),
        );
        Ok(self.launch(run))
    }

    fn finished_output<O: Data>(
        &self,
        wid: &WorkflowId,
        built: Arc<Built>,
        meta: Meta,
    ) -> Result<RunHandle<O>, EngineError> {
        let committed = self.committed_tasks(wid)?;
        let plans = plan(&built, |id| committed.contains(id));
        if plans[built.output] != Plan::Stored {
            return Err(EngineError::BadState {
                wid: wid.clone(),
                state: State::Successful,
                message: "it finished, and its output task does not checkpoint, so the output is not stored".to_owned(),
            });
        }
        // A run with only the output to load: no task runs, no status changes.
        let run = Run::new(
            self.inner.clone(),
            wid.clone(),
            built,
            meta.dag,
            meta.args,
            0,
            plans,
            None,
        );
        run.complete_loaded();
        Ok(RunHandle {
            run,
            _o: PhantomData,
        })
    }

    fn resume_journaled<O: Data>(
        &self,
        wid: &WorkflowId,
        given: Option<Arc<Built>>,
        opts: ResumeOptions,
    ) -> Result<RunHandle<O>, EngineError> {
        let Some(rec) = journal::find(self.inner.store.as_ref(), wid)? else {
            return Err(EngineError::NotFound {
                wid: wid.clone(),
                store: self.inner.store.describe(),
            });
        };
        match rec.state {
            State::Running => {
                if !opts.force && rec.owner.is_alive_here() != Some(false) {
                    let alive = if rec.owner_alive() { ", process alive" } else { "" };
                    return Err(EngineError::Owned {
                        wid: wid.clone(),
                        owner: rec.owner,
                        remaining_ms: 0,
                        alive,
                    });
                }
            }
            state => {
                return Err(EngineError::BadState {
                    wid: wid.clone(),
                    state,
                    message: "a finished run of Skip tasks only keeps no outputs; run it again under a new id".to_owned(),
                })
            }
        }
        let built = match given {
            Some(b) => b,
            None => self.build(&rec.dag, &rec.args)?,
        };
        let plans = plan(&built, |_| false);
        let run = Run::new(
            self.inner.clone(),
            wid.clone(),
            built,
            rec.dag,
            rec.args,
            1,
            plans,
            None,
        );
        journal::record_start(&run);
        Ok(self.launch(run))
    }

    fn committed_tasks(&self, wid: &WorkflowId) -> Result<HashSet<String>, EngineError> {
        let prefix = tasks_prefix(wid);
        Ok(self
            .inner
            .store
            .list(&prefix)?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
            .collect())
    }

    /// The committed output of task `task_id` of a workflow, if committed.
    pub fn task_output<T: Data>(
        &self,
        wid: &WorkflowId,
        task_id: &str,
    ) -> Result<Option<T>, EngineError> {
        crate::id::validate_component("task id", task_id, 255)?;
        let key = format!("{}{task_id}", tasks_prefix(wid));
        match self.inner.store.get(&key)? {
            Some(bytes) => Ok(Some(codec::decode(&key, Kind::TaskOutput, &bytes)?)),
            None => Ok(None),
        }
    }

    /// The timing records of a durable workflow's tasks, in commit order.
    pub fn task_timings(&self, wid: &WorkflowId) -> Result<Vec<TimingRecord>, EngineError> {
        let mut out = Vec::new();
        for key in self
            .inner
            .store
            .list(&format!("workflows/{wid}/timings/"))?
        {
            if let Some(bytes) = self.inner.store.get(&key)? {
                let mut recs: Vec<TimingRecord> = codec::decode(&key, Kind::Timing, &bytes)?;
                out.append(&mut recs);
            }
        }
        Ok(out)
    }

    /// The recorded state of one workflow.
    pub fn status(&self, wid: &WorkflowId) -> Result<WorkflowInfo, EngineError> {
        let store = self.inner.store.as_ref();
        if let Some(meta_bytes) = store.get(&meta_key(wid))? {
            let meta: Meta = codec::decode(&meta_key(wid), Kind::Meta, &meta_bytes)?;
            let st = latest_status(store, wid)?.ok_or_else(|| EngineError::NotFound {
                wid: wid.clone(),
                store: store.describe(),
            })?;
            return Ok(WorkflowInfo {
                id: wid.clone(),
                dag: meta.dag,
                state: st.state,
                generation: st.generation,
                owner: st.owner,
                lease_until_ms: st.lease_until_ms,
                updated_ms: st.updated_ms,
                error: st.error,
                tasks: meta.tasks,
                durable: true,
            });
        }
        match journal::find(store, wid)? {
            Some(rec) => Ok(rec.info()),
            None => Err(EngineError::NotFound {
                wid: wid.clone(),
                store: store.describe(),
            }),
        }
    }

    /// Every workflow in the store, newest update first.
    pub fn list(&self) -> Result<Vec<WorkflowInfo>, EngineError> {
        let store = self.inner.store.as_ref();
        let mut out = Vec::new();
        for name in store.list_dir("workflows/")? {
            let Some(id) = name.strip_suffix('/') else {
                continue;
            };
            let Ok(wid) = WorkflowId::new(id) else {
                continue;
            };
            match self.status(&wid) {
                Ok(info) => out.push(info),
                Err(EngineError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut latest: HashMap<WorkflowId, RunRecord> = HashMap::new();
        for rec in journal::read_all(store)? {
            latest.insert(rec.wid.clone(), rec);
        }
        out.extend(latest.into_values().map(|r| r.info()));
        out.sort_by(|a, b| {
            b.updated_ms
                .cmp(&a.updated_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Cancels a workflow: a running one at its owner's next lease renewal
    /// (at once if the owner is this engine), one without a live owner at once.
    pub fn cancel(&self, wid: &WorkflowId) -> Result<(), EngineError> {
        self.request(wid, State::CancelRequested, State::Canceled)
    }

    /// Stops a running workflow, resumably.
    pub fn stop(&self, wid: &WorkflowId) -> Result<(), EngineError> {
        self.request(wid, State::StopRequested, State::Stopped)
    }

    fn request(
        &self,
        wid: &WorkflowId,
        requested: State,
        final_state: State,
    ) -> Result<(), EngineError> {
        if let Some(run) = self.inner.runs.lock().get(wid).and_then(Weak::upgrade) {
            if final_state == State::Canceled {
                run.request_cancel();
            } else {
                run.request_stop();
            }
            return Ok(());
        }
        let store = self.inner.store.as_ref();
        if store.get(&meta_key(wid))?.is_none() {
            return Err(EngineError::NotFound {
                wid: wid.clone(),
                store: store.describe(),
            });
        }
        loop {
            let cur = latest_status(store, wid)?.ok_or_else(|| EngineError::NotFound {
                wid: wid.clone(),
                store: store.describe(),
            })?;
            if cur.state == State::Successful || cur.state == State::Canceled {
                return Err(EngineError::BadState {
                    wid: wid.clone(),
                    state: cur.state,
                    message: "it has finished".to_owned(),
                });
            }
            if final_state == State::Stopped && cur.state.is_final() {
                return Ok(());
            }
            let owned = matches!(decide_resume(&cur, now_ms(), false), Decision::Owned { .. });
            // Without a live owner the state is final at once, with a new
            // generation: an owner that wakes up late is fenced by it.
            let next = StatusRecord {
                version: cur.version + 1,
                state: if owned { requested } else { final_state },
                generation: if owned {
                    cur.generation
                } else {
                    cur.generation + 1
                },
                owner: if owned { cur.owner.clone() } else { None },
                lease_until_ms: if owned { cur.lease_until_ms } else { 0 },
                updated_ms: now_ms(),
                error: None,
            };
            if write_next(store, wid, &next)?.is_ok() {
                return Ok(());
            }
        }
    }

    /// Deletes a workflow's records, its outputs and the data kept under the
    /// prefixes of [`Engine::register_data_prefix`]; returns how many
    /// objects. A workflow with a live owner is refused unless `force`.
    pub fn delete(&self, wid: &WorkflowId, force: bool) -> Result<usize, EngineError> {
        let store = self.inner.store.as_ref();
        if let Some(cur) = latest_status(store, wid)? {
            if let Decision::Owned {
                owner,
                lease_until_ms,
                alive,
            } = decide_resume(&cur, now_ms(), force)
            {
                return Err(EngineError::Owned {
                    wid: wid.clone(),
                    owner,
                    remaining_ms: lease_until_ms.saturating_sub(now_ms()),
                    alive: if alive == Some(true) {
                        ", process alive"
                    } else {
                        ""
                    },
                });
            }
        }
        // Application data and outputs first, the workflow's record last: a
        // delete cut short is repeated by deleting again.
        let mut n = 0;
        let apps = self.inner.data_prefixes.read().clone();
        for top in apps.iter().map(String::as_str).chain(["outputs"]) {
            n += store.delete_prefix(&format!("{top}/{wid}/"))?;
        }
        n += store.delete_prefix(&format!("workflows/{wid}/"))?;
        Ok(n)
    }
}

impl Run {
    /// Completes a run that only loads the stored output.
    fn complete_loaded(self: &Arc<Self>) {
        let key = self.task_key(&self.dag.nodes[self.dag.output].id);
        let outcome = (|| -> Result<Value, EngineError> {
            let bytes = self.inner.store.get(&key)?.ok_or_else(|| {
                EngineError::Internal(format!("committed output {key} disappeared"))
            })?;
            Ok((self.dag.nodes[self.dag.output].codec.decode)(
                &key, &bytes,
            )?)
        })();
        self.complete(outcome);
    }
}
