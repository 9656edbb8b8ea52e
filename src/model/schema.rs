//! The schema: object types, their properties and primary keys, and the additive-only rules for
//! changing it.
//!
//! A schema only grows. `add_type` and `add_properties` merge with what is there: a definition
//! that matches the existing one (or adds new properties to it) is accepted, and one that
//! contradicts it (different property type, nullability, link target or primary key) is a
//! [`Error::SchemaMismatch`]. Type names starting with `__` are reserved for the engine; the
//! user-facing transaction API refuses them.

use super::error::{Error, SchemaConflict};
use super::value::{ObjKey, ObjectId, ScalarKind, Value};
use hashbrown::DefaultHashBuilder;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

/// A type or property name. Cheap to clone.
pub type Name = Arc<str>;

/// A type's properties by name, in schema order. Every instruction looks its type and property
/// up by name, so these maps use hashbrown's fast hasher rather than SipHash.
pub type Properties = IndexMap<Name, PropType, DefaultHashBuilder>;

/// Longest accepted type or property name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Checks that a type or property name is acceptable (non-empty, at most
/// [`MAX_NAME_LEN`] bytes, no control characters).
pub fn check_name(name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "names must not be empty"
    } else if name.len() > MAX_NAME_LEN {
        "names are at most 255 bytes"
    } else if name.chars().any(char::is_control) {
        "names must not contain control characters"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// Whether a type name is reserved for the engine.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with("__")
}

/// What a property (or each element of a list property) holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ElemType {
    /// A scalar of the given kind (never [`ScalarKind::Link`]).
    Scalar {
        /// The kind.
        kind: ScalarKind,
        /// Whether null is allowed.
        nullable: bool,
    },
    /// A link to an object of the target type. A link property is always nullable; a list of
    /// links never holds null.
    Link {
        /// The target type's name.
        target: Name,
    },
}

/// The declared type of a property.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PropType {
    /// What a value (or each list element) holds.
    pub elem: ElemType,
    /// Whether the property is a list of `elem`.
    pub list: bool,
}

impl PropType {
    /// A scalar property type.
    pub fn scalar(kind: ScalarKind, nullable: bool) -> PropType {
        PropType {
            elem: ElemType::Scalar { kind, nullable },
            list: false,
        }
    }

    /// A link property type.
    pub fn link(target: &str) -> PropType {
        PropType {
            elem: ElemType::Link {
                target: target.into(),
            },
            list: false,
        }
    }

    /// A list of the given element type.
    pub fn list_of(elem: ElemType) -> PropType {
        PropType { elem, list: true }
    }

