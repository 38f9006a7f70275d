//! The `exoflow` command.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use exoflow_engine::{Engine, WorkflowId};
use exoflow_graph::{reference, write_csv, EdgeOp};
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

#[derive(Subcommand)]
enum Command {
    /// Offline TunkRank of an edge file, written as CSV (node,influence).
    Batch {
        /// Edge list: `a b` lines (b follows a), `-a b` removes; gzip read transparently.
        #[arg(long)]
        edges: PathBuf,
        /// Output CSV file.
        #[arg(long)]
        out: PathBuf,
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
    let start = Instant::now();
    let file = exoflow_ingest::file::read_all(edges)?;
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
    let ops: Vec<EdgeOp> = file
        .edges
        .iter()
        .map(|e| EdgeOp {
            src: e.src,
            dst: e.dst,
            insert: e.op == Op::Insert,
        })
        .collect();
    let t = Instant::now();
    let pairs = reference::apply_ops(&ops);
    let build_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (table, rounds) = if use_reference {
        reference::tunkrank_rounds(&reference::Graph::from_sorted_pairs(&pairs))?
    } else {
        if workers == 0 {
            bail!("--workers must be at least 1");
        }
        exoflow_graph::batch::tunkrank(
            std::sync::Arc::new(pairs.clone()),
            timely::Config::process(workers),
        )?
    };
    let compute_s = t.elapsed().as_secs_f64();
    write_atomically(out, |f| write_csv(&table, f))?;
    eprintln!(
        "exoflow: {} edge operations -> {} edges, {} influence rows; {} rounds on {}; read {read_s:.2}s, graph {build_s:.2}s, compute {compute_s:.2}s; written to {}",
        ops.len(),
        pairs.len(),
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

fn status(args: &StoreArgs, id: Option<&str>, json: bool) -> Result<()> {
    let engine = engine(args)?;
    let infos = match id {
        Some(id) => vec![engine.status(&wid(id)?)?],
        None => engine.list()?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EXOFLOW_LOG")
                .unwrap_or_else(|_| "warn,aws_config=error,aws_smithy_runtime=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Batch {
            edges,
            out,
            workers,
            reference,
        } => batch(edges, out, *workers, *reference),
        Command::Gen {
            scale,
            edge_factor,
            seed,
            out,
        } => gen(*scale, *edge_factor, *seed, out),
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
        Err(e) => {
            eprintln!("exoflow: error: {}", error_chain(&e));
            let passing = e
                .downcast_ref::<exoflow_engine::EngineError>()
                .is_some_and(|e| e.is_resumable());
            if passing {
                eprintln!("exoflow: this error may pass: try again");
            }
            ExitCode::FAILURE
        }
    }
}
