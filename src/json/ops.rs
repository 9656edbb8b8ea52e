//! The JSON form of writes: the op syntax of the scenario format (spec/scenario-format.md,
//! "Ops"), in which the conformance scenarios, the reference client's `apply` command and the
//! connectors describe what a transaction does.
//!
//! An op is parsed once ([`WriteOp::from_json`]) and its values are read against the writer's
//! schema when it runs ([`WriteOp::apply`]), so one op text means the same write wherever it is
//! applied.
//!
//! ```
//! use objsync::json::{parse_ops, state_json, canonical};
//! use objsync::{PeerId, Replica};
//!
//! let ops = parse_ops(r#"[
//!     {"op": "add_type", "type": "Person", "primary_key": "id",
//!      "properties": {"id": "int", "name": "string?"}},
//!     {"op": "insert", "type": "Person", "pk": 1, "values": {"name": "Ada"}}
//! ]"#)?;
//! let mut replica = Replica::new(PeerId(1));
//! let mut tx = replica.transaction(1);
//! for op in &ops {
//!     op.apply(&mut tx)?;
//! }
//! tx.commit();
//! assert_eq!(canonical(&state_json(replica.store())?), r#"{"Person":{"1":{"name":"Ada"}}}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::{key_from_json, value_from_json};
use crate::model::{is_reserved, Error, ObjKey, ObjRef, ObjectType, PropType, Property, Value};
use crate::permissions::{self, Level, Privileges};
use crate::store::Store;
use crate::write::Transaction;
use serde_json::{Map, Value as Json};

/// Why JSON is not a write op (or an array of them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// The text is not JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// A list of ops must be a JSON array.
    #[error("ops must be a JSON array")]
    NotAnArray,
    /// An op must be a JSON object.
    #[error("an op must be an object")]
    NotAnObject,
    /// A required field is missing.
    #[error("missing \"{0}\"")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("\"{field}\" must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A property of a `properties` map has no type string.
    #[error("property \"{0}\" must have a type string")]
    PropertyType(String),
    /// The `op` names no op.
    #[error("unknown op \"{0}\"")]
    UnknownOp(String),
    /// What is wrong with the op at `index` of a list (named `op` if it has a name).
    #[error("op {index}{}: {source}", op.as_ref().map(|o| format!(" ({o})")).unwrap_or_default())]
    At {
        /// The op's position in the list (0-based).
        index: usize,
        /// Its `op` field, if it has one.
        op: Option<String>,
        /// What is wrong.
        source: Box<OpError>,
    },
}

/// One write, with its values still in JSON. See the module documentation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WriteOp {
    /// `add_type`.
    AddType {
        /// Type name.
        ty: String,
        /// Primary key property.
        primary_key: Option<String>,
        /// Property name to type string.
        properties: Vec<(String, String)>,
    },
    /// `add_properties`.
    AddProperties {
        /// Type name.
        ty: String,
        /// Property name to type string.
        properties: Vec<(String, String)>,
    },
    /// `insert` (no `pk` for types without a primary key), then the values.
    Insert {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Option<Json>,
        /// Values to set.
        values: Vec<(String, Json)>,
    },
    /// `set`.
    Set {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Json,
        /// Values to set.
        values: Vec<(String, Json)>,
        /// A default-value write.
        default: bool,
    },
    /// `add_int`.
    AddInt {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Json,
        /// Property.
        property: String,
        /// Amount.
        value: i64,
    },
    /// `delete`.
    Delete {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Json,
    },
    /// `clear`.
    Clear {
        /// Type name.
        ty: String,
    },
    /// `list_insert`, `list_set`, `list_erase`, `list_move`, `list_clear`: an op on one list.
    List {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Json,
        /// List property.
        property: String,
        /// What to do to it.
        change: ListChange,
    },
    /// `grant`: set privilege flags of a role at a level (spec/permissions.md).
    Grant {
        /// The role.
        role: String,
        /// Where.
        level: GrantLevel,
        /// The flags named, with their new values; the others keep theirs.
        privileges: Vec<(Privileges, bool)>,
    },
    /// `add_member` (`add`) or `remove_member`.
    Member {
        /// The role.
        role: String,
        /// The user id.
        user: String,
        /// Add, or remove.
        add: bool,
    },
}

