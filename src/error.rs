//! Errors. Every error says what was wrong and where (type, property, object, index), so that
//! a rejected write or a rejected changeset can be diagnosed from the message alone.

use thiserror::Error;

/// An error applying a write or an instruction to a replica, or changing its schema.
///
/// A failing write never changes anything: the store and the merge metadata are left exactly as
/// they were before the write (or the whole changeset) was attempted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// The type is not in the schema.
    #[error("unknown type `{ty}`")]
    UnknownType {
        /// The type name.
        ty: String,
    },
    /// The type has no such property.
    #[error("type `{ty}` has no property `{prop}`")]
    UnknownProperty {
        /// The type name.
        ty: String,
        /// The property name.
        prop: String,
    },
    /// A value of the wrong kind was written to a property or list.
    #[error("{ty}.{prop}: expected {expected}, got {found}")]
    TypeMismatch {
        /// The type name.
        ty: String,
        /// The property name.
        prop: String,
        /// The property's declared type.
        expected: String,
        /// What was written instead.
        found: String,
    },
    /// Null was written to a required property or to a list whose elements are required.
    #[error("{ty}.{prop} is required and cannot be set to null")]
    NullNotAllowed {
        /// The type name.
        ty: String,
        /// The property name.
        prop: String,
    },
    /// A list index was outside the list.
    #[error("{ty}[{key}].{prop}: index {index} is out of range for a list of length {len}")]
    IndexOutOfRange {
        /// The type name.
        ty: String,
        /// The object's key.
        key: String,
        /// The list property.
        prop: String,
        /// The offending index.
        index: u64,
        /// The list's length.
        len: u64,
    },
    /// The object does not exist.
    #[error("no object {key} of type `{ty}`")]
    MissingObject {
        /// The type name.
        ty: String,
        /// The object's key.
        key: String,
    },
    /// An object with this key already exists where a new one was required.
    #[error("object {key} of type `{ty}` already exists")]
    DuplicateObject {
        /// The type name.
        ty: String,
        /// The object's key.
        key: String,
    },
    /// A schema change conflicts with the existing definition of a type or property.
    #[error("schema mismatch on `{ty}`: {detail}")]
    SchemaMismatch {
        /// The type name.
        ty: String,
        /// What conflicts.
        detail: String,
    },
    /// The name is reserved for the engine (type names starting with `__`).
    #[error("the type name `{name}` is reserved for the engine (names starting with `__`)")]
    ReservedName {
        /// The offending name.
        name: String,
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
        reason: String,
    },
    /// An object key does not fit the type's primary key.
    #[error("invalid key {key} for type `{ty}`: {detail}")]
    InvalidKey {
        /// The type name.
        ty: String,
        /// The key.
        key: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The primary key property of an object cannot be written.
    #[error("{ty}.{prop} is the primary key and cannot be changed")]
    PrimaryKeyImmutable {
        /// The type name.
        ty: String,
        /// The property name.
        prop: String,
    },
    /// A list operation was used on a property that is not a list.
    #[error("{ty}.{prop} is not a list")]
    NotAList {
        /// The type name.
        ty: String,
        /// The property name.
        prop: String,
    },
    /// A scalar operation was used on a list property.
    #[error("{ty}.{prop} is a list; use the list operations")]
    IsAList {
        /// The type name.
        ty: String,
        /// The property name.
        prop: String,
    },
    /// add_int on a property that is not an int.
    #[error("{ty}.{prop} is not an int property, so add_int does not apply")]
    NotAnInt {
        /// The type name.
        ty: String,
        /// The property name.
        prop: String,
    },
    /// A list instruction names an element or position the replica does not know, or reuses one.
    #[error("{ty}[{key}].{prop}: {detail}")]
    BadListReference {
        /// The type name.
        ty: String,
        /// The object's key.
        key: String,
        /// The list property.
        prop: String,
        /// What is wrong.
        detail: String,
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

impl Error {
    /// The innermost error, unwrapping [`Error::InInstruction`].
    pub fn root(&self) -> &Error {
        match self {
            Error::InInstruction { source, .. } => source.root(),
            other => other,
        }
    }
}
