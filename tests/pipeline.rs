//! End-to-end tests of the streaming job: the `exoflow` binary killed with
//! SIGKILL at seeded random moments and at named failpoints, resumed, and
//! compared byte for byte with an uninterrupted run; exports compared with
//! the offline batch computation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};

fn exoflow() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_exoflow"));
    c.env("EXOFLOW_QUIET", "1").env_remove("EXOFLOW_FAILPOINTS");
    c
}

/// Every file under `dir/outputs`, by relative path.
fn outputs(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                let rel = path
                    .strip_prefix(root)
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                out.insert(rel, std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&dir.join("outputs"), &dir.join("outputs"), &mut out);
    out
}

fn run_args(store: &Path, source: &str, checkpoint: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "run",
        "--store",
        store.to_str().unwrap_or_default(),
        "--workflow-id",
        "job",
        "--source",
        source,
        "--checkpoint",
        checkpoint,
        "--snapshot-every",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !extra.contains(&"--epoch-edges") && !extra.contains(&"--epoch-ms") {
        v.extend(["--epoch-edges".to_owned(), "2000".to_owned()]);
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn check_ok(out: std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn export(store: &Path, epoch: Option<u64>, out: &Path) -> Vec<u8> {
    let mut c = exoflow();
    c.args(["export", "--store"])
        .arg(store)
        .args(["--workflow-id", "job", "--out"])
        .arg(out);
    if let Some(e) = epoch {
        c.args(["--epoch", &e.to_string()]);
    }
    check_ok(c.output().expect("export"), "export");
    std::fs::read(out).expect("read export")
}

/// `exoflow resume` of workflow `job`, to its end.
fn resume(store: &Path, extra: &[&str]) -> std::process::Output {
    exoflow()
        .args(["resume", "--store"])
        .arg(store)
        .args(["--workflow-id", "job"])
        .args(extra)
        .output()
        .expect("resume")
}

fn workflow_exists(store: &Path) -> bool {
    exoflow()
        .args(["status", "--store"])
        .arg(store)
        .args(["--workflow-id", "job"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts `run` (or `resume` once the workflow exists), kills it with
/// SIGKILL after `delay` unless it finished; returns whether it finished.
fn start_and_kill(
    store: &Path,
    args: &[String],
    delay: Duration,
    failpoints: Option<&str>,
) -> bool {
    start_and_kill_with(store, args, &[], delay, failpoints)
}

/// [`start_and_kill`], with `resume_extra` given to a resume.
fn start_and_kill_with(
    store: &Path,
    args: &[String],
    resume_extra: &[String],
    delay: Duration,
    failpoints: Option<&str>,
) -> bool {
    let mut c = exoflow();
    if workflow_exists(store) {
        c.args(["resume", "--store"])
            .arg(store)
            .args(["--workflow-id", "job"])
            .args(resume_extra);
    } else {
        c.args(args);
    }
    if let Some(f) = failpoints {
        c.env("EXOFLOW_FAILPOINTS", f);
    }
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn exoflow");
    let deadline = std::time::Instant::now() + delay;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                // Killed by its own failpoint: fine; anything else is a bug.
                assert!(
                    err.contains("failpoint"),
                    "exoflow failed on its own: {status}\n{err}"
                );
                return false;
            }
            return true;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs to the end through kills; returns the number of kills that landed.
fn finish(store: &Path, args: &[String], mut delays: impl Iterator<Item = Duration>) -> usize {
    for kills in 0..200 {
        let delay = delays.next().unwrap_or(Duration::from_secs(600));
        if start_and_kill(store, args, delay, None) {
            return kills;
        }
    }
    panic!("the job did not finish after 200 attempts");
}

fn uninterrupted(
    source: &str,
    checkpoint: &str,
    extra: &[&str],
) -> (tempfile::TempDir, BTreeMap<PathBuf, Vec<u8>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    check_ok(
        exoflow()
            .args(run_args(&store, source, checkpoint, extra))
            .output()
            .expect("run"),
        "uninterrupted run",
    );
    let out = outputs(&store);
    assert!(
        out.len() > 10,
        "the reference run wrote {} outputs",
        out.len()
    );
    (dir, out)
}

const GEN: &str = "gen:rmat?scale=12&edge-factor=16&seed=7";

/// `exoflow gen` with `args` into `dir/edges.txt`.
fn gen_file(dir: &Path, args: &[&str]) -> PathBuf {
    let file = dir.join("edges.txt");
    check_ok(
        exoflow()
            .arg("gen")
            .args(args)
            .arg("--out")
            .arg(&file)
            .output()
            .expect("gen"),
        "gen",
    );
    file
}

/// `exoflow batch` on a file of these lines: the CSV it writes.
fn batch_of_lines<S: AsRef<str>>(dir: &Path, name: &str, lines: &[S]) -> Vec<u8> {
    let part = dir.join(format!("{name}.txt"));
    let text: Vec<&str> = lines.iter().map(AsRef::as_ref).collect();
    std::fs::write(&part, text.join("\n")).expect("write");
    let csv = dir.join(format!("{name}.csv"));
    check_ok(
        exoflow()
            .args(["batch", "--edges"])
            .arg(&part)
            .arg("--out")
            .arg(&csv)
            .output()
            .expect("batch"),
        "batch",
    );
    std::fs::read(&csv).expect("read the batch CSV")
}

/// Every object under `outputs/` of a store (a directory or an S3 URL).
fn store_outputs(store: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    if !store.starts_with("s3://") {
        return outputs(Path::new(store));
    }
    let s3 = exoflow_engine::store::open(store, std::env::var("AWS_ENDPOINT_URL").ok())
        .expect("open the S3 store");
    s3.list("outputs/")
        .expect("list outputs")
        .into_iter()
        .map(|k| {
            let v = s3.get(&k).expect("get").expect("a listed object");
            (PathBuf::from(k.trim_start_matches("outputs/")), v)
        })
        .collect()
}

/// Starts moto once per test process and points the children at it.
fn moto() -> &'static exoflow_testkit::Moto {
    static MOTO: std::sync::OnceLock<exoflow_testkit::Moto> = std::sync::OnceLock::new();
    MOTO.get_or_init(|| {
        let m = exoflow_testkit::Moto::start().shared();
        m.create_bucket("exoflow");
        // Children inherit it; harmless for the local-store tests beside.
        std::env::set_var("AWS_ENDPOINT_URL", &m.endpoint);
        m
    })
}

/// One cell of the exactly-once matrix: an uninterrupted run of `source`
/// into a local directory, then the same job into `store` (local, or S3 on
/// moto when `s3`) killed at a failpoint inside a commit and then with
/// SIGKILL at seeded random moments, resumed each time. Every output and
/// the final export are byte-identical.
fn exactly_once(source: &str, s3: bool, checkpoint: &str, extra: &[&str], seed: u64) {
    let mut extra = extra.to_vec();
    extra.extend(["--rate", "40000"]);
    let (ref_dir, want) = uninterrupted(source, checkpoint, &extra);
    let batches: Vec<&Vec<u8>> = want
        .iter()
        .filter(|(k, _)| k.to_string_lossy().contains("/batch/"))
        .map(|(_, v)| v)
        .collect();
    if extra.contains(&"--batch-every") {
        assert!(batches.len() >= 5, "{} batch outputs", batches.len());
    }
    for b in batches {
        let v: serde_json::Value = serde_json::from_slice(b).expect("a batch output is JSON");
        assert_eq!(v["differing"], 0, "batch differs from online: {v}");
        assert_eq!(v["digest"], v["online_digest"]);
    }
    let want_export = export(
        &ref_dir.path().join("store"),
        None,
        &ref_dir.path().join("ref.csv"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store = if s3 {
        moto();
        PathBuf::from(format!("s3://exoflow/{checkpoint}-{seed}"))
    } else {
        dir.path().join("store")
    };
    let args = run_args(&store, source, checkpoint, &extra);
    let mut failpoints = Vec::new();
    if checkpoint != "none" {
        failpoints.push("stream.before_commit=3");
    }
    if extra.contains(&"--batch-every") {
        // Killed while a batch task has its result but has not written it.
        failpoints.push("stream.batch_done=2");
    }
    for fp in failpoints {
        assert!(
            !start_and_kill(&store, &args, Duration::from_secs(600), Some(fp)),
            "{fp} was not hit"
        );
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    // The paced run takes about 1.6 s: kills land anywhere in it.
    let delays: Vec<Duration> = (0..8)
        .map(|_| Duration::from_millis(rng.random_range(20..400)))
        .collect();
    let kills = finish(&store, &args, delays.into_iter());
    assert!(kills >= 5, "only {kills} kills landed");
    let got = store_outputs(store.to_str().unwrap_or_default());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same outputs exist"
    );
    for (k, v) in &want {
        assert!(
            got.get(k) == Some(v),
            "{} differs after {kills} kills",
            k.display()
        );
    }
    assert_eq!(
        export(&store, None, &dir.path().join("got.csv")),
        want_export
    );
}

/// A hostfile of two free local ports, and the cluster flags of process 0.
fn two_processes(dir: &Path) -> (PathBuf, Vec<String>) {
    let hosts = dir.join("hosts");
    let ports = [exoflow_testkit::free_port(), exoflow_testkit::free_port()];
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1]),
    )
    .expect("write hostfile");
    let flags = [
        "--processes",
        "2",
        "--hostfile",
        hosts.to_str().unwrap_or_default(),
    ]
    .map(str::to_owned)
    .to_vec();
    (hosts, flags)
}

/// Process 1 of a two-process cluster.
fn peer(hosts: &Path) -> std::process::Child {
    exoflow()
        .args([
            "run",
            "--processes",
            "2",
            "--process",
            "1",
            "--cluster-timeout",
            "30",
            "--hostfile",
        ])
        .arg(hosts)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn process 1")
}

/// Waits up to `secs` for the peer; kills it when it is still there.
/// Returns its status (None: it had to be killed) and its stderr.
fn end_peer(
    mut child: std::process::Child,
    secs: u64,
) -> (Option<std::process::ExitStatus>, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (status, err)
}

/// Batch recomputations on two processes (timely's cluster over TCP) give
/// the outputs of one process; so does a two-process job killed with
/// SIGKILL (at a failpoint while batch tasks run, and at seeded random
/// moments) and resumed on two processes, or on one with other workers. When process 0 dies,
/// process 1 does not wait forever: it exits with an error that says so.
#[test]
fn two_processes_give_the_outputs_of_one_through_kills() {
    let extra = ["--batch-every", "2", "--workers", "1", "--rate", "30000"];
    let (_ref_dir, want) = uninterrupted(GEN, "async", &extra);
    assert!(
        want.keys()
            .filter(|k| k.to_string_lossy().contains("/batch/"))
            .count()
            >= 10,
        "the reference run has batch outputs"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (hosts, flags) = two_processes(dir.path());
    let mut args_extra: Vec<&str> = extra.to_vec();
    args_extra.extend(flags.iter().map(String::as_str));

    // Uninterrupted, on two processes.
    let store = dir.path().join("whole");
    let p1 = peer(&hosts);
    check_ok(
        exoflow()
            .args(run_args(&store, GEN, "async", &args_extra))
            .output()
            .expect("run"),
        "two-process run",
    );
    let (status, err) = end_peer(p1, 60);
    assert!(
        status.is_some_and(|s| s.success()),
        "process 1: {status:?}\n{err}"
    );
    assert!(err.contains("the job ended"), "{err}");
    assert_eq!(outputs(&store), want, "two processes, uninterrupted");

    // Killed at a failpoint while batch tasks run, then at random moments.
    let store = dir.path().join("killed");
    let args = run_args(&store, GEN, "async", &args_extra);
    let p1 = peer(&hosts);
    assert!(
        !start_and_kill_with(
            &store,
            &args,
            &flags,
            Duration::from_secs(600),
            Some("stream.batch_done=3")
        ),
        "the failpoint was not hit"
    );
    let (status, err) = end_peer(p1, 60);
    assert!(
        status.is_some_and(|s| !s.success()) && err.contains("lost another process"),
        "process 1 after process 0 died: {status:?}\n{err}"
    );
    // Process 1 dies under a running process 0: process 0 stops too, with
    // an error that says so, instead of waiting for it.
    let before = outputs(&store).len();
    let mut p1 = peer(&hosts);
    let p0 = exoflow()
        .args(["resume", "--store"])
        .arg(&store)
        .args(["--workflow-id", "job"])
        .args(&flags)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn process 0");
    // The cluster forms before the first epoch: a new output means it is up.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while outputs(&store).len() == before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = p1.kill();
    let _ = p1.wait();
    let (status, err) = end_peer(p0, 60);
    assert!(
        status.is_some_and(|s| !s.success()) && err.contains("lost another process"),
        "process 0 after process 1 died: {status:?}\n{err}"
    );
    // Resumed on two processes, or on one with other workers, in turn.
    let one_process: Vec<String> = vec!["--workers".into(), "2".into()];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
    let mut kills = 0;
    let finished = loop {
        let delay = if kills < 4 {
            Duration::from_millis(rng.random_range(100..700))
        } else {
            Duration::from_secs(600)
        };
        let clustered = kills % 2 == 0;
        let p1 = clustered.then(|| peer(&hosts));
        let resume_flags = if clustered { &flags } else { &one_process };
        let done = start_and_kill_with(&store, &args, resume_flags, delay, None);
        // Killed before the cluster formed, process 1 would wait for its
        // timeout: it is ended here either way.
        if let Some(p1) = p1 {
            let (status, err) = end_peer(p1, 20);
            if done {
                assert!(
                    status.is_some_and(|s| s.success()),
                    "process 1: {status:?}\n{err}"
                );
            }
        }
        if done {
            break true;
        }
        kills += 1;
        if kills > 20 {
            break false;
        }
    };
    assert!(finished && kills >= 4, "{kills} kills");
    assert_eq!(outputs(&store), want, "two processes, after {kills} kills");
}

/// Batch recomputations beside the stream, at epochs 2, 5, 8, ...
const BATCHES: [&str; 6] = ["--batch-every", "3", "--batch-from", "2", "--workers", "1"];

#[test]
fn random_kills_generator_none() {
    exactly_once(GEN, false, "none", &[], 3);
}

/// The matrix source {file, Kafka} x store {local, S3} x {sync, async}.
#[test]
fn random_kills_file_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = gen_file(dir.path(), &["--scale", "12", "--seed", "7"]);
    let source = format!("file:{}", file.display());
    for (i, (s3, checkpoint)) in [
        (false, "sync"),
        (false, "async"),
        (true, "sync"),
        (true, "async"),
    ]
    .into_iter()
    .enumerate()
    {
        exactly_once(&source, s3, checkpoint, &BATCHES, 10 + i as u64);
    }
}

#[test]
fn random_kills_kafka_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = exoflow_testkit::Tansu::start(dir.path());
    let file = gen_file(dir.path(), &["--scale", "12", "--seed", "7"]);
    check_ok(
        exoflow()
            .args(["produce", "--edges"])
            .arg(&file)
            .args(["--brokers", &broker.brokers, "--topic", "edges"])
            .args(["--message-bytes", "8192"])
            .output()
            .expect("produce"),
        "produce",
    );
    let source = format!("kafka://{}/edges", broker.brokers);
    for (i, (s3, checkpoint)) in [
        (false, "sync"),
        (false, "async"),
        (true, "sync"),
        (true, "async"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut extra = BATCHES.to_vec();
        extra.push("--until-end");
        exactly_once(&source, s3, checkpoint, &extra, 20 + i as u64);
    }
}

/// Failpoints hit the narrow windows deterministically: a part written but
/// not committed, COMMIT about to be written, COMMIT written but not the
/// output, a snapshot's data written but not its MANIFEST.
#[test]
fn failpoints_then_resume_give_identical_outputs() {
    for checkpoint in ["sync", "async"] {
        let (_ref_dir, want) = uninterrupted(GEN, checkpoint, &[]);
        for fp in [
            "stream.part_written=7",
            "stream.before_commit=4",
            "stream.committed=5",
            "stream.snapshot_data=2",
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = dir.path().join("store");
            let args = run_args(&store, GEN, checkpoint, &[]);
            assert!(
                !start_and_kill(&store, &args, Duration::from_secs(600), Some(fp)),
                "{fp} was not hit"
            );
            assert_eq!(finish(&store, &args, std::iter::empty()), 0);
            assert_eq!(outputs(&store), want, "{checkpoint} after {fp}");
        }
    }
}

/// `exoflow batch` on a generated graph large enough for the packed sort,
/// with malformed lines, then with removals too: the reference and 1, 2
/// and 3 timely workers write the same CSV, and the malformed lines are
/// kept aside under their line numbers.
#[test]
fn batch_modes_agree_and_keep_bad_lines_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = gen_file(dir.path(), &["--scale", "13", "--seed", "5"]);
    let text = std::fs::read_to_string(&generated).expect("read the generated file");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(1000, "12 not-a-number");
    lines.insert(70_000, "# a comment");
    lines.push("99999999999999999999 1");
    let csv_of = |name: &str, lines: &[&str]| -> (Vec<u8>, String) {
        let edges = dir.path().join(format!("{name}.txt"));
        std::fs::write(&edges, lines.join("\n")).expect("write");
        let mut first: Option<(Vec<u8>, String)> = None;
        for mode in [
            &["--reference"][..],
            &["--workers", "1"],
            &["--workers", "2"],
            &["--workers", "3"],
        ] {
            let csv = dir.path().join(format!("{name}.csv"));
            check_ok(
                exoflow()
                    .args(["batch", "--edges"])
                    .arg(&edges)
                    .arg("--out")
                    .arg(&csv)
                    .args(mode)
                    .output()
                    .expect("batch"),
                "batch",
            );
            let got = (
                std::fs::read(&csv).expect("csv"),
                std::fs::read_to_string(dir.path().join(format!("{name}.rejected.tsv")))
                    .expect("rejected lines"),
            );
            match &first {
                None => first = Some(got),
                Some(want) => assert_eq!(&got, want, "{name}: {mode:?} differs from the reference"),
            }
        }
        first.expect("four runs")
    };
    let (inserts, rejected) = csv_of("inserts", &lines);
    let numbers: Vec<&str> = rejected
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap_or(""))
        .collect();
    assert_eq!(numbers, ["1001", &lines.len().to_string()], "{rejected}");
    // Ids past 32 bits in one part of the file: every mode agrees, and the
    // wide node has its row.
    let mut wide = lines.clone();
    wide.insert(50_000, "1099511627776 7");
    wide.insert(50_001, "7 1099511627776");
    let (wide_csv, _) = csv_of("wide", &wide);
    let wide_csv = String::from_utf8(wide_csv).expect("utf-8");
    assert!(
        wide_csv.lines().any(|l| l.starts_with("1099511627776,")),
        "no row of the wide node"
    );
    // Removing the first edge changes the table; every mode agrees.
    let first_edge = lines[0].to_owned();
    lines.push(&first_edge);
    let removal = format!("-{first_edge}");
    lines.push(&removal);
    let (removed, _) = csv_of("removals", &lines);
    assert_ne!(removed, inserts);
    assert!(
        inserts.len() > 10_000,
        "a graph of {} bytes of CSV",
        inserts.len()
    );
}

/// After each epoch, the exported online table equals the offline batch
/// computation on the edges read so far, bit for bit, on a file with
/// removals, duplicates, comments and malformed lines.
#[test]
fn export_at_every_epoch_equals_batch_on_the_edges_so_far() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut lines = Vec::new();
    for i in 0..3000 {
        let (a, b) = (rng.random_range(0..300u64), rng.random_range(0..300u64));
        lines.push(match i % 50 {
            7 => "# a comment".to_owned(),
            13 => format!("{a} x{b}"),
            _ if rng.random_bool(0.15) => format!("-{a} {b}"),
            _ => format!("{a}\t{b}"),
        });
    }
    let file = dir.path().join("edges.txt");
    std::fs::write(&file, lines.join("\n")).expect("write edges");
    let store = dir.path().join("store");
    let source = format!("file:{}", file.display());
    check_ok(
        exoflow()
            .args(run_args(
                &store,
                &source,
                "sync",
                &[
                    "--partitions",
                    "1",
                    "--epoch-edges",
                    "400",
                    "--max-bad-ratio",
                    "0.1",
                ],
            ))
            .output()
            .expect("run"),
        "run",
    );
    let valid: Vec<&String> = lines
        .iter()
        .filter(|l| !l.starts_with('#') && !l.contains('x'))
        .collect();
    let epochs = valid.len().div_ceil(400) as u64;
    for e in 1..=epochs {
        let so_far: Vec<&str> = valid
            .iter()
            .take(400 * e as usize)
            .map(|s| s.as_str())
            .collect();
        let batch = batch_of_lines(dir.path(), &format!("so-far-{e}"), &so_far);
        let online = export(&store, Some(e), &dir.path().join(format!("online-{e}.csv")));
        assert_eq!(online, batch, "epoch {e}");
        if e % 3 == 1 {
            // The same recomputation on the store, by hand.
            let on_store = dir.path().join(format!("store-batch-{e}.csv"));
            check_ok(
                exoflow()
                    .args(["batch", "--store"])
                    .arg(&store)
                    .args(["--workflow-id", "job", "--epoch", &e.to_string(), "--out"])
                    .arg(&on_store)
                    .output()
                    .expect("batch --store"),
                "batch --store",
            );
            assert_eq!(online, std::fs::read(&on_store).expect("read"), "epoch {e}");
        }
    }
    // The malformed lines are kept, with their place.
    let rejected: Vec<Vec<u8>> = outputs(&store)
        .into_iter()
        .filter(|(k, _)| k.to_string_lossy().contains("rejected"))
        .map(|(_, v)| v)
        .collect();
    let text = String::from_utf8_lossy(&rejected.concat()).into_owned();
    assert_eq!(text.matches("not a number").count(), 60, "{text}");
}

/// The lag column of a file job read to its end: bytes left in the file
/// when each epoch was cut, falling to 0; `status` shows the last.
fn check_lag(store: &Path, size: u64) {
    let metrics = store.join("metrics/job/1/epochs.csv");
    let text = std::fs::read_to_string(&metrics).expect("epochs.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (lag, unit) = (col("lag"), col("lag_unit"));
    let lags: Vec<u64> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f[unit], "bytes", "{l}");
            f[lag].parse().expect("a lag")
        })
        .collect();
    assert!(lags.len() >= 2, "{text}");
    assert!(lags[0] < size && lags[0] > 0, "{lags:?} of {size}");
    assert!(lags.windows(2).all(|w| w[1] <= w[0]), "{lags:?}");
    assert_eq!(lags.last(), Some(&0), "{lags:?}");
    let status = exoflow()
        .args(["status", "--store"])
        .arg(store)
        .args(["--workflow-id", "job", "--json"])
        .output()
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(v["stream"]["lag"], "0 bytes", "{v}");
}

