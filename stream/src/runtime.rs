//! What a process brings to its streaming jobs besides their recorded
//! configuration: librdkafka settings (they may hold credentials, so they
//! are never stored), a thread count that overrides the job's, the cluster
//! it leads, and whether to print progress. Built by the command and handed
//! to [`crate::register`]; nothing of it is global.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Context, Result, StreamError};
use exoflow_graph::cluster::{Cluster, ClusterSpec};
use exoflow_ingest::kafka::{KafkaSource, KafkaSpec, Until};
use exoflow_ingest::rmat::Rmat;
use exoflow_ingest::source::{FileSource, GenSource, Source};
use parking_lot::Mutex;

/// The process-side settings of streaming jobs.
#[derive(Default)]
pub struct Runtime {
    kafka_options: Vec<String>,
    workers: Option<usize>,
    cluster: Option<ClusterSpec>,
    formed: Mutex<Option<Arc<Cluster>>>,
    quiet: bool,
}

impl Runtime {
    /// No Kafka settings, the job's workers, no cluster, progress printed.
    pub fn new() -> Self {
        Self::default()
    }

    /// librdkafka settings `KEY=VALUE` for Kafka sources.
    pub fn with_kafka_options(mut self, opts: Vec<String>) -> Self {
        self.kafka_options = opts;
        self
    }

    /// This process's threads of the online update and timely workers of
    /// each batch recomputation, whatever the job was created with (logs
    /// and snapshots are keyed by source partition, not by worker).
    pub fn with_workers(mut self, workers: Option<usize>) -> Self {
        self.workers = workers.map(|w| w.max(1));
        self
    }

    /// Makes this process the leader (process 0) of the cluster `spec`:
    /// batch recomputations run on all its processes. The cluster forms
    /// when a job first needs it.
    pub fn with_cluster(mut self, spec: Option<ClusterSpec>) -> Self {
        self.cluster = spec;
        self
    }

    /// No progress lines on stderr.
    pub fn with_quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// Whether progress lines are left out.
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// The workers of a job created with `recorded` workers.
    pub fn workers(&self, recorded: usize) -> usize {
        self.workers.unwrap_or(recorded)
    }

    /// The cluster, formed on first use with `threads` workers per
    /// process; `None` when this process leads none.
    pub fn cluster(&self, threads: usize) -> Result<Option<Arc<Cluster>>> {
        let Some(spec) = &self.cluster else {
            return Ok(None);
        };
        let mut slot = self.formed.lock();
        if slot.is_none() {
            let n = spec.addresses.len();
            if !self.quiet {
                eprintln!(
                    "exoflow: process 0 of {n} waits for the other processes of the cluster ({threads} worker thread(s) each)"
                );
            }
            let say = |msg: &str| eprintln!("exoflow: {msg}");
            let c = Cluster::lead(spec, threads, &say).context("forming the cluster")?;
            if !self.quiet {
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

    /// Ends the cluster, if one formed: the other processes exit.
    pub fn release_cluster(&self) {
        let c = self.formed.lock().take();
        drop(c);
    }

    /// Connects to a Kafka source `kafka://HOST:PORT[,...]/TOPIC`.
    pub fn open_kafka(&self, spec: &str, until: Until) -> Result<KafkaSource> {
        let k =
            KafkaSpec::parse(spec)?.with_options(self.kafka_options.iter().map(String::as_str))?;
        KafkaSource::connect(k, until).with_context(|| format!("opening the source {spec}"))
    }

    /// Opens a source spec with `partitions` partitions (a Kafka topic has
    /// its own), bounded by recorded end offsets `until` (Kafka).
    pub fn open_source(
        &self,
        spec: &str,
        partitions: usize,
        until: Option<&[u64]>,
    ) -> Result<Arc<dyn Source>> {
        if let Some(path) = spec.strip_prefix("file:") {
            let src = FileSource::open(Path::new(path), partitions)
                .with_context(|| format!("opening the source {spec}"))?;
            return Ok(Arc::new(src));
        }
        if let Some(query) = spec.strip_prefix("gen:rmat") {
            let rmat = Rmat::parse_query(spec, query)?;
            return Ok(Arc::new(GenSource::new(rmat, partitions)));
        }
        if spec.starts_with("kafka://") {
            let until = until.map_or(Until::Unbounded, |o| Until::Offsets(o.to_vec()));
            return Ok(Arc::new(self.open_kafka(spec, until)?));
        }
        Err(StreamError::UnknownSource(spec.to_owned()))
    }
}
