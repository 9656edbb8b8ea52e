//! Instructions: the operations a write transaction is made of.
//!
//! The set follows the source documents' Adapter API (INSERT, SET, DELETE, CLEAR, LIST_SET,
//! LIST_INSERT, LIST_ERASE, LIST_CLEAR, ADD_TYPE, ADD_PROPERTIES) plus ADD_INT (counters) and
//! LIST_MOVE, and a "default value" flag on SET. Objects are always addressed by type and key,
//! never by row position, so CHANGE_IDENTITY never occurs (see spec/model.md).
//!
//! List instructions carry, beside the index their writer saw, the ids that make them
//! mergeable: the element they address (`elem`), and for inserts and moves the placement of the
//! new position in the list's merge tree (a [`Place`]). A receiving replica recomputes
//! the index from the ids.
//!
//! Each instruction in a changeset is wrapped in an [`Op`] with a [`Fate`]: transformation past
//! concurrent changesets never rewrites an instruction into another kind, it only adjusts values
//! and lowers the fate (an overwritten set becomes void, a link to a concurrently deleted object
//! becomes a dead link, ...).

use super::ids::OpId;
use super::place::Place;
use super::schema::{Name, ObjectType, Property};
use super::value::{ObjKey, Value};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An object: its type and key.
///
/// ```
/// use objsync::ObjRef;
/// assert_eq!(ObjRef::new("Person", 7).to_string(), "Person[7]");
/// assert_eq!(ObjRef::new("Tag", "red").to_string(), r#"Tag["red"]"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjRef {
    /// The type name.
    pub ty: Name,
    /// The object's key.
    pub key: ObjKey,
}

impl ObjRef {
    /// An object reference.
    pub fn new(ty: &str, key: impl Into<ObjKey>) -> ObjRef {
        ObjRef {
            ty: ty.into(),
            key: key.into(),
        }
    }

    /// A property of this object.
    pub fn prop(&self, prop: &Name) -> PropRef {
        PropRef {
            obj: self.clone(),
            prop: prop.clone(),
        }
    }
}

impl fmt::Display for ObjRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.ty, self.key)
    }
}

/// A property of one object: a field, or a list (the identity of a list in the merge metadata
/// and in error messages).
///
/// ```
/// use objsync::{ObjRef, PropRef};
/// let tags = PropRef::new(ObjRef::new("Person", 1), "tags");
/// assert_eq!(tags.to_string(), "Person[1].tags");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PropRef {
    /// The object.
    pub obj: ObjRef,
    /// The property's name.
    pub prop: Name,
}

impl PropRef {
    /// A property reference.
    pub fn new(obj: ObjRef, prop: &str) -> PropRef {
        PropRef {
            obj,
            prop: prop.into(),
        }
    }
}

impl fmt::Display for PropRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.obj, self.prop)
    }
}

/// One operation of a write transaction.
///
/// Instructions name objects by type and key, never by position, so a receiver can apply one
/// that was written against a different state; [`Instruction::kind`] and
/// [`Instruction::object`] are what the merge rules look at first.
///
/// ```
/// use objsync::{Instruction, Kind, ObjRef, Value};
///
/// let set = Instruction::Set {
///     obj: ObjRef::new("Person", 1),
///     prop: "name".into(),
///     value: Value::from("Ada"),
///     default: false,
/// };
/// assert_eq!(set.kind(), Kind::Set);
/// assert_eq!(set.kind().name(), "SET");
/// assert_eq!(set.object(), Some(&ObjRef::new("Person", 1)));
/// assert_eq!(set.value(), Some(&Value::from("Ada")));
/// let clear = Instruction::Clear { ty: "Person".into(), objects: vec![] };
/// assert_eq!(clear.object(), None);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Instruction {
    /// Add a type, or merge properties into an existing identical type.
    AddType(ObjectType),
    /// Add properties to an existing type.
    AddProperties {
        /// The type.
        ty: Name,
        /// The properties to add.
        properties: Vec<Property>,
    },
    /// Create the object if it does not exist (creation by key is idempotent).
    Insert {
        /// The object.
        obj: ObjRef,
    },
    /// Set a scalar property.
    Set {
        /// The object.
        obj: ObjRef,
        /// The property.
        prop: Name,
        /// The new value.
        value: Value,
        /// A default-value write: it loses to every concurrent ordinary write.
        default: bool,
    },
    /// Add to an int property (a counter increment).
    AddInt {
        /// The object.
        obj: ObjRef,
        /// The int property.
        prop: Name,
        /// The amount (wrapping on overflow).
        delta: i64,
    },
    /// Delete an object; links to it become null and it leaves every list of links.
    Delete {
        /// The object.
        obj: ObjRef,
    },
    /// Delete every object of a type that the writer could see (listed in `objects`).
    Clear {
        /// The type.
        ty: Name,
        /// The objects the writer saw, and so deletes.
        objects: Vec<ObjKey>,
    },
    /// Insert a value into a list.
    ListInsert {
        /// The list's object.
        obj: ObjRef,
        /// The list property.
        prop: Name,
        /// The index the writer inserted at.
        index: u32,
        /// The value.
        value: Value,
        /// The new element's id.
        elem: OpId,
        /// Where the element's position goes in the list's merge tree.
        place: Place,
    },
    /// Replace the value of a list element.
    ListSet {
        /// The list's object.
        obj: ObjRef,
        /// The list property.
        prop: Name,
        /// The index the writer saw the element at.
        index: u32,
        /// The new value.
        value: Value,
        /// The element.
        elem: OpId,
    },
    /// Remove an element from a list (for lists of links the target object stays).
    ListErase {
        /// The list's object.
        obj: ObjRef,
        /// The list property.
        prop: Name,
        /// The index the writer saw the element at.
        index: u32,
        /// The element.
        elem: OpId,
    },
    /// Move an element: afterwards the element that was at `from` is at `to`.
    ListMove {
        /// The list's object.
        obj: ObjRef,
        /// The list property.
        prop: Name,
        /// The element's index before the move, as the writer saw it.
        from: u32,
        /// Its index after the move.
        to: u32,
        /// The element.
        elem: OpId,
        /// The id of the element's new position.
        node: OpId,
        /// Where the new position goes in the list's merge tree.
        place: Place,
    },
    /// Remove every element of a list.
    ListClear {
        /// The list's object.
        obj: ObjRef,
        /// The list property.
        prop: Name,
    },
}

