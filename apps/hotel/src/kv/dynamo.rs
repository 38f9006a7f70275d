//! DynamoDB's API through `aws-sdk-dynamodb`: each table has one string
//! hash key, the attribute `_k`; reads are strongly consistent; conditions
//! become condition expressions and [`Kv::transact`] is
//! `TransactWriteItems`. An endpoint override (`dynamodb:http://HOST:PORT`)
//! points it at moto or DynamoDB Local.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, KeySchemaElement,
    KeyType, Put, ReturnValue, ScalarAttributeType, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;

use super::{
    check_key, validate_name, validate_transaction, Change, Cond, Item, Kv, KvError, Value, Write,
};

/// The hash key attribute of every table.
const KEY: &str = "_k";

/// A database behind DynamoDB's API.
#[derive(Debug, Clone)]
pub struct DynamoKv {
    client: Client,
    endpoint: Option<String>,
    rt: Arc<tokio::runtime::Runtime>,
}

fn backend(op: &'static str, message: String) -> KvError {
    KvError::Backend {
        backend: "dynamodb",
        op,
        message,
    }
}

/// An SDK error's code and message, with its causes.
fn describe_err<E>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> String
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    aws_sdk_dynamodb::error::SdkError<E>: std::error::Error,
{
    format!("{}", DisplayErrorContext(e))
}

impl DynamoKv {
    /// Connects to DynamoDB, or to `endpoint` when given; the region comes
    /// from the environment (us-east-1 if unset).
    pub fn connect(endpoint: Option<&str>) -> Result<Self, KvError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("exoflow-dynamodb")
            .enable_all()
            .build()
            .map_err(|e| backend("start runtime", e.to_string()))?;
        let ep = endpoint.map(str::to_owned);
        let client = rt.block_on(async move {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(ep) = &ep {
                loader = loader.endpoint_url(ep);
            }
            let shared = loader.load().await;
            let mut b = aws_sdk_dynamodb::config::Builder::from(&shared)
                .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5));
            if shared.region().is_none() {
                b = b.region(aws_config::Region::new("us-east-1"));
            }
            Client::from_conf(b.build())
        });
        Ok(Self {
            client,
            endpoint: endpoint.map(str::to_owned),
            rt: Arc::new(rt),
        })
    }

    /// Runs `f` on this backend's runtime and waits for it, from any
    /// thread (inside another runtime too).
    fn block<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.rt.block_on(f);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = tx.send(f.await);
        });
        // The runtime lives as long as `self`: the task always answers.
        match rx.recv() {
            Ok(v) => v,
            Err(_) => unreachable!("the DynamoDB runtime dropped a task"),
        }
    }
}

/// The outcome of a single-item write: a failed condition is
/// [`KvError::ConditionFailed`], any other error the backend's.
fn guarded<T, E>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E>>,
    op: &'static str,
    table: &str,
    key: &str,
) -> Result<T, KvError>
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    aws_sdk_dynamodb::error::SdkError<E>: std::error::Error,
{
    result.map_err(|err| {
        if err.code() == Some("ConditionalCheckFailedException") {
            KvError::ConditionFailed {
                table: table.to_owned(),
                key: key.to_owned(),
            }
        } else {
            backend(op, format!("{table}/{key}: {}", describe_err(&err)))
        }
    })
}

fn check_attrs<'a>(names: impl Iterator<Item = &'a String>) -> Result<(), KvError> {
    for n in names {
        if n == KEY || n.is_empty() {
            return Err(KvError::Invalid(format!(
                "attribute name {n:?} is reserved or empty"
            )));
        }
    }
    Ok(())
}

fn to_av(v: &Value) -> AttributeValue {
    match v {
        Value::S(s) => AttributeValue::S(s.clone()),
        Value::N(n) => AttributeValue::N(n.to_string()),
    }
}