    /// Parses the scenario format's type strings: `int`, `string?`, `link<T>`, `list<X>` with X a
    /// scalar type string (with or without `?`) or `link<T>`.
    ///
    /// `Display` writes the same text back, so a type survives a round trip through the scenario
    /// format and error messages show types as they were declared.
    ///
    /// ```
    /// use objsync::{PropType, ScalarKind};
    ///
    /// let age = PropType::parse("int?")?;
    /// assert_eq!((age.kind(), age.nullable()), (ScalarKind::Int, true));
    /// let friends = PropType::parse("list<link<Person>>")?;
    /// assert!(friends.list);
    /// assert_eq!(friends.link_target().map(|t| &**t), Some("Person"));
    /// assert_eq!(friends.to_string(), "list<link<Person>>");
    /// assert!(PropType::parse("list<list<int>>").is_err());
    /// # Ok::<(), objsync::Error>(())
    /// ```
    pub fn parse(text: &str) -> Result<PropType, Error> {
        let bad = |reason: &'static str| Error::InvalidPropertyType {
            text: text.to_string(),
            reason,
        };
        if let Some(inner) = text.strip_prefix("list<").and_then(|s| s.strip_suffix('>')) {
            let elem = PropType::parse(inner).map_err(|_| bad("bad list element type"))?;
            if elem.list {
                return Err(bad("lists of lists are not supported"));
            }
            return Ok(PropType::list_of(elem.elem));
        }
        if let Some(target) = text.strip_prefix("link<").and_then(|s| s.strip_suffix('>')) {
            check_name(target).map_err(|_| bad("bad link target name"))?;
            return Ok(PropType::link(target));
        }
        let (base, nullable) = match text.strip_suffix('?') {
            Some(base) => (base, true),
            None => (text, false),
        };
        let kind = ScalarKind::from_name(base).ok_or_else(|| bad("unknown type"))?;
        Ok(PropType::scalar(kind, nullable))
    }

    /// Whether a null value is acceptable for a scalar property (lists are never null).
    pub fn nullable(&self) -> bool {
        match &self.elem {
            ElemType::Scalar { nullable, .. } => *nullable,
            ElemType::Link { .. } => !self.list,
        }
    }

    /// The kind of each value.
    pub fn kind(&self) -> ScalarKind {
        match &self.elem {
            ElemType::Scalar { kind, .. } => *kind,
            ElemType::Link { .. } => ScalarKind::Link,
        }
    }

    /// The link target, for links and lists of links.
    pub fn link_target(&self) -> Option<&Name> {
        match &self.elem {
            ElemType::Link { target } => Some(target),
            ElemType::Scalar { .. } => None,
        }
    }

    /// The value a required scalar property of a new object starts with (null for nullable
    /// properties and links). Lists start empty and have no default value.
    ///
    /// An object is created with every property at its default, so a newly inserted object
    /// reads the same on every replica before anyone has set anything.
    ///
    /// ```
    /// use objsync::{PropType, Value};
    ///
    /// assert_eq!(PropType::parse("int")?.default_value(), Value::Int(0));
    /// assert_eq!(PropType::parse("string")?.default_value(), Value::from(""));
    /// assert_eq!(PropType::parse("int?")?.default_value(), Value::Null);
    /// assert_eq!(PropType::parse("link<Person>")?.default_value(), Value::Null);
    /// # Ok::<(), objsync::Error>(())
    /// ```
    pub fn default_value(&self) -> Value {
        if self.nullable() {
            return Value::Null;
        }
        match self.kind() {
            ScalarKind::Int => Value::Int(0),
            ScalarKind::Bool => Value::Bool(false),
            ScalarKind::String => Value::String("".into()),
            ScalarKind::Float => Value::Float(0.0),
            ScalarKind::Double => Value::Double(0.0),
            ScalarKind::Date => Value::Date(0),
            ScalarKind::Data => Value::Data(Arc::from(&[][..])),
            ScalarKind::ObjectId => Value::ObjectId(ObjectId([0; 12])),
            ScalarKind::Decimal => Value::Decimal(super::decimal::Decimal128::zero()),
            ScalarKind::Link => Value::Null,
        }
    }

    /// Refuses a list operation on `ty.prop` unless this, its type, is a list.
    #[inline]
    pub(crate) fn expect_list(&self, ty: &str, prop: &str) -> Result<(), Error> {
        match self.list {
            true => Ok(()),
            false => Err(Error::NotAList {
                ty: ty.into(),
                prop: prop.into(),
            }),
        }
    }

    /// Checks a value for a scalar property, or for one element of a list property.
    /// Link targets are checked by the store, which knows which objects exist.
    pub fn check(&self, ty: &str, prop: &str, value: &Value) -> Result<(), Error> {
        match value.kind() {
            None if self.nullable() || (self.list && self.elem_nullable()) => Ok(()),
            None => Err(Error::NullNotAllowed {
                ty: ty.into(),
                prop: prop.into(),
            }),
            Some(kind) if kind == self.kind() => Ok(()),
            Some(found) => Err(Error::TypeMismatch {
                ty: ty.into(),
                prop: prop.into(),
                expected: self.clone(),
                found,
            }),
        }
    }

    fn elem_nullable(&self) -> bool {
        matches!(self.elem, ElemType::Scalar { nullable: true, .. })
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElemType::Scalar { kind, nullable } => {
                write!(f, "{}{}", kind.name(), if *nullable { "?" } else { "" })
            }
            ElemType::Link { target } => write!(f, "link<{target}>"),
        }
    }
}

