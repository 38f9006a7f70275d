//! The gateway of exoflow mode: each client request becomes a workflow of
//! a registered DAG whose tasks call the function service, its id derived
//! from the request id, so that a client's retry is the same workflow:
//! answered from it if it finished, joined if it runs here, waited for if
//! another gateway owns it, resumed if its owner died.
//!
//! DAGs: `search` (geo, then rate), `recommend`, `user` skip checkpoints
//! (read-only: a re-run repeats no effect); `reserve` locks a room and a
//! seat, then settles, in one of the [`Variant`]s of the paper's Fig 7b.

use std::sync::Arc;
use std::time::Duration;

use exoflow_engine::{
    Dag, DagError, Engine, EngineError, State, TaskOptions, Workflow, WorkflowId, WorkflowInfo,
};
use serde::{Deserialize, Serialize};

use crate::beldi::{Instruction, Invocation};
use crate::client::{CallError, Functions};
use crate::functions::{Acquired, Outcome, RatePlan, Require, Reservation, Resource};
use crate::service::Call;

/// Which protocol makes the functions exactly-once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A workflow per request: checkpoints, retries, idempotent steps.
    Exoflow,
    /// Beldi's logs in the database (the baseline).
    Beldi,
}

/// How a reservation's workflow checkpoints (Fig 7b's bars).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Hotel, then flight, then settle; every task Sync.
    Serial,
    /// Hotel and flight at once, then settle; every task Sync.
    Parallel,
    /// Hotel and flight at once, Async; settle skips its checkpoint and
    /// waits until both locks are committed.
    Async,
    /// As `async`, with the locks Sync (no overlap of their checkpoints).
    AsyncNoOverlap,
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ask {
    /// Hotels near a point with their rate plans.
    Search {
        /// Latitude, micro-degrees.
        lat: i64,
        /// Longitude, micro-degrees.
        lon: i64,
    },
    /// The best hotels by a criterion.
    Recommend {
        /// The criterion.
        require: Require,
        /// Latitude, micro-degrees.
        lat: i64,
        /// Longitude, micro-degrees.
        lon: i64,
    },
    /// A login check.
    User {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
    /// A room and a seat.
    Reserve(Reservation),
}

impl Ask {
    /// The DAG that answers it.
    pub fn dag(&self) -> &'static str {
        match self {
            Ask::Search { .. } => "search",
            Ask::Recommend { .. } => "recommend",
            Ask::User { .. } => "user",
            Ask::Reserve(_) => "reserve",
        }
    }
}

/// A client request: its id (the same for a retry) and what it asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// 1 to 100 of `[A-Za-z0-9._=-]`.
    pub id: String,
    /// What it asks.
    pub ask: Ask,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    /// Rate plans of the hotels found.
    Search(Vec<RatePlan>),
    /// Hotel ids.
    Recommend(Vec<String>),
    /// Whether the password was right.
    User(bool),
    /// How the reservation ended.
    Reserve(Outcome),
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed.
    #[error("bad request: {0}")]
    Bad(String),
    /// The workflow failed (a function failed after all its retries).
    #[error("request {id} failed: {source}")]
    Failed {
        /// The request.
        id: String,
        /// Why.
        source: Box<EngineError>,
    },
    /// Beldi's gateway function failed after all its retries.
    #[error("request {id} failed: {source}")]
    Beldi {
        /// The request.
        id: String,
        /// Why.
        source: CallError,
    },
}

/// The name a request's workflow and its reservation transaction share:
/// `<dag>-<id>`, so that any run of the request, by any gateway, is the same
/// workflow and the same transaction.
fn request_key(req: &Request) -> String {
    format!("{}-{}", req.ask.dag(), req.id)
}

/// The workflow id of a request: `<dag>-<id>`.
pub fn workflow_id(req: &Request) -> Result<WorkflowId, GatewayError> {
    if req.id.is_empty() || req.id.len() > 100 {
        return Err(GatewayError::Bad("id: 1 to 100 characters".to_owned()));
    }
    WorkflowId::new(request_key(req)).map_err(|e| GatewayError::Bad(format!("id: {e}")))
}

fn call<T: serde::de::DeserializeOwned>(f: &Functions, c: &Call) -> exoflow_engine::TaskResult<T> {
    f.call_as(c).map_err(exoflow_engine::Failure::msg)
}

/// The engine's retries of a task whose calls already retried: few.
fn opts(o: TaskOptions) -> TaskOptions {
    o.retries(3)
        .backoff(Duration::from_millis(50), Duration::from_secs(1))
}

