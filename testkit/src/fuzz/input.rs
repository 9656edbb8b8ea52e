//! Reading structure out of fuzz bytes.
//!
//! Every read succeeds: past the end of the input it yields zeros, so any byte string is a
//! valid (if short) program and libFuzzer's mutations (truncation, insertion, splicing) keep
//! producing meaningful inputs instead of parse failures.

/// A cursor over the fuzz input.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte, or 0 past the end.
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// A number in `0..n` (`n > 0`) from one byte.
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    /// True with probability about `1 / n`.
    pub fn one_in(&mut self, n: u8) -> bool {
        self.byte() % n == 0
    }

    /// A bool from the low bit of a byte.
    pub fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// Eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        let mut v = 0u64;
        for i in 0..8 {
            v |= u64::from(self.byte()) << (8 * i);
        }
        v
    }

    /// A number that is usually small (one byte) and sometimes anything (eight more): the
    /// fuzzer reaches both boundary values and the small values that collide across peers.
    pub fn small_or_any(&mut self) -> u64 {
        match self.byte() {
            0xff => self.u64(),
            b => u64::from(b),
        }
    }

    /// Up to `max` raw bytes (fewer at the end of the input).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1);
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos += n;
        &self.data[start..end]
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[self.below(items.len())]
    }
}
