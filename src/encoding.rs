//! The binary wire and storage form of a [`Changeset`].
//!
//! JSON (the serde derives) is the debugging form; this is the form that crosses the network
//! and sits in histories, so it is compact and its decoder treats every byte as hostile: any
//! input either decodes or yields a typed [`DecodeError`] naming what was wrong and at which
//! byte, and the decoder never panics and never allocates more than a small constant multiple
//! of the input's length.
//!
//! [`encode`] and [`decode`] round-trip exactly: floats by bit pattern (NaN payloads and `-0.0`
//! included), decimals by representation, strings, data and keys byte for byte. The only
//! changesets that do not come back are those holding a type definition or property type that
//! breaks the schema's own rules, which the decoder refuses (see "Validation" below); no changeset
//! built through the schema's constructors contains one.
//!
//! # Format, version 1
//!
//! A decoder can be written from this section alone.
//!
//! ## Integers
//!
//! Every integer is an unsigned LEB128 varint: seven bits per byte, least significant group
//! first, the high bit (0x80) set on every byte except the last. A varint must fit its field
//! (at most 10 bytes and a final byte of at most 0x01 for 64-bit fields; at most 19 bytes and
//! a final byte of at most 0x03 for the 128-bit decimal coefficient) and must be in its shortest
//! form: a final byte of 0x00 after at least one other byte is refused, so every number has
//! exactly one encoding. Signed fields are zigzag-mapped first, `(v << 1) ^ (v >> 63)`, so 0,
//! -1, 1, -2, ... become 0, 1, 2, 3, ... Fields noted `u32` are varints whose value must fit in
//! 32 bits; the `i32` decimal exponent is a zigzag varint whose value must fit in 32 bits.
//!
//! ## Layout
//!
//! ```text
//! changeset   = magic version header strings ops            (nothing may follow)
//! magic       = 0x4f 0x53 0x43                                ("OSC")
//! version     = 0x01                                          (FORMAT_VERSION, one byte)
//! header      = origin:u64 timestamp:u64 client_version:u64 base_version:u64
//! strings     = count:u64 { length:u64 utf8-bytes }*count
//! ops         = count:u64 op*count
//! str         = index:u64                                     (into the string table)
//! ```
//!
//! Every type name, property name, primary-key name, link target name, string value and string
//! key is a reference into the changeset's string table (a `str`, or `pk` in `AddType`), so
//! each distinct string is written once. The encoder lists distinct strings in the order the op
//! stream first uses them; a decoder accepts any table, including unused or repeated entries.
//! String bytes must be valid UTF-8. Data values are not interned.
//!
//! ## Ops
//!
//! An op is a tag byte followed by the instruction's fields:
//!
//! - bits 0-3: the instruction kind (table below; 12-15 are invalid);
//! - bits 4-5: the fate: 0 `Live`, 1 `DeadLink`, 2 `Dropped`, 3 `Void`;
//! - bit 6: the `default` flag of `Set`; it must be 0 for every other kind;
//! - bit 7: must be 0.
//!
//! So a live op's tag is its kind number, and a live default-value `Set` is 0x43.
//!
//! | kind | instruction      | fields after the tag                                          |
//! |------|------------------|---------------------------------------------------------------|
//! | 0    | `AddType`        | name:str pk:u64 count:u64 {name:str proptype}*count          |
//! | 1    | `AddProperties`  | type:str count:u64 {name:str proptype}*count                 |
//! | 2    | `Insert`         | obj                                                           |
//! | 3    | `Set`            | obj prop:str value                                            |
//! | 4    | `AddInt`         | obj prop:str delta:zigzag-i64                                 |
//! | 5    | `Delete`         | obj                                                           |
//! | 6    | `Clear`          | type:str count:u64 key*count                                  |
//! | 7    | `ListInsert`     | obj prop:str index:u32 value elem:opid place                  |
//! | 8    | `ListSet`        | obj prop:str index:u32 value elem:opid                        |
//! | 9    | `ListErase`      | obj prop:str index:u32 elem:opid                              |
//! | 10   | `ListMove`       | obj prop:str from:u32 to:u32 elem:opid node:opid place        |
//! | 11   | `ListClear`      | obj prop:str                                                  |
//!
//! In `AddType`, `pk` is 0 for a type without a primary key and `i + 1` for the primary key
//! named by string-table entry `i`.
//!
//! ```text
//! obj      = type:str key
//! opid     = peer:u64 seq:u64
//! place    = byte [opid]   bit 0: side (0 Left, 1 Right); bit 1: a parent opid follows
//!                          (absent: the virtual root); bits 2-7 must be 0
//! proptype = byte [target:str]
//!            bits 0-3: element kind 0 int, 1 bool, 2 string, 3 float, 4 double, 5 date,
//!                      6 data, 7 object_id, 8 decimal, 9 link (the target type's name
//!                      follows as a str); 10-15 are invalid
//!            bit 4: nullable (scalars only; must be 0 for links)
//!            bit 5: list
//!            bits 6-7: must be 0
//! ```
//!
//! ## Keys and values
//!
//! A key is a tag byte and its payload:
//!
//! | tag | key           | payload                              |
//! |-----|---------------|--------------------------------------|
//! | 0   | `Null`        | none                                 |
//! | 1   | `Int`         | zigzag-i64                           |
//! | 2   | `String`      | str                                  |
//! | 3   | `ObjectId`    | 12 raw bytes                         |
//! | 4   | `Engine`      | opid                                 |
//!
//! A value is a tag byte and its payload (the tag is the property-type element kind plus one,
//! with 0 for null):
//!
//! | tag | value         | payload                                                      |
//! |-----|---------------|--------------------------------------------------------------|
//! | 0   | `Null`        | none                                                         |
//! | 1   | `Int`         | zigzag-i64                                                   |
//! | 2   | `Bool`        | one byte, 0 or 1                                             |
//! | 3   | `String`      | str                                                          |
//! | 4   | `Float`       | the 4 bytes of its bit pattern, little-endian                |
//! | 5   | `Double`      | the 8 bytes of its bit pattern, little-endian                |
//! | 6   | `Date`        | zigzag-i64                                                   |
//! | 7   | `Data`        | length:u64 and that many raw bytes                           |
//! | 8   | `ObjectId`    | 12 raw bytes                                                 |
//! | 9   | `Decimal`     | decimal                                                      |
//! | 10  | `Link`        | key                                                          |
//!
//! ```text
//! decimal = 0x00 coefficient:u128 exponent:zigzag-i32     finite, positive sign
//!         | 0x01 coefficient:u128 exponent:zigzag-i32     finite, negative sign
//!         | 0x02                                          Infinity
//!         | 0x03                                          -Infinity
//!         | 0x04                                          NaN
//! ```
//!
//! The coefficient must be at most `10^34 - 1` and the exponent within `-6176 ..= 6111`
//! ([`Decimal128::from_parts`]).
//!
//! ## Validation
//!
//! Besides the structure above, the decoder checks what a value's own type promises:
//! decimals are in range, an `AddType` definition passes [`ObjectType::new`] (valid names, a
//! primary key that is an int, string or object_id property of the type) and declares each
//! property once, and a property type names an existing element kind. `ElemType::Scalar` never
//! holds `ScalarKind::Link` (the link element kind is [`ElemType::Link`] with its target); if a
//! definition breaks that rule anyway, the encoder writes element kind 15, which every decoder
//! refuses, rather than bytes that would decode as something else.
//!
//! Beyond that the decoder does not judge meaning: instructions on unknown types, values that
//! do not fit their property and the like decode fine and are refused, as for any other
//! changeset, when applied.
//!
//! ## Memory
//!
//! Before reserving room for `count` items the decoder checks that the rest of the input could
//! hold them at the smallest encoded size of such an item (1 byte per string-table entry and
//! per key, 2 per property, 3 per op); otherwise the count is [`DecodeError::CountTooLarge`].
//! Strings and data are copied out of the input only after their full length is known to be
//! present. Decoded memory is therefore bounded by a constant multiple of the input length.

