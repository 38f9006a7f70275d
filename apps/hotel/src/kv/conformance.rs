//! The conformance suite every [`Kv`] backend passes: reads after writes,
//! conditions, changes, transactions that apply all or nothing, scans, bad
//! requests refused, and conditional decrements racing from threads that
//! never take a counter below zero.
//!
//! Each check panics with what it expected: call [`run`] from a test with a
//! fresh database.

use std::sync::Arc;

use super::{item, Change, Cond, Item, Kv, KvError, Value, Write};

const T: &str = "conf_items";
const U: &str = "conf_other";

fn n(i: &Item, a: &str) -> Option<i64> {
    i.get(a).and_then(Value::as_n)
}

/// Runs every check on `kv`, which must be empty of the suite's tables.
pub fn run(kv: Arc<dyn Kv>) {
    kv.create_tables(&[T, U]).expect("create tables");
    // Creating again is no error.
    kv.create_tables(&[T]).expect("create tables again");
    reads_and_puts(kv.as_ref());
    conditions(kv.as_ref());
    changes(kv.as_ref());
    transactions(kv.as_ref());
    bad_requests(kv.as_ref());
    racing_decrements(kv.clone());
    scans(kv.as_ref());
}

fn reads_and_puts(kv: &dyn Kv) {
    assert_eq!(kv.get(T, "absent").expect("get"), None);
    let a = item([("name", "a".into()), ("cap", 3.into())]);
    kv.put(T, "a", a.clone(), None).expect("put");
    assert_eq!(kv.get(T, "a").expect("get"), Some(a));
    // A put replaces the whole item.
    let b = item([("name", "b".into())]);
    kv.put(T, "a", b.clone(), None).expect("put again");
    assert_eq!(kv.get(T, "a").expect("get"), Some(b));
    // Tables are separate namespaces.
    assert_eq!(kv.get(U, "a").expect("get"), None);
    kv.delete(T, "a", None).expect("delete");
    assert_eq!(kv.get(T, "a").expect("get"), None);
    // Deleting nothing is no error.
    kv.delete(T, "a", None).expect("delete absent");
    // Keys and strings keep every byte.
    let odd = "k/ü #:v0 'quote\"";
    kv.put(
        T,
        odd,
        item([("s", odd.into()), ("neg", (-7).into())]),
        None,
    )
    .expect("put odd");
    let got = kv.get(T, odd).expect("get odd").expect("odd item");
    assert_eq!(got.get("s").and_then(Value::as_str), Some(odd));
    assert_eq!(n(&got, "neg"), Some(-7));
    kv.delete(T, odd, None).expect("delete odd");
}

fn conditions(kv: &dyn Kv) {
    let once = item([("v", 1.into())]);
    kv.put(T, "c", once.clone(), Some(Cond::NotExists))
        .expect("first create");
    let again = kv.put(T, "c", item([("v", 2.into())]), Some(Cond::NotExists));
    assert!(
        matches!(&again, Err(KvError::ConditionFailed { table, key }) if table == T && key == "c"),
        "a second create must fail its condition: {again:?}"
    );
    assert_eq!(
        kv.get(T, "c").expect("get"),
        Some(once),
        "a failed write writes nothing"
    );
    // Attribute conditions.
    kv.put(T, "c", item([("v", 2.into())]), Some(Cond::eq("v", 1)))
        .expect("v == 1");
    assert!(kv
        .put(T, "c", item([("v", 3.into())]), Some(Cond::eq("v", 1)))
        .is_err());
    assert!(kv
        .put(T, "c", item([("v", 3.into())]), Some(Cond::ne("v", 2)))
        .is_err());
    kv.put(T, "c", item([("v", 3.into())]), Some(Cond::ne("w", 2)))
        .expect("absent w != 2");
    assert!(kv
        .put(T, "c", item([("v", 4.into())]), Some(Cond::ge("v", 4)))
        .is_err());
    kv.put(T, "c", item([("v", 4.into())]), Some(Cond::ge("v", 3)))
        .expect("v >= 3");
    assert!(kv
        .put(T, "c", item([("v", 5.into())]), Some(Cond::has("w")))
        .is_err());
    kv.put(T, "c", item([("v", 5.into())]), Some(Cond::lacks("w")))
        .expect("lacks w");
    // A string is not at least any number.
    kv.put(T, "s", item([("v", "9".into())]), None)
        .expect("put");
    assert!(kv.put(T, "s", item([]), Some(Cond::ge("v", 0))).is_err());
    // Combinations.
    let both = Cond::And(vec![Cond::Exists, Cond::eq("v", 5)]);
    kv.put(T, "c", item([("v", 6.into())]), Some(both))
        .expect("and");
    let either = Cond::Or(vec![Cond::eq("v", 0), Cond::eq("v", 6)]);
    kv.put(T, "c", item([("v", 7.into())]), Some(either))
        .expect("or");
    let neither = Cond::Or(vec![Cond::eq("v", 0), Cond::eq("v", 1)]);
    assert!(kv.put(T, "c", item([]), Some(neither)).is_err());
    // Conditional deletes.
    assert!(kv.delete(T, "c", Some(Cond::eq("v", 0))).is_err());
    assert!(kv.get(T, "c").expect("get").is_some());
    kv.delete(T, "c", Some(Cond::eq("v", 7)))
        .expect("delete v == 7");
    assert!(
        kv.delete(T, "c", Some(Cond::Exists)).is_err(),
        "deleting nothing that must exist"
    );
    kv.delete(T, "s", None).expect("delete");
}

