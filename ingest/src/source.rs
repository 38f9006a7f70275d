//! Replayable sources: a fixed number of partitions, each a sequence of
//! records at positions. A reader opened at a recorded position returns
//! exactly the records that followed it the first time, so that an epoch's
//! recorded position ranges are enough to replay it.
//!
//! - [`FileSource`]: a text edge file split into P partitions at line
//!   boundaries (byte offsets); a gzip file is one partition, its positions
//!   offsets in the uncompressed stream.
//! - [`GenSource`]: an R-MAT stream, partition p drawing the p-th contiguous
//!   range of edge numbers; the position is the edge number.
//!
//! ```
//! use exoflow_ingest::source::{GenSource, Next, Position, Source};
//! use exoflow_ingest::rmat::Rmat;
//! let src = GenSource::new(Rmat { scale: 8, edge_factor: 4, seed: 1 }, 2);
//! let mut r = src.open(1, src.start(1))?;
//! let Next::Item { at, .. } = r.next()? else { panic!("an edge") };
//! assert_eq!(at, Position { offset: 512, line: 0 });
//! # Ok::<(), exoflow_ingest::source::SourceError>(())
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::edge::{escape, parse_line, Edge, Line, Malformed, Op};
use crate::file::{is_gzip, open_stream, LineReader, RawLine, ReadError};
use crate::rmat::Rmat;

/// A place in a partition: a byte offset (file), an edge number
/// (generator) or a message offset (Kafka), and the line within a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Offset in the partition.
    pub offset: u64,
    /// Line within the message at `offset` (0 where records are lines).
    pub line: u32,
}

impl Position {
    /// The position at `offset`, line 0.
    pub fn at(offset: u64) -> Self {
        Self { offset, line: 0 }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "offset {}", self.offset)
        } else {
            write!(f, "offset {} line {}", self.offset, self.line + 1)
        }
    }
}

/// A malformed record, kept with its place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRecord {
    /// The partition.
    pub partition: u32,
    /// Where the record starts.
    pub at: Position,
    /// Why it is not an edge.
    pub reason: String,
    /// Its bytes, escaped (at most 256 of them).
    pub raw: String,
}

impl BadRecord {
    /// The malformed record of `partition` at `at`.
    pub fn new(partition: usize, at: Position, reason: Malformed, raw: String) -> Self {
        Self {
            partition: partition as u32,
            at,
            reason: reason.to_string(),
            raw,
        }
    }
}

/// What a read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// A record (an edge or a malformed line) starting at `at`.
    Item {
        /// Where the record starts.
        at: Position,
        /// The edge, or why the record is not one and its escaped bytes.
        item: Result<Edge, (Malformed, String)>,
    },
    /// Nothing now (an unbounded source with no new data); try again.
    Idle,
    /// The partition has ended.
    End,
}

/// An error of a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Reading failed.
    #[error("{what}: {source}")]
    Io {
        /// What was read.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A partition or position that the source does not have.
    #[error("{0}")]
    Invalid(String),
    /// Kafka failed.
    #[error("{what}: {source}")]
    Kafka {
        /// What was done.
        what: String,
        /// The error.
        source: rdkafka::error::KafkaError,
    },
}

/// A partitioned, replayable source of edges.
pub trait Source: Send + Sync {
    /// Number of partitions (fixed for the life of a job).
    fn partitions(&self) -> usize;
    /// The position of a partition's first record.
    fn start(&self, partition: usize) -> Position;
    /// Opens a partition at a position (its start, or the end of a recorded
    /// range).
    fn open(
        &self,
        partition: usize,
        from: Position,
    ) -> Result<Box<dyn PartitionReader>, SourceError>;
    /// What identifies the data: a resumed job refuses a source whose
    /// fingerprint changed.
    fn fingerprint(&self) -> String;
    /// A short description for messages.
    fn describe(&self) -> String;
    /// The unit of [`PartitionReader::backlog`], plural ("bytes").
    fn backlog_unit(&self) -> &'static str {
        "records"
    }
}

/// Reads one partition in order.
pub trait PartitionReader: Send {
    /// The next record (comments and blank lines are passed over).
    fn next(&mut self) -> Result<Next, SourceError>;
    /// The position of the next record: after the last one returned.
    fn position(&self) -> Position;
    /// How much of the partition is known to wait past [`Self::position`],
    /// in the unit of [`Source::backlog_unit`]; `None` when unknown.
    fn backlog(&self) -> Option<u64> {
        None
    }
}

