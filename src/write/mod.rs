//! Write transactions: ordinary calls ("create object", "set property", "insert into list")
//! that apply to the local replica at once and are recorded as the instructions of one
//! changeset.
//!
//! A write names its object by type and key and its list elements by index; the transaction
//! turns that into an instruction (canonical names, element ids, list placements), applies it
//! to the replica as a nested atomic unit, and records it. The replica checks the instruction
//! against the schema and the current state, so a rejected write returns a typed error and
//! leaves the replica and the transaction as they were, and the caller may go on with other
//! writes. Dropping a transaction without committing it rolls back all of its writes.
//!
//! Writer-side list placement (which index becomes which element id, where a new element hangs
//! in the list's merge tree) is in `lists`.

mod lists;

use crate::model::{
    is_reserved, Changeset, Error, Instruction, Name, ObjKey, ObjRef, ObjectType, Op, PropType,
    Property, Timestamp, Value,
};
use crate::replica::Replica;
use crate::store::Store;

/// An open write transaction on a [`Replica`]. See the module documentation.
///
/// ```
/// use objsync::{ObjectType, PeerId, PropType, Property, Replica, Store, Value};
///
/// let mut replica = Replica::new(PeerId(1));
/// let mut tx = replica.transaction(1_000);
/// tx.add_type(ObjectType::new("Person", Some("id"), [
///     Property::new("id", PropType::parse("int")?),
///     Property::new("friend", PropType::parse("link<Person>")?),
/// ])?)?;
/// tx.insert("Person", 1)?;
/// tx.insert("Person", 2)?;
/// // A link is set from the target's key.
/// tx.set("Person", 1, "friend", 2)?;
/// // A rejected write changes nothing and the transaction goes on.
/// assert!(tx.set("Person", 1, "friend", 3).is_err());
/// let changeset = tx.commit();
/// assert_eq!(changeset.ops.len(), 4);
/// assert_eq!(replica.store().get("Person", &1.into(), "friend")?, Value::link(2));
/// # Ok::<(), objsync::Error>(())
/// ```
#[derive(Debug)]
pub struct Transaction<'r, S: Store> {
    replica: &'r mut Replica<S>,
    timestamp: Timestamp,
    ops: Vec<Op>,
    open: bool,
}

impl<S: Store> Replica<S> {
    /// Starts a write transaction stamped with `timestamp` (milliseconds, from the caller).
    pub fn transaction(&mut self, timestamp: Timestamp) -> Transaction<'_, S> {
        self.begin();
        Transaction {
            replica: self,
            timestamp,
            // Most transactions write one instruction: room for exactly one leaves `commit`
            // nothing to shrink, where the first push of an empty vector makes room for four.
            ops: Vec::with_capacity(1),
            open: true,
        }
    }
}

impl<S: Store> Drop for Transaction<'_, S> {
    fn drop(&mut self) {
        if self.open {
            self.replica.rollback();
        }
    }
}

