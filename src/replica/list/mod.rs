//! Merge metadata for lists: a stable identity for every element and a document order that every
//! replica agrees on.
//!
//! The engine keeps the visible contents of a list in its store, as a plain vector addressed by
//! index. Beside it, [`Sequence`] keeps what is needed to merge: every element has an id (the
//! [`OpId`] of the insert that created it) and a *position node* in a tree. Operations travel
//! between replicas naming elements and nodes by id; each replica asks its own `Sequence` which
//! visible index an id has *here*, and mirrors the answer ([`VisibleChange`]) in its store.
//!
//! # The tree rule
//!
//! Nodes form a Fugue-style tree under a virtual root. Every node is a left or a right child of
//! its parent ([`Place`]); siblings on one side of one parent are ordered by the sort key
//! `(timestamp, peer, seq)` of the node. The document order is the in-order traversal: a node's
//! left children (each with its subtree) in key order, the node, then its right children in key
//! order. An insert creates the element's first node; a move creates a new node and, if it wins,
//! makes it the element's *current* node. The visible list is the current nodes of `Visible`
//! elements, in document order.
//!
//! A writer places a new node against the gap it wants (`Sequence::place_insert`,
//! `Sequence::place_move`), looking only at the *visible* elements on either side of the gap,
//! `lo` (or the root) and `ro` (or the end): if `ro` lies in `lo`'s subtree the node becomes a
//! left child of `ro`, otherwise a right child of `lo`. Text typed forwards therefore becomes a
//! chain of right children and text typed backwards a chain of left children, so two runs typed
//! concurrently at the same place end up one after the other, never interleaved. Using visible
//! neighbours only matters when writers know different tombstones: two writers who see the same
//! visible list and insert at the same index make sibling nodes, ordered by their own keys
//! (earlier write first), whatever erased elements one of them knew about in that gap.
//!
//! # Why it converges
//!
//! A node's parent, side and key are fixed when it is created, and sibling order is a total order
//! on keys, so the in-order traversal is a function of the *set* of nodes alone. A receiver adds a
//! node at exactly the position that traversal gives it (see `Sequence::insert`), so replicas
//! that have registered the same nodes, in whatever order, hold the same document order. Which
//! node is an element's current one, and the element's state, are decided by the caller with
//! order-independent rules (for example the greatest key wins), so the visible lists agree too.
//!
//! # Why nothing is ever removed
//!
//! An operation made against an older view names the nodes it was placed against. If erased
//! elements or superseded move nodes were dropped, such an operation could arrive and find its
//! parent gone, and replicas that had dropped different things would place it differently. Erased
//! elements and old positions therefore stay as invisible tombstones. Only a rollback of an atomic
//! unit removes nodes, the ones registered since the unit began.
//!
//! # Cost
//!
//! Nodes live in an arena addressed by `u32`, with intrusive, key-ordered sibling lists. The
//! document order is kept in chunks of at most [`CHUNK_MAX`] node indices, each node knowing its
//! chunk, with a Fenwick tree over the chunks' visible counts. Index lookups and registrations
//! cost O(log n + chunk size), plus the sibling and subtree-edge walks of the receiver rule,
//! which are short unless many concurrent edits hit the same spot. A writer's placement also
//! checks whether one neighbour descends from the other, which walks up the tree, but only until
//! the first visible ancestor entered from a right child (a list built by appending is a chain as
//! deep as it is long, yet typing into it stops at the first step). Splitting a chunk
//! costs O(number of chunks). Memory per node, tombstones included, is the node itself (48
//! bytes), its chunk entry (4) and, for an element's first node, the element (12); node ids take
//! one run per stretch a peer registered in order (see `ids`), not an entry per node. Element
//! values are not stored here.

mod document;
mod ids;
mod order;
mod tree;

pub(crate) use document::{DocNode, DocRole};

use crate::model::{ListProblem, OpId, PeerId, Place, Side, Timestamp};
use ids::Ids;
use serde::{Deserialize, Serialize};

