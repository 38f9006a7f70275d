//! Beldi mode's logs are load-bearing: with its read and invoke logs off,
//! functions that fail after their writes and run again book twice, and
//! `check` finds it. With them on, the same load checks clean, and garbage
//! collection then removes every log.

use std::process::Command;
use std::time::Duration;

use exoflow_hotel::beldi::{INTENTS, LOG};
use exoflow_hotel::data::{Seed, FLIGHT, HOTEL, ORDER};
use exoflow_hotel::kv::Kv;

mod common;
use common::{addr, spawn, BIN};

/// Seeds a database, starts Beldi mode (functions failing 30% of calls
/// after their writes, `extra` flags for them) and sends 40 reservations;
/// the database, its spec, the load's CSV and the processes.
fn reserve_through_failures(
    dir: &std::path::Path,
    extra: &[&str],
) -> (
    std::sync::Arc<dyn Kv>,
    String,
    std::path::PathBuf,
    Vec<common::Proc>,
) {
    let (kv, db) = common::seeded_sqlite(
        dir,
        Seed {
            hotels: 10,
            users: 5,
            capacity: 100,
        },
    );
    let mut flags = vec!["--failure-rate", "0.3", "--failure-point", "after"];
    flags.extend_from_slice(extra);
    let (functions, fn_addr) = common::functions(&db, &flags);
    let gw_addr = addr();
    let gateway = spawn(&[
        "gateway",
        "--mode",
        "beldi",
        "--functions",
        &format!("http://{fn_addr}"),
        "--listen",
        &gw_addr.to_string(),
        "--collect-every",
        "1",
        "--intent-timeout",
        "3",
        // Garbage collection runs when the test asks.
        "--gc-every",
        "100000",
    ]);
    exoflow_testkit::wait_for_port(gw_addr, Duration::from_secs(30), "the gateway");
    let csv = dir.join("requests.csv");
    let out = Command::new(BIN)
        .args(["load", "--gateway", &format!("http://{gw_addr}")])
        .args(["--rate", "20", "--duration", "2", "--warmup", "0"])
        .args(["--mix", "reserve=1", "--hotels", "10", "--users", "5"])
        .arg("--out")
        .arg(&csv)
        .output()
        .expect("run the load");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (kv, db, csv, vec![gateway, functions])
}

fn check(db: &str, csv: &std::path::Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["check", "--mode", "beldi", "--wait", "20", "--db", db])
        .arg("--requests")
        .arg(csv)
        .output()
        .expect("run check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn without_its_logs_beldi_books_twice_and_check_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_kv, db, csv, _procs) = reserve_through_failures(dir.path(), &["--no-beldi-logs"]);
    let (ok, text) = check(&db, &csv);
    assert!(!ok, "check passed without Beldi's logs:\n{text}");
    assert!(
        text.contains("seeded less"),
        "a room or seat taken twice:\n{text}"
    );
}

#[test]
fn with_its_logs_beldi_is_exactly_once_and_gc_removes_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (kv, db, csv, procs) = reserve_through_failures(dir.path(), &[]);
    let (ok, text) = check(&db, &csv);
    assert!(ok, "{text}");
    assert!(!kv.scan(LOG).expect("scan").is_empty(), "logs were written");
    // Collect everything finished, with nothing running; the function
    // service runs the collection.
    drop(procs);
    let (_functions, fn_addr) = common::functions(&db, &[]);
    let agent = ureq::agent();
    let mut r = agent
        .post(&format!("http://{fn_addr}/admin/gc"))
        .send(r#"{"older_ms":0}"#)
        .expect("gc");
    let answer = r.body_mut().read_to_string().expect("answer");
    assert!(answer.contains("collected"), "{answer}");
    assert!(
        kv.scan(LOG).expect("scan").is_empty(),
        "read and invoke logs deleted"
    );
    assert!(
        kv.scan(INTENTS).expect("scan").is_empty(),
        "intents deleted"
    );
    for table in [HOTEL, FLIGHT, ORDER] {
        for (key, item) in kv.scan(table).expect("scan") {
            assert!(
                !item.keys().any(|a| a.starts_with("log:")),
                "{table}/{key} keeps write marks: {item:?}"
            );
        }
    }
    let (ok, text) = check(&db, &csv);
    assert!(ok, "still consistent after collection: {text}");
}

#[test]
fn beldi_mode_refuses_bad_input_and_fails_unknown_items_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (kv, db) = common::seeded_sqlite(
        dir.path(),
        Seed {
            hotels: 3,
            users: 2,
            capacity: 1,
        },
    );
    let (_functions, fn_addr) = common::functions(&db, &[]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let post = |path: &str, body: &str| {
        let mut r = agent
            .post(&format!("http://{fn_addr}{path}"))
            .send(body)
            .expect("post");
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().expect("body"))
    };
    // Malformed invocations: 4xx naming what is wrong; nothing written.
    let (s, t) = post("/beldi/gateway", r#"{"instance": 7}"#);
    assert_eq!(s, 400, "{t}");
    assert!(t.contains("instance"), "{t}");
    let (s, t) = post("/beldi/gateway", r#"{"instance": "a/b", "input": {}}"#);
    assert_eq!(s, 400, "{t}");
    assert!(t.contains("instance"), "{t}");
    let (s, t) = post("/beldi/nowhere", r#"{"instance": "x"}"#);
    assert_eq!(s, 404, "{t}");
    let (s, t) = post(
        "/beldi/gateway",
        r#"{"instance": "x", "input": {"fly": 1}}"#,
    );
    assert_eq!(s, 400, "{t}");
    assert!(kv.scan(ORDER).expect("scan").is_empty());
    // Unknown hotel, unknown flight, sold out: failed, nothing taken.
    let reserve_as = |id: &str, user: &str, hotel: &str, flight: &str| {
        let body = format!(
            r#"{{"instance":"reserve-{id}","input":{{"reserve":{{"user":"{user}","hotel":"{hotel}","flight":"{flight}"}}}}}}"#
        );
        post("/beldi/gateway", &body)
    };
    let reserve = |id: &str, hotel: &str, flight: &str| reserve_as(id, "user0", hotel, flight);
    let (s, t) = reserve("a", "99", "0");
    assert_eq!(s, 200, "{t}");
    assert!(t.contains("no hotel 99"), "{t}");
    let (s, t) = reserve("b", "0", "99");
    assert!(s == 200 && t.contains("no flight 99"), "{t}");
    let (s, t) = reserve_as("e", "nobody", "0", "0");
    assert!(s == 200 && t.contains("no user nobody"), "{t}");
    let (s, t) = reserve("c", "0", "0");
    assert!(s == 200 && t.contains("booked"), "{t}");
    let (s, t) = reserve("d", "0", "1");
    assert!(s == 200 && t.contains("hotel 0 is sold out"), "{t}");
    // Orders are placed asynchronously; then only the booking holds one.
    let mut told = exoflow_hotel::check::Told::new();
    for (id, outcome) in [
        ("a", "failed"),
        ("b", "failed"),
        ("c", "booked"),
        ("d", "failed"),
    ] {
        exoflow_hotel::check::tell(&mut told, id, "reserve", 200, outcome);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r =
            exoflow_hotel::check::check(kv.as_ref(), exoflow_hotel::gateway::Mode::Beldi, &told)
                .expect("check");
        if r.violations.is_empty() {
            assert_eq!(r.orders, 1);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", r.violations);
        std::thread::sleep(Duration::from_millis(100));
    }
}
