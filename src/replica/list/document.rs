//! A [`Sequence`] as a plain list of its nodes in document order, for snapshots: what
//! [`Sequence::document`] hands out and [`Sequence::from_document`] rebuilds from, in O(n).
//!
//! The tree is a function of its nodes (parent, side, key), so the nodes are all a snapshot
//! needs. Rebuilding from untrusted input checks everything the live structure relies on: every
//! parent is a node, siblings are in key order, the given order is exactly the in-order
//! traversal of the tree they form (which also rules out cycles and unreachable nodes), ids are
//! unique, and every element has exactly one current position.

use super::{slot, Chunk, Elem, ElemState, Ids, Node, Sequence, NIL, RIGHT_BIT, ROOT, VISIBLE_BIT};
use crate::model::{ListProblem, OpId, Side, Timestamp};

/// One position node, as a snapshot keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DocNode {
    /// The node's id (for an element's first node, the element's id).
    pub(crate) id: OpId,
    /// Its timestamp (with the id, its key among siblings).
    pub(crate) ts: Timestamp,
    /// The parent's position in the document order; `None` for the virtual root.
    pub(crate) parent: Option<u32>,
    /// Which side of the parent it hangs on.
    pub(crate) side: Side,
    /// What the node is a position of.
    pub(crate) role: DocRole,
    /// Whether it is its element's current position.
    pub(crate) current: bool,
}

/// What a [`DocNode`] is a position of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DocRole {
    /// The first node of an element, created by its insert; the element's state.
    Origin(ElemState),
    /// A move's node for the element whose first node is at this position of the order.
    Move(u32),
}

/// Why nodes do not form a sequence.
fn invalid(index: usize) -> ListProblem {
    ListProblem::Inconsistent {
        index: index as u64,
    }
}

impl Sequence {
    /// Every node but the root, in document order.
    pub(crate) fn document(&self) -> Vec<DocNode> {
        let arena: Vec<u32> = self.entries().map(|e| e & !VISIBLE_BIT).collect();
        // Document positions, by arena index (the root is not in the output).
        let mut position = vec![0u32; self.nodes.len()];
        for (i, &n) in arena.iter().enumerate().skip(1) {
            position[n as usize] = (i - 1) as u32;
        }
        let place = |n: u32| (n != ROOT).then(|| position[n as usize]);
        (arena.iter().skip(1))
            .map(|&n| {
                let node = self.node(n);
                let el = &self.elems[node.elem as usize];
                let role = if el.origin == n {
                    DocRole::Origin(el.state)
                } else {
                    DocRole::Move(position[el.origin as usize])
                };
                DocNode {
                    id: node.id,
                    ts: node.ts,
                    parent: place(node.parent()),
                    side: node.side(),
                    role,
                    current: el.current == n,
                }
            })
            .collect()
    }

    /// Rebuilds a sequence from its nodes in document order, refusing nodes that do not form
    /// one (see the module documentation).
    pub(crate) fn from_document(doc: &[DocNode]) -> Result<Sequence, ListProblem> {
        if doc.len() >= super::MAX_NODES {
            return Err(ListProblem::Full);
        }
        let mut s = Sequence::new();
        let arena = |i: u32| i + 1;
        s.nodes.reserve(doc.len());
        // Every node but a move's is an element's origin: nearly exact, where growing by pushes
        // copied the elements a dozen times over.
        s.elems.reserve(doc.len());
        s.ids =
            Ids::build(doc.iter().map(|d| d.id), arena(0)).map_err(ListProblem::DuplicateNode)?;
        let mut elem_of = vec![NIL; doc.len()];
        for (i, d) in doc.iter().enumerate() {
            let parent = match (d.parent, d.side) {
                (None, Side::Left) => return Err(ListProblem::LeftOfRoot),
                (None, Side::Right) => ROOT,
                (Some(p), _) if (p as usize) < doc.len() && p as usize != i => arena(p),
                (Some(_), _) => return Err(invalid(i)),
            };
            if let DocRole::Origin(state) = d.role {
                elem_of[i] = s.elems.len() as u32;
                s.elems.push(Elem {
                    origin: arena(i as u32),
                    current: NIL,
                    state,
                });
            }
            s.nodes.push(Node {
                id: d.id,
                ts: d.ts,
                parent: if d.side == Side::Right {
                    parent | RIGHT_BIT
                } else {
                    parent
                },
                first: [NIL; 2],
                next: NIL,
                elem: NIL,
                chunk: 0,
            });
        }
        s.link_elements(doc, &elem_of)?;
        s.link_siblings()?;
        s.check_traversal()?;
        s.fill_chunks();
        Ok(s)
    }

