//! The online-offline pipeline (DESIGN §4): one streaming task of an engine
//! workflow reads a partitioned source in epochs, logs each epoch, keeps the
//! TunkRank influence up to date incrementally, and publishes one output per
//! committed epoch, exactly once.
//!
//! Per epoch e, in order:
//! 1. cut: per partition a position range (by count, reproducible; or by
//!    time, recorded before anything of e is published);
//! 2. log: `streams/<wid>/epochs/<e>/g<gen>/part-<p>`: the range, and in
//!    `sync`/`async` mode the edges and malformed records; `none` logs only
//!    the range. `sync` waits for the parts before the online update;
//!    `async` overlaps them with it;
//! 3. online update of the epoch's edges;
//! 4. `COMMIT(e)` (write-once, after every part and after `COMMIT(e-1)`),
//!    then the output `outputs/<wid>/online/<e>` (and `rejected/<e>`),
//!    compared byte for byte if it exists; every K epochs a snapshot of the
//!    graph, valid only with its MANIFEST, written last.
//!
//! Recovery (every start of the task is one): the committed prefix of
//! epochs is found; the online state is rebuilt from the newest snapshot at
//! or below the first epoch whose output is missing, replaying the committed
//! epochs after it from their logs (`none`: from the source by the recorded
//! ranges), comparing outputs that exist; the source continues from the end
//! positions of the last committed epoch.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use crossbeam_channel::{Receiver, Sender};
use exoflow_engine::codec::{self, Kind};
use exoflow_engine::failpoint;
use exoflow_engine::store::{put_once, PutOnce, Store};
use exoflow_engine::{Dag, DagError, Failure, TaskContext, TaskOptions, Workflow};
use exoflow_graph::cluster::{Cluster, ClusterSpec};
use exoflow_graph::differential::Differential;
use exoflow_graph::online::{EdgesLater, Layered, Online};
use exoflow_graph::recompute::Recompute;
use exoflow_graph::{format_fixed, EdgeOp};
use exoflow_ingest::edge::{Edge, Op};
use exoflow_ingest::epoch::{replay, Cutter, Slice};
use exoflow_ingest::kafka::{KafkaSource, KafkaSpec, Until};
use exoflow_ingest::rmat::Rmat;
use exoflow_ingest::source::{BadRecord, FileSource, GenSource, Position, Source};
use serde::{Deserialize, Serialize};

mod batch;
pub use batch::{recompute, BatchReport};

/// The registered DAG name of a streaming job.
pub const DAG: &str = "exoflow-stream";

/// What is written per epoch besides the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Checkpoint {
    /// Only each epoch's position ranges (a few bytes); resume re-reads the
    /// source from its start (the paper's NoCkpt).
    None,
    /// The epoch's edges are durable before its online update starts.
    Sync,
    /// The epoch's edges are written while its online update runs.
    Async,
}

/// Which incremental TunkRank keeps the online table (both exact).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum OnlineImpl {
    /// Maintain the graph, rerun the from-zero iteration in parallel
    /// (`--workers` threads): cost rounds x edges, whatever the epoch.
    #[default]
    Recompute,
    /// Push deltas through every stored round: cheap for epochs that touch
    /// little of the graph, single-threaded.
    Layered,
    /// The from-zero iteration as a differential dataflow collection on
    /// `--workers` timely threads: exact by construction, slower and about
    /// ten times the memory.
    Differential,
}

/// A streaming job, as recorded when it is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobConfig {
    /// The source: `file:PATH`, `kafka://HOST:PORT[,HOST:PORT]/TOPIC` or
    /// `gen:rmat?scale=S&edge-factor=F&seed=X`.
    pub source: String,
    /// Source partitions (fixed for the job's life).
    pub partitions: usize,
    /// Epochs of this many edges (reproducible cuts).
    pub epoch_edges: Option<u64>,
    /// Epochs of this many milliseconds (recorded cuts).
    pub epoch_ms: Option<u64>,
    /// The first epoch: the source's first this many edges, read at full
    /// speed (a base graph), whatever the other cuts and the rate.
    #[serde(default)]
    pub base_edges: Option<u64>,
    /// Stop after this many epochs in all.
    pub epochs: Option<u64>,
    /// The checkpoint mode.
    pub checkpoint: Checkpoint,
    /// Read at most this many edges per second.
    pub rate: Option<f64>,
    /// Snapshot the graph every this many epochs (0: never).
    pub snapshot_every: u64,
    /// Also write every epoch's full change set.
    pub emit_changes: bool,
    /// Stop when more than this fraction of an epoch's records is malformed.
    pub max_bad_ratio: f64,
    /// The source's fingerprint when the job was created.
    pub fingerprint: String,
    /// A batch recomputation every this many epochs (0: never)...
    #[serde(default)]
    pub batch_every: u64,
    /// ...from this epoch on.
    #[serde(default)]
    pub batch_from: u64,
    /// Threads of the online update (`recompute`) and timely workers of
    /// each batch recomputation.
    #[serde(default = "one")]
    pub workers: usize,
    /// The online implementation.
    #[serde(default)]
    pub online: OnlineImpl,
    /// Keep only what rebuilding the last this many epochs needs.
    #[serde(default)]
    pub retain: Option<u64>,
    /// Kafka `--until-end`: the end offsets seen when the job was created,
    /// one per partition, so that a resumed job stops at the same place.
    pub until: Option<Vec<u64>>,
}

fn one() -> usize {
    1
}

/// librdkafka settings of this process (`--kafka-opt`): given to every run
/// and resume, never stored (they may hold credentials).
static KAFKA_OPTIONS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Sets this process's librdkafka settings (`KEY=VALUE`), once.
pub fn set_kafka_options(opts: Vec<String>) {
    let _ = KAFKA_OPTIONS.set(opts);
}

/// The cluster this process leads (`--processes N`, process 0), formed
/// when a stream starts and kept until [`release_cluster`]: every batch
/// recomputation of the job runs on all its processes. Runtime wiring, like
/// the Kafka settings: never stored, so a job resumes on another cluster.
static CLUSTER_SPEC: std::sync::OnceLock<ClusterSpec> = std::sync::OnceLock::new();
static CLUSTER: parking_lot::Mutex<Option<Arc<Cluster>>> = parking_lot::Mutex::new(None);

/// `resume --workers W`: this run's threads and workers, whatever the job
/// was created with (logs and snapshots are keyed by source partition, not
/// by worker). Not stored.
static WORKERS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Sets this run's workers, once.
pub fn set_workers(workers: usize) {
    let _ = WORKERS.set(workers.max(1));
}

/// Makes this process the leader of a cluster: process 0 of `spec`.
pub fn set_cluster(spec: ClusterSpec) {
    let _ = CLUSTER_SPEC.set(spec);
}

/// The cluster, formed on first use with `threads` workers per process;
/// `None` without one.
fn cluster(threads: usize, quiet: bool) -> Result<Option<Arc<Cluster>>> {
    let Some(spec) = CLUSTER_SPEC.get() else {
        return Ok(None);
    };
    let mut slot = CLUSTER.lock();
    if slot.is_none() {
        let n = spec.addresses.len();
        if !quiet {
            eprintln!(
                "exoflow: process 0 of {n} waits for the other processes of the cluster ({threads} worker thread(s) each)"
            );
        }
        let say = |msg: &str| eprintln!("exoflow: {msg}");
        let c = Cluster::lead(spec, threads, &say).context("forming the cluster")?;
        if !quiet {
            eprintln!(
                "exoflow: cluster formed: {} processes x {} workers run the batch recomputations",
                c.processes(),
                c.threads()
            );
        }
        *slot = Some(Arc::new(c));
    }
    Ok(slot.clone())
}

