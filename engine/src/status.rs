//! Workflow records: metadata, status versions, owners and leases, and the
//! pure decision of what `resume` may do.
//!
//! A workflow's status is a sequence of write-once objects
//! `workflows/<wid>/status/<n>`; the highest `n` is current. Writing version
//! `n + 1` with create-if-absent is a compare-and-swap on both backends: of two
//! writers that read version `n`, one wins and the other learns it lost.

use serde::{Deserialize, Serialize};

/// Where a workflow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// An owner is running it (or was, if its lease expired).
    Running,
    /// Finished with its output committed.
    Successful,
    /// A task failed after its retries; `resume` retries what is not committed.
    Failed,
    /// Canceled: final.
    Canceled,
    /// Stopped on request, resumable.
    Stopped,
    /// A cancel was asked for; the owner cancels at its next lease renewal.
    CancelRequested,
    /// A stop was asked for; the owner stops at its next lease renewal.
    StopRequested,
}

impl State {
    /// Whether no owner will change it again by itself.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Successful | State::Failed | State::Canceled | State::Stopped
        )
    }
}

/// Who owns a workflow: a process on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Unique id of the owning engine instance.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Process start time in clock ticks since boot (tells a reused pid apart).
    pub start_ticks: u64,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {} ({})", self.pid, self.host, self.id)
    }
}

impl Owner {
    /// This process.
    pub fn this_process(instance: &str) -> Self {
        let pid = std::process::id();
        Self {
            id: instance.to_owned(),
            host: hostname(),
            pid,
            start_ticks: process_start_ticks(pid).unwrap_or(0),
        }
    }

    /// Whether this owner's process still runs (only answerable on its host).
    pub fn is_alive_here(&self) -> Option<bool> {
        if self.host != hostname() {
            return None;
        }
        match process_start_ticks(self.pid) {
            None => Some(false),
            Some(t) => Some(self.start_ticks == 0 || t == self.start_ticks),
        }
    }
}

/// The machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Start time of a process (field 22 of /proc/PID/stat); `None` if it is gone.
fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields restart after ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let state = rest.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// One status version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// Its version number (the `n` of `status/<n>`).
    pub version: u64,
    /// The state.
    pub state: State,
    /// Ownership generation: raised by every takeover.
    pub generation: u64,
    /// The owner, while one holds it.
    pub owner: Option<Owner>,
    /// The owner's lease ends then (ms since the Unix epoch).
    pub lease_until_ms: u64,
    /// When this version was written (ms since the Unix epoch).
    pub updated_ms: u64,
    /// The error, for a failed workflow.
    pub error: Option<String>,
}

impl StatusRecord {
    /// A version held by no owner (a final state, or a state before any
    /// owner), written now.
    pub fn unowned(version: u64, state: State, generation: u64, error: Option<String>) -> Self {
        Self {
            version,
            state,
            generation,
            owner: None,
            lease_until_ms: 0,
            updated_ms: now_ms(),
            error,
        }
    }
}

/// A workflow's metadata, written once at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Name of the registered DAG, or "" for an unregistered one.
    pub dag: String,
    /// Arguments (JSON).
    pub args: Vec<u8>,
    /// Shape of the DAG (names, inputs, options).
    pub fingerprint: u64,
    /// Creation time (ms since the Unix epoch).
    pub created_ms: u64,
    /// Number of tasks.
    pub tasks: u64,
}

/// What `resume` may do, decided from the current status alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Take ownership with this generation.
    TakeOver {
        /// The new generation.
        generation: u64,
    },
    /// Finished successfully: return its output.
    AlreadySucceeded,
    /// Canceled: nothing to resume.
    Canceled,
    /// A live owner holds a valid lease.
    Owned {
        /// Who.
        owner: Owner,
        /// Until when (ms since the Unix epoch).
        lease_until_ms: u64,
        /// Whether its process is known to run (same host, alive).
        alive: Option<bool>,
    },
}