/// The twelve instruction kinds, for tables and error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Kind {
    AddType,
    AddProperties,
    Insert,
    Set,
    AddInt,
    Delete,
    Clear,
    ListInsert,
    ListSet,
    ListErase,
    ListMove,
    ListClear,
}

impl Kind {
    /// Every kind, in the order of the source documents' table plus the additions.
    pub const ALL: [Kind; 12] = [
        Kind::AddType,
        Kind::AddProperties,
        Kind::Insert,
        Kind::Set,
        Kind::AddInt,
        Kind::Delete,
        Kind::Clear,
        Kind::ListInsert,
        Kind::ListSet,
        Kind::ListErase,
        Kind::ListMove,
        Kind::ListClear,
    ];

    /// The Adapter API name (`INSERT`, `LIST_SET`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::AddType => "ADD_TYPE",
            Kind::AddProperties => "ADD_PROPERTIES",
            Kind::Insert => "INSERT",
            Kind::Set => "SET",
            Kind::AddInt => "ADD_INT",
            Kind::Delete => "DELETE",
            Kind::Clear => "CLEAR",
            Kind::ListInsert => "LIST_INSERT",
            Kind::ListSet => "LIST_SET",
            Kind::ListErase => "LIST_ERASE",
            Kind::ListMove => "LIST_MOVE",
            Kind::ListClear => "LIST_CLEAR",
        }
    }
}

