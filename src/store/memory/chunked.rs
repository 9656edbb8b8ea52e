//! `Chunked`: the values of one list property in [`super::MemoryStore`], kept in chunks
//! so that inserting or erasing at a position moves at most one chunk.
//!
//! A plain vector makes every insert in the middle of a long list move half of it (a 20,000-element
//! list edited at random positions spent most of its time in `memmove`). Chunks hold at most
//! [`Chunked::MAX`] values; a full chunk splits in two, an empty one goes away. Finding a position
//! walks the chunk lengths from the chunk the last edit found: edits come in runs at nearby
//! positions (a person typing, a sync replaying what they typed), so the walk is usually zero or
//! one chunk, and at worst a scan over a few hundred lengths for lists of realistic size.

use crate::model::Value;
use smallvec::SmallVec;

/// A list of values in chunks. See the module documentation.
#[derive(Clone, Debug, Default)]
pub(super) struct Chunked {
    /// Never holds an empty chunk. The first chunk is inline: a short list costs one
    /// allocation, as a plain vector would.
    chunks: SmallVec<[Vec<Value>; 1]>,
    /// The number of values in all: asked for before every list edit (the bounds check), and
    /// summing the chunks of a long list each time cost a twentieth of a long edit trace.
    len: usize,
    /// The chunk the last lookup found and the position of its first value: where the next
    /// lookup starts walking. Any chunk index and its true start will do; edits keep it true.
    hint: Hint,
}

/// A chunk index and the list position of the chunk's first value.
#[derive(Clone, Copy, Debug, Default)]
struct Hint {
    chunk: usize,
    start: usize,
}

impl Chunked {
    /// The most values one chunk holds.
    const MAX: usize = 256;

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The chunk holding position `index` and the position within it; an index at or past the
    /// length resolves to the end of the last chunk. Walks from the hint, which it moves there.
    fn locate(&mut self, index: usize) -> (usize, usize) {
        let Hint {
            mut chunk,
            mut start,
        } = self.hint;
        if chunk >= self.chunks.len() {
            (chunk, start) = (0, 0);
        }
        while index < start && chunk > 0 {
            chunk -= 1;
            start -= self.chunks[chunk].len();
        }
        let last = self.chunks.len().saturating_sub(1);
        while chunk < last && index >= start + self.chunks[chunk].len() {
            start += self.chunks[chunk].len();
            chunk += 1;
        }
        self.hint = Hint { chunk, start };
        (chunk, index - start)
    }

    pub(super) fn get_mut(&mut self, index: usize) -> Option<&mut Value> {
        let (c, i) = self.locate(index);
        self.chunks.get_mut(c)?.get_mut(i)
    }

    /// Inserts `value` at `index`; callers check that it is at most the length (a larger one
    /// appends).
    pub(super) fn insert(&mut self, index: usize, value: Value) {
        if self.chunks.is_empty() {
            self.chunks.push(Vec::new());
        }
        let (c, i) = self.locate(index);
        let chunk = &mut self.chunks[c];
        chunk.insert(i.min(chunk.len()), value);
        self.len += 1;
        // The hint's chunk is `c`, whose start neither the insert nor a split moves.
        if chunk.len() > Self::MAX {
            let tail = chunk.split_off(chunk.len() / 2);
            self.chunks.insert(c + 1, tail);
        }
    }

    /// Appends values at the end: the last chunk is filled, then new full ones (loading a long
    /// list this way moves nothing and finds no position).
    pub(super) fn extend(&mut self, values: Vec<Value>) {
        self.len += values.len();
        let mut values = values.into_iter();
        while values.len() > 0 {
            match self.chunks.last_mut() {
                Some(last) if last.len() < Self::MAX => {
                    let room = Self::MAX - last.len();
                    last.extend(values.by_ref().take(room));
                }
                _ => self
                    .chunks
                    .push(Vec::with_capacity(values.len().min(Self::MAX))),
            }
        }
    }

    /// Removes and returns the value at `index`, if there is one.
    pub(super) fn remove(&mut self, index: usize) -> Option<Value> {
        let (c, i) = self.locate(index);
        let chunk = self.chunks.get_mut(c)?;
        if i >= chunk.len() {
            return None;
        }
        let value = chunk.remove(i);
        self.len -= 1;
        // The hint's chunk is `c`; when it goes, the next one starts where it did.
        if chunk.is_empty() {
            self.chunks.remove(c);
        }
        Some(value)
    }

    /// The values in order.
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = &Value> {
        self.chunks.iter().flatten()
    }

    pub(super) fn to_vec(&self) -> Vec<Value> {
        self.iter().cloned().collect()
    }
}

/// Lists are equal when their values are, however they are chunked.
impl PartialEq for Chunked {
    fn eq(&self, other: &Chunked) -> bool {
        self.iter().eq(other.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random inserts and removes agree with a plain vector, across chunk splits and removals.
    #[test]
    fn behaves_like_a_vector() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % m as u64) as usize
        };
        let (mut c, mut v) = (Chunked::default(), Vec::new());
        for step in 0..20_000 {
            if v.is_empty() || next(10) < 6 {
                let i = next(v.len() + 1);
                c.insert(i, Value::Int(step));
                v.insert(i, Value::Int(step));
            } else {
                let i = next(v.len());
                assert_eq!(c.remove(i), Some(v.remove(i)));
            }
            assert_eq!(c.len(), v.len());
        }
        assert_eq!(c.to_vec(), v);
        // Typing: runs of inserts at a moving cursor and of erases behind it, across chunk
        // splits and removals, which the lookup hint must follow.
        for run in 0..200 {
            let mut at = next(v.len() + 1);
            for k in 0..next(600) {
                c.insert(at, Value::Int(run * 1_000 + k as i64));
                v.insert(at, Value::Int(run * 1_000 + k as i64));
                at += 1;
            }
            for _ in 0..next(at.min(400) + 1) {
                at -= 1;
                assert_eq!(c.remove(at), Some(v.remove(at)));
            }
            assert_eq!(c.len(), v.len());
        }
        assert_eq!(c.to_vec(), v);
        // Appending in bulk fills chunks past the ones there, and inserts still split them.
        let tail: Vec<Value> = (0..1_000).map(Value::Int).collect();
        c.extend(tail.clone());
        v.extend(tail);
        c.insert(v.len() - 10, Value::Null);
        v.insert(v.len() - 10, Value::Null);
        assert_eq!((c.len(), c.to_vec()), (v.len(), v.clone()));
        assert!(
            c.chunks.len() > 1
                && c.chunks
                    .iter()
                    .all(|k| !k.is_empty() && k.len() <= Chunked::MAX)
        );
        for i in [0, v.len() / 2, v.len() - 1] {
            assert_eq!(c.get_mut(i).cloned(), v.get(i).cloned());
        }
        assert_eq!(c.get_mut(v.len()), None);
        assert_eq!(c.remove(v.len()), None);
        let back: Vec<&Value> = c.iter().rev().collect();
        assert_eq!(back, v.iter().rev().collect::<Vec<_>>());
        if let Some(x) = c.get_mut(3) {
            *x = Value::Int(-1);
        }
        assert_eq!(c.to_vec()[3], Value::Int(-1));
    }
}
