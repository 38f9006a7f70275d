//! The influence table: its CSV form and its digest.

use std::io::{self, Write};

use xxhash_rust::xxh3::xxh3_64;

/// An influence table: `(node, x)` in ascending node order, `x` in fixed
/// point (value * 10^9).
pub type Table = Vec<(u64, u64)>;

/// Writes `x` as `{x / 10^9}.{x % 10^9:09}`, never through a float.
pub fn format_fixed(x: u64) -> String {
    format!("{}.{:09}", x / crate::ONE, x % crate::ONE)
}

/// Writes the table as CSV: a `node,influence` header, then one line per node
/// in ascending order, `\n` line ends.
pub fn write_csv<W: Write>(table: &[(u64, u64)], out: W) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    out.write_all(b"node,influence\n")?;
    for &(node, x) in table {
        writeln!(out, "{node},{}.{:09}", x / crate::ONE, x % crate::ONE)?;
    }
    out.flush()
}

/// One row's share of the digest: `xxh3_64(node LE ++ x LE)`.
pub fn row_hash(node: u64, x: u64) -> u64 {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&node.to_le_bytes());
    b[8..].copy_from_slice(&x.to_le_bytes());
    xxh3_64(&b)
}

/// The digest of a table: the wrapping sum of [`row_hash`] over its rows, so
/// that it can be updated from a change set.
pub fn digest(table: &[(u64, u64)]) -> u64 {
    table
        .iter()
        .fold(0u64, |acc, &(n, x)| acc.wrapping_add(row_hash(n, x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_is_printed_from_the_integer() {
        assert_eq!(format_fixed(0), "0.000000000");
        assert_eq!(format_fixed(1_500_000_185), "1.500000185");
        assert_eq!(format_fixed(u64::MAX), "18446744073.709551615");
        let mut out = Vec::new();
        write_csv(&[(1, 1_000_000_001), (7, 5)], &mut out).expect("write");
        assert_eq!(out, b"node,influence\n1,1.000000001\n7,0.000000005\n");
    }

    #[test]
    fn digest_is_order_free_and_updatable() {
        let t = vec![(1, 10), (2, 20), (3, 30)];
        let d = digest(&t);
        assert_eq!(d, digest(&[(3, 30), (1, 10), (2, 20)]));
        // Change row 2 from 20 to 21 by subtracting and adding its hashes.
        let updated = d
            .wrapping_sub(row_hash(2, 20))
            .wrapping_add(row_hash(2, 21));
        assert_eq!(updated, digest(&[(1, 10), (2, 21), (3, 30)]));
    }
}