fn search(f: Arc<Functions>, lat: i64, lon: i64) -> Result<Workflow<Answer>, DagError> {
    let mut dag = Dag::new();
    let g = f.clone();
    let geo = dag.task("geo", opts(TaskOptions::skip()), move |_| {
        #[derive(Deserialize)]
        struct Hotels {
            hotels: Vec<String>,
        }
        let h: Hotels = call(&g, &Call::Geo { lat, lon })?;
        Ok(h.hotels)
    });
    let rate = dag.task1(
        "rate",
        opts(TaskOptions::skip()),
        geo,
        move |_, hotels: &Vec<String>| {
            #[derive(Deserialize)]
            struct Plans {
                plans: Vec<RatePlan>,
            }
            let p: Plans = call(
                &f,
                &Call::Rate {
                    hotels: hotels.clone(),
                },
            )?;
            Ok(Answer::Search(p.plans))
        },
    );
    dag.finish(rate)
}

fn one(f: Arc<Functions>, c: Call) -> Result<Workflow<Answer>, DagError> {
    let mut dag = Dag::new();
    let t = dag.task(c.name(), opts(TaskOptions::skip()), move |_| {
        let v = f.call(&c).map_err(exoflow_engine::Failure::msg)?;
        let field = |k: &str| v.get(k).cloned().unwrap_or_default();
        let bad =
            |e: serde_json::Error| exoflow_engine::Failure::fatal(format!("{}: {e}", c.name()));
        Ok(match &c {
            Call::User { .. } => {
                Answer::User(serde_json::from_value(field("correct")).map_err(bad)?)
            }
            _ => Answer::Recommend(serde_json::from_value(field("hotels")).map_err(bad)?),
        })
    });
    dag.finish(t)
}

fn reserve(
    f: Arc<Functions>,
    txn: String,
    r: Reservation,
    v: Variant,
) -> Result<Workflow<Answer>, DagError> {
    let (lock, settle) = match v {
        Variant::Serial | Variant::Parallel => (TaskOptions::sync(), TaskOptions::sync()),
        Variant::Async => (
            TaskOptions::asynchronous(),
            TaskOptions::skip().wait_until_committed(),
        ),
        Variant::AsyncNoOverlap => (
            TaskOptions::sync(),
            TaskOptions::skip().wait_until_committed(),
        ),
    };
    let mut dag = Dag::new();
    let acquire = |what: Resource, id: String| {
        let (f, txn) = (f.clone(), txn.clone());
        move || {
            call::<Acquired>(
                &f,
                &Call::Acquire {
                    resource: what,
                    id: id.clone(),
                    txn: txn.clone(),
                },
            )
        }
    };
    let hotel_call = acquire(Resource::Hotel, r.hotel.clone());
    let hotel = dag.task("hotel", opts(lock.clone()), move |_| hotel_call());
    let flight_call = acquire(Resource::Flight, r.flight.clone());
    let flight = if v == Variant::Serial {
        // After the hotel: the serial reservation of Beldi's frontend.
        dag.task1("flight", opts(lock), hotel, move |_, _: &Acquired| {
            flight_call()
        })
    } else {
        dag.task("flight", opts(lock), move |_| flight_call())
    };
    let order = dag.task2(
        "settle",
        opts(settle),
        hotel,
        flight,
        move |_, h: &Acquired, fl: &Acquired| {
            let out: Outcome = call(
                &f,
                &Call::Settle {
                    txn: txn.clone(),
                    reservation: r.clone(),
                    hotel: h.clone(),
                    flight: fl.clone(),
                },
            )?;
            Ok(Answer::Reserve(out))
        },
    );
    dag.finish(order)
}

/// Registers the gateway's DAGs on `engine`, their tasks calling `f`.
pub fn register(engine: &Engine, f: Arc<Functions>, variant: Variant) -> Result<(), EngineError> {
    for name in ["search", "recommend", "user", "reserve"] {
        let f = f.clone();
        engine.register(name, move |req: &Request| {
            let txn = request_key(req);
            match &req.ask {
                Ask::Search { lat, lon } => search(f.clone(), *lat, *lon),
                Ask::Recommend { require, lat, lon } => one(
                    f.clone(),
                    Call::Recommend {
                        require: *require,
                        lat: *lat,
                        lon: *lon,
                    },
                ),
                Ask::User { username, password } => one(
                    f.clone(),
                    Call::User {
                        username: username.clone(),
                        password: password.clone(),
                    },
                ),
                Ask::Reserve(r) => reserve(f.clone(), txn, r.clone(), variant),
            }
        })?;
    }
    Ok(())
}

