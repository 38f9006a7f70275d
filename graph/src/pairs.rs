//! A graph's sorted, distinct pairs from inserted edges, built at memory
//! speed: when both ids of every pair fit in 64 bits together (ids below
//! 2^32, or any dense numbering), each pair is packed into one `u64` key
//! (`a << shift | b` orders as `(a, b)`), the keys are scattered once into
//! buckets by their top bits, and each bucket, small enough for the cache,
//! is radix sorted there and deduplicated: one pass through main memory,
//! the rest in cache (a comparison sort and merge of the parts, or a
//! radix sort of whole parts, would scatter across main memory on every
//! pass). Pairs that do not pack are scattered the same way, by the top
//! bits of the followed id, and each bucket is sorted by comparison.

use crate::parallel::on_threads;
use crate::sort::radix_sort_by;

/// Keys per bucket aimed at: 128 KiB, twice over (keys and scratch) in L2.
const BUCKET: usize = 1 << 14;

/// A part of a graph's pairs `(a, b)`, as read.
pub trait PairPart: Send {
    /// Number of pairs.
    fn len(&self) -> usize;
    /// Whether there is no pair.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Calls `f(a, b)` for each pair, in order.
    fn each(&self, f: impl FnMut(u64, u64));
}

impl PairPart for Vec<(u64, u64)> {
    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    #[inline]
    fn each(&self, mut f: impl FnMut(u64, u64)) {
        for &(a, b) in self {
            f(a, b);
        }
    }
}

/// Pairs of ids below 2^32, one word each: `a << 32 | b`.
pub struct NarrowPairs(pub Vec<u64>);

impl PairPart for NarrowPairs {
    fn len(&self) -> usize {
        self.0.len()
    }

    #[inline]
    fn each(&self, mut f: impl FnMut(u64, u64)) {
        for &k in &self.0 {
            f(k >> 32, k & 0xffff_ffff);
        }
    }
}

/// The union of `parts` as a graph: self-loops dropped, sorted, without
/// duplicates. Each part is packed and scattered on a thread of its own.
pub(crate) fn union<P: PairPart>(parts: Vec<P>) -> Vec<(u64, u64)> {
    let split = Split::new(parts, 1, |_| 0);
    let mut all = Vec::with_capacity(split.bound(0));
    split.for_each(0, |a, b| all.push((a, b)));
    all
}

/// The union of parts (see [`union`]) split `ways` ways by a route of the
/// follower, each way sorted when it is read ([`Split::for_each`]): so
/// that each worker sorts its own pairs, and the sorted whole is never
/// written out.
pub(crate) enum Split {
    /// Packed keys `a << shift | b`, scattered into buckets by (way, top
    /// bits), each bucket radix sorted when read.
    Packed {
        parts: Vec<Scattered<u64>>,
        /// Buckets per way.
        buckets: usize,
        shift: u32,
        /// The largest follower id.
        max_b: u64,
    },
    /// Ids that do not pack (or few pairs): the pairs, scattered into
    /// buckets by (way, top bits of `a`), each bucket sorted by comparison
    /// when read.
    Wide {
        parts: Vec<Scattered<(u64, u64)>>,
        /// Buckets per way.
        buckets: usize,
        /// The largest follower id.
        max_b: u64,
    },
}

/// A part's keys by bucket, and where each bucket starts.
pub(crate) struct Scattered<K> {
    keys: Vec<K>,
    starts: Vec<usize>,
}

/// Scatters the pairs of each part, on a thread each, into `slots`
/// buckets by `bucket(a, b) = (key, slot)`, self-loops left out: one pass
/// to count, one to place.
fn scatter<P: PairPart, K: Copy + Default + Send>(
    parts: Vec<P>,
    slots: usize,
    bucket: impl Fn(u64, u64) -> (K, usize) + Sync,
) -> Vec<Scattered<K>> {
    let bucket = &bucket;
    on_threads(
        parts
            .into_iter()
            .map(|p| {
                move || {
                    let mut starts = vec![0usize; slots + 1];
                    p.each(|a, b| {
                        if a != b {
                            starts[bucket(a, b).1 + 1] += 1;
                        }
                    });
                    for d in 0..slots {
                        starts[d + 1] += starts[d];
                    }
                    let mut at = starts.clone();
                    let mut keys = vec![K::default(); starts[slots]];
                    p.each(|a, b| {
                        if a != b {
                            let (k, d) = bucket(a, b);
                            keys[at[d]] = k;
                            at[d] += 1;
                        }
                    });
                    Scattered { keys, starts }
                }
            })
            .collect(),
    )
}

