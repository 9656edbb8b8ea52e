//! The wire layer's errors: [`DecodeError`] for bytes that are not a well-formed encoding (a
//! changeset, a snapshot, a message's fields), with the offset of what is wrong, and
//! [`MessageError`] for frames that are not a protocol message this side accepts.

use super::protocol::ErrorCode;
use crate::model::{DecimalError, Error};

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
    /// The input does not start with the magic bytes of what was to be decoded (`OSC` for a
    /// changeset).
    #[error("not {what}: expected the magic bytes {expected:?} at byte 0, found {found:02x?}")]
    BadMagic {
        /// What was to be decoded ("an encoded changeset", ...).
        what: &'static str,
        /// The magic bytes it starts with.
        expected: &'static str,
        /// The first (up to three) bytes of the input.
        found: Vec<u8>,
    },
    /// The format version byte (at offset 3) names a version this decoder does not read.
    #[error(
        "unsupported format version {version} at byte 3 (this decoder reads version {supported})"
    )]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
        /// The version this decoder reads.
        supported: u8,
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
    /// An `AddType` definition breaks the schema's rules ([`ObjectType::new`](crate::ObjectType::new)).
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
            // The version byte follows the three magic bytes.
            DecodeError::UnsupportedVersion { .. } => 3,
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

/// Why a frame is not a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The tag byte names no message this side receives.
    #[error("unknown message tag {tag:#04x}")]
    UnknownMessage {
        /// The tag.
        tag: u8,
    },
    /// The fields do not decode.
    #[error("malformed message: {0}")]
    Malformed(#[from] DecodeError),
    /// A chunk does not continue the changeset the previous chunks began.
    #[error("chunk out of sequence: {0}")]
    Chunk(&'static str),
    /// The frame, a chunk or a text is larger than the receiver accepts.
    #[error("{what} of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

impl MessageError {
    /// The protocol error a receiver answers this with.
    pub fn code(&self) -> ErrorCode {
        match self {
            MessageError::UnknownMessage { .. } => ErrorCode::UnknownMessage,
            MessageError::Malformed(_) | MessageError::Chunk(_) => ErrorCode::MalformedMessage,
            MessageError::TooLarge { .. } => ErrorCode::LimitsExceeded,
        }
    }
}
