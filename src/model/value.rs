//! Values stored in object properties, and the keys that identify objects.
//!
//! Objects are addressed by their type and an [`ObjKey`]: the primary-key value for types that
//! have one, or an engine id (creating peer + per-peer counter) for types that do not. Keys never
//! change, so instructions can name objects directly instead of row positions.

use super::decimal::Decimal128;
use super::ids::{OpId, PeerId};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A 12-byte object id, rendered as 24 lowercase hex characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId(pub [u8; 12]);

impl ObjectId {
    /// Parses 24 hex characters (either case).
    pub fn parse_hex(s: &str) -> Option<ObjectId> {
        let bytes = s.as_bytes();
        if bytes.len() != 24 {
            return None;
        }
        let mut out = [0u8; 12];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(ObjectId(out))
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The identity of an object within its type.
///
/// Writes take `impl Into<ObjKey>`, so a plain int or string names an object by its primary key;
/// engine ids are minted by [`Transaction::create`](crate::Transaction::create) for types
/// without one.
///
/// ```
/// use objsync::{ObjKey, ScalarKind, Value};
///
/// assert_eq!(ObjKey::from(7), ObjKey::Int(7));
/// assert_eq!(ObjKey::from("ada"), ObjKey::String("ada".into()));
/// // Only values that can be primary keys or link targets convert back.
/// assert_eq!(ObjKey::try_from(&Value::from(7)), Ok(ObjKey::Int(7)));
/// assert_eq!(ObjKey::try_from(&Value::from(true)), Err(ScalarKind::Bool));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ObjKey {
    /// The null value of a nullable primary key.
    Null,
    /// An int primary key.
    Int(i64),
    /// A string primary key.
    String(Arc<str>),
    /// An object_id primary key.
    ObjectId(ObjectId),
    /// An engine id, for types without a primary key.
    Engine(OpId),
}

impl ObjKey {
    /// The key rendered as the state JSON renders it: "1", "abc", 24 hex digits, "null", or
    /// "peer:seq" for engine ids.
    ///
    /// This is the form object keys take in state JSON and in the scenario format; `Display`
    /// quotes strings instead, so that `Person["1"]` and `Person[1]` stay apart in messages.
    ///
    /// ```
    /// use objsync::{ObjKey, OpId, PeerId};
    ///
    /// assert_eq!(ObjKey::from("1").render(), "1");
    /// assert_eq!(ObjKey::from("1").to_string(), r#""1""#);
    /// let engine = ObjKey::from(OpId { peer: PeerId(3), seq: 1 });
    /// assert_eq!(engine.render(), "3:1");
    /// assert_eq!(ObjKey::parse_engine("3:1"), Some(engine));
    /// ```
    pub fn render(&self) -> String {
        match self {
            ObjKey::Null => "null".to_string(),
            ObjKey::Int(i) => i.to_string(),
            ObjKey::String(s) => s.to_string(),
            ObjKey::ObjectId(o) => o.to_string(),
            ObjKey::Engine(id) => id.to_string(),
        }
    }

    /// Parses an engine id rendered as "peer:seq".
    pub fn parse_engine(s: &str) -> Option<ObjKey> {
        let (peer, seq) = s.split_once(':')?;
        Some(ObjKey::Engine(OpId {
            peer: PeerId(peer.parse().ok()?),
            seq: seq.parse().ok()?,
        }))
    }
}

impl fmt::Display for ObjKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjKey::String(s) => write!(f, "{s:?}"),
            other => f.write_str(&other.render()),
        }
    }
}

macro_rules! from_impls {
    ($target:ty: $($source:ty => |$v:ident| $make:expr),* $(,)?) => {
        $(impl From<$source> for $target {
            fn from($v: $source) -> Self {
                $make
            }
        })*
    };
}

from_impls! { ObjKey:
    i64 => |v| ObjKey::Int(v),
    i32 => |v| ObjKey::Int(v.into()),
    u32 => |v| ObjKey::Int(v.into()),
    &str => |v| ObjKey::String(v.into()),
    String => |v| ObjKey::String(v.into()),
    Arc<str> => |v| ObjKey::String(v),
    ObjectId => |v| ObjKey::ObjectId(v),
    OpId => |v| ObjKey::Engine(v),
}

impl TryFrom<&Value> for ObjKey {
    type Error = ScalarKind;

