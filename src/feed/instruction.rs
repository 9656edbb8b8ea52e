//! The feed's instructions in the source documents' Adapter API JSON shape (spec/feed.md), and
//! how they are made: from the effects a history entry had on the feed's replica
//! (`translate`), and from a whole state (`state_instructions`).
//!
//! Instructions describe effects, not the changeset as written: an instruction that lost a
//! conflict is not there, list indices are where the element was in the realm's list when
//! the entry was applied, and the links removed by a deletion are instructions of their own.

use crate::json::{key_to_json, value_to_json};
use crate::model::{
    is_reserved, ElemType, Error, Name, ObjRef, ObjectType, PropType, ScalarKind, Value,
};
use crate::observe::Event;
use crate::store::Store;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Property names to values, in JSON (spec/scenario-format.md, "Values"; a link is the
/// target's key).
pub type Values = IndexMap<Name, Json>;

/// A property's type as Realm.ObjectSchema writes it: `{"type": "int", "optional": false}`,
/// `{"type": "object", "objectType": "Dog", "optional": true}` for a link, `{"type": "list",
/// "objectType": "string", "optional": false}` for a list (`objectType` the element's type,
/// `optional` whether elements may be null).
///
/// ```
/// use objsync::feed::FeedProperty;
/// use objsync::PropType;
///
/// let tags = PropType::parse("list<string?>")?;
/// let json = serde_json::to_string(&FeedProperty::from(&tags)).unwrap();
/// assert_eq!(json, r#"{"type":"list","objectType":"string","optional":true}"#);
/// let back: FeedProperty = serde_json::from_str(&json).unwrap();
/// assert_eq!(back.prop_type()?, tags);
/// # Ok::<(), objsync::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedProperty {
    /// `int`, `bool`, `string`, `float`, `double`, `date`, `data`, `objectId`, `decimal128`,
    /// `object` (a link) or `list`.
    #[serde(rename = "type")]
    pub ty: String,
    /// For a link, the target type; for a list, the element's type (a scalar type name as in
    /// `type`, or the target type of a list of links).
    #[serde(
        rename = "objectType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub object_type: Option<Name>,
    /// Whether the value (for a list, each element) may be null.
    #[serde(default)]
    pub optional: bool,
}

/// Realm.ObjectSchema's names of the scalar kinds, in [`ScalarKind`]'s order.
const REALM_NAMES: [(ScalarKind, &str); 9] = [
    (ScalarKind::Int, "int"),
    (ScalarKind::Bool, "bool"),
    (ScalarKind::String, "string"),
    (ScalarKind::Float, "float"),
    (ScalarKind::Double, "double"),
    (ScalarKind::Date, "date"),
    (ScalarKind::Data, "data"),
    (ScalarKind::ObjectId, "objectId"),
    (ScalarKind::Decimal, "decimal128"),
];

fn realm_name(kind: ScalarKind) -> &'static str {
    (REALM_NAMES.iter())
        .find(|(k, _)| *k == kind)
        .map_or("object", |(_, n)| n)
}

fn scalar_kind(name: &str) -> Option<ScalarKind> {
    (REALM_NAMES.iter())
        .find(|(_, n)| *n == name)
        .map(|(k, _)| *k)
}

impl From<&PropType> for FeedProperty {
    fn from(pt: &PropType) -> FeedProperty {
        let (ty, object_type) = match (&pt.elem, pt.list) {
            (ElemType::Scalar { kind, .. }, false) => (realm_name(*kind), None),
            (ElemType::Scalar { kind, .. }, true) => ("list", Some(realm_name(*kind).into())),
            (ElemType::Link { target }, false) => ("object", Some(target.clone())),
            (ElemType::Link { target }, true) => ("list", Some(target.clone())),
        };
        let optional = match &pt.elem {
            ElemType::Scalar { nullable, .. } => *nullable,
            ElemType::Link { .. } => !pt.list,
        };
        FeedProperty {
            ty: ty.to_string(),
            object_type,
            optional,
        }
    }
}