/// The level a `grant` op names, with the object's key still in JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum GrantLevel {
    /// `"level": "realm"`.
    Realm,
    /// `"level": "class"` with `"type"`.
    Class(String),
    /// `"level": "object"` with `"type"` and `"pk"`.
    Object {
        /// Type name.
        ty: String,
        /// Primary key.
        pk: Json,
    },
}

/// What a [`WriteOp::List`] does to its list.
#[derive(Debug, Clone, PartialEq)]
pub enum ListChange {
    /// `list_insert` at `index`.
    Insert {
        /// Index.
        index: usize,
        /// Value.
        value: Json,
    },
    /// `list_set` at `index`.
    Set {
        /// Index.
        index: usize,
        /// Value.
        value: Json,
    },
    /// `list_erase` at `index`.
    Erase {
        /// Index.
        index: usize,
    },
    /// `list_move` from `from` to `to`.
    Move {
        /// From index.
        from: usize,
        /// To index.
        to: usize,
    },
    /// `list_clear`.
    Clear,
}

/// Typed access to an op's fields.
struct Fields<'a>(&'a Map<String, Json>);

impl<'a> Fields<'a> {
    fn get(&self, name: &'static str) -> Result<&'a Json, OpError> {
        self.0.get(name).ok_or(OpError::Missing(name))
    }

    fn str(&self, name: &'static str) -> Result<String, OpError> {
        (self.get(name)?.as_str().map(str::to_string)).ok_or(OpError::WrongType {
            field: name,
            expected: "a string",
        })
    }

    fn index(&self, name: &'static str) -> Result<usize, OpError> {
        let bad = OpError::WrongType {
            field: name,
            expected: "a non-negative integer",
        };
        let n = self.get(name)?.as_u64().ok_or(bad.clone())?;
        usize::try_from(n).map_err(|_| bad)
    }

    fn map(&self, name: &'static str) -> Result<Vec<(String, Json)>, OpError> {
        match self.get(name)? {
            Json::Object(m) => Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            _ => Err(OpError::WrongType {
                field: name,
                expected: "an object",
            }),
        }
    }

    fn optional_map(&self, name: &'static str) -> Result<Vec<(String, Json)>, OpError> {
        if self.0.contains_key(name) {
            self.map(name)
        } else {
            Ok(Vec::new())
        }
    }

    fn type_map(&self, name: &'static str) -> Result<Vec<(String, String)>, OpError> {
        (self.map(name)?.into_iter())
            .map(|(k, v)| match v {
                Json::String(s) => Ok((k, s)),
                _ => Err(OpError::PropertyType(k)),
            })
            .collect()
    }

    fn flag(&self, name: &'static str) -> Result<bool, OpError> {
        match self.0.get(name) {
            None => Ok(false),
            Some(Json::Bool(b)) => Ok(*b),
            Some(_) => Err(OpError::WrongType {
                field: name,
                expected: "a bool",
            }),
        }
    }
}

/// Parses a JSON array of ops (what one transaction of a scenario holds).
pub fn parse_ops(text: &str) -> Result<Vec<WriteOp>, OpError> {
    let json: Json = serde_json::from_str(text).map_err(|e| OpError::InvalidJson(e.to_string()))?;
    let Json::Array(ops) = json else {
        return Err(OpError::NotAnArray);
    };
    (ops.iter().enumerate())
        .map(|(index, op)| {
            WriteOp::from_json(op).map_err(|e| OpError::At {
                index,
                op: op.get("op").and_then(Json::as_str).map(str::to_string),
                source: Box::new(e),
            })
        })
        .collect()
}

impl WriteOp {
    /// Parses one op.
    pub fn from_json(json: &Json) -> Result<WriteOp, OpError> {
        let Json::Object(obj) = json else {
            return Err(OpError::NotAnObject);
        };
        let f = Fields(obj);
        let op = f.str("op")?;
        let list = |change| -> Result<WriteOp, OpError> {
            Ok(WriteOp::List {
                ty: f.str("type")?,
                pk: f.get("pk")?.clone(),
                property: f.str("property")?,
                change,
            })
        };
        Ok(match op.as_str() {
            "add_type" => WriteOp::AddType {
                ty: f.str("type")?,
                primary_key: match obj.get("primary_key") {
                    None | Some(Json::Null) => None,
                    Some(_) => Some(f.str("primary_key")?),
                },
                properties: f.type_map("properties")?,
            },
            "add_properties" => WriteOp::AddProperties {
                ty: f.str("type")?,
                properties: f.type_map("properties")?,
            },
            "insert" => WriteOp::Insert {
                ty: f.str("type")?,
                pk: obj.get("pk").cloned(),
                values: f.optional_map("values")?,
            },
            "set" => WriteOp::Set {
                ty: f.str("type")?,
                pk: f.get("pk")?.clone(),
                values: f.map("values")?,
                default: f.flag("default")?,
            },
            "add_int" => WriteOp::AddInt {
                ty: f.str("type")?,
                pk: f.get("pk")?.clone(),
                property: f.str("property")?,
                value: (f.get("value")?.as_i64()).ok_or(OpError::WrongType {
                    field: "value",
                    expected: "an integer",
                })?,
            },
            "delete" => WriteOp::Delete {
                ty: f.str("type")?,
                pk: f.get("pk")?.clone(),
            },
            "clear" => WriteOp::Clear { ty: f.str("type")? },
            "list_insert" => list(ListChange::Insert {
                index: f.index("index")?,
                value: f.get("value")?.clone(),
            })?,
            "list_set" => list(ListChange::Set {
                index: f.index("index")?,
                value: f.get("value")?.clone(),
            })?,
            "list_erase" => list(ListChange::Erase {
                index: f.index("index")?,
            })?,
            "list_move" => list(ListChange::Move {
                from: f.index("from")?,
                to: f.index("to")?,
            })?,
            "list_clear" => list(ListChange::Clear)?,
            "grant" => WriteOp::Grant {
                role: f.str("role")?,
                level: match f.str("level")?.as_str() {
                    "realm" => GrantLevel::Realm,
                    "class" => GrantLevel::Class(f.str("type")?),
                    "object" => GrantLevel::Object {
                        ty: f.str("type")?,
                        pk: f.get("pk")?.clone(),
                    },
                    _ => {
                        return Err(OpError::WrongType {
                            field: "level",
                            expected: "\"realm\", \"class\" or \"object\"",
                        })
                    }
                },
                privileges: privileges(&f)?,
            },
            "add_member" | "remove_member" => WriteOp::Member {
                role: f.str("role")?,
                user: f.str("user")?,
                add: op == "add_member",
            },
            _ => return Err(OpError::UnknownOp(op)),
        })
    }

