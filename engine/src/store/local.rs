//! A store in a local directory: the embedded default.
//!
//! A key `a/b/c` is the file `ROOT/a/b/c`. Create-if-absent writes a temporary
//! file beside the target (a name starting with `.tmp-`, which no key can
//! have), fsyncs it, moves it into place with `renameat2(RENAME_NOREPLACE)`
//! (or `link` + `unlink` where the file system lacks it) and fsyncs the
//! directory; every directory created on the way is fsynced into its parent. A
//! leftover temporary file is garbage, never data: listings skip it.
//!
//! [`Store::put_many_if_absent`] is a group commit: all temporary files are
//! written, then one `syncfs` makes them durable, then all are moved, then one
//! more `syncfs` makes the moves durable. Many small commits then cost two
//! flushes instead of two each.
//!
//! Objects of at most 4 MiB created in a directory announced by
//! [`Store::prepare`] (a workflow's task outputs) are not files: they are
//! appended to the directory's commit log, `PARENT/.NAME.log`, one flush each
//! (or one per group commit) instead of two; see `commit_log`. Reads, listings
//! and deletions see them like files. Other keys (the streaming job's
//! outputs, which users read as files) stay files.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::commit_log::{self, log_path, Append, Logs, LOG_MAX};
use super::{PutOutcome, Store, StoreError};
use crate::id::{validate_key, validate_prefix};

/// Below this many objects a batch fsyncs each file and directory; from it on,
/// it uses `syncfs`.
const SYNCFS_FROM: usize = 4;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A store rooted at a local directory.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    fsync: bool,
    /// Directories whose entry in their parent is known durable: created
    /// and fsynced into their parent by this process, or found and fsynced
    /// once (another writer, or a crashed process, may have created one
    /// without the fsync yet).
    durable_dirs: parking_lot::Mutex<std::collections::HashSet<PathBuf>>,
    /// Directories created by [`Store::prepare`] whose entry in their parent
    /// is not flushed yet: the next flush of the parent (or a `syncfs`) makes
    /// them durable.
    fresh_dirs: parking_lot::Mutex<std::collections::HashSet<PathBuf>>,
    /// The commit logs of prepared directories (their entries in their
    /// directory are tracked in `fresh_dirs` / `durable_dirs` too).
    logs: Logs,
    /// Gives every directory below the root a commit log, not only prepared
    /// ones (tests of the log).
    log_everywhere: bool,
}

