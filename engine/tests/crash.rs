//! Crash tests: a 200-task DAG with mixed options runs in a child process that
//! is killed with SIGKILL at seeded random moments (and, with the `failpoints`
//! feature, at named points), then resumed. The final outputs must equal an
//! uninterrupted run's, byte for byte, and no task whose checkpoint was
//! committed may run again.

use std::collections::{BTreeMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exoflow_engine::store::local::LocalStore;
use exoflow_engine::store::Store;
use exoflow_engine::{
    Dag, Engine, EngineOptions, Failure, TaskOptions, TaskRef, Workflow, WorkflowId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TASKS: usize = 198;
const WID: &str = "crash-200";

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The DAG: task i reads up to 3 earlier tasks (seeded), with checkpoint
/// modes, retries, catch_errors and nondeterministic flags mixed by i.
fn build(log: Option<PathBuf>) -> Workflow<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut dag = Dag::new();
    let mut refs: Vec<TaskRef<u64>> = Vec::new();
    let log = log.map(Arc::new);
    // An Async parent slow to write (4 MiB) with a quick child: the child
    // finishes while its parent's commit is in flight.
    let big = dag.task("big", TaskOptions::asynchronous(), |_| {
        Ok((0..(1u32 << 20)).collect::<Vec<u32>>())
    });
    let quick = dag.task1("quick", TaskOptions::sync(), big, |_, v: &Vec<u32>| {
        Ok(v.len() as u64)
    });
    refs.push(quick);
    for i in 0..TASKS {
        let opts = match i % 7 {
            0..=2 => TaskOptions::sync(),
            3 | 4 => TaskOptions::asynchronous(),
            _ => TaskOptions::skip(),
        }
        .backoff(Duration::from_millis(1), Duration::from_millis(2));
        let opts = if i % 11 == 0 && opts.checkpoint != exoflow_engine::Checkpoint::Skip {
            opts.nondeterministic()
        } else {
            opts
        };
        let k = rng.random_range(1..=3.min(refs.len()));
        let inputs: Vec<TaskRef<u64>> = (0..k)
            .map(|_| refs[rng.random_range(0..refs.len())])
            .collect();
        let work_us = rng.random_range(1000..6000u64);
        let log = log.clone();
        let name = format!("t{i}");
        let r = dag.task_all(&name, opts, &inputs, move |ctx, xs: &[&u64]| {
            if let Some(log) = &log {
                let mut f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log.as_ref())?;
                f.write_all(format!("{}\n", ctx.task_id()).as_bytes())?;
            }
            std::thread::sleep(Duration::from_micros(work_us));
            if i % 17 == 0 && ctx.attempt() == 1 {
                return Err(Failure::msg("first attempt fails"));
            }
            Ok(xs.iter().fold(mix(i as u64), |acc, x| mix(acc ^ **x)))
        });
        if i % 13 == 5 {
            // A leaf that always fails, caught: its output is the error.
            let failing = dag.task1(
                &format!("fails{i}"),
                TaskOptions::sync()
                    .retries(1)
                    .backoff(Duration::from_millis(1), Duration::from_millis(1)),
                r,
                |_, _: &u64| Err::<u64, _>(Failure::msg("deterministic failure")),
            );
            dag.catch_errors(failing);
        }
        refs.push(r);
    }
    let last = *refs.last().expect("tasks");
    dag.finish(last).expect("valid DAG")
}

/// The child process: runs or resumes the DAG, writes the output.
#[test]
#[ignore = "entry point of the crash tests' child process"]
fn crash_child_entry() {
    let (Some(store), Some(log), Some(result)) = (
        std::env::var_os("CRASH_STORE"),
        std::env::var_os("CRASH_LOG"),
        std::env::var_os("CRASH_RESULT"),
    ) else {
        return;
    };
    let store = Arc::new(LocalStore::open(PathBuf::from(store)).expect("open store"));
    let engine = Engine::with_options(store.clone(), EngineOptions::default());
    let wid = WorkflowId::new(WID).expect("id");
    let wf = build(Some(PathBuf::from(log)));
    let exists =
        exoflow_engine::store::Store::get(store.as_ref(), &format!("workflows/{WID}/meta"))
            .expect("read meta")
            .is_some();
    let out = if exists {
        engine.resume(&wid).rebuilt_from(&wf).run()
    } else {
        engine.workflow_of(&wf).id(wid.clone()).run()
    }
    .unwrap_or_else(|e| panic!("workflow failed: {e}"));
    std::fs::write(result, out.to_string()).expect("write result");
}

