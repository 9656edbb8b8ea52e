//! The JSON forms of values, keys, writes ([`WriteOp`]) and whole states used by the scenario format (see
//! spec/scenario-format.md), and the canonical rendering of a store's state.
//!
//! Values are read and written by the property's declared type: data as base64, object ids as 24
//! hex characters, decimals as strings, dates as integer milliseconds, links as the target's
//! primary key. The canonical state is an object keyed by type name, each type mapping the
//! rendered key of every object to its properties (primary key omitted), with object keys sorted,
//! so two equal states always render to the same bytes.

mod ops;

pub use ops::{parse_ops, GrantLevel, ListChange, OpError, WriteOp};

use crate::model::{
    is_reserved, Decimal128, ElemType, Error, ObjKey, ObjectId, ObjectType, PropType, ScalarKind,
    Schema, Value,
};
use crate::store::Store;
use base64::Engine as _;
use serde_json::{Map, Number, Value as Json};

fn mismatch(ty: &str, prop: &str, expected: &PropType, found: &Json) -> Error {
    Error::JsonMismatch {
        ty: ty.into(),
        prop: prop.into(),
        expected: expected.clone(),
        found: found.to_string(),
    }
}

/// Renders an object key as a JSON value: the primary key's natural JSON form (an int key as a
/// number), or a string for engine ids.
pub fn key_to_json(key: &ObjKey) -> Json {
    match key {
        ObjKey::Null => Json::Null,
        ObjKey::Int(i) => Json::from(*i),
        ObjKey::String(s) => Json::from(&**s),
        ObjKey::ObjectId(o) => Json::from(o.to_string()),
        ObjKey::Engine(id) => Json::from(id.to_string()),
    }
}

/// Reads an object key of a type from JSON. Besides the key's natural form, the rendered string
/// form is accepted ("1" for an int key, "null" for a null key), which is how keys appear as
/// object keys in state JSON.
pub fn key_from_json(def: &ObjectType, json: &Json) -> Result<ObjKey, Error> {
    let bad = || Error::JsonKey {
        ty: def.name.clone(),
        found: json.to_string(),
        expected: def.primary_key_type().cloned(),
    };
    let Some(pk) = def.primary_key_type() else {
        return json.as_str().and_then(ObjKey::parse_engine).ok_or_else(bad);
    };
    let key = match (pk.kind(), json) {
        (_, Json::Null) => ObjKey::Null,
        (ScalarKind::Int, Json::Number(n)) => ObjKey::Int(n.as_i64().ok_or_else(bad)?),
        (ScalarKind::Int, Json::String(s)) if s == "null" => ObjKey::Null,
        (ScalarKind::Int, Json::String(s)) => ObjKey::Int(s.parse().map_err(|_| bad())?),
        (ScalarKind::String, Json::String(s)) => ObjKey::String(s.as_str().into()),
        (ScalarKind::ObjectId, Json::String(s)) if s == "null" => ObjKey::Null,
        (ScalarKind::ObjectId, Json::String(s)) => {
            ObjKey::ObjectId(ObjectId::parse_hex(s).ok_or_else(bad)?)
        }
        _ => return Err(bad()),
    };
    def.check_key(&key)?;
    Ok(key)
}

/// Converts a non-list value to JSON.
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Int(i) | Value::Date(i) => Json::from(*i),
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::from(&**s),
        Value::Float(f) => float_json(f64_from_f32(*f), || f.to_string()),
        Value::Double(d) => float_json(*d, || d.to_string()),
        Value::Data(d) => Json::from(base64::engine::general_purpose::STANDARD.encode(d)),
        Value::ObjectId(o) => Json::from(o.to_string()),
        Value::Decimal(d) => Json::from(d.to_string()),
        Value::Link(k) => key_to_json(k),
    }
}

/// Widens an f32 through its shortest decimal form, so 0.1f32 renders as 0.1, not 0.10000000149.
fn f64_from_f32(f: f32) -> f64 {
    f.to_string().parse().unwrap_or(f as f64)
}

fn float_json(v: f64, text: impl Fn() -> String) -> Json {
    Number::from_f64(v).map_or_else(|| Json::from(text()), Json::Number)
}

