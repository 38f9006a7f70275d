//! Beldi's protocol (OSDI'20), the baseline: each function is made
//! exactly-once by logs in the database itself, on the same [`Kv`] as
//! exoflow mode, with single-item conditional writes only.
//!
//! - An invocation has an instance id; its operations are numbered steps.
//!   A re-execution with the same id (a retry, or the collector's re-run)
//!   takes the same steps and finds what the first run did in the logs.
//! - Writes carry their step's id in the item written (`log:<fn>/<id>/<step>`,
//!   Beldi's DAAL row log): a write whose id is there took effect, and is
//!   not applied again.
//! - Reads and invocations are logged in [`LOG`], keyed by step: a replayed
//!   read returns what the first run read, a replayed invocation the same
//!   callee instance and, once it answered, its answer.
//! - Every invocation has an intent in [`INTENTS`]; the [`collect`]or re-runs
//!   those that never finished, [`gc`] deletes the logs of those that did.
//! - Transactions are two-phase locking, no wait: a lock is the `holder`
//!   attribute of the item; writes are buffered in [`LOCAL`] (the shadow
//!   table) and applied, with the unlock, by commit.
//!
//! Where this simplifies Beldi (see the crate's README): one row per key
//! (Beldi links rows into a list that grows past 1,000 log entries, and
//! reads the list's tail with a query before every access), the logs of
//! all functions in one table (Beldi: a table per function).

pub mod app;

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::functions::Reader;
use crate::kv::{item, Change, Cond, Item, Kv, KvError, Value};

/// Read and invoke logs, keyed `<fn>/<instance>/<step>`: `v` (a read's
/// item, as JSON), `callee` (an invoked instance) and `ret` (its answer).
pub const LOG: &str = "beldi_log";
/// Intents, keyed `<fn>/<instance>`: `fn`, `input` (JSON), `done` (0, 1),
/// `async` (1: the collector re-runs it), `st` (started, ms), `ts`
/// (finished, ms), `steps`.
pub const INTENTS: &str = "beldi_intents";
/// The shadow table, keyed `<fn>/<txn>`: `w:<table>/<key>` (buffered
/// writes, JSON) and `callee:<fn>` (the functions called in the
/// transaction).
pub const LOCAL: &str = "beldi_local";
/// Beldi's tables.
pub const TABLES: [&str; 3] = [LOG, INTENTS, LOCAL];

/// The attribute that marks a write of a step as applied.
const LOG_ATTR: &str = "log:";

/// What an invocation does in a transaction (Beldi's `Instruction`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Instruction {
    /// Not in a transaction.
    #[default]
    None,
    /// Runs the function inside the transaction.
    Execute,
    /// Commits the function's part of the transaction.
    Commit,
    /// Aborts it.
    Abort,
}

/// Who invoked: the caller's step that logs the invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The caller's function.
    pub name: String,
    /// Its instance.
    pub instance: String,
    /// The step.
    pub step: u64,
}

/// A function's invocation (Beldi's input wrapper).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    /// The instance id: 1 to 200 of `[A-Za-z0-9._=-]`.
    pub instance: String,
    /// The caller, if a function invoked it.
    #[serde(default)]
    pub caller: Option<Caller>,
    /// The transaction it runs in.
    #[serde(default)]
    pub txn: Option<String>,
    /// What to do in that transaction.
    #[serde(default)]
    pub instruction: Instruction,
    /// Whether the caller does not wait for it (its intent exists already).
    #[serde(default, rename = "async")]
    pub is_async: bool,
    /// The function's input.
    #[serde(default)]
    pub input: serde_json::Value,
}

/// Checks an instance or transaction id.
pub fn check_id(what: &str, id: &str) -> Result<(), String> {
    let ok = (1..=200).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'=' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("{what}: 1 to 200 of [A-Za-z0-9._=-], not {id:?}"))
    }
}

