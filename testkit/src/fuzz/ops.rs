//! Random schemas and transactions built from fuzz bytes, through the transaction API (so every
//! changeset is one a real client could write).
//!
//! Conflicts are the point, so keys, strings and numbers come from small pools that concurrent
//! writers hit alike; rare bytes reach the boundary values (extreme ints, NaN payloads, the
//! largest decimal). Writes the API refuses (a wrong kind, a missing object, an index out of
//! range) are skipped: each runs in its own nested unit, so a refusal changes nothing.
//!
//! Schema changes never conflict by construction: a (type, property) name always has the same
//! property type, and the one type added later always has the same definition. Two clients may
//! still add them concurrently, which the merge must accept.

use super::input::Input;
use objsync::Decimal128;
use objsync::ElemType;
use objsync::{
    MemoryStore, ObjKey, ObjectId, ObjectType, PeerId, PropType, Property, ScalarKind, Store,
    Transaction, Value,
};

type Tx<'r> = Transaction<'r, MemoryStore>;

fn prop(name: &str, ty: &str) -> Property {
    Property::new(name, PropType::parse(ty).expect("valid type"))
}

/// The initial schema: type A always (with a mask of optional properties), B, C (no primary
/// key) and D if chosen. Links only point at A or at their own type, so any subset is valid.
pub fn schema(input: &mut Input<'_>) -> Vec<ObjectType> {
    let optional = input.byte();
    let types = input.byte();
    let mut a = vec![
        prop("id", "int"),
        prop("v", "int"),
        prop("s", "string?"),
        prop("l", "link<A>"),
        prop("xs", "list<int>"),
        prop("ls", "list<link<A>>"),
    ];
    let extra = [
        ("d", "double?"),
        ("f", "float"),
        ("b", "bool?"),
        ("t", "date"),
        ("bin", "data?"),
        ("oid", "object_id?"),
        ("dec", "decimal?"),
        ("ss", "list<string?>"),
    ];
    for (bit, (name, ty)) in extra.iter().enumerate() {
        if optional & (1 << bit) != 0 {
            a.push(prop(name, ty));
        }
    }
    let mut out = vec![ObjectType::new("A", Some("id"), a).expect("valid A")];
    if types & 1 != 0 {
        let b = [
            prop("id", "string?"),
            prop("v", "int?"),
            prop("a", "link<A>"),
            prop("ds", "list<double>"),
        ];
        out.push(ObjectType::new("B", Some("id"), b).expect("valid B"));
    }
    if types & 2 != 0 {
        let c = [
            prop("n", "int"),
            prop("c", "link<C>"),
            prop("xs", "list<int>"),
        ];
        out.push(ObjectType::new("C", None, c).expect("valid C"));
    }
    if types & 4 != 0 {
        let d = [
            prop("id", "object_id"),
            prop("v", "int"),
            prop("bs", "list<bool>"),
            prop("decs", "list<decimal?>"),
        ];
        out.push(ObjectType::new("D", Some("id"), d).expect("valid D"));
    }
    out
}

/// The type some clients add later, always with this definition. It links only to itself, so a
/// client that has no schema yet can add it too.
fn late_type() -> ObjectType {
    ObjectType::new(
        "E",
        Some("id"),
        [prop("id", "int"), prop("v", "int"), prop("r", "link<E>")],
    )
    .expect("valid E")
}

/// Properties added later: the name fixes the type, whatever type they are added to.
const LATE_PROPERTIES: [(&str, &str); 4] = [
    ("e0", "int"),
    ("e1", "string?"),
    ("e2", "list<int>"),
    ("e3", "link<A>"),
];

/// Runs up to `max_writes` random writes in `tx`.
pub fn transaction(input: &mut Input<'_>, tx: &mut Tx<'_>, max_writes: usize) {
    let n = 1 + input.below(max_writes);
    for _ in 0..n {
        if input.is_empty() {
            return;
        }
        write(input, tx);
    }
}

