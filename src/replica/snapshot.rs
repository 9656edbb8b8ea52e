//! A replica's state in a snapshot: its peer and id counter, the schema, every object with its
//! values (through the [`Store`] trait, so any store can be saved and loaded), and the merge
//! metadata of every list, its nodes in document order with their ids and positions
//! delta-encoded, and stretches of nodes that each repeat how the one before stood to its
//! predecessor (typed text) as run records of up to 255 nodes in two bytes.
//!
//! Loading rebuilds the store through the same calls every write makes, so the schema and every
//! value are checked, and each list's metadata through [`Sequence::from_document`], which checks
//! the tree; a list's metadata must then agree with its values.

use super::list::{DocNode, DocRole};
use super::{ElemState, Replica, Sequence};
use crate::model::{
    Fingerprint, ListProblem, Name, ObjKey, ObjRef, ObjectType, OpId, PeerId, PropRef, Property,
    ServerVersion, Side, Timestamp, Value,
};
use crate::snapshot::{Kind, SnapshotError, SnapshotReader, SnapshotWriter};
use crate::store::{MemoryStore, Store};
use crate::wire::{Encoder, Reader};
use hashbrown::HashSet;

// The flags byte of a node.
const NODE_RIGHT: u8 = 0x01;
const NODE_MOVE: u8 = 0x02;
const NODE_CURRENT: u8 = 0x04;
const NODE_STATE_SHIFT: u8 = 3; // two bits: visible, hidden, erased
const NODE_STATE_MASK: u8 = 0x18;
/// State code 3 of an element's first node, which no node has: a run record instead.
const NODE_RUN: u8 = 0x18;
const NODE_SAME_PEER: u8 = 0x20;
const NODE_NEXT_SEQ: u8 = 0x40;
const NODE_SAME_TS: u8 = 0x80;

/// Smallest encoded sizes, for bounding counts by the input left.
const MIN_TYPE_BYTES: usize = 3;
const MIN_OBJECT_BYTES: usize = 1;
const MIN_LIST_BYTES: usize = 4;
const MIN_NODE_BYTES: usize = 2;
const MIN_VALUE_BYTES: usize = 1;

impl Replica<MemoryStore> {
    /// Loads a snapshot made by [`Replica::save`] into a new in-memory store.
    ///
    /// ```
    /// use objsync::{ObjectType, PeerId, PropType, Property, Replica, Store};
    ///
    /// let mut replica = Replica::new(PeerId(1));
    /// let mut tx = replica.transaction(1);
    /// tx.add_type(ObjectType::new("T", Some("id"), [Property::new("id", PropType::parse("int")?)])?)?;
    /// tx.insert("T", 1)?;
    /// tx.commit();
    /// let loaded = Replica::load(&replica.save())?;
    /// assert_eq!(loaded.store().objects("T")?, replica.store().objects("T")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(bytes: &[u8]) -> Result<Self, SnapshotError> {
        Replica::load_into(MemoryStore::new(), bytes)
    }
}

/// What a server's state says besides the replica (spec/snapshot.md section 5): the server
/// version it is at, the history's fingerprint there, and the latest timestamp of any changeset
/// it integrated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StateHead {
    pub(crate) version: ServerVersion,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) timestamp: Timestamp,
}

impl StateHead {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<StateHead, SnapshotError> {
        Ok(StateHead {
            version: ServerVersion(r.u64("server version")?),
            fingerprint: Fingerprint(r.u64("fingerprint")?),
            timestamp: r.u64("latest timestamp")?,
        })
    }
}

impl<S: Store> Replica<S> {
    /// A snapshot of this replica: its store's state and its lists' merge metadata (the format
    /// is in spec/snapshot.md). A replica loaded from it behaves exactly as this one: same state,
    /// same future merges.
    pub fn save(&self) -> Vec<u8> {
        let mut w = SnapshotWriter::new(Kind::Replica);
        self.write_state(w.items());
        w.finish()
    }

    /// Loads a snapshot made by [`Replica::save`] into `store`, which must be empty.
    pub fn load_into(store: S, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut r = SnapshotReader::open(bytes, Kind::Replica)?;
        let replica = Replica::read_state(store, r.items())?;
        r.finish()?;
        Ok(replica)
    }

