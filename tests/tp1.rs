//! TP1: for a base state S and concurrent changesets A and B made on it,
//! `S + A + T(B, A)` equals `S + B + T(A, B)`. Checked for every ordered pair of instruction kinds
//! on a shared target (so none is missing), and for random changesets on random base states.

use objsync_testkit::cases;

use objsync::json::{canonical, state_json};
use objsync::merge;
use objsync::Store;
use objsync::{
    Changeset, Kind, ObjKey, ObjectType, PeerId, PropType, Property, Replica, Transaction, Value,
};
use proptest::prelude::*;

fn p(n: &str, t: &str) -> Property {
    Property::new(n, PropType::parse(t).unwrap())
}

/// A base with objects T[1..=3] (T[1].l = [10, 20, 30], T[2].refs = [T1, T3], T[3].ref = T1).
fn base() -> Replica {
    let mut r = Replica::new(PeerId(9));
    let mut tx = r.transaction(1);
    tx.add_type(
        ObjectType::new(
            "T",
            Some("id"),
            [
                p("id", "int"),
                p("v", "int?"),
                p("l", "list<int>"),
                p("ref", "link<T>"),
                p("refs", "list<link<T>>"),
            ],
        )
        .unwrap(),
    )
    .unwrap();
    for k in 1..=3 {
        tx.insert("T", k).unwrap();
    }
    for (i, v) in [10, 20, 30].into_iter().enumerate() {
        tx.list_insert("T", 1, "l", i, v).unwrap();
    }
    tx.list_insert("T", 2, "refs", 0, Value::Link(1.into()))
        .unwrap();
    tx.list_insert("T", 2, "refs", 1, Value::Link(3.into()))
        .unwrap();
    tx.set("T", 3, "ref", Value::Link(1.into())).unwrap();
    tx.set("T", 1, "v", 5).unwrap();
    tx.commit();
    r
}

/// One write of the given kind on the shared target (T[1], its list, its first element), in
/// `variant`s that differ in details (property, index, value).
fn write(tx: &mut Transaction<'_, objsync::MemoryStore>, kind: Kind, variant: u8) {
    let v = variant as i64;
    let r = match kind {
        Kind::AddType => tx.add_type(
            ObjectType::new(
                "U",
                Some("id"),
                [
                    p("id", "int"),
                    p("x", if v % 2 == 0 { "int" } else { "int?" }),
                ],
            )
            .unwrap(),
        ),
        Kind::AddProperties => tx.add_properties("T", vec![p(&format!("p{}", v % 2), "string")]),
        Kind::Insert => tx.insert("T", 1 + v % 2).map(|_| ()),
        Kind::Set => {
            if v % 2 == 0 {
                tx.set("T", 1, "v", 100 + v)
            } else {
                tx.set_default("T", 1, "v", 100 + v)
            }
        }
        Kind::AddInt => tx.add_int("T", 1, "v", 1 + v),
        Kind::Delete => tx.delete("T", 1),
        Kind::Clear => tx.clear("T"),
        Kind::ListInsert => tx.list_insert("T", 1, "l", (v % 4) as usize, 40 + v),
        Kind::ListSet => tx.list_set("T", 1, "l", (v % 2) as usize, 50 + v),
        Kind::ListErase => tx.list_erase("T", 1, "l", (v % 2) as usize),
        Kind::ListMove => tx.list_move("T", 1, "l", 0, 1 + (v % 2) as usize),
        Kind::ListClear => tx.list_clear("T", 1, "l"),
    };
    r.unwrap_or_else(|e| panic!("{kind:?} variant {variant}: {e}"));
}

fn state(r: &Replica) -> String {
    canonical(&state_json(r.store()).unwrap())
}

/// Integrates `incoming` into `replica`, whose own concurrent changes are `local`.
fn integrate(
    replica: &mut Replica,
    incoming: &Changeset,
    local: &Changeset,
) -> Result<(), objsync::Error> {
    let mut a = vec![incoming.clone()];
    let mut b = vec![local.clone()];
    merge(&mut a, &mut b, replica.store().schema())?;
    replica.apply_changeset(&a[0])
}

