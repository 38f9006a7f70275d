//! Reading a whole edge file (plain or gzip) into memory, for the offline
//! batch computation. Malformed lines are kept aside with their place; none
//! is dropped silently.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::edge::{escape, parse_line, Edge, Line, Malformed, Op, MAX_LINE};

/// A malformed line and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the line's start (in the uncompressed stream).
    pub offset: u64,
    /// Why.
    pub reason: Malformed,
    /// The line's bytes, escaped (at most 256 bytes of it).
    pub raw: String,
}

/// An error reading an edge file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The edges of a file, in order, and its rejected lines.
#[derive(Debug, Default)]
pub struct EdgeFile {
    /// Well-formed edge operations, in file order.
    pub edges: Vec<Edge>,
    /// Malformed lines.
    pub rejected: Vec<Rejected>,
    /// Lines read in all.
    pub lines: u64,
}

/// The edge operations of a part of a file, in columns: the pairs, and
/// which of them are removals. An edge file is mostly inserts of ids below
/// 2^32: 8 bytes an operation, where [`Edge`] takes 24.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EdgePart {
    /// `(src, dst)` of each operation, in file order.
    pub pairs: Pairs,
    /// Indices in `pairs` of the removals, ascending.
    pub removals: Vec<usize>,
}

impl EdgePart {
    /// Appends an operation.
    #[inline]
    pub fn push(&mut self, op: Op, src: u64, dst: u64) {
        if op == Op::Remove {
            self.removals.push(self.pairs.len());
        }
        self.pairs.push(src, dst);
    }

    /// The operations, in order.
    pub fn edges(&self) -> impl Iterator<Item = Edge> + '_ {
        let mut removals = self.removals.iter().peekable();
        self.pairs.iter().enumerate().map(move |(i, (src, dst))| {
            let op = if removals.next_if_eq(&&i).is_some() {
                Op::Remove
            } else {
                Op::Insert
            };
            Edge { op, src, dst }
        })
    }
}

/// `(src, dst)` pairs in order: one word each, `src << 32 | dst`, while
/// every id fits in 32 bits (most edge files': half the memory, and the
/// fresh memory a large file's pairs take is a good part of reading it);
/// two words each from the first id that does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pairs {
    /// `src << 32 | dst`.
    Narrow(Vec<u64>),
    /// Any ids.
    Wide(Vec<(u64, u64)>),
}

impl Default for Pairs {
    fn default() -> Self {
        Self::Narrow(Vec::new())
    }
}

impl Pairs {
    /// Room for `n` pairs of small ids.
    pub fn with_capacity(n: usize) -> Self {
        Self::Narrow(Vec::with_capacity(n))
    }

    /// Appends a pair.
    #[inline]
    pub fn push(&mut self, src: u64, dst: u64) {
        match self {
            Self::Narrow(v) if (src | dst) >> 32 == 0 => v.push(src << 32 | dst),
            _ => self.push_wide(src, dst),
        }
    }

    /// Appends a pair as two words, widening the pairs so far if needed.
    #[cold]
    fn push_wide(&mut self, src: u64, dst: u64) {
        if let Self::Narrow(_) = self {
            *self = Self::Wide(self.iter().collect());
        }
        if let Self::Wide(v) = self {
            v.push((src, dst));
        }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        match self {
            Self::Narrow(v) => v.len(),
            Self::Wide(v) => v.len(),
        }
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let (narrow, wide) = match self {
            Self::Narrow(v) => (&v[..], &[][..]),
            Self::Wide(v) => (&[][..], &v[..]),
        };
        narrow
            .iter()
            .map(|&k| (k >> 32, k & 0xffff_ffff))
            .chain(wide.iter().copied())
    }

    /// The pairs as two words each.
    pub fn into_wide(self) -> Vec<(u64, u64)> {
        match self {
            Self::Wide(v) => v,
            narrow => narrow.iter().collect(),
        }
    }
}

/// A file's edges as read in parts (one per reading thread, in file order),
/// and its rejected lines.
#[derive(Debug, Default)]
pub struct EdgeColumns {
    /// The parts, in file order.
    pub parts: Vec<EdgePart>,
    /// Malformed lines, numbered in the whole file.
    pub rejected: Vec<Rejected>,
    /// Lines read in all.
    pub lines: u64,
}

impl EdgeColumns {
    /// Whether every operation is an insert.
    pub fn inserts_only(&self) -> bool {
        self.parts.iter().all(|p| p.removals.is_empty())
    }

