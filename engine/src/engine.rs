//! The engine's facade: an engine over one store, its registered DAGs, and
//! the entry points that start workflows. Resuming is in `resume.rs`, the
//! operations on recorded workflows (status, list, cancel, stop, delete) in
//! `admin.rs`; below them, runs (`run.rs`), the commit path (`commit.rs`),
//! the status protocol (`lease.rs`) and the shared runtime (`runtime.rs`).

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::{de::DeserializeOwned, Serialize};

use crate::codec::Kind;
use crate::commit::Commit;
use crate::dag::{Built, DagError, Data, Workflow};
use crate::error::EngineError;
use crate::id::WorkflowId;
use crate::layout::{meta_key, status_key, workflow_prefix};
use crate::lease::{encode, LeaseState};
use crate::plan::plan;
use crate::run::{Run, Runs};
use crate::runtime::{EngineOptions, Runtime};
use crate::status::{now_ms, Meta, Owner, State, StatusRecord};
use crate::store::{PutOutcome, SharedStore};
use crate::task::TimingRecord;

/// How `resume` treats a workflow held by another owner.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResumeOptions {
    /// Take over even a live owner's workflow.
    pub force: bool,
    /// Wait for a lease to expire instead of failing at once; a lease that is
    /// renewed meanwhile (a live owner) still fails.
    pub wait: bool,
}

type BuildFn = Arc<dyn Fn(&[u8]) -> Result<Arc<Built>, EngineError> + Send + Sync>;

/// What the engine holds.
pub(crate) struct EngineCore {
    pub rt: Arc<Runtime>,
    pub runs: Arc<Runs>,
    registry: RwLock<HashMap<String, BuildFn>>,
    /// Top-level prefixes under which applications keep a workflow's data
    /// (`<prefix>/<wid>/`), deleted with it.
    pub data_prefixes: RwLock<Vec<String>>,
    /// Ids being started or resumed by this engine (taken under `runs`).
    claims: Mutex<HashSet<WorkflowId>>,
    counter: AtomicU64,
}

/// The ExoFlow engine over one store.
pub struct Engine {
    pub(crate) core: Arc<EngineCore>,
}

/// A running workflow: wait for its output or cancel it.
pub struct RunHandle<O> {
    run: Arc<Run>,
    _o: PhantomData<fn() -> O>,
}

impl<O> RunHandle<O> {
    pub(crate) fn new(run: Arc<Run>) -> Self {
        Self {
            run,
            _o: PhantomData,
        }
    }
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

/// Renews the leases of the engine's durable runs, each every third of
/// the lease; ends with the engine.
fn lease_keeper(core: Weak<EngineCore>) {
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let Some(core) = core.upgrade() else { return };
        let runs = core.runs.live();
        drop(core);
        let now = now_ms();
        for run in runs {
            if run.renewal_due(now) && !run.is_done() {
                run.renew_lease();
            }
        }
    }
}

/// A reservation of a workflow id in one engine (see `Engine::claim`).
pub(crate) struct Claim<'a> {
    core: &'a EngineCore,
    wid: WorkflowId,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.core.claims.lock().remove(&self.wid);
    }
}

impl Engine {
    /// An engine over `store` with default options.
    pub fn new(store: SharedStore) -> Self {
        Self::with_options(store, EngineOptions::default())
    }

    /// An engine over `store`.
    pub fn with_options(store: SharedStore, opts: EngineOptions) -> Self {
        let core = Arc::new(EngineCore {
            rt: Runtime::start(store, opts),
            runs: Arc::new(Runs::default()),
            registry: RwLock::new(HashMap::new()),
            data_prefixes: RwLock::new(Vec::new()),
            claims: Mutex::new(HashSet::new()),
            counter: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&core);
        let spawned = std::thread::Builder::new()
            .name("exoflow-lease".into())
            .spawn(move || lease_keeper(weak));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the lease thread");
        }
        Self { core }
    }

    /// The store (with retries on transient errors).
    pub fn store(&self) -> &SharedStore {
        &self.core.rt.store
    }

    /// This engine instance's owner identity.
    pub fn owner(&self) -> &Owner {
        &self.core.rt.owner
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
        self.core.registry.write().insert(name.to_owned(), f);
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
        let mut prefixes = self.core.data_prefixes.write();
        if !prefixes.iter().any(|p| p == top) {
            prefixes.push(top.to_owned());
        }
        Ok(())
    }

    pub(crate) fn build(&self, name: &str, args: &[u8]) -> Result<Arc<Built>, EngineError> {
        let f = self
            .core
            .registry
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownDag(name.to_owned()))?;
        f(args)
    }

    pub(crate) fn fresh_id(&self, dag: &str) -> Result<WorkflowId, EngineError> {
        let n = self.core.counter.fetch_add(1, Ordering::Relaxed);
        Ok(WorkflowId::new(format!(
            "{dag}.{}.{n}",
            self.core.rt.instance
        ))?)
    }

    /// Reserves `wid` in this engine: a second start or resume of the same id
    /// in this process fails at once. The reservation ends when the claim is
    /// dropped, after the run (if any) is registered.
    pub(crate) fn claim(&self, wid: &WorkflowId) -> Result<Claim<'_>, EngineError> {
        let runs = self.core.runs.map.lock();
        let mut claims = self.core.claims.lock();
        if runs.get(wid).and_then(Weak::upgrade).is_some() || claims.contains(wid) {
            return Err(EngineError::Owned {
                wid: wid.clone(),
                owner: self.core.rt.owner.clone(),
                remaining_ms: self.core.rt.lease_ms(),
                alive: ", this very process",
            });
        }
        claims.insert(wid.clone());
        Ok(Claim {
            core: &self.core,
            wid: wid.clone(),
        })
    }

    pub(crate) fn start_new<O: Data>(
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
                self.core.rt.clone(),
                self.core.runs.clone(),
                wid,
                built,
                dag_name,
                args,
                1,
                plans,
                None,
            );
            run.record_start();
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
            owner: Some(self.core.rt.owner.clone()),
            lease_until_ms: now_ms() + self.core.rt.lease_ms(),
            updated_ms: now_ms(),
            error: None,
        };
        let meta_bytes = encode(Kind::Meta, &meta)?;
        let status_bytes = encode(Kind::Status, &status)?;
        // Every record of the workflow (metadata, status versions, outputs,
        // timings) goes into one log in a local store, made ready now and
        // durable by the metadata's commit.
        self.core.rt.store.prepare(&workflow_prefix(&wid));
        // The run holds no status until its first version is durable, so
        // that the lease keeper cannot write one before it.
        let run = Run::new(
            self.core.rt.clone(),
            self.core.runs.clone(),
            wid.clone(),
            built,
            dag_name,
            args,
            1,
            plans,
            None,
        );
        self.core.runs.insert(&run);
        // The metadata, then the first status version, group-committed with
        // other runs' records; the run starts once both are durable.
        let r = run.clone();
        let commits = self.core.rt.commits.clone();
        let status_key = status_key(&wid, 1);
        self.core.rt.commits.send_record(
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
                                *r2.status.lock() = Some(LeaseState::new(status));
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
        Ok(RunHandle::new(run))
    }

    pub(crate) fn launch<O: Data>(&self, run: Arc<Run>) -> RunHandle<O> {
        self.core.runs.insert(&run);
        run.start();
        RunHandle::new(run)
    }
}
