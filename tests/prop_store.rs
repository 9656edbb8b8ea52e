//! Property test: random transactions (valid and invalid writes mixed) applied to a replica over a
//! MemoryStore never panic, leave a state that renders to JSON and re-parses to the same values,
//! and replaying the committed changesets onto a fresh replica reproduces that state.

use objsync_testkit::cases;

use objsync::json::{canonical, state_json, value_from_json};
use objsync::{ObjKey, ObjectType, PeerId, PropType, Property, Replica, Store, Transaction, Value};
use proptest::prelude::*;

const SCALARS: &[&str] = &[
    "int",
    "bool",
    "string",
    "float",
    "double",
    "date",
    "data",
    "object_id",
    "decimal",
    "int?",
    "string?",
    "double?",
    "decimal?",
    "link<A>",
];
const LISTS: &[&str] = &[
    "list<int>",
    "list<string?>",
    "list<link<A>>",
    "list<decimal>",
];

#[derive(Debug, Clone)]
enum Intent {
    Insert(u8),
    Set(u8, u8, u64, bool),
    AddInt(u8, i64),
    Delete(u8),
    Clear,
    ListInsert(u8, u8, u16, u64),
    ListSet(u8, u8, u16, u64),
    ListErase(u8, u8, u16),
    ListMove(u8, u8, u16, u16),
    ListClear(u8, u8),
    AddProperty(u8),
}

fn intent() -> impl Strategy<Value = Intent> {
    prop_oneof![
        3 => any::<u8>().prop_map(Intent::Insert),
        4 => (any::<u8>(), any::<u8>(), any::<u64>(), any::<bool>()).prop_map(|(a, b, c, d)| Intent::Set(a, b, c, d)),
        1 => (any::<u8>(), any::<i64>()).prop_map(|(a, b)| Intent::AddInt(a, b)),
        1 => any::<u8>().prop_map(Intent::Delete),
        1 => Just(Intent::Clear),
        4 => (any::<u8>(), any::<u8>(), any::<u16>(), any::<u64>()).prop_map(|(a, b, c, d)| Intent::ListInsert(a, b, c, d)),
        2 => (any::<u8>(), any::<u8>(), any::<u16>(), any::<u64>()).prop_map(|(a, b, c, d)| Intent::ListSet(a, b, c, d)),
        2 => (any::<u8>(), any::<u8>(), any::<u16>()).prop_map(|(a, b, c)| Intent::ListErase(a, b, c)),
        2 => (any::<u8>(), any::<u8>(), any::<u16>(), any::<u16>()).prop_map(|(a, b, c, d)| Intent::ListMove(a, b, c, d)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Intent::ListClear(a, b)),
        1 => any::<u8>().prop_map(Intent::AddProperty),
    ]
}

fn schema() -> ObjectType {
    let mut props = vec![Property::new("id", PropType::parse("int").unwrap())];
    for (i, t) in SCALARS.iter().chain(LISTS).enumerate() {
        props.push(Property::new(&format!("p{i}"), PropType::parse(t).unwrap()));
    }
    ObjectType::new("A", Some("id"), props).unwrap()
}

/// A value for a property type, derived from a seed; sometimes of the wrong kind on purpose.
fn value_for(pt: &PropType, seed: u64, live_keys: &[ObjKey]) -> Value {
    if seed % 17 == 0 {
        return Value::Bool(true);
    }
    if seed % 13 == 0 {
        return Value::Null;
    }
    match pt.kind() {
        objsync::ScalarKind::Int => Value::Int(seed as i64 % 1000 - 500),
        objsync::ScalarKind::Bool => Value::Bool(seed % 2 == 0),
        objsync::ScalarKind::String => Value::from(format!("s{}", seed % 50)),
        objsync::ScalarKind::Float => Value::Float((seed % 1000) as f32 / 8.0),
        objsync::ScalarKind::Double => Value::Double((seed % 1000) as f64 / 3.0),
        objsync::ScalarKind::Date => Value::Date(seed as i64),
        objsync::ScalarKind::Data => Value::Data(seed.to_le_bytes()[..(seed % 8) as usize].into()),
        objsync::ScalarKind::ObjectId => {
            let mut b = [0u8; 12];
            b[..8].copy_from_slice(&seed.to_le_bytes());
            Value::ObjectId(objsync::ObjectId(b))
        }
        objsync::ScalarKind::Decimal => Value::Decimal(
            objsync::Decimal128::from_parts(
                seed % 2 == 0,
                (seed % 100_000) as u128,
                (seed % 7) as i32 - 3,
            )
            .unwrap(),
        ),
        objsync::ScalarKind::Link => match live_keys.len() {
            0 => Value::Link(ObjKey::Int(999)),
            n => Value::Link(live_keys[(seed as usize) % n].clone()),
        },
    }
}

fn props_of(tx: &Transaction<'_, objsync::MemoryStore>, list: bool) -> Vec<(String, PropType)> {
    tx.store()
        .schema()
        .get("A")
        .unwrap()
        .properties
        .iter()
        .filter(|(n, pt)| pt.list == list && &***n != "id")
        .map(|(n, pt)| (n.to_string(), pt.clone()))
        .collect()
}