/// A text edge file in partitions.
pub struct FileSource {
    path: PathBuf,
    /// Partition p is the bytes `bounds[p]..bounds[p + 1]`.
    bounds: Vec<u64>,
    gzip: bool,
    fingerprint: String,
}

impl FileSource {
    /// Opens a file and splits it into `partitions` ranges at line
    /// boundaries: each range starts right after a `\n` (or at 0), so no
    /// line is cut or read twice. A gzip file is one partition. Some
    /// partitions may be empty (a file with fewer lines than partitions).
    pub fn open(path: &Path, partitions: usize) -> Result<Self, SourceError> {
        let io = |source| ReadError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(SourceError::Invalid(format!(
                "{}: not a regular file",
                path.display()
            )));
        }
        let gzip = is_gzip(path)?;
        let size = meta.len();
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let partitions = if gzip { 1 } else { partitions.max(1) };
        let mut bounds = vec![0u64];
        if !gzip {
            let mut file = File::open(path).map_err(io)?;
            for p in 1..partitions {
                let nominal = size * p as u64 / partitions as u64;
                let prev = *bounds.last().unwrap_or(&0);
                let b = if nominal <= prev {
                    prev
                } else {
                    next_line_start(&mut file, nominal - 1, size).map_err(io)?
                };
                bounds.push(b.max(prev));
            }
        }
        bounds.push(if gzip { u64::MAX } else { size });
        Ok(Self {
            path: path.to_owned(),
            bounds,
            gzip,
            fingerprint: format!(
                "file:{} size={size} mtime_ns={mtime} partitions={partitions}",
                path.display()
            ),
        })
    }

    /// The byte range of each partition (for a gzip file, in the
    /// uncompressed stream, the end unknown).
    pub fn bounds(&self) -> &[u64] {
        &self.bounds
    }
}

/// The offset just after the first `\n` at or after `from` (or `size`).
fn next_line_start(file: &mut File, from: u64, size: u64) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(from))?;
    let mut r = BufReader::with_capacity(64 << 10, file);
    let mut pos = from;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok(size);
        }
        if let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            return Ok(pos + i as u64 + 1);
        }
        let l = chunk.len();
        pos += l as u64;
        r.consume(l);
    }
}

impl Source for FileSource {
    fn partitions(&self) -> usize {
        self.bounds.len() - 1
    }

    fn start(&self, partition: usize) -> Position {
        Position::at(self.bounds.get(partition).copied().unwrap_or(0))
    }

    fn open(
        &self,
        partition: usize,
        from: Position,
    ) -> Result<Box<dyn PartitionReader>, SourceError> {
        let (lo, hi) = match (self.bounds.get(partition), self.bounds.get(partition + 1)) {
            (Some(&lo), Some(&hi)) => (lo, hi),
            _ => {
                return Err(SourceError::Invalid(format!(
                    "{}: no partition {partition}",
                    self.path.display()
                )))
            }
        };
        if from.offset < lo || from.offset > hi || from.line != 0 {
            return Err(SourceError::Invalid(format!(
                "{}: position {from} is outside partition {partition} ({lo}..{hi})",
                self.path.display()
            )));
        }
        let io = |source| SourceError::Io {
            what: self.path.display().to_string(),
            source,
        };
        let reader: Box<dyn BufRead + Send> = if self.gzip {
            // No random access in gzip: decompress and skip to the offset.
            let mut r = BufReader::with_capacity(1 << 20, open_stream(&self.path)?);
            let skipped =
                std::io::copy(&mut (&mut r).take(from.offset), &mut std::io::sink()).map_err(io)?;
            if skipped != from.offset {
                return Err(SourceError::Invalid(format!(
                    "{}: position {from} is past the end of the uncompressed stream ({skipped} bytes)",
                    self.path.display()
                )));
            }
            Box::new(r)
        } else {
            let mut f = File::open(&self.path).map_err(|source| ReadError::Io {
                path: self.path.clone(),
                source,
            })?;
            f.seek(SeekFrom::Start(from.offset)).map_err(io)?;
            Box::new(BufReader::with_capacity(1 << 20, f.take(hi - from.offset)))
        };
        Ok(Box::new(FileReader {
            lines: LineReader::new(reader, from.offset),
            path: self.path.clone(),
            // A gzip partition's end is in uncompressed bytes, unknown.
            end: (!self.gzip).then_some(hi),
        }))
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn backlog_unit(&self) -> &'static str {
        "bytes"
    }
}