/// The three online implementations write the same bytes, with removals in
/// the stream, and the same as a batch recomputation at the end.
#[test]
fn every_online_implementation_writes_the_same_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let lines: Vec<String> = (0..4000)
        .map(|_| {
            let (a, b) = (rng.random_range(0..400u64), rng.random_range(0..400u64));
            if rng.random_bool(0.1) {
                format!("-{a} {b}")
            } else {
                format!("{a} {b}")
            }
        })
        .collect();
    let file = dir.path().join("edges.txt");
    std::fs::write(&file, lines.join("\n")).expect("write edges");
    let source = format!("file:{}", file.display());
    let mut seen: Option<BTreeMap<PathBuf, Vec<u8>>> = None;
    for online in ["recompute", "layered", "differential"] {
        let store = dir.path().join(online);
        check_ok(
            exoflow()
                .args(run_args(
                    &store,
                    &source,
                    "async",
                    &["--online", online, "--epoch-edges", "500", "--workers", "2"],
                ))
                .output()
                .expect("run"),
            online,
        );
        let out = outputs(&store);
        assert!(out.len() >= 8, "{online} wrote {} outputs", out.len());
        check_lag(&store, std::fs::metadata(&file).expect("size").len());
        match &seen {
            None => seen = Some(out),
            Some(first) => assert!(first == &out, "{online} differs from recompute"),
        }
        let all: Vec<&str> = lines.iter().map(String::as_str).collect();
        let batch = batch_of_lines(dir.path(), &format!("batch-{online}"), &all);
        assert_eq!(
            export(&store, None, &dir.path().join(format!("{online}.csv"))),
            batch,
            "{online} export against batch"
        );
    }
}

