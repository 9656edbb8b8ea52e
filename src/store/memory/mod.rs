//! `MemoryStore`: an in-memory [`Store`].
//!
//! Objects live in one table per type: the objects' keys in a hash-indexed set, whose positions
//! are the rows of one column per property (schema order). Atomic units are implemented with an
//! undo log: while a unit is open every change records how to reverse itself, and rolling back
//! replays those records backwards, so a failed changeset leaves the store exactly as it was
//! (object order included).

mod chunked;
mod undo;

use super::{Store, Unlinked};
use crate::model::{
    Error, Hint, Name, ObjKey, ObjRef, ObjectType, PropRef, PropType, Property, ScalarKind, Schema,
    Value,
};
use chunked::Chunked;
use indexmap::IndexSet;
use undo::Undo;

#[derive(Clone, Debug, PartialEq)]
enum Slot {
    Value(Value),
    /// Boxed so that a slot is no larger than a value: most slots hold values, and a column is
    /// a vector of slots.
    List(Box<Chunked>),
}

impl Slot {
    fn default_for(ty: &PropType) -> Slot {
        if ty.list {
            Slot::List(Box::default())
        } else {
            Slot::Value(ty.default_value())
        }
    }
}

/// The objects of one type, by columns: an object's row is its key's position in `keys`, and
/// `columns` holds one slot per row for each property, in schema order. A key costs its hash
/// entry and nothing more, so growing a large table moves 32 bytes per object rather than the
/// object's every slot (with the slots held in the key's entry, an entry was 176 bytes, and
/// moving and rehashing entries was a quarter of the time to integrate many new objects).
/// Deleting swaps the last row into the freed one, in the keys and in every column alike.
#[derive(Clone, Debug, Default)]
struct Table {
    keys: IndexSet<ObjKey, hashbrown::DefaultHashBuilder>,
    columns: Vec<Vec<Slot>>,
}

impl Table {
    /// The object's slot for the property at `slot`, if both exist.
    fn cell(&self, key: &ObjKey, slot: usize) -> Option<&Slot> {
        self.columns.get(slot)?.get(self.keys.get_index_of(key)?)
    }

    fn cell_mut(&mut self, key: &ObjKey, slot: usize) -> Option<&mut Slot> {
        let row = self.keys.get_index_of(key)?;
        self.columns.get_mut(slot)?.get_mut(row)
    }

    /// Removes the object at `row`, moving the last one there; returns its slots.
    fn swap_remove_row(&mut self, row: usize) -> Vec<Slot> {
        (self.columns.iter_mut())
            .map(|column| column.swap_remove(row))
            .collect()
    }
}

/// An in-memory store. See the module documentation.
///
/// It is the default store of a [`Replica`](crate::Replica). Used on its own it has no merge
/// metadata and records nothing for syncing, which suits tests of a store adapter: the same calls
/// must give the same results on any [`Store`].
///
/// ```
/// use objsync::{MemoryStore, ObjKey, ObjectType, PropType, Property, Store};
///
/// let mut store = MemoryStore::new();
/// let name = Property::new("name", PropType::parse("string")?);
/// store.add_type(&ObjectType::new("Tag", Some("name"), [name])?)?;
/// let red = ObjKey::from("red");
/// store.begin();
/// assert!(store.create("Tag", &red)?);
/// assert!(!store.create("Tag", &red)?);
/// store.rollback();
/// assert!(!store.exists("Tag", &red)?);
/// # Ok::<(), objsync::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    schema: Schema,
    /// One table per type, in schema order.
    tables: Vec<Table>,
    undo: Vec<Undo>,
    marks: Vec<usize>,
    /// The slot of the last property resolved, whatever its type.
    prop_hint: Hint,
}

impl Clone for MemoryStore {
    /// Clones the state; an open atomic unit is not carried over.
    fn clone(&self) -> Self {
        MemoryStore {
            schema: self.schema.clone(),
            tables: self.tables.clone(),
            undo: Vec::new(),
            marks: Vec::new(),
            prop_hint: Hint::default(),
        }
    }
}

