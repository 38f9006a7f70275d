//! The crate's radix sort: least significant digit first, stable.

/// Sorts `items` by `key(item)` (below `2^key_bits`), keeping their order
/// within a key: one counting pass for all digits of `DIGIT` bits, then one
/// scatter pass per digit, skipping a digit that every key shares (the high
/// ones, for small ids or a bucket's common top bits). `scratch` is reused
/// (its length and contents are overwritten); the result is in `items`.
///
/// The counts of a digit stay in the first-level cache for `DIGIT` up to
/// about 11, where a counting sort over every key value would miss on every
/// item.
pub(crate) fn radix_sort_by<T: Copy, const DIGIT: u32>(
    items: &mut Vec<T>,
    scratch: &mut Vec<T>,
    key_bits: u32,
    key: impl Fn(&T) -> u64,
) {
    let n = items.len();
    let Some(&first) = items.first() else {
        return;
    };
    let radix = 1usize << DIGIT;
    let mask = (radix - 1) as u64;
    let digits = key_bits.min(64).div_ceil(DIGIT) as usize;
    let mut counts = vec![0usize; digits * radix];
    for item in items.iter() {
        let k = key(item);
        for d in 0..digits {
            counts[d * radix + ((k >> (DIGIT as usize * d)) & mask) as usize] += 1;
        }
    }
    scratch.clear();
    scratch.resize(n, first);
    for d in 0..digits {
        let c = &mut counts[d * radix..(d + 1) * radix];
        if c.contains(&n) {
            continue;
        }
        let mut sum = 0;
        for slot in c.iter_mut() {
            (*slot, sum) = (sum, sum + *slot);
        }
        let shift = DIGIT as usize * d;
        for item in items.iter() {
            let b = ((key(item) >> shift) & mask) as usize;
            scratch[c[b]] = *item;
            c[b] += 1;
        }
        std::mem::swap(items, scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn it_sorts_stably_whatever_the_keys(
            keys in proptest::collection::vec(any::<u64>(), 0..3000),
            bits in prop_oneof![Just(8u32), Just(20), Just(64)],
        ) {
            let items: Vec<(u64, usize)> = keys
                .iter()
                .enumerate()
                .map(|(i, &k)| (if bits == 64 { k } else { k & ((1 << bits) - 1) }, i))
                .collect();
            let mut want = items.clone();
            want.sort_by_key(|x| x.0);
            for digit in [8, 11] {
                let mut got = items.clone();
                let mut scratch = vec![(7, 7); 5];
                if digit == 8 {
                    radix_sort_by::<_, 8>(&mut got, &mut scratch, bits, |x| x.0);
                } else {
                    radix_sort_by::<_, 11>(&mut got, &mut scratch, bits, |x| x.0);
                }
                prop_assert_eq!(&got, &want);
            }
        }
    }
}
