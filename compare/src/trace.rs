//! Single-writer edit traces on one list, in three phases, each timed and measured on its own
//! (in the spirit of crdt-benchmarks B4). Two traces use it: [`synthetic`], random inserts and
//! deletes of ints at random positions, and the real editing trace of [`crate::real`], one
//! character per list element.
//!
//! 1. apply: the writer replays the trace on its own replica, one transaction per edit of the
//!    trace (for the synthetic trace and the real one alike, every edit inserts or deletes one
//!    element);
//! 2. sync: everything the writer did reaches a fresh replica as bytes: encoded, transferred,
//!    decoded and integrated. objsync: every changeset of the writer's upload through
//!    `objsync::wire`, decoded and integrated by a `sync::Server` (which holds only the setup
//!    before), then a fresh `Client` starts from the server's state, as a new device does when
//!    it asks for it (`Server::state_snapshot` encodes it, `Client::bootstrap` decodes and
//!    loads it). Separately, and reported on a row of its own, a fresh `Client` downloads the
//!    server's whole history instead: each entry as the server keeps it encoded
//!    (`History::encoded`), decoded and integrated as one download. automerge:
//!    `save_after(&[])` (every change, as bytes) then `load_incremental` on a fresh document.
//!    yrs: `encode_state_as_update_v1` then applying it to a fresh document. loro:
//!    `export(all_updates)` then `import` on a fresh document. The size reported is the bytes
//!    the fresh replica receives (objsync: the state snapshot; the writer's upload, about as
//!    large as the history, is not counted);
//! 3. load: a document saved after the edits is loaded from its bytes into a new replica and the
//!    list's length is read (loro's import of a snapshot decodes a container's state only on
//!    first access, so the read is part of loading: on the real trace the import alone takes a
//!    tenth of it). Saving is not timed. objsync: `Replica::save` then `Replica::load`;
//!    automerge: `save` then `Automerge::load`; yrs: `encode_state_as_update_v1` then applying
//!    it to a new document; loro: `export(Snapshot)` then `import`. The size reported is the
//!    saved document's.
//!
//! After every phase the replica must hold exactly the list a plain `Vec` replay of the trace
//! gives, on every engine.

use crate::alloc::{measure, Measured};
use crate::rng::Rng;
use crate::util::{actor, automerge_int, fail, loro_int, yrs_apply, yrs_int, Res};
use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ReadDoc, ROOT};
use loro::{ExportMode, LoroDoc, LoroValue, ValueOrContainer};
use objsync::sync::{Client, Cursor, Download, DownloadEntry, Server, Upload};
use objsync::{wire, ObjectType, PeerId, PropType, Property, Replica, Store, Value};
use std::fmt::Debug;
use yrs::{Any, Array, ArrayRef, Doc, Out, ReadTxn, StateVector, Transact};

/// One edit of a list.
#[derive(Clone, Copy, Debug)]
pub enum Edit<E> {
    /// Insert `value` so that it ends at `index`.
    Insert { index: usize, value: E },
    /// Delete the element at `index`.
    Delete { index: usize },
}

/// A trace: its edits in order, grouped into transactions.
pub struct Trace<E> {
    edits: Vec<Edit<E>>,
    /// The end (exclusive) in `edits` of every transaction, ascending.
    ends: Vec<usize>,
}

impl<E: Element> Trace<E> {
    pub fn new() -> Self {
        Trace {
            edits: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Adds an edit to the transaction under way.
    pub fn push(&mut self, edit: Edit<E>) {
        self.edits.push(edit);
    }

    /// Ends the transaction under way (an empty one is dropped).
    pub fn commit(&mut self) {
        if self.ends.last().copied().unwrap_or(0) < self.edits.len() {
            self.ends.push(self.edits.len());
        }
    }

    /// The number of transactions.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The transactions, in order.
    fn txns(&self) -> impl Iterator<Item = &[Edit<E>]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(s, &e)| &self.edits[s..e])
    }