impl LocalStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        fs::create_dir_all(&root)
            .map_err(|e| StoreError::io("open store", root.display().to_string(), e))?;
        let meta = fs::metadata(&root)
            .map_err(|e| StoreError::io("open store", root.display().to_string(), e))?;
        if !meta.is_dir() {
            return Err(StoreError::Permanent {
                op: "open store",
                key: root.display().to_string(),
                message: "exists and is not a directory".to_owned(),
            });
        }
        Ok(Self {
            root,
            fsync: true,
            durable_dirs: parking_lot::Mutex::new(std::collections::HashSet::new()),
            fresh_dirs: parking_lot::Mutex::new(std::collections::HashSet::new()),
            logs: Logs::default(),
            log_everywhere: false,
        })
    }

    /// Turns fsync off: for benchmarks that isolate everything but the disk
    /// flush. Durability is lost; never use it for real data.
    pub fn without_fsync(mut self) -> Self {
        self.fsync = false;
        self
    }

    /// Puts the small objects of every directory below the root into its
    /// commit log, as if each had been prepared: for tests of the log.
    #[doc(hidden)]
    pub fn with_commit_logs_everywhere(mut self) -> Self {
        self.log_everywhere = true;
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    /// Creates the parent directories of `path`, fsyncing each new one into its
    /// parent.
    fn make_parents(&self, key: &str, path: &Path, sync: bool) -> Result<(), StoreError> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        if self.durable_dirs.lock().contains(parent) {
            return Ok(());
        }
        for dir in &self.dirs_down_to(parent) {
            if self.durable_dirs.lock().contains(dir) {
                continue;
            }
            if let Err(e) = fs::create_dir(dir) {
                if !dir.is_dir() {
                    return Err(StoreError::io("create directory", key, e));
                }
            }
            if let Some(up) = dir.parent() {
                if sync {
                    self.sync_dir(key, up)?;
                } else {
                    // A group commit's syncfs makes it durable; remember it
                    // only after that.
                    continue;
                }
            }
            self.durable_dirs.lock().insert(dir.clone());
        }
        Ok(())
    }

    /// The directories below the root down to `dir`, outermost first.
    fn dirs_down_to(&self, dir: &Path) -> Vec<PathBuf> {
        let mut chain = Vec::new();
        let mut p = dir;
        while p != self.root && p.starts_with(&self.root) {
            chain.push(p.to_path_buf());
            match p.parent() {
                Some(up) => p = up,
                None => break,
            }
        }
        chain.reverse();
        chain
    }

    fn sync_dir(&self, key: &str, dir: &Path) -> Result<(), StoreError> {
        // Prepared directories in `dir` made before the flush are durable after it.
        let covered: Vec<PathBuf> = self
            .fresh_dirs
            .lock()
            .iter()
            .filter(|d| d.parent() == Some(dir))
            .cloned()
            .collect();
        if self.fsync {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::io("fsync directory", key, e))?;
        }
        self.promote(covered);
        Ok(())
    }

    /// Records prepared directories as durable.
    fn promote(&self, dirs: Vec<PathBuf>) {
        if dirs.is_empty() {
            return;
        }
        let mut fresh = self.fresh_dirs.lock();
        let mut durable = self.durable_dirs.lock();
        for d in dirs {
            fresh.remove(&d);
            durable.insert(d);
        }
    }

    fn write_temp(
        &self,
        key: &str,
        path: &Path,
        value: &[u8],
        sync: bool,
    ) -> Result<PathBuf, StoreError> {
        // In a group commit (`sync` false) one syncfs covers the new directories.
        self.make_parents(key, path, sync)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(
            ".tmp-{}-{}-{name}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(value)?;
            if sync && self.fsync {
                f.sync_data()?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::io("write", key, e));
        }
        Ok(tmp)
    }

    /// Moves `tmp` to `path` unless `path` exists (as a file, or in its
    /// directory's commit log: checked under the log's lock).
    fn publish(&self, key: &str, tmp: &Path, path: &Path) -> Result<PutOutcome, StoreError> {
        let log = match self.log_of(path) {
            Ok(l) => l,
            Err(e) => {
                let _ = fs::remove_file(tmp);
                return Err(e);
            }
        };
        let mut guard = log.as_ref().map(|(l, _, _)| l.lock());
        let locked = match guard.as_mut() {
            Some(g) => match g.lock(true) {
                Ok(l) => Some(l),
                Err(e) => {
                    let _ = fs::remove_file(tmp);
                    return Err(e);
                }
            },
            None => None,
        };
        if let (Some(l), Some((_, _, name))) = (&locked, &log) {
            match l.contains(key, name) {
                Ok(false) => {}
                Ok(true) => {
                    let _ = fs::remove_file(tmp);
                    return Ok(PutOutcome::AlreadyExists);
                }
                Err(e) => {
                    let _ = fs::remove_file(tmp);
                    return Err(e);
                }
            }
        }
        let outcome = rename_noreplace(tmp, path);
        drop(locked);
        match outcome {
            Ok(()) => Ok(PutOutcome::Created),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let _ = fs::remove_file(tmp);
                // The existing object may have been moved in by a writer that
                // has not yet fsynced the directory: make it durable before
                // reporting that it exists.
                if let Some(parent) = path.parent() {
                    self.sync_dir(key, parent)?;
                }
                Ok(PutOutcome::AlreadyExists)
            }
            Err(e) => {
                let _ = fs::remove_file(tmp);
                Err(StoreError::io("commit", key, e))
            }
        }
    }

    /// The commit log of `path`'s directory, if it has one: the log, its
    /// path and `path`'s name in it.
    fn log_of(&self, path: &Path) -> Result<Option<LogRef>, StoreError> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(None);
        };
        if dir == self.root {
            return Ok(None);
        }
        let Some(lp) = log_path(dir) else {
            return Ok(None);
        };
        let name = name.to_string_lossy().into_owned();
        Ok(self.logs.get(&lp)?.map(|log| (log, lp, name)))
    }

    /// The commit log that a new object at `path` goes into, if any.
    fn log_for_write(&self, key: &str, path: &Path) -> Result<Option<LogRef>, StoreError> {
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
    fn flush_log(
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

    fn log_entry_durable(&self, key: &str, lp: &Path) -> Result<(), StoreError> {
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
    fn log_put(
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
    fn found_file(&self, key: &str, path: &Path) -> Result<PutOutcome, StoreError> {
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
    fn log_append<'g>(
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
    fn log_remove(&self, key: &str, (log, lp, name): &LogRef) -> Result<(), StoreError> {
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
    fn log_keys(&self, lp: &Path, rel: &str, prefix: &str) -> Result<Vec<String>, StoreError> {
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

    /// The files under `prefix` and the commit logs that may hold keys
    /// under it (see [`walk`]).
    #[allow(clippy::type_complexity)]
    fn scan(&self, prefix: &str) -> Result<(Vec<String>, Vec<(PathBuf, String)>), StoreError> {
        validate_prefix(prefix)?;
        // Start the walk at the deepest directory the prefix names in full.
        let dir_rel = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let start = if dir_rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_rel)
        };
        let mut out = Vec::new();
        let mut logs = Vec::new();
        // The start directory's own log lies beside it, outside the walk.
        if !dir_rel.is_empty() {
            if let Some(lp) = log_path(&start) {
                if lp.is_file() {
                    logs.push((lp, dir_rel.to_owned()));
                }
            }
        }
        walk(&start, dir_rel, prefix, &mut out, &mut logs)
            .map_err(|e| StoreError::io("list", prefix, e))?;
        Ok((out, logs))
    }

    fn syncfs(&self) -> Result<(), StoreError> {
        let covered: Vec<PathBuf> = self.fresh_dirs.lock().iter().cloned().collect();
        if !self.fsync {
            self.promote(covered);
            return Ok(());
        }
        let root =
            File::open(&self.root).map_err(|e| StoreError::io("syncfs", self.describe(), e))?;
        // SAFETY: syncfs takes a valid open file descriptor, owned by `root`
        // for the duration of the call.
        let rc = unsafe { libc::syncfs(root.as_raw_fd()) };
        if rc != 0 {
            return Err(StoreError::io(
                "syncfs",
                self.describe(),
                std::io::Error::last_os_error(),
            ));
        }
        self.promote(covered);
        Ok(())
    }
}

/// A group commit's items for one commit log: (index, path, name).
struct LogBatch {
    log: std::sync::Arc<parking_lot::Mutex<commit_log::Log>>,
    items: Vec<(usize, PathBuf, String)>,
}

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

/// A commit log, its path, and an object's name in it.
type LogRef = (
    std::sync::Arc<parking_lot::Mutex<commit_log::Log>>,
    PathBuf,
    String,
);

/// `renameat2(RENAME_NOREPLACE)`, falling back to `link` + `unlink` where the
/// file system does not support it.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    let cfrom = std::ffi::CString::new(from.as_os_str().as_bytes())?;
    let cto = std::ffi::CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both pointers are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cfrom.as_ptr(),
            libc::AT_FDCWD,
            cto.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::ENOTSUP) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        _ => Err(err),
    }
}

/// Walks `dir` (relative path `rel`) for the keys that start with `prefix`:
/// files into `out`, and into `logs` the commit logs (path, relative path of
/// the directory they log) of the directories that may hold some.
fn walk(
    dir: &Path,
    rel: &str,
    prefix: &str,
    out: &mut Vec<String>,
    logs: &mut Vec<(PathBuf, String)>,
) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let related = |key: &str| {
        let as_dir = format!("{key}/");
        as_dir.starts_with(prefix) || prefix.starts_with(&as_dir)
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let child = |n: &str| {
            if rel.is_empty() {
                n.to_owned()
            } else {
                format!("{rel}/{n}")
            }
        };
        if name.starts_with('.') {
            if let Some(logged) = commit_log::logged_dir_name(name) {
                let sub = child(logged);
                if related(&sub) && entry.file_type()?.is_file() {
                    logs.push((entry.path(), sub));
                }
            }
            continue;
        }
        let key = child(name);
        let is_dir = entry.file_type()?.is_dir();
        if is_dir {
            if related(&key) {
                walk(&entry.path(), &key, prefix, out, logs)?;
            }
        } else if key.starts_with(prefix) {
            out.push(key);
        }
    }
    Ok(())
}