struct FileReader {
    lines: LineReader<Box<dyn BufRead + Send>>,
    path: PathBuf,
    end: Option<u64>,
}

impl PartitionReader for FileReader {
    fn next(&mut self) -> Result<Next, SourceError> {
        loop {
            let next = self.lines.next_line().map_err(|source| SourceError::Io {
                what: self.path.display().to_string(),
                source,
            })?;
            let Some((offset, raw)) = next else {
                return Ok(Next::End);
            };
            let at = Position::at(offset);
            let item = match raw {
                RawLine::Line(line) => match parse_line(line) {
                    Ok(Line::Edge(e)) => Ok(e),
                    Ok(Line::Skip) => continue,
                    Err(reason) => Err((reason, escape(&line[..line.len().min(256)]))),
                },
                RawLine::TooLong { len, head } => Err((Malformed::TooLong { len }, escape(head))),
            };
            return Ok(Next::Item { at, item });
        }
    }

    fn position(&self) -> Position {
        Position::at(self.lines.offset())
    }

    fn backlog(&self) -> Option<u64> {
        Some(self.end?.saturating_sub(self.lines.offset()))
    }
}

/// An R-MAT edge stream: partition p draws edge numbers
/// `p * D / P .. (p + 1) * D / P` of the D draws, self-loops passed over.
pub struct GenSource {
    rmat: Rmat,
    partitions: usize,
}

impl GenSource {
    /// The stream of `rmat` in `partitions` partitions.
    pub fn new(rmat: Rmat, partitions: usize) -> Self {
        Self {
            rmat,
            partitions: partitions.max(1),
        }
    }

    fn range(&self, p: usize) -> (u64, u64) {
        let d = u128::from(self.rmat.draws());
        let n = self.partitions as u128;
        let lo = d * p as u128 / n;
        let hi = d * (p as u128 + 1) / n;
        (lo as u64, hi as u64)
    }
}

impl Source for GenSource {
    fn partitions(&self) -> usize {
        self.partitions
    }

    fn start(&self, partition: usize) -> Position {
        Position::at(self.range(partition).0)
    }

    fn open(
        &self,
        partition: usize,
        from: Position,
    ) -> Result<Box<dyn PartitionReader>, SourceError> {
        let (lo, hi) = self.range(partition);
        if partition >= self.partitions || from.offset < lo || from.offset > hi || from.line != 0 {
            return Err(SourceError::Invalid(format!(
                "{}: position {from} is outside partition {partition}",
                self.describe()
            )));
        }
        Ok(Box::new(GenReader {
            rmat: self.rmat.prepared(),
            next: from.offset,
            end: hi,
        }))
    }

    fn fingerprint(&self) -> String {
        format!(
            "gen:rmat scale={} edge-factor={} seed={} partitions={}",
            self.rmat.scale, self.rmat.edge_factor, self.rmat.seed, self.partitions
        )
    }

    fn describe(&self) -> String {
        format!(
            "R-MAT generator (scale {}, edge factor {}, seed {})",
            self.rmat.scale, self.rmat.edge_factor, self.rmat.seed
        )
    }

    fn backlog_unit(&self) -> &'static str {
        "draws"
    }
}

struct GenReader {
    rmat: crate::rmat::Prepared,
    next: u64,
    end: u64,
}

impl PartitionReader for GenReader {
    fn next(&mut self) -> Result<Next, SourceError> {
        while self.next < self.end {
            let i = self.next;
            self.next += 1;
            if let Some((src, dst)) = self.rmat.edge(i) {
                return Ok(Next::Item {
                    at: Position::at(i),
                    item: Ok(Edge {
                        op: Op::Insert,
                        src,
                        dst,
                    }),
                });
            }
        }
        Ok(Next::End)
    }

    fn position(&self) -> Position {
        Position::at(self.next)
    }