/// Ends the cluster, if any: the other processes exit.
pub fn release_cluster() {
    let c = CLUSTER.lock().take();
    drop(c);
}

/// Connects to a Kafka source `kafka://HOST:PORT[,...]/TOPIC`.
pub fn open_kafka(spec: &str, until: Until) -> Result<KafkaSource> {
    let opts = KAFKA_OPTIONS.get().map(Vec::as_slice).unwrap_or_default();
    let k = KafkaSpec::parse(spec)?.with_options(opts.iter().map(String::as_str))?;
    KafkaSource::connect(k, until).with_context(|| format!("opening the source {spec}"))
}

/// Opens a source spec with `partitions` partitions (a Kafka topic has its
/// own), bounded by recorded end offsets `until` (Kafka).
pub fn open_source(
    spec: &str,
    partitions: usize,
    until: Option<&[u64]>,
) -> Result<Arc<dyn Source>> {
    if let Some(path) = spec.strip_prefix("file:") {
        let src = FileSource::open(std::path::Path::new(path), partitions)
            .with_context(|| format!("opening the source {spec}"))?;
        return Ok(Arc::new(src));
    }
    if let Some(rest) = spec.strip_prefix("gen:rmat") {
        let mut rmat = Rmat {
            scale: 16,
            edge_factor: 16,
            seed: 1,
        };
        let query = rest.strip_prefix('?').unwrap_or(rest);
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("source {spec}: `{kv}` is not KEY=VALUE"))?;
            let num = |what: &str| -> Result<u64> {
                v.parse()
                    .with_context(|| format!("source {spec}: {what} `{v}` is not a number"))
            };
            match k {
                "scale" => rmat.scale = num("scale")? as u32,
                "edge-factor" => rmat.edge_factor = num("edge-factor")?,
                "seed" => rmat.seed = num("seed")?,
                _ => bail!("source {spec}: unknown parameter `{k}` (scale, edge-factor, seed)"),
            }
        }
        if rmat.scale == 0 || rmat.scale > 40 {
            bail!("source {spec}: scale must be between 1 and 40");
        }
        return Ok(Arc::new(GenSource::new(rmat, partitions)));
    }
    if spec.starts_with("kafka://") {
        let until = until.map_or(Until::Unbounded, |o| Until::Offsets(o.to_vec()));
        return Ok(Arc::new(open_kafka(spec, until)?));
    }
    bail!("source {spec}: expected file:PATH, kafka://HOST:PORT[,HOST:PORT]/TOPIC or gen:rmat?scale=S&edge-factor=F&seed=X")
}

/// The log of one partition's share of an epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EpochPart {
    epoch: u64,
    partition: u32,
    start: Position,
    end: Position,
    /// The edges (`None` in mode `none`).
    edges: Option<Vec<(bool, u64, u64)>>,
    /// The malformed records (`None` in mode `none`).
    bad: Option<Vec<BadRecord>>,
}

/// An [`EpochPart`] encoded straight from a slice, without copying its
/// edges first: the same bytes.
#[derive(Serialize)]
struct EpochPartOut<'a> {
    epoch: u64,
    partition: u32,
    start: Position,
    end: Position,
    edges: Option<EdgesOut<'a>>,
    bad: Option<&'a [BadRecord]>,
}

/// Edges serialized as `(insert, src, dst)` tuples.
struct EdgesOut<'a>(&'a [Edge]);

impl Serialize for EdgesOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|x| (x.op == Op::Insert, x.src, x.dst)))
    }
}

impl<'a> EpochPartOut<'a> {
    /// Partition `p`'s part of epoch `epoch`; the edges and malformed
    /// records only with `full` (the log of checkpoint modes other than
    /// `none`).
    fn new(epoch: u64, p: usize, slice: &'a Slice, full: bool) -> Self {
        Self {
            epoch,
            partition: p as u32,
            start: slice.start,
            end: slice.end,
            edges: full.then_some(EdgesOut(&slice.edges)),
            bad: full.then_some(slice.bad.as_slice()),
        }
    }
}

/// The commit record of an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EpochCommit {
    epoch: u64,
    /// The generation whose parts hold the epoch.
    generation: u64,
    /// Per partition: start and end positions.
    ranges: Vec<(Position, Position)>,
    /// Per partition: crc32c of its part object.
    part_crcs: Vec<u32>,
    /// Valid edge records in the epoch.
    edges: u64,
}

/// A snapshot's manifest: written last, it makes the snapshot exist.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    epoch: u64,
    edges: u64,
    data_len: u64,
    data_crc: u32,
}

/// The deterministic output of an epoch.
#[derive(Debug, Serialize)]
struct OnlineOutput<'a> {
    epoch: u64,
    edges: u64,
    inserted: u64,
    removed: u64,
    changed: u64,
    nodes: u64,
    digest: String,
    top: &'a [(u64, String)],
}

/// Keys of a job.
#[derive(Clone)]
struct Keys {
    wid: String,
}

