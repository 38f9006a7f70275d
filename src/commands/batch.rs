//! `exoflow batch`: offline TunkRank of an edge file (timely, or the
//! single-threaded reference), or of a streaming job at a committed epoch.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use exoflow_graph::{reference, write_csv, EdgeOp, NarrowPairs, PairPart};
use exoflow_ingest::edge::Op;

use super::{engine, wid, write_atomically};
use crate::StoreArgs;

/// TunkRank of the edge file `edges`, as CSV in `out`; malformed lines go
/// beside it (`<out>.rejected.tsv`).
pub fn of_file(edges: &Path, out: &Path, workers: usize, use_reference: bool) -> Result<()> {
    if workers == 0 && !use_reference {
        bail!("--workers must be at least 1");
    }
    crate::alloc::huge_pages();
    let start = Instant::now();
    // The reference stays single-threaded from the first byte: the COST
    // baseline.
    let threads = if use_reference { 1 } else { workers.max(1) };
    let file = exoflow_ingest::file::read_columns_on(edges, threads)?;
    let read_s = start.elapsed().as_secs_f64();
    if !file.rejected.is_empty() {
        let rejected = out.with_extension("rejected.tsv");
        write_atomically(&rejected, |f| {
            writeln!(f, "line\toffset\treason\traw")?;
            for r in &file.rejected {
                writeln!(f, "{}\t{}\t{}\t{}", r.line, r.offset, r.reason, r.raw)?;
            }
            Ok(())
        })?;
        let first = &file.rejected[0];
        eprintln!(
            "exoflow: {} malformed line(s) in {} kept aside in {} (first: line {}, {})",
            file.rejected.len(),
            edges.display(),
            rejected.display(),
            first.line,
            first.reason
        );
    }
    let t = Instant::now();
    let n_ops = file.len();
    // An edge file of inserts is packed and scattered on a thread per part
    // (one part, one thread, for the reference), each worker's edges apart;
    // removals need the operations' order, and the reference's map.
    enum Built {
        Pairs(Vec<(u64, u64)>),
        Shares(exoflow_graph::batch::Shares),
    }
    impl Built {
        fn of_inserts<P: PairPart>(parts: Vec<P>, use_reference: bool, workers: usize) -> Self {
            if use_reference {
                Self::Pairs(exoflow_graph::batch::graph_of_inserts(parts))
            } else {
                Self::Shares(exoflow_graph::batch::Shares::of_inserts(parts, workers))
            }
        }
    }
    let graph = if !file.inserts_only() {
        let ops: Vec<EdgeOp> = file
            .parts
            .iter()
            .flat_map(|p| p.edges())
            .map(|e| EdgeOp {
                src: e.src,
                dst: e.dst,
                insert: e.op == Op::Insert,
            })
            .collect();
        Built::Pairs(reference::apply_ops(&ops))
    } else {
        use exoflow_ingest::file::Pairs;
        let parts: Vec<Pairs> = file.parts.into_iter().map(|p| p.pairs).collect();
        // Ids below 2^32 stay one word a pair (most files'); a part of
        // wider ids takes every part to two words.
        if parts.iter().all(|p| matches!(p, Pairs::Narrow(_))) {
            let parts = parts.into_iter().filter_map(|p| match p {
                Pairs::Narrow(v) => Some(NarrowPairs(v)),
                Pairs::Wide(_) => None,
            });
            Built::of_inserts(parts.collect(), use_reference, workers)
        } else {
            let parts = parts.into_iter().map(Pairs::into_wide).collect();
            Built::of_inserts::<Vec<(u64, u64)>>(parts, use_reference, workers)
        }
    };
    let build_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (table, rounds, n_pairs) = match graph {
        Built::Pairs(pairs) if use_reference => {
            let (table, rounds) =
                reference::tunkrank_rounds(&reference::Graph::from_sorted_pairs(&pairs))?;
            (table, rounds, pairs.len())
        }
        Built::Pairs(pairs) => {
            let n = pairs.len();
            let (table, rounds) = exoflow_graph::batch::tunkrank(
                std::sync::Arc::new(pairs),
                timely::Config::process(workers),
            )?;
            (table, rounds, n)
        }
        // Each worker sorts its own edges as it starts: the sort is timed
        // with the computation.
        Built::Shares(shares) => exoflow_graph::batch::tunkrank_shares(shares)?,
    };
    let compute_s = t.elapsed().as_secs_f64();
    write_atomically(out, |f| write_csv(&table, f))?;
    eprintln!(
        "exoflow: {} edge operations -> {} edges, {} influence rows; {} rounds on {}; read {read_s:.2}s, graph {build_s:.2}s, compute {compute_s:.2}s; written to {}",
        n_ops,
        n_pairs,
        table.len(),
        rounds,
        if use_reference { "the reference".to_owned() } else { format!("{workers} timely worker(s)") },
        out.display()
    );
    Ok(())
}

/// The batch recomputation of a streaming job at committed epoch `at`,
/// compared with its online table; the table written to `out` if given.
pub fn of_job(
    store: &StoreArgs,
    id: &str,
    at: u64,
    workers: usize,
    out: Option<&Path>,
) -> Result<()> {
    let engine = engine(store)?;
    let wid = wid(id)?;
    let t = Instant::now();
    let exoflow_stream::batch::Recomputed { report, table, .. } = exoflow_stream::query::batch_at(
        engine.store().as_ref(),
        &exoflow_stream::Runtime::new(),
        wid.as_str(),
        at,
        workers,
    )?;
    if let Some(out) = out {
        write_atomically(out, |f| write_csv(&table, f))?;
    }
    eprintln!(
        "exoflow: batch TunkRank of workflow {wid} at epoch {at}: {} nodes in {:.2}s; {} differ from online (max |diff| {}, mean {:e}); report in outputs/{wid}/batch/{at:010}{}",
        report.nodes,
        t.elapsed().as_secs_f64(),
        report.differing,
        exoflow_graph::format_fixed(report.max_diff),
        report.mean_diff,
        out.map_or(String::new(), |o| format!(", table in {}", o.display()))
    );
    if report.differing > 0 {
        bail!("batch and online differ at epoch {at}");
    }
    Ok(())
}
