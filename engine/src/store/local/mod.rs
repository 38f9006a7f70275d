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
//! Objects of at most 4 MiB created below a directory announced by
//! [`Store::prepare`] (a workflow's records and task outputs) are not files:
//! they are appended to that directory's commit log, `PARENT/.NAME.log`
//! (names relative to the directory, `status/000001` say), one flush each (or
//! one per group commit) instead of two, and no directory is made for them;
//! see `commit_log`. A key belongs to the log of the nearest directory above
//! it that has one. Reads, listings and deletions see them like files. Other
//! keys (the streaming job's outputs, which users read as files) stay files.
//!
//! The parts: `durable` (temporary files, fsyncs, no-replace renames),
//! `logged` (objects in a directory's commit log), `group` (the group
//! commit, step by step) and `walk` (listings).

mod durable;
mod group;
mod logged;
mod walk;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::commit_log::{self, log_path, Logs, LOG_MAX};
use super::{PutOutcome, Store, StoreError};
use crate::id::{validate_key, validate_prefix};

/// Below this many objects a batch fsyncs each file and directory; from it on,
/// it uses `syncfs`.
const SYNCFS_FROM: usize = 4;

/// A store rooted at a local directory.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    fsync: bool,
    /// Directories whose entry in their parent is known durable: created
    /// and fsynced into their parent by this process, or found and fsynced
    /// once (another writer, or a crashed process, may have created one
    /// without the fsync yet).
    durable_dirs: parking_lot::Mutex<std::collections::BTreeSet<PathBuf>>,
    /// Directories created by [`Store::prepare`] whose entry in their parent
    /// is not flushed yet: the next flush of the parent (or a `syncfs`) makes
    /// them durable.
    fresh_dirs: parking_lot::Mutex<std::collections::BTreeSet<PathBuf>>,
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
            durable_dirs: parking_lot::Mutex::new(std::collections::BTreeSet::new()),
            fresh_dirs: parking_lot::Mutex::new(std::collections::BTreeSet::new()),
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
}

