//! The store-level effects of applying instructions, as the replica reports them: what an
//! application sees change, after merging (an instruction that lost changes nothing and so
//! reports nothing).

use crate::model::{Name, ObjRef, Property, Value};

/// One effect on the state. Values are kept only when the recorder asks for them (the feed
/// does, change notifications do not).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Event {
    /// A type was created (`created`, with its primary key) or gained properties:
    /// `properties` are the new ones.
    Schema {
        ty: Name,
        created: bool,
        primary_key: Option<Name>,
        properties: Vec<Property>,
    },
    /// An object was created; `values` are its properties but the primary key and the lists,
    /// at their defaults.
    Created {
        obj: ObjRef,
        values: Option<Vec<(Name, Value)>>,
    },
    /// An object was deleted (the links to it were removed first, each its own effect).
    Deleted { obj: ObjRef },
    /// A scalar property was written (also a counter incremented, or a link nulled because its
    /// target was deleted): `value` is the property's new value.
    Set {
        obj: ObjRef,
        prop: Name,
        value: Option<Value>,
    },
    /// An element was inserted at `index` of the list `prop` of `obj`.
    ListInserted {
        obj: ObjRef,
        prop: Name,
        index: usize,
        value: Option<Value>,
    },
    /// The element at `index` was given a new value.
    ListSet {
        obj: ObjRef,
        prop: Name,
        index: usize,
        value: Option<Value>,
    },
    /// The element at `index` was removed.
    ListErased {
        obj: ObjRef,
        prop: Name,
        index: usize,
    },
    /// The element at `from` was moved to `to` (they differ).
    ListMoved {
        obj: ObjRef,
        prop: Name,
        from: usize,
        to: usize,
    },
    /// Every element was removed; the list had `len` of them.
    ListCleared { obj: ObjRef, prop: Name, len: usize },
}

impl Event {
    /// A write of `value` (if kept) to scalar property `prop` of `obj`.
    pub(crate) fn set(obj: &ObjRef, prop: &Name, value: Option<Value>) -> Event {
        Event::Set {
            obj: obj.clone(),
            prop: prop.clone(),
            value,
        }
    }
}