impl Instruction {
    /// The instruction's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Instruction::AddType(_) => Kind::AddType,
            Instruction::AddProperties { .. } => Kind::AddProperties,
            Instruction::Insert { .. } => Kind::Insert,
            Instruction::Set { .. } => Kind::Set,
            Instruction::AddInt { .. } => Kind::AddInt,
            Instruction::Delete { .. } => Kind::Delete,
            Instruction::Clear { .. } => Kind::Clear,
            Instruction::ListInsert { .. } => Kind::ListInsert,
            Instruction::ListSet { .. } => Kind::ListSet,
            Instruction::ListErase { .. } => Kind::ListErase,
            Instruction::ListMove { .. } => Kind::ListMove,
            Instruction::ListClear { .. } => Kind::ListClear,
        }
    }

    /// The object the instruction changes, if it changes exactly one.
    pub fn object(&self) -> Option<&ObjRef> {
        match self {
            Instruction::Insert { obj }
            | Instruction::Set { obj, .. }
            | Instruction::AddInt { obj, .. }
            | Instruction::Delete { obj }
            | Instruction::ListInsert { obj, .. }
            | Instruction::ListSet { obj, .. }
            | Instruction::ListErase { obj, .. }
            | Instruction::ListMove { obj, .. }
            | Instruction::ListClear { obj, .. } => Some(obj),
            Instruction::AddType(_)
            | Instruction::AddProperties { .. }
            | Instruction::Clear { .. } => None,
        }
    }

    /// The property of its object the instruction changes, if it changes one.
    pub fn property(&self) -> Option<&Name> {
        match self {
            Instruction::Set { prop, .. }
            | Instruction::AddInt { prop, .. }
            | Instruction::ListInsert { prop, .. }
            | Instruction::ListSet { prop, .. }
            | Instruction::ListErase { prop, .. }
            | Instruction::ListMove { prop, .. }
            | Instruction::ListClear { prop, .. } => Some(prop),
            Instruction::Insert { .. }
            | Instruction::Delete { .. }
            | Instruction::AddType(_)
            | Instruction::AddProperties { .. }
            | Instruction::Clear { .. } => None,
        }
    }

    /// Calls `f` on every id the instruction names: an object's engine key, a link to one, a
    /// list element, a position node and its place's parent, and the keys a clear lists.
    pub(crate) fn ids_mut(&mut self, mut f: impl FnMut(&mut OpId)) {
        let key = |k: &mut ObjKey, f: &mut dyn FnMut(&mut OpId)| {
            if let ObjKey::Engine(id) = k {
                f(id)
            }
        };
        if let Instruction::Clear { objects, .. } = self {
            objects.iter_mut().for_each(|k| key(k, &mut f));
        }
        if let Some(Value::Link(k)) = self.value_mut() {
            key(k, &mut f);
        }
        match self {
            Instruction::Insert { obj }
            | Instruction::Set { obj, .. }
            | Instruction::AddInt { obj, .. }
            | Instruction::Delete { obj }
            | Instruction::ListClear { obj, .. } => key(&mut obj.key, &mut f),
            Instruction::ListInsert {
                obj, elem, place, ..
            } => {
                key(&mut obj.key, &mut f);
                f(elem);
                place.parent.iter_mut().for_each(&mut f);
            }
            Instruction::ListSet { obj, elem, .. } | Instruction::ListErase { obj, elem, .. } => {
                key(&mut obj.key, &mut f);
                f(elem);
            }
            Instruction::ListMove {
                obj,
                elem,
                node,
                place,
                ..
            } => {
                key(&mut obj.key, &mut f);
                f(elem);
                f(node);
                place.parent.iter_mut().for_each(&mut f);
            }
            Instruction::AddType(_)
            | Instruction::AddProperties { .. }
            | Instruction::Clear { .. } => {}
        }
    }

    /// The ids the instruction mints: a new element's, a move's position node, the engine key
    /// of an object it creates.
    pub(crate) fn minted(&self) -> Option<OpId> {
        match self {
            Instruction::ListInsert { elem, .. } => Some(*elem),
            Instruction::ListMove { node, .. } => Some(*node),
            Instruction::Insert {
                obj:
                    ObjRef {
                        key: ObjKey::Engine(id),
                        ..
                    },
            } => Some(*id),
            _ => None,
        }
    }

    /// The value the instruction writes (set, list_insert, list_set).
    pub fn value(&self) -> Option<&Value> {
        match self {
            Instruction::Set { value, .. }
            | Instruction::ListInsert { value, .. }
            | Instruction::ListSet { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The value the instruction writes, for moving it out.
    pub fn value_mut(&mut self) -> Option<&mut Value> {
        match self {
            Instruction::Set { value, .. }
            | Instruction::ListInsert { value, .. }
            | Instruction::ListSet { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// What transformation has left of an instruction. The order matters: fates only ever go down
/// (`Live` > `DeadLink` > `Dropped` > `Void`), so combining two outcomes takes the lower.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum Fate {
    /// Nothing: not applied and not remembered (e.g. a write to an object deleted concurrently).
    Void,
    /// A list insert or move that lost: its position is remembered in the merge tree (others may
    /// refer to it), but it changes nothing visible.
    Dropped,
    /// The value is a link to an object that was deleted concurrently: a link property becomes
    /// null, a list element is kept hidden.
    DeadLink,
    /// Applies as written.
    #[default]
    Live,
}

/// An instruction with its fate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// The instruction as its writer made it (values may be adjusted by transformation).
    pub instr: Instruction,
    /// What is left of it after transformation.
    #[serde(default, skip_serializing_if = "is_live")]
    pub fate: Fate,
}

fn is_live(f: &Fate) -> bool {
    *f == Fate::Live
}

impl Op {
    /// A live op.
    pub fn live(instr: Instruction) -> Op {
        Op {
            instr,
            fate: Fate::Live,
        }
    }

    /// Lowers the fate to `fate` if it is lower than the current one.
    pub fn lower(&mut self, fate: Fate) {
        self.fate = self.fate.min(fate);
    }
}

impl From<Instruction> for Op {
    fn from(instr: Instruction) -> Op {
        Op::live(instr)
    }
}
