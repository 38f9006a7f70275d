//! Engine microbenchmarks: the paper's Fig 8c (throughput of registered DAG
//! runs), Fig 8a (producer-to-consumer latency by size and checkpoint
//! mode) and Fig 8b (a 1M-edge graph snapshot handed to a batch stage in
//! memory, against through the store), each beside a baseline measured in
//! the same run.
//!
//! Run: `cargo bench --bench engine` (add `-- fig8c`, `-- fig8a` or `-- fig8b`
//! to pick one).
//! S3 cases start a moto server when `moto_server` is installed, and are
//! reported as not measured otherwise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use exoflow_engine::store::local::LocalStore;
use exoflow_engine::store::memory::MemStore;
use exoflow_engine::store::s3::{S3Config, S3Store};
use exoflow_engine::store::SharedStore;
use exoflow_engine::{Checkpoint, Dag, Engine, TaskOptions, WorkflowId};
use serde_bytes::ByteBuf;

fn register(engine: &Engine, mode: Checkpoint) {
    engine
        .register("nop", move |_: &()| {
            let mut dag = Dag::new();
            let t = dag.task("nop", TaskOptions::checkpoint(mode), |_| Ok(()));
            dag.finish(t)
        })
        .expect("register nop");
    engine
        .register("fan100", move |_: &()| {
            let mut dag = Dag::new();
            let parts: Vec<_> = (0..100)
                .map(|i| dag.task(&format!("p{i}"), TaskOptions::checkpoint(mode), |_| Ok(())))
                .collect();
            let sink = dag.task_all(
                "sink",
                TaskOptions::checkpoint(mode),
                &parts,
                |_, _: &[&()]| Ok(()),
            );
            dag.finish(sink)
        })
        .expect("register fan100");
}

/// Submits `runs` runs of `dag` at once and waits for all.
fn burst(engine: &Engine, dag: &str, runs: usize) {
    let handles: Vec<_> = (0..runs)
        .map(|_| {
            engine
                .workflow::<()>(dag)
                .args(&())
                .submit()
                .expect("submit")
        })
        .collect();
    for h in handles {
        h.wait().expect("run");
    }
}

/// A fresh engine over a fresh local directory, so that each case starts
/// from an empty store (a store filled by an earlier case slows file
/// creation and leaves write-back work behind).
fn fresh_engine(mode: Checkpoint) -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: SharedStore = Arc::new(LocalStore::open(dir.path()).expect("store"));
    let engine = Engine::new(store);
    register(&engine, mode);
    (engine, dir)
}

fn fig8c(c: &mut Criterion) {
    let mut g = c.benchmark_group("fig8c");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(1));
    // The stores are deleted after the last case: deleting tens of
    // thousands of files just before a case slows its file creation
    // (ext4 skips recently freed inodes).
    let mut dirs = Vec::new();
    for mode in [Checkpoint::Skip, Checkpoint::Async, Checkpoint::Sync] {
        let (single_runs, fan_runs) = match mode {
            Checkpoint::Skip => (10_000, 1_000),
            _ => (1_000, 50),
        };
        let (engine, dir) = fresh_engine(mode);
        dirs.push(dir);
        g.throughput(Throughput::Elements(single_runs as u64));
        g.bench_function(
            BenchmarkId::new(format!("single-nop-runs/{mode:?}"), "local"),
            |b| b.iter(|| burst(&engine, "nop", single_runs)),
        );
        drop(engine);
        let (engine, dir) = fresh_engine(mode);
        dirs.push(dir);
        g.throughput(Throughput::Elements(fan_runs as u64 * 101));
        g.bench_function(
            BenchmarkId::new(format!("fan100-tasks/{mode:?}"), "local"),
            |b| b.iter(|| burst(&engine, "fan100", fan_runs)),
        );
    }
    g.finish();
    drop(dirs);
}

const SIZES: [(usize, &str); 5] = [
    (1, "1B"),
    (128 << 10, "128KiB"),
    (1 << 20, "1MiB"),
    (32 << 20, "32MiB"),
    (128 << 20, "128MiB"),
];

