//! Scenario tests of the engine on the in-memory store: each name reads as the
//! property it checks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use exoflow_engine::codec::{self, Kind};
use exoflow_engine::status::{Owner, StatusRecord};
use exoflow_engine::store::faulty::{Faults, FaultyStore};
use exoflow_engine::store::memory::MemStore;
use exoflow_engine::store::{PutOutcome, SharedStore, Store, StoreError};
use exoflow_engine::{
    Dag, DagError, Engine, EngineError, EngineOptions, Failure, ResumeOptions, State, TaskError,
    TaskOptions, Workflow, WorkflowId,
};
use parking_lot::Mutex;

type R = Result<(), Box<dyn std::error::Error>>;

fn wid(s: &str) -> WorkflowId {
    WorkflowId::new(s).expect("valid id")
}

fn fast_engine(store: SharedStore) -> Engine {
    Engine::with_options(
        store,
        EngineOptions {
            lease: Duration::from_millis(600),
            ..EngineOptions::default()
        },
    )
}

/// Counts executions per task name.
#[derive(Default, Clone)]
struct Counts(Arc<Mutex<HashMap<String, usize>>>);

impl Counts {
    fn hit(&self, name: &str) {
        *self.0.lock().entry(name.to_owned()).or_default() += 1;
    }
    fn get(&self, name: &str) -> usize {
        self.0.lock().get(name).copied().unwrap_or(0)
    }
}

/// a -> b -> d, a -> c -> d, with the given checkpoint modes; `fail_d` makes d
/// fail (fatally) while set.
fn diamond(counts: &Counts, modes: [TaskOptions; 4], fail_d: Arc<AtomicBool>) -> Workflow<u64> {
    let mut dag = Dag::new();
    let [ma, mb, mc, md] = modes;
    let c = counts.clone();
    let a = dag.task("a", ma, move |_| {
        c.hit("a");
        Ok(vec![1u64, 2, 3])
    });
    let c = counts.clone();
    let b = dag.task1("b", mb, a, move |_, v: &Vec<u64>| {
        c.hit("b");
        Ok(v.iter().sum::<u64>())
    });
    let c = counts.clone();
    let cc = dag.task1("c", mc, a, move |_, v: &Vec<u64>| {
        c.hit("c");
        Ok(v.iter().product::<u64>())
    });
    let c = counts.clone();
    let d = dag.task2("d", md, b, cc, move |_, x: &u64, y: &u64| {
        c.hit("d");
        if fail_d.load(Ordering::SeqCst) {
            return Err(Failure::fatal("d is told to fail"));
        }
        Ok(x * 100 + y)
    });
    dag.finish(d).expect("valid DAG")
}

#[test]
fn a_dag_with_every_checkpoint_mode_returns_its_output() -> R {
    let store = Arc::new(MemStore::new());
    let engine = fast_engine(store.clone());
    let counts = Counts::default();
    let wf = diamond(
        &counts,
        [
            TaskOptions::sync(),
            TaskOptions::asynchronous(),
            TaskOptions::skip(),
            TaskOptions::sync(),
        ],
        Arc::new(AtomicBool::new(false)),
    );
    let out = engine.workflow_of(&wf).id(wid("w1")).run()?;
    assert_eq!(*out, 606);
    // Sync and Async outputs are stored, Skip ones are not.
    let a: Option<Vec<u64>> = engine.task_output(&wid("w1"), wf.task_id("a").ok_or("a")?)?;
    assert_eq!(a, Some(vec![1, 2, 3]));
    let b: Option<u64> = engine.task_output(&wid("w1"), wf.task_id("b").ok_or("b")?)?;
    assert_eq!(b, Some(6));
    let c: Option<u64> = engine.task_output(&wid("w1"), wf.task_id("c").ok_or("c")?)?;
    assert_eq!(c, None);
    assert_eq!(engine.status(&wid("w1"))?.state, State::Successful);
    // Timing records: one per task, ordered start <= end <= durable.
    let timings = engine.task_timings(&wid("w1"))?;
    assert_eq!(timings.len(), 4);
    for t in &timings {
        assert!(
            t.timing.ready_us <= t.timing.start_us && t.timing.start_us <= t.timing.end_us,
            "{t:?}"
        );
        if t.name != "c" {
            assert!(t.timing.end_us <= t.timing.durable_us, "{t:?}");
        }
    }
    Ok(())
}

