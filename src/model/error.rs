//! The data layer's error. Every error names what was wrong and where (type, property, object,
//! index) with typed fields, so that a rejected write or a rejected changeset can be diagnosed
//! from the message alone and matched on by a program.

use super::ids::OpId;
use super::instruction::{ObjRef, PropRef};
use super::schema::{Name, PropType};
use super::value::{ObjKey, ScalarKind};
use thiserror::Error;

/// An error applying a write or an instruction to a replica, or changing its schema.
///
/// A failing write never changes anything: the store and the merge metadata are left exactly as
/// they were before the write (or the whole changeset) was attempted.
///
/// ```
/// use objsync::{Error, ObjectType, PeerId, PropType, Property, Replica};
///
/// let mut replica = Replica::new(PeerId(1));
/// let mut tx = replica.transaction(1);
/// tx.add_type(ObjectType::new("Note", Some("id"), [Property::new("id", PropType::parse("int")?)])?)?;
/// let err = tx.set("Note", 7, "title", "x").unwrap_err();
/// assert!(matches!(err, Error::MissingObject { .. }));
/// assert_eq!(err.to_string(), "no object Note[7]");
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// The type is not in the schema.
    #[error("unknown type `{ty}`")]
    UnknownType {
        /// The type name.
        ty: Name,
    },
    /// The type has no such property.
    #[error("type `{ty}` has no property `{prop}`")]
    UnknownProperty {
        /// The type name.
        ty: Name,
        /// The property name.
        prop: Name,
    },
    /// A value of the wrong kind was written to a property or list.
    #[error("{ty}.{prop}: expected {}, got {}", describe(expected), found.name())]
    TypeMismatch {
        /// The type name.
        ty: Name,
        /// The property name.
        prop: Name,
        /// The property's declared type (for a list, each element must fit its element type).
        expected: PropType,
        /// The kind of what was written instead.
        found: ScalarKind,
    },
    /// A JSON value does not fit the property it is read for.
    #[error("{ty}.{prop}: expected {}, got the JSON {found}", describe(expected))]
    JsonMismatch {
        /// The type name.
        ty: Name,
        /// The property name.
        prop: Name,
        /// The property's declared type.
        expected: PropType,
        /// The JSON text that was given.
        found: String,
    },
    /// Null was written to a required property or to a list whose elements are required.
    #[error("{ty}.{prop} is required and cannot be set to null")]
    NullNotAllowed {
        /// The type name.
        ty: Name,
        /// The property name.
        prop: Name,
    },
    /// A list index was outside the list.
    #[error("{list}: index {index} is out of range for a list of length {len}")]
    IndexOutOfRange {
        /// The list.
        list: PropRef,
        /// The offending index.
        index: u64,
        /// The list's length.
        len: u64,
    },
    /// The object does not exist.
    #[error("no object {obj}")]
    MissingObject {
        /// The object.
        obj: ObjRef,
    },
    /// A schema change conflicts with the existing definition of a type or property.
    #[error("schema mismatch on `{ty}`: {conflict}")]
    SchemaMismatch {
        /// The type name.
        ty: Name,
        /// What conflicts.
        conflict: SchemaConflict,
    },
    /// The name is reserved for the engine (type names starting with `__`).
    #[error("the type name `{name}` is reserved for the engine (names starting with `__`)")]
    ReservedName {
        /// The offending name.
        name: Name,
    },
    /// A type or property name is not acceptable.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A type string such as `list<int?>` could not be parsed.
    #[error("invalid property type {text:?}: {reason}")]
    InvalidPropertyType {
        /// The text.
        text: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// An object key does not fit the type's primary key.
    #[error("invalid key {key} for type `{ty}`: {}", expected_key(expected.as_ref()))]
    InvalidKey {
        /// The type name.
        ty: Name,
        /// The key.
        key: ObjKey,
        /// The primary key's type; `None` for a type whose objects get engine ids.
        expected: Option<PropType>,
    },
    /// A JSON value is not a key of the type.
    #[error("invalid key {found} for type `{ty}`: {}", expected_key(expected.as_ref()))]
    JsonKey {
        /// The type name.
        ty: Name,
        /// The JSON text that was given.
        found: String,
        /// The primary key's type; `None` for a type whose objects get engine ids.
        expected: Option<PropType>,
    },
    /// An object with an engine id was asked for, but the type has a primary key.
    #[error("type `{ty}` has a primary key: create its objects with insert and a key")]
    HasPrimaryKey {
        /// The type name.
        ty: Name,
    },
    /// The primary key property of an object cannot be written.
    #[error("{ty}.{prop} is the primary key and cannot be changed")]
    PrimaryKeyImmutable {
        /// The type name.
        ty: Name,
        /// The property name.
        prop: Name,
    },
    /// A list operation was used on a property that is not a list.
    #[error("{ty}.{prop} is not a list")]
    NotAList {
        /// The type name.
        ty: Name,
        /// The property name.
        prop: Name,
    },
    /// A scalar operation was used on a list property.
    #[error("{ty}.{prop} is a list; use the list operations")]
    IsAList {
        /// The type name.
        ty: Name,
        /// The property name.
        prop: Name,
    },
    /// add_int on a property that is not an int.
    #[error("{ty}.{prop} is not an int property, so add_int does not apply")]
    NotAnInt {
        /// The type name.
        ty: Name,
        /// The property name.
        prop: Name,
    },
    /// A list instruction names an element or position the replica does not know, or reuses one.
    #[error("{list}: {problem}")]
    BadListReference {
        /// The list.
        list: PropRef,
        /// What is wrong.
        problem: ListProblem,
    },
    /// An instruction of a changeset failed; the changeset was not applied.
    #[error("instruction {index}: {source}")]
    InInstruction {
        /// Position of the failing instruction in its changeset.
        index: usize,
        /// The failure.
        source: Box<Error>,
    },
}