impl Store for LocalStore {
    /// Creates the commit log of `prefix` (and the directories above it)
    /// now, without flushing them: the first commit below it (a workflow's
    /// metadata) makes them durable with its own flush. Every small object
    /// below `prefix` then goes into that log; its directory is made only
    /// when an object needs a file there.
    fn prepare(&self, prefix: &str) {
        if validate_prefix(prefix).is_err() || !prefix.ends_with('/') {
            return;
        }
        let dir = self.root.join(prefix.trim_end_matches('/'));
        let Some(parent) = dir.parent() else {
            return;
        };
        if self.durable_dirs.lock().contains(&dir) {
            return;
        }
        // The directory itself is made only if a key needs a file in it.
        for d in self.dirs_down_to(parent) {
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
        self.group_commit(items)
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
        // The logs of the directory and of those above it hold names below
        // it: a name directly below, or the first directory of a nested one.
        for (lp, rel) in self.logs_above(prefix.trim_end_matches('/')) {
            for k in self.log_keys(&lp, &rel, prefix)? {
                let rest = &k[prefix.len()..];
                out.push(match rest.find('/') {
                    Some(i) => rest[..=i].to_owned(),
                    None => rest.to_owned(),
                });
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
            remove_below(&mut self.durable_dirs.lock(), &dir);
            remove_below(&mut self.fresh_dirs.lock(), &dir);
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

/// Removes `dir` and the paths below it from `set`: a range of the set, as
/// a path sorts right before those below it (by components), so that a
/// delete costs the paths it removes, not the set's size.
fn remove_below(set: &mut std::collections::BTreeSet<PathBuf>, dir: &Path) {
    use std::ops::Bound;
    let doomed: Vec<PathBuf> = set
        .range::<Path, _>((Bound::Included(dir), Bound::Unbounded))
        .take_while(|p| p.starts_with(dir))
        .cloned()
        .collect();
    for p in doomed {
        set.remove(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    #[test]
    fn remove_below_takes_a_directory_and_what_is_under_it_only() {
        let all = [
            "/a", "/a/b", "/a/b/c", "/a/b/c/d", "/a/bb", "/a/b.log", "/a0", "/b",
        ];
        let mut set: std::collections::BTreeSet<PathBuf> = all.iter().map(PathBuf::from).collect();
        remove_below(&mut set, Path::new("/a/b"));
        let left: Vec<&str> = set.iter().filter_map(|p| p.to_str()).collect();
        assert_eq!(left, ["/a", "/a/b.log", "/a/bb", "/a0", "/b"]);
    }

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
    fn a_prepared_prefix_keeps_every_small_object_below_it_in_one_log(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let s = LocalStore::open(dir.path())?;
        s.prepare("w/1/");
        let log = dir.path().join("w/.1.log");
        assert!(log.is_file());
        // Created but not flushed: not durable yet; an empty log is no key,
        // and no directory is made.
        assert!(!s.durable_dirs.lock().contains(&log));
        assert!(!dir.path().join("w/1").exists());
        assert!(s.list_dir("w/")?.is_empty());
        // The first commit flushes the log and its entry in its parent.
        s.put_if_absent("w/1/meta", b"m")?;
        assert!(s.durable_dirs.lock().contains(&log));
        assert!(s.fresh_dirs.lock().is_empty());
        // Nested names go into the same log, at any depth.
        assert_eq!(s.put_if_absent("w/1/tasks/t", b"v")?, PutOutcome::Created);
        assert_eq!(
            s.put_if_absent("w/1/tasks/t", b"v")?,
            PutOutcome::AlreadyExists
        );
        assert_eq!(s.put_if_absent("w/1/a/b/c", b"d")?, PutOutcome::Created);
        assert_eq!(s.get("w/1/tasks/t")?.as_deref(), Some(&b"v"[..]));
        assert_eq!(s.get("w/1/tasks/u")?, None);
        assert!(!dir.path().join("w/1").exists());
        assert_eq!(s.list_dir("w/")?, ["1/"]);
        assert_eq!(s.list_dir("w/1/")?, ["a/", "meta", "tasks/"]);
        assert_eq!(s.list_dir("w/1/a/")?, ["b/"]);
        assert_eq!(s.list("w/1/tasks/")?, ["w/1/tasks/t"]);
        assert_eq!(s.list("w/1/ta")?, ["w/1/tasks/t"]);
        assert_eq!(s.list("w/")?, ["w/1/a/b/c", "w/1/meta", "w/1/tasks/t"]);
        // An object too big for the log gets a file (and its directories).
        let big = vec![7u8; LOG_MAX + 1];
        assert_eq!(s.put_if_absent("w/1/tasks/big", &big)?, PutOutcome::Created);
        assert!(dir.path().join("w/1/tasks/big").is_file());
        assert_eq!(s.list("w/1/tasks/")?, ["w/1/tasks/big", "w/1/tasks/t"]);
        assert_eq!(s.get("w/1/tasks/big")?.map(|v| v.len()), Some(LOG_MAX + 1));
        // Deleting one nested key, then the whole prefix.
        s.delete("w/1/a/b/c")?;
        assert_eq!(s.get("w/1/a/b/c")?, None);
        assert_eq!(s.list_dir("w/1/")?, ["meta", "tasks/"]);
        assert_eq!(s.delete_prefix("w/1/")?, 3);
        assert!(s.list("w/")?.is_empty());
        assert!(!log.exists());
        // Group commits (syncfs) cover prepared logs too; bad prefixes are
        // ignored.
        s.prepare("w/2/");
        s.prepare("../x/");
        s.prepare("w/3");
        let items: Vec<(String, Vec<u8>)> = (0..SYNCFS_FROM)
            .map(|i| (format!("w/2/status/k{i}"), vec![i as u8]))
            .collect();
        let refs: Vec<(&str, &[u8])> = items
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        assert!(s.put_many_if_absent(&refs).iter().all(|r| r.is_ok()));
        assert!(s.durable_dirs.lock().contains(&dir.path().join("w/.2.log")));
        assert!(!dir.path().join("w/2").exists());
        assert_eq!(s.list("w/2/status/")?.len(), SYNCFS_FROM);
        assert!(!dir.path().join("w/3").exists());
        // A fresh handle (another process) reads the same.
        let again = LocalStore::open(dir.path())?;
        assert_eq!(again.get("w/2/status/k1")?.as_deref(), Some(&[1u8][..]));
        assert_eq!(again.list_dir("w/2/")?, ["status/"]);
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
        walk::walk(dir.path(), "", "", &mut Vec::new(), &mut logs)?;
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
