//! Batch work (recomputations, snapshots) runs at a lower scheduling
//! priority than the online update, whose latency is the one that matters.

/// The scheduling priority (nice) of batch work.
pub(crate) const BATCH_NICE: i32 = 10;

/// Runs `f` on a thread of its own at a lower scheduling priority (nice
/// [`BATCH_NICE`] on Linux, inherited by the timely workers that it
/// starts), so that a batch recomputation beside the stream yields the
/// cores to the online update. The priority goes with the thread: nothing
/// else is slowed.
pub(crate) fn at_low_priority<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            lower_this_thread();
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Lowers the calling thread's priority to [`BATCH_NICE`] (never raises
/// it), best effort.
pub(crate) fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid, getpriority and setpriority take plain integers and
    // touch no memory of ours; if they fail the thread keeps its priority.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if now < BATCH_NICE {
            libc::setpriority(libc::PRIO_PROCESS, tid, BATCH_NICE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of the calling thread (Linux).
    #[cfg(target_os = "linux")]
    fn nice() -> i32 {
        // SAFETY: plain integers in and out.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid);
            libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t)
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn batch_work_runs_at_low_priority_and_leaves_the_caller_alone() {
        let before = nice();
        // The work's thread, and the threads it starts, run at the batch
        // priority (or lower, if the caller already was).
        let (inner, child) = at_low_priority(|| {
            let child = std::thread::spawn(nice).join().expect("child thread");
            (nice(), child)
        });
        assert_eq!(inner, BATCH_NICE.max(before));
        assert_eq!(child, inner);
        assert_eq!(nice(), before);
    }
}
