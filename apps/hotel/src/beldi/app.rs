//! The benchmark's functions in Beldi mode, each run by Beldi's wrapper and
//! calling the others through it, as in Beldi's hotel benchmark:
//!
//! - `gateway` takes a client's [`Ask`] and invokes `search`, `recommend`,
//!   `user` or `frontend`;
//! - `search` invokes `geo`, then `rate`;
//! - `frontend` reserves: it checks the user, begins a transaction, invokes `hotel`, then
//!   `flight` (each locks its item and buffers the capacity less one),
//!   commits (or aborts if either failed), then invokes `order`
//!   asynchronously;
//! - `order` writes the order, keyed by the client's request.
//!
//! The reads are [`crate::functions`]' own, over Beldi's logged reads.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::{BeldiError, Env, Instruction};
use crate::data::{int, ORDER, USER};
use crate::functions::{self, Acquired, Outcome, RatePlan, Require, Reservation, Resource};
use crate::gateway::{Answer, Ask};
use crate::kv::{item, Change, Value};

/// The functions, by name.
pub const FUNCTIONS: [&str; 10] = [
    "gateway",
    "search",
    "geo",
    "rate",
    "recommend",
    "user",
    "frontend",
    "hotel",
    "flight",
    "order",
];

/// The name of function `name` as a static string, if it is one.
pub fn function(name: &str) -> Option<&'static str> {
    FUNCTIONS.iter().copied().find(|f| *f == name)
}

fn input<T: serde::de::DeserializeOwned>(v: &Json) -> Result<T, BeldiError> {
    serde_json::from_value(v.clone()).map_err(|e| BeldiError::Input(e.to_string()))
}

fn answer<T: serde::de::DeserializeOwned>(function: &str, v: Json) -> Result<T, BeldiError> {
    serde_json::from_value(v).map_err(|e| BeldiError::Invoke {
        function: function.to_owned(),
        message: format!("unexpected answer: {e}"),
    })
}

fn encode(v: impl Serialize) -> Result<Json, BeldiError> {
    serde_json::to_value(v).map_err(|e| BeldiError::Input(e.to_string()))
}

#[derive(Serialize, Deserialize)]
struct Point {
    lat: i64,
    lon: i64,
}

