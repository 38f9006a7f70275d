//! The epoch log: per epoch and source partition a part (the position
//! range, and in modes `sync`/`async` the edges and malformed records), and
//! the epoch's write-once COMMIT naming the parts' generation and
//! checksums. The committed epochs are the contiguous prefix of COMMITs.

use crate::error::{corrupt, Context, Result, StreamError};
use exoflow_engine::codec::{self, Kind};
use exoflow_engine::store::Store;
use exoflow_ingest::edge::{Edge, Op};
use exoflow_ingest::epoch::{replay, Slice};
use exoflow_ingest::source::{BadRecord, Position, Source};
use serde::{Deserialize, Serialize};

use crate::layout::Layout;

/// The log of one partition's share of an epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EpochPart {
    pub(crate) epoch: u64,
    pub(crate) partition: u32,
    pub(crate) start: Position,
    pub(crate) end: Position,
    /// The edges (`None` in mode `none`).
    pub(crate) edges: Option<Vec<(bool, u64, u64)>>,
    /// The malformed records (`None` in mode `none`).
    pub(crate) bad: Option<Vec<BadRecord>>,
}

/// An [`EpochPart`] encoded straight from a slice, without copying its
/// edges first: the same bytes.
#[derive(Serialize)]
pub(crate) struct EpochPartOut<'a> {
    epoch: u64,
    partition: u32,
    start: Position,
    end: Position,
    edges: Option<EdgesOut<'a>>,
    bad: Option<&'a [BadRecord]>,
}

/// Edges serialized as `(insert, src, dst)` tuples.
pub(crate) struct EdgesOut<'a>(&'a [Edge]);

impl Serialize for EdgesOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|x| (x.op == Op::Insert, x.src, x.dst)))
    }
}

impl<'a> EpochPartOut<'a> {
    /// Partition `p`'s part of epoch `epoch`; the edges and malformed
    /// records only with `full` (the log of checkpoint modes other than
    /// `none`).
    pub(crate) fn new(epoch: u64, p: usize, slice: &'a Slice, full: bool) -> Self {
        Self {
            epoch,
            partition: p as u32,
            start: slice.start,
            end: slice.end,
            edges: full.then_some(EdgesOut(&slice.edges)),
            bad: full.then_some(slice.bad.as_slice()),
        }
    }
}

/// The commit record of an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EpochCommit {
    pub(crate) epoch: u64,
    /// The generation whose parts hold the epoch.
    pub(crate) generation: u64,
    /// Per partition: start and end positions.
    pub(crate) ranges: Vec<(Position, Position)>,
    /// Per partition: crc32c of its part object.
    pub(crate) part_crcs: Vec<u32>,
    /// Valid edge records in the epoch.
    pub(crate) edges: u64,
}

/// The committed prefix of epochs: COMMIT(1..=c) all present.
pub(crate) fn committed_prefix(store: &dyn Store, keys: &Layout) -> Result<u64> {
    let prefix = keys.epochs();
    let listed = store
        .list(&prefix)
        .with_context(|| format!("listing {prefix}"))?;
    let mut commits: Vec<u64> = listed
        .iter()
        .filter_map(|k| Layout::epoch_of(&prefix, k, "/COMMIT"))
        .collect();
    commits.sort_unstable();
    Ok(contiguous_prefix(&commits))
}

/// The largest c such that 1..=c are all in `sorted`.
pub(crate) fn contiguous_prefix(sorted: &[u64]) -> u64 {
    let mut c = 0;
    for &e in sorted {
        if e == c + 1 {
            c = e;
        } else if e > c + 1 {
            break;
        }
    }
    c
}

/// The commit record of committed epoch `e`.
pub(crate) fn read_commit(store: &dyn Store, keys: &Layout, e: u64) -> Result<EpochCommit> {
    let key = keys.commit(e);
    let bytes = store
        .get(&key)
        .with_context(|| format!("reading {key}"))?
        .ok_or_else(|| StreamError::Corrupt(format!("{key} is missing")))?;
    Ok(codec::decode(&key, Kind::EpochCommit, &bytes)?)
}

/// A committed epoch's records.
pub(crate) struct EpochRecords {
    /// Its edges, in partition order.
    pub(crate) edges: Vec<Edge>,
    /// Its malformed records.
    pub(crate) bad: Vec<BadRecord>,
}

