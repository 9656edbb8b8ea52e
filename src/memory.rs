//! `MemoryStore`: an in-memory [`Store`].
//!
//! Objects live in one hash-indexed table per type, each object as a vector of property slots in
//! schema order. Atomic units are implemented with an undo log: while a unit is open every change
//! records how to reverse itself, and rolling back replays those records backwards, so a failed
//! changeset leaves the store exactly as it was (object order included).

use crate::error::Error;
use crate::schema::{Name, ObjectType, PropType, Property, Schema};
use crate::store::{Store, Unlinked};
use crate::value::{ObjKey, Value};
use hashbrown::HashMap;
use indexmap::IndexMap;

#[derive(Clone, Debug, PartialEq)]
enum Slot {
    Value(Value),
    List(Vec<Value>),
}

impl Slot {
    fn default_for(ty: &PropType) -> Slot {
        if ty.list {
            Slot::List(Vec::new())
        } else {
            Slot::Value(ty.default_value())
        }
    }
}

type Objects = IndexMap<ObjKey, Vec<Slot>, hashbrown::DefaultHashBuilder>;

#[derive(Clone, Debug, Default)]
struct Table {
    objects: Objects,
}

#[derive(Debug)]
enum Undo {
    AddedType(Name),
    AddedProps {
        ty: Name,
        prev_len: usize,
    },
    Created {
        ty: Name,
        key: ObjKey,
    },
    Deleted {
        ty: Name,
        key: ObjKey,
        slots: Vec<Slot>,
        index: usize,
    },
    Set {
        ty: Name,
        key: ObjKey,
        slot: usize,
        old: Value,
    },
    ListInserted {
        ty: Name,
        key: ObjKey,
        slot: usize,
        index: usize,
    },
    ListSet {
        ty: Name,
        key: ObjKey,
        slot: usize,
        index: usize,
        old: Value,
    },
    ListErased {
        ty: Name,
        key: ObjKey,
        slot: usize,
        index: usize,
        old: Value,
    },
    ListMoved {
        ty: Name,
        key: ObjKey,
        slot: usize,
        from: usize,
        to: usize,
    },
    ListCleared {
        ty: Name,
        key: ObjKey,
        slot: usize,
        old: Vec<Value>,
    },
}

/// An in-memory store. See the module documentation.
#[derive(Debug, Default)]
pub struct MemoryStore {
    schema: Schema,
    tables: HashMap<Name, Table>,
    undo: Vec<Undo>,
    marks: Vec<usize>,
}

impl Clone for MemoryStore {
    /// Clones the state; an open atomic unit is not carried over.
    fn clone(&self) -> Self {
        MemoryStore {
            schema: self.schema.clone(),
            tables: self.tables.clone(),
            undo: Vec::new(),
            marks: Vec::new(),
        }
    }
}

fn missing(ty: &str, key: &ObjKey) -> Error {
    Error::MissingObject {
        ty: ty.to_string(),
        key: key.to_string(),
    }
}

