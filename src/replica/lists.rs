//! Applying list instructions: each registers its ids in the list's [`super::Sequence`], which
//! answers where the change is visible in this replica ([`VisibleChange`]), and the store is
//! told the plain index (and the recorder of change notifications what the store did).

use super::check::bad_list;
use super::list::VisibleChange;
use super::{ElemState, ListAt, Replica};
use crate::model::{Error, Fate, ListProblem, Name, ObjRef, OpId, Place, Timestamp, Value};
use crate::observe::Event;
use crate::store::Store;

impl<S: Store> Replica<S> {
    /// A list insert: a new element at `place`, visible if the insert is live, hidden if its
    /// link is dead, a tombstone if it lost.
    pub(super) fn list_insert(
        &mut self,
        obj: &ObjRef,
        prop: &Name,
        (elem, place): (OpId, Place),
        ts: Timestamp,
        fate: Fate,
        value: Value,
    ) -> Result<(), Error> {
        let list = ListAt::new(obj, prop);
        self.check_list(obj, list, Some(&value), fate != Fate::Live)?;
        let state = match fate {
            Fate::Live => ElemState::Visible,
            Fate::DeadLink => ElemState::Hidden,
            _ => ElemState::Erased,
        };
        let change = self
            .seq_mut(list)
            .insert(elem, ts, place, state)
            .map_err(|p| bad_list(list, p))?;
        if let VisibleChange::Inserted(i) = change {
            self.store_insert(obj, prop, i, value)?;
        }
        Ok(())
    }

    /// A list set: a live one replaces a visible element's value (or shows a hidden element
    /// again with it); a dead link hides the element.
    pub(super) fn list_set(
        &mut self,
        obj: &ObjRef,
        prop: &Name,
        elem: OpId,
        live: bool,
        value: Value,
    ) -> Result<(), Error> {
        let list = ListAt::new(obj, prop);
        self.check_list(obj, list, Some(&value), !live)?;
        let state = self.elem_state(list, elem)?;
        let target = match (state, live) {
            // Only a permission correction sets an erased element: the server refused the
            // erase, and the element comes back with the server's value.
            (ElemState::Erased, true) => ElemState::Visible,
            (ElemState::Erased, false) => return Err(bad_list(list, ListProblem::Erased(elem))),
            (ElemState::Visible, true) => {
                let i = self.list(list).and_then(|s| s.index_of(elem));
                let i = i.ok_or_else(|| bad_list(list, ListProblem::NotVisible(elem)))?;
                let seen = self.watch(obj, &value);
                self.store.list_set(&obj.ty, &obj.key, prop, i, value)?;
                if let Some(value) = seen {
                    let (obj, prop) = (obj.clone(), prop.clone());
                    self.recorder.push(Event::ListSet {
                        obj,
                        prop,
                        index: i,
                        value,
                    });
                }
                return Ok(());
            }
            (ElemState::Hidden, false) => return Ok(()),
            (ElemState::Visible, false) => ElemState::Hidden,
            (ElemState::Hidden, true) => ElemState::Visible,
        };
        match self.set_elem_state(list, elem, target)? {
            VisibleChange::Removed(i) => self.store_erase(obj, prop, i),
            VisibleChange::Inserted(i) => self.store_insert(obj, prop, i, value),
            _ => Ok(()),
        }
    }

    /// A list erase: the element becomes a tombstone.
    pub(super) fn list_erase(
        &mut self,
        obj: &ObjRef,
        prop: &Name,
        elem: OpId,
    ) -> Result<(), Error> {
        let list = ListAt::new(obj, prop);
        self.check_list(obj, list, None, false)?;
        // Erasing twice changes nothing: a permission correction erases an element the server
        // refused, which its writer may have erased again since.
        if self.elem_state(list, elem)? == ElemState::Erased {
            return Ok(());
        }
        if let VisibleChange::Removed(i) = self.set_elem_state(list, elem, ElemState::Erased)? {
            self.store_erase(obj, prop, i)?;
        }
        Ok(())
    }

    /// A list move: a new position node for the element, which becomes its current one if the
    /// move is live.
    pub(super) fn list_move(
        &mut self,
        obj: &ObjRef,
        prop: &Name,
        (elem, node, place): (OpId, OpId, Place),
        ts: Timestamp,
        live: bool,
    ) -> Result<(), Error> {
        let list = ListAt::new(obj, prop);
        self.check_list(obj, list, None, false)?;
        let seq = self.seq_mut(list);
        // A live move to a node the element already has: a permission correction putting the
        // element back where the server has it.
        let change = match (seq.contains_node(node), live) {
            (true, true) => seq.reselect(elem, node),
            // The correction's move lost to a concurrent one: the node stays as it is.
            (true, false) => Ok(VisibleChange::None),
            (false, _) => seq.add_node(elem, node, ts, place, live),
        };
        let change = change.map_err(|p| bad_list(list, p))?;
        if let VisibleChange::Moved { from, to } = change {
            self.store.list_move(&obj.ty, &obj.key, prop, from, to)?;
            if from != to {
                self.note(obj, || Event::ListMoved {
                    obj: obj.clone(),
                    prop: prop.clone(),
                    from,
                    to,
                });
            }
        }
        Ok(())
    }

    /// A list clear: every element becomes a tombstone.
    pub(super) fn list_clear(&mut self, obj: &ObjRef, prop: &Name) -> Result<(), Error> {
        let list = ListAt::new(obj, prop);
        self.check_list(obj, list, None, false)?;
        if self.lists.contains_key(&list) {
            self.seq_mut(list).clear();
        }
        let len = match self.recorder.watches(obj) {
            true => self.store.list_len(&obj.ty, &obj.key, prop)?,
            false => 0,
        };
        self.store.list_clear(&obj.ty, &obj.key, prop)?;
        if len > 0 {
            self.note(obj, || Event::ListCleared {
                obj: obj.clone(),
                prop: prop.clone(),
                len,
            });
        }
        Ok(())
    }

    /// Inserts into the store's list at `index`, and reports it.
    #[inline(always)]
    fn store_insert(
        &mut self,
        obj: &ObjRef,
        prop: &Name,
        index: usize,
        value: Value,
    ) -> Result<(), Error> {
        let seen = self.watch(obj, &value);
        self.store
            .list_insert(&obj.ty, &obj.key, prop, index, value)?;
        if let Some(value) = seen {
            let (obj, prop) = (obj.clone(), prop.clone());
            self.recorder.push(Event::ListInserted {
                obj,
                prop,
                index,
                value,
            });
        }
        Ok(())
    }

    /// Removes the element at `index` of the store's list, and reports it.
    #[inline(always)]
    fn store_erase(&mut self, obj: &ObjRef, prop: &Name, index: usize) -> Result<(), Error> {
        self.store.list_erase(&obj.ty, &obj.key, prop, index)?;
        self.note(obj, || Event::ListErased {
            obj: obj.clone(),
            prop: prop.clone(),
            index,
        });
        Ok(())
    }

    fn elem_state(&self, list: ListAt<'_>, elem: OpId) -> Result<ElemState, Error> {
        self.list(list)
            .and_then(|s| s.state(elem))
            .ok_or_else(|| bad_list(list, ListProblem::UnknownElement(elem)))
    }

    fn set_elem_state(
        &mut self,
        list: ListAt<'_>,
        elem: OpId,
        state: ElemState,
    ) -> Result<VisibleChange, Error> {
        self.seq_mut(list)
            .set_state(elem, state)
            .map_err(|p| bad_list(list, p))
    }
}