struct Child {
    status: std::process::ExitStatus,
    log: PathBuf,
}

fn spawn_child(
    dir: &Path,
    attempt: usize,
    failpoints: Option<&str>,
    kill_after: Option<Duration>,
) -> Child {
    let log = dir.join(format!("exec-{attempt}.log"));
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--ignored",
        "--exact",
        "crash_child_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("CRASH_STORE", dir.join("store"))
    .env("CRASH_LOG", &log)
    .env("CRASH_RESULT", dir.join("result"))
    .env_remove("EXOFLOW_FAILPOINTS")
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(dir.join(format!("stdout-{attempt}.log"))).expect("stdout file"))
    .stderr(std::fs::File::create(dir.join(format!("stderr-{attempt}.log"))).expect("stderr file"));
    if let Some(fp) = failpoints {
        cmd.env("EXOFLOW_FAILPOINTS", fp);
    }
    let mut child = cmd.spawn().expect("spawn child");
    if let Some(d) = kill_after {
        // The moment counts from the first task's start, so that it lands in
        // the run and not in the process start-up.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !log.exists() && Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Child { status, log };
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let start = Instant::now();
        while start.elapsed() < d {
            if let Ok(Some(status)) = child.try_wait() {
                return Child { status, log };
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let _ = child.kill(); // SIGKILL
    }
    let status = child.wait().expect("wait child");
    Child { status, log }
}

/// Task outputs (the committed objects) of the workflow, by task id, read
/// through the store (small ones live in the tasks directory's commit log).
fn outputs(store_dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let prefix = format!("workflows/{WID}/tasks/");
    let store = LocalStore::open(store_dir).expect("open the store");
    let mut out = BTreeMap::new();
    for key in store.list(&prefix).expect("list outputs") {
        let value = store
            .get(&key)
            .expect("read output")
            .expect("listed output");
        out.insert(key[prefix.len()..].to_owned(), value);
    }
    out
}

fn executed(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn reference(dir: &Path) -> (BTreeMap<String, Vec<u8>>, String, Duration) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let start = Instant::now();
    let c = spawn_child(dir, 0, None, None);
    let took = start.elapsed();
    assert!(
        c.status.success(),
        "uninterrupted run failed: {:?}",
        c.status
    );
    let result = std::fs::read_to_string(dir.join("result")).expect("result");
    (outputs(&dir.join("store")), result, took)
}

/// Runs a child, checking that no task committed before it ran in it.
fn checked_attempt(
    dir: &Path,
    attempt: usize,
    failpoints: Option<&str>,
    kill_after: Option<Duration>,
) -> Child {
    let committed_before: HashSet<String> = outputs(&dir.join("store")).into_keys().collect();
    let child = spawn_child(dir, attempt, failpoints, kill_after);
    for task in executed(&child.log) {
        assert!(
            !committed_before.contains(&task),
            "attempt {attempt}: task {task} ran again although its output was committed"
        );
    }
    child
}

fn finish_and_compare(
    dir: &Path,
    attempt: usize,
    want: &BTreeMap<String, Vec<u8>>,
    want_result: &str,
) {
    let c = checked_attempt(dir, attempt, None, None);
    assert!(
        c.status.success(),
        "final resume failed: {:?}: {}",
        c.status,
        std::fs::read_to_string(dir.join(format!("stderr-{attempt}.log"))).unwrap_or_default()
    );
    let got = outputs(&dir.join("store"));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "committed task sets differ"
    );
    for (k, v) in want {
        assert!(
            got.get(k) == Some(v),
            "output of {k} differs from the uninterrupted run's"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("result")).expect("result"),
        want_result
    );
}