    /// Runs the op in a transaction (atomically: an op that fails leaves nothing behind).
    pub fn apply<S: Store>(&self, tx: &mut Transaction<'_, S>) -> Result<(), Error> {
        tx.atomically(|tx| self.apply_inner(tx))
    }

    fn apply_inner<S: Store>(&self, tx: &mut Transaction<'_, S>) -> Result<(), Error> {
        match self {
            WriteOp::AddType {
                ty,
                primary_key,
                properties: props,
            } => {
                let def = ObjectType::new(ty, primary_key.as_deref(), properties(props)?)?;
                // A type with an ACL property links to the permission types.
                let links = def.properties.values().filter_map(|pt| pt.link_target());
                if links.into_iter().any(|t| is_reserved(t)) {
                    permissions::ensure_system_types(tx)?;
                }
                tx.add_type(def)
            }
            WriteOp::AddProperties {
                ty,
                properties: props,
            } => tx.add_properties(ty, properties(props)?),
            WriteOp::Insert { ty, pk, values } => {
                let key = match pk {
                    Some(pk) => {
                        let key = key_of(tx, ty, pk)?;
                        tx.insert(ty, key.clone())?;
                        key
                    }
                    None => tx.create(ty)?,
                };
                set_values(tx, ty, &key, values, false)
            }
            WriteOp::Set {
                ty,
                pk,
                values,
                default,
            } => {
                let key = key_of(tx, ty, pk)?;
                set_values(tx, ty, &key, values, *default)
            }
            WriteOp::AddInt {
                ty,
                pk,
                property,
                value,
            } => {
                let key = key_of(tx, ty, pk)?;
                tx.add_int(ty, key, property, *value)
            }
            WriteOp::Delete { ty, pk } => {
                let key = key_of(tx, ty, pk)?;
                tx.delete(ty, key)
            }
            WriteOp::Clear { ty } => tx.clear(ty),
            WriteOp::List {
                ty,
                pk,
                property,
                change,
            } => {
                let key = key_of(tx, ty, pk)?;
                change.apply(tx, ty, key, property)
            }
            WriteOp::Grant {
                role,
                level,
                privileges,
            } => {
                let level = match level {
                    GrantLevel::Realm => Level::Realm,
                    GrantLevel::Class(ty) => Level::Class(ty.clone()),
                    GrantLevel::Object { ty, pk } => {
                        let key = key_of(tx, ty, pk)?;
                        Level::Object(ObjRef::new(ty, key))
                    }
                };
                permissions::grant(tx, role, &level, |mut now| {
                    for (flag, on) in privileges {
                        now = match on {
                            true => now | *flag,
                            false => now & !*flag,
                        };
                    }
                    now
                })
            }
            WriteOp::Member { role, user, add } => match add {
                true => permissions::add_member(tx, role, user),
                false => permissions::remove_member(tx, role, user),
            },
        }
    }
}

/// The `privileges` of a `grant` op: flag names to booleans.
fn privileges(f: &Fields<'_>) -> Result<Vec<(Privileges, bool)>, OpError> {
    let bad = OpError::WrongType {
        field: "privileges",
        expected: "an object of privilege names (canRead, canQuery, canCreate, canUpdate, canDelete, canSetPermissions, canModifySchema) to booleans",
    };
    (f.map("privileges")?.into_iter())
        .map(|(name, on)| match (Privileges::from_name(&name), on) {
            (Some(flag), Json::Bool(on)) => Ok((flag, on)),
            _ => Err(bad.clone()),
        })
        .collect()
}

impl ListChange {
    fn apply<S: Store>(
        &self,
        tx: &mut Transaction<'_, S>,
        ty: &str,
        key: ObjKey,
        prop: &str,
    ) -> Result<(), Error> {
        match self {
            ListChange::Insert { index, value } => {
                let v = value_of(tx, ty, prop, value)?;
                tx.list_insert(ty, key, prop, *index, v)
            }
            ListChange::Set { index, value } => {
                let v = value_of(tx, ty, prop, value)?;
                tx.list_set(ty, key, prop, *index, v)
            }
            ListChange::Erase { index } => tx.list_erase(ty, key, prop, *index),
            ListChange::Move { from, to } => tx.list_move(ty, key, prop, *from, *to),
            ListChange::Clear => tx.list_clear(ty, key, prop),
        }
    }
}

/// Parses a property map of the op syntax into properties.
fn properties(list: &[(String, String)]) -> Result<Vec<Property>, Error> {
    (list.iter())
        .map(|(name, t)| Ok(Property::new(name, PropType::parse(t)?)))
        .collect()
}

fn key_of<S: Store>(tx: &Transaction<'_, S>, ty: &str, pk: &Json) -> Result<ObjKey, Error> {
    key_from_json(tx.store().schema().get(ty)?, pk)
}

fn value_of<S: Store>(
    tx: &Transaction<'_, S>,
    ty: &str,
    prop: &str,
    json: &Json,
) -> Result<Value, Error> {
    let schema = tx.store().schema();
    let pt = schema.get(ty)?.property(prop)?;
    value_from_json(schema, ty, prop, pt, json)
}

/// Writes the `values` of insert and set: scalars are set, lists are replaced (cleared and
/// refilled).
fn set_values<S: Store>(
    tx: &mut Transaction<'_, S>,
    ty: &str,
    key: &ObjKey,
    values: &[(String, Json)],
    default: bool,
) -> Result<(), Error> {
    for (prop, json) in values {
        let pt = tx.store().schema().get(ty)?.property(prop)?.clone();
        if !pt.list {
            let v = value_of(tx, ty, prop, json)?;
            if default {
                tx.set_default(ty, key.clone(), prop, v)?;
            } else {
                tx.set(ty, key.clone(), prop, v)?;
            }
            continue;
        }
        let Json::Array(items) = json else {
            return Err(Error::JsonMismatch {
                ty: ty.into(),
                prop: prop.as_str().into(),
                expected: pt,
                found: json.to_string(),
            });
        };
        tx.list_clear(ty, key.clone(), prop)?;
        for (i, item) in items.iter().enumerate() {
            let v = value_of(tx, ty, prop, item)?;
            tx.list_insert(ty, key.clone(), prop, i, v)?;
        }
    }
    Ok(())
}