/// The largest number of nodes a chunk of the document order holds; a chunk that grows past it
/// is split in two halves.
const CHUNK_MAX: usize = 256;

/// "No node" in the arena's links.
const NIL: u32 = u32::MAX;
/// The virtual root is always the first node of the arena and of the document order.
const ROOT: u32 = 0;
/// Set in a chunk entry when that node is visible, so that counting visible nodes in a chunk
/// scans one contiguous array instead of the arena.
const VISIBLE_BIT: u32 = 1 << 31;
/// Set in `Node::parent` for a right child; keeps the node at 48 bytes.
const RIGHT_BIT: u32 = 1 << 31;
/// Node indices must stay clear of the flag bits above and of [`NIL`].
const MAX_NODES: usize = (1 << 31) - 1;

/// The slot of a node's `first` children array for a side.
fn slot(side: Side) -> usize {
    match side {
        Side::Left => 0,
        Side::Right => 1,
    }
}

/// The state of a list element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ElemState {
    /// In the visible list.
    Visible,
    /// Not shown because its value is a link to a deleted object; can become visible again.
    Hidden,
    /// Erased; kept as a tombstone.
    Erased,
}

/// What a state or position change did to the visible list, so the caller can mirror it in the
/// store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VisibleChange {
    /// The visible list did not change.
    None,
    /// An element became visible at this index.
    Inserted(usize),
    /// The element at this index left the visible list.
    Removed(usize),
    /// The element at `from` moved so that it is now at `to` (they may be equal).
    Moved {
        /// Its index before the move.
        from: usize,
        /// Its index after the move.
        to: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    id: OpId,
    ts: Timestamp,
    /// Parent index, with [`RIGHT_BIT`] set for a right child.
    parent: u32,
    /// The smallest-key child on each side (indexed by [`slot`]).
    first: [u32; 2],
    /// The next sibling on the same side of the same parent, in key order.
    next: u32,
    /// The element this node is a position of; [`NIL`] for the root.
    elem: u32,
    chunk: u32,
}

impl Node {
    fn parent(&self) -> u32 {
        self.parent & !RIGHT_BIT
    }

    fn side(&self) -> Side {
        if self.parent & RIGHT_BIT != 0 {
            Side::Right
        } else {
            Side::Left
        }
    }

