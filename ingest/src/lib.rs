//! # exoflow-ingest: edge streams
//!
//! Everything that brings edges in, and nothing of what is done with them.
//! It holds the edge-list format (one byte-level parser, used by every
//! command that reads edges), a reader of whole files (plain or gzip) that
//! keeps malformed lines aside with their place, partitioned replayable
//! sources with positions ([`source`]: files and the generator; [`kafka`]: topics, and a producer), the epoch cutter ([`epoch`]) and the
//! R-MAT generator ([`rmat`]).
//!
//! ```
//! use exoflow_ingest::edge::{parse_line, Edge, Line, Op};
//! assert_eq!(parse_line(b"12 34"), Ok(Line::Edge(Edge { op: Op::Insert, src: 12, dst: 34 })));
//! assert_eq!(parse_line(b"-12\t34\r"), Ok(Line::Edge(Edge { op: Op::Remove, src: 12, dst: 34 })));
//! assert_eq!(parse_line(b"# a comment"), Ok(Line::Skip));
//! assert!(parse_line(b"12 x").is_err());
//! ```
#![deny(missing_docs)]

pub mod edge;
pub mod epoch;
pub mod file;
pub mod kafka;
pub mod rmat;
pub mod source;

/// The lowest pacing rate the commands accept, in edges a second: below
/// it, the time an edge is due no longer fits a `Duration` in general.
pub const MIN_RATE: f64 = 0.001;

/// When the `n`-th item is due at `rate` items a second, from the start;
/// saturates instead of panicking for rates nothing validated.
pub(crate) fn pace_due(n: u64, rate: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(n as f64 / rate).unwrap_or(std::time::Duration::MAX)
}

#[cfg(test)]
mod pace_tests {
    #[test]
    fn due_times_saturate_instead_of_panicking() {
        use std::time::Duration;
        assert_eq!(super::pace_due(10, 5.0), Duration::from_secs(2));
        assert_eq!(super::pace_due(1, 1e-300), Duration::MAX);
        assert_eq!(super::pace_due(1, 0.0), Duration::MAX);
        assert_eq!(super::pace_due(0, f64::INFINITY), Duration::ZERO);
    }
}
