//! `Replica`: a store plus the merge metadata of its lists, and the one place where instructions
//! are applied to it.
//!
//! Local writes and merged remote changesets take the same path, `Replica::apply_op`: a list
//! instruction is registered in the list's [`Sequence`] by its ids, the sequence says where the
//! element is visible in this replica, and the store is told the plain index. Deleting an object
//! lets the store unlink it everywhere, and the elements the store removed from lists of links are
//! kept as hidden in their sequences (a concurrent write can still make them visible again).
//!
//! Atomicity: [`Replica::begin`]/[`Replica::commit`]/[`Replica::rollback`] bracket a unit across
//! the store and the sequences; units nest, so a transaction can reject one bad write and keep
//! the others.

use crate::changeset::Changeset;
use crate::error::Error;
use crate::ids::{OpId, PeerId, Timestamp};
use crate::instruction::{Fate, Instruction, ObjRef, Op};
use crate::list::{ElemState, ListError, Sequence, VisibleChange};
use crate::memory::MemoryStore;
use crate::schema::Name;
use crate::store::{Store, Unlinked};
use crate::transaction::Transaction;
use crate::value::{ObjKey, Value};
use hashbrown::{Equivalent, HashMap, HashSet};
use std::hash::{Hash, Hasher};

/// Identifies one list: the object and the list property.
pub type ListKey = (Name, ObjKey, Name);

/// A borrowed [`ListKey`]: looks a list up without cloning its names (it hashes and compares
/// exactly as the owned key does).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ListRef<'a>(&'a Name, &'a ObjKey, &'a Name);

impl ListRef<'_> {
    fn to_key(self) -> ListKey {
        (self.0.clone(), self.1.clone(), self.2.clone())
    }
}

impl Hash for ListRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0, self.1, self.2).hash(state)
    }
}

impl Equivalent<ListKey> for ListRef<'_> {
    fn equivalent(&self, k: &ListKey) -> bool {
        *self.0 == k.0 && *self.1 == k.1 && *self.2 == k.2
    }
}

#[derive(Debug)]
enum Undo {
    CreatedSeq(ListKey),
    DroppedSeq(ListKey, Sequence),
    Touched(ListKey),
    NextSeq(u64),
}

/// A store together with the merge metadata of its lists. See the module documentation.
#[derive(Debug)]
pub struct Replica<S: Store = MemoryStore> {
    store: S,
    lists: HashMap<ListKey, Sequence>,
    peer: PeerId,
    next_seq: u64,
    undo: Vec<Undo>,
    marks: Vec<usize>,
    /// For each open unit, the lists it opened a unit on.
    touched: Vec<HashSet<ListKey>>,
}

impl Replica<MemoryStore> {
    /// An empty in-memory replica for a peer.
    pub fn new(peer: PeerId) -> Self {
        Replica::with_store(peer, MemoryStore::new())
    }
}

impl<S: Store + Clone> Clone for Replica<S> {
    /// Clones the state; an open unit is not carried over.
    fn clone(&self) -> Self {
        Replica {
            store: self.store.clone(),
            lists: self.lists.clone(),
            peer: self.peer,
            next_seq: self.next_seq,
            undo: Vec::new(),
            marks: Vec::new(),
            touched: Vec::new(),
        }
    }
}

fn list_error(list: ListRef<'_>, e: ListError) -> Error {
    match e {
        ListError::IndexOutOfRange { index, len } => Error::IndexOutOfRange {
            ty: list.0.to_string(),
            key: list.1.to_string(),
            prop: list.2.to_string(),
            index: index as u64,
            len: len as u64,
        },
        other => Error::BadListReference {
            ty: list.0.to_string(),
            key: list.1.to_string(),
            prop: list.2.to_string(),
            detail: other.to_string(),
        },
    }
}

fn inconsistent(list: ListRef<'_>, detail: String) -> Error {
    Error::BadListReference {
        ty: list.0.to_string(),
        key: list.1.to_string(),
        prop: list.2.to_string(),
        detail,
    }
}

impl<S: Store> Replica<S> {
    /// A replica over an existing (empty) store.
    pub fn with_store(peer: PeerId, store: S) -> Self {
        Replica {
            store,
            lists: HashMap::new(),
            peer,
            next_seq: 1,
            undo: Vec::new(),
            marks: Vec::new(),
            touched: Vec::new(),
        }
    }

    /// A copy of this replica's state for another peer (its own ids start afresh; they cannot
    /// collide because they carry the peer id).
    pub fn fork(&self, peer: PeerId) -> Replica<S>
    where
        S: Clone,
    {
        let mut r = Replica::with_store(peer, self.store.clone());
        r.lists = self.lists.clone();
        r
    }

