//! Writer-side list operations: a write names elements by the index its writer sees; the
//! instruction names them by id, and places new positions in the list's merge tree next to the
//! writer's visible neighbours (the writer rule of the list metadata), so that receivers with
//! other concurrent edits put them in the same place.

use super::Transaction;
use crate::model::{Error, Instruction, Name, ObjKey, ObjRef, OpId, Place, PropType, Value};
use crate::replica::{ListAt, Sequence};
use crate::store::Store;

impl<S: Store> Transaction<'_, S> {
    /// The existing object `ty[key]`, the schema's name of its list property `prop`, and the
    /// property's type.
    fn list_of(
        &self,
        ty: &str,
        key: ObjKey,
        prop: &str,
    ) -> Result<(ObjRef, Name, &PropType), Error> {
        let (obj, prop, pt) = self.field(ty, key, prop)?;
        // The schema says what the store would: a list property's slot always holds a list.
        pt.expect_list(&obj.ty, &prop)?;
        Ok((obj, prop, pt))
    }

    /// The list's merge metadata (`None` while it never held an element).
    fn sequence(&self, obj: &ObjRef, prop: &Name) -> Option<&Sequence> {
        self.replica.list(ListAt::new(obj, prop))
    }

    /// The id of the element at `index`.
    fn elem_at(&self, obj: &ObjRef, prop: &Name, index: usize) -> Result<OpId, Error> {
        let seq = self.sequence(obj, prop);
        seq.and_then(|s| s.elem_at(index))
            .ok_or_else(|| Error::out_of_range(obj.prop(prop), index, seq.map_or(0, Sequence::len)))
    }

    /// Inserts a value into a list at `index` (0 ..= length). For a list of links the value may
    /// be the target's key.
    ///
    /// The index is only what this writer sees: the instruction places the new element next to a
    /// visible neighbour by that neighbour's id, so a replica that has inserted into the same
    /// list concurrently still puts it next to the same element.
    ///
    /// ```
    /// use objsync::{ObjectType, PeerId, PropType, Property, Replica, Store, Value};
    ///
    /// let mut replica = Replica::new(PeerId(1));
    /// let mut tx = replica.transaction(1);
    /// tx.add_type(ObjectType::new("Person", Some("id"), [
    ///     Property::new("id", PropType::parse("int")?),
    ///     Property::new("tags", PropType::parse("list<string>")?),
    /// ])?)?;
    /// tx.insert("Person", 1)?;
    /// tx.list_insert("Person", 1, "tags", 0, "b")?;
    /// tx.list_insert("Person", 1, "tags", 0, "a")?;
    /// tx.list_insert("Person", 1, "tags", 2, "c")?; // index == length appends
    /// let tags = tx.store().list("Person", &1.into(), "tags")?;
    /// assert_eq!(tags, ["a", "b", "c"].map(Value::from));
    /// assert!(tx.list_insert("Person", 1, "tags", 9, "z").is_err());
    /// # Ok::<(), objsync::Error>(())
    /// ```
    pub fn list_insert(
        &mut self,
        ty: &str,
        key: impl Into<ObjKey>,
        prop: &str,
        index: usize,
        value: impl Into<Value>,
    ) -> Result<(), Error> {
        let (obj, prop, pt) = self.list_of(ty, key.into(), prop)?;
        let value = Self::value_for(pt, value.into());
        let place = match self.sequence(&obj, &prop) {
            Some(seq) => seq.place_insert(index),
            None => (index == 0).then(Place::root),
        };
        let place = place.ok_or_else(|| {
            let len = self.sequence(&obj, &prop).map_or(0, Sequence::len);
            Error::out_of_range(obj.prop(&prop), index, len)
        })?;
        self.atomically(|tx| {
            let elem = tx.replica.mint();
            tx.write(Instruction::ListInsert {
                obj,
                prop,
                index: index as u32,
                value,
                elem,
                place,
            })
        })
    }

    /// Replaces the list element at `index`. For a list of links the value may be the target's
    /// key.
    pub fn list_set(
        &mut self,
        ty: &str,
        key: impl Into<ObjKey>,
        prop: &str,
        index: usize,
        value: impl Into<Value>,
    ) -> Result<(), Error> {
        let (obj, prop, pt) = self.list_of(ty, key.into(), prop)?;
        let value = Self::value_for(pt, value.into());
        let elem = self.elem_at(&obj, &prop, index)?;
        self.write(Instruction::ListSet {
            obj,
            prop,
            index: index as u32,
            value,
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
        let (obj, prop, _) = self.list_of(ty, key.into(), prop)?;
        let elem = self.elem_at(&obj, &prop, index)?;
        self.write(Instruction::ListErase {
            obj,
            prop,
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
        let (obj, prop, _) = self.list_of(ty, key.into(), prop)?;
        let elem = self.elem_at(&obj, &prop, from)?;
        self.elem_at(&obj, &prop, to)?;
        let place = (self.sequence(&obj, &prop))
            .and_then(|s| s.place_move(elem, to))
            .ok_or_else(|| Error::out_of_range(obj.prop(&prop), to, 0))?;
        self.atomically(|tx| {
            let node = tx.replica.mint();
            tx.write(Instruction::ListMove {
                obj,
                prop,
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
        let (obj, prop, _) = self.list_of(ty, key.into(), prop)?;
        self.write(Instruction::ListClear { obj, prop })
    }
}
