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

/// Reads every line of an edge file (gzip read transparently).
pub fn read_all(path: &Path) -> Result<EdgeFile, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let reader: Box<dyn Read> = if is_gzip(path)? {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut out = EdgeFile::default();
    let mut buf = Vec::with_capacity(256);
    let mut offset = 0u64;
    loop {
        buf.clear();
        // Read at most MAX_LINE + 2 bytes of a line; a longer one is
        // rejected and the rest of it skipped.
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut buf)
            .map_err(io)?;
        if n == 0 {
            break;
        }
        out.lines += 1;
        let start = offset;
        offset += n as u64;
        let mut line = &buf[..];
        let complete = line.last() == Some(&b'\n');
        if complete {
            line = &line[..line.len() - 1];
        } else if n > MAX_LINE {
            // Skip the rest of an overlong line.
            let mut rest = 0u64;
            loop {
                let chunk = reader.fill_buf().map_err(io)?;
                if chunk.is_empty() {
                    break;
                }
                match chunk.iter().position(|&b| b == b'\n') {
                    Some(p) => {
                        reader.consume(p + 1);
                        rest += p as u64 + 1;
                        break;
                    }
                    None => {
                        let l = chunk.len();
                        reader.consume(l);
                        rest += l as u64;
                    }
                }
            }
            offset += rest;
            out.rejected.push(Rejected {
                line: out.lines,
                offset: start,
                reason: Malformed::TooLong {
                    len: n + rest as usize,
                },
                raw: escape(&buf[..256]),
            });
            continue;
        }
        match parse_line(line) {
            Ok(Line::Edge(e)) => out.edges.push(e),
            Ok(Line::Skip) => {}
            Err(reason) => out.rejected.push(Rejected {
                line: out.lines,
                offset: start,
                reason,
                raw: escape(&line[..line.len().min(256)]),
            }),
        }
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