fn index_error(ty: &str, key: &ObjKey, prop: &str, index: usize, len: usize) -> Error {
    Error::out_of_range(PropRef::new(ObjRef::new(ty, key.clone()), prop), index, len)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn logging(&self) -> bool {
        !self.marks.is_empty()
    }

    fn log(&mut self, u: Undo) {
        if self.logging() {
            self.undo.push(u);
        }
    }

    /// Resolves a property to (its type's position, its slot, its type), checking the type and
    /// property exist.
    fn resolve(
        &self,
        ty: &str,
        prop: &str,
    ) -> Result<(usize, usize, &ObjectType, &PropType), Error> {
        let (t, def) = self.schema.lookup(ty)?;
        let (slot, pt) = (self.prop_hint)
            .find(&def.properties, prop)
            .ok_or_else(|| Error::UnknownProperty {
                ty: def.name.clone(),
                prop: prop.into(),
            })?;
        Ok((t, slot, def, pt))
    }

    fn table(&self, ty: &str) -> Result<&Table, Error> {
        let (t, _) = self.schema.lookup(ty)?;
        Ok(&self.tables[t])
    }

    /// An object's slot for the property at `slot` of the type at `t`.
    fn slot(&self, t: usize, ty: &str, key: &ObjKey, slot: usize) -> Result<&Slot, Error> {
        (self.tables[t].cell(key, slot)).ok_or_else(|| Error::missing(ty, key))
    }

    fn slot_mut(
        &mut self,
        t: usize,
        ty: &str,
        key: &ObjKey,
        slot: usize,
    ) -> Result<&mut Slot, Error> {
        (self.tables[t].cell_mut(key, slot)).ok_or_else(|| Error::missing(ty, key))
    }

    /// Checks a value for a property whose type and definition are resolved already (see
    /// [`Store::check_value`]).
    fn check_resolved(
        &self,
        def: &ObjectType,
        prop: &str,
        pt: &PropType,
        value: &Value,
    ) -> Result<(), Error> {
        if let Some((target, k)) = self.schema.check_value(def, prop, pt, value)? {
            if !self.exists(target, k)? {
                return Err(Error::missing(target, k));
            }
        }
        Ok(())
    }

    /// Resolves a scalar property that may be written: (type position, slot, type, property type).
    fn scalar_prop(
        &self,
        ty: &str,
        prop: &str,
    ) -> Result<(usize, usize, &ObjectType, &PropType), Error> {
        let (t, slot, def, pt) = self.resolve(ty, prop)?;
        if pt.list {
            return Err(Error::IsAList {
                ty: ty.into(),
                prop: prop.into(),
            });
        }
        if def.primary_key.as_deref() == Some(prop) {
            return Err(Error::PrimaryKeyImmutable {
                ty: ty.into(),
                prop: prop.into(),
            });
        }
        Ok((t, slot, def, pt))
    }

    /// Resolves a list property: (type position, slot, type, property type).
    fn list_prop(
        &self,
        ty: &str,
        prop: &str,
    ) -> Result<(usize, usize, &ObjectType, &PropType), Error> {
        let (t, slot, def, pt) = self.resolve(ty, prop)?;
        pt.expect_list(ty, prop)?;
        Ok((t, slot, def, pt))
    }

    fn list_mut(
        &mut self,
        t: usize,
        ty: &str,
        key: &ObjKey,
        slot: usize,
    ) -> Result<&mut Chunked, Error> {
        match self.slot_mut(t, ty, key, slot)? {
            Slot::List(l) => Ok(l),
            Slot::Value(_) => Err(Error::missing(ty, key)),
        }
    }

    fn list_ref(&self, ty: &str, key: &ObjKey, prop: &str) -> Result<&Chunked, Error> {
        let (t, slot, _, _) = self.list_prop(ty, prop)?;
        match self.slot(t, ty, key, slot)? {
            Slot::List(l) => Ok(l),
            Slot::Value(_) => Err(Error::missing(ty, key)),
        }
    }

    /// Gives the type at `t` columns for the new properties, a default slot for each of its
    /// objects (and the type a table if it is new).
    fn grow(&mut self, t: usize, new: &[Property], prev_len: usize, created: bool) {
        if created {
            self.tables.push(Table::default());
            self.log(Undo::AddedType);
        } else {
            self.log(Undo::AddedProps { t, prev_len });
        }
        if let Some(table) = self.tables.get_mut(t) {
            let rows = table.keys.len();
            (table.columns).extend(
                new.iter()
                    .map(|p| (0..rows).map(|_| Slot::default_for(&p.ty)).collect()),
            );
        }
    }
}