impl Store for LocalStore {
    /// Creates the directories of `prefix` now, without flushing them: the
    /// flush of their parent that a commit does anyway (a workflow's metadata
    /// into its directory, say) makes them durable, so that the first key
    /// created in them later costs no flush of its own.
    fn prepare(&self, prefix: &str) {
        if validate_prefix(prefix).is_err() || !prefix.ends_with('/') {
            return;
        }
        let dir = self.root.join(prefix.trim_end_matches('/'));
        if self.durable_dirs.lock().contains(&dir) {
            return;
        }
        for d in self.dirs_down_to(&dir) {
            if self.durable_dirs.lock().contains(&d) {
                continue;
            }
            if fs::create_dir(&d).is_err() && !d.is_dir() {
                return; // The commit that needs it will report the error.
            }
            self.fresh_dirs.lock().insert(d);
        }
        // Its commit log, beside it: durable with the same flush.
        if let Some(lp) = log_path(&dir) {
            if !self.durable_dirs.lock().contains(&lp) && self.logs.create(&lp).is_ok() {
                self.fresh_dirs.lock().insert(lp);
            }
        }
    }

    fn put_if_absent(&self, key: &str, value: &[u8]) -> Result<PutOutcome, StoreError> {
        let path = self.path(key)?;
        if value.len() <= LOG_MAX {
            if let Some(log) = self.log_for_write(key, &path)? {
                return self.log_put(key, &path, &log, value);
            }
        }
        let tmp = self.write_temp(key, &path, value, true)?;
        crate::failpoint::hit("local.before_publish");
        let outcome = self.publish(key, &tmp, &path)?;
        if outcome == PutOutcome::Created {
            if let Some(parent) = path.parent() {
                self.sync_dir(key, parent)?;
            }
        }
        Ok(outcome)
    }