    fn key(&self) -> (Timestamp, OpId) {
        (self.ts, self.id)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Elem {
    /// The node the insert created; its id is the element's id.
    origin: u32,
    current: u32,
    state: ElemState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Chunk {
    /// Node indices in document order, each with [`VISIBLE_BIT`] if visible. Never empty.
    entries: Vec<u32>,
    visible: u32,
    /// This chunk's position in `Sequence::order`.
    pos: u32,
}

/// One step of the undo log. Nodes and chunks are only ever appended, so undoing a registration
/// or a split removes the last one and needs no payload.
#[derive(Clone, Debug)]
enum Undo {
    /// The last node of the arena was registered (with its element, if it is one's origin).
    Node,
    /// The last chunk was split off the chunk just before it in the order.
    Split,
    /// A winning move replaced the element's current node `old`.
    Current { elem: u32, old: u32 },
    /// The element's state was `old`.
    State { elem: u32, old: ElemState },
    /// Elements that `clear` erased, with their states before.
    Clear(Vec<(u32, ElemState)>),
}

/// The merge metadata of one list: element identities, position nodes and their document order.
/// See the module documentation of `replica::list` (the tree rule, and why it converges).
#[derive(Clone, Debug)]
pub struct Sequence {
    nodes: Vec<Node>,
    ids: Ids,
    elems: Vec<Elem>,
    chunks: Vec<Chunk>,
    /// Chunk indices in document order. Chunk indices themselves never change, so a split only
    /// shifts this vector, not the `chunk` field of every later node.
    order: Vec<u32>,
    /// Fenwick tree (1-based) over the visible counts of the chunks, by position in `order`.
    fenwick: Vec<u32>,
    /// Visible nodes in all. This and `chunk_max` are `u32`, and the undo log is an `Option`,
    /// to keep the struct small: callers hold sequences inline in maps and undo records.
    visible: u32,
    /// [`CHUNK_MAX`], except in tests that want many chunks in small lists.
    chunk_max: u32,
    /// Where in its chunk the last node of the arena went when it was registered: typing
    /// registers each node right after the one before, and erases what it just typed, so
    /// [`Sequence::locate`] checks this offset before scanning the chunk.
    last_off: u32,
    /// The undo log, while recording.
    undo: Option<Box<UndoLog>>,
}

/// Undo steps, and where each open (nested) unit's steps begin.
#[derive(Clone, Debug, Default)]
struct UndoLog {
    steps: Vec<Undo>,
    marks: Vec<usize>,
}

/// Emptied undo logs, kept for the next units (see [`Sequence::begin`]): every applied changeset
/// is a unit on each list it touches, and allocating a log for each was a measurable share of
/// integrating a long history. Logs that grew large are not kept.
#[derive(Debug, Default)]
// Boxed because a sequence holds its log boxed (to stay small): handing a kept box back to a
// sequence allocates nothing.
#[allow(clippy::vec_box)]
pub(crate) struct UndoLogs(Vec<Box<UndoLog>>);

impl UndoLogs {
    /// The most logs kept, and the most steps a kept log has room for.
    const KEEP: usize = 64;

    fn take(&mut self) -> Box<UndoLog> {
        self.0.pop().unwrap_or_default()
    }

    fn keep(&mut self, log: Option<Box<UndoLog>>) {
        if let Some(mut log) = log {
            if self.0.len() < Self::KEEP && log.steps.capacity() <= Self::KEEP {
                log.steps.clear();
                log.marks.clear();
                self.0.push(log);
            }
        }
    }
}

impl Default for Sequence {
    fn default() -> Self {
        Self::new()
    }
}

impl Sequence {
    /// An empty sequence (just the virtual root).
    pub fn new() -> Self {
        let root = Node {
            id: OpId {
                peer: PeerId(0),
                seq: 0,
            },
            ts: 0,
            parent: NIL,
            first: [NIL; 2],
            next: NIL,
            elem: NIL,
            chunk: 0,
        };
        Sequence {
            nodes: vec![root],
            ids: Ids::default(),
            elems: Vec::new(),
            chunks: vec![Chunk {
                entries: vec![ROOT],
                visible: 0,
                pos: 0,
            }],
            order: vec![0],
            fenwick: vec![0; 2],
            visible: 0,
            chunk_max: CHUNK_MAX as u32,
            last_off: 0,
            undo: None,
        }
    }

    /// An empty sequence whose chunks split as soon as they exceed `chunk_max` nodes.
    #[cfg(test)]
    fn with_chunk_max(chunk_max: usize) -> Self {
        Sequence {
            chunk_max: chunk_max as u32,
            ..Self::new()
        }
    }

    /// The number of visible elements.
    pub fn len(&self) -> usize {
        self.visible as usize
    }

    /// Whether no element is visible.
    pub fn is_empty(&self) -> bool {
        self.visible == 0
    }

    /// The number of position nodes, tombstones included (the root is not counted).
    pub fn node_count(&self) -> usize {
        self.nodes.len() - 1
    }

    /// Whether a node (an element's first node or a move's node) with this id is registered.
    pub fn contains_node(&self, id: OpId) -> bool {
        self.ids.contains(id)
    }

    /// The id of the element at a visible index.
    pub fn elem_at(&self, index: usize) -> Option<OpId> {
        if index >= self.len() {
            return None;
        }
        let (c, off) = self.nth_visible(index);
        let n = self.chunks[c].entries[off] & !VISIBLE_BIT;
        Some(self.elem_id(self.node(n).elem))
    }

    /// The visible index of an element; `None` unless it is known and `Visible`.
    pub fn index_of(&self, elem: OpId) -> Option<usize> {
        let e = self.element(elem).ok()?;
        let el = &self.elems[e as usize];
        (el.state == ElemState::Visible).then(|| self.visible_index(el.current))
    }

    /// The state of an element; `None` if the id is not an element of this sequence.
    pub fn state(&self, elem: OpId) -> Option<ElemState> {
        let e = self.element(elem).ok()?;
        Some(self.elems[e as usize].state)
    }

    /// The id of an element's current position node (its own id until a move wins).
    pub fn current_node(&self, elem: OpId) -> Option<OpId> {
        let e = self.element(elem).ok()?;
        Some(self.node(self.elems[e as usize].current).id)
    }

    /// Where a node was placed when it was registered.
    pub fn place_of(&self, node: OpId) -> Option<Place> {
        let n = self.node(self.ids.get(node)?);
        Some(Place {
            parent: self.parent_id(n.parent()),
            side: n.side(),
        })
    }

    /// Every element, whatever its state, in the document order of its current node.
    pub fn elements(&self) -> impl Iterator<Item = (OpId, ElemState)> + '_ {
        self.entries().filter_map(move |entry| {
            let n = entry & !VISIBLE_BIT;
            let e = self.node(n).elem;
            let el = self.elems.get(e as usize)?;
            (el.current == n).then(|| (self.node(el.origin).id, el.state))
        })
    }

    /// The visible elements' ids, in order.
    pub fn visible(&self) -> impl Iterator<Item = OpId> + '_ {
        self.entries()
            .filter(|entry| entry & VISIBLE_BIT != 0)
            .map(move |entry| self.elem_id(self.node(entry & !VISIBLE_BIT).elem))
    }

    /// Writer side: the placement of a new element that must land at visible index `index`
    /// (`0 ..= len`).
    /// `None` if the index is past the end.
    pub(crate) fn place_insert(&self, index: usize) -> Option<Place> {
        let len = self.len();
        if index > len {
            return None;
        }
        if index == 0 {
            let ro = (len > 0).then(|| self.visible_node(0));
            return Some(self.place_between(ROOT, ro, NIL));
        }
        let at = self.nth_visible(index - 1);
        let lo = self.entry_node(at);
        // The right neighbour is usually further along the same chunk: a scan from `lo`
        // instead of a second search from the top.
        let ro = (index < len)
            .then(|| (self.visible_after(at)).unwrap_or_else(|| self.visible_node(index)));
        Some(self.place_between(lo, ro, NIL))
    }

    /// Writer side: the placement of a new node for the visible element `elem` so that, once it
    /// is the element's current node, the element is at visible index `to` (`to < len`).
    /// `None` unless `elem` is a visible element and `to` an index of the list.
    pub(crate) fn place_move(&self, elem: OpId, to: usize) -> Option<Place> {
        let e = self.element(elem).ok()?;
        let el = &self.elems[e as usize];
        let len = self.len();
        if el.state != ElemState::Visible || to >= len {
            return None;
        }
        // Neighbours in the list without the element: index i there is i or i + 1 here.
        let from = self.visible_index(el.current);
        let without = |i: usize| self.visible_node(if i < from { i } else { i + 1 });
        let lo = if to == 0 { ROOT } else { without(to - 1) };
        let ro = (to + 1 < len).then(|| without(to));
        Some(self.place_between(lo, ro, el.current))
    }

    /// Registers a new element and its first node, whose id is the element's.
    ///
    /// Receiver rule: among the parent's children on that side, the new node goes before the
    /// subtree of the first sibling with a greater key; with none, after the parent's whole
    /// subtree (right side) or just before the parent (left side). That is where the in-order
    /// traversal of the tree puts it, whatever else has been registered.
    pub(crate) fn insert(
        &mut self,
        id: OpId,
        ts: Timestamp,
        place: Place,
        state: ElemState,
    ) -> Result<VisibleChange, ListProblem> {
        self.check_new(id)?;
        let (parent, side) = self.resolve(place)?;
        let m = self.nodes.len() as u32;
        self.elems.push(Elem {
            origin: m,
            current: m,
            state,
        });
        let visible = state == ElemState::Visible;
        let (_, at) = self.register(id, ts, parent, side, self.elems.len() as u32 - 1, visible);
        Ok(if visible {
            VisibleChange::Inserted(self.visible_index_at(at))
        } else {
            VisibleChange::None
        })
    }

    /// Registers a move's node `node` for element `elem`, placed like [`Sequence::insert`].
    /// With `make_current` it becomes the element's current node (the old one stays as a
    /// tombstone), which is `Moved` if the element is visible; otherwise the node is only kept so
    /// that later operations placed against it can be placed here too.
    pub(crate) fn add_node(
        &mut self,
        elem: OpId,
        node: OpId,
        ts: Timestamp,
        place: Place,
        make_current: bool,
    ) -> Result<VisibleChange, ListProblem> {
        let e = self.element(elem)?;
        self.check_new(node)?;
        let (parent, side) = self.resolve(place)?;
        let (m, _) = self.register(node, ts, parent, side, e, false);
        if !make_current {
            return Ok(VisibleChange::None);
        }
        Ok(self.make_current(e, m))
    }

    /// Makes node `m` the current node of element `e`.
    fn make_current(&mut self, e: u32, m: u32) -> VisibleChange {
        let old = self.elems[e as usize].current;
        if old == m {
            return VisibleChange::None;
        }
        self.log(Undo::Current { elem: e, old });
        self.elems[e as usize].current = m;
        if self.elems[e as usize].state != ElemState::Visible {
            return VisibleChange::None;
        }
        let from = self.visible_index(old);
        self.set_visible(old, false);
        self.set_visible(m, true);
        VisibleChange::Moved {
            from,
            to: self.visible_index(m),
        }
    }

    /// Makes `node`, an existing node of element `elem`, its current node again.
    pub(crate) fn reselect(
        &mut self,
        elem: OpId,
        node: OpId,
    ) -> Result<VisibleChange, ListProblem> {
        let e = self.element(elem)?;
        let m = (self.ids.get(node)).ok_or(ListProblem::UnknownElement(node))?;
        if self.node(m).elem != e {
            return Err(ListProblem::UnknownElement(node));
        }
        Ok(self.make_current(e, m))
    }

    /// Sets an element's state; any transition is allowed.
    pub(crate) fn set_state(
        &mut self,
        elem: OpId,
        state: ElemState,
    ) -> Result<VisibleChange, ListProblem> {
        let e = self.element(elem)?;
        let el = &self.elems[e as usize];
        let (old, current) = (el.state, el.current);
        if old == state {
            return Ok(VisibleChange::None);
        }
        self.log(Undo::State { elem: e, old });
        self.elems[e as usize].state = state;
        Ok(match (old, state) {
            (ElemState::Visible, _) => {
                let index = self.visible_index(current);
                self.set_visible(current, false);
                VisibleChange::Removed(index)
            }
            (_, ElemState::Visible) => {
                self.set_visible(current, true);
                VisibleChange::Inserted(self.visible_index(current))
            }
            _ => VisibleChange::None,
        })
    }

    /// Erases every element; returns how many were visible.
    pub(crate) fn clear(&mut self) -> usize {
        let was_visible = self.len();
        if self.undo.is_some() {
            let changed: Vec<(u32, ElemState)> = (0..self.elems.len() as u32)
                .map(|e| (e, self.elems[e as usize].state))
                .filter(|&(_, s)| s != ElemState::Erased)
                .collect();
            if !changed.is_empty() {
                self.log(Undo::Clear(changed));
            }
        }
        for el in &mut self.elems {
            el.state = ElemState::Erased;
        }
        for chunk in &mut self.chunks {
            for entry in &mut chunk.entries {
                *entry &= !VISIBLE_BIT;
            }
            chunk.visible = 0;
        }
        self.fenwick.fill(0);
        self.visible = 0;
        was_visible
    }

    /// Starts an atomic unit: changes from here on can be undone by [`Sequence::rollback`].
    /// Units nest. The outermost takes its log from `logs`, and gives it back when it ends.
    pub(crate) fn begin(&mut self, logs: &mut UndoLogs) {
        let log = self.undo.get_or_insert_with(|| logs.take());
        log.marks.push(log.steps.len());
    }

    /// Ends the innermost unit, keeping its changes (an enclosing unit can still undo them).
    pub(crate) fn commit(&mut self, logs: &mut UndoLogs) {
        if let Some(log) = &mut self.undo {
            log.marks.pop();
            if log.marks.is_empty() {
                logs.keep(self.undo.take());
            }
        }
    }

    /// Ends the innermost unit, undoing its changes, last first (nodes registered in it are
    /// removed again). Without an open unit it does nothing.
    pub(crate) fn rollback(&mut self, logs: &mut UndoLogs) {
        let Some(log) = &mut self.undo else {
            return;
        };
        let mark = log.marks.pop().unwrap_or(0);
        let steps = log.steps.split_off(mark);
        if log.marks.is_empty() {
            logs.keep(self.undo.take());
        }
        for step in steps.into_iter().rev() {
            match step {
                Undo::Node => self.unregister_last(),
                Undo::Split => self.unsplit_last(),
                Undo::Current { elem, old } => {
                    let el = &mut self.elems[elem as usize];
                    let now = std::mem::replace(&mut el.current, old);
                    if el.state == ElemState::Visible {
                        self.set_visible(now, false);
                        self.set_visible(old, true);
                    }
                }
                Undo::State { elem, old } => {
                    let el = &mut self.elems[elem as usize];
                    el.state = old;
                    let current = el.current;
                    self.set_visible(current, old == ElemState::Visible);
                }
                Undo::Clear(states) => {
                    for (e, s) in states {
                        self.elems[e as usize].state = s;
                    }
                    self.recount_visible();
                }
            }
        }
    }

    // ----- lookups -----

    fn node(&self, n: u32) -> &Node {
        &self.nodes[n as usize]
    }

    fn node_mut(&mut self, n: u32) -> &mut Node {
        &mut self.nodes[n as usize]
    }

    fn elem_id(&self, e: u32) -> OpId {
        self.node(self.elems[e as usize].origin).id
    }

    fn parent_id(&self, n: u32) -> Option<OpId> {
        (n != ROOT).then(|| self.node(n).id)
    }

    fn entries(&self) -> impl Iterator<Item = u32> + '_ {
        self.order
            .iter()
            .flat_map(move |&c| self.chunks[c as usize].entries.iter().copied())
    }

