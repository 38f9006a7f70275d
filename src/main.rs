//! The `exoflow` command.

mod alloc;
mod pipeline;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use exoflow_engine::{Engine, WorkflowId};
use exoflow_graph::{reference, write_csv, EdgeOp, NarrowPairs, PairPart};
use exoflow_ingest::edge::Op;

/// Exactly-once online-offline graph processing.
#[derive(Parser)]
#[command(name = "exoflow", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the store is.
#[derive(clap::Args, Clone)]
struct StoreArgs {
    /// The store: a local directory, or s3://BUCKET/PREFIX.
    #[arg(long, default_value = "./exoflow-data")]
    store: String,
    /// Endpoint of an S3-compatible server (MinIO, moto); also read from
    /// AWS_ENDPOINT_URL. Implies path-style addressing.
    #[arg(long)]
    s3_endpoint: Option<String>,
}

/// librdkafka settings.
#[derive(clap::Args, Clone, Default)]
struct KafkaArgs {
    /// A librdkafka setting KEY=VALUE for a Kafka source (TLS, SASL,
    /// timeouts); repeatable. Not stored: give it again to `resume`.
    #[arg(long = "kafka-opt", value_name = "KEY=VALUE")]
    kafka_opt: Vec<String>,
}

/// More than one process (timely's cluster configuration; `-h` is help).
#[derive(clap::Args, Clone, Default)]
struct ClusterArgs {
    /// Processes of the cluster; every batch recomputation runs on all of
    /// their workers (process 0 streams, updates online and owns the job).
    #[arg(long, default_value_t = 1, help_heading = "Cluster")]
    processes: usize,
    /// This process's index. Process 0 runs the job; the others only serve
    /// its timely workers (start them with the same --processes and
    /// --hostfile; their other arguments are ignored) and exit with the job.
    #[arg(long, default_value_t = 0, help_heading = "Cluster")]
    process: usize,
    /// host:port of every process, one per line, process 0 first (`#`
    /// comments allowed).
    #[arg(long, help_heading = "Cluster")]
    hostfile: Option<PathBuf>,
    /// Seconds to wait for the other processes to connect.
    #[arg(long, default_value_t = 120, help_heading = "Cluster")]
    cluster_timeout: u64,
}

