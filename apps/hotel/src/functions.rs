//! The benchmark's functions, as plain Rust over a [`Kv`]: what each one
//! reads and writes, independent of how it is invoked (the function
//! service) and of the exactly-once protocol around it (workflows or
//! Beldi's logs).
//!
//! Reads: `geo` (the nearest hotels), `rate` (their rate plans), `profile`,
//! `recommend` (by distance, rating or price) and `user` (a login check).
//! A reservation in exoflow mode is a transaction whose id is its
//! workflow's: `acquire` locks a hotel's room or a flight's seat for the
//! transaction (re-entrant, so a re-executed task repeats nothing) and
//! checks that one is left; `settle` then books both with one database
//! transaction (capacity taken, locks released, the order written) or
//! releases what was locked. Every step can run again after a crash with
//! the same effect.

use serde::{Deserialize, Serialize};

use crate::data::{int, FLIGHT, GEO, HOTEL, ORDER, PROFILE, RATE, RECOMMEND, TXNS, USER};
use crate::kv::{item, Change, Cond, Item, Kv, KvError, Value, Write};

/// Hotels returned by `geo`, at most.
pub const NEAREST: usize = 5;
/// How far `geo` looks, in meters.
pub const RADIUS_M: f64 = 10_000.0;

/// Distance in meters between two points given in micro-degrees
/// (haversine on a sphere of the Earth's mean radius).
pub fn distance_m(a: (i64, i64), b: (i64, i64)) -> f64 {
    let rad = |micro: i64| (micro as f64 / 1e6).to_radians();
    let (la1, lo1, la2, lo2) = (rad(a.0), rad(a.1), rad(b.0), rad(b.1));
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * h.sqrt().asin()
}

/// Where the read-only functions read: the database itself (exoflow
/// mode: a re-run reads again, and repeats no effect) or Beldi's logged
/// reads, which a re-executed function replays.
pub trait Reader {
    /// The item at `key`.
    fn get(&mut self, table: &str, key: &str) -> Result<Option<Item>, KvError>;
    /// Every item of a table, by key.
    fn scan(&mut self, table: &str) -> Result<Vec<(String, Item)>, KvError>;
}

impl Reader for &dyn Kv {
    fn get(&mut self, table: &str, key: &str) -> Result<Option<Item>, KvError> {
        Kv::get(*self, table, key)
    }

    fn scan(&mut self, table: &str) -> Result<Vec<(String, Item)>, KvError> {
        Kv::scan(*self, table)
    }
}

fn point(table: &str, key: &str, i: &Item) -> Result<(i64, i64), KvError> {
    Ok((int(i, table, key, "lat")?, int(i, table, key, "lon")?))
}

/// The ids of the hotels nearest to `at` (micro-degrees), at most
/// [`NEAREST`] within [`RADIUS_M`], nearest first (ties by id).
pub fn geo(kv: &mut impl Reader, at: (i64, i64)) -> Result<Vec<String>, KvError> {
    let mut near = Vec::new();
    for (id, i) in kv.scan(GEO)? {
        let d = distance_m(at, point(GEO, &id, &i)?);
        if d <= RADIUS_M {
            near.push((d, id));
        }
    }
    near.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    Ok(near.into_iter().take(NEAREST).map(|(_, id)| id).collect())
}

/// A hotel's rate plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatePlan {
    /// The hotel.
    pub hotel: String,
    /// The plan's code.
    pub code: String,
    /// Check-in date.
    pub in_date: String,
    /// Check-out date.
    pub out_date: String,
    /// Nightly rate, cents.
    pub rate: i64,
    /// Nightly rate with taxes, cents.
    pub rate_incl: i64,
}

fn text(i: &Item, attr: &str) -> String {
    i.get(attr)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The rate plans of `hotels` that have one, highest rate first.
pub fn rate(kv: &mut impl Reader, hotels: &[String]) -> Result<Vec<RatePlan>, KvError> {
    let mut plans = Vec::new();
    for h in hotels {
        if let Some(i) = kv.get(RATE, h)? {
            plans.push(RatePlan {
                hotel: h.clone(),
                code: text(&i, "code"),
                in_date: text(&i, "in_date"),
                out_date: text(&i, "out_date"),
                rate: int(&i, RATE, h, "rate")?,
                rate_incl: int(&i, RATE, h, "rate_incl")?,
            });
        }
    }
    plans.sort_by(|a, b| b.rate.cmp(&a.rate).then_with(|| a.hotel.cmp(&b.hotel)));
    Ok(plans)
}

/// A hotel's profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The hotel.
    pub hotel: String,
    /// Its name.
    pub name: String,
    /// Its phone number.
    pub phone: String,
    /// Its address.
    pub address: String,
}