fn run_intent(tx: &mut Transaction<'_, objsync::MemoryStore>, intent: &Intent) {
    let keys = tx.store().objects("A").unwrap();
    let key = |k: u8| ObjKey::Int((k % 5) as i64);
    let scalar = |tx: &Transaction<'_, _>, p: u8| {
        let ps = props_of(tx, false);
        ps[p as usize % ps.len()].clone()
    };
    let list = |tx: &Transaction<'_, _>, p: u8| {
        let ps = props_of(tx, true);
        ps[p as usize % ps.len()].clone()
    };
    let len = |tx: &Transaction<'_, objsync::MemoryStore>, k: &ObjKey, p: &str| {
        tx.store().list_len("A", k, p).unwrap_or(0)
    };
    let _ = match intent {
        Intent::Insert(k) => tx.insert("A", key(*k)).map(|_| ()),
        Intent::Set(k, p, seed, default) => {
            let (name, pt) = scalar(tx, *p);
            let v = value_for(&pt, *seed, &keys);
            if *default {
                tx.set_default("A", key(*k), &name, v)
            } else {
                tx.set("A", key(*k), &name, v)
            }
        }
        Intent::AddInt(k, d) => tx.add_int("A", key(*k), "p0", *d),
        Intent::Delete(k) => tx.delete("A", key(*k)),
        Intent::Clear => tx.clear("A"),
        Intent::ListInsert(k, p, i, seed) => {
            let (name, pt) = list(tx, *p);
            let n = len(tx, &key(*k), &name);
            let v = value_for(&pt, *seed, &keys);
            tx.list_insert("A", key(*k), &name, *i as usize % (n + 2), v)
        }
        Intent::ListSet(k, p, i, seed) => {
            let (name, pt) = list(tx, *p);
            let n = len(tx, &key(*k), &name);
            let v = value_for(&pt, *seed, &keys);
            tx.list_set("A", key(*k), &name, *i as usize % (n + 1), v)
        }
        Intent::ListErase(k, p, i) => {
            let (name, _) = list(tx, *p);
            let n = len(tx, &key(*k), &name);
            tx.list_erase("A", key(*k), &name, *i as usize % (n + 1))
        }
        Intent::ListMove(k, p, a, b) => {
            let (name, _) = list(tx, *p);
            let n = len(tx, &key(*k), &name).max(1);
            tx.list_move("A", key(*k), &name, *a as usize % n, *b as usize % (n + 1))
        }
        Intent::ListClear(k, p) => {
            let (name, _) = list(tx, *p);
            tx.list_clear("A", key(*k), &name)
        }
        Intent::AddProperty(i) => {
            let all: Vec<&str> = SCALARS.iter().chain(LISTS).copied().collect();
            let t = all[*i as usize % all.len()];
            tx.add_properties(
                "A",
                vec![Property::new(
                    &format!("extra{}", i % 4),
                    PropType::parse(t).unwrap(),
                )],
            )
        }
    };
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(500)))]

    #[test]
    fn random_transactions_render_reparse_and_replay(txs in prop::collection::vec(prop::collection::vec(intent(), 1..25), 1..6)) {
        let mut replica = Replica::new(PeerId(3));
        let mut changesets = Vec::new();
        let mut tx = replica.transaction(1);
        tx.add_type(schema()).unwrap();
        changesets.push(tx.commit());
        for (t, intents) in txs.iter().enumerate() {
            let mut tx = replica.transaction(t as u64 + 2);
            for i in intents {
                run_intent(&mut tx, i);
            }
            changesets.push(tx.commit());
        }

        // Renders, and the text re-parses to the same values.
        let state = state_json(replica.store()).unwrap();
        let text = canonical(&state);
        let reparsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&reparsed, &state);
        let store = replica.store();
        let def = store.schema().get("A").unwrap().clone();
        for key in store.objects("A").unwrap() {
            let obj = &reparsed["A"][key.render()];
            for (name, pt) in def.properties.iter().filter(|(n, _)| &***n != "id") {
                if pt.list {
                    let items = obj[&**name].as_array().unwrap();
                    let actual = store.list("A", &key, name).unwrap();
                    prop_assert_eq!(items.len(), actual.len());
                    for (j, a) in items.iter().zip(&actual) {
                        let v = value_from_json(store.schema(), "A", name, pt, j).unwrap();
                        prop_assert!(v.semantic_eq(a), "{name}: {v:?} vs {a:?}");
                    }
                } else {
                    let v = value_from_json(store.schema(), "A", name, pt, &obj[&**name]).unwrap();
                    let a = store.get("A", &key, name).unwrap();
                    prop_assert!(v.semantic_eq(&a), "{name}: {v:?} vs {a:?}");
                }
            }
        }

        // Replaying the changesets from scratch gives the same state.
        let mut fresh = Replica::new(PeerId(4));
        for cs in &changesets {
            fresh.apply_changeset(cs).unwrap();
        }
        prop_assert_eq!(canonical(&state_json(fresh.store()).unwrap()), text);
    }
}