impl Keys {
    fn config(&self) -> String {
        format!("streams/{}/CONFIG", self.wid)
    }
    fn epochs(&self) -> String {
        format!("streams/{}/epochs/", self.wid)
    }
    fn part(&self, e: u64, generation: u64, p: usize) -> String {
        format!(
            "streams/{}/epochs/{e:010}/g{generation}/part-{p:05}",
            self.wid
        )
    }
    fn commit(&self, e: u64) -> String {
        format!("streams/{}/epochs/{e:010}/COMMIT", self.wid)
    }
    fn snapshots(&self) -> String {
        format!("streams/{}/snapshots/", self.wid)
    }
    fn snapshot_data(&self, e: u64) -> String {
        format!("streams/{}/snapshots/{e:010}/edges", self.wid)
    }
    fn manifest(&self, e: u64) -> String {
        format!("streams/{}/snapshots/{e:010}/MANIFEST", self.wid)
    }
    fn online_prefix(&self) -> String {
        format!("outputs/{}/online/", self.wid)
    }
    fn online(&self, e: u64) -> String {
        format!("{}{e:010}", self.online_prefix())
    }
    fn changes(&self, e: u64) -> String {
        format!("outputs/{}/changes/{e:010}", self.wid)
    }
    fn rejected(&self, e: u64) -> String {
        format!("outputs/{}/rejected/{e:010}", self.wid)
    }
    fn metrics(&self, generation: u64) -> String {
        format!("metrics/{}/{generation}/epochs.csv", self.wid)
    }
    fn batch_prefix(&self) -> String {
        format!("outputs/{}/batch/", self.wid)
    }
    fn batch(&self, e: u64) -> String {
        format!("{}{e:010}", self.batch_prefix())
    }
    fn batches_metrics(&self, generation: u64) -> String {
        format!("metrics/{}/{generation}/batches.csv", self.wid)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ops_of(edges: &[Edge]) -> impl Iterator<Item = EdgeOp> + '_ {
    edges.iter().map(|e| EdgeOp {
        src: e.src,
        dst: e.dst,
        insert: e.op == Op::Insert,
    })
}

/// Writes `bytes` at `key` once; an existing object must hold the same bytes.
fn write_once(store: &dyn Store, key: &str, bytes: &[u8]) -> Result<()> {
    match put_once(store, key, bytes).with_context(|| format!("writing {key}"))? {
        PutOnce::Written => Ok(()),
        PutOnce::Differs(_) => bail!(
            "{key} exists with other bytes: the recomputed output differs from the committed one (nondeterminism, or another owner wrote it)"
        ),
    }
}

/// The committed prefix of epochs: COMMIT(1..=c) all present.
fn committed_prefix(store: &dyn Store, keys: &Keys) -> Result<u64> {
    let listed = store
        .list(&keys.epochs())
        .with_context(|| format!("listing {}", keys.epochs()))?;
    let mut commits: Vec<u64> = listed
        .iter()
        .filter_map(|k| k.strip_suffix("/COMMIT"))
        .filter_map(|k| k.rsplit('/').next()?.parse().ok())
        .collect();
    commits.sort_unstable();
    let mut c = 0;
    for e in commits {
        if e == c + 1 {
            c = e;
        } else if e > c + 1 {
            break;
        }
    }
    Ok(c)
}

fn read_commit(store: &dyn Store, keys: &Keys, e: u64) -> Result<EpochCommit> {
    let key = keys.commit(e);
    let bytes = store
        .get(&key)
        .with_context(|| format!("reading {key}"))?
        .with_context(|| format!("{key} is missing"))?;
    Ok(codec::decode(&key, Kind::EpochCommit, &bytes)?)
}

/// The edges (in partition order) and malformed records of a committed
/// epoch, from its logs or, for logs without edges, from the source.
fn read_epoch(
    store: &dyn Store,
    keys: &Keys,
    source: Option<&dyn Source>,
    commit: &EpochCommit,
) -> Result<(Vec<Edge>, Vec<BadRecord>)> {
    let mut edges = Vec::new();
    let mut bad = Vec::new();
    for (p, &(start, end)) in commit.ranges.iter().enumerate() {
        let key = keys.part(commit.epoch, commit.generation, p);
        let bytes = store
            .get(&key)
            .with_context(|| format!("reading {key}"))?
            .with_context(|| {
                format!("{key} is missing though COMMIT({}) names it", commit.epoch)
            })?;
        if commit.part_crcs.get(p) != Some(&crc32c::crc32c(&bytes)) {
            bail!(
                "{key} does not match the checksum recorded in COMMIT({})",
                commit.epoch
            );
        }
        let part: EpochPart = codec::decode(&key, Kind::EpochLog, &bytes)?;
        match (part.edges, part.bad) {
            (Some(es), Some(bs)) => {
                edges.extend(es.into_iter().map(|(ins, src, dst)| Edge {
                    op: if ins { Op::Insert } else { Op::Remove },
                    src,
                    dst,
                }));
                bad.extend(bs);
            }
            _ => {
                let source = source.with_context(|| {
                    format!(
                        "epoch {} was logged without its edges (checkpoint none): re-reading it needs the source",
                        commit.epoch
                    )
                })?;
                let slice = replay(source, p, start, end).with_context(|| {
                    format!(
                        "re-reading epoch {} of partition {p} from the source",
                        commit.epoch
                    )
                })?;
                edges.extend(slice.edges);
                bad.extend(slice.bad);
            }
        }
    }
    Ok((edges, bad))
}

/// A snapshot: its epoch and the graph's edges then.
type Snapshot = (u64, Vec<(u64, u64)>);

/// Whether epoch `e` is snapshotted.
fn snapshot_due(cfg: &JobConfig, e: u64) -> bool {
    cfg.checkpoint != Checkpoint::None
        && cfg.snapshot_every > 0
        && e.is_multiple_of(cfg.snapshot_every)
}

/// The epochs that have a snapshot MANIFEST, ascending.
fn snapshot_epochs(store: &dyn Store, keys: &Keys) -> Result<Vec<u64>> {
    let listed = store.list(&keys.snapshots()).context("listing snapshots")?;
    let mut epochs: Vec<u64> = listed
        .iter()
        .filter_map(|k| k.strip_suffix("/MANIFEST"))
        .filter_map(|k| k.rsplit('/').next()?.parse().ok())
        .collect();
    epochs.sort_unstable();
    Ok(epochs)
}

/// The newest valid snapshot at or below `at_most`: its epoch and edges.
fn load_snapshot(store: &dyn Store, keys: &Keys, at_most: u64) -> Result<Option<Snapshot>> {
    let epochs = snapshot_epochs(store, keys)?;
    for &e in epochs.iter().rev().filter(|&&e| e <= at_most) {
        let mkey = keys.manifest(e);
        let Some(mbytes) = store.get(&mkey)? else {
            continue;
        };
        let manifest: Manifest = codec::decode(&mkey, Kind::Manifest, &mbytes)?;
        let dkey = keys.snapshot_data(e);
        let data = store
            .get(&dkey)?
            .with_context(|| format!("{dkey} is missing though its MANIFEST exists"))?;
        if data.len() as u64 != manifest.data_len || crc32c::crc32c(&data) != manifest.data_crc {
            bail!("{dkey} does not match its MANIFEST (corrupt snapshot)");
        }
        let edges: Vec<(u64, u64)> = codec::decode(&dkey, Kind::Snapshot, &data)?;
        return Ok(Some((e, edges)));
    }
    Ok(None)
}

/// The online state: the computation and what the outputs need besides.
struct State {
    online: Box<dyn Online + Send>,
    nodes: u64,
}

impl State {
    fn from_edges(cfg: &JobConfig, edges: &[(u64, u64)]) -> Result<Self> {
        let mut online: Box<dyn Online + Send> = match cfg.online {
            OnlineImpl::Recompute => Box::new(Recompute::from_pairs(edges, cfg.workers)?),
            OnlineImpl::Layered => Box::new(Layered::from_pairs(edges)?),
            OnlineImpl::Differential => Box::new(Differential::from_pairs(edges, cfg.workers)?),
        };
        // The outputs count the changes; only a change set lists them.
        online.list_changes(cfg.emit_changes);
        let nodes = online.rows().count() as u64;
        Ok(Self { online, nodes })
    }

