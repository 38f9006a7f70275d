//! Calls to the function service, from blocking code (workflow tasks):
//! each call is retried on a lost connection, a timeout or a 5xx answer, up
//! to a limit: the first retry at once (a failed invocation is usually
//! one instance's, and another answers), then with doubling backoff; a 4xx
//! answer (a malformed request) is final.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::service::Call;

/// How a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The service refused the request as malformed: retrying cannot help.
    #[error("{function}: refused ({status}): {message}")]
    Rejected {
        /// The function.
        function: &'static str,
        /// The HTTP status.
        status: u16,
        /// The service's reason.
        message: String,
    },
    /// Every attempt failed.
    #[error("{function}: failed after {attempts} attempts; last: {last}")]
    Failed {
        /// The function.
        function: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: String,
    },
    /// The answer is not what the function returns.
    #[error("{function}: unexpected answer: {message}")]
    Answer {
        /// The function.
        function: &'static str,
        /// Why.
        message: String,
    },
}

/// The header of a function's answer that tells the database operations it
/// made (with those of the functions it called).
pub const OPS_HEADER: &str = "x-db-ops";

/// A client of one function service.
#[derive(Debug, Clone)]
pub struct Functions {
    base: String,
    agent: ureq::Agent,
    attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    /// Database operations the answers reported, failed attempts included.
    ops: Arc<AtomicU64>,
}

impl Functions {
    /// A client of the service at `base` (`http://HOST:PORT`): up to 100
    /// attempts per call, the second at once, then backoff from 5 ms
    /// doubling to 500 ms, 10 s per attempt.
    pub fn new(base: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            agent,
            attempts: 100,
            backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(500),
            ops: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The same client, counting database operations afresh.
    pub fn counting(&self) -> Self {
        Self {
            ops: Arc::new(AtomicU64::new(0)),
            ..self.clone()
        }
    }

    /// Database operations that the answers to this client (and its
    /// clones that were not made by [`Functions::counting`]) reported.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Sets the attempts per call (at least 1).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Posts once: the status and body, or a transport error.
    fn once(&self, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let ops = resp
            .headers()
            .get(OPS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        self.ops.fetch_add(ops, Ordering::Relaxed);
        let bytes = resp.body_mut().read_to_vec().map_err(|e| e.to_string())?;
        Ok((status, bytes))
    }

    /// Calls a function, retrying as described above; its JSON answer.
    pub fn call(&self, call: &Call) -> Result<serde_json::Value, CallError> {
        let path = format!("/fn/{}", call.name());
        self.post(call.name(), &path, call)
    }

    /// Posts `body` as JSON to `path` (of `function`), retrying as
    /// described above; the JSON answer.
    pub fn post<B: serde::Serialize + ?Sized>(
        &self,
        function: &'static str,
        path: &str,
        body: &B,
    ) -> Result<serde_json::Value, CallError> {
        let body = serde_json::to_vec(body).map_err(|e| CallError::Answer {
            function,
            message: format!("cannot encode the request: {e}"),
        })?;
        let mut wait = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match self.once(path, &body) {
                Ok((200, bytes)) => {
                    return serde_json::from_slice(&bytes).map_err(|e| CallError::Answer {
                        function,
                        message: e.to_string(),
                    })
                }
                Ok((status, bytes)) if (400..500).contains(&status) => {
                    return Err(CallError::Rejected {
                        function,
                        status,
                        message: error_text(&bytes),
                    })
                }
                Ok((status, bytes)) => last = format!("{status}: {}", error_text(&bytes)),
                Err(e) => last = e,
            }
            if attempt > 1 && attempt < self.attempts {
                std::thread::sleep(wait);
                wait = (wait * 2).min(self.max_backoff);
            }
        }
        Err(CallError::Failed {
            function,
            attempts: self.attempts,
            last,
        })
    }

    /// Calls a function and decodes its answer as `T`.
    pub fn call_as<T: DeserializeOwned>(&self, call: &Call) -> Result<T, CallError> {
        let v = self.call(call)?;
        serde_json::from_value(v).map_err(|e| CallError::Answer {
            function: call.name(),
            message: e.to_string(),
        })
    }

    /// The process id of the service process that answers next, if any.
    pub fn health(&self) -> Option<u32> {
        let mut resp = self
            .agent
            .get(&format!("{}/health", self.base))
            .call()
            .ok()?;
        resp.body_mut().read_to_string().ok()?.trim().parse().ok()
    }
}

/// The `error` field of an error answer, or the body as text.
fn error_text(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}