impl Invocation {
    /// Checks the ids.
    pub fn validate(&self) -> Result<(), String> {
        check_id("instance", &self.instance)?;
        if let Some(t) = &self.txn {
            check_id("txn", t)?;
        }
        if let Some(c) = &self.caller {
            check_id("caller.instance", &c.instance)?;
            check_id("caller.name", &c.name)?;
        }
        if self.instruction != Instruction::None && self.txn.is_none() {
            return Err("instruction: needs a txn".to_owned());
        }
        Ok(())
    }
}

/// What a Beldi function can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BeldiError {
    /// The database failed.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// An invoked function failed.
    #[error("invoking {function}: {message}")]
    Invoke {
        /// The function.
        function: String,
        /// Why.
        message: String,
    },
    /// The input is not what the function takes.
    #[error("bad input: {0}")]
    Input(String),
}

/// How a function invokes another.
pub trait Invoker: Sync {
    /// Invokes `function` and waits for its answer (retrying a failure
    /// with the same instance, which replays).
    fn invoke(&self, function: &str, inv: &Invocation) -> Result<serde_json::Value, String>;
    /// Invokes `function` without waiting (its intent is written already:
    /// the collector re-runs it if this is lost).
    fn invoke_async(&self, function: &str, inv: Invocation);
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn fresh_id() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

fn corrupt(what: &str, key: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Backend {
        backend: "beldi",
        op: "replay",
        message: format!("{what} {key}: {e}"),
    }
}

fn text(i: &Item, a: &str) -> Option<String> {
    i.get(a).and_then(Value::as_str).map(str::to_owned)
}

/// The item without Beldi's bookkeeping attributes.
fn strip(mut i: Item) -> Item {
    i.retain(|k, _| !k.starts_with(LOG_ATTR) && k != "logsize" && k != "gcsize");
    i
}

/// One running invocation: its id, its next step, its transaction.
pub struct Env<'a> {
    kv: &'a dyn Kv,
    invoker: &'a dyn Invoker,
    me: &'a str,
    id: String,
    step: u64,
    txn: Option<String>,
    instruction: Instruction,
    logs: bool,
}

impl<'a> Env<'a> {
    /// The invocation's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its transaction, if it runs in one.
    pub fn txn(&self) -> Option<&str> {
        self.txn.as_deref()
    }

    /// The id of the next step, and moves on.
    fn next(&mut self) -> String {
        let cid = format!("{}/{}/{}", self.me, self.id, self.step);
        self.step += 1;
        cid
    }

    fn local_key(&self, txn: &str) -> String {
        format!("{}/{txn}", self.me)
    }

