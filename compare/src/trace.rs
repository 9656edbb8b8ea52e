//! Workload 3, a long single-writer edit trace (in the spirit of crdt-benchmarks B4): one writer
//! makes `ops` random inserts (60%) and deletes (40%) at random positions of a list of ints, one
//! transaction per edit, as a person typing would. Three phases, each timed on its own:
//!
//! 1. edits: the writer's transactions on its own replica;
//! 2. sync: the hub receives everything the writer did (objsync: the server integrates the
//!    writer's upload; automerge: a fresh hub applies `get_changes(&[])`; yrs: a fresh hub
//!    applies the writer's whole state as one update);
//! 3. load: a fresh replica loads the hub's state from bytes, the encoding included (objsync:
//!    every history entry through `objsync::encoding`, decoded and integrated by a new client as
//!    one download; automerge: `save` then `Automerge::load`; yrs: `encode_state_as_update_v1`
//!    then applying it to a new document).
//!
//! After every phase the replica must hold exactly the list a plain `Vec` replay of the edits
//! gives, on every engine.

use crate::alloc::{measure, Measured};
use crate::inserts::{automerge_list, objsync_doc_type, objsync_list, yrs_list};
use crate::rng::Rng;
use crate::util::{actor, fail, yrs_apply, yrs_value, Res};
use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT};
use objsync::sync::{Client, Cursor, Download, DownloadEntry, Server};
use objsync::{wire, ClientVersion, PeerId, ServerVersion};
use yrs::{Array, Doc, ReadTxn, StateVector, Transact};

enum Edit {
    Insert { index: usize, value: i64 },
    Delete { index: usize },
}

/// Peer numbers: the writer, the hub, and the replica that loads.
const WRITER: u64 = 1;
const HUB: u64 = 2;
const FRESH: u64 = 3;

/// Share of inserts among the edits, in percent; the rest are deletes (the list grows to about
/// a fifth of the number of edits).
const INSERT_PERCENT: u64 = 60;

/// The edits, and the list they leave.
fn plan(ops: usize, rng: &mut Rng) -> (Vec<Edit>, Vec<i64>) {
    let mut list = Vec::new();
    let mut edits = Vec::with_capacity(ops);
    for i in 0..ops {
        if list.is_empty() || rng.chance(INSERT_PERCENT) {
            let index = rng.below(list.len() + 1);
            let value = i as i64;
            list.insert(index, value);
            edits.push(Edit::Insert { index, value });
        } else {
            let index = rng.below(list.len());
            list.remove(index);
            edits.push(Edit::Delete { index });
        }
    }
    (edits, list)
}

/// Runs the three phases on every engine and checks every replica after each; returns the
/// measurements of edits, sync and load, each in engine order, and the final list length.
pub fn run(ops: usize, rng: &mut Rng) -> Res<([[Measured; 3]; 3], usize)> {
    let (edits, expected) = plan(ops, rng);
    let o = objsync(&edits, &expected)?;
    let a = automerge(&edits, &expected)?;
    let y = yrs(&edits, &expected)?;
    let phases = [0, 1, 2].map(|phase| [o[phase], a[phase], y[phase]]);
    Ok((phases, expected.len()))
}

fn check(engine: &str, phase: &str, list: Vec<i64>, expected: &[i64]) -> Res<()> {
    if list == expected {
        Ok(())
    } else {
        Err(format!(
            "trace: after {phase}, {engine} holds {} elements that differ from the replayed trace ({} elements)",
            list.len(),
            expected.len()
        ))
    }
}

fn objsync(edits: &[Edit], expected: &[i64]) -> Res<[Measured; 3]> {
    let (out, edit) = measure(|meter| -> Res<(Server, Client)> {
        let mut server = Server::new();
        let mut writer = Client::new(PeerId(WRITER));
        let ty = objsync_doc_type()?;
        writer
            .write(1, |tx| {
                tx.add_type(ty)?;
                tx.insert("Doc", 1)
            })
            .map_err(fail("objsync: setup"))?;
        let ack = server
            .integrate(writer.peer(), writer.upload())
            .map_err(fail("objsync: setup upload"))?;
        writer.acknowledge(ack);
        meter.time(|| -> Res<()> {
            for (i, e) in edits.iter().enumerate() {
                writer
                    .write(2 + i as u64, |tx| match *e {
                        Edit::Insert { index, value } => {
                            tx.list_insert("Doc", 1, "items", index, value)
                        }
                        Edit::Delete { index } => tx.list_erase("Doc", 1, "items", index),
                    })
                    .map_err(fail("objsync: edit"))?;
            }
            Ok(())
        })?;
        Ok((server, writer))
    });
    let (mut server, mut writer) = out?;
    check(
        "objsync",
        "the edits",
        objsync_list(writer.replica())?,
        expected,
    )?;

    let (out, sync) = measure(|meter| {
        meter.time(|| -> Res<()> {
            let ack = server
                .integrate(writer.peer(), writer.upload())
                .map_err(fail("objsync: server integrate"))?;
            writer.acknowledge(ack);
            Ok(())
        })
    });
    out?;
    check(
        "objsync",
        "the sync",
        objsync_list(server.replica())?,
        expected,
    )?;
    drop(writer);

    let (out, load) = measure(|meter| -> Res<Client> {
        let mut fresh = Client::new(PeerId(FRESH));
        meter.time(|| -> Res<()> {
            // A server keeps its history encoded (the session layer encodes each entry once,
            // when it integrates it) and sends those bytes; the new client decodes them and
            // integrates them as one download. Encoding is counted here, like automerge's save.
            let wire: Vec<Vec<u8>> = server
                .history()
                .iter()
                .map(|(_, h)| wire::encode(&h.changeset))
                .collect();
            let entries = wire
                .iter()
                .enumerate()
                .map(|(i, bytes)| {
                    Ok(DownloadEntry {
                        server_version: ServerVersion(i as u64 + 1),
                        // The new client has written nothing, so none of its changesets precede
                        // any entry.
                        last_own: ClientVersion(0),
                        changeset: wire::decode(bytes).map_err(fail("objsync: decode"))?,
                    })
                })
                .collect::<Res<Vec<_>>>()?;
            let latest = server.version();
            fresh
                .integrate(Download {
                    entries,
                    cursor: Cursor {
                        server: latest,
                        own: ClientVersion(0),
                    },
                    latest,
                })
                .map_err(fail("objsync: loading integrate"))
        })?;
        Ok(fresh)
    });
    check(
        "objsync",
        "the load",
        objsync_list(out?.replica())?,
        expected,
    )?;
    Ok([edit, sync, load])
}

