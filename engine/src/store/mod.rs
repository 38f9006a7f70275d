//! The store: a few byte-level operations on named objects, with the
//! consistency the commit protocol relies on.
//!
//! # Contract
//! - Keys are `/`-separated components checked by [`crate::id::validate_key`].
//! - [`Store::put_if_absent`] is atomic: of concurrent creators of one key
//!   exactly one gets [`PutOutcome::Created`]; the object is then durable and
//!   whole. A failed or interrupted put leaves either nothing or the whole
//!   object, never a part of it under its key.
//! - Reads see every earlier completed write (read-after-write, and listings
//!   see created keys).
//! - [`Store::put`] replaces atomically: a reader sees the old or the new bytes.
//!   It is used only for files that are observations (metrics), never for
//!   commits.
//! - Errors say whether a retry may help ([`StoreError::is_transient`]).
//!
//! Backends: [`memory::MemStore`] (tests and scenarios), [`local::LocalStore`]
//! (a directory; the embedded default) and [`s3::S3Store`]. Wrappers:
//! [`retry::RetryStore`] (backoff on transient errors) and
//! [`faulty::FaultyStore`] (seeded injected failures and stalls, for tests).

mod commit_log;
#[cfg(any(test, feature = "testing"))]
pub mod faulty;
pub mod local;
pub mod memory;
pub mod retry;
pub mod s3;

use std::fmt;
use std::sync::Arc;

use crate::id::InvalidId;

/// What a create-if-absent did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was created by this call.
    Created,
    /// The key existed already; nothing was written.
    AlreadyExists,
}

/// An error of a store operation, naming the operation and the key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key or prefix is not a valid name.
    #[error(transparent)]
    InvalidKey(#[from] InvalidId),
    /// A local I/O error.
    #[error("{op} {key}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The key or path.
        key: String,
        /// The error.
        source: std::io::Error,
    },
    /// A failure that may pass: throttling, a 5xx, a timeout, a dropped
    /// connection, an injected fault.
    #[error("{op} {key}: temporary failure: {message}")]
    Transient {
        /// The operation.
        op: &'static str,
        /// The key.
        key: String,
        /// What happened.
        message: String,
    },
    /// A failure that a retry will not fix: a missing bucket, refused
    /// credentials, a permission error.
    #[error("{op} {key}: {message}")]
    Permanent {
        /// The operation.
        op: &'static str,
        /// The key.
        key: String,
        /// What happened and what to fix.
        message: String,
    },
}

impl StoreError {
    /// Whether retrying the same operation may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Transient { .. } => true,
            StoreError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    pub(crate) fn io(op: &'static str, key: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            key: key.into(),
            source,
        }
    }
}

/// A key-value object store with atomic create-if-absent (see the module doc
/// for the full contract).
pub trait Store: Send + Sync + fmt::Debug {
    /// Creates `key` with `value` unless it exists; durable when it returns.
    fn put_if_absent(&self, key: &str, value: &[u8]) -> Result<PutOutcome, StoreError>;

    /// Creates many keys, each as by [`Store::put_if_absent`], durable when it
    /// returns. Backends override it to share one flush among all (group
    /// commit) or to issue the writes concurrently.
    fn put_many_if_absent(&self, items: &[(&str, &[u8])]) -> Vec<Result<PutOutcome, StoreError>> {
        items
            .iter()
            .map(|(k, v)| self.put_if_absent(k, v))
            .collect()
    }

    /// Announces that keys under `prefix` (ending with `/`) are about to be
    /// created, so that a backend can set up what they need ahead of the
    /// first one, off its path: in the local store, a commit log beside the
    /// prefix's directory that every small object below it (at any depth)
    /// is appended to, made durable by the next flush of its parent rather
    /// than by a flush of its own. A hint: failing or doing nothing is
    /// allowed, and object stores have nothing to prepare.
    fn prepare(&self, prefix: &str) {
        let _ = prefix;
    }

    /// Writes `key`, replacing any earlier value atomically.
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Reads `key`; `None` if absent.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// All keys that start with `prefix`, in ascending byte order.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// The names directly below `prefix` (which is empty or ends with `/`),
    /// ascending; a name that has keys below it ends with `/`.
    fn list_dir(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Deletes `key`; deleting a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Deletes every key that starts with `prefix`; returns how many.
    fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let keys = self.list(prefix)?;
        for k in &keys {
            self.delete(k)?;
        }
        Ok(keys.len())
    }

