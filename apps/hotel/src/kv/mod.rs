//! The application's state: tables of items behind one key-value trait,
//! with conditional writes and multi-item transactions, in the shape of
//! DynamoDB's API. Two backends implement it: [`sqlite::SqliteKv`] (the
//! embedded default) and [`dynamo::DynamoKv`] (DynamoDB's API, tested
//! against moto). Both pass one conformance suite (`conformance`, with the
//! `testing` feature).
//!
//! An item is a map of attribute names to values, stored under a string
//! key in a named table. Every read is strongly consistent and every
//! acknowledged write durable.

pub mod dynamo;
pub mod sqlite;

#[cfg(feature = "testing")]
pub mod conformance;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A value of an attribute.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Value {
    /// A string.
    S(String),
    /// A signed integer.
    N(i64),
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::S(s) => Some(s),
            Value::N(_) => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_n(&self) -> Option<i64> {
        match self {
            Value::N(n) => Some(*n),
            Value::S(_) => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::S(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::S(s)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::N(n)
    }
}

/// An item: attribute name to value.
pub type Item = BTreeMap<String, Value>;

/// Builds an item from `(name, value)` pairs.
pub fn item<const N: usize>(attrs: [(&str, Value); N]) -> Item {
    attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A condition on an item, checked atomically with the write it guards
/// (DynamoDB's condition expressions).
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// The item exists.
    Exists,
    /// The item does not exist.
    NotExists,
    /// The attribute exists (so does the item).
    Has(String),
    /// The attribute does not exist (or the item does not).
    Lacks(String),
    /// The attribute equals the value.
    Eq(String, Value),
    /// The attribute does not equal the value (true if it is absent).
    Ne(String, Value),
    /// The attribute is an integer at least this large.
    Ge(String, i64),
    /// Every condition holds.
    And(Vec<Cond>),
    /// Some condition holds.
    Or(Vec<Cond>),
}

impl Cond {
    /// `attr == value`.
    pub fn eq(attr: &str, value: impl Into<Value>) -> Self {
        Cond::Eq(attr.to_owned(), value.into())
    }

    /// `attr != value` (or absent).
    pub fn ne(attr: &str, value: impl Into<Value>) -> Self {
        Cond::Ne(attr.to_owned(), value.into())
    }

    /// `attr >= n`.
    pub fn ge(attr: &str, n: i64) -> Self {
        Cond::Ge(attr.to_owned(), n)
    }

    /// The attribute does not exist.
    pub fn lacks(attr: &str) -> Self {
        Cond::Lacks(attr.to_owned())
    }

    /// The attribute exists.
    pub fn has(attr: &str) -> Self {
        Cond::Has(attr.to_owned())
    }

    /// Whether the condition holds for `item` (`None`: no item).
    pub fn holds(&self, item: Option<&Item>) -> bool {
        let attr = |a: &str| item.and_then(|i| i.get(a));
        match self {
            Cond::Exists => item.is_some(),
            Cond::NotExists => item.is_none(),
            Cond::Has(a) => attr(a).is_some(),
            Cond::Lacks(a) => attr(a).is_none(),
            Cond::Eq(a, v) => attr(a) == Some(v),
            Cond::Ne(a, v) => attr(a) != Some(v),
            Cond::Ge(a, n) => matches!(attr(a), Some(Value::N(x)) if x >= n),
            Cond::And(cs) => cs.iter().all(|c| c.holds(item)),
            Cond::Or(cs) => cs.iter().any(|c| c.holds(item)),
        }
    }
}

/// A change to one attribute of an item (DynamoDB's update expressions).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Sets the attribute.
    Set(String, Value),
    /// Adds to an integer attribute (an absent one counts as 0).
    Add(String, i64),
    /// Removes the attribute.
    Remove(String),
}

impl Change {
    /// `attr = value`.
    pub fn set(attr: &str, value: impl Into<Value>) -> Self {
        Change::Set(attr.to_owned(), value.into())
    }

    /// `attr += n`.
    pub fn add(attr: &str, n: i64) -> Self {
        Change::Add(attr.to_owned(), n)
    }