impl FeedProperty {
    /// The property type this describes, or [`Error::InvalidPropertyType`].
    pub fn prop_type(&self) -> Result<PropType, Error> {
        let bad = |reason: &'static str| Error::InvalidPropertyType {
            text: serde_json::to_string(self).unwrap_or_default(),
            reason,
        };
        let elem = |name: &str| match scalar_kind(name) {
            Some(kind) => Ok(ElemType::Scalar {
                kind,
                nullable: self.optional,
            }),
            None if self.optional => Err(bad("a list of links cannot hold null")),
            None => Ok(ElemType::Link {
                target: name.into(),
            }),
        };
        let target = self.object_type.as_deref();
        match (self.ty.as_str(), target) {
            ("list", Some(t)) => Ok(PropType::list_of(elem(t)?)),
            ("object", Some(t)) if self.optional => Ok(PropType::link(t)),
            ("object", Some(_)) => Err(bad("a link is always optional")),
            ("list" | "object", None) => Err(bad("objectType is missing")),
            (name, _) => match scalar_kind(name) {
                Some(kind) => Ok(PropType::scalar(kind, self.optional)),
                None => Err(bad("unknown type")),
            },
        }
    }
}

/// The value of a list element: `value` for a list of values, `object_identity` (the target's
/// key) for a list of links.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Element {
    /// An element of a list of values.
    #[serde(rename = "value")]
    Value(Json),
    /// An element of a list of links: the target object's key.
    #[serde(rename = "object_identity")]
    Object(Json),
}

impl From<&Value> for Element {
    fn from(v: &Value) -> Element {
        match v {
            Value::Link(key) => Element::Object(key_to_json(key)),
            other => Element::Value(value_to_json(other)),
        }
    }
}

/// One instruction of the feed, in the Adapter API's JSON shape: `{"type": "INSERT",
/// "object_type": ..., "identity": ..., ...}` (spec/feed.md has every field).
///
/// `identity` is the object's key: its primary key in its JSON form, or the engine id string
/// `"peer:seq"` for types without a primary key. `CLEAR` and `CHANGE_IDENTITY` never occur: a
/// clear deletes the objects its writer saw (each a `DELETE`; objects created concurrently
/// survive it), and objects never change identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FeedInstruction {
    /// A new type.
    AddType {
        /// The type.
        object_type: Name,
        /// Its primary-key property (`null` for a type whose objects have engine ids).
        primary_key: Option<Name>,
        /// Its properties, the primary key included.
        properties: IndexMap<Name, FeedProperty>,
    },
    /// New properties of an existing type; existing objects hold each one's default.
    AddProperties {
        /// The type.
        object_type: Name,
        /// The new properties.
        properties: IndexMap<Name, FeedProperty>,
    },
    /// A new object: `values` are all its properties but the primary key and the lists (at
    /// their defaults, or as written in the same transaction right after).
    Insert {
        /// The type.
        object_type: Name,
        /// The object's key.
        identity: Json,
        /// Its property values.
        values: Values,
    },
    /// New values of properties of an object (a counter increment gives the new value; a
    /// link whose target was deleted, `null`).
    Set {
        /// The type.
        object_type: Name,
        /// The object's key.
        identity: Json,
        /// The properties written and their new values.
        values: Values,
    },
    /// An object deleted, with its lists. The links to it were removed just before (`SET`
    /// to `null`, `LIST_ERASE`).
    Delete {
        /// The type.
        object_type: Name,
        /// The object's key.
        identity: Json,
    },
    /// The element at `list_index` of a list was given a new value.
    ListSet {
        /// The list's object's type.
        object_type: Name,
        /// The list's object's key.
        identity: Json,
        /// The list property.
        property: Name,
        /// The element's index.
        list_index: usize,
        /// The new value.
        #[serde(flatten)]
        element: Element,
    },
    /// An element inserted so that it is at `list_index`.
    ListInsert {
        /// The list's object's type.
        object_type: Name,
        /// The list's object's key.
        identity: Json,
        /// The list property.
        property: Name,
        /// The new element's index.
        list_index: usize,
        /// The new element.
        #[serde(flatten)]
        element: Element,
    },
    /// The element at `list_index` removed (for a list of links, the target object stays).
    ListErase {
        /// The list's object's type.
        object_type: Name,
        /// The list's object's key.
        identity: Json,
        /// The list property.
        property: Name,
        /// The element's index.
        list_index: usize,
    },
    /// The element at `list_index` moved so that it is at `new_index` (an addition to the
    /// Adapter API's set: objsync's lists have moves).
    ListMove {
        /// The list's object's type.
        object_type: Name,
        /// The list's object's key.
        identity: Json,
        /// The list property.
        property: Name,
        /// The element's index before the move.
        list_index: usize,
        /// Its index after.
        new_index: usize,
    },
    /// Every element of a list removed.
    ListClear {
        /// The list's object's type.
        object_type: Name,
        /// The list's object's key.
        identity: Json,
        /// The list property.
        property: Name,
    },
}

