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