use crate::changeset::Changeset;
use crate::decimal::{Decimal128, DecimalError, DecimalKind};
use crate::error::Error;
use crate::ids::{ClientVersion, OpId, PeerId, ServerVersion};
use crate::instruction::{Fate, Instruction, ObjRef, Op};
use crate::list::{Place, Side};
use crate::schema::{ElemType, Name, ObjectType, PropType, Property};
use crate::value::{ObjKey, ObjectId, ScalarKind, Value};
use hashbrown::HashMap;
use std::sync::Arc;

/// The format version this module writes and the only one it reads.
pub const FORMAT_VERSION: u8 = 1;

const MAGIC: [u8; 3] = *b"OSC";

// Instruction kinds (tag bits 0-3).
const ADD_TYPE: u8 = 0;
const ADD_PROPERTIES: u8 = 1;
const INSERT: u8 = 2;
const SET: u8 = 3;
const ADD_INT: u8 = 4;
const DELETE: u8 = 5;
const CLEAR: u8 = 6;
const LIST_INSERT: u8 = 7;
const LIST_SET: u8 = 8;
const LIST_ERASE: u8 = 9;
const LIST_MOVE: u8 = 10;
const LIST_CLEAR: u8 = 11;

const KIND_MASK: u8 = 0x0f;
const FATE_SHIFT: u8 = 4;
const FATE_MASK: u8 = 0x30;
const DEFAULT_FLAG: u8 = 0x40;
const RESERVED_TAG_BIT: u8 = 0x80;

