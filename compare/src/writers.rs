//! Workload 1, many writers: `clients` replicas start from a common base holding `objects`
//! shared objects with `fields` int fields each; every client sets `writes` random fields of
//! random objects in one transaction, all concurrently (nobody has synced yet); then every
//! client's changes go to a hub, and every client receives from the hub what it lacks.
//!
//! - objsync: the hub is a `sync::Server`; each client uploads, then each downloads and
//!   integrates (in-process `Upload`/`Download` values).
//! - automerge: the hub is a fork of the base document; it applies each client's new change
//!   (`get_changes` after the base heads), then each client applies `hub.get_changes(own
//!   heads)` (in-process `Change` values).
//! - yrs: the hub is a document holding the base; it applies each client's update (its diff
//!   against the base state vector), then each client applies the hub's diff against the
//!   client's state vector (v1 update bytes, yrs' only exchange form).
//! - loro: like yrs, with `LoroMap`s in a root map: the hub is a document holding the base; it
//!   imports each client's updates since the base version vector (`export(updates(&base))`,
//!   one commit per client), then each client imports the hub's updates since its own version
//!   vector (bytes, loro's exchange form).
//!
//! Timed: the writes, the hub integrating every client, and every client integrating the hub's
//! changes. Not timed: building the base and giving every client a copy of it.
//!
//! Every replica must end with the same values; across engines the set of fields that hold a
//! value must be the same, and each must hold one of the values written to it (which concurrent
//! write wins is each engine's own rule).

use crate::alloc::{best_of, measure, Measured};
use crate::rng::Rng;
use crate::trace::loro_doc;
use crate::util::{actor, automerge_int, fail, loro_int, yrs_apply, yrs_int, yrs_value, Res};
use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ReadDoc, ROOT};
use loro::{Container, ExportMode, LoroDoc, LoroMap, ValueOrContainer};
use objsync::sync::{Client, Server};
use objsync::{ObjectType, PeerId, PropType, Property, Replica, Store, Value};
use std::collections::BTreeMap;
use yrs::{Doc, Map, MapPrelim, MapRef, Out, ReadTxn, StateVector, Transact};

/// The sizes of one run.
pub struct Params {
    /// How many clients write.
    pub clients: usize,
    /// Field writes per client.
    pub writes: usize,
    /// Shared objects.
    pub objects: usize,
    /// Fields per object.
    pub fields: usize,
}

struct Write {
    obj: usize,
    field: usize,
    value: i64,
}

struct ClientPlan {
    /// objsync's changeset timestamp (the others order writes by their own clocks).
    timestamp: u64,
    writes: Vec<Write>,
}

/// Field values by (object, field); fields never written are absent.
type State = BTreeMap<(usize, usize), i64>;

/// Peer numbers of the replicas that are not clients (clients are 1 ..= clients).
const BASE_PEER: u64 = 1 << 40;
const HUB_PEER: u64 = (1 << 40) + 1;

fn plan(p: &Params, rng: &mut Rng) -> Vec<ClientPlan> {
    (0..p.clients)
        .map(|k| ClientPlan {
            timestamp: 1_000 + rng.below(1_000) as u64,
            writes: (0..p.writes)
                .map(|j| Write {
                    obj: rng.below(p.objects),
                    field: rng.below(p.fields),
                    // Unique, so a winner tells which write it was.
                    value: (k * p.writes + j) as i64 + 1,
                })
                .collect(),
        })
        .collect()
}

