//! The functions over a seeded SQLite database: reads, and the reservation
//! steps repeated as a crash would repeat them.

use exoflow_hotel::check::{tell, Told};
use exoflow_hotel::data::{self, Seed, FLIGHT, HOTEL, ORDER};
use exoflow_hotel::functions::{
    acquire, distance_m, geo, rate, recommend, settle, user, Acquired, Outcome, Require,
    Reservation, Resource, RADIUS_M,
};
use exoflow_hotel::gateway::Mode;
use exoflow_hotel::kv::dynamo::DynamoKv;
use exoflow_hotel::kv::sqlite::SqliteKv;
use exoflow_hotel::kv::{Kv, Value};

/// A seeded database on each backend: SQLite in a fresh file, and
/// DynamoDB's API on a moto server of the test's own.
enum Db {
    Sqlite(tempfile::TempDir, SqliteKv),
    /// The server runs as long as the database is used.
    Dynamo {
        _server: exoflow_testkit::Moto,
        kv: DynamoKv,
    },
}

impl Db {
    fn kv(&self) -> &dyn Kv {
        match self {
            Db::Sqlite(_, kv) => kv,
            Db::Dynamo { kv, .. } => kv,
        }
    }
}

fn seeded_on(dynamo: bool, seed: Seed) -> Db {
    let db = if dynamo {
        let moto = exoflow_testkit::Moto::start();
        let kv = DynamoKv::connect(Some(&moto.endpoint)).expect("connect");
        Db::Dynamo { _server: moto, kv }
    } else {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = SqliteKv::open(dir.path().join("hotel.db")).expect("open");
        Db::Sqlite(dir, kv)
    };
    let n = data::seed(db.kv(), &seed).expect("seed");
    assert!(n > 3 * seed.hotels as usize + seed.users as usize);
    db
}

fn seeded(seed: Seed) -> (tempfile::TempDir, SqliteKv) {
    match seeded_on(false, seed) {
        Db::Sqlite(dir, kv) => (dir, kv),
        Db::Dynamo { .. } => unreachable!("asked for SQLite"),
    }
}

fn cap(kv: &dyn Kv, table: &str, id: &str) -> i64 {
    kv.get(table, id)
        .expect("get")
        .and_then(|i| i.get("cap").and_then(Value::as_n))
        .expect("cap")
}

fn holder(kv: &dyn Kv, table: &str, id: &str) -> Option<String> {
    kv.get(table, id)
        .expect("get")
        .and_then(|i| i.get("holder").and_then(Value::as_str).map(str::to_owned))
}

#[test]
fn reads_answer_from_the_seed() {
    let (_d, kv) = seeded(Seed::default());
    let here = data::hotel_location(10);
    let mut r: &dyn Kv = &kv;
    let kv = &mut r;
    let near = geo(kv, here).expect("geo");
    assert_eq!(near.first().map(String::as_str), Some("10"));
    assert!(near.len() <= 5 && near.len() > 1, "{near:?}");
    for id in &near {
        let i: u32 = id.parse().expect("id");
        assert!(distance_m(here, data::hotel_location(i)) <= RADIUS_M);
    }
    let ids: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let plans = rate(kv, &ids).expect("rate");
    assert_eq!(plans.len(), 4, "hotels 0, 3, 6, 9 have plans");
    assert!(plans.windows(2).all(|w| w[0].rate >= w[1].rate));
    let cheapest = recommend(kv, Require::Price, here).expect("recommend");
    assert!(!cheapest.is_empty());
    let best = recommend(kv, Require::Rate, here).expect("recommend");
    assert!(!best.is_empty());
    assert_eq!(
        recommend(kv, Require::Dis, here).expect("recommend"),
        ["10"]
    );
    assert!(user(kv, "user7", &data::password(7)).expect("user"));
    assert!(!user(kv, "user7", "wrong").expect("user"));
    assert!(!user(kv, "nobody", "x").expect("user"));
}

#[test]
fn a_reservation_books_once_however_often_its_steps_run_sqlite() {
    books_once(false);
}

#[test]
fn a_reservation_books_once_however_often_its_steps_run_dynamodb() {
    books_once(true);
}