    /// Applies an epoch; returns its output bytes and, if asked, its change
    /// set as CSV.
    fn apply(
        &mut self,
        epoch: u64,
        ops: &[EdgeOp],
        with_changes: bool,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        let update = self
            .online
            .apply(ops)
            .with_context(|| format!("epoch {epoch}"))?;
        self.nodes = self.nodes + update.counts.entered - update.counts.left;
        let top: Vec<(u64, String)> = self
            .online
            .top(100)
            .into_iter()
            .map(|(n, x)| (n, format_fixed(x)))
            .collect();
        let out = OnlineOutput {
            epoch,
            edges: ops.len() as u64,
            inserted: update.inserted,
            removed: update.removed,
            changed: update.counts.changed,
            nodes: self.nodes,
            digest: format!("{:016x}", self.online.digest()),
            top: &top,
        };
        let mut bytes = serde_json::to_vec_pretty(&out)?;
        bytes.push(b'\n');
        let changes = with_changes.then(|| {
            let mut sorted = update.changes;
            sorted.sort_unstable();
            let mut s = String::from("node,old,new\n");
            for c in &sorted {
                let f = |x: Option<u64>| x.map(format_fixed).unwrap_or_default();
                let _ = writeln!(s, "{},{},{}", c.node, f(c.old), f(c.new));
            }
            s.into_bytes()
        });
        Ok((bytes, changes))
    }
}

fn rejected_bytes(source: &dyn Source, bad: &[BadRecord]) -> Vec<u8> {
    let mut s = format!(
        "# source: {}\npartition\tposition\treason\traw\n",
        source.describe()
    );
    for b in bad {
        let _ = writeln!(s, "{}\t{}\t{}\t{}", b.partition, b.at, b.reason, b.raw);
    }
    s.into_bytes()
}

/// One row of `epochs.csv`.
#[derive(Debug, Clone, Default)]
struct EpochMetrics {
    epoch: u64,
    edges: u64,
    closed_at: u64,
    log_durable_at: u64,
    online_done_at: u64,
    output_committed_at: u64,
    /// What waited in the source when the epoch was cut, with its unit
    /// (bytes, messages, draws, edges), if the source can tell.
    lag: Option<(u64, &'static str)>,
}

/// What the committer thread is asked to do, in epoch order.
enum Job {
    /// Encode and write the parts of an epoch (on the committer, while the
    /// streaming thread computes); answer with their checksums when they
    /// are durable.
    Parts {
        epoch: u64,
        slices: Arc<Vec<Slice>>,
        full: bool,
        durable: Sender<PartsDurable>,
    },
    /// Commit an epoch and publish its outputs.
    Commit(Box<CommitJob>),
}

/// When an epoch's parts were durable and their checksums, or why not.
type PartsDurable = std::result::Result<(u64, Vec<u32>), String>;

struct CommitJob {
    commit: EpochCommit,
    output: Vec<u8>,
    changes: Option<Vec<u8>>,
    rejected: Option<Vec<u8>>,
    metrics: EpochMetrics,
    /// The parts' durability, if the main thread did not wait for it.
    durable: Option<Receiver<PartsDurable>>,
}

/// The graph of an epoch for its snapshot and its batch task: copied when
/// the epoch is computed (cheap for the default online state), sorted when
/// first asked for, by the batch task or the snapshot writer, off the
/// streaming thread, which goes on with the next epochs meanwhile.
pub(super) struct EpochGraph {
    sorted: std::sync::OnceLock<Arc<Vec<(u64, u64)>>>,
    make: parking_lot::Mutex<Option<EdgesLater>>,
}

impl EpochGraph {
    fn of(state: &State) -> Arc<Self> {
        Arc::new(Self {
            sorted: std::sync::OnceLock::new(),
            make: parking_lot::Mutex::new(Some(state.online.edges_later())),
        })
    }

    /// The graph already sorted, for a caller that needs it at once.
    fn sorted(edges: Vec<(u64, u64)>) -> Arc<Self> {
        Arc::new(Self {
            sorted: std::sync::OnceLock::from(Arc::new(edges)),
            make: parking_lot::Mutex::new(None),
        })
    }

    /// The edges `(a, b)`, sorted (computed by the first caller; the
    /// others wait for it).
    pub(super) fn edges(&self) -> Arc<Vec<(u64, u64)>> {
        self.sorted
            .get_or_init(|| Arc::new(self.make.lock().take().map_or_else(Vec::new, |make| make())))
            .clone()
    }
}

/// Where the epoch loop sends its work.
struct Outlets<'a> {
    /// To the committer.
    jobs: &'a Sender<Job>,
    /// To the snapshot writer.
    snapshots: &'a Sender<SnapshotJob>,
}

/// A snapshot to write once its epoch is committed.
struct SnapshotJob {
    epoch: u64,
    graph: Arc<EpochGraph>,
    /// `--retain`: after the snapshot, drop what rebuilding epochs from
    /// this one on does not need.
    keep_from: Option<u64>,
}

/// Writes snapshots in epoch order, each after its epoch's COMMIT, at the
/// batch tasks' low priority: the graph is sorted and encoded here, not on
/// the streaming thread.
fn snapshot_writer(
    store: Arc<dyn Store>,
    keys: Keys,
    jobs: Receiver<SnapshotJob>,
    shared: Arc<Shared>,
) {
    batch::lower_this_thread();
    let mut pruned_to = 0u64;
    for job in jobs {
        if shared.error.lock().is_some() {
            continue; // drain without acting
        }
        let e = job.epoch;
        if batch::wait_committed(&shared, e).is_err() {
            continue; // the run ended before the epoch committed
        }
        let written = write_snapshot(store.as_ref(), &keys, e, &job.graph.edges()).and_then(|()| {
            job.keep_from
                .map_or(Ok(()), |k| prune(store.as_ref(), &keys, k, &mut pruned_to))
        });
        if let Err(err) = written {
            shared.fail(err.context(format!("snapshot of epoch {e}")));
        }
    }
}

/// Progress of the committer, shared with the streaming loop.
struct Shared {
    error: parking_lot::Mutex<Option<String>>,
    quiet: bool,
    /// The last epoch whose COMMIT is written.
    committed: parking_lot::Mutex<u64>,
    commit_cv: parking_lot::Condvar,
    /// Set when the run ends: waiters give up.
    closing: AtomicBool,
}

impl Shared {
    /// Records the run's first error.
    fn fail(&self, e: anyhow::Error) {
        let mut slot = self.error.lock();
        if slot.is_none() {
            *slot = Some(format!("{e:#}"));
        }
    }
}

fn committer(
    store: Arc<dyn Store>,
    keys: Keys,
    generation: u64,
    jobs: Receiver<Job>,
    shared: Arc<Shared>,
) {
    let mut rows: Vec<EpochMetrics> = Vec::new();
    for job in jobs {
        if shared.error.lock().is_some() {
            continue; // drain without acting
        }
        match job {
            Job::Parts {
                epoch,
                slices,
                full,
                durable,
            } => {
                let written = (|| -> Result<Vec<u32>> {
                    let mut crcs = Vec::with_capacity(slices.len());
                    for (p, slice) in slices.iter().enumerate() {
                        let bytes = codec::encode(
                            Kind::EpochLog,
                            &EpochPartOut::new(epoch, p, slice, full),
                        )?;
                        crcs.push(crc32c::crc32c(&bytes));
                        write_once(store.as_ref(), &keys.part(epoch, generation, p), &bytes)?;
                        failpoint::hit("stream.part_written");
                    }
                    Ok(crcs)
                })();
                drop(slices);
                let result = written
                    .map(|crcs| (now_ms(), crcs))
                    .map_err(|e| format!("{e:#}"));
                if let Err(e) = &result {
                    shared.fail(anyhow!("epoch {epoch}: {e}"));
                }
                let _ = durable.send(result);
            }
            Job::Commit(job) => {
                let epoch = job.commit.epoch;
                if let Err(e) = commit_epoch(
                    store.as_ref(),
                    &keys,
                    generation,
                    *job,
                    &mut rows,
                    shared.quiet,
                ) {
                    shared.fail(e);
                } else {
                    *shared.committed.lock() = epoch;
                    shared.commit_cv.notify_all();
                }
            }
        }
    }
}

fn commit_epoch(
    store: &dyn Store,
    keys: &Keys,
    generation: u64,
    mut job: CommitJob,
    rows: &mut Vec<EpochMetrics>,
    quiet: bool,
) -> Result<()> {
    let e = job.commit.epoch;
    if let Some(rx) = job.durable.take() {
        match rx.recv() {
            Ok(Ok((at, crcs))) => {
                job.metrics.log_durable_at = at;
                job.commit.part_crcs = crcs;
            }
            Ok(Err(msg)) => bail!("epoch {e}: {msg}"),
            Err(_) => bail!("epoch {e}: the log writer stopped"),
        }
    }
    failpoint::hit("stream.before_commit");
    let bytes = codec::encode(Kind::EpochCommit, &job.commit)?;
    match put_once(store, &keys.commit(e), &bytes)? {
        PutOnce::Written => {}
        PutOnce::Differs(_) => bail!(
            "COMMIT({e}) was written by another owner of this workflow meanwhile; resume to continue from the store"
        ),
    }
    failpoint::hit("stream.committed");
    write_once(store, &keys.online(e), &job.output)?;
    if let Some(c) = &job.changes {
        write_once(store, &keys.changes(e), c)?;
    }
    if let Some(r) = &job.rejected {
        write_once(store, &keys.rejected(e), r)?;
    }
    job.metrics.output_committed_at = now_ms();
    let m = &job.metrics;
    if !quiet {
        let lag = m
            .lag
            .map_or(String::new(), |(l, unit)| format!(", lag {l} {unit}"));
        eprintln!(
            "epoch {:>5}: {:>9} edges, latency {:>5} ms (log {} ms, online {} ms), committed{lag}",
            e,
            m.edges,
            m.output_committed_at.saturating_sub(m.closed_at),
            m.log_durable_at.saturating_sub(m.closed_at),
            m.online_done_at.saturating_sub(m.closed_at),
        );
    }
    rows.push(job.metrics);
    let mut csv = String::from(
        "epoch,edges,closed_at,log_durable_at,online_done_at,output_committed_at,latency_ms,lag,lag_unit\n",
    );
    for r in rows.iter() {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{}",
            r.epoch,
            r.edges,
            r.closed_at,
            r.log_durable_at,
            r.online_done_at,
            r.output_committed_at,
            r.output_committed_at.saturating_sub(r.closed_at),
            r.lag.map_or(String::new(), |l| l.0.to_string()),
            r.lag.map_or("", |l| l.1),
        );
    }
    store
        .put(&keys.metrics(generation), csv.as_bytes())
        .context("writing metrics")?;
    Ok(())
}