/// Reads a value for one element (or the scalar value) of a property from JSON. Link targets are
/// read as keys of the target type.
pub fn value_from_json(
    schema: &Schema,
    ty: &str,
    prop: &str,
    pt: &PropType,
    json: &Json,
) -> Result<Value, Error> {
    let bad = || mismatch(ty, prop, pt, json);
    if json.is_null() {
        return Ok(Value::Null);
    }
    let kind = match &pt.elem {
        ElemType::Scalar { kind, .. } => *kind,
        ElemType::Link { target } => {
            let def = schema.get(target)?;
            return Ok(Value::Link(key_from_json(def, json)?));
        }
    };
    Ok(match kind {
        ScalarKind::Int => Value::Int(json.as_i64().ok_or_else(bad)?),
        ScalarKind::Date => Value::Date(json.as_i64().ok_or_else(bad)?),
        ScalarKind::Bool => Value::Bool(json.as_bool().ok_or_else(bad)?),
        ScalarKind::String => Value::String(json.as_str().ok_or_else(bad)?.into()),
        ScalarKind::Float => {
            let v = json.as_f64().ok_or_else(bad)?;
            Value::Float(v as f32)
        }
        ScalarKind::Double => Value::Double(json.as_f64().ok_or_else(bad)?),
        ScalarKind::Data => {
            let s = json.as_str().ok_or_else(bad)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| bad())?;
            Value::Data(bytes.into())
        }
        ScalarKind::ObjectId => Value::ObjectId(
            json.as_str()
                .and_then(ObjectId::parse_hex)
                .ok_or_else(bad)?,
        ),
        ScalarKind::Decimal => {
            let d = match json {
                Json::String(s) => Decimal128::parse(s).map_err(|_| bad())?,
                Json::Number(n) => Decimal128::parse(&n.to_string()).map_err(|_| bad())?,
                _ => return Err(bad()),
            };
            Value::Decimal(d)
        }
        ScalarKind::Link => return Err(bad()),
    })
}

/// Renders the whole state of a store as the scenario format's state JSON.
///
/// Two replicas have converged exactly when their state JSON is equal, which is how the tests
/// and the conformance scenarios compare them. Merge metadata and engine-reserved types are left
/// out; objects are keyed by their rendered key (`"peer:seq"` for engine ids).
///
/// ```
/// use objsync::json::state_json;
/// use objsync::{ObjectType, PeerId, PropType, Property, Replica};
///
/// let mut replica = Replica::new(PeerId(1));
/// let mut tx = replica.transaction(1);
/// let text = Property::new("text", PropType::parse("string")?);
/// tx.add_type(ObjectType::new("Note", None, [text])?)?;
/// let key = tx.create("Note")?;
/// tx.set("Note", key, "text", "hi")?;
/// tx.commit();
/// let state = state_json(replica.store())?;
/// assert_eq!(state["Note"]["1:1"]["text"], "hi");
/// # Ok::<(), objsync::Error>(())
/// ```
pub fn state_json<S: Store + ?Sized>(store: &S) -> Result<Json, Error> {
    let schema = store.schema();
    let mut out = Map::new();
    for def in schema.types() {
        if is_reserved(&def.name) {
            continue;
        }
        let mut keys = store.objects(&def.name)?;
        keys.sort();
        let mut objects = Map::new();
        for key in keys {
            let mut props = Map::new();
            for (prop, pt) in &def.properties {
                if def.primary_key.as_ref() == Some(prop) {
                    continue;
                }
                let v = if pt.list {
                    Json::Array(
                        store
                            .list(&def.name, &key, prop)?
                            .iter()
                            .map(value_to_json)
                            .collect(),
                    )
                } else {
                    value_to_json(&store.get(&def.name, &key, prop)?)
                };
                props.insert(prop.to_string(), v);
            }
            objects.insert(key.render(), Json::Object(props));
        }
        out.insert(def.name.to_string(), Json::Object(objects));
    }
    Ok(Json::Object(out))
}

/// The canonical one-line text of a state: object keys sorted, no whitespace.
///
/// Equal states give equal bytes whatever order their objects were built in, so states can be
/// compared, hashed or stored as expected output as text.
///
/// ```
/// use objsync::json::canonical;
/// use serde_json::json;
///
/// let a = json!({"Tag": {"red": {}}, "Person": {"2": {"n": 1}, "1": {"n": 0}}});
/// let b = json!({"Person": {"1": {"n": 0}, "2": {"n": 1}}, "Tag": {"red": {}}});
/// assert_eq!(canonical(&a), canonical(&b));
/// assert_eq!(canonical(&a), r#"{"Person":{"1":{"n":0},"2":{"n":1}},"Tag":{"red":{}}}"#);
/// ```
pub fn canonical(state: &Json) -> String {
    state.to_string()
}