/// A resume refuses a source that changed; a missing source file and an
/// unknown workflow are clear errors.
#[test]
fn misuse_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("edges.txt");
    std::fs::write(&file, "1 2\n2 3\n3 1\n").expect("write");
    let store = dir.path().join("store");
    let source = format!("file:{}", file.display());
    let args = run_args(&store, &source, "sync", &["--epoch-edges", "1"]);
    assert!(!start_and_kill(
        &store,
        &args,
        Duration::from_secs(600),
        Some("stream.committed=2")
    ));
    std::fs::write(&file, "1 2\n2 3\n3 1\n4 1\n").expect("rewrite");
    let out = resume(&store, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("the source changed"), "{err}");

    let out = exoflow()
        .args(run_args(&store, "file:/nonexistent/edges.txt", "sync", &[]))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/edges.txt"));

    let out = exoflow()
        .args(["resume", "--store"])
        .arg(&store)
        .args(["--workflow-id", "nope"])
        .output()
        .expect("resume");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));

    // A Kafka broker that is down at start: named, and nothing is created.
    let dead = format!("kafka://127.0.0.1:{}/edges", exoflow_testkit::free_port());
    let fresh = dir.path().join("fresh");
    let out = exoflow()
        .args(run_args(&fresh, &dead, "sync", &["--until-end"]))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&dead) && err.contains("are the brokers up?"),
        "{err}"
    );
    assert!(!workflow_exists(&fresh));

    // Cluster flags that do not describe a cluster, and a process 1 that
    // never comes: each named.
    let (hosts, flags) = two_processes(dir.path());
    let mut lonely: Vec<&str> = flags.iter().map(String::as_str).collect();
    lonely.extend(["--cluster-timeout", "1"]);
    for (bad, want) in [
        (vec!["--processes", "2"], "needs --hostfile"),
        (vec!["--process", "1"], "give --processes N"),
        (
            vec![
                "--processes",
                "2",
                "--process",
                "2",
                "--hostfile",
                hosts.to_str().unwrap_or_default(),
            ],
            "out of range",
        ),
        (
            vec![
                "--processes",
                "3",
                "--hostfile",
                hosts.to_str().unwrap_or_default(),
            ],
            "2 address(es) for 3 processes",
        ),
        (lonely, "did not connect within 1 s"),
    ] {
        let out = exoflow()
            .args(run_args(&fresh, GEN, "sync", &bad))
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{bad:?}: {err}"
        );
    }
}