/// Runs the workload on every engine and checks the results; returns the measurements in
/// engine order, and objsync's hub (for its history).
pub fn run(p: &Params, rng: &mut Rng) -> Res<([Measured; 4], Server)> {
    let plan = plan(p, rng);
    let names: Vec<String> = (0..p.fields).map(|f| format!("f{f}")).collect();
    let ((o, hub), mo) = best_of(|| objsync(p, &plan, &names))?;
    let (a, ma) = best_of(|| automerge(p, &plan, &names))?;
    let (y, my) = best_of(|| yrs(p, &plan, &names))?;
    let (l, ml) = best_of(|| loro(p, &plan, &names))?;
    let mut candidates: BTreeMap<(usize, usize), Vec<i64>> = BTreeMap::new();
    for w in plan.iter().flat_map(|c| &c.writes) {
        candidates
            .entry((w.obj, w.field))
            .or_default()
            .push(w.value);
    }
    for (engine, state) in [
        ("objsync", &o),
        ("automerge", &a),
        ("yrs", &y),
        ("loro", &l),
    ] {
        if !state.keys().eq(candidates.keys()) {
            return Err(format!(
                "many writers: {engine} ends with {} fields set, but {} were written",
                state.len(),
                candidates.len()
            ));
        }
        for (key, value) in state {
            if !candidates[key].contains(value) {
                return Err(format!(
                    "many writers: {engine} has {value} in object {} field {}, which nobody wrote there",
                    key.0, key.1
                ));
            }
        }
    }
    Ok(([mo, ma, my, ml], hub))
}

fn objsync_state(r: &Replica, p: &Params, names: &[String]) -> Res<State> {
    let mut state = State::new();
    for o in 0..p.objects {
        for (f, name) in names.iter().enumerate() {
            match r.store().get("Obj", &(o as i64).into(), name) {
                Ok(Value::Null) => {}
                Ok(Value::Int(v)) => {
                    state.insert((o, f), v);
                }
                Ok(other) => return Err(format!("objsync: unexpected value {other:?}")),
                Err(e) => return Err(format!("objsync: reading a field: {e}")),
            }
        }
    }
    Ok(state)
}

fn objsync(p: &Params, plan: &[ClientPlan], names: &[String]) -> Res<((State, Server), Measured)> {
    let (state, m) = measure(|meter| -> Res<(State, Server)> {
        let mut server = Server::new();
        let mut base = Client::new(PeerId(BASE_PEER));
        let int = |t| PropType::parse(t).map_err(fail("objsync: property type"));
        let mut props = vec![Property::new("id", int("int")?)];
        for n in names {
            props.push(Property::new(n, int("int?")?));
        }
        let ty = ObjectType::new("Obj", Some("id"), props).map_err(fail("objsync: type"))?;
        base.write(1, |tx| {
            tx.add_type(ty)?;
            for o in 0..p.objects {
                tx.insert("Obj", o as i64)?;
            }
            Ok(())
        })
        .map_err(fail("objsync: base"))?;
        server
            .integrate(base.peer(), base.upload())
            .map_err(fail("objsync: base upload"))?;
        drop(base);
        let mut clients = Vec::with_capacity(p.clients);
        for k in 0..p.clients {
            let mut c = Client::new(PeerId(k as u64 + 1));
            c.integrate(
                server
                    .download(c.peer(), c.cursor(), None)
                    .map_err(fail("objsync: download"))?,
            )
            .map_err(fail("objsync: base download"))?;
            clients.push(c);
        }
        meter.time(|| -> Res<()> {
            for (c, cp) in clients.iter_mut().zip(plan) {
                c.write(cp.timestamp, |tx| {
                    for w in &cp.writes {
                        tx.set("Obj", w.obj as i64, &names[w.field], w.value)?;
                    }
                    Ok(())
                })
                .map_err(fail("objsync: write"))?;
            }
            for c in &mut clients {
                let ack = server
                    .integrate(c.peer(), c.upload())
                    .map_err(fail("objsync: server integrate"))?;
                c.acknowledge(ack);
            }
            for c in &mut clients {
                let d = server
                    .download(c.peer(), c.cursor(), None)
                    .map_err(fail("objsync: download"))?;
                c.integrate(d).map_err(fail("objsync: client integrate"))?;
            }
            Ok(())
        })?;
        let state = objsync_state(server.replica(), p, names)?;
        for (k, c) in clients.iter().enumerate() {
            if objsync_state(c.replica(), p, names)? != state {
                return Err(format!("objsync: client {k} differs from the server"));
            }
        }
        Ok((state, server))
    });
    Ok((state?, m))
}

