//! `exoflow-hotel check`: whether the database is consistent with
//! exactly-once reservations, once every workflow has ended. Each booked
//! decision has one order and each order a booked decision; each hotel and
//! flight has its seeded capacity less its orders, never below zero; no
//! room or seat is still locked.

use std::collections::{BTreeMap, BTreeSet};

use crate::data::{self, FLIGHT, HOTEL, ORDER, TXNS};
use crate::kv::{Kv, KvError, Value};

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Orders (bookings).
    pub orders: usize,
    /// Reservations that ended without a booking.
    pub failed: usize,
    /// Every inconsistency, in words.
    pub violations: Vec<String>,
}

fn text<'a>(i: &'a crate::kv::Item, a: &str) -> &'a str {
    i.get(a).and_then(Value::as_str).unwrap_or_default()
}

/// Checks `kv` (see the module's text).
pub fn check(kv: &dyn Kv) -> Result<Report, KvError> {
    let seed = data::recorded_seed(kv)?.ok_or_else(|| {
        KvError::Invalid(format!(
            "{} was not seeded (no {}/seed): run exoflow-hotel seed first",
            kv.describe(),
            data::META
        ))
    })?;
    let mut r = Report::default();
    let orders = kv.scan(ORDER)?;
    let txns: BTreeMap<String, String> = kv
        .scan(TXNS)?
        .into_iter()
        .map(|(k, i)| (k, text(&i, "outcome").to_owned()))
        .collect();
    r.orders = orders.len();
    r.failed = txns.values().filter(|o| o.as_str() == "failed").count();
    let ordered: BTreeSet<&str> = orders.iter().map(|(k, _)| k.as_str()).collect();
    for (txn, outcome) in &txns {
        match (outcome.as_str(), ordered.contains(txn.as_str())) {
            ("booked", false) => r
                .violations
                .push(format!("{txn} is booked but has no order")),
            ("failed", true) => r.violations.push(format!("{txn} failed but has an order")),
            ("booked" | "failed", _) => {}
            (other, _) => r
                .violations
                .push(format!("{txn} has an unknown outcome {other:?}")),
        }
    }
    for (txn, _) in &orders {
        if txns.get(txn).map(String::as_str) != Some("booked") {
            r.violations
                .push(format!("order {txn} has no booked decision"));
        }
    }
    for (table, attr) in [(HOTEL, "hotel"), (FLIGHT, "flight")] {
        let mut taken: BTreeMap<&str, i64> = BTreeMap::new();
        for (_, o) in &orders {
            *taken.entry(text(o, attr)).or_default() += 1;
        }
        for (id, item) in kv.scan(table)? {
            let cap = item.get("cap").and_then(Value::as_n);
            let want = seed.capacity - taken.get(id.as_str()).copied().unwrap_or(0);
            match cap {
                Some(c) if c < 0 => r
                    .violations
                    .push(format!("{table}/{id}: capacity {c} below zero")),
                Some(c) if c != want => r.violations.push(format!(
                    "{table}/{id}: {c} left, but {} seeded less {} orders is {want}",
                    seed.capacity,
                    taken.get(id.as_str()).copied().unwrap_or(0)
                )),
                Some(_) => {}
                None => r.violations.push(format!("{table}/{id}: no capacity")),
            }
            if let Some(h) = item.get("holder") {
                r.violations
                    .push(format!("{table}/{id}: still locked by {h:?}"));
            }
        }
    }
    Ok(r)
}
