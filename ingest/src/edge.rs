//! The edge-list format, as SNAP distributes twitter-2010.
//!
//! A line `a b` means *b follows a*: the two ids are unsigned 64-bit decimal
//! numbers separated by spaces or tabs; further columns (weights, timestamps)
//! are ignored; a line may end in `\r\n`. `-a b` removes the edge (an
//! unfollow). Lines starting with `#` and blank lines are skipped. Anything
//! else is malformed, and [`parse_line`] says why, naming the column.
//!
//! The parser works on bytes and allocates nothing.

use std::fmt;

/// Longest line accepted, in bytes (without its line end).
pub const MAX_LINE: usize = 1 << 20;

/// Insert or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `a b`: b follows a.
    Insert,
    /// `-a b`: b unfollows a.
    Remove,
}

/// One edge operation: `dst` follows (or unfollows) `src`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Edge {
    /// Insert or remove.
    pub op: Op,
    /// The followed node (`a`).
    pub src: u64,
    /// The follower (`b`).
    pub dst: u64,
}

/// What a well-formed line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// An edge operation.
    Edge(Edge),
    /// A comment or a blank line.
    Skip,
}

/// Why a line is not an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// A field is not a decimal number (1-based byte column of the offending byte).
    NotANumber {
        /// Column (1-based, in bytes).
        column: usize,
    },
    /// The second id is missing.
    MissingField,
    /// An id does not fit in 64 bits (column where it starts).
    Overflow {
        /// Column (1-based, in bytes).
        column: usize,
    },
    /// The line is not valid UTF-8 (column of the first invalid byte).
    InvalidUtf8 {
        /// Column (1-based, in bytes).
        column: usize,
    },
    /// The line is longer than [`MAX_LINE`].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::NotANumber { column } => write!(f, "not a number at column {column}"),
            Malformed::MissingField => write!(f, "missing the second id (a line is `a b`)"),
            Malformed::Overflow { column } => {
                write!(f, "id at column {column} does not fit in 64 bits")
            }
            Malformed::InvalidUtf8 { column } => write!(f, "invalid UTF-8 at column {column}"),
            Malformed::TooLong { len } => write!(
                f,
                "line of {len} bytes, longer than the {MAX_LINE}-byte limit"
            ),
        }
    }
}

impl std::error::Error for Malformed {}

#[inline]
fn is_sep(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Parses an unsigned decimal at `line[i..]`; returns the value and the index
/// after its last digit.
#[inline]
fn number(line: &[u8], mut i: usize) -> Result<(u64, usize), Malformed> {
    let start = i;
    let mut v: u64 = 0;
    // Up to 19 digits always fit in 64 bits: no overflow checks there.
    let fast_end = (start + 19).min(line.len());
    while i < fast_end {
        let d = line[i].wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        v = v * 10 + u64::from(d);
        i += 1;
    }
    if i == fast_end {
        while i < line.len() && line[i].is_ascii_digit() {
            let d = u64::from(line[i] - b'0');
            v = match v.checked_mul(10).and_then(|v| v.checked_add(d)) {
                Some(v) => v,
                None => return Err(Malformed::Overflow { column: start + 1 }),
            };
            i += 1;
        }
    }
    if i == start {
        return Err(bad_byte(line, i));
    }
    Ok((v, i))
}

/// The error for an unexpected byte at `i`: invalid UTF-8 if the line is not
/// UTF-8 there, else not a number.
#[cold]
fn bad_byte(line: &[u8], i: usize) -> Malformed {
    match std::str::from_utf8(line) {
        Err(e) => Malformed::InvalidUtf8 {
            column: e.valid_up_to() + 1,
        },
        Ok(_) => Malformed::NotANumber { column: i + 1 },
    }
}

/// Parses one line (without its `\n`; a trailing `\r` is allowed).
pub fn parse_line(line: &[u8]) -> Result<Line, Malformed> {
    if line.len() > MAX_LINE {
        return Err(Malformed::TooLong { len: line.len() });
    }
    let line = match line.last() {
        Some(b'\r') => &line[..line.len() - 1],
        _ => line,
    };
    let mut i = 0;
    while i < line.len() && is_sep(line[i]) {
        i += 1;
    }
    if i == line.len() || line[i] == b'#' {
        return Ok(Line::Skip);
    }
    let op = if line[i] == b'-' {
        i += 1;
        Op::Remove
    } else {
        Op::Insert
    };
    let (src, mut i) = number(line, i)?;
    if i < line.len() && !is_sep(line[i]) {
        return Err(bad_byte(line, i));
    }
    while i < line.len() && is_sep(line[i]) {
        i += 1;
    }
    if i == line.len() {
        return Err(Malformed::MissingField);
    }
    let (dst, i) = number(line, i)?;
    if i < line.len() && !is_sep(line[i]) {
        return Err(bad_byte(line, i));
    }
    // Further columns are tolerated, but the line must still be text.
    if i < line.len() && !line[i..].is_ascii() {
        if let Err(e) = std::str::from_utf8(line) {
            return Err(Malformed::InvalidUtf8 {
                column: e.valid_up_to() + 1,
            });
        }
    }
    Ok(Line::Edge(Edge { op, src, dst }))
}

impl fmt::Display for Edge {
    /// The edge as a line (without `\n`): `a b` or `-a b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Op::Insert => write!(f, "{} {}", self.src, self.dst),
            Op::Remove => write!(f, "-{} {}", self.src, self.dst),
        }
    }
}

