//! The checks a replica makes before an instruction changes anything, and the errors for ids
//! that do not fit a list's merge metadata.
//!
//! The store checks each primitive call it gets, but a list instruction whose element stays
//! invisible (an insert that lost, an element hidden by a dead link) never reaches the store:
//! its list and value are checked here instead, once, before the sequence is touched.

use super::{ListAt, Replica};
use crate::model::{Error, ListProblem, ObjRef, Value};
use crate::store::Store;

impl<S: Store> Replica<S> {
    /// Checks that `obj.prop` is a list of an existing object and, with a value, that the value
    /// fits it. A link value must point at an existing object unless it is known to be dead (its
    /// target was deleted concurrently).
    pub(super) fn check_list(
        &self,
        obj: &ObjRef,
        list: ListAt<'_>,
        value: Option<&Value>,
        dead_link: bool,
    ) -> Result<(), Error> {
        self.store.list_len(&obj.ty, &obj.key, list.prop)?;
        match value {
            Some(value) => self.store.check_value(&obj.ty, list.prop, value, dead_link),
            None => Ok(()),
        }
    }
}

/// The error for a list instruction whose ids do not fit the list's metadata.
pub(super) fn bad_list(list: ListAt<'_>, problem: ListProblem) -> Error {
    Error::BadListReference {
        list: list.to_ref(),
        problem,
    }
}