/// SIGINT commits the epoch in flight and leaves the job STOPPED (exit
/// status 130); `resume` finishes it with the outputs of an uninterrupted
/// run.
#[test]
fn sigint_stops_then_resume_finishes_identically() {
    let extra = ["--rate", "40000"];
    let (_ref_dir, want) = uninterrupted(GEN, "async", &extra);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let child = exoflow()
        .args(run_args(&store, GEN, "async", &extra))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(600));
    // SAFETY: kill(2) on the child this test started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("stopped") && err.contains("exoflow resume"),
        "{err}"
    );
    let status = exoflow()
        .args(["status", "--json", "--store"])
        .arg(&store)
        .args(["--workflow-id", "job"])
        .output()
        .expect("status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(status["workflow"]["state"], "Stopped", "{status}");
    assert!(
        status["stream"]["last_committed"].as_u64() >= Some(1),
        "{status}"
    );
    assert_eq!(status["stream"]["checkpoint"], "Async");
    let partial = outputs(&store);
    assert!(!partial.is_empty() && partial.len() < want.len());
    assert_eq!(finish(&store, &[], std::iter::empty()), 0);
    assert_eq!(outputs(&store), want);
}

/// Time-cut epochs are recorded before anything of them is published:
/// after kills and resumes, every committed epoch's output equals the
/// offline computation on the edges its recorded cut covers (one partition,
/// so epoch e covers the first n_1 + ... + n_e lines). The first epoch is a
/// base graph of a fixed size (`--base-edges`), read unpaced.
#[test]
fn time_cut_epochs_survive_kills_and_equal_a_replay_of_the_cuts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = gen_file(
        dir.path(),
        &["--scale", "11", "--edge-factor", "16", "--seed", "5"],
    );
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect();
    let source = format!("file:{}", file.display());
    let store = dir.path().join("store");
    // A base graph of 3,000 edges first (full speed), then time cuts.
    let extra = [
        "--partitions",
        "1",
        "--epoch-ms",
        "40",
        "--rate",
        "30000",
        "--base-edges",
        "3000",
    ];
    let args = run_args(&store, &source, "sync", &extra);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(41);
    let delays: Vec<Duration> = (0..6)
        .map(|_| Duration::from_millis(rng.random_range(50..400)))
        .collect();
    let kills = finish(&store, &args, delays.into_iter());
    assert!(kills >= 3, "only {kills} kills landed");
    let online: Vec<serde_json::Value> = outputs(&store)
        .into_iter()
        .filter(|(k, _)| k.to_string_lossy().contains("/online/"))
        .map(|(_, v)| serde_json::from_slice(&v).expect("JSON"))
        .collect();
    let sizes: Vec<u64> = online
        .iter()
        .map(|v| v["edges"].as_u64().expect("edges"))
        .collect();
    assert_eq!(
        sizes.iter().sum::<u64>(),
        lines.len() as u64,
        "every line once"
    );
    assert!(sizes.len() > 10, "{} epochs", sizes.len());
    assert_eq!(sizes[0], 3000, "the base graph is the first epoch");
    let mut so_far = 0usize;
    for (i, n) in sizes.iter().enumerate() {
        so_far += *n as usize;
        let e = i + 1;
        if e % 5 != 0 && e != sizes.len() {
            continue;
        }
        let batch = batch_of_lines(dir.path(), &format!("prefix-{e}"), &lines[..so_far]);
        let got = export(
            &store,
            Some(e as u64),
            &dir.path().join(format!("online-{e}.csv")),
        );
        assert_eq!(got, batch, "epoch {e}");
    }
}

