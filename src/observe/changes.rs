//! [`Changes`]: what changed in the observed part of a replica since the changes were last
//! taken, and the accumulator that folds the replica's effects into it (`Pending`).
//!
//! Effects are folded per object: what matters is whether the object existed when the changes
//! were last taken, whether it exists now, and whether it was deleted in between (then it is
//! another object under the same key, reported as deleted and inserted). Only an object that
//! was there all along is reported as modified, with the properties written and, for its
//! lists, a [`ListTracker`] each.

use super::event::Event;
use super::list::{ListChanges, ListTracker};
use crate::model::{Name, ObjKey, ObjRef};
use hashbrown::HashMap;
use indexmap::IndexMap;
use serde::Serialize;
use std::collections::BTreeMap;

/// What changed in the observed types and objects of a replica: the effects of local
/// transactions and of integrated downloads since the changes were last taken
/// ([`Replica::take_changes`](crate::Replica::take_changes)).
///
/// Only what is visible is reported: an instruction that lost a conflict in the merge (an
/// overwritten set, a write to an object deleted concurrently, an insert whose list was
/// cleared) changes nothing and does not appear. An object created and deleted again between
/// two takes does not appear either.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Changes {
    /// Per type with changes, by name.
    pub types: BTreeMap<Name, TypeChanges>,
}

impl Changes {
    /// Whether nothing observed changed.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The changes of one type, if it has any.
    pub fn of(&self, ty: &str) -> Option<&TypeChanges> {
        self.types.get(ty)
    }
}

/// What changed in one type. Keys are listed in key order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TypeChanges {
    /// The type was created.
    pub created: bool,
    /// Properties the type gained (every property, if it was created); the objects already
    /// there hold each new property's default.
    pub added_properties: Vec<Name>,
    /// Objects that are there now and were not before (or were deleted and created again).
    pub inserted: Vec<ObjKey>,
    /// Objects that were there before and are not now (or were deleted and created again).
    pub deleted: Vec<ObjKey>,
    /// Objects that were there before and still are, with what changed in them.
    pub modified: Vec<ObjectChanges>,
}

impl TypeChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.created
            && self.added_properties.is_empty()
            && self.inserted.is_empty()
            && self.deleted.is_empty()
            && self.modified.is_empty()
    }

    /// The changes of a modified object.
    pub fn object(&self, key: &ObjKey) -> Option<&ObjectChanges> {
        let i = self.modified.binary_search_by(|o| o.key.cmp(key)).ok()?;
        self.modified.get(i)
    }
}

/// What changed in one object that was there before and still is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ObjectChanges {
    /// The object's key.
    pub key: ObjKey,
    /// The properties that changed, in the order they first changed: scalar properties that
    /// were written (to whatever value; a link nulled because its target was deleted counts)
    /// and lists whose elements changed.
    pub properties: Vec<Name>,
    /// For each list among `properties`, how its elements changed.
    pub lists: BTreeMap<Name, ListChanges>,
}

impl ObjectChanges {
    /// How the list `prop` changed, if it did.
    pub fn list(&self, prop: &str) -> Option<&ListChanges> {
        self.lists.get(prop)
    }
}

/// One object's effects since the changes were last taken.
#[derive(Debug)]
struct PendingObject {
    /// It was there when the changes were last taken.
    existed: bool,
    /// It is there now.
    exists: bool,
    /// It was deleted at some point (so what is there now, if anything, is a new object).
    deleted: bool,
    properties: Vec<Name>,
    lists: IndexMap<Name, ListTracker>,
}

#[derive(Debug, Default)]
struct PendingType {
    created: bool,
    added: Vec<Name>,
    objects: IndexMap<ObjKey, PendingObject>,
}

/// The effects folded so far. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    types: HashMap<Name, PendingType>,
}

impl Pending {
    /// The record of `obj`, started as existing (or not) before its first effect.
    fn object(&mut self, obj: ObjRef, existed: bool) -> &mut PendingObject {
        let ty = self.types.entry(obj.ty).or_default();
        ty.objects.entry(obj.key).or_insert_with(|| PendingObject {
            existed,
            exists: existed,
            deleted: false,
            properties: Vec::new(),
            lists: IndexMap::new(),
        })
    }