    /// The peer whose replica this is.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Read access to the store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The merge metadata of a list, if it has ever held an element.
    pub fn sequence(&self, obj: &ObjRef, prop: &str) -> Option<&Sequence> {
        self.lists
            .get(&(obj.ty.clone(), obj.key.clone(), Name::from(prop)))
    }

    /// Starts a write transaction stamped with `timestamp` (milliseconds, from the caller).
    pub fn transaction(&mut self, timestamp: Timestamp) -> Transaction<'_, S> {
        Transaction::new(self, timestamp)
    }

    /// Mints a new globally unique id (this peer + its counter).
    pub(crate) fn mint(&mut self) -> OpId {
        let seq = self.next_seq;
        if !self.marks.is_empty() {
            self.undo.push(Undo::NextSeq(seq));
        }
        self.next_seq += 1;
        OpId {
            peer: self.peer,
            seq,
        }
    }

    /// Starts an atomic unit across the store and the list metadata. Units nest.
    pub fn begin(&mut self) {
        self.store.begin();
        self.marks.push(self.undo.len());
        self.touched.push(HashSet::new());
    }

    /// Ends the innermost unit, keeping its changes (an enclosing unit can still undo them).
    pub fn commit(&mut self) {
        self.store.commit();
        let (Some(mark), Some(touched)) = (self.marks.pop(), self.touched.pop()) else {
            return;
        };
        let Some(parent) = self.touched.last_mut() else {
            for key in touched {
                if let Some(seq) = self.lists.get_mut(&key) {
                    seq.commit();
                }
            }
            self.undo.clear();
            return;
        };
        // A list the enclosing unit had opened merges this unit's changes into its own; a list
        // it had not is handed over, so the enclosing unit can undo what happened here.
        let mut merged = HashSet::new();
        for key in touched {
            if parent.contains(&key) {
                if let Some(seq) = self.lists.get_mut(&key) {
                    seq.commit();
                }
                merged.insert(key);
            } else {
                parent.insert(key);
            }
        }
        if !merged.is_empty() {
            let tail = self.undo.split_off(mark);
            self.undo.extend(
                tail.into_iter()
                    .filter(|u| !matches!(u, Undo::Touched(k) if merged.contains(k))),
            );
        }
    }

    /// Ends the innermost unit, undoing its changes.
    pub fn rollback(&mut self) {
        self.store.rollback();
        let (Some(mark), Some(_)) = (self.marks.pop(), self.touched.pop()) else {
            return;
        };
        while self.undo.len() > mark {
            match self.undo.pop() {
                Some(Undo::CreatedSeq(k)) => {
                    self.lists.remove(&k);
                }
                Some(Undo::DroppedSeq(k, s)) => {
                    self.lists.insert(k, s);
                }
                Some(Undo::Touched(k)) => {
                    if let Some(seq) = self.lists.get_mut(&k) {
                        seq.rollback();
                    }
                }
                Some(Undo::NextSeq(v)) => self.next_seq = v,
                None => break,
            }
        }
    }

    /// Applies a whole changeset atomically: either every instruction applies or nothing changes.
    pub fn apply_changeset(&mut self, cs: &Changeset) -> Result<(), Error> {
        let ops = cs.ops.iter().map(|op| (op, op.instr.value().cloned()));
        self.apply_ops(cs.timestamp, ops)
    }

    /// Applies a changeset that is not needed afterwards (a download): the same as
    /// [`Replica::apply_changeset`], except that values move into the store instead of being
    /// copied, so a large string or blob is never touched on its way in.
    pub fn apply_changeset_owned(&mut self, mut cs: Changeset) -> Result<(), Error> {
        let ops = cs.ops.iter_mut().map(|op| {
            let value = op
                .instr
                .value_mut()
                .map(|v| std::mem::replace(v, Value::Null));
            (&*op, value)
        });
        self.apply_ops(cs.timestamp, ops)
    }

    /// Applies ops made at `ts` atomically, each with its value (see [`Replica::apply_value`]).
    fn apply_ops<'o>(
        &mut self,
        ts: Timestamp,
        ops: impl Iterator<Item = (&'o Op, Option<Value>)>,
    ) -> Result<(), Error> {
        self.begin();
        for (index, (op, value)) in ops.enumerate() {
            if let Err(e) = self.apply_value(op, ts, value) {
                self.rollback();
                return Err(Error::InInstruction {
                    index,
                    source: Box::new(e),
                });
            }
        }
        self.commit();
        Ok(())
    }

    /// The sequence of a list for writing: created (and logged) if new, and opened for undo.
    fn seq_mut(&mut self, key: ListRef<'_>) -> &mut Sequence {
        let logging = !self.marks.is_empty();
        if !self.lists.contains_key(&key) {
            self.lists.insert(key.to_key(), Sequence::new());
            if logging {
                self.undo.push(Undo::CreatedSeq(key.to_key()));
            }
        }
        let opened = self
            .touched
            .last_mut()
            .is_some_and(|t| !t.contains(&key) && t.insert(key.to_key()));
        let seq = self
            .lists
            .get_mut(&key)
            .expect("the sequence was inserted above");
        if logging && opened {
            self.undo.push(Undo::Touched(key.to_key()));
            seq.begin();
        }
        seq
    }

    /// A list's sequence for reading (empty if the list never held an element).
    pub(crate) fn seq<Q: Hash + Equivalent<ListKey> + ?Sized>(&self, key: &Q) -> Option<&Sequence> {
        self.lists.get(key)
    }

    /// Checks that `obj.prop` is a list of an existing object, and that `value` fits it. A link
    /// value must point at an existing object unless it is known to be dead (its target was
    /// deleted concurrently).
    pub(crate) fn check_list_value(
        &self,
        obj: &ObjRef,
        prop: &str,
        value: Option<&Value>,
        dead_link: bool,
    ) -> Result<(), Error> {
        self.store.list_len(&obj.ty, &obj.key, prop)?;
        if let Some(value) = value {
            let pt = self.store.schema().get(&obj.ty)?.property(prop)?;
            pt.check(&obj.ty, prop, value)?;
            if let (Some(target), Value::Link(k)) = (pt.link_target(), value) {
                self.store.schema().get(target)?.check_key(k)?;
                if !dead_link && !self.store.exists(target, k)? {
                    return Err(Error::MissingObject {
                        ty: target.to_string(),
                        key: k.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Deletes an object if it exists: the store unlinks it everywhere, the list entries it
    /// removed are kept hidden in their sequences, and the object's own lists' metadata goes.
    pub(crate) fn delete_object(&mut self, ty: &Name, key: &ObjKey) -> Result<(), Error> {
        if !self.store.exists(ty, key)? {
            return Ok(());
        }
        let unlinked = self.store.delete(ty, key)?;
        for u in unlinked {
            if let Unlinked::ListEntry {
                ty: lty,
                key: lkey,
                prop,
                index,
            } = u
            {
                let lk = ListRef(&lty, &lkey, &prop);
                let seq = self.seq_mut(lk);
                let elem = seq.elem_at(index);
                let change = match elem {
                    Some(elem) => seq.set_state(elem, ElemState::Hidden),
                    None => Ok(VisibleChange::None),
                };
                if change != Ok(VisibleChange::Removed(index)) {
                    return Err(inconsistent(
                        lk,
                        format!(
                            "the store unlinked index {index} but the merge metadata disagrees"
                        ),
                    ));
                }
            }
        }
        if self.lists.is_empty() {
            return Ok(());
        }
        let list_props: Vec<Name> = self
            .store
            .schema()
            .get(ty)?
            .properties
            .iter()
            .filter(|(_, pt)| pt.list)
            .map(|(n, _)| n.clone())
            .collect();
        for prop in list_props {
            let lk: ListKey = (ty.clone(), key.clone(), prop);
            if let Some(seq) = self.lists.remove(&lk) {
                if !self.marks.is_empty() {
                    self.undo.push(Undo::DroppedSeq(lk, seq));
                }
            }
        }
        Ok(())
    }

    /// Applies one op, made at `ts` (its changeset's timestamp), to this replica.
    ///
    /// Errors leave the replica unchanged only inside a unit (see [`Replica::begin`]); callers
    /// outside the crate use [`Replica::apply_changeset`] or a [`Transaction`].
    pub(crate) fn apply_op(&mut self, op: &Op, ts: Timestamp) -> Result<(), Error> {
        self.apply_value(op, ts, op.instr.value().cloned())
    }

    /// Applies `op` with `value` standing for the value it carries (the op's own value may
    /// have been moved out already).
    fn apply_value(&mut self, op: &Op, ts: Timestamp, value: Option<Value>) -> Result<(), Error> {
        if op.fate == Fate::Void {
            return Ok(());
        }
        let value = value.unwrap_or(Value::Null);
        let live = op.fate == Fate::Live;
        match &op.instr {
            Instruction::AddType(def) => {
                self.store.add_type(def)?;
            }
            Instruction::AddProperties { ty, properties } => {
                self.store.add_properties(ty, properties)?;
            }
            Instruction::Insert { obj } => {
                if live {
                    self.store.create(&obj.ty, &obj.key)?;
                }
            }
            Instruction::Set { obj, prop, .. } => {
                let value = if live { value } else { Value::Null };
                self.store.set(&obj.ty, &obj.key, prop, value)?;
            }
            Instruction::AddInt { obj, prop, delta } => {
                if live {
                    self.store.add_int(&obj.ty, &obj.key, prop, *delta)?;
                }
            }
            Instruction::Delete { obj } => {
                if live {
                    self.delete_object(&obj.ty, &obj.key)?;
                }
            }
            Instruction::Clear { ty, objects } => {
                if live {
                    for key in objects {
                        self.delete_object(ty, key)?;
                    }
                }
            }
            Instruction::ListInsert {
                obj,
                prop,
                elem,
                place,
                ..
            } => {
                self.check_list_value(obj, prop, Some(&value), op.fate != Fate::Live)?;
                let state = match op.fate {
                    Fate::Live => ElemState::Visible,
                    Fate::DeadLink => ElemState::Hidden,
                    _ => ElemState::Erased,
                };
                let lk = ListRef(&obj.ty, &obj.key, prop);
                let change = self
                    .seq_mut(lk)
                    .insert(*elem, ts, *place, state)
                    .map_err(|e| list_error(lk, e))?;
                if let VisibleChange::Inserted(i) = change {
                    self.store.list_insert(&obj.ty, &obj.key, prop, i, value)?;
                }
            }
            Instruction::ListSet {
                obj, prop, elem, ..
            } => {
                self.check_list_value(obj, prop, Some(&value), op.fate != Fate::Live)?;
                let lk = ListRef(&obj.ty, &obj.key, prop);
                let state = self
                    .seq(&lk)
                    .and_then(|s| s.state(*elem))
                    .ok_or_else(|| inconsistent(lk, format!("unknown element {elem}")))?;
                match (state, live) {
                    (ElemState::Visible, true) => {
                        let i = self
                            .seq(&lk)
                            .and_then(|s| s.index_of(*elem))
                            .ok_or_else(|| {
                                inconsistent(lk, format!("element {elem} has no index"))
                            })?;
                        self.store.list_set(&obj.ty, &obj.key, prop, i, value)?;
                    }
                    (ElemState::Visible, false) => {
                        let change = self
                            .seq_mut(lk)
                            .set_state(*elem, ElemState::Hidden)
                            .map_err(|e| list_error(lk, e))?;
                        if let VisibleChange::Removed(i) = change {
                            self.store.list_erase(&obj.ty, &obj.key, prop, i)?;
                        }
                    }
                    (ElemState::Hidden, true) => {
                        let change = self
                            .seq_mut(lk)
                            .set_state(*elem, ElemState::Visible)
                            .map_err(|e| list_error(lk, e))?;
                        if let VisibleChange::Inserted(i) = change {
                            self.store.list_insert(&obj.ty, &obj.key, prop, i, value)?;
                        }
                    }
                    (ElemState::Hidden, false) => {}
                    (ElemState::Erased, _) => {
                        return Err(inconsistent(
                            lk,
                            format!("list_set of erased element {elem}"),
                        ))
                    }
                }
            }
            Instruction::ListErase {
                obj, prop, elem, ..
            } => {
                self.check_list_value(obj, prop, None, false)?;
                let lk = ListRef(&obj.ty, &obj.key, prop);
                let state = self
                    .seq(&lk)
                    .and_then(|s| s.state(*elem))
                    .ok_or_else(|| inconsistent(lk, format!("unknown element {elem}")))?;
                if state == ElemState::Erased {
                    return Err(inconsistent(
                        lk,
                        format!("element {elem} is already erased"),
                    ));
                }
                let change = self
                    .seq_mut(lk)
                    .set_state(*elem, ElemState::Erased)
                    .map_err(|e| list_error(lk, e))?;
                if let VisibleChange::Removed(i) = change {
                    self.store.list_erase(&obj.ty, &obj.key, prop, i)?;
                }
            }
            Instruction::ListMove {
                obj,
                prop,
                elem,
                node,
                place,
                ..
            } => {
                self.check_list_value(obj, prop, None, false)?;
                let lk = ListRef(&obj.ty, &obj.key, prop);
                let change = self
                    .seq_mut(lk)
                    .add_node(*elem, *node, ts, *place, live)
                    .map_err(|e| list_error(lk, e))?;
                if let VisibleChange::Moved { from, to } = change {
                    self.store.list_move(&obj.ty, &obj.key, prop, from, to)?;
                }
            }
            Instruction::ListClear { obj, prop } => {
                if live {
                    self.check_list_value(obj, prop, None, false)?;
                    let lk = ListRef(&obj.ty, &obj.key, prop);
                    if self.lists.contains_key(&lk) {
                        self.seq_mut(lk).clear();
                    }
                    self.store.list_clear(&obj.ty, &obj.key, prop)?;
                }
            }
        }
        Ok(())
    }
}
