//! `exoflow-hotel`: the travel-reservation service of the paper's stateful
//! serverless application.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use exoflow_hotel::client::Functions;
use exoflow_hotel::data::{self, Seed};
use exoflow_hotel::gateway::{self, GatewayError, Request, Variant};
use exoflow_hotel::service::{self, FailurePoint, Failures, Service};

/// The travel-reservation service of exoflow's stateful serverless
/// application: functions that keep their state in a database, made
/// exactly-once by workflows.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the whole service on this machine, no servers needed: seeds a
    /// SQLite database in DIR, starts the function service (failing 10% of
    /// calls after their writes) and a gateway, sends a short mixed load,
    /// then checks the database for exactly-once.
    Demo {
        /// Working directory (database, workflow store, CSV).
        #[arg(long, default_value = "hotel-demo")]
        dir: std::path::PathBuf,
        /// Requests a second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds of load.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// Creates the tables and writes the seed data (hotels, flights, users).
    Seed {
        /// The database: sqlite:PATH, dynamodb, or dynamodb:http://HOST:PORT.
        #[arg(long, default_value = "sqlite:hotel.db")]
        db: String,
        /// Hotels, and as many flights.
        #[arg(long, default_value_t = 100)]
        hotels: u32,
        /// Users.
        #[arg(long, default_value_t = 500)]
        users: u32,
        /// Rooms per hotel and seats per flight.
        #[arg(long, default_value_t = 1000)]
        capacity: i64,
    },
    /// Serves the functions over HTTP from several processes on one port,
    /// restarting any that dies.
    Functions {
        /// The database: sqlite:PATH, dynamodb, or dynamodb:http://HOST:PORT.
        #[arg(long, default_value = "sqlite:hotel.db")]
        db: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7100")]
        listen: SocketAddr,
        /// Serving processes.
        #[arg(long, default_value_t = 2)]
        processes: u32,
        /// Probability that an invocation fails, in [0, 1].
        #[arg(long, default_value_t = 0.0)]
        failure_rate: f64,
        /// Where an injected failure strikes.
        #[arg(long, value_enum, default_value_t = FailurePoint::Before)]
        failure_point: FailurePoint,
        /// Seed of the failures (each process draws its own sequence).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Runs one serving process (the supervisor starts these).
        #[arg(long, hide = true)]
        child: Option<u64>,
    },
    /// Sends an open-loop, constant-rate load of requests to a gateway and
    /// writes a CSV row per request; prints the latencies.
    Load {
        /// The gateway.
        #[arg(long, default_value = "http://127.0.0.1:7200")]
        gateway: String,
        /// Requests a second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds of load, warm-up included.
        #[arg(long, default_value_t = 30.0)]
        duration: f64,
        /// Seconds at the start left out of the summary.
        #[arg(long, default_value_t = 5.0)]
        warmup: f64,
        /// The mix, as KIND=WEIGHT,...: search, recommend, user, reserve.
        #[arg(long, default_value = "search=60,recommend=39,user=0.5,reserve=0.5")]
        mix: exoflow_hotel::load::Mix,
        /// Hotels (and flights) seeded.
        #[arg(long, default_value_t = 100)]
        hotels: u32,
        /// Users seeded.
        #[arg(long, default_value_t = 500)]
        users: u32,
        /// Seed of the requests.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Prefix of the request ids (a new one for each run).
        #[arg(long, default_value = "load")]
        run: String,
        /// Requests in flight at most.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// The CSV of every request.
        #[arg(long, default_value = "requests.csv")]
        out: std::path::PathBuf,
    },
    /// Checks the database for exactly-once reservations, once every
    /// workflow has ended: orders equal booked decisions, capacities equal
    /// the seed less the orders, no lock held. Exits 1 on a violation.
    Check {
        /// The database: sqlite:PATH, dynamodb, or dynamodb:http://HOST:PORT.
        #[arg(long, default_value = "sqlite:hotel.db")]
        db: String,
    },
    /// Answers client requests (POST /request), each as a workflow whose
    /// tasks call the function service; resumes what a dead gateway left.
    Gateway {
        /// The function service.
        #[arg(long, default_value = "http://127.0.0.1:7100")]
        functions: String,
        /// The workflow store: a local directory, or s3://BUCKET/PREFIX.
        #[arg(long, default_value = "hotel-store")]
        store: String,
        /// S3 endpoint override (moto, MinIO).
        #[arg(long, env = "AWS_ENDPOINT_URL")]
        s3_endpoint: Option<String>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7200")]
        listen: SocketAddr,
        /// How a reservation's workflow checkpoints.
        #[arg(long, value_enum, default_value_t = Variant::Parallel)]
        reserve: Variant,
        /// Seconds a finished request's workflow is kept (a client retry
        /// within it gets the same answer without running again).
        #[arg(long, default_value_t = 60)]
        keep_finished: u64,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("exoflow-hotel: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Demo {
            dir,
            rate,
            duration,
        } => demo(&dir, rate, duration),
        Cmd::Seed {
            db,
            hotels,
            users,
            capacity,
        } => {
            if hotels == 0 || users == 0 || capacity < 0 {
                bail!("--hotels and --users must be at least 1, --capacity at least 0");
            }
            let kv = exoflow_hotel::kv::open(&db)?;
            let seed = Seed {
                hotels,
                users,
                capacity,
            };
            let n = data::seed(kv.as_ref(), &seed).with_context(|| format!("seeding {db}"))?;
            println!("seeded {}: {n} items ({hotels} hotels and flights with {capacity} each, {users} users)", kv.describe());
            Ok(())
        }
        Cmd::Functions {
            db,
            listen,
            processes,
            failure_rate,
            failure_point,
            seed,
            child,
        } => {
            if !(0.0..=1.0).contains(&failure_rate) {
                bail!("--failure-rate must be within [0, 1], not {failure_rate}");
            }
            let failures = Failures {
                rate: failure_rate,
                point: failure_point,
                seed,
            };
            match child {
                Some(seed) => serve_one(&db, listen, Failures { seed, ..failures }),
                None => supervise(&db, listen, processes.max(1), failures),
            }
        }
        Cmd::Load {
            gateway,
            rate,
            duration,
            warmup,
            mix,
            hotels,
            users,
            seed,
            run,
            connections,
            out,
        } => {
            let secs = |what: &str, v: f64| {
                if (0.0..1e7).contains(&v) {
                    Ok(Duration::from_secs_f64(v))
                } else {
                    Err(anyhow::anyhow!(
                        "--{what} must be a number of seconds >= 0, not {v}"
                    ))
                }
            };
            if !(rate.is_finite() && rate > 0.0 && rate <= 1e6) {
                bail!("--rate must be within (0, 1000000], not {rate}");
            }
            let load = exoflow_hotel::load::Load {
                url: format!("{}/request", gateway.trim_end_matches('/')),
                rate,
                duration: secs("duration", duration)?,
                warmup: secs("warmup", warmup)?,
                mix,
                shape: exoflow_hotel::load::Shape { hotels, users },
                seed,
                run,
                connections: connections.max(1),
                give_up: Duration::from_secs(60),
            };
            let mut file = std::fs::File::create(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            eprintln!("load: {rate} requests/s for {duration} s to {}", load.url);
            let rows = exoflow_hotel::load::run(&load);
            exoflow_hotel::load::write_csv(&mut file, &rows)
                .with_context(|| format!("writing {}", out.display()))?;
            let s = exoflow_hotel::load::summarize(&rows);
            println!(
                "{} requests ({} after the warm-up, {} answered): {:.1} answered/s, p50 {:.1} ms, p99 {:.1} ms; rows in {}",
                rows.len(),
                s.measured,
                s.answered,
                s.achieved_rps,
                s.p50_ms,
                s.p99_ms,
                out.display()
            );
            Ok(())
        }
        Cmd::Check { db } => {
            let kv = exoflow_hotel::kv::open(&db)?;
            let r = exoflow_hotel::check::check(kv.as_ref())
                .with_context(|| format!("checking {db}"))?;
            println!(
                "{}: {} orders, {} failed reservations, {} violations",
                kv.describe(),
                r.orders,
                r.failed,
                r.violations.len()
            );
            for v in &r.violations {
                println!("  {v}");
            }
            if !r.violations.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Gateway {
            functions,
            store,
            s3_endpoint,
            listen,
            reserve,
            keep_finished,
        } => {
            let store = exoflow_engine::store::open(&store, s3_endpoint)
                .with_context(|| format!("opening the store {store}"))?;
            let engine = Arc::new(exoflow_engine::Engine::new(store));
            let f = Arc::new(Functions::new(&functions));
            gateway::register(&engine, f.clone(), reserve)?;
            serve_gateway(engine, f, listen, Duration::from_secs(keep_finished))
        }
    }
}

/// The gateway's HTTP server, its recovery of orphaned workflows and its
/// deletion of finished ones, until SIGTERM or SIGINT.
fn serve_gateway(
    engine: Arc<exoflow_engine::Engine>,
    f: Arc<Functions>,
    listen: SocketAddr,
    keep: Duration,
) -> Result<()> {
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    async fn request(
        State((engine, f)): State<(Arc<exoflow_engine::Engine>, Arc<Functions>)>,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
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
        let done = tokio::task::spawn_blocking(move || gateway::answer(&engine, &f, &req)).await;
        match done {
            Ok(Ok(a)) => reply(StatusCode::OK, serde_json::json!(a)),
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

    // What a dead gateway left, now and every few seconds; and the
    // deletion of finished workflows.
    let janitor = engine.clone();
    std::thread::Builder::new()
        .name("gateway-janitor".into())
        .spawn(move || loop {
            // One listing a round serves both.
            match janitor.list() {
                Ok(listed) => {
                    gateway::resume_orphans(&janitor, &listed);
                    if let Err(e) = gateway::delete_finished(&janitor, &listed, keep) {
                        eprintln!("gateway: deleting finished workflows: {e}");
                    }
                }
                Err(e) => eprintln!("gateway: listing workflows: {e}"),
            }
            std::thread::sleep(Duration::from_secs(2));
        })
        .context("starting the janitor thread")?;
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
        eprintln!(
            "gateway: http://{listen}/request, store {}",
            engine.store().describe()
        );
        let app = axum::Router::new()
            .route("/request", axum::routing::post(request))
            .route(
                "/health",
                axum::routing::get(|| async { std::process::id().to_string() }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(service::BODY_LIMIT))
            .with_state((engine, f));
        let stop = shutdown_signal()?;
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
            .context("serving")
    })
}

/// One serving process: until SIGTERM or SIGINT, or until its supervisor
/// dies (however it dies: no process outlives it).
fn serve_one(db: &str, listen: SocketAddr, failures: Failures) -> Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
    // The supervisor may have died before the call: then this process was
    // handed to init already.
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } == 1 {
        return Ok(());
    }
    let kv = exoflow_hotel::kv::open(db)?;
    let service = Arc::new(Service::new(kv, failures));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listener =
            service::shared_listener(listen).with_context(|| format!("listening on {listen}"))?;
        let stop = shutdown_signal()?;
        axum::serve(listener, service::router(service))
            .with_graceful_shutdown(stop)
            .await
            .context("serving")
    })
}