    /// Points every node at its element and every element at its one current node.
    fn link_elements(&mut self, doc: &[DocNode], elem_of: &[u32]) -> Result<(), ListProblem> {
        for (i, d) in doc.iter().enumerate() {
            let e = match d.role {
                DocRole::Origin(_) => elem_of[i],
                DocRole::Move(origin) => match elem_of.get(origin as usize) {
                    Some(&e) if e != NIL => e,
                    Some(_) => return Err(ListProblem::NotAnElement(doc[origin as usize].id)),
                    None => return Err(invalid(i)),
                },
            };
            let n = i as u32 + 1;
            self.nodes[n as usize].elem = e;
            if d.current {
                let el = &mut self.elems[e as usize];
                if el.current != NIL {
                    return Err(invalid(i));
                }
                el.current = n;
            }
        }
        match self.elems.iter().position(|el| el.current == NIL) {
            Some(e) => Err(invalid(self.elems[e].origin as usize - 1)),
            None => Ok(()),
        }
    }

    /// Builds the sibling lists; nodes come in document order, so each side's children arrive
    /// in key order, which is checked.
    fn link_siblings(&mut self) -> Result<(), ListProblem> {
        let mut last = vec![[NIL; 2]; self.nodes.len()];
        for n in 1..self.nodes.len() as u32 {
            let (parent, side) = (self.node(n).parent(), slot(self.node(n).side()));
            let prev = last[parent as usize][side];
            if prev == NIL {
                self.nodes[parent as usize].first[side] = n;
            } else {
                if self.node(prev).key() >= self.node(n).key() {
                    return Err(invalid(n as usize - 1));
                }
                self.nodes[prev as usize].next = n;
            }
            last[parent as usize][side] = n;
        }
        Ok(())
    }

    /// Checks that the in-order traversal of the tree visits the nodes exactly in arena order,
    /// which is the document order they were given in.
    fn check_traversal(&self) -> Result<(), ListProblem> {
        enum Task {
            Emit(u32),
            /// A node and, after it, its next siblings (the root has none).
            Siblings(u32),
        }
        let mut expected = 0u32;
        let mut emit = |n: u32| {
            if n != expected {
                return Err(invalid(expected.saturating_sub(1) as usize));
            }
            expected += 1;
            Ok(())
        };
        // A sibling list is pushed as one task and a node without left children is emitted at
        // once, so typed text (a chain of right children) costs one push per node; collecting
        // each list to push it in reverse was a fifth of loading a list.
        let mut stack = vec![Task::Siblings(ROOT)];
        while let Some(task) = stack.pop() {
            let n = match task {
                Task::Emit(n) => {
                    emit(n)?;
                    continue;
                }
                Task::Siblings(c) => {
                    let next = self.node(c).next;
                    if next != NIL {
                        stack.push(Task::Siblings(next));
                    }
                    c
                }
            };
            // Off the stack in order: the left children, the node, then the right children.
            let first = self.node(n).first;
            let (left, right) = (first[slot(Side::Left)], first[slot(Side::Right)]);
            if right != NIL {
                stack.push(Task::Siblings(right));
            }
            if left == NIL {
                emit(n)?;
            } else {
                stack.push(Task::Emit(n));
                stack.push(Task::Siblings(left));
            }
        }
        if expected as usize != self.nodes.len() {
            return Err(invalid(expected as usize));
        }
        Ok(())
    }

    /// Cuts the document order (the arena order) into half-full chunks and counts what is
    /// visible.
    fn fill_chunks(&mut self) {
        let per_chunk = (self.chunk_max as usize / 2).max(1);
        let n = self.nodes.len();
        self.chunks.clear();
        self.order.clear();
        for (c, start) in (0..n).step_by(per_chunk).enumerate() {
            let end = (start + per_chunk).min(n);
            let mut entries = Vec::with_capacity(self.chunk_max as usize + 1);
            let mut visible = 0;
            for m in start as u32..end as u32 {
                self.nodes[m as usize].chunk = c as u32;
                let shown = self
                    .elems
                    .get(self.node(m).elem as usize)
                    .is_some_and(|el| el.current == m && el.state == ElemState::Visible);
                entries.push(if shown { m | VISIBLE_BIT } else { m });
                visible += u32::from(shown);
            }
            self.chunks.push(Chunk {
                entries,
                visible,
                pos: c as u32,
            });
            self.order.push(c as u32);
        }
        self.visible = self.chunks.iter().map(|c| c.visible).sum();
        self.rebuild_fenwick();
    }
}
