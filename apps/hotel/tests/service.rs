//! The function service as separate processes: calls retried through
//! injected failures and `kill -9` of serving processes give each
//! reservation exactly one effect; bad requests are refused with a reason.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use exoflow_hotel::client::{CallError, Functions};
use exoflow_hotel::data::{self, Seed, FLIGHT, HOTEL, ORDER};
use exoflow_hotel::functions::{Acquired, Outcome, Reservation, Resource};
use exoflow_hotel::kv::sqlite::SqliteKv;
use exoflow_hotel::kv::{Kv, Value};
use exoflow_hotel::service::Call;
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_exoflow-hotel");

/// A running function service (the supervisor and its processes), stopped
/// on drop.
struct Running {
    supervisor: Child,
    url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill with the pid of a child this test started.
        unsafe {
            libc::kill(self.supervisor.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.supervisor.wait();
    }
}

fn start(db: &str, extra: &[&str]) -> Running {
    let port = exoflow_testkit::free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let supervisor = Command::new(BIN)
        .args(["functions", "--db", db, "--listen", &addr.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the function service");
    exoflow_testkit::wait_for_port(addr, Duration::from_secs(30), "the function service");
    Running {
        supervisor,
        url: format!("http://{addr}"),
    }
}

fn cap(kv: &dyn Kv, table: &str, id: &str) -> i64 {
    kv.get(table, id)
        .expect("get")
        .and_then(|i| i.get("cap").and_then(Value::as_n))
        .expect("cap")
}

#[test]
fn reservations_take_effect_once_through_failures_and_kills() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hotel.db");
    let db = format!("sqlite:{}", path.display());
    let kv = SqliteKv::open(&path).expect("open");
    let seed = Seed {
        hotels: 5,
        users: 5,
        capacity: 100,
    };
    data::seed(&kv, &seed).expect("seed");
    let svc = start(
        &db,
        &[
            "--processes",
            "2",
            "--failure-rate",
            "0.3",
            "--failure-point",
            "after",
            "--seed",
            "7",
        ],
    );
    let client = Functions::new(&svc.url);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut kills = 0;
    let mut booked = Vec::new();
    for n in 0..40 {
        // Now and then a serving process dies with its requests in flight.
        if rng.random_bool(0.25) {
            if let Some(pid) = client.health() {
                // SAFETY: kill with the pid the service reported as its own.
                if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0 {
                    kills += 1;
                }
            }
        }
        let txn = format!("t{n}");
        let r = Reservation {
            user: "user1".into(),
            hotel: rng.random_range(0..5u32).to_string(),
            flight: rng.random_range(0..5u32).to_string(),
        };
        let acquire = |resource, id: &str| {
            client
                .call_as::<Acquired>(&Call::Acquire {
                    resource,
                    id: id.into(),
                    txn: txn.clone(),
                })
                .expect("acquire")
        };
        let hotel = acquire(Resource::Hotel, &r.hotel);
        let flight = acquire(Resource::Flight, &r.flight);
        let out: Outcome = client
            .call_as(&Call::Settle {
                txn: txn.clone(),
                reservation: r.clone(),
                hotel,
                flight,
            })
            .expect("settle");
        assert_eq!(out, Outcome::Booked, "reservation {n}");
        booked.push(r);
    }
    assert!(kills >= 3, "only {kills} kills landed");
    // Each booking took exactly one room and one seat, and left no lock.
    for i in 0..5u32 {
        let id = i.to_string();
        let rooms = booked.iter().filter(|r| r.hotel == id).count() as i64;
        let seats = booked.iter().filter(|r| r.flight == id).count() as i64;
        assert_eq!(cap(&kv, HOTEL, &id), 100 - rooms, "hotel {id}");
        assert_eq!(cap(&kv, FLIGHT, &id), 100 - seats, "flight {id}");
        for t in [HOTEL, FLIGHT] {
            let item = kv.get(t, &id).expect("get").expect("item");
            assert!(!item.contains_key("holder"), "{t}/{id} is still locked");
        }
    }
    assert_eq!(kv.scan(ORDER).expect("scan").len(), booked.len());
}

#[test]
fn bad_requests_are_refused_with_a_reason_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hotel.db");
    let kv = SqliteKv::open(&path).expect("open");
    data::seed(
        &kv,
        &Seed {
            hotels: 2,
            users: 2,
            capacity: 1,
        },
    )
    .expect("seed");
    let svc = start(&format!("sqlite:{}", path.display()), &["--processes", "1"]);
    let client = Functions::new(&svc.url).with_attempts(3);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let post = |path: &str, body: &str| {
        let mut r = agent
            .post(&format!("{}{path}", svc.url))
            .send(body)
            .expect("post");
        (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    let (status, body) = post(
        "/fn/acquire",
        r#"{"acquire":{"resource":"room","id":"1","txn":"x"}}"#,
    );
    assert_eq!(status, 400);
    assert!(body.contains("acquire.resource"), "{body}");
    let (status, body) = post("/fn/geo", "not json");
    assert_eq!(status, 400, "{body}");
    let (status, _) = post(
        "/fn/user",
        &format!(
            r#"{{"user":{{"username":"{}","password":""}}}}"#,
            "u".repeat(100_000)
        ),
    );
    assert_eq!(status, 413);
    let (status, body) = post("/fn/nosuch", r#"{"geo":{"lat":0,"lon":0}}"#);
    assert_eq!(status, 400, "{body}");
    let long = Call::Acquire {
        resource: Resource::Hotel,
        id: "1".repeat(300),
        txn: "x".into(),
    };
    assert!(matches!(
        client.call(&long),
        Err(CallError::Rejected { status: 400, .. })
    ));
    // An unknown hotel fails the reservation cleanly.
    let hotel: Acquired = client
        .call_as(&Call::Acquire {
            resource: Resource::Hotel,
            id: "77".into(),
            txn: "u".into(),
        })
        .expect("acquire");
    assert_eq!(hotel, Acquired::Unknown);
    // Nothing changed.
    assert_eq!(cap(&kv, HOTEL, "1"), 1);
    assert!(kv
        .get(HOTEL, "1")
        .expect("get")
        .is_some_and(|i| !i.contains_key("holder")));
    assert!(kv.get(HOTEL, "77").expect("get").is_none());
}
