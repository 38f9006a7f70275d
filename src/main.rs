//! The `exoflow` command: the clap definitions here, one file per command
//! in `commands/`.

mod alloc;
mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exactly-once online-offline graph processing.
#[derive(Parser)]
#[command(name = "exoflow", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the store is.
#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// The store: a local directory, or s3://BUCKET/PREFIX.
    #[arg(long, default_value = "./exoflow-data")]
    pub store: String,
    /// Endpoint of an S3-compatible server (MinIO, moto); also read from
    /// AWS_ENDPOINT_URL. Implies path-style addressing.
    #[arg(long)]
    pub s3_endpoint: Option<String>,
}

/// librdkafka settings.
#[derive(clap::Args, Clone, Default)]
pub struct KafkaArgs {
    /// A librdkafka setting KEY=VALUE for a Kafka source (TLS, SASL,
    /// timeouts); repeatable. Not stored: give it again to `resume`.
    #[arg(long = "kafka-opt", value_name = "KEY=VALUE")]
    pub kafka_opt: Vec<String>,
    /// A file of librdkafka settings, a KEY=VALUE a line (`#` comments):
    /// keeps secrets such as sasl.password off the command line;
    /// repeatable, and --kafka-opt wins over it.
    #[arg(long = "kafka-opt-file", value_name = "FILE")]
    pub kafka_opt_file: Vec<std::path::PathBuf>,
}

impl KafkaArgs {
    /// The settings of the files, then those of the command line.
    pub fn options(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for f in &self.kafka_opt_file {
            out.extend(exoflow_ingest::kafka::KafkaSpec::options_file(f)?);
        }
        out.extend(self.kafka_opt.iter().cloned());
        Ok(out)
    }
}

/// More than one process (timely's cluster configuration; `-h` is help).
#[derive(clap::Args, Clone, Default)]
pub struct ClusterArgs {
    /// Processes of the cluster; every batch recomputation runs on all of
    /// their workers (process 0 streams, updates online and owns the job).
    #[arg(long, default_value_t = 1, help_heading = "Cluster")]
    pub processes: usize,
    /// This process's index. Process 0 runs the job; the others only serve
    /// its timely workers (start them with the same --processes and
    /// --hostfile; their other arguments are ignored) and exit with the job.
    #[arg(long, default_value_t = 0, help_heading = "Cluster")]
    pub process: usize,
    /// host:port of every process, one per line, process 0 first (`#`
    /// comments allowed).
    #[arg(long, help_heading = "Cluster")]
    pub hostfile: Option<PathBuf>,
    /// Seconds to wait for the other processes to connect.
    #[arg(long, default_value_t = 120, help_heading = "Cluster")]
    pub cluster_timeout: u64,
}