    fn backlog(&self) -> Option<u64> {
        Some(self.end - self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every record of every partition, with its position.
    fn read_partitions(src: &dyn Source) -> Vec<Vec<(Position, Result<Edge, String>)>> {
        (0..src.partitions())
            .map(|p| {
                let mut r = src.open(p, src.start(p)).expect("open");
                let mut out = Vec::new();
                loop {
                    match r.next().expect("read") {
                        Next::Item { at, item } => out.push((at, item.map_err(|(_, raw)| raw))),
                        Next::End => break,
                        Next::Idle => unreachable!("a file never idles"),
                    }
                }
                out
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the split, the partitions together hold every line once,
        /// in order, and reopening at any recorded position replays the rest.
        #[test]
        fn partitions_cover_every_line_once(
            lines in proptest::collection::vec((0u64..1000, 0u64..1000, 0u8..10), 0..60),
            partitions in 1usize..8,
            last_newline in proptest::bool::ANY,
        ) {
            let mut text = String::new();
            let mut want = Vec::new();
            for (i, &(a, b, kind)) in lines.iter().enumerate() {
                match kind {
                    0 => text.push_str("# comment"),
                    1 => { text.push_str("x y"); want.push(Err("x y".to_owned())); }
                    2 => { text.push_str(&format!("-{a}\t{b}\r")); want.push(Ok(Edge { op: Op::Remove, src: a, dst: b })); }
                    _ => { text.push_str(&format!("{a} {b}")); want.push(Ok(Edge { op: Op::Insert, src: a, dst: b })); }
                }
                if i + 1 < lines.len() || last_newline {
                    text.push('\n');
                }
            }
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("edges.txt");
            std::fs::write(&path, &text).expect("write");
            let src = FileSource::open(&path, partitions).expect("open");
            prop_assert_eq!(src.partitions(), partitions);
            let parts = read_partitions(&src);
            let got: Vec<Result<Edge, String>> = parts.iter().flatten().map(|(_, i)| i.clone()).collect();
            prop_assert_eq!(&got, &want);
            // Positions are line starts, increasing; replay from each one.
            for (p, part) in parts.iter().enumerate() {
                for (k, (at, _)) in part.iter().enumerate() {
                    prop_assert!(at.offset == 0 || text.as_bytes()[at.offset as usize - 1] == b'\n');
                    let mut r = src.open(p, *at).expect("reopen");
                    let mut rest = Vec::new();
                    while let Next::Item { at, item } = r.next().expect("read") {
                        rest.push((at, item.map_err(|(_, raw)| raw)));
                    }
                    prop_assert_eq!(&rest[..], &part[k..]);
                }
            }
        }
    }

    #[test]
    fn gzip_is_one_partition_with_uncompressed_offsets() -> Result<(), Box<dyn std::error::Error>> {
        use std::io::Write;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("e.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&path)?, flate2::Compression::fast());
        enc.write_all(b"1 2\n3 4\nbad\n5 6")?;
        enc.finish()?;
        let src = FileSource::open(&path, 4)?;
        assert_eq!(src.partitions(), 1);
        let mut r = src.open(0, Position::at(4))?;
        assert_eq!(
            r.next()?,
            Next::Item {
                at: Position::at(4),
                item: Ok(Edge {
                    op: Op::Insert,
                    src: 3,
                    dst: 4
                })
            }
        );
        assert!(matches!(
            r.next()?,
            Next::Item {
                at: Position { offset: 8, .. },
                item: Err(_)
            }
        ));
        assert!(matches!(r.next()?, Next::Item { .. }));
        assert_eq!(r.next()?, Next::End);
        assert_eq!(r.position(), Position::at(15));
        assert!(src.open(0, Position::at(99)).is_err(), "past the end");
        Ok(())
    }

    #[test]
    fn generator_partitions_are_the_draws_in_order() -> Result<(), SourceError> {
        let rmat = Rmat {
            scale: 6,
            edge_factor: 4,
            seed: 3,
        };
        let src = GenSource::new(rmat, 3);
        let all: Vec<Edge> = read_partitions(&src)
            .into_iter()
            .flatten()
            .map(|(_, e)| e.expect("no bad records"))
            .collect();
        let want: Vec<Edge> = (0..rmat.draws())
            .filter_map(|i| rmat.edge(i))
            .map(|(src, dst)| Edge {
                op: Op::Insert,
                src,
                dst,
            })
            .collect();
        assert_eq!(all, want);
        assert!(src.open(3, Position::at(0)).is_err());
        Ok(())
    }

    #[test]
    fn a_missing_file_and_a_directory_are_clear_errors() {
        let e = FileSource::open(Path::new("/nonexistent/e.txt"), 2)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("/nonexistent/e.txt")));
        let dir = tempfile::tempdir().expect("tempdir");
        let e = FileSource::open(dir.path(), 2).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("not a regular file")));
    }
}