/// Calls `f` for the keys of buckets `range`, bucket by bucket, each
/// gathered from the parts, sorted by `sort` and deduplicated.
fn gather<K: Copy + PartialEq>(
    parts: &[Scattered<K>],
    range: std::ops::Range<usize>,
    mut sort: impl FnMut(&mut Vec<K>),
    mut f: impl FnMut(K),
) {
    let mut keys = Vec::new();
    for d in range {
        keys.clear();
        for p in parts {
            keys.extend_from_slice(&p.keys[p.starts[d]..p.starts[d + 1]]);
        }
        sort(&mut keys);
        keys.dedup();
        for &k in &keys {
            f(k);
        }
    }
}

/// Buckets per way for `n` pairs over `ways` ways, by at most `bits` top
/// bits: about [`BUCKET`] keys each.
fn top_bits(n: usize, ways: usize, bits: u32) -> u32 {
    (usize::BITS - (n / ways / BUCKET).leading_zeros())
        .clamp(1, 12)
        .min(bits)
}

impl Split {
    /// `parts` split by `route(b)` (below `ways`).
    pub(crate) fn new<P: PairPart>(
        parts: Vec<P>,
        ways: usize,
        route: impl Fn(u64) -> usize + Sync,
    ) -> Self {
        let ways = ways.max(1);
        let parts = on_threads(
            parts
                .into_iter()
                .map(|p| {
                    move || {
                        // Self-loops are left out below, not removed here:
                        // a pass less over the pairs.
                        let (mut min_a, mut max_a, mut max_b) = (u64::MAX, 0, 0);
                        p.each(|a, b| {
                            min_a = min_a.min(a);
                            max_a = max_a.max(a);
                            max_b = max_b.max(b);
                        });
                        (p, min_a, max_a, max_b)
                    }
                })
                .collect(),
        );
        let n: usize = parts.iter().map(|p| p.0.len()).sum();
        let min_a = parts.iter().map(|p| p.1).min().unwrap_or(0);
        let max_a = parts.iter().map(|p| p.2).max().unwrap_or(0);
        let max_b = parts.iter().map(|p| p.3).max().unwrap_or(0);
        let parts: Vec<P> = parts.into_iter().map(|p| p.0).collect();
        let route = &route;
        let shift = u64::BITS - max_b.leading_zeros();
        let bits = shift + (u64::BITS - max_a.leading_zeros());
        if shift >= u64::BITS || bits > u64::BITS || n < 4 * BUCKET {
            // Buckets by way, then by the top bits of `a - min_a`.
            let span = u64::BITS - max_a.saturating_sub(min_a).leading_zeros();
            let top = top_bits(n, ways, span);
            let (low, buckets) = (span - top, 1usize << top);
            let parts = scatter(parts, ways * buckets, move |a, b| {
                let d = route(b) * buckets + ((a - min_a) >> low) as usize;
                ((a, b), d)
            });
            return Self::Wide {
                parts,
                buckets,
                max_b,
            };
        }
        // Buckets by way, then by the top bits of the keys.
        let top = top_bits(n, ways, bits);
        let (low, buckets) = (bits - top, 1usize << top);
        let parts = scatter(parts, ways * buckets, move |a, b| {
            let k = a << shift | b;
            (k, route(b) * buckets + (k >> low) as usize)
        });
        Self::Packed {
            parts,
            buckets,
            shift,
            max_b,
        }
    }

    /// The largest follower id (of self-loops too), 0 when there is none.
    pub(crate) fn max_follower(&self) -> u64 {
        match self {
            Self::Packed { max_b, .. } | Self::Wide { max_b, .. } => *max_b,
        }
    }