    /// Removes `attr`.
    pub fn remove(attr: &str) -> Self {
        Change::Remove(attr.to_owned())
    }
}

/// Applies `changes` to `item` (an absent item starts empty). Fails if an
/// `Add` meets a string, or overflows.
pub fn apply_changes(item: Option<Item>, changes: &[Change]) -> Result<Item, String> {
    let mut item = item.unwrap_or_default();
    for c in changes {
        match c {
            Change::Set(a, v) => {
                item.insert(a.clone(), v.clone());
            }
            Change::Add(a, n) => {
                let old = match item.get(a) {
                    None => 0,
                    Some(Value::N(x)) => *x,
                    Some(Value::S(_)) => return Err(format!("cannot add to string attribute {a}")),
                };
                let new = old
                    .checked_add(*n)
                    .ok_or_else(|| format!("attribute {a} overflows"))?;
                item.insert(a.clone(), Value::N(new));
            }
            Change::Remove(a) => {
                item.remove(a);
            }
        }
    }
    Ok(item)
}

/// One write of a transaction, with the condition it needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Replaces (or creates) the item.
    Put {
        /// The table.
        table: String,
        /// The item's key.
        key: String,
        /// The new item.
        item: Item,
        /// What must hold first.
        cond: Option<Cond>,
    },
    /// Changes attributes of the item (creating it if absent).
    Update {
        /// The table.
        table: String,
        /// The item's key.
        key: String,
        /// The changes.
        changes: Vec<Change>,
        /// What must hold first.
        cond: Option<Cond>,
    },
    /// Deletes the item.
    Delete {
        /// The table.
        table: String,
        /// The item's key.
        key: String,
        /// What must hold first.
        cond: Option<Cond>,
    },
    /// Writes nothing; the condition must hold.
    Check {
        /// The table.
        table: String,
        /// The item's key.
        key: String,
        /// What must hold.
        cond: Cond,
    },
}

impl Write {
    /// The table and key written.
    pub fn target(&self) -> (&str, &str) {
        match self {
            Write::Put { table, key, .. }
            | Write::Update { table, key, .. }
            | Write::Delete { table, key, .. }
            | Write::Check { table, key, .. } => (table, key),
        }
    }
}

/// Most writes in one transaction (DynamoDB's limit).
pub const MAX_TRANSACTION: usize = 100;

/// What a key-value operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// A write's condition did not hold; nothing was written.
    #[error("condition failed on {table}/{key}")]
    ConditionFailed {
        /// The table.
        table: String,
        /// The key.
        key: String,
    },
    /// A transaction did not commit; nothing of it was written.
    #[error("transaction cancelled: {reason}")]
    Cancelled {
        /// Which write's condition failed, if one did.
        failed: Option<usize>,
        /// Why.
        reason: String,
    },
    /// The request is malformed (a bad name, too many writes, a key twice).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The backend failed; the write may or may not have taken effect.
    #[error("{backend} {op}: {message}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// The operation.
        op: &'static str,
        /// What it said.
        message: String,
    },
}

impl KvError {
    /// Whether a condition (of a write or a transaction) failed.
    pub fn is_condition(&self) -> bool {
        matches!(
            self,
            KvError::ConditionFailed { .. }
                | KvError::Cancelled {
                    failed: Some(_),
                    ..
                }
        )
    }
}

/// A database of tables of items.
pub trait Kv: Send + Sync {
    /// Creates the tables that do not exist yet.
    fn create_tables(&self, tables: &[&str]) -> Result<(), KvError>;

    /// The item at `key`, read after every acknowledged write.
    fn get(&self, table: &str, key: &str) -> Result<Option<Item>, KvError>;

    /// Replaces (or creates) the item at `key` if `cond` holds.
    fn put(&self, table: &str, key: &str, item: Item, cond: Option<Cond>) -> Result<(), KvError>;

    /// Applies `changes` to the item at `key` (creating it) if `cond`
    /// holds; returns the item after.
    fn update(
        &self,
        table: &str,
        key: &str,
        changes: &[Change],
        cond: Option<Cond>,
    ) -> Result<Item, KvError>;

    /// Deletes the item at `key` if `cond` holds (no item is no error
    /// when there is no condition).
    fn delete(&self, table: &str, key: &str, cond: Option<Cond>) -> Result<(), KvError>;

    /// Applies all `writes` or none: each on a distinct item, at most
    /// [`MAX_TRANSACTION`].
    fn transact(&self, writes: &[Write]) -> Result<(), KvError>;

