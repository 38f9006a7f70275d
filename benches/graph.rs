//! TunkRank COST: the batch computation on timely with 1 and 2 workers
//! against the single-threaded reference, on an R-MAT graph (scale 20 by
//! default: about 1M node ids and 16M edges; `EXOFLOW_BENCH_SCALE` changes
//! it). The graph is generated in memory before measuring.
//!
//! Run: `cargo bench --bench graph`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
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

criterion_group!(benches, cost);
criterion_main!(benches);