    /// This replica as a server's state (spec/snapshot.md, section "state"): what a new
    /// device, or a feed, starts from.
    /// With `only`, the state holds just those objects (what a user may read, spec/
    /// permissions.md section 2.5), with their lists' merge metadata.
    pub(crate) fn server_state(&self, head: StateHead, only: Option<&HashSet<ObjRef>>) -> Vec<u8> {
        let mut w = SnapshotWriter::new(Kind::State);
        self.write_server_state(&mut w, head, only);
        w.finish()
    }

    /// Writes this replica as a server's state (also the first part of a recovery), with only
    /// the objects in `only` if given.
    pub(crate) fn write_server_state(
        &self,
        w: &mut SnapshotWriter,
        head: StateHead,
        only: Option<&HashSet<ObjRef>>,
    ) {
        let e = w.items();
        e.u64(head.version.0);
        e.u64(head.fingerprint.0);
        e.u64(head.timestamp);
        self.write_state_of(e, only);
    }

    /// Loads a server's state made by [`Replica::server_state`] into `store`, which must be
    /// empty.
    pub(crate) fn read_server_state(
        store: S,
        bytes: &[u8],
    ) -> Result<(Self, StateHead), SnapshotError> {
        let mut r = SnapshotReader::open(bytes, Kind::State)?;
        let head = StateHead::read(r.items())?;
        let replica = Replica::read_state(store, r.items())?;
        r.finish()?;
        Ok((replica, head))
    }

    /// Makes a replica loaded from another peer's snapshot this peer's own, for a client that
    /// starts from a server's state: ids it mints from now on are its own, and after every id
    /// of `peer` the state holds (so that even a peer that wrote before never mints an id
    /// twice while its objects or list elements exist). Fails if the state holds the last id
    /// `peer` could mint (counter `u64::MAX`): there is no id after it.
    pub(crate) fn adopt(&mut self, peer: PeerId) -> Result<(), SnapshotError> {
        let mut last = 0;
        let mut note = |id: OpId| {
            if id.peer == peer {
                last = last.max(id.seq);
            }
        };
        let schema = self.store.schema();
        for def in schema.types() {
            for key in self.store.objects(&def.name).unwrap_or_default() {
                if let ObjKey::Engine(id) = key {
                    note(id);
                }
            }
        }
        for seq in self.lists.values() {
            seq.document().iter().for_each(|n| note(n.id));
        }
        self.next_seq = last.checked_add(1).ok_or(SnapshotError::Inconsistent(
            "the state holds the last id the peer could mint",
        ))?;
        self.peer = peer;
        Ok(())
    }

    /// Writes the replica's state (the part of every snapshot that holds one).
    pub(crate) fn write_state(&self, e: &mut Encoder) {
        self.write_state_of(e, None)
    }

    /// [`Replica::write_state`] with only the objects in `only`, if given.
    fn write_state_of(&self, e: &mut Encoder, only: Option<&HashSet<ObjRef>>) {
        let kept = |ty: &str, key: &ObjKey| {
            only.map_or(true, |o| o.contains(&ObjRef::new(ty, key.clone())))
        };
        e.u64(self.peer.0);
        e.u64(self.next_seq);
        let schema = self.store.schema();
        e.count(schema.types().count());
        for def in schema.types() {
            e.object_type(def);
        }
        for def in schema.types() {
            let mut keys = self.store.objects(&def.name).unwrap_or_default();
            keys.retain(|key| kept(&def.name, key));
            e.count(keys.len());
            for key in &keys {
                e.key(key);
                self.write_values(e, def, key);
            }
        }
        let mut lists: Vec<(&PropRef, &Sequence)> = (self.lists.iter())
            .filter(|(list, _)| kept(&list.obj.ty, &list.obj.key))
            .collect();
        // A fixed order, so that equal replicas save to equal bytes.
        lists.sort_by(|a, b| a.0.cmp(b.0));
        e.count(lists.len());
        for (list, seq) in lists {
            e.str(&list.obj.ty);
            e.key(&list.obj.key);
            e.str(&list.prop);
            write_nodes(e, &seq.document());
        }
    }

