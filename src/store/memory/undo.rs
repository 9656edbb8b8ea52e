//! The undo log of [`MemoryStore`]: how to reverse each change made while an atomic unit is
//! open, and the reversal itself.

use super::{Chunked, MemoryStore, Slot};
use crate::model::{ObjKey, Value};

/// How to reverse one change. Types are named by their position in the schema (and in
/// `MemoryStore::tables`), which only grows while a unit is open.
#[derive(Debug)]
pub(super) enum Undo {
    /// The last type was added.
    AddedType,
    AddedProps {
        t: usize,
        prev_len: usize,
    },
    Created {
        t: usize,
        key: ObjKey,
    },
    Deleted {
        t: usize,
        key: ObjKey,
        /// The object's slots, in schema order.
        slots: Vec<Slot>,
        index: usize,
    },
    Set {
        t: usize,
        key: ObjKey,
        slot: usize,
        old: Value,
    },
    ListInserted {
        t: usize,
        key: ObjKey,
        slot: usize,
        index: usize,
    },
    ListSet {
        t: usize,
        key: ObjKey,
        slot: usize,
        index: usize,
        old: Value,
    },
    ListErased {
        t: usize,
        key: ObjKey,
        slot: usize,
        index: usize,
        old: Value,
    },
    ListMoved {
        t: usize,
        key: ObjKey,
        slot: usize,
        from: usize,
        to: usize,
    },
    ListCleared {
        t: usize,
        key: ObjKey,
        slot: usize,
        old: Chunked,
    },
}

impl MemoryStore {
    /// An object's slot during an undo, which only revisits objects it knows exist.
    fn undo_slot(&mut self, t: usize, key: &ObjKey, slot: usize) -> Option<&mut Slot> {
        self.tables.get_mut(t)?.cell_mut(key, slot)
    }

    fn undo_list(&mut self, t: usize, key: &ObjKey, slot: usize) -> Option<&mut Chunked> {
        match self.undo_slot(t, key, slot) {
            Some(Slot::List(l)) => Some(&mut **l),
            _ => None,
        }
    }

    pub(super) fn apply_undo(&mut self, u: Undo) {
        match u {
            Undo::AddedType => {
                self.tables.pop();
                self.schema.pop_last();
            }
            Undo::AddedProps { t, prev_len } => {
                self.schema.truncate_properties(t, prev_len);
                if let Some(table) = self.tables.get_mut(t) {
                    table.columns.truncate(prev_len);
                }
            }
            Undo::Created { t, key } => {
                if let Some(table) = self.tables.get_mut(t) {
                    if let Some((row, _)) = table.keys.swap_remove_full(&key) {
                        table.swap_remove_row(row);
                    }
                }
            }
            Undo::Deleted {
                t,
                key,
                slots,
                index,
            } => {
                if let Some(table) = self.tables.get_mut(t) {
                    let (last, _) = table.keys.insert_full(key);
                    table.keys.swap_indices(index, last);
                    for (column, slot) in table.columns.iter_mut().zip(slots) {
                        column.push(slot);
                        column.swap(index, last);
                    }
                }
            }
            Undo::Set { t, key, slot, old } => {
                if let Some(cell) = self.undo_slot(t, &key, slot) {
                    *cell = Slot::Value(old);
                }
            }
            Undo::ListInserted {
                t,
                key,
                slot,
                index,
            } => {
                if let Some(l) = self.undo_list(t, &key, slot) {
                    l.remove(index);
                }
            }
            Undo::ListSet {
                t,
                key,
                slot,
                index,
                old,
            } => {
                if let Some(cell) = self.undo_list(t, &key, slot).and_then(|l| l.get_mut(index)) {
                    *cell = old;
                }
            }
            Undo::ListErased {
                t,
                key,
                slot,
                index,
                old,
            } => {
                if let Some(l) = self.undo_list(t, &key, slot) {
                    l.insert(index, old);
                }
            }
            Undo::ListMoved {
                t,
                key,
                slot,
                from,
                to,
            } => {
                if let Some(l) = self.undo_list(t, &key, slot) {
                    if let Some(v) = l.remove(to) {
                        l.insert(from, v);
                    }
                }
            }
            Undo::ListCleared { t, key, slot, old } => {
                if let Some(l) = self.undo_list(t, &key, slot) {
                    *l = old;
                }
            }
        }
    }
}
