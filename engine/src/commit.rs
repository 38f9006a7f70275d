//! The commit path: task outputs and records (metadata, status versions,
//! timings) queued to committer threads, each of which takes the next group
//! from the queue and writes it with one store call (group commit), then
//! answers every item. A lone output may be committed on its task's own
//! thread instead ([`Commits::send_output`]).
//!
//! Outputs are committed on behalf of a [`CommitOwner`] (a run): before a
//! group is written each owner confirms that it may still write (its lease
//! holds), and it hears the store's answer for each of its outputs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::error::EngineError;
use crate::failpoint;
use crate::store::{compare_existing, PutOnce, PutOutcome, SharedStore, StoreError};

/// Whose outputs are committed: a run, seen from the commit path.
pub(crate) trait CommitOwner: Send + Sync {
    /// Called once per group before the group is written: whether this
    /// owner may still write (renewing a lapsed lease first). `false`
    /// fences it: its outputs in the group are dropped.
    fn may_write(&self) -> bool;
    /// The store's answer for output `node` at `key`.
    fn committed(self: Arc<Self>, node: usize, key: &str, result: Result<PutOnce, EngineError>);
    /// The commit of one output is over (answered or dropped).
    fn released(self: Arc<Self>);
}

/// What a record's writer is told.
pub(crate) type RecordDone = Box<dyn FnOnce(Result<PutOutcome, StoreError>) + Send>;

/// What the committer writes: task outputs, and records whose callback gets
/// the store's answer.
pub(crate) enum Commit {
    /// A task's output.
    Output(CommitReq),
    /// A record of the engine.
    Record {
        key: String,
        bytes: Vec<u8>,
        done: RecordDone,
        /// A best-effort record written in the same group (timing records
        /// with the final status): durable when `done` is called; a
        /// failure is logged.
        companion: Option<(String, Vec<u8>)>,
    },
}

/// A task output for the committer.
pub(crate) struct CommitReq {
    pub owner: Arc<dyn CommitOwner>,
    pub node: usize,
    pub key: String,
    pub bytes: Vec<u8>,
}

/// The `done` of a best-effort record: a failure is logged.
pub(crate) fn log_failure(key: String) -> RecordDone {
    Box::new(move |r| {
        if let Err(e) = r {
            tracing::warn!(key = %key, error = %e, "record not written");
        }
    })
}

/// The way to the committer threads, with a count of the commits queued
/// or being written.
#[derive(Clone)]
pub(crate) struct Commits {
    tx: Sender<Commit>,
    busy: Arc<AtomicUsize>,
    store: SharedStore,
}

impl Commits {
    /// Starts `committers` threads writing groups of at most `batch_max`
    /// commits to `store`.
    pub fn start(store: SharedStore, committers: usize, batch_max: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let busy = Arc::new(AtomicUsize::new(0));
        for i in 0..committers.max(1) {
            let (store, rx, busy) = (store.clone(), rx.clone(), busy.clone());
            let batch_max = batch_max.max(1);
            let spawned = std::thread::Builder::new()
                .name(format!("exoflow-committer-{i}"))
                .spawn(move || committer(rx, store, batch_max, busy));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a committer thread");
            }
        }
        Self { tx, busy, store }
    }

    /// Queues a commit for the committer threads.
    pub fn send(&self, c: Commit) -> Result<(), crossbeam_channel::SendError<Commit>> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.tx.send(c).inspect_err(|_| {
            self.busy.fetch_sub(1, Ordering::SeqCst);
        })
    }

    /// Hands a record to the committer; `done` gets the store's answer
    /// (an error if the committer is gone).
    pub fn send_record(&self, key: String, bytes: Vec<u8>, done: RecordDone) {
        if let Err(e) = self.send(Commit::Record {
            key,
            bytes,
            done,
            companion: None,
        }) {
            if let Commit::Record { done, key, .. } = e.0 {
                done(Err(StoreError::Permanent {
                    op: "commit",
                    key,
                    message: "the committer stopped".to_owned(),
                }));
            }
        }
    }

    /// Commits a task's output: on this thread when no other commit is
    /// queued or being written (it would join no group, and a committer's
    /// wake-up is latency that a lone Sync hop pays in full) and
    /// `may_block()` (asked only then: nothing else wants this thread while
    /// it waits out the flush), else queued, to be written with the group
    /// it joins.
    pub fn send_output(
        &self,
        req: CommitReq,
        may_block: impl FnOnce() -> bool,
    ) -> Result<(), crossbeam_channel::SendError<Commit>> {
        if self.busy.load(Ordering::SeqCst) == 0
            && may_block()
            && self
                .busy
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            commit_group(vec![Commit::Output(req)], &self.store);
            self.busy.fetch_sub(1, Ordering::SeqCst);
            return Ok(());
        }
        self.send(Commit::Output(req))
    }
}

