//! `exoflow-hotel check`: whether the database is consistent with
//! exactly-once reservations, once every request has ended. Each hotel and
//! flight has its seeded capacity less its orders, never below zero; no
//! room or seat is still locked. In exoflow mode, each booked decision has
//! one order and each order a booked decision. Given the load's CSVs (what
//! the clients were told), every reservation answered as booked has its
//! order, every one answered as failed has none, and every order is a
//! request's. In Beldi mode, no invocation is left unfinished.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use crate::data::{self, FLIGHT, HOTEL, ORDER, TXNS};
use crate::gateway::Mode;
use crate::kv::{Kv, KvError, Value};

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Orders (bookings).
    pub orders: usize,
    /// Reservations that ended without a booking (exoflow mode: decisions
    /// recorded; Beldi mode: answers in the CSVs).
    pub failed: usize,
    /// Invocations not finished (Beldi mode).
    pub pending: usize,
    /// Reservations in the CSVs that got no answer.
    pub unanswered: usize,
    /// Every inconsistency, in words.
    pub violations: Vec<String>,
}

/// What clients were told of their reservations, by transaction
/// (`reserve-<request id>`): `booked`, `failed`, or anything else for no
/// answer.
pub type Told = HashMap<String, String>;

/// Why a load CSV cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not what `exoflow-hotel load` writes.
    #[error("{path}, line {line}: {message}")]
    Bad {
        /// The file.
        path: String,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Adds the reservations of a load CSV to `told`.
pub fn read_told(path: &Path, told: &mut Told) -> Result<(), CsvError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CsvError::Io {
        path: name.clone(),
        source,
    })?;
    let bad = |line: usize, message: String| CsvError::Bad {
        path: name.clone(),
        line,
        message,
    };
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.split(',').collect(),
        None => return Err(bad(1, "empty: expected a header".to_owned())),
    };
    let col = |c: &str| {
        header
            .iter()
            .position(|h| *h == c)
            .ok_or_else(|| bad(1, format!("no column {c} in the header")))
    };
    let (id, kind, status, outcome) = (
        col("request_id")?,
        col("kind")?,
        col("status")?,
        col("outcome")?,
    );
    let width = header.len();
    for (n, line) in lines {
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != width {
            return Err(bad(
                n + 1,
                format!("{} fields, the header has {width}", f.len()),
            ));
        }
        let status = f[status]
            .parse()
            .map_err(|_| bad(n + 1, format!("status {:?} is not a number", f[status])))?;
        tell(told, f[id], f[kind], status, f[outcome]);
    }
    Ok(())
}

/// Adds what a client was told of request `id` to `told`, if it was a
/// reservation.
pub fn tell(told: &mut Told, id: &str, kind: &str, status: u16, outcome: &str) {
    if kind == "reserve" {
        let what = if status == 200 { outcome } else { "unanswered" };
        told.insert(format!("reserve-{id}"), what.to_owned());
    }
}

fn text<'a>(i: &'a crate::kv::Item, a: &str) -> &'a str {
    i.get(a).and_then(Value::as_str).unwrap_or_default()
}

/// Checks `kv` (see the module's text), against `told` if not empty.
pub fn check(kv: &dyn Kv, mode: Mode, told: &Told) -> Result<Report, KvError> {
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
    let ordered: BTreeSet<&str> = orders.iter().map(|(k, _)| k.as_str()).collect();
    for (txn, said) in told {
        match (said.as_str(), ordered.contains(txn.as_str())) {
            ("booked", false) => r
                .violations
                .push(format!("{txn} was answered booked but has no order")),
            ("failed", true) => r
                .violations
                .push(format!("{txn} was answered failed but has an order")),
            ("booked" | "failed", _) => {}
            _ => r.unanswered += 1,
        }
    }
    if !told.is_empty() {
        for txn in &ordered {
            if !told.contains_key(*txn) {
                r.violations
                    .push(format!("order {txn} is no reservation of the CSVs"));
            }
        }
    }
    if mode == Mode::Beldi {
        r.failed = told.values().filter(|o| o.as_str() == "failed").count();
        let pending = crate::beldi::pending(kv)?;
        r.pending = pending.len();
        if r.pending > 0 {
            let some: Vec<&str> = pending.iter().take(5).map(String::as_str).collect();
            r.violations.push(format!(
                "{} invocations have not finished (the collector re-runs them): {}",
                r.pending,
                some.join(", ")
            ));
        }
        return capacities(kv, &seed, &orders, r);
    }
    r.failed = txns.values().filter(|o| o.as_str() == "failed").count();
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
    capacities(kv, &seed, &orders, r)
}

/// Capacities against the orders, and locks left.
fn capacities(
    kv: &dyn Kv,
    seed: &data::Seed,
    orders: &[(String, crate::kv::Item)],
    mut r: Report,
) -> Result<Report, KvError> {
    for (table, attr) in [(HOTEL, "hotel"), (FLIGHT, "flight")] {
        let mut taken: BTreeMap<&str, i64> = BTreeMap::new();
        for (_, o) in orders {
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
