//! Applying one op: the dispatch by instruction kind, and the instructions on schema, objects
//! and fields. List instructions are in `lists`.

use super::check::bad_list;
use super::list::VisibleChange;
use super::{ElemState, ListAt, Replica};
use crate::model::{
    Error, Fate, Instruction, ListProblem, Name, ObjKey, ObjRef, Op, Timestamp, Value,
};
use crate::observe::Event;
use crate::store::{Store, Unlinked};

impl<S: Store> Replica<S> {
    /// Applies `op`, made at `ts`, with `value` standing for the value it carries (the op's own
    /// value may have been moved out already).
    pub(super) fn apply_value(
        &mut self,
        op: &Op,
        ts: Timestamp,
        value: Option<Value>,
    ) -> Result<(), Error> {
        if op.fate == Fate::Void {
            return Ok(());
        }
        let value = value.unwrap_or(Value::Null);
        let live = op.fate == Fate::Live;
        match &op.instr {
            Instruction::AddType(def) => {
                let pk = def.primary_key.as_ref();
                let effect = self.schema_effect(&def.name, pk, |s| s.plan_add_type(def));
                self.store.add_type(def)?;
                self.recorder.push_some(effect);
            }
            Instruction::AddProperties { ty, properties } => {
                let effect =
                    self.schema_effect(ty, None, |s| s.plan_add_properties(ty, properties));
                self.store.add_properties(ty, properties)?;
                self.recorder.push_some(effect);
            }
            Instruction::Insert { obj } if live => {
                if self.store.create(&obj.ty, &obj.key)? {
                    self.note_created(obj);
                }
            }
            // A dead link becomes null.
            Instruction::Set { obj, prop, .. } => {
                self.set_field(obj, prop, if live { value } else { Value::Null })?
            }
            Instruction::AddInt { obj, prop, delta } if live => {
                self.add_to_field(obj, prop, *delta)?
            }
            Instruction::Delete { obj } if live => self.delete_object(&obj.ty, &obj.key)?,
            Instruction::Clear { ty, objects } if live => {
                for key in objects {
                    self.delete_object(ty, key)?;
                }
            }
            Instruction::ListInsert {
                obj,
                prop,
                elem,
                place,
                ..
            } => self.list_insert(obj, prop, (*elem, *place), ts, op.fate, value)?,
            Instruction::ListSet {
                obj, prop, elem, ..
            } => self.list_set(obj, prop, *elem, live, value)?,
            Instruction::ListErase {
                obj, prop, elem, ..
            } => self.list_erase(obj, prop, *elem)?,
            Instruction::ListMove {
                obj,
                prop,
                elem,
                node,
                place,
                ..
            } => self.list_move(obj, prop, (*elem, *node, *place), ts, live)?,
            Instruction::ListClear { obj, prop } if live => self.list_clear(obj, prop)?,
            // What is left of an instruction that lost: nothing to apply.
            Instruction::Insert { .. }
            | Instruction::AddInt { .. }
            | Instruction::Delete { .. }
            | Instruction::Clear { .. }
            | Instruction::ListClear { .. } => {}
        }
        Ok(())
    }

    /// Sets a field, telling the recorder if it watches the object.
    fn set_field(&mut self, obj: &ObjRef, prop: &Name, value: Value) -> Result<(), Error> {
        let seen = self.watch(obj, &value);
        self.store.set(&obj.ty, &obj.key, prop, value)?;
        if let Some(value) = seen {
            self.recorder.push(Event::set(obj, prop, value));
        }
        Ok(())
    }

    /// Adds to an int field, telling the recorder the new value if it watches the object.
    fn add_to_field(&mut self, obj: &ObjRef, prop: &Name, delta: i64) -> Result<(), Error> {
        self.store.add_int(&obj.ty, &obj.key, prop, delta)?;
        if self.recorder.watches(obj) {
            let now = self.store.get(&obj.ty, &obj.key, prop)?;
            let value = self.recorder.keep(&now);
            self.recorder.push(Event::set(obj, prop, value));
        }
        Ok(())
    }

    /// Deletes an object if it exists: the store unlinks it everywhere, the list entries it
    /// removed are kept hidden in their sequences, and the object's own lists' metadata goes.
    pub(super) fn delete_object(&mut self, ty: &Name, key: &ObjKey) -> Result<(), Error> {
        if !self.store.exists(ty, key)? {
            return Ok(());
        }
        for u in self.store.delete(ty, key)? {
            match u {
                Unlinked::ListEntry { list, index } => {
                    self.hide_unlinked(ListAt::new(&list.obj, &list.prop), index)?;
                    self.note(&list.obj, || Event::ListErased {
                        obj: list.obj.clone(),
                        prop: list.prop.clone(),
                        index,
                    });
                }
                Unlinked::Field(link) => {
                    if let Some(value) = self.watch(&link.obj, &Value::Null) {
                        self.recorder.push(Event::set(&link.obj, &link.prop, value));
                    }
                }
            }
        }
        let obj = || ObjRef {
            ty: ty.clone(),
            key: key.clone(),
        };
        if self.recorder.active() {
            let obj = obj();
            self.note(&obj, || Event::Deleted { obj: obj.clone() });
        }
        if self.lists.is_empty() {
            return Ok(());
        }
        let obj = obj();
        let list_props: Vec<Name> = (self.store.schema().get(ty)?.properties.iter())
            .filter(|(_, pt)| pt.list)
            .map(|(n, _)| n.clone())
            .collect();
        for prop in list_props {
            self.drop_seq(obj.prop(&prop));
        }
        Ok(())
    }

    /// Mirrors the store's removal of the link at `index` of `list`: the element stays, hidden.
    fn hide_unlinked(&mut self, list: ListAt<'_>, index: usize) -> Result<(), Error> {
        let seq = self.seq_mut(list);
        let change = match seq.elem_at(index) {
            Some(elem) => seq.set_state(elem, ElemState::Hidden).ok(),
            None => None,
        };
        if change != Some(VisibleChange::Removed(index)) {
            return Err(bad_list(
                list,
                ListProblem::Inconsistent {
                    index: index as u64,
                },
            ));
        }
        Ok(())
    }
}
