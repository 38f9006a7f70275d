//! Retries with exponential backoff on transient store errors.

use std::time::Duration;

use super::{compare_existing, PutOnce, PutOutcome, SharedStore, Store, StoreError};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles each time.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// A store wrapper that retries transient errors.
///
/// A create-if-absent whose earlier attempt failed transiently may have
/// succeeded without the answer arriving; when a retry then finds the key,
/// the stored bytes are compared with ours and identical bytes count as
/// created.
#[derive(Debug)]
pub struct RetryStore {
    inner: SharedStore,
    policy: RetryPolicy,
}

impl RetryStore {
    /// Wraps `inner`.
    pub fn new(inner: SharedStore, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    fn retry<T>(&self, mut op: impl FnMut(u32) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut attempt = 1;
        loop {
            match op(attempt) {
                Err(e) if e.is_transient() && attempt < self.policy.max_attempts => {
                    tracing::debug!(error = %e, attempt, "retrying store operation");
                    std::thread::sleep(self.policy.backoff(attempt));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn settle_put(
        &self,
        key: &str,
        value: &[u8],
        outcome: PutOutcome,
        retried: bool,
    ) -> Result<PutOutcome, StoreError> {
        if outcome == PutOutcome::AlreadyExists && retried {
            if let PutOnce::Written =
                self.retry(|_| compare_existing(self.inner.as_ref(), key, value))?
            {
                return Ok(PutOutcome::Created);
            }
        }
        Ok(outcome)
    }
}

impl Store for RetryStore {
    fn put_if_absent(&self, key: &str, value: &[u8]) -> Result<PutOutcome, StoreError> {
        let mut retried = false;
        let outcome = self.retry(|attempt| {
            retried = attempt > 1;
            self.inner.put_if_absent(key, value)
        })?;
        self.settle_put(key, value, outcome, retried)
    }

    fn put_many_if_absent(&self, items: &[(&str, &[u8])]) -> Vec<Result<PutOutcome, StoreError>> {
        let mut results: Vec<Option<Result<PutOutcome, StoreError>>> =
            (0..items.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let mut attempt = 1;
        while !pending.is_empty() {
            let batch: Vec<(&str, &[u8])> = pending.iter().map(|&i| items[i]).collect();
            let out = self.inner.put_many_if_absent(&batch);
            let mut again = Vec::new();
            for (&i, r) in pending.iter().zip(out) {
                match r {
                    Err(e) if e.is_transient() && attempt < self.policy.max_attempts => {
                        again.push(i)
                    }
                    Ok(o) => {
                        results[i] = Some(self.settle_put(items[i].0, items[i].1, o, attempt > 1))
                    }
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            if !again.is_empty() {
                std::thread::sleep(self.policy.backoff(attempt));
            }
            pending = again;
            attempt += 1;
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(StoreError::Permanent {
                        op: "put_many",
                        key: String::new(),
                        message: "internal: item left without a result".to_owned(),
                    })
                })
            })
            .collect()
    }

    fn prepare(&self, prefix: &str) {
        self.inner.prepare(prefix)
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.retry(|_| self.inner.put(key, value))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.retry(|_| self.inner.get(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.retry(|_| self.inner.list(prefix))
    }

    fn list_dir(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.retry(|_| self.inner.list_dir(prefix))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.retry(|_| self.inner.delete(key))
    }

    fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        self.retry(|_| self.inner.delete_prefix(prefix))
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
