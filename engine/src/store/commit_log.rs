//! The commit log of a prepared directory of a [`super::local::LocalStore`].
//!
//! A new file costs two flushes to become durable under its name (its data,
//! then its directory entry), where an append to an existing file costs
//! one. So the small objects created in a directory that [`super::Store::prepare`]
//! announced (a workflow's task outputs) are appended to one log file beside
//! that directory, `PARENT/.NAME.log` for `PARENT/NAME/`, and a group commit
//! appends all of its objects and flushes once.
//!
//! # Records
//! ```text
//! offset  size  field
//! 0       4     magic "XLR1"
//! 4       1     kind: 1 an object, 2 a deletion of one
//! 5       1     zero
//! 6       2     name length N (little endian)
//! 8       4     value length V
//! 12      4     crc32c of bytes 0..12
//! 16      4     crc32c of the name and the value
//! 20      N     the object's name within the directory
//! 20+N    V     the value
//! ```
//! The log is read from the start; a name's last record wins.
//!
//! # Concurrency and crashes
//! Every writer holds an exclusive `flock` on the log from its append until
//! the data is flushed, and readers a shared one while they read, so a reader
//! never sees a record that is not durable, and of two processes creating one
//! name exactly one does (the lock also covers the check for a file of that
//! name). A record cut short at the end of the file (a crash in the middle of
//! an append, never acknowledged: a sound header whose record runs past the
//! end, or a tail of zeros) is a torn tail: it reads as absent, and the next
//! writer copies its bytes aside to `.NAME.log.torn-OFFSET` before it
//! truncates them, so nothing is lost. Any other record that fails a checksum
//! is corruption: the log is read up to it and no further, every lookup that
//! does not find its name before it fails with an error naming the log and
//! the offset, and nothing more is appended to it.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::StoreError;

/// Objects larger than this get a file of their own: from a few MiB a
/// file's second flush (its directory's) is a small part of its cost;
/// below that it is not, and the log's single flush wins.
pub(crate) const LOG_MAX: usize = 4 << 20;

const MAGIC: &[u8; 4] = b"XLR1";
const HEADER: usize = 20;
const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;

/// How many logs stay open (with their index) in one process; idle ones
/// beyond it are closed and read again when next needed.
const OPEN_MAX: usize = 256;

/// The log of directory `dir`: `PARENT/.NAME.log`. `None` for the root.
pub(crate) fn log_path(dir: &Path) -> Option<PathBuf> {
    let name = dir.file_name()?.to_str()?;
    Some(dir.parent()?.join(format!(".{name}.log")))
}

/// The directory name whose log `file_name` is (`.NAME.log` -> `NAME`).
pub(crate) fn logged_dir_name(file_name: &str) -> Option<&str> {
    let inner = file_name.strip_prefix('.')?.strip_suffix(".log")?;
    (!inner.is_empty() && !inner.starts_with(".tmp-")).then_some(inner)
}

/// Where a live object's value is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    offset: u64,
    len: u32,
}

/// An open log and what has been read of it.
#[derive(Debug)]
pub(crate) struct Log {
    path: PathBuf,
    /// The inode of `file`: a log deleted and made again is another file.
    ino: u64,
    file: File,
    /// End of the last whole record read.
    valid: u64,
    index: HashMap<String, Loc>,
    /// Offset of a corrupt record: nothing from there is read or appended.
    corrupt_at: Option<u64>,
}

/// A record to append.
pub(crate) struct Append<'a> {
    pub name: &'a str,
    pub value: Option<&'a [u8]>,
}