// Key tags.
const KEY_NULL: u8 = 0;
const KEY_INT: u8 = 1;
const KEY_STRING: u8 = 2;
const KEY_OBJECT_ID: u8 = 3;
const KEY_ENGINE: u8 = 4;

// Value tags.
const VAL_NULL: u8 = 0;
const VAL_INT: u8 = 1;
const VAL_BOOL: u8 = 2;
const VAL_STRING: u8 = 3;
const VAL_FLOAT: u8 = 4;
const VAL_DOUBLE: u8 = 5;
const VAL_DATE: u8 = 6;
const VAL_DATA: u8 = 7;
const VAL_OBJECT_ID: u8 = 8;
const VAL_DECIMAL: u8 = 9;
const VAL_LINK: u8 = 10;

// Decimal kinds.
const DEC_FINITE: u8 = 0;
const DEC_FINITE_NEGATIVE: u8 = 1;
const DEC_INFINITY: u8 = 2;
const DEC_NEGATIVE_INFINITY: u8 = 3;
const DEC_NAN: u8 = 4;

// Place byte.
const PLACE_RIGHT: u8 = 0x01;
const PLACE_PARENT: u8 = 0x02;

// Property type byte.
const PT_KIND_MASK: u8 = 0x0f;
const PT_NULLABLE: u8 = 0x10;
const PT_LIST: u8 = 0x20;
const PT_RESERVED: u8 = 0xc0;
const PT_LINK: u8 = 9;
const PT_UNREPRESENTABLE: u8 = 15;

/// Element kinds 0-8 of the property type byte; their position is their code.
const SCALAR_CODES: [ScalarKind; 9] = [
    ScalarKind::Int,
    ScalarKind::Bool,
    ScalarKind::String,
    ScalarKind::Float,
    ScalarKind::Double,
    ScalarKind::Date,
    ScalarKind::Data,
    ScalarKind::ObjectId,
    ScalarKind::Decimal,
];

// Smallest encoded sizes, for bounding counts by the remaining input.
const MIN_STRING_BYTES: usize = 1;
const MIN_OP_BYTES: usize = 3;
const MIN_PROPERTY_BYTES: usize = 2;
const MIN_KEY_BYTES: usize = 1;

/// Why bytes are not an encoded changeset. Every variant carries the byte offset (from the
/// start of the input) of the item that is wrong; [`DecodeError::offset`] returns it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends before the item that starts at `offset` is complete.
    #[error("input ends inside the {what} starting at byte {offset}")]
    Truncated {
        /// Where the incomplete item starts.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// The input does not start with the magic bytes `OSC`.
    #[error(
        "not an encoded changeset: expected the magic bytes \"OSC\" at byte 0, found {found:02x?}"
    )]
    BadMagic {
        /// The first (up to three) bytes of the input.
        found: Vec<u8>,
    },
    /// The format version byte (at offset 3) names a version this decoder does not read.
    #[error("unsupported format version {version} at byte 3 (this decoder reads version {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// A varint has more significant bits than its field holds.
    #[error("the varint for the {what} at byte {offset} overflows {bits} bits")]
    VarintOverflow {
        /// Where the varint starts.
        offset: usize,
        /// What it encodes.
        what: &'static str,
        /// The field's width.
        bits: u32,
    },
    /// A varint ends in a zero byte after other bytes: not the shortest form of its number.
    #[error("the varint for the {what} at byte {offset} is not in its shortest form")]
    VarintNotMinimal {
        /// Where the varint starts.
        offset: usize,
        /// What it encodes.
        what: &'static str,
    },
    /// A tag or discriminant byte has no meaning (including reserved bits that are set).
    #[error("unknown {what} tag {tag:#04x} at byte {offset}")]
    UnknownTag {
        /// Where the byte is.
        offset: usize,
        /// What kind of tag it is.
        what: &'static str,
        /// The byte.
        tag: u8,
    },
    /// A string reference points past the end of the string table.
    #[error("string index {index} at byte {offset} is out of range for a table of {len} strings")]
    StringIndexOutOfRange {
        /// Where the reference starts.
        offset: usize,
        /// The index found.
        index: u64,
        /// The table's length.
        len: usize,
    },
    /// A string-table entry is not valid UTF-8.
    #[error("invalid UTF-8 in a string at byte {offset}")]
    InvalidUtf8 {
        /// The first byte that is not part of valid UTF-8.
        offset: usize,
    },
    /// An integer does not fit its field (e.g. a list index above `u32::MAX`).
    #[error("the {what} {value} at byte {offset} is out of range")]
    IntegerOutOfRange {
        /// Where the integer starts.
        offset: usize,
        /// What it is.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A decimal's coefficient or exponent is outside the decimal128 ranges.
    #[error("invalid decimal at byte {offset}: {source}")]
    InvalidDecimal {
        /// Where the decimal's kind byte is.
        offset: usize,
        /// What is out of range.
        source: DecimalError,
    },
    /// A property type byte does not describe a property type.
    #[error("invalid property type byte {byte:#04x} at byte {offset}: {reason}")]
    InvalidPropertyType {
        /// Where the byte is.
        offset: usize,
        /// The byte.
        byte: u8,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// An `AddType` definition breaks the schema's rules ([`ObjectType::new`]).
    #[error("invalid type definition at byte {offset}: {source}")]
    InvalidObjectType {
        /// Where the definition (its name) starts.
        offset: usize,
        /// What the schema refuses.
        source: Box<Error>,
    },
    /// A count claims more items than the rest of the input could possibly hold.
    #[error("{count} {what} claimed at byte {offset}, but only {remaining} bytes follow")]
    CountTooLarge {
        /// Where the count starts.
        offset: usize,
        /// What is counted.
        what: &'static str,
        /// The claimed count.
        count: u64,
        /// The bytes left after the count.
        remaining: usize,
    },
    /// Bytes follow the last item (of a changeset: its last op).
    #[error("{count} trailing bytes after the end, at byte {offset}")]
    TrailingBytes {
        /// Where the trailing bytes start.
        offset: usize,
        /// How many there are.
        count: usize,
    },
}

impl DecodeError {
    /// The byte offset the error is about.
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::BadMagic { .. } => 0,
            DecodeError::UnsupportedVersion { .. } => MAGIC.len(),
            DecodeError::Truncated { offset, .. }
            | DecodeError::VarintOverflow { offset, .. }
            | DecodeError::VarintNotMinimal { offset, .. }
            | DecodeError::UnknownTag { offset, .. }
            | DecodeError::StringIndexOutOfRange { offset, .. }
            | DecodeError::InvalidUtf8 { offset }
            | DecodeError::IntegerOutOfRange { offset, .. }
            | DecodeError::InvalidDecimal { offset, .. }
            | DecodeError::InvalidPropertyType { offset, .. }
            | DecodeError::InvalidObjectType { offset, .. }
            | DecodeError::CountTooLarge { offset, .. }
            | DecodeError::TrailingBytes { offset, .. } => *offset,
        }
    }
}