impl Store for MemoryStore {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn add_type(&mut self, def: &ObjectType) -> Result<bool, Error> {
        let created = !self.schema.contains(&def.name);
        let prev_len = self.schema.get(&def.name).map_or(0, |t| t.properties.len());
        let new = self.schema.add_type(def)?;
        // A new type gets its table even without properties: tables follow the schema.
        if new.is_empty() && !created {
            return Ok(false);
        }
        let (t, _) = self.schema.lookup(&def.name)?;
        self.grow(t, &new, prev_len, created);
        Ok(true)
    }

    fn add_properties(&mut self, ty: &str, props: &[Property]) -> Result<bool, Error> {
        let prev_len = self.schema.get(ty)?.properties.len();
        let new = self.schema.add_properties(ty, props)?;
        if new.is_empty() {
            return Ok(false);
        }
        let (t, _) = self.schema.lookup(ty)?;
        self.grow(t, &new, prev_len, false);
        Ok(true)
    }

    fn exists(&self, ty: &str, key: &ObjKey) -> Result<bool, Error> {
        Ok(self.table(ty)?.keys.contains(key))
    }

    fn create(&mut self, ty: &str, key: &ObjKey) -> Result<bool, Error> {
        let (t, def) = self.schema.lookup(ty)?;
        def.check_key(key)?;
        let table = &mut self.tables[t];
        if !table.keys.insert(key.clone()) {
            return Ok(false);
        }
        let pk = def.primary_key.as_deref();
        for ((name, pt), column) in def.properties.iter().zip(&mut table.columns) {
            column.push(match pk == Some(&**name) {
                true => Slot::Value(def.key_value(key)),
                false => Slot::default_for(pt),
            });
        }
        self.log(Undo::Created {
            t,
            key: key.clone(),
        });
        Ok(true)
    }

