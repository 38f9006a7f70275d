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
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut lines = LineReader::new(BufReader::with_capacity(1 << 20, open_stream(path)?), 0);
    let mut out = EdgeFile::default();
    while let Some((offset, raw)) = lines.next_line().map_err(io)? {
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