fn properties<'p>(
    props: impl Iterator<Item = (&'p Name, &'p PropType)>,
) -> IndexMap<Name, FeedProperty> {
    props
        .map(|(n, t)| (n.clone(), FeedProperty::from(t)))
        .collect()
}

fn json(value: Option<Value>) -> Json {
    value.as_ref().map_or(Json::Null, value_to_json)
}

/// The instructions for the effects of one history entry, in order. A write to an object
/// right after its `INSERT` or `SET` joins that instruction's values.
pub(super) fn translate(events: Vec<Event>) -> Vec<FeedInstruction> {
    let mut out: Vec<FeedInstruction> = Vec::with_capacity(events.len());
    let object = |obj: &ObjRef| (obj.ty.clone(), key_to_json(&obj.key));
    for event in events {
        let ty = match &event {
            Event::Schema { ty, .. } => ty,
            Event::Created { obj, .. }
            | Event::Deleted { obj }
            | Event::Set { obj, .. }
            | Event::ListInserted { obj, .. }
            | Event::ListSet { obj, .. }
            | Event::ListErased { obj, .. }
            | Event::ListMoved { obj, .. }
            | Event::ListCleared { obj, .. } => &obj.ty,
        };
        if is_reserved(ty) {
            continue;
        }
        let instruction = match event {
            Event::Schema {
                ty,
                created: true,
                primary_key,
                properties: props,
            } => FeedInstruction::AddType {
                object_type: ty,
                primary_key,
                properties: properties(props.iter().map(|p| (&p.name, &p.ty))),
            },
            Event::Schema {
                ty,
                properties: props,
                ..
            } => FeedInstruction::AddProperties {
                object_type: ty,
                properties: properties(props.iter().map(|p| (&p.name, &p.ty))),
            },
            Event::Created { obj, values } => {
                let (object_type, identity) = object(&obj);
                let values = (values.into_iter().flatten())
                    .map(|(n, v)| (n, value_to_json(&v)))
                    .collect();
                FeedInstruction::Insert {
                    object_type,
                    identity,
                    values,
                }
            }
            Event::Set { obj, prop, value } => {
                let (object_type, identity) = object(&obj);
                if let Some(
                    FeedInstruction::Insert {
                        object_type: t,
                        identity: i,
                        values,
                    }
                    | FeedInstruction::Set {
                        object_type: t,
                        identity: i,
                        values,
                    },
                ) = out.last_mut()
                {
                    if *t == object_type && *i == identity {
                        values.insert(prop, json(value));
                        continue;
                    }
                }
                let values = IndexMap::from_iter([(prop, json(value))]);
                FeedInstruction::Set {
                    object_type,
                    identity,
                    values,
                }
            }
            Event::Deleted { obj } => {
                let (object_type, identity) = object(&obj);
                FeedInstruction::Delete {
                    object_type,
                    identity,
                }
            }
            Event::ListInserted {
                obj,
                prop,
                index,
                value,
            } => {
                let (object_type, identity) = object(&obj);
                FeedInstruction::ListInsert {
                    object_type,
                    identity,
                    property: prop,
                    list_index: index,
                    element: Element::from(&value.unwrap_or(Value::Null)),
                }
            }
            Event::ListSet {
                obj,
                prop,
                index,
                value,
            } => {
                let (object_type, identity) = object(&obj);
                FeedInstruction::ListSet {
                    object_type,
                    identity,
                    property: prop,
                    list_index: index,
                    element: Element::from(&value.unwrap_or(Value::Null)),
                }
            }
            Event::ListErased { obj, prop, index } => {
                let (object_type, identity) = object(&obj);
                FeedInstruction::ListErase {
                    object_type,
                    identity,
                    property: prop,
                    list_index: index,
                }
            }
            Event::ListMoved {
                obj,
                prop,
                from,
                to,
            } => {
                let (object_type, identity) = object(&obj);
                FeedInstruction::ListMove {
                    object_type,
                    identity,
                    property: prop,
                    list_index: from,
                    new_index: to,
                }
            }
            Event::ListCleared { obj, prop, .. } => {
                let (object_type, identity) = object(&obj);
                FeedInstruction::ListClear {
                    object_type,
                    identity,
                    property: prop,
                }
            }
        };
        out.push(instruction);
    }
    out
}

