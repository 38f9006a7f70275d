//! The status protocol: a workflow's status is a sequence of write-once
//! versions, and its owner holds a lease in them that it renews. Writing
//! version n+1 with create-if-absent is a compare-and-swap: of two writers
//! that read version n, one wins and the other learns who did.
//!
//! This module reads and writes versions and reports what happened
//! ([`Renewal`]); the run acts on it.

use std::time::Duration;

use crate::codec::{self, Kind};
use crate::error::EngineError;
use crate::failpoint;
use crate::id::WorkflowId;
use crate::layout::{status_key, status_prefix};
use crate::status::{now_ms, State, StatusRecord};
use crate::store::{compare_existing, PutOnce, PutOutcome, Store};

/// The status version an owner holds, and when it last renewed it.
pub(crate) struct LeaseState {
    /// The newest version this owner knows.
    pub current: StatusRecord,
    /// When it was last renewed (ms since the Unix epoch).
    pub last_renew_ms: u64,
}

impl LeaseState {
    /// Holding `current`, renewed now.
    pub fn new(current: StatusRecord) -> Self {
        Self {
            current,
            last_renew_ms: now_ms(),
        }
    }
}

/// What a renewal found.
pub(crate) struct Renewal {
    /// A cancel or stop that someone else requested, seen on the way.
    pub requested: Option<State>,
    /// Whether the lease is still ours.
    pub outcome: RenewOutcome,
}

/// How a renewal ended.
pub(crate) enum RenewOutcome {
    /// Renewed: the lease is ours until its new expiry.
    Renewed,
    /// Another owner took the workflow over: write nothing more.
    Fenced {
        /// The new owner.
        by: String,
        /// Its generation.
        generation: u64,
    },
    /// The store failed; the lease is as it was (renew again later).
    Failed(EngineError),
}

/// The current status version of a workflow, `None` if it has none.
pub(crate) fn latest_status(
    store: &dyn Store,
    wid: &WorkflowId,
) -> Result<Option<StatusRecord>, EngineError> {
    let keys = store.list(&status_prefix(wid))?;
    let Some(last) = keys.last() else {
        return Ok(None);
    };
    let Some(bytes) = store.get(last)? else {
        return Err(EngineError::Internal(format!(
            "status {last} listed but not readable"
        )));
    };
    Ok(Some(codec::decode(last, Kind::Status, &bytes)?))
}

/// Encodes a record of the engine.
pub(crate) fn encode<T: serde::Serialize>(kind: Kind, v: &T) -> Result<Vec<u8>, EngineError> {
    codec::encode(kind, v).map_err(|e| EngineError::Internal(format!("encoding a record: {e}")))
}

/// Writes the next status version; on a lost race returns the winner.
pub(crate) fn write_next(
    store: &dyn Store,
    wid: &WorkflowId,
    rec: &StatusRecord,
) -> Result<Result<(), StatusRecord>, EngineError> {
    let key = status_key(wid, rec.version);
    let bytes = encode(Kind::Status, rec)?;
    failpoint::hit("status.before_write");
    match store.put_if_absent(&key, &bytes)? {
        PutOutcome::Created => {
            failpoint::hit("status.after_write");
            Ok(Ok(()))
        }
        PutOutcome::AlreadyExists => {
            if let PutOnce::Written = compare_existing(store, &key, &bytes)? {
                return Ok(Ok(()));
            }
            let latest = latest_status(store, wid)?.ok_or_else(|| {
                EngineError::Internal(format!("status of {wid} vanished during an update"))
            })?;
            Ok(Err(latest))
        }
    }
}

/// The owner's name in a fencing error.
fn owner_name(rec: &StatusRecord) -> String {
    rec.owner
        .as_ref()
        .map(|o| o.to_string())
        .unwrap_or_else(|| "another process".to_owned())
}

/// Renews the lease of generation `generation` for another `lease`,
/// writing on top of requests made meanwhile (they are reported).
pub(crate) fn renew(
    store: &dyn Store,
    wid: &WorkflowId,
    generation: u64,
    lease: Duration,
    st: &mut LeaseState,
) -> Renewal {
    let mut requested = None;
    loop {
        let mut next = st.current.clone();
        next.version += 1;
        next.lease_until_ms = now_ms() + lease.as_millis() as u64;
        next.updated_ms = now_ms();
        let outcome = match write_next(store, wid, &next) {
            Ok(Ok(())) => {
                st.current = next;
                st.last_renew_ms = now_ms();
                RenewOutcome::Renewed
            }
            Ok(Err(latest)) if latest.generation != generation => {
                let outcome = RenewOutcome::Fenced {
                    by: owner_name(&latest),
                    generation: latest.generation,
                };
                st.current = latest;
                outcome
            }
            Ok(Err(latest)) => {
                if matches!(latest.state, State::CancelRequested | State::StopRequested) {
                    requested = Some(latest.state);
                }
                st.current = latest;
                continue; // renew on top of the request: the lease stays ours
            }
            Err(e) => RenewOutcome::Failed(e),
        };
        return Renewal { requested, outcome };
    }
}

/// Writes the final status `state` of generation `generation`, on top of
/// whatever requests were written meanwhile; fails if another owner took
/// over.
pub(crate) fn write_final(
    store: &dyn Store,
    wid: &WorkflowId,
    generation: u64,
    st: &mut LeaseState,
    state: State,
    error: Option<String>,
) -> Result<(), EngineError> {
    loop {
        let next = StatusRecord::unowned(st.current.version + 1, state, generation, error.clone());
        match write_next(store, wid, &next)? {
            Ok(()) => {
                st.current = next;
                return Ok(());
            }
            Err(latest) => {
                if latest.generation != generation {
                    return Err(EngineError::Fenced {
                        wid: wid.clone(),
                        by: latest
                            .owner
                            .as_ref()
                            .map(|o| o.to_string())
                            .unwrap_or_default(),
                        generation: latest.generation,
                    });
                }
                st.current = latest;
            }
        }
    }
}
