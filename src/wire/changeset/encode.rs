//! Writing a changeset's instructions: every string interned in the changeset's string table,
//! every integer a shortest-form varint.

use super::*;
use crate::model::{
    DecimalKind, ElemType, Instruction, Name, ObjKey, ObjRef, ObjectType, Op, OpId, Place,
    PropType, Side, Value,
};
use crate::wire::varint::{put_u128, zigzag};
use hashbrown::HashMap;
use std::sync::Arc;

/// Writes items (instructions, values, keys, types) into a body, interning every string in a
/// table that the finished encoding puts before the body. Changesets and snapshots are both
/// written with it.
#[derive(Default)]
pub(crate) struct Encoder {
    body: Vec<u8>,
    strings: Vec<Name>,
    /// Each string's position in `strings`, once there are more than [`Encoder::SCAN`].
    index: HashMap<Name, u64>,
}

impl Encoder {
    /// An encoder whose body starts with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Encoder {
            body: Vec::with_capacity(capacity),
            ..Encoder::default()
        }
    }

    /// The string's table index, adding it to the table on first use.
    ///
    /// A changeset usually names a handful of strings (a type, a property, a value or two): up
    /// to [`Encoder::SCAN`] of them are found by a scan, which needs neither hashing nor a hash
    /// table per changeset; past that the table is indexed.
    fn intern(&mut self, s: &Name) -> u64 {
        let found = if self.strings.len() <= Self::SCAN {
            (self.strings.iter())
                .position(|t| Arc::ptr_eq(t, s) || **t == **s)
                .map(|i| i as u64)
        } else {
            self.index.get(&**s).copied()
        };
        if let Some(i) = found {
            return i;
        }
        let i = self.strings.len() as u64;
        self.strings.push(s.clone());
        if self.strings.len() > Self::SCAN {
            if self.index.is_empty() {
                let all = self.strings.iter().enumerate();
                self.index.extend(all.map(|(j, t)| (t.clone(), j as u64)));
            } else {
                self.index.insert(s.clone(), i);
            }
        }
        i
    }

    /// The most strings [`Encoder::intern`] finds by scanning.
    const SCAN: usize = 8;

    /// Appends the string table (count, then each string) to `out`, then the body.
    pub(crate) fn finish(self, out: &mut Vec<u8>) {
        // Only a hint: it counts two bytes per string length.
        let table_bytes: usize = self.strings.iter().map(|s| s.len() + 2).sum();
        out.reserve(10 + table_bytes + self.body.len());
        put_len(out, self.strings.len());
        for s in &self.strings {
            put_len(out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&self.body);
    }

    pub(crate) fn str(&mut self, s: &Name) {
        let i = self.intern(s);
        put_u64(&mut self.body, i);
    }

    pub(crate) fn u64(&mut self, v: u64) {
        put_u64(&mut self.body, v);
    }

    pub(crate) fn i64(&mut self, v: i64) {
        put_u64(&mut self.body, zigzag(v));
    }

    pub(crate) fn count(&mut self, n: usize) {
        put_len(&mut self.body, n);
    }

    pub(crate) fn byte(&mut self, b: u8) {
        self.body.push(b);
    }

    pub(crate) fn op(&mut self, op: &Op) {
        let fate = fate_code(op.fate) << FATE_SHIFT;
        match &op.instr {
            Instruction::AddType(_) | Instruction::AddProperties { .. } => {
                self.schema_instr(&op.instr, fate)
            }
            Instruction::Insert { obj } => {
                self.byte(INSERT | fate);
                self.obj(obj);
            }
            Instruction::Set {
                obj,
                prop,
                value,
                default,
            } => {
                let flag = if *default { DEFAULT_FLAG } else { 0 };
                self.byte(SET | fate | flag);
                self.obj(obj);
                self.str(prop);
                self.value(value);
            }
            Instruction::AddInt { obj, prop, delta } => {
                self.byte(ADD_INT | fate);
                self.obj(obj);
                self.str(prop);
                self.i64(*delta);
            }
            Instruction::Delete { obj } => {
                self.byte(DELETE | fate);
                self.obj(obj);
            }
            Instruction::Clear { ty, objects } => {
                self.byte(CLEAR | fate);
                self.str(ty);
                self.count(objects.len());
                for key in objects {
                    self.key(key);
                }
            }
            _ => self.list_instr(&op.instr, fate),
        }
    }

    /// ADD_TYPE and ADD_PROPERTIES.
    fn schema_instr(&mut self, instr: &Instruction, fate: u8) {
        match instr {
            Instruction::AddType(def) => {
                self.byte(ADD_TYPE | fate);
                self.object_type(def);
            }
            Instruction::AddProperties { ty, properties } => {
                self.byte(ADD_PROPERTIES | fate);
                self.str(ty);
                self.count(properties.len());
                for p in properties {
                    self.str(&p.name);
                    self.prop_type(&p.ty);
                }
            }
            _ => {}
        }
    }

    /// A type definition: its name, its primary key and its properties.
    pub(crate) fn object_type(&mut self, def: &ObjectType) {
        self.str(&def.name);
        match &def.primary_key {
            None => self.u64(0),
            Some(pk) => {
                // The index plus one, so that 0 can mean "no primary key".
                let i = self.intern(pk);
                self.u64(i + 1);
            }
        }
        self.count(def.properties.len());
        for (name, ty) in &def.properties {
            self.str(name);
            self.prop_type(ty);
        }
    }

    /// The list instructions.
    fn list_instr(&mut self, instr: &Instruction, fate: u8) {
        match instr {
            Instruction::ListInsert {
                obj,
                prop,
                index,
                value,
                elem,
                place,
            } => {
                self.byte(LIST_INSERT | fate);
                self.obj(obj);
                self.str(prop);
                self.u64(u64::from(*index));
                self.value(value);
                self.op_id(elem);
                self.place(place);
            }
            Instruction::ListSet {
                obj,
                prop,
                index,
                value,
                elem,
            } => {
                self.byte(LIST_SET | fate);
                self.obj(obj);
                self.str(prop);
                self.u64(u64::from(*index));
                self.value(value);
                self.op_id(elem);
            }
            Instruction::ListErase {
                obj,
                prop,
                index,
                elem,
            } => {
                self.byte(LIST_ERASE | fate);
                self.obj(obj);
                self.str(prop);
                self.u64(u64::from(*index));
                self.op_id(elem);
            }
            Instruction::ListMove {
                obj,
                prop,
                from,
                to,
                elem,
                node,
                place,
            } => {
                self.byte(LIST_MOVE | fate);
                self.obj(obj);
                self.str(prop);
                self.u64(u64::from(*from));
                self.u64(u64::from(*to));
                self.op_id(elem);
                self.op_id(node);
                self.place(place);
            }
            Instruction::ListClear { obj, prop } => {
                self.byte(LIST_CLEAR | fate);
                self.obj(obj);
                self.str(prop);
            }
            _ => {}
        }
    }

    pub(crate) fn prop_type(&mut self, ty: &PropType) {
        let list = if ty.list { PT_LIST } else { 0 };
        match &ty.elem {
            ElemType::Scalar { kind, nullable } => {
                let nullable = if *nullable { PT_NULLABLE } else { 0 };
                self.byte(scalar_code(*kind) | nullable | list);
            }
            ElemType::Link { target } => {
                self.byte(PT_LINK | list);
                self.str(target);
            }
        }
    }

    pub(crate) fn obj(&mut self, obj: &ObjRef) {
        self.str(&obj.ty);
        self.key(&obj.key);
    }

    pub(crate) fn key(&mut self, key: &ObjKey) {
        match key {
            ObjKey::Null => self.byte(KEY_NULL),
            ObjKey::Int(i) => {
                self.byte(KEY_INT);
                self.i64(*i);
            }
            ObjKey::String(s) => {
                self.byte(KEY_STRING);
                self.str(s);
            }
            ObjKey::ObjectId(oid) => {
                self.byte(KEY_OBJECT_ID);
                self.body.extend_from_slice(&oid.0);
            }
            ObjKey::Engine(id) => {
                self.byte(KEY_ENGINE);
                self.op_id(id);
            }
        }
    }

    pub(crate) fn op_id(&mut self, id: &OpId) {
        self.u64(id.peer.0);
        self.u64(id.seq);
    }

    pub(crate) fn place(&mut self, place: &Place) {
        let side = match place.side {
            Side::Left => 0,
            Side::Right => PLACE_RIGHT,
        };
        match &place.parent {
            None => self.byte(side),
            Some(parent) => {
                self.byte(side | PLACE_PARENT);
                self.op_id(parent);
            }
        }
    }

    pub(crate) fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.byte(VAL_NULL),
            Value::Int(i) => {
                self.byte(VAL_INT);
                self.i64(*i);
            }
            Value::Bool(b) => {
                self.byte(VAL_BOOL);
                self.byte(u8::from(*b));
            }
            Value::String(s) => {
                self.byte(VAL_STRING);
                self.str(s);
            }
            Value::Float(f) => {
                self.byte(VAL_FLOAT);
                self.body.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::Double(d) => {
                self.byte(VAL_DOUBLE);
                self.body.extend_from_slice(&d.to_bits().to_le_bytes());
            }
            Value::Date(ms) => {
                self.byte(VAL_DATE);
                self.i64(*ms);
            }
            Value::Data(bytes) => {
                self.byte(VAL_DATA);
                self.count(bytes.len());
                self.body.extend_from_slice(bytes);
            }
            Value::ObjectId(oid) => {
                self.byte(VAL_OBJECT_ID);
                self.body.extend_from_slice(&oid.0);
            }
            Value::Decimal(d) => {
                self.byte(VAL_DECIMAL);
                match d.kind() {
                    DecimalKind::Finite {
                        negative,
                        coefficient,
                        exponent,
                    } => {
                        self.byte(if negative {
                            DEC_FINITE_NEGATIVE
                        } else {
                            DEC_FINITE
                        });
                        put_u128(&mut self.body, coefficient);
                        self.i64(i64::from(exponent));
                    }
                    DecimalKind::Infinity { negative: false } => self.byte(DEC_INFINITY),
                    DecimalKind::Infinity { negative: true } => self.byte(DEC_NEGATIVE_INFINITY),
                    DecimalKind::NaN => self.byte(DEC_NAN),
                }
            }
            Value::Link(key) => {
                self.byte(VAL_LINK);
                self.key(key);
            }
        }
    }
}
