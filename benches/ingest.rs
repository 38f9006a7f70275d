//! Edge parsing throughput from memory (the one parser every command uses),
//! R-MAT generation throughput, the file source read in epochs through two
//! partitions (beside a raw read of the same file, the baseline), and the
//! Kafka source reading a topic from a local tansu broker (when `tansu` is
//! on PATH; otherwise that bench says "not measured").
//!
//! Run: `cargo bench --bench ingest`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;

use exoflow_ingest::edge::{parse_line, Line};
use exoflow_ingest::epoch::Cutter;
use exoflow_ingest::kafka::{produce, KafkaSource, KafkaSpec, ProduceOptions, Until};
use exoflow_ingest::rmat::Rmat;
use exoflow_ingest::source::{FileSource, Source};

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
            let mut at = 0;
            for end in memchr::memchr_iter(b'\n', &text) {
                let line = &text[at..end];
                at = end + 1;
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

/// Reads a whole source in epochs of 1M edges; returns the edge count.
fn read_all(src: Arc<dyn Source>) -> u64 {
    let mut c = Cutter::from_start(src).expect("open the source");
    let mut n = 0;
    while !c.at_end() {
        let slices = c.by_count(1 << 20, &|| false).expect("read");
        n += slices.iter().map(|s| s.edges.len() as u64).sum::<u64>();
    }
    n
}

fn sources(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("edges.txt");
    let g = Rmat {
        scale: 18,
        edge_factor: 8,
        seed: 3,
    };
    let n = {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        g.write(&mut f, 2).expect("generate")
    };
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n));
    group.bench_function("file-raw-read/baseline", |b| {
        b.iter(|| {
            let bytes = std::fs::read(&path).expect("read");
            bytes.iter().filter(|&&b| b == b'\n').count()
        })
    });
    group.bench_function("file-source/2-partitions", |b| {
        b.iter(|| {
            let src: Arc<dyn Source> = Arc::new(FileSource::open(&path, 2).expect("open"));
            assert_eq!(read_all(src), n);
        })
    });
    if exoflow_testkit::find_program("tansu", "TANSU").is_none() {
        eprintln!("ingest/kafka-source: not measured (tansu is not on PATH)");
        group.finish();
        return;
    }
    let broker = exoflow_testkit::Tansu::start(dir.path());
    let spec = KafkaSpec::parse(&format!("kafka://{}/bench", broker.brokers)).expect("address");
    let opts = ProduceOptions {
        partitions: Some(2),
        ..ProduceOptions::default()
    };
    let t = std::time::Instant::now();
    let stats = produce(&path, &spec, &opts, &mut |_| {}).expect("produce");
    eprintln!(
        "ingest/kafka-produce: {} lines in {} messages, {:.2} M lines/s flat out",
        stats.lines,
        stats.messages,
        stats.lines as f64 / t.elapsed().as_secs_f64() / 1e6
    );
    group.bench_function("kafka-source/2-partitions-tansu", |b| {
        b.iter(|| {
            let src: Arc<dyn Source> =
                Arc::new(KafkaSource::connect(spec.clone(), Until::EndNow).expect("connect"));
            assert_eq!(read_all(src), n);
        })
    });
    group.finish();
}

criterion_group!(benches, parse, sources);
criterion_main!(benches);