/// Options of a streaming job.
#[derive(clap::Args, Clone)]
struct RunArgs {
    /// The edge source: file:PATH (a text edge list, gzip read
    /// transparently), kafka://HOST:PORT[,HOST:PORT]/TOPIC (messages of
    /// whole edge lines, see `exoflow produce`) or
    /// gen:rmat?scale=S&edge-factor=F&seed=X (an R-MAT stream).
    #[arg(long, default_value = "gen:rmat?scale=16&edge-factor=16&seed=1")]
    source: String,
    #[command(flatten)]
    store: StoreArgs,
    /// The workflow id (default: a fresh one, printed).
    #[arg(long)]
    workflow_id: Option<String>,
    /// Source partitions, read in order within an epoch; fixed for the job
    /// (default 2; a Kafka topic has its own).
    #[arg(long)]
    partitions: Option<usize>,
    /// Cut an epoch after this many valid edges (ceil(N/P) per partition):
    /// reproducible. The default when --epoch-ms is not given: 100000.
    #[arg(long, conflicts_with = "epoch_ms")]
    epoch_edges: Option<u64>,
    /// Cut an epoch every this many milliseconds, on a fixed schedule while
    /// processing keeps up (the cut is recorded).
    #[arg(long)]
    epoch_ms: Option<u64>,
    /// A base graph: the first epoch holds the source's first N edges
    /// (ceil(N/P) per partition), read at full speed; --rate, --epoch-ms and
    /// --epoch-edges apply from the second epoch on.
    #[arg(long, value_name = "N")]
    base_edges: Option<u64>,
    /// Stop after this many epochs in all (default: at the source's end; a
    /// Kafka source without --until-end runs until stopped).
    #[arg(long)]
    epochs: Option<u64>,
    /// Kafka: read up to the end offsets seen now (recorded, so that a
    /// resumed job stops at the same place).
    #[arg(long)]
    until_end: bool,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Recompute TunkRank from scratch every this many epochs, beside the
    /// stream, and compare it with the online table (outputs/<wid>/batch/<e>).
    #[arg(long, default_value_t = 0)]
    batch_every: u64,
    /// The first epoch with a batch recomputation (default: --batch-every).
    #[arg(long, requires = "batch_every")]
    batch_from: Option<u64>,
    /// Threads of the online update and timely workers of each batch
    /// recomputation.
    #[arg(long, default_value_t = default_workers())]
    workers: usize,
    /// The online TunkRank: recompute (maintain the graph, rerun the exact
    /// from-zero iteration on --workers threads), layered (push deltas
    /// through stored rounds; one thread) or differential (the iteration as
    /// a differential dataflow on --workers timely threads; slower, more
    /// memory). All give the same bits.
    #[arg(long, value_enum, default_value = "recompute")]
    online: pipeline::OnlineImpl,
    /// After each snapshot, delete the epoch logs and snapshots that
    /// rebuilding the last EPOCHS committed epochs does not need (COMMIT
    /// records and outputs stay). Needs sync or async and --snapshot-every.
    #[arg(long, value_name = "EPOCHS")]
    retain: Option<u64>,
    /// What each epoch writes before its output: none (position ranges
    /// only; resume re-reads the source), sync (edges durable before the
    /// online update) or async (edges written during it).
    #[arg(long, value_enum, default_value = "async")]
    checkpoint: pipeline::Checkpoint,
    /// Read at most this many edges per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Snapshot the graph every this many epochs, to bound recovery (0: never).
    #[arg(long, default_value_t = 10)]
    snapshot_every: u64,
    /// Also write each epoch's full change set (outputs/<wid>/changes/<e>).
    #[arg(long)]
    emit_changes: bool,
    /// Stop with an error when more than this fraction of an epoch's records
    /// is malformed (malformed records are kept in outputs/<wid>/rejected/<e>).
    #[arg(long, default_value_t = 0.01)]
    max_bad_ratio: f64,
}