/// Starts `processes` serving processes and restarts any that exits, until
/// SIGTERM or SIGINT; then stops them.
fn supervise(db: &str, listen: SocketAddr, processes: u32, failures: Failures) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing a signal handler")?;
    }
    let exe = std::env::current_exe().context("finding this program")?;
    // Each start draws its own failure sequence, from the seed.
    let mut starts: u64 = 0;
    let mut spawn = |slot: u32| -> Result<(Child, Instant)> {
        starts += 1;
        let seed = failures.seed.wrapping_mul(1_000_003).wrapping_add(starts);
        let child = Command::new(&exe)
            .args(["functions", "--db", db, "--listen", &listen.to_string()])
            .args(["--failure-rate", &failures.rate.to_string()])
            .args([
                "--failure-point",
                match failures.point {
                    FailurePoint::Before => "before",
                    FailurePoint::After => "after",
                },
            ])
            .args(["--child", &seed.to_string()])
            .spawn()
            .with_context(|| format!("starting serving process {slot}"))?;
        Ok((child, Instant::now()))
    };
    let mut children = Vec::new();
    for slot in 0..processes {
        children.push(spawn(slot)?);
    }
    let pids: Vec<String> = children.iter().map(|(c, _)| c.id().to_string()).collect();
    eprintln!(
        "functions: {processes} processes on http://{listen} (pids {}), database {db}",
        pids.join(" ")
    );
    let mut quick_exits = 0;
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        let mut failed = None;
        for (slot, (child, started)) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                // A process that exits by itself at once (a bad port, a bad
                // database) would again: give up after a few. One killed by
                // a signal is restarted, however young.
                if status.code().is_some() && started.elapsed() < Duration::from_secs(1) {
                    quick_exits += 1;
                } else {
                    quick_exits = 0;
                }
                if quick_exits >= 3 {
                    failed = Some(format!(
                        "serving processes keep exiting at start (last: {status})"
                    ));
                    break;
                }
                let (c, t) = spawn(slot as u32)?;
                eprintln!(
                    "functions: process {} exited ({status}); restarted as {}",
                    child.id(),
                    c.id()
                );
                *child = c;
                *started = t;
            }
        }
        if let Some(why) = failed {
            break Err(anyhow::anyhow!(why));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for (child, _) in &mut children {
        // SIGTERM lets a process finish its requests in flight.
        // SAFETY: kill with a pid of a child this process started.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    for (child, _) in &mut children {
        let _ = child.wait();
    }
    result
}

