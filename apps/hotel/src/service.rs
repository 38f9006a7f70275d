//! The function service: the benchmark's functions served over HTTP by
//! separate OS processes (`exoflow-hotel functions`), so that a `kill -9`
//! loses the invocations in flight, as when a Lambda instance dies. All
//! processes of a service listen on one port (`SO_REUSEPORT`: the kernel
//! spreads connections over them); a supervisor restarts any that dies.
//!
//! Each function is `POST /fn/<name>` with a JSON body `{"<name>": {fields}}`
//! (see [`Call`]); the answer is JSON,
//! or `{"error": ...}` with 400 (malformed request, naming the field), 413
//! (over [`BODY_LIMIT`]) or 500 (a failure: injected, or the database's).
//! `GET /health` answers the process id.
//!
//! Beldi mode's functions are `POST /beldi/<name>` with a body
//! [`crate::beldi::Invocation`]; they invoke each other through this same
//! service. `POST /admin/collect` and `POST /admin/gc`, with
//! `{"older_ms": N}`, run Beldi's collector (re-running intents that never
//! finished) and garbage collection. Every answer tells the database
//! operations it took (with those of the functions it called) in the
//! header [`OPS_HEADER`].
//!
//! `--failure-rate R` fails each invocation with probability R (seeded per
//! process): before any work (`--failure-point before`, the paper's) or
//! after its database writes and before the reply (`after`, the harder
//! case for exactly-once).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::beldi::{self, app, BeldiError, Invocation, Invoker};
use crate::client::{Functions, OPS_HEADER};
use crate::data::{FLIGHT, HOTEL, ORDER};
use crate::functions::{self, Acquired, Require, Reservation, Resource};
use crate::kv::{Counted, Kv};

/// Largest request body, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Where an injected failure strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FailurePoint {
    /// Before any work.
    Before,
    /// After the function's database writes, before its reply.
    After,
}

/// Injected failures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failures {
    /// Probability that an invocation fails, in `[0, 1]`.
    pub rate: f64,
    /// Where.
    pub point: FailurePoint,
    /// Seed of this process's failure sequence.
    pub seed: u64,
}

impl Default for Failures {
    fn default() -> Self {
        Self {
            rate: 0.0,
            point: FailurePoint::Before,
            seed: 0,
        }
    }
}

/// A process's service: its database, its failure sequence, and how its
/// Beldi functions reach the others.
pub struct Service {
    kv: Arc<dyn Kv>,
    failures: Failures,
    rng: Mutex<ChaCha8Rng>,
    itself: Functions,
    logs: bool,
}

impl Service {
    /// A service over `kv`, reachable at `itself` (`http://HOST:PORT`).
    pub fn new(kv: Arc<dyn Kv>, failures: Failures, itself: &str) -> Self {
        Self {
            kv,
            failures,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(failures.seed)),
            itself: Functions::new(itself),
            logs: true,
        }
    }

    /// Turns Beldi's read and invoke logs off: a re-executed function then
    /// reads anew and invokes anew (this breaks exactly-once; for the test
    /// that shows the logs are needed).
    pub fn without_beldi_logs(mut self) -> Self {
        self.logs = false;
        self
    }

    fn fails(&self) -> bool {
        self.failures.rate > 0.0 && self.rng.lock().random::<f64>() < self.failures.rate
    }
}