#[test]
fn resume_runs_only_what_is_not_committed_and_recomputes_skipped_inputs() -> R {
    let store = Arc::new(MemStore::new());
    let engine = fast_engine(store.clone());
    let counts = Counts::default();
    let fail = Arc::new(AtomicBool::new(true));
    let wf = diamond(
        &counts,
        [
            TaskOptions::sync(),
            TaskOptions::asynchronous(),
            TaskOptions::skip(),
            TaskOptions::sync(),
        ],
        fail.clone(),
    );
    let err = engine
        .workflow_of(&wf)
        .id(wid("w2"))
        .run()
        .expect_err("d fails");
    assert!(
        matches!(err, EngineError::TaskFailed { ref error, .. } if error.task == "d"),
        "{err}"
    );
    assert!(err.to_string().contains("d is told to fail"), "{err}");
    assert_eq!(engine.status(&wid("w2"))?.state, State::Failed);
    assert_eq!(
        (
            counts.get("a"),
            counts.get("b"),
            counts.get("c"),
            counts.get("d")
        ),
        (1, 1, 1, 1)
    );

    fail.store(false, Ordering::SeqCst);
    let out = engine.resume(&wid("w2")).rebuilt_from(&wf).run()?;
    assert_eq!(*out, 606);
    // a and b were committed and are not run again; c (Skip) is recomputed.
    assert_eq!(
        (
            counts.get("a"),
            counts.get("b"),
            counts.get("c"),
            counts.get("d")
        ),
        (1, 1, 2, 2)
    );
    // Resuming a finished workflow returns the stored output without running anything.
    let again = engine.resume(&wid("w2")).rebuilt_from(&wf).run()?;
    assert_eq!(*again, 606);
    assert_eq!(counts.get("d"), 2);
    Ok(())
}

#[test]
fn retries_with_backoff_then_success_and_catch_errors_turns_failure_into_a_value() -> R {
    let engine = fast_engine(Arc::new(MemStore::new()));
    let mut dag = Dag::new();
    let flaky = dag.task(
        "flaky",
        TaskOptions::sync()
            .retries(3)
            .backoff(Duration::from_millis(1), Duration::from_millis(4)),
        |ctx| {
            if ctx.attempt() < 3 {
                return Err(Failure::msg(format!("attempt {} fails", ctx.attempt())));
            }
            Ok(ctx.attempt())
        },
    );
    let doomed = dag.task(
        "doomed",
        TaskOptions::sync()
            .retries(2)
            .backoff(Duration::from_millis(1), Duration::from_millis(2)),
        |_| Err::<u32, _>(Failure::msg("always")),
    );
    let caught = dag.catch_errors(doomed);
    let out = dag.task2(
        "out",
        TaskOptions::sync(),
        flaky,
        caught,
        |_, a: &u32, b: &Result<u32, TaskError>| {
            Ok((*a, b.clone().map_err(|e| (e.attempts, e.message))))
        },
    );
    let wf = dag.finish(out)?;
    let out = engine.workflow_of(&wf).id(wid("retry")).run()?;
    assert_eq!(*out, (3, Err((3, "always".to_owned()))));
    Ok(())
}

#[test]
fn a_task_failure_without_catch_fails_the_workflow_with_the_task_error() -> R {
    let engine = fast_engine(Arc::new(MemStore::new()));
    let mut dag = Dag::new();
    let t = dag.task(
        "panics",
        TaskOptions::sync()
            .retries(1)
            .backoff(Duration::from_millis(1), Duration::from_millis(1)),
        |_| -> Result<u8, Failure> { panic!("boom") },
    );
    let wf = dag.finish(t)?;
    let err = engine
        .workflow_of(&wf)
        .id(wid("p"))
        .run()
        .expect_err("fails");
    let text = err.to_string();
    assert!(
        text.contains("panics") && text.contains("boom") && text.contains("2 attempt"),
        "{text}"
    );
    let info = engine.status(&wid("p"))?;
    assert_eq!(info.state, State::Failed);
    assert!(info.error.unwrap_or_default().contains("boom"));
    Ok(())
}

/// Records the order in which keys are created.
#[derive(Debug)]
struct Recording {
    inner: MemStore,
    created: Mutex<Vec<String>>,
    slow_prefix: String,
}