    /// Logs `value` at step `cid` unless a first run logged one: the
    /// logged value wins.
    fn logged<T: Serialize + serde::de::DeserializeOwned>(
        &self,
        cid: &str,
        value: T,
    ) -> Result<T, KvError> {
        let json = serde_json::to_string(&value).map_err(|e| corrupt("log", cid, e))?;
        match self
            .kv
            .put(LOG, cid, item([("v", json.into())]), Some(Cond::NotExists))
        {
            Ok(()) => Ok(value),
            Err(e) if e.is_condition() => {
                let row = self
                    .kv
                    .get(LOG, cid)?
                    .ok_or_else(|| corrupt("log", cid, "vanished"))?;
                let v = text(&row, "v").ok_or_else(|| corrupt("log", cid, "holds no read"))?;
                serde_json::from_str(&v).map_err(|e| corrupt("log", cid, e))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads an item (Beldi's read): logged, so a replay reads the same.
    pub fn read(&mut self, table: &str, key: &str) -> Result<Option<Item>, KvError> {
        let cid = self.next();
        let found = self.kv.get(table, key)?.map(strip);
        if !self.logs {
            return Ok(found);
        }
        self.logged(&cid, found)
    }

    /// Reads a whole table, logged.
    pub fn scan_logged(&mut self, table: &str) -> Result<Vec<(String, Item)>, KvError> {
        let cid = self.next();
        let all: Vec<(String, Item)> = self
            .kv
            .scan(table)?
            .into_iter()
            .map(|(k, i)| (k, strip(i)))
            .collect();
        if !self.logs {
            return Ok(all);
        }
        self.logged(&cid, all)
    }

    /// Applies `changes` to an item once (Beldi's write): the step's id is
    /// written with them, and a write that finds it there was applied.
    pub fn write(&mut self, table: &str, key: &str, changes: &[Change]) -> Result<(), KvError> {
        let cid = self.next();
        self.write_as(&cid, table, key, changes)
    }

    /// [`Env::write`] as step `cid`.
    fn write_as(
        &self,
        cid: &str,
        table: &str,
        key: &str,
        changes: &[Change],
    ) -> Result<(), KvError> {
        let mark = format!("{LOG_ATTR}{cid}");
        let mut all = changes.to_vec();
        all.push(Change::Set(mark.clone(), Value::N(1)));
        all.push(Change::add("logsize", 1));
        match self.kv.update(table, key, &all, Some(Cond::Lacks(mark))) {
            Ok(_) => Ok(()),
            Err(e) if e.is_condition() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Applies `changes` if `cond` holds, once (Beldi's conditional write):
    /// whether it held is logged in the item with the step's id.
    pub fn cond_write(
        &mut self,
        table: &str,
        key: &str,
        changes: &[Change],
        cond: Cond,
    ) -> Result<bool, KvError> {
        let cid = self.next();
        let mark = format!("{LOG_ATTR}{cid}");
        let mut all = changes.to_vec();
        all.push(Change::Set(mark.clone(), Value::N(1)));
        all.push(Change::add("logsize", 1));
        let guard = Cond::And(vec![Cond::Lacks(mark.clone()), cond]);
        match self.kv.update(table, key, &all, Some(guard)) {
            Ok(_) => return Ok(true),
            Err(e) if !e.is_condition() => return Err(e),
            Err(_) => {}
        }
        // Record the refusal, unless a first run recorded its outcome.
        let refusal = [
            Change::Set(mark.clone(), Value::N(0)),
            Change::add("logsize", 1),
        ];
        let fresh = Cond::And(vec![Cond::Exists, Cond::Lacks(mark.clone())]);
        match self.kv.update(table, key, &refusal, Some(fresh)) {
            Ok(_) => Ok(false),
            Err(e) if e.is_condition() => Ok(self
                .kv
                .get(table, key)?
                .and_then(|i| i.get(&mark).and_then(Value::as_n))
                == Some(1)),
            Err(e) => Err(e),
        }
    }

    /// The callee instance of the invoke at step `cid`: a fresh one, logged
    /// there first; or, on a replay, the one the first run logged, with
    /// its answer if it gave one. Without logs, always a fresh one.
    fn log_callee(&self, cid: &str) -> Result<(String, Option<String>), KvError> {
        let callee = fresh_id();
        if !self.logs {
            return Ok((callee, None));
        }
        let record = item([("callee", callee.as_str().into())]);
        match self.kv.put(LOG, cid, record, Some(Cond::NotExists)) {
            Ok(()) => Ok((callee, None)),
            Err(e) if e.is_condition() => {
                let row = self
                    .kv
                    .get(LOG, cid)?
                    .ok_or_else(|| corrupt("log", cid, "vanished"))?;
                let callee =
                    text(&row, "callee").ok_or_else(|| corrupt("log", cid, "names no callee"))?;
                Ok((callee, text(&row, "ret")))
            }
            Err(e) => Err(e),
        }
    }

    /// Invokes `function` and waits for its answer (Beldi's sync invoke):
    /// the callee's instance is logged first, so a replay invokes the same
    /// instance, or returns its logged answer without invoking.
    pub fn invoke(
        &mut self,
        function: &str,
        input: serde_json::Value,
        instruction: Instruction,
    ) -> Result<serde_json::Value, BeldiError> {
        let step = self.step;
        let cid = self.next();
        // The step that records the callee in the transaction: taken
        // whether or not a replay needs it, so that the steps after it are
        // numbered as in the first run.
        let record = (instruction == Instruction::Execute).then(|| self.next());
        let (callee, ret) = self.log_callee(&cid)?;
        if let Some(ret) = ret {
            return serde_json::from_str(&ret)
                .map_err(|e| BeldiError::Kv(corrupt("answer", &cid, e)));
        }
        if let (Some(record), Some(txn)) = (record, &self.txn) {
            let key = self.local_key(txn);
            self.write_as(
                &record,
                LOCAL,
                &key,
                &[Change::set(&format!("callee:{function}"), 1)],
            )?;
        }
        let inv = Invocation {
            instance: callee,
            caller: Some(Caller {
                name: self.me.to_owned(),
                instance: self.id.clone(),
                step,
            }),
            txn: self.txn.clone(),
            instruction,
            is_async: false,
            input,
        };
        self.invoker
            .invoke(function, &inv)
            .map_err(|message| BeldiError::Invoke {
                function: function.to_owned(),
                message,
            })
    }

    /// Invokes `function` without waiting (Beldi's async invoke): its intent
    /// is written here, so that the collector runs it if the call is lost.
    pub fn invoke_async(
        &mut self,
        function: &str,
        input: serde_json::Value,
    ) -> Result<(), BeldiError> {
        let cid = self.next();
        let (callee, ret) = self.log_callee(&cid)?;
        if ret.is_some() {
            return Ok(());
        }
        let input_json = serde_json::to_string(&input)
            .map_err(|e| BeldiError::Input(format!("cannot encode: {e}")))?;
        let intent = item([
            ("fn", function.into()),
            ("input", input_json.into()),
            ("done", 0.into()),
            ("async", 1.into()),
            ("st", now_ms().into()),
        ]);
        let key = format!("{function}/{callee}");
        match self.kv.put(INTENTS, &key, intent, Some(Cond::NotExists)) {
            Ok(()) => {}
            // Registered by a first run: the collector owns it now.
            Err(e) if e.is_condition() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if self.logs {
            self.kv
                .update(LOG, &cid, &[Change::set("ret", "1")], None)?;
        }
        self.invoker.invoke_async(
            function,
            Invocation {
                instance: callee,
                caller: None,
                txn: None,
                instruction: Instruction::None,
                is_async: true,
                input,
            },
        );
        Ok(())
    }

    /// Starts a transaction whose id is this invocation's.
    pub fn begin(&mut self) -> Result<(), KvError> {
        let txn = self.id.clone();
        self.txn = Some(txn.clone());
        self.instruction = Instruction::Execute;
        let key = self.local_key(&txn);
        self.write(LOCAL, &key, &[Change::set("callee: ", 1)])
    }

    fn need_txn(&self) -> Result<String, BeldiError> {
        self.txn
            .clone()
            .ok_or_else(|| BeldiError::Input("not in a transaction".to_owned()))
    }

    /// Locks an item for the transaction (re-entrant), no wait: false if
    /// another holds it or it does not exist.
    pub fn lock(&mut self, table: &str, key: &str) -> Result<bool, BeldiError> {
        let txn = self.need_txn()?;
        let free_or_ours = Cond::And(vec![
            Cond::Exists,
            Cond::Or(vec![
                Cond::lacks("holder"),
                Cond::eq("holder", txn.as_str()),
            ]),
        ]);
        Ok(self.cond_write(
            table,
            key,
            &[Change::set("holder", txn.as_str())],
            free_or_ours,
        )?)
    }

    /// Unlocks an item the transaction holds.
    pub fn unlock(&mut self, table: &str, key: &str) -> Result<bool, BeldiError> {
        let txn = self.need_txn()?;
        Ok(self.cond_write(
            table,
            key,
            &[Change::remove("holder")],
            Cond::eq("holder", txn.as_str()),
        )?)
    }

    /// Buffers integer sets of a locked item in the shadow table, for
    /// commit to apply.
    pub fn buffer(&mut self, table: &str, key: &str, sets: &Item) -> Result<(), BeldiError> {
        let txn = self.need_txn()?;
        let json = serde_json::to_string(sets).map_err(|e| BeldiError::Input(e.to_string()))?;
        let local = self.local_key(&txn);
        self.write(
            LOCAL,
            &local,
            &[Change::set(&format!("w:{table}/{key}"), json)],
        )?;
        Ok(())
    }

    /// Ends this function's part of the transaction: applies its buffered
    /// writes (commit) or not (abort), releasing their locks either way,
    /// then has every function it called in the transaction do the same.
    pub fn finish(&mut self, commit: bool) -> Result<(), BeldiError> {
        let txn = self.need_txn()?;
        let local = self.local_key(&txn);
        let row = self.read(LOCAL, &local)?.unwrap_or_default();
        for (attr, v) in &row {
            let Some(target) = attr.strip_prefix("w:") else {
                continue;
            };
            let (table, key) = target
                .split_once('/')
                .ok_or_else(|| corrupt("buffered write", attr, "names no table"))?;
            let mut changes = vec![Change::remove("holder")];
            if commit {
                let json = v
                    .as_str()
                    .ok_or_else(|| corrupt("buffered write", attr, "not JSON"))?;
                let sets: Item =
                    serde_json::from_str(json).map_err(|e| corrupt("buffered write", attr, e))?;
                changes.extend(sets.into_iter().map(|(a, v)| Change::Set(a, v)));
            }
            self.write(table, key, &changes)?;
        }
        self.kv.delete(LOCAL, &local, None)?;
        let instruction = if commit {
            Instruction::Commit
        } else {
            Instruction::Abort
        };
        for attr in row.keys() {
            if let Some(callee) = attr.strip_prefix("callee:").filter(|c| *c != " ") {
                self.invoke(callee, serde_json::Value::Null, instruction)?;
            }
        }
        Ok(())
    }
}

impl Reader for Env<'_> {
    fn get(&mut self, table: &str, key: &str) -> Result<Option<Item>, KvError> {
        self.read(table, key)
    }

    fn scan(&mut self, table: &str) -> Result<Vec<(String, Item)>, KvError> {
        self.scan_logged(table)
    }
}

/// Runs invocation `inv` of function `me` (Beldi's wrapper): its intent
/// first, then the body `f` (or the transaction's commit or abort), then
/// its answer into the caller's log and the intent marked done.
/// `logs: false` turns the read and invoke logs off (to show that they
/// are needed).
pub fn run(
    kv: &dyn Kv,
    invoker: &dyn Invoker,
    me: &str,
    inv: &Invocation,
    logs: bool,
    f: impl FnOnce(&mut Env<'_>, &serde_json::Value) -> Result<serde_json::Value, BeldiError>,
) -> Result<serde_json::Value, BeldiError> {
    inv.validate().map_err(BeldiError::Input)?;
    let intent = format!("{me}/{}", inv.instance);
    if inv.is_async {
        kv.update(INTENTS, &intent, &[Change::set("st", now_ms())], None)?;
    } else {
        let input = serde_json::to_string(&inv.input)
            .map_err(|e| BeldiError::Input(format!("cannot encode: {e}")))?;
        let record = item([
            ("fn", me.into()),
            ("input", input.into()),
            ("done", 0.into()),
            // A request from outside is re-run by the collector; a call
            // from a function, by its caller's re-run.
            ("async", i64::from(inv.caller.is_none()).into()),
            ("st", now_ms().into()),
        ]);
        match kv.put(INTENTS, &intent, record, Some(Cond::NotExists)) {
            Ok(()) => {}
            Err(e) if e.is_condition() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut env = Env {
        kv,
        invoker,
        me,
        id: inv.instance.clone(),
        step: 0,
        txn: inv.txn.clone(),
        instruction: inv.instruction,
        logs,
    };
    let out = match inv.instruction {
        Instruction::Commit => env.finish(true).map(|()| serde_json::Value::Null)?,
        Instruction::Abort => env.finish(false).map(|()| serde_json::Value::Null)?,
        Instruction::Execute => {
            let txn = env.need_txn()?;
            let local = env.local_key(&txn);
            env.write(LOCAL, &local, &[Change::set("callee: ", 1)])?;
            f(&mut env, &inv.input)?
        }
        Instruction::None => f(&mut env, &inv.input)?,
    };
    let ret = serde_json::to_string(&out).map_err(|e| BeldiError::Input(e.to_string()))?;
    // Done first, then the answer to the caller: a caller that finds the
    // answer never invokes again, so an intent still open then would stay
    // open. (A caller that finds no answer invokes again, and the replay
    // writes it.)
    kv.update(
        INTENTS,
        &intent,
        &[
            Change::set("done", 1),
            Change::set("ts", now_ms()),
            Change::set("steps", env.step as i64),
        ],
        None,
    )?;
    if let (Some(c), true) = (&inv.caller, logs) {
        let key = format!("{}/{}/{}", c.name, c.instance, c.step);
        kv.update(LOG, &key, &[Change::set("ret", ret)], None)?;
    }
    Ok(out)
}

/// An intent the collector re-runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Stuck {
    /// The function.
    pub function: String,
    /// The invocation.
    pub invocation: Invocation,
}

/// The intents to re-run (Beldi's collector): requests from outside and
/// async calls that have not finished, started more than `older_ms` ago.
/// Each one's start is moved to now, so that the next round leaves it to
/// this re-run for as long again.
pub fn stuck(kv: &dyn Kv, older_ms: i64) -> Result<Vec<Stuck>, KvError> {
    let cutoff = now_ms() - older_ms;
    let mut out = Vec::new();
    for (key, i) in kv.scan(INTENTS)? {
        let n = |a: &str| i.get(a).and_then(Value::as_n);
        if n("done") != Some(0) || n("async") != Some(1) || n("st").is_none_or(|st| st > cutoff) {
            continue;
        }
        let Some((function, instance)) = key.split_once('/') else {
            continue;
        };
        let input = text(&i, "input")
            .and_then(|s| serde_json::from_str(&s).ok())
            .ok_or_else(|| corrupt("intent", &key, "holds no input"))?;
        kv.update(INTENTS, &key, &[Change::set("st", now_ms())], None)?;
        out.push(Stuck {
            function: function.to_owned(),
            invocation: Invocation {
                instance: instance.to_owned(),
                caller: None,
                txn: None,
                instruction: Instruction::None,
                is_async: true,
                input,
            },
        });
    }
    Ok(out)
}

/// The intents not finished: `<fn>/<instance>`.
pub fn pending(kv: &dyn Kv) -> Result<Vec<String>, KvError> {
    Ok(kv
        .scan(INTENTS)?
        .into_iter()
        .filter(|(_, i)| i.get("done").and_then(Value::as_n) != Some(1))
        .map(|(k, _)| k)
        .collect())
}

/// Beldi's garbage collection: for the invocations that finished more than
/// `older_ms` ago, deletes their read and invoke logs, removes their write
/// marks from the items of `tables`, then deletes their intents. Returns
/// how many invocations it collected.
pub fn gc(kv: &dyn Kv, tables: &[&str], older_ms: i64) -> Result<usize, KvError> {
    let cutoff = now_ms() - older_ms;
    let mut done = std::collections::HashSet::new();
    for (key, i) in kv.scan(INTENTS)? {
        let n = |a: &str| i.get(a).and_then(Value::as_n);
        if n("done") == Some(1) && n("ts").is_some_and(|ts| ts < cutoff) {
            for step in 0..n("steps").unwrap_or(0) {
                kv.delete(LOG, &format!("{key}/{step}"), None)?;
            }
            done.insert(key);
        }
    }
    if done.is_empty() {
        return Ok(0);
    }
    for table in tables {
        for (key, i) in kv.scan(table)? {
            let marks: Vec<&String> = i
                .keys()
                .filter(|a| {
                    a.strip_prefix(LOG_ATTR)
                        .and_then(|cid| cid.rsplit_once('/'))
                        .is_some_and(|(inv, _)| done.contains(inv))
                })
                .collect();
            for chunk in marks.chunks(250) {
                let mut changes: Vec<Change> =
                    chunk.iter().map(|a| Change::Remove((*a).clone())).collect();
                changes.push(Change::add("gcsize", chunk.len() as i64));
                // Only if the item is still there (a deleted shadow row
                // stays deleted).
                match kv.update(table, &key, &changes, Some(Cond::Exists)) {
                    Ok(_) => {}
                    Err(e) if e.is_condition() => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    for key in &done {
        kv.delete(INTENTS, key, None)?;
    }
    Ok(done.len())
}
