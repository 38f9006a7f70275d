//! Two gateways sharing a workflow store and a database, and the function
//! service, as processes, in both modes: clients send reservations
//! (retrying a request under its id, on the other gateway, until it is
//! answered) while `kill -9` hits, at seeded points of their progress, the
//! gateways (restarted) and serving processes (restarted by their
//! supervisor), and the functions fail at random after their writes; every
//! reservation is then answered, some sell out, and the database holds
//! exactly the bookings the clients were told of.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exoflow_hotel::client::Functions;
use exoflow_hotel::data::{self, Seed, FLIGHT, HOTEL, ORDER};
use exoflow_hotel::gateway::Mode;
use exoflow_hotel::kv::Value;
use rand::{Rng, SeedableRng};

mod common;
use common::{addr, spawn};

/// Posts `body` to a gateway until one answers (any status but a lost
/// connection or a 5xx), starting with `urls[first]` and turning to the
/// next after each failure; the answer's body.
fn ask(
    agent: &ureq::Agent,
    urls: &[String],
    first: usize,
    body: &str,
    deadline: Instant,
) -> serde_json::Value {
    for attempt in first.. {
        assert!(Instant::now() < deadline, "no answer to {body}");
        if let Ok(mut r) = agent.post(&urls[attempt % urls.len()]).send(body) {
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
    unreachable!("an endless loop")
}

/// Gateways sharing the workflow store and the database.
const GATEWAYS: usize = 2;

/// Kills: at least this many land in a run, half of them gateways.
const KILLS: usize = 12;
/// Clients, and reservations each.
const CLIENTS: u64 = 3;
const EACH: u64 = 30;

fn run_reservations(mode: Mode, variant: &str, dynamo: bool) {
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
    let gw_addrs: Vec<_> = (0..GATEWAYS).map(|_| addr()).collect();
    let gw_args = |k: usize| -> Vec<String> {
        let gw_addr = gw_addrs[k];
        [
            "gateway",
            "--functions",
            &format!("http://{fn_addr}"),
            "--store",
            &store.display().to_string(),
            "--listen",
            &gw_addr.to_string(),
            "--reserve",
            variant,
            "--mode",
            match mode {
                Mode::Exoflow => "exoflow",
                Mode::Beldi => "beldi",
            },
            // Beldi's collector re-runs what a kill left, soon.
            "--collect-every",
            "1",
            "--intent-timeout",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args: Vec<Vec<String>> = (0..GATEWAYS).map(gw_args).collect();
    let addrs = gw_addrs.clone();
    let start_gateway = move |k: usize| {
        let a: Vec<&str> = args[k].iter().map(String::as_str).collect();
        let p = spawn(&a);
        exoflow_testkit::wait_for_port(addrs[k], Duration::from_secs(30), "the gateway");
        p
    };
    let start_gateway = Arc::new(start_gateway);
    let gateway: Arc<Vec<Mutex<Option<common::Proc>>>> = Arc::new(
        (0..GATEWAYS)
            .map(|k| Mutex::new(Some(start_gateway(k))))
            .collect(),
    );
    // Clients: 90 reservations over 4 hotels of 6 rooms, so some sell out;
    // each request to one of the gateways, a retry to the next.
    let urls: Vec<String> = gw_addrs
        .iter()
        .map(|a| format!("http://{a}/request"))
        .collect();
    let answers = Arc::new(Mutex::new(Vec::new()));
    // Each client holds its last request until every kill has landed.
    let killed_all = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(100);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (urls, answers, killed_all) = (urls.clone(), answers.clone(), killed_all.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(20)))
                    .build()
                    .into();
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(c);
                for n in 0..EACH {
                    while n == EACH - 1 && !killed_all.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    let (h, f) = (rng.random_range(0..hotels), rng.random_range(0..hotels));
                    let body = format!(
                        r#"{{"id":"c{c}-{n}","ask":{{"reserve":{{"user":"user{c}","hotel":"{h}","flight":"{f}"}}}}}}"#
                    );
                    let a = ask(&agent, &urls, (c + n) as usize, &body, deadline);
                    answers
                        .lock()
                        .expect("lock")
                        .push((format!("c{c}-{n}"), h, f, a));
                }
            })
        })
        .collect();
    // kill -9 at seeded points of the clients' progress (other requests are
    // then in flight): the gateway, started again; or the serving process
    // that answers a health probe, which its supervisor restarts.
    let killer = {
        let (gateway, answers, killed_all) = (gateway.clone(), answers.clone(), killed_all.clone());
        let start_gateway = start_gateway.clone();
        let probe = Functions::new(&format!("http://{fn_addr}")).with_attempts(50);
        std::thread::spawn(move || {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
            let total = (CLIENTS * EACH) as usize;
            let mut points: Vec<usize> = (0..KILLS)
                .map(|_| rng.random_range(3..total - CLIENTS as usize - 3))
                .collect();
            points.sort_unstable();
            let (mut gateways, mut serving) = (0, 0);
            for (i, p) in points.into_iter().enumerate() {
                // The last request of each client waits for the kills.
                while answers.lock().expect("lock").len() < p {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if i % 2 == 0 {
                    let k = (i / 2) % GATEWAYS;
                    let mut g = gateway[k].lock().expect("lock");
                    if let Some(mut p) = g.take() {
                        let _ = p.0.kill();
                        let _ = p.0.wait();
                        gateways += 1;
                    }
                    *g = Some(start_gateway(k));
                } else if let Some(pid) = probe.health() {
                    // SAFETY: kill with the pid the service reported as its own.
                    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0 {
                        serving += 1;
                    }
                }
            }
            killed_all.store(true, Ordering::SeqCst);
            (gateways, serving)
        })
    };
    for c in clients {
        c.join().expect("client");
    }
    let (gateways, serving) = killer.join().expect("killer");
    assert_eq!(gateways, KILLS / 2, "every gateway kill lands");
    assert!(
        gateways + serving >= 10,
        "only {serving} kills of serving processes landed"
    );
    let answers = answers.lock().expect("lock").clone();
    let total = (CLIENTS * EACH) as usize;
    assert_eq!(answers.len(), total);
    let mut told = exoflow_hotel::check::Told::new();
    for (id, _, _, a) in &answers {
        let r = a.get("reserve").expect("a reservation answer");
        let outcome = if r.as_str() == Some("booked") {
            "booked"
        } else {
            "failed"
        };
        exoflow_hotel::check::tell(&mut told, id, "reserve", 200, outcome);
    }
    // What is left runs to its end: in exoflow mode, a settle that follows
    // an answer given by an earlier attempt; in Beldi mode, orders placed
    // asynchronously and the collector's re-runs.
    let start = Instant::now();
    let report = loop {
        let r = exoflow_hotel::check::check(kv, mode, &told).expect("check");
        if (r.violations.is_empty() && r.pending == 0) || start.elapsed() > Duration::from_secs(20)
        {
            break r;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    let sold_out = answers
        .iter()
        .filter(|(_, _, _, a)| a.to_string().contains("sold out"))
        .count();
    assert!(sold_out > 0, "90 reservations of 24 rooms: some sell out");
    let booked: Vec<(u32, u32)> = answers
        .iter()
        .filter(|(_, _, _, a)| a.get("reserve").and_then(|r| r.as_str()) == Some("booked"))
        .map(|(_, h, f, _)| (*h, *f))
        .collect();
    for (_, _, _, a) in &answers {
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
    assert_eq!(
        report.orders + report.failed,
        total,
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
fn exoflow_parallel_is_exactly_once_through_kills() {
    run_reservations(Mode::Exoflow, "parallel", false);
}

#[test]
fn exoflow_parallel_is_exactly_once_through_kills_on_dynamodb() {
    run_reservations(Mode::Exoflow, "parallel", true);
}

#[test]
fn exoflow_async_is_exactly_once_through_kills() {
    run_reservations(Mode::Exoflow, "async", false);
}

#[test]
fn beldi_is_exactly_once_through_kills() {
    run_reservations(Mode::Beldi, "parallel", false);
}

#[test]
fn beldi_is_exactly_once_through_kills_on_dynamodb() {
    run_reservations(Mode::Beldi, "parallel", true);
}