/// Encodes a changeset.
pub fn encode(cs: &Changeset) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(cs, &mut out);
    out
}

/// Appends the encoding of a changeset to `out` (which need not be empty).
pub fn encode_into(cs: &Changeset, out: &mut Vec<u8>) {
    // The string table precedes the ops but is only known once every op has been seen, so the
    // ops go to a scratch buffer while strings are interned, and are copied after the table.
    let mut enc = Encoder {
        ops: Vec::with_capacity(cs.ops.len().saturating_mul(12)),
        strings: Vec::new(),
        index: HashMap::new(),
    };
    for op in &cs.ops {
        enc.op(op);
    }
    // Only a hint: it counts two bytes per string length and the worst case for other varints.
    let table_bytes: usize = enc.strings.iter().map(|s| s.len() + 2).sum();
    out.reserve(MAGIC.len() + 1 + 6 * 10 + table_bytes + enc.ops.len());
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    put_u64(out, cs.origin.0);
    put_u64(out, cs.timestamp);
    put_u64(out, cs.client_version.0);
    put_u64(out, cs.base_version.0);
    put_len(out, enc.strings.len());
    for s in &enc.strings {
        put_len(out, s.len());
        out.extend_from_slice(s.as_bytes());
    }
    put_len(out, cs.ops.len());
    out.extend_from_slice(&enc.ops);
}

/// Decodes a changeset, refusing anything that is not one well-formed encoding with nothing
/// after it.
pub fn decode(bytes: &[u8]) -> Result<Changeset, DecodeError> {
    let head = bytes.get(..MAGIC.len()).unwrap_or(bytes);
    if !MAGIC.starts_with(head) {
        return Err(DecodeError::BadMagic {
            found: head.to_vec(),
        });
    }
    if head.len() < MAGIC.len() {
        return Err(DecodeError::Truncated {
            offset: 0,
            what: "magic bytes",
        });
    }
    let mut r = Reader {
        bytes,
        pos: MAGIC.len(),
        strings: Vec::new(),
    };
    let version = r.byte("format version")?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    let origin = PeerId(r.u64("origin peer")?);
    let timestamp = r.u64("timestamp")?;
    let client_version = ClientVersion(r.u64("client version")?);
    let base_version = ServerVersion(r.u64("base version")?);

    let n = r.count(MIN_STRING_BYTES, "string-table entries")?;
    let mut strings = Vec::with_capacity(n);
    for _ in 0..n {
        strings.push(r.table_entry()?);
    }
    r.strings = strings;

    let n = r.count(MIN_OP_BYTES, "instructions")?;
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        ops.push(r.op()?);
    }
    if r.remaining() > 0 {
        return Err(DecodeError::TrailingBytes {
            offset: r.pos,
            count: r.remaining(),
        });
    }
    Ok(Changeset {
        origin,
        timestamp,
        client_version,
        base_version,
        ops,
    })
}