    /// At least the number of pairs of way `w` (exactly, after
    /// [`for_each`](Self::for_each); duplicates not yet dropped before).
    pub(crate) fn bound(&self, w: usize) -> usize {
        fn sum<K>(parts: &[Scattered<K>], from: usize, to: usize) -> usize {
            parts.iter().map(|p| p.starts[to] - p.starts[from]).sum()
        }
        match self {
            Self::Packed { parts, buckets, .. } => sum(parts, w * buckets, (w + 1) * buckets),
            Self::Wide { parts, buckets, .. } => sum(parts, w * buckets, (w + 1) * buckets),
        }
    }

    /// Calls `f(a, b)` for the pairs of way `w`, in order: each bucket
    /// gathered from the parts, sorted in cache, deduplicated.
    pub(crate) fn for_each(&self, w: usize, mut f: impl FnMut(u64, u64)) {
        match self {
            Self::Packed {
                parts,
                buckets,
                shift,
                ..
            } => {
                let (shift, mask) = (*shift, (1u64 << shift) - 1);
                let mut scratch = Vec::new();
                let sort =
                    |keys: &mut Vec<u64>| radix_sort_by::<_, 8>(keys, &mut scratch, 64, |&k| k);
                gather(parts, w * buckets..(w + 1) * buckets, sort, |k| {
                    f(k >> shift, k & mask)
                });
            }
            Self::Wide { parts, buckets, .. } => {
                let sort = |keys: &mut Vec<(u64, u64)>| keys.sort_unstable();
                gather(parts, w * buckets..(w + 1) * buckets, sort, |(a, b)| {
                    f(a, b)
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packed and bucketed when the ids fit, compared otherwise: the same
    /// set either way, from one part or several.
    #[test]
    fn the_union_is_the_distinct_pairs_without_self_loops() {
        let mut s = 7u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        // (bits of a, bits of b): packed in 16, 40, 64 bits; not packed.
        for (ba, bb) in [
            (8, 8),
            (20, 20),
            (1, 63),
            (63, 1),
            (0, 64),
            (40, 40),
            (32, 32),
            (64, 0),
        ] {
            let keep = |v: u64, bits: u32| if bits == 0 { 0 } else { v >> (64 - bits) };
            // Some values repeated, so that duplicates and self-loops occur.
            let mut pairs: Vec<(u64, u64)> = (0..100_000)
                .map(|i| {
                    let (x, y) = (next(), next());
                    let (a, b) = (keep(x, ba), keep(y, bb));
                    if i % 3 == 0 {
                        (a & !0xfff0, b & !0xfff0)
                    } else {
                        (a, b)
                    }
                })
                .collect();
            pairs.extend([(3, 3), (5, 6), (5, 6)]);
            let want: Vec<(u64, u64)> = pairs
                .iter()
                .copied()
                .filter(|&(a, b)| a != b)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            for parts in [1, 2, 3] {
                let chunk = pairs.len().div_ceil(parts);
                let got = union(pairs.chunks(chunk).map(<[_]>::to_vec).collect());
                assert_eq!(got, want, "{ba} and {bb} bits, {parts} parts");
                if ba <= 32 && bb <= 32 {
                    let narrow = pairs
                        .chunks(chunk)
                        .map(|c| NarrowPairs(c.iter().map(|&(a, b)| a << 32 | b).collect()))
                        .collect();
                    assert_eq!(union(narrow), want, "{ba} and {bb} bits, narrow");
                }
            }
            // Split three ways: each way the pairs routed to it, in order.
            let route = |b: u64| (b % 3) as usize;
            let split = Split::new(
                vec![pairs[..50_000].to_vec(), pairs[50_000..].to_vec()],
                3,
                route,
            );
            for w in 0..3 {
                let mut got = Vec::new();
                split.for_each(w, |a, b| got.push((a, b)));
                let way: Vec<(u64, u64)> = want
                    .iter()
                    .copied()
                    .filter(|&(_, b)| route(b) == w)
                    .collect();
                assert!(split.bound(w) >= way.len());
                assert_eq!(got, way, "{ba} and {bb} bits, way {w}");
            }
        }
        assert!(union(Vec::<Vec<(u64, u64)>>::new()).is_empty());
        assert!(union(vec![NarrowPairs(Vec::new())]).is_empty());
    }
}
