//! `exoflow run | resume`: a streaming job, on its own or as process 0 of
//! a cluster (the other processes only serve its batch recomputations).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use exoflow_engine::{Engine, ResumeOptions, RunHandle};
use exoflow_graph::cluster::{read_hostfile, serve, ClusterSpec};
use exoflow_stream::{JobRequest, Runtime, StreamSummary, DAG};

use super::{engine, wid};
use crate::{error_chain, ClusterArgs, KafkaArgs, RunArgs, StoreArgs};

/// A run stopped by SIGINT or SIGTERM: not an error, but not finished
/// either (exit status 130, as after an interrupt).
#[derive(Debug)]
pub struct StoppedOnRequest;

impl std::fmt::Display for StoppedOnRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped on request")
    }
}

impl std::error::Error for StoppedOnRequest {}

/// `exoflow run`.
pub fn run(args: &RunArgs) -> Result<()> {
    let cluster = match join_cluster(&args.cluster)? {
        Role::Alone => None,
        Role::Lead(spec) => Some(spec),
        Role::Served => return Ok(()),
    };
    let runtime = Arc::new(runtime(&args.kafka, None, cluster)?);
    let result = start(args, &runtime);
    runtime.release_cluster();
    result
}

/// `exoflow resume`.
pub fn resume(
    store: &StoreArgs,
    id: &str,
    force: bool,
    kafka: &KafkaArgs,
    workers: Option<usize>,
    cluster: &ClusterArgs,
) -> Result<()> {
    let cluster = match join_cluster(cluster)? {
        Role::Alone => None,
        Role::Lead(spec) => Some(spec),
        Role::Served => return Ok(()),
    };
    let runtime = Arc::new(runtime(kafka, workers, cluster)?);
    let result = (|| {
        let engine = stream_engine(store, &runtime)?;
        let handle = engine
            .resume::<StreamSummary>(&wid(id)?)
            .options(ResumeOptions { force, wait: true })
            .submit()?;
        wait_stream(store, handle)
    })();
    runtime.release_cluster();
    result
}

/// The runtime of this process's jobs.
fn runtime(
    kafka: &KafkaArgs,
    workers: Option<usize>,
    cluster: Option<ClusterSpec>,
) -> Result<Runtime> {
    Ok(Runtime::new()
        .with_kafka_options(kafka.options()?)
        .with_workers(workers)
        .with_cluster(cluster)
        .with_quiet(std::env::var_os("EXOFLOW_QUIET").is_some()))
}

/// Validates the flags, creates the job and waits for it.
fn start(args: &RunArgs, runtime: &Arc<Runtime>) -> Result<()> {
    let request = JobRequest {
        source: args.source.clone(),
        partitions: args.partitions,
        epoch_edges: args.epoch_edges,
        epoch_ms: args.epoch_ms,
        base_edges: args.base_edges,
        epochs: args.epochs,
        until_end: args.until_end,
        batch_every: args.batch_every,
        batch_from: args.batch_from,
        workers: args.workers,
        online: args.online,
        retain: args.retain,
        checkpoint: args.checkpoint,
        rate: args.rate,
        snapshot_every: args.snapshot_every,
        emit_changes: args.emit_changes,
        max_bad_ratio: args.max_bad_ratio,
    };
    let prepared = exoflow_stream::prepare(request, runtime)?;
    let cfg = prepared.config;
    let engine = stream_engine(&args.store, runtime)?;
    let id = args.workflow_id.as_deref().map(wid).transpose()?;
    let handle = engine
        .workflow::<StreamSummary>(DAG)
        .args(&cfg)
        .id(id)
        .submit()?;
    eprintln!(
        "exoflow: workflow {} streams {} into {} ({} partition(s), checkpoint {:?})",
        handle.id(),
        prepared.source.describe(),
        args.store.store,
        cfg.partitions,
        cfg.checkpoint
    );
    wait_stream(&args.store, handle)
}

fn stream_engine(store: &StoreArgs, runtime: &Arc<Runtime>) -> Result<Engine> {
    let engine = engine(store)?;
    exoflow_stream::register(&engine, runtime.clone())?;
    Ok(engine)
}

/// Waits for a streaming run; SIGINT or SIGTERM asks it to commit the
/// epoch in flight and stop.
fn wait_stream(store: &StoreArgs, handle: RunHandle<StreamSummary>) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .context("installing the SIGINT and SIGTERM handlers")?;
    }
    let wid = handle.id().clone();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                if stop.load(Ordering::SeqCst) {
                    eprintln!("exoflow: stopping after the epoch in flight");
                    handle.stop();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let result = handle.wait();
        done.store(true, Ordering::SeqCst);
        let summary = match result {
            Ok(s) => s,
            Err(e) if stop.load(Ordering::SeqCst) => {
                tracing::info!("stop: {}", error_chain(&anyhow::Error::from(e)));
                eprintln!(
                    "exoflow: workflow {wid} stopped; its committed epochs are kept.\n  continue: exoflow resume --store {} --workflow-id {wid}",
                    store.store
                );
                return Err(StoppedOnRequest.into());
            }
            Err(e) => return Err(e.into()),
        };
        eprintln!(
            "exoflow: workflow {wid} finished at epoch {} ({} edges in the graph).\n  outputs: {}/outputs/{wid}/online/<epoch>\n  export:  exoflow export --store {} --workflow-id {wid} --out influence.csv",
            summary.last_epoch,
            summary.graph_edges,
            store.store,
            store.store
        );
        Ok(())
    })
}

/// This process's part in a cluster.
enum Role {
    /// No cluster: the job runs here alone.
    Alone,
    /// Process 0: it runs the job and leads the cluster.
    Lead(ClusterSpec),
    /// Another process: it served process 0's workers until the job ended.
    Served,
}

/// Joins the cluster that `c` describes: another process serves process
/// 0 here until the job ends.
fn join_cluster(c: &ClusterArgs) -> Result<Role> {
    if c.processes <= 1 {
        if c.process != 0 || c.hostfile.is_some() {
            bail!("--process and --hostfile describe a cluster: give --processes N (N > 1) too");
        }
        return Ok(Role::Alone);
    }
    let Some(hostfile) = &c.hostfile else {
        bail!(
            "--processes {} needs --hostfile: host:port of each process, one per line",
            c.processes
        );
    };
    let spec = ClusterSpec {
        addresses: read_hostfile(hostfile, c.processes)?,
        process: c.process,
        timeout: Duration::from_secs(c.cluster_timeout.clamp(1, 86_400)),
    };
    spec.check()?;
    exit_on_lost_peer();
    if c.process > 0 {
        eprintln!(
            "exoflow: process {} of {} serves the timely workers of process 0 ({}); it ends with the job",
            c.process, c.processes, spec.addresses[0]
        );
        let threads = serve(&spec, &|m| eprintln!("exoflow: {m}"))?;
        eprintln!(
            "exoflow: process {}: the job ended (served {threads} worker thread(s))",
            c.process
        );
        return Ok(Role::Served);
    }
    Ok(Role::Lead(spec))
}

/// Timely's network threads panic when another process goes away, and the
/// workers would wait for it forever: end this process instead. Committed
/// work is safe; the job resumes once every process is started again.
fn exit_on_lost_peer() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("timely communication error") {
            eprintln!(
                "exoflow: error: lost another process of the cluster ({msg}); committed work is kept: start every process again, then `exoflow resume`"
            );
            std::process::exit(1);
        }
        default(info);
    }));
}