    /// Number of edge operations.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.pairs.len()).sum()
    }

    /// Whether there is no edge operation.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<EdgeColumns> for EdgeFile {
    fn from(c: EdgeColumns) -> Self {
        Self {
            edges: c.parts.iter().flat_map(EdgePart::edges).collect(),
            rejected: c.rejected,
            lines: c.lines,
        }
    }
}

/// Whether a file is gzip, by its magic bytes.
pub fn is_gzip(path: &Path) -> Result<bool, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let (magic, n) = read_magic(&mut f).map_err(io)?;
    Ok(n == 2 && magic == GZIP_MAGIC)
}

/// The first bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The first two bytes of `r` (fewer at its end) and how many there are.
fn read_magic(r: &mut impl Read) -> std::io::Result<([u8; 2], usize)> {
    let mut magic = [0u8; 2];
    let mut n = 0;
    while n < magic.len() {
        match r.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((magic, n))
}

/// One line as read: where it starts, and its bytes without the `\n`, or,
/// for a line over [`MAX_LINE`] bytes, its length and first 256 bytes.
#[derive(Debug)]
pub enum RawLine<'a> {
    /// A line of at most [`MAX_LINE`] bytes.
    Line(&'a [u8]),
    /// An overlong line: its whole length and its first bytes (the rest was
    /// skipped without being held in memory).
    TooLong {
        /// Length in bytes, line end included.
        len: usize,
        /// The first bytes.
        head: &'a [u8],
    },
}

/// Reads lines from a buffered stream, tracking byte offsets, never holding
/// more than [`MAX_LINE`] + 2 bytes of a line in memory. A last line without
/// its `\n` still counts.
pub struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    offset: u64,
}

impl<R: BufRead> LineReader<R> {
    /// Starts reading at byte `offset` of the stream (the reader must be
    /// positioned there).
    pub fn new(reader: R, offset: u64) -> Self {
        Self {
            reader,
            buf: Vec::with_capacity(256),
            offset,
        }
    }

    /// The offset of the next line.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next line and its start offset, or `None` at the end.
    pub fn next_line(&mut self) -> std::io::Result<Option<(u64, RawLine<'_>)>> {
        self.buf.clear();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        let start = self.offset;
        self.offset += n as u64;
        if self.buf.last() == Some(&b'\n') {
            let line = &self.buf[..n - 1];
            return Ok(Some((start, RawLine::Line(line))));
        }
        if n <= MAX_LINE {
            // The last line, without its line end.
            return Ok(Some((start, RawLine::Line(&self.buf[..]))));
        }
        // Skip the rest of an overlong line.
        let mut rest = 0u64;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(p) => {
                    self.reader.consume(p + 1);
                    rest += p as u64 + 1;
                    break;
                }
                None => {
                    let l = chunk.len();
                    self.reader.consume(l);
                    rest += l as u64;
                }
            }
        }
        self.offset += rest;
        Ok(Some((
            start,
            RawLine::TooLong {
                len: n + rest as usize,
                head: &self.buf[..256],
            },
        )))
    }
}

/// Opens an edge file for reading from its start, decompressing gzip. The
/// magic bytes are read from the stream itself, not from a second opening,
/// so that a pipe (`--edges /dev/stdin`) loses nothing.
pub fn open_stream(path: &Path) -> Result<Box<dyn Read + Send>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let (magic, n) = read_magic(&mut file).map_err(io)?;
    let stream = std::io::Cursor::new(magic).take(n as u64).chain(file);
    Ok(if n == 2 && magic == GZIP_MAGIC {
        Box::new(flate2::read::MultiGzDecoder::new(stream))
    } else {
        Box::new(stream)
    })
}

/// Reads every line of an edge file (gzip read transparently).
pub fn read_all(path: &Path) -> Result<EdgeFile, ReadError> {
    read_all_on(path, 1)
}

/// [`read_columns_on`], the edges as one list of [`Edge`]s.
pub fn read_all_on(path: &Path, threads: usize) -> Result<EdgeFile, ReadError> {
    read_columns_on(path, threads).map(EdgeFile::from)
}

