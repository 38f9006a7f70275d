//! Cutting a partitioned source into epochs.
//!
//! An epoch is, per partition, a range of positions `start..end` and the
//! records in it. By count ([`Cutter::by_count`]), an epoch of N edges takes
//! the next `ceil(N / P)` valid records of each of the P partitions: the cut
//! is the same whatever the timing or the number of workers (malformed
//! records are carried along but not counted). By time ([`Cutter::by_time`]),
//! it takes whatever arrives within T ms: not reproducible, so the ranges
//! must be recorded before anything of the epoch is published, and a replay
//! reads exactly them ([`replay`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::edge::Edge;
use crate::source::{BadRecord, Next, PartitionReader, Position, Source, SourceError};

/// One partition's share of an epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// The partition.
    pub partition: u32,
    /// Position of the first record.
    pub start: Position,
    /// Position after the last record.
    pub end: Position,
    /// The edges, in order.
    pub edges: Vec<Edge>,
    /// The malformed records, in order.
    pub bad: Vec<BadRecord>,
}

/// How far a paced reader may run ahead of its schedule: it looks at the
/// clock once per this much time's worth of edges, not once per edge (at
/// high rates a clock read per edge is a noticeable part of the reading).
const PACE_SLACK: Duration = Duration::from_micros(500);

/// While an epoch is cut by time, the clock is read once per this many
/// records.
const DEADLINE_EVERY: usize = 16;

/// A partition read by count polls `stop` once per this many edges (and
/// whenever it is idle).
const STOP_POLL_EVERY: u64 = 1024;

/// Paces reading to a rate in edges per second.
#[derive(Debug)]
struct Pacer {
    rate: f64,
    since: Instant,
    edges: u64,
    /// Edges that may still pass before the clock is read again.
    free: u64,
}

impl Pacer {
    fn new(rate: f64) -> Self {
        Self {
            rate,
            since: Instant::now(),
            edges: 0,
            free: 0,
        }
    }

    fn tick(&mut self, n: u64) {
        self.edges += n;
        if self.free > n {
            self.free -= n;
            return;
        }
        let due = crate::pace_due(self.edges, self.rate);
        let elapsed = self.since.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
        self.free = ((self.rate * PACE_SLACK.as_secs_f64()) as u64).max(1);
    }
}

/// Reads epochs from every partition of a source.
pub struct Cutter {
    source: Arc<dyn Source>,
    readers: Vec<Box<dyn PartitionReader>>,
    ended: Vec<bool>,
    pacer: Option<Pacer>,
    /// When the next time cut is due: epochs by time close on a fixed
    /// schedule, one window after the last, not one window after reading
    /// resumes (an epoch is what arrived in its window, not the window plus
    /// the time the previous epoch took to process).
    next_cut: Option<Instant>,
}

/// How long to wait before polling an idle partition again.
const IDLE_WAIT: Duration = Duration::from_millis(5);

impl Cutter {
    /// Opens every partition at the given positions (one per partition).
    pub fn new(source: Arc<dyn Source>, from: &[Position]) -> Result<Self, SourceError> {
        if from.len() != source.partitions() {
            return Err(SourceError::Invalid(format!(
                "{}: {} positions given for {} partitions",
                source.describe(),
                from.len(),
                source.partitions()
            )));
        }
        let readers = from
            .iter()
            .enumerate()
            .map(|(p, &at)| source.open(p, at))
            .collect::<Result<Vec<_>, _>>()?;
        let ended = vec![false; readers.len()];
        Ok(Self {
            source,
            readers,
            ended,
            pacer: None,
            next_cut: None,
        })
    }

    /// Opens every partition at its start.
    pub fn from_start(source: Arc<dyn Source>) -> Result<Self, SourceError> {
        let from: Vec<Position> = (0..source.partitions()).map(|p| source.start(p)).collect();
        Self::new(source, &from)
    }

    /// Reads at most `rate` edges per second from now on (the paper's ingest
    /// actors read their files at a fixed rate).
    pub fn pace(&mut self, rate: Option<f64>) {
        self.pacer = rate.filter(|r| *r > 0.0).map(Pacer::new);
    }

    /// Whether every partition has ended.
    pub fn at_end(&self) -> bool {
        self.ended.iter().all(|&e| e)
    }

    /// The source.
    pub fn source(&self) -> &Arc<dyn Source> {
        &self.source
    }

    /// The next positions of every partition.
    pub fn positions(&self) -> Vec<Position> {
        self.readers.iter().map(|r| r.position()).collect()
    }