    /// The list the trace leaves, replayed on a `Vec`.
    pub fn replay(&self) -> Vec<E> {
        let mut list = Vec::new();
        for e in &self.edits {
            match *e {
                Edit::Insert { index, value } => list.insert(index, value),
                Edit::Delete { index } => {
                    list.remove(index);
                }
            }
        }
        list
    }
}

/// What a list element is in each engine.
pub trait Element: Copy + PartialEq + Debug {
    /// The objsync property type of the list.
    const OBJSYNC_TYPE: &'static str;
    fn objsync(self) -> Value;
    fn from_objsync(v: Value) -> Res<Self>;
    fn automerge(self) -> automerge::ScalarValue;
    fn from_automerge(v: &automerge::Value<'_>) -> Res<Self>;
    fn yrs(self) -> Any;
    fn from_yrs(v: Out) -> Res<Self>;
    fn loro(self) -> LoroValue;
    fn from_loro(v: ValueOrContainer) -> Res<Self>;
}

impl Element for i64 {
    const OBJSYNC_TYPE: &'static str = "list<int>";
    fn objsync(self) -> Value {
        Value::Int(self)
    }
    fn from_objsync(v: Value) -> Res<Self> {
        match v {
            Value::Int(i) => Ok(i),
            other => Err(format!("objsync: expected an int, found {other:?}")),
        }
    }
    fn automerge(self) -> automerge::ScalarValue {
        automerge::ScalarValue::Int(self)
    }
    fn from_automerge(v: &automerge::Value<'_>) -> Res<Self> {
        automerge_int(v)
    }
    fn yrs(self) -> Any {
        Any::from(self)
    }
    fn from_yrs(v: Out) -> Res<Self> {
        yrs_int(v)
    }
    fn loro(self) -> LoroValue {
        LoroValue::I64(self)
    }
    fn from_loro(v: ValueOrContainer) -> Res<Self> {
        loro_int(v)
    }
}

/// A character is a one-character string in every engine.
impl Element for char {
    const OBJSYNC_TYPE: &'static str = "list<string>";
    fn objsync(self) -> Value {
        Value::from(self.encode_utf8(&mut [0; 4]) as &str)
    }
    fn from_objsync(v: Value) -> Res<Self> {
        match v {
            Value::String(s) => one_char(&s, "objsync"),
            other => Err(format!("objsync: expected a string, found {other:?}")),
        }
    }
    fn automerge(self) -> automerge::ScalarValue {
        automerge::ScalarValue::from(self.encode_utf8(&mut [0; 4]) as &str)
    }
    fn from_automerge(v: &automerge::Value<'_>) -> Res<Self> {
        match v {
            automerge::Value::Scalar(s) => match s.as_ref() {
                automerge::ScalarValue::Str(s) => one_char(s, "automerge"),
                other => Err(format!("automerge: expected a string, found {other:?}")),
            },
            other => Err(format!("automerge: expected a string, found {other:?}")),
        }
    }
    fn yrs(self) -> Any {
        Any::from(self.encode_utf8(&mut [0; 4]) as &str)
    }
    fn from_yrs(v: Out) -> Res<Self> {
        match v {
            Out::Any(Any::String(s)) => one_char(&s, "yrs"),
            other => Err(format!("yrs: expected a string, found {other:?}")),
        }
    }
    fn loro(self) -> LoroValue {
        LoroValue::from(self.encode_utf8(&mut [0; 4]) as &str)
    }
    fn from_loro(v: ValueOrContainer) -> Res<Self> {
        match v {
            ValueOrContainer::Value(LoroValue::String(s)) => one_char(&s, "loro"),
            other => Err(format!("loro: expected a string, found {other:?}")),
        }
    }
}

fn one_char(s: &str, engine: &str) -> Res<char> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(format!("{engine}: expected one character, found {s:?}")),
    }
}

