//! `exoflow-hotel gateway`: the HTTP server that answers client requests,
//! in exoflow mode (a workflow per request, with the janitor that resumes
//! what a dead gateway left and deletes finished workflows) or in Beldi
//! mode (Beldi's gateway function, with its collector and garbage
//! collection run on a timer).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use exoflow_hotel::client::Functions;
use exoflow_hotel::gateway::{self, Answer, GatewayError, Request};
use exoflow_hotel::service::{self, Admin};

use super::shutdown_signal;

type Handler = dyn Fn(&Request) -> Result<Answer, GatewayError> + Send + Sync;

/// What the routes share.
#[derive(Clone)]
struct Shared {
    answer: Arc<Handler>,
    functions: Arc<Functions>,
    answered: Arc<AtomicU64>,
}

/// An exoflow-mode gateway: requests as workflows on `engine`; every 2 s,
/// orphaned workflows resumed and those finished more than `keep` ago
/// deleted.
pub fn exoflow(
    engine: Arc<exoflow_engine::Engine>,
    f: Arc<Functions>,
    listen: SocketAddr,
    keep: Duration,
) -> Result<()> {
    let janitor = engine.clone();
    std::thread::Builder::new()
        .name("gateway-janitor".into())
        .spawn(move || loop {
            // One listing a round serves both. The deletions are spread over
            // the round: a burst of thousands of unlinks stalls the
            // requests' own writes on the file system.
            const ROUND: Duration = Duration::from_secs(2);
            const SLICES: usize = 20;
            let cutoff = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.saturating_sub(keep).as_millis() as u64);
            if let Err(e) = janitor.prune_journal(cutoff) {
                eprintln!("gateway: pruning the run journal: {e}");
            }
            let doomed = match janitor.list() {
                Ok(listed) => {
                    gateway::resume_orphans(&janitor, &listed);
                    gateway::finished(&listed, keep)
                }
                Err(e) => {
                    eprintln!("gateway: listing workflows: {e}");
                    Vec::new()
                }
            };
            let per = doomed.len().div_ceil(SLICES).max(1);
            let mut slices = doomed.chunks(per);
            for _ in 0..SLICES {
                for wid in slices.next().unwrap_or_default() {
                    if let Err(e) = janitor.delete(wid, false) {
                        eprintln!("gateway: deleting finished workflow {wid}: {e}");
                    }
                }
                std::thread::sleep(ROUND / SLICES as u32);
            }
        })
        .context("starting the janitor thread")?;
    let what = format!("store {}", engine.store().describe());
    let g = f.clone();
    let answer = move |req: &Request| gateway::answer(&engine, &g, req);
    serve(Arc::new(answer), f, listen, &what)
}

/// How often Beldi's background tasks run, and on what.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// The collector's period.
    pub collect_every: Duration,
    /// Garbage collection's period.
    pub gc_every: Duration,
    /// How old an unfinished intent is before the collector re-runs it,
    /// and a finished one before garbage collection removes its logs.
    pub older: Duration,
}

/// A Beldi-mode gateway: requests to Beldi's gateway function; its
/// collector and garbage collection on a timer (Beldi runs them from a
/// scheduler).
pub fn beldi(f: Arc<Functions>, listen: SocketAddr, timers: Timers) -> Result<()> {
    // The background tasks' database operations are not the requests'.
    let admin = f.counting();
    std::thread::Builder::new()
        .name("beldi-timers".into())
        .spawn(move || {
            let body = Admin {
                older_ms: timers.older.as_millis() as i64,
            };
            let (mut collected, mut swept) = (Instant::now(), Instant::now());
            loop {
                std::thread::sleep(Duration::from_millis(200));
                if collected.elapsed() >= timers.collect_every {
                    collected = Instant::now();
                    if let Err(e) = admin.post("collect", "/admin/collect", &body) {
                        eprintln!("gateway: Beldi's collector: {e}");
                    }
                }
                if swept.elapsed() >= timers.gc_every {
                    swept = Instant::now();
                    if let Err(e) = admin.post("gc", "/admin/gc", &body) {
                        eprintln!("gateway: Beldi's garbage collection: {e}");
                    }
                }
            }
        })
        .context("starting the timer thread")?;
    let g = f.clone();
    let answer = move |req: &Request| gateway::answer_beldi(&g, req);
    serve(Arc::new(answer), f, listen, "Beldi mode")
}

/// The HTTP server, until SIGTERM or SIGINT: `POST /request`, `GET
/// /health` (the process id), `GET /stats` (requests answered and the
/// database operations their functions reported).
fn serve(answer: Arc<Handler>, f: Arc<Functions>, listen: SocketAddr, what: &str) -> Result<()> {
    async fn request(State(s): State<Shared>, body: axum::body::Bytes) -> axum::response::Response {
        let reply =
            |status: StatusCode, v: serde_json::Value| (status, axum::Json(v)).into_response();
        let mut de = serde_json::Deserializer::from_slice(&body);
        let req: Request = match serde_path_to_error::deserialize(&mut de) {
            Ok(r) => r,
            Err(e) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({ "error": format!("malformed request: at `{}`: {}", e.path(), e.inner()) }),
                )
            }
        };
        let answer = s.answer.clone();
        let done = tokio::task::spawn_blocking(move || answer(&req)).await;
        match done {
            Ok(Ok(a)) => {
                s.answered.fetch_add(1, Ordering::Relaxed);
                reply(StatusCode::OK, serde_json::json!(a))
            }
            Ok(Err(e @ GatewayError::Bad(_))) => reply(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": e.to_string() }),
            ),
            Ok(Err(e)) => reply(
                StatusCode::BAD_GATEWAY,
                serde_json::json!({ "error": e.to_string() }),
            ),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({ "error": e.to_string() }),
            ),
        }
    }

    async fn stats(State(s): State<Shared>) -> axum::Json<serde_json::Value> {
        axum::Json(serde_json::json!({
            "answered": s.answered.load(Ordering::Relaxed),
            "db_ops": s.functions.ops(),
        }))
    }

    let shared = Shared {
        answer,
        functions: f,
        answered: Arc::new(AtomicU64::new(0)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(512)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        eprintln!("gateway: http://{listen}/request, {what}");
        let app = axum::Router::new()
            .route("/request", axum::routing::post(request))
            .route("/stats", axum::routing::get(stats))
            .route(
                "/health",
                axum::routing::get(|| async { std::process::id().to_string() }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(service::BODY_LIMIT))
            .with_state(shared);
        let stop = shutdown_signal()?;
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
            .context("serving")
    })
}
