//! `exoflow-hotel demo`.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use exoflow_hotel::data::{self, Seed};
use exoflow_hotel::gateway::Mode;

use super::{free_addr, wait_listening, Stopped};

pub fn demo(dir: &std::path::Path, mode: Mode, rate: f64, duration: f64) -> Result<()> {
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
            .args(["--reserve", "async", "--mode", mode_name(mode)])
            .args(["--collect-every", "1", "--intent-timeout", "5"])
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
    println!("demo: {rate} requests/s for {duration} s through the gateway ({} mode); functions fail 10% of calls after their writes", mode_name(mode));
    let rows = exoflow_hotel::load::run(&load);
    let csv = dir.join("requests.csv");
    let mut file =
        std::fs::File::create(&csv).with_context(|| format!("creating {}", csv.display()))?;
    exoflow_hotel::load::write_csv(&mut file, &rows)
        .with_context(|| format!("writing {}", csv.display()))?;
    let mut told = exoflow_hotel::check::Told::new();
    for r in &rows {
        exoflow_hotel::check::tell(&mut told, &r.id, r.kind, r.status, &r.outcome);
    }
    // Beldi's asynchronous orders and the collector's re-runs finish first.
    let start = std::time::Instant::now();
    let r = loop {
        let r = exoflow_hotel::check::check(kv.as_ref(), mode, &told)?;
        if r.pending == 0 || start.elapsed() > Duration::from_secs(30) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
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

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Exoflow => "exoflow",
        Mode::Beldi => "beldi",
    }
}