fn changes(kv: &dyn Kv) {
    // An update creates the item; Add starts from 0.
    let after = kv
        .update(
            T,
            "u",
            &[Change::set("name", "u"), Change::add("cap", 2)],
            None,
        )
        .expect("update");
    assert_eq!(after, item([("name", "u".into()), ("cap", 2.into())]));
    assert_eq!(kv.get(T, "u").expect("get"), Some(after));
    // A guarded decrement: the capacity never goes below zero.
    for left in [1, 0] {
        let i = kv
            .update(T, "u", &[Change::add("cap", -1)], Some(Cond::ge("cap", 1)))
            .expect("decrement");
        assert_eq!(n(&i, "cap"), Some(left));
    }
    let e = kv.update(T, "u", &[Change::add("cap", -1)], Some(Cond::ge("cap", 1)));
    assert!(
        e.as_ref().is_err_and(KvError::is_condition),
        "sold out: {e:?}"
    );
    assert_eq!(
        kv.get(T, "u").expect("get").and_then(|i| n(&i, "cap")),
        Some(0)
    );
    // Remove, and an update on a condition of the item's absence.
    let i = kv
        .update(T, "u", &[Change::remove("name")], None)
        .expect("remove");
    assert_eq!(i, item([("cap", 0.into())]));
    assert!(kv
        .update(T, "u", &[Change::set("x", 1)], Some(Cond::NotExists))
        .is_err());
    kv.update(T, "new", &[Change::set("x", 1)], Some(Cond::NotExists))
        .expect("create by update");
    // Adding to a string is refused, and changes nothing.
    kv.put(T, "str", item([("cap", "x".into())]), None)
        .expect("put");
    assert!(kv.update(T, "str", &[Change::add("cap", 1)], None).is_err());
    assert_eq!(
        kv.get(T, "str").expect("get"),
        Some(item([("cap", "x".into())]))
    );
    for k in ["u", "new", "str"] {
        kv.delete(T, k, None).expect("delete");
    }
}