    /// The key a value names when it is used as a link target or primary key: ints, strings,
    /// object ids, links and null; any other kind is returned as the error.
    fn try_from(v: &Value) -> Result<ObjKey, ScalarKind> {
        match v {
            Value::Null => Ok(ObjKey::Null),
            Value::Int(i) => Ok(ObjKey::Int(*i)),
            Value::String(s) => Ok(ObjKey::String(s.clone())),
            Value::ObjectId(o) => Ok(ObjKey::ObjectId(*o)),
            Value::Link(k) => Ok(k.clone()),
            other => Err(other.kind().unwrap_or(ScalarKind::Link)),
        }
    }
}

/// The scalar kinds a property (or a list element) can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalarKind {
    /// 64-bit signed integer; also the kind of counters.
    Int,
    /// true / false.
    Bool,
    /// UTF-8 text.
    String,
    /// 32-bit IEEE float.
    Float,
    /// 64-bit IEEE float.
    Double,
    /// Milliseconds since the Unix epoch.
    Date,
    /// Binary data.
    Data,
    /// 12-byte object id.
    ObjectId,
    /// 128-bit decimal.
    Decimal,
    /// A link to an object of another (or the same) type.
    Link,
}

impl ScalarKind {
    /// The name used in type strings ("int", "bool", ...). Links are written `link<T>` instead.
    pub fn name(self) -> &'static str {
        match self {
            ScalarKind::Int => "int",
            ScalarKind::Bool => "bool",
            ScalarKind::String => "string",
            ScalarKind::Float => "float",
            ScalarKind::Double => "double",
            ScalarKind::Date => "date",
            ScalarKind::Data => "data",
            ScalarKind::ObjectId => "object_id",
            ScalarKind::Decimal => "decimal",
            ScalarKind::Link => "link",
        }
    }

    /// Looks up a scalar kind by its type-string name (links excluded).
    pub fn from_name(name: &str) -> Option<ScalarKind> {
        Some(match name {
            "int" => ScalarKind::Int,
            "bool" => ScalarKind::Bool,
            "string" => ScalarKind::String,
            "float" => ScalarKind::Float,
            "double" => ScalarKind::Double,
            "date" => ScalarKind::Date,
            "data" => ScalarKind::Data,
            "object_id" => ScalarKind::ObjectId,
            "decimal" => ScalarKind::Decimal,
            _ => return None,
        })
    }
}

/// A property value or list element.
///
/// Floats compare and hash by bit pattern so that values can be used as map keys and two
/// replicas holding the same bits are equal; use [`Value::semantic_eq`] for numeric comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Value {
    /// Null (only in nullable properties, links and nullable lists).
    Null,
    /// An int.
    Int(i64),
    /// A bool.
    Bool(bool),
    /// A string.
    String(Arc<str>),
    /// A float.
    Float(f32),
    /// A double.
    Double(f64),
    /// A date, milliseconds since the Unix epoch.
    Date(i64),
    /// Binary data.
    Data(Arc<[u8]>),
    /// An object id.
    ObjectId(ObjectId),
    /// A decimal.
    Decimal(Decimal128),
    /// A link: the key of the target object (its type comes from the property's schema).
    Link(ObjKey),
}

impl Value {
    /// The scalar kind of a non-null value.
    pub fn kind(&self) -> Option<ScalarKind> {
        Some(match self {
            Value::Null => return None,
            Value::Int(_) => ScalarKind::Int,
            Value::Bool(_) => ScalarKind::Bool,
            Value::String(_) => ScalarKind::String,
            Value::Float(_) => ScalarKind::Float,
            Value::Double(_) => ScalarKind::Double,
            Value::Date(_) => ScalarKind::Date,
            Value::Data(_) => ScalarKind::Data,
            Value::ObjectId(_) => ScalarKind::ObjectId,
            Value::Decimal(_) => ScalarKind::Decimal,
            Value::Link(_) => ScalarKind::Link,
        })
    }