fn from_item(table: &str, raw: HashMap<String, AttributeValue>) -> Result<(String, Item), KvError> {
    let mut key = String::new();
    let mut item = Item::new();
    for (name, av) in raw {
        let v = match av {
            AttributeValue::S(s) => Value::S(s),
            AttributeValue::N(n) => Value::N(n.parse().map_err(|_| {
                backend(
                    "read",
                    format!("{table}: attribute {name} = {n} is not a 64-bit integer"),
                )
            })?),
            other => {
                return Err(backend(
                    "read",
                    format!("{table}: attribute {name} has an unsupported type ({other:?})"),
                ))
            }
        };
        if name == KEY {
            if let Value::S(s) = v {
                key = s;
            }
        } else {
            item.insert(name, v);
        }
    }
    Ok((key, item))
}

fn key_of(key: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([(KEY.to_owned(), AttributeValue::S(key.to_owned()))])
}

/// Builds expressions with `#nI` / `:vI` placeholders.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, n: &str) -> String {
        let p = format!("#n{}", self.names.len());
        self.names.insert(p.clone(), n.to_owned());
        p
    }

    fn value(&mut self, v: AttributeValue) -> String {
        let p = format!(":v{}", self.values.len());
        self.values.insert(p.clone(), v);
        p
    }

    /// A condition expression (`None`: always true).
    fn cond(&mut self, c: &Cond) -> Option<String> {
        Some(match c {
            Cond::Exists => format!("attribute_exists({})", self.name(KEY)),
            Cond::NotExists => format!("attribute_not_exists({})", self.name(KEY)),
            Cond::Has(a) => format!("attribute_exists({})", self.name(a)),
            Cond::Lacks(a) => format!("attribute_not_exists({})", self.name(a)),
            Cond::Eq(a, v) => format!("{} = {}", self.name(a), self.value(to_av(v))),
            Cond::Ne(a, v) => {
                let n = self.name(a);
                format!(
                    "(attribute_not_exists({n}) OR {n} <> {})",
                    self.value(to_av(v))
                )
            }
            Cond::Ge(a, x) => format!(
                "{} >= {}",
                self.name(a),
                self.value(AttributeValue::N(x.to_string()))
            ),
            Cond::And(cs) => {
                let parts: Vec<String> = cs.iter().filter_map(|c| self.cond(c)).collect();
                if parts.is_empty() {
                    return None;
                }
                format!("({})", parts.join(" AND "))
            }
            Cond::Or(cs) => {
                let mut parts = Vec::new();
                for c in cs {
                    // A branch that always holds makes the whole hold.
                    parts.push(self.cond(c)?);
                }
                if parts.is_empty() {
                    let k = self.name(KEY);
                    return Some(format!(
                        "(attribute_exists({k}) AND attribute_not_exists({k}))"
                    ));
                }
                format!("({})", parts.join(" OR "))
            }
        })
    }

    /// An update expression.
    fn update(&mut self, changes: &[Change]) -> Option<String> {
        let (mut set, mut add, mut remove) = (Vec::new(), Vec::new(), Vec::new());
        for c in changes {
            match c {
                Change::Set(a, v) => {
                    let n = self.name(a);
                    set.push(format!("{n} = {}", self.value(to_av(v))));
                }
                Change::Add(a, x) => {
                    let n = self.name(a);
                    add.push(format!(
                        "{n} {}",
                        self.value(AttributeValue::N(x.to_string()))
                    ));
                }
                Change::Remove(a) => remove.push(self.name(a)),
            }
        }
        let mut out = Vec::new();
        if !set.is_empty() {
            out.push(format!("SET {}", set.join(", ")));
        }
        if !add.is_empty() {
            out.push(format!("ADD {}", add.join(", ")));
        }
        if !remove.is_empty() {
            out.push(format!("REMOVE {}", remove.join(", ")));
        }
        (!out.is_empty()).then(|| out.join(" "))
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// Rejects changes that DynamoDB would refuse or apply differently: the
/// key attribute, or one attribute changed twice.
fn check_changes(changes: &[Change]) -> Result<(), KvError> {
    let mut seen = std::collections::HashSet::new();
    for c in changes {
        let a = match c {
            Change::Set(a, _) | Change::Add(a, _) | Change::Remove(a) => a,
        };
        check_attrs(std::iter::once(a))?;
        if !seen.insert(a) {
            return Err(KvError::Invalid(format!(
                "attribute {a} is changed twice in one update"
            )));
        }
    }
    Ok(())
}

impl Kv for DynamoKv {
    fn create_tables(&self, tables: &[&str]) -> Result<(), KvError> {
        for t in tables {
            validate_name(t)?;
            let c = self.client.clone();
            let name = (*t).to_owned();
            let result: Result<(), String> = self.block(async move {
                let def = AttributeDefinition::builder()
                    .attribute_name(KEY)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| e.to_string())?;
                let schema = KeySchemaElement::builder()
                    .attribute_name(KEY)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| e.to_string())?;
                let sent = c
                    .create_table()
                    .table_name(&name)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(def)
                    .key_schema(schema)
                    .send()
                    .await;
                match sent {
                    Ok(_) => Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_resource_in_use_exception()) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(describe_err(&e)),
                }
            });
            result.map_err(|e| backend("create table", format!("{t}: {e}")))?;
        }
        Ok(())
    }

    fn get(&self, table: &str, key: &str) -> Result<Option<Item>, KvError> {
        validate_name(table)?;
        check_key(key)?;
        let c = self.client.clone();
        let (t, k) = (table.to_owned(), key.to_owned());
        let out = self
            .block(async move {
                c.get_item()
                    .table_name(&t)
                    .set_key(Some(key_of(&k)))
                    .consistent_read(true)
                    .send()
                    .await
            })
            .map_err(|e| backend("get", format!("{table}/{key}: {}", describe_err(&e))))?;
        out.item
            .map(|raw| from_item(table, raw).map(|(_, i)| i))
            .transpose()
    }

    fn put(&self, table: &str, key: &str, item: Item, cond: Option<Cond>) -> Result<(), KvError> {
        validate_name(table)?;
        check_key(key)?;
        check_attrs(item.keys())?;
        let mut e = Expr::default();
        let ce = cond.as_ref().and_then(|c| e.cond(c));
        let mut raw: HashMap<String, AttributeValue> =
            item.iter().map(|(k, v)| (k.clone(), to_av(v))).collect();
        raw.extend(key_of(key));
        let c = self.client.clone();
        let t = table.to_owned();
        let result = self.block(async move {
            c.put_item()
                .table_name(&t)
                .set_item(Some(raw))
                .set_condition_expression(ce)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .send()
                .await
        });
        guarded(result, "put", table, key).map(|_| ())
    }

    fn update(
        &self,
        table: &str,
        key: &str,
        changes: &[Change],
        cond: Option<Cond>,
    ) -> Result<Item, KvError> {
        validate_name(table)?;
        check_key(key)?;
        check_changes(changes)?;
        let mut e = Expr::default();
        let ue = e.update(changes);
        let ce = cond.as_ref().and_then(|c| e.cond(c));
        let c = self.client.clone();
        let (t, k) = (table.to_owned(), key.to_owned());
        let result = self.block(async move {
            c.update_item()
                .table_name(&t)
                .set_key(Some(key_of(&k)))
                .set_update_expression(ue)
                .set_condition_expression(ce)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .return_values(ReturnValue::AllNew)
                .send()
                .await
        });
        match guarded(result, "update", table, key)?.attributes {
            Some(raw) => Ok(from_item(table, raw)?.1),
            None => Ok(Item::new()),
        }
    }

    fn delete(&self, table: &str, key: &str, cond: Option<Cond>) -> Result<(), KvError> {
        validate_name(table)?;
        check_key(key)?;
        let mut e = Expr::default();
        let ce = cond.as_ref().and_then(|c| e.cond(c));
        let c = self.client.clone();
        let (t, k) = (table.to_owned(), key.to_owned());
        let result = self.block(async move {
            c.delete_item()
                .table_name(&t)
                .set_key(Some(key_of(&k)))
                .set_condition_expression(ce)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .send()
                .await
        });
        guarded(result, "delete", table, key).map(|_| ())
    }

    fn transact(&self, writes: &[Write]) -> Result<(), KvError> {
        validate_transaction(writes)?;
        let mut items = Vec::with_capacity(writes.len());
        let build = |e: aws_sdk_dynamodb::error::BuildError| KvError::Invalid(e.to_string());
        for w in writes {
            let mut e = Expr::default();
            let (table, key) = w.target();
            check_key(key)?;
            let item = match w {
                Write::Put { item, cond, .. } => {
                    check_attrs(item.keys())?;
                    let ce = cond.as_ref().and_then(|c| e.cond(c));
                    let mut raw: HashMap<String, AttributeValue> =
                        item.iter().map(|(k, v)| (k.clone(), to_av(v))).collect();
                    raw.extend(key_of(key));
                    let p = Put::builder()
                        .table_name(table)
                        .set_item(Some(raw))
                        .set_condition_expression(ce)
                        .set_expression_attribute_names(e.names())
                        .set_expression_attribute_values(e.values())
                        .build()
                        .map_err(build)?;
                    TransactWriteItem::builder().put(p).build()
                }
                Write::Update { changes, cond, .. } => {
                    check_changes(changes)?;
                    let ue = e.update(changes).ok_or_else(|| {
                        KvError::Invalid(format!(
                            "an update of {table}/{key} in a transaction changes nothing"
                        ))
                    })?;
                    let ce = cond.as_ref().and_then(|c| e.cond(c));
                    let u = Update::builder()
                        .table_name(table)
                        .set_key(Some(key_of(key)))
                        .update_expression(ue)
                        .set_condition_expression(ce)
                        .set_expression_attribute_names(e.names())
                        .set_expression_attribute_values(e.values())
                        .build()
                        .map_err(build)?;
                    TransactWriteItem::builder().update(u).build()
                }
                Write::Delete { cond, .. } => {
                    let ce = cond.as_ref().and_then(|c| e.cond(c));
                    let d = Delete::builder()
                        .table_name(table)
                        .set_key(Some(key_of(key)))
                        .set_condition_expression(ce)
                        .set_expression_attribute_names(e.names())
                        .set_expression_attribute_values(e.values())
                        .build()
                        .map_err(build)?;
                    TransactWriteItem::builder().delete(d).build()
                }
                Write::Check { cond, .. } => {
                    // A condition that always holds checks nothing.
                    let Some(ce) = e.cond(cond) else { continue };
                    let c = ConditionCheck::builder()
                        .table_name(table)
                        .set_key(Some(key_of(key)))
                        .condition_expression(ce)
                        .set_expression_attribute_names(e.names())
                        .set_expression_attribute_values(e.values())
                        .build()
                        .map_err(build)?;
                    TransactWriteItem::builder().condition_check(c).build()
                }
            };
            items.push(item);
        }
        let c = self.client.clone();
        let result = self.block(async move {
            c.transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
        });
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let reason = describe_err(&err);
                match err.as_service_error() {
                    Some(s) if s.is_transaction_canceled_exception() => {
                        // The reasons list the writes in order; a condition
                        // failure names its index.
                        let failed = match s {
                            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(t) => t
                                .cancellation_reasons()
                                .iter()
                                .position(|r| r.code() == Some("ConditionalCheckFailed")),
                            _ => None,
                        };
                        let failed = failed
                            .or_else(|| reason.contains("ConditionalCheckFailed").then_some(0));
                        Err(KvError::Cancelled { failed, reason })
                    }
                    _ => Err(backend("transact", reason)),
                }
            }
        }
    }

    fn scan(&self, table: &str) -> Result<Vec<(String, Item)>, KvError> {
        validate_name(table)?;
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let c = self.client.clone();
            let t = table.to_owned();
            let from = start.take();
            let page = self
                .block(async move {
                    c.scan()
                        .table_name(&t)
                        .consistent_read(true)
                        .set_exclusive_start_key(from)
                        .send()
                        .await
                })
                .map_err(|e| backend("scan", format!("{table}: {}", describe_err(&e))))?;
            for raw in page.items.unwrap_or_default() {
                out.push(from_item(table, raw)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn describe(&self) -> String {
        match &self.endpoint {
            Some(ep) => format!("dynamodb:{ep}"),
            None => "dynamodb".to_owned(),
        }
    }
}