#[test]
fn killed_at_twenty_random_moments_the_dag_resumes_to_the_same_outputs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (want, want_result, took) = reference(&tmp.path().join("reference"));
    assert!(want.len() > 100, "{} checkpointed outputs", want.len());
    let dir = tmp.path().join("crashed");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut killed = 0;
    for attempt in 1..=20 {
        // Each attempt is cut within its first 5% of a whole run, so that
        // twenty attempts leave work for the last.
        let at = Duration::from_micros(rng.random_range(0..(took.as_micros() as u64 / 20).max(1)));
        let c = checked_attempt(&dir, attempt, None, Some(at));
        if c.status.signal() == Some(libc_sigkill()) {
            killed += 1;
        }
    }
    assert!(
        killed >= 15,
        "only {killed} of 20 attempts were killed mid-run (a whole run takes {took:?})"
    );
    finish_and_compare(&dir, 21, &want, &want_result);
}

fn libc_sigkill() -> i32 {
    9
}

#[cfg(feature = "failpoints")]
#[test]
fn killed_at_named_failpoints_the_dag_resumes_to_the_same_outputs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (want, want_result, _) = reference(&tmp.path().join("reference"));
    let points = [
        "local.before_publish=3",
        "local.before_publish=40",
        "commit.before_write=2",
        "commit.after_write=5",
        "status.before_write=2",
        "status.after_write=1",
        "commit.waiting_for_parent=1",
        "task.after_compute=30",
    ];
    for (n, fp) in points.iter().enumerate() {
        let dir = tmp.path().join(format!("fp{n}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let c = checked_attempt(&dir, 1, Some(fp), None);
        assert_eq!(
            c.status.signal(),
            Some(libc_sigkill()),
            "{fp}: the child was not killed at the failpoint ({:?})",
            c.status
        );
        // A second crash while resuming, at the same point.
        let c = checked_attempt(&dir, 2, Some(fp), None);
        assert!(
            c.status.signal() == Some(libc_sigkill()) || c.status.success(),
            "{fp}: {:?}: {}",
            c.status,
            std::fs::read_to_string(dir.join("stderr-2.log")).unwrap_or_default()
        );
        finish_and_compare(&dir, 3, &want, &want_result);
    }
}

#[test]
fn two_processes_resuming_one_workflow_exactly_one_proceeds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (want, want_result, took) = reference(&tmp.path().join("reference"));
    let dir = tmp.path().join("race");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // A workflow whose owner was killed early.
    let c = checked_attempt(&dir, 1, None, Some(took / 50));
    assert_eq!(
        c.status.signal(),
        Some(libc_sigkill()),
        "the first owner was not killed"
    );
    // Two resumers at once, in separate processes.
    let d1 = dir.clone();
    let d2 = dir.clone();
    let a = std::thread::spawn(move || spawn_child(&d1, 2, None, None));
    let b = std::thread::spawn(move || spawn_child(&d2, 3, None, None));
    let (a, b) = (a.join().expect("a"), b.join().expect("b"));
    let ran = |c: &Child| !executed(&c.log).is_empty();
    assert!(
        ran(&a) != ran(&b),
        "exactly one resumer may run tasks (a ran: {}, b ran: {})",
        ran(&a),
        ran(&b)
    );
    let (winner, loser, loser_attempt) = if ran(&a) { (a, b, 3) } else { (b, a, 2) };
    assert!(
        winner.status.success(),
        "the resumer that took over failed: {:?}",
        winner.status
    );
    if !loser.status.success() {
        let out = std::fs::read_to_string(dir.join(format!("stdout-{loser_attempt}.log")))
            .unwrap_or_default()
            + &std::fs::read_to_string(dir.join(format!("stderr-{loser_attempt}.log")))
                .unwrap_or_default();
        assert!(
            out.contains("is owned by") || out.contains("changed it while this one took over"),
            "the other resumer must stop with a clear error ({:?}), said: {out}",
            loser.status
        );
    }
    finish_and_compare(&dir, 4, &want, &want_result);
}
