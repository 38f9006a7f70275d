//! The gateway in exoflow mode, as processes: clients send reservations
//! (retrying a request under its id until it is answered) while the
//! gateway is killed with `kill -9` and restarted and the functions fail
//! at random; every reservation is then answered, and the database holds
//! exactly the bookings the clients were told of.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exoflow_hotel::data::{self, Seed, FLIGHT, HOTEL, ORDER};
use exoflow_hotel::kv::Value;
use rand::{Rng, SeedableRng};

mod common;
use common::{addr, spawn};

/// Posts `body` to the gateway until it answers (any status but a lost
/// connection or a 5xx); the answer's body.
fn ask(agent: &ureq::Agent, url: &str, body: &str, deadline: Instant) -> serde_json::Value {
    loop {
        assert!(Instant::now() < deadline, "no answer to {body}");
        if let Ok(mut r) = agent.post(url).send(body) {
            let status = r.status().as_u16();
            if let Ok(text) = r.body_mut().read_to_string() {
                if status < 500 {
                    assert_eq!(status, 200, "{body}: {text}");
                    return serde_json::from_str(&text).expect("JSON answer");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_reservations(variant: &str, dynamo: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    // The database: a SQLite file, or DynamoDB's API on a moto server of
    // this test's own (its credentials are inherited by the processes).
    let moto = dynamo.then(exoflow_testkit::Moto::start);
    let db = match &moto {
        Some(m) => format!("dynamodb:{}", m.endpoint),
        None => format!("sqlite:{}", dir.path().join("hotel.db").display()),
    };
    let kv = exoflow_hotel::kv::open(&db).expect("open");
    let kv = kv.as_ref();
    let (hotels, capacity) = (4u32, 6i64);
    data::seed(
        kv,
        &Seed {
            hotels,
            users: 4,
            capacity,
        },
    )
    .expect("seed");
    let (_functions, fn_addr) = common::functions(
        &db,
        &[
            "--processes",
            "2",
            "--failure-rate",
            "0.1",
            "--failure-point",
            "after",
            "--seed",
            "3",
        ],
    );
    let gw_addr = addr();
    let gw_args: Vec<String> = [
        "gateway",
        "--functions",
        &format!("http://{fn_addr}"),
        "--store",
        &store.display().to_string(),
        "--listen",
        &gw_addr.to_string(),
        "--reserve",
        variant,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let start_gateway = move || {
        let args: Vec<&str> = gw_args.iter().map(String::as_str).collect();
        let p = spawn(&args);
        exoflow_testkit::wait_for_port(gw_addr, Duration::from_secs(30), "the gateway");
        p
    };
    let start_gateway = Arc::new(start_gateway);
    let gateway = Arc::new(Mutex::new(Some(start_gateway())));
    // Clients: 60 reservations over 4 hotels of 6 rooms, so some sell out.
    let url = format!("http://{gw_addr}/request");
    let answers = Arc::new(Mutex::new(Vec::new()));
    // Each client holds its last request until every kill has landed.
    let killed_all = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(90);
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let (url, answers, killed_all) = (url.clone(), answers.clone(), killed_all.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(20)))
                    .build()
                    .into();
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(c);
                for n in 0..20 {
                    while n == 19 && !killed_all.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    let (h, f) = (rng.random_range(0..hotels), rng.random_range(0..hotels));
                    let body = format!(
                        r#"{{"id":"c{c}-{n}","ask":{{"reserve":{{"user":"user{c}","hotel":"{h}","flight":"{f}"}}}}}}"#
                    );
                    let a = ask(&agent, &url, &body, deadline);
                    answers.lock().expect("lock").push((h, f, a));
                }
            })
        })
        .collect();
    // kill -9 the gateway at seeded points of the clients' progress (other
    // requests are then in flight), and start it again.
    let killer = {
        let (gateway, answers, killed_all) = (gateway.clone(), answers.clone(), killed_all.clone());
        let start_gateway = start_gateway.clone();
        std::thread::spawn(move || {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
            let mut points: Vec<usize> = (0..4).map(|_| rng.random_range(5..55)).collect();
            points.sort_unstable();
            let mut kills = 0;
            for p in points {
                // At most 57 answers come before the kills end.
                while answers.lock().expect("lock").len() < p {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let mut g = gateway.lock().expect("lock");
                if let Some(mut p) = g.take() {
                    let _ = p.0.kill();
                    let _ = p.0.wait();
                    kills += 1;
                }
                *g = Some(start_gateway());
            }
            killed_all.store(true, Ordering::SeqCst);
            kills
        })
    };
    for c in clients {
        c.join().expect("client");
    }
    let kills = killer.join().expect("killer");
    assert_eq!(kills, 4, "every kill lands while clients wait");
    // Let the last gateway finish what it resumed (a settle may follow an
    // answer only when a client got its answer from an earlier attempt).
    std::thread::sleep(Duration::from_millis(500));
    let answers = answers.lock().expect("lock").clone();
    assert_eq!(answers.len(), 60);
    let sold_out = answers
        .iter()
        .filter(|(_, _, a)| a.to_string().contains("sold out"))
        .count();
    assert!(sold_out > 0, "60 reservations of 24 rooms: some sell out");
    let booked: Vec<(u32, u32)> = answers
        .iter()
        .filter(|(_, _, a)| a.get("reserve").and_then(|r| r.as_str()) == Some("booked"))
        .map(|(h, f, _)| (*h, *f))
        .collect();
    for (_, _, a) in &answers {
        let r = a.get("reserve").expect("a reservation answer");
        assert!(
            r.as_str() == Some("booked") || r.get("failed").is_some(),
            "{a}"
        );
    }
    assert_eq!(
        kv.scan(ORDER).expect("scan").len(),
        booked.len(),
        "orders = bookings told"
    );
    let report = exoflow_hotel::check::check(kv).expect("check");
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!(
        report.orders + report.failed,
        60,
        "every reservation decided once"
    );
    for i in 0..hotels {
        let id = i.to_string();
        let rooms = booked.iter().filter(|b| b.0 == i).count() as i64;
        let seats = booked.iter().filter(|b| b.1 == i).count() as i64;
        let left = |t: &str| {
            let item = kv.get(t, &id).expect("get").expect("item");
            assert!(!item.contains_key("holder"), "{t}/{id} still locked");
            item.get("cap").and_then(Value::as_n).expect("cap")
        };
        assert_eq!(left(HOTEL), capacity - rooms, "hotel {id}");
        assert_eq!(left(FLIGHT), capacity - seats, "flight {id}");
    }
    drop(gateway);
}

#[test]
fn reservations_are_exactly_once_through_gateway_kills_parallel() {
    run_reservations("parallel", false);
}

#[test]
fn reservations_are_exactly_once_through_gateway_kills_parallel_dynamodb() {
    run_reservations("parallel", true);
}

#[test]
fn reservations_are_exactly_once_through_gateway_kills_async() {
    run_reservations("async", false);
}
