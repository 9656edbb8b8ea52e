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
//! A writer places a new node against the gap it wants ([`Sequence::place_insert`],
//! [`Sequence::place_move`]), looking only at the *visible* elements on either side of the gap,
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
//! node at exactly the position that traversal gives it (see [`Sequence::insert`]), so replicas
//! that have registered the same nodes, in whatever order, hold the same document order. Which
//! node is an element's current one, and the element's state, are decided by the caller with
//! order-independent rules (for example the greatest key wins), so the visible lists agree too.
//!
//! # Why nothing is ever removed
//!
//! An operation made against an older view names the nodes it was placed against. If erased
//! elements or superseded move nodes were dropped, such an operation could arrive and find its
//! parent gone, and replicas that had dropped different things would place it differently. Erased
//! elements and old positions therefore stay as invisible tombstones. Only [`Sequence::rollback`]
//! removes nodes, the ones registered since [`Sequence::begin`].
//!
//! # Cost
//!
//! Nodes live in an arena addressed by `u32`, with intrusive, key-ordered sibling lists. The
//! document order is kept in chunks of at most [`CHUNK_MAX`] node indices, each node knowing its
//! chunk, with a Fenwick tree over the chunks' visible counts. Index lookups and registrations
//! cost O(log n + chunk size), plus the sibling and subtree-edge walks of the receiver rule,
//! which are short unless many concurrent edits hit the same spot. A writer's placement also
//! checks whether one neighbour descends from the other, which walks up the tree: O(depth), and
//! a list built by appending is a chain as deep as it is long. Splitting a chunk
//! costs O(number of chunks). Memory is roughly 100 to 130 bytes per node, tombstones included
//! (48 for the node itself, the rest mostly the id map, whose load varies); element values are not
//! stored here.

use crate::ids::{OpId, PeerId, Timestamp};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

/// The largest number of nodes a chunk of the document order holds; a chunk that grows past it
/// is split in two halves.
pub const CHUNK_MAX: usize = 256;

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

/// Which side of its parent a node hangs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// Before the parent in document order.
    Left,
    /// After the parent in document order.
    Right,
}

impl Side {
    fn slot(self) -> usize {
        match self {
            Side::Left => 0,
            Side::Right => 1,
        }
    }
}

/// Where a new node hangs in the tree: the side of a parent node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Place {
    /// The parent node's id; `None` is the virtual root, which only has right children.
    pub parent: Option<OpId>,
    /// The side of the parent.
    pub side: Side,
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

/// Why a [`Sequence`] refused a call. A refused call changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// A placement names a parent node this sequence does not have.
    #[error("unknown list node {0}")]
    UnknownNode(OpId),
    /// The id names no element of this sequence.
    #[error("unknown list element {0}")]
    UnknownElement(OpId),
    /// A node with this id is already registered.
    #[error("list node {0} already exists")]
    DuplicateNode(OpId),
    /// A visible index past the end of the list.
    #[error("list index {index} out of range (length {len})")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The visible length of the list.
        len: usize,
    },
    /// The id is a move's position node, given where an element id is needed.
    #[error("{0} is a moved position, not a list element")]
    NotAnElement(OpId),
    /// Only a visible element can be moved by a writer.
    #[error("list element {0} is not visible")]
    NotVisible(OpId),
    /// A placement on the left of the root, which only has right children.
    #[error("the root of a list has no left side")]
    LeftOfRoot,
    /// The sequence holds as many nodes as it can address.
    #[error("the list holds the maximum number of positions")]
    Full,
}

/// What a state or position change did to the visible list, so the caller can mirror it in the
/// store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisibleChange {
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
    /// The smallest-key child on each side (indexed by [`Side::slot`]).
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
/// See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Sequence {
    nodes: Vec<Node>,
    ids: HashMap<OpId, u32>,
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
    /// The undo log, while recording.
    undo: Option<Box<UndoLog>>,
}

/// Undo steps, and where each open (nested) unit's steps begin.
#[derive(Clone, Debug, Default)]
struct UndoLog {
    steps: Vec<Undo>,
    marks: Vec<usize>,
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
            ids: HashMap::new(),
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
        self.ids.contains_key(&id)
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
        let n = self.node(*self.ids.get(&node)?);
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
    pub fn place_insert(&self, index: usize) -> Result<Place, ListError> {
        let len = self.len();
        if index > len {
            return Err(ListError::IndexOutOfRange { index, len });
        }
        let lo = if index == 0 {
            ROOT
        } else {
            self.visible_node(index - 1)
        };
        let ro = (index < len).then(|| self.visible_node(index));
        Ok(self.place_between(lo, ro))
    }

    /// Writer side: the placement of a new node for the visible element `elem` so that, once it
    /// is the element's current node, the element is at visible index `to` (`to < len`).
    pub fn place_move(&self, elem: OpId, to: usize) -> Result<Place, ListError> {
        let e = self.element(elem)?;
        let el = &self.elems[e as usize];
        if el.state != ElemState::Visible {
            return Err(ListError::NotVisible(elem));
        }
        let len = self.len();
        if to >= len {
            return Err(ListError::IndexOutOfRange { index: to, len });
        }
        // Neighbours in the list without the element: index i there is i or i + 1 here.
        let from = self.visible_index(el.current);
        let without = |i: usize| self.visible_node(if i < from { i } else { i + 1 });
        let lo = if to == 0 { ROOT } else { without(to - 1) };
        let ro = (to + 1 < len).then(|| without(to));
        Ok(self.place_between(lo, ro))
    }