fn transactions(kv: &dyn Kv) {
    kv.put(T, "room", item([("cap", 1.into())]), None)
        .expect("put");
    kv.put(T, "seat", item([("cap", 0.into())]), None)
        .expect("put");
    let take = |k: &str| Write::Update {
        table: T.into(),
        key: k.into(),
        changes: vec![Change::add("cap", -1)],
        cond: Some(Cond::ge("cap", 1)),
    };
    let order = Write::Put {
        table: U.into(),
        key: "order-1".into(),
        item: item([("room", "room".into())]),
        cond: Some(Cond::NotExists),
    };
    // The seat is sold out: nothing of the transaction happens.
    let e = kv.transact(&[take("room"), take("seat"), order.clone()]);
    match &e {
        Err(KvError::Cancelled { failed, .. }) => {
            assert_eq!(*failed, Some(1), "the seat's condition failed: {e:?}")
        }
        other => panic!("expected a cancelled transaction, got {other:?}"),
    }
    assert_eq!(
        kv.get(T, "room").expect("get").and_then(|i| n(&i, "cap")),
        Some(1)
    );
    assert_eq!(kv.get(U, "order-1").expect("get"), None);
    // With a seat it commits, all of it.
    kv.put(T, "seat", item([("cap", 1.into())]), None)
        .expect("put");
    kv.transact(&[take("room"), take("seat"), order.clone()])
        .expect("commit");
    assert_eq!(
        kv.get(T, "room").expect("get").and_then(|i| n(&i, "cap")),
        Some(0)
    );
    assert_eq!(
        kv.get(T, "seat").expect("get").and_then(|i| n(&i, "cap")),
        Some(0)
    );
    assert!(kv.get(U, "order-1").expect("get").is_some());
    // A check that fails cancels the writes beside it; deletes are writes.
    let check = Write::Check {
        table: U.into(),
        key: "order-1".into(),
        cond: Cond::NotExists,
    };
    let del = Write::Delete {
        table: T.into(),
        key: "room".into(),
        cond: None,
    };
    let e = kv.transact(&[del.clone(), check]);
    assert!(e.as_ref().is_err_and(KvError::is_condition), "{e:?}");
    assert!(kv.get(T, "room").expect("get").is_some());
    let ok = Write::Check {
        table: U.into(),
        key: "order-1".into(),
        cond: Cond::Exists,
    };
    kv.transact(&[del, ok]).expect("check holds");
    assert_eq!(kv.get(T, "room").expect("get"), None);
    kv.delete(T, "seat", None).expect("delete");
    kv.delete(U, "order-1", None).expect("delete");
}

fn bad_requests(kv: &dyn Kv) {
    let invalid = |r: Result<(), KvError>, what: &str| {
        assert!(matches!(r, Err(KvError::Invalid(_))), "{what}: {r:?}");
    };
    invalid(kv.put(T, "", item([]), None), "an empty key");
    invalid(
        kv.put(T, &"k".repeat(2000), item([]), None),
        "an oversized key",
    );
    invalid(
        kv.get("no such table!", "k").map(|_| ()),
        "a bad table name",
    );
    invalid(kv.transact(&[]), "an empty transaction");
    let w = Write::Put {
        table: T.into(),
        key: "twice".into(),
        item: item([]),
        cond: None,
    };
    invalid(kv.transact(&[w.clone(), w]), "one item written twice");
    let many: Vec<Write> = (0..101)
        .map(|i| Write::Put {
            table: T.into(),
            key: format!("m{i}"),
            item: item([]),
            cond: None,
        })
        .collect();
    invalid(kv.transact(&many), "101 writes");
    assert_eq!(kv.get(T, "twice").expect("get"), None);
    assert_eq!(kv.get(T, "m0").expect("get"), None);
}

/// Threads take from one counter with guarded decrements: exactly its
/// initial value succeed, and it ends at zero.
fn racing_decrements(kv: Arc<dyn Kv>) {
    const CAP: i64 = 12;
    kv.put(T, "race", item([("cap", CAP.into())]), None)
        .expect("put");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let kv = kv.clone();
            std::thread::spawn(move || {
                let mut taken = 0;
                for _ in 0..6 {
                    match kv.update(
                        T,
                        "race",
                        &[Change::add("cap", -1)],
                        Some(Cond::ge("cap", 1)),
                    ) {
                        Ok(_) => taken += 1,
                        Err(e) if e.is_condition() => {}
                        Err(e) => panic!("decrement: {e}"),
                    }
                }
                taken
            })
        })
        .collect();
    let taken: i64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(taken, CAP, "exactly the capacity is taken");
    assert_eq!(
        kv.get(T, "race").expect("get").and_then(|i| n(&i, "cap")),
        Some(0)
    );
    kv.delete(T, "race", None).expect("delete");
}

fn scans(kv: &dyn Kv) {
    for i in 0..30 {
        kv.put(U, &format!("s{i:02}"), item([("i", i.into())]), None)
            .expect("put");
    }
    let all = kv.scan(U).expect("scan");
    assert_eq!(all.len(), 30);
    for (i, (k, it)) in all.iter().enumerate() {
        assert_eq!(k, &format!("s{i:02}"), "scans return items by key");
        assert_eq!(n(it, "i"), Some(i as i64));
    }
    assert!(
        kv.scan(T).expect("scan").is_empty(),
        "the suite left its first table empty"
    );
}