/// The measurements of one engine: the three phases, the bytes the sync transferred and the
/// size of the saved document.
#[derive(Clone, Copy, Debug)]
pub struct Phases {
    pub apply: Measured,
    pub sync: Measured,
    pub load: Measured,
    pub sync_bytes: usize,
    pub saved_bytes: usize,
    /// objsync only: a new device downloading the whole history instead of starting from the
    /// state, and the bytes it received.
    pub history: Option<(Measured, usize)>,
}

/// Peer numbers: the writer, the server (objsync only), and the replicas that sync and load.
const WRITER: u64 = 1;
const FRESH: u64 = 3;
const LOADED: u64 = 4;

/// Share of inserts among the edits of the synthetic trace, in percent; the rest are deletes
/// (the list grows to about a fifth of the number of edits).
const INSERT_PERCENT: u64 = 60;

/// The synthetic trace: `ops` random inserts (60%) and deletes (40%) of unique ints at random
/// positions, one transaction each.
pub fn synthetic(ops: usize, rng: &mut Rng) -> Trace<i64> {
    let mut len = 0;
    let mut trace = Trace::new();
    for i in 0..ops {
        if len == 0 || rng.chance(INSERT_PERCENT) {
            let index = rng.below(len + 1);
            trace.push(Edit::Insert {
                index,
                value: i as i64,
            });
            len += 1;
        } else {
            trace.push(Edit::Delete {
                index: rng.below(len),
            });
            len -= 1;
        }
        trace.commit();
    }
    trace
}

/// Runs the three phases on every engine and checks every replica after each against
/// `expected`; returns each engine's measurements in engine order.
pub fn run<E: Element>(trace: &Trace<E>, expected: &[E]) -> Res<[Phases; 4]> {
    Ok([
        objsync(trace, expected)?,
        automerge(trace, expected)?,
        yrs(trace, expected)?,
        loro(trace, expected)?,
    ])
}

fn check<E: Element>(engine: &str, phase: &str, list: Vec<E>, expected: &[E]) -> Res<()> {
    if list == expected {
        Ok(())
    } else {
        let first = list.iter().zip(expected).position(|(a, b)| a != b);
        Err(format!(
            "trace: after {phase}, {engine} holds {} elements that differ from the replayed trace \
             ({} elements; first difference at {})",
            list.len(),
            expected.len(),
            first.map_or("the end of the shorter".to_string(), |i| i.to_string())
        ))
    }
}

fn check_len(engine: &str, len: usize, expected: usize) -> Res<()> {
    if len == expected {
        Ok(())
    } else {
        Err(format!(
            "trace: {engine} loaded a list of {len} elements, expected {expected}"
        ))
    }
}

/// The type holding the list: object `Doc` 1, property `items`.
fn objsync_doc_type(list: &str) -> Res<ObjectType> {
    let ty = |t| PropType::parse(t).map_err(fail("objsync: property type"));
    ObjectType::new(
        "Doc",
        Some("id"),
        [
            Property::new("id", ty("int")?),
            Property::new("items", ty(list)?),
        ],
    )
    .map_err(fail("objsync: type"))
}

fn objsync_list<E: Element, S: Store>(r: &Replica<S>) -> Res<Vec<E>> {
    r.store()
        .list("Doc", &1.into(), "items")
        .map_err(fail("objsync: reading the list"))?
        .into_iter()
        .map(E::from_objsync)
        .collect()
}

