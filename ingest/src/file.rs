//! Reading a whole edge file (plain or gzip) into memory, for the offline
//! batch computation. Malformed lines are kept aside with their place; none
//! is dropped silently.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::edge::{escape, parse_line, Edge, Line, Malformed, MAX_LINE};

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

/// Whether a file is gzip, by its magic bytes.
pub fn is_gzip(path: &Path) -> Result<bool, ReadError> {
    let mut f = File::open(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
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

/// Opens an edge file for reading from its start, decompressing gzip.
pub fn open_stream(path: &Path) -> Result<Box<dyn Read + Send>, ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(if is_gzip(path)? {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

/// Reads every line of an edge file (gzip read transparently).
pub fn read_all(path: &Path) -> Result<EdgeFile, ReadError> {
    read_all_on(path, 1)
}

/// Reads every line of an edge file, a plain one parsed on `threads`
/// threads: the file is read into memory and cut at line ends, each part
/// read as its own stream, and the parts joined in order, with the line
/// numbers and offsets of the whole file (the same result as one thread).
/// A gzip file is read as one stream.
pub fn read_all_on(path: &Path, threads: usize) -> Result<EdgeFile, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    if threads <= 1 || is_gzip(path)? {
        let reader = BufReader::with_capacity(1 << 20, open_stream(path)?);
        return read_lines(LineReader::new(reader, 0)).map_err(io);
    }
    let bytes = std::fs::read(path).map_err(io)?;
    // Cut after a line end near each 1/threads of the bytes.
    let mut cuts = vec![0];
    for k in 1..threads {
        let at = (bytes.len() * k / threads).max(*cuts.last().unwrap_or(&0));
        let end = match bytes[at..].iter().position(|&b| b == b'\n') {
            Some(p) => at + p + 1,
            None => bytes.len(),
        };
        cuts.push(end);
    }
    cuts.push(bytes.len());
    let parts: Vec<std::io::Result<EdgeFile>> = std::thread::scope(|s| {
        let handles: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                let part = &bytes[w[0]..w[1]];
                let offset = w[0] as u64;
                s.spawn(move || {
                    // Room for every line at once: no regrowth of the edges.
                    let lines = part.iter().filter(|&&b| b == b'\n').count() + 1;
                    read_lines_into(LineReader::new(part, offset), Vec::with_capacity(lines))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut out = EdgeFile::default();
    for part in parts {
        let mut part = part.map_err(io)?;
        if out.edges.is_empty() {
            out.edges = std::mem::take(&mut part.edges);
        } else {
            out.edges.append(&mut part.edges);
        }
        out.rejected.extend(part.rejected.into_iter().map(|mut r| {
            r.line += out.lines;
            r
        }));
        out.lines += part.lines;
    }
    Ok(out)
}

/// Every line of a stream: the edges, the rejected lines (numbered from 1
/// in this stream) and the count.
fn read_lines<R: BufRead>(lines: LineReader<R>) -> std::io::Result<EdgeFile> {
    read_lines_into(lines, Vec::new())
}

/// [`read_lines`], the edges pushed to `edges`.
fn read_lines_into<R: BufRead>(
    mut lines: LineReader<R>,
    edges: Vec<Edge>,
) -> std::io::Result<EdgeFile> {
    let mut out = EdgeFile {
        edges,
        ..EdgeFile::default()
    };
    while let Some((offset, raw)) = lines.next_line()? {
        out.lines += 1;
        let (reason, raw) = match raw {
            RawLine::Line(line) => match parse_line(line) {
                Ok(Line::Edge(e)) => {
                    out.edges.push(e);
                    continue;
                }
                Ok(Line::Skip) => continue,
                Err(reason) => (reason, &line[..line.len().min(256)]),
            },
            RawLine::TooLong { len, head } => (Malformed::TooLong { len }, head),
        };
        out.rejected.push(Rejected {
            line: out.lines,
            offset,
            reason,
            raw: escape(raw),
        });
    }
    Ok(out)
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
                _ => text.extend_from_slice(format!("{} {}\n", i, i * 7 % 1000).as_bytes()),
            }
        }
        text.extend_from_slice(b"-5 6");
        let path = dir.path().join("e.txt");
        std::fs::write(&path, &text)?;
        let one = read_all(&path)?;
        assert_eq!(one.lines, 3001);
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

    #[test]
    fn a_missing_file_names_itself() {
        let err = read_all(Path::new("/nonexistent/edges.txt")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/edges.txt"), "{err}");
    }
}