/// The flock held for the life of the guard.
pub(crate) struct Locked<'a> {
    log: &'a mut Log,
    /// Appended, not yet settled: each record's name, where its value is
    /// (`None` for a deletion), and the end of the appended bytes.
    pending: Vec<(String, Option<Loc>)>,
    pending_end: u64,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: flock on a file descriptor owned by `self.log.file`.
        unsafe {
            libc::flock(self.log.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

impl Log {
    /// Opens the log at `path`; `None` if there is none.
    fn open(path: &Path) -> std::io::Result<Option<Log>> {
        // Read-only where it cannot be written (a store read by another
        // user, a read-only mount): reads work, appends fail with the error.
        let opened = match OpenOptions::new().read(true).write(true).open(path) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EROFS)) => {
                OpenOptions::new().read(true).open(path)
            }
            other => other,
        };
        match opened {
            Ok(file) => Ok(Some(Log {
                path: path.to_path_buf(),
                ino: file.metadata()?.ino(),
                file,
                valid: 0,
                index: HashMap::new(),
                corrupt_at: None,
            })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    /// Takes the log's flock, shared or exclusive, and reads what other
    /// writers appended since the last look.
    pub(crate) fn lock(&mut self, exclusive: bool) -> Result<Locked<'_>, StoreError> {
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        loop {
            // SAFETY: flock on a file descriptor owned by `self.file`.
            let rc = unsafe { libc::flock(self.file.as_raw_fd(), op) };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != ErrorKind::Interrupted {
                return Err(StoreError::io("lock commit log", self.describe(), err));
            }
        }
        let locked = Locked {
            log: self,
            pending: Vec::new(),
            pending_end: 0,
        };
        locked.log.refresh()?;
        Ok(locked)
    }

    /// Reads the records from `valid` to the end of the file: appended by
    /// other processes (this one indexes its own as it settles them). They
    /// are flushed before they are trusted: a live writer holds the lock
    /// until its flush, so unflushed ones are from a writer killed before
    /// its flush, and must not be acted upon before they are durable.
    fn refresh(&mut self) -> Result<(), StoreError> {
        if self.corrupt_at.is_some() {
            return Ok(());
        }
        let len = self
            .file
            .metadata()
            .map_err(|e| StoreError::io("read commit log", self.describe(), e))?
            .len();
        if len <= self.valid {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|e| StoreError::io("flush commit log", self.describe(), e))?;
        let mut buf = vec![0u8; (len - self.valid) as usize];
        self.file
            .read_exact_at(&mut buf, self.valid)
            .map_err(|e| StoreError::io("read commit log", self.describe(), e))?;
        let mut at = 0usize;
        while at < buf.len() {
            match parse(&buf[at..]) {
                Parsed::Record {
                    kind,
                    name,
                    value_at,
                    value_len,
                    total,
                } => {
                    let offset = self.valid + (at + value_at) as u64;
                    match kind {
                        KIND_PUT => {
                            self.index.insert(
                                name,
                                Loc {
                                    offset,
                                    len: value_len,
                                },
                            );
                        }
                        _ => {
                            self.index.remove(&name);
                        }
                    }
                    at += total;
                }
                // Torn: not read, and cut by the next writer.
                Parsed::Torn => break,
                Parsed::Corrupt => {
                    self.corrupt_at = Some(self.valid + at as u64);
                    break;
                }
            }
        }
        self.valid += at as u64;
        Ok(())
    }

    fn corrupt_error(&self, op: &'static str, key: &str, at: u64) -> StoreError {
        StoreError::Permanent {
            op,
            key: key.to_owned(),
            message: format!(
                "the commit log {} is damaged at byte {at} (a whole record fails its checksum, \
                 or a failed append could not be undone): nothing from there on is read, and \
                 nothing more is written to it",
                self.describe()
            ),
        }
    }
}

impl Locked<'_> {
    /// Whether `name` has a live object in the log. Fails if the log is
    /// corrupt before the name was found: it could be past the damage.
    pub(crate) fn contains(&self, key: &str, name: &str) -> Result<bool, StoreError> {
        if self.log.index.contains_key(name) {
            return Ok(true);
        }
        match self.log.corrupt_at {
            Some(at) => Err(self.log.corrupt_error("read", key, at)),
            None => Ok(false),
        }
    }

    /// The value of `name`, if it has a live object in the log.
    pub(crate) fn get(&self, key: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(loc) = self.log.index.get(name).copied() else {
            return match self.log.corrupt_at {
                Some(at) => Err(self.log.corrupt_error("read", key, at)),
                None => Ok(None),
            };
        };
        let mut value = vec![0u8; loc.len as usize];
        self.log
            .file
            .read_exact_at(&mut value, loc.offset)
            .map_err(|e| StoreError::io("read", key, e))?;
        Ok(Some(value))
    }

    /// How many names have a live object (in the part read).
    pub(crate) fn live(&self) -> usize {
        self.log.index.len()
    }

    /// The names with a live object, unordered. Fails if the log is corrupt.
    pub(crate) fn names(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        if let Some(at) = self.log.corrupt_at {
            return Err(self.log.corrupt_error("list", prefix, at));
        }
        Ok(self.log.index.keys().cloned().collect())
    }

    /// Appends `records` after the last whole record, unflushed: the caller
    /// flushes (fdatasync or syncfs) and then calls [`Self::settle`] with
    /// the outcome. A torn tail is copied aside and cut first.
    pub(crate) fn append(&mut self, key: &str, records: &[Append<'_>]) -> Result<(), StoreError> {
        if let Some(at) = self.log.corrupt_at {
            return Err(self.log.corrupt_error("commit", key, at));
        }
        let len = self
            .log
            .file
            .metadata()
            .map_err(|e| StoreError::io("commit", key, e))?
            .len();
        if len > self.log.valid {
            self.cut_torn_tail(key, len)?;
        }
        // Headers, names and small values are copied into one buffer; a
        // large value is written from where it is (one pwritev for all).
        let mut buf = Vec::new();
        let mut pieces: Vec<Piece<'_>> = Vec::new();
        let mut at = 0usize;
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            let start = buf.len();
            encode_head(&mut buf, r.name, r.value)?;
            let v = r.value.unwrap_or(&[]);
            let value_at = at + (buf.len() - start);
            if v.len() >= COPY_MAX {
                pieces.push(Piece::Buf(buf.len()));
                pieces.push(Piece::Value(v));
            } else {
                buf.extend_from_slice(v);
            }
            at = value_at + v.len();
            let loc = r.value.map(|v| Loc {
                offset: self.log.valid + value_at as u64,
                len: v.len() as u32,
            });
            pending.push((r.name.to_owned(), loc));
        }
        pieces.push(Piece::Buf(buf.len()));
        let mut slices: Vec<std::io::IoSlice<'_>> = Vec::with_capacity(pieces.len());
        let mut from = 0;
        for p in &pieces {
            match *p {
                Piece::Buf(to) => {
                    if to > from {
                        slices.push(std::io::IoSlice::new(&buf[from..to]));
                    }
                    from = to;
                }
                Piece::Value(v) => slices.push(std::io::IoSlice::new(v)),
            }
        }
        if let Err(e) = write_all_vectored_at(&self.log.file, &mut slices, self.log.valid) {
            let _ = self.log.file.set_len(self.log.valid);
            return Err(StoreError::io("commit", key, e));
        }
        self.pending = pending;
        self.pending_end = self.log.valid + at as u64;
        Ok(())
    }

    /// Keeps the appended records if their flush succeeded (indexing them),
    /// or cuts them off if it failed.
    pub(crate) fn settle(&mut self, flushed: bool) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        if flushed {
            for (name, loc) in pending {
                match loc {
                    Some(loc) => self.log.index.insert(name, loc),
                    None => self.log.index.remove(&name),
                };
            }
            self.log.valid = self.log.valid.max(self.pending_end);
            Ok(())
        } else {
            let cut = self.log.file.set_len(self.log.valid);
            if cut.is_err() {
                // Records that were never durable stay in the file: nothing
                // from there on may be read as valid, in this process or
                // another.
                self.log.corrupt_at = Some(self.log.valid);
                let _ = self.log.file.write_all_at(&[0xff; HEADER], self.log.valid);
            }
            cut.map_err(|e| StoreError::io("commit", self.log.describe(), e))
        }
    }

    /// Flushes the log's data (not its directory entry).
    pub(crate) fn sync_data(&self) -> std::io::Result<()> {
        self.log.file.sync_data()
    }

    fn cut_torn_tail(&mut self, key: &str, len: u64) -> Result<(), StoreError> {
        let valid = self.log.valid;
        let mut tail = vec![0u8; (len - valid) as usize];
        let aside = PathBuf::from(format!("{}.torn-{valid}", self.log.describe()));
        let kept = (|| -> std::io::Result<()> {
            self.log.file.read_exact_at(&mut tail, valid)?;
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&aside)?;
            f.write_all_at(&tail, 0)?;
            f.sync_all()
        })();
        kept.map_err(|e| StoreError::io("keep aside a torn commit-log tail", key, e))?;
        tracing::warn!(
            log = %self.log.describe(),
            offset = valid,
            bytes = tail.len(),
            aside = %aside.display(),
            "commit log: a record cut short by a crash was never acknowledged; kept aside and cut"
        );
        self.log
            .file
            .set_len(valid)
            .and_then(|()| self.log.file.sync_data())
            .map_err(|e| StoreError::io("cut a torn commit-log tail", key, e))
    }
}

