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

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
        })
    }

    /// Turns fsync off: for benchmarks that isolate everything but the disk
    /// flush. Durability is lost; never use it for real data.
    pub fn without_fsync(mut self) -> Self {
        self.fsync = false;
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

    /// Moves `tmp` to `path` unless `path` exists.
    fn publish(&self, key: &str, tmp: &Path, path: &Path) -> Result<PutOutcome, StoreError> {
        let outcome = rename_noreplace(tmp, path);
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

fn walk(dir: &Path, rel: &str, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let key = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        let is_dir = entry.file_type()?.is_dir();
        if is_dir {
            let as_dir = format!("{key}/");
            if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                walk(&entry.path(), &key, prefix, out)?;
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
    }

    fn put_if_absent(&self, key: &str, value: &[u8]) -> Result<PutOutcome, StoreError> {
        let path = self.path(key)?;
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
        // Phase 1: write every temporary file, unsynced.
        let staged: Vec<Result<(PathBuf, PathBuf), StoreError>> = items
            .iter()
            .map(|(k, v)| {
                let path = self.path(k)?;
                let tmp = self.write_temp(k, &path, v, false)?;
                Ok((tmp, path))
            })
            .collect();
        // Phase 2: one flush for all their data.
        // A failed flush is permanent: after a write-back error the kernel may
        // have dropped the pages, and a retry could report success for data
        // that is gone.
        if let Err(e) = self.syncfs() {
            for (tmp, _) in staged.iter().flatten() {
                let _ = fs::remove_file(tmp);
            }
            let msg = e.to_string();
            return items
                .iter()
                .map(|(k, _)| {
                    Err(StoreError::Permanent {
                        op: "group commit",
                        key: (*k).to_owned(),
                        message: msg.clone(),
                    })
                })
                .collect();
        }
        crate::failpoint::hit("local.before_publish");
        // Phase 3: publish, then one flush for the directory entries.
        let mut out: Vec<Result<PutOutcome, StoreError>> = staged
            .into_iter()
            .zip(items)
            .map(|(s, (k, _))| s.and_then(|(tmp, path)| self.publish(k, &tmp, &path)))
            .collect();
        let flushed = self.syncfs();
        if flushed.is_ok() {
            // Every directory on the way to these keys is durable now.
            let mut known = self.durable_dirs.lock();
            for (k, _) in items {
                let mut p = self.root.join(k);
                while let Some(up) = p.parent() {
                    if up == self.root || !known.insert(up.to_path_buf()) {
                        break;
                    }
                    p = up.to_path_buf();
                }
            }
        }
        if let Err(e) = flushed {
            let msg = e.to_string();
            for (r, (k, _)) in out.iter_mut().zip(items) {
                if matches!(r, Ok(PutOutcome::Created)) {
                    *r = Err(StoreError::Permanent {
                        op: "group commit",
                        key: (*k).to_owned(),
                        message: msg.clone(),
                    });
                }
            }
        }
        out
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let tmp = self.write_temp(key, &path, value, true)?;
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::io("replace", key, e));
        }
        match path.parent() {
            Some(parent) => self.sync_dir(key, parent),
            None => Ok(()),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            // A key whose name is a directory (it has keys below it) holds no object.
            Err(e) if e.kind() == ErrorKind::IsADirectory => Ok(None),
            Err(e) => Err(StoreError::io("read", key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        // Start the walk at the deepest directory the prefix names in full.
        let (dir_rel, _) = match prefix.rfind('/') {
            Some(i) => (&prefix[..i], &prefix[i + 1..]),
            None => ("", prefix),
        };
        let start = if dir_rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_rel)
        };
        let mut out = Vec::new();
        walk(&start, dir_rel, prefix, &mut out).map_err(|e| StoreError::io("list", prefix, e))?;
        out.sort_unstable();
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
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("list_dir", prefix, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list_dir", prefix, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
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
        out.sort_unstable();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("delete", key, e)),
        }
    }

    fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let keys = self.list(prefix)?;
        for k in &keys {
            self.delete(k)?;
        }
        // Remove directories left empty below the prefix's directory.
        if let Some(i) = prefix.rfind('/') {
            let dir = self.root.join(&prefix[..i]);
            self.durable_dirs.lock().retain(|d| !d.starts_with(&dir));
            self.fresh_dirs.lock().retain(|d| !d.starts_with(&dir));
            remove_empty_dirs(&dir);
        }
        Ok(keys.len())
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
}
