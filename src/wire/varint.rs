//! The integers and strings every binary form of the crate is made of, and the reader that
//! treats every byte as hostile.
//!
//! Integers are LEB128 varints in their shortest form (signed ones zigzag-mapped first);
//! strings are a length and UTF-8 bytes. The changeset format documents the rules in full
//! (`wire::changeset`). [`Reader`] never panics and never reads past its input: every method
//! returns a typed [`DecodeError`] with the offset of the item that is wrong.

use super::DecodeError;
use crate::model::Name;

pub(crate) fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_u128(out: &mut Vec<u8>, mut v: u128) {
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

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// A cursor over untrusted input. Invariant: `pos <= bytes.len()`. The protocol's message
/// decoder reads with it too, with an empty string table.
pub(crate) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
    /// The string table of the item being read (a changeset's, a snapshot's); empty for
    /// protocol messages.
    pub(super) strings: Vec<Name>,
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

    pub(super) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let start = self.pos;
        let slice = self.take(N, start, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// A varint of at most `bits` significant bits, in its shortest form.
    pub(super) fn varint(&mut self, bits: u32, what: &'static str) -> Result<u128, DecodeError> {
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

    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
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
        self.table_str().map(Name::from)
    }

    /// A string table entry, borrowed from the input.
    pub(crate) fn table_str(&mut self) -> Result<&'a str, DecodeError> {
        let start = self.pos;
        let len = self.u64("string length")?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated {
            offset: start,
            what: "string",
        })?;
        let body_start = self.pos;
        let raw = self.take(len, start, "string")?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s),
            Err(e) => Err(DecodeError::InvalidUtf8 {
                offset: body_start.saturating_add(e.valid_up_to()),
            }),
        }
    }
}
