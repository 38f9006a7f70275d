//! A fault-injecting store wrapper for tests (feature `testing`): a seeded fraction of requests
//! fail before reaching the store, fail after it acted (the answer is lost), or
//! stall.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{PutOutcome, SharedStore, Store, StoreError};

/// What to inject, as fractions of requests in `[0, 1]`.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Requests that fail without reaching the store.
    pub fail_before: f64,
    /// Requests that reach the store and then report a failure.
    pub fail_after: f64,
    /// Requests delayed by `stall`.
    pub stall: f64,
    /// The delay of a stalled request.
    pub stall_for: Duration,
    /// Seed of the deterministic fault sequence.
    pub seed: u64,
}

/// A [`Store`] that injects [`Faults`] into another.
#[derive(Debug)]
pub struct FaultyStore {
    inner: SharedStore,
    faults: Faults,
    counter: AtomicU64,
    injected: AtomicU64,
}

/// SplitMix64: a pinned, tiny generator, so that a seed means the same faults
/// whatever the crate versions.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

enum Fault {
    None,
    Before,
    After,
}

impl FaultyStore {
    /// Wraps `inner`.
    pub fn new(inner: SharedStore, faults: Faults) -> Self {
        Self {
            inner,
            faults,
            counter: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// How many faults (failures, not stalls) were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn draw(&self) -> Fault {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let r = splitmix64(self.faults.seed ^ splitmix64(n));
        let u = (r >> 11) as f64 / (1u64 << 53) as f64;
        let s = (splitmix64(r) >> 11) as f64 / (1u64 << 53) as f64;
        if s < self.faults.stall {
            std::thread::sleep(self.faults.stall_for);
        }
        if u < self.faults.fail_before {
            self.injected.fetch_add(1, Ordering::Relaxed);
            Fault::Before
        } else if u < self.faults.fail_before + self.faults.fail_after {
            self.injected.fetch_add(1, Ordering::Relaxed);
            Fault::After
        } else {
            Fault::None
        }
    }

    fn with<T>(
        &self,
        op: &'static str,
        key: &str,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let injected = |when: &str| StoreError::Transient {
            op,
            key: key.to_owned(),
            message: format!("injected fault ({when})"),
        };
        match self.draw() {
            Fault::None => f(),
            Fault::Before => Err(injected("before the request")),
            Fault::After => {
                f()?;
                Err(injected("answer lost after the request"))
            }
        }
    }
}

impl Store for FaultyStore {
    fn put_if_absent(&self, key: &str, value: &[u8]) -> Result<PutOutcome, StoreError> {
        self.with("put_if_absent", key, || {
            self.inner.put_if_absent(key, value)
        })
    }

    fn prepare(&self, prefix: &str) {
        self.inner.prepare(prefix)
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.with("put", key, || self.inner.put(key, value))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with("get", key, || self.inner.get(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.with("list", prefix, || self.inner.list(prefix))
    }

    fn list_dir(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.with("list_dir", prefix, || self.inner.list_dir(prefix))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.with("delete", key, || self.inner.delete(key))
    }

    fn describe(&self) -> String {
        format!("faulty({})", self.inner.describe())
    }
}
