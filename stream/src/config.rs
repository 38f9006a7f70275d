//! The job's configuration: what `exoflow run` records when it creates a
//! job ([`JobConfig`], stored as `streams/<wid>/CONFIG` and as the
//! workflow's arguments), and the raw request it is validated from
//! ([`JobRequest`]), in one place.

use serde::{Deserialize, Serialize};

/// The registered DAG name of a streaming job.
pub const DAG: &str = "exoflow-stream";

/// Epochs between snapshots unless asked otherwise.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10;

/// The largest fraction of malformed records an epoch may have unless
/// asked otherwise.
pub const DEFAULT_MAX_BAD_RATIO: f64 = 0.01;

/// What is written per epoch besides the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum EpochCheckpoint {
    /// Only each epoch's position ranges (a few bytes); resume re-reads the
    /// source from its start (the paper's NoCkpt).
    None,
    /// The epoch's edges are durable before its online update starts.
    Sync,
    /// The epoch's edges are written while its online update runs.
    Async,
}

/// Which incremental TunkRank keeps the online table (all exact).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum OnlineImpl {
    /// Maintain the graph, rerun the from-zero iteration in parallel
    /// (`--workers` threads): cost rounds x edges, whatever the epoch.
    #[default]
    Recompute,
    /// Push deltas through every stored round: cheap for epochs that touch
    /// little of the graph, single-threaded.
    Layered,
    /// The from-zero iteration as a differential dataflow collection on
    /// `--workers` timely threads: exact by construction, slower, and
    /// holding the arrangements of every round in memory.
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
    pub checkpoint: EpochCheckpoint,
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

impl JobConfig {
    /// Whether epoch `e` is snapshotted.
    pub fn snapshot_due(&self, e: u64) -> bool {
        self.checkpoint != EpochCheckpoint::None
            && self.snapshot_every > 0
            && e.is_multiple_of(self.snapshot_every)
    }

    /// Whether epoch `e` has a batch recomputation.
    pub fn batch_due(&self, e: u64) -> bool {
        self.batch_every > 0
            && e >= self.batch_from
            && (e - self.batch_from).is_multiple_of(self.batch_every)
    }

    /// `--retain`: the oldest epoch that must stay rebuildable after epoch
    /// `e` is computed, `None` without retention: the last K epochs, and
    /// every epoch from `oldest_pending_batch` on (a batch task still
    /// running may need its graph rebuilt after a crash).
    pub fn keep_from(&self, e: u64, oldest_pending_batch: Option<u64>) -> Option<u64> {
        self.retain.map(|k| {
            (e + 1)
                .saturating_sub(k)
                .min(oldest_pending_batch.unwrap_or(u64::MAX))
        })
    }
}

/// A job as asked for, before validation: the flags of `exoflow run`
/// without their parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    /// The source spec.
    pub source: String,
    /// Source partitions (default 2; a Kafka topic has its own).
    pub partitions: Option<usize>,
    /// Epochs of this many valid edges.
    pub epoch_edges: Option<u64>,
    /// Epochs of this many milliseconds.
    pub epoch_ms: Option<u64>,
    /// A base graph of this many edges as epoch 1.
    pub base_edges: Option<u64>,
    /// Stop after this many epochs.
    pub epochs: Option<u64>,
    /// Kafka: read up to the end offsets seen now.
    pub until_end: bool,
    /// A batch recomputation every this many epochs (0: never).
    pub batch_every: u64,
    /// The first epoch with one (default: `batch_every`).
    pub batch_from: Option<u64>,
    /// Threads and timely workers.
    pub workers: usize,
    /// The online implementation.
    pub online: OnlineImpl,
    /// `--retain K`.
    pub retain: Option<u64>,
    /// The checkpoint mode.
    pub checkpoint: EpochCheckpoint,
    /// Edges per second at most.
    pub rate: Option<f64>,
    /// Snapshot every this many epochs (0: never).
    pub snapshot_every: u64,
    /// Write change sets.
    pub emit_changes: bool,
    /// The largest fraction of malformed records an epoch may have.
    pub max_bad_ratio: f64,
}

/// A request that does not make a job; the message says which flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRequest(pub &'static str);