/// The instructions that build `store`'s state from nothing: every type (`ADD_TYPE`, in
/// schema order, so link targets come first), every object with its values but links and
/// lists (`INSERT`), then the links (`SET`), then the lists (`LIST_INSERT`s), so that no
/// instruction names an object before its `INSERT`. The store is read as snapshots read it: a
/// store that cannot answer for an object it listed gives nulls and empty lists.
pub(super) fn state_instructions<S: Store>(store: &S) -> Vec<FeedInstruction> {
    let types: Vec<&ObjectType> = (store.schema().types())
        .filter(|d| !is_reserved(&d.name))
        .collect();
    let mut out: Vec<FeedInstruction> = (types.iter())
        .map(|def| FeedInstruction::AddType {
            object_type: def.name.clone(),
            primary_key: def.primary_key.clone(),
            properties: properties(def.properties.iter()),
        })
        .collect();
    // The scalar properties of a type but its primary key: the links, or the others.
    let scalars = |def: &'_ ObjectType, links: bool| -> Vec<Name> {
        (def.properties.iter())
            .filter(|(n, t)| {
                !t.list
                    && t.link_target().is_some() == links
                    && def.primary_key.as_ref() != Some(*n)
            })
            .map(|(n, _)| n.clone())
            .collect()
    };
    let mut links = Vec::new();
    let mut lists = Vec::new();
    for def in &types {
        let (plain, linked) = (scalars(def, false), scalars(def, true));
        for key in store.objects(&def.name).unwrap_or_default() {
            let identity = key_to_json(&key);
            let mut values = Values::new();
            for p in &plain {
                let v = store.get(&def.name, &key, p).unwrap_or(Value::Null);
                values.insert(p.clone(), value_to_json(&v));
            }
            let mut set = Values::new();
            for p in &linked {
                let v = store.get(&def.name, &key, p).unwrap_or(Value::Null);
                if !v.is_null() {
                    set.insert(p.clone(), value_to_json(&v));
                }
            }
            if !set.is_empty() {
                links.push(FeedInstruction::Set {
                    object_type: def.name.clone(),
                    identity: identity.clone(),
                    values: set,
                });
            }
            for (prop, _) in def.properties.iter().filter(|(_, t)| t.list) {
                let elements = store.list(&def.name, &key, prop).unwrap_or_default();
                for (i, v) in elements.iter().enumerate() {
                    lists.push(FeedInstruction::ListInsert {
                        object_type: def.name.clone(),
                        identity: identity.clone(),
                        property: prop.clone(),
                        list_index: i,
                        element: Element::from(v),
                    });
                }
            }
            out.push(FeedInstruction::Insert {
                object_type: def.name.clone(),
                identity,
                values,
            });
        }
    }
    out.extend(links);
    out.extend(lists);
    out
}
