//! The embedded backend: one SQLite file (WAL, `synchronous=FULL`, so an
//! acknowledged write is durable, as in DynamoDB), shared by every process
//! that opens it. A write reads, checks and writes its items in one
//! `BEGIN IMMEDIATE` transaction, so conditions are atomic across
//! processes too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    apply_changes, check_key, validate_name, validate_transaction, Change, Cond, Item, Kv, KvError,
    Write,
};

/// How long a write waits for another process's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits for another process's write: SQLite's own handler sleeps 1 ms,
/// then longer, while a write here takes a fraction of that; this polls
/// every 100 µs for the first 10 ms, then every millisecond, up to
/// [`BUSY_TIMEOUT`]. `n` is the number of earlier calls for this wait.
fn busy(n: i32) -> bool {
    const QUICK: i32 = 100;
    if n < QUICK {
        std::thread::sleep(Duration::from_micros(100));
        true
    } else if i64::from(n - QUICK) < BUSY_TIMEOUT.as_millis() as i64 {
        std::thread::sleep(Duration::from_millis(1));
        true
    } else {
        false
    }
}

/// A database in a SQLite file.
#[derive(Debug)]
pub struct SqliteKv {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn backend(op: &'static str, e: impl std::fmt::Display) -> KvError {
    KvError::Backend {
        backend: "sqlite",
        op,
        message: e.to_string(),
    }
}

impl SqliteKv {
    /// Opens (creating) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, KvError> {
        let path = path.as_ref().to_path_buf();
        let open = |e: rusqlite::Error| KvError::Backend {
            backend: "sqlite",
            op: "open",
            message: format!("{}: {e}", path.display()),
        };
        let conn = Connection::open(&path).map_err(open)?;
        conn.busy_handler(Some(busy)).map_err(open)?;
        // WAL survives in the file; `synchronous` is per connection.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv_tables (name TEXT PRIMARY KEY) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS kv_items (
                 tbl TEXT NOT NULL, k TEXT NOT NULL, v TEXT NOT NULL,
                 PRIMARY KEY (tbl, k)) WITHOUT ROWID;",
        )
        .map_err(open)?;
        Ok(Self {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// Runs `f` in one immediate (write-locked) transaction, committed if
    /// it returns `Ok`.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, KvError>,
    ) -> Result<T, KvError> {
        let mut conn = self.conn.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| backend(op, e))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| backend(op, e))?;
        Ok(out)
    }
}

fn table_exists(c: &Connection, table: &str) -> Result<(), KvError> {
    validate_name(table)?;
    let found: Option<String> = c
        .query_row("SELECT name FROM kv_tables WHERE name = ?1", [table], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| backend("read", e))?;
    match found {
        Some(_) => Ok(()),
        None => Err(KvError::Invalid(format!("no table {table}"))),
    }
}

fn read(c: &Connection, table: &str, key: &str) -> Result<Option<Item>, KvError> {
    table_exists(c, table)?;
    check_key(key)?;
    let v: Option<String> = c
        .query_row(
            "SELECT v FROM kv_items WHERE tbl = ?1 AND k = ?2",
            params![table, key],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| backend("read", e))?;
    v.map(|s| serde_json::from_str(&s).map_err(|e| backend("read", format!("{table}/{key}: {e}"))))
        .transpose()
}

fn store(c: &Connection, table: &str, key: &str, item: &Item) -> Result<(), KvError> {
    let v = serde_json::to_string(item).map_err(|e| backend("write", e))?;
    c.execute(
        "INSERT INTO kv_items (tbl, k, v) VALUES (?1, ?2, ?3)
         ON CONFLICT (tbl, k) DO UPDATE SET v = excluded.v",
        params![table, key, v],
    )
    .map_err(|e| backend("write", e))?;
    Ok(())
}

fn remove(c: &Connection, table: &str, key: &str) -> Result<(), KvError> {
    c.execute(
        "DELETE FROM kv_items WHERE tbl = ?1 AND k = ?2",
        params![table, key],
    )
    .map_err(|e| backend("delete", e))?;
    Ok(())
}