/// Options of a streaming job.
#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// The edge source: file:PATH (a text edge list, gzip read
    /// transparently), kafka://HOST:PORT[,HOST:PORT]/TOPIC (messages of
    /// whole edge lines, see `exoflow produce`) or
    /// gen:rmat?scale=S&edge-factor=F&seed=X (an R-MAT stream).
    #[arg(long, default_value = "gen:rmat?scale=16&edge-factor=16&seed=1")]
    pub source: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The workflow id (default: a fresh one, printed).
    #[arg(long)]
    pub workflow_id: Option<String>,
    /// Source partitions, read in order within an epoch; fixed for the job
    /// (default 2; a Kafka topic has its own).
    #[arg(long)]
    pub partitions: Option<usize>,
    /// Cut an epoch after this many valid edges (ceil(N/P) per partition):
    /// reproducible. The default when --epoch-ms is not given: 100000.
    #[arg(long, conflicts_with = "epoch_ms")]
    pub epoch_edges: Option<u64>,
    /// Cut an epoch every this many milliseconds, on a fixed schedule while
    /// processing keeps up (the cut is recorded).
    #[arg(long)]
    pub epoch_ms: Option<u64>,
    /// A base graph: the first epoch holds the source's first N edges
    /// (ceil(N/P) per partition), read at full speed; --rate, --epoch-ms and
    /// --epoch-edges apply from the second epoch on.
    #[arg(long, value_name = "N")]
    pub base_edges: Option<u64>,
    /// Stop after this many epochs in all (default: at the source's end; a
    /// Kafka source without --until-end runs until stopped).
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Kafka: read up to the end offsets seen now (recorded, so that a
    /// resumed job stops at the same place).
    #[arg(long)]
    pub until_end: bool,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Recompute TunkRank from scratch every this many epochs, beside the
    /// stream, and compare it with the online table (outputs/<wid>/batch/<e>).
    #[arg(long, default_value_t = 0)]
    pub batch_every: u64,
    /// The first epoch with a batch recomputation (default: --batch-every).
    #[arg(long, requires = "batch_every")]
    pub batch_from: Option<u64>,
    /// Threads of the online update and timely workers of each batch
    /// recomputation.
    #[arg(long, default_value_t = default_workers())]
    pub workers: usize,
    /// The online TunkRank: recompute (maintain the graph, rerun the exact
    /// from-zero iteration on --workers threads), layered (push deltas
    /// through stored rounds; one thread) or differential (the iteration as
    /// a differential dataflow on --workers timely threads; slower, more
    /// memory). All give the same bits.
    #[arg(long, value_enum, default_value_t = exoflow_stream::OnlineImpl::Recompute)]
    pub online: exoflow_stream::OnlineImpl,
    /// After each snapshot, delete the epoch logs and snapshots that
    /// rebuilding the last EPOCHS committed epochs does not need (COMMIT
    /// records and outputs stay). Needs sync or async and --snapshot-every.
    #[arg(long, value_name = "EPOCHS")]
    pub retain: Option<u64>,
    /// What each epoch writes before its output: none (position ranges
    /// only; resume re-reads the source), sync (edges durable before the
    /// online update) or async (edges written during it).
    #[arg(long, value_enum, default_value_t = exoflow_stream::EpochCheckpoint::Async)]
    pub checkpoint: exoflow_stream::EpochCheckpoint,
    /// Read at most this many edges per second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Snapshot the graph every this many epochs, to bound recovery (0: never).
    #[arg(long, default_value_t = exoflow_stream::config::DEFAULT_SNAPSHOT_EVERY)]
    pub snapshot_every: u64,
    /// Also write each epoch's full change set (outputs/<wid>/changes/<e>).
    #[arg(long)]
    pub emit_changes: bool,
    /// Stop with an error when more than this fraction of an epoch's records
    /// is malformed (malformed records are kept in outputs/<wid>/rejected/<e>).
    #[arg(long, default_value_t = exoflow_stream::config::DEFAULT_MAX_BAD_RATIO)]
    pub max_bad_ratio: f64,
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
        #[command(flatten)]
        kafka: KafkaArgs,
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

pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The error and its causes, each cause once: library errors often repeat
/// their source in their own message.
pub fn error_chain(e: &anyhow::Error) -> String {
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
        Command::Run(args) => commands::run::run(args),
        Command::Resume {
            store,
            workflow_id,
            force,
            kafka,
            workers,
            cluster,
        } => commands::run::resume(store, workflow_id, *force, kafka, *workers, cluster),
        Command::Export {
            store,
            workflow_id,
            epoch,
            out,
            kafka,
        } => commands::export::export(store, kafka, workflow_id, *epoch, out),
        Command::Batch {
            edges,
            out,
            store,
            workflow_id,
            epoch,
            workers,
            reference,
        } => match (edges, out, workflow_id, epoch) {
            (Some(edges), Some(out), _, _) => {
                commands::batch::of_file(edges, out, *workers, *reference)
            }
            (None, out, Some(id), Some(at)) => {
                commands::batch::of_job(store, id, *at, *workers, out.as_deref())
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
        } => commands::gen::gen(*scale, *edge_factor, *seed, out),
        Command::Produce {
            edges,
            brokers,
            topic,
            rate,
            partitions,
            message_bytes,
            kafka,
        } => kafka.options().and_then(|opts| {
            commands::produce::produce(
                edges,
                &format!("kafka://{brokers}/{topic}"),
                &opts,
                &exoflow_ingest::kafka::ProduceOptions {
                    rate: *rate,
                    partitions: *partitions,
                    message_bytes: *message_bytes,
                },
            )
        }),
        Command::Status {
            store,
            workflow_id,
            json,
        } => commands::status::status(store, workflow_id.as_deref(), *json),
        Command::Cancel { store, workflow_id } => commands::admin::cancel(store, workflow_id),
        Command::Stop { store, workflow_id } => commands::admin::stop(store, workflow_id),
        Command::Delete {
            store,
            workflow_id,
            force,
        } => commands::admin::delete(store, workflow_id, *force),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<commands::run::StoppedOnRequest>() => ExitCode::from(130),
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
