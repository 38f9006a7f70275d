//! `exoflow-hotel load`: an open-loop, constant-rate load (wrk2's model).
//! Request i is due at `start + i / rate`; latency is counted from that
//! intended time, so a stall of the system delays the requests behind it
//! and shows in their latency instead of slowing the load. An unanswered
//! request (lost connection, timeout, 5xx) is sent again under the same
//! id. Every request is a row of the CSV; those due in the warm-up are
//! marked and left out of the summary.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data;
use crate::functions::{Require, Reservation};
use crate::gateway::{Ask, Request};

/// The request mix, in parts (Fig 7a's: 60 search, 39 recommend, 0.5 user,
/// 0.5 reserve).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// Search.
    pub search: f64,
    /// Recommend.
    pub recommend: f64,
    /// User (login).
    pub user: f64,
    /// Reserve.
    pub reserve: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            search: 60.0,
            recommend: 39.0,
            user: 0.5,
            reserve: 0.5,
        }
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    /// `search=60,recommend=39,user=0.5,reserve=0.5`; kinds left out are 0.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut m = Mix {
            search: 0.0,
            recommend: 0.0,
            user: 0.0,
            reserve: 0.0,
        };
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("mix part {part:?}: expected KIND=WEIGHT"))?;
            let v: f64 = v
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("mix part {part:?}: the weight is not a number >= 0"))?;
            match k {
                "search" => m.search = v,
                "recommend" => m.recommend = v,
                "user" => m.user = v,
                "reserve" => m.reserve = v,
                _ => {
                    return Err(format!(
                        "mix part {part:?}: kinds are search, recommend, user, reserve"
                    ))
                }
            }
        }
        if m.search + m.recommend + m.user + m.reserve <= 0.0 {
            return Err("the mix has no weight".to_owned());
        }
        Ok(m)
    }
}

/// What the load generates requests for (the seed's sizes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Hotels (and flights) seeded.
    pub hotels: u32,
    /// Users seeded.
    pub users: u32,
}

/// The `n`-th request of a load seeded with `seed` (its id is `<run>-<n>`).
pub fn request(run: &str, n: u64, mix: &Mix, shape: &Shape, rng: &mut ChaCha8Rng) -> Request {
    let total = mix.search + mix.recommend + mix.user + mix.reserve;
    let pick = rng.random::<f64>() * total;
    // Points around the hotels' grid, as the benchmark's clients.
    let (lat0, lon0) = data::hotel_location(0);
    let mut at = || {
        (
            lat0 + rng.random_range(-20_000..600_000),
            lon0 + rng.random_range(-20_000..800_000),
        )
    };
    let ask = if pick < mix.search {
        let (lat, lon) = at();
        Ask::Search { lat, lon }
    } else if pick < mix.search + mix.recommend {
        let (lat, lon) = at();
        let require = match rng.random_range(0..3) {
            0 => Require::Dis,
            1 => Require::Rate,
            _ => Require::Price,
        };
        Ask::Recommend { require, lat, lon }
    } else if pick < mix.search + mix.recommend + mix.user {
        let u = rng.random_range(0..shape.users.max(1));
        Ask::User {
            username: data::user_name(u),
            password: data::password(u),
        }
    } else {
        Ask::Reserve(Reservation {
            user: data::user_name(rng.random_range(0..shape.users.max(1))),
            hotel: data::hotel_id(rng.random_range(0..shape.hotels.max(1))),
            flight: data::hotel_id(rng.random_range(0..shape.hotels.max(1))),
        })
    };
    Request {
        id: format!("{run}-{n}"),
        ask,
    }
}

/// A load's settings.
#[derive(Debug, Clone)]
pub struct Load {
    /// The gateway's request URL (`http://HOST:PORT/request`).
    pub url: String,
    /// Requests a second.
    pub rate: f64,
    /// How long requests are sent, warm-up included.
    pub duration: Duration,
    /// The first part, left out of the summary.
    pub warmup: Duration,
    /// The mix.
    pub mix: Mix,
    /// What to ask for.
    pub shape: Shape,
    /// Seed of the requests.
    pub seed: u64,
    /// Names the run's request ids (`<run>-<n>`).
    pub run: String,
    /// Senders (connections) at once.
    pub connections: usize,
    /// Give up on a request this long after its intended time.
    pub give_up: Duration,
}

/// One request's record.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Its id.
    pub id: String,
    /// search, recommend, user or reserve.
    pub kind: &'static str,
    /// Due at, µs from the start.
    pub intended_us: u64,
    /// First sent at, µs from the start.
    pub sent_us: u64,
    /// Answered at (or given up), µs from the start.
    pub done_us: u64,
    /// The last HTTP status (0: no answer).
    pub status: u16,
    /// booked, failed, ok, or error.
    pub outcome: String,
    /// Sends.
    pub attempts: u32,
    /// Due in the warm-up.
    pub warmup: bool,
}