/// A committer thread: groups what is queued (up to `batch_max` commits or
/// 64 MiB) and writes each group.
fn committer(rx: Receiver<Commit>, store: SharedStore, batch_max: usize, busy: Arc<AtomicUsize>) {
    const BATCH_BYTES: usize = 64 << 20;
    let size = |c: &Commit| match c {
        Commit::Output(r) => r.bytes.len(),
        Commit::Record {
            bytes, companion, ..
        } => bytes.len() + companion.as_ref().map_or(0, |c| c.1.len()),
    };
    while let Ok(first) = rx.recv() {
        let mut bytes = size(&first);
        let mut batch = vec![first];
        while batch.len() < batch_max && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(c) => {
                    bytes += size(&c);
                    batch.push(c);
                }
                Err(_) => break,
            }
        }
        let n = batch.len();
        commit_group(batch, &store);
        busy.fetch_sub(n, Ordering::SeqCst);
    }
}

/// The owner of an output, as a key for "once per owner".
fn owner_id(owner: &Arc<dyn CommitOwner>) -> *const () {
    Arc::as_ptr(owner).cast::<()>()
}

/// Writes one group of commits with one store call, then answers each.
fn commit_group(batch: Vec<Commit>, store: &SharedStore) {
    let mut outputs: Vec<CommitReq> = Vec::new();
    let mut records = Vec::new();
    for c in batch {
        match c {
            Commit::Output(r) => outputs.push(r),
            Commit::Record {
                key,
                bytes,
                done,
                companion,
            } => {
                if let Some((k, b)) = companion {
                    let log = log_failure(k.clone());
                    records.push((k, b, log));
                }
                records.push((key, bytes, done))
            }
        }
    }
    // An owner whose lease lapsed (the process was paused, say) must learn
    // whether it still owns the workflow before it writes.
    let mut may_write: HashMap<*const (), bool> = HashMap::new();
    let (live, dead): (Vec<CommitReq>, Vec<CommitReq>) = outputs.into_iter().partition(|r| {
        *may_write
            .entry(owner_id(&r.owner))
            .or_insert_with(|| r.owner.may_write())
    });
    for r in dead {
        r.owner.released();
    }
    if live.is_empty() && records.is_empty() {
        return;
    }
    let has_status = records.iter().any(|(k, _, _)| k.contains("/status/"));
    if has_status {
        failpoint::hit("status.before_write");
    }
    failpoint::hit("commit.before_write");
    let items: Vec<(&str, &[u8])> = live
        .iter()
        .map(|r| (r.key.as_str(), r.bytes.as_slice()))
        .chain(records.iter().map(|(k, b, _)| (k.as_str(), b.as_slice())))
        .collect();
    let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.put_many_if_absent(&items)
    }))
    .unwrap_or_else(|_| {
        items
            .iter()
            .map(|(k, _)| {
                Err(StoreError::Permanent {
                    op: "commit",
                    key: (*k).to_owned(),
                    message: "the store panicked".to_owned(),
                })
            })
            .collect()
    });
    let mut results = results.into_iter();
    failpoint::hit("commit.after_write");
    if has_status {
        failpoint::hit("status.after_write");
    }
    for req in &live {
        let r = match results.next() {
            Some(Ok(PutOutcome::Created)) => Ok(PutOnce::Written),
            Some(Ok(PutOutcome::AlreadyExists)) => {
                compare_existing(store.as_ref(), &req.key, &req.bytes).map_err(EngineError::from)
            }
            Some(Err(e)) => Err(EngineError::from(e)),
            None => Err(EngineError::Internal(
                "the store answered fewer items than asked".to_owned(),
            )),
        };
        req.owner.clone().committed(req.node, &req.key, r);
    }
    for (key, _, done) in records {
        done(results.next().unwrap_or_else(|| {
            Err(StoreError::Permanent {
                op: "commit",
                key,
                message: "the store answered fewer items than asked".to_owned(),
            })
        }));
    }
    for req in live {
        req.owner.released();
    }
}
