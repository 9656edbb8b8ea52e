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

mod decode;
mod encode;

use super::varint::{put_len, put_u64, Reader};
use super::DecodeError;
use crate::model::{Changeset, ClientVersion, Fate, Name, PeerId, ScalarKind, ServerVersion};
pub(crate) use encode::Encoder;

/// The format version this module writes and the only one it reads.
pub const FORMAT_VERSION: u8 = 1;

pub(super) const MAGIC: [u8; 3] = *b"OSC";

// Instruction kinds (tag bits 0-3).
pub(super) const ADD_TYPE: u8 = 0;
pub(super) const ADD_PROPERTIES: u8 = 1;
pub(super) const INSERT: u8 = 2;
pub(super) const SET: u8 = 3;
pub(super) const ADD_INT: u8 = 4;
pub(super) const DELETE: u8 = 5;
pub(super) const CLEAR: u8 = 6;
pub(super) const LIST_INSERT: u8 = 7;
pub(super) const LIST_SET: u8 = 8;
pub(super) const LIST_ERASE: u8 = 9;
pub(super) const LIST_MOVE: u8 = 10;
pub(super) const LIST_CLEAR: u8 = 11;

pub(super) const KIND_MASK: u8 = 0x0f;
pub(super) const FATE_SHIFT: u8 = 4;
pub(super) const FATE_MASK: u8 = 0x30;
pub(super) const DEFAULT_FLAG: u8 = 0x40;
pub(super) const RESERVED_TAG_BIT: u8 = 0x80;

// Key tags.
pub(super) const KEY_NULL: u8 = 0;
pub(super) const KEY_INT: u8 = 1;
pub(super) const KEY_STRING: u8 = 2;
pub(super) const KEY_OBJECT_ID: u8 = 3;
pub(super) const KEY_ENGINE: u8 = 4;

// Value tags.
pub(super) const VAL_NULL: u8 = 0;
pub(super) const VAL_INT: u8 = 1;
pub(super) const VAL_BOOL: u8 = 2;
pub(super) const VAL_STRING: u8 = 3;
pub(super) const VAL_FLOAT: u8 = 4;
pub(super) const VAL_DOUBLE: u8 = 5;
pub(super) const VAL_DATE: u8 = 6;
pub(super) const VAL_DATA: u8 = 7;
pub(super) const VAL_OBJECT_ID: u8 = 8;
pub(super) const VAL_DECIMAL: u8 = 9;
pub(super) const VAL_LINK: u8 = 10;

// Decimal kinds.
pub(super) const DEC_FINITE: u8 = 0;
pub(super) const DEC_FINITE_NEGATIVE: u8 = 1;
pub(super) const DEC_INFINITY: u8 = 2;
pub(super) const DEC_NEGATIVE_INFINITY: u8 = 3;
pub(super) const DEC_NAN: u8 = 4;

// Place byte.
pub(super) const PLACE_RIGHT: u8 = 0x01;
pub(super) const PLACE_PARENT: u8 = 0x02;

// Property type byte.
pub(super) const PT_KIND_MASK: u8 = 0x0f;
pub(super) const PT_NULLABLE: u8 = 0x10;
pub(super) const PT_LIST: u8 = 0x20;
pub(super) const PT_RESERVED: u8 = 0xc0;
pub(super) const PT_LINK: u8 = 9;
pub(super) const PT_UNREPRESENTABLE: u8 = 15;

/// Element kinds 0-8 of the property type byte; their position is their code.
pub(super) const SCALAR_CODES: [ScalarKind; 9] = [
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
pub(super) const MIN_STRING_BYTES: usize = 1;
pub(super) const MIN_OP_BYTES: usize = 3;
pub(super) const MIN_PROPERTY_BYTES: usize = 2;
pub(super) const MIN_KEY_BYTES: usize = 1;

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
    let mut enc = Encoder::with_capacity(cs.ops.len().saturating_mul(12) + 10);
    enc.count(cs.ops.len());
    for op in &cs.ops {
        enc.op(op);
    }
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    put_u64(out, cs.origin.0);
    put_u64(out, cs.timestamp);
    put_u64(out, cs.client_version.0);
    put_u64(out, cs.base_version.0);
    enc.finish(out);
}