/// Reads every line of an edge file, a plain one in `threads` parts cut at
/// line ends, each part read by a thread of its own from its place in the
/// file (no copy of the whole file in memory). The line numbers and offsets
/// are those of the whole file, and the parts joined in order are what one
/// thread reads. A gzip file is read as one stream.
pub fn read_columns_on(path: &Path, threads: usize) -> Result<EdgeColumns, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    // A pipe or a device has no length to cut at: read as one stream (and
    // read once: no separate look at its first bytes).
    let meta = std::fs::metadata(path).map_err(io)?;
    let plain = meta.is_file() && !is_gzip(path)?;
    if threads <= 1 || !plain {
        let reader = BufReader::with_capacity(1 << 20, open_stream(path)?);
        let len = plain.then_some(meta.len() as usize);
        let (part, rejected, lines) = read_part(LineReader::new(reader, 0), len).map_err(io)?;
        return Ok(EdgeColumns {
            parts: vec![part],
            rejected,
            lines,
        });
    }
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let cuts = line_starts(&file, len, threads).map_err(io)?;
    let parts: Vec<std::io::Result<_>> = std::thread::scope(|s| {
        let handles: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                let (start, end) = (w[0], w[1]);
                s.spawn(move || {
                    let mut f = File::open(path)?;
                    f.seek(SeekFrom::Start(start))?;
                    let reader = BufReader::with_capacity(1 << 20, f.take(end - start));
                    read_part(LineReader::new(reader, start), Some((end - start) as usize))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut out = EdgeColumns::default();
    for part in parts {
        let (part, rejected, lines) = part.map_err(io)?;
        out.rejected.extend(rejected.into_iter().map(|mut r| {
            r.line += out.lines;
            r
        }));
        out.lines += lines;
        out.parts.push(part);
    }
    Ok(out)
}

/// About how many lines `len` bytes hold, if they are like `sample`, their
/// first bytes, and a sixteenth more in case later lines are shorter (past
/// that, the pairs grow as a `Vec` does).
fn expected_lines(sample: &[u8], len: usize) -> usize {
    let lines = memchr::memchr_iter(b'\n', sample).count();
    if sample.len() >= len {
        return lines + 1;
    }
    // At least 4 bytes a line (`1 2\n`); the sample's rate otherwise.
    let per_line = (sample.len() / lines.max(1)).max(4);
    let n = len / per_line;
    n + n / 16 + 1
}

/// `parts + 1` offsets cutting a file of `len` bytes into `parts` runs of
/// whole lines, near equal in size: 0, the start of the first line at or
/// after each `len * k / parts`, and `len`.
fn line_starts(file: &File, len: u64, parts: usize) -> std::io::Result<Vec<u64>> {
    let mut cuts = vec![0u64];
    let mut window = vec![0u8; 1 << 16];
    for k in 1..parts as u64 {
        let last = *cuts.last().unwrap_or(&0);
        // A line starts at `at` if the byte before it is a line end.
        let mut at = (len * k / parts as u64).max(last).max(1) - 1;
        let start = loop {
            let n = file.read_at(&mut window, at)?;
            if n == 0 {
                break len;
            }
            if let Some(p) = memchr::memchr(b'\n', &window[..n]) {
                break at + p as u64 + 1;
            }
            at += n as u64;
        };
        cuts.push(start.max(last));
    }
    cuts.push(len);
    Ok(cuts)
}

/// Every line of a stream: the edges, the rejected lines (numbered from 1
/// in this stream) and the number of lines. Plain lines are parsed in the
/// reader's buffer ([`plain_lines`]); any other line, and a line across the
/// buffer's end, is read alone and given to [`parse_line`].
///
/// `len` is the stream's length when known: the pairs are given room for
/// as many lines as its first buffer's suggest, so that they are not
/// moved as they grow (a copy of hundreds of MB, and as much fresh memory
/// again, for a large file).
fn read_part<R: BufRead>(
    mut lines: LineReader<R>,
    len: Option<usize>,
) -> std::io::Result<(EdgePart, Vec<Rejected>, u64)> {
    let mut part = EdgePart::default();
    let mut rejected = Vec::new();
    let mut count = 0u64;
    let mut sized = len.is_none();
    loop {
        let buf = lines.reader.fill_buf()?;
        if !sized {
            sized = true;
            part.pairs = Pairs::with_capacity(expected_lines(buf, len.unwrap_or(0)));
        }
        let (used, n) = plain_lines(buf, &mut part);
        lines.reader.consume(used);
        lines.offset += used as u64;
        count += n;
        let Some((offset, raw)) = lines.next_line()? else {
            break;
        };
        count += 1;
        match classify(raw, count, offset) {
            Ok(Some(e)) => part.push(e.op, e.src, e.dst),
            Ok(None) => {}
            Err(r) => rejected.push(r),
        }
    }
    Ok((part, rejected, count))
}

/// Line number `line`, read at `offset`: its edge, nothing (a comment or a
/// blank line), or why it is malformed, kept aside with its place.
fn classify(raw: RawLine<'_>, line: u64, offset: u64) -> Result<Option<Edge>, Rejected> {
    let (reason, raw) = match raw {
        RawLine::Line(bytes) => match parse_line(bytes) {
            Ok(Line::Edge(e)) => return Ok(Some(e)),
            Ok(Line::Skip) => return Ok(None),
            Err(reason) => (reason, &bytes[..bytes.len().min(256)]),
        },
        RawLine::TooLong { len, head } => (Malformed::TooLong { len }, head),
    };
    Err(Rejected {
        line,
        offset,
        reason,
        raw: escape(raw),
    })
}

/// Parses the plain lines at the start of `buf`, `[-]a b\n` (one or more
/// spaces or tabs between the ids, each of at most 19 digits; `\r\n`
/// allowed), into `part`, as [`parse_line`] would; stops before the first
/// other line, or the first without its line end in `buf`. Returns the
/// bytes and the lines it took.
#[inline]
fn plain_lines(buf: &[u8], part: &mut EdgePart) -> (usize, u64) {
    let mut i = 0;
    let mut n = 0;
    loop {
        let remove = buf.get(i) == Some(&b'-');
        let Some((src, mut j)) = digits(buf, i + usize::from(remove)) else {
            return (i, n);
        };
        let sep = j;
        while matches!(buf.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        if j == sep {
            return (i, n);
        }
        let Some((dst, mut j)) = digits(buf, j) else {
            return (i, n);
        };
        match buf.get(j) {
            Some(b'\n') => j += 1,
            Some(b'\r') if buf.get(j + 1) == Some(&b'\n') => j += 2,
            _ => return (i, n),
        }
        part.push(if remove { Op::Remove } else { Op::Insert }, src, dst);
        i = j;
        n += 1;
    }
}

/// The 1 to 19 digits at `buf[i..]` (always within 64 bits) and the index
/// after them; `None` for no digit, 20 or more, or digits up to the end of
/// `buf` (more may follow).
#[inline(always)]
fn digits(buf: &[u8], mut i: usize) -> Option<(u64, usize)> {
    // Up to 7 digits followed by a non-digit in the next 8 bytes (ids
    // below 10^7, most of an edge file's): all at once, in one word.
    if let Some(word) = buf.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().ok()?);
        // A byte is a digit iff its high nibble is 3 and stays 3 after
        // adding 6 (0x30..=0x39). A carry out of a byte of 0xFA or more
        // only disturbs the bytes after it, past the first non-digit.
        const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
        const THREES: u64 = 0x3030_3030_3030_3030;
        let not_digit =
            ((w & HIGH) ^ THREES) | ((w.wrapping_add(0x0606_0606_0606_0606) & HIGH) ^ THREES);
        if not_digit != 0 {
            let len = (not_digit.trailing_zeros() / 8) as usize;
            if len == 0 {
                return None;
            }
            // The digits' values in the word's top `len` bytes (the first
            // digit lowest), zeros below: an 8-digit number with leading
            // zeros, combined in pairs, fours, then eights.
            let v = (w & 0x0F0F_0F0F_0F0F_0F0F) << (8 * (8 - len));
            let v = (v.wrapping_mul(10) + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
            let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
            let v = (v.wrapping_mul(10_000) + (v >> 32)) & 0xFFFF_FFFF;
            return Some((v, i + len));
        }
    }
    let start = i;
    let mut v: u64 = 0;
    loop {
        let d = buf.get(i)?.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        // A 20th digit is refused before it is added: 19 always fit.
        if i - start == 19 {
            return None;
        }
        v = v * 10 + u64::from(d);
        i += 1;
    }
    (i > start).then_some((v, i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::Op;
    use std::io::Write;

    #[test]
    fn any_number_of_threads_reads_the_same() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        // Bad lines here and there, an overlong one, CRLF, comments, and a
        // last line without its line end.
        let mut text = Vec::new();
        for i in 0..3000u64 {
            match i % 97 {
                0 => text.extend_from_slice(b"not an edge\n"),
                1 => text.extend_from_slice(b"# comment\r\n"),
                2 if i == 2 => {
                    text.extend(std::iter::repeat_n(b'7', MAX_LINE + 10));
                    text.push(b'\n');
                }
                // Ids past 32 bits, where one part's pairs widen.
                3 if i > 2000 => text.extend_from_slice(b"4294967296 9999999999999999999\n"),
                _ => text.extend_from_slice(format!("{} {}\n", i, i * 7 % 1000).as_bytes()),
            }
        }
        text.extend_from_slice(b"-5 6");
        let path = dir.path().join("e.txt");
        std::fs::write(&path, &text)?;
        let one = read_all(&path)?;
        assert_eq!(one.lines, 3001);
        let wide = Edge {
            op: Op::Insert,
            src: 1 << 32,
            dst: 9_999_999_999_999_999_999,
        };
        assert_eq!(one.edges.iter().filter(|&&e| e == wide).count(), 10);
        assert_eq!(one.rejected.len(), 32);
        assert!(matches!(one.rejected[1].reason, Malformed::TooLong { .. }));
        for threads in [2, 3, 7, 5000] {
            let many = read_all_on(&path, threads)?;
            assert_eq!(many.edges, one.edges, "{threads} threads");
            assert_eq!(many.rejected, one.rejected, "{threads} threads");
            assert_eq!(many.lines, one.lines, "{threads} threads");
        }
        Ok(())
    }

    /// Line by line through [`parse_line`], no buffer parser: what
    /// [`read_part`] must give.
    fn line_by_line(bytes: &[u8]) -> (Vec<Edge>, Vec<Rejected>, u64) {
        let mut lines = LineReader::new(bytes, 0);
        let (mut edges, mut rejected, mut n) = (Vec::new(), Vec::new(), 0);
        while let Some((offset, raw)) = lines.next_line().expect("in memory") {
            n += 1;
            match classify(raw, n, offset) {
                Ok(Some(e)) => edges.push(e),
                Ok(None) => {}
                Err(r) => rejected.push(r),
            }
        }
        (edges, rejected, n)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Plain lines parsed in the buffer, the others alone, lines across
        /// the buffer's end, at any buffer size: the same as line by line.
        #[test]
        fn the_buffer_parser_reads_as_parse_line_does(
            text in proptest::collection::vec(proptest::sample::select(
                b"0123456789 \t-\r\n#x\xff".to_vec()), 0..400),
            long in proptest::collection::vec(0usize..400, 0..3),
            plain in proptest::collection::vec((0u64..1 << 40, 0u64..50, 0u8..12), 0..60),
            cap in 1usize..80,
        ) {
            // Now and then an id of 19, 20 or 25 digits.
            let mut text = text;
            for (k, at) in long.into_iter().enumerate() {
                let at = at.min(text.len());
                let id = ["9999999999999999999", "18446744073709551616", "1234567890123456789012345"][k];
                text.splice(at..at, id.bytes().chain(*b" 7\n"));
            }
            // And lines that are mostly plain edges.
            for (a, b, shape) in plain {
                let line = match shape {
                    0 => format!("-{a} {b}\n"),
                    1 => format!("{a}\t {b}\r\n"),
                    2 => format!("{a} {b} 99\n"),
                    3 => format!(" {a} {b}\n"),
                    4 => format!("{a} {b}\r\r\n"),
                    5 => format!("{a}-{b}\n"),
                    _ => format!("{a} {b}\n"),
                };
                text.extend_from_slice(line.as_bytes());
            }
            let (edges, rejected, n) = line_by_line(&text);
            let reader = BufReader::with_capacity(cap, &text[..]);
            let (part, got_rejected, got_n) = read_part(LineReader::new(reader, 0), Some(text.len()))?;
            proptest::prop_assert_eq!(part.edges().collect::<Vec<_>>(), edges);
            proptest::prop_assert_eq!(got_rejected, rejected);
            proptest::prop_assert_eq!(got_n, n);
        }
    }

    #[test]
    fn plain_and_gzip_files_read_the_same_and_keep_bad_lines_aside(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let text = b"# header\n1 2\r\n-1 2\nbad line\n3\t4 extra\n\n5 6";
        let plain = dir.path().join("e.txt");
        std::fs::write(&plain, text)?;
        let gz = dir.path().join("e.txt.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz)?, flate2::Compression::fast());
        enc.write_all(text)?;
        enc.finish()?;
        for path in [&plain, &gz] {
            let f = read_all(path)?;
            let want = vec![
                Edge {
                    op: Op::Insert,
                    src: 1,
                    dst: 2,
                },
                Edge {
                    op: Op::Remove,
                    src: 1,
                    dst: 2,
                },
                Edge {
                    op: Op::Insert,
                    src: 3,
                    dst: 4,
                },
                Edge {
                    op: Op::Insert,
                    src: 5,
                    dst: 6,
                },
            ];
            assert_eq!(f.edges, want, "{path:?}");
            assert_eq!(f.lines, 7);
            assert_eq!(f.rejected.len(), 1);
            assert_eq!((f.rejected[0].line, f.rejected[0].offset), (4, 19));
            assert_eq!(f.rejected[0].raw, "bad line");
        }
        Ok(())
    }

    #[test]
    fn an_overlong_line_is_rejected_and_the_next_one_read() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("long.txt");
        let mut data = vec![b'7'; MAX_LINE + 10];
        data.extend_from_slice(b"\n8 9\n");
        std::fs::write(&path, &data)?;
        let f = read_all(&path)?;
        assert_eq!(
            f.edges,
            vec![Edge {
                op: Op::Insert,
                src: 8,
                dst: 9
            }]
        );
        assert!(matches!(f.rejected[0].reason, Malformed::TooLong { len } if len == MAX_LINE + 11));
        Ok(())
    }

    /// Twenty digits or more are refused before they overflow (with overflow
    /// checks on, the 20th used to be multiplied in first).
    #[test]
    fn twenty_digits_are_refused_not_overflowed() {
        assert_eq!(digits(b"18446744073709551615 ", 0), None, "20 digits");
        assert_eq!(digits(b"99999999999999999999999999 ", 0), None);
        assert_eq!(
            digits(b"9999999999999999999 ", 0),
            Some((9_999_999_999_999_999_999, 19))
        );
    }

    /// The word-at-a-time digits equal a digit-by-digit reading, whatever
    /// byte ends the digits and whatever bytes follow it.
    #[test]
    fn digits_read_a_word_at_a_time_equal_digit_by_digit() {
        let slow = |buf: &[u8]| -> Option<(u64, usize)> {
            let n = buf.iter().take_while(|b| b.is_ascii_digit()).count();
            if n == 0 || n > 19 || n == buf.len() {
                return None;
            }
            let v = buf[..n]
                .iter()
                .fold(0u64, |v, &d| v * 10 + u64::from(d - b'0'));
            Some((v, n))
        };
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in 0..=10usize {
            for end in 0..=255u8 {
                for _ in 0..4 {
                    let mut buf: Vec<u8> = (0..len).map(|_| b'0' + (next() % 10) as u8).collect();
                    buf.push(end);
                    buf.extend((0..next() % 12).map(|_| next() as u8));
                    assert_eq!(digits(&buf, 0), slow(&buf), "{buf:?}");
                }
            }
        }
    }

    /// A pipe is read once, from its first byte, plain or gzip, whatever
    /// the number of threads asked for.
    #[test]
    fn a_pipe_is_read_from_its_first_byte() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let text = b"1 2\n3 1\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text)?;
        let gz = gz.finish()?;
        for (k, bytes) in [&text[..], &gz[..]].into_iter().enumerate() {
            for threads in [1, 2] {
                let fifo = dir.path().join(format!("fifo-{k}-{threads}"));
                let status = std::process::Command::new("mkfifo").arg(&fifo).status()?;
                assert!(status.success(), "mkfifo");
                let writer = {
                    let (fifo, bytes) = (fifo.clone(), bytes.to_vec());
                    std::thread::spawn(move || std::fs::write(fifo, bytes))
                };
                let f = read_all_on(&fifo, threads)?;
                writer.join().map_err(|_| "writer panicked")??;
                assert_eq!(f.edges.len(), 2, "{k} {threads}: {:?}", f.rejected);
                assert!(f.rejected.is_empty());
                assert_eq!((f.edges[0].src, f.edges[1].src), (1, 3));
            }
        }
        Ok(())
    }

    #[test]
    fn a_missing_file_names_itself() {
        let err = read_all(Path::new("/nonexistent/edges.txt")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/edges.txt"), "{err}");
    }
}
