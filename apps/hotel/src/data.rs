//! The benchmark's tables and seed data, in the shape of Beldi's hotel
//! benchmark (DeathStarBench's hotel reservation with flights): hotels with
//! a location, a profile, a rate plan for every third one and a
//! recommendation entry; flights; users with passwords. Everything is
//! generated from the index, so every seed of the same size is identical.
//!
//! Coordinates are integers in micro-degrees, prices in cents: exact in the
//! database and in comparisons.

use crate::kv::{item, Item, Kv, KvError, Value};

/// Hotel locations: `lat`, `lon` (micro-degrees).
pub const GEO: &str = "hotel_geo";
/// Hotel profiles: `name`, `phone`, `address`, `description`.
pub const PROFILE: &str = "hotel_profile";
/// Rate plans: `code`, `in_date`, `out_date`, `room`, `rate`, `rate_incl`
/// (cents).
pub const RATE: &str = "hotel_rate";
/// Recommendation data: `lat`, `lon`, `rating` (tenths), `price` (cents).
pub const RECOMMEND: &str = "hotel_recommend";
/// Users: `password`.
pub const USER: &str = "hotel_user";
/// Hotels' rooms: `cap` (rooms left); a reservation in progress holds
/// `holder` (its transaction).
pub const HOTEL: &str = "hotel_rooms";
/// Flights' seats: `cap`, `holder`, as for hotels.
pub const FLIGHT: &str = "hotel_flights";
/// Orders, one per booked reservation, keyed by its transaction: `user`,
/// `hotel`, `flight`.
pub const ORDER: &str = "hotel_orders";
/// The decision of every settled reservation, keyed by its transaction:
/// `outcome` (`booked` or `failed`) and `why`.
pub const TXNS: &str = "hotel_txns";

/// What was seeded, under the key `seed`: `hotels`, `users`, `capacity`
/// (what `check` compares the capacities left with).
pub const META: &str = "hotel_meta";

/// Every table of the application.
pub const TABLES: [&str; 10] = [
    GEO, PROFILE, RATE, RECOMMEND, USER, HOTEL, FLIGHT, ORDER, TXNS, META,
];

/// How much to seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    /// Hotels (and flights): ids `0..hotels`.
    pub hotels: u32,
    /// Users: `user0..user{users-1}`.
    pub users: u32,
    /// Rooms per hotel and seats per flight.
    pub capacity: i64,
}

impl Default for Seed {
    /// Beldi's sizes: 100 hotels and 100 flights, 500 users; a capacity of
    /// 1,000 so that a figure's reservations do not sell out.
    fn default() -> Self {
        Self {
            hotels: 100,
            users: 500,
            capacity: 1000,
        }
    }
}

/// A hotel's location: a grid around San Francisco, as in the benchmark.
pub fn hotel_location(i: u32) -> (i64, i64) {
    let i = i64::from(i);
    (37_783_500 + i * 6_000, -122_410_000 + i * 8_000)
}

/// The hotel id of index `i`, and its flight's.
pub fn hotel_id(i: u32) -> String {
    i.to_string()
}

/// The user name of index `i`.
pub fn user_name(i: u32) -> String {
    format!("user{i}")
}

/// The password of user `i` (the benchmark's: the index, repeated).
pub fn password(i: u32) -> String {
    i.to_string().repeat(10)
}

/// The rate plan's nightly rate and inclusive rate, in cents, by `i % 5`.
fn rates(i: u32) -> (i64, i64) {
    match i % 5 {
        0 => (10_900, 12_317),
        1 => (12_000, 14_000),
        2 => (12_400, 14_400),
        3 => (13_200, 15_800),
        _ => (23_200, 25_800),
    }
}

/// The items of every table for `seed`, table by table.
pub fn items(seed: &Seed) -> Vec<(&'static str, String, Item)> {
    let mut out = Vec::new();
    for i in 0..seed.hotels {
        let id = hotel_id(i);
        let (lat, lon) = hotel_location(i);
        out.push((
            GEO,
            id.clone(),
            item([("lat", lat.into()), ("lon", lon.into())]),
        ));
        out.push((
            PROFILE,
            id.clone(),
            item([
                ("name", format!("Hotel {i}").into()),
                ("phone", format!("(415) 555-{:04}", i % 10_000).into()),
                (
                    "address",
                    format!("{} Market St, San Francisco, CA", 100 + i).into(),
                ),
                ("description", "A clean room, a quiet street.".into()),
            ]),
        ));
        if i % 3 == 0 {
            let (rate, incl) = rates(i);
            let out_day = if i % 2 == 0 { 17 } else { 24 };
            out.push((
                RATE,
                id.clone(),
                item([
                    ("code", "RACK".into()),
                    ("in_date", "2015-04-09".into()),
                    ("out_date", format!("2015-04-{out_day}").into()),
                    ("room", "KNG".into()),
                    ("rate", rate.into()),
                    ("rate_incl", incl.into()),
                ]),
            ));
        }
        let (rating, price) = if i % 3 == 0 {
            (i64::from(30 + i % 20), rates(i).1)
        } else {
            (35, 17_900)
        };
        out.push((
            RECOMMEND,
            id.clone(),
            item([
                ("lat", lat.into()),
                ("lon", lon.into()),
                ("rating", rating.into()),
                ("price", price.into()),
            ]),
        ));
        out.push((HOTEL, id.clone(), item([("cap", seed.capacity.into())])));
        out.push((FLIGHT, id, item([("cap", seed.capacity.into())])));
    }
    for u in 0..seed.users {
        out.push((USER, user_name(u), item([("password", password(u).into())])));
    }
    out.push((
        META,
        "seed".to_owned(),
        item([
            ("hotels", i64::from(seed.hotels).into()),
            ("users", i64::from(seed.users).into()),
            ("capacity", seed.capacity.into()),
        ]),
    ));
    out
}

/// The seed recorded in the database, if it was seeded.
pub fn recorded_seed(kv: &dyn Kv) -> Result<Option<Seed>, KvError> {
    let found = match kv.get(META, "seed") {
        Err(KvError::Invalid(m)) if m.starts_with("no table") => None,
        other => other?,
    };
    let Some(i) = found else {
        return Ok(None);
    };
    let n = |a: &str| int(&i, META, "seed", a);
    let small = |a: &str| -> Result<u32, KvError> {
        u32::try_from(n(a)?).map_err(|_| KvError::Invalid(format!("{META}/seed: {a} out of range")))
    };
    Ok(Some(Seed {
        hotels: small("hotels")?,
        users: small("users")?,
        capacity: n("capacity")?,
    }))
}

/// Creates the tables (Beldi's too) and writes the seed (replacing what is there).
/// Returns the number of items written.
pub fn seed(kv: &dyn Kv, seed: &Seed) -> Result<usize, KvError> {
    kv.create_tables(&TABLES)?;
    kv.create_tables(&crate::beldi::TABLES)?;
    let items = items(seed);
    for (table, key, item) in &items {
        kv.put(table, key, item.clone(), None)?;
    }
    Ok(items.len())
}

/// An integer attribute of an item, or an error naming it.
pub fn int(item: &Item, table: &str, key: &str, attr: &str) -> Result<i64, KvError> {
    item.get(attr)
        .and_then(Value::as_n)
        .ok_or_else(|| KvError::Backend {
            backend: "data",
            op: "read",
            message: format!("{table}/{key} has no integer attribute {attr}"),
        })
}