enum Parsed {
    Record {
        kind: u8,
        name: String,
        value_at: usize,
        value_len: u32,
        total: usize,
    },
    Torn,
    Corrupt,
}

fn parse(buf: &[u8]) -> Parsed {
    // Cut short inside the header, or a tail of zeros (a file system that
    // extended the file before its data landed): a torn append.
    if buf.len() < HEADER || buf.iter().all(|&b| b == 0) {
        return Parsed::Torn;
    }
    let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let kind = buf[4];
    if &buf[..4] != MAGIC
        || word(12) != crc32c::crc32c(&buf[..12])
        || (kind != KIND_PUT && kind != KIND_DELETE)
        || buf[5] != 0
    {
        return Parsed::Corrupt;
    }
    let name_len = u16::from_le_bytes([buf[6], buf[7]]) as usize;
    let value_len = word(8);
    let total = HEADER + name_len + value_len as usize;
    if total > buf.len() {
        // A sound header whose record runs past the end.
        return Parsed::Torn;
    }
    if word(16) != crc32c::crc32c(&buf[HEADER..total]) {
        return Parsed::Corrupt;
    }
    let Ok(name) = std::str::from_utf8(&buf[HEADER..HEADER + name_len]) else {
        return Parsed::Corrupt;
    };
    Parsed::Record {
        kind,
        name: name.to_owned(),
        value_at: HEADER + name_len,
        value_len,
        total,
    }
}