/// Resolves on SIGTERM or SIGINT (inside a runtime).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing a SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    })
}

/// A free port on 127.0.0.1.
fn free_addr() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    l.local_addr().context("finding a free port")
}

/// Waits until something listens on `addr`.
fn wait_listening(addr: SocketAddr, what: &str) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on {addr} within 30 s")
}

/// A child process, stopped with SIGTERM (then waited for) on drop.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill with the pid of a child this process started.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

/// `exoflow-hotel demo`.
fn demo(dir: &std::path::Path, rate: f64, duration: f64) -> Result<()> {
    if !(rate.is_finite() && rate > 0.0 && rate <= 10_000.0) {
        bail!("--rate must be within (0, 10000], not {rate}");
    }
    if !(duration.is_finite() && duration > 0.0 && duration <= 3600.0) {
        bail!("--duration must be within (0, 3600] seconds, not {duration}");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dbfile = dir.join("hotel.db");
    for f in ["hotel.db", "hotel.db-wal", "hotel.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let store = dir.join("store");
    let _ = std::fs::remove_dir_all(&store);
    let db = format!("sqlite:{}", dbfile.display());
    let kv = exoflow_hotel::kv::open(&db)?;
    let n = data::seed(kv.as_ref(), &Seed::default())?;
    println!("demo: seeded {db} ({n} items)");
    let exe = std::env::current_exe().context("finding this program")?;
    let (fn_addr, gw_addr) = (free_addr()?, free_addr()?);
    let functions = Stopped(
        Command::new(&exe)
            .args(["functions", "--db", &db, "--listen", &fn_addr.to_string()])
            .args(["--failure-rate", "0.1", "--failure-point", "after"])
            .spawn()
            .context("starting the function service")?,
    );
    wait_listening(fn_addr, "the function service")?;
    let gateway = Stopped(
        Command::new(&exe)
            .args(["gateway", "--functions", &format!("http://{fn_addr}")])
            .args([
                "--store",
                &store.display().to_string(),
                "--listen",
                &gw_addr.to_string(),
            ])
            .args(["--reserve", "async"])
            .spawn()
            .context("starting the gateway")?,
    );
    wait_listening(gw_addr, "the gateway")?;
    let load = exoflow_hotel::load::Load {
        url: format!("http://{gw_addr}/request"),
        rate,
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(duration / 5.0),
        // Fig 7a's mix, with more reservations so that a short run books some.
        mix: "search=55,recommend=30,user=5,reserve=10"
            .parse()
            .map_err(anyhow::Error::msg)?,
        shape: exoflow_hotel::load::Shape {
            hotels: 100,
            users: 500,
        },
        seed: 1,
        run: "demo".to_owned(),
        connections: 64,
        give_up: Duration::from_secs(60),
    };
    println!("demo: {rate} requests/s for {duration} s through the gateway; functions fail 10% of calls after their writes");
    let rows = exoflow_hotel::load::run(&load);
    let csv = dir.join("requests.csv");
    let mut file =
        std::fs::File::create(&csv).with_context(|| format!("creating {}", csv.display()))?;
    exoflow_hotel::load::write_csv(&mut file, &rows)
        .with_context(|| format!("writing {}", csv.display()))?;
    drop(gateway);
    drop(functions);
    let s = exoflow_hotel::load::summarize(&rows);
    let booked = rows.iter().filter(|r| r.outcome == "booked").count();
    println!(
        "demo: {} requests, {} answered after the warm-up: p50 {:.1} ms, p99 {:.1} ms; {booked} reservations booked",
        rows.len(),
        s.answered,
        s.p50_ms,
        s.p99_ms
    );
    let r = exoflow_hotel::check::check(kv.as_ref())?;
    println!(
        "demo: check: {} orders, {} failed reservations, {} violations",
        r.orders,
        r.failed,
        r.violations.len()
    );
    for v in &r.violations {
        println!("  {v}");
    }
    if r.orders != booked {
        bail!(
            "the database holds {} orders but {booked} bookings were answered",
            r.orders
        );
    }
    if !r.violations.is_empty() {
        bail!("the exactly-once check failed");
    }
    println!(
        "demo: every request in {}. More: exoflow-hotel functions / gateway / load / check --help",
        csv.display()
    );
    Ok(())
}