    /// Every item of a table, by key.
    fn scan(&self, table: &str) -> Result<Vec<(String, Item)>, KvError>;

    /// What the database is, for messages.
    fn describe(&self) -> String;
}

/// Checks a transaction's shape: its size and that no item is written
/// twice (as DynamoDB refuses).
pub fn validate_transaction(writes: &[Write]) -> Result<(), KvError> {
    if writes.is_empty() || writes.len() > MAX_TRANSACTION {
        return Err(KvError::Invalid(format!(
            "a transaction holds 1 to {MAX_TRANSACTION} writes, not {}",
            writes.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for w in writes {
        let (t, k) = w.target();
        validate_name(t)?;
        if !seen.insert((t, k)) {
            return Err(KvError::Invalid(format!(
                "{t}/{k} is written twice in one transaction"
            )));
        }
    }
    Ok(())
}

/// Keys: 1 to 1,024 bytes.
pub(crate) fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > 1024 {
        return Err(KvError::Invalid(format!(
            "a key has 1 to 1024 bytes, not {}",
            key.len()
        )));
    }
    Ok(())
}

/// Table names: 3 to 255 of `[A-Za-z0-9_.-]` (DynamoDB's rule).
pub fn validate_name(table: &str) -> Result<(), KvError> {
    let ok = (3..=255).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(KvError::Invalid(format!("bad table name {table:?}")))
    }
}

/// Opens the database a spec names: `sqlite:PATH`, `dynamodb` (AWS, the
/// region and credentials from the environment) or
/// `dynamodb:http://HOST:PORT` (an endpoint such as moto).
pub fn open(spec: &str) -> Result<std::sync::Arc<dyn Kv>, KvError> {
    if let Some(path) = spec.strip_prefix("sqlite:") {
        if path.is_empty() {
            return Err(KvError::Invalid(
                "sqlite: needs a path (sqlite:PATH)".to_owned(),
            ));
        }
        return Ok(std::sync::Arc::new(sqlite::SqliteKv::open(path)?));
    }
    if spec == "dynamodb" {
        return Ok(std::sync::Arc::new(dynamo::DynamoKv::connect(None)?));
    }
    if let Some(ep) = spec.strip_prefix("dynamodb:") {
        if !(ep.starts_with("http://") || ep.starts_with("https://")) {
            return Err(KvError::Invalid(format!(
                "database {spec}: expected dynamodb:http://HOST:PORT"
            )));
        }
        return Ok(std::sync::Arc::new(dynamo::DynamoKv::connect(Some(ep))?));
    }
    Err(KvError::Invalid(format!(
        "database {spec}: expected sqlite:PATH, dynamodb or dynamodb:http://HOST:PORT"
    )))
}

/// A [`Kv`] that counts the operations made through it (one a request to
/// the database: a transaction is one), for the figures' database
/// operations per request.
pub struct Counted<'a> {
    inner: &'a dyn Kv,
    ops: std::sync::atomic::AtomicU64,
}

impl<'a> Counted<'a> {
    /// Counts the operations on `inner`.
    pub fn new(inner: &'a dyn Kv) -> Self {
        Self {
            inner,
            ops: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Operations so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn one(&self) {
        self.ops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Kv for Counted<'_> {
    fn create_tables(&self, tables: &[&str]) -> Result<(), KvError> {
        self.inner.create_tables(tables)
    }

    fn get(&self, table: &str, key: &str) -> Result<Option<Item>, KvError> {
        self.one();
        self.inner.get(table, key)
    }

    fn put(&self, table: &str, key: &str, item: Item, cond: Option<Cond>) -> Result<(), KvError> {
        self.one();
        self.inner.put(table, key, item, cond)
    }

    fn update(
        &self,
        table: &str,
        key: &str,
        changes: &[Change],
        cond: Option<Cond>,
    ) -> Result<Item, KvError> {
        self.one();
        self.inner.update(table, key, changes, cond)
    }

    fn delete(&self, table: &str, key: &str, cond: Option<Cond>) -> Result<(), KvError> {
        self.one();
        self.inner.delete(table, key, cond)
    }

    fn transact(&self, writes: &[Write]) -> Result<(), KvError> {
        self.one();
        self.inner.transact(writes)
    }

    fn scan(&self, table: &str) -> Result<Vec<(String, Item)>, KvError> {
        self.one();
        self.inner.scan(table)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