fn automerge_state(doc: &Automerge, objs: &[automerge::ObjId], names: &[String]) -> Res<State> {
    let mut state = State::new();
    for (o, obj) in objs.iter().enumerate() {
        for (f, name) in names.iter().enumerate() {
            if let Some((v, _)) = doc
                .get(obj, name.as_str())
                .map_err(fail("automerge: get"))?
            {
                state.insert((o, f), automerge_int(&v)?);
            }
        }
    }
    Ok(state)
}

fn automerge(p: &Params, plan: &[ClientPlan], names: &[String]) -> Res<(State, Measured)> {
    let (state, m) = measure(|meter| -> Res<State> {
        let mut base = Automerge::new().with_actor(actor(BASE_PEER));
        let mut tx = base.transaction();
        let root = tx
            .put_object(ROOT, "objects", ObjType::Map)
            .map_err(fail("automerge: base"))?;
        let mut objs = Vec::with_capacity(p.objects);
        for o in 0..p.objects {
            objs.push(
                tx.put_object(&root, o.to_string(), ObjType::Map)
                    .map_err(fail("automerge: base"))?,
            );
        }
        tx.commit();
        let base_heads = base.get_heads();
        let mut clients: Vec<Automerge> = (0..p.clients)
            .map(|k| base.fork().with_actor(actor(k as u64 + 1)))
            .collect();
        let mut hub = base.fork().with_actor(actor(HUB_PEER));
        drop(base);
        meter.time(|| -> Res<()> {
            for (c, cp) in clients.iter_mut().zip(plan) {
                let mut tx = c.transaction();
                for w in &cp.writes {
                    tx.put(&objs[w.obj], names[w.field].as_str(), w.value)
                        .map_err(fail("automerge: put"))?;
                }
                tx.commit();
            }
            for c in &clients {
                hub.apply_changes(c.get_changes(&base_heads))
                    .map_err(fail("automerge: hub apply"))?;
            }
            for c in &mut clients {
                let changes = hub.get_changes(&c.get_heads());
                c.apply_changes(changes)
                    .map_err(fail("automerge: client apply"))?;
            }
            Ok(())
        })?;
        let state = automerge_state(&hub, &objs, names)?;
        for (k, c) in clients.iter().enumerate() {
            if automerge_state(c, &objs, names)? != state {
                return Err(format!("automerge: client {k} differs from the hub"));
            }
        }
        Ok(state)
    });
    Ok((state?, m))
}

/// The shared objects of a yrs replica, looked up once (as an application would keep them).
fn yrs_objects(doc: &Doc, p: &Params) -> Res<Vec<MapRef>> {
    let root = doc.get_or_insert_map("objects");
    let txn = doc.transact();
    (0..p.objects)
        .map(|o| match root.get(&txn, &o.to_string()) {
            Some(Out::YMap(m)) => Ok(m),
            other => Err(format!("yrs: object {o} is {other:?}")),
        })
        .collect()
}

fn yrs_state(doc: &Doc, objs: &[MapRef], names: &[String]) -> Res<State> {
    let txn = doc.transact();
    let mut state = State::new();
    for (o, obj) in objs.iter().enumerate() {
        for (f, name) in names.iter().enumerate() {
            if let Some(v) = obj.get(&txn, name) {
                state.insert((o, f), yrs_int(v)?);
            }
        }
    }
    Ok(state)
}