/// `--retain K` drops the epoch logs and snapshots that rebuilding the last
/// K epochs does not need; kills and resumes still give the outputs of an
/// uninterrupted run, and an export older than K epochs is a clear error.
#[test]
fn retain_drops_old_logs_and_resume_stays_exact() {
    let extra = ["--rate", "40000", "--retain", "4"];
    let (_ref_dir, want) = uninterrupted(GEN, "sync", &extra);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let args = run_args(&store, GEN, "sync", &extra);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(77);
    let delays: Vec<Duration> = (0..6)
        .map(|_| Duration::from_millis(rng.random_range(100..500)))
        .collect();
    let kills = finish(&store, &args, delays.into_iter());
    assert!(kills >= 3, "only {kills} kills landed");
    assert_eq!(outputs(&store), want);
    let epochs_dir = store.join("streams/job/epochs");
    let all: Vec<PathBuf> = std::fs::read_dir(&epochs_dir)
        .expect("epochs")
        .flatten()
        .map(|e| e.path())
        .collect();
    let with_logs = all
        .iter()
        .filter(|d| {
            std::fs::read_dir(d)
                .map(|r| {
                    r.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with('g'))
                })
                .unwrap_or(false)
        })
        .count();
    assert!(all.len() > 20, "{} epochs", all.len());
    assert!(
        with_logs <= 4 + 3,
        "{with_logs} of {} epochs keep logs",
        all.len()
    );
    let snapshots = std::fs::read_dir(store.join("streams/job/snapshots"))
        .expect("snapshots")
        .flatten()
        .filter(|d| d.path().join("MANIFEST").exists())
        .count();
    assert!(snapshots <= 2, "{snapshots} snapshots kept");
    let last = all.len() as u64;
    export(&store, Some(last - 3), &dir.path().join("recent.csv"));
    let old = exoflow()
        .args(["export", "--store"])
        .arg(&store)
        .args(["--workflow-id", "job", "--epoch", "1", "--out"])
        .arg(dir.path().join("old.csv"))
        .output()
        .expect("export");
    assert!(!old.status.success());
    assert!(String::from_utf8_lossy(&old.stderr).contains("--retain"));
}

