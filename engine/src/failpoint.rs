//! Named failpoints for crash tests: with the `failpoints` feature, the
//! process kills itself with SIGKILL at the k-th hit of a named point.
//!
//! `EXOFLOW_FAILPOINTS="commit.before_publish=3,status.before_write=1"` kills the
//! process the 3rd time a commit reaches the point between its write and its
//! publication, or the first time a status update starts. Without the feature
//! every point compiles to nothing.

/// Passes a named point (see the module doc).
#[inline(always)]
pub fn hit(name: &'static str) {
    #[cfg(feature = "failpoints")]
    imp::hit(name);
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

#[cfg(feature = "failpoints")]
mod imp {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    fn table() -> &'static HashMap<String, (u64, AtomicU64)> {
        static TABLE: OnceLock<HashMap<String, (u64, AtomicU64)>> = OnceLock::new();
        TABLE.get_or_init(|| {
            let spec = std::env::var("EXOFLOW_FAILPOINTS").unwrap_or_default();
            spec.split(',')
                .filter_map(|item| {
                    let (name, k) = item.trim().split_once('=')?;
                    let k = k.trim().parse::<u64>().ok()?;
                    Some((name.trim().to_owned(), (k, AtomicU64::new(0))))
                })
                .collect()
        })
    }

    pub fn hit(name: &'static str) {
        let t = table();
        if t.is_empty() {
            return;
        }
        if let Some((k, count)) = t.get(name) {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            if n == *k {
                eprintln!("exoflow: failpoint {name} hit {n} time(s): killing the process");
                // SAFETY: getpid and kill have no memory-safety preconditions.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
        }
    }
}