/// The profiles of `hotels` that exist.
pub fn profile(kv: &mut impl Reader, hotels: &[String]) -> Result<Vec<Profile>, KvError> {
    let mut out = Vec::new();
    for h in hotels {
        if let Some(i) = kv.get(PROFILE, h)? {
            out.push(Profile {
                hotel: h.clone(),
                name: text(&i, "name"),
                phone: text(&i, "phone"),
                address: text(&i, "address"),
            });
        }
    }
    Ok(out)
}

/// What a recommendation optimizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// The nearest hotels.
    Dis,
    /// The best rated.
    Rate,
    /// The cheapest.
    Price,
}

/// The hotels that are best by `require` (all that tie), by id.
pub fn recommend(
    kv: &mut impl Reader,
    require: Require,
    at: (i64, i64),
) -> Result<Vec<String>, KvError> {
    let mut scored: Vec<(f64, String)> = Vec::new();
    for (id, i) in kv.scan(RECOMMEND)? {
        let score = match require {
            Require::Dis => distance_m(at, point(RECOMMEND, &id, &i)?),
            Require::Rate => -(int(&i, RECOMMEND, &id, "rating")? as f64),
            Require::Price => int(&i, RECOMMEND, &id, "price")? as f64,
        };
        scored.push((score, id));
    }
    let best = scored.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
    let mut ids: Vec<String> = scored
        .into_iter()
        .filter(|s| s.0 == best)
        .map(|s| s.1)
        .collect();
    ids.sort();
    Ok(ids)
}

/// Whether `password` is user `name`'s (an unknown user is not).
pub fn user(kv: &mut impl Reader, name: &str, password: &str) -> Result<bool, KvError> {
    Ok(kv
        .get(USER, name)?
        .is_some_and(|i| i.get("password").and_then(Value::as_str) == Some(password)))
}

/// What a reservation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// A room of a hotel.
    Hotel,
    /// A seat of a flight.
    Flight,
}

impl Resource {
    /// Its table.
    pub fn table(self) -> &'static str {
        match self {
            Resource::Hotel => HOTEL,
            Resource::Flight => FLIGHT,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Resource::Hotel => "hotel",
            Resource::Flight => "flight",
        }
    }
}

/// What `acquire` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acquired {
    /// Locked for the transaction, with one left to take.
    Held,
    /// No such hotel or flight.
    Unknown,
    /// Locked by another reservation in progress.
    Busy,
    /// None left.
    SoldOut,
    /// The transaction has ended already (settled by an earlier run of
    /// this reservation): nothing is locked again.
    Settled,
}

/// Locks `id` of `what` for transaction `txn` (re-entrant: a repeated call
/// finds it held already) and checks that one is left. A lock is released
/// by [`settle`] only; `Busy` and `Unknown` leave nothing locked, `SoldOut`
/// leaves the lock for `settle` to release. A transaction that has ended
/// locks nothing again.
pub fn acquire(kv: &dyn Kv, what: Resource, id: &str, txn: &str) -> Result<Acquired, KvError> {
    if kv.get(TXNS, txn)?.is_some() {
        return Ok(Acquired::Settled);
    }
    let table = what.table();
    let free_or_ours = Cond::And(vec![
        Cond::Exists,
        Cond::Or(vec![Cond::lacks("holder"), Cond::eq("holder", txn)]),
    ]);
    match kv.update(table, id, &[Change::set("holder", txn)], Some(free_or_ours)) {
        Ok(i) if int(&i, table, id, "cap")? >= 1 => Ok(Acquired::Held),
        Ok(_) => Ok(Acquired::SoldOut),
        Err(e) if e.is_condition() => match kv.get(table, id)? {
            None => Ok(Acquired::Unknown),
            Some(_) => Ok(Acquired::Busy),
        },
        Err(e) => Err(e),
    }
}

/// A reservation's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Who books.
    pub user: String,
    /// The hotel.
    pub hotel: String,
    /// The flight.
    pub flight: String,
}