/// Decodes a changeset, refusing anything that is not one well-formed encoding with nothing
/// after it.
pub fn decode(bytes: &[u8]) -> Result<Changeset, DecodeError> {
    decode_inner(bytes, None)
}

/// [`decode`], sharing the names (type and property names, string values and keys) of earlier
/// changesets decoded with the same `names`: a changeset that names what an earlier one named
/// holds the same `Arc`s instead of allocating its own. For a stream of changesets from one
/// writer, such as a session's uploads, where every changeset repeats a few names.
///
/// ```
/// use objsync::wire::{decode_with, encode, Names};
/// use objsync::{Changeset, Instruction, ObjRef, Op, PeerId};
///
/// let mut cs = Changeset::new(PeerId(7), 1_000);
/// cs.ops.push(Op::live(Instruction::Insert { obj: ObjRef::new("Doc", 1) }));
/// let bytes = encode(&cs);
/// let mut names = Names::default();
/// let (a, b) = (decode_with(&bytes, &mut names)?, decode_with(&bytes, &mut names)?);
/// assert_eq!(a, cs);
/// let ty = |cs: &Changeset| match &cs.ops[0].instr {
///     Instruction::Insert { obj } => obj.ty.clone(),
///     _ => unreachable!(),
/// };
/// assert!(std::sync::Arc::ptr_eq(&ty(&a), &ty(&b)));
/// # Ok::<(), objsync::wire::DecodeError>(())
/// ```
pub fn decode_with(bytes: &[u8], names: &mut Names) -> Result<Changeset, DecodeError> {
    decode_inner(bytes, Some(names))
}

/// Names shared between changesets decoded one after another ([`decode_with`]). It keeps at
/// most [`Names::MAX`] names of at most [`Names::MAX_LEN`] bytes each, the first it meets, so
/// its memory stays bounded whatever it decodes.
#[derive(Debug, Default)]
pub struct Names {
    set: hashbrown::HashSet<Name>,
}

impl Names {
    /// The most names kept.
    pub const MAX: usize = 1024;
    /// The longest name kept, in bytes.
    pub const MAX_LEN: usize = 64;

    /// `s` as a shared name: the one kept if there is one, else a new one (kept if there is room).
    pub(super) fn share(&mut self, s: &str) -> Name {
        if let Some(name) = self.set.get(s) {
            return name.clone();
        }
        let name = Name::from(s);
        if self.set.len() < Self::MAX && s.len() <= Self::MAX_LEN {
            self.set.insert(name.clone());
        }
        name
    }
}

fn decode_inner(bytes: &[u8], names: Option<&mut Names>) -> Result<Changeset, DecodeError> {
    let head = bytes.get(..MAGIC.len()).unwrap_or(bytes);
    if !MAGIC.starts_with(head) {
        return Err(DecodeError::BadMagic {
            what: "an encoded changeset",
            expected: "OSC",
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
        return Err(DecodeError::UnsupportedVersion {
            version,
            supported: FORMAT_VERSION,
        });
    }
    let origin = PeerId(r.u64("origin peer")?);
    let timestamp = r.u64("timestamp")?;
    let client_version = ClientVersion(r.u64("client version")?);
    let base_version = ServerVersion(r.u64("base version")?);

    r.table(names)?;
    let n = r.count(MIN_OP_BYTES, "instructions")?;
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        ops.push(r.op()?);
    }
    r.finish()?;
    Ok(Changeset {
        origin,
        timestamp,
        client_version,
        base_version,
        ops,
    })
}

pub(super) fn fate_code(fate: Fate) -> u8 {
    match fate {
        Fate::Live => 0,
        Fate::DeadLink => 1,
        Fate::Dropped => 2,
        Fate::Void => 3,
    }
}

pub(super) fn scalar_code(kind: ScalarKind) -> u8 {
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

#[cfg(test)]
mod tests;
