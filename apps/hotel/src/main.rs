//! `exoflow-hotel`: the travel-reservation service of the paper's stateful
//! serverless application.

mod cmd;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use exoflow_hotel::client::Functions;
use exoflow_hotel::data::{self, Seed};
use exoflow_hotel::gateway::{Mode, Variant};
use exoflow_hotel::service::{FailurePoint, Failures};

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
        /// The protocol that makes the functions exactly-once.
        #[arg(long, value_enum, default_value_t = Mode::Exoflow)]
        mode: Mode,
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
        /// Turns Beldi's read and invoke logs off, which breaks its
        /// exactly-once guarantee: shows that they are needed.
        #[arg(long)]
        no_beldi_logs: bool,
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
    /// request has ended: capacities equal the seed less the orders, no
    /// lock held; orders equal booked decisions (exoflow mode); with load
    /// CSVs, every reservation answered booked has its order and every
    /// order is a request's. Exits 1 on a violation.
    Check {
        /// The database: sqlite:PATH, dynamodb, or dynamodb:http://HOST:PORT.
        #[arg(long, default_value = "sqlite:hotel.db")]
        db: String,
        /// The protocol the functions ran under.
        #[arg(long, value_enum, default_value_t = Mode::Exoflow)]
        mode: Mode,
        /// CSVs written by `load` against this database (repeatable).
        #[arg(long = "requests")]
        requests: Vec<std::path::PathBuf>,
        /// Seconds to wait for unfinished Beldi invocations (re-run by the
        /// gateway's collector) before checking.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Answers client requests (POST /request): in exoflow mode, each as a
    /// workflow whose tasks call the function service, resuming what a
    /// dead gateway left; in Beldi mode, through Beldi's gateway function.
    Gateway {
        /// The function service.
        #[arg(long, default_value = "http://127.0.0.1:7100")]
        functions: String,
        /// The protocol that makes the functions exactly-once.
        #[arg(long, value_enum, default_value_t = Mode::Exoflow)]
        mode: Mode,
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
        /// Beldi mode: seconds between runs of the collector, which re-runs
        /// requests that never finished.
        #[arg(long, default_value_t = 10.0)]
        collect_every: f64,
        /// Beldi mode: seconds between garbage collections of the logs.
        #[arg(long, default_value_t = 60.0)]
        gc_every: f64,
        /// Beldi mode: seconds before the collector re-runs an unfinished
        /// request, and before the logs of a finished one are collected
        /// (Beldi's T; a client retry within it replays).
        #[arg(long, default_value_t = 60.0)]
        intent_timeout: f64,
    },
}

/// Seconds from a flag, checked.
fn seconds(flag: &str, v: f64) -> Result<Duration> {
    if v.is_finite() && (0.0..1e7).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        bail!("--{flag} must be a number of seconds >= 0, not {v}")
    }
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
            mode,
        } => cmd::demo::demo(&dir, mode, rate, duration),
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
            no_beldi_logs,
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
                Some(seed) => cmd::functions::serve_one(
                    &db,
                    listen,
                    Failures { seed, ..failures },
                    !no_beldi_logs,
                ),
                None => cmd::functions::supervise(
                    &db,
                    listen,
                    processes.max(1),
                    failures,
                    !no_beldi_logs,
                ),
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
            if !(rate.is_finite() && rate > 0.0 && rate <= 1e6) {
                bail!("--rate must be within (0, 1000000], not {rate}");
            }
            let load = exoflow_hotel::load::Load {
                url: format!("{}/request", gateway.trim_end_matches('/')),
                rate,
                duration: seconds("duration", duration)?,
                warmup: seconds("warmup", warmup)?,
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
            let before = exoflow_hotel::load::gateway_stats(&gateway);
            let rows = exoflow_hotel::load::run(&load);
            let after = exoflow_hotel::load::gateway_stats(&gateway);
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
            if let (Some((a0, o0)), Some((a1, o1))) = (before, after) {
                if a1 > a0 {
                    println!(
                        "{:.2} database operations a request answered (the gateway's count)",
                        o1.saturating_sub(o0) as f64 / (a1 - a0) as f64
                    );
                }
            }
            Ok(())
        }
        Cmd::Check {
            db,
            mode,
            requests,
            wait,
        } => {
            let kv = exoflow_hotel::kv::open(&db)?;
            let mut told = exoflow_hotel::check::Told::new();
            for path in &requests {
                exoflow_hotel::check::read_told(path, &mut told)?;
            }
            let start = Instant::now();
            let r = loop {
                let r = exoflow_hotel::check::check(kv.as_ref(), mode, &told)
                    .with_context(|| format!("checking {db}"))?;
                if r.pending == 0 || start.elapsed() >= Duration::from_secs(wait) {
                    break r;
                }
                std::thread::sleep(Duration::from_millis(500));
            };
            println!(
                "{}: {} orders, {} failed reservations, {} unanswered, {} violations",
                kv.describe(),
                r.orders,
                r.failed,
                r.unanswered,
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
            mode,
            store,
            s3_endpoint,
            listen,
            reserve,
            keep_finished,
            collect_every,
            gc_every,
            intent_timeout,
        } => {
            let f = Arc::new(Functions::new(&functions));
            if mode == Mode::Beldi {
                let timers = cmd::gateway::Timers {
                    collect_every: seconds("collect-every", collect_every)?,
                    gc_every: seconds("gc-every", gc_every)?,
                    older: seconds("intent-timeout", intent_timeout)?,
                };
                return cmd::gateway::beldi(f, listen, timers);
            }
            let store = exoflow_engine::store::open(&store, s3_endpoint)
                .with_context(|| format!("opening the store {store}"))?;
            let engine = Arc::new(exoflow_engine::Engine::new(store));
            exoflow_hotel::gateway::register(&engine, f.clone(), reserve)?;
            cmd::gateway::exoflow(engine, f, listen, Duration::from_secs(keep_finished))
        }
    }
}