/// How a reservation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A room and a seat taken, the order written.
    Booked,
    /// Nothing taken; why.
    Failed(String),
}

/// The decision recorded for transaction `txn`, if it has ended.
pub fn decision(kv: &dyn Kv, txn: &str) -> Result<Option<Outcome>, KvError> {
    Ok(kv.get(TXNS, txn)?.map(|i| {
        if i.get("outcome").and_then(Value::as_str) == Some("booked") {
            Outcome::Booked
        } else {
            Outcome::Failed(
                i.get("why")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    }))
}

/// Ends transaction `txn`: books the reservation if both resources are
/// `Held`, in one database transaction (each capacity taken once and its
/// lock released, the order written, the decision recorded), else releases
/// what `txn` holds and records the failure. Idempotent: a transaction that
/// has ended reports its recorded decision and changes nothing.
pub fn settle(
    kv: &dyn Kv,
    txn: &str,
    r: &Reservation,
    hotel: &Acquired,
    flight: &Acquired,
) -> Result<Outcome, KvError> {
    if let Some(d) = decision(kv, txn)? {
        return Ok(d);
    }
    let both = [
        (Resource::Hotel, &r.hotel, hotel),
        (Resource::Flight, &r.flight, flight),
    ];
    let mut unknown_user = false;
    if hotel == &Acquired::Held && flight == &Acquired::Held {
        let mut writes: Vec<Write> = both
            .iter()
            .map(|(what, id, _)| Write::Update {
                table: what.table().into(),
                key: (*id).clone(),
                changes: vec![Change::add("cap", -1), Change::remove("holder")],
                cond: Some(Cond::And(vec![Cond::eq("holder", txn), Cond::ge("cap", 1)])),
            })
            .collect();
        writes.push(Write::Put {
            table: ORDER.into(),
            key: txn.into(),
            item: item([
                ("user", r.user.as_str().into()),
                ("hotel", r.hotel.as_str().into()),
                ("flight", r.flight.as_str().into()),
            ]),
            cond: Some(Cond::NotExists),
        });
        writes.push(Write::Put {
            table: TXNS.into(),
            key: txn.into(),
            item: item([("outcome", "booked".into())]),
            cond: Some(Cond::NotExists),
        });
        // Only a known user books (checked in the same transaction).
        writes.push(Write::Check {
            table: USER.into(),
            key: r.user.clone(),
            cond: Cond::Exists,
        });
        let user_check = writes.len() - 1;
        match kv.transact(&writes) {
            Ok(()) => return Ok(Outcome::Booked),
            Err(KvError::Cancelled {
                failed: Some(i), ..
            }) if i == user_check => unknown_user = true,
            Err(e) if e.is_condition() => {
                // Ended meanwhile by an earlier attempt whose answer was
                // lost; or (never, while locks are only released here) a
                // lock no longer ours, released below.
                if let Some(d) = decision(kv, txn)? {
                    return Ok(d);
                }
            }
            Err(e) => return Err(e),
        }
    }
    let why = both
        .iter()
        .find_map(|(what, id, a)| match a {
            Acquired::Held if unknown_user => Some(format!("no user {}", r.user)),
            Acquired::Held => None,
            Acquired::Unknown => Some(format!("no {} {id}", what.name())),
            Acquired::Busy => Some(format!(
                "{} {id} is being reserved by another request",
                what.name()
            )),
            Acquired::SoldOut => Some(format!("{} {id} is sold out", what.name())),
            Acquired::Settled => Some("the reservation has ended already".to_owned()),
        })
        .unwrap_or_else(|| "the reservation lost its locks".to_owned());
    // Release whatever this transaction holds, then record the decision.
    for (what, id, _) in &both {
        match kv.update(
            what.table(),
            id,
            &[Change::remove("holder")],
            Some(Cond::eq("holder", txn)),
        ) {
            Ok(_) => {}
            Err(e) if e.is_condition() => {}
            Err(e) => return Err(e),
        }
    }
    let record = item([("outcome", "failed".into()), ("why", why.as_str().into())]);
    match kv.put(TXNS, txn, record, Some(Cond::NotExists)) {
        Ok(()) => Ok(Outcome::Failed(why)),
        Err(e) if e.is_condition() => decision(kv, txn).map(|d| d.unwrap_or(Outcome::Failed(why))),
        Err(e) => Err(e),
    }
}