fn index_error(ty: &str, key: &ObjKey, prop: &str, index: usize, len: usize) -> Error {
    Error::IndexOutOfRange {
        ty: ty.to_string(),
        key: key.to_string(),
        prop: prop.to_string(),
        index: index as u64,
        len: len as u64,
    }
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

    /// Resolves a property to (its slot index, its type), checking the type and property exist.
    fn resolve(&self, ty: &str, prop: &str) -> Result<(usize, &ObjectType, &PropType), Error> {
        let def = self.schema.get(ty)?;
        let (slot, _, pt) =
            def.properties
                .get_full(prop)
                .ok_or_else(|| Error::UnknownProperty {
                    ty: ty.to_string(),
                    prop: prop.to_string(),
                })?;
        Ok((slot, def, pt))
    }

    fn slots(&self, ty: &str, key: &ObjKey) -> Result<&Vec<Slot>, Error> {
        self.tables
            .get(ty)
            .ok_or_else(|| Error::UnknownType { ty: ty.to_string() })?
            .objects
            .get(key)
            .ok_or_else(|| missing(ty, key))
    }

    fn slots_mut(&mut self, ty: &str, key: &ObjKey) -> Result<&mut Vec<Slot>, Error> {
        self.tables
            .get_mut(ty)
            .ok_or_else(|| Error::UnknownType { ty: ty.to_string() })?
            .objects
            .get_mut(key)
            .ok_or_else(|| missing(ty, key))
    }

    /// Checks a value for a scalar property or list element, including that a link's target exists.
    fn check_value(&self, ty: &str, prop: &str, pt: &PropType, value: &Value) -> Result<(), Error> {
        pt.check(ty, prop, value)?;
        if let (Some(target), Value::Link(k)) = (pt.link_target(), value) {
            let def = self.schema.get(target)?;
            def.check_key(k)?;
            if !self.exists(target, k)? {
                return Err(missing(target, k));
            }
        }
        Ok(())
    }

    fn scalar_prop(&self, ty: &str, prop: &str) -> Result<(usize, PropType), Error> {
        let (slot, def, pt) = self.resolve(ty, prop)?;
        if pt.list {
            return Err(Error::IsAList {
                ty: ty.to_string(),
                prop: prop.to_string(),
            });
        }
        if def.primary_key.as_deref() == Some(prop) {
            return Err(Error::PrimaryKeyImmutable {
                ty: ty.to_string(),
                prop: prop.to_string(),
            });
        }
        Ok((slot, pt.clone()))
    }

    fn list_prop(&self, ty: &str, prop: &str) -> Result<(usize, PropType), Error> {
        let (slot, _, pt) = self.resolve(ty, prop)?;
        if !pt.list {
            return Err(Error::NotAList {
                ty: ty.to_string(),
                prop: prop.to_string(),
            });
        }
        Ok((slot, pt.clone()))
    }

    fn list_mut(&mut self, ty: &str, key: &ObjKey, slot: usize) -> Result<&mut Vec<Value>, Error> {
        match self.slots_mut(ty, key)?.get_mut(slot) {
            Some(Slot::List(l)) => Ok(l),
            _ => Err(missing(ty, key)),
        }
    }

    fn list_ref(&self, ty: &str, key: &ObjKey, prop: &str) -> Result<&Vec<Value>, Error> {
        let (slot, _) = self.list_prop(ty, prop)?;
        match self.slots(ty, key)?.get(slot) {
            Some(Slot::List(l)) => Ok(l),
            _ => Err(missing(ty, key)),
        }
    }

    fn apply_undo(&mut self, u: Undo) {
        match u {
            Undo::AddedType(ty) => {
                self.tables.remove(&ty);
                self.schema.pop_type(&ty);
            }
            Undo::AddedProps { ty, prev_len } => {
                self.schema.truncate_properties(&ty, prev_len);
                if let Some(t) = self.tables.get_mut(&ty) {
                    for slots in t.objects.values_mut() {
                        slots.truncate(prev_len);
                    }
                }
            }
            Undo::Created { ty, key } => {
                if let Some(t) = self.tables.get_mut(&ty) {
                    t.objects.swap_remove(&key);
                }
            }
            Undo::Deleted {
                ty,
                key,
                slots,
                index,
            } => {
                if let Some(t) = self.tables.get_mut(&ty) {
                    let (last, _) = t.objects.insert_full(key, slots);
                    t.objects.swap_indices(index, last);
                }
            }
            Undo::Set { ty, key, slot, old } => {
                if let Ok(slots) = self.slots_mut(&ty, &key) {
                    slots[slot] = Slot::Value(old);
                }
            }
            Undo::ListInserted {
                ty,
                key,
                slot,
                index,
            } => {
                if let Ok(l) = self.list_mut(&ty, &key, slot) {
                    l.remove(index);
                }
            }
            Undo::ListSet {
                ty,
                key,
                slot,
                index,
                old,
            } => {
                if let Ok(l) = self.list_mut(&ty, &key, slot) {
                    l[index] = old;
                }
            }
            Undo::ListErased {
                ty,
                key,
                slot,
                index,
                old,
            } => {
                if let Ok(l) = self.list_mut(&ty, &key, slot) {
                    l.insert(index, old);
                }
            }
            Undo::ListMoved {
                ty,
                key,
                slot,
                from,
                to,
            } => {
                if let Ok(l) = self.list_mut(&ty, &key, slot) {
                    let v = l.remove(to);
                    l.insert(from, v);
                }
            }
            Undo::ListCleared { ty, key, slot, old } => {
                if let Ok(l) = self.list_mut(&ty, &key, slot) {
                    *l = old;
                }
            }
        }
    }

    fn grow(&mut self, ty: &Name, new: &[Property], prev_len: usize, created: bool) {
        if created {
            self.tables.insert(ty.clone(), Table::default());
            self.log(Undo::AddedType(ty.clone()));
        } else {
            self.log(Undo::AddedProps {
                ty: ty.clone(),
                prev_len,
            });
        }
        if let Some(t) = self.tables.get_mut(ty) {
            for slots in t.objects.values_mut() {
                slots.extend(new.iter().map(|p| Slot::default_for(&p.ty)));
            }
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
        if new.is_empty() {
            return Ok(false);
        }
        self.grow(&def.name, &new, prev_len, created);
        Ok(true)
    }

    fn add_properties(&mut self, ty: &str, props: &[Property]) -> Result<bool, Error> {
        let prev_len = self.schema.get(ty)?.properties.len();
        let new = self.schema.add_properties(ty, props)?;
        if new.is_empty() {
            return Ok(false);
        }
        let name = self.schema.get(ty)?.name.clone();
        self.grow(&name, &new, prev_len, false);
        Ok(true)
    }

    fn exists(&self, ty: &str, key: &ObjKey) -> Result<bool, Error> {
        Ok(self
            .tables
            .get(ty)
            .ok_or_else(|| Error::UnknownType { ty: ty.to_string() })?
            .objects
            .contains_key(key))
    }

    fn create(&mut self, ty: &str, key: &ObjKey) -> Result<bool, Error> {
        let def = self.schema.get(ty)?;
        def.check_key(key)?;
        let pk = def.primary_key.clone();
        let slots: Vec<Slot> = def
            .properties
            .iter()
            .map(|(name, pt)| {
                if pk.as_ref() == Some(name) {
                    Slot::Value(def.key_value(key))
                } else {
                    Slot::default_for(pt)
                }
            })
            .collect();
        let name = def.name.clone();
        let table = self
            .tables
            .get_mut(ty)
            .ok_or_else(|| Error::UnknownType { ty: ty.to_string() })?;
        if table.objects.contains_key(key) {
            return Ok(false);
        }
        table.objects.insert(key.clone(), slots);
        self.log(Undo::Created {
            ty: name,
            key: key.clone(),
        });
        Ok(true)
    }

    fn delete(&mut self, ty: &str, key: &ObjKey) -> Result<Vec<Unlinked>, Error> {
        let name = self.schema.get(ty)?.name.clone();
        if !self.exists(ty, key)? {
            return Err(missing(ty, key));
        }
        let target = Value::Link(key.clone());
        // Every (type, slot, property) that can hold a link to the deleted object's type.
        let linking: Vec<(Name, usize, Name, bool)> = self
            .schema
            .types()
            .flat_map(|t| {
                t.properties
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, pt))| pt.link_target().is_some_and(|tg| **tg == *ty))
                    .map(|(slot, (p, pt))| (t.name.clone(), slot, p.clone(), pt.list))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut unlinked = Vec::new();
        let mut undo = Vec::new();
        for (lty, slot, prop, is_list) in linking {
            let Some(table) = self.tables.get_mut(&lty) else {
                continue;
            };
            for (okey, slots) in table.objects.iter_mut() {
                if *lty == *ty && okey == key {
                    continue;
                }
                match &mut slots[slot] {
                    Slot::Value(v) if !is_list && *v == target => {
                        let old = std::mem::replace(v, Value::Null);
                        undo.push(Undo::Set {
                            ty: lty.clone(),
                            key: okey.clone(),
                            slot,
                            old,
                        });
                        unlinked.push(Unlinked::Field {
                            ty: lty.clone(),
                            key: okey.clone(),
                            prop: prop.clone(),
                        });
                    }
                    Slot::List(l) if is_list => {
                        for index in (0..l.len()).rev() {
                            if l[index] == target {
                                let old = l.remove(index);
                                undo.push(Undo::ListErased {
                                    ty: lty.clone(),
                                    key: okey.clone(),
                                    slot,
                                    index,
                                    old,
                                });
                                unlinked.push(Unlinked::ListEntry {
                                    ty: lty.clone(),
                                    key: okey.clone(),
                                    prop: prop.clone(),
                                    index,
                                });
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let table = self
            .tables
            .get_mut(ty)
            .ok_or_else(|| Error::UnknownType { ty: ty.to_string() })?;
        let (index, k, slots) = table
            .objects
            .swap_remove_full(key)
            .ok_or_else(|| missing(ty, key))?;
        if self.logging() {
            self.undo.extend(undo);
            self.undo.push(Undo::Deleted {
                ty: name,
                key: k,
                slots,
                index,
            });
        }
        Ok(unlinked)
    }

    fn get(&self, ty: &str, key: &ObjKey, prop: &str) -> Result<Value, Error> {
        let (slot, pt) = {
            let (slot, _, pt) = self.resolve(ty, prop)?;
            (slot, pt.list)
        };
        if pt {
            return Err(Error::IsAList {
                ty: ty.to_string(),
                prop: prop.to_string(),
            });
        }
        match self.slots(ty, key)?.get(slot) {
            Some(Slot::Value(v)) => Ok(v.clone()),
            _ => Err(missing(ty, key)),
        }
    }

    fn set(&mut self, ty: &str, key: &ObjKey, prop: &str, value: Value) -> Result<(), Error> {
        let (slot, pt) = self.scalar_prop(ty, prop)?;
        self.check_value(ty, prop, &pt, &value)?;
        let name = self.schema.get(ty)?.name.clone();
        let slots = self.slots_mut(ty, key)?;
        let old = std::mem::replace(&mut slots[slot], Slot::Value(value));
        if let Slot::Value(old) = old {
            self.log(Undo::Set {
                ty: name,
                key: key.clone(),
                slot,
                old,
            });
        }
        Ok(())
    }

    fn add_int(&mut self, ty: &str, key: &ObjKey, prop: &str, delta: i64) -> Result<(), Error> {
        let (slot, pt) = self.scalar_prop(ty, prop)?;
        if pt.kind() != crate::value::ScalarKind::Int {
            return Err(Error::NotAnInt {
                ty: ty.to_string(),
                prop: prop.to_string(),
            });
        }
        let name = self.schema.get(ty)?.name.clone();
        let slots = self.slots_mut(ty, key)?;
        if let Slot::Value(Value::Int(v)) = &mut slots[slot] {
            let old = *v;
            *v = v.wrapping_add(delta);
            self.log(Undo::Set {
                ty: name,
                key: key.clone(),
                slot,
                old: Value::Int(old),
            });
        }
        Ok(())
    }

    fn list(&self, ty: &str, key: &ObjKey, prop: &str) -> Result<Vec<Value>, Error> {
        self.list_ref(ty, key, prop).cloned()
    }

    fn list_len(&self, ty: &str, key: &ObjKey, prop: &str) -> Result<usize, Error> {
        self.list_ref(ty, key, prop).map(Vec::len)
    }

    fn list_insert(
        &mut self,
        ty: &str,
        key: &ObjKey,
        prop: &str,
        index: usize,
        value: Value,
    ) -> Result<(), Error> {
        let (slot, pt) = self.list_prop(ty, prop)?;
        self.check_value(ty, prop, &pt, &value)?;
        let name = self.schema.get(ty)?.name.clone();
        let l = self.list_mut(ty, key, slot)?;
        if index > l.len() {
            return Err(index_error(ty, key, prop, index, l.len()));
        }
        l.insert(index, value);
        self.log(Undo::ListInserted {
            ty: name,
            key: key.clone(),
            slot,
            index,
        });
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
        let (slot, pt) = self.list_prop(ty, prop)?;
        self.check_value(ty, prop, &pt, &value)?;
        let name = self.schema.get(ty)?.name.clone();
        let l = self.list_mut(ty, key, slot)?;
        let len = l.len();
        let cell = l
            .get_mut(index)
            .ok_or_else(|| index_error(ty, key, prop, index, len))?;
        let old = std::mem::replace(cell, value);
        self.log(Undo::ListSet {
            ty: name,
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
        let (slot, _) = self.list_prop(ty, prop)?;
        let name = self.schema.get(ty)?.name.clone();
        let l = self.list_mut(ty, key, slot)?;
        if index >= l.len() {
            return Err(index_error(ty, key, prop, index, l.len()));
        }
        let old = l.remove(index);
        self.log(Undo::ListErased {
            ty: name,
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
        let (slot, _) = self.list_prop(ty, prop)?;
        let name = self.schema.get(ty)?.name.clone();
        let l = self.list_mut(ty, key, slot)?;
        let len = l.len();
        if from >= len || to >= len {
            return Err(index_error(ty, key, prop, from.max(to), len));
        }
        let v = l.remove(from);
        l.insert(to, v);
        self.log(Undo::ListMoved {
            ty: name,
            key: key.clone(),
            slot,
            from,
            to,
        });
        Ok(())
    }

    fn list_clear(&mut self, ty: &str, key: &ObjKey, prop: &str) -> Result<(), Error> {
        let (slot, _) = self.list_prop(ty, prop)?;
        let name = self.schema.get(ty)?.name.clone();
        let l = self.list_mut(ty, key, slot)?;
        let old = std::mem::take(l);
        self.log(Undo::ListCleared {
            ty: name,
            key: key.clone(),
            slot,
            old,
        });
        Ok(())
    }

    fn objects(&self, ty: &str) -> Result<Vec<ObjKey>, Error> {
        Ok(self
            .tables
            .get(ty)
            .ok_or_else(|| Error::UnknownType { ty: ty.to_string() })?
            .objects
            .keys()
            .cloned()
            .collect())
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