fn write_snapshot(store: &dyn Store, keys: &Keys, e: u64, edges: &[(u64, u64)]) -> Result<()> {
    let data = codec::encode(Kind::Snapshot, edges)?;
    // A snapshot of a committed epoch is deterministic: an existing one
    // (from before a crash) must be identical.
    write_once(store, &keys.snapshot_data(e), &data)?;
    failpoint::hit("stream.snapshot_data");
    let manifest = Manifest {
        epoch: e,
        edges: edges.len() as u64,
        data_len: data.len() as u64,
        data_crc: crc32c::crc32c(&data),
    };
    write_once(
        store,
        &keys.manifest(e),
        &codec::encode(Kind::Manifest, &manifest)?,
    )
}

/// `--retain`: with the newest snapshot `b` at or below `keep_from` (the
/// oldest epoch that must stay rebuildable), deletes the epoch logs of
/// epochs up to `b` and the snapshots before `b`. COMMIT records and
/// outputs stay. A snapshot's MANIFEST goes before its data, so a crash in
/// between leaves no snapshot that looks valid.
fn prune(store: &dyn Store, keys: &Keys, keep_from: u64, pruned_to: &mut u64) -> Result<()> {
    let valid = snapshot_epochs(store, keys)?;
    let Some(&base) = valid.iter().rev().find(|&&e| e <= keep_from) else {
        return Ok(());
    };
    for e in *pruned_to + 1..=base {
        store
            .delete_prefix(&format!("{}{e:010}/g", keys.epochs()))
            .with_context(|| format!("dropping the logs of epoch {e}"))?;
    }
    for &old in valid.iter().filter(|&&s| s < base) {
        store.delete(&keys.manifest(old))?;
        store.delete(&keys.snapshot_data(old))?;
    }
    *pruned_to = (*pruned_to).max(base);
    Ok(())
}

/// What the streaming task returns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamSummary {
    /// The last committed epoch.
    pub last_epoch: u64,
    /// Edges in the graph then.
    pub graph_edges: u64,
}

/// Set by SIGINT/SIGTERM handlers: finish the epoch in flight and stop.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// The workflow of a streaming job.
pub fn workflow(cfg: &JobConfig) -> std::result::Result<Workflow<StreamSummary>, DagError> {
    let cfg = cfg.clone();
    let mut dag = Dag::new();
    let stream = dag.task(
        "stream",
        TaskOptions::sync().nondeterministic().retries(0),
        move |ctx| run_stream(ctx, &cfg).map_err(|e| Failure::fatal(format!("{e:#}"))),
    );
    dag.finish(stream)
}

/// Edge operations folded at once, at most, when rebuilding.
const REPLAY_CHUNK: usize = 1 << 22;

/// What a rebuild did, for the recovery message.
#[derive(Debug, Default)]
struct Rebuilt {
    /// The snapshot it started from (0: none).
    snapshot: u64,
    /// Epoch logs read after it.
    replayed: u64,
    /// Seconds reading the snapshot and the logs, and building the state.
    read_s: f64,
    build_s: f64,
}

/// Rebuilds the online state at committed epoch `at`: the newest snapshot
/// at or below it, then the logs after it. The epochs' outputs exist, so
/// their operations are folded into the snapshot's edge set (in order, the
/// last operation on a pair winning) and the state is built once: the
/// table is a function of the edge set, so this is the state that epoch
/// by epoch replay reaches, at the cost of one from-zero iteration instead
/// of one per epoch.
fn rebuild(
    store: &dyn Store,
    cfg: &JobConfig,
    keys: &Keys,
    source: Option<&dyn Source>,
    at: u64,
) -> Result<(State, Rebuilt)> {
    let t = std::time::Instant::now();
    let (from, mut edges) = load_snapshot(store, keys, at)?.unwrap_or((0, Vec::new()));
    let mut pending: Vec<EdgeOp> = Vec::new();
    for e in from + 1..=at {
        let commit = read_commit(store, keys, e)?;
        let (log, _) = read_epoch(store, keys, source, &commit)?;
        pending.extend(ops_of(&log));
        if pending.len() >= REPLAY_CHUNK {
            edges = exoflow_graph::reference::apply_ops_to(edges, &pending);
            pending.clear();
        }
    }
    let edges = exoflow_graph::reference::apply_ops_to(edges, &pending);
    drop(pending);
    let read_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let state = State::from_edges(cfg, &edges)
        .with_context(|| format!("rebuilding the online state at epoch {at}"))?;
    Ok((
        state,
        Rebuilt {
            snapshot: from,
            replayed: at - from,
            read_s,
            build_s: t.elapsed().as_secs_f64(),
        },
    ))
}