impl Store for Recording {
    fn put_if_absent(&self, key: &str, value: &[u8]) -> Result<PutOutcome, StoreError> {
        if key.contains(&self.slow_prefix) {
            std::thread::sleep(Duration::from_millis(150));
        }
        let r = self.inner.put_if_absent(key, value)?;
        if r == PutOutcome::Created {
            self.created.lock().push(key.to_owned());
        }
        Ok(r)
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.inner.put(key, value)
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix)
    }
    fn list_dir(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_dir(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key)
    }
    fn describe(&self) -> String {
        "recording".into()
    }
}

#[test]
fn a_child_of_an_async_parent_runs_at_once_but_commits_after_the_parent() -> R {
    let store = Arc::new(Recording {
        inner: MemStore::new(),
        created: Mutex::new(Vec::new()),
        slow_prefix: "0000.parent".into(),
    });
    let engine = fast_engine(store.clone());
    let child_started_before_parent_durable = Arc::new(AtomicBool::new(false));
    let mut dag = Dag::new();
    let parent = dag.task("parent", TaskOptions::asynchronous(), |_| Ok(7u64));
    let s = store.clone();
    let flag = child_started_before_parent_durable.clone();
    let child = dag.task1("child", TaskOptions::sync(), parent, move |_, v: &u64| {
        let parent_durable = s.created.lock().iter().any(|k| k.ends_with("0000.parent"));
        flag.store(!parent_durable, Ordering::SeqCst);
        Ok(v + 1)
    });
    let wf = dag.finish(child)?;
    assert_eq!(*engine.workflow_of(&wf).id(wid("async")).run()?, 8);
    assert!(
        child_started_before_parent_durable.load(Ordering::SeqCst),
        "Async lets the child start on the in-memory value"
    );
    let created = store.created.lock().clone();
    let pos = |suffix: &str| created.iter().position(|k| k.ends_with(suffix));
    assert!(
        pos("0000.parent") < pos("0001.child"),
        "commit order {created:?}"
    );
    Ok(())
}

/// Two Async "lock" tasks (one slow to commit) and an `order` task that
/// must never act on an uncommitted lock.
fn locks_then_order(store: Arc<Recording>, wait: bool) -> Result<Workflow<u64>, DagError> {
    let mut dag = Dag::new();
    let slow = dag.task("parent", TaskOptions::asynchronous(), |_| Ok(7u64));
    let fast = dag.task("other", TaskOptions::asynchronous(), |_| Ok(1u64));
    let opts = if wait {
        TaskOptions::sync().wait_until_committed()
    } else {
        TaskOptions::sync()
    };
    let order = dag.task_all("order", opts, &[slow, fast], move |_, v: &[&u64]| {
        let created = store.created.lock();
        for name in ["0000.parent", "0001.other"] {
            if !created.iter().any(|k| k.ends_with(name)) {
                return Err(Failure::fatal(format!(
                    "order started before {name} was durable"
                )));
            }
        }
        Ok(v.iter().copied().sum())
    });
    dag.finish(order)
}

#[test]
fn a_task_that_waits_until_committed_starts_only_after_its_async_inputs_are_durable() -> R {
    let recording = || {
        Arc::new(Recording {
            inner: MemStore::new(),
            created: Mutex::new(Vec::new()),
            slow_prefix: "0000.parent".into(),
        })
    };
    let store = recording();
    let engine = fast_engine(store.clone());
    let wf = locks_then_order(store.clone(), true)?;
    assert_eq!(*engine.workflow_of(&wf).id(wid("wait")).run()?, 8);
    // Without the option the same task starts on the in-memory values.
    let store = recording();
    let engine = fast_engine(store.clone());
    let wf = locks_then_order(store.clone(), false)?;
    let e = engine.workflow_of(&wf).id(wid("nowait")).run();
    assert!(
        e.as_ref()
            .is_err_and(|e| e.to_string().contains("order started before")),
        "{e:?}"
    );
    Ok(())
}