fn objsync<E: Element>(trace: &Trace<E>, expected: &[E]) -> Res<Phases> {
    let (out, apply) = measure(|meter| -> Res<(Server, Client)> {
        let mut server = Server::new();
        let mut writer = Client::new(PeerId(WRITER));
        let ty = objsync_doc_type(E::OBJSYNC_TYPE)?;
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
            for (i, txn) in trace.txns().enumerate() {
                writer
                    .write(2 + i as u64, |tx| {
                        for e in txn {
                            match *e {
                                Edit::Insert { index, value } => {
                                    tx.list_insert("Doc", 1, "items", index, value.objsync())?
                                }
                                Edit::Delete { index } => {
                                    tx.list_erase("Doc", 1, "items", index)?
                                }
                            }
                        }
                        Ok(())
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
        meter.time(|| -> Res<(Client, usize)> {
            upload(&mut writer, &mut server)?;
            // The fresh replica is a new device: it asks for the server's state (protocol,
            // section 11.1) and receives one snapshot, the state with its merge metadata.
            let state = server.state_snapshot();
            let fresh = Client::bootstrap(PeerId(FRESH), &state)
                .map_err(fail("objsync: bootstrap from the state"))?;
            Ok((fresh, state.len()))
        })
    });
    let (fresh, sync_bytes) = out?;
    check(
        "objsync",
        "the sync",
        objsync_list(server.replica())?,
        expected,
    )?;
    check(
        "objsync",
        "the sync",
        objsync_list(fresh.replica())?,
        expected,
    )?;
    drop(fresh);
    let (out, history) = measure(|meter| meter.time(|| download_history(&server)));
    let (fresh, history_bytes) = out?;
    check(
        "objsync",
        "the history download",
        objsync_list(fresh.replica())?,
        expected,
    )?;
    drop((server, fresh));

    let saved = writer.replica().save();
    drop(writer);
    let (out, load) = measure(|meter| {
        meter.time(|| -> Res<(Replica, usize)> {
            let r = Replica::load(&saved).map_err(fail("objsync: load"))?;
            let len = r
                .store()
                .list_len("Doc", &1.into(), "items")
                .map_err(fail("objsync: list length"))?;
            Ok((r, len))
        })
    });
    let (loaded, len) = out?;
    check_len("objsync", len, expected.len())?;
    check("objsync", "the load", objsync_list(&loaded)?, expected)?;
    Ok(Phases {
        apply,
        sync,
        load,
        sync_bytes,
        saved_bytes: saved.len(),
        history: Some((history, history_bytes)),
    })
}

/// The writer's upload, what the server has not acknowledged (`Client::upload` without its
/// copy), as bytes, decoded and integrated on the server's side.
fn upload(writer: &mut Client, server: &mut Server) -> Res<()> {
    let acked = writer.acknowledged();
    let sent: Vec<Vec<u8>> = (writer.unacknowledged().iter())
        .filter(|cs| cs.client_version > acked)
        .map(wire::encode)
        .collect();
    // A server session decodes its client's changesets sharing their names.
    let mut names = wire::Names::default();
    let changesets = (sent.iter())
        .map(|b| wire::decode_with(b, &mut names).map_err(fail("objsync: decoding the upload")))
        .collect::<Res<Vec<_>>>()?;
    drop(sent);
    let ack = server
        .integrate(
            writer.peer(),
            Upload {
                cursor: writer.cursor(),
                acknowledged: acked,
                acknowledged_signature: None,
                changesets,
            },
        )
        .map_err(fail("objsync: server integrate"))?;
    writer.acknowledge(ack);
    Ok(())
}

/// A new device that downloads the server's whole history instead of starting from its state:
/// every entry as the server keeps it encoded (`History::encoded`), decoded and integrated as
/// one download. Returns the device and the bytes it received.
fn download_history(server: &Server) -> Res<(Client, usize)> {
    let mut fresh = Client::new(PeerId(FRESH));
    let history = server.history();
    let mut bytes = 0;
    // A client session decodes downloaded changesets sharing their names.
    let mut names = wire::Names::default();
    let mut entries = Vec::with_capacity(history.len());
    for (v, _) in history.iter() {
        let encoded = history
            .encoded(v)
            .ok_or("objsync: an entry of the history has no encoded form")?;
        bytes += encoded.len();
        entries.push(DownloadEntry {
            server_version: v,
            last_own: server.own_at(fresh.peer(), objsync::ServerVersion(v.0 - 1)),
            fingerprint: history.fingerprint(v).unwrap_or_default(),
            changeset: wire::decode_with(encoded, &mut names).map_err(fail("objsync: decoding"))?,
        });
    }
    let latest = server.version();
    fresh
        .integrate(Download {
            entries,
            cursor: Cursor {
                server: latest,
                own: server.own_at(fresh.peer(), latest),
                fingerprint: history.latest_fingerprint(),
            },
            own_signature: None,
            latest,
            integrated: server.last_integrated(fresh.peer()),
        })
        .map_err(fail("objsync: fresh client integrate"))?;
    Ok((fresh, bytes))
}

fn automerge_list<E: Element>(doc: &Automerge, list: &automerge::ObjId) -> Res<Vec<E>> {
    doc.values(list)
        .map(|(v, _)| E::from_automerge(&v))
        .collect()
}

fn automerge<E: Element>(trace: &Trace<E>, expected: &[E]) -> Res<Phases> {
    let (out, apply) = measure(|meter| -> Res<(Automerge, automerge::ObjId)> {
        let mut writer = Automerge::new().with_actor(actor(WRITER));
        let mut tx = writer.transaction();
        let items = tx
            .put_object(ROOT, "items", ObjType::List)
            .map_err(fail("automerge: setup"))?;
        tx.commit();
        meter.time(|| -> Res<()> {
            for txn in trace.txns() {
                let mut tx = writer.transaction();
                for e in txn {
                    match *e {
                        Edit::Insert { index, value } => {
                            tx.insert(&items, index, value.automerge())
                        }
                        Edit::Delete { index } => tx.delete(&items, index),
                    }
                    .map_err(fail("automerge: edit"))?;
                }
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

    let (out, sync) = measure(|meter| -> Res<(Automerge, usize)> {
        let mut fresh = Automerge::new().with_actor(actor(FRESH));
        let bytes = meter.time(|| -> Res<usize> {
            let bytes = writer.save_after(&[]);
            fresh
                .load_incremental(&bytes)
                .map_err(fail("automerge: load_incremental"))?;
            Ok(bytes.len())
        })?;
        Ok((fresh, bytes))
    });
    let (fresh, sync_bytes) = out?;
    check(
        "automerge",
        "the sync",
        automerge_list(&fresh, &items)?,
        expected,
    )?;
    drop(fresh);

    let saved = writer.save();
    drop(writer);
    let (out, load) = measure(|meter| {
        meter.time(|| -> Res<(Automerge, usize)> {
            let doc = Automerge::load(&saved).map_err(fail("automerge: load"))?;
            let len = doc.length(&items);
            Ok((doc, len))
        })
    });
    let (loaded, len) = out?;
    check_len("automerge", len, expected.len())?;
    check(
        "automerge",
        "the load",
        automerge_list(&loaded, &items)?,
        expected,
    )?;
    Ok(Phases {
        apply,
        sync,
        load,
        sync_bytes,
        saved_bytes: saved.len(),
        history: None,
    })
}

fn yrs_list<E: Element>(doc: &Doc, array: &ArrayRef) -> Res<Vec<E>> {
    let txn = doc.transact();
    array.iter(&txn).map(E::from_yrs).collect()
}

fn yrs<E: Element>(trace: &Trace<E>, expected: &[E]) -> Res<Phases> {
    let ((writer, items), apply) = measure(|meter| {
        let writer = Doc::with_client_id(WRITER);
        let items = writer.get_or_insert_array("items");
        meter.time(|| {
            for txn in trace.txns() {
                let mut t = writer.transact_mut();
                for e in txn {
                    match *e {
                        Edit::Insert { index, value } => {
                            items.insert(&mut t, index as u32, value.yrs());
                        }
                        Edit::Delete { index } => items.remove(&mut t, index as u32),
                    }
                }
            }
        });
        (writer, items)
    });
    check("yrs", "the edits", yrs_list(&writer, &items)?, expected)?;

    let (out, sync) = measure(|meter| -> Res<(Doc, usize)> {
        let fresh = Doc::with_client_id(FRESH);
        let bytes = meter.time(|| -> Res<usize> {
            let update = writer
                .transact()
                .encode_state_as_update_v1(&StateVector::default());
            yrs_apply(&fresh, &update)?;
            Ok(update.len())
        })?;
        Ok((fresh, bytes))
    });
    let (fresh, sync_bytes) = out?;
    let fresh_items = fresh.get_or_insert_array("items");
    check("yrs", "the sync", yrs_list(&fresh, &fresh_items)?, expected)?;
    drop((fresh_items, fresh));

    let saved = writer
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    drop((items, writer));
    let (out, load) = measure(|meter| {
        meter.time(|| -> Res<(Doc, ArrayRef, usize)> {
            let doc = Doc::with_client_id(LOADED);
            yrs_apply(&doc, &saved)?;
            let items = doc.get_or_insert_array("items");
            let len = items.len(&doc.transact()) as usize;
            Ok((doc, items, len))
        })
    });
    let (loaded, loaded_items, len) = out?;
    check_len("yrs", len, expected.len())?;
    check(
        "yrs",
        "the load",
        yrs_list(&loaded, &loaded_items)?,
        expected,
    )?;
    Ok(Phases {
        apply,
        sync,
        load,
        sync_bytes,
        saved_bytes: saved.len(),
        history: None,
    })
}

fn loro_list<E: Element>(doc: &LoroDoc) -> Res<Vec<E>> {
    let list = doc.get_list("items");
    (0..list.len())
        .map(|i| E::from_loro(list.get(i).ok_or("loro: a list index out of range")?))
        .collect()
}

/// A loro document with a fixed peer id (loro picks a random one otherwise).
pub fn loro_doc(peer: u64) -> Res<LoroDoc> {
    let doc = LoroDoc::new();
    doc.set_peer_id(peer).map_err(fail("loro: peer id"))?;
    Ok(doc)
}

fn loro<E: Element>(trace: &Trace<E>, expected: &[E]) -> Res<Phases> {
    let (out, apply) = measure(|meter| -> Res<LoroDoc> {
        let writer = loro_doc(WRITER)?;
        let items = writer.get_list("items");
        meter.time(|| -> Res<()> {
            for txn in trace.txns() {
                for e in txn {
                    match *e {
                        Edit::Insert { index, value } => items.insert(index, value.loro()),
                        Edit::Delete { index } => items.delete(index, 1),
                    }
                    .map_err(fail("loro: edit"))?;
                }
                writer.commit();
            }
            Ok(())
        })?;
        Ok(writer)
    });
    let writer = out?;
    check("loro", "the edits", loro_list(&writer)?, expected)?;

    let (out, sync) = measure(|meter| -> Res<(LoroDoc, usize)> {
        let fresh = loro_doc(FRESH)?;
        let bytes = meter.time(|| -> Res<usize> {
            let bytes = writer
                .export(ExportMode::all_updates())
                .map_err(fail("loro: export updates"))?;
            fresh.import(&bytes).map_err(fail("loro: import updates"))?;
            Ok(bytes.len())
        })?;
        Ok((fresh, bytes))
    });
    let (fresh, sync_bytes) = out?;
    check("loro", "the sync", loro_list(&fresh)?, expected)?;
    drop(fresh);

    let saved = writer
        .export(ExportMode::Snapshot)
        .map_err(fail("loro: export snapshot"))?;
    drop(writer);
    let (out, load) = measure(|meter| {
        meter.time(|| -> Res<(LoroDoc, usize)> {
            let doc = loro_doc(LOADED)?;
            doc.import(&saved).map_err(fail("loro: import snapshot"))?;
            let len = doc.get_list("items").len();
            Ok((doc, len))
        })
    });
    let (loaded, len) = out?;
    check_len("loro", len, expected.len())?;
    check("loro", "the load", loro_list(&loaded)?, expected)?;
    Ok(Phases {
        apply,
        sync,
        load,
        sync_bytes,
        saved_bytes: saved.len(),
        history: None,
    })
}