fn books_once(dynamo: bool) {
    let db = seeded_on(
        dynamo,
        Seed {
            hotels: 4,
            users: 2,
            capacity: 2,
        },
    );
    let kv = db.kv();
    let r = Reservation {
        user: "user1".into(),
        hotel: "1".into(),
        flight: "2".into(),
    };
    // Each step twice, as a re-executed task would run it.
    for _ in 0..2 {
        assert_eq!(
            acquire(kv, Resource::Hotel, "1", "t1").expect("lock"),
            Acquired::Held
        );
        assert_eq!(
            acquire(kv, Resource::Flight, "2", "t1").expect("lock"),
            Acquired::Held
        );
    }
    // Another reservation finds them locked, and ends cleanly.
    assert_eq!(
        acquire(kv, Resource::Hotel, "1", "t2").expect("lock"),
        Acquired::Busy
    );
    let other = settle(kv, "t2", &r, &Acquired::Busy, &Acquired::Held).expect("settle");
    assert!(
        matches!(other, Outcome::Failed(ref why) if why.contains("hotel 1")),
        "{other:?}"
    );
    assert_eq!(
        holder(kv, HOTEL, "1").as_deref(),
        Some("t1"),
        "t2 released nothing of t1's"
    );
    for _ in 0..3 {
        assert_eq!(
            settle(kv, "t1", &r, &Acquired::Held, &Acquired::Held).expect("settle"),
            Outcome::Booked
        );
    }
    assert_eq!(
        (cap(kv, HOTEL, "1"), cap(kv, FLIGHT, "2")),
        (1, 1),
        "taken once"
    );
    assert_eq!(
        (holder(kv, HOTEL, "1"), holder(kv, FLIGHT, "2")),
        (None, None)
    );
    assert!(kv.get(ORDER, "t1").expect("get").is_some());
    // A lock task re-run after the end locks nothing.
    assert_eq!(
        acquire(kv, Resource::Hotel, "1", "t1").expect("lock"),
        Acquired::Settled
    );
    assert_eq!(holder(kv, HOTEL, "1"), None);
    assert_eq!(kv.scan(ORDER).expect("scan").len(), 1);
}

#[test]
fn sold_out_and_unknown_items_or_users_fail_cleanly_and_release_their_locks_sqlite() {
    fails_cleanly(false);
}

#[test]
fn sold_out_and_unknown_items_or_users_fail_cleanly_and_release_their_locks_dynamodb() {
    fails_cleanly(true);
}

fn fails_cleanly(dynamo: bool) {
    let db = seeded_on(
        dynamo,
        Seed {
            hotels: 2,
            users: 1,
            capacity: 1,
        },
    );
    let kv = db.kv();
    let r = |hotel: &str, flight: &str| Reservation {
        user: "user0".into(),
        hotel: hotel.into(),
        flight: flight.into(),
    };
    let h = acquire(kv, Resource::Hotel, "0", "a").expect("lock");
    let f = acquire(kv, Resource::Flight, "0", "a").expect("lock");
    assert_eq!(
        settle(kv, "a", &r("0", "0"), &h, &f).expect("settle"),
        Outcome::Booked
    );
    // Hotel 0 is full now: the next one fails and keeps nothing locked.
    let h = acquire(kv, Resource::Hotel, "0", "b").expect("lock");
    let f = acquire(kv, Resource::Flight, "1", "b").expect("lock");
    assert_eq!((&h, &f), (&Acquired::SoldOut, &Acquired::Held));
    let out = settle(kv, "b", &r("0", "1"), &h, &f).expect("settle");
    assert!(
        matches!(out, Outcome::Failed(ref why) if why.contains("sold out")),
        "{out:?}"
    );
    assert_eq!(
        (holder(kv, HOTEL, "0"), holder(kv, FLIGHT, "1")),
        (None, None)
    );
    assert_eq!(cap(kv, FLIGHT, "1"), 1, "the seat was not taken");
    // Settling again repeats the decision.
    assert_eq!(settle(kv, "b", &r("0", "1"), &h, &f).expect("settle"), out);
    // An unknown hotel.
    let h = acquire(kv, Resource::Hotel, "99", "c").expect("lock");
    assert_eq!(h, Acquired::Unknown);
    assert!(
        kv.get(HOTEL, "99").expect("get").is_none(),
        "nothing created"
    );
    let f = acquire(kv, Resource::Flight, "1", "c").expect("lock");
    let out = settle(kv, "c", &r("99", "1"), &h, &f).expect("settle");
    assert!(
        matches!(out, Outcome::Failed(ref why) if why.contains("no hotel 99")),
        "{out:?}"
    );
    assert_eq!(holder(kv, FLIGHT, "1"), None);
    // An unknown user: both locks held, nothing booked, both released.
    let h = acquire(kv, Resource::Hotel, "1", "d").expect("lock");
    let f = acquire(kv, Resource::Flight, "1", "d").expect("lock");
    assert_eq!((&h, &f), (&Acquired::Held, &Acquired::Held));
    let nobody = Reservation {
        user: "nobody".into(),
        ..r("1", "1")
    };
    let out = settle(kv, "d", &nobody, &h, &f).expect("settle");
    assert!(
        matches!(out, Outcome::Failed(ref why) if why.contains("no user nobody")),
        "{out:?}"
    );
    assert_eq!(
        (holder(kv, HOTEL, "1"), holder(kv, FLIGHT, "1")),
        (None, None)
    );
    assert_eq!((cap(kv, HOTEL, "1"), cap(kv, FLIGHT, "1")), (1, 1));
    assert_eq!(kv.scan(ORDER).expect("scan").len(), 1);
}

