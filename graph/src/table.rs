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
    // Rows formatted by hand into one buffer, from its end: `writeln!`
    // costs much more per row, and a table has a row per followed node.
    let mut row = [0u8; 64];
    for &(node, x) in table {
        let end = row.len();
        row[end - 1] = b'\n';
        let at = decimal_before(&mut row, end - 1, x % crate::ONE, 9);
        row[at - 1] = b'.';
        let at = decimal_before(&mut row, at - 1, x / crate::ONE, 1);
        row[at - 1] = b',';
        let at = decimal_before(&mut row, at - 1, node, 1);
        out.write_all(&row[at..])?;
    }
    out.flush()
}

/// Writes `v` in decimal, at least `min_digits` digits (zeros in front),
/// to end just before `buf[end]`; returns where it starts.
fn decimal_before(buf: &mut [u8], end: usize, mut v: u64, min_digits: usize) -> usize {
    let mut at = end;
    while v > 0 || end - at < min_digits {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    at
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
    fn rows_are_written_as_format_writes_them() {
        let mut s = 5u64;
        let mut table: Vec<(u64, u64)> = [0, 1, 9, 10, crate::ONE - 1, crate::ONE, u64::MAX]
            .iter()
            .flat_map(|&v| [(v, v), (v, 0), (0, v), (u64::MAX, v)])
            .collect();
        table.extend((0..10_000).map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> (i % 64), s.rotate_left(i) >> (i % 64))
        }));
        let mut want = String::from("node,influence\n");
        for &(node, x) in &table {
            want.push_str(&format!("{node},{}\n", format_fixed(x)));
        }
        let mut out = Vec::new();
        write_csv(&table, &mut out).expect("write");
        assert_eq!(String::from_utf8(out).expect("text"), want);
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