impl fmt::Display for PropType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.list {
            write!(f, "list<{}>", self.elem)
        } else {
            write!(f, "{}", self.elem)
        }
    }
}

/// A named property of an object type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Property {
    /// The property name.
    pub name: Name,
    /// Its type.
    pub ty: PropType,
}

impl Property {
    /// A property.
    pub fn new(name: &str, ty: PropType) -> Property {
        Property {
            name: name.into(),
            ty,
        }
    }
}

/// An object type: its name, its properties and (usually) its primary key.
///
/// Two definitions are equal when they name the same type, primary key and properties, in any
/// order.
#[derive(Clone, Debug, Eq, Serialize, Deserialize)]
pub struct ObjectType {
    /// The type name.
    pub name: Name,
    /// The primary-key property, which is also listed in `properties`. `None` for types whose
    /// objects get engine ids.
    pub primary_key: Option<Name>,
    /// The properties in declaration order (the primary key included).
    pub properties: Properties,
}

impl PartialEq for ObjectType {
    fn eq(&self, other: &ObjectType) -> bool {
        // A definition is nearly always compared with one declared in the same order (every
        // device of an app declares its schema alike): the pairwise walk settles that without
        // a lookup per property, and only a different order falls back to the map comparison.
        self.name == other.name
            && self.primary_key == other.primary_key
            && (self.properties.iter().eq(&other.properties) || self.properties == other.properties)
    }
}

/// What [`ObjectType::build`] makes of a property declared twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repeats {
    Fold,
    Refuse,
}

impl ObjectType {
    /// Builds a type definition, checking names, the primary key and the property list.
    ///
    /// The primary key must be one of the properties and an int, string or object id: it is the
    /// object's identity on every replica, so it has to be a value that compares exactly.
    ///
    /// ```
    /// use objsync::{ObjectType, PropType, Property};
    ///
    /// let id = Property::new("id", PropType::parse("int")?);
    /// let person = ObjectType::new("Person", Some("id"), [id.clone()])?;
    /// assert_eq!(person.primary_key_type(), Some(&id.ty));
    /// assert!(ObjectType::new("Person", Some("email"), [id]).is_err());
    /// let x = Property::new("x", PropType::parse("double")?);
    /// assert!(ObjectType::new("Point", Some("x"), [x.clone()]).is_err());
    /// // Without a primary key, objects get engine ids from `Transaction::create`.
    /// assert_eq!(ObjectType::new("Point", None, [x])?.primary_key, None);
    /// # Ok::<(), objsync::Error>(())
    /// ```
    pub fn new(
        name: &str,
        primary_key: Option<&str>,
        properties: impl IntoIterator<Item = Property>,
    ) -> Result<ObjectType, Error> {
        ObjectType::build(
            name.into(),
            primary_key.map(Name::from),
            properties,
            Repeats::Fold,
        )
    }

    /// [`ObjectType::new`] from names already shared (a decoder's), with the choice of what a
    /// property declared twice means: `Fold` takes an identical repeat as one declaration, as
    /// a hand-written definition may; `Refuse` refuses any repeat, as the wire format must, or
    /// one definition would have two encodings.
    pub(crate) fn build(
        name: Name,
        primary_key: Option<Name>,
        properties: impl IntoIterator<Item = Property>,
        repeats: Repeats,
    ) -> Result<ObjectType, Error> {
        check_name(&name)?;
        let properties = properties.into_iter();
        let mut map =
            Properties::with_capacity_and_hasher(properties.size_hint().0, Default::default());
        for p in properties {
            check_name(&p.name)?;
            if let Some(previous) = map.insert(p.name.clone(), p.ty.clone()) {
                if previous != p.ty || repeats == Repeats::Refuse {
                    return Err(Error::SchemaMismatch {
                        ty: name,
                        conflict: SchemaConflict::DeclaredTwice { prop: p.name },
                    });
                }
            }
        }
        let def = ObjectType {
            name,
            primary_key,
            properties: map,
        };
        def.check_primary_key()?;
        Ok(def)
    }