#[test]
fn a_sync_child_starts_only_after_its_parent_is_durable() -> R {
    let store = Arc::new(Recording {
        inner: MemStore::new(),
        created: Mutex::new(Vec::new()),
        slow_prefix: "0000.parent".into(),
    });
    let engine = fast_engine(store.clone());
    let mut dag = Dag::new();
    let parent = dag.task("parent", TaskOptions::sync(), |_| Ok(7u64));
    let s = store.clone();
    let child = dag.task1("child", TaskOptions::skip(), parent, move |_, v: &u64| {
        let durable = s.created.lock().iter().any(|k| k.ends_with("0000.parent"));
        if !durable {
            return Err(Failure::fatal(
                "child started before its Sync parent was durable",
            ));
        }
        Ok(v + 1)
    });
    let wf = dag.finish(child)?;
    assert_eq!(*engine.workflow_of(&wf).id(wid("sync")).run()?, 8);
    Ok(())
}

#[test]
fn a_corrupt_committed_output_is_an_error_naming_its_key() -> R {
    let store = Arc::new(MemStore::new());
    let engine = fast_engine(store.clone());
    let counts = Counts::default();
    let fail = Arc::new(AtomicBool::new(true));
    let wf = diamond(
        &counts,
        [
            TaskOptions::sync(),
            TaskOptions::sync(),
            TaskOptions::sync(),
            TaskOptions::sync(),
        ],
        fail.clone(),
    );
    assert!(engine.workflow_of(&wf).id(wid("c")).run().is_err());
    let key = "workflows/c/tasks/0001.b";
    for (what, damage) in [
        (
            "bit flip",
            Box::new(|v: &mut Vec<u8>| {
                let i = v.len() - 1;
                v[i] ^= 0x10
            }) as Box<dyn Fn(&mut Vec<u8>)>,
        ),
        (
            "truncation",
            Box::new(|v: &mut Vec<u8>| v.truncate(v.len() - 1)),
        ),
    ] {
        let original = store.get(key)?.ok_or("b committed")?;
        assert!(store.tamper(key, |v| damage(v)), "{what}");
        fail.store(false, Ordering::SeqCst);
        let err = engine
            .resume(&wid("c"))
            .rebuilt_from(&wf)
            .run()
            .expect_err(what);
        assert!(matches!(err, EngineError::Decode(_)), "{what}: {err}");
        assert!(err.to_string().contains(key), "{what}: {err}");
        assert!(store.tamper(key, |v| *v = original.clone()));
    }
    assert_eq!(*engine.resume(&wid("c")).rebuilt_from(&wf).run()?, 606);
    Ok(())
}

fn register_nop(engine: &Engine) -> R {
    engine.register("nop", |n: &u32| {
        let mut dag = Dag::new();
        let n = *n;
        let t = dag.task("nop", TaskOptions::skip(), move |_| Ok(n));
        dag.finish(t)
    })?;
    engine.register("fan", |n: &u32| {
        let mut dag = Dag::new();
        let parts: Vec<_> = (0..*n)
            .map(|i| dag.task(&format!("p{i}"), TaskOptions::sync(), move |_| Ok(i as u64)))
            .collect();
        let sum = dag.task_all("sum", TaskOptions::sync(), &parts, |_, xs: &[&u64]| {
            Ok(xs.iter().copied().sum::<u64>())
        });
        dag.finish(sum)
    })?;
    Ok(())
}

#[test]
fn a_registered_dag_runs_many_times_with_fresh_ids_and_every_run_is_listed() -> R {
    let store = Arc::new(MemStore::new());
    let engine = fast_engine(store.clone());
    register_nop(&engine)?;
    let handles: Vec<_> = (0..300u32)
        .map(|i| engine.workflow::<u32>("nop").args(&i).submit())
        .collect::<Result<_, _>>()?;
    for (i, h) in handles.iter().enumerate() {
        assert_eq!(*h.wait()?, i as u32);
    }
    let fan: Arc<u64> = engine.workflow("fan").args(&10u32).id(wid("fan-1")).run()?;
    assert_eq!(*fan, 45);
    let list = engine.list()?;
    assert_eq!(list.len(), 301);
    assert!(
        list.iter().all(|w| w.state == State::Successful),
        "{list:?}"
    );
    assert_eq!(list.iter().filter(|w| w.durable).count(), 1);
    // Journal records are grouped: far fewer segments than runs.
    let segments = store.list("journal/")?.len();
    assert!(segments < 300, "{segments} journal segments for 300 runs");
    // A fresh engine (a restart) resumes a registered DAG by id alone.
    let engine2 = fast_engine(store.clone());
    register_nop(&engine2)?;
    assert_eq!(*engine2.resume::<u64>(&wid("fan-1")).run()?, 45);
    Ok(())
}

