//! The tree of a [`Sequence`]: where the writer rule places a new node, and where the receiver
//! rule registers one (the in-order position the tree gives it, whatever else is registered).

use super::{
    slot, ElemState, Node, Place, Sequence, Side, Undo, NIL, RIGHT_BIT, ROOT, VISIBLE_BIT,
};
use crate::model::{OpId, Timestamp};

impl Sequence {
    /// Whether the visible node `ro` lies in the subtree of `lo`, given that `lo` (or the root)
    /// comes before `ro` in document order with no visible node between them but `skip` (the
    /// moving element's node in [`Sequence::place_move`], [`NIL`] otherwise).
    ///
    /// If it does, `ro` is in `lo`'s right subtree, so `lo` is one of the ancestors `ro`'s path
    /// up enters from a right child. Those ancestors come before `ro`, each before the one below
    /// it: the first of them that is visible and neither `lo` nor `skip` therefore comes before
    /// `lo`, and so do all above it, and the walk can stop there. Walking all the way up instead
    /// cost O(depth) per insert, and typed text is a chain of right children as deep as it is
    /// long: on a real editing trace that walk was 40% of the writer's time.
    pub(super) fn in_subtree_of(&self, ro: u32, lo: u32, skip: u32) -> bool {
        if lo == ROOT {
            return true;
        }
        let mut n = ro;
        while n != ROOT {
            let node = self.node(n);
            let parent = node.parent();
            if node.side() == Side::Right {
                if parent == lo {
                    return true;
                }
                if parent != skip && self.shown(parent) {
                    return false;
                }
            }
            n = parent;
        }
        false
    }

    /// Whether node `n` is in the visible list: it is its element's current node, and the
    /// element is visible (the root is not).
    fn shown(&self, n: u32) -> bool {
        let e = self.node(n).elem as usize;
        (self.elems.get(e)).is_some_and(|el| el.current == n && el.state == ElemState::Visible)
    }

    /// The writer rule, for a gap between the visible nodes `lo` (or the root) and `ro` (or the
    /// end), with no other visible node between them but `skip` (see
    /// [`Sequence::in_subtree_of`]). Only visible neighbours are used: two writers who see the
    /// same visible list but know different tombstones must still place concurrent inserts at
    /// the same gap as siblings, so that they are ordered by their own keys. If `ro` lies in
    /// `lo`'s subtree the new node becomes a left child of `ro` (so it precedes `ro` and
    /// everything after it); otherwise a right child of `lo`, after `lo` and before `ro`, with
    /// only invisible nodes between them.
    pub(super) fn place_between(&self, lo: u32, ro: Option<u32>, skip: u32) -> Place {
        match ro {
            Some(ro) if self.in_subtree_of(ro, lo, skip) => Place {
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

    /// Adds a validated node to the tree and the document order; returns its index and where
    /// it is in the order (chunk, offset), which its caller would otherwise search for.
    pub(super) fn register(
        &mut self,
        id: OpId,
        ts: Timestamp,
        parent: u32,
        side: Side,
        elem: u32,
        visible: bool,
    ) -> (u32, (usize, usize)) {
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
        let off = off + usize::from(after);
        self.chunks[c].entries.insert(off, entry);
        if visible {
            self.count(c, true);
        }
        self.log(Undo::Node);
        let at = match self.chunks[c].entries.len() > self.chunk_max as usize {
            true => {
                let half = self.split(c);
                match off >= half {
                    true => (self.chunks.len() - 1, off - half),
                    false => (c, off),
                }
            }
            false => (c, off),
        };
        self.last_off = at.1 as u32;
        (m, at)
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
        self.ids.remove(node.id);
        if self.elems.last().is_some_and(|el| el.origin == m) {
            self.elems.pop();
        }
    }
}
