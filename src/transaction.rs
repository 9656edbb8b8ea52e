//! Write transactions: ordinary calls ("create object", "set property", "insert into list")
//! that apply to the local replica at once and are recorded as the instructions of one
//! changeset.
//!
//! Every write is validated against the schema and the current state before it changes
//! anything; a rejected write returns a typed error and leaves the replica and the transaction
//! as they were, so the caller may go on with other writes. Dropping a transaction without
//! committing it rolls back all of its writes.

use crate::changeset::Changeset;
use crate::error::Error;
use crate::ids::Timestamp;
use crate::instruction::{Instruction, ObjRef, Op};
use crate::replica::{ListKey, Replica};
use crate::schema::{is_reserved, Name, ObjectType, Property};
use crate::store::Store;
use crate::value::{ObjKey, Value};

/// An open write transaction on a [`Replica`]. See the module documentation.
#[derive(Debug)]
pub struct Transaction<'r, S: Store> {
    replica: &'r mut Replica<S>,
    timestamp: Timestamp,
    ops: Vec<Op>,
    open: bool,
}

impl<S: Store> Drop for Transaction<'_, S> {
    fn drop(&mut self) {
        if self.open {
            self.replica.rollback();
        }
    }
}

impl<'r, S: Store> Transaction<'r, S> {
    pub(crate) fn new(replica: &'r mut Replica<S>, timestamp: Timestamp) -> Self {
        replica.begin();
        Transaction {
            replica,
            timestamp,
            ops: Vec::new(),
            open: true,
        }
    }

    /// The store as this transaction sees it (its own writes included).
    pub fn store(&self) -> &S {
        self.replica.store()
    }

    /// The instructions recorded so far.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Commits: the writes stay applied and are returned as a changeset (which may be empty).
    /// The changeset's versions are filled in by the sync layer.
    pub fn commit(mut self) -> Changeset {
        self.open = false;
        self.replica.commit();
        let mut cs = Changeset::new(self.replica.peer(), self.timestamp);
        cs.ops = std::mem::take(&mut self.ops);
        // The changeset is kept until the server acknowledges it, often for long: growing by
        // pushes left room for four instructions where most transactions write one. Only small
        // changesets are shrunk; a large one wastes at most what it holds, and moving megabytes
        // to save that costs more than it saves.
        if cs.ops.len() < 64 {
            cs.ops.shrink_to_fit();
        }
        cs
    }

    /// Abandons the transaction, undoing its writes.
    pub fn rollback(self) {}