#[derive(Subcommand)]
enum Command {
    /// Run a streaming job: epochs of edges, incremental TunkRank, one
    /// exactly-once output per epoch. With no arguments, streams a generated
    /// graph into ./exoflow-data.
    Run(Box<RunArgs>),
    /// Resume a streaming job after a crash or a stop.
    Resume {
        #[command(flatten)]
        store: StoreArgs,
        /// The workflow.
        #[arg(long)]
        workflow_id: String,
        /// Take over even from a live owner.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        kafka: KafkaArgs,
        /// Threads of the online update and timely workers per process for
        /// this run (default: the job's); the outputs do not depend on it.
        #[arg(long)]
        workers: Option<usize>,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Write the online influence table of a committed epoch as CSV.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// The workflow.
        #[arg(long)]
        workflow_id: String,
        /// The epoch (default: the last committed one).
        #[arg(long)]
        epoch: Option<u64>,
        /// Output CSV file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Offline TunkRank, written as CSV (node,influence): of an edge file
    /// (--edges), or of a streaming job at a committed epoch (--workflow-id
    /// and --epoch), compared with its online table.
    Batch {
        /// Edge list: `a b` lines (b follows a), `-a b` removes; gzip read transparently.
        #[arg(long, required_unless_present = "workflow_id", conflicts_with_all = ["workflow_id", "epoch"])]
        edges: Option<PathBuf>,
        /// Output CSV file (required with --edges).
        #[arg(long, required_unless_present = "workflow_id")]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
        /// The streaming job.
        #[arg(long, requires = "epoch")]
        workflow_id: Option<String>,
        /// The committed epoch to recompute at.
        #[arg(long, requires = "workflow_id")]
        epoch: Option<u64>,
        /// Timely worker threads.
        #[arg(long, default_value_t = default_workers())]
        workers: usize,
        /// Use the single-threaded reference instead of timely (the COST baseline).
        #[arg(long)]
        reference: bool,
    },
    /// Generate an R-MAT edge list (Graph500 parameters, ids permuted, no self-loops).
    Gen {
        /// log2 of the number of node ids.
        #[arg(long, default_value_t = 16)]
        scale: u32,
        /// Edges per node id.
        #[arg(long, default_value_t = 16)]
        edge_factor: u64,
        /// Seed: the same seed gives the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Load an edge file (plain or gzip) into a Kafka topic: messages of
    /// whole lines, message i to partition i mod P; creates the topic when
    /// it does not exist.
    Produce {
        /// The edge file.
        #[arg(long)]
        edges: PathBuf,
        /// Bootstrap brokers HOST:PORT[,HOST:PORT].
        #[arg(long)]
        brokers: String,
        /// The topic.
        #[arg(long)]
        topic: String,
        /// Lines per second at most (default: flat out).
        #[arg(long)]
        rate: Option<f64>,
        /// Partitions of the topic when it is created (default 2); an
        /// existing topic must have this many.
        #[arg(long)]
        partitions: Option<usize>,
        /// Payload bytes per message at most (whole lines).
        #[arg(long, default_value_t = 64 << 10)]
        message_bytes: usize,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// List the workflows of a store, or show one.
    Status {
        #[command(flatten)]
        store: StoreArgs,
        /// Show this workflow only.
        #[arg(long)]
        workflow_id: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a workflow (final).
    Cancel {
        #[command(flatten)]
        store: StoreArgs,
        /// The workflow.
        #[arg(long)]
        workflow_id: String,
    },
    /// Stop a running workflow; it stays resumable.
    Stop {
        #[command(flatten)]
        store: StoreArgs,
        /// The workflow.
        #[arg(long)]
        workflow_id: String,
    },
    /// Delete a workflow's records and outputs.
    Delete {
        #[command(flatten)]
        store: StoreArgs,
        /// The workflow.
        #[arg(long)]
        workflow_id: String,
        /// Delete even if a live owner holds it.
        #[arg(long)]
        force: bool,
    },
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn engine(args: &StoreArgs) -> Result<Engine> {
    let store = exoflow_engine::store::open(&args.store, args.s3_endpoint.clone())
        .with_context(|| format!("opening the store {}", args.store))?;
    Ok(Engine::new(store))
}

fn wid(s: &str) -> Result<WorkflowId> {
    Ok(WorkflowId::new(s)?)
}

/// Writes `path` through a temporary file and a rename, so that a reader
/// never sees half a file.
fn write_atomically(
    path: &Path,
    f: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .context("the output path has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f(&mut file).with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

fn batch(edges: &Path, out: &Path, workers: usize, use_reference: bool) -> Result<()> {
    if workers == 0 && !use_reference {
        bail!("--workers must be at least 1");
    }
    alloc::huge_pages();
    let start = Instant::now();
    // The reference stays single-threaded from the first byte: the COST
    // baseline.
    let threads = if use_reference { 1 } else { workers.max(1) };
    let file = exoflow_ingest::file::read_columns_on(edges, threads)?;
    let read_s = start.elapsed().as_secs_f64();
    if !file.rejected.is_empty() {
        let rejected = out.with_extension("rejected.tsv");
        write_atomically(&rejected, |f| {
            writeln!(f, "line\toffset\treason\traw")?;
            for r in &file.rejected {
                writeln!(f, "{}\t{}\t{}\t{}", r.line, r.offset, r.reason, r.raw)?;
            }
            Ok(())
        })?;
        let first = &file.rejected[0];
        eprintln!(
            "exoflow: {} malformed line(s) in {} kept aside in {} (first: line {}, {})",
            file.rejected.len(),
            edges.display(),
            rejected.display(),
            first.line,
            first.reason
        );
    }
    let t = Instant::now();
    let n_ops = file.len();
    // An edge file of inserts is packed and scattered on a thread per part
    // (one part, one thread, for the reference), each worker's edges apart;
    // removals need the operations' order, and the reference's map.
    enum Built {
        Pairs(Vec<(u64, u64)>),
        Shares(exoflow_graph::batch::Shares),
    }
    impl Built {
        fn of_inserts<P: PairPart>(parts: Vec<P>, use_reference: bool, workers: usize) -> Self {
            if use_reference {
                Self::Pairs(exoflow_graph::batch::graph_of_inserts(parts))
            } else {
                Self::Shares(exoflow_graph::batch::Shares::of_inserts(parts, workers))
            }
        }
    }
    let graph = if !file.inserts_only() {
        let ops: Vec<EdgeOp> = file
            .parts
            .iter()
            .flat_map(|p| p.edges())
            .map(|e| EdgeOp {
                src: e.src,
                dst: e.dst,
                insert: e.op == Op::Insert,
            })
            .collect();
        Built::Pairs(reference::apply_ops(&ops))
    } else {
        use exoflow_ingest::file::Pairs;
        let parts: Vec<Pairs> = file.parts.into_iter().map(|p| p.pairs).collect();
        // Ids below 2^32 stay one word a pair (most files'); a part of
        // wider ids takes every part to two words.
        if parts.iter().all(|p| matches!(p, Pairs::Narrow(_))) {
            let parts = parts.into_iter().filter_map(|p| match p {
                Pairs::Narrow(v) => Some(NarrowPairs(v)),
                Pairs::Wide(_) => None,
            });
            Built::of_inserts(parts.collect(), use_reference, workers)
        } else {
            let parts = parts.into_iter().map(Pairs::into_wide).collect();
            Built::of_inserts::<Vec<(u64, u64)>>(parts, use_reference, workers)
        }
    };
    let build_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (table, rounds, n_pairs) = match graph {
        Built::Pairs(pairs) if use_reference => {
            let (table, rounds) =
                reference::tunkrank_rounds(&reference::Graph::from_sorted_pairs(&pairs))?;
            (table, rounds, pairs.len())
        }
        Built::Pairs(pairs) => {
            let n = pairs.len();
            let (table, rounds) = exoflow_graph::batch::tunkrank(
                std::sync::Arc::new(pairs),
                timely::Config::process(workers),
            )?;
            (table, rounds, n)
        }
        // Each worker sorts its own edges as it starts: the sort is timed
        // with the computation.
        Built::Shares(shares) => exoflow_graph::batch::tunkrank_shares(shares)?,
    };
    let compute_s = t.elapsed().as_secs_f64();
    write_atomically(out, |f| write_csv(&table, f))?;
    eprintln!(
        "exoflow: {} edge operations -> {} edges, {} influence rows; {} rounds on {}; read {read_s:.2}s, graph {build_s:.2}s, compute {compute_s:.2}s; written to {}",
        n_ops,
        n_pairs,
        table.len(),
        rounds,
        if use_reference { "the reference".to_owned() } else { format!("{workers} timely worker(s)") },
        out.display()
    );
    Ok(())
}

fn gen(scale: u32, edge_factor: u64, seed: u64, out: &Path) -> Result<()> {
    if scale == 0 || scale > 40 {
        bail!("--scale must be between 1 and 40");
    }
    let g = exoflow_ingest::rmat::Rmat {
        scale,
        edge_factor,
        seed,
    };
    let t = Instant::now();
    let mut n = 0;
    write_atomically(out, |f| {
        let mut w = std::io::BufWriter::with_capacity(4 << 20, f);
        n = g.write(&mut w, default_workers())?;
        w.flush()
    })?;
    let s = t.elapsed().as_secs_f64();
    eprintln!(
        "exoflow: {n} edges (scale {scale}, edge factor {edge_factor}, seed {seed}) written to {} in {s:.2}s ({:.1} M edges/s)",
        out.display(),
        n as f64 / s / 1e6
    );
    Ok(())
}

fn batch_store(
    store: &StoreArgs,
    id: &str,
    at: u64,
    workers: usize,
    out: Option<&Path>,
) -> Result<()> {
    let engine = engine(store)?;
    let wid = wid(id)?;
    let t = Instant::now();
    let (report, table) = pipeline::batch_at(engine.store().as_ref(), wid.as_str(), at, workers)?;
    if let Some(out) = out {
        write_atomically(out, |f| write_csv(&table, f))?;
    }
    eprintln!(
        "exoflow: batch TunkRank of workflow {wid} at epoch {at}: {} nodes in {:.2}s; {} differ from online (max |diff| {}, mean {:e}); report in outputs/{wid}/batch/{at:010}{}",
        report.nodes,
        t.elapsed().as_secs_f64(),
        report.differing,
        exoflow_graph::format_fixed(report.max_diff),
        report.mean_diff,
        out.map_or(String::new(), |o| format!(", table in {}", o.display()))
    );
    if report.differing > 0 {
        bail!("batch and online differ at epoch {at}");
    }
    Ok(())
}

fn produce(
    edges: &Path,
    url: &str,
    opts: &[String],
    po: &exoflow_ingest::kafka::ProduceOptions,
) -> Result<()> {
    use std::io::IsTerminal;
    if po.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        bail!("--rate must be positive");
    }
    if po.partitions == Some(0) || po.message_bytes == 0 {
        bail!("--partitions and --message-bytes must be positive");
    }
    let spec = exoflow_ingest::kafka::KafkaSpec::parse(url)?
        .with_options(opts.iter().map(String::as_str))?;
    let tty = std::io::stderr().is_terminal();
    let t = Instant::now();
    let mut last_line = Instant::now();
    let stats = exoflow_ingest::kafka::produce(edges, &spec, po, &mut |s| {
        let secs = t.elapsed().as_secs_f64().max(1e-9);
        let line = format!(
            "exoflow: {} lines in {} messages to {} ({} partitions), {:.0} lines/s, {:.1} MB/s, {} acked",
            s.lines,
            s.messages,
            spec.topic,
            s.partitions,
            s.lines as f64 / secs,
            s.bytes as f64 / secs / 1e6,
            s.acked
        );
        if tty {
            eprint!("\r{line}\x1b[K");
        } else if last_line.elapsed().as_secs() >= 10 {
            eprintln!("{line}");
            last_line = Instant::now();
        }
    })
    .with_context(|| format!("producing {} into {url}", edges.display()))?;
    if tty {
        eprintln!();
    }
    eprintln!(
        "exoflow: {} lines ({} bytes) of {} in {} messages to topic {} in {:.2}s",
        stats.lines,
        stats.bytes,
        edges.display(),
        stats.messages,
        spec.topic,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn status(args: &StoreArgs, id: Option<&str>, json: bool) -> Result<()> {
    let engine = engine(args)?;
    let infos = match id {
        Some(id) => vec![engine.status(&wid(id)?)?],
        None => engine.list()?,
    };
    let stream = match id {
        Some(id) => pipeline::describe(engine.store().as_ref(), id)?,
        None => None,
    };
    if json {
        let v = match (&stream, infos.first()) {
            (Some(st), Some(w)) if id.is_some() => {
                serde_json::json!({ "workflow": w, "stream": st })
            }
            _ => serde_json::to_value(&infos)?,
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if infos.is_empty() {
        println!("no workflows in {}", args.store);
        return Ok(());
    }
    println!(
        "{:<40} {:<16} {:<10} {:>4} {:>6}  owner / error",
        "workflow", "dag", "state", "gen", "tasks"
    );
    for w in infos.iter().take(if id.is_some() { 1 } else { 1000 }) {
        let who = match (&w.owner, &w.error) {
            (_, Some(e)) => e.clone(),
            (Some(o), None) => o.to_string(),
            (None, None) => String::new(),
        };
        println!(
            "{:<40} {:<16} {:<10} {:>4} {:>6}  {who}",
            w.id.as_str(),
            w.dag,
            format!("{:?}", w.state),
            w.generation,
            w.tasks
        );
    }
    if let Some(st) = stream {
        let out = &st.last_output;
        println!(
            "\nstreaming job: {} (checkpoint {:?}), last committed epoch {}",
            st.source, st.checkpoint, st.last_committed
        );
        if let Some(lag) = &st.lag {
            println!("  lag      {lag} in the source when the last epoch was cut");
        }
        for key in ["edges", "changed", "nodes", "digest"] {
            if let Some(v) = out.get(key) {
                println!(
                    "  {key:<8} {}",
                    v.as_str().map_or(v.to_string(), str::to_owned)
                );
            }
        }
        if let Some(top) = out.get("top").and_then(|t| t.as_array()) {
            println!("  top 10 by influence:");
            for row in top.iter().take(10) {
                println!(
                    "    {:>20}  {}",
                    row[0].as_u64().unwrap_or_default(),
                    row[1].as_str().unwrap_or_default()
                );
            }
        }
        if !st.batches.is_empty() {
            println!("  batch recomputations (epoch: nodes differing, max |batch - online|):");
            for b in st.batches.iter().rev().take(10).rev() {
                println!(
                    "    {:>6}: {} differing, max {}",
                    b["epoch"].as_u64().unwrap_or_default(),
                    b["differing"],
                    b["max_diff"].as_str().unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

/// The error and its causes, each cause once: library errors often repeat
/// their source in their own message.
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !msg.contains(&text) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&text);
        }
    }
    msg
}

extern "C" fn on_signal(_: libc::c_int) {
    pipeline::STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// SIGINT and SIGTERM ask the job to finish the epoch in flight and stop.
fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

fn stream_engine(store: &StoreArgs) -> Result<Engine> {
    let engine = engine(store)?;
    engine.register(pipeline::DAG, pipeline::workflow)?;
    Ok(engine)
}

/// Waits for a streaming run, turning a signal into a stop request.
fn wait_stream(
    store: &StoreArgs,
    handle: exoflow_engine::RunHandle<pipeline::StreamSummary>,
) -> Result<()> {
    install_signal_handlers();
    let wid = handle.id().clone();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if pipeline::STOP.load(std::sync::atomic::Ordering::SeqCst) {
                    eprintln!("exoflow: stopping after the epoch in flight");
                    handle.stop();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        let result = handle.wait();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let summary = match result {
            Ok(s) => s,
            Err(e) if pipeline::STOP.load(std::sync::atomic::Ordering::SeqCst) => {
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

/// A run stopped by SIGINT or SIGTERM: not an error, but not finished
/// either (exit status 130, as after an interrupt).
#[derive(Debug)]
struct StoppedOnRequest;

impl std::fmt::Display for StoppedOnRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped on request")
    }
}

impl std::error::Error for StoppedOnRequest {}

/// Runs `job` as process 0 of the cluster that `c` describes, or serves
/// process 0 when this is another process, or just runs it without one.
fn with_cluster(c: &ClusterArgs, job: impl FnOnce() -> Result<()>) -> Result<()> {
    if c.processes <= 1 {
        if c.process != 0 || c.hostfile.is_some() {
            bail!("--process and --hostfile describe a cluster: give --processes N (N > 1) too");
        }
        return job();
    }
    let Some(hostfile) = &c.hostfile else {
        bail!(
            "--processes {} needs --hostfile: host:port of each process, one per line",
            c.processes
        );
    };
    let spec = exoflow_graph::cluster::ClusterSpec {
        addresses: exoflow_graph::cluster::read_hostfile(hostfile, c.processes)?,
        process: c.process,
        timeout: Duration::from_secs(c.cluster_timeout.max(1)),
    };
    spec.check()?;
    exit_on_lost_peer();
    if c.process > 0 {
        eprintln!(
            "exoflow: process {} of {} serves the timely workers of process 0 ({}); it ends with the job",
            c.process, c.processes, spec.addresses[0]
        );
        let threads = exoflow_graph::cluster::serve(&spec, &|m| eprintln!("exoflow: {m}"))?;
        eprintln!(
            "exoflow: process {}: the job ended (served {threads} worker thread(s))",
            c.process
        );
        return Ok(());
    }
    pipeline::set_cluster(spec);
    let result = job();
    pipeline::release_cluster();
    result
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

fn run(args: &RunArgs) -> Result<()> {
    let partitions = args.partitions.unwrap_or(2);
    if partitions == 0 || partitions > 4096 {
        bail!("--partitions must be between 1 and 4096");
    }
    let kafka = args.source.starts_with("kafka://");
    if kafka && args.partitions.is_some() {
        bail!("--partitions does not apply to a Kafka source: the topic's partitions are read");
    }
    if args.until_end && !kafka {
        bail!("--until-end applies to Kafka sources (a file or a generator ends by itself)");
    }
    pipeline::set_kafka_options(args.kafka.kafka_opt.clone());
    if args.epoch_edges == Some(0) || args.epoch_ms == Some(0) || args.base_edges == Some(0) {
        bail!("an epoch must have at least one edge or one millisecond");
    }
    if args.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        bail!("--rate must be positive");
    }
    if let Some(k) = args.retain {
        if k == 0 {
            bail!("--retain must keep at least one epoch");
        }
        if args.checkpoint == pipeline::Checkpoint::None || args.snapshot_every == 0 {
            bail!("--retain drops what snapshots make unnecessary: it needs --checkpoint sync or async and --snapshot-every K > 0");
        }
    }
    if !(0.0..=1.0).contains(&args.max_bad_ratio) {
        bail!("--max-bad-ratio must be between 0 and 1");
    }
    let (source, until): (std::sync::Arc<dyn exoflow_ingest::source::Source>, _) = if args.until_end
    {
        let k = pipeline::open_kafka(&args.source, exoflow_ingest::kafka::Until::EndNow)?;
        let ends = k.end_offsets().map(<[u64]>::to_vec);
        (std::sync::Arc::new(k), ends)
    } else {
        (pipeline::open_source(&args.source, partitions, None)?, None)
    };
    let cfg = pipeline::JobConfig {
        source: args.source.clone(),
        partitions: source.partitions(),
        epoch_edges: args.epoch_edges,
        epoch_ms: args.epoch_ms,
        base_edges: args.base_edges,
        epochs: args.epochs,
        checkpoint: args.checkpoint,
        rate: args.rate,
        snapshot_every: args.snapshot_every,
        emit_changes: args.emit_changes,
        max_bad_ratio: args.max_bad_ratio,
        fingerprint: source.fingerprint(),
        until,
        batch_every: args.batch_every,
        batch_from: args.batch_from.unwrap_or(args.batch_every),
        workers: args.workers.max(1),
        online: args.online,
        retain: args.retain,
    };
    let engine = stream_engine(&args.store)?;
    let id = args.workflow_id.as_deref().map(wid).transpose()?;
    let handle =
        engine.submit::<pipeline::JobConfig, pipeline::StreamSummary>(pipeline::DAG, id, &cfg)?;
    eprintln!(
        "exoflow: workflow {} streams {} into {} ({} partition(s), checkpoint {:?})",
        handle.id(),
        source.describe(),
        args.store.store,
        cfg.partitions,
        cfg.checkpoint
    );
    wait_stream(&args.store, handle)
}

fn resume(store: &StoreArgs, id: &str, force: bool) -> Result<()> {
    let engine = stream_engine(store)?;
    let handle = engine.resume_submit::<pipeline::StreamSummary>(
        &wid(id)?,
        exoflow_engine::ResumeOptions { force, wait: true },
    )?;
    wait_stream(store, handle)
}

fn export(store: &StoreArgs, id: &str, epoch: Option<u64>, out: &Path) -> Result<()> {
    let engine = engine(store)?;
    let wid = wid(id)?;
    let s = engine.store().as_ref();
    let at = match epoch {
        Some(e) => e,
        None => pipeline::last_committed(s, wid.as_str())?,
    };
    let t = Instant::now();
    let (table, _) = pipeline::export(s, wid.as_str(), at)?;
    write_atomically(out, |f| write_csv(&table, f))?;
    eprintln!(
        "exoflow: online table of workflow {wid} at epoch {at}: {} rows written to {} in {:.2}s",
        table.len(),
        out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator;

fn main() -> ExitCode {
    // Output piped into `head` ends quietly instead of panicking on EPIPE.
    // SAFETY: restoring a default signal disposition at start-up, before
    // any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EXOFLOW_LOG")
                .unwrap_or_else(|_| "warn,aws_config=error,aws_smithy_runtime=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => with_cluster(&args.cluster, || run(args)),
        Command::Resume {
            store,
            workflow_id,
            force,
            kafka,
            workers,
            cluster,
        } => with_cluster(cluster, || {
            pipeline::set_kafka_options(kafka.kafka_opt.clone());
            if let Some(w) = workers {
                pipeline::set_workers(*w);
            }
            resume(store, workflow_id, *force)
        }),
        Command::Export {
            store,
            workflow_id,
            epoch,
            out,
        } => export(store, workflow_id, *epoch, out),
        Command::Batch {
            edges,
            out,
            store,
            workflow_id,
            epoch,
            workers,
            reference,
        } => match (edges, out, workflow_id, epoch) {
            (Some(edges), Some(out), _, _) => batch(edges, out, *workers, *reference),
            (None, out, Some(id), Some(at)) => {
                batch_store(store, id, *at, *workers, out.as_deref())
            }
            _ => Err(anyhow::anyhow!(
                "give --edges and --out, or --workflow-id and --epoch"
            )),
        },
        Command::Gen {
            scale,
            edge_factor,
            seed,
            out,
        } => gen(*scale, *edge_factor, *seed, out),
        Command::Produce {
            edges,
            brokers,
            topic,
            rate,
            partitions,
            message_bytes,
            kafka,
        } => produce(
            edges,
            &format!("kafka://{brokers}/{topic}"),
            &kafka.kafka_opt,
            &exoflow_ingest::kafka::ProduceOptions {
                rate: *rate,
                partitions: *partitions,
                message_bytes: *message_bytes,
            },
        ),
        Command::Status {
            store,
            workflow_id,
            json,
        } => status(store, workflow_id.as_deref(), *json),
        Command::Cancel { store, workflow_id } => {
            engine(store).and_then(|e| Ok(e.cancel(&wid(workflow_id)?)?))
        }
        Command::Stop { store, workflow_id } => {
            engine(store).and_then(|e| Ok(e.stop(&wid(workflow_id)?)?))
        }
        Command::Delete {
            store,
            workflow_id,
            force,
        } => engine(store).and_then(|e| {
            let n = e.delete(&wid(workflow_id)?, *force)?;
            println!("deleted {n} object(s) of workflow {workflow_id}");
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<StoppedOnRequest>() => ExitCode::from(130),
        Err(e) => {
            eprintln!("exoflow: error: {}", error_chain(&e));
            match e.downcast_ref::<exoflow_engine::EngineError>() {
                // A task's own failure (bad data, a corrupt object) does not
                // pass by itself: its cause must be fixed first.
                Some(exoflow_engine::EngineError::TaskFailed { .. }) => {
                    eprintln!(
                        "exoflow: committed work is kept; fix the cause, then `exoflow resume`"
                    );
                }
                Some(err) if err.is_resumable() => {
                    eprintln!("exoflow: this error may pass: try again");
                }
                _ => {}
            }
            ExitCode::FAILURE
        }
    }
}