fn automerge(edits: &[Edit], expected: &[i64]) -> Res<[Measured; 3]> {
    let (out, edit) = measure(|meter| -> Res<(Automerge, automerge::ObjId)> {
        let mut writer = Automerge::new().with_actor(actor(WRITER));
        let mut tx = writer.transaction();
        let items = tx
            .put_object(ROOT, "items", ObjType::List)
            .map_err(fail("automerge: setup"))?;
        tx.commit();
        meter.time(|| -> Res<()> {
            for e in edits {
                let mut tx = writer.transaction();
                match *e {
                    Edit::Insert { index, value } => tx.insert(&items, index, value),
                    Edit::Delete { index } => tx.delete(&items, index),
                }
                .map_err(fail("automerge: edit"))?;
                tx.commit();
            }
            Ok(())
        })?;
        Ok((writer, items))
    });
    let (writer, items) = out?;
    check(
        "automerge",
        "the edits",
        automerge_list(&writer, &items)?,
        expected,
    )?;

    let (out, sync) = measure(|meter| -> Res<Automerge> {
        let mut hub = Automerge::new().with_actor(actor(HUB));
        meter
            .time(|| hub.apply_changes(writer.get_changes(&[])))
            .map_err(fail("automerge: hub apply"))?;
        Ok(hub)
    });
    let hub = out?;
    check(
        "automerge",
        "the sync",
        automerge_list(&hub, &items)?,
        expected,
    )?;
    drop(writer);

    let (out, load) = measure(|meter| {
        meter
            .time(|| Automerge::load(&hub.save()))
            .map_err(fail("automerge: load"))
    });
    check(
        "automerge",
        "the load",
        automerge_list(&out?, &items)?,
        expected,
    )?;
    Ok([edit, sync, load])
}

fn yrs(edits: &[Edit], expected: &[i64]) -> Res<[Measured; 3]> {
    let (writer, edit) = measure(|meter| {
        let writer = Doc::with_client_id(WRITER);
        let items = writer.get_or_insert_array("items");
        meter.time(|| {
            for e in edits {
                let mut txn = writer.transact_mut();
                match *e {
                    Edit::Insert { index, value } => {
                        items.insert(&mut txn, index as u32, yrs_value(value));
                    }
                    Edit::Delete { index } => items.remove(&mut txn, index as u32),
                }
            }
        });
        (writer, items)
    });
    check(
        "yrs",
        "the edits",
        yrs_list(&writer.0, &writer.1)?,
        expected,
    )?;

    let (out, sync) = measure(|meter| -> Res<Doc> {
        let hub = Doc::with_client_id(HUB);
        meter.time(|| {
            let update = writer
                .0
                .transact()
                .encode_state_as_update_v1(&StateVector::default());
            yrs_apply(&hub, &update)
        })?;
        Ok(hub)
    });
    let hub = out?;
    let hub_items = hub.get_or_insert_array("items");
    check("yrs", "the sync", yrs_list(&hub, &hub_items)?, expected)?;
    drop(writer);

    let (out, load) = measure(|meter| -> Res<Doc> {
        let fresh = Doc::with_client_id(FRESH);
        meter.time(|| {
            let bytes = hub
                .transact()
                .encode_state_as_update_v1(&StateVector::default());
            yrs_apply(&fresh, &bytes)
        })?;
        Ok(fresh)
    });
    let fresh = out?;
    let fresh_items = fresh.get_or_insert_array("items");
    check("yrs", "the load", yrs_list(&fresh, &fresh_items)?, expected)?;
    Ok([edit, sync, load])
}