/// One producer -> consumer run; returns the time from the producer's return
/// to the consumer's start (from the engine's task timings).
fn hop(
    engine: &Engine,
    payload: &Arc<Vec<u8>>,
    mode: Checkpoint,
    tag: &str,
    n: &mut u64,
) -> Duration {
    *n += 1;
    let mut dag = Dag::new();
    let p = payload.clone();
    let produce = dag.task("produce", TaskOptions::checkpoint(mode), move |_| {
        Ok(ByteBuf::from(p.as_ref().clone()))
    });
    let consume = dag.task1("consume", TaskOptions::skip(), produce, |_, b: &ByteBuf| {
        Ok(b.len() as u64)
    });
    let wf = dag.finish(consume).expect("dag");
    let wid = WorkflowId::new(format!("hop-{tag}-{n}")).expect("id");
    let h = engine
        .workflow_of(&wf)
        .id(wid.clone())
        .submit()
        .expect("submit");
    h.wait().expect("run");
    let t = h.timings();
    let end = t
        .iter()
        .find(|r| r.name == "produce")
        .map(|r| r.timing.end_us)
        .unwrap_or(0);
    let start = t
        .iter()
        .find(|r| r.name == "consume")
        .map(|r| r.timing.start_us)
        .unwrap_or(0);
    Duration::from_micros(start.saturating_sub(end))
}

fn raw_write_fsync(dir: &std::path::Path, bytes: &[u8], n: &mut u64) -> Duration {
    use std::io::Write;
    *n += 1;
    let start = Instant::now();
    let mut f = std::fs::File::create(dir.join(format!("raw-{n}"))).expect("create");
    f.write_all(bytes).expect("write");
    f.sync_data().expect("fsync");
    start.elapsed()
}

/// The least a new named file needs to be durable: written and fsynced
/// under a temporary name, renamed into place, its directory fsynced (what
/// the local store does for every object).
fn raw_durable_file(dir: &std::path::Path, bytes: &[u8], n: &mut u64) -> Duration {
    use std::io::Write;
    *n += 1;
    let start = Instant::now();
    let tmp = dir.join(format!("tmp-{n}"));
    let mut f = std::fs::File::create(&tmp).expect("create");
    f.write_all(bytes).expect("write");
    f.sync_data().expect("fsync");
    std::fs::rename(&tmp, dir.join(format!("durable-{n}"))).expect("rename");
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("fsync directory");
    start.elapsed()
}

fn fig8a(c: &mut Criterion) {
    let mut g = c.benchmark_group("fig8a");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_millis(500));
    let moto = exoflow_testkit::find_program("moto_server", "MOTO_SERVER")
        .map(|_| exoflow_testkit::Moto::start());
    let mut stores: Vec<(&str, SharedStore, Option<tempfile::TempDir>)> = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    stores.push((
        "local",
        Arc::new(LocalStore::open(dir.path()).expect("store")),
        Some(dir),
    ));
    match &moto {
        Some(m) => {
            m.create_bucket("bench");
            let s3 = S3Store::open(
                S3Config::from_url("s3://bench/fig8a", Some(m.endpoint.clone())).expect("url"),
            )
            .expect("s3");
            stores.push(("s3-moto", Arc::new(s3), None));
        }
        None => eprintln!("fig8a: moto_server not installed: S3 not measured"),
    }
    stores.push(("memory", Arc::new(MemStore::new()), None));
    for (size, label) in SIZES {
        let payload = Arc::new(vec![0x5au8; size]);
        g.throughput(Throughput::Bytes(size as u64));
        if let Some((_, _, Some(dir))) = stores.first() {
            let dir = dir.path().to_path_buf();
            let mut n = 0;
            g.bench_function(BenchmarkId::new("raw-write+fsync", label), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| raw_write_fsync(&dir, &payload, &mut n))
                        .sum()
                })
            });
            g.bench_function(BenchmarkId::new("raw-durable-file", label), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| raw_durable_file(&dir, &payload, &mut n))
                        .sum()
                })
            });
        }
        for (store_name, store, _) in &stores {
            let engine = Engine::new(store.clone());
            for mode in [Checkpoint::Skip, Checkpoint::Async, Checkpoint::Sync] {
                if *store_name == "memory" && mode != Checkpoint::Skip {
                    continue;
                }
                if *store_name == "s3-moto" && size > (32 << 20) {
                    continue; // moto keeps objects in memory; 128 MiB x samples is too much for it.
                }
                let mut n = 0;
                let tag = format!("{store_name}-{mode:?}-{label}");
                g.bench_function(
                    BenchmarkId::new(format!("{store_name}/{mode:?}"), label),
                    |b| {
                        b.iter_custom(|iters| {
                            (0..iters)
                                .map(|_| hop(&engine, &payload, mode, &tag, &mut n))
                                .sum()
                        })
                    },
                );
            }
        }
    }
    g.finish();
}