    /// The record of `obj` if it is still the object that was there before (its first effect
    /// being a write, it was), with `prop` noted as changed.
    fn changed(&mut self, obj: ObjRef, prop: &Name) -> Option<&mut PendingObject> {
        let o = self.object(obj, true);
        if !o.existed || o.deleted {
            return None;
        }
        if !o.properties.contains(prop) {
            o.properties.push(prop.clone());
        }
        Some(o)
    }

    /// The tracker of list `prop` of `obj`, if `obj` is still the object that was there.
    fn list(&mut self, obj: ObjRef, prop: Name) -> Option<&mut ListTracker> {
        let o = self.changed(obj, &prop)?;
        Some(o.lists.entry(prop).or_default())
    }

    /// Folds one effect in.
    pub(crate) fn fold(&mut self, event: Event) {
        match event {
            Event::Schema {
                ty,
                created,
                properties,
                ..
            } => {
                let t = self.types.entry(ty).or_default();
                t.created |= created;
                t.added.extend(properties.into_iter().map(|p| p.name));
            }
            Event::Created { obj, .. } => self.object(obj, false).exists = true,
            Event::Deleted { obj } => {
                let o = self.object(obj, true);
                o.exists = false;
                o.deleted = true;
                o.properties.clear();
                o.lists.clear();
            }
            Event::Set { obj, prop, .. } => {
                self.changed(obj, &prop);
            }
            Event::ListInserted {
                obj, prop, index, ..
            } => {
                if let Some(t) = self.list(obj, prop) {
                    t.insert(index);
                }
            }
            Event::ListSet {
                obj, prop, index, ..
            } => {
                if let Some(t) = self.list(obj, prop) {
                    t.modify(index);
                }
            }
            Event::ListErased { obj, prop, index } => {
                if let Some(t) = self.list(obj, prop) {
                    t.erase(index);
                }
            }
            Event::ListMoved {
                obj,
                prop,
                from,
                to,
            } => {
                if let Some(t) = self.list(obj, prop) {
                    t.move_to(from, to);
                }
            }
            Event::ListCleared { obj, prop, len } => {
                if let Some(t) = self.list(obj, prop) {
                    t.clear(len);
                }
            }
        }
    }

    /// The changes folded so far; starts afresh.
    pub(crate) fn take(&mut self) -> Changes {
        let mut changes = Changes::default();
        for (name, ty) in self.types.drain() {
            let mut out = TypeChanges {
                created: ty.created,
                added_properties: ty.added,
                ..TypeChanges::default()
            };
            for (key, o) in ty.objects {
                match (o.existed, o.exists, o.deleted) {
                    (false, true, _) => out.inserted.push(key),
                    (true, false, _) => out.deleted.push(key),
                    (true, true, true) => {
                        out.deleted.push(key.clone());
                        out.inserted.push(key);
                    }
                    (true, true, false) => {
                        if let Some(m) = modified(key, o.properties, o.lists) {
                            out.modified.push(m);
                        }
                    }
                    (false, false, _) => {}
                }
            }
            out.inserted.sort_unstable();
            out.deleted.sort_unstable();
            out.modified.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            if !out.is_empty() {
                changes.types.insert(name, out);
            }
        }
        changes
    }
}

/// The changes of an object that was there all along, if anything visible changed: a list
/// whose edits cancel out (an element inserted and erased again) is not a change.
fn modified(
    key: ObjKey,
    mut properties: Vec<Name>,
    trackers: IndexMap<Name, ListTracker>,
) -> Option<ObjectChanges> {
    let mut lists = BTreeMap::new();
    for (prop, tracker) in trackers {
        let changes = tracker.changes();
        if changes.is_empty() {
            properties.retain(|p| *p != prop);
        } else {
            lists.insert(prop, changes);
        }
    }
    (!properties.is_empty()).then_some(ObjectChanges {
        key,
        properties,
        lists,
    })
}