fn run_stream(ctx: &TaskContext<'_>, cfg: &JobConfig) -> Result<StreamSummary> {
    let store: Arc<dyn Store> = ctx.store_arc();
    let keys = Keys {
        wid: ctx.workflow_id().as_str().to_owned(),
    };
    let generation = ctx.generation();
    let source = open_source(&cfg.source, cfg.partitions, cfg.until.as_deref())?;
    let now = source.fingerprint();
    if now != cfg.fingerprint {
        bail!(
            "the source changed since the job was created: recorded `{}`, now `{now}`; refusing to resume on other data",
            cfg.fingerprint
        );
    }
    write_once(
        store.as_ref(),
        &keys.config(),
        &serde_json::to_vec_pretty(cfg)?,
    )?;
    let cfg = &JobConfig {
        workers: WORKERS.get().copied().unwrap_or(cfg.workers),
        ..cfg.clone()
    };
    let quiet = std::env::var_os("EXOFLOW_QUIET").is_some();

    // Recovery: the committed prefix, and outputs rebuilt or compared.
    let c = committed_prefix(store.as_ref(), &keys)?;
    let shared = Arc::new(Shared {
        error: parking_lot::Mutex::new(None),
        quiet,
        committed: parking_lot::Mutex::new(c),
        commit_cv: parking_lot::Condvar::new(),
        closing: AtomicBool::new(false),
    });
    let cluster = cluster(cfg.workers, quiet)?;
    let mut batcher = batch::Batcher::new(ctx, cfg, shared.clone(), cluster);
    // One listing per kind, not one read per epoch.
    let written: std::collections::HashSet<String> = store
        .list(&keys.online_prefix())?
        .into_iter()
        .chain(store.list(&keys.batch_prefix())?)
        .collect();
    let first_missing = (1..=c)
        .find(|&e| {
            !written.contains(&keys.online(e))
                || (batch::due(cfg, e) && !written.contains(&keys.batch(e)))
        })
        .unwrap_or(c + 1);
    let snapshot_bound = first_missing.saturating_sub(1);
    let t_recover = std::time::Instant::now();
    let (mut state, rebuilt) = rebuild(
        store.as_ref(),
        cfg,
        &keys,
        Some(source.as_ref()),
        snapshot_bound,
    )?;
    for e in snapshot_bound + 1..=c {
        let commit = read_commit(store.as_ref(), &keys, e)?;
        let (edges, bad) = read_epoch(store.as_ref(), &keys, Some(source.as_ref()), &commit)?;
        let ops: Vec<EdgeOp> = ops_of(&edges).collect();
        let (output, changes) = state.apply(e, &ops, cfg.emit_changes)?;
        write_once(store.as_ref(), &keys.online(e), &output)?;
        if let Some(ch) = changes {
            write_once(store.as_ref(), &keys.changes(e), &ch)?;
        }
        if !bad.is_empty() {
            write_once(
                store.as_ref(),
                &keys.rejected(e),
                &rejected_bytes(source.as_ref(), &bad),
            )?;
        }
        let batch_missing = batch::due(cfg, e) && store.get(&keys.batch(e))?.is_none();
        let snapshot = snapshot_due(cfg, e);
        if snapshot || batch_missing {
            // Recovery writes the snapshot now: no copy to sort later.
            let graph = if snapshot {
                EpochGraph::sorted(state.online.edges())
            } else {
                EpochGraph::of(&state)
            };
            if snapshot {
                write_snapshot(store.as_ref(), &keys, e, &graph.edges())?;
            }
            if batch_missing {
                batcher.launch(e, graph, state.online.table())?;
            }
        }
    }
    if c > 0 && !quiet {
        eprintln!(
            "exoflow: recovered at committed epoch {c} (generation {generation}) in {:.2} s: snapshot {} and {} epoch log(s) read in {:.2} s, state built in {:.2} s",
            t_recover.elapsed().as_secs_f64(),
            rebuilt.snapshot,
            rebuilt.replayed,
            rebuilt.read_s,
            rebuilt.build_s
        );
    }

    // Continue the source after the last committed epoch.
    let mut cutter = if c == 0 {
        Cutter::from_start(source.clone())?
    } else {
        let last = read_commit(store.as_ref(), &keys, c)?;
        let ends: Vec<Position> = last.ranges.iter().map(|r| r.1).collect();
        Cutter::new(source.clone(), &ends)?
    };

    let (tx, rx) = crossbeam_channel::bounded::<Job>(4);
    // At most two snapshots wait (each holds a copy of the graph): past
    // that, the epoch loop waits for the writer.
    let (snap_tx, snap_rx) = crossbeam_channel::bounded::<SnapshotJob>(2);
    let (writer, snapshots) = {
        let (store2, shared2, keys2) = (store.clone(), shared.clone(), keys.clone());
        let (store, shared, keys) = (store.clone(), shared.clone(), keys.clone());
        (
            std::thread::Builder::new()
                .name("exoflow-committer".into())
                .spawn(move || committer(store, keys, generation, rx, shared))
                .context("starting the committer thread")?,
            std::thread::Builder::new()
                .name("exoflow-snapshots".into())
                .spawn(move || snapshot_writer(store2, keys2, snap_rx, shared2))
                .context("starting the snapshot thread")?,
        )
    };
    // SIGINT/SIGTERM reach the run as an engine stop request (the command's
    // watcher turns `STOP` into one), so that the workflow ends STOPPED.
    let stop = || ctx.stop_requested() || ctx.is_cancelled();
    let result = stream_loop(
        generation,
        cfg,
        source.as_ref(),
        &mut cutter,
        &mut state,
        c,
        &Outlets {
            jobs: &tx,
            snapshots: &snap_tx,
        },
        &shared,
        &stop,
        &mut batcher,
    );
    drop(tx);
    drop(snap_tx);
    let _ = writer.join();
    shared.closing.store(true, Ordering::SeqCst);
    shared.commit_cv.notify_all();
    // Every snapshot of a committed epoch is written before the run ends.
    let _ = snapshots.join();
    let batches = batcher.finish();
    if let Some(e) = shared.error.lock().take() {
        bail!(e);
    }
    let (last, stopped) = result?;
    batches?;
    if stopped {
        bail!("stopped on request after epoch {last}; `exoflow resume` continues");
    }
    Ok(StreamSummary {
        last_epoch: last,
        graph_edges: state.online.edge_count() as u64,
    })
}