    /// Registers a new element and its first node, whose id is the element's.
    ///
    /// Receiver rule: among the parent's children on that side, the new node goes before the
    /// subtree of the first sibling with a greater key; with none, after the parent's whole
    /// subtree (right side) or just before the parent (left side). That is where the in-order
    /// traversal of the tree puts it, whatever else has been registered.
    pub fn insert(
        &mut self,
        id: OpId,
        ts: Timestamp,
        place: Place,
        state: ElemState,
    ) -> Result<VisibleChange, ListError> {
        self.check_new(id)?;
        let (parent, side) = self.resolve(place)?;
        let m = self.nodes.len() as u32;
        self.elems.push(Elem {
            origin: m,
            current: m,
            state,
        });
        let visible = state == ElemState::Visible;
        self.register(id, ts, parent, side, self.elems.len() as u32 - 1, visible);
        Ok(if visible {
            VisibleChange::Inserted(self.visible_index(m))
        } else {
            VisibleChange::None
        })
    }

    /// Registers a move's node `node` for element `elem`, placed like [`Sequence::insert`].
    /// With `make_current` it becomes the element's current node (the old one stays as a
    /// tombstone), which is `Moved` if the element is visible; otherwise the node is only kept so
    /// that later operations placed against it can be placed here too.
    pub fn add_node(
        &mut self,
        elem: OpId,
        node: OpId,
        ts: Timestamp,
        place: Place,
        make_current: bool,
    ) -> Result<VisibleChange, ListError> {
        let e = self.element(elem)?;
        self.check_new(node)?;
        let (parent, side) = self.resolve(place)?;
        let m = self.register(node, ts, parent, side, e, false);
        if !make_current {
            return Ok(VisibleChange::None);
        }
        let old = self.elems[e as usize].current;
        self.log(Undo::Current { elem: e, old });
        self.elems[e as usize].current = m;
        if self.elems[e as usize].state != ElemState::Visible {
            return Ok(VisibleChange::None);
        }
        let from = self.visible_index(old);
        self.set_visible(old, false);
        self.set_visible(m, true);
        Ok(VisibleChange::Moved {
            from,
            to: self.visible_index(m),
        })
    }

