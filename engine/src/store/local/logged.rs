//! Objects kept in a directory's commit log rather than as files.

use std::path::{Path, PathBuf};

use super::LocalStore;
use crate::store::commit_log::{self, log_path, Append};
use crate::store::{PutOutcome, StoreError};

/// A commit log, its path, and an object's name in it.
type LogRef = (
    std::sync::Arc<parking_lot::Mutex<commit_log::Log>>,
    PathBuf,
    String,
);

/// A group commit's items for one commit log: (index, path, name).
pub(super) struct LogBatch {
    pub(super) log: std::sync::Arc<parking_lot::Mutex<commit_log::Log>>,
    pub(super) items: Vec<(usize, PathBuf, String)>,
}

impl LocalStore {
    /// The commit log that holds `path`, if any: the log of the nearest
    /// directory above `path` that has one, its path, and `path`'s name in
    /// it (relative to that directory: `status/000001` in the log of a
    /// workflow's directory). Writes and reads agree on it: a log is only
    /// created by [`Store::prepare`] of a directory, before any key below
    /// it.
    ///
    /// [`Store::prepare`]: crate::store::Store::prepare
    pub(super) fn log_of(&self, path: &Path) -> Result<Option<LogRef>, StoreError> {
        let mut dir = path;
        while let Some(up) = dir.parent() {
            dir = up;
            if dir == self.root || !dir.starts_with(&self.root) {
                return Ok(None);
            }
            let Some(lp) = log_path(dir) else {
                return Ok(None);
            };
            if let Some(log) = self.logs.get(&lp)? {
                let Ok(rel) = path.strip_prefix(dir) else {
                    return Ok(None);
                };
                let name = rel.to_string_lossy().into_owned();
                return Ok(Some((log, lp, name)));
            }
        }
        Ok(None)
    }

    /// The commit log that a new object at `path` goes into, if any.
    pub(super) fn log_for_write(
        &self,
        key: &str,
        path: &Path,
    ) -> Result<Option<LogRef>, StoreError> {
        let found = self.log_of(path)?;
        if found.is_some() || !self.log_everywhere {
            return Ok(found);
        }
        let Some(lp) = path.parent().filter(|d| *d != self.root).and_then(log_path) else {
            return Ok(None);
        };
        self.make_parents(key, path, true)?;
        self.logs
            .create(&lp)
            .map_err(|e| StoreError::io("create commit log", key, e))?;
        self.log_of(path)
    }

    /// Flushes a log's appended records and makes sure its own entry in its
    /// directory is durable.
    pub(super) fn flush_log(
        &self,
        key: &str,
        l: &commit_log::Locked<'_>,
        lp: &Path,
    ) -> Result<(), StoreError> {
        if self.fsync {
            l.sync_data()
                .map_err(|e| StoreError::io("commit", key, e))?;
        }
        self.log_entry_durable(key, lp)
    }

    pub(super) fn log_entry_durable(&self, key: &str, lp: &Path) -> Result<(), StoreError> {
        if self.durable_dirs.lock().contains(lp) {
            return Ok(());
        }
        self.make_parents(key, lp, true)?;
        if let Some(dir) = lp.parent() {
            self.sync_dir(key, dir)?;
        }
        self.durable_dirs.lock().insert(lp.to_path_buf());
        Ok(())
    }

    /// Creates one object in a commit log: one append, one flush.
    pub(super) fn log_put(
        &self,
        key: &str,
        path: &Path,
        (log, lp, name): &LogRef,
        value: &[u8],
    ) -> Result<PutOutcome, StoreError> {
        let mut guard = log.lock();
        let mut l = guard.lock(true)?;
        if l.contains(key, name)? {
            return Ok(PutOutcome::AlreadyExists);
        }
        if path.exists() {
            drop(l);
            return self.found_file(key, path);
        }
        l.append(
            key,
            &[Append {
                name,
                value: Some(value),
            }],
        )?;
        crate::failpoint::hit("local.before_publish");
        let flushed = self.flush_log(key, &l, lp);
        l.settle(flushed.is_ok())?;
        flushed.map(|()| PutOutcome::Created)
    }

