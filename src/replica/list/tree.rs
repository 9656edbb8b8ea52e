//! The tree of a [`Sequence`]: where the writer rule places a new node, and where the receiver
//! rule registers one (the in-order position the tree gives it, whatever else is registered).

use super::{slot, Node, Place, Sequence, Side, Undo, NIL, RIGHT_BIT, ROOT, VISIBLE_BIT};
use crate::model::{OpId, Timestamp};

impl Sequence {
    /// Whether `n` lies in the subtree of `ancestor`.
    pub(super) fn descends_from(&self, mut n: u32, ancestor: u32) -> bool {
        while n != ROOT {
            if n == ancestor {
                return true;
            }
            n = self.node(n).parent();
        }
        ancestor == ROOT
    }

    /// The writer rule, for a gap between the visible nodes `lo` (or the root) and `ro` (or the
    /// end). Only visible neighbours are used: two writers who see the same visible list but
    /// know different tombstones must still place concurrent inserts at the same gap as siblings,
    /// so that they are ordered by their own keys. If `ro` lies in `lo`'s subtree the new node
    /// becomes a left child of `ro` (so it precedes `ro` and everything after it); otherwise a
    /// right child of `lo`, after `lo` and before `ro`, with only invisible nodes between them.
    pub(super) fn place_between(&self, lo: u32, ro: Option<u32>) -> Place {
        match ro {
            Some(ro) if self.descends_from(ro, lo) => Place {
                parent: self.parent_id(ro),
                side: Side::Left,
            },
            _ => Place {
                parent: self.parent_id(lo),
                side: Side::Right,
            },
        }
    }

    /// The first node in document order of `n`'s subtree.
    pub(super) fn first_of(&self, mut n: u32) -> u32 {
        while self.node(n).first[slot(Side::Left)] != NIL {
            n = self.node(n).first[slot(Side::Left)];
        }
        n
    }

    /// The last node in document order of `n`'s subtree.
    pub(super) fn last_of(&self, mut n: u32) -> u32 {
        loop {
            let mut child = self.node(n).first[slot(Side::Right)];
            if child == NIL {
                return n;
            }
            while self.node(child).next != NIL {
                child = self.node(child).next;
            }
            n = child;
        }
    }

    /// Adds a validated node to the tree and the document order; returns its index.
    pub(super) fn register(
        &mut self,
        id: OpId,
        ts: Timestamp,
        parent: u32,
        side: Side,
        elem: u32,
        visible: bool,
    ) -> u32 {
        let m = self.nodes.len() as u32;
        let key = (ts, id);
        let slot = slot(side);
        let mut prev = NIL;
        let mut next = self.node(parent).first[slot];
        while next != NIL && self.node(next).key() < key {
            prev = next;
            next = self.node(next).next;
        }
        // Computed before linking `m`, so that `last_of` does not find `m` itself.
        let (anchor, after) = if next != NIL {
            (self.first_of(next), false)
        } else if side == Side::Right {
            (self.last_of(parent), true)
        } else {
            (parent, false)
        };
        let (c, off) = self.locate(anchor);
        self.nodes.push(Node {
            id,
            ts,
            parent: if side == Side::Right {
                parent | RIGHT_BIT
            } else {
                parent
            },
            first: [NIL; 2],
            next,
            elem,
            chunk: c as u32,
        });
        if prev == NIL {
            self.node_mut(parent).first[slot] = m;
        } else {
            self.node_mut(prev).next = m;
        }
        self.ids.insert(id, m);
        let entry = if visible { m | VISIBLE_BIT } else { m };
        self.chunks[c]
            .entries
            .insert(off + usize::from(after), entry);
        if visible {
            self.count(c, true);
        }
        self.log(Undo::Node);
        if self.chunks[c].entries.len() > self.chunk_max as usize {
            self.split(c);
        }
        m
    }

    /// Undoes the registration of the last node; by LIFO it has no children and is not current
    /// for any element but its own.
    pub(super) fn unregister_last(&mut self) {
        let m = self.nodes.len() as u32 - 1;
        let (c, off) = self.locate(m);
        if self.chunks[c].entries.remove(off) & VISIBLE_BIT != 0 {
            self.count(c, false);
        }
        let node = self.nodes.pop().expect("the root is never unregistered");
        let (parent, slot) = (node.parent(), slot(node.side()));
        if self.node(parent).first[slot] == m {
            self.node_mut(parent).first[slot] = node.next;
        } else {
            let mut prev = self.node(parent).first[slot];
            while self.node(prev).next != m {
                prev = self.node(prev).next;
            }
            self.node_mut(prev).next = node.next;
        }
        self.ids.remove(&node.id);
        if self.elems.last().is_some_and(|el| el.origin == m) {
            self.elems.pop();
        }
    }
}