/// Escapes raw bytes for a dead-letter record: printable ASCII as is, the
/// rest as `\xNN` (and `\\` for a backslash).
pub fn escape(raw: &[u8]) -> String {
    let mut s = String::with_capacity(raw.len());
    for &b in raw {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn edge(op: Op, src: u64, dst: u64) -> Result<Line, Malformed> {
        Ok(Line::Edge(Edge { op, src, dst }))
    }

    #[test]
    fn well_formed_lines() {
        assert_eq!(parse_line(b"1 2"), edge(Op::Insert, 1, 2));
        assert_eq!(parse_line(b"  1\t\t2  "), edge(Op::Insert, 1, 2));
        assert_eq!(parse_line(b"1 2 0.5 1234567"), edge(Op::Insert, 1, 2));
        assert_eq!(parse_line(b"1 2\r"), edge(Op::Insert, 1, 2));
        assert_eq!(parse_line(b"-7 8"), edge(Op::Remove, 7, 8));
        assert_eq!(
            parse_line(b"18446744073709551615 0"),
            edge(Op::Insert, u64::MAX, 0)
        );
        assert_eq!(
            parse_line(b"3 3"),
            edge(Op::Insert, 3, 3),
            "self-loops are the graph's business"
        );
        for skip in [
            &b""[..],
            b"   ",
            b"\t",
            b"\r",
            b"# comment",
            b"  # indented comment",
            b"#",
        ] {
            assert_eq!(parse_line(skip), Ok(Line::Skip), "{skip:?}");
        }
    }

    #[test]
    fn malformed_lines_say_why_and_where() {
        assert_eq!(parse_line(b"1"), Err(Malformed::MissingField));
        assert_eq!(parse_line(b"1   "), Err(Malformed::MissingField));
        assert_eq!(parse_line(b"a 2"), Err(Malformed::NotANumber { column: 1 }));
        assert_eq!(
            parse_line(b"1 2x"),
            Err(Malformed::NotANumber { column: 4 })
        );
        assert_eq!(parse_line(b"1,2"), Err(Malformed::NotANumber { column: 2 }));
        assert_eq!(
            parse_line(b"- 1 2"),
            Err(Malformed::NotANumber { column: 2 })
        );
        assert_eq!(
            parse_line(b"--1 2"),
            Err(Malformed::NotANumber { column: 2 })
        );
        assert_eq!(
            parse_line(b"1 -2"),
            Err(Malformed::NotANumber { column: 3 })
        );
        assert_eq!(
            parse_line(b"18446744073709551616 1"),
            Err(Malformed::Overflow { column: 1 })
        );
        assert_eq!(
            parse_line(b"1 99999999999999999999"),
            Err(Malformed::Overflow { column: 3 })
        );
        assert_eq!(
            parse_line(b"1 \xff2"),
            Err(Malformed::InvalidUtf8 { column: 3 })
        );
        assert_eq!(
            parse_line(b"1 2 \xc3("),
            Err(Malformed::InvalidUtf8 { column: 5 })
        );
        let long = vec![b'1'; MAX_LINE + 1];
        assert_eq!(
            parse_line(&long),
            Err(Malformed::TooLong { len: MAX_LINE + 1 })
        );
        assert!(Malformed::Overflow { column: 3 }
            .to_string()
            .contains("column 3"));
    }

    #[test]
    fn escape_keeps_raw_bytes_readable() {
        assert_eq!(escape(b"1 \xff\\2\n"), "1 \\xff\\\\2\\x0a");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100_000))]

        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_line(&bytes);
        }

        #[test]
        fn format_then_parse_is_identity(src in any::<u64>(), dst in any::<u64>(), remove in any::<bool>()) {
            let e = Edge { op: if remove { Op::Remove } else { Op::Insert }, src, dst };
            prop_assert_eq!(parse_line(e.to_string().as_bytes()), Ok(Line::Edge(e)));
        }

        #[test]
        fn a_parsed_line_formats_and_parses_to_the_same_edge(bytes in "[-0-9 \t#x]{0,30}") {
            if let Ok(Line::Edge(e)) = parse_line(bytes.as_bytes()) {
                prop_assert_eq!(parse_line(e.to_string().as_bytes()), Ok(Line::Edge(e)));
            }
        }
    }
}