/// The edges (in partition order) and malformed records of a committed
/// epoch, from its logs or, for logs without edges, from the source.
pub(crate) fn read_epoch(
    store: &dyn Store,
    keys: &Layout,
    source: Option<&dyn Source>,
    commit: &EpochCommit,
) -> Result<EpochRecords> {
    let mut edges = Vec::new();
    let mut bad = Vec::new();
    for (p, &(start, end)) in commit.ranges.iter().enumerate() {
        let key = keys.part(commit.epoch, commit.generation, p);
        let bytes = store
            .get(&key)
            .with_context(|| format!("reading {key}"))?
            .ok_or_else(|| {
                StreamError::Corrupt(format!(
                    "{key} is missing though COMMIT({}) names it",
                    commit.epoch
                ))
            })?;
        if commit.part_crcs.get(p) != Some(&crc32c::crc32c(&bytes)) {
            corrupt!(
                "{key} does not match the checksum recorded in COMMIT({})",
                commit.epoch
            );
        }
        let part: EpochPart = codec::decode(&key, Kind::EpochLog, &bytes)?;
        match (part.edges, part.bad) {
            (Some(es), Some(bs)) => {
                edges.extend(es.into_iter().map(|(ins, src, dst)| Edge {
                    op: if ins { Op::Insert } else { Op::Remove },
                    src,
                    dst,
                }));
                bad.extend(bs);
            }
            _ => {
                let source = source.ok_or(StreamError::NeedsSource(commit.epoch))?;
                let slice = replay(source, p, start, end).with_context(|| {
                    format!(
                        "re-reading epoch {} of partition {p} from the source",
                        commit.epoch
                    )
                })?;
                edges.extend(slice.edges);
                bad.extend(slice.bad);
            }
        }
    }
    Ok(EpochRecords { edges, bad })
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoflow_ingest::edge::Malformed;

    #[test]
    fn the_committed_prefix_stops_at_the_first_gap() {
        assert_eq!(contiguous_prefix(&[]), 0);
        assert_eq!(contiguous_prefix(&[2, 3]), 0);
        assert_eq!(contiguous_prefix(&[1, 2, 3, 5, 6]), 3);
        assert_eq!(contiguous_prefix(&[1, 1, 2]), 2);
    }

    #[test]
    fn commits_are_found_in_the_store_listing() -> Result<()> {
        let store = exoflow_engine::store::memory::MemStore::new();
        let keys = Layout::new("w");
        for e in [1, 2, 3, 5] {
            store.put(&keys.commit(e), b"x")?;
        }
        // Parts and other workflows do not count.
        store.put(&keys.part(4, 1, 0), b"x")?;
        store.put(&Layout::new("w2").commit(4), b"x")?;
        assert_eq!(committed_prefix(&store, &keys)?, 3);
        Ok(())
    }

    /// The parts encoded straight from a slice are byte for byte what an
    /// `EpochPart` encodes to (the logs written before stay readable, and
    /// recovery reads these as `EpochPart`).
    #[test]
    fn parts_encoded_from_slices_are_epoch_parts() -> Result<()> {
        let edges = vec![
            Edge {
                op: Op::Insert,
                src: 1,
                dst: u64::MAX,
            },
            Edge {
                op: Op::Remove,
                src: 300,
                dst: 7,
            },
        ];
        let bad = vec![BadRecord::new(
            1,
            Position::at(9),
            Malformed::MissingField,
            "12".to_owned(),
        )];
        let slice = Slice {
            partition: 1,
            start: Position::at(4),
            end: Position::at(10),
            edges,
            bad,
        };
        for full in [true, false] {
            let ours = codec::encode(Kind::EpochLog, &EpochPartOut::new(3, 1, &slice, full))?;
            let theirs = EpochPart {
                epoch: 3,
                partition: 1,
                start: slice.start,
                end: slice.end,
                edges: full.then(|| {
                    slice
                        .edges
                        .iter()
                        .map(|x| (x.op == Op::Insert, x.src, x.dst))
                        .collect()
                }),
                bad: full.then(|| slice.bad.clone()),
            };
            assert_eq!(ours, codec::encode(Kind::EpochLog, &theirs)?);
            let back: EpochPart = codec::decode("part", Kind::EpochLog, &ours)?;
            assert_eq!(back.edges, theirs.edges);
            assert_eq!(back.bad, theirs.bad);
            assert_eq!((back.start, back.end), (slice.start, slice.end));
        }
        Ok(())
    }
}