    fn put_many_if_absent(&self, items: &[(&str, &[u8])]) -> Vec<Result<PutOutcome, StoreError>> {
        if items.len() < SYNCFS_FROM {
            return items
                .iter()
                .map(|(k, v)| self.put_if_absent(k, v))
                .collect();
        }
        // Phase 1: route every item: small ones of a logged directory to its
        // log, the others to a temporary file, written unsynced.
        let mut logged: std::collections::BTreeMap<PathBuf, LogBatch> = Default::default();
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
        let mut out: Vec<Option<Result<PutOutcome, StoreError>>> =
            items.iter().map(|_| None).collect();
        // Phase 2: one flush for all their data: the logs' appends (under
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
        // Phase 3: publish, then one flush for the directory entries.
        let published: Vec<(usize, Result<PutOutcome, StoreError>)> = files
            .iter()
            .map(|(i, tmp, path)| (*i, self.publish(items[*i].0, tmp, path)))
            .collect();
        let flushed = self.syncfs();
        if flushed.is_ok() {
            // Every directory on the way to these keys is durable now.
            let mut known = self.durable_dirs.lock();
            for (_, _, path) in &files {
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
        finish_outcomes(out, items)
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let tmp = self.write_temp(key, &path, value, true)?;
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::io("replace", key, e));
        }
        if let Some(parent) = path.parent() {
            self.sync_dir(key, parent)?;
        }
        // The file shadows an object of that name in the log: remove it.
        match self.log_of(&path)? {
            Some(log) => self.log_remove(key, &log),
            None => Ok(()),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == ErrorKind::NotFound => match self.log_of(&path)? {
                Some((log, _, name)) => {
                    let mut guard = log.lock();
                    let l = guard.lock(false)?;
                    l.get(key, &name)
                }
                None => Ok(None),
            },
            // A key whose name is a directory (it has keys below it) holds no object.
            Err(e) if e.kind() == ErrorKind::IsADirectory => Ok(None),
            Err(e) => Err(StoreError::io("read", key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let (mut out, logs) = self.scan(prefix)?;
        for (lp, rel) in logs {
            out.extend(self.log_keys(&lp, &rel, prefix)?);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn list_dir(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        if !prefix.is_empty() && !prefix.ends_with('/') {
            return Err(StoreError::Permanent {
                op: "list_dir",
                key: prefix.to_owned(),
                message: "a directory prefix must end with '/'".to_owned(),
            });
        }
        let dir = self.root.join(prefix.trim_end_matches('/'));
        // A logged directory may be gone (emptied of files) while its log,
        // beside it, still holds keys.
        let entries: Vec<_> = match fs::read_dir(&dir) {
            Ok(e) => e.collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StoreError::io("list_dir", prefix, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list_dir", prefix, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                // The log of a directory below: a name if it holds keys.
                if let Some(logged) = commit_log::logged_dir_name(&name) {
                    let rel = format!("{prefix}{logged}");
                    if !self.log_keys(&entry.path(), &rel, "")?.is_empty() {
                        out.push(format!("{logged}/"));
                    }
                }
                continue;
            }
            let is_dir = entry
                .file_type()
                .map_err(|e| StoreError::io("list_dir", prefix, e))?
                .is_dir();
            if is_dir {
                // A directory left empty by deletions holds no key.
                let has_keys = !self.list(&format!("{prefix}{name}/"))?.is_empty();
                if has_keys {
                    out.push(format!("{name}/"));
                }
            } else {
                out.push(name);
            }
        }
        // The directory's own log holds names directly below it.
        if !prefix.is_empty() {
            if let Some(lp) = log_path(&dir) {
                let rel = prefix.trim_end_matches('/');
                for k in self.log_keys(&lp, rel, prefix)? {
                    out.push(k[prefix.len()..].to_owned());
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("delete", key, e)),
        }
        match self.log_of(&path)? {
            Some(log) => self.log_remove(key, &log),
            None => Ok(()),
        }
    }

    fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let (files, logs) = self.scan(prefix)?;
        let mut deleted = 0;
        for k in &files {
            match fs::remove_file(self.root.join(k)) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("delete", k.as_str(), e)),
            }
        }
        for (lp, rel) in logs {
            if format!("{rel}/").starts_with(prefix) {
                // The whole directory goes: so does its log, read or not.
                if let Some(log) = self.logs.get(&lp)? {
                    let mut guard = log.lock();
                    deleted += guard.lock(true).map(|l| l.live()).unwrap_or(0);
                }
                match fs::remove_file(&lp) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io("delete", rel, e)),
                }
                self.logs.forget_below(&lp);
                self.durable_dirs.lock().remove(&lp);
                self.fresh_dirs.lock().remove(&lp);
            } else {
                for k in self.log_keys(&lp, &rel, prefix)? {
                    self.delete(&k)?;
                    deleted += 1;
                }
            }
        }
        // Remove directories left empty below the prefix's directory.
        if let Some(i) = prefix.rfind('/') {
            let dir = self.root.join(&prefix[..i]);
            self.durable_dirs.lock().retain(|d| !d.starts_with(&dir));
            self.fresh_dirs.lock().retain(|d| !d.starts_with(&dir));
            self.logs.forget_below(&dir);
            remove_empty_dirs(&dir);
        }
        Ok(deleted)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

/// Removes empty directories bottom-up; best effort (a concurrent writer may
/// be filling one).
fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_empty_dirs(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_store_passes_conformance() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let s = LocalStore::open(dir.path())?;
        super::super::conformance::run_all(&s)?;
        Ok(())
    }

    #[test]
    fn leftover_temp_files_are_not_keys() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let s = LocalStore::open(dir.path())?;
        s.put_if_absent("a/b", b"x")?;
        fs::write(dir.path().join("a/.tmp-1-2-c"), b"half")?;
        assert_eq!(s.list("a/")?, ["a/b"]);
        assert_eq!(s.list_dir("a/")?, ["b"]);
        assert_eq!(s.put_if_absent("a/c", b"y")?, PutOutcome::Created);
        Ok(())
    }

    #[test]
    fn prepared_directories_become_durable_with_their_parents_flush(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let s = LocalStore::open(dir.path())?;
        s.prepare("w/1/tasks/");
        let tasks = dir.path().join("w/1/tasks");
        assert!(tasks.is_dir());
        // Created but not flushed: not durable yet, and an empty directory
        // is no key.
        assert!(!s.durable_dirs.lock().contains(&tasks));
        assert!(s.list_dir("w/")?.is_empty());
        // A commit into its parent flushes the parent: now it is durable.
        s.put_if_absent("w/1/meta", b"m")?;
        assert!(s.durable_dirs.lock().contains(&tasks));
        assert!(s.fresh_dirs.lock().is_empty());
        assert_eq!(s.put_if_absent("w/1/tasks/t", b"v")?, PutOutcome::Created);
        assert_eq!(s.get("w/1/tasks/t")?.as_deref(), Some(&b"v"[..]));
        // Group commits (syncfs) cover prepared directories too; bad
        // prefixes are ignored.
        s.prepare("w/2/tasks/");
        s.prepare("../x/");
        s.prepare("w/3");
        let items: Vec<(String, Vec<u8>)> = (0..SYNCFS_FROM)
            .map(|i| (format!("w/2/k{i}"), vec![i as u8]))
            .collect();
        let refs: Vec<(&str, &[u8])> = items
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        assert!(s.put_many_if_absent(&refs).iter().all(|r| r.is_ok()));
        assert!(s
            .durable_dirs
            .lock()
            .contains(&dir.path().join("w/2/tasks")));
        assert!(!dir.path().join("w/3").exists());
        Ok(())
    }

    fn many(items: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
        items
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect()
    }

    #[test]
    fn local_store_with_commit_logs_passes_conformance() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let s = LocalStore::open(dir.path())?.with_commit_logs_everywhere();
        super::super::conformance::run_all(&s)?;
        // The suite's small objects below the root went into logs.
        let mut logs = Vec::new();
        walk(dir.path(), "", "", &mut Vec::new(), &mut logs)?;
        assert!(!logs.is_empty());
        Ok(())
    }