/// The CSV header.
pub const CSV_HEADER: &str =
    "request_id,kind,intended_us,sent_us,done_us,status,outcome,attempts,warmup";

impl Row {
    /// The row as a CSV line (no field holds a comma).
    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{}",
            self.id,
            self.kind,
            self.intended_us,
            self.sent_us,
            self.done_us,
            self.status,
            self.outcome,
            self.attempts,
            u8::from(self.warmup)
        )
    }
}

fn outcome(kind: &str, body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    match kind {
        "reserve" => match v.get("reserve") {
            Some(r) if r.as_str() == Some("booked") => "booked".to_owned(),
            Some(r) if r.get("failed").is_some() => "failed".to_owned(),
            _ => "error".to_owned(),
        },
        _ if v.get(kind).is_some() => "ok".to_owned(),
        _ => "error".to_owned(),
    }
}

/// Runs the load; every request's row, in id order.
pub fn run(load: &Load) -> Vec<Row> {
    let total = (load.rate * load.duration.as_secs_f64()).floor() as u64;
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let rows = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    // The requests are drawn in order from one seeded generator, so the
    // same seed gives the same requests whatever the timing.
    let mut rng = ChaCha8Rng::seed_from_u64(load.seed);
    let requests: Arc<Vec<Request>> = Arc::new(
        (0..total)
            .map(|n| request(&load.run, n, &load.mix, &load.shape, &mut rng))
            .collect(),
    );
    let senders: Vec<_> = (0..load.connections.max(1))
        .map(|_| {
            let (next, rows, requests, load) =
                (next.clone(), rows.clone(), requests.clone(), load.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build()
                    .into();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= total {
                        return;
                    }
                    let due = Duration::from_secs_f64(n as f64 / load.rate);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    let req = &requests[n as usize];
                    let kind = req.ask.dag();
                    let body = serde_json::to_string(req).unwrap_or_default();
                    let sent = start.elapsed();
                    let mut attempts = 0;
                    let (status, text) = loop {
                        attempts += 1;
                        let answer =
                            agent
                                .post(&load.url)
                                .send(body.as_str())
                                .ok()
                                .and_then(|mut r| {
                                    let s = r.status().as_u16();
                                    r.body_mut().read_to_string().ok().map(|t| (s, t))
                                });
                        match answer {
                            Some((s, t)) if s < 500 => break (s, t),
                            other => {
                                if start.elapsed() > due + load.give_up {
                                    break other.unwrap_or((0, String::new()));
                                }
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    };
                    let done = start.elapsed();
                    let row = Row {
                        id: req.id.clone(),
                        kind,
                        intended_us: due.as_micros() as u64,
                        sent_us: sent.as_micros() as u64,
                        done_us: done.as_micros() as u64,
                        status,
                        outcome: if status == 200 {
                            outcome(kind, &text)
                        } else {
                            "error".to_owned()
                        },
                        attempts,
                        warmup: due < load.warmup,
                    };
                    rows.lock().push((n, row));
                }
            })
        })
        .collect();
    for s in senders {
        let _ = s.join();
    }
    let mut rows = std::mem::take(&mut *rows.lock());
    rows.sort_by_key(|(n, _)| *n);
    rows.into_iter().map(|(_, r)| r).collect()
}

/// Latency percentiles and counts of the rows after the warm-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Requests measured.
    pub measured: usize,
    /// Answered with 200.
    pub answered: usize,
    /// Median latency from the intended time, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Answers a second over the measured span.
    pub achieved_rps: f64,
}

/// The summary of `rows`.
pub fn summarize(rows: &[Row]) -> Summary {
    let measured: Vec<&Row> = rows.iter().filter(|r| !r.warmup).collect();
    let mut lat: Vec<u64> = measured
        .iter()
        .map(|r| r.done_us.saturating_sub(r.intended_us))
        .collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
            lat[i] as f64 / 1000.0
        }
    };
    let answered = measured.iter().filter(|r| r.status == 200).count();
    let span = match (
        measured.iter().map(|r| r.intended_us).min(),
        measured.iter().map(|r| r.done_us).max(),
    ) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e6,
        _ => 0.0,
    };
    Summary {
        measured: measured.len(),
        answered,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        achieved_rps: if span > 0.0 {
            answered as f64 / span
        } else {
            0.0
        },
    }
}

/// Writes `rows` as CSV to `out`.
pub fn write_csv(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    writeln!(out, "{CSV_HEADER}")?;
    for r in rows {
        writeln!(out, "{}", r.csv())?;
    }
    Ok(())
}

/// A gateway's counters (`GET /stats`): requests answered and the
/// database operations their functions reported; `None` if it has none.
pub fn gateway_stats(gateway: &str) -> Option<(u64, u64)> {
    let url = format!("{}/stats", gateway.trim_end_matches('/'));
    let mut resp = ureq::get(&url).call().ok()?;
    let v: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()?;
    Some((v.get("answered")?.as_u64()?, v.get("db_ops")?.as_u64()?))
}