    fn check_primary_key(&self) -> Result<(), Error> {
        let Some(pk) = &self.primary_key else {
            return Ok(());
        };
        let mismatch = |conflict| Error::SchemaMismatch {
            ty: self.name.clone(),
            conflict,
        };
        let ty = self
            .properties
            .get(pk)
            .ok_or_else(|| mismatch(SchemaConflict::PrimaryKeyMissing { pk: pk.clone() }))?;
        let ok = !ty.list
            && matches!(
                ty.elem,
                ElemType::Scalar {
                    kind: ScalarKind::Int | ScalarKind::String | ScalarKind::ObjectId,
                    ..
                }
            );
        if ok {
            Ok(())
        } else {
            Err(mismatch(SchemaConflict::PrimaryKeyType {
                pk: pk.clone(),
                ty: ty.clone(),
            }))
        }
    }

    /// The primary key's name and type, if the type has one.
    pub fn primary_key_def(&self) -> Option<(Name, PropType)> {
        let pk = self.primary_key.as_ref()?;
        Some((pk.clone(), self.properties.get(pk)?.clone()))
    }

    /// The primary key's property type, if the type has one.
    pub fn primary_key_type(&self) -> Option<&PropType> {
        self.primary_key
            .as_ref()
            .and_then(|pk| self.properties.get(pk))
    }

    /// Looks up a property type, with a typed error naming the type and property.
    pub fn property(&self, prop: &str) -> Result<&PropType, Error> {
        self.property_entry(prop).map(|(_, pt)| pt)
    }

    /// [`ObjectType::property`] with the schema's own name of the property.
    #[inline]
    pub(crate) fn property_entry(&self, prop: &str) -> Result<(&Name, &PropType), Error> {
        (self.properties.get_key_value(prop)).ok_or_else(|| Error::UnknownProperty {
            ty: self.name.clone(),
            prop: prop.into(),
        })
    }

    /// Checks that a key fits this type: the primary key's type, or an engine id when the type
    /// has no primary key.
    pub fn check_key(&self, key: &ObjKey) -> Result<(), Error> {
        let fits = match (self.primary_key_type(), key) {
            (None, ObjKey::Engine(_)) => true,
            (None, _) => false,
            (Some(_), ObjKey::Engine(_)) => false,
            (Some(t), ObjKey::Null) => t.nullable(),
            (Some(t), ObjKey::Int(_)) => t.kind() == ScalarKind::Int,
            (Some(t), ObjKey::String(_)) => t.kind() == ScalarKind::String,
            (Some(t), ObjKey::ObjectId(_)) => t.kind() == ScalarKind::ObjectId,
        };
        if fits {
            return Ok(());
        }
        Err(Error::InvalidKey {
            ty: self.name.clone(),
            key: key.clone(),
            expected: self.primary_key_type().cloned(),
        })
    }

    /// The primary key value of an object with this key, as a property value.
    pub fn key_value(&self, key: &ObjKey) -> Value {
        match key {
            ObjKey::Null | ObjKey::Engine(_) => Value::Null,
            ObjKey::Int(i) => Value::Int(*i),
            ObjKey::String(s) => Value::String(s.clone()),
            ObjKey::ObjectId(o) => Value::ObjectId(*o),
        }
    }
}