/// Values at least this long are written from where they are, not copied
/// into the append's buffer.
const COPY_MAX: usize = 16 << 10;

/// A part of an append: the buffer up to an offset, or a value.
enum Piece<'a> {
    Buf(usize),
    Value(&'a [u8]),
}

/// Writes all of `slices` at `offset`, in as few calls as the kernel takes.
fn write_all_vectored_at(
    file: &File,
    mut slices: &mut [std::io::IoSlice<'_>],
    mut offset: u64,
) -> std::io::Result<()> {
    // Below any system's IOV_MAX (1024 on Linux).
    const IOV_MAX: usize = 512;
    while !slices.is_empty() {
        let n = slices.len().min(IOV_MAX);
        let off = libc::off_t::try_from(offset)
            .map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, "offset too large"))?;
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, the
        // slices outlive the call, and the descriptor is owned by `file`.
        let rc = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                slices.as_ptr().cast::<libc::iovec>(),
                n as libc::c_int,
                off,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if rc == 0 {
            return Err(ErrorKind::WriteZero.into());
        }
        offset += rc as u64;
        std::io::IoSlice::advance_slices(&mut slices, rc as usize);
    }
    Ok(())
}

/// Appends one record's header and name to `buf` (its value follows).
fn encode_head(buf: &mut Vec<u8>, name: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
    let v = value.unwrap_or(&[]);
    let (Ok(n), Ok(vl)) = (u16::try_from(name.len()), u32::try_from(v.len())) else {
        return Err(StoreError::Permanent {
            op: "commit",
            key: name.to_owned(),
            message: "too long for the commit log".to_owned(),
        });
    };
    let start = buf.len();
    buf.extend_from_slice(MAGIC);
    buf.push(if value.is_some() {
        KIND_PUT
    } else {
        KIND_DELETE
    });
    buf.push(0);
    buf.extend_from_slice(&n.to_le_bytes());
    buf.extend_from_slice(&vl.to_le_bytes());
    let head = crc32c::crc32c(&buf[start..start + 12]);
    buf.extend_from_slice(&head.to_le_bytes());
    let body = crc32c::crc32c_append(crc32c::crc32c(name.as_bytes()), v);
    buf.extend_from_slice(&body.to_le_bytes());
    buf.extend_from_slice(name.as_bytes());
    Ok(())
}