    /// Where the store is, for messages (`/path/to/dir`, `s3://bucket/prefix`).
    fn describe(&self) -> String;
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// Result of [`put_once`].
#[derive(Debug, PartialEq, Eq)]
pub enum PutOnce {
    /// This call created the object, or found the identical bytes there.
    Written,
    /// The key holds other bytes: returned so that the caller can decide.
    Differs(Vec<u8>),
}

/// Write-once with comparison: creates `key`, or, if it exists, compares the
/// stored bytes with `value`. Identical bytes count as written: that is how a
/// write repeated after a crash (or a retried request that had succeeded)
/// proves it is the same.
pub fn put_once(store: &dyn Store, key: &str, value: &[u8]) -> Result<PutOnce, StoreError> {
    match store.put_if_absent(key, value)? {
        PutOutcome::Created => Ok(PutOnce::Written),
        PutOutcome::AlreadyExists => compare_existing(store, key, value),
    }
}

pub(crate) fn compare_existing(
    store: &dyn Store,
    key: &str,
    value: &[u8],
) -> Result<PutOnce, StoreError> {
    match store.get(key)? {
        Some(stored) if stored == value => Ok(PutOnce::Written),
        Some(stored) => Ok(PutOnce::Differs(stored)),
        None => Err(StoreError::Permanent {
            op: "put_once",
            key: key.to_owned(),
            message: "the store reported the key as existing but it cannot be read (deleted concurrently?)".to_owned(),
        }),
    }
}

/// The conformance suite every backend must pass; backends call it from their
/// tests (`store::conformance::run_all(&store)`). Feature `testing`.
#[cfg(any(test, feature = "testing"))]
pub mod conformance {
    use super::*;

    fn check(cond: bool, what: &str) -> Result<(), String> {
        if cond {
            Ok(())
        } else {
            Err(format!("conformance: {what}"))
        }
    }

    fn st<T>(r: Result<T, StoreError>) -> Result<T, String> {
        r.map_err(|e| format!("conformance: unexpected store error: {e}"))
    }