fn yrs(p: &Params, plan: &[ClientPlan], names: &[String]) -> Res<(State, Measured)> {
    let (state, m) = measure(|meter| -> Res<State> {
        let base = Doc::with_client_id(BASE_PEER);
        let root = base.get_or_insert_map("objects");
        {
            let mut txn = base.transact_mut();
            for o in 0..p.objects {
                root.insert(&mut txn, o.to_string(), MapPrelim::default());
            }
        }
        let (base_update, base_sv) = {
            let txn = base.transact();
            (
                txn.encode_state_as_update_v1(&StateVector::default()),
                txn.state_vector(),
            )
        };
        drop(base);
        let replica = |id: u64| -> Res<(Doc, Vec<MapRef>)> {
            let doc = Doc::with_client_id(id);
            yrs_apply(&doc, &base_update)?;
            let objs = yrs_objects(&doc, p)?;
            Ok((doc, objs))
        };
        let clients = (0..p.clients)
            .map(|k| replica(k as u64 + 1))
            .collect::<Res<Vec<_>>>()?;
        let (hub, hub_objs) = replica(HUB_PEER)?;
        meter.time(|| -> Res<()> {
            for ((doc, objs), cp) in clients.iter().zip(plan) {
                let mut txn = doc.transact_mut();
                for w in &cp.writes {
                    objs[w.obj].insert(&mut txn, names[w.field].as_str(), yrs_value(w.value));
                }
            }
            for (doc, _) in &clients {
                let update = doc.transact().encode_diff_v1(&base_sv);
                yrs_apply(&hub, &update)?;
            }
            for (doc, _) in &clients {
                let sv = doc.transact().state_vector();
                let update = hub.transact().encode_diff_v1(&sv);
                yrs_apply(doc, &update)?;
            }
            Ok(())
        })?;
        let state = yrs_state(&hub, &hub_objs, names)?;
        for (k, (doc, objs)) in clients.iter().enumerate() {
            if yrs_state(doc, objs, names)? != state {
                return Err(format!("yrs: client {k} differs from the hub"));
            }
        }
        Ok(state)
    });
    Ok((state?, m))
}

/// The shared objects of a loro replica, looked up once.
fn loro_objects(doc: &LoroDoc, p: &Params) -> Res<Vec<LoroMap>> {
    let root = doc.get_map("objects");
    (0..p.objects)
        .map(|o| match root.get(&o.to_string()) {
            Some(ValueOrContainer::Container(Container::Map(m))) => Ok(m),
            other => Err(format!("loro: object {o} is {other:?}")),
        })
        .collect()
}

fn loro_state(objs: &[LoroMap], names: &[String]) -> Res<State> {
    let mut state = State::new();
    for (o, obj) in objs.iter().enumerate() {
        for (f, name) in names.iter().enumerate() {
            if let Some(v) = obj.get(name) {
                state.insert((o, f), loro_int(v)?);
            }
        }
    }
    Ok(state)
}

fn loro(p: &Params, plan: &[ClientPlan], names: &[String]) -> Res<(State, Measured)> {
    let (state, m) = measure(|meter| -> Res<State> {
        let base = loro_doc(BASE_PEER)?;
        let root = base.get_map("objects");
        for o in 0..p.objects {
            root.insert_container(&o.to_string(), LoroMap::new())
                .map_err(fail("loro: base"))?;
        }
        base.commit();
        let base_update = base
            .export(ExportMode::Snapshot)
            .map_err(fail("loro: base export"))?;
        let base_vv = base.oplog_vv();
        drop(base);
        let replica = |id: u64| -> Res<(LoroDoc, Vec<LoroMap>)> {
            let doc = loro_doc(id)?;
            doc.import(&base_update)
                .map_err(fail("loro: base import"))?;
            let objs = loro_objects(&doc, p)?;
            Ok((doc, objs))
        };
        let clients = (0..p.clients)
            .map(|k| replica(k as u64 + 1))
            .collect::<Res<Vec<_>>>()?;
        let (hub, hub_objs) = replica(HUB_PEER)?;
        meter.time(|| -> Res<()> {
            for ((doc, objs), cp) in clients.iter().zip(plan) {
                for w in &cp.writes {
                    objs[w.obj]
                        .insert(names[w.field].as_str(), w.value)
                        .map_err(fail("loro: insert"))?;
                }
                doc.commit();
            }
            for (doc, _) in &clients {
                let update = doc
                    .export(ExportMode::updates(&base_vv))
                    .map_err(fail("loro: client export"))?;
                hub.import(&update).map_err(fail("loro: hub import"))?;
            }
            for (doc, _) in &clients {
                let update = hub
                    .export(ExportMode::updates(&doc.oplog_vv()))
                    .map_err(fail("loro: hub export"))?;
                doc.import(&update).map_err(fail("loro: client import"))?;
            }
            Ok(())
        })?;
        let state = loro_state(&hub_objs, names)?;
        for (k, (_, objs)) in clients.iter().enumerate() {
            if loro_state(objs, names)? != state {
                return Err(format!("loro: client {k} differs from the hub"));
            }
        }
        Ok(state)
    });
    Ok((state?, m))
}