/// The HTTP routes of a service.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/fn/{name}", post(invoke))
        .route("/beldi/{name}", post(invoke_beldi))
        .route("/admin/{what}", post(admin))
        .route("/health", get(|| async { std::process::id().to_string() }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(service)
}

/// A function's request: `{"<function>": {fields}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Call {
    /// The hotels nearest to a point (micro-degrees).
    Geo {
        /// Latitude.
        lat: i64,
        /// Longitude.
        lon: i64,
    },
    /// Rate plans of hotels.
    Rate {
        /// The hotels.
        hotels: Vec<String>,
    },
    /// Profiles of hotels.
    Profile {
        /// The hotels.
        hotels: Vec<String>,
    },
    /// The best hotels by a criterion.
    Recommend {
        /// The criterion.
        require: Require,
        /// Latitude.
        lat: i64,
        /// Longitude.
        lon: i64,
    },
    /// A login check.
    User {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
    /// Locks a room or seat for a reservation transaction.
    Acquire {
        /// Hotel or flight.
        resource: Resource,
        /// Its id.
        id: String,
        /// The transaction.
        txn: String,
    },
    /// Ends a reservation transaction.
    Settle {
        /// The transaction.
        txn: String,
        /// The request.
        reservation: Reservation,
        /// What the hotel's acquire found.
        hotel: Acquired,
        /// What the flight's acquire found.
        flight: Acquired,
    },
}

impl Call {
    /// The function's name (its path).
    pub fn name(&self) -> &'static str {
        match self {
            Call::Geo { .. } => "geo",
            Call::Rate { .. } => "rate",
            Call::Profile { .. } => "profile",
            Call::Recommend { .. } => "recommend",
            Call::User { .. } => "user",
            Call::Acquire { .. } => "acquire",
            Call::Settle { .. } => "settle",
        }
    }

    /// Checks sizes the database would refuse less clearly.
    fn validate(&self) -> Result<(), String> {
        let id_ok = |what: &str, id: &str| {
            if id.is_empty() || id.len() > 256 {
                Err(format!("{what}: an id has 1 to 256 bytes"))
            } else {
                Ok(())
            }
        };
        match self {
            Call::Rate { hotels } | Call::Profile { hotels } => {
                if hotels.len() > 100 {
                    return Err("hotels: at most 100".to_owned());
                }
                hotels.iter().try_for_each(|h| id_ok("hotels", h))
            }
            Call::User { username, .. } => id_ok("username", username),
            Call::Acquire { id, txn, .. } => id_ok("id", id).and(id_ok("txn", txn)),
            Call::Settle {
                txn, reservation, ..
            } => id_ok("txn", txn)
                .and(id_ok("reservation.user", &reservation.user))
                .and(id_ok("reservation.hotel", &reservation.hotel))
                .and(id_ok("reservation.flight", &reservation.flight)),
            Call::Geo { .. } | Call::Recommend { .. } => Ok(()),
        }
    }

    /// Runs the function on `kv`; the answer as JSON.
    pub fn run(&self, kv: &dyn Kv) -> Result<serde_json::Value, crate::kv::KvError> {
        use serde_json::json;
        let mut r = kv;
        let kv = &mut r;
        Ok(match self {
            Call::Geo { lat, lon } => json!({ "hotels": functions::geo(kv, (*lat, *lon))? }),
            Call::Rate { hotels } => json!({ "plans": functions::rate(kv, hotels)? }),
            Call::Profile { hotels } => json!({ "profiles": functions::profile(kv, hotels)? }),
            Call::Recommend { require, lat, lon } => {
                json!({ "hotels": functions::recommend(kv, *require, (*lat, *lon))? })
            }
            Call::User { username, password } => {
                json!({ "correct": functions::user(kv, username, password)? })
            }
            Call::Acquire { resource, id, txn } => {
                json!(functions::acquire(*kv, *resource, id, txn)?)
            }
            Call::Settle {
                txn,
                reservation,
                hotel,
                flight,
            } => json!(functions::settle(*kv, txn, reservation, hotel, flight)?),
        })
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    (status, axum::Json(body)).into_response()
}

async fn invoke(State(s): State<Arc<Service>>, Path(name): Path<String>, body: Bytes) -> Response {
    let mut de = serde_json::Deserializer::from_slice(&body);
    let call: Call = match serde_path_to_error::deserialize(&mut de) {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "malformed request to {name}: at `{}`: {}",
                    e.path(),
                    e.inner()
                ),
            )
        }
    };
    if call.name() != name {
        return error(
            StatusCode::BAD_REQUEST,
            format!("the body calls {} but the path names {name}", call.name()),
        );
    }
    if let Err(e) = call.validate() {
        return error(StatusCode::BAD_REQUEST, format!("{name}: {e}"));
    }
    let function = call.name();
    run_blocking(&s, function, move |service| {
        let kv = Counted::new(service.kv.as_ref());
        let out = call.run(&kv).map_err(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{function}: {e}"),
            )
        });
        (out, kv.ops())
    })
    .await
}

/// What a function's work gives: its answer or an error status and reason,
/// with the database operations it made.
type Work = (Result<serde_json::Value, (StatusCode, String)>, u64);