/// What the reader hands the epoch loop.
enum Read {
    /// The next epoch: its slices, when it was cut and what waited then.
    Epoch {
        slices: Vec<Slice>,
        closed_at: u64,
        lag: Option<(u64, &'static str)>,
    },
    /// A stop was requested.
    Stopped,
}

/// Cuts epochs on its own thread, so that the source is read while the
/// epoch before is computed (as a live source goes on arriving), at most
/// one epoch ahead: once it waits to be taken, reading pauses and what
/// arrives meanwhile shows as lag. Ends when the source ends, after
/// `--epochs`, on a stop (sent as [`Read::Stopped`]) or when the epoch loop
/// is gone.
fn reader(
    cfg: &JobConfig,
    committed: u64,
    cutter: &mut Cutter,
    stop: &exoflow_ingest::epoch::Stop<'_>,
    out: Sender<Result<Read>>,
    base_done: Receiver<()>,
) {
    let mut e = committed;
    // Reads are paced at the rate, except a base graph: it is read at full
    // speed, and the rate applies from the epoch after it, once it is
    // processed (no backlog piles up meanwhile).
    let mut base_unpaced = e == 0 && cfg.base_edges.is_some();
    cutter.pace(if base_unpaced { None } else { cfg.rate });
    loop {
        if base_unpaced && e > 0 {
            if base_done.recv().is_err() {
                return;
            }
            cutter.pace(cfg.rate);
            base_unpaced = false;
        }
        if cfg.epochs.is_some_and(|k| e >= k) || cutter.at_end() {
            return;
        }
        if stop() {
            let _ = out.send(Ok(Read::Stopped));
            return;
        }
        let cut = match (cfg.base_edges, cfg.epoch_edges, cfg.epoch_ms) {
            (Some(n), _, _) if e == 0 => cutter.by_count(n, stop),
            (_, _, Some(ms)) => cutter.by_time(Duration::from_millis(ms), u64::MAX, stop),
            (_, n, None) => cutter.by_count(n.unwrap_or(100_000), stop),
        };
        let slices = match cut {
            Ok(s) => s,
            Err(err) => {
                let _ = out.send(Err(err.into()));
                return;
            }
        };
        let closed_at = now_ms();
        let lag = cutter.backlog();
        if slices
            .iter()
            .all(|s| s.edges.is_empty() && s.bad.is_empty() && s.start == s.end)
        {
            // Nothing read: the source ended or a stop came.
            continue;
        }
        e += 1;
        let epoch = Read::Epoch {
            slices,
            closed_at,
            lag,
        };
        if out.send(Ok(epoch)).is_err() {
            return;
        }
    }
}

/// The epoch loop, with the reader beside it. Returns the last epoch
/// handed to the committer and whether it stopped on request.
#[allow(clippy::too_many_arguments)]
fn stream_loop(
    generation: u64,
    cfg: &JobConfig,
    source: &dyn Source,
    cutter: &mut Cutter,
    state: &mut State,
    committed: u64,
    out: &Outlets<'_>,
    shared: &Shared,
    stop: &exoflow_ingest::epoch::Stop<'_>,
    batcher: &mut batch::Batcher<'_, '_>,
) -> Result<(u64, bool)> {
    let quit = AtomicBool::new(false);
    let reading = || stop() || quit.load(Ordering::SeqCst);
    let (read_tx, read_rx) = crossbeam_channel::bounded::<Result<Read>>(1);
    let (base_tx, base_rx) = crossbeam_channel::bounded::<()>(1);
    std::thread::scope(|scope| {
        let reading = &reading;
        std::thread::Builder::new()
            .name("exoflow-reader".into())
            .spawn_scoped(scope, move || {
                reader(cfg, committed, cutter, reading, read_tx, base_rx)
            })
            .context("starting the reader thread")?;
        let result = epoch_loop(
            generation, cfg, source, state, committed, out, shared, batcher, read_rx, base_tx,
        );
        // The reader sees this at its next poll, or when it hands over an
        // epoch (the receiver is gone).
        quit.store(true, Ordering::SeqCst);
        result
    })
}

/// Computes and commits the epochs the reader cuts.
#[allow(clippy::too_many_arguments)]
fn epoch_loop(
    generation: u64,
    cfg: &JobConfig,
    source: &dyn Source,
    state: &mut State,
    committed: u64,
    out: &Outlets<'_>,
    shared: &Shared,
    batcher: &mut batch::Batcher<'_, '_>,
    reads: Receiver<Result<Read>>,
    base_done: Sender<()>,
) -> Result<(u64, bool)> {
    let mut e = committed;
    loop {
        if shared.error.lock().is_some() {
            return Ok((e, false));
        }
        let (slices, closed_at, lag) = match reads.recv() {
            Ok(Ok(Read::Epoch {
                slices,
                closed_at,
                lag,
            })) => (slices, closed_at, lag),
            Ok(Ok(Read::Stopped)) => return Ok((e, true)),
            Ok(Err(err)) => return Err(err),
            Err(_) => return Ok((e, false)), // the source ended, or --epochs
        };
        let edges_n: usize = slices.iter().map(|s| s.edges.len()).sum();
        let bad_n: usize = slices.iter().map(|s| s.bad.len()).sum();
        e += 1;
        if bad_n > 0 && bad_n as f64 > cfg.max_bad_ratio * (edges_n + bad_n) as f64 {
            let first = slices.iter().flat_map(|s| s.bad.first()).next();
            let place = first.map_or(String::new(), |b| {
                format!(
                    "; first at partition {} {} of {}: {} (`{}`)",
                    b.partition,
                    b.at,
                    source.describe(),
                    b.reason,
                    b.raw
                )
            });
            bail!(
                "epoch {e}: {bad_n} of {} records malformed, over --max-bad-ratio {}{place}; nothing of this epoch was committed",
                edges_n + bad_n,
                cfg.max_bad_ratio
            );
        }
        let slices = Arc::new(slices);
        let mut commit = EpochCommit {
            epoch: e,
            generation,
            ranges: slices.iter().map(|s| (s.start, s.end)).collect(),
            part_crcs: Vec::new(), // known once the parts are encoded
            edges: edges_n as u64,
        };
        let (dtx, drx) = crossbeam_channel::bounded(1);
        out.jobs
            .send(Job::Parts {
                epoch: e,
                slices: slices.clone(),
                full: cfg.checkpoint != Checkpoint::None,
                durable: dtx,
            })
            .map_err(|_| anyhow!("the committer stopped"))?;
        let mut metrics = EpochMetrics {
            epoch: e,
            edges: edges_n as u64,
            closed_at,
            lag,
            ..Default::default()
        };
        let mut durable = Some(drx);
        if cfg.checkpoint == Checkpoint::Sync {
            match durable.take().map(|rx| rx.recv()) {
                Some(Ok(Ok((at, crcs)))) => {
                    metrics.log_durable_at = at;
                    commit.part_crcs = crcs;
                }
                Some(Ok(Err(msg))) => bail!("epoch {e}: {msg}"),
                _ => bail!("epoch {e}: the log writer stopped"),
            }
        }
        // One copy of the edges, in the graph's form; the slices stay with
        // the committer until their log is written.
        let ops: Vec<EdgeOp> = slices.iter().flat_map(|s| ops_of(&s.edges)).collect();
        let bad: Vec<BadRecord> = slices.iter().flat_map(|s| s.bad.iter().cloned()).collect();
        drop(slices);
        let (output, changes) = state.apply(e, &ops, cfg.emit_changes)?;
        metrics.online_done_at = now_ms();
        if e == 1 {
            // A base graph is processed: the reader may start its pacing.
            let _ = base_done.try_send(());
        }
        out.jobs
            .send(Job::Commit(Box::new(CommitJob {
                commit,
                output,
                changes,
                rejected: (!bad.is_empty()).then(|| rejected_bytes(source, &bad)),
                metrics,
                durable,
            })))
            .map_err(|_| anyhow!("the committer stopped"))?;
        // The graph for a snapshot or a batch task is taken after the
        // epoch's output is on its way: its commit does not wait for it.
        let (snapshot_now, batch_now) = (snapshot_due(cfg, e), batch::due(cfg, e));
        if snapshot_now || batch_now {
            let graph = EpochGraph::of(state);
            if batch_now {
                batcher.launch(e, graph.clone(), state.online.table())?;
            }
            if snapshot_now {
                out.snapshots
                    .send(SnapshotJob {
                        epoch: e,
                        graph,
                        keep_from: cfg.retain.map(|k| {
                            // The last k epochs, and every epoch whose batch
                            // task has not written its output yet, stay
                            // rebuildable.
                            (e + 1)
                                .saturating_sub(k)
                                .min(batcher.oldest_pending().unwrap_or(u64::MAX))
                        }),
                    })
                    .map_err(|_| anyhow!("the snapshot writer stopped"))?;
            }
        }
    }
}

/// The job's recorded configuration.
pub fn read_config(store: &dyn Store, wid: &str) -> Result<JobConfig> {
    let keys = Keys {
        wid: wid.to_owned(),
    };
    let key = keys.config();
    let bytes = store
        .get(&key)
        .with_context(|| format!("reading {key}"))?
        .with_context(|| {
            format!("workflow {wid} has no streaming job in this store ({key} is missing)")
        })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{key} is not a job configuration"))
}

/// The last committed epoch of a job.
pub fn last_committed(store: &dyn Store, wid: &str) -> Result<u64> {
    committed_prefix(
        store,
        &Keys {
            wid: wid.to_owned(),
        },
    )
}

/// The online table at committed epoch `at`, recomputed from the nearest
/// snapshot, and the digest its output recorded.
pub fn export(
    store: &dyn Store,
    wid: &str,
    at: u64,
) -> Result<(exoflow_graph::Table, Option<String>)> {
    let state = state_at(store, wid, at)?;
    Ok((state.online.table(), recorded_digest(store, wid, at)?))
}

/// The online state at committed epoch `at` (snapshot and logs), checked
/// against the digest its output recorded.
fn state_at(store: &dyn Store, wid: &str, at: u64) -> Result<State> {
    let cfg = read_config(store, wid)?;
    let keys = Keys {
        wid: wid.to_owned(),
    };
    let c = committed_prefix(store, &keys)?;
    if at > c || at == 0 {
        bail!("epoch {at} is not committed (committed epochs: 1..={c})");
    }
    if let Some(k) = cfg.retain {
        if at + k <= c {
            bail!(
                "epoch {at} is older than the last {k} epochs that --retain {k} keeps rebuildable (committed: 1..={c}); its outputs/{wid}/online/{at:010} remains"
            );
        }
    }
    // Logs with edges need no source: open it only for `none` logs.
    let source = match cfg.checkpoint {
        Checkpoint::None => Some(open_source(
            &cfg.source,
            cfg.partitions,
            cfg.until.as_deref(),
        )?),
        _ => None,
    };
    let (state, _) = rebuild(store, &cfg, &keys, source.as_deref(), at)?;
    if let Some(r) = recorded_digest(store, wid, at)? {
        let digest = format!("{:016x}", state.online.digest());
        if r != digest {
            bail!("the recomputed table at epoch {at} has digest {digest}, but its output recorded {r}");
        }
    }
    Ok(state)
}

fn recorded_digest(store: &dyn Store, wid: &str, at: u64) -> Result<Option<String>> {
    let keys = Keys {
        wid: wid.to_owned(),
    };
    Ok(store
        .get(&keys.online(at))?
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("digest").and_then(|d| d.as_str()).map(str::to_owned)))
}

