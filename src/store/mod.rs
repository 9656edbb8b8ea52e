//! The `Store` trait: what a backing store must provide for changesets to be applied to it.
//!
//! A store holds the plain state: the schema, objects by type and key, scalar values and lists of
//! values addressed by index. It knows nothing about merging. The engine ([`crate::Replica`])
//! translates every merged instruction into these primitive calls, so any store that can do them
//! atomically (an in-memory map, an embedded database, an SQL database behind an adapter) can
//! hold a synced realm. [`crate::MemoryStore`] is the in-memory implementation.
//!
//! Every method checks its input against the schema and returns a typed [`Error`] without
//! changing anything when the input is invalid. `begin`/`commit`/`rollback` group calls into an
//! atomic unit; units nest, and rolling back a unit restores the store exactly.

mod memory;

pub use memory::MemoryStore;

use crate::model::{Error, ObjKey, ObjectType, PropRef, Property, Schema, Value};

/// A link removed because its target was deleted, reported by [`Store::delete`] in the order
/// the removals happened (so list indices are valid one after another).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unlinked {
    /// A link property that pointed at the deleted object and is now null.
    Field(PropRef),
    /// An element of a list of links that pointed at the deleted object and was removed.
    ListEntry {
        /// The list.
        list: PropRef,
        /// The element's index just before it was removed.
        index: usize,
    },
}

/// The primitive operations of a store. See the module documentation.
///
/// Applications write through a [`Transaction`](crate::Transaction), which records what it
/// does for syncing, and read through this trait on [`Replica::store`](crate::Replica::store).
/// The trait must be in scope for the reads.
///
/// ```
/// use objsync::{ObjKey, ObjectType, PeerId, PropType, Property, Replica, Store, Value};
///
/// let mut replica = Replica::new(PeerId(1));
/// let mut tx = replica.transaction(1);
/// tx.add_type(ObjectType::new("Person", Some("id"), [
///     Property::new("id", PropType::parse("int")?),
///     Property::new("tags", PropType::parse("list<string>")?),
/// ])?)?;
/// tx.insert("Person", 1)?;
/// tx.list_insert("Person", 1, "tags", 0, "math")?;
/// tx.commit();
/// let (store, ada) = (replica.store(), ObjKey::from(1));
/// assert_eq!(store.get("Person", &ada, "id")?, Value::Int(1));
/// assert_eq!(store.list("Person", &ada, "tags")?, [Value::from("math")]);
/// assert_eq!(store.objects("Person")?, [ada.clone()]);
/// assert!(store.get("Person", &ada, "age").is_err());
/// # Ok::<(), objsync::Error>(())
/// ```
pub trait Store {
    /// The current schema.
    fn schema(&self) -> &Schema;

    /// Adds a type or merges a definition into it (additive only). Returns whether anything
    /// changed.
    fn add_type(&mut self, def: &ObjectType) -> Result<bool, Error>;

    /// Adds properties to a type (additive only). Existing objects get each new property's
    /// default. Returns whether anything changed.
    fn add_properties(&mut self, ty: &str, props: &[Property]) -> Result<bool, Error>;

    /// Whether the object exists.
    fn exists(&self, ty: &str, key: &ObjKey) -> Result<bool, Error>;

    /// Creates the object with every property at its default, unless it exists. Returns whether
    /// it was created.
    fn create(&mut self, ty: &str, key: &ObjKey) -> Result<bool, Error>;

    /// Deletes the object: every link to it becomes null and it is removed from every list of
    /// links. Returns what was unlinked. Deleting a missing object is an error.
    fn delete(&mut self, ty: &str, key: &ObjKey) -> Result<Vec<Unlinked>, Error>;

    /// Reads a scalar property (the primary key included).
    fn get(&self, ty: &str, key: &ObjKey, prop: &str) -> Result<Value, Error>;

    /// Writes a scalar property. Links must point at existing objects of the target type.
    fn set(&mut self, ty: &str, key: &ObjKey, prop: &str, value: Value) -> Result<(), Error>;

    /// Adds to an int property, wrapping on overflow; a null value stays null.
    fn add_int(&mut self, ty: &str, key: &ObjKey, prop: &str, delta: i64) -> Result<(), Error>;

    /// Reads a whole list.
    fn list(&self, ty: &str, key: &ObjKey, prop: &str) -> Result<Vec<Value>, Error>;

    /// The length of a list.
    fn list_len(&self, ty: &str, key: &ObjKey, prop: &str) -> Result<usize, Error>;

    /// Inserts into a list at `index` (0 ..= len).
    fn list_insert(
        &mut self,
        ty: &str,
        key: &ObjKey,
        prop: &str,
        index: usize,
        value: Value,
    ) -> Result<(), Error>;

    /// Appends `values` to a list, as [`Store::list_insert`] at the end would one by one (loading
    /// a snapshot fills every list this way, and a store can do it in bulk). On an error, values
    /// before the one refused may have been appended.
    fn list_extend(
        &mut self,
        ty: &str,
        key: &ObjKey,
        prop: &str,
        values: Vec<Value>,
    ) -> Result<(), Error> {
        let start = self.list_len(ty, key, prop)?;
        for (i, value) in values.into_iter().enumerate() {
            self.list_insert(ty, key, prop, start + i, value)?;
        }
        Ok(())
    }

    /// Replaces the element at `index`.
    fn list_set(
        &mut self,
        ty: &str,
        key: &ObjKey,
        prop: &str,
        index: usize,
        value: Value,
    ) -> Result<(), Error>;

    /// Removes the element at `index`.
    fn list_erase(&mut self, ty: &str, key: &ObjKey, prop: &str, index: usize)
        -> Result<(), Error>;

    /// Moves the element at `from` so that it ends at `to` (both valid indices).
    fn list_move(
        &mut self,
        ty: &str,
        key: &ObjKey,
        prop: &str,
        from: usize,
        to: usize,
    ) -> Result<(), Error>;

    /// Removes every element of a list.
    fn list_clear(&mut self, ty: &str, key: &ObjKey, prop: &str) -> Result<(), Error>;

    /// Checks that `value` fits property `prop` of `ty` (a scalar property, or one element of a
    /// list property): see [`Schema::check_value`], and for a link that its target exists
    /// unless `dead_link` (the target was deleted concurrently and the link is kept dead).
    fn check_value(
        &self,
        ty: &str,
        prop: &str,
        value: &Value,
        dead_link: bool,
    ) -> Result<(), Error> {
        let def = self.schema().get(ty)?;
        let target = self
            .schema()
            .check_value(def, prop, def.property(prop)?, value)?;
        match target {
            Some((target, key)) if !dead_link && !self.exists(target, key)? => {
                Err(Error::missing(target, key))
            }
            _ => Ok(()),
        }
    }

    /// The keys of every object of a type.
    fn objects(&self, ty: &str) -> Result<Vec<ObjKey>, Error>;

    /// Starts an atomic unit (units nest).
    fn begin(&mut self);

    /// Ends the innermost unit, keeping its changes.
    fn commit(&mut self);

    /// Ends the innermost unit, undoing every change made in it.
    fn rollback(&mut self);
}
