//! One builder for every way a workflow starts: a new run of a registered
//! DAG ([`Engine::workflow`]), a new run of a workflow built by the caller
//! ([`Engine::workflow_of`]), and a resume of either ([`Engine::resume`]);
//! each ends in [`Launch::submit`] (returns at once) or [`Launch::run`]
//! (waits for the output).

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;

use crate::dag::{Built, Data, Workflow};
use crate::engine::{Engine, ResumeOptions, RunHandle};
use crate::error::EngineError;
use crate::id::WorkflowId;

/// Where the DAG of a launch comes from.
enum Source {
    /// A registered DAG, built from its name and arguments.
    Registered(String),
    /// Built by the caller.
    Given(Arc<Built>),
    /// A resume: the DAG the workflow recorded (registered), unless given.
    Recorded(Option<Arc<Built>>),
}

/// A workflow about to start or resume; see the module doc.
#[must_use = "a launch does nothing until submit() or run()"]
pub struct Launch<'e, O> {
    engine: &'e Engine,
    source: Source,
    id: Option<WorkflowId>,
    args: Option<Result<Vec<u8>, EngineError>>,
    resume: ResumeOptions,
    /// Why this launch cannot work, found while it was built.
    misuse: Option<&'static str>,
    _output: PhantomData<fn() -> O>,
}

impl Engine {
    /// A new run of the registered DAG `dag`: set its arguments with
    /// [`Launch::args`] and its id with [`Launch::id`] (default: a fresh
    /// one).
    pub fn workflow<O: Data>(&self, dag: &str) -> Launch<'_, O> {
        Launch::new(self, Source::Registered(dag.to_owned()))
    }

    /// A new run of `wf`, a workflow built by the caller; it needs an id
    /// ([`Launch::id`]). Resume it with [`Engine::resume`] and
    /// [`Launch::rebuilt_from`] the same DAG.
    pub fn workflow_of<O: Data>(&self, wf: &Workflow<O>) -> Launch<'_, O> {
        Launch::new(self, Source::Given(wf.clone().erase()))
    }

    /// A resume of workflow `wid`: committed tasks are not run again. The
    /// DAG is rebuilt from the registered builder and the recorded
    /// arguments, or given with [`Launch::rebuilt_from`].
    pub fn resume<O: Data>(&self, wid: &WorkflowId) -> Launch<'_, O> {
        let mut launch = Launch::new(self, Source::Recorded(None));
        launch.id = Some(wid.clone());
        launch
    }
}

impl<'e, O: Data> Launch<'e, O> {
    fn new(engine: &'e Engine, source: Source) -> Self {
        Self {
            engine,
            source,
            id: None,
            args: None,
            resume: ResumeOptions::default(),
            misuse: None,
            _output: PhantomData,
        }
    }

    /// The workflow id of a new run (`None`: a fresh one, for a registered
    /// DAG).
    pub fn id(mut self, wid: impl Into<Option<WorkflowId>>) -> Self {
        self.id = wid.into();
        self
    }

    /// The arguments of a registered DAG (JSON-encoded into the
    /// workflow's record, and handed to its builder).
    pub fn args<A: Serialize>(mut self, args: &A) -> Self {
        self.args = Some(
            serde_json::to_vec(args)
                .map_err(|e| EngineError::Internal(format!("encoding arguments: {e}"))),
        );
        self
    }

    /// Resumes with `wf`, rebuilt by the caller from the same code, instead
    /// of a registered DAG.
    pub fn rebuilt_from(mut self, wf: &Workflow<O>) -> Self {
        match &mut self.source {
            Source::Recorded(given) => *given = Some(wf.clone().erase()),
            _ => self.misuse = Some("rebuilt_from applies to a resume (Engine::resume)"),
        }
        self
    }

    /// Resume options at once: [`Launch::force`] and
    /// [`Launch::wait_for_lease`].
    pub fn options(mut self, opts: ResumeOptions) -> Self {
        self.resume = opts;
        self
    }

    /// Takes over even from a live owner (resume).
    pub fn force(mut self) -> Self {
        self.resume.force = true;
        self
    }

    /// Waits for another owner's lease to expire instead of failing at
    /// once; a lease renewed meanwhile (a live owner) still fails (resume).
    pub fn wait_for_lease(mut self) -> Self {
        self.resume.wait = true;
        self
    }

    /// Starts the workflow; returns at once.
    pub fn submit(self) -> Result<RunHandle<O>, EngineError> {
        let Launch {
            engine,
            source,
            id,
            args,
            resume,
            misuse,
            ..
        } = self;
        if let Some(why) = misuse {
            return Err(EngineError::Usage(why));
        }
        match source {
            Source::Registered(dag) => {
                let args = args.unwrap_or_else(|| Ok(b"null".to_vec()))?;
                let built = engine.build(&dag, &args)?;
                let wid = match id {
                    Some(w) => w,
                    None => engine.fresh_id(&dag)?,
                };
                engine.start_new(wid, dag, args, built)
            }
            Source::Given(built) => {
                if args.is_some() {
                    return Err(EngineError::Usage(
                        "arguments apply to a registered DAG (Engine::workflow), not to a workflow given by value",
                    ));
                }
                let wid = id.ok_or(EngineError::Usage(
                    "a workflow given by value (Engine::workflow_of) needs an id: Launch::id",
                ))?;
                engine.start_new(wid, String::new(), Vec::new(), built)
            }
            Source::Recorded(given) => {
                if args.is_some() {
                    return Err(EngineError::Usage(
                        "a resume takes the recorded arguments: Launch::args does not apply",
                    ));
                }
                let wid = id.ok_or(EngineError::Usage("a resume needs the workflow id"))?;
                engine.resume_inner(&wid, given, resume)
            }
        }
    }

    /// Starts the workflow and waits for its output.
    pub fn run(self) -> Result<Arc<O>, EngineError> {
        self.submit()?.wait()
    }
}