/// The set of object types of a realm.
///
/// A schema only grows, so that replicas that changed it offline can always merge: adding a
/// type again merges its new properties in, and a definition that contradicts the existing one
/// is refused rather than migrated.
///
/// ```
/// use objsync::{Error, ObjectType, PropType, Property, Schema};
///
/// let id = Property::new("id", PropType::parse("int")?);
/// let name = Property::new("name", PropType::parse("string")?);
/// let mut schema = Schema::new();
/// schema.add_type(&ObjectType::new("Person", Some("id"), [id.clone()])?)?;
/// let added = schema.add_type(&ObjectType::new("Person", Some("id"), [id, name])?)?;
/// assert_eq!(added.len(), 1);
/// let text_id = Property::new("id", PropType::parse("string")?);
/// let err = schema.add_type(&ObjectType::new("Person", Some("id"), [text_id])?).unwrap_err();
/// assert!(matches!(err, Error::SchemaMismatch { .. }));
/// assert_eq!(schema.get("Person")?.properties.len(), 2);
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    types: IndexMap<Name, ObjectType, DefaultHashBuilder>,
    /// The last type [`Schema::lookup`] found.
    #[serde(skip)]
    hint: Hint,
}

/// A position in an indexed map that a lookup by name tries before hashing the name: the
/// instructions of a changeset come in runs on one type and property, so the last position
/// found is usually the next one wanted. A lookup checks the name at the hinted position, so a
/// hint that points elsewhere (at another name, into another type's properties, or past a map a
/// rollback shrank) costs one comparison and is never wrong. A relaxed atomic rather than a `Cell`, so that what holds one stays `Sync`; it carries
/// no state a reader could observe, so it compares equal to every other hint.
#[derive(Debug, Default)]
pub(crate) struct Hint(AtomicU32);

impl Hint {
    /// Looks `name` up in `map`, trying the hinted position first; returns its position and
    /// value, and remembers the position.
    pub(crate) fn find<'m, V>(
        &self,
        map: &'m IndexMap<Name, V, DefaultHashBuilder>,
        name: &str,
    ) -> Option<(usize, &'m V)> {
        let at = self.0.load(Relaxed) as usize;
        if let Some((k, v)) = map.get_index(at) {
            if **k == *name {
                return Some((at, v));
            }
        }
        let (at, _, v) = map.get_full(name)?;
        self.0.store(at as u32, Relaxed);
        Some((at, v))
    }
}

impl Clone for Hint {
    fn clone(&self) -> Hint {
        Hint(AtomicU32::new(self.0.load(Relaxed)))
    }
}

impl PartialEq for Hint {
    fn eq(&self, _: &Hint) -> bool {
        true
    }
}

impl Eq for Hint {}

impl Schema {
    /// An empty schema.
    pub fn new() -> Schema {
        Schema::default()
    }

    /// The type with this name.
    pub fn get(&self, ty: &str) -> Result<&ObjectType, Error> {
        self.types
            .get(ty)
            .ok_or_else(|| Error::UnknownType { ty: ty.into() })
    }

    /// Whether the type exists.
    pub fn contains(&self, ty: &str) -> bool {
        self.types.contains_key(ty)
    }

    /// All types in the order they were added.
    pub fn types(&self) -> impl Iterator<Item = &ObjectType> {
        self.types.values()
    }

    /// The type with this name and its position in [`Schema::types`].
    pub(crate) fn lookup(&self, ty: &str) -> Result<(usize, &ObjectType), Error> {
        self.hint
            .find(&self.types, ty)
            .ok_or_else(|| Error::UnknownType { ty: ty.into() })
    }

    /// The position of a type in [`Schema::types`].
    pub fn index_of(&self, ty: &str) -> Option<usize> {
        self.types.get_index_of(ty)
    }

