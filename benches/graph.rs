//! TunkRank COST: the batch computation on timely with 1 and 2 workers
//! against the single-threaded reference, on an R-MAT graph (scale 20 by
//! default: about 1M node ids and 16M edges; `EXOFLOW_BENCH_SCALE` changes
//! it). The graph is generated in memory before measuring. Then the online
//! update of one epoch (45K, 100K, 1M, 4M new edges) on the same graph, by
//! the recompute, layered and differential-dataflow implementations
//! (layered beyond 45K with `EXOFLOW_BENCH_LAYERED=1`, differential with
//! `EXOFLOW_BENCH_DIFFERENTIAL=1`: long and memory-hungry), and the
//! steady state of a stream of 45K epochs on one long-lived state
//! (`stream-45000`).
//!
//! Run: `cargo bench --bench graph`.

use std::sync::Arc;
use std::time::Duration;

use criterion::BatchSize;
use criterion::{criterion_group, criterion_main, Criterion};
use exoflow_graph::online::{Layered, Online, Recompute};
use exoflow_graph::{batch, reference, EdgeOp};
use exoflow_ingest::rmat::Rmat;

fn scale() -> u32 {
    std::env::var("EXOFLOW_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

fn cost(c: &mut Criterion) {
    let g = Rmat {
        scale: scale(),
        edge_factor: 16,
        seed: 1,
    };
    let ops: Vec<EdgeOp> = (0..g.draws())
        .filter_map(|i| g.edge(i))
        .map(|(a, b)| EdgeOp::insert(a, b))
        .collect();
    let pairs = reference::apply_ops(&ops);
    eprintln!(
        "graph: R-MAT scale {}, {} edge operations, {} distinct edges",
        g.scale,
        ops.len(),
        pairs.len()
    );
    let csr = reference::Graph::from_sorted_pairs(&pairs);
    let pairs = Arc::new(pairs);

    let mut group = c.benchmark_group(format!("cost-scale{}", g.scale));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .warm_up_time(Duration::from_secs(1));
    group.bench_function("reference/build-csr", |b| {
        b.iter(|| reference::Graph::from_sorted_pairs(&pairs))
    });
    group.bench_function("reference/one-round", |b| {
        let x = vec![0u64; csr.nodes()];
        let mut next = vec![0u64; csr.nodes()];
        let mut terms = Vec::with_capacity(csr.nodes());
        b.iter(|| reference::round(&csr, &x, &mut terms, &mut next))
    });
    group.bench_function("reference/total", |b| {
        b.iter(|| reference::tunkrank(&reference::Graph::from_sorted_pairs(&pairs)))
    });
    for workers in [1, 2] {
        group.bench_function(format!("timely-{workers}w/total"), |b| {
            b.iter(|| batch::tunkrank(pairs.clone(), timely::Config::process(workers)))
        });
    }
    group.finish();
}

/// Online update time of one epoch of new edges over the base graph: 45K
/// (one second of the paper's stream), 100K, 1M and 4M edges, the next
/// draws of the same R-MAT stream (the graph growing as `exoflow run`
/// streams it; another seed would permute the ids, so that its hubs are
/// other nodes than the base's).
fn online(c: &mut Criterion) {
    let base = Rmat {
        scale: scale(),
        edge_factor: 16,
        seed: 1,
    };
    let pairs = reference::apply_ops(
        &(0..base.draws())
            .filter_map(|i| base.edge(i))
            .map(|(a, b)| EdgeOp::insert(a, b))
            .collect::<Vec<_>>(),
    );
    let t = std::time::Instant::now();
    let state = Layered::from_pairs(&pairs).expect("no overflow");
    eprintln!(
        "online base: {} edges loaded in {:.2?}, {} bytes of state ({:.1} per edge)",
        state.edge_count(),
        t.elapsed(),
        state.memory_bytes(),
        state.memory_bytes() as f64 / state.edge_count() as f64
    );
    let t = std::time::Instant::now();
    let re = Recompute::from_pairs(&pairs, 2).expect("no overflow");
    eprintln!(
        "online base (recompute): loaded in {:.2?}, {} rounds, {} bytes of state ({:.1} per edge)",
        t.elapsed(),
        re.rounds(),
        re.memory_bytes(),
        re.memory_bytes() as f64 / re.edge_count() as f64
    );
    // The epochs are the draws after the base graph's.
    let stream = (base, base.draws());
    let mut group = c.benchmark_group(format!("online-scale{}", base.scale));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1));
    for size in [45_000u64, 100_000, 1_000_000, 4_000_000] {
        let epoch: Vec<EdgeOp> = (stream.1..stream.1 + size)
            .filter_map(|i| stream.0.edge(i))
            .map(|(a, b)| EdgeOp::insert(a, b))
            .collect();
        if std::env::var_os("EXOFLOW_BENCH_LAYERED").is_some() || size == 45_000 {
            group.bench_function(format!("layered/epoch-{size}"), |b| {
                b.iter_batched(
                    || state.clone(),
                    |mut s| {
                        s.apply(&epoch).expect("no overflow");
                        s // dropped outside the timing
                    },
                    BatchSize::LargeInput,
                )
            });
        }
        for threads in [1, 2] {
            group.bench_function(format!("recompute-{threads}t/epoch-{size}"), |b| {
                b.iter_batched(
                    || {
                        let mut s = re.clone();
                        s.set_threads(threads);
                        s
                    },
                    |mut s| {
                        s.apply(&epoch).expect("no overflow");
                        s // dropped outside the timing
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    // The steady state of a stream: consecutive 45K epochs applied to one
    // long-lived state (its working buffers grown, its lists edited before),
    // as the pipeline applies them; the epochs above each start from a
    // fresh clone of the just-loaded base graph, whose first update also
    // grows those buffers.
    let size = 45_000u64;
    let epoch_at = |from: u64| -> Vec<EdgeOp> {
        (from..from + size)
            .filter_map(|i| stream.0.edge(i))
            .map(|(a, b)| EdgeOp::insert(a, b))
            .collect()
    };
    // Counted: the changes counted, not listed, as the pipeline asks when
    // it writes no change sets.
    for (threads, listed) in [(1, true), (2, true), (2, false)] {
        let mut s = re.clone();
        s.set_threads(threads);
        s.list_changes(listed);
        let mut next = stream.1;
        s.apply(&epoch_at(next)).expect("no overflow");
        next += size;
        let how = if listed { "" } else { "-counted" };
        group.bench_function(format!("recompute-{threads}t/stream-{size}{how}"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let epoch = epoch_at(next);
                    next += size;
                    let t = std::time::Instant::now();
                    s.apply(&epoch).expect("no overflow");
                    spent += t.elapsed();
                }
                spent
            })
        });
    }
    group.finish();
    drop((state, re));
    // Long and memory-hungry at scale 20: asked for by name.
    if std::env::var_os("EXOFLOW_BENCH_DIFFERENTIAL").is_some() {
        differential(c, &base, &pairs, &stream);
    }
}

/// Resident memory of this process, in bytes (Linux), 0 if unknown.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// The differential-dataflow implementation on 2 workers, on the same base
/// graph and epochs. Its state cannot be cloned: each measured epoch is
/// undone (the same edges removed) outside the timing, so that every sample
/// starts from the base graph.
fn differential(c: &mut Criterion, base: &Rmat, pairs: &[(u64, u64)], stream: &(Rmat, u64)) {
    use exoflow_graph::online::Differential;
    let before = resident_bytes();
    let t = std::time::Instant::now();
    let mut dd = Differential::from_pairs(pairs, 2).expect("load");
    let grown = resident_bytes().saturating_sub(before);
    eprintln!(
        "online base (differential, 2 workers): loaded in {:.2?}, process resident memory grew by {} bytes ({:.1} per edge)",
        t.elapsed(),
        grown,
        grown as f64 / pairs.len() as f64
    );
    let mut group = c.benchmark_group(format!("online-scale{}", base.scale));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_millis(1))
        .sampling_mode(criterion::SamplingMode::Flat);
    // Only the edges an epoch adds are removed again.
    let present: std::collections::HashSet<(u64, u64)> = pairs.iter().copied().collect();
    for size in [45_000u64, 100_000, 1_000_000, 4_000_000] {
        let epoch: Vec<EdgeOp> = (stream.1..stream.1 + size)
            .filter_map(|i| stream.0.edge(i))
            .map(|(a, b)| EdgeOp::insert(a, b))
            .collect();
        let undo: Vec<EdgeOp> = epoch
            .iter()
            .filter(|op| op.src != op.dst && !present.contains(&(op.src, op.dst)))
            .map(|op| EdgeOp::remove(op.src, op.dst))
            .collect();
        group.bench_function(format!("differential-2w/epoch-{size}"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let t = std::time::Instant::now();
                    dd.apply(&epoch).expect("apply");
                    spent += t.elapsed();
                    dd.apply(&undo).expect("undo");
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group!(benches, cost, online);
criterion_main!(benches);
