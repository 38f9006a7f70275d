//! The committer: one thread per run that writes, in epoch order, each
//! epoch's log parts (answering with their checksums once durable), then its
//! COMMIT (write-once, after every part and after the COMMIT before), then
//! its outputs and the run's timings. [`Progress`] tells the rest of the
//! run how far it got, or why it stopped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{corrupt, Context, Result, StreamError};
use crossbeam_channel::{Receiver, Sender};
use exoflow_engine::codec::{self, Kind};
use exoflow_engine::failpoint;
use exoflow_engine::store::{put_once, PutOnce, Store};
use exoflow_ingest::epoch::Slice;

use crate::epoch_log::{EpochCommit, EpochPartOut};
use crate::layout::Layout;
use crate::{now_ms, write_once};

/// One row of `epochs.csv`.
#[derive(Debug, Clone, Default)]
pub(crate) struct EpochMetrics {
    pub(crate) epoch: u64,
    pub(crate) edges: u64,
    pub(crate) closed_at: u64,
    pub(crate) log_durable_at: u64,
    pub(crate) online_done_at: u64,
    pub(crate) output_committed_at: u64,
    /// What waited in the source when the epoch was cut, with its unit
    /// (bytes, messages, draws, edges), if the source can tell.
    pub(crate) lag: Option<(u64, &'static str)>,
}

/// What the committer thread is asked to do, in epoch order.
pub(crate) enum CommitterJob {
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
pub(crate) type PartsDurable = std::result::Result<(u64, Vec<u32>), String>;

/// An epoch to commit: its record, its outputs and its timings.
pub(crate) struct CommitJob {
    pub(crate) commit: EpochCommit,
    pub(crate) output: Vec<u8>,
    pub(crate) changes: Option<Vec<u8>>,
    pub(crate) rejected: Option<Vec<u8>>,
    pub(crate) metrics: EpochMetrics,
    /// The parts' durability, if the main thread did not wait for it.
    pub(crate) durable: Option<Receiver<PartsDurable>>,
}

/// Progress of the committer, shared with the streaming loop, the
/// snapshot writer and the batch tasks.
pub(crate) struct Progress {
    error: parking_lot::Mutex<Option<String>>,
    /// The last epoch whose COMMIT is written.
    committed: parking_lot::Mutex<u64>,
    commit_cv: parking_lot::Condvar,
    /// Set when the run ends: waiters give up.
    closing: AtomicBool,
}

impl Progress {
    /// A run whose committed prefix ends at epoch `committed`.
    pub(crate) fn new(committed: u64) -> Self {
        Self {
            error: parking_lot::Mutex::new(None),
            committed: parking_lot::Mutex::new(committed),
            commit_cv: parking_lot::Condvar::new(),
            closing: AtomicBool::new(false),
        }
    }

    /// Records the run's first error.
    pub(crate) fn fail(&self, e: StreamError) {
        let mut slot = self.error.lock();
        if slot.is_none() {
            *slot = Some(e.report());
        }
    }

    /// Whether the run failed.
    pub(crate) fn failed(&self) -> bool {
        self.error.lock().is_some()
    }

    /// The run's first error, taken.
    pub(crate) fn take_error(&self) -> Option<String> {
        self.error.lock().take()
    }

    /// Epoch `e` is committed.
    fn committed(&self, e: u64) {
        *self.committed.lock() = e;
        self.commit_cv.notify_all();
    }

    /// The run ends: waiters for commits give up.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.commit_cv.notify_all();
    }

    /// Waits until `COMMIT(e)` is written; fails when the run ends before.
    pub(crate) fn wait_committed(&self, e: u64) -> Result<()> {
        let mut committed = self.committed.lock();
        loop {
            if *committed >= e {
                return Ok(());
            }
            if self.closing.load(Ordering::SeqCst) || self.failed() {
                return Err(StreamError::Failed(format!(
                    "the run ended before epoch {e} committed"
                )));
            }
            self.commit_cv
                .wait_for(&mut committed, Duration::from_millis(100));
        }
    }
}

/// The committer thread's body: serves `jobs` until the channel closes;
/// after the first error it drains them without acting.
pub(crate) fn committer(
    store: Arc<dyn Store>,
    keys: Layout,
    generation: u64,
    jobs: Receiver<CommitterJob>,
    progress: Arc<Progress>,
    quiet: bool,
) {
    let mut rows: Vec<EpochMetrics> = Vec::new();
    for job in jobs {
        if progress.failed() {
            continue; // drain without acting
        }
        match job {
            CommitterJob::Parts {
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
                let result = written.map(|crcs| (now_ms(), crcs)).map_err(|e| e.report());
                if let Err(e) = &result {
                    progress.fail(StreamError::Failed(format!("epoch {epoch}: {e}")));
                }
                let _ = durable.send(result);
            }
            CommitterJob::Commit(job) => {
                let epoch = job.commit.epoch;
                if let Err(e) =
                    commit_epoch(store.as_ref(), &keys, generation, *job, &mut rows, quiet)
                {
                    progress.fail(e);
                } else {
                    progress.committed(epoch);
                }
            }
        }
    }
}

/// Commits epoch `job.commit.epoch` once its parts are durable, then
/// publishes its outputs and rewrites the run's `epochs.csv`.
fn commit_epoch(
    store: &dyn Store,
    keys: &Layout,
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
            Ok(Err(msg)) => return Err(StreamError::Failed(format!("epoch {e}: {msg}"))),
            Err(_) => {
                return Err(StreamError::Failed(format!(
                    "epoch {e}: the log writer stopped"
                )))
            }
        }
    }
    failpoint::hit("stream.before_commit");
    let bytes = codec::encode(Kind::EpochCommit, &job.commit)?;
    match put_once(store, &keys.commit(e), &bytes)? {
        PutOnce::Written => {}
        PutOnce::Differs(_) => corrupt!(
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
