//! Many objects in one document, saved and loaded: N objects of three fields (an int `n`, a
//! string `name`, a float `score`), written by one writer in transactions of a thousand, saved,
//! and the saved bytes loaded into a new replica (timed) whose object count and one object's
//! fields are read back. objsync: a type `Item` with an int primary key, `Replica::save` and
//! `Replica::load`; automerge: a map of maps, `save` and `Automerge::load`; yrs: a map of maps,
//! `encode_state_as_update_v1` applied to a new document; loro: a map of maps,
//! `export(Snapshot)` and `import`. The size is the saved document's; the peak heap is what
//! loading added.

use crate::alloc::{measure, Measured};
use crate::util::{actor, fail, yrs_apply, yrs_int, Res};
use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ReadDoc, ROOT};
use loro::{Container, ExportMode, LoroDoc, LoroMap, LoroValue, ValueOrContainer};
use objsync::{ObjectType, PeerId, PropType, Property, Replica, Store, Value};
use yrs::{Any, Doc, Map, MapPrelim, MapRef, Out, ReadTxn, StateVector, Transact};

/// Objects per write transaction.
const BATCH: usize = 1000;

/// Object `i`'s fields as every engine stores them.
fn fields(i: usize) -> (i64, String, f64) {
    (i as i64, format!("item {i}"), i as f64 / 4.0)
}

/// What a loaded replica holds: its object count and the fields of the object in the middle.
type Probe = (usize, (i64, String, f64));

/// Runs the workload on every engine; each must read back what was written. Per engine: the
/// load's time and peak heap, and the saved document's size.
pub fn run(n: usize) -> Res<[(Measured, usize); 4]> {
    let expected = (n, fields(n / 2));
    let check = |engine: &str, probe: Probe| {
        if probe == expected {
            Ok(())
        } else {
            Err(format!("{engine}: loaded {probe:?}, expected {expected:?}"))
        }
    };
    let mut out = Vec::new();
    for (engine, saved) in [
        ("objsync", objsync_save(n)?),
        ("automerge", automerge_save(n)?),
        ("yrs", yrs_save(n)?),
        ("loro", loro_save(n)?),
    ] {
        let load = match engine {
            "objsync" => objsync_load,
            "automerge" => automerge_load,
            "yrs" => yrs_load,
            _ => loro_load,
        };
        let (probe, m) = measure(|meter| meter.time(|| load(&saved, n)));
        check(engine, probe?)?;
        out.push((m, saved.len()));
    }
    out.try_into().map_err(|_| "four engines".to_string())
}

fn objsync_save(n: usize) -> Res<Vec<u8>> {
    let mut r = Replica::new(PeerId(1));
    let ty = |t: &str| PropType::parse(t).map_err(fail("objsync: property type"));
    let item = ObjectType::new(
        "Item",
        Some("id"),
        [
            Property::new("id", ty("int")?),
            Property::new("n", ty("int")?),
            Property::new("name", ty("string")?),
            Property::new("score", ty("double")?),
        ],
    )
    .map_err(fail("objsync: type"))?;
    let mut tx = r.transaction(1);
    tx.add_type(item).map_err(fail("objsync: add type"))?;
    tx.commit();
    for start in (0..n).step_by(BATCH) {
        let mut tx = r.transaction(1);
        for i in start..(start + BATCH).min(n) {
            let (v, name, score) = fields(i);
            tx.insert("Item", v).map_err(fail("objsync: insert"))?;
            tx.set("Item", v, "n", v).map_err(fail("objsync: set"))?;
            tx.set("Item", v, "name", name)
                .map_err(fail("objsync: set"))?;
            tx.set("Item", v, "score", score)
                .map_err(fail("objsync: set"))?;
        }
        tx.commit();
    }
    Ok(r.save())
}

fn objsync_load(bytes: &[u8], n: usize) -> Res<Probe> {
    let r = Replica::load(bytes).map_err(fail("objsync: load"))?;
    let s = r.store();
    let count = s.objects("Item").map_err(fail("objsync: objects"))?.len();
    let key = ((n / 2) as i64).into();
    let get = |p: &str| s.get("Item", &key, p).map_err(fail("objsync: get"));
    let probe = match (get("n")?, get("name")?, get("score")?) {
        (Value::Int(v), Value::String(name), Value::Double(score)) => (v, name.to_string(), score),
        other => return Err(format!("objsync: object {} is {other:?}", n / 2)),
    };
    Ok((count, probe))
}

fn automerge_save(n: usize) -> Res<Vec<u8>> {
    let mut doc = Automerge::new().with_actor(actor(1));
    let mut tx = doc.transaction();
    let items = (tx.put_object(ROOT, "items", ObjType::Map)).map_err(fail("automerge: items"))?;
    tx.commit();
    for start in (0..n).step_by(BATCH) {
        let mut tx = doc.transaction();
        for i in start..(start + BATCH).min(n) {
            let (v, name, score) = fields(i);
            let obj = (tx.put_object(&items, i.to_string(), ObjType::Map))
                .map_err(fail("automerge: object"))?;
            tx.put(&obj, "n", v).map_err(fail("automerge: put"))?;
            tx.put(&obj, "name", name).map_err(fail("automerge: put"))?;
            tx.put(&obj, "score", score)
                .map_err(fail("automerge: put"))?;
        }
        tx.commit();
    }
    Ok(doc.save())
}

