//! A graph's sorted, distinct pairs from inserted edges, built at memory
//! speed: when both ids of every pair fit in 64 bits together (ids below
//! 2^32, or any dense numbering), each pair is packed into one `u64` key
//! (`a << shift | b` orders as `(a, b)`), the keys are scattered once into
//! buckets by their top bits, and each bucket, small enough for the cache,
//! is radix sorted there and deduplicated. A comparison sort of 16M pairs
//! takes about 1 s on one core here, an LSD radix sort of the whole array
//! 0.5 s (every pass scatters across main memory); this one pass through
//! memory, the rest in cache.

use crate::on_threads;

/// Sorted runs of pairs that follow one another.
pub(crate) type Runs = Vec<Vec<(u64, u64)>>;

/// Keys per bucket aimed at: 128 KiB, twice over (keys and scratch) in L2.
const BUCKET: usize = 1 << 14;

/// The union of `parts` as a graph: self-loops dropped, sorted, without
/// duplicates. Each part is packed, and each range of buckets sorted, on a
/// thread of its own: one thread for one part.
pub(crate) fn union(parts: Vec<Vec<(u64, u64)>>) -> Vec<(u64, u64)> {
    let [runs] = <[_; 1]>::try_from(union_split(parts, 1, |_| 0)).unwrap_or_default();
    let mut runs = runs.into_iter();
    let mut all = runs.next().unwrap_or_default();
    for run in runs {
        all.extend_from_slice(&run);
    }
    all
}

/// [`union`] split `ways` ways by `route(b)` (below `ways`), each way as
/// sorted runs that follow one another (one per sorting thread): the pairs
/// of way `w` in order are its runs' pairs one after the other.
pub(crate) fn union_split(
    parts: Vec<Vec<(u64, u64)>>,
    ways: usize,
    route: impl Fn(u64) -> usize + Sync,
) -> Vec<Runs> {
    let threads = parts.len().max(1);
    let parts = on_threads(
        parts
            .into_iter()
            .map(|mut p| {
                move || {
                    p.retain(|&(a, b)| a != b);
                    let (ma, mb) = p
                        .iter()
                        .fold((0, 0), |(ma, mb), &(a, b)| (ma.max(a), mb.max(b)));
                    (p, ma, mb)
                }
            })
            .collect(),
    );
    let n: usize = parts.iter().map(|p| p.0.len()).sum();
    let max_a = parts.iter().map(|p| p.1).max().unwrap_or(0);
    let max_b = parts.iter().map(|p| p.2).max().unwrap_or(0);
    let shift = u64::BITS - max_b.leading_zeros();
    let bits = shift + (u64::BITS - max_a.leading_zeros());
    if shift >= u64::BITS || bits > u64::BITS || n < 4 * BUCKET {
        let mut all: Vec<(u64, u64)> = Vec::with_capacity(n);
        for (p, _, _) in parts {
            all.extend(p);
        }
        all.sort_unstable();
        all.dedup();
        let mut split = vec![Vec::new(); ways];
        for &(a, b) in &all {
            split[route(b)].push((a, b));
        }
        return split.into_iter().map(|w| vec![w]).collect();
    }
    // Buckets by the top `top` bits of the keys.
    let top = (usize::BITS - (n / BUCKET).leading_zeros())
        .clamp(1, 12)
        .min(bits);
    let low = bits - top;
    let buckets = 1usize << top;
    let scattered: Vec<(Vec<u64>, Vec<usize>)> = on_threads(
        parts
            .into_iter()
            .map(|(p, _, _)| {
                move || {
                    let mut starts = vec![0usize; buckets + 1];
                    for &(a, b) in &p {
                        starts[((a << shift | b) >> low) as usize + 1] += 1;
                    }
                    for d in 0..buckets {
                        starts[d + 1] += starts[d];
                    }
                    let mut at = starts.clone();
                    let mut keys = vec![0u64; p.len()];
                    for &(a, b) in &p {
                        let k = a << shift | b;
                        let d = (k >> low) as usize;
                        keys[at[d]] = k;
                        at[d] += 1;
                    }
                    (keys, starts)
                }
            })
            .collect(),
    );
    // Contiguous ranges of buckets, about n / threads keys each.
    let size = |d: usize| -> usize { scattered.iter().map(|(_, s)| s[d + 1] - s[d]).sum() };
    let mut ranges = Vec::with_capacity(threads);
    let (mut from, mut acc) = (0, 0);
    for d in 0..buckets {
        acc += size(d);
        if acc * threads >= n * (ranges.len() + 1) && ranges.len() + 1 < threads {
            ranges.push(from..d + 1);
            from = d + 1;
        }
    }
    ranges.push(from..buckets);
    let mask = (1u64 << shift) - 1;
    let (scattered, route) = (&scattered, &route);
    let outputs: Vec<Runs> = on_threads(
        ranges
            .into_iter()
            .map(|range| {
                move || {
                    let total: usize = range.clone().map(size).sum();
                    let mut out: Vec<Vec<(u64, u64)>> = (0..ways)
                        .map(|_| Vec::with_capacity(total / ways + total / 64))
                        .collect();
                    let (mut keys, mut scratch) = (Vec::new(), Vec::new());
                    for d in range {
                        keys.clear();
                        for (part, starts) in scattered {
                            keys.extend_from_slice(&part[starts[d]..starts[d + 1]]);
                        }
                        scratch.resize(keys.len(), 0);
                        radix_sort(&mut keys, &mut scratch);
                        keys.dedup();
                        if ways == 1 {
                            out[0].extend(keys.iter().map(|&k| (k >> shift, k & mask)));
                            continue;
                        }
                        for &k in &keys {
                            let b = k & mask;
                            out[route(b)].push((k >> shift, b));
                        }
                    }
                    out
                }
            })
            .collect(),
    );
    // Way by way, the runs in order.
    let mut split: Vec<Runs> = vec![Vec::new(); ways];
    for out in outputs {
        for (w, run) in out.into_iter().enumerate() {
            split[w].push(run);
        }
    }
    split
}