#[test]
fn pruning_the_journal_forgets_ended_skip_runs_only() -> R {
    let store = Arc::new(MemStore::new());
    let engine = fast_engine(store.clone());
    register_nop(&engine)?;
    for i in 0..50u32 {
        engine.workflow::<u32>("nop").args(&i).run()?;
    }
    engine
        .workflow::<u64>("fan")
        .args(&3u32)
        .id(wid("fan-1"))
        .run()?;
    assert_eq!(engine.list()?.len(), 51);
    // Nothing ended before the epoch.
    assert_eq!(engine.prune_journal(0)?, 0);
    assert_eq!(engine.list()?.len(), 51);
    // A record of a run cut short: its start only, as a crash leaves it.
    let cut = codec::encode(
        Kind::Journal,
        &vec![exoflow_engine::journal::RunRecord {
            wid: wid("cut-short"),
            dag: "nop".to_owned(),
            args: b"7".to_vec(),
            state: State::Running,
            owner: Owner::this_process("elsewhere"),
            started_us: 1,
            finished_us: 0,
            error: None,
            tasks: 1,
        }],
    )?;
    store.put("journal/elsewhere-0000000001", &cut)?;
    let far = u64::MAX / 1000;
    assert!(engine.prune_journal(far)? >= 1);
    let left: Vec<String> = engine.list()?.iter().map(|w| w.id.to_string()).collect();
    assert_eq!(
        left,
        ["fan-1", "cut-short"],
        "durable runs and cut-short ones stay"
    );
    assert_eq!(*engine.workflow::<u32>("nop").args(&9u32).run()?, 9);
    Ok(())
}

#[test]
fn an_unknown_dag_or_workflow_is_a_clear_error() -> R {
    let engine = fast_engine(Arc::new(MemStore::new()));
    let err = engine
        .workflow::<u32>("nope")
        .args(&1)
        .run()
        .err()
        .ok_or("error expected")?;
    assert!(err.to_string().contains("no DAG named \"nope\""), "{err}");
    let err = engine
        .resume::<u32>(&wid("ghost"))
        .run()
        .err()
        .ok_or("error expected")?;
    assert!(matches!(err, EngineError::NotFound { .. }), "{err}");
    assert!(engine.status(&wid("ghost")).is_err());
    Ok(())
}

#[test]
fn running_an_existing_id_is_refused() -> R {
    let engine = fast_engine(Arc::new(MemStore::new()));
    register_nop(&engine)?;
    engine
        .workflow::<u64>("fan")
        .args(&3)
        .id(wid("dup"))
        .run()?;
    let err = engine
        .workflow::<u64>("fan")
        .args(&3)
        .id(wid("dup"))
        .run()
        .err()
        .ok_or("error expected")?;
    assert!(matches!(err, EngineError::AlreadyExists(_)), "{err}");
    Ok(())
}

fn blocking_workflow(started: Arc<AtomicBool>) -> Workflow<u32> {
    let mut dag = Dag::new();
    let t = dag.task("wait", TaskOptions::sync(), move |ctx| {
        started.store(true, Ordering::SeqCst);
        while !ctx.is_cancelled() && !ctx.stop_requested() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if ctx.stop_requested() {
            return Err(Failure::fatal("stopped"));
        }
        Ok(1u32)
    });
    dag.finish(t).expect("valid")
}