fn condition(
    table: &str,
    key: &str,
    cond: Option<&Cond>,
    old: Option<&Item>,
) -> Result<(), KvError> {
    match cond {
        Some(c) if !c.holds(old) => Err(KvError::ConditionFailed {
            table: table.to_owned(),
            key: key.to_owned(),
        }),
        _ => Ok(()),
    }
}

impl Kv for SqliteKv {
    fn create_tables(&self, tables: &[&str]) -> Result<(), KvError> {
        for t in tables {
            validate_name(t)?;
        }
        self.write("create table", |tx| {
            for t in tables {
                tx.execute("INSERT OR IGNORE INTO kv_tables (name) VALUES (?1)", [t])
                    .map_err(|e| backend("create table", e))?;
            }
            Ok(())
        })
    }

    fn get(&self, table: &str, key: &str) -> Result<Option<Item>, KvError> {
        read(&self.conn.lock(), table, key)
    }

    fn put(&self, table: &str, key: &str, item: Item, cond: Option<Cond>) -> Result<(), KvError> {
        self.write("put", |tx| {
            let old = read(tx, table, key)?;
            condition(table, key, cond.as_ref(), old.as_ref())?;
            store(tx, table, key, &item)
        })
    }

    fn update(
        &self,
        table: &str,
        key: &str,
        changes: &[Change],
        cond: Option<Cond>,
    ) -> Result<Item, KvError> {
        self.write("update", |tx| {
            let old = read(tx, table, key)?;
            condition(table, key, cond.as_ref(), old.as_ref())?;
            let new = apply_changes(old, changes).map_err(KvError::Invalid)?;
            store(tx, table, key, &new)?;
            Ok(new)
        })
    }

    fn delete(&self, table: &str, key: &str, cond: Option<Cond>) -> Result<(), KvError> {
        self.write("delete", |tx| {
            let old = read(tx, table, key)?;
            condition(table, key, cond.as_ref(), old.as_ref())?;
            remove(tx, table, key)
        })
    }

    fn transact(&self, writes: &[Write]) -> Result<(), KvError> {
        validate_transaction(writes)?;
        self.write("transact", |tx| {
            // Every condition is checked before anything is written.
            let mut olds = Vec::with_capacity(writes.len());
            for (i, w) in writes.iter().enumerate() {
                let (table, key) = w.target();
                let old = read(tx, table, key)?;
                let cond = match w {
                    Write::Put { cond, .. }
                    | Write::Update { cond, .. }
                    | Write::Delete { cond, .. } => cond.as_ref(),
                    Write::Check { cond, .. } => Some(cond),
                };
                if let Err(e) = condition(table, key, cond, old.as_ref()) {
                    return Err(KvError::Cancelled {
                        failed: Some(i),
                        reason: e.to_string(),
                    });
                }
                olds.push(old);
            }
            for (w, old) in writes.iter().zip(olds) {
                match w {
                    Write::Put {
                        table, key, item, ..
                    } => store(tx, table, key, item)?,
                    Write::Update {
                        table,
                        key,
                        changes,
                        ..
                    } => {
                        let new = apply_changes(old, changes).map_err(KvError::Invalid)?;
                        store(tx, table, key, &new)?;
                    }
                    Write::Delete { table, key, .. } => remove(tx, table, key)?,
                    Write::Check { .. } => {}
                }
            }
            Ok(())
        })
    }

    fn scan(&self, table: &str) -> Result<Vec<(String, Item)>, KvError> {
        let conn = self.conn.lock();
        table_exists(&conn, table)?;
        let mut stmt = conn
            .prepare("SELECT k, v FROM kv_items WHERE tbl = ?1 ORDER BY k")
            .map_err(|e| backend("scan", e))?;
        let rows = stmt
            .query_map([table], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| backend("scan", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (k, v) = row.map_err(|e| backend("scan", e))?;
            let item = serde_json::from_str(&v)
                .map_err(|e| backend("scan", format!("{table}/{k}: {e}")))?;
            out.push((k, item));
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}