#[test]
fn check_passes_after_reservations_and_names_each_inconsistency() {
    use exoflow_hotel::check::check;
    use exoflow_hotel::kv::{item, Change};
    let (_d, kv) = seeded(Seed {
        hotels: 3,
        users: 1,
        capacity: 2,
    });
    let r = |h: &str, f: &str| Reservation {
        user: "user0".into(),
        hotel: h.into(),
        flight: f.into(),
    };
    for (txn, h, f) in [("a", "0", "1"), ("b", "0", "2"), ("c", "0", "1")] {
        let ha = acquire(&kv, Resource::Hotel, h, txn).expect("lock");
        let fa = acquire(&kv, Resource::Flight, f, txn).expect("lock");
        settle(&kv, txn, &r(h, f), &ha, &fa).expect("settle");
    }
    let ok = check(&kv, Mode::Exoflow, &Told::new()).expect("check");
    assert_eq!((ok.orders, ok.failed), (2, 1), "hotel 0 sold out for c");
    assert!(ok.violations.is_empty(), "{:?}", ok.violations);
    // A room taken twice, a lock left, an order without its decision.
    kv.update(HOTEL, "0", &[Change::add("cap", -1)], None)
        .expect("tamper");
    kv.update(FLIGHT, "2", &[Change::set("holder", "z")], None)
        .expect("tamper");
    kv.put(
        ORDER,
        "z",
        item([("hotel", "1".into()), ("flight", "1".into())]),
        None,
    )
    .expect("tamper");
    let bad = check(&kv, Mode::Exoflow, &Told::new()).expect("check");
    let all = bad.violations.join("\n");
    assert!(
        all.contains("hotel_rooms/0: capacity -1 below zero"),
        "{all}"
    );
    assert!(all.contains("hotel_flights/2: still locked"), "{all}");
    assert!(all.contains("order z has no booked decision"), "{all}");
    // What clients were told: a booking without its order, a failure with
    // one, an order no client asked for.
    let mut told = Told::new();
    tell(&mut told, "x", "reserve", 200, "booked");
    tell(&mut told, "y", "reserve", 200, "failed");
    tell(&mut told, "w", "reserve", 0, "error");
    kv.put(ORDER, "reserve-y", item([("hotel", "3".into())]), None)
        .expect("tamper");
    let all = check(&kv, Mode::Beldi, &told)
        .expect("check")
        .violations
        .join("\n");
    assert!(
        all.contains("reserve-x was answered booked but has no order"),
        "{all}"
    );
    assert!(
        all.contains("reserve-y was answered failed but has an order"),
        "{all}"
    );
    assert!(
        all.contains("order z is no reservation of the CSVs"),
        "{all}"
    );
    assert!(!all.contains("reserve-w"), "unanswered: either way: {all}");
    assert!(
        all.contains("hotel_rooms/1: 2 left, but 2 seeded less 1 orders is 1"),
        "{all}"
    );
}
