//! The document order of a [`Sequence`]: node indices in chunks of at most `chunk_max`, each
//! entry flagged when its node is visible, with a Fenwick tree over the chunks' visible counts,
//! so that turning an index into a node and a node into an index costs O(log n + chunk size).

use super::{Chunk, ElemState, Sequence, Undo, VISIBLE_BIT};

impl Sequence {
    /// The chunk holding node `n` and its offset there.
    pub(super) fn locate(&self, n: u32) -> (usize, usize) {
        let c = self.node(n).chunk as usize;
        let entries = &self.chunks[c].entries;
        // A node is once in the order, so finding it at the hinted offset is finding it.
        let hint = self.last_off as usize;
        if entries
            .get(hint)
            .is_some_and(|&entry| entry & !VISIBLE_BIT == n)
        {
            return (c, hint);
        }
        let off = (entries.iter())
            .position(|&entry| entry & !VISIBLE_BIT == n)
            .expect("a node is in the chunk it records");
        (c, off)
    }

    /// The visible index of a visible node.
    pub(super) fn visible_index(&self, n: u32) -> usize {
        self.visible_index_at(self.locate(n))
    }

    /// The visible index of the visible node at offset `off` of chunk `c`.
    pub(super) fn visible_index_at(&self, (c, off): (usize, usize)) -> usize {
        let chunk = &self.chunks[c];
        let before = chunk.entries[..off]
            .iter()
            .filter(|&&entry| entry & VISIBLE_BIT != 0)
            .count();
        self.prefix(chunk.pos as usize) + before
    }

    /// The chunk and offset of the visible node at `index` (`index < len`).
    pub(super) fn nth_visible(&self, index: usize) -> (usize, usize) {
        let (pos, mut rest) = self.find(index);
        let c = self.order[pos] as usize;
        let off = self.chunks[c]
            .entries
            .iter()
            .position(|&entry| {
                if entry & VISIBLE_BIT == 0 {
                    return false;
                }
                if rest == 0 {
                    return true;
                }
                rest -= 1;
                false
            })
            .expect("the Fenwick tree counts the chunk's visible nodes");
        (c, off)
    }

    /// The node of the element at a visible index (which must be in range).
    pub(super) fn visible_node(&self, index: usize) -> u32 {
        self.entry_node(self.nth_visible(index))
    }

    /// The node at offset `off` of chunk `c`.
    pub(super) fn entry_node(&self, (c, off): (usize, usize)) -> u32 {
        self.chunks[c].entries[off] & !VISIBLE_BIT
    }

    /// The first visible node after offset `off` in chunk `c`, if that chunk has one.
    pub(super) fn visible_after(&self, (c, off): (usize, usize)) -> Option<u32> {
        let rest = &self.chunks[c].entries[off + 1..];
        let entry = rest.iter().find(|&&entry| entry & VISIBLE_BIT != 0)?;
        Some(entry & !VISIBLE_BIT)
    }

    pub(super) fn set_visible(&mut self, n: u32, visible: bool) {
        let (c, off) = self.locate(n);
        let entry = &mut self.chunks[c].entries[off];
        if (*entry & VISIBLE_BIT != 0) == visible {
            return;
        }
        *entry ^= VISIBLE_BIT;
        self.count(c, visible);
    }

    /// Counts one node of chunk `c` becoming visible (`up`) or invisible.
    pub(super) fn count(&mut self, c: usize, up: bool) {
        let chunk = &mut self.chunks[c];
        let mut i = chunk.pos as usize + 1;
        if up {
            chunk.visible += 1;
            self.visible += 1;
            while i < self.fenwick.len() {
                self.fenwick[i] += 1;
                i += i & i.wrapping_neg();
            }
        } else {
            chunk.visible -= 1;
            self.visible -= 1;
            while i < self.fenwick.len() {
                self.fenwick[i] -= 1;
                i += i & i.wrapping_neg();
            }
        }
    }

    /// Visible nodes in the chunks before position `pos`.
    pub(super) fn prefix(&self, pos: usize) -> usize {
        let mut sum = 0;
        let mut i = pos;
        while i > 0 {
            sum += self.fenwick[i] as usize;
            i &= i - 1;
        }
        sum
    }

    /// The position of the chunk holding visible index `index`, and the index within that chunk.
    pub(super) fn find(&self, index: usize) -> (usize, usize) {
        let n = self.fenwick.len() - 1;
        let mut pos = 0;
        let mut rest = index;
        let mut step = 1 << (usize::BITS - 1 - n.leading_zeros());
        while step > 0 {
            let next = pos + step;
            if next <= n && (self.fenwick[next] as usize) <= rest {
                pos = next;
                rest -= self.fenwick[next] as usize;
            }
            step >>= 1;
        }
        (pos, rest)
    }

    pub(super) fn rebuild_fenwick(&mut self) {
        let n = self.order.len();
        self.fenwick.clear();
        self.fenwick.resize(n + 1, 0);
        for i in 1..=n {
            self.fenwick[i] += self.chunks[self.order[i - 1] as usize].visible;
            let j = i + (i & i.wrapping_neg());
            if j <= n {
                self.fenwick[j] += self.fenwick[i];
            }
        }
    }

    pub(super) fn renumber_from(&mut self, pos: usize) {
        for p in pos..self.order.len() {
            self.chunks[self.order[p] as usize].pos = p as u32;
        }
    }

    /// Splits chunk `c` in two; the second half, from the returned offset on, is the new last
    /// chunk.
    pub(super) fn split(&mut self, c: usize) -> usize {
        let half = self.chunks[c].entries.len() / 2;
        let tail = self.chunks[c].entries.split_off(half);
        let new = self.chunks.len() as u32;
        let mut visible = 0;
        for &entry in &tail {
            self.node_mut(entry & !VISIBLE_BIT).chunk = new;
            visible += u32::from(entry & VISIBLE_BIT != 0);
        }
        self.chunks[c].visible -= visible;
        let pos = self.chunks[c].pos as usize + 1;
        self.chunks.push(Chunk {
            entries: tail,
            visible,
            pos: pos as u32,
        });
        self.order.insert(pos, new);
        self.renumber_from(pos + 1);
        self.rebuild_fenwick();
        self.log(Undo::Split);
        half
    }

    pub(super) fn unsplit_last(&mut self) {
        let chunk = self.chunks.pop().expect("a split chunk exists");
        let pos = chunk.pos as usize;
        let into = self.order[pos - 1];
        for &entry in &chunk.entries {
            self.node_mut(entry & !VISIBLE_BIT).chunk = into;
        }
        let target = &mut self.chunks[into as usize];
        target.entries.extend_from_slice(&chunk.entries);
        target.visible += chunk.visible;
        self.order.remove(pos);
        self.renumber_from(pos);
        self.rebuild_fenwick();
    }

    /// Recomputes every visibility flag and count from the elements.
    pub(super) fn recount_visible(&mut self) {
        let mut total = 0;
        for c in 0..self.chunks.len() {
            let mut visible = 0;
            for i in 0..self.chunks[c].entries.len() {
                let n = self.chunks[c].entries[i] & !VISIBLE_BIT;
                let e = self.node(n).elem;
                let shown = self
                    .elems
                    .get(e as usize)
                    .is_some_and(|el| el.current == n && el.state == ElemState::Visible);
                self.chunks[c].entries[i] = if shown { n | VISIBLE_BIT } else { n };
                visible += u32::from(shown);
            }
            self.chunks[c].visible = visible;
            total += visible;
        }
        self.visible = total;
        self.rebuild_fenwick();
    }
}
