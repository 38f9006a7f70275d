//! The store conformance suite and engine scenarios against a real S3 API
//! server (moto), started by the test.

use std::sync::Arc;

use exoflow_engine::store::s3::{S3Config, S3Store};
use exoflow_engine::store::{conformance, Store, StoreError};
use exoflow_engine::{Dag, Engine, TaskOptions, WorkflowId};
use exoflow_testkit::Moto;

type R = Result<(), Box<dyn std::error::Error>>;

fn open(moto: &Moto, url: &str) -> Result<S3Store, StoreError> {
    S3Store::open(S3Config::from_url(url, Some(moto.endpoint.clone()))?)
}

#[test]
fn s3_store_passes_conformance_and_enforces_create_if_absent() -> R {
    let moto = Moto::start();
    moto.create_bucket("conf");
    let store = open(&moto, "s3://conf/some/prefix")?;
    conformance::run_all(&store)?;
    // Keys live under the prefix: another prefix of the same bucket is empty.
    let other = open(&moto, "s3://conf/other")?;
    assert!(other.list("")?.is_empty());
    assert!(!store.list("")?.is_empty());
    Ok(())
}

#[test]
fn a_missing_bucket_is_a_clear_error_at_open() {
    let moto = Moto::start();
    let err = open(&moto, "s3://no-such-bucket/x").expect_err("missing bucket");
    let text = err.to_string();
    assert!(text.contains("does not exist"), "{text}");
    assert!(!err.is_transient());
    let err = S3Config::from_url("s3:///x", None).expect_err("no bucket");
    assert!(err.to_string().contains("bucket name is missing"), "{err}");
}

#[test]
fn a_workflow_runs_and_resumes_on_s3() -> R {
    let moto = Moto::start();
    moto.create_bucket("wf-bucket");
    let store = Arc::new(open(&moto, "s3://wf-bucket/root")?);
    let build = || {
        let mut dag = Dag::new();
        let a = dag.task("a", TaskOptions::sync(), |_| Ok(vec![3u64; 1000]));
        let b = dag.task1("b", TaskOptions::asynchronous(), a, |_, v: &Vec<u64>| {
            Ok(v.iter().sum::<u64>())
        });
        let c = dag.task1("c", TaskOptions::skip(), b, |_, s: &u64| Ok(s * 2));
        dag.finish(c).expect("valid")
    };
    let wid = WorkflowId::new("s3-wf")?;
    {
        let engine = Engine::new(store.clone());
        assert_eq!(*engine.workflow_of(&build()).id(wid.clone()).run()?, 6000);
    }
    let engine = Engine::new(store.clone());
    assert_eq!(engine.task_output::<u64>(&wid, "0001.b")?, Some(3000));
    let info = engine.status(&wid)?;
    assert_eq!(info.state, exoflow_engine::State::Successful);
    let err = engine
        .resume(&wid)
        .rebuilt_from(&build())
        .run()
        .err()
        .ok_or("skip output not stored")?;
    assert!(err.to_string().contains("not stored"), "{err}");
    assert!(engine.delete(&wid, false)? > 0);
    assert!(store.list("workflows/")?.is_empty());
    Ok(())
}