/// A second `run` or a `resume` of a running job, a corrupt epoch log and a
/// missing S3 bucket: each stops with one clear message, and committed data
/// is left as it was.
#[test]
fn misuse_of_a_running_or_damaged_job_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let args = run_args(&store, GEN, "sync", &["--rate", "20000"]);
    let mut first = exoflow()
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let started = std::time::Instant::now();
    while outputs(&store).len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let again = exoflow().args(&args).output().expect("run");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let res = resume(&store, &[]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(
        err.contains("is owned by") && err.contains("--force"),
        "{err}"
    );
    let _ = first.kill();
    let _ = first.wait();

    // A flipped byte in a committed epoch log: named, never read as valid.
    let parts = store.join("streams/job/epochs/0000000001");
    let part = std::fs::read_dir(&parts)
        .expect("epoch 1")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with('g'))
        .map(|g| g.path().join("part-00000"))
        .expect("a part of epoch 1");
    let mut bytes = std::fs::read(&part).expect("read part");
    let i = bytes.len() / 2;
    bytes[i] ^= 0x40;
    std::fs::write(&part, &bytes).expect("corrupt part");
    // Force a rebuild from the logs: the first output goes missing.
    let online1 = store.join("outputs/job/online/0000000001");
    let kept = std::fs::read(&online1).expect("output 1");
    std::fs::remove_file(&online1).expect("remove output 1");
    let before = outputs(&store);
    let res = resume(&store, &["--force"]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(
        err.contains("part-00000") && err.contains("checksum"),
        "{err}"
    );
    assert_eq!(outputs(&store), before, "committed outputs untouched");
    std::fs::write(&online1, kept).expect("restore");

    // A bucket that does not exist.
    moto();
    let out = exoflow()
        .args(run_args(
            Path::new("s3://no-such-bucket-exoflow/p"),
            GEN,
            "sync",
            &[],
        ))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("bucket does not exist"), "{err}");
}

/// A store written by the build that introduced format version 1 (a job
/// killed right after COMMIT(6), before its output; `fixtures/` says how it
/// was made) resumes with this build to the outputs of an uninterrupted
/// run: a change of the stored formats must bump the version, and then
/// this store is refused with an error naming it.
#[test]
fn a_store_of_format_version_1_resumes_to_the_same_outputs() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-format-1");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    copy_dir(&fixture, &store);
    let extra = [
        "--epoch-edges",
        "250",
        "--batch-every",
        "4",
        "--epochs",
        "12",
        "--workers",
        "2",
    ];
    let source = "gen:rmat?scale=8&edge-factor=16&seed=3";
    let before = outputs(&store);
    assert_eq!(
        before
            .keys()
            .filter(|k| k.starts_with("job/online"))
            .count(),
        5
    );
    check_ok(resume(&store, &[]), "resume of the version 1 store");
    let (_reference, want) = uninterrupted(source, "sync", &extra);
    let got = outputs(&store);
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "the resumed outputs differ from an uninterrupted run's"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture").flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy fixture");
        }
    }
}