fn write(input: &mut Input<'_>, tx: &mut Tx<'_>) {
    let op = input.below(14);
    if op == 13 {
        let _ = tx.add_type(late_type());
        return;
    }
    let Some(ty) = pick_type(input, tx) else {
        return;
    };
    // Every write runs as one nested unit; a refused one is simply skipped.
    let _ = tx.atomically(|tx| match op {
        0 | 1 => {
            if has_primary_key(tx, &ty) {
                let key = key(input, tx, &ty);
                tx.insert(&ty, key).map(drop)
            } else {
                tx.create(&ty).map(drop)
            }
        }
        2 | 3 => {
            let obj = key(input, tx, &ty);
            let (prop, pt) = pick_property(input, tx, &ty, false)?;
            let value = value(input, tx, &pt);
            if input.one_in(4) {
                tx.set_default(&ty, obj, &prop, value)
            } else {
                tx.set(&ty, obj, &prop, value)
            }
        }
        4 => {
            let obj = key(input, tx, &ty);
            let (prop, _) = pick_property(input, tx, &ty, false)?;
            let delta = if input.one_in(16) {
                *input.pick(&[i64::MIN, i64::MAX, -1])
            } else {
                i64::from(input.byte() as i8)
            };
            tx.add_int(&ty, obj, &prop, delta)
        }
        5 => {
            let obj = key(input, tx, &ty);
            tx.delete(&ty, obj)
        }
        6 => tx.clear(&ty),
        7..=11 => {
            let obj = key(input, tx, &ty);
            let (prop, pt) = pick_property(input, tx, &ty, true)?;
            let len = tx.store().list_len(&ty, &obj, &prop).unwrap_or(0);
            let index = |input: &mut Input<'_>, room: usize| {
                if input.one_in(16) {
                    usize::from(input.byte())
                } else {
                    input.below(room.max(1))
                }
            };
            match op {
                7 => {
                    let at = index(input, len + 1);
                    let v = value(input, tx, &pt);
                    tx.list_insert(&ty, obj, &prop, at, v)
                }
                8 => {
                    let at = index(input, len);
                    let v = value(input, tx, &pt);
                    tx.list_set(&ty, obj, &prop, at, v)
                }
                9 => {
                    let at = index(input, len);
                    tx.list_erase(&ty, obj, &prop, at)
                }
                10 => {
                    let from = index(input, len);
                    let to = index(input, len);
                    tx.list_move(&ty, obj, &prop, from, to)
                }
                _ => tx.list_clear(&ty, obj, &prop),
            }
        }
        _ => {
            let (name, t) = *input.pick(&LATE_PROPERTIES);
            tx.add_properties(&ty, vec![prop(name, t)])
        }
    });
}

fn type_names(tx: &Tx<'_>) -> Vec<String> {
    let mut names: Vec<String> = tx
        .store()
        .schema()
        .types()
        .map(|t| t.name.to_string())
        .collect();
    // Schema order depends on the order concurrent type additions arrived in; sorting keeps a
    // byte meaning the same type on every replica.
    names.sort();
    names
}

fn pick_type(input: &mut Input<'_>, tx: &Tx<'_>) -> Option<String> {
    let names = type_names(tx);
    if names.is_empty() {
        return None;
    }
    Some(input.pick(&names).clone())
}

fn has_primary_key(tx: &Tx<'_>, ty: &str) -> bool {
    tx.store()
        .schema()
        .get(ty)
        .is_ok_and(|t| t.primary_key.is_some())
}

/// A property of `ty` (lists only, or any), sorted by name for the same reason as types.
fn pick_property(
    input: &mut Input<'_>,
    tx: &Tx<'_>,
    ty: &str,
    lists: bool,
) -> Result<(String, PropType), objsync::Error> {
    let def = tx.store().schema().get(ty)?;
    let mut props: Vec<(String, PropType)> = def
        .properties
        .iter()
        .filter(|(_, t)| !lists || t.list)
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    props.sort_by(|a, b| a.0.cmp(&b.0));
    if props.is_empty() {
        // No such property: ask for one that does not exist, which the API refuses.
        return Ok(("nope".into(), PropType::scalar(ScalarKind::Int, false)));
    }
    Ok(input.pick(&props).clone())
}

fn sorted_objects(tx: &Tx<'_>, ty: &str) -> Vec<ObjKey> {
    let mut keys = tx.store().objects(ty).unwrap_or_default();
    keys.sort();
    keys
}