fn automerge_load(bytes: &[u8], n: usize) -> Res<Probe> {
    let doc = Automerge::load(bytes).map_err(fail("automerge: load"))?;
    let Some((_, items)) = doc.get(ROOT, "items").map_err(fail("automerge: get"))? else {
        return Err("automerge: no items".into());
    };
    let count = doc.length(&items);
    let Some((_, obj)) = (doc.get(&items, (n / 2).to_string())).map_err(fail("automerge: get"))?
    else {
        return Err("automerge: no object".into());
    };
    let get = |p: &str| -> Res<automerge::ScalarValue> {
        match doc.get(&obj, p).map_err(fail("automerge: get"))? {
            Some((automerge::Value::Scalar(s), _)) => Ok(s.into_owned()),
            other => Err(format!("automerge: {p} is {other:?}")),
        }
    };
    let probe = match (get("n")?, get("name")?, get("score")?) {
        (
            automerge::ScalarValue::Int(v),
            automerge::ScalarValue::Str(name),
            automerge::ScalarValue::F64(score),
        ) => (v, name.to_string(), score),
        other => return Err(format!("automerge: object {} is {other:?}", n / 2)),
    };
    Ok((count, probe))
}

fn yrs_save(n: usize) -> Res<Vec<u8>> {
    let doc = Doc::with_client_id(1);
    let items = doc.get_or_insert_map("items");
    for start in (0..n).step_by(BATCH) {
        let mut txn = doc.transact_mut();
        for i in start..(start + BATCH).min(n) {
            let (v, name, score) = fields(i);
            let obj: MapRef = items.insert(&mut txn, i.to_string(), MapPrelim::default());
            obj.insert(&mut txn, "n", Any::from(v));
            obj.insert(&mut txn, "name", Any::from(name));
            obj.insert(&mut txn, "score", Any::from(score));
        }
    }
    let txn = doc.transact();
    Ok(txn.encode_state_as_update_v1(&StateVector::default()))
}

fn yrs_load(bytes: &[u8], n: usize) -> Res<Probe> {
    let doc = Doc::new();
    yrs_apply(&doc, bytes)?;
    let items = doc.get_or_insert_map("items");
    let txn = doc.transact();
    let count = items.len(&txn) as usize;
    let Some(Out::YMap(obj)) = items.get(&txn, &(n / 2).to_string()) else {
        return Err("yrs: no object".into());
    };
    let v = yrs_int(obj.get(&txn, "n").ok_or("yrs: no n")?)?;
    let probe = match (obj.get(&txn, "name"), obj.get(&txn, "score")) {
        // yrs keeps a float with an integral value as an int.
        (Some(Out::Any(Any::String(name))), Some(Out::Any(Any::Number(score)))) => {
            let score = match score {
                yrs::Number::Int(i) => i as f64,
                yrs::Number::Float(f) => f,
            };
            (v, name.to_string(), score)
        }
        other => return Err(format!("yrs: object {} is {other:?}", n / 2)),
    };
    Ok((count, probe))
}

fn loro_save(n: usize) -> Res<Vec<u8>> {
    let doc = LoroDoc::new();
    doc.set_peer_id(1).map_err(fail("loro: peer id"))?;
    let items = doc.get_map("items");
    for start in (0..n).step_by(BATCH) {
        for i in start..(start + BATCH).min(n) {
            let (v, name, score) = fields(i);
            let obj = (items.insert_container(&i.to_string(), LoroMap::new()))
                .map_err(fail("loro: object"))?;
            obj.insert("n", v).map_err(fail("loro: insert"))?;
            obj.insert("name", name).map_err(fail("loro: insert"))?;
            obj.insert("score", score).map_err(fail("loro: insert"))?;
        }
        doc.commit();
    }
    doc.export(ExportMode::Snapshot)
        .map_err(fail("loro: export"))
}

fn loro_load(bytes: &[u8], n: usize) -> Res<Probe> {
    let doc = LoroDoc::new();
    doc.import(bytes).map_err(fail("loro: import"))?;
    let items = doc.get_map("items");
    let count = items.len();
    let Some(ValueOrContainer::Container(Container::Map(obj))) = items.get(&(n / 2).to_string())
    else {
        return Err("loro: no object".into());
    };
    let value = |p: &str| match obj.get(p) {
        Some(ValueOrContainer::Value(v)) => Ok(v),
        other => Err(format!("loro: {p} is {other:?}")),
    };
    let probe = match (value("n")?, value("name")?, value("score")?) {
        (LoroValue::I64(v), LoroValue::String(name), LoroValue::Double(score)) => {
            (v, name.to_string(), score)
        }
        other => return Err(format!("loro: object {} is {other:?}", n / 2)),
    };
    Ok((count, probe))
}