/// Fig 8b: a stage hands a graph snapshot of 1M edges to a batch stage.
/// In memory: one workflow, the snapshot task checkpoint Skip, the value
/// passed to its consumer. Through the store: the snapshot task commits
/// (Sync, local directory), and a second workflow's batch task reads it
/// back from the store. Baseline: copying the edges (what the snapshot task
/// itself does).
fn fig8b(c: &mut Criterion) {
    type Edges = Vec<(u64, u64)>;
    let mut g = c.benchmark_group("fig8b");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(1));
    let rmat = exoflow_ingest::rmat::Rmat {
        scale: 17,
        edge_factor: 8,
        seed: 1,
    };
    let edges: Arc<Edges> = Arc::new((0..rmat.draws()).filter_map(|i| rmat.edge(i)).collect());
    g.throughput(Throughput::Elements(edges.len() as u64));
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Arc::new(Engine::new(Arc::new(
        LocalStore::open(dir.path()).expect("store"),
    )));
    let count = |e: &Edges| {
        e.iter()
            .fold(0u64, |acc, &(a, b)| acc ^ a ^ b.rotate_left(7))
    };
    g.bench_function(BenchmarkId::new("copy-only/baseline", "1M-edges"), |b| {
        b.iter(|| count(&edges.as_ref().clone()))
    });
    let mut n = 0u64;
    g.bench_function(BenchmarkId::new("in-memory/Skip", "1M-edges"), |b| {
        b.iter(|| {
            n += 1;
            let mut dag = Dag::new();
            let e = edges.clone();
            let snap = dag.task("snapshot", TaskOptions::skip(), move |_| {
                Ok(e.as_ref().clone())
            });
            let batch = dag.task1("batch", TaskOptions::skip(), snap, move |_, e: &Edges| {
                Ok(count(e))
            });
            let wf = dag.finish(batch).expect("dag");
            let wid = WorkflowId::new(format!("mem-{n}")).expect("id");
            *engine.workflow_of(&wf).id(wid.clone()).run().expect("run")
        })
    });
    g.bench_function(
        BenchmarkId::new("through-store/Sync-local", "1M-edges"),
        |b| {
            b.iter(|| {
                n += 1;
                let mut dag = Dag::new();
                let e = edges.clone();
                let snap = dag.task("snapshot", TaskOptions::sync(), move |_| {
                    Ok(e.as_ref().clone())
                });
                let wf = dag.finish(snap).expect("dag");
                let wid = WorkflowId::new(format!("store-{n}")).expect("id");
                engine
                    .workflow_of(&wf)
                    .id(wid.clone())
                    .submit()
                    .expect("submit")
                    .wait()
                    .expect("run");
                let task = wf.task_id("snapshot").expect("task id").to_owned();
                let mut dag = Dag::new();
                let (eng, src) = (engine.clone(), wid.clone());
                let batch = dag.task("batch", TaskOptions::skip(), move |_| {
                    let e: Edges = eng
                        .task_output(&src, &task)
                        .map_err(|e| exoflow_engine::Failure::fatal(e.to_string()))?
                        .ok_or_else(|| exoflow_engine::Failure::fatal("no snapshot"))?;
                    Ok(count(&e))
                });
                let wf = dag.finish(batch).expect("dag");
                let wid = WorkflowId::new(format!("read-{n}")).expect("id");
                *engine.workflow_of(&wf).id(wid.clone()).run().expect("run")
            })
        },
    );
    g.finish();
}

criterion_group!(benches, fig8c, fig8a, fig8b);
criterion_main!(benches);