/// Answers a request: a new workflow, or the one a retry of it started.
pub fn answer(engine: &Engine, f: &Functions, req: &Request) -> Result<Answer, GatewayError> {
    let wid = workflow_id(req)?;
    let failed = |source| GatewayError::Failed {
        id: req.id.clone(),
        source: Box::new(source),
    };
    let started = engine
        .workflow::<Answer>(req.ask.dag())
        .args(req)
        .id(wid.clone())
        .submit()
        .and_then(|h| h.wait());
    let out = match started {
        // A retry: the same workflow, finished, running here, owned by
        // another gateway (wait out its lease) or left by a dead one.
        Err(EngineError::AlreadyExists(_)) | Err(EngineError::Owned { .. }) => rejoin(engine, &wid),
        other => other,
    };
    match (out, &req.ask) {
        (Ok(a), _) => Ok((*a).clone()),
        // Finished, with a `settle` that skips its checkpoint: run it again
        // on the committed locks; it answers the recorded decision.
        (
            Err(EngineError::BadState {
                state: State::Successful,
                ..
            }),
            Ask::Reserve(r),
        ) => settle_again(engine, f, &wid, req, r).map_err(failed),
        (Err(e), _) => Err(failed(e)),
    }
}

/// Answers a request in Beldi mode: invokes Beldi's `gateway` function,
/// its instance id the request's key, so that a retry replays it.
pub fn answer_beldi(f: &Functions, req: &Request) -> Result<Answer, GatewayError> {
    let instance = workflow_id(req)?.to_string();
    let inv = Invocation {
        instance,
        caller: None,
        txn: None,
        instruction: Instruction::None,
        is_async: false,
        input: serde_json::to_value(&req.ask).map_err(|e| GatewayError::Bad(e.to_string()))?,
    };
    let failed = |source| GatewayError::Beldi {
        id: req.id.clone(),
        source,
    };
    let v = f.post("gateway", "/beldi/gateway", &inv).map_err(failed)?;
    serde_json::from_value(v).map_err(|e| {
        failed(CallError::Answer {
            function: "gateway",
            message: e.to_string(),
        })
    })
}

/// The answer of a finished reservation whose `settle` was not stored.
fn settle_again(
    engine: &Engine,
    f: &Functions,
    wid: &WorkflowId,
    req: &Request,
    r: &Reservation,
) -> Result<Answer, EngineError> {
    let txn = request_key(req);
    let wf = reserve(Arc::new(f.clone()), txn.clone(), r.clone(), Variant::Async)?;
    let lock = |name: &str| -> Result<Acquired, EngineError> {
        let id = wf.task_id(name).unwrap_or(name);
        engine
            .task_output::<Acquired>(wid, id)?
            .ok_or_else(|| EngineError::BadState {
                wid: wid.clone(),
                state: State::Successful,
                message: format!("it finished without the output of its task {name}"),
            })
    };
    let settle = Call::Settle {
        txn,
        reservation: r.clone(),
        hotel: lock("hotel")?,
        flight: lock("flight")?,
    };
    let out: Outcome = f.call_as(&settle).map_err(|e| EngineError::BadState {
        wid: wid.clone(),
        state: State::Successful,
        message: format!("settling again: {e}"),
    })?;
    Ok(Answer::Reserve(out))
}

/// The answer of an existing workflow: its output if it finished, else
/// resumed once no one else runs it (a run in this process is waited for).
fn rejoin(engine: &Engine, wid: &WorkflowId) -> Result<Arc<Answer>, EngineError> {
    let mut wait = Duration::from_millis(10);
    loop {
        match engine.resume::<Answer>(wid).wait_for_lease().run() {
            Err(EngineError::Owned { .. }) => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// Resumes the workflows of `listed` whose owner died (their lease
/// expired): what a killed gateway left. Returns how many were resumed.
pub fn resume_orphans(engine: &Engine, listed: &[WorkflowInfo]) -> usize {
    let now = now_ms();
    listed
        .iter()
        // Read-only requests (not durable) are run again by a client's
        // retry; nothing else needs them.
        .filter(|w| w.durable && w.state == State::Running && w.lease_until_ms < now)
        .filter(|w| engine.resume::<Answer>(&w.id).submit().is_ok())
        .count()
}

/// The durable workflows of `listed` that finished more than `keep` ago:
/// those to delete. (Read-only requests, kept in the engine's run journal,
/// go with [`Engine::prune_journal`].)
pub fn finished(listed: &[WorkflowInfo], keep: Duration) -> Vec<WorkflowId> {
    let cutoff = now_ms().saturating_sub(keep.as_millis() as u64);
    listed
        .iter()
        .filter(|w| {
            w.durable
                && matches!(w.state, State::Successful | State::Canceled)
                && w.updated_ms < cutoff
        })
        .map(|w| w.id.clone())
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
