//! The key-value conformance suite on both backends: SQLite in a fresh
//! file, and DynamoDB's API served by a moto server of the test's own.

use std::sync::Arc;

use exoflow_hotel::kv::dynamo::DynamoKv;
use exoflow_hotel::kv::sqlite::SqliteKv;
use exoflow_hotel::kv::{conformance, item, Kv};

#[test]
fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = SqliteKv::open(dir.path().join("state.db")).expect("open");
    conformance::run(Arc::new(kv));
}

#[test]
fn sqlite_writes_are_seen_by_another_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let a = SqliteKv::open(&path).expect("open");
    a.create_tables(&["shared"]).expect("create");
    a.put("shared", "k", item([("v", 1.into())]), None)
        .expect("put");
    let b = SqliteKv::open(&path).expect("open again");
    assert_eq!(
        b.get("shared", "k").expect("get"),
        Some(item([("v", 1.into())]))
    );
}

#[test]
fn dynamodb_passes_the_conformance_suite() {
    let moto = exoflow_testkit::Moto::start();
    let kv = DynamoKv::connect(Some(&moto.endpoint)).expect("connect");
    conformance::run(Arc::new(kv));
}