    /// A short description of the value's kind for error messages.
    pub fn kind_name(&self) -> &'static str {
        self.kind().map_or("null", ScalarKind::name)
    }

    /// Whether this is the null value.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A link to the object with this key (its type comes from the property's schema).
    ///
    /// ```
    /// use objsync::{ObjKey, Value};
    /// assert_eq!(Value::link(7), Value::Link(ObjKey::Int(7)));
    /// ```
    pub fn link(key: impl Into<ObjKey>) -> Value {
        Value::Link(key.into())
    }

    /// The link target, if this is a link.
    ///
    /// A link holds only the target's key: its type comes from the property's schema. A bare key
    /// written to a link property becomes a link, but a string value is never a link by itself.
    ///
    /// ```
    /// use objsync::{ObjKey, Value};
    ///
    /// assert_eq!(Value::link("ada").as_link(), Some(&ObjKey::from("ada")));
    /// assert_eq!(Value::from("ada").as_link(), None);
    /// ```
    pub fn as_link(&self) -> Option<&ObjKey> {
        match self {
            Value::Link(k) => Some(k),
            _ => None,
        }
    }

    /// The text, if this is a string.
    ///
    /// ```
    /// use objsync::Value;
    /// assert_eq!(Value::from("Ada").as_str(), Some("Ada"));
    /// assert_eq!(Value::from(1).as_str(), None);
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an int or a date (milliseconds).
    ///
    /// ```
    /// use objsync::Value;
    /// assert_eq!(Value::from(42).as_i64(), Some(42));
    /// assert_eq!(Value::Null.as_i64(), None);
    /// ```
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(v) | Value::Date(v) => Some(*v),
            _ => None,
        }
    }

    /// The number, if this is a double or a float.
    ///
    /// ```
    /// use objsync::Value;
    /// assert_eq!(Value::from(1.5).as_f64(), Some(1.5));
    /// assert_eq!(Value::Float(0.5).as_f64(), Some(0.5));
    /// ```
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Double(v) => Some(*v),
            Value::Float(v) => Some(f64::from(*v)),
            _ => None,
        }
    }

    /// The flag, if this is a bool.
    ///
    /// ```
    /// use objsync::Value;
    /// assert_eq!(Value::from(true).as_bool(), Some(true));
    /// ```
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(v) => Some(*v),
            _ => None,
        }
    }

    /// The bytes, if this is binary data.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Data(v) => Some(v),
            _ => None,
        }
    }

    /// Numeric rather than bitwise equality: floats compare by value, decimals numerically.
    pub fn semantic_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Double(a), Value::Double(b)) => a == b,
            (Value::Decimal(a), Value::Decimal(b)) => a.numeric_eq(b),
            (a, b) => a == b,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Double(a), Value::Double(b)) => a.to_bits() == b.to_bits(),
            (Value::Date(a), Value::Date(b)) => a == b,
            (Value::Data(a), Value::Data(b)) => a == b,
            (Value::ObjectId(a), Value::ObjectId(b)) => a == b,
            (Value::Decimal(a), Value::Decimal(b)) => a == b,
            (Value::Link(a), Value::Link(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Value::Null => {}
            Value::Int(v) | Value::Date(v) => v.hash(state),
            Value::Bool(v) => v.hash(state),
            Value::String(v) => v.hash(state),
            Value::Float(v) => v.to_bits().hash(state),
            Value::Double(v) => v.to_bits().hash(state),
            Value::Data(v) => v.hash(state),
            Value::ObjectId(v) => v.hash(state),
            Value::Decimal(v) => v.hash(state),
            Value::Link(v) => v.hash(state),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    /// A total order used only to make output deterministic; it has no domain meaning.
    fn cmp(&self, other: &Self) -> Ordering {
        fn rank(v: &Value) -> u8 {
            match v {
                Value::Null => 0,
                Value::Int(_) => 1,
                Value::Bool(_) => 2,
                Value::String(_) => 3,
                Value::Float(_) => 4,
                Value::Double(_) => 5,
                Value::Date(_) => 6,
                Value::Data(_) => 7,
                Value::ObjectId(_) => 8,
                Value::Decimal(_) => 9,
                Value::Link(_) => 10,
            }
        }
        match (self, other) {
            (Value::Int(a), Value::Int(b)) | (Value::Date(a), Value::Date(b)) => a.cmp(b),
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
            (Value::Double(a), Value::Double(b)) => a.total_cmp(b),
            (Value::Data(a), Value::Data(b)) => a.cmp(b),
            (Value::ObjectId(a), Value::ObjectId(b)) => a.cmp(b),
            (Value::Decimal(a), Value::Decimal(b)) => a.to_string().cmp(&b.to_string()),
            (Value::Link(a), Value::Link(b)) => a.cmp(b),
            (a, b) => rank(a).cmp(&rank(b)),
        }
    }
}

from_impls! { Value:
    i64 => |v| Value::Int(v),
    i32 => |v| Value::Int(v.into()),
    u32 => |v| Value::Int(v.into()),
    bool => |v| Value::Bool(v),
    &str => |v| Value::String(v.into()),
    String => |v| Value::String(v.into()),
    Arc<str> => |v| Value::String(v),
    f32 => |v| Value::Float(v),
    f64 => |v| Value::Double(v),
    &[u8] => |v| Value::Data(v.into()),
    Vec<u8> => |v| Value::Data(v.into()),
    ObjectId => |v| Value::ObjectId(v),
    Decimal128 => |v| Value::Decimal(v),
    ObjKey => |v| Value::Link(v),
}

impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` is null.
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
