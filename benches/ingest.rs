//! Edge parsing throughput from memory (the one parser every command uses),
//! and R-MAT generation throughput.
//!
//! Run: `cargo bench --bench ingest`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use exoflow_ingest::edge::{parse_line, Line};
use exoflow_ingest::rmat::Rmat;

fn parse(c: &mut Criterion) {
    let g = Rmat {
        scale: 20,
        edge_factor: 4,
        seed: 1,
    };
    let mut text = Vec::new();
    let n = g.write(&mut text, 2).expect("generate");
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n));
    group.bench_function("parse-lines/1-core", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for line in text.split(|&b| b == b'\n') {
                if let Ok(Line::Edge(e)) = parse_line(line) {
                    sum = sum.wrapping_add(e.src ^ e.dst);
                }
            }
            sum
        })
    });
    group.bench_function("rmat-generate/2-threads", |b| {
        b.iter(|| {
            let mut sink = std::io::sink();
            g.write(&mut sink, 2).expect("generate")
        })
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