    /// Every property of an object but its primary key, in schema order.
    fn write_values(&self, e: &mut Encoder, def: &ObjectType, key: &ObjKey) {
        for (prop, pt) in &def.properties {
            if def.primary_key.as_ref() == Some(prop) {
                continue;
            }
            if pt.list {
                let values = self.store.list(&def.name, key, prop).unwrap_or_default();
                e.count(values.len());
                values.iter().for_each(|v| e.value(v));
            } else {
                e.value(&self.store.get(&def.name, key, prop).unwrap_or(Value::Null));
            }
        }
    }

    /// Reads a replica's state into `store` (which must be empty).
    pub(crate) fn read_state(store: S, r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let mut replica = Replica::with_store(PeerId(0), store);
        replica.read_in_place(r)?;
        Ok(replica)
    }

    /// Replaces this replica, which must hold nothing, with what `read` reads (a replica's
    /// state and whatever follows it). On any error the replica is left exactly as it was.
    pub(crate) fn replace_with(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        if self.store.schema().types().next().is_some() || !self.lists.is_empty() {
            return Err(SnapshotError::NotEmpty);
        }
        let (peer, next_seq) = (self.peer, self.next_seq);
        self.store.begin();
        match read(self) {
            Ok(()) => {
                self.store.commit();
                Ok(())
            }
            Err(e) => {
                self.store.rollback();
                self.lists.clear();
                (self.peer, self.next_seq) = (peer, next_seq);
                Err(e)
            }
        }
    }

    /// Reads a replica's state into this replica's store (which must be empty).
    pub(crate) fn read_in_place(&mut self, r: &mut Reader<'_>) -> Result<(), SnapshotError> {
        let peer = PeerId(r.u64("peer id")?);
        let next_seq = r.u64("id counter")?;
        let n = r.count(MIN_TYPE_BYTES, "types")?;
        let mut types = Vec::with_capacity(n);
        for _ in 0..n {
            types.push(r.object_type()?);
        }
        let store = &mut self.store;
        load_schema(store, &types)?;
        let mut values = Vec::new();
        for def in &types {
            let n = r.count(MIN_OBJECT_BYTES, "objects")?;
            for _ in 0..n {
                let key = r.key()?;
                store
                    .create(&def.name, &key)
                    .map_err(SnapshotError::State)?;
                values.push((def, key, read_values(r, def)?));
            }
        }
        // Values only once every object exists: links may point at any of them.
        for (def, key, props) in values {
            for (prop, value) in props {
                write_value(store, def, &key, prop, value)?;
            }
        }
        (self.peer, self.next_seq) = (peer, next_seq);
        let n = r.count(MIN_LIST_BYTES, "lists")?;
        for _ in 0..n {
            let list = PropRef {
                obj: ObjRef {
                    ty: r.str("type name")?,
                    key: r.key()?,
                },
                prop: r.str("property name")?,
            };
            let nodes = read_nodes(r)?;
            self.load_sequence(list, &nodes)?;
        }
        self.check_lists_have_metadata(&types)
    }

    /// Rebuilds one list's metadata, which must agree with the list's values.
    fn load_sequence(&mut self, list: PropRef, nodes: &[DocNode]) -> Result<(), SnapshotError> {
        let bad = |list: &PropRef, problem| SnapshotError::List {
            list: list.clone(),
            problem,
        };
        let seq = Sequence::from_document(nodes).map_err(|p| bad(&list, p))?;
        let len = (self.store)
            .list_len(&list.obj.ty, &list.obj.key, &list.prop)
            .map_err(SnapshotError::State)?;
        if seq.len() != len {
            return Err(bad(&list, ListProblem::Inconsistent { index: len as u64 }));
        }
        if self.lists.insert(list.clone(), seq).is_some() {
            return Err(SnapshotError::Inconsistent(
                "a list's metadata appears twice",
            ));
        }
        Ok(())
    }

