//! Workload 2, concurrent list inserts (in the spirit of crdt-benchmarks B3): `sqrt(n)` clients
//! start from a common base holding one empty list of ints; each inserts `n / sqrt(n)` unique
//! values at random positions of its own copy, one transaction per insert, all concurrently;
//! then every client's changes go to a hub and every client receives from the hub what it lacks
//! (the same star topology and exchange forms as the many-writers workload, see
//! [`crate::writers`]; loro's list is a `LoroList`).
//!
//! Timed: the inserts, the hub integrating every client, and every client integrating the hub's
//! changes. Every replica of an engine must end with the same list; across engines the lists
//! must have the same length and hold the same values (the interleaving of concurrent inserts
//! is each engine's own rule).

use crate::alloc::{best_of, measure, Measured};
use crate::rng::Rng;
use crate::trace::loro_doc;
use crate::util::{actor, automerge_int, fail, loro_int, yrs_apply, yrs_int, yrs_value, Res};
use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ReadDoc, ROOT};
use loro::{ExportMode, LoroDoc, LoroList, VersionVector};
use objsync::sync::{Client, Server};
use objsync::{ObjectType, PeerId, PropType, Property, Replica, Store, Value};
use yrs::{Array, ArrayRef, Doc, ReadTxn, StateVector, Transact};

/// Peer numbers of the replicas that are not clients (clients are 1 ..= clients).
const BASE_PEER: u64 = 1 << 40;
const HUB_PEER: u64 = (1 << 40) + 1;

/// The inserts of one client: (index in its own list at that moment, value).
type ClientPlan = Vec<(usize, i64)>;

/// The number of clients for `n` inserts in all: the integer square root, at least one.
pub fn clients_for(n: usize) -> usize {
    let mut c = (n as f64).sqrt() as usize;
    // Correct the float estimate so that c*c <= n < (c+1)^2 exactly.
    while c * c > n {
        c -= 1;
    }
    while (c + 1) * (c + 1) <= n {
        c += 1;
    }
    c.max(1)
}

fn plan(n: usize, rng: &mut Rng) -> Vec<ClientPlan> {
    let clients = clients_for(n);
    let per = n / clients;
    (0..clients)
        .map(|k| {
            (0..per)
                .map(|i| (rng.below(i + 1), (k * per + i) as i64 + 1))
                .collect()
        })
        .collect()
}

/// Runs the workload with `n` inserts in all on every engine and checks the results; returns
/// the measurements in engine order.
pub fn run(n: usize, rng: &mut Rng) -> Res<[Measured; 4]> {
    let plan = plan(n, rng);
    let (o, mo) = best_of(|| objsync(&plan))?;
    let (a, ma) = best_of(|| automerge(&plan))?;
    let (y, my) = best_of(|| yrs(&plan))?;
    let (l, ml) = best_of(|| loro(&plan))?;
    let mut expected: Vec<i64> = plan.iter().flatten().map(|&(_, v)| v).collect();
    expected.sort_unstable();
    for (engine, list) in [("objsync", o), ("automerge", a), ("yrs", y), ("loro", l)] {
        if list.len() != expected.len() {
            return Err(format!(
                "list inserts: {engine} ends with {} elements, expected {}",
                list.len(),
                expected.len()
            ));
        }
        let mut sorted = list;
        sorted.sort_unstable();
        if sorted != expected {
            return Err(format!(
                "list inserts: {engine} ends with other values than were inserted"
            ));
        }
    }
    Ok([mo, ma, my, ml])
}

/// The ints of the list of the `Doc` object 1.
fn objsync_list(r: &Replica) -> Res<Vec<i64>> {
    let values = r
        .store()
        .list("Doc", &1.into(), "items")
        .map_err(fail("objsync: reading the list"))?;
    values
        .into_iter()
        .map(|v| match v {
            Value::Int(i) => Ok(i),
            other => Err(format!("objsync: unexpected list value {other:?}")),
        })
        .collect()
}

/// The type holding the list.
fn objsync_doc_type() -> Res<ObjectType> {
    let ty = |t| PropType::parse(t).map_err(fail("objsync: property type"));
    ObjectType::new(
        "Doc",
        Some("id"),
        [
            Property::new("id", ty("int")?),
            Property::new("items", ty("list<int>")?),
        ],
    )
    .map_err(fail("objsync: type"))
}

