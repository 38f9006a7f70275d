//! The group commit: many creates-if-absent with a few flushes in all.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use super::logged::LogBatch;
use super::{LocalStore, SYNCFS_FROM};
use crate::store::commit_log::{self, LOG_MAX};
use crate::store::{PutOutcome, Store, StoreError};

/// A group commit's outcomes, one per item.
fn finish_outcomes(
    out: Vec<Option<Result<PutOutcome, StoreError>>>,
    items: &[(&str, &[u8])],
) -> Vec<Result<PutOutcome, StoreError>> {
    out.into_iter()
        .zip(items)
        .map(|(o, (k, _))| {
            o.unwrap_or_else(|| {
                Err(StoreError::Permanent {
                    op: "group commit",
                    key: (*k).to_owned(),
                    message: "internal error: the item got no outcome".to_owned(),
                })
            })
        })
        .collect()
}

/// Step 1's result: the items of each commit log, and per other item its
/// temporary file and path (or why not); `None` for logged items.
struct Routed {
    logged: BTreeMap<PathBuf, LogBatch>,
    staged: Vec<Option<Result<(PathBuf, PathBuf), StoreError>>>,
}

impl LocalStore {
    /// [`Store::put_many_if_absent`]: few items one by one; many in three
    /// steps: route each to its directory's commit log or a temporary file,
    /// one flush for all their data, then publish the files and one flush
    /// for their directory entries.
    pub(super) fn group_commit(
        &self,
        items: &[(&str, &[u8])],
    ) -> Vec<Result<PutOutcome, StoreError>> {
        if items.len() < SYNCFS_FROM {
            return items
                .iter()
                .map(|(k, v)| self.put_if_absent(k, v))
                .collect();
        }
        let Routed { logged, staged } = self.route(items);
        let mut out: Vec<Option<Result<PutOutcome, StoreError>>> =
            items.iter().map(|_| None).collect();
        // Step 2: one flush for all their data: the logs' appends (under
        // their locks, taken in path order) and the temporary files.
        // A failed flush is permanent: after a write-back error the kernel may
        // have dropped the pages, and a retry could report success for data
        // that is gone.
        let has_files = staged.iter().flatten().any(|s| s.is_ok());
        let mut guards: Vec<(
            &PathBuf,
            &LogBatch,
            parking_lot::MutexGuard<'_, commit_log::Log>,
        )> = logged.iter().map(|(lp, b)| (lp, b, b.log.lock())).collect();
        #[allow(clippy::type_complexity)]
        let mut appended: Vec<(
            &PathBuf,
            commit_log::Locked<'_>,
            Vec<usize>,
            Vec<(usize, usize)>,
        )> = Vec::new();
        for (lp, batch, guard) in guards.iter_mut() {
            if let Some((l, idx, dups)) = self.log_append(items, batch, guard, &mut out) {
                appended.push((lp, l, idx, dups));
            }
        }
        if !appended.is_empty() {
            // Written, not yet durable: the log's window of a crash.
            crate::failpoint::hit("local.before_publish");
        }
        let flushed = if has_files || appended.len() >= SYNCFS_FROM {
            self.syncfs().and_then(|()| {
                appended
                    .iter()
                    .try_for_each(|(lp, ..)| self.log_entry_durable(&self.describe(), lp))
            })
        } else {
            appended
                .iter()
                .try_for_each(|(lp, l, ..)| self.flush_log(&self.describe(), l, lp))
        };
        for (_, mut l, idx, dups) in appended {
            let settled = l.settle(flushed.is_ok());
            for i in idx {
                out[i] = Some(match (&flushed, &settled) {
                    (Ok(()), Ok(())) => Ok(PutOutcome::Created),
                    (Err(e), _) | (_, Err(e)) => Err(StoreError::Permanent {
                        op: "group commit",
                        key: items[i].0.to_owned(),
                        message: e.to_string(),
                    }),
                });
            }
            for (i, first) in dups {
                out[i] = Some(match &out[first] {
                    Some(Err(e)) => Err(StoreError::Permanent {
                        op: "group commit",
                        key: items[i].0.to_owned(),
                        message: e.to_string(),
                    }),
                    _ => Ok(PutOutcome::AlreadyExists),
                });
            }
        }
        drop(guards);
        // Each item not in a log: its temporary file, or its error.
        let mut files: Vec<(usize, PathBuf, PathBuf)> = Vec::new();
        for (i, s) in staged.into_iter().enumerate() {
            match s {
                Some(Ok((tmp, path))) => files.push((i, tmp, path)),
                Some(Err(e)) => out[i] = Some(Err(e)),
                None => {}
            }
        }
        if let Err(e) = flushed {
            let msg = e.to_string();
            for (i, tmp, _) in files {
                let _ = fs::remove_file(tmp);
                out[i] = Some(Err(StoreError::Permanent {
                    op: "group commit",
                    key: items[i].0.to_owned(),
                    message: msg.clone(),
                }));
            }
            return finish_outcomes(out, items);
        }
        if files.is_empty() {
            return finish_outcomes(out, items);
        }
        crate::failpoint::hit("local.before_publish");
        self.publish_files(items, &files, &mut out);
        finish_outcomes(out, items)
    }

    /// Step 1: routes every item: small ones of a logged directory to its
    /// log (appended in step 2), the others to a temporary file, written
    /// unsynced.
    fn route(&self, items: &[(&str, &[u8])]) -> Routed {
        let mut logged: BTreeMap<PathBuf, LogBatch> = BTreeMap::new();
        let mut staged: Vec<Option<Result<(PathBuf, PathBuf), StoreError>>> = Vec::new();
        for (i, (k, v)) in items.iter().enumerate() {
            let routed = self.path(k).and_then(|path| {
                let log = if v.len() <= LOG_MAX {
                    self.log_for_write(k, &path)?
                } else {
                    None
                };
                Ok((path, log))
            });
            staged.push(match routed {
                Ok((path, Some((log, lp, name)))) => {
                    let batch = logged.entry(lp).or_insert_with(|| LogBatch {
                        log,
                        items: Vec::new(),
                    });
                    batch.items.push((i, path, name));
                    None
                }
                Ok((path, None)) => Some(self.write_temp(k, &path, v, false).map(|t| (t, path))),
                Err(e) => Some(Err(e)),
            });
        }
        Routed { logged, staged }
    }

    /// Step 3: moves the temporary files `files` (item index, temporary
    /// file, path) into place, then one flush for their directory entries.
    fn publish_files(
        &self,
        items: &[(&str, &[u8])],
        files: &[(usize, PathBuf, PathBuf)],
        out: &mut [Option<Result<PutOutcome, StoreError>>],
    ) {
        let published: Vec<(usize, Result<PutOutcome, StoreError>)> = files
            .iter()
            .map(|(i, tmp, path)| (*i, self.publish(items[*i].0, tmp, path)))
            .collect();
        let flushed = self.syncfs();
        if flushed.is_ok() {
            // Every directory on the way to these keys is durable now.
            let mut known = self.durable_dirs.lock();
            for (_, _, path) in files {
                let mut p = path.clone();
                while let Some(up) = p.parent() {
                    if up == self.root || !known.insert(up.to_path_buf()) {
                        break;
                    }
                    p = up.to_path_buf();
                }
            }
        }
        for (i, mut r) in published {
            if let (Err(e), Ok(PutOutcome::Created)) = (&flushed, &r) {
                r = Err(StoreError::Permanent {
                    op: "group commit",
                    key: items[i].0.to_owned(),
                    message: e.to_string(),
                });
            }
            out[i] = Some(r);
        }
    }
}