/// Decides a resume: `now_ms` is the local clock, `force` takes over a live
/// owner.
pub fn decide_resume(current: &StatusRecord, now_ms: u64, force: bool) -> Decision {
    let take = Decision::TakeOver {
        generation: current.generation + 1,
    };
    match current.state {
        State::Successful => Decision::AlreadySucceeded,
        State::Canceled => Decision::Canceled,
        State::Failed | State::Stopped => take,
        State::Running | State::CancelRequested | State::StopRequested => {
            let Some(owner) = &current.owner else {
                return if current.state == State::CancelRequested {
                    Decision::Canceled
                } else {
                    take
                };
            };
            let alive = owner.is_alive_here();
            if force || alive == Some(false) || now_ms >= current.lease_until_ms {
                // A cancel asked of an owner that is gone still holds.
                if current.state == State::CancelRequested {
                    Decision::Canceled
                } else {
                    take
                }
            } else {
                Decision::Owned {
                    owner: owner.clone(),
                    lease_until_ms: current.lease_until_ms,
                    alive,
                }
            }
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A workflow's state as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkflowInfo {
    /// Its id.
    pub id: crate::id::WorkflowId,
    /// Name of the registered DAG ("" if unregistered).
    pub dag: String,
    /// Its state.
    pub state: State,
    /// Ownership generation.
    pub generation: u64,
    /// Current owner, while running.
    pub owner: Option<Owner>,
    /// Lease end (ms since the Unix epoch).
    pub lease_until_ms: u64,
    /// Last update (ms since the Unix epoch).
    pub updated_ms: u64,
    /// The error of a failed run.
    pub error: Option<String>,
    /// Number of tasks.
    pub tasks: u64,
    /// Whether it has per-workflow records (some task checkpoints); a run of
    /// Skip tasks only is recorded in the group-committed run journal.
    pub durable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: State, owner: Option<Owner>, lease: u64) -> StatusRecord {
        StatusRecord {
            version: 3,
            state,
            generation: 2,
            owner,
            lease_until_ms: lease,
            updated_ms: 0,
            error: None,
        }
    }

    fn remote() -> Owner {
        Owner {
            id: "x".into(),
            host: "some-other-host.invalid".into(),
            pid: 1,
            start_ticks: 1,
        }
    }

    #[test]
    fn a_live_remote_owner_is_waited_for_unless_forced() {
        let r = rec(State::Running, Some(remote()), 2_000);
        assert!(matches!(
            decide_resume(&r, 1_000, false),
            Decision::Owned { alive: None, .. }
        ));
        assert_eq!(
            decide_resume(&r, 1_000, true),
            Decision::TakeOver { generation: 3 }
        );
    }

    #[test]
    fn an_expired_lease_is_taken_over_with_a_higher_generation() {
        let r = rec(State::Running, Some(remote()), 2_000);
        assert_eq!(
            decide_resume(&r, 2_000, false),
            Decision::TakeOver { generation: 3 }
        );
    }

    #[test]
    fn a_dead_owner_on_this_host_is_taken_over_at_once() {
        let mut dead = Owner::this_process("me");
        dead.pid = u32::MAX - 7; // no such process
        let r = rec(State::Running, Some(dead), u64::MAX);
        assert_eq!(
            decide_resume(&r, 0, false),
            Decision::TakeOver { generation: 3 }
        );
    }

    #[test]
    fn this_live_process_is_an_owner_to_wait_for() {
        let r = rec(State::Running, Some(Owner::this_process("me")), u64::MAX);
        assert!(matches!(
            decide_resume(&r, 0, false),
            Decision::Owned {
                alive: Some(true),
                ..
            }
        ));
    }

    #[test]
    fn final_states() {
        assert_eq!(
            decide_resume(&rec(State::Successful, None, 0), 0, true),
            Decision::AlreadySucceeded
        );
        assert_eq!(
            decide_resume(&rec(State::Canceled, None, 0), 0, true),
            Decision::Canceled
        );
        assert_eq!(
            decide_resume(&rec(State::Failed, None, 0), 0, false),
            Decision::TakeOver { generation: 3 }
        );
        assert_eq!(
            decide_resume(&rec(State::Stopped, None, 0), 0, false),
            Decision::TakeOver { generation: 3 }
        );
    }
    #[test]
    fn a_cancel_requested_of_a_vanished_owner_is_not_lost_by_a_takeover() {
        let r = rec(State::CancelRequested, Some(remote()), 2_000);
        assert_eq!(decide_resume(&r, 3_000, false), Decision::Canceled);
        assert_eq!(decide_resume(&r, 1_000, true), Decision::Canceled);
        let stop = rec(State::StopRequested, Some(remote()), 2_000);
        assert_eq!(
            decide_resume(&stop, 3_000, false),
            Decision::TakeOver { generation: 3 }
        );
    }
}
