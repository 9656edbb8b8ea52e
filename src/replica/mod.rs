//! `Replica`: a store plus the merge metadata of its lists, and the one place where instructions
//! are applied to it.
//!
//! Local writes and merged remote changesets take the same path (`apply`): a list instruction
//! is registered in the list's [`Sequence`] by its ids, the sequence says where the element is
//! visible in this replica, and the store is told the plain index (`lists`). Deleting an object
//! lets the store unlink it everywhere, and the elements the store removed from lists of links
//! are kept as hidden in their sequences (a concurrent write can still make them visible
//! again). Every instruction is checked before it changes anything (`check`).
//!
//! Atomicity: [`Replica::begin`]/[`Replica::commit`]/[`Replica::rollback`] bracket a unit across
//! the store and the sequences (`units`); units nest, so a transaction can reject one bad write
//! and keep the others.
//!
//! Change notifications: every store-level effect on something observed is reported to the
//! replica's recorder ([`crate::observe`]) where it happens, in `apply` and `lists`; `observed`
//! holds the observing API.
//!
//! The write layer ([`crate::Transaction`]) uses a replica through a narrow interface: minting
//! ids, reading a list's sequence, and applying one op. Nothing here knows about transactions.

mod apply;
mod check;
mod list;
mod lists;
mod observed;
mod snapshot;
mod units;

use list::UndoLogs;
pub use list::{ElemState, Sequence};
pub(crate) use snapshot::StateHead;

use crate::model::{
    Changeset, Error, Name, ObjKey, ObjRef, Op, OpId, PeerId, PropRef, Timestamp, Value,
};
use crate::observe::Recorder;
use crate::store::{MemoryStore, Store};
use hashbrown::{Equivalent, HashMap};
use std::hash::{Hash, Hasher};
use units::Units;

/// A borrowed [`PropRef`]: looks a list up without cloning its names (it hashes and compares
/// exactly as the owned one does).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ListAt<'a> {
    ty: &'a Name,
    key: &'a ObjKey,
    prop: &'a Name,
}

impl<'a> ListAt<'a> {
    /// The list `prop` of `obj`.
    pub(crate) fn new(obj: &'a ObjRef, prop: &'a Name) -> Self {
        ListAt {
            ty: &obj.ty,
            key: &obj.key,
            prop,
        }
    }

    fn to_ref(self) -> PropRef {
        PropRef::from(&self)
    }
}

impl From<&ListAt<'_>> for PropRef {
    fn from(list: &ListAt<'_>) -> PropRef {
        PropRef {
            obj: ObjRef {
                ty: list.ty.clone(),
                key: list.key.clone(),
            },
            prop: list.prop.clone(),
        }
    }
}

impl Hash for ListAt<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The field order of `PropRef` (type, key, property), so both hash alike.
        (self.ty, self.key, self.prop).hash(state)
    }
}

impl Equivalent<PropRef> for ListAt<'_> {
    fn equivalent(&self, k: &PropRef) -> bool {
        *self.ty == k.obj.ty && *self.key == k.obj.key && *self.prop == k.prop
    }
}

/// A store together with the merge metadata of its lists. See the module documentation.
///
/// ```
/// use objsync::{ObjRef, ObjectType, PeerId, PropType, Property, Replica, Store, Value};
///
/// let mut replica = Replica::new(PeerId(1));
/// let mut tx = replica.transaction(1);
/// tx.add_type(ObjectType::new("List", Some("id"), [
///     Property::new("id", PropType::parse("int")?),
///     Property::new("items", PropType::parse("list<string>")?),
/// ])?)?;
/// tx.insert("List", 1)?;
/// tx.list_insert("List", 1, "items", 0, "b")?;
/// tx.list_insert("List", 1, "items", 0, "a")?;
/// tx.commit();
/// let items = replica.store().list("List", &1.into(), "items")?;
/// assert_eq!(items, [Value::from("a"), Value::from("b")]);
/// // The list's merge metadata: every element has an id that never changes.
/// assert_eq!(replica.sequence(&ObjRef::new("List", 1), "items").map(|s| s.len()), Some(2));
/// # Ok::<(), objsync::Error>(())
/// ```
#[derive(Debug)]
pub struct Replica<S: Store = MemoryStore> {
    store: S,
    lists: HashMap<PropRef, Sequence>,
    peer: PeerId,
    next_seq: u64,
    units: Units,
    recorder: Recorder,
}

impl Replica<MemoryStore> {
    /// An empty in-memory replica for a peer.
    pub fn new(peer: PeerId) -> Self {
        Replica::with_store(peer, MemoryStore::new())
    }
}

impl<S: Store + Clone> Clone for Replica<S> {
    /// Clones the state; an open unit, what is observed and the changes not yet taken are
    /// not carried over.
    fn clone(&self) -> Self {
        Replica {
            store: self.store.clone(),
            lists: self.lists.clone(),
            peer: self.peer,
            next_seq: self.next_seq,
            units: Units::default(),
            recorder: Recorder::default(),
        }
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
            units: Units::default(),
            recorder: Recorder::default(),
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
        self.lists.get(&PropRef::new(obj.clone(), prop))
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

    /// Applies a changeset instruction by instruction, each atomically, leaving out the
    /// instructions that do not apply to this state; returns those, in order. A changeset made
    /// for another state (replayed by a client reset on the server's state) applies as far as
    /// it still can.
    pub(crate) fn apply_changeset_lenient(&mut self, cs: &mut Changeset) -> Vec<Op> {
        if self.apply_changeset(cs).is_ok() {
            return Vec::new();
        }
        let mut failed = Vec::new();
        cs.ops.retain(|op| {
            self.begin();
            let applied = self.apply_op(op, cs.timestamp).is_ok();
            if applied {
                self.commit();
            } else {
                self.rollback();
                failed.push(op.clone());
            }
            applied
        });
        failed
    }

    /// Makes sure the ids this replica mints next come after every id `other` has minted.
    pub(crate) fn mint_after(&mut self, other: &Replica<impl Store>) {
        self.next_seq = self.next_seq.max(other.next_seq);
    }

    /// Applies ops made at `ts` atomically, each with its value (see `apply`).
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

    // ----- the write layer's interface -----

    /// Mints a new globally unique id (this peer + its counter); undone with the unit it was
    /// minted in.
    pub(crate) fn mint(&mut self) -> OpId {
        let seq = self.next_seq;
        self.units.minted(seq);
        self.next_seq += 1;
        OpId {
            peer: self.peer,
            seq,
        }
    }

    /// A list's sequence for reading (`None` if the list never held an element).
    pub(crate) fn list(&self, list: ListAt<'_>) -> Option<&Sequence> {
        self.lists.get(&list)
    }

    /// Applies one op, made at `ts` (its changeset's timestamp). Errors leave the replica
    /// unchanged only inside a unit (see [`Replica::begin`]).
    pub(crate) fn apply_op(&mut self, op: &Op, ts: Timestamp) -> Result<(), Error> {
        self.apply_value(op, ts, op.instr.value().cloned())
    }
}