    /// Values written from where they are (at least the log's copy limit)
    /// beside copied ones, alone and in group commits of both sizes: each
    /// reads back whole, from this instance's index and from a fresh one
    /// that parses the log.
    #[test]
    fn log_records_of_every_size_read_back() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let s = LocalStore::open(dir.path())?;
        s.prepare("w/1/tasks/");
        s.put_if_absent("w/1/meta", b"m")?;
        let value = |n: usize, seed: usize| -> Vec<u8> {
            (0..n).map(|i| (i * 31 + seed * 7) as u8).collect()
        };
        let sizes = [
            0,
            1,
            (16 << 10) - 1,
            16 << 10,
            (16 << 10) + 1,
            100_003,
            LOG_MAX,
        ];
        let mut want = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let key = format!("w/1/tasks/one-{i}");
            assert_eq!(s.put_if_absent(&key, &value(n, i))?, PutOutcome::Created);
            want.push((key, value(n, i)));
        }
        // Groups large enough for the group path, mixing both kinds.
        for g in 0..2 {
            let items: Vec<(String, Vec<u8>)> = (0..SYNCFS_FROM + 3)
                .map(|i| {
                    let n = sizes[(i + g) % sizes.len()];
                    (format!("w/1/tasks/g{g}-{i}"), value(n, i + g))
                })
                .collect();
            for r in s.put_many_if_absent(&many(&items)) {
                assert_eq!(r?, PutOutcome::Created);
            }
            want.extend(items);
        }
        let tasks = dir.path().join("w/1/tasks");
        assert!(!tasks.exists() || std::fs::read_dir(&tasks)?.next().is_none());
        let t = LocalStore::open(dir.path())?;
        for store in [&s, &t] {
            for (k, v) in &want {
                assert_eq!(store.get(k)?.as_ref(), Some(v), "{k}");
            }
        }
        Ok(())
    }

    #[test]
    fn prepared_directories_keep_small_objects_in_their_log(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let s = LocalStore::open(dir.path())?;
        s.prepare("w/1/tasks/");
        s.put_if_absent("w/1/meta", b"m")?;
        assert_eq!(s.put_if_absent("w/1/tasks/a", b"va")?, PutOutcome::Created);
        assert_eq!(
            s.put_if_absent("w/1/tasks/a", b"other")?,
            PutOutcome::AlreadyExists
        );
        let big = vec![7u8; LOG_MAX + 1];
        let items: Vec<(String, Vec<u8>)> = vec![
            ("w/1/tasks/b".into(), b"vb".to_vec()),
            ("w/1/tasks/big".into(), big.clone()),
            ("w/1/tasks/a".into(), b"again".to_vec()),
            ("w/1/other/c".into(), b"vc".to_vec()),
            ("w/1/tasks/d".into(), Vec::new()),
        ];
        let got: Vec<PutOutcome> = s
            .put_many_if_absent(&many(&items))
            .into_iter()
            .collect::<Result<_, _>>()?;
        use PutOutcome::*;
        assert_eq!(got, [Created, Created, AlreadyExists, Created, Created]);
        // A name twice in one group commit: the first is created.
        let twice: Vec<(String, Vec<u8>)> = (0..SYNCFS_FROM)
            .map(|i| ("w/1/tasks/twice".to_owned(), vec![i as u8]))
            .collect();
        let got: Vec<PutOutcome> = s
            .put_many_if_absent(&many(&twice))
            .into_iter()
            .collect::<Result<_, _>>()?;
        assert_eq!(got[0], Created);
        assert!(got[1..].iter().all(|&o| o == AlreadyExists));
        assert_eq!(s.get("w/1/tasks/twice")?, Some(vec![0]));
        s.delete("w/1/tasks/twice")?;
        // Small ones are records of the log, the large one and the
        // unprepared directory's are files.
        let tasks = dir.path().join("w/1/tasks");
        assert!(dir.path().join("w/1/.tasks.log").is_file());
        assert!(!tasks.join("a").exists() && !tasks.join("b").exists());
        assert!(tasks.join("big").is_file() && dir.path().join("w/1/other/c").is_file());
        // Another instance (another process) sees them all.
        let t = LocalStore::open(dir.path())?;
        for store in [&s, &t] {
            assert_eq!(store.get("w/1/tasks/a")?.as_deref(), Some(&b"va"[..]));
            assert_eq!(store.get("w/1/tasks/d")?.as_deref(), Some(&b""[..]));
            assert_eq!(store.get("w/1/tasks/big")?, Some(big.clone()));
            assert_eq!(store.get("w/1/tasks/zz")?, None);
            assert_eq!(
                store.list("w/1/")?,
                [
                    "w/1/meta",
                    "w/1/other/c",
                    "w/1/tasks/a",
                    "w/1/tasks/b",
                    "w/1/tasks/big",
                    "w/1/tasks/d"
                ]
            );
            assert_eq!(store.list("w/1/tasks/b")?, ["w/1/tasks/b", "w/1/tasks/big"]);
            assert_eq!(store.list_dir("w/1/")?, ["meta", "other/", "tasks/"]);
            assert_eq!(store.list_dir("w/1/tasks/")?, ["a", "b", "big", "d"]);
        }
        // Created in the other instance: seen here, and write-once across both.
        assert_eq!(t.put_if_absent("w/1/tasks/e", b"ve")?, Created);
        assert_eq!(s.put_if_absent("w/1/tasks/e", b"x")?, AlreadyExists);
        assert_eq!(s.get("w/1/tasks/e")?.as_deref(), Some(&b"ve"[..]));
        // A replace shadows the record; a delete removes it.
        s.put("w/1/tasks/a", b"new")?;
        assert_eq!(t.get("w/1/tasks/a")?.as_deref(), Some(&b"new"[..]));
        s.delete("w/1/tasks/a")?;
        s.delete("w/1/tasks/b")?;
        assert_eq!(t.get("w/1/tasks/a")?, None);
        assert_eq!(
            t.list("w/1/tasks/")?,
            ["w/1/tasks/big", "w/1/tasks/d", "w/1/tasks/e"]
        );
        assert_eq!(t.put_if_absent("w/1/tasks/b", b"vb2")?, Created);
        assert_eq!(s.get("w/1/tasks/b")?.as_deref(), Some(&b"vb2"[..]));
        // The directory emptied of its files (the large one) is removed;
        // its log, beside it, still answers.
        assert_eq!(s.delete_prefix("w/1/tasks/bi")?, 1);
        assert!(!tasks.exists());
        assert_eq!(t.list_dir("w/1/tasks/")?, ["b", "d", "e"]);
        assert_eq!(t.list_dir("w/1/")?, ["meta", "other/", "tasks/"]);
        // Deleting the workflow removes the log with the directory.
        assert_eq!(s.delete_prefix("w/1/")?, 5);
        assert!(!dir.path().join("w/1").exists());
        assert_eq!(t.list("w/")?, Vec::<String>::new());
        // The same workflow made again gets a log again.
        s.prepare("w/1/tasks/");
        s.put_if_absent("w/1/meta", b"m")?;
        s.put_if_absent("w/1/tasks/a", b"v")?;
        assert!(!tasks.join("a").exists());
        assert_eq!(t.get("w/1/tasks/a")?.as_deref(), Some(&b"v"[..]));
        Ok(())
    }

    #[test]
    fn two_instances_creating_the_same_keys_each_get_one_winner(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let stores: Vec<LocalStore> = (0..2)
            .map(|_| LocalStore::open(dir.path()))
            .collect::<Result<_, _>>()?;
        stores[0].prepare("w/tasks/");
        let wins: Vec<Vec<(String, Vec<u8>)>> = std::thread::scope(|sc| {
            let handles: Vec<_> = stores
                .iter()
                .enumerate()
                .map(|(who, st)| {
                    sc.spawn(move || {
                        let mut won = Vec::new();
                        for round in 0..50 {
                            let items: Vec<(String, Vec<u8>)> = (0..5)
                                .map(|j| (format!("w/tasks/k{round}-{j}"), vec![who as u8; 3]))
                                .collect();
                            let out = if round % 2 == 0 {
                                st.put_many_if_absent(&many(&items))
                            } else {
                                items.iter().map(|(k, v)| st.put_if_absent(k, v)).collect()
                            };
                            for (r, item) in out.into_iter().zip(items) {
                                if r.expect("put") == PutOutcome::Created {
                                    won.push(item);
                                }
                            }
                        }
                        won
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let mut all: Vec<&(String, Vec<u8>)> = wins.iter().flatten().collect();
        all.sort();
        assert_eq!(all.len(), 250, "every key created exactly once");
        all.dedup_by(|a, b| a.0 == b.0);
        assert_eq!(all.len(), 250);
        let fresh = LocalStore::open(dir.path())?;
        for (k, v) in wins.iter().flatten() {
            assert_eq!(fresh.get(k)?.as_ref(), Some(v), "{k}: the winner's value");
        }
        Ok(())
    }

    /// A store whose prepared directory `w/tasks/` logged two objects, `a`
    /// and `b`; and the log's path.
    fn two_logged() -> Result<(tempfile::TempDir, PathBuf), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let s = LocalStore::open(dir.path())?;
        s.prepare("w/tasks/");
        s.put_if_absent("w/tasks/a", b"first")?;
        s.put_if_absent("w/tasks/b", b"second")?;
        let log = dir.path().join("w/.tasks.log");
        Ok((dir, log))
    }

    #[test]
    fn a_torn_tail_reads_as_absent_and_is_kept_aside() -> Result<(), Box<dyn std::error::Error>> {
        let (dir, log) = two_logged()?;
        let len = fs::metadata(&log)?.len();
        // A crash in the middle of the second append.
        OpenOptions::new()
            .write(true)
            .open(&log)?
            .set_len(len - 3)?;
        let t = LocalStore::open(dir.path())?;
        assert_eq!(t.get("w/tasks/a")?.as_deref(), Some(&b"first"[..]));
        assert_eq!(t.get("w/tasks/b")?, None);
        assert_eq!(t.list("w/")?, ["w/tasks/a"]);
        // The next writer keeps the torn bytes aside, then appends.
        assert_eq!(t.put_if_absent("w/tasks/b", b"again")?, PutOutcome::Created);
        let aside: Vec<_> = fs::read_dir(dir.path().join("w"))?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".torn-"))
            .collect();
        assert_eq!(aside.len(), 1);
        // The second record: a 20-byte header, its name and its value.
        let second = 20 + 1 + 6;
        assert_eq!(len, 20 + 1 + 5 + second);
        assert_eq!(fs::metadata(aside[0].path())?.len(), second - 3);
        let u = LocalStore::open(dir.path())?;
        assert_eq!(u.get("w/tasks/b")?.as_deref(), Some(&b"again"[..]));
        assert_eq!(u.list("w/")?, ["w/tasks/a", "w/tasks/b"]);
        Ok(())
    }

    #[test]
    fn a_damaged_record_is_an_error_never_a_value() -> Result<(), Box<dyn std::error::Error>> {
        let (dir, log) = two_logged()?;
        let mut bytes = fs::read(&log)?;
        bytes[22] ^= 0x10; // in the first record's name
        fs::write(&log, &bytes)?;
        let t = LocalStore::open(dir.path())?;
        for key in ["w/tasks/a", "w/tasks/b", "w/tasks/c"] {
            let err = t.get(key).expect_err("a damaged log must not answer");
            let msg = err.to_string();
            assert!(
                msg.contains(key) && msg.contains(".tasks.log") && msg.contains("byte 0"),
                "{msg}"
            );
        }
        assert!(t.list("w/").is_err());
        assert!(t.put_if_absent("w/tasks/c", b"x").is_err());
        assert_eq!(fs::read(&log)?, bytes, "nothing written to a damaged log");
        // Deleting the workflow still works.
        t.delete_prefix("w/")?;
        assert!(!log.exists());
        Ok(())
    }
}