    /// A create found `path` as a file: made durable before it is reported
    /// (its writer may not have flushed its directory yet).
    pub(super) fn found_file(&self, key: &str, path: &Path) -> Result<PutOutcome, StoreError> {
        if let Some(parent) = path.parent() {
            self.sync_dir(key, parent)?;
        }
        Ok(PutOutcome::AlreadyExists)
    }

    /// Appends a group commit's items for one log, unflushed, under its
    /// exclusive lock; items found to exist get their outcome at once.
    /// Returns the lock, the appended items' indices and the later copies
    /// of an appended name in the batch (with the index of the first), or
    /// `None` if nothing was appended.
    #[allow(clippy::type_complexity)]
    pub(super) fn log_append<'g>(
        &self,
        items: &[(&str, &[u8])],
        batch: &LogBatch,
        guard: &'g mut commit_log::Log,
        out: &mut [Option<Result<PutOutcome, StoreError>>],
    ) -> Option<(commit_log::Locked<'g>, Vec<usize>, Vec<(usize, usize)>)> {
        let first = items[batch.items[0].0].0;
        let mut l = match guard.lock(true) {
            Ok(l) => l,
            Err(e) => {
                let msg = e.to_string();
                for (i, _, _) in &batch.items {
                    out[*i] = Some(Err(StoreError::Permanent {
                        op: "group commit",
                        key: items[*i].0.to_owned(),
                        message: msg.clone(),
                    }));
                }
                return None;
            }
        };
        let mut seen: std::collections::HashMap<&str, usize> = Default::default();
        let mut records = Vec::new();
        let mut idx = Vec::new();
        let mut dups = Vec::new();
        for (i, path, name) in &batch.items {
            let key = items[*i].0;
            let exists = if let Some(&first) = seen.get(name.as_str()) {
                // A name given twice: the second is the first's outcome,
                // known only once the first is flushed if it is appended.
                match &out[first] {
                    None => {
                        dups.push((*i, first));
                        continue;
                    }
                    Some(_) => Ok(PutOutcome::AlreadyExists),
                }
            } else {
                seen.insert(name.as_str(), *i);
                match l.contains(key, name) {
                    Ok(true) => Ok(PutOutcome::AlreadyExists),
                    Ok(false) if path.exists() => self.found_file(key, path),
                    Ok(false) => {
                        records.push(Append {
                            name,
                            value: Some(items[*i].1),
                        });
                        idx.push(*i);
                        continue;
                    }
                    Err(e) => Err(e),
                }
            };
            out[*i] = Some(exists);
        }
        if records.is_empty() {
            return None;
        }
        if let Err(e) = l.append(first, &records) {
            let msg = e.to_string();
            for i in idx {
                out[i] = Some(Err(StoreError::Permanent {
                    op: "group commit",
                    key: items[i].0.to_owned(),
                    message: msg.clone(),
                }));
            }
            return None;
        }
        Some((l, idx, dups))
    }

    /// Removes `name` from a commit log (a deletion record), if it is there.
    pub(super) fn log_remove(&self, key: &str, (log, lp, name): &LogRef) -> Result<(), StoreError> {
        let mut guard = log.lock();
        let mut l = guard.lock(true)?;
        if !l.contains(key, name)? {
            return Ok(());
        }
        l.append(key, &[Append { name, value: None }])?;
        let flushed = self.flush_log(key, &l, lp);
        l.settle(flushed.is_ok())?;
        flushed
    }

    /// The live keys of the commit log at `lp`, which logs directory `rel`.
    pub(super) fn log_keys(
        &self,
        lp: &Path,
        rel: &str,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        let Some(log) = self.logs.get(lp)? else {
            return Ok(Vec::new());
        };
        let mut guard = log.lock();
        let l = guard.lock(false)?;
        Ok(l.names(prefix)?
            .into_iter()
            .map(|n| format!("{rel}/{n}"))
            .filter(|k| k.starts_with(prefix))
            .collect())
    }
}