/// Sorts `keys` by their bytes from the lowest, skipping the bytes that are
/// the same in every key (the high ones, for small ids or a bucket's top
/// bits); `scratch` is at least as long.
fn radix_sort(keys: &mut [u64], scratch: &mut [u64]) {
    let n = keys.len();
    let mut counts = [[0usize; 256]; 8];
    for &k in keys.iter() {
        for (d, c) in counts.iter_mut().enumerate() {
            c[(k >> (8 * d)) as usize & 0xff] += 1;
        }
    }
    let (mut from, mut to) = (keys, &mut scratch[..n]);
    let mut swapped = false;
    for (d, c) in counts.iter().enumerate() {
        if c.contains(&n) {
            continue;
        }
        let mut at = [0usize; 256];
        let mut sum = 0;
        for (slot, &count) in at.iter_mut().zip(c) {
            *slot = sum;
            sum += count;
        }
        for &k in from.iter() {
            let b = (k >> (8 * d)) as usize & 0xff;
            to[at[b]] = k;
            at[b] += 1;
        }
        std::mem::swap(&mut from, &mut to);
        swapped = !swapped;
    }
    if swapped {
        // The sorted keys are in `scratch`.
        to.copy_from_slice(from);
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
            }
            // Split three ways: each way the pairs routed to it, in order.
            let route = |b: u64| (b % 3) as usize;
            let split = union_split(
                vec![pairs[..50_000].to_vec(), pairs[50_000..].to_vec()],
                3,
                route,
            );
            for (w, runs) in split.iter().enumerate() {
                let got: Vec<(u64, u64)> = runs.concat();
                let way: Vec<(u64, u64)> = want
                    .iter()
                    .copied()
                    .filter(|&(_, b)| route(b) == w)
                    .collect();
                assert_eq!(got, way, "{ba} and {bb} bits, way {w}");
            }
        }
        assert!(union(Vec::new()).is_empty());
    }
}