    /// The lag: what waits past the positions, with its unit. A paced
    /// cutter stands for a live stream arriving at its rate, so its lag is
    /// the edges that have arrived (rate x time) but are not read yet.
    /// Otherwise it is the source's backlog summed over the partitions that
    /// have not ended, in the source's unit; `None` when a partition cannot
    /// tell.
    pub fn backlog(&self) -> Option<(u64, &'static str)> {
        if self.at_end() {
            return Some((0, self.source.backlog_unit()));
        }
        if let Some(p) = &self.pacer {
            let arrived = (p.rate * p.since.elapsed().as_secs_f64()) as u64;
            return Some((arrived.saturating_sub(p.edges), "edges"));
        }
        let total: Option<u64> = self
            .readers
            .iter()
            .zip(&self.ended)
            .map(|(r, &ended)| if ended { Some(0) } else { r.backlog() })
            .sum();
        total.map(|t| (t, self.source.backlog_unit()))
    }

    /// Reads one record of partition `p` into `slice`.
    fn read_one(&mut self, p: usize, slice: &mut Slice) -> Result<Option<bool>, SourceError> {
        read_one(self.readers[p].as_mut(), &mut self.ended[p], slice)
    }

    fn empty_slices(&self) -> Vec<Slice> {
        self.readers
            .iter()
            .enumerate()
            .map(|(p, r)| Slice {
                partition: p as u32,
                start: r.position(),
                end: r.position(),
                edges: Vec::new(),
                bad: Vec::new(),
            })
            .collect()
    }

    /// The next epoch of `n` edges: `ceil(n / P)` valid records of each
    /// partition, fewer where a partition ends. `stop` is polled while a
    /// partition is idle and every 1,024 edges: when it says so, the epoch
    /// is cut where it is.
    /// Unpaced, the partitions are read in parallel, one thread each.
    pub fn by_count(&mut self, n: u64, stop: &Stop<'_>) -> Result<Vec<Slice>, SourceError> {
        self.next_cut = None;
        let parts = self.readers.len() as u64;
        let share = n.div_ceil(parts).max(1);
        let mut slices = self.empty_slices();
        if self.pacer.is_none() && parts > 1 {
            let results: Vec<Result<bool, SourceError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = self
                    .readers
                    .iter_mut()
                    .zip(self.ended.iter_mut())
                    .zip(slices.iter_mut())
                    .map(|((reader, ended), slice)| {
                        scope.spawn(move || {
                            read_share(reader.as_mut(), ended, slice, share, stop, &mut || {})
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(SourceError::Invalid("a partition reader panicked".into()))
                        })
                    })
                    .collect()
            });
            for r in results {
                r?;
            }
            return Ok(slices);
        }
        // Paced (or one partition): in turn, on this thread.
        let pacer = &mut self.pacer;
        let mut tick = || {
            if let Some(pacer) = pacer.as_mut() {
                pacer.tick(1);
            }
        };
        for ((reader, ended), slice) in self
            .readers
            .iter_mut()
            .zip(self.ended.iter_mut())
            .zip(slices.iter_mut())
        {
            if read_share(reader.as_mut(), ended, slice, share, stop, &mut tick)? {
                break;
            }
        }
        Ok(slices)
    }

    /// The next epoch of whatever arrives within `window`, read from the
    /// partitions in turn, up to `max` edges. Ends early when every
    /// partition has ended, or when `stop` says so. Windows follow each
    /// other: this one ends a window after the last one ended, or, when
    /// that time has passed (processing fell behind, or the last epoch was
    /// not cut by time), a window from now.
    pub fn by_time(
        &mut self,
        window: Duration,
        max: u64,
        stop: &Stop<'_>,
    ) -> Result<Vec<Slice>, SourceError> {
        const BURST: usize = 256;
        let now = Instant::now();
        let deadline = self
            .next_cut
            .filter(|&due| due > now)
            .unwrap_or(now + window);
        self.next_cut = Some(deadline + window);
        let mut slices = self.empty_slices();
        let mut taken = 0u64;
        while Instant::now() < deadline && !self.at_end() && taken < max && !stop() {
            let mut progressed = false;
            for (p, slice) in slices.iter_mut().enumerate() {
                for i in 0..BURST {
                    match self.read_one(p, slice)? {
                        Some(edge) => {
                            progressed = true;
                            if edge {
                                taken += 1;
                                if let Some(pacer) = &mut self.pacer {
                                    pacer.tick(1);
                                }
                            }
                        }
                        None => break,
                    }
                    if taken >= max
                        || (i % DEADLINE_EVERY == DEADLINE_EVERY - 1 && Instant::now() >= deadline)
                    {
                        break;
                    }
                }
            }
            if !progressed {
                std::thread::sleep(
                    IDLE_WAIT.min(deadline.saturating_duration_since(Instant::now())),
                );
            }
        }
        Ok(slices)
    }
}

