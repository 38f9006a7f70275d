//! Durability primitives: temporary files, fsyncs of files and directories,
//! moves into place that never replace, and `syncfs`.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::LocalStore;
use crate::store::{PutOutcome, Store, StoreError};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl LocalStore {
    /// Creates the parent directories of `path`, fsyncing each new one into its
    /// parent.
    pub(super) fn make_parents(
        &self,
        key: &str,
        path: &Path,
        sync: bool,
    ) -> Result<(), StoreError> {
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
    pub(super) fn dirs_down_to(&self, dir: &Path) -> Vec<PathBuf> {
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

    pub(super) fn sync_dir(&self, key: &str, dir: &Path) -> Result<(), StoreError> {
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
    pub(super) fn promote(&self, dirs: Vec<PathBuf>) {
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

    pub(super) fn write_temp(
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
    pub(super) fn publish(
        &self,
        key: &str,
        tmp: &Path,
        path: &Path,
    ) -> Result<PutOutcome, StoreError> {
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

    pub(super) fn syncfs(&self) -> Result<(), StoreError> {
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
pub(super) fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
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