    /// Every list that holds values has merge metadata.
    fn check_lists_have_metadata(&self, types: &[ObjectType]) -> Result<(), SnapshotError> {
        for def in types {
            let lists: Vec<&Name> = (def.properties.iter())
                .filter(|(_, pt)| pt.list)
                .map(|(n, _)| n)
                .collect();
            if lists.is_empty() {
                continue;
            }
            for key in self
                .store
                .objects(&def.name)
                .map_err(SnapshotError::State)?
            {
                for prop in &lists {
                    let len = (self.store.list_len(&def.name, &key, prop))
                        .map_err(SnapshotError::State)?;
                    let list = ObjRef::new(&def.name, key.clone()).prop(prop);
                    if len > 0 && !self.lists.contains_key(&list) {
                        return Err(SnapshotError::List {
                            list,
                            problem: ListProblem::Inconsistent { index: 0 },
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// Adds the types: each with the longest prefix of its properties whose links point at types
/// already added, then the rest in order, once every type exists. Properties keep their order,
/// and a link can point at a type added after its own (by an `add_properties`).
fn load_schema<S: Store>(store: &mut S, types: &[ObjectType]) -> Result<(), SnapshotError> {
    let state = SnapshotError::State;
    let mut rests = Vec::with_capacity(types.len());
    for def in types {
        let known = |p: &Property| {
            p.ty.link_target()
                .map_or(true, |t| *t == def.name || store.schema().contains(t))
        };
        let props: Vec<Property> = (def.properties.iter())
            .map(|(name, ty)| Property {
                name: name.clone(),
                ty: ty.clone(),
            })
            .collect();
        let cut = props.iter().position(|p| !known(p)).unwrap_or(props.len());
        let first = ObjectType::new(&def.name, def.primary_key.as_deref(), props[..cut].to_vec());
        store.add_type(&first.map_err(state)?).map_err(state)?;
        rests.push(props[cut..].to_vec());
    }
    for (def, rest) in types.iter().zip(rests) {
        if !rest.is_empty() {
            store.add_properties(&def.name, &rest).map_err(state)?;
        }
    }
    if store.schema().types().count() != types.len() {
        return Err(SnapshotError::Inconsistent("a type appears twice"));
    }
    Ok(())
}

/// An object's values, as [`Replica::write_values`] wrote them: `(property, value)` for
/// scalars, and one per element for lists (in order).
fn read_values<'d>(
    r: &mut Reader<'_>,
    def: &'d ObjectType,
) -> Result<Vec<(&'d Name, PropValue)>, SnapshotError> {
    let mut out = Vec::new();
    for (prop, pt) in &def.properties {
        if def.primary_key.as_ref() == Some(prop) {
            continue;
        }
        if pt.list {
            let n = r.count(MIN_VALUE_BYTES, "list values")?;
            let mut values = Vec::with_capacity(n);
            for _ in 0..n {
                values.push(r.value()?);
            }
            out.push((prop, PropValue::List(values)));
        } else {
            out.push((prop, PropValue::Scalar(r.value()?)));
        }
    }
    Ok(out)
}

/// A property's saved value.
enum PropValue {
    Scalar(Value),
    List(Vec<Value>),
}

fn write_value<S: Store>(
    store: &mut S,
    def: &ObjectType,
    key: &ObjKey,
    prop: &Name,
    value: PropValue,
) -> Result<(), SnapshotError> {
    let state = SnapshotError::State;
    match value {
        // A new object's fields are at their defaults already; writing only the others keeps
        // loading a sparse object cheap.
        PropValue::Scalar(v) => {
            let default = def.properties.get(prop).map(|pt| pt.default_value());
            if default.as_ref() != Some(&v) {
                store.set(&def.name, key, prop, v).map_err(state)?;
            }
        }
        PropValue::List(values) => {
            store
                .list_extend(&def.name, key, prop, values)
                .map_err(state)?;
        }
    }
    Ok(())
}

/// How a node stands to the node before it in document order: what a run repeats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Step {
    /// The flag bits that describe the node itself: side, move, current position, state.
    flags: u8,
    /// Its timestamp minus the previous node's (wrapping).
    dts: u64,
    /// The distance back to its parent (0: the virtual root).
    parent: i64,
    /// For a move's node, the distance back to the element's first node; 0 otherwise.
    origin: i64,
}

impl Step {
    /// The flag bits [`Step::flags`] keeps.
    const OWN_FLAGS: u8 = NODE_RIGHT | NODE_MOVE | NODE_CURRENT | NODE_STATE_MASK;
}

/// Writes a list's nodes in document order, each relative to the one before it; a stretch of
/// nodes that each stand to their predecessor as the one before the stretch stood to its own
/// (typed text: the next id, the next timestamp step, the right child of the node before) is
/// one run record.
fn write_nodes(e: &mut Encoder, nodes: &[DocNode]) {
    e.count(nodes.len());
    let mut prev = OpId {
        peer: PeerId(0),
        seq: 0,
    };
    let mut prev_ts = 0;
    let mut prev_step = None;
    let mut run = 0u8;
    for (i, d) in nodes.iter().enumerate() {
        let mut flags = 0;
        if d.side == Side::Right {
            flags |= NODE_RIGHT;
        }
        if d.current {
            flags |= NODE_CURRENT;
        }
        let origin = match d.role {
            DocRole::Origin(state) => {
                flags |= state_code(state) << NODE_STATE_SHIFT;
                0
            }
            DocRole::Move(origin) => {
                flags |= NODE_MOVE;
                i as i64 - i64::from(origin)
            }
        };
        // The parent as a distance back from this node (1: the node just before, -1 the one just
        // after); 0, which no node is from itself, is the root.
        let step = Step {
            flags,
            dts: d.ts.wrapping_sub(prev_ts),
            parent: d.parent.map_or(0, |p| i as i64 - i64::from(p)),
            origin,
        };
        let next = OpId {
            peer: prev.peer,
            seq: prev.seq.wrapping_add(1),
        };
        if prev_step == Some(step) && d.id == next && run < u8::MAX {
            run += 1;
        } else {
            end_run(e, &mut run);
            if prev_step == Some(step) && d.id == next {
                run = 1;
            } else {
                write_node(e, d, prev, step);
            }
        }
        prev = d.id;
        prev_ts = d.ts;
        prev_step = Some(step);
    }
    end_run(e, &mut run);
}

/// Writes the run record of the `run` nodes just passed, if any.
fn end_run(e: &mut Encoder, run: &mut u8) {
    if *run > 0 {
        e.byte(NODE_RUN);
        e.byte(*run);
        *run = 0;
    }
}

/// Writes one node record: flags, the fields that differ from the previous node, the distances.
fn write_node(e: &mut Encoder, d: &DocNode, prev: OpId, step: Step) {
    let mut flags = step.flags;
    if d.id.peer == prev.peer {
        flags |= NODE_SAME_PEER;
    }
    if d.id.seq == prev.seq.wrapping_add(1) {
        flags |= NODE_NEXT_SEQ;
    }
    if step.dts == 0 {
        flags |= NODE_SAME_TS;
    }
    e.byte(flags);
    if flags & NODE_SAME_PEER == 0 {
        e.u64(d.id.peer.0);
    }
    if flags & NODE_NEXT_SEQ == 0 {
        e.u64(d.id.seq);
    }
    if flags & NODE_SAME_TS == 0 {
        e.i64(step.dts as i64);
    }
    e.i64(step.parent);
    if flags & NODE_MOVE != 0 {
        e.i64(step.origin);
    }
}

/// Reads what [`write_nodes`] wrote; positions are checked by [`Sequence::from_document`].
fn read_nodes(r: &mut Reader<'_>) -> Result<Vec<DocNode>, SnapshotError> {
    let at = r.pos();
    let count = r.u64("list nodes")?;
    // Every two bytes hold at most a run record's nodes.
    let fits = (r.remaining() / MIN_NODE_BYTES).saturating_mul(usize::from(u8::MAX));
    let n = match usize::try_from(count) {
        Ok(n) if n <= fits => n,
        _ => {
            return Err(crate::wire::DecodeError::CountTooLarge {
                offset: at,
                what: "list nodes",
                count,
                remaining: r.remaining(),
            }
            .into())
        }
    };
    let mut nodes = Vec::with_capacity(n.min(r.remaining() / MIN_NODE_BYTES));
    let mut prev = OpId {
        peer: PeerId(0),
        seq: 0,
    };
    let mut prev_ts: u64 = 0;
    let mut prev_step = None;
    while nodes.len() < n {
        let at = r.pos();
        let flags = r.byte("list node flags")?;
        if flags != NODE_RUN {
            let (id, step) = read_node(r, flags, prev)?;
            (prev, prev_ts) = (id, prev_ts.wrapping_add(step.dts));
            nodes.push(node_at(nodes.len(), at, id, prev_ts, step)?);
            prev_step = Some(step);
            continue;
        }
        let step = prev_step.ok_or(SnapshotError::Inconsistent(
            "a run of list nodes before any node",
        ))?;
        let len = usize::from(r.byte("list node run")?);
        if len == 0 || nodes.len() + len > n {
            return Err(SnapshotError::Inconsistent(
                "a run of list nodes that is empty or passes the list's node count",
            ));
        }
        for _ in 0..len {
            prev = OpId {
                peer: prev.peer,
                seq: prev.seq.wrapping_add(1),
            };
            prev_ts = prev_ts.wrapping_add(step.dts);
            nodes.push(node_at(nodes.len(), at, prev, prev_ts, step)?);
        }
    }
    Ok(nodes)
}

/// Reads the rest of one node record after its `flags`: its id and its step.
fn read_node(r: &mut Reader<'_>, flags: u8, prev: OpId) -> Result<(OpId, Step), SnapshotError> {
    let peer = match flags & NODE_SAME_PEER {
        0 => PeerId(r.u64("list node peer")?),
        _ => prev.peer,
    };
    let seq = match flags & NODE_NEXT_SEQ {
        0 => r.u64("list node counter")?,
        _ => prev.seq.wrapping_add(1),
    };
    let dts = match flags & NODE_SAME_TS {
        0 => r.i64("list node timestamp")? as u64,
        _ => 0,
    };
    let parent = r.i64("list node parent")?;
    let origin = match flags & NODE_MOVE {
        0 => 0,
        _ => r.i64("moved element")?,
    };
    let step = Step {
        flags: flags & Step::OWN_FLAGS,
        dts,
        parent,
        origin,
    };
    Ok((OpId { peer, seq }, step))
}

/// The node at document position `i` with this id, timestamp and step; `at` is where its
/// record starts.
fn node_at(
    i: usize,
    at: usize,
    id: OpId,
    ts: Timestamp,
    step: Step,
) -> Result<DocNode, SnapshotError> {
    // A distance is hostile: any i64, so the subtraction itself may overflow (i64::MIN).
    // The errors below are made only on failure: made eagerly (`ok_or`) and dropped, they were
    // 7.5% of the instructions of loading a list.
    let position = |delta: i64| -> Result<u32, SnapshotError> {
        match (i as i64).checked_sub(delta).map(u32::try_from) {
            Some(Ok(p)) => Ok(p),
            _ => Err(SnapshotError::Inconsistent(
                "a list node refers outside its list",
            )),
        }
    };
    let parent = match step.parent {
        0 => None,
        d => Some(position(d)?),
    };
    let role = if step.flags & NODE_MOVE != 0 {
        DocRole::Move(position(step.origin)?)
    } else {
        match state_from_code((step.flags & NODE_STATE_MASK) >> NODE_STATE_SHIFT) {
            Some(state) => DocRole::Origin(state),
            None => {
                return Err(crate::wire::DecodeError::UnknownTag {
                    offset: at,
                    what: "list node state",
                    tag: step.flags,
                }
                .into())
            }
        }
    };
    Ok(DocNode {
        id,
        ts,
        parent,
        side: if step.flags & NODE_RIGHT != 0 {
            Side::Right
        } else {
            Side::Left
        },
        role,
        current: step.flags & NODE_CURRENT != 0,
    })
}

fn state_code(state: ElemState) -> u8 {
    match state {
        ElemState::Visible => 0,
        ElemState::Hidden => 1,
        ElemState::Erased => 2,
    }
}

fn state_from_code(code: u8) -> Option<ElemState> {
    Some(match code {
        0 => ElemState::Visible,
        1 => ElemState::Hidden,
        2 => ElemState::Erased,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PropType, Property};

    /// A replica with one `Doc` whose `items` list is typed text: `typed` characters one
    /// transaction each (timestamps stepping by one), then `pasted` in one transaction (one
    /// timestamp), a stretch erased in the middle, and one element moved.
    fn typed(typed: usize, pasted: usize) -> Replica {
        let mut r = Replica::new(PeerId(3));
        let ty = |t| PropType::parse(t).expect("a property type");
        let doc = ObjectType::new(
            "Doc",
            Some("id"),
            [
                Property::new("id", ty("int")),
                Property::new("items", ty("list<string>")),
            ],
        )
        .expect("a type");
        let mut tx = r.transaction(1);
        tx.add_type(doc).expect("add_type");
        tx.insert("Doc", 1).expect("insert");
        tx.commit();
        for i in 0..typed {
            let mut tx = r.transaction(2 + i as u64);
            tx.list_insert("Doc", 1, "items", i, "x").expect("typing");
            tx.commit();
        }
        let mut tx = r.transaction(typed as u64 + 2);
        for i in 0..pasted {
            tx.list_insert("Doc", 1, "items", typed + i, "y")
                .expect("pasting");
        }
        for _ in 0..typed / 3 {
            tx.list_erase("Doc", 1, "items", typed / 3)
                .expect("erasing");
        }
        tx.list_move("Doc", 1, "items", 0, 1).expect("moving");
        tx.commit();
        r
    }

    #[test]
    fn typed_text_saves_as_runs_and_loads_to_the_same_replica() {
        let r = typed(700, 600);
        let saved = r.save();
        let loaded = Replica::load(&saved).expect("loads");
        assert_eq!(loaded.save(), saved);
        let items = |r: &Replica| r.store.list("Doc", &1.into(), "items").expect("a list");
        assert_eq!(items(&loaded), items(&r));
        // 1,300 nodes and 1,067 values: the values take two bytes each, the nodes a few run
        // records (a node record alone takes three).
        assert!(saved.len() < 2 * 1067 + 200, "{} bytes", saved.len());
    }

    fn read(bytes: &[u8]) -> Result<Vec<DocNode>, SnapshotError> {
        read_nodes(&mut Reader::new(bytes))
    }

    #[test]
    fn run_records_stand_for_the_nodes_they_repeat() {
        // Four nodes: the first under the root's right side at (5, 9), timestamp 4, visible and
        // current; the second the first's right child, the next id, 4 later; then a run of two
        // like the second.
        let first = NODE_RIGHT | NODE_CURRENT;
        let next = first | NODE_SAME_PEER | NODE_NEXT_SEQ;
        let bytes = [4, first, 5, 9, 8, 0, next, 8, 2, NODE_RUN, 2];
        let nodes = read(&bytes).expect("reads");
        let ids: Vec<_> = nodes
            .iter()
            .map(|d| (d.id.peer.0, d.id.seq, d.ts))
            .collect();
        assert_eq!(ids, [(5, 9, 4), (5, 10, 8), (5, 11, 12), (5, 12, 16)]);
        let parents: Vec<_> = nodes.iter().map(|d| d.parent).collect();
        assert_eq!(parents, [None, Some(0), Some(1), Some(2)]);
        assert!(nodes.iter().all(|d| d.side == Side::Right && d.current));
        let mut e = Encoder::default();
        write_nodes(&mut e, &nodes);
        let mut again = Vec::new();
        e.finish(&mut again);
        // After the encoder's empty string table.
        assert_eq!(again[1..], bytes);
    }

    #[test]
    fn bad_run_records_are_refused() {
        let inconsistent = |bytes: &[u8]| {
            assert!(
                matches!(read(bytes), Err(SnapshotError::Inconsistent(_))),
                "{bytes:?}: {:?}",
                read(bytes)
            )
        };
        // A run before any node, an empty run, a run past the count.
        inconsistent(&[1, NODE_RUN, 1]);
        inconsistent(&[2, NODE_CURRENT, 5, 9, 0, NODE_RUN, 0]);
        inconsistent(&[2, NODE_CURRENT, 5, 9, 0, NODE_RUN, 2]);
        // More nodes than two bytes' worth of runs can give.
        assert!(matches!(
            read(&[0xff, 0x7f, NODE_CURRENT, 5]),
            Err(SnapshotError::Decode(
                crate::wire::DecodeError::CountTooLarge { .. }
            ))
        ));
    }
}