    /// The element index of an element id, refusing move nodes.
    fn element(&self, id: OpId) -> Result<u32, ListProblem> {
        let n = self.ids.get(id).ok_or(ListProblem::UnknownElement(id))?;
        let e = self.node(n).elem;
        if self.elems[e as usize].origin == n {
            Ok(e)
        } else {
            Err(ListProblem::NotAnElement(id))
        }
    }

    fn check_new(&self, id: OpId) -> Result<(), ListProblem> {
        if self.nodes.len() >= MAX_NODES {
            return Err(ListProblem::Full);
        }
        if self.ids.contains(id) {
            return Err(ListProblem::DuplicateNode(id));
        }
        Ok(())
    }

    fn resolve(&self, place: Place) -> Result<(u32, Side), ListProblem> {
        match place.parent {
            None if place.side == Side::Left => Err(ListProblem::LeftOfRoot),
            None => Ok((ROOT, Side::Right)),
            Some(id) => match self.ids.get(id) {
                Some(n) => Ok((n, place.side)),
                None => Err(ListProblem::UnknownNode(id)),
            },
        }
    }

    fn log(&mut self, step: Undo) {
        if let Some(undo) = &mut self.undo {
            undo.steps.push(step);
        }
    }
}

#[cfg(test)]
mod tests;