    fn delete(&mut self, ty: &str, key: &ObjKey) -> Result<Vec<Unlinked>, Error> {
        let (t, _) = self.schema.lookup(ty)?;
        if !self.tables[t].keys.contains(key) {
            return Err(Error::missing(ty, key));
        }
        let target = Value::Link(key.clone());
        // Every (type position, type, slot, property) that can hold a link to the deleted
        // object's type.
        let linking: Vec<(usize, Name, usize, Name, bool)> = self
            .schema
            .types()
            .enumerate()
            .flat_map(|(lt, def)| {
                def.properties
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, pt))| pt.link_target().is_some_and(|tg| **tg == *ty))
                    .map(move |(slot, (p, pt))| (lt, def.name.clone(), slot, p.clone(), pt.list))
            })
            .collect();
        let mut unlinked = Vec::new();
        let mut undo = Vec::new();
        for (lt, lty, slot, prop, is_list) in linking {
            let Table { keys, columns } = &mut self.tables[lt];
            for (okey, cell) in keys.iter().zip(&mut columns[slot]) {
                if lt == t && okey == key {
                    continue;
                }
                match cell {
                    Slot::Value(v) if !is_list && *v == target => {
                        let old = std::mem::replace(v, Value::Null);
                        undo.push(Undo::Set {
                            t: lt,
                            key: okey.clone(),
                            slot,
                            old,
                        });
                        unlinked.push(Unlinked::Field(ObjRef::new(&lty, okey.clone()).prop(&prop)));
                    }
                    Slot::List(l) if is_list => {
                        let hits: Vec<usize> = (l.iter().enumerate())
                            .filter(|(_, v)| **v == target)
                            .map(|(i, _)| i)
                            .collect();
                        for index in hits.into_iter().rev() {
                            if let Some(old) = l.remove(index) {
                                undo.push(Undo::ListErased {
                                    t: lt,
                                    key: okey.clone(),
                                    slot,
                                    index,
                                    old,
                                });
                                unlinked.push(Unlinked::ListEntry {
                                    list: ObjRef::new(&lty, okey.clone()).prop(&prop),
                                    index,
                                });
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let table = &mut self.tables[t];
        let (index, k) = (table.keys)
            .swap_remove_full(key)
            .ok_or_else(|| Error::missing(ty, key))?;
        let slots = table.swap_remove_row(index);
        if self.logging() {
            self.undo.extend(undo);
            self.undo.push(Undo::Deleted {
                t,
                key: k,
                slots,
                index,
            });
        }
        Ok(unlinked)
    }

    fn get(&self, ty: &str, key: &ObjKey, prop: &str) -> Result<Value, Error> {
        let (t, slot, _, pt) = self.resolve(ty, prop)?;
        if pt.list {
            return Err(Error::IsAList {
                ty: ty.into(),
                prop: prop.into(),
            });
        }
        match self.slot(t, ty, key, slot)? {
            Slot::Value(v) => Ok(v.clone()),
            Slot::List(_) => Err(Error::missing(ty, key)),
        }
    }

    fn set(&mut self, ty: &str, key: &ObjKey, prop: &str, value: Value) -> Result<(), Error> {
        let (t, slot, def, pt) = self.scalar_prop(ty, prop)?;
        self.check_resolved(def, prop, pt, &value)?;
        let old = std::mem::replace(self.slot_mut(t, ty, key, slot)?, Slot::Value(value));
        if let Slot::Value(old) = old {
            self.log(Undo::Set {
                t,
                key: key.clone(),
                slot,
                old,
            });
        }
        Ok(())
    }

    fn add_int(&mut self, ty: &str, key: &ObjKey, prop: &str, delta: i64) -> Result<(), Error> {
        let (t, slot, _, pt) = self.scalar_prop(ty, prop)?;
        if pt.kind() != ScalarKind::Int {
            return Err(Error::NotAnInt {
                ty: ty.into(),
                prop: prop.into(),
            });
        }
        if let Slot::Value(Value::Int(v)) = self.slot_mut(t, ty, key, slot)? {
            let old = *v;
            *v = v.wrapping_add(delta);
            self.log(Undo::Set {
                t,
                key: key.clone(),
                slot,
                old: Value::Int(old),
            });
        }
        Ok(())
    }

    fn list(&self, ty: &str, key: &ObjKey, prop: &str) -> Result<Vec<Value>, Error> {
        self.list_ref(ty, key, prop).map(Chunked::to_vec)
    }

    fn list_len(&self, ty: &str, key: &ObjKey, prop: &str) -> Result<usize, Error> {
        self.list_ref(ty, key, prop).map(Chunked::len)
    }

    fn list_insert(
        &mut self,
        ty: &str,
        key: &ObjKey,
        prop: &str,
        index: usize,
        value: Value,
    ) -> Result<(), Error> {
        let (t, slot, def, pt) = self.list_prop(ty, prop)?;
        self.check_resolved(def, prop, pt, &value)?;
        let l = self.list_mut(t, ty, key, slot)?;
        if index > l.len() {
            return Err(index_error(ty, key, prop, index, l.len()));
        }
        l.insert(index, value);
        self.log(Undo::ListInserted {
            t,
            key: key.clone(),
            slot,
            index,
        });
        Ok(())
    }

    /// Checks every value, then appends them all at once (nothing is appended if one is
    /// refused).
    fn list_extend(
        &mut self,
        ty: &str,
        key: &ObjKey,
        prop: &str,
        values: Vec<Value>,
    ) -> Result<(), Error> {
        let (t, slot, def, pt) = self.list_prop(ty, prop)?;
        for value in &values {
            self.check_resolved(def, prop, pt, value)?;
        }
        let l = self.list_mut(t, ty, key, slot)?;
        let (start, n) = (l.len(), values.len());
        l.extend(values);
        if self.logging() {
            for index in start..start + n {
                self.undo.push(Undo::ListInserted {
                    t,
                    key: key.clone(),
                    slot,
                    index,
                });
            }
        }
        Ok(())
    }

    fn list_set(
        &mut self,
        ty: &str,
        key: &ObjKey,
        prop: &str,
        index: usize,
        value: Value,
    ) -> Result<(), Error> {
        let (t, slot, def, pt) = self.list_prop(ty, prop)?;
        self.check_resolved(def, prop, pt, &value)?;
        let l = self.list_mut(t, ty, key, slot)?;
        let len = l.len();
        let cell = l
            .get_mut(index)
            .ok_or_else(|| index_error(ty, key, prop, index, len))?;
        let old = std::mem::replace(cell, value);
        self.log(Undo::ListSet {
            t,
            key: key.clone(),
            slot,
            index,
            old,
        });
        Ok(())
    }

    fn list_erase(
        &mut self,
        ty: &str,
        key: &ObjKey,
        prop: &str,
        index: usize,
    ) -> Result<(), Error> {
        let (t, slot, _, _) = self.list_prop(ty, prop)?;
        let l = self.list_mut(t, ty, key, slot)?;
        let len = l.len();
        let old = l
            .remove(index)
            .ok_or_else(|| index_error(ty, key, prop, index, len))?;
        self.log(Undo::ListErased {
            t,
            key: key.clone(),
            slot,
            index,
            old,
        });
        Ok(())
    }

    fn list_move(
        &mut self,
        ty: &str,
        key: &ObjKey,
        prop: &str,
        from: usize,
        to: usize,
    ) -> Result<(), Error> {
        let (t, slot, _, _) = self.list_prop(ty, prop)?;
        let l = self.list_mut(t, ty, key, slot)?;
        let len = l.len();
        if from >= len || to >= len {
            return Err(index_error(ty, key, prop, from.max(to), len));
        }
        if let Some(v) = l.remove(from) {
            l.insert(to, v);
        }
        self.log(Undo::ListMoved {
            t,
            key: key.clone(),
            slot,
            from,
            to,
        });
        Ok(())
    }

    fn list_clear(&mut self, ty: &str, key: &ObjKey, prop: &str) -> Result<(), Error> {
        let (t, slot, _, _) = self.list_prop(ty, prop)?;
        let l = self.list_mut(t, ty, key, slot)?;
        let old = std::mem::take(l);
        self.log(Undo::ListCleared {
            t,
            key: key.clone(),
            slot,
            old,
        });
        Ok(())
    }

    fn objects(&self, ty: &str) -> Result<Vec<ObjKey>, Error> {
        Ok(self.table(ty)?.keys.iter().cloned().collect())
    }

    fn begin(&mut self) {
        self.marks.push(self.undo.len());
    }

    fn commit(&mut self) {
        self.marks.pop();
        if self.marks.is_empty() {
            self.undo.clear();
        }
    }

    fn rollback(&mut self) {
        let Some(mark) = self.marks.pop() else {
            return;
        };
        while self.undo.len() > mark {
            if let Some(u) = self.undo.pop() {
                self.apply_undo(u);
            }
        }
    }
}