    /// Checks a value for property `prop` of `def`, whose type is `pt` (a scalar property, or one
    /// element of a list property): its kind and nullability, and for a link that the key fits
    /// the target type. Returns a link's target type and key, whose existence only a store can
    /// check.
    pub fn check_value<'v>(
        &self,
        def: &ObjectType,
        prop: &str,
        pt: &PropType,
        value: &'v Value,
    ) -> Result<Option<(&Name, &'v ObjKey)>, Error> {
        pt.check(&def.name, prop, value)?;
        match (pt.link_target(), value) {
            (Some(target), Value::Link(k)) => {
                let target = self.get(target)?;
                target.check_key(k)?;
                Ok(Some((&target.name, k)))
            }
            _ => Ok(None),
        }
    }

    /// What `add_type` would change: `Ok(None)` if the definition is already fully present,
    /// `Ok(Some(new_properties))` if the type is new (all its properties) or gains properties, and
    /// an error if it conflicts with the existing definition.
    pub fn plan_add_type(&self, def: &ObjectType) -> Result<Option<Vec<Property>>, Error> {
        // The common case, every device defining the schema it already has: an existing type
        // passed every check below.
        let existing = self.types.get(&def.name);
        if existing == Some(def) {
            return Ok(None);
        }
        check_name(&def.name)?;
        def.check_primary_key()?;
        match existing {
            None => {
                self.check_link_targets(def, def.properties.values())?;
                Ok(Some(
                    def.properties
                        .iter()
                        .map(|(n, t)| Property {
                            name: n.clone(),
                            ty: t.clone(),
                        })
                        .collect(),
                ))
            }
            Some(existing) => {
                if existing.primary_key_type() != def.primary_key_type()
                    || existing.primary_key != def.primary_key
                {
                    return Err(Error::SchemaMismatch {
                        ty: def.name.clone(),
                        conflict: SchemaConflict::PrimaryKey {
                            new: def.primary_key_def(),
                            existing: existing.primary_key_def(),
                        },
                    });
                }
                let props: Vec<Property> = def
                    .properties
                    .iter()
                    .map(|(n, t)| Property {
                        name: n.clone(),
                        ty: t.clone(),
                    })
                    .collect();
                self.plan_add_properties(&def.name, &props)
            }
        }
    }

    /// What `add_properties` would change: the properties that are new, or an error if one
    /// conflicts with an existing property of the same name.
    pub fn plan_add_properties(
        &self,
        ty: &str,
        props: &[Property],
    ) -> Result<Option<Vec<Property>>, Error> {
        let existing = self.get(ty)?;
        let mut new = Vec::new();
        for p in props {
            check_name(&p.name)?;
            match existing.properties.get(&p.name) {
                Some(t) if *t == p.ty => {}
                Some(t) => {
                    return Err(Error::SchemaMismatch {
                        ty: existing.name.clone(),
                        conflict: SchemaConflict::PropertyType {
                            prop: p.name.clone(),
                            new: p.ty.clone(),
                            existing: t.clone(),
                        },
                    })
                }
                None => {
                    if let Some(dup) = new.iter().find(|q: &&Property| q.name == p.name) {
                        if dup.ty != p.ty {
                            return Err(Error::SchemaMismatch {
                                ty: existing.name.clone(),
                                conflict: SchemaConflict::DeclaredTwice {
                                    prop: p.name.clone(),
                                },
                            });
                        }
                        continue;
                    }
                    new.push(p.clone())
                }
            }
        }
        self.check_link_targets(existing, new.iter().map(|p| &p.ty))?;
        Ok(if new.is_empty() { None } else { Some(new) })
    }

    fn check_link_targets<'a>(
        &self,
        def: &ObjectType,
        props: impl Iterator<Item = &'a PropType>,
    ) -> Result<(), Error> {
        for t in props {
            if let Some(target) = t.link_target() {
                if **target != *def.name && !self.types.contains_key(target) {
                    return Err(Error::UnknownType { ty: target.clone() });
                }
            }
        }
        Ok(())
    }

    /// Adds a type, or merges a definition into the existing type of the same name. Returns the
    /// properties that were added (empty if nothing changed).
    pub fn add_type(&mut self, def: &ObjectType) -> Result<Vec<Property>, Error> {
        let Some(new) = self.plan_add_type(def)? else {
            return Ok(Vec::new());
        };
        match self.types.get_mut(&def.name) {
            Some(existing) => {
                for p in &new {
                    existing.properties.insert(p.name.clone(), p.ty.clone());
                }
            }
            None => {
                self.types.insert(def.name.clone(), def.clone());
            }
        }
        Ok(new)
    }

    /// Adds properties to an existing type. Returns the properties that were added.
    pub fn add_properties(&mut self, ty: &str, props: &[Property]) -> Result<Vec<Property>, Error> {
        let Some(new) = self.plan_add_properties(ty, props)? else {
            return Ok(Vec::new());
        };
        let existing = self
            .types
            .get_mut(ty)
            .expect("plan_add_properties checked the type exists");
        for p in &new {
            existing.properties.insert(p.name.clone(), p.ty.clone());
        }
        Ok(new)
    }

    /// Removes the most recently added type (used to undo a failed transaction).
    pub(crate) fn pop_last(&mut self) {
        self.types.pop();
    }

    /// Truncates the property list of the type at `index` (used to undo a failed transaction).
    pub(crate) fn truncate_properties(&mut self, index: usize, len: usize) {
        if let Some((_, t)) = self.types.get_index_mut(index) {
            t.properties.truncate(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(name: &str) -> ObjectType {
        let id = Property::new("id", PropType::parse("int").expect("type"));
        ObjectType::new(name, Some("id"), [id]).expect("type")
    }

    /// Property order carries no meaning: definitions in either order are equal, define the
    /// same type, and redefining a type identically (in any order) changes nothing, while a
    /// definition that differs in one property type is neither equal nor accepted.
    #[test]
    fn definitions_compare_as_sets_of_properties() {
        let p = |n: &str, t: &str| Property::new(n, PropType::parse(t).expect("type"));
        let ab = ObjectType::new(
            "T",
            Some("id"),
            [p("id", "int"), p("a", "string"), p("b", "int")],
        )
        .expect("type");
        let ba = ObjectType::new(
            "T",
            Some("id"),
            [p("b", "int"), p("id", "int"), p("a", "string")],
        )
        .expect("type");
        let other = ObjectType::new(
            "T",
            Some("id"),
            [p("id", "int"), p("a", "string"), p("b", "double")],
        )
        .expect("type");
        let fewer =
            ObjectType::new("T", Some("id"), [p("id", "int"), p("a", "string")]).expect("type");
        assert_eq!(ab, ba);
        assert_ne!(ab, other);
        assert_ne!(ab, fewer);
        assert_ne!(fewer, ab);
        let mut schema = Schema::new();
        assert_eq!(schema.add_type(&ab).expect("new").len(), 3);
        assert_eq!(schema.plan_add_type(&ab), Ok(None));
        assert_eq!(schema.plan_add_type(&ba), Ok(None));
        assert!(schema.plan_add_type(&other).is_err());
        assert_eq!(schema.plan_add_type(&fewer), Ok(None));
    }

    /// A lookup finds the type by name whatever its hint holds: the last type found, another
    /// type, or a position past the end after a rollback removed the type it pointed at.
    #[test]
    fn a_hinted_lookup_is_a_lookup() {
        let mut schema = Schema::new();
        for name in ["A", "B", "C"] {
            schema.add_type(&ty(name)).expect("adds");
        }
        let find = |s: &Schema, name: &str| s.lookup(name).map(|(i, t)| (i, t.name.clone()));
        for name in ["A", "A", "C", "B", "A", "C", "C"] {
            let (i, found) = find(&schema, name).expect("found");
            assert_eq!(&*found, name);
            assert_eq!(Some(i), schema.index_of(name));
        }
        assert_eq!(find(&schema, "C").expect("found").0, 2);
        schema.pop_last();
        assert!(matches!(find(&schema, "C"), Err(Error::UnknownType { .. })));
        assert_eq!(find(&schema, "B").expect("found").0, 1);
        schema.add_type(&ty("D")).expect("adds");
        assert_eq!(find(&schema, "D").expect("found").0, 2);
        assert_eq!(find(&schema, "A").expect("found").0, 0);
        assert!(matches!(find(&schema, "E"), Err(Error::UnknownType { .. })));
        assert_eq!(
            schema.clone(),
            schema,
            "the hint is not part of a schema's value"
        );
    }
}