fn tp1(
    base: &Replica,
    a: impl Fn(&mut Transaction<'_, objsync::MemoryStore>),
    ta: u64,
    b: impl Fn(&mut Transaction<'_, objsync::MemoryStore>),
    tb: u64,
) -> Result<(String, String), String> {
    let mut ra = base.fork(PeerId(1));
    let mut rb = base.fork(PeerId(2));
    let mut tx = ra.transaction(ta);
    a(&mut tx);
    let ca = tx.commit();
    let mut tx = rb.transaction(tb);
    b(&mut tx);
    let cb = tx.commit();
    let ea = integrate(&mut ra, &cb, &ca);
    let eb = integrate(&mut rb, &ca, &cb);
    match (ea, eb) {
        (Ok(()), Ok(())) => Ok((state(&ra), state(&rb))),
        (Err(x), Err(_)) => Err(x.to_string()),
        (x, y) => panic!("one side failed and not the other: {x:?} / {y:?}"),
    }
}

#[test]
fn every_pair_of_instruction_kinds_converges() {
    let base = base();
    let mut checked = 0;
    for ka in Kind::ALL {
        for kb in Kind::ALL {
            for (va, vb) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                for (ta, tb) in [(10, 20), (20, 10), (15, 15)] {
                    match tp1(
                        &base,
                        |tx| write(tx, ka, va),
                        ta,
                        |tx| write(tx, kb, vb),
                        tb,
                    ) {
                        Ok((sa, sb)) => {
                            assert_eq!(sa, sb, "{ka:?}/{va} at {ta} vs {kb:?}/{vb} at {tb}")
                        }
                        // Only conflicting schema definitions may refuse to merge.
                        Err(e) => assert!(
                            ka == Kind::AddType
                                && kb == Kind::AddType
                                && va != vb
                                && e.contains("schema mismatch"),
                            "{ka:?} vs {kb:?}: {e}"
                        ),
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 12 * 12 * 4 * 3);
}

#[test]
fn pair_outcomes_follow_the_rules() {
    let base = base();
    let run = |ka, va, ta, kb, vb, tb| {
        tp1(
            &base,
            |tx| write(tx, ka, va),
            ta,
            |tx| write(tx, kb, vb),
            tb,
        )
        .unwrap()
        .0
    };
    let v = |s: &str| -> serde_json::Value { serde_json::from_str(s).unwrap() };
    // R1: later set wins.
    assert_eq!(
        v(&run(Kind::Set, 0, 10, Kind::Set, 2, 20))["T"]["1"]["v"],
        102
    );
    // R2: a default set loses to an ordinary one even when later.
    assert_eq!(
        v(&run(Kind::Set, 1, 30, Kind::Set, 0, 20))["T"]["1"]["v"],
        100
    );
    // R3: a later add_int counts on top of a set, an earlier one is dropped.
    assert_eq!(
        v(&run(Kind::Set, 0, 10, Kind::AddInt, 0, 20))["T"]["1"]["v"],
        101
    );
    assert_eq!(
        v(&run(Kind::Set, 0, 20, Kind::AddInt, 0, 10))["T"]["1"]["v"],
        100
    );
    assert_eq!(
        v(&run(Kind::AddInt, 0, 20, Kind::AddInt, 1, 10))["T"]["1"]["v"],
        8
    );
    // R4: delete beats a later set; links to the object are nulled.
    let s = v(&run(Kind::Set, 0, 30, Kind::Delete, 0, 10));
    assert!(s["T"].get("1").is_none());
    assert_eq!(s["T"]["3"]["ref"], serde_json::Value::Null);
    assert_eq!(s["T"]["2"]["refs"], serde_json::json!([3]));
    // R7: concurrent inserts at the same index: earlier first; erase beats list_set.
    assert_eq!(
        v(&run(Kind::ListInsert, 0, 20, Kind::ListInsert, 4, 10))["T"]["1"]["l"],
        serde_json::json!([44, 40, 10, 20, 30])
    );
    assert_eq!(
        v(&run(Kind::ListSet, 0, 30, Kind::ListErase, 0, 10))["T"]["1"]["l"],
        serde_json::json!([20, 30])
    );
    // R7: list_clear drops a concurrent insert.
    assert_eq!(
        v(&run(Kind::ListInsert, 1, 30, Kind::ListClear, 0, 10))["T"]["1"]["l"],
        serde_json::json!([])
    );
}

fn random_write(tx: &mut Transaction<'_, objsync::MemoryStore>, k: u8, x: u8) {
    let _ = tx.atomically(|tx| {
        let key = ObjKey::Int(1 + (x % 3) as i64);
        let len = |tx: &Transaction<'_, objsync::MemoryStore>| {
            use objsync::Store;
            tx.store().list_len("T", &key, "l").unwrap_or(0)
        };
        match k % 10 {
            0 => tx.insert("T", key.clone()).map(|_| ()),
            1 => tx.set("T", key.clone(), "v", x as i64),
            2 => tx.set_default("T", key.clone(), "v", x as i64),
            3 => tx.add_int("T", key.clone(), "v", x as i64),
            4 => tx.delete("T", key.clone()),
            5 => tx.list_insert("T", key.clone(), "l", x as usize % (len(tx) + 1), x as i64),
            6 => tx.list_set("T", key.clone(), "l", x as usize % len(tx).max(1), x as i64),
            7 => tx.list_erase("T", key.clone(), "l", x as usize % len(tx).max(1)),
            8 => tx.list_move(
                "T",
                key.clone(),
                "l",
                x as usize % len(tx).max(1),
                (x / 3) as usize % len(tx).max(1),
            ),
            _ => tx.set(
                "T",
                key.clone(),
                "ref",
                Value::Link(ObjKey::Int(1 + (x % 3) as i64)),
            ),
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

    #[test]
    fn tp1_holds_for_random_changesets(
        pre in prop::collection::vec((any::<u8>(), any::<u8>()), 0..12),
        a in prop::collection::vec((any::<u8>(), any::<u8>()), 1..8),
        b in prop::collection::vec((any::<u8>(), any::<u8>()), 1..8),
        ta in 0u64..4, tb in 0u64..4,
    ) {
        let mut s = base();
        let mut tx = s.transaction(2);
        for (k, x) in &pre { random_write(&mut tx, *k, *x); }
        tx.commit();
        let (sa, sb) = tp1(&s, |tx| for (k, x) in &a { random_write(tx, *k, *x) }, ta, |tx| for (k, x) in &b { random_write(tx, *k, *x) }, tb).unwrap();
        prop_assert_eq!(sa, sb);
    }
}