    /// Sets an element's state; any transition is allowed.
    pub fn set_state(&mut self, elem: OpId, state: ElemState) -> Result<VisibleChange, ListError> {
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
    pub fn clear(&mut self) -> usize {
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
    /// Units nest.
    pub fn begin(&mut self) {
        let log = self.undo.get_or_insert_with(Box::default);
        log.marks.push(log.steps.len());
    }

    /// Ends the innermost unit, keeping its changes (an enclosing unit can still undo them).
    pub fn commit(&mut self) {
        if let Some(log) = &mut self.undo {
            log.marks.pop();
            if log.marks.is_empty() {
                self.undo = None;
            }
        }
    }

    /// Ends the innermost unit, undoing its changes, last first (nodes registered in it are
    /// removed again). Without an open unit it does nothing.
    pub fn rollback(&mut self) {
        let Some(log) = &mut self.undo else {
            return;
        };
        let mark = log.marks.pop().unwrap_or(0);
        let steps = log.steps.split_off(mark);
        if log.marks.is_empty() {
            self.undo = None;
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
    fn element(&self, id: OpId) -> Result<u32, ListError> {
        let &n = self.ids.get(&id).ok_or(ListError::UnknownElement(id))?;
        let e = self.node(n).elem;
        if self.elems[e as usize].origin == n {
            Ok(e)
        } else {
            Err(ListError::NotAnElement(id))
        }
    }

    fn check_new(&self, id: OpId) -> Result<(), ListError> {
        if self.nodes.len() >= MAX_NODES {
            return Err(ListError::Full);
        }
        if self.ids.contains_key(&id) {
            return Err(ListError::DuplicateNode(id));
        }
        Ok(())
    }

    fn resolve(&self, place: Place) -> Result<(u32, Side), ListError> {
        match place.parent {
            None if place.side == Side::Left => Err(ListError::LeftOfRoot),
            None => Ok((ROOT, Side::Right)),
            Some(id) => match self.ids.get(&id) {
                Some(&n) => Ok((n, place.side)),
                None => Err(ListError::UnknownNode(id)),
            },
        }
    }

    /// The chunk holding node `n` and its offset there.
    fn locate(&self, n: u32) -> (usize, usize) {
        let c = self.node(n).chunk as usize;
        let off = self.chunks[c]
            .entries
            .iter()
            .position(|&entry| entry & !VISIBLE_BIT == n)
            .expect("a node is in the chunk it records");
        (c, off)
    }

    /// The visible index of a visible node.
    fn visible_index(&self, n: u32) -> usize {
        let (c, off) = self.locate(n);
        let chunk = &self.chunks[c];
        let before = chunk.entries[..off]
            .iter()
            .filter(|&&entry| entry & VISIBLE_BIT != 0)
            .count();
        self.prefix(chunk.pos as usize) + before
    }

    /// The chunk and offset of the visible node at `index` (`index < len`).
    fn nth_visible(&self, index: usize) -> (usize, usize) {
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
    fn visible_node(&self, index: usize) -> u32 {
        let (c, off) = self.nth_visible(index);
        self.chunks[c].entries[off] & !VISIBLE_BIT
    }

    /// Whether `n` lies in the subtree of `ancestor`.
    fn descends_from(&self, mut n: u32, ancestor: u32) -> bool {
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
    fn place_between(&self, lo: u32, ro: Option<u32>) -> Place {
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
    fn first_of(&self, mut n: u32) -> u32 {
        while self.node(n).first[Side::Left.slot()] != NIL {
            n = self.node(n).first[Side::Left.slot()];
        }
        n
    }

    /// The last node in document order of `n`'s subtree.
    fn last_of(&self, mut n: u32) -> u32 {
        loop {
            let mut child = self.node(n).first[Side::Right.slot()];
            if child == NIL {
                return n;
            }
            while self.node(child).next != NIL {
                child = self.node(child).next;
            }
            n = child;
        }
    }

    // ----- mutation -----

    fn log(&mut self, step: Undo) {
        if let Some(undo) = &mut self.undo {
            undo.steps.push(step);
        }
    }

    /// Adds a validated node to the tree and the document order; returns its index.
    fn register(
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
        let slot = side.slot();
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
    fn unregister_last(&mut self) {
        let m = self.nodes.len() as u32 - 1;
        let (c, off) = self.locate(m);
        if self.chunks[c].entries.remove(off) & VISIBLE_BIT != 0 {
            self.count(c, false);
        }
        let node = self.nodes.pop().expect("the root is never unregistered");
        let (parent, slot) = (node.parent(), node.side().slot());
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

    fn set_visible(&mut self, n: u32, visible: bool) {
        let (c, off) = self.locate(n);
        let entry = &mut self.chunks[c].entries[off];
        if (*entry & VISIBLE_BIT != 0) == visible {
            return;
        }
        *entry ^= VISIBLE_BIT;
        self.count(c, visible);
    }

    /// Counts one node of chunk `c` becoming visible (`up`) or invisible.
    fn count(&mut self, c: usize, up: bool) {
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
    fn prefix(&self, pos: usize) -> usize {
        let mut sum = 0;
        let mut i = pos;
        while i > 0 {
            sum += self.fenwick[i] as usize;
            i &= i - 1;
        }
        sum
    }

    /// The position of the chunk holding visible index `index`, and the index within that chunk.
    fn find(&self, index: usize) -> (usize, usize) {
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

    fn rebuild_fenwick(&mut self) {
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

    fn renumber_from(&mut self, pos: usize) {
        for p in pos..self.order.len() {
            self.chunks[self.order[p] as usize].pos = p as u32;
        }
    }

    fn split(&mut self, c: usize) {
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
    }

    fn unsplit_last(&mut self) {
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
    fn recount_visible(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use hashbrown::{HashMap, HashSet};
    use proptest::prelude::*;
    use ElemState::{Erased, Hidden, Visible};

    fn id(peer: u64, seq: u64) -> OpId {
        OpId {
            peer: PeerId(peer),
            seq,
        }
    }

    /// A small deterministic generator, so that big tests need no extra dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                v.swap(i, self.below(i + 1));
            }
        }
    }

    /// Inserts `elem` at `index` as its writer would, checking it lands there.
    fn write_insert(s: &mut Sequence, elem: OpId, ts: Timestamp, index: usize) -> Place {
        let place = s.place_insert(index).unwrap();
        assert_eq!(
            s.insert(elem, ts, place, Visible),
            Ok(VisibleChange::Inserted(index))
        );
        place
    }

    fn list(s: &Sequence) -> Vec<OpId> {
        s.visible().collect()
    }

    /// Asserts two sequences hold exactly the same structure (the undo log aside).
    fn assert_same(a: &Sequence, b: &Sequence) {
        assert_eq!(a.nodes, b.nodes);
        assert_eq!(a.ids, b.ids);
        assert_eq!(a.elems, b.elems);
        assert_eq!(a.chunks, b.chunks);
        assert_eq!(a.order, b.order);
        assert_eq!(a.fenwick, b.fenwick);
        assert_eq!(a.visible, b.visible);
        assert_eq!(a.chunk_max, b.chunk_max);
    }

    /// The in-order traversal of the tree, from its links alone.
    fn tree_order(s: &Sequence) -> Vec<u32> {
        enum Step {
            Enter(u32),
            Emit(u32),
        }
        let children = |n: u32, side: Side| {
            let mut out = Vec::new();
            let mut c = s.node(n).first[side.slot()];
            while c != NIL {
                out.push(c);
                c = s.node(c).next;
            }
            out
        };
        let mut out = Vec::new();
        let mut stack = vec![Step::Enter(ROOT)];
        while let Some(step) = stack.pop() {
            match step {
                Step::Emit(n) => out.push(n),
                Step::Enter(n) => {
                    stack.extend(children(n, Side::Right).into_iter().rev().map(Step::Enter));
                    stack.push(Step::Emit(n));
                    stack.extend(children(n, Side::Left).into_iter().rev().map(Step::Enter));
                }
            }
        }
        out
    }

    /// Checks every internal invariant of a sequence.
    fn check(s: &Sequence) {
        assert_eq!(s.ids.len(), s.nodes.len() - 1);
        for (&id, &n) in &s.ids {
            assert_eq!(s.node(n).id, id);
        }
        for node in &s.nodes {
            for first in node.first {
                let mut c = first;
                while c != NIL && s.node(c).next != NIL {
                    assert!(s.node(c).key() < s.node(s.node(c).next).key());
                    c = s.node(c).next;
                }
            }
        }
        for (e, el) in s.elems.iter().enumerate() {
            assert_eq!(s.node(el.origin).elem, e as u32);
            assert_eq!(s.node(el.current).elem, e as u32);
        }
        let doc: Vec<u32> = s.entries().map(|entry| entry & !VISIBLE_BIT).collect();
        assert_eq!(doc, tree_order(s));
        let mut total = 0;
        for (pos, &c) in s.order.iter().enumerate() {
            let chunk = &s.chunks[c as usize];
            assert_eq!(chunk.pos as usize, pos);
            assert!(!chunk.entries.is_empty() && chunk.entries.len() <= s.chunk_max as usize);
            let mut visible = 0;
            for &entry in &chunk.entries {
                let n = entry & !VISIBLE_BIT;
                assert_eq!(s.node(n).chunk, c);
                let shown = s
                    .elems
                    .get(s.node(n).elem as usize)
                    .is_some_and(|el| el.current == n && el.state == ElemState::Visible);
                assert_eq!(entry & VISIBLE_BIT != 0, shown);
                visible += u32::from(shown);
            }
            assert_eq!(chunk.visible, visible);
            total += visible as usize;
        }
        assert_eq!(s.order.len(), s.chunks.len());
        assert_eq!(s.len(), total);
        let mut rebuilt = s.clone();
        rebuilt.rebuild_fenwick();
        assert_eq!(s.fenwick, rebuilt.fenwick);
        for (i, elem) in s.visible().enumerate() {
            assert_eq!(s.index_of(elem), Some(i));
            assert_eq!(s.elem_at(i), Some(elem));
        }
        assert_eq!(s.elem_at(s.len()), None);
    }

    #[test]
    fn empty_sequence() {
        let s = Sequence::default();
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
        assert_eq!(s.node_count(), 0);
        assert_eq!(s.elem_at(0), None);
        assert_eq!(s.elements().count(), 0);
        assert_eq!(
            s.place_insert(0),
            Ok(Place {
                parent: None,
                side: Side::Right
            })
        );
        check(&s);
    }

    #[test]
    fn concurrent_inserts_at_one_index_are_ordered_by_key() {
        let mut base = Sequence::new();
        let (a, b) = (id(1, 1), id(1, 2));
        write_insert(&mut base, a, 1, 0);
        write_insert(&mut base, b, 1, 1);
        // Keys: (10, peer 4) < (20, peer 2) < (20, peer 3).
        let writers = [(id(2, 1), 20), (id(3, 1), 20), (id(4, 1), 10)];
        let ops: Vec<(OpId, Timestamp, Place)> = writers
            .iter()
            .map(|&(x, ts)| (x, ts, base.place_insert(1).unwrap()))
            .collect();
        for perm in [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ] {
            let mut s = base.clone();
            for i in perm {
                let (x, ts, place) = ops[i];
                s.insert(x, ts, place, Visible).unwrap();
            }
            assert_eq!(list(&s), vec![a, id(4, 1), id(2, 1), id(3, 1), b]);
            check(&s);
        }
    }

    #[test]
    fn inserting_twice_at_the_front_puts_the_later_first() {
        let mut s = Sequence::new();
        let (x, y) = (id(1, 1), id(1, 2));
        write_insert(&mut s, x, 1, 0);
        let place = write_insert(&mut s, y, 2, 0);
        assert_eq!(
            place,
            Place {
                parent: Some(x),
                side: Side::Left
            }
        );
        assert_eq!(list(&s), vec![y, x]);
    }

    #[test]
    fn inserts_around_a_concurrently_erased_element() {
        let mut base = Sequence::new();
        let (a, b, c) = (id(1, 1), id(1, 2), id(1, 3));
        for (i, e) in [a, b, c].into_iter().enumerate() {
            write_insert(&mut base, e, 1, i);
        }
        let (x, y) = (id(2, 1), id(3, 1));
        let px = base.place_insert(1).unwrap();
        let py = base.place_insert(2).unwrap();
        let apply = |s: &mut Sequence, op: usize| match op {
            0 => drop(s.insert(x, 2, px, Visible).unwrap()),
            1 => drop(s.insert(y, 2, py, Visible).unwrap()),
            _ => drop(s.set_state(b, Erased).unwrap()),
        };
        for perm in [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ] {
            let mut s = base.clone();
            for op in perm {
                apply(&mut s, op);
            }
            assert_eq!(list(&s), vec![a, x, y, c]);
            check(&s);
        }
    }

    /// Every interleaving of two sequences of ops that keeps each one's own order.
    fn interleavings(n: usize, m: usize) -> Vec<Vec<bool>> {
        if n == 0 || m == 0 {
            return vec![vec![n > 0; n + m]];
        }
        let mut out = Vec::new();
        for (first, rest) in [
            (true, interleavings(n - 1, m)),
            (false, interleavings(n, m - 1)),
        ] {
            for mut tail in rest {
                tail.insert(0, first);
                out.push(tail);
            }
        }
        out
    }

    #[test]
    fn concurrent_runs_are_not_interleaved() {
        let mut base = Sequence::new();
        let (a, b) = (id(1, 1), id(1, 2));
        write_insert(&mut base, a, 1, 0);
        write_insert(&mut base, b, 1, 1);
        // Forward typing (each char after the previous one) and backward typing (each at the
        // same index), by two writers at the same place.
        for forward in [true, false] {
            let run = |peer: u64, ts: Timestamp| {
                let mut s = base.clone();
                let mut ops = Vec::new();
                for k in 0..4 {
                    let x = id(peer, k + 1);
                    let index = if forward { 1 + k as usize } else { 1 };
                    ops.push((x, ts + k, write_insert(&mut s, x, ts + k, index)));
                }
                (list(&s), ops)
            };
            let (run2, ops2) = run(2, 10);
            let (run3, ops3) = run(3, 11);
            for order in interleavings(4, 4) {
                let mut s = base.clone();
                let (mut i2, mut i3) = (ops2.iter(), ops3.iter());
                for from2 in order {
                    let &(x, ts, place) = if from2 { i2.next() } else { i3.next() }.unwrap();
                    s.insert(x, ts, place, Visible).unwrap();
                }
                let merged = list(&s);
                let expected: Vec<OpId> = run2[..run2.len() - 1]
                    .iter()
                    .chain(&run3[1..run3.len() - 1])
                    .chain(&run3[run3.len() - 1..])
                    .copied()
                    .collect();
                assert_eq!(merged, expected, "forward typing: {forward}");
                check(&s);
            }
        }
    }

    #[test]
    fn moves_land_where_the_writer_asked() {
        let n = 6;
        for from in 0..n {
            for to in 0..n {
                let mut s = Sequence::new();
                let mut model = Vec::new();
                for i in 0..n {
                    let e = id(1, i as u64 + 1);
                    write_insert(&mut s, e, 1, i);
                    model.push(e);
                }
                let e = model.remove(from);
                model.insert(to, e);
                let place = s.place_move(e, to).unwrap();
                assert_eq!(
                    s.add_node(e, id(2, 1), 2, place, true),
                    Ok(VisibleChange::Moved { from, to })
                );
                assert_eq!(list(&s), model);
                assert_eq!(s.current_node(e), Some(id(2, 1)));
                assert_eq!(s.place_of(id(2, 1)), Some(place));
                assert_eq!(s.node_count(), n + 1);
                check(&s);
            }
        }
    }

    #[test]
    fn visible_changes() {
        let mut s = Sequence::new();
        let (a, b, c, m) = (id(1, 1), id(1, 2), id(1, 3), id(1, 4));
        write_insert(&mut s, a, 1, 0);
        let pb = s.place_insert(1).unwrap();
        assert_eq!(s.insert(b, 1, pb, Hidden), Ok(VisibleChange::None));
        let pc = s.place_insert(1).unwrap();
        assert_eq!(s.insert(c, 1, pc, Visible), Ok(VisibleChange::Inserted(1)));
        assert_eq!(list(&s), vec![a, c]);
        assert_eq!(s.index_of(b), None);
        assert_eq!(s.state(b), Some(Hidden));
        assert_eq!(s.set_state(b, Visible), Ok(VisibleChange::Inserted(1)));
        assert_eq!(list(&s), vec![a, b, c]);
        assert_eq!(s.set_state(b, Visible), Ok(VisibleChange::None));
        assert_eq!(s.set_state(a, Hidden), Ok(VisibleChange::Removed(0)));
        assert_eq!(s.set_state(a, Erased), Ok(VisibleChange::None));
        assert_eq!(s.set_state(a, Visible), Ok(VisibleChange::Inserted(0)));
        // A losing move only adds a tombstone.
        let to_end = s.place_move(a, 2).unwrap();
        assert_eq!(s.add_node(a, m, 2, to_end, false), Ok(VisibleChange::None));
        assert_eq!(list(&s), vec![a, b, c]);
        assert_eq!(s.current_node(a), Some(a));
        // A winning move of a hidden element shows once it is visible again.
        let to_front = s.place_move(c, 0).unwrap();
        assert_eq!(s.set_state(c, Hidden), Ok(VisibleChange::Removed(2)));
        assert_eq!(
            s.add_node(c, id(1, 5), 3, to_front, true),
            Ok(VisibleChange::None)
        );
        assert_eq!(s.set_state(c, Visible), Ok(VisibleChange::Inserted(0)));
        assert_eq!(list(&s), vec![c, a, b]);
        assert_eq!(
            s.elements().collect::<Vec<_>>(),
            vec![(c, Visible), (a, Visible), (b, Visible)]
        );
        // Moving to the same index is still reported.
        let same = s.place_move(a, 1).unwrap();
        assert_eq!(
            s.add_node(a, id(1, 6), 4, same, true),
            Ok(VisibleChange::Moved { from: 1, to: 1 })
        );
        assert_eq!(s.set_state(b, Hidden), Ok(VisibleChange::Removed(2)));
        assert_eq!(s.clear(), 2);
        assert!(s.is_empty());
        assert_eq!(s.visible().count(), 0);
        assert_eq!(
            s.elements().collect::<Vec<_>>(),
            vec![(c, Erased), (a, Erased), (b, Erased)]
        );
        assert_eq!(s.clear(), 0);
        assert_eq!(s.node_count(), 6);
        check(&s);
    }

    #[test]
    fn misuse_is_refused_without_change() {
        let mut s = Sequence::new();
        let (a, b, m, ghost) = (id(1, 1), id(1, 2), id(1, 3), id(9, 9));
        write_insert(&mut s, a, 1, 0);
        write_insert(&mut s, b, 1, 1);
        let p = s.place_move(a, 1).unwrap();
        s.add_node(a, m, 2, p, true).unwrap();
        s.set_state(b, Hidden).unwrap();
        let before = s.clone();
        let right_of = |parent| Place {
            parent,
            side: Side::Right,
        };
        let oob = |index, len| Err(ListError::IndexOutOfRange { index, len });

        assert_eq!(s.place_insert(2), oob(2, 1));
        assert_eq!(s.place_move(a, 1), oob(1, 1));
        assert_eq!(s.place_move(b, 0), Err(ListError::NotVisible(b)));
        assert_eq!(s.place_move(m, 0), Err(ListError::NotAnElement(m)));
        assert_eq!(
            s.place_move(ghost, 0),
            Err(ListError::UnknownElement(ghost))
        );
        assert_eq!(
            s.insert(a, 3, right_of(None), Visible),
            Err(ListError::DuplicateNode(a))
        );
        assert_eq!(
            s.insert(m, 3, right_of(None), Visible),
            Err(ListError::DuplicateNode(m))
        );
        assert_eq!(
            s.insert(id(1, 4), 3, right_of(Some(ghost)), Visible),
            Err(ListError::UnknownNode(ghost))
        );
        let left_of_root = Place {
            parent: None,
            side: Side::Left,
        };
        assert_eq!(
            s.insert(id(1, 4), 3, left_of_root, Visible),
            Err(ListError::LeftOfRoot)
        );
        assert_eq!(
            s.add_node(ghost, id(1, 4), 3, right_of(None), true),
            Err(ListError::UnknownElement(ghost))
        );
        assert_eq!(
            s.add_node(m, id(1, 4), 3, right_of(None), true),
            Err(ListError::NotAnElement(m))
        );
        assert_eq!(
            s.add_node(a, b, 3, right_of(None), true),
            Err(ListError::DuplicateNode(b))
        );
        assert_eq!(
            s.add_node(a, id(1, 4), 3, right_of(Some(ghost)), true),
            Err(ListError::UnknownNode(ghost))
        );
        assert_eq!(
            s.set_state(ghost, Erased),
            Err(ListError::UnknownElement(ghost))
        );
        assert_eq!(s.set_state(m, Erased), Err(ListError::NotAnElement(m)));
        assert_eq!(s.state(m), None);
        assert_eq!(s.index_of(m), None);
        assert_eq!(s.current_node(ghost), None);
        assert_eq!(s.place_of(ghost), None);
        assert!(s.contains_node(m) && !s.contains_node(ghost));
        assert_same(&s, &before);
        assert_eq!(
            ListError::IndexOutOfRange { index: 2, len: 1 }.to_string(),
            "list index 2 out of range (length 1)"
        );
    }

    #[test]
    fn rollback_restores_the_exact_state() {
        let mut s = Sequence::new();
        let mut rng = Rng(7);
        let mut seq = 0;
        let mut next_id = || {
            seq += 1;
            id(1, seq)
        };
        for i in 0..300 {
            write_insert(&mut s, next_id(), 1, rng.below(i + 1));
        }
        let victim = s.elem_at(10).unwrap();
        s.set_state(victim, Hidden).unwrap();
        let chunks_before = s.chunks.len();
        let before = s.clone();

        s.begin();
        // Enough inserts at one spot to split chunks several times, plus every other kind of
        // change, interleaved.
        for i in 0..700 {
            write_insert(&mut s, next_id(), 2, 150 + i % 7);
            if i % 50 == 0 {
                let e = s.elem_at(rng.below(s.len())).unwrap();
                let to = rng.below(s.len());
                let place = s.place_move(e, to).unwrap();
                s.add_node(e, next_id(), 2, place, true).unwrap();
                let e = s.elem_at(rng.below(s.len())).unwrap();
                s.set_state(e, Erased).unwrap();
            }
        }
        s.set_state(victim, Visible).unwrap();
        assert!(s.chunks.len() > chunks_before + 2);
        s.clear();
        write_insert(&mut s, next_id(), 3, 0);
        check(&s);
        s.rollback();
        assert_same(&s, &before);
        check(&s);

        // Committed changes stay, and a rollback afterwards does nothing.
        s.begin();
        let kept = next_id();
        write_insert(&mut s, kept, 4, 0);
        s.commit();
        let committed = s.clone();
        s.rollback();
        assert_same(&s, &committed);
        assert_eq!(s.elem_at(0), Some(kept));

        // A second begin commits what the first recorded.
        s.begin();
        write_insert(&mut s, next_id(), 5, 0);
        let kept_too = s.clone();
        s.begin();
        write_insert(&mut s, next_id(), 5, 0);
        s.rollback();
        assert_same(&s, &kept_too);
    }

    #[test]
    fn rollback_unlinks_concurrent_siblings() {
        let mut s = Sequence::new();
        let a = id(1, 1);
        let place = write_insert(&mut s, a, 5, 0);
        let before = s.clone();
        s.begin();
        // Keys 9, 3, 6: the last one registered sits between the other two.
        for (peer, ts) in [(2, 9), (3, 3), (4, 6)] {
            s.insert(id(peer, 1), ts, place, Visible).unwrap();
        }
        assert_eq!(list(&s), vec![id(3, 1), a, id(4, 1), id(2, 1)]);
        s.rollback();
        assert_same(&s, &before);
    }

    #[test]
    fn nodes_stay_small() {
        assert_eq!(std::mem::size_of::<Node>(), 48);
        assert_eq!(std::mem::size_of::<Elem>(), 12);
    }

    #[test]
    fn large_list_matches_a_vec_model() {
        let mut s = Sequence::new();
        let mut rng = Rng(42);
        let mut ids = Vec::new();
        let mut model: Vec<u32> = Vec::new();
        let mut ts = 0;
        while model.len() < 200_000 {
            ts += 1;
            if !model.is_empty() && rng.below(8) == 0 {
                let i = rng.below(model.len());
                let e = model.remove(i);
                assert_eq!(s.elem_at(i), Some(ids[e as usize]));
                assert_eq!(
                    s.set_state(ids[e as usize], Erased),
                    Ok(VisibleChange::Removed(i))
                );
            } else {
                let i = rng.below(model.len() + 1);
                let e = id(1, ids.len() as u64 + 1);
                write_insert(&mut s, e, ts, i);
                model.insert(i, ids.len() as u32);
                ids.push(e);
            }
        }
        assert_eq!(s.len(), model.len());
        assert_eq!(s.node_count(), ids.len());
        for (i, &e) in model.iter().enumerate() {
            assert_eq!(s.elem_at(i), Some(ids[e as usize]));
            assert_eq!(s.index_of(ids[e as usize]), Some(i));
        }
        assert!(s.visible().eq(model.iter().map(|&e| ids[e as usize])));
        check(&s);
    }

    // ----- convergence between replicas -----

    #[derive(Clone, Debug)]
    enum Kind {
        Insert(Place),
        Erase(OpId),
        Move(OpId, Place),
        Hide(OpId, bool),
    }

    #[derive(Clone, Debug)]
    struct Op {
        id: OpId,
        ts: Timestamp,
        kind: Kind,
    }

    /// A writer replica. State changes are merged by order-independent rules: an erase wins,
    /// hide/unhide is last-writer-wins by key, and the move with the greatest key places the
    /// element.
    #[derive(Clone)]
    struct Replica {
        seq: Sequence,
        peer: PeerId,
        minted: u64,
        clock: Timestamp,
        seen: Vec<bool>,
        erased: HashSet<OpId>,
        hidden: HashMap<OpId, ((Timestamp, OpId), bool)>,
        mover: HashMap<OpId, (Timestamp, OpId)>,
    }

    impl Replica {
        fn new(peer: u64) -> Self {
            Replica {
                // Small chunks, so that splits (and undoing them) happen in small lists too.
                seq: Sequence::with_chunk_max(4),
                peer: PeerId(peer),
                minted: 0,
                clock: 0,
                seen: Vec::new(),
                erased: HashSet::new(),
                hidden: HashMap::new(),
                mover: HashMap::new(),
            }
        }

        fn knows(&self, i: usize) -> bool {
            self.seen.get(i).copied().unwrap_or(false)
        }

        fn ready(&self, op: &Op) -> bool {
            let has = |id: OpId| self.seq.contains_node(id);
            let parent_ok = |p: &Place| p.parent.map_or(true, has);
            match &op.kind {
                Kind::Insert(p) => parent_ok(p),
                Kind::Move(e, p) => has(*e) && parent_ok(p),
                Kind::Erase(e) | Kind::Hide(e, _) => has(*e),
            }
        }

        fn desired(&self, e: OpId) -> ElemState {
            if self.erased.contains(&e) {
                Erased
            } else if self.hidden.get(&e).is_some_and(|&(_, h)| h) {
                Hidden
            } else {
                Visible
            }
        }

        fn apply(&mut self, i: usize, op: &Op) -> VisibleChange {
            if self.seen.len() <= i {
                self.seen.resize(i + 1, false);
            }
            self.seen[i] = true;
            self.clock = self.clock.max(op.ts);
            let key = (op.ts, op.id);
            let change = match op.kind {
                Kind::Insert(place) => self.seq.insert(op.id, op.ts, place, Visible),
                Kind::Erase(e) => {
                    self.erased.insert(e);
                    self.seq.set_state(e, self.desired(e))
                }
                Kind::Hide(e, hide) => {
                    if self.hidden.get(&e).map_or(true, |&(k, _)| k < key) {
                        self.hidden.insert(e, (key, hide));
                    }
                    self.seq.set_state(e, self.desired(e))
                }
                Kind::Move(e, place) => {
                    let wins = self.mover.get(&e).map_or(true, |&k| k < key);
                    if wins {
                        self.mover.insert(e, key);
                    }
                    self.seq.add_node(e, op.id, op.ts, place, wins)
                }
            };
            change.unwrap()
        }

        /// Integrates the ops `pending` names, each once the nodes it names exist.
        fn integrate(&mut self, log: &[Op], mut pending: Vec<usize>) {
            loop {
                let before = pending.len();
                pending.retain(|&i| {
                    if self.ready(&log[i]) {
                        self.apply(i, &log[i]);
                        false
                    } else {
                        true
                    }
                });
                if pending.len() == before {
                    break;
                }
            }
        }

        fn local(&mut self, log: &mut Vec<Op>, kind: Kind) -> VisibleChange {
            self.minted += 1;
            let op = Op {
                id: OpId {
                    peer: self.peer,
                    seq: self.minted,
                },
                ts: self.clock + 1,
                kind,
            };
            log.push(op.clone());
            self.apply(log.len() - 1, &op)
        }

        fn element_in(&self, state: ElemState, pick: usize) -> Option<OpId> {
            let found: Vec<OpId> = self
                .seq
                .elements()
                .filter(|&(_, s)| s == state)
                .map(|(e, _)| e)
                .collect();
            (!found.is_empty()).then(|| found[pick % found.len()])
        }
    }

    fn local_op(r: &mut Replica, log: &mut Vec<Op>, action: u8, a: usize, b: usize) {
        let len = r.seq.len();
        match action {
            0..=5 => {
                let index = a % (len + 1);
                let place = r.seq.place_insert(index).unwrap();
                let change = r.local(log, Kind::Insert(place));
                assert_eq!(change, VisibleChange::Inserted(index));
            }
            6 | 7 if len > 0 => {
                let e = r.seq.elem_at(a % len).unwrap();
                assert_eq!(
                    r.local(log, Kind::Erase(e)),
                    VisibleChange::Removed(a % len)
                );
            }
            8 | 9 if len > 0 => {
                let e = r.seq.elem_at(a % len).unwrap();
                let to = b % len;
                let place = r.seq.place_move(e, to).unwrap();
                let change = r.local(log, Kind::Move(e, place));
                assert_eq!(change, VisibleChange::Moved { from: a % len, to });
            }
            10 if len > 0 => {
                let e = r.seq.elem_at(a % len).unwrap();
                r.local(log, Kind::Hide(e, true));
            }
            11 => {
                if let Some(e) = r.element_in(Hidden, a) {
                    r.local(log, Kind::Hide(e, false));
                }
            }
            _ => {}
        }
    }

    /// Replica `to` integrates a random subset of what `from` knows, in a random order. Half the
    /// time it first integrates them inside a unit that it rolls back, which must restore the
    /// sequence exactly.
    fn sync(replicas: &mut [Replica], log: &[Op], from: usize, to: usize, rng: &mut Rng) {
        let mut pending: Vec<usize> = (0..log.len())
            .filter(|&i| replicas[from].knows(i) && !replicas[to].knows(i))
            .filter(|_| rng.below(3) != 0)
            .collect();
        rng.shuffle(&mut pending);
        let r = &mut replicas[to];
        if rng.below(2) == 0 {
            let saved = r.clone();
            r.seq.begin();
            r.integrate(log, pending.clone());
            r.seq.rollback();
            assert_same(&r.seq, &saved.seq);
            *r = Replica {
                seq: std::mem::take(&mut r.seq),
                ..saved
            };
        }
        r.seq.begin();
        r.integrate(log, pending);
        r.seq.commit();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn replicas_converge(
            steps in prop::collection::vec((0u8..16, 0usize..3, any::<u16>(), any::<u16>()), 0..80),
            seed in any::<u64>(),
        ) {
            let mut rng = Rng(seed);
            let mut replicas: Vec<Replica> = (1..=3).map(Replica::new).collect();
            let mut log: Vec<Op> = Vec::new();
            for (action, r, a, b) in steps {
                if action < 12 {
                    local_op(&mut replicas[r], &mut log, action, a.into(), b.into());
                } else {
                    let from = (r + 1 + usize::from(action % 2)) % 3;
                    sync(&mut replicas, &log, from, r, &mut rng);
                }
            }
            // Every op's nodes were created before it, so the log order is always ready.
            for r in &mut replicas {
                for (i, op) in log.iter().enumerate() {
                    if !r.knows(i) {
                        prop_assert!(r.ready(op));
                        r.apply(i, op);
                    }
                }
            }
            let visible = list(&replicas[0].seq);
            let elements: Vec<_> = replicas[0].seq.elements().collect();
            for r in &replicas {
                check(&r.seq);
                prop_assert_eq!(&list(&r.seq), &visible);
                prop_assert_eq!(&r.seq.elements().collect::<Vec<_>>(), &elements);
                prop_assert_eq!(r.seq.node_count(), log.iter().filter(|op| {
                    matches!(op.kind, Kind::Insert(_) | Kind::Move(..))
                }).count());
            }
        }

        #[test]
        fn any_registration_order_gives_the_same_order(
            specs in prop::collection::vec(
                (any::<u16>(), any::<bool>(), 0u64..4, 1u64..4, 0u8..8, any::<u16>()),
                1..60,
            ),
            seed in any::<u64>(),
        ) {
            // Arbitrary trees, not only writer-made ones: every node hangs anywhere, keys tie on
            // timestamps, some nodes are moves of earlier elements.
            struct Spec {
                id: OpId,
                ts: Timestamp,
                parent: Option<usize>,
                side: Side,
                elem: Option<usize>,
                state: ElemState,
            }
            let mut nodes: Vec<Spec> = Vec::new();
            let mut minted = [0u64; 4];
            for (i, (parent, right, ts, peer, kind, pick)) in specs.into_iter().enumerate() {
                let parent = usize::from(parent) % (i + 1);
                let parent = parent.checked_sub(1);
                minted[peer as usize] += 1;
                let elems: Vec<usize> = (0..i).filter(|&j| nodes[j].elem.is_none()).collect();
                let elem = (kind < 2 && !elems.is_empty())
                    .then(|| elems[usize::from(pick) % elems.len()]);
                nodes.push(Spec {
                    id: id(peer, minted[peer as usize]),
                    ts,
                    parent,
                    side: if right || parent.is_none() { Side::Right } else { Side::Left },
                    elem,
                    state: [Visible, Visible, Hidden, Erased][usize::from(kind) % 4],
                });
            }
            let key = |i: usize| (nodes[i].ts, nodes[i].id);
            let place = |i: usize| Place {
                parent: nodes[i].parent.map(|p| nodes[p].id),
                side: nodes[i].side,
            };

            // The reference: in-order traversal of the specified tree, and the greatest-key move
            // as each element's position.
            let mut children: HashMap<(Option<usize>, Side), Vec<usize>> = HashMap::new();
            for (i, node) in nodes.iter().enumerate() {
                children.entry((node.parent, node.side)).or_default().push(i);
            }
            for kids in children.values_mut() {
                kids.sort_by_key(|&i| key(i));
            }
            fn walk(
                n: Option<usize>,
                children: &HashMap<(Option<usize>, Side), Vec<usize>>,
                out: &mut Vec<usize>,
            ) {
                for side in [Side::Left, Side::Right] {
                    for &c in children.get(&(n, side)).into_iter().flatten() {
                        walk(Some(c), children, out);
                    }
                    if side == Side::Left {
                        out.extend(n);
                    }
                }
            }
            let mut doc = Vec::new();
            walk(None, &children, &mut doc);
            let mut current: Vec<usize> = (0..nodes.len()).collect();
            for (i, node) in nodes.iter().enumerate() {
                if let Some(e) = node.elem {
                    if current[e] == e || key(current[e]) < key(i) {
                        current[e] = i;
                    }
                }
            }
            let expected: Vec<(OpId, ElemState)> = doc
                .iter()
                .filter_map(|&n| {
                    let e = nodes[n].elem.unwrap_or(n);
                    (current[e] == n).then(|| (nodes[e].id, nodes[e].state))
                })
                .collect();

            let mut rng = Rng(seed);
            for chunk_max in [2, 3, 8, CHUNK_MAX] {
                let mut s = Sequence::with_chunk_max(chunk_max);
                let mut done = vec![false; nodes.len()];
                let mut best: HashMap<usize, (Timestamp, OpId)> = HashMap::new();
                for _ in 0..nodes.len() {
                    let ready: Vec<usize> = (0..nodes.len())
                        .filter(|&i| {
                            !done[i]
                                && nodes[i].parent.map_or(true, |p| done[p])
                                && nodes[i].elem.map_or(true, |e| done[e])
                        })
                        .collect();
                    let i = ready[rng.below(ready.len())];
                    done[i] = true;
                    match nodes[i].elem {
                        None => {
                            s.insert(nodes[i].id, nodes[i].ts, place(i), nodes[i].state).unwrap();
                        }
                        Some(e) => {
                            let wins = best.get(&e).map_or(true, |&k| k < key(i));
                            if wins {
                                best.insert(e, key(i));
                            }
                            s.add_node(nodes[e].id, nodes[i].id, nodes[i].ts, place(i), wins)
                                .unwrap();
                        }
                    }
                }
                check(&s);
                prop_assert_eq!(s.elements().collect::<Vec<_>>(), expected.clone());
            }
        }
    }
}
