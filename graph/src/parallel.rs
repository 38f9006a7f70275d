//! Parallel helpers of the crate: jobs on threads, data cut into ranges of
//! balanced weight, and work on each range of a slice.

use std::ops::Range;

use crate::Overflow;

/// Runs each job, on its own thread when there are several; their results
/// in order. A job's panic goes on in the caller.
pub(crate) fn on_threads<T: Send, J: FnOnce() -> T + Send>(jobs: Vec<J>) -> Vec<T> {
    if jobs.len() <= 1 {
        return jobs.into_iter().map(|j| j()).collect();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs.into_iter().map(|j| s.spawn(j)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// `0..len` (the items that `weights` weighs) cut into at most `parts`
/// consecutive ranges of about `total / parts` weight each.
pub(crate) fn balanced(
    parts: usize,
    total: usize,
    weights: impl ExactSizeIterator<Item = usize>,
) -> Vec<Range<usize>> {
    let len = weights.len();
    let per = total.div_ceil(parts.max(1)).max(1);
    let mut ranges = Vec::with_capacity(parts);
    let (mut start, mut acc) = (0, 0);
    for (i, w) in weights.enumerate() {
        acc += w;
        if acc >= per && ranges.len() + 1 < parts {
            ranges.push(start..i + 1);
            (start, acc) = (i + 1, 0);
        }
    }
    ranges.push(start..len);
    ranges
}

/// Where to cut `items`, sorted by key, into at most `parts` runs of
/// about equal length that keep each key in one run: the index of each
/// run's first item after the first run's (ascending).
pub(crate) fn even_cuts<T>(items: &[(u32, T)], parts: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = Vec::new();
    for t in 1..parts {
        let mut i = (items.len() * t / parts).max(cuts.last().map_or(1, |&c| c + 1));
        while i < items.len() && items[i - 1].0 == items[i].0 {
            i += 1;
        }
        if i < items.len() {
            cuts.push(i);
        }
    }
    cuts
}

/// The runs that `cuts` (from [`even_cuts`]) make of `len` items.
pub(crate) fn run_bounds(cuts: &[usize], len: usize) -> Vec<Range<usize>> {
    let mut starts = vec![0];
    starts.extend_from_slice(cuts);
    let ends = cuts.iter().copied().chain([len]);
    starts.into_iter().zip(ends).map(|(a, b)| a..b).collect()
}

/// Runs `f` on each range of `data` (split at the ranges' bounds), on its
/// own thread when there are several; the results in range order, or the
/// first error. A panic in `f` goes on in the caller.
pub(crate) fn par_ranges<T, R, F>(
    ranges: &[Range<usize>],
    data: &mut [T],
    f: F,
) -> Result<Vec<R>, Overflow>
where
    T: Send,
    R: Send,
    F: Fn(Range<usize>, &mut [T]) -> Result<R, Overflow> + Sync,
{
    if ranges.len() <= 1 {
        return Ok(vec![f(0..data.len(), data)?]);
    }
    let mut jobs = Vec::with_capacity(ranges.len());
    let mut rest = data;
    let f = &f;
    for r in ranges {
        let (head, tail) = rest.split_at_mut(r.len());
        let r = r.clone();
        jobs.push(move || f(r, head));
        rest = tail;
    }
    on_threads(jobs).into_iter().collect()
}