    /// Runs several writes as one unit inside the transaction: if `f` fails, every write it made
    /// is undone and the transaction goes on as it was before.
    pub fn atomically<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let recorded = self.ops.len();
        self.replica.begin();
        match f(self) {
            Ok(v) => {
                self.replica.commit();
                Ok(v)
            }
            Err(e) => {
                self.replica.rollback();
                self.ops.truncate(recorded);
                Err(e)
            }
        }
    }

    /// Applies one instruction as a nested unit and records it, or leaves everything unchanged.
    fn write(&mut self, instr: Instruction) -> Result<(), Error> {
        let op = Op::live(instr);
        let ts = self.timestamp;
        self.atomically(|tx| tx.replica.apply_op(&op, ts))?;
        self.ops.push(op);
        Ok(())
    }

    /// Adds a type (or merges properties into an identical existing one). Names starting with
    /// `__` are reserved for the engine.
    pub fn add_type(&mut self, def: ObjectType) -> Result<(), Error> {
        if is_reserved(&def.name) {
            return Err(Error::ReservedName {
                name: def.name.to_string(),
            });
        }
        self.replica.store().schema().plan_add_type(&def)?;
        self.write(Instruction::AddType(def))
    }

    /// Adds properties to an existing type.
    pub fn add_properties(&mut self, ty: &str, properties: Vec<Property>) -> Result<(), Error> {
        let ty = self.replica.store().schema().get(ty)?.name.clone();
        self.replica
            .store()
            .schema()
            .plan_add_properties(&ty, &properties)?;
        self.write(Instruction::AddProperties { ty, properties })
    }

    fn obj(&self, ty: &str, key: ObjKey) -> Result<ObjRef, Error> {
        let def = self.replica.store().schema().get(ty)?;
        def.check_key(&key)?;
        Ok(ObjRef {
            ty: def.name.clone(),
            key,
        })
    }

    fn existing(&self, ty: &str, key: ObjKey) -> Result<ObjRef, Error> {
        let obj = self.obj(ty, key)?;
        if !self.replica.store().exists(&obj.ty, &obj.key)? {
            return Err(Error::MissingObject {
                ty: obj.ty.to_string(),
                key: obj.key.to_string(),
            });
        }
        Ok(obj)
    }

    fn prop(&self, obj: &ObjRef, prop: &str) -> Result<Name, Error> {
        let def = self.replica.store().schema().get(&obj.ty)?;
        def.property(prop)?;
        Ok(def
            .properties
            .get_key_value(prop)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| prop.into()))
    }

    /// Creates the object with this primary key if it does not exist. Returns whether it was
    /// created.
    pub fn insert(&mut self, ty: &str, key: impl Into<ObjKey>) -> Result<bool, Error> {
        let obj = self.obj(ty, key.into())?;
        let existed = self.replica.store().exists(&obj.ty, &obj.key)?;
        self.write(Instruction::Insert { obj })?;
        Ok(!existed)
    }

    /// Creates an object of a type without a primary key; its key is a new engine id.
    pub fn create(&mut self, ty: &str) -> Result<ObjKey, Error> {
        let def = self.replica.store().schema().get(ty)?;
        if def.primary_key.is_some() {
            return Err(Error::InvalidKey {
                ty: ty.to_string(),
                key: "(engine id)".to_string(),
                detail: "this type has a primary key; use insert".to_string(),
            });
        }
        let name = def.name.clone();
        self.atomically(|tx| {
            let key = ObjKey::Engine(tx.replica.mint());
            tx.write(Instruction::Insert {
                obj: ObjRef {
                    ty: name,
                    key: key.clone(),
                },
            })?;
            Ok(key)
        })
    }

    fn set_inner(
        &mut self,
        ty: &str,
        key: ObjKey,
        prop: &str,
        value: Value,
        default: bool,
    ) -> Result<(), Error> {
        let obj = self.existing(ty, key)?;
        let prop = self.prop(&obj, prop)?;
        self.write(Instruction::Set {
            obj,
            prop,
            value,
            default,
        })
    }

    /// Sets a scalar property.
    pub fn set(
        &mut self,
        ty: &str,
        key: impl Into<ObjKey>,
        prop: &str,
        value: impl Into<Value>,
    ) -> Result<(), Error> {
        self.set_inner(ty, key.into(), prop, value.into(), false)
    }

    /// Sets a scalar property with a default-value write, which loses to every concurrent
    /// ordinary write.
    pub fn set_default(
        &mut self,
        ty: &str,
        key: impl Into<ObjKey>,
        prop: &str,
        value: impl Into<Value>,
    ) -> Result<(), Error> {
        self.set_inner(ty, key.into(), prop, value.into(), true)
    }

    /// Adds to an int property (a counter).
    pub fn add_int(
        &mut self,
        ty: &str,
        key: impl Into<ObjKey>,
        prop: &str,
        delta: i64,
    ) -> Result<(), Error> {
        let obj = self.existing(ty, key.into())?;
        let prop = self.prop(&obj, prop)?;
        self.write(Instruction::AddInt { obj, prop, delta })
    }

    /// Deletes an object (which must exist); links to it become null and it leaves every list.
    pub fn delete(&mut self, ty: &str, key: impl Into<ObjKey>) -> Result<(), Error> {
        let obj = self.existing(ty, key.into())?;
        self.write(Instruction::Delete { obj })
    }

    /// Deletes every object of a type.
    pub fn clear(&mut self, ty: &str) -> Result<(), Error> {
        let name = self.replica.store().schema().get(ty)?.name.clone();
        let objects = self.replica.store().objects(&name)?;
        self.write(Instruction::Clear { ty: name, objects })
    }

    fn list_key(&self, ty: &str, key: ObjKey, prop: &str) -> Result<(ObjRef, ListKey), Error> {
        let obj = self.existing(ty, key)?;
        let prop = self.prop(&obj, prop)?;
        self.replica.check_list_value(&obj, &prop, None, false)?;
        let lk = (obj.ty.clone(), obj.key.clone(), prop);
        Ok((obj, lk))
    }

    fn index_error(lk: &ListKey, index: usize, len: usize) -> Error {
        Error::IndexOutOfRange {
            ty: lk.0.to_string(),
            key: lk.1.to_string(),
            prop: lk.2.to_string(),
            index: index as u64,
            len: len as u64,
        }
    }

    fn elem_at(&self, lk: &ListKey, index: usize) -> Result<crate::ids::OpId, Error> {
        let seq = self.replica.seq(lk);
        seq.and_then(|s| s.elem_at(index))
            .ok_or_else(|| Self::index_error(lk, index, seq.map_or(0, |s| s.len())))
    }

    /// Inserts a value into a list at `index` (0 ..= length).
    pub fn list_insert(
        &mut self,
        ty: &str,
        key: impl Into<ObjKey>,
        prop: &str,
        index: usize,
        value: impl Into<Value>,
    ) -> Result<(), Error> {
        let (obj, lk) = self.list_key(ty, key.into(), prop)?;
        let value = value.into();
        self.replica
            .check_list_value(&obj, &lk.2, Some(&value), false)?;
        let len = self.replica.seq(&lk).map_or(0, |s| s.len());
        if index > len {
            return Err(Self::index_error(&lk, index, len));
        }
        let place = match self.replica.seq(&lk) {
            Some(seq) => seq.place_insert(index),
            None => crate::list::Sequence::new().place_insert(index),
        }
        .map_err(|_| Self::index_error(&lk, index, len))?;
        self.atomically(|tx| {
            let elem = tx.replica.mint();
            tx.write(Instruction::ListInsert {
                obj,
                prop: lk.2,
                index: index as u32,
                value,
                elem,
                place,
            })
        })
    }

    /// Replaces the list element at `index`.
    pub fn list_set(
        &mut self,
        ty: &str,
        key: impl Into<ObjKey>,
        prop: &str,
        index: usize,
        value: impl Into<Value>,
    ) -> Result<(), Error> {
        let (obj, lk) = self.list_key(ty, key.into(), prop)?;
        let elem = self.elem_at(&lk, index)?;
        self.write(Instruction::ListSet {
            obj,
            prop: lk.2,
            index: index as u32,
            value: value.into(),
            elem,
        })
    }

    /// Removes the list element at `index`.
    pub fn list_erase(
        &mut self,
        ty: &str,
        key: impl Into<ObjKey>,
        prop: &str,
        index: usize,
    ) -> Result<(), Error> {
        let (obj, lk) = self.list_key(ty, key.into(), prop)?;
        let elem = self.elem_at(&lk, index)?;
        self.write(Instruction::ListErase {
            obj,
            prop: lk.2,
            index: index as u32,
            elem,
        })
    }

    /// Moves the list element at `from` so that it ends at `to`.
    pub fn list_move(
        &mut self,
        ty: &str,
        key: impl Into<ObjKey>,
        prop: &str,
        from: usize,
        to: usize,
    ) -> Result<(), Error> {
        let (obj, lk) = self.list_key(ty, key.into(), prop)?;
        let elem = self.elem_at(&lk, from)?;
        self.elem_at(&lk, to)?;
        let place = self
            .replica
            .seq(&lk)
            .map(|s| s.place_move(elem, to))
            .ok_or_else(|| Self::index_error(&lk, to, 0))?
            .map_err(|e| Error::BadListReference {
                ty: lk.0.to_string(),
                key: lk.1.to_string(),
                prop: lk.2.to_string(),
                detail: e.to_string(),
            })?;
        self.atomically(|tx| {
            let node = tx.replica.mint();
            tx.write(Instruction::ListMove {
                obj,
                prop: lk.2,
                from: from as u32,
                to: to as u32,
                elem,
                node,
                place,
            })
        })
    }

    /// Removes every element of a list.
    pub fn list_clear(
        &mut self,
        ty: &str,
        key: impl Into<ObjKey>,
        prop: &str,
    ) -> Result<(), Error> {
        let (obj, lk) = self.list_key(ty, key.into(), prop)?;
        self.write(Instruction::ListClear { obj, prop: lk.2 })
    }
}