impl JobRequest {
    /// A request for `source` with the command's defaults: 2 partitions,
    /// epochs of 100,000 edges, async checkpoints, a snapshot every 10
    /// epochs, no batch, one worker, at most 1% malformed records.
    pub fn new(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            partitions: None,
            epoch_edges: None,
            epoch_ms: None,
            base_edges: None,
            epochs: None,
            until_end: false,
            batch_every: 0,
            batch_from: None,
            workers: 1,
            online: OnlineImpl::Recompute,
            retain: None,
            checkpoint: EpochCheckpoint::Async,
            rate: None,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            emit_changes: false,
            max_bad_ratio: DEFAULT_MAX_BAD_RATIO,
        }
    }

    /// Whether the source is a Kafka topic.
    pub fn is_kafka(&self) -> bool {
        self.source.starts_with("kafka://")
    }

    /// Checks the flags against each other; returns the partition count to
    /// open the source with.
    pub fn validate(&self) -> Result<usize, InvalidRequest> {
        let partitions = self.partitions.unwrap_or(2);
        if partitions == 0 || partitions > 4096 {
            return Err(InvalidRequest("--partitions must be between 1 and 4096"));
        }
        if self.is_kafka() && self.partitions.is_some() {
            return Err(InvalidRequest(
                "--partitions does not apply to a Kafka source: the topic's partitions are read",
            ));
        }
        if self.until_end && !self.is_kafka() {
            return Err(InvalidRequest(
                "--until-end applies to Kafka sources (a file or a generator ends by itself)",
            ));
        }
        if self.epoch_edges == Some(0) || self.epoch_ms == Some(0) || self.base_edges == Some(0) {
            return Err(InvalidRequest(
                "an epoch must have at least one edge or one millisecond",
            ));
        }
        if self
            .rate
            .is_some_and(|r| r.is_nan() || r < exoflow_ingest::MIN_RATE)
        {
            return Err(InvalidRequest(
                "--rate must be at least 0.001 edges a second",
            ));
        }
        if let Some(k) = self.retain {
            if k == 0 {
                return Err(InvalidRequest("--retain must keep at least one epoch"));
            }
            if self.checkpoint == EpochCheckpoint::None || self.snapshot_every == 0 {
                return Err(InvalidRequest("--retain drops what snapshots make unnecessary: it needs --checkpoint sync or async and --snapshot-every K > 0"));
            }
        }
        if !(0.0..=1.0).contains(&self.max_bad_ratio) {
            return Err(InvalidRequest("--max-bad-ratio must be between 0 and 1"));
        }
        Ok(partitions)
    }

    /// The job's record, once the source is open: its partitions and
    /// fingerprint, and the end offsets of `--until-end`.
    pub fn into_config(
        self,
        partitions: usize,
        fingerprint: String,
        until: Option<Vec<u64>>,
    ) -> JobConfig {
        JobConfig {
            source: self.source,
            partitions,
            epoch_edges: self.epoch_edges,
            epoch_ms: self.epoch_ms,
            base_edges: self.base_edges,
            epochs: self.epochs,
            checkpoint: self.checkpoint,
            rate: self.rate,
            snapshot_every: self.snapshot_every,
            emit_changes: self.emit_changes,
            max_bad_ratio: self.max_bad_ratio,
            fingerprint,
            until,
            batch_every: self.batch_every,
            batch_from: self.batch_from.unwrap_or(self.batch_every),
            workers: self.workers.max(1),
            online: self.online,
            retain: self.retain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> JobRequest {
        JobRequest::new("gen:rmat?scale=8")
    }

    #[test]
    fn batches_run_every_b_epochs_from_the_first_one() {
        let mut cfg = request().into_config(2, String::new(), None);
        assert!(!(1..100).any(|e| cfg.batch_due(e)), "batch_every 0: never");
        cfg.batch_every = 20;
        cfg.batch_from = 160;
        let due: Vec<u64> = (1..=240).filter(|&e| cfg.batch_due(e)).collect();
        assert_eq!(due, vec![160, 180, 200, 220, 240]);
        // batch_from defaults to batch_every.
        let cfg = JobRequest {
            batch_every: 3,
            ..request()
        }
        .into_config(2, String::new(), None);
        let due: Vec<u64> = (1..=10).filter(|&e| cfg.batch_due(e)).collect();
        assert_eq!(due, vec![3, 6, 9]);
    }

    #[test]
    fn snapshots_need_a_checkpointed_log() {
        let mut cfg = request().into_config(2, String::new(), None);
        assert!(cfg.snapshot_due(10) && cfg.snapshot_due(20) && !cfg.snapshot_due(15));
        cfg.checkpoint = EpochCheckpoint::None;
        assert!(!cfg.snapshot_due(10), "mode none re-reads the source");
        cfg.checkpoint = EpochCheckpoint::Sync;
        cfg.snapshot_every = 0;
        assert!(!(1..100).any(|e| cfg.snapshot_due(e)));
    }

    #[test]
    fn retention_keeps_the_last_k_epochs_and_pending_batches() {
        let cfg = JobRequest {
            retain: Some(5),
            ..request()
        }
        .into_config(2, String::new(), None);
        assert_eq!(cfg.keep_from(20, None), Some(16));
        assert_eq!(cfg.keep_from(3, None), Some(0));
        assert_eq!(cfg.keep_from(20, Some(12)), Some(12));
        assert_eq!(cfg.keep_from(20, Some(18)), Some(16));
        let cfg = request().into_config(2, String::new(), None);
        assert_eq!(cfg.keep_from(20, Some(12)), None);
    }

    #[test]
    fn flags_that_contradict_each_other_are_refused() {
        let bad = [
            JobRequest {
                partitions: Some(0),
                ..request()
            },
            JobRequest {
                source: "kafka://h:1/t".into(),
                partitions: Some(2),
                ..request()
            },
            JobRequest {
                until_end: true,
                ..request()
            },
            JobRequest {
                epoch_edges: Some(0),
                ..request()
            },
            JobRequest {
                rate: Some(f64::NAN),
                ..request()
            },
            JobRequest {
                rate: Some(1e-300),
                ..request()
            },
            JobRequest {
                rate: Some(0.0),
                ..request()
            },
            JobRequest {
                retain: Some(0),
                ..request()
            },
            JobRequest {
                retain: Some(3),
                checkpoint: EpochCheckpoint::None,
                ..request()
            },
            JobRequest {
                max_bad_ratio: 1.5,
                ..request()
            },
        ];
        for r in bad {
            assert!(r.validate().is_err(), "{r:?}");
        }
        assert_eq!(request().validate(), Ok(2));
    }
}