fn objsync(plan: &[ClientPlan]) -> Res<(Vec<i64>, Measured)> {
    let (list, m) = measure(|meter| -> Res<Vec<i64>> {
        let mut server = Server::new();
        let mut base = Client::new(PeerId(BASE_PEER));
        let ty = objsync_doc_type()?;
        base.write(1, |tx| {
            tx.add_type(ty)?;
            tx.insert("Doc", 1)
        })
        .map_err(fail("objsync: base"))?;
        server
            .integrate(base.peer(), base.upload())
            .map_err(fail("objsync: base upload"))?;
        drop(base);
        let mut clients = Vec::with_capacity(plan.len());
        for k in 0..plan.len() {
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
                for (i, &(index, value)) in cp.iter().enumerate() {
                    // Every client types at the same pace, so timestamps interleave.
                    c.write(2 + i as u64, |tx| {
                        tx.list_insert("Doc", 1, "items", index, value)
                    })
                    .map_err(fail("objsync: insert"))?;
                }
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
        let list = objsync_list(server.replica())?;
        for (k, c) in clients.iter().enumerate() {
            if objsync_list(c.replica())? != list {
                return Err(format!("objsync: client {k} differs from the server"));
            }
        }
        Ok(list)
    });
    Ok((list?, m))
}

/// The ints of an automerge list.
fn automerge_list(doc: &Automerge, list: &automerge::ObjId) -> Res<Vec<i64>> {
    doc.values(list).map(|(v, _)| automerge_int(&v)).collect()
}

fn automerge(plan: &[ClientPlan]) -> Res<(Vec<i64>, Measured)> {
    let (list, m) = measure(|meter| -> Res<Vec<i64>> {
        let mut base = Automerge::new().with_actor(actor(BASE_PEER));
        let mut tx = base.transaction();
        let items = tx
            .put_object(ROOT, "items", ObjType::List)
            .map_err(fail("automerge: base"))?;
        tx.commit();
        let base_heads = base.get_heads();
        let mut clients: Vec<Automerge> = (0..plan.len())
            .map(|k| base.fork().with_actor(actor(k as u64 + 1)))
            .collect();
        let mut hub = base.fork().with_actor(actor(HUB_PEER));
        drop(base);
        meter.time(|| -> Res<()> {
            for (c, cp) in clients.iter_mut().zip(plan) {
                for &(index, value) in cp {
                    let mut tx = c.transaction();
                    tx.insert(&items, index, value)
                        .map_err(fail("automerge: insert"))?;
                    tx.commit();
                }
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
        let list = automerge_list(&hub, &items)?;
        for (k, c) in clients.iter().enumerate() {
            if automerge_list(c, &items)? != list {
                return Err(format!("automerge: client {k} differs from the hub"));
            }
        }
        Ok(list)
    });
    Ok((list?, m))
}

/// The ints of a yrs array.
fn yrs_list(doc: &Doc, array: &ArrayRef) -> Res<Vec<i64>> {
    let txn = doc.transact();
    array.iter(&txn).map(yrs_int).collect()
}

fn yrs(plan: &[ClientPlan]) -> Res<(Vec<i64>, Measured)> {
    let (list, m) = measure(|meter| -> Res<Vec<i64>> {
        // A root-level yrs array exists in every document by name, so the base is empty and
        // each client starts as a fresh document.
        let replica = |id: u64| {
            let doc = Doc::with_client_id(id);
            let items = doc.get_or_insert_array("items");
            (doc, items)
        };
        let clients: Vec<(Doc, ArrayRef)> =
            (0..plan.len()).map(|k| replica(k as u64 + 1)).collect();
        let (hub, hub_items) = replica(HUB_PEER);
        meter.time(|| -> Res<()> {
            for ((doc, items), cp) in clients.iter().zip(plan) {
                for &(index, value) in cp {
                    let mut txn = doc.transact_mut();
                    items.insert(&mut txn, index as u32, yrs_value(value));
                }
            }
            for (doc, _) in &clients {
                let update = doc
                    .transact()
                    .encode_state_as_update_v1(&StateVector::default());
                yrs_apply(&hub, &update)?;
            }
            for (doc, _) in &clients {
                let sv = doc.transact().state_vector();
                let update = hub.transact().encode_diff_v1(&sv);
                yrs_apply(doc, &update)?;
            }
            Ok(())
        })?;
        let list = yrs_list(&hub, &hub_items)?;
        for (k, (doc, items)) in clients.iter().enumerate() {
            if yrs_list(doc, items)? != list {
                return Err(format!("yrs: client {k} differs from the hub"));
            }
        }
        Ok(list)
    });
    Ok((list?, m))
}

/// The ints of a loro list.
fn loro_list(list: &LoroList) -> Res<Vec<i64>> {
    (0..list.len())
        .map(|i| loro_int(list.get(i).ok_or("loro: a list index out of range")?))
        .collect()
}

fn loro(plan: &[ClientPlan]) -> Res<(Vec<i64>, Measured)> {
    let (list, m) = measure(|meter| -> Res<Vec<i64>> {
        // As in yrs, a root-level list exists in every document by name.
        let replica = |id: u64| -> Res<(LoroDoc, LoroList)> {
            let doc = loro_doc(id)?;
            let items = doc.get_list("items");
            Ok((doc, items))
        };
        let clients = (0..plan.len())
            .map(|k| replica(k as u64 + 1))
            .collect::<Res<Vec<_>>>()?;
        let (hub, hub_items) = replica(HUB_PEER)?;
        meter.time(|| -> Res<()> {
            for ((doc, items), cp) in clients.iter().zip(plan) {
                for &(index, value) in cp {
                    items.insert(index, value).map_err(fail("loro: insert"))?;
                    doc.commit();
                }
            }
            let empty = VersionVector::default();
            for (doc, _) in &clients {
                let update = doc
                    .export(ExportMode::updates(&empty))
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
        let list = loro_list(&hub_items)?;
        for (k, (_, items)) in clients.iter().enumerate() {
            if loro_list(items)? != list {
                return Err(format!("loro: client {k} differs from the hub"));
            }
        }
        Ok(list)
    });
    Ok((list?, m))
}
