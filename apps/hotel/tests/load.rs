//! The open-loop load against a gateway and a function service that fails
//! 10% of calls: every request is answered and recorded, and the database
//! holds exactly the bookings the CSV reports.

use std::process::{Command, Stdio};
use std::time::Duration;

use exoflow_hotel::data::Seed;
use exoflow_hotel::gateway::Mode;
use exoflow_hotel::load::Mix;

mod common;
use common::{addr, spawn, BIN};

#[test]
fn a_load_is_answered_and_the_database_holds_what_it_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (kv, db) = common::seeded_sqlite(
        dir.path(),
        Seed {
            hotels: 5,
            users: 5,
            capacity: 8,
        },
    );
    let (_functions, fn_addr) = common::functions(&db, &["--failure-rate", "0.1"]);
    let gw_addr = addr();
    let store = dir.path().join("store");
    let _gateway = spawn(&[
        "gateway",
        "--functions",
        &format!("http://{fn_addr}"),
        "--store",
        &store.display().to_string(),
        "--listen",
        &gw_addr.to_string(),
        "--reserve",
        "async",
    ]);
    exoflow_testkit::wait_for_port(gw_addr, Duration::from_secs(30), "the gateway");
    let csv = dir.path().join("requests.csv");
    let status = Command::new(BIN)
        .args([
            "load",
            "--gateway",
            &format!("http://{gw_addr}"),
            "--rate",
            "100",
        ])
        .args([
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--hotels",
            "5",
            "--users",
            "5",
        ])
        .args([
            "--mix",
            "search=30,recommend=20,user=10,reserve=40",
            "--out",
        ])
        .arg(&csv)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run the load");
    assert!(status.success());
    let text = std::fs::read_to_string(&csv).expect("read the CSV");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(exoflow_hotel::load::CSV_HEADER));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 200, "100/s for 2 s");
    for r in &rows {
        assert_eq!(r.len(), 9, "{r:?}");
        assert_eq!(r[5], "200", "every request answered: {r:?}");
        let (intended, sent, done): (u64, u64, u64) = (
            r[2].parse().expect("us"),
            r[3].parse().expect("us"),
            r[4].parse().expect("us"),
        );
        assert!(intended <= sent && sent <= done, "{r:?}");
    }
    let count = |kind: &str, outcome: &str| {
        rows.iter()
            .filter(|r| r[1] == kind && r[6] == outcome)
            .count()
    };
    let (booked, failed) = (count("reserve", "booked"), count("reserve", "failed"));
    assert!(failed > 0, "80 reservations of 40 rooms: some sell out");
    let mut told = exoflow_hotel::check::Told::new();
    exoflow_hotel::check::read_told(&csv, &mut told).expect("read the CSV");
    let report = exoflow_hotel::check::check(kv.as_ref(), Mode::Exoflow, &told).expect("check");
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!((report.orders, report.failed), (booked, failed));
}

#[test]
fn a_bad_mix_is_refused_with_the_part_named() {
    assert!("search=60,reserve=0.5".parse::<Mix>().is_ok());
    for (bad, says) in [
        ("search=x", "search=x"),
        ("flights=3", "kinds are"),
        ("search", "KIND=WEIGHT"),
        ("search=-1", "search=-1"),
        ("search=0", "no weight"),
    ] {
        let e = bad.parse::<Mix>().expect_err(bad);
        assert!(e.contains(says), "{bad}: {e}");
    }
    let out = Command::new(BIN)
        .args(["load", "--rate", "0", "--out", "/dev/null"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rate"));
}

#[test]
fn the_demo_runs_everything_and_checks_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["demo", "--duration", "2", "--rate", "50", "--dir"])
        .arg(dir.path())
        .stderr(Stdio::null())
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("0 violations"), "{text}");
    let csv = std::fs::read_to_string(dir.path().join("requests.csv")).expect("the CSV");
    assert_eq!(csv.lines().count(), 101, "a header and 100 requests");
}