/// A stop request, polled while a partition is idle and now and then while
/// reading (from several threads).
pub type Stop<'a> = dyn Fn() -> bool + Sync + 'a;

/// Reads one record into `slice`. Returns whether it was an edge, `None`
/// when the partition is idle or ended.
fn read_one(
    reader: &mut dyn PartitionReader,
    ended: &mut bool,
    slice: &mut Slice,
) -> Result<Option<bool>, SourceError> {
    if *ended {
        return Ok(None);
    }
    match reader.next()? {
        Next::Item { item: Ok(e), .. } => {
            slice.edges.push(e);
            slice.end = reader.position();
            Ok(Some(true))
        }
        Next::Item {
            at,
            item: Err((reason, raw)),
        } => {
            slice
                .bad
                .push(BadRecord::new(slice.partition as usize, at, reason, raw));
            slice.end = reader.position();
            Ok(Some(false))
        }
        Next::Idle => Ok(None),
        Next::End => {
            *ended = true;
            slice.end = reader.position();
            Ok(None)
        }
    }
}

/// Reads `share` valid records of one partition, calling `tick` after each
/// (pacing), or fewer when it ends or a stop comes.
/// Returns whether it stopped on request.
fn read_share(
    reader: &mut dyn PartitionReader,
    ended: &mut bool,
    slice: &mut Slice,
    share: u64,
    stop: &Stop<'_>,
    tick: &mut dyn FnMut(),
) -> Result<bool, SourceError> {
    let mut taken = 0u64;
    while taken < share && !*ended {
        match read_one(reader, ended, slice)? {
            Some(true) => {
                taken += 1;
                tick();
                // A paced share can take long: a stop is heard meanwhile.
                if taken.is_multiple_of(STOP_POLL_EVERY) && stop() {
                    return Ok(true);
                }
            }
            Some(false) => {}
            None if *ended => {}
            None => {
                if stop() {
                    return Ok(true);
                }
                std::thread::sleep(IDLE_WAIT);
            }
        }
    }
    Ok(false)
}