/// How a schema change contradicts a definition (its own, the existing one, or a concurrent
/// one).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SchemaConflict {
    /// One definition lists a property twice, with different types.
    #[error("property `{prop}` is declared twice")]
    DeclaredTwice {
        /// The property.
        prop: Name,
    },
    /// The primary key names no property of the type.
    #[error("primary key `{pk}` is not among the properties")]
    PrimaryKeyMissing {
        /// The primary key's name.
        pk: Name,
    },
    /// The primary key's property has a type keys cannot have.
    #[error("primary key `{pk}` must be int, string or object_id (nullable or not), not {ty}")]
    PrimaryKeyType {
        /// The primary key's name.
        pk: Name,
        /// Its declared type.
        ty: PropType,
    },
    /// Two definitions of the type have different primary keys.
    #[error(
        "primary key {} conflicts with {}",
        describe_pk(new),
        describe_pk(existing)
    )]
    PrimaryKey {
        /// The primary key (name and type) of the definition being added.
        new: Option<(Name, PropType)>,
        /// The primary key of the existing (or concurrent) definition.
        existing: Option<(Name, PropType)>,
    },
    /// Two definitions give a property different types.
    #[error("property `{prop}` is {new} here but {existing} in the other definition")]
    PropertyType {
        /// The property.
        prop: Name,
        /// Its type in the definition being added.
        new: PropType,
        /// Its type in the existing (or concurrent) definition.
        existing: PropType,
    },
}

/// Why a list instruction's ids do not fit the list's merge metadata.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ListProblem {
    /// A placement names a parent node the list does not have.
    #[error("unknown list node {0}")]
    UnknownNode(OpId),
    /// The id names no element of the list.
    #[error("unknown list element {0}")]
    UnknownElement(OpId),
    /// A node with this id is already registered.
    #[error("list node {0} already exists")]
    DuplicateNode(OpId),
    /// The id is a move's position node, given where an element id is needed.
    #[error("{0} is a moved position, not a list element")]
    NotAnElement(OpId),
    /// Only a visible element can be moved or set by a writer.
    #[error("list element {0} is not visible")]
    NotVisible(OpId),
    /// The element was erased already.
    #[error("list element {0} is already erased")]
    Erased(OpId),
    /// A placement on the left of the root, which only has right children.
    #[error("the root of a list has no left side")]
    LeftOfRoot,
    /// The list holds as many positions as it can address.
    #[error("the list holds the maximum number of positions")]
    Full,
    /// The store and the merge metadata disagree about the list (a store that does not keep
    /// the [`crate::Store`] contract).
    #[error("the store and the merge metadata disagree at index {index}")]
    Inconsistent {
        /// The index in question.
        index: u64,
    },
}

impl Error {
    /// The innermost error, unwrapping [`Error::InInstruction`].
    pub fn root(&self) -> &Error {
        match self {
            Error::InInstruction { source, .. } => source.root(),
            other => other,
        }
    }

    /// [`Error::MissingObject`] for `ty[key]`.
    pub(crate) fn missing(ty: &str, key: &ObjKey) -> Error {
        Error::MissingObject {
            obj: ObjRef::new(ty, key.clone()),
        }
    }

    /// [`Error::IndexOutOfRange`] for `index` in `list`, of length `len`.
    pub(crate) fn out_of_range(list: PropRef, index: usize, len: usize) -> Error {
        Error::IndexOutOfRange {
            list,
            index: index as u64,
            len: len as u64,
        }
    }
}

fn describe(t: &PropType) -> String {
    if t.list {
        format!("an element of {t}")
    } else {
        t.to_string()
    }
}

fn expected_key(t: Option<&PropType>) -> String {
    match t {
        None => "objects of this type have engine ids (\"peer:seq\")".to_string(),
        Some(t) => format!("the primary key is {t}"),
    }
}

fn describe_pk(pk: &Option<(Name, PropType)>) -> String {
    match pk {
        Some((name, t)) => format!("`{name}` ({t})"),
        None => "(none)".to_string(),
    }
}