fn wait_for(flag: &AtomicBool) {
    for _ in 0..1000 {
        if flag.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting");
}

#[test]
fn cancel_from_another_engine_reaches_the_owner_through_the_store() -> R {
    let store: SharedStore = Arc::new(MemStore::new());
    let owner = fast_engine(store.clone());
    let started = Arc::new(AtomicBool::new(false));
    let h = owner
        .workflow_of(&blocking_workflow(started.clone()))
        .id(wid("long"))
        .submit()?;
    wait_for(&started);
    let other = fast_engine(store.clone());
    other.cancel(&wid("long"))?;
    let err = h.wait().err().ok_or("canceled")?;
    assert!(matches!(err, EngineError::Canceled(_)), "{err}");
    assert_eq!(other.status(&wid("long"))?.state, State::Canceled);
    let err = other
        .resume(&wid("long"))
        .rebuilt_from(&blocking_workflow(started))
        .run()
        .err()
        .ok_or("refused")?;
    assert!(err.to_string().contains("canceled"), "{err}");
    Ok(())
}

#[test]
fn a_second_resumer_is_refused_while_the_owner_lives_and_force_takes_over_and_fences_it() -> R {
    let store: SharedStore = Arc::new(MemStore::new());
    let a = fast_engine(store.clone());
    let started = Arc::new(AtomicBool::new(false));
    let h = a
        .workflow_of(&blocking_workflow(started.clone()))
        .id(wid("own"))
        .submit()?;
    wait_for(&started);
    let b = fast_engine(store.clone());
    let err = b
        .resume(&wid("own"))
        .rebuilt_from(&blocking_workflow(Arc::new(AtomicBool::new(false))))
        .run()
        .err()
        .ok_or("refused")?;
    assert!(matches!(err, EngineError::Owned { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");

    // Forced takeover: b's run becomes the owner with generation 2 ...
    let b_started = Arc::new(AtomicBool::new(false));
    let hb = b
        .resume(&wid("own"))
        .rebuilt_from(&blocking_workflow(b_started.clone()))
        .options(ResumeOptions {
            force: true,
            wait: false,
        })
        .submit()?;
    wait_for(&b_started);
    // ... and a, at its next lease renewal, learns it was displaced and stops
    // without writing anything more.
    let err = h.wait().err().ok_or("fenced")?;
    assert!(
        matches!(err, EngineError::Fenced { generation: 2, .. }),
        "{err}"
    );
    let info = b.status(&wid("own"))?;
    assert_eq!((info.state, info.generation), (State::Running, 2));
    b.cancel(&wid("own"))?;
    assert!(hb.wait().is_err());
    Ok(())
}

#[test]
fn an_expired_lease_of_a_remote_owner_is_taken_over_after_waiting() -> R {
    let store: SharedStore = Arc::new(MemStore::new());
    let engine = fast_engine(store.clone());
    register_nop(&engine)?;
    // A workflow whose owner (on another host) failed before finishing.
    let counts = Counts::default();
    let wf = diamond(
        &counts,
        [
            TaskOptions::sync(),
            TaskOptions::sync(),
            TaskOptions::sync(),
            TaskOptions::sync(),
        ],
        Arc::new(AtomicBool::new(true)),
    );
    assert!(engine.workflow_of(&wf).id(wid("remote")).run().is_err());
    let cur = store.list("workflows/remote/status/")?.len() as u64;
    let rec = StatusRecord {
        version: cur + 1,
        state: State::Running,
        generation: 5,
        owner: Some(Owner {
            id: "elsewhere".into(),
            host: "another-host.invalid".into(),
            pid: 4242,
            start_ticks: 1,
        }),
        lease_until_ms: now_ms() + 400,
        updated_ms: now_ms(),
        error: None,
    };
    store.put_if_absent(
        &format!("workflows/remote/status/{:012}", cur + 1),
        &codec::encode(Kind::Status, &rec)?,
    )?;
    let counts2 = Counts::default();
    let wf2 = diamond(
        &counts2,
        [
            TaskOptions::sync(),
            TaskOptions::sync(),
            TaskOptions::sync(),
            TaskOptions::sync(),
        ],
        Arc::new(AtomicBool::new(false)),
    );
    let err = engine
        .resume(&wid("remote"))
        .rebuilt_from(&wf2)
        .run()
        .err()
        .ok_or("owned")?;
    assert!(err.to_string().contains("another-host.invalid"), "{err}");
    let out = engine
        .resume(&wid("remote"))
        .rebuilt_from(&wf2)
        .options(ResumeOptions {
            force: false,
            wait: true,
        })
        .run()?;
    assert_eq!(*out, 606);
    assert_eq!(engine.status(&wid("remote"))?.generation, 6);
    assert_eq!(counts2.get("a"), 0, "committed tasks are not rerun");
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[test]
fn stop_leaves_a_resumable_workflow() -> R {
    let store: SharedStore = Arc::new(MemStore::new());
    let engine = fast_engine(store.clone());
    let started = Arc::new(AtomicBool::new(false));
    let h = engine
        .workflow_of(&blocking_workflow(started.clone()))
        .id(wid("stoppable"))
        .submit()?;
    wait_for(&started);
    engine.stop(&wid("stoppable"))?;
    assert!(h.wait().is_err());
    assert_eq!(engine.status(&wid("stoppable"))?.state, State::Stopped);
    Ok(())
}

#[test]
fn injected_store_faults_cause_retries_and_no_lost_or_duplicated_output() -> R {
    let mem = Arc::new(MemStore::new());
    let faulty = Arc::new(FaultyStore::new(
        mem.clone(),
        Faults {
            fail_before: 0.1,
            fail_after: 0.1,
            stall: 0.02,
            stall_for: Duration::from_millis(3),
            seed: 7,
        },
    ));
    let engine = fast_engine(faulty.clone());
    register_nop(&engine)?;
    for i in 0..20u32 {
        let out: Arc<u64> = engine
            .workflow("fan")
            .args(&(i + 5))
            .id(wid(&format!("f{i}")))
            .run()?;
        assert_eq!(*out, (0..(i as u64 + 5)).sum::<u64>());
    }
    assert!(
        faulty.injected() > 20,
        "only {} faults injected",
        faulty.injected()
    );
    // Every task output exactly once, with the right value.
    for i in 0..20u32 {
        let keys = mem.list(&format!("workflows/f{i}/tasks/"))?;
        assert_eq!(keys.len(), i as usize + 6, "{keys:?}");
        for (j, k) in keys.iter().enumerate().take(i as usize + 5) {
            let v: u64 = codec::decode(k, Kind::TaskOutput, &mem.get(k)?.ok_or("present")?)?;
            assert_eq!(v, j as u64);
        }
    }
    Ok(())
}

#[test]
fn a_spawned_task_is_committed_once_and_found_again_on_resume() -> R {
    let store: SharedStore = Arc::new(MemStore::new());
    let engine = fast_engine(store.clone());
    let runs = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(AtomicBool::new(true));
    let build = |runs: Arc<AtomicUsize>, fail: Arc<AtomicBool>| {
        let mut dag = Dag::new();
        let t = dag.task("parent", TaskOptions::sync(), move |ctx| {
            let mut total = 0u64;
            for k in 0..3u64 {
                let r = runs.clone();
                let s = ctx.spawn(&format!("batch-{k}"), TaskOptions::sync(), move |_| {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok(k * 10)
                })?;
                total += *s.wait().map_err(Failure::from)?;
                if k == 1 && fail.load(Ordering::SeqCst) {
                    return Err(Failure::fatal("crash after two batches"));
                }
            }
            Ok(total)
        });
        dag.finish(t).expect("valid")
    };
    assert!(engine
        .workflow_of(&build(runs.clone(), fail.clone()))
        .id(wid("sp"))
        .run()
        .is_err());
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    fail.store(false, Ordering::SeqCst);
    let out = engine
        .resume(&wid("sp"))
        .rebuilt_from(&build(runs.clone(), fail))
        .run()?;
    assert_eq!(*out, 30);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "the two committed batches are not run again"
    );
    assert!(store
        .get("workflows/sp/tasks/0000.parent.batch-2")?
        .is_some());
    Ok(())
}

#[test]
fn a_published_output_written_again_with_other_bytes_fails_loudly() -> R {
    let store: SharedStore = Arc::new(MemStore::new());
    let engine = fast_engine(store.clone());
    let n = Arc::new(AtomicUsize::new(0));
    let build = |n: Arc<AtomicUsize>| {
        let mut dag = Dag::new();
        let t = dag.task("sink", TaskOptions::skip(), move |ctx| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            ctx.publish("result", format!("value {}", i.min(1)).as_bytes())?;
            Ok(())
        });
        dag.finish(t).expect("valid")
    };
    engine.workflow_of(&build(n.clone())).id(wid("pub")).run()?;
    assert_eq!(
        store.get("outputs/pub/result")?.as_deref(),
        Some(&b"value 0"[..])
    );
    engine.delete(&wid("pub"), false).ok();
    store.put_if_absent("outputs/pub2/result", b"value 0")?;
    let err = engine
        .workflow_of(&build(n))
        .id(wid("pub2"))
        .run()
        .err()
        .ok_or("mismatch")?;
    assert!(err.to_string().contains("not deterministic"), "{err}");
    Ok(())
}

#[test]
fn dag_errors_are_reported_at_finish() {
    let mut dag = Dag::new();
    let a = dag.task("a", TaskOptions::skip(), |_| Ok(1u8));
    dag.task("a", TaskOptions::skip(), |_| Ok(1u8));
    assert!(matches!(
        dag.finish(a),
        Err(exoflow_engine::DagError::DuplicateName(_))
    ));
    let mut dag = Dag::new();
    let a = dag.task("../x", TaskOptions::skip(), |_| Ok(1u8));
    assert!(matches!(
        dag.finish(a),
        Err(exoflow_engine::DagError::InvalidName(_))
    ));
    let mut dag = Dag::new();
    let a = dag.task("n", TaskOptions::skip().nondeterministic(), |_| Ok(1u8));
    assert!(matches!(
        dag.finish(a),
        Err(exoflow_engine::DagError::NondeterministicSkip(_))
    ));
    let mut dag = Dag::new();
    let a = dag.task("a", TaskOptions::skip(), |_| Ok(1u8));
    let _b = dag.task1("b", TaskOptions::skip(), a, |_, x: &u8| Ok(*x));
    let c = dag.catch_errors(a);
    assert!(matches!(
        dag.finish(c),
        Err(exoflow_engine::DagError::CatchAfterUse(_))
    ));
}

#[test]
fn delete_removes_the_data_an_application_keeps_under_its_registered_prefixes() -> R {
    let store = Arc::new(MemStore::new());
    let engine = fast_engine(store.clone());
    register_nop(&engine)?;
    engine.register_data_prefix("streams")?;
    engine.workflow::<u64>("fan").args(&2).id(wid("w1")).run()?;
    engine.workflow::<u64>("fan").args(&3).id(wid("w2")).run()?;
    for w in ["w1", "w2"] {
        store.put(&format!("streams/{w}/epochs/1/COMMIT"), b"c")?;
        store.put(&format!("outputs/{w}/online/1"), b"o")?;
        store.put(&format!("metrics/{w}/1/epochs.csv"), b"m")?;
    }
    engine.delete(&wid("w1"), false)?;
    assert!(engine.status(&wid("w1")).is_err());
    assert!(store.list("streams/w1/")?.is_empty());
    assert!(store.list("outputs/w1/")?.is_empty());
    // An unregistered prefix is not the engine's to delete.
    assert_eq!(store.list("metrics/w1/")?.len(), 1);
    // Other workflows keep theirs.
    assert_eq!(store.list("streams/w2/")?.len(), 1);
    assert_eq!(engine.status(&wid("w2"))?.state, State::Successful);
    // Names that are not one path component, or the engine's own, are refused.
    for bad in ["", "a/b", "..", "workflows", "outputs"] {
        assert!(engine.register_data_prefix(bad).is_err(), "{bad:?}");
    }
    Ok(())
}

#[test]
fn a_launch_that_cannot_work_is_refused_with_the_reason() -> R {
    let engine = fast_engine(Arc::new(MemStore::new()));
    register_nop(&engine)?;
    let mut dag = Dag::new();
    let t = dag.task("one", TaskOptions::sync(), |_| Ok(1u64));
    let wf = dag.finish(t)?;
    let refused = |r: Result<Arc<u64>, EngineError>, why: &str| match r {
        Err(EngineError::Usage(m)) => assert!(m.contains(why), "{m}"),
        other => panic!("{why}: {other:?}"),
    };
    refused(engine.workflow_of(&wf).run(), "needs an id");
    refused(
        engine.workflow_of(&wf).id(wid("v")).args(&3).run(),
        "registered DAG",
    );
    refused(
        engine.resume(&wid("v")).args(&3).run(),
        "recorded arguments",
    );
    refused(
        engine.workflow_of(&wf).id(wid("v")).rebuilt_from(&wf).run(),
        "applies to a resume",
    );
    // Nothing was started.
    assert!(engine.list()?.is_empty());
    // The same workflow, launched right, runs; a registered one gets a fresh id.
    assert_eq!(*engine.workflow_of(&wf).id(wid("v")).run()?, 1);
    let h = engine.workflow::<u32>("nop").args(&5u32).submit()?;
    assert_ne!(h.id().as_str(), "v");
    assert_eq!(*h.wait()?, 5);
    Ok(())
}