/// Runs a function's `work` on a blocking thread, under the injected
/// failures (before it, or after it and before the reply); the answer
/// carries the database operations in [`OPS_HEADER`].
async fn run_blocking(
    s: &Arc<Service>,
    name: &str,
    work: impl FnOnce(&Service) -> Work + Send + 'static,
) -> Response {
    let fail = s.fails();
    if fail && s.failures.point == FailurePoint::Before {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected failure (before any work)",
        );
    }
    let service = s.clone();
    let (result, ops) = match tokio::task::spawn_blocking(move || work(&service)).await {
        Ok(done) => done,
        Err(e) => (
            Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{name} panicked: {e}"),
            )),
            0,
        ),
    };
    let mut resp = match result {
        Ok(_) if fail => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected failure (after the work, before the reply)",
        ),
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err((status, e)) => error(status, e),
    };
    resp.headers_mut()
        .insert(OPS_HEADER, axum::http::HeaderValue::from(ops));
    resp
}

/// Beldi functions invoke each other over HTTP, through this service.
struct Http {
    client: Functions,
}

impl Invoker for Http {
    fn invoke(&self, function: &str, inv: &Invocation) -> Result<serde_json::Value, String> {
        let name = app::function(function).ok_or_else(|| format!("no function {function}"))?;
        self.client
            .post(name, &format!("/beldi/{name}"), inv)
            .map_err(|e| e.to_string())
    }

    fn invoke_async(&self, function: &str, inv: Invocation) {
        let client = self.client.clone();
        let Some(name) = app::function(function) else {
            return;
        };
        // Lost if this process dies: the intent stays, for the collector.
        std::thread::spawn(move || {
            let _ = client.post(name, &format!("/beldi/{name}"), &inv);
        });
    }
}

async fn invoke_beldi(
    State(s): State<Arc<Service>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(function) = app::function(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no function {name}; Beldi's are {}",
                app::FUNCTIONS.join(", ")
            ),
        );
    };
    let mut de = serde_json::Deserializer::from_slice(&body);
    let inv: Invocation = match serde_path_to_error::deserialize(&mut de) {
        Ok(i) => i,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "malformed invocation of {name}: at `{}`: {}",
                    e.path(),
                    e.inner()
                ),
            )
        }
    };
    if let Err(e) = inv
        .validate()
        .and_then(|()| app::check_input(function, &inv))
    {
        return error(StatusCode::BAD_REQUEST, format!("{name}: {e}"));
    }
    run_blocking(&s, function, move |service| {
        let kv = Counted::new(service.kv.as_ref());
        let http = Http {
            client: service.itself.counting(),
        };
        let out = beldi::run(&kv, &http, function, &inv, service.logs, |env, v| {
            app::body(function, env, v)
        })
        .map_err(|e| {
            let status = match e {
                BeldiError::Input(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, format!("{function}: {e}"))
        });
        (out, kv.ops() + http.client.ops())
    })
    .await
}

/// What `/admin/collect` and `/admin/gc` take.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Admin {
    /// Intents (or finished invocations) older than this, in ms.
    pub older_ms: i64,
}

async fn admin(State(s): State<Arc<Service>>, Path(what): Path<String>, body: Bytes) -> Response {
    let a: Admin = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("{what}: {e}")),
    };
    let service = s.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, String> {
        let kv = service.kv.as_ref();
        match what.as_str() {
            "collect" => {
                let stuck = beldi::stuck(kv, a.older_ms).map_err(|e| e.to_string())?;
                let http = Http {
                    client: service.itself.clone(),
                };
                for st in &stuck {
                    http.invoke_async(&st.function, st.invocation.clone());
                }
                Ok(serde_json::json!({ "rerun": stuck.len() }))
            }
            "gc" => {
                let tables = [HOTEL, FLIGHT, ORDER, beldi::LOCAL];
                let n = beldi::gc(kv, &tables, a.older_ms).map_err(|e| e.to_string())?;
                Ok(serde_json::json!({ "collected": n }))
            }
            other => Err(format!("no admin task {other}: collect or gc")),
        }
    })
    .await;
    match done {
        Ok(Ok(v)) => (StatusCode::OK, axum::Json(v)).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A listener on `addr` that other processes may share (`SO_REUSEPORT`).
pub fn shared_listener(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