pub(crate) fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_u128(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_len(out: &mut Vec<u8>, n: usize) {
    // usize is at most 64 bits on every platform Rust supports.
    put_u64(out, n as u64);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn fate_code(fate: Fate) -> u8 {
    match fate {
        Fate::Live => 0,
        Fate::DeadLink => 1,
        Fate::Dropped => 2,
        Fate::Void => 3,
    }
}

fn scalar_code(kind: ScalarKind) -> u8 {
    match kind {
        ScalarKind::Int => 0,
        ScalarKind::Bool => 1,
        ScalarKind::String => 2,
        ScalarKind::Float => 3,
        ScalarKind::Double => 4,
        ScalarKind::Date => 5,
        ScalarKind::Data => 6,
        ScalarKind::ObjectId => 7,
        ScalarKind::Decimal => 8,
        ScalarKind::Link => PT_UNREPRESENTABLE,
    }
}

struct Encoder<'a> {
    ops: Vec<u8>,
    strings: Vec<&'a str>,
    index: HashMap<&'a str, u64>,
}

impl<'a> Encoder<'a> {
    /// The string's table index, adding it to the table on first use.
    fn intern(&mut self, s: &'a str) -> u64 {
        let next = self.strings.len() as u64;
        *self.index.entry(s).or_insert_with(|| {
            self.strings.push(s);
            next
        })
    }

    fn str(&mut self, s: &'a str) {
        let i = self.intern(s);
        put_u64(&mut self.ops, i);
    }

    fn u64(&mut self, v: u64) {
        put_u64(&mut self.ops, v);
    }

    fn i64(&mut self, v: i64) {
        put_u64(&mut self.ops, zigzag(v));
    }

    fn count(&mut self, n: usize) {
        put_len(&mut self.ops, n);
    }

    fn byte(&mut self, b: u8) {
        self.ops.push(b);
    }

    fn op(&mut self, op: &'a Op) {
        let fate = fate_code(op.fate) << FATE_SHIFT;
        match &op.instr {
            Instruction::AddType(def) => {
                self.byte(ADD_TYPE | fate);
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
            Instruction::AddProperties { ty, properties } => {
                self.byte(ADD_PROPERTIES | fate);
                self.str(ty);
                self.count(properties.len());
                for p in properties {
                    self.str(&p.name);
                    self.prop_type(&p.ty);
                }
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
        }
    }

    fn prop_type(&mut self, ty: &'a PropType) {
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

    fn obj(&mut self, obj: &'a ObjRef) {
        self.str(&obj.ty);
        self.key(&obj.key);
    }

    fn key(&mut self, key: &'a ObjKey) {
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
                self.ops.extend_from_slice(&oid.0);
            }
            ObjKey::Engine(id) => {
                self.byte(KEY_ENGINE);
                self.op_id(id);
            }
        }
    }

    fn op_id(&mut self, id: &OpId) {
        self.u64(id.peer.0);
        self.u64(id.seq);
    }

    fn place(&mut self, place: &Place) {
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

    fn value(&mut self, value: &'a Value) {
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
                self.ops.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::Double(d) => {
                self.byte(VAL_DOUBLE);
                self.ops.extend_from_slice(&d.to_bits().to_le_bytes());
            }
            Value::Date(ms) => {
                self.byte(VAL_DATE);
                self.i64(*ms);
            }
            Value::Data(bytes) => {
                self.byte(VAL_DATA);
                self.count(bytes.len());
                self.ops.extend_from_slice(bytes);
            }
            Value::ObjectId(oid) => {
                self.byte(VAL_OBJECT_ID);
                self.ops.extend_from_slice(&oid.0);
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
                        put_u128(&mut self.ops, coefficient);
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

/// A cursor over untrusted input. Invariant: `pos <= bytes.len()`. The protocol's message
/// decoder reads with it too, with an empty string table.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    strings: Vec<Name>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            pos: 0,
            strings: Vec::new(),
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(crate) fn byte(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        match self.bytes.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(DecodeError::Truncated {
                offset: self.pos,
                what,
            }),
        }
    }

    /// The next `n` bytes; `offset` is where the item they belong to starts, for the error.
    pub(crate) fn take(
        &mut self,
        n: usize,
        offset: usize,
        what: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n);
        let slice = end
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or(DecodeError::Truncated { offset, what })?;
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let start = self.pos;
        let slice = self.take(N, start, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// A varint of at most `bits` significant bits, in its shortest form.
    fn varint(&mut self, bits: u32, what: &'static str) -> Result<u128, DecodeError> {
        let start = self.pos;
        let mut value: u128 = 0;
        let mut shift: u32 = 0;
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(DecodeError::Truncated {
                    offset: start,
                    what,
                });
            };
            self.pos += 1;
            let room = bits - shift;
            // Once fewer than seven bits are left, the byte must fit them and end the varint;
            // this also bounds the loop to ceil(bits / 7) bytes.
            if room < 7 && u32::from(b) >= (1u32 << room) {
                return Err(DecodeError::VarintOverflow {
                    offset: start,
                    what,
                    bits,
                });
            }
            value |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    return Err(DecodeError::VarintNotMinimal {
                        offset: start,
                        what,
                    });
                }
                return Ok(value);
            }
            shift += 7;
        }
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        // Most varints in a changeset are single bytes (indices, tags' neighbours, small ids).
        if let Some(&b) = self.bytes.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        let start = self.pos;
        let v = self.varint(64, what)?;
        u64::try_from(v).map_err(|_| DecodeError::VarintOverflow {
            offset: start,
            what,
            bits: 64,
        })
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        self.u64(what).map(unzigzag)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let start = self.pos;
        let v = self.u64(what)?;
        u32::try_from(v).map_err(|_| DecodeError::IntegerOutOfRange {
            offset: start,
            what,
            value: v,
        })
    }

    /// A count of items that take at least `min_item` bytes each, checked against the input
    /// left so that the caller may reserve room for that many.
    pub(crate) fn count(
        &mut self,
        min_item: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let start = self.pos;
        let count = self.u64(what)?;
        let remaining = self.remaining();
        let fits = remaining / min_item.max(1);
        match usize::try_from(count) {
            Ok(n) if n <= fits => Ok(n),
            _ => Err(DecodeError::CountTooLarge {
                offset: start,
                what,
                count,
                remaining,
            }),
        }
    }

    pub(crate) fn table_entry(&mut self) -> Result<Name, DecodeError> {
        let start = self.pos;
        let len = self.u64("string length")?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated {
            offset: start,
            what: "string",
        })?;
        let body_start = self.pos;
        let raw = self.take(len, start, "string")?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(Name::from(s)),
            Err(e) => Err(DecodeError::InvalidUtf8 {
                offset: body_start.saturating_add(e.valid_up_to()),
            }),
        }
    }

    fn str(&mut self, what: &'static str) -> Result<Name, DecodeError> {
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

    fn op(&mut self) -> Result<Op, DecodeError> {
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

    fn object_type(&mut self) -> Result<ObjectType, DecodeError> {
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
        let def =
            ObjectType::new(&name, pk.as_deref(), properties.iter().cloned()).map_err(invalid)?;
        // ObjectType::new folds an identical repeated property into one; the encoder never
        // writes one, and accepting it would give one changeset two encodings.
        if let Some((_, dup)) = properties
            .iter()
            .enumerate()
            .find(|(i, p)| def.properties.get_index_of(&p.name) != Some(*i))
        {
            return Err(invalid(Error::SchemaMismatch {
                ty: name.to_string(),
                detail: format!("property `{}` is declared twice", dup.name),
            }));
        }
        Ok(def)
    }

    fn property(&mut self) -> Result<Property, DecodeError> {
        Ok(Property {
            name: self.str("property name")?,
            ty: self.prop_type()?,
        })
    }

    fn prop_type(&mut self) -> Result<PropType, DecodeError> {
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

    fn obj(&mut self) -> Result<ObjRef, DecodeError> {
        Ok(ObjRef {
            ty: self.str("type name")?,
            key: self.key()?,
        })
    }

    fn key(&mut self) -> Result<ObjKey, DecodeError> {
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

    fn op_id(&mut self, what: &'static str) -> Result<OpId, DecodeError> {
        Ok(OpId {
            peer: PeerId(self.u64(what)?),
            seq: self.u64(what)?,
        })
    }

    fn place(&mut self) -> Result<Place, DecodeError> {
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

    fn value(&mut self) -> Result<Value, DecodeError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(strings: &[&str], ops: u64) -> Vec<u8> {
        let mut b = b"OSC\x01\x07\x08\x09\x0a".to_vec();
        put_len(&mut b, strings.len());
        for s in strings {
            put_len(&mut b, s.len());
            b.extend_from_slice(s.as_bytes());
        }
        put_u64(&mut b, ops);
        b
    }

    fn sample() -> Changeset {
        let mut cs = Changeset::new(PeerId(7), 8);
        cs.client_version = ClientVersion(9);
        cs.base_version = ServerVersion(10);
        cs
    }

    #[test]
    fn golden_bytes() {
        let mut cs = sample();
        cs.ops.push(Op::live(Instruction::Set {
            obj: ObjRef::new("Person", 300),
            prop: "age".into(),
            value: Value::Int(-2),
            default: true,
        }));
        cs.ops.push(Op {
            instr: Instruction::ListErase {
                obj: ObjRef::new("Person", "ada"),
                prop: "tags".into(),
                index: 1,
                elem: OpId {
                    peer: PeerId(2),
                    seq: 129,
                },
            },
            fate: Fate::Void,
        });
        let mut expected = header(&["Person", "age", "ada", "tags"], 2);
        expected.extend_from_slice(&[
            0x43, // Set | Live | default
            0, 1, 0xd8, 0x04, // Person, int key 300 (zigzag 600)
            1,    // age
            1, 3,    // int -2 (zigzag 3)
            0x39, // ListErase | Void
            0, 2, 2, // Person, string key "ada"
            3, 1, // tags, index 1
            2, 0x81, 0x01, // elem 2:129
        ]);
        let bytes = encode(&cs);
        assert_eq!(bytes, expected);
        assert_eq!(decode(&bytes), Ok(cs));
    }

    #[test]
    fn varint_limits() {
        for v in [0, 1, 127, 128, 300, u64::MAX >> 1, u64::MAX] {
            let mut b = Vec::new();
            put_u64(&mut b, v);
            let mut r = Reader {
                bytes: &b,
                pos: 0,
                strings: Vec::new(),
            };
            assert_eq!(r.u64("test"), Ok(v));
            assert_eq!(r.pos, b.len());
        }
        for v in [0, 1, -1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        let read = |b: &[u8]| {
            Reader {
                bytes: b,
                pos: 0,
                strings: Vec::new(),
            }
            .u64("test")
        };
        // u64::MAX is nine 0xff bytes and a final 0x01; 0x02 there would be bit 64.
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(read(&max), Ok(u64::MAX));
        max[9] = 0x02;
        assert!(matches!(
            read(&max),
            Err(DecodeError::VarintOverflow { offset: 0, .. })
        ));
        assert!(matches!(
            read(&[0xff; 11]),
            Err(DecodeError::VarintOverflow { offset: 0, .. })
        ));
        assert!(matches!(
            read(&[0x80, 0x00]),
            Err(DecodeError::VarintNotMinimal { offset: 0, .. })
        ));
        assert!(matches!(
            read(&[0x80, 0x80]),
            Err(DecodeError::Truncated { offset: 0, .. })
        ));
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            decode(b""),
            Err(DecodeError::Truncated {
                offset: 0,
                what: "magic bytes"
            })
        );
        assert_eq!(
            decode(b"OS"),
            Err(DecodeError::Truncated {
                offset: 0,
                what: "magic bytes"
            })
        );
        assert_eq!(
            decode(b"OSX\x01"),
            Err(DecodeError::BadMagic {
                found: b"OSX".to_vec()
            })
        );
        assert_eq!(
            decode(b"{\"origin\""),
            Err(DecodeError::BadMagic {
                found: b"{\"o".to_vec()
            })
        );
        assert_eq!(
            decode(b"OSC\x02"),
            Err(DecodeError::UnsupportedVersion { version: 2 })
        );
        let mut b = encode(&sample());
        assert_eq!(decode(&b), Ok(sample()));
        b.push(0);
        assert_eq!(
            decode(&b),
            Err(DecodeError::TrailingBytes {
                offset: b.len() - 1,
                count: 1
            })
        );
    }

    #[test]
    fn structural_errors_name_the_offset() {
        let base = header(&["T", "p"], 1);
        let at = base.len();
        // Padding keeps the op count plausible; every error below comes before it.
        let with = |tail: &[u8]| {
            let mut b = base.clone();
            b.extend_from_slice(tail);
            b.extend_from_slice(&[0; 8]);
            decode(&b)
        };
        assert_eq!(
            with(&[0x0c]),
            Err(DecodeError::UnknownTag {
                offset: at,
                what: "instruction",
                tag: 0x0c
            })
        );
        // The default flag belongs to Set only.
        assert!(matches!(
            with(&[0x42, 0, 0]),
            Err(DecodeError::UnknownTag { .. })
        ));
        assert_eq!(
            with(&[INSERT, 5, 0]),
            Err(DecodeError::StringIndexOutOfRange {
                offset: at + 1,
                index: 5,
                len: 2
            })
        );
        assert_eq!(
            with(&[INSERT, 0, 9]),
            Err(DecodeError::UnknownTag {
                offset: at + 2,
                what: "key",
                tag: 9
            })
        );
        assert_eq!(
            with(&[SET, 0, 0, 1, VAL_BOOL, 2]),
            Err(DecodeError::UnknownTag {
                offset: at + 5,
                what: "bool",
                tag: 2
            })
        );
        assert!(matches!(
            with(&[LIST_ERASE, 0, 0, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 1]),
            Err(DecodeError::IntegerOutOfRange { offset, .. }) if offset == at + 4
        ));
        assert!(matches!(
            with(&[LIST_INSERT, 0, 0, 1, 0, 0, 1, 1, 0x04]),
            Err(DecodeError::UnknownTag { what: "place", .. })
        ));
        // 10^34 as a coefficient.
        let mut tail = vec![SET, 0, 0, 1, VAL_DECIMAL, DEC_FINITE];
        put_u128(&mut tail, Decimal128::MAX_COEFFICIENT + 1);
        tail.push(0);
        assert!(matches!(
            with(&tail),
            Err(DecodeError::InvalidDecimal {
                offset,
                source: DecimalError::CoefficientOutOfRange { .. }
            }) if offset == at + 5
        ));
        let mut tail = vec![SET, 0, 0, 1, VAL_DECIMAL, DEC_FINITE, 1];
        put_u64(&mut tail, zigzag(i64::from(i32::MAX) + 1));
        assert!(matches!(
            with(&tail),
            Err(DecodeError::InvalidDecimal {
                source: DecimalError::ExponentOutOfRange { .. },
                ..
            })
        ));
        assert!(matches!(
            with(&[ADD_PROPERTIES, 0, 1, 1, 0x19]),
            Err(DecodeError::InvalidPropertyType { byte: 0x19, .. })
        ));
        assert!(matches!(
            with(&[ADD_PROPERTIES, 0, 1, 1, 0x0a]),
            Err(DecodeError::InvalidPropertyType { byte: 0x0a, .. })
        ));
        assert!(matches!(
            with(&[ADD_PROPERTIES, 0, 1, 1, 0x40]),
            Err(DecodeError::InvalidPropertyType { byte: 0x40, .. })
        ));
        assert!(matches!(
            with(&[CLEAR, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]),
            Err(DecodeError::CountTooLarge { count, .. }) if count == 1 << 62
        ));
    }

    #[test]
    fn invalid_utf8_is_located() {
        let mut b = b"OSC\x01\x00\x00\x00\x00\x01\x03a".to_vec();
        b.extend_from_slice(&[0xc3, 0x28, 0x00]);
        assert_eq!(decode(&b), Err(DecodeError::InvalidUtf8 { offset: 11 }));
    }

    #[test]
    fn type_definitions_are_checked() {
        let base = header(&["T", "id", "x", ""], 1);
        let at = base.len();
        let def = |pk: u8, props: &[u8]| {
            let mut b = base.clone();
            b.extend_from_slice(&[ADD_TYPE, 0, pk]);
            b.extend_from_slice(props);
            decode(&b)
        };
        // T with int primary key "id".
        let ok = def(2, &[1, 1, 0]).expect("valid definition");
        let Instruction::AddType(t) = &ok.ops[0].instr else {
            panic!("not an AddType: {ok:?}");
        };
        assert_eq!(t.primary_key.as_deref(), Some("id"));
        // Primary key not among the properties.
        assert!(matches!(
            def(3, &[1, 1, 0]),
            Err(DecodeError::InvalidObjectType { offset, .. }) if offset == at + 1
        ));
        // A bool primary key.
        assert!(matches!(
            def(2, &[1, 1, 1]),
            Err(DecodeError::InvalidObjectType { .. })
        ));
        // An empty property name.
        assert!(matches!(
            def(0, &[1, 3, 0]),
            Err(DecodeError::InvalidObjectType { .. })
        ));
        // The same property twice, even identically.
        assert!(matches!(
            def(0, &[2, 2, 0, 2, 0]),
            Err(DecodeError::InvalidObjectType { .. })
        ));
        // The pk index is checked against the table.
        assert!(matches!(
            def(9, &[0]),
            Err(DecodeError::StringIndexOutOfRange { index: 8, .. })
        ));
    }

    #[test]
    fn scalar_link_is_refused_not_misread() {
        let mut cs = sample();
        cs.ops.push(Op::live(Instruction::AddProperties {
            ty: "T".into(),
            properties: vec![Property::new(
                "p",
                PropType::scalar(ScalarKind::Link, false),
            )],
        }));
        assert!(matches!(
            decode(&encode(&cs)),
            Err(DecodeError::InvalidPropertyType { byte: 0x0f, .. })
        ));
    }

    #[test]
    fn encode_into_appends() {
        let mut out = b"xy".to_vec();
        encode_into(&sample(), &mut out);
        assert_eq!(&out[..2], b"xy");
        assert_eq!(decode(&out[2..]), Ok(sample()));
    }
}