/// `exoflow batch --store ... --epoch E`: the batch recomputation at a
/// committed epoch, by hand. Writes (or compares) the same output
/// `outputs/<wid>/batch/<E>` as the batch task; returns the report and the
/// batch table.
pub fn batch_at(
    store: &dyn Store,
    wid: &str,
    at: u64,
    workers: usize,
) -> Result<(BatchReport, exoflow_graph::Table)> {
    let state = state_at(store, wid, at)?;
    let edges = Arc::new(state.online.edges());
    let online = state.online.table();
    let (bytes, report, table) = recompute(at, edges, &online, workers, None)?;
    let keys = Keys {
        wid: wid.to_owned(),
    };
    write_once(store, &keys.batch(at), &bytes)?;
    Ok((report, table))
}

/// What `status` shows of a streaming job.
#[derive(Debug, Serialize)]
pub struct StreamStatus {
    /// The source.
    pub source: String,
    /// The checkpoint mode.
    pub checkpoint: Checkpoint,
    /// The last committed epoch (0: none yet).
    pub last_committed: u64,
    /// The output of that epoch (edges, changed, nodes, digest, top).
    pub last_output: BTreeMap<String, serde_json::Value>,
    /// The batch recomputations written so far: epoch, differing nodes,
    /// mean and max |batch - online|.
    pub batches: Vec<serde_json::Value>,
    /// What waited in the source when the last epoch of the latest run was
    /// cut, with its unit ("1234 messages"), if known.
    pub lag: Option<String>,
}

/// A summary of a streaming job for `status`, `None` when the workflow is
/// not one.
pub fn describe(store: &dyn Store, wid: &str) -> Result<Option<StreamStatus>> {
    let keys = Keys {
        wid: wid.to_owned(),
    };
    if store.get(&keys.config())?.is_none() {
        return Ok(None);
    }
    let cfg = read_config(store, wid)?;
    let c = committed_prefix(store, &keys)?;
    let last_output = match store.get(&keys.online(c))? {
        Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let mut batches = Vec::new();
    for key in store.list(&keys.batch_prefix())? {
        let Some(v) = store
            .get(&key)?
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        else {
            continue;
        };
        batches.push(serde_json::json!({
            "epoch": v["epoch"],
            "differing": v["differing"],
            "mean_diff": v["mean_diff"],
            "max_diff": v["max_diff"],
        }));
    }
    Ok(Some(StreamStatus {
        source: cfg.source,
        checkpoint: cfg.checkpoint,
        last_committed: c,
        last_output,
        batches,
        lag: last_lag(store, wid)?,
    }))
}

/// The lag column of the last row of the newest generation's epochs.csv.
fn last_lag(store: &dyn Store, wid: &str) -> Result<Option<String>> {
    let newest = store
        .list(&format!("metrics/{wid}/"))?
        .into_iter()
        .filter(|k| k.ends_with("/epochs.csv"))
        .filter_map(|k| {
            let generation: u64 = k.split('/').nth(2)?.parse().ok()?;
            Some((generation, k))
        })
        .max();
    let Some((_, key)) = newest else {
        return Ok(None);
    };
    let Some(bytes) = store.get(&key)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(lag), Some(unit)) = (col("lag"), col("lag_unit")) else {
        return Ok(None);
    };
    let Some(last) = lines.rfind(|l| !l.is_empty()) else {
        return Ok(None);
    };
    let fields: Vec<&str> = last.split(',').collect();
    Ok(match (fields.get(lag), fields.get(unit)) {
        (Some(l), Some(u)) if !l.is_empty() => Some(format!("{l} {u}")),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoflow_ingest::edge::Malformed;

    /// The parts encoded straight from a slice are byte for byte what an
    /// `EpochPart` encodes to (the logs written before stay readable, and
    /// recovery reads these as `EpochPart`).
    #[test]
    fn parts_encoded_from_slices_are_epoch_parts() -> Result<()> {
        let edges = vec![
            Edge {
                op: Op::Insert,
                src: 1,
                dst: u64::MAX,
            },
            Edge {
                op: Op::Remove,
                src: 300,
                dst: 7,
            },
        ];
        let bad = vec![BadRecord::new(
            1,
            Position::at(9),
            Malformed::MissingField,
            "12".to_owned(),
        )];
        let slice = Slice {
            partition: 1,
            start: Position::at(4),
            end: Position::at(10),
            edges,
            bad,
        };
        for full in [true, false] {
            let ours = codec::encode(Kind::EpochLog, &EpochPartOut::new(3, 1, &slice, full))?;
            let theirs = EpochPart {
                epoch: 3,
                partition: 1,
                start: slice.start,
                end: slice.end,
                edges: full.then(|| {
                    slice
                        .edges
                        .iter()
                        .map(|x| (x.op == Op::Insert, x.src, x.dst))
                        .collect()
                }),
                bad: full.then(|| slice.bad.clone()),
            };
            assert_eq!(ours, codec::encode(Kind::EpochLog, &theirs)?);
            let back: EpochPart = codec::decode("part", Kind::EpochLog, &ours)?;
            assert_eq!(back.edges, theirs.edges);
            assert_eq!(back.bad, theirs.bad);
            assert_eq!((back.start, back.end), (slice.start, slice.end));
        }
        Ok(())
    }
}