    /// Runs every check against `store`, which must be empty.
    pub fn run_all(store: &(dyn Store + 'static)) -> Result<(), String> {
        create_if_absent_is_write_once(store)?;
        reads_see_writes_and_lists_are_sorted(store)?;
        list_dir_shows_children(store)?;
        put_replaces(store)?;
        delete_and_delete_prefix(store)?;
        invalid_keys_are_rejected(store)?;
        concurrent_creators_one_wins(store)?;
        batch_put_many(store)?;
        empty_and_large_values(store)?;
        Ok(())
    }

    fn create_if_absent_is_write_once(s: &dyn Store) -> Result<(), String> {
        check(
            st(s.put_if_absent("c/a", b"one"))? == PutOutcome::Created,
            "first create",
        )?;
        check(
            st(s.put_if_absent("c/a", b"two"))? == PutOutcome::AlreadyExists,
            "second create refused",
        )?;
        check(
            st(s.get("c/a"))?.as_deref() == Some(&b"one"[..]),
            "first value kept",
        )?;
        check(
            st(put_once(s, "c/a", b"one"))? == PutOnce::Written,
            "identical put_once",
        )?;
        check(
            st(put_once(s, "c/a", b"other"))? == PutOnce::Differs(b"one".to_vec()),
            "differing put_once",
        )?;
        check(st(s.get("c/missing"))?.is_none(), "missing key reads None")
    }

    fn reads_see_writes_and_lists_are_sorted(s: &dyn Store) -> Result<(), String> {
        for k in ["l/b/2", "l/a", "l/b/1", "l/c", "lz"] {
            st(s.put_if_absent(k, k.as_bytes()))?;
        }
        let all = st(s.list("l/"))?;
        check(
            all == ["l/a", "l/b/1", "l/b/2", "l/c"],
            &format!("list l/ gave {all:?}"),
        )?;
        let part = st(s.list("l/b"))?;
        check(
            part == ["l/b/1", "l/b/2"],
            &format!("list l/b gave {part:?}"),
        )?;
        let none = st(s.list("nothing/"))?;
        check(none.is_empty(), "list of an absent prefix is empty")
    }

    fn list_dir_shows_children(s: &dyn Store) -> Result<(), String> {
        let d = st(s.list_dir("l/"))?;
        check(d == ["a", "b/", "c"], &format!("list_dir l/ gave {d:?}"))?;
        let top = st(s.list_dir(""))?;
        check(
            top.contains(&"l/".to_owned()) && top.contains(&"lz".to_owned()),
            &format!("top {top:?}"),
        )?;
        check(
            st(s.list_dir("nothing/"))?.is_empty(),
            "list_dir of an absent prefix",
        )
    }

    fn put_replaces(s: &dyn Store) -> Result<(), String> {
        st(s.put("p/x", b"1"))?;
        st(s.put("p/x", b"22"))?;
        check(
            st(s.get("p/x"))?.as_deref() == Some(&b"22"[..]),
            "put replaced",
        )
    }

    fn delete_and_delete_prefix(s: &dyn Store) -> Result<(), String> {
        st(s.delete("p/x"))?;
        check(st(s.get("p/x"))?.is_none(), "deleted")?;
        st(s.delete("p/x"))?;
        for k in ["d/1", "d/2/3", "dd"] {
            st(s.put_if_absent(k, b"v"))?;
        }
        let n = st(s.delete_prefix("d/"))?;
        check(n == 2, &format!("delete_prefix count {n}"))?;
        check(st(s.list("d/"))?.is_empty(), "prefix gone")?;
        check(st(s.get("dd"))?.is_some(), "sibling kept")?;
        check(
            st(s.put_if_absent("d/1", b"again"))? == PutOutcome::Created,
            "recreate after delete",
        )
    }

    fn invalid_keys_are_rejected(s: &dyn Store) -> Result<(), String> {
        for bad in ["../x", "/abs", "a//b", "", "a/./b", "a/.tmp-x"] {
            check(
                matches!(s.put_if_absent(bad, b"x"), Err(StoreError::InvalidKey(_))),
                &format!("put_if_absent {bad:?} rejected"),
            )?;
            check(
                matches!(s.get(bad), Err(StoreError::InvalidKey(_))),
                &format!("get {bad:?} rejected"),
            )?;
        }
        check(
            matches!(s.list("../"), Err(StoreError::InvalidKey(_))),
            "list ../ rejected",
        )
    }

    fn concurrent_creators_one_wins(s: &(dyn Store + 'static)) -> Result<(), String> {
        let wins = std::sync::atomic::AtomicUsize::new(0);
        let errors = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for i in 0..8u8 {
                let wins = &wins;
                let errors = &errors;
                scope.spawn(move || match s.put_if_absent("race/k", &[i; 100]) {
                    Ok(PutOutcome::Created) => {
                        wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(PutOutcome::AlreadyExists) => {}
                    Err(e) => errors
                        .lock()
                        .map(|mut v| v.push(e.to_string()))
                        .unwrap_or(()),
                });
            }
        });
        let errors = errors.into_inner().map_err(|_| "poisoned".to_owned())?;
        check(
            errors.is_empty(),
            &format!("racing creators failed: {errors:?}"),
        )?;
        check(
            wins.load(std::sync::atomic::Ordering::SeqCst) == 1,
            "exactly one creator wins",
        )?;
        let v = st(s.get("race/k"))?.unwrap_or_default();
        check(
            v.len() == 100 && v.iter().all(|&b| b == v[0]),
            "winner's bytes whole",
        )
    }

    fn batch_put_many(s: &dyn Store) -> Result<(), String> {
        st(s.put_if_absent("m/2", b"old"))?;
        let items: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| (format!("m/{i}"), vec![i as u8; i]))
            .collect();
        let refs: Vec<(&str, &[u8])> = items
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let out = s.put_many_if_absent(&refs);
        check(out.len() == 20, "one result per item")?;
        for (i, r) in out.into_iter().enumerate() {
            let r = st(r)?;
            let want = if i == 2 {
                PutOutcome::AlreadyExists
            } else {
                PutOutcome::Created
            };
            check(r == want, &format!("put_many item {i}: {r:?}"))?;
        }
        check(
            st(s.get("m/2"))?.as_deref() == Some(&b"old"[..]),
            "put_many kept existing",
        )?;
        check(
            st(s.get("m/7"))?.as_deref() == Some(&[7u8; 7][..]),
            "put_many wrote",
        )
    }

    fn empty_and_large_values(s: &dyn Store) -> Result<(), String> {
        st(s.put_if_absent("v/empty", b""))?;
        check(
            st(s.get("v/empty"))?.as_deref() == Some(&b""[..]),
            "empty value",
        )?;
        let big: Vec<u8> = (0..(6 << 20))
            .map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        st(s.put_if_absent("v/big", &big))?;
        check(
            st(s.get("v/big"))?.as_deref() == Some(&big[..]),
            "6 MiB value round trip",
        )
    }
}

/// Opens the store named by `url`: `s3://BUCKET[/PREFIX]` (with an optional
/// endpoint override for S3-compatible servers), or a local directory path.
pub fn open(url: &str, s3_endpoint: Option<String>) -> Result<SharedStore, StoreError> {
    if url.starts_with("s3://") {
        let config = s3::S3Config::from_url(url, s3_endpoint)?;
        Ok(Arc::new(s3::S3Store::open(config)?))
    } else {
        let path = url.strip_prefix("file://").unwrap_or(url);
        Ok(Arc::new(local::LocalStore::open(path)?))
    }
}