impl<S: Store> Transaction<'_, S> {
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
            return Err(Error::ReservedName { name: def.name });
        }
        self.write(Instruction::AddType(def))
    }

    /// Adds one of the engine's own types (the permission types), whose names are reserved.
    pub(crate) fn add_system_type(&mut self, def: ObjectType) -> Result<(), Error> {
        self.write(Instruction::AddType(def))
    }

    /// Adds properties to an existing type.
    pub fn add_properties(&mut self, ty: &str, properties: Vec<Property>) -> Result<(), Error> {
        let ty = self.store().schema().get(ty)?.name.clone();
        self.write(Instruction::AddProperties { ty, properties })
    }

    /// The object `ty[key]`, with the schema's name for the type, if the key fits the type; and
    /// the type's definition.
    fn obj_def(&self, ty: &str, key: ObjKey) -> Result<(ObjRef, &ObjectType), Error> {
        let def = self.store().schema().get(ty)?;
        def.check_key(&key)?;
        let obj = ObjRef {
            ty: def.name.clone(),
            key,
        };
        Ok((obj, def))
    }

    /// The object `ty[key]`, with the schema's name for the type, if the key fits the type.
    fn obj(&self, ty: &str, key: ObjKey) -> Result<ObjRef, Error> {
        self.obj_def(ty, key).map(|(obj, _)| obj)
    }

    /// The existing object `ty[key]`, and its type's definition.
    fn existing(&self, ty: &str, key: ObjKey) -> Result<(ObjRef, &ObjectType), Error> {
        let (obj, def) = self.obj_def(ty, key)?;
        if !self.store().exists(&obj.ty, &obj.key)? {
            return Err(Error::MissingObject { obj });
        }
        Ok((obj, def))
    }

    /// The field a write names: the existing object `ty[key]`, the schema's name of its
    /// property `prop`, and the property's type. Every write checks these first; one lookup of
    /// the type serves them all.
    fn field(&self, ty: &str, key: ObjKey, prop: &str) -> Result<(ObjRef, Name, &PropType), Error> {
        let (obj, def) = self.existing(ty, key)?;
        let (name, pt) = def.property_entry(prop)?;
        Ok((obj, name.clone(), pt))
    }

    /// A value written to a property of type `pt`: a key given for a link property (an int, a
    /// string, an object id) becomes a link to the object with that key.
    fn value_for(pt: &PropType, value: Value) -> Value {
        match ObjKey::try_from(&value) {
            Ok(key) if pt.link_target().is_some() && !value.is_null() => Value::Link(key),
            _ => value,
        }
    }

    /// Creates the object with this primary key if it does not exist. Returns whether it was
    /// created.
    pub fn insert(&mut self, ty: &str, key: impl Into<ObjKey>) -> Result<bool, Error> {
        let obj = self.obj(ty, key.into())?;
        let existed = self.store().exists(&obj.ty, &obj.key)?;
        self.write(Instruction::Insert { obj })?;
        Ok(!existed)
    }

    /// Creates an object of a type without a primary key; its key is a new engine id.
    pub fn create(&mut self, ty: &str) -> Result<ObjKey, Error> {
        let def = self.store().schema().get(ty)?;
        if def.primary_key.is_some() {
            return Err(Error::HasPrimaryKey {
                ty: def.name.clone(),
            });
        }
        let ty = def.name.clone();
        self.atomically(|tx| {
            let key = ObjKey::Engine(tx.replica.mint());
            let obj = ObjRef {
                ty,
                key: key.clone(),
            };
            tx.write(Instruction::Insert { obj })?;
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
        let (obj, prop, pt) = self.field(ty, key, prop)?;
        let value = Self::value_for(pt, value);
        self.write(Instruction::Set {
            obj,
            prop,
            value,
            default,
        })
    }

    /// Sets a scalar property. For a link property the value may be the target's key.
    ///
    /// The value is checked against the property's declared type before anything changes, so a
    /// wrong value is an error here rather than a surprise on another replica. `None` is null.
    ///
    /// ```
    /// use objsync::{Error, ObjectType, PeerId, PropType, Property, Replica, Store, Value};
    ///
    /// let mut replica = Replica::new(PeerId(1));
    /// let mut tx = replica.transaction(1);
    /// tx.add_type(ObjectType::new("Person", Some("id"), [
    ///     Property::new("id", PropType::parse("int")?),
    ///     Property::new("age", PropType::parse("int?")?),
    /// ])?)?;
    /// tx.insert("Person", 1)?;
    /// tx.set("Person", 1, "age", 36)?;
    /// assert!(matches!(tx.set("Person", 1, "age", "old"), Err(Error::TypeMismatch { .. })));
    /// assert_eq!(tx.store().get("Person", &1.into(), "age")?, Value::Int(36));
    /// tx.set("Person", 1, "age", None::<i64>)?;
    /// assert_eq!(tx.store().get("Person", &1.into(), "age")?, Value::Null);
    /// # Ok::<(), Error>(())
    /// ```
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
    ///
    /// Use it rather than reading and setting the sum: it is recorded as the increment, so
    /// increments made concurrently on several replicas all count, where concurrent sets would
    /// keep only the last one.
    ///
    /// ```
    /// use objsync::{Instruction, ObjectType, PeerId, PropType, Property, Replica, Store, Value};
    ///
    /// let mut replica = Replica::new(PeerId(1));
    /// let mut tx = replica.transaction(1);
    /// tx.add_type(ObjectType::new("Post", Some("id"), [
    ///     Property::new("id", PropType::parse("int")?),
    ///     Property::new("likes", PropType::parse("int")?),
    /// ])?)?;
    /// tx.insert("Post", 1)?;
    /// tx.add_int("Post", 1, "likes", 1)?;
    /// tx.add_int("Post", 1, "likes", 2)?;
    /// assert_eq!(tx.store().get("Post", &1.into(), "likes")?, Value::Int(3));
    /// assert!(matches!(tx.ops()[3].instr, Instruction::AddInt { delta: 2, .. }));
    /// # Ok::<(), objsync::Error>(())
    /// ```
    pub fn add_int(
        &mut self,
        ty: &str,
        key: impl Into<ObjKey>,
        prop: &str,
        delta: i64,
    ) -> Result<(), Error> {
        let (obj, prop, _) = self.field(ty, key.into(), prop)?;
        self.write(Instruction::AddInt { obj, prop, delta })
    }

    /// Deletes an object (which must exist); links to it become null and it leaves every list.
    ///
    /// Deleting cleans up the links at once, so no replica ever holds a link to a missing object.
    ///
    /// ```
    /// use objsync::{Error, ObjectType, PeerId, PropType, Property, Replica, Store, Value};
    ///
    /// let mut replica = Replica::new(PeerId(1));
    /// let mut tx = replica.transaction(1);
    /// tx.add_type(ObjectType::new("Person", Some("id"), [
    ///     Property::new("id", PropType::parse("int")?),
    ///     Property::new("friend", PropType::parse("link<Person>")?),
    /// ])?)?;
    /// tx.insert("Person", 1)?;
    /// tx.insert("Person", 2)?;
    /// tx.set("Person", 2, "friend", 1)?;
    /// tx.delete("Person", 1)?;
    /// assert_eq!(tx.store().get("Person", &2.into(), "friend")?, Value::Null);
    /// assert!(matches!(tx.delete("Person", 1), Err(Error::MissingObject { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn delete(&mut self, ty: &str, key: impl Into<ObjKey>) -> Result<(), Error> {
        let (obj, _) = self.existing(ty, key.into())?;
        self.write(Instruction::Delete { obj })
    }

    /// Deletes every object of a type.
    pub fn clear(&mut self, ty: &str) -> Result<(), Error> {
        let ty = self.store().schema().get(ty)?.name.clone();
        let objects = self.store().objects(&ty)?;
        self.write(Instruction::Clear { ty, objects })
    }
}