/// Reads partition `partition` from `start` up to `end` again: the records
/// of a recorded range. Fails if the source no longer holds them.
pub fn replay(
    source: &dyn Source,
    partition: usize,
    start: Position,
    end: Position,
) -> Result<Slice, SourceError> {
    let mut r = source.open(partition, start)?;
    let mut slice = Slice {
        partition: partition as u32,
        start,
        end: start,
        edges: Vec::new(),
        bad: Vec::new(),
    };
    while r.position() < end {
        match r.next()? {
            Next::Item { item: Ok(e), .. } => slice.edges.push(e),
            Next::Item {
                at,
                item: Err((reason, raw)),
            } => slice.bad.push(BadRecord::new(partition, at, reason, raw)),
            Next::Idle => std::thread::sleep(IDLE_WAIT),
            Next::End => break,
        }
    }
    slice.end = r.position();
    if slice.end != end {
        return Err(SourceError::Invalid(format!(
            "{}: partition {partition} replayed to {} instead of the recorded {end}",
            source.describe(),
            slice.end
        )));
    }
    Ok(slice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rmat::Rmat;
    use crate::source::{FileSource, GenSource};

    /// An R-MAT generator source.
    fn generator(scale: u32, edge_factor: u64, seed: u64, partitions: usize) -> Arc<dyn Source> {
        Arc::new(GenSource::new(
            Rmat {
                scale,
                edge_factor,
                seed,
            },
            partitions,
        ))
    }

    fn never() -> bool {
        false
    }

    #[test]
    fn count_cuts_are_deterministic_and_replay_exactly() -> Result<(), SourceError> {
        let rmat = Rmat {
            scale: 8,
            edge_factor: 8,
            seed: 5,
        };
        let src: Arc<dyn Source> = Arc::new(GenSource::new(rmat, 3));
        let mut a = Cutter::from_start(src.clone())?;
        let mut epochs = Vec::new();
        while !a.at_end() {
            epochs.push(a.by_count(100, &never)?);
        }
        // Each partition gives ceil(100/3) = 34 edges per epoch until it ends.
        assert!(epochs[0].iter().all(|s| s.edges.len() == 34));
        let total: usize = epochs.iter().flatten().map(|s| s.edges.len()).sum();
        let want = (0..rmat.draws())
            .filter(|&i| rmat.edge(i).is_some())
            .count();
        assert_eq!(total, want);
        // Restart from the positions after epoch 3: the same later epochs.
        let after: Vec<Position> = epochs[3].iter().map(|s| s.end).collect();
        let mut b = Cutter::new(src.clone(), &after)?;
        for e in &epochs[4..] {
            assert_eq!(&b.by_count(100, &never)?, e);
        }
        // Replay of recorded ranges.
        assert_replays(src.as_ref(), &epochs[2])
    }

    /// Every slice of an epoch is what replaying its recorded range reads.
    fn assert_replays(src: &dyn Source, epoch: &[Slice]) -> Result<(), SourceError> {
        for s in epoch {
            assert_eq!(&replay(src, s.partition as usize, s.start, s.end)?, s);
        }
        Ok(())
    }

    /// A cutter over a file of `text` in `partitions` (the directory keeps
    /// the file alive).
    fn file_cutter(
        text: &str,
        partitions: usize,
    ) -> Result<(tempfile::TempDir, Cutter), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("e.txt");
        std::fs::write(&path, text)?;
        let src: Arc<dyn Source> = Arc::new(FileSource::open(&path, partitions)?);
        Ok((dir, Cutter::from_start(src)?))
    }

    #[test]
    fn bad_lines_are_carried_but_not_counted() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, mut c) = file_cutter("1 2\nnope\n3 4\n5 6\n", 1)?;
        let e = c.by_count(2, &never)?;
        assert_eq!(e[0].edges.len(), 2);
        assert_eq!(e[0].bad.len(), 1);
        assert_eq!(e[0].bad[0].at, Position::at(4));
        assert_eq!(e[0].end, Position::at(13));
        let e = c.by_count(2, &never)?;
        assert_eq!(e[0].edges.len(), 1);
        assert!(c.at_end());
        Ok(())
    }

    #[test]
    fn the_lag_is_what_waits_past_the_positions() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, mut c) = file_cutter("1 2\n3 4\n5 6\n7 8\n", 2)?;
        assert_eq!(c.backlog(), Some((16, "bytes")));
        c.by_count(2, &never)?;
        assert_eq!(c.backlog(), Some((8, "bytes")));
        c.by_count(2, &never)?;
        assert_eq!(c.backlog(), Some((0, "bytes")));
        // A paced generator: edges arrived at the rate but not read yet.
        let gen: Arc<dyn Source> = generator(10, 4, 2, 1);
        let mut p = Cutter::from_start(gen)?;
        p.pace(Some(1_000.0));
        std::thread::sleep(Duration::from_millis(50));
        let (lag, unit) = p.backlog().ok_or("no lag")?;
        assert_eq!(unit, "edges");
        assert!((40..1000).contains(&lag), "{lag}");
        Ok(())
    }

    #[test]
    fn time_cuts_follow_a_schedule_while_processing_keeps_up() -> Result<(), SourceError> {
        let src: Arc<dyn Source> = generator(14, 16, 3, 2);
        let mut c = Cutter::from_start(src)?;
        c.pace(Some(20_000.0));
        let window = Duration::from_millis(100);
        c.by_time(window, u64::MAX, &never)?;
        // Five more windows, each epoch "processed" for half a window: the
        // epochs hold what arrived in their windows (about 2,000 edges
        // each), not a window's worth plus what arrived while processing
        // (3,000 each).
        let mut total = 0;
        for _ in 0..5 {
            std::thread::sleep(window / 2);
            let e = c.by_time(window, u64::MAX, &never)?;
            total += e.iter().map(|s| s.edges.len()).sum::<usize>();
        }
        assert!(
            (8_000..12_500).contains(&total),
            "{total} edges in 5 windows"
        );
        Ok(())
    }

    #[test]
    fn a_paced_count_cut_hears_a_stop_while_reading() -> Result<(), SourceError> {
        let src: Arc<dyn Source> = generator(14, 16, 4, 2);
        let mut c = Cutter::from_start(src.clone())?;
        // 100,000 edges at 20,000/s would take 5 s; the stop comes at once.
        c.pace(Some(20_000.0));
        let asked = std::time::Instant::now();
        let stop = || asked.elapsed() > Duration::from_millis(100);
        let e = c.by_count(100_000, &stop)?;
        let read: usize = e.iter().map(|s| s.edges.len()).sum();
        assert!(read < 50_000, "{read} edges read after the stop");
        // What was read is a whole epoch that replays.
        assert_replays(src.as_ref(), &e)
    }

    #[test]
    fn time_cuts_record_ranges_that_replay() -> Result<(), SourceError> {
        let src: Arc<dyn Source> = generator(10, 4, 2, 2);
        let mut c = Cutter::from_start(src.clone())?;
        c.pace(Some(50_000.0));
        let e = c.by_time(Duration::from_millis(30), u64::MAX, &never)?;
        let n: usize = e.iter().map(|s| s.edges.len()).sum();
        assert!(n > 0 && n < 4096, "paced: {n}");
        assert_replays(src.as_ref(), &e)
    }
}