/// A key of `ty`: from the small pool of its primary-key kind, or an existing engine id.
fn key(input: &mut Input<'_>, tx: &Tx<'_>, ty: &str) -> ObjKey {
    let pk = tx
        .store()
        .schema()
        .get(ty)
        .ok()
        .and_then(|t| t.primary_key_type().cloned());
    let Some(pk) = pk else {
        let keys = sorted_objects(tx, ty);
        if keys.is_empty() || input.one_in(16) {
            return ObjKey::Engine(objsync::OpId {
                peer: PeerId(input.small_or_any()),
                seq: u64::from(input.byte()),
            });
        }
        return input.pick(&keys).clone();
    };
    if pk.nullable() && input.one_in(6) {
        return ObjKey::Null;
    }
    match pk.kind() {
        ScalarKind::Int => ObjKey::Int(int(input, 4)),
        ScalarKind::String => ObjKey::String(input.pick(&STRINGS)[..].into()),
        _ => ObjKey::ObjectId(object_id(input)),
    }
}

const STRINGS: [&str; 6] = ["", "a", "b", "é", "k\u{1F600}", "a somewhat longer string"];

/// A small int, or rarely an extreme one.
fn int(input: &mut Input<'_>, small: u8) -> i64 {
    match input.byte() {
        0xfe => i64::MIN,
        0xff => i64::MAX,
        b => i64::from(b % small),
    }
}

fn object_id(input: &mut Input<'_>) -> ObjectId {
    let mut id = [0u8; 12];
    id[11] = input.byte() % 3;
    if input.one_in(8) {
        id = [0xff; 12];
    }
    ObjectId(id)
}

/// A value for a property of type `pt` (an element for lists); rarely null or a value of
/// another kind, which the API refuses unless it fits.
fn value(input: &mut Input<'_>, tx: &Tx<'_>, pt: &PropType) -> Value {
    if input.one_in(12) {
        return Value::Null;
    }
    let kind = if input.one_in(24) {
        *input.pick(&[
            ScalarKind::Int,
            ScalarKind::Bool,
            ScalarKind::String,
            ScalarKind::Double,
            ScalarKind::Link,
        ])
    } else {
        pt.kind()
    };
    match kind {
        ScalarKind::Int => Value::Int(int(input, 8)),
        ScalarKind::Bool => Value::Bool(input.bool()),
        ScalarKind::String => Value::from(*input.pick(&STRINGS)),
        ScalarKind::Float => Value::Float(if input.one_in(4) {
            f32::from_bits(input.u64() as u32)
        } else {
            *input.pick(&[0.0, -0.0, 1.5, f32::NAN, f32::INFINITY, f32::MIN_POSITIVE])
        }),
        ScalarKind::Double => Value::Double(if input.one_in(4) {
            f64::from_bits(input.u64())
        } else {
            *input.pick(&[0.0, -0.0, 0.1, f64::NAN, f64::NEG_INFINITY, f64::MAX])
        }),
        ScalarKind::Date => Value::Date(int(input, 3)),
        ScalarKind::Data => Value::Data(input.bytes(4).into()),
        ScalarKind::ObjectId => Value::ObjectId(object_id(input)),
        ScalarKind::Decimal => Value::Decimal(match input.below(6) {
            0 => Decimal128::nan(),
            1 => Decimal128::infinity(input.bool()),
            2 => Decimal128::from_parts(
                input.bool(),
                Decimal128::MAX_COEFFICIENT,
                *input.pick(&[Decimal128::MIN_EXPONENT, Decimal128::MAX_EXPONENT]),
            )
            .expect("in range"),
            _ => Decimal128::from_parts(
                input.bool(),
                u128::from(input.byte() % 4),
                i32::from(input.byte() % 3) - 1,
            )
            .expect("in range"),
        }),
        ScalarKind::Link => {
            let target = match &pt.elem {
                ElemType::Link { target } => target.to_string(),
                ElemType::Scalar { .. } => "A".to_string(),
            };
            let keys = sorted_objects(tx, &target);
            if keys.is_empty() || input.one_in(10) {
                Value::Link(key(input, tx, &target))
            } else {
                Value::Link(input.pick(&keys).clone())
            }
        }
    }
}
