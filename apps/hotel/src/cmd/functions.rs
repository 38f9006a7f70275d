//! `exoflow-hotel functions`: the supervisor and its serving processes.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use exoflow_hotel::service::{self, FailurePoint, Failures, Service};

use super::shutdown_signal;

/// One serving process: until SIGTERM or SIGINT, or until its supervisor
/// dies (however it dies: no process outlives it).
pub fn serve_one(db: &str, listen: SocketAddr, failures: Failures, logs: bool) -> Result<()> {
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
    // Beldi's functions call the others through this port.
    let mut itself = listen;
    if itself.ip().is_unspecified() {
        itself.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut service = Service::new(kv, failures, &format!("http://{itself}"));
    if !logs {
        service = service.without_beldi_logs();
    }
    let service = Arc::new(service);
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
pub fn supervise(
    db: &str,
    listen: SocketAddr,
    processes: u32,
    failures: Failures,
    logs: bool,
) -> Result<()> {
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
        let mut cmd = Command::new(&exe);
        cmd.args(["functions", "--db", db, "--listen", &listen.to_string()]);
        if !logs {
            cmd.arg("--no-beldi-logs");
        }
        let child = cmd
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