#[derive(Serialize, Deserialize)]
struct Hotels {
    hotels: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Recommendation {
    require: Require,
    lat: i64,
    lon: i64,
}

#[derive(Serialize, Deserialize)]
struct Login {
    username: String,
    password: String,
}

#[derive(Serialize, Deserialize)]
struct Take {
    id: String,
}

/// A reservation and the client request it answers (its orders are keyed
/// by the request, as exoflow mode's).
#[derive(Serialize, Deserialize)]
struct Order {
    request: String,
    reservation: Reservation,
}

fn parses<T: serde::de::DeserializeOwned>(v: &Json) -> Result<(), String> {
    serde_path_to_error::deserialize::<_, T>(v.clone())
        .map(|_| ())
        .map_err(|e| format!("input: at `{}`: {}", e.path(), e.inner()))
}

/// Checks that `inv` carries what function `name` takes, before anything
/// is written for it (a malformed invocation leaves no intent behind).
pub fn check_input(name: &str, inv: &super::Invocation) -> Result<(), String> {
    if matches!(inv.instruction, Instruction::Commit | Instruction::Abort) {
        return Ok(());
    }
    let v = &inv.input;
    match name {
        "gateway" => parses::<Ask>(v),
        "search" | "geo" => parses::<Point>(v),
        "rate" => parses::<Hotels>(v),
        "recommend" => parses::<Recommendation>(v),
        "user" => parses::<Login>(v),
        "frontend" | "order" => parses::<Order>(v),
        "hotel" | "flight" => parses::<Take>(v),
        other => Err(format!("no function {other}")),
    }
}

/// Runs function `name`'s body in `env`.
pub fn body(name: &str, env: &mut Env<'_>, v: &Json) -> Result<Json, BeldiError> {
    match name {
        "gateway" => {
            let ask: Ask = input(v)?;
            let out = match ask {
                Ask::Search { lat, lon } => {
                    let plans =
                        env.invoke("search", encode(Point { lat, lon })?, Instruction::None)?;
                    Answer::Search(answer("search", plans)?)
                }
                Ask::Recommend { require, lat, lon } => {
                    let r = env.invoke(
                        "recommend",
                        encode(Recommendation { require, lat, lon })?,
                        Instruction::None,
                    )?;
                    Answer::Recommend(answer::<Hotels>("recommend", r)?.hotels)
                }
                Ask::User { username, password } => {
                    let ok = env.invoke(
                        "user",
                        encode(Login { username, password })?,
                        Instruction::None,
                    )?;
                    Answer::User(answer("user", ok)?)
                }
                Ask::Reserve(reservation) => {
                    let o = Order {
                        request: env.id().to_owned(),
                        reservation,
                    };
                    let out = env.invoke("frontend", encode(o)?, Instruction::None)?;
                    Answer::Reserve(answer("frontend", out)?)
                }
            };
            encode(out)
        }
        "search" => {
            let p: Point = input(v)?;
            let near = env.invoke("geo", encode(&p)?, Instruction::None)?;
            let plans = env.invoke("rate", near, Instruction::None)?;
            Ok(plans)
        }
        "geo" => {
            let p: Point = input(v)?;
            encode(Hotels {
                hotels: functions::geo(env, (p.lat, p.lon))?,
            })
        }
        "rate" => {
            let h: Hotels = input(v)?;
            let plans: Vec<RatePlan> = functions::rate(env, &h.hotels)?;
            encode(plans)
        }
        "recommend" => {
            let r: Recommendation = input(v)?;
            encode(Hotels {
                hotels: functions::recommend(env, r.require, (r.lat, r.lon))?,
            })
        }
        "user" => {
            let l: Login = input(v)?;
            encode(functions::user(env, &l.username, &l.password)?)
        }
        "frontend" => encode(frontend(env, &input(v)?)?),
        "hotel" => encode(take(env, Resource::Hotel, &input::<Take>(v)?.id)?),
        "flight" => encode(take(env, Resource::Flight, &input::<Take>(v)?.id)?),
        "order" => {
            let o: Order = input(v)?;
            env.write(
                ORDER,
                &o.request,
                &[
                    Change::set("user", o.reservation.user.as_str()),
                    Change::set("hotel", o.reservation.hotel.as_str()),
                    Change::set("flight", o.reservation.flight.as_str()),
                ],
            )?;
            Ok(Json::Null)
        }
        other => Err(BeldiError::Input(format!("no function {other}"))),
    }
}

fn why(what: &str, id: &str, a: &Acquired) -> String {
    match a {
        Acquired::Unknown => format!("no {what} {id}"),
        Acquired::Busy => format!("{what} {id} is being reserved by another request"),
        Acquired::SoldOut => format!("{what} {id} is sold out"),
        Acquired::Held | Acquired::Settled => "the reservation has ended already".to_owned(),
    }
}

/// A reservation (Beldi's frontend): hotel, then flight, in one
/// transaction; the order placed asynchronously once it committed.
fn frontend(env: &mut Env<'_>, o: &Order) -> Result<Outcome, BeldiError> {
    let r = &o.reservation;
    // Only a known user books.
    if env.read(USER, &r.user)?.is_none() {
        return Ok(Outcome::Failed(format!("no user {}", r.user)));
    }
    env.begin()?;
    for (what, id) in [("hotel", &r.hotel), ("flight", &r.flight)] {
        let got = env.invoke(what, json!({ "id": id }), Instruction::Execute)?;
        let got: Acquired = answer(what, got)?;
        if got != Acquired::Held {
            env.finish(false)?;
            return Ok(Outcome::Failed(why(what, id, &got)));
        }
    }
    env.finish(true)?;
    env.invoke_async("order", encode(o)?)?;
    Ok(Outcome::Booked)
}

/// Takes a room or seat in the transaction: locks the item, reads it, and
/// buffers its capacity less one (an item sold out is unlocked again).
fn take(env: &mut Env<'_>, what: Resource, id: &str) -> Result<Acquired, BeldiError> {
    let table = what.table();
    if !env.lock(table, id)? {
        // Locked by another, or no such item (a logged read tells which).
        return Ok(match env.read(table, id)? {
            None => Acquired::Unknown,
            Some(_) => Acquired::Busy,
        });
    }
    let found = env.read(table, id)?.ok_or_else(|| BeldiError::Invoke {
        function: what.table().to_owned(),
        message: format!("{table}/{id} vanished while locked"),
    })?;
    let cap = int(&found, table, id, "cap")?;
    if cap < 1 {
        env.unlock(table, id)?;
        return Ok(Acquired::SoldOut);
    }
    env.buffer(table, id, &item([("cap", Value::N(cap - 1))]))?;
    Ok(Acquired::Held)
}
