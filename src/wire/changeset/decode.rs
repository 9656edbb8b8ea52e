//! Reading a changeset's instructions, refusing anything that is not exactly what the encoder
//! writes.

use super::*;
use crate::model::{
    Decimal128, DecimalError, ElemType, Error, Instruction, Name, ObjKey, ObjRef, ObjectId,
    ObjectType, Op, OpId, Place, PropType, Property, Repeats, Side, Value,
};
use std::sync::Arc;

impl Reader<'_> {
    /// Reads a string table (count, then each string); later string references index it.
    /// Reads a string table; with `names`, each string that `names` holds is shared instead of
    /// allocated again, and new short ones are added to it.
    pub(crate) fn table(&mut self, mut names: Option<&mut Names>) -> Result<(), DecodeError> {
        let n = self.count(MIN_STRING_BYTES, "string-table entries")?;
        let mut strings = Vec::with_capacity(n);
        for _ in 0..n {
            let s = self.table_str()?;
            strings.push(match names.as_deref_mut() {
                Some(names) => names.share(s),
                None => Name::from(s),
            });
        }
        self.strings = strings;
        Ok(())
    }

    /// Fails unless every byte has been read.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() > 0 {
            return Err(DecodeError::TrailingBytes {
                offset: self.pos,
                count: self.remaining(),
            });
        }
        Ok(())
    }

    pub(crate) fn str(&mut self, what: &'static str) -> Result<Name, DecodeError> {
        let start = self.pos;
        let index = self.u64(what)?;
        self.lookup(index, start)
    }

    fn lookup(&self, index: u64, offset: usize) -> Result<Name, DecodeError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.strings.get(i))
            .cloned()
            .ok_or(DecodeError::StringIndexOutOfRange {
                offset,
                index,
                len: self.strings.len(),
            })
    }

    pub(crate) fn op(&mut self) -> Result<Op, DecodeError> {
        let tag_at = self.pos;
        let tag = self.byte("instruction tag")?;
        let kind = tag & KIND_MASK;
        let default = tag & DEFAULT_FLAG != 0;
        let unknown = DecodeError::UnknownTag {
            offset: tag_at,
            what: "instruction",
            tag,
        };
        if tag & RESERVED_TAG_BIT != 0 || (default && kind != SET) {
            return Err(unknown);
        }
        let fate = match (tag & FATE_MASK) >> FATE_SHIFT {
            0 => Fate::Live,
            1 => Fate::DeadLink,
            2 => Fate::Dropped,
            _ => Fate::Void,
        };
        let instr = match kind {
            ADD_TYPE => Instruction::AddType(self.object_type()?),
            ADD_PROPERTIES => {
                let ty = self.str("type name")?;
                let n = self.count(MIN_PROPERTY_BYTES, "properties")?;
                let mut properties = Vec::with_capacity(n);
                for _ in 0..n {
                    properties.push(self.property()?);
                }
                Instruction::AddProperties { ty, properties }
            }
            INSERT => Instruction::Insert { obj: self.obj()? },
            SET => Instruction::Set {
                obj: self.obj()?,
                prop: self.str("property name")?,
                value: self.value()?,
                default,
            },
            ADD_INT => Instruction::AddInt {
                obj: self.obj()?,
                prop: self.str("property name")?,
                delta: self.i64("add_int delta")?,
            },
            DELETE => Instruction::Delete { obj: self.obj()? },
            CLEAR => {
                let ty = self.str("type name")?;
                let n = self.count(MIN_KEY_BYTES, "cleared objects")?;
                let mut objects = Vec::with_capacity(n);
                for _ in 0..n {
                    objects.push(self.key()?);
                }
                Instruction::Clear { ty, objects }
            }
            LIST_INSERT => Instruction::ListInsert {
                obj: self.obj()?,
                prop: self.str("property name")?,
                index: self.u32("list index")?,
                value: self.value()?,
                elem: self.op_id("element id")?,
                place: self.place()?,
            },
            LIST_SET => Instruction::ListSet {
                obj: self.obj()?,
                prop: self.str("property name")?,
                index: self.u32("list index")?,
                value: self.value()?,
                elem: self.op_id("element id")?,
            },
            LIST_ERASE => Instruction::ListErase {
                obj: self.obj()?,
                prop: self.str("property name")?,
                index: self.u32("list index")?,
                elem: self.op_id("element id")?,
            },
            LIST_MOVE => Instruction::ListMove {
                obj: self.obj()?,
                prop: self.str("property name")?,
                from: self.u32("list index")?,
                to: self.u32("list index")?,
                elem: self.op_id("element id")?,
                node: self.op_id("position id")?,
                place: self.place()?,
            },
            LIST_CLEAR => Instruction::ListClear {
                obj: self.obj()?,
                prop: self.str("property name")?,
            },
            _ => return Err(unknown),
        };
        Ok(Op { instr, fate })
    }

    pub(crate) fn object_type(&mut self) -> Result<ObjectType, DecodeError> {
        let start = self.pos;
        let name = self.str("type name")?;
        let pk_at = self.pos;
        let pk = match self.u64("primary key")? {
            0 => None,
            i => Some(self.lookup(i - 1, pk_at)?),
        };
        let n = self.count(MIN_PROPERTY_BYTES, "properties")?;
        let mut properties = Vec::with_capacity(n);
        for _ in 0..n {
            properties.push(self.property()?);
        }
        let invalid = |e: Error| DecodeError::InvalidObjectType {
            offset: start,
            source: Box::new(e),
        };
        let def = ObjectType::build(name, pk, properties, Repeats::Refuse).map_err(invalid)?;
        Ok(def)
    }

    fn property(&mut self) -> Result<Property, DecodeError> {
        Ok(Property {
            name: self.str("property name")?,
            ty: self.prop_type()?,
        })
    }

    pub(crate) fn prop_type(&mut self) -> Result<PropType, DecodeError> {
        let offset = self.pos;
        let byte = self.byte("property type")?;
        let invalid = |reason| DecodeError::InvalidPropertyType {
            offset,
            byte,
            reason,
        };
        if byte & PT_RESERVED != 0 {
            return Err(invalid("reserved bits are set"));
        }
        let nullable = byte & PT_NULLABLE != 0;
        let list = byte & PT_LIST != 0;
        let code = byte & PT_KIND_MASK;
        let elem = if code == PT_LINK {
            if nullable {
                return Err(invalid("links carry no nullable flag"));
            }
            ElemType::Link {
                target: self.str("link target")?,
            }
        } else {
            let kind = *SCALAR_CODES
                .get(usize::from(code))
                .ok_or_else(|| invalid("unknown element kind"))?;
            ElemType::Scalar { kind, nullable }
        };
        Ok(PropType { elem, list })
    }

    pub(crate) fn obj(&mut self) -> Result<ObjRef, DecodeError> {
        Ok(ObjRef {
            ty: self.str("type name")?,
            key: self.key()?,
        })
    }

    pub(crate) fn key(&mut self) -> Result<ObjKey, DecodeError> {
        let offset = self.pos;
        Ok(match self.byte("key")? {
            KEY_NULL => ObjKey::Null,
            KEY_INT => ObjKey::Int(self.i64("int key")?),
            KEY_STRING => ObjKey::String(self.str("string key")?),
            KEY_OBJECT_ID => ObjKey::ObjectId(ObjectId(self.array("object id key")?)),
            KEY_ENGINE => ObjKey::Engine(self.op_id("engine id")?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    offset,
                    what: "key",
                    tag,
                })
            }
        })
    }

    pub(crate) fn op_id(&mut self, what: &'static str) -> Result<OpId, DecodeError> {
        Ok(OpId {
            peer: PeerId(self.u64(what)?),
            seq: self.u64(what)?,
        })
    }

    pub(crate) fn place(&mut self) -> Result<Place, DecodeError> {
        let offset = self.pos;
        let tag = self.byte("place")?;
        if tag & !(PLACE_RIGHT | PLACE_PARENT) != 0 {
            return Err(DecodeError::UnknownTag {
                offset,
                what: "place",
                tag,
            });
        }
        let side = if tag & PLACE_RIGHT != 0 {
            Side::Right
        } else {
            Side::Left
        };
        let parent = if tag & PLACE_PARENT != 0 {
            Some(self.op_id("parent position id")?)
        } else {
            None
        };
        Ok(Place { parent, side })
    }

    pub(crate) fn value(&mut self) -> Result<Value, DecodeError> {
        let offset = self.pos;
        Ok(match self.byte("value")? {
            VAL_NULL => Value::Null,
            VAL_INT => Value::Int(self.i64("int value")?),
            VAL_BOOL => {
                let at = self.pos;
                match self.byte("bool value")? {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            offset: at,
                            what: "bool",
                            tag,
                        })
                    }
                }
            }
            VAL_STRING => Value::String(self.str("string value")?),
            VAL_FLOAT => Value::Float(f32::from_bits(u32::from_le_bytes(
                self.array("float value")?,
            ))),
            VAL_DOUBLE => Value::Double(f64::from_bits(u64::from_le_bytes(
                self.array("double value")?,
            ))),
            VAL_DATE => Value::Date(self.i64("date value")?),
            VAL_DATA => {
                let start = self.pos;
                let len = self.u64("data length")?;
                let len = usize::try_from(len).map_err(|_| DecodeError::Truncated {
                    offset: start,
                    what: "data value",
                })?;
                Value::Data(Arc::from(self.take(len, start, "data value")?))
            }
            VAL_OBJECT_ID => Value::ObjectId(ObjectId(self.array("object id value")?)),
            VAL_DECIMAL => Value::Decimal(self.decimal()?),
            VAL_LINK => Value::Link(self.key()?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    offset,
                    what: "value",
                    tag,
                })
            }
        })
    }

    fn decimal(&mut self) -> Result<Decimal128, DecodeError> {
        let offset = self.pos;
        let negative = match self.byte("decimal kind")? {
            DEC_FINITE => false,
            DEC_FINITE_NEGATIVE => true,
            DEC_INFINITY => return Ok(Decimal128::infinity(false)),
            DEC_NEGATIVE_INFINITY => return Ok(Decimal128::infinity(true)),
            DEC_NAN => return Ok(Decimal128::nan()),
            tag => {
                return Err(DecodeError::UnknownTag {
                    offset,
                    what: "decimal kind",
                    tag,
                })
            }
        };
        let coefficient = self.varint(128, "decimal coefficient")?;
        let exponent = self.i64("decimal exponent")?;
        let invalid = |source| DecodeError::InvalidDecimal { offset, source };
        let exponent = i32::try_from(exponent).map_err(|_| {
            invalid(DecimalError::ExponentOutOfRange {
                exponent: i128::from(exponent),
            })
        })?;
        Decimal128::from_parts(negative, coefficient, exponent).map_err(invalid)
    }
}