/// Appends one whole record to `buf`.
#[cfg(test)]
fn encode(buf: &mut Vec<u8>, name: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
    encode_head(buf, name, value)?;
    buf.extend_from_slice(value.unwrap_or(&[]));
    Ok(())
}

/// The open logs of one store, by log path.
#[derive(Debug, Default)]
pub(crate) struct Logs {
    /// With each log's inode, read without taking the log's own lock (held
    /// by a writer through its flush).
    #[allow(clippy::type_complexity)]
    open: parking_lot::Mutex<BTreeMap<PathBuf, (u64, Arc<parking_lot::Mutex<Log>>)>>,
}

impl Logs {
    /// The log at `path`, opened if it exists; `None` if there is none.
    pub(crate) fn get(
        &self,
        path: &Path,
    ) -> Result<Option<Arc<parking_lot::Mutex<Log>>>, StoreError> {
        let mut open = self.open.lock();
        if let Some((ino, l)) = open.get(path) {
            // Still the file at that path? It may have been deleted, or
            // deleted and made again (by another process, say).
            let here = match std::fs::metadata(path) {
                Ok(m) => Some(m.ino()),
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(StoreError::io(
                        "open commit log",
                        path.display().to_string(),
                        e,
                    ))
                }
            };
            if here == Some(*ino) {
                return Ok(Some(l.clone()));
            }
            open.remove(path);
            if here.is_none() {
                return Ok(None);
            }
        }
        let Some(log) = Log::open(path)
            .map_err(|e| StoreError::io("open commit log", path.display().to_string(), e))?
        else {
            return Ok(None);
        };
        if open.len() >= OPEN_MAX {
            open.retain(|_, (_, l)| Arc::strong_count(l) > 1);
        }
        let ino = log.ino;
        let l = Arc::new(parking_lot::Mutex::new(log));
        open.insert(path.to_path_buf(), (ino, l.clone()));
        Ok(Some(l))
    }

    /// Creates an empty log at `path` if there is none (unflushed).
    pub(crate) fn create(&self, path: &Path) -> std::io::Result<()> {
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Forgets the logs at or below `dir` (deleted).
    pub(crate) fn forget_below(&self, dir: &Path) {
        // The paths at or below `dir` are one range of the map.
        let mut open = self.open.lock();
        let doomed: Vec<PathBuf> = open
            .range::<Path, _>((std::ops::Bound::Included(dir), std::ops::Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(dir))
            .map(|(p, _)| p.clone())
            .collect();
        for p in doomed {
            open.remove(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, value: Option<&[u8]>) -> Vec<u8> {
        let mut b = Vec::new();
        encode(&mut b, name, value).expect("encode");
        b
    }

    #[test]
    fn records_parse_back_and_damage_is_classified() {
        let r = record("t1", Some(b"hello"));
        match parse(&r) {
            Parsed::Record {
                kind,
                name,
                value_at,
                value_len,
                total,
            } => {
                assert_eq!((kind, name.as_str()), (KIND_PUT, "t1"));
                assert_eq!(&r[value_at..value_at + value_len as usize], b"hello");
                assert_eq!(total, r.len());
            }
            _ => panic!("a whole record must parse"),
        }
        // Every proper prefix is torn; every bit flip of a whole record is
        // corruption, even with the record followed by others.
        for cut in 0..r.len() {
            assert!(matches!(parse(&r[..cut]), Parsed::Torn), "cut {cut}");
        }
        let two = [r.clone(), record("t2", Some(b"world"))].concat();
        for bit in 0..r.len() * 8 {
            for buf in [&r, &two] {
                let mut b = buf.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                assert!(
                    matches!(parse(&b), Parsed::Corrupt),
                    "bit {bit} flipped, not seen as corruption"
                );
            }
        }
        assert!(matches!(parse(&[0u8; 40]), Parsed::Torn));
    }

    #[test]
    fn log_paths_and_names() {
        assert_eq!(
            log_path(Path::new("/s/w/1/tasks")),
            Some(PathBuf::from("/s/w/1/.tasks.log"))
        );
        assert_eq!(logged_dir_name(".tasks.log"), Some("tasks"));
        assert_eq!(logged_dir_name(".tmp-1-2-x"), None);
        assert_eq!(logged_dir_name(".log"), None);
        assert_eq!(logged_dir_name(".tasks.log.torn-16"), None);
    }
}
