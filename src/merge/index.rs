//! One side of a merge indexed by touch, so that the other side's instructions find the ones
//! they meet without a pass over all of them; and the engine-id spans that keep touches only
//! one side can name out of the index.

use super::rules::{define_links, LinkDefinitions};
use super::touch::{touches, Role, Touch, TouchHash};
use crate::model::{Changeset, Fate, ObjKey, PeerId};
use hashbrown::{HashMap, HashTable};
use smallvec::SmallVec;

/// A position in one side: (changeset, instruction).
pub(super) type Pos = (u32, u32);

/// The engine ids a side touches: for each minting peer, the span from the smallest to the
/// largest sequence number. Ids minted by different peers never collide and a peer mints in
/// ascending order, so when both sides mostly work on objects they created themselves, their
/// spans do not overlap and none of those touches is indexed or looked up. Other keys (primary
/// keys) are always indexed.
pub(super) struct Spans(Vec<(PeerId, u64, u64)>);

impl Spans {
    /// The spans of a side, from the one pass over it that a merge makes before indexing; the
    /// pass also records the link properties the side's schema instructions define.
    pub(super) fn survey<'c>(
        side: impl IntoIterator<Item = &'c Changeset>,
        links: &mut LinkDefinitions,
    ) -> Spans {
        let mut spans: HashMap<PeerId, (u64, u64)> = HashMap::new();
        // Consecutive touches almost always name ids of one peer: widen a running span and
        // fold it into the map only when the peer changes.
        let mut run: Option<(PeerId, u64, u64)> = None;
        let fold = |spans: &mut HashMap<PeerId, (u64, u64)>, (p, lo, hi): (PeerId, u64, u64)| {
            let span = spans.entry(p).or_insert((lo, hi));
            *span = (span.0.min(lo), span.1.max(hi));
        };
        for cs in side {
            for op in &cs.ops {
                define_links(&op.instr, links);
                if op.fate == Fate::Void {
                    continue;
                }
                touches(&op.instr, |t, _| {
                    let Some(ObjKey::Engine(id)) = t.key() else {
                        return;
                    };
                    match &mut run {
                        Some((p, lo, hi)) if *p == id.peer => {
                            *lo = (*lo).min(id.seq);
                            *hi = (*hi).max(id.seq);
                        }
                        _ => {
                            if let Some(done) = run.replace((id.peer, id.seq, id.seq)) {
                                fold(&mut spans, done);
                            }
                        }
                    }
                });
            }
        }
        if let Some(done) = run {
            fold(&mut spans, done);
        }
        let mut spans: Vec<_> = spans.into_iter().map(|(p, (lo, hi))| (p, lo, hi)).collect();
        spans.sort_unstable();
        Spans(spans)
    }

    /// The spans of a side that names no engine id.
    pub(super) fn none() -> Spans {
        Spans(Vec::new())
    }

    /// Whether the side names no engine id.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a touch of the other side can meet one of this side's.
    pub(super) fn may_meet(&self, t: Touch<'_>) -> bool {
        let Some(ObjKey::Engine(id)) = t.key() else {
            return true;
        };
        match self.0.binary_search_by_key(&id.peer, |s| s.0) {
            Ok(i) => (self.0[i].1..=self.0[i].2).contains(&id.seq),
            Err(_) => false,
        }
    }
}

/// The positions of one side's instructions by touch: for each touch hash, a chain through
/// `nodes` from the last positions with it back to the first. Consecutive instructions with the
/// same touch (an object created and then written) share a node, so they cost one hash-table
/// operation. Built once per merge.
struct Index {
    heads: HashTable<(TouchHash, u32)>,
    nodes: Vec<Node>,
    /// The touch of the last node pushed, which is the head of that touch's chain.
    last: Option<TouchHash>,
}

/// Positions `pos.1 .. pos.1 + len` of changeset `pos.0`, and the previous node of the chain
/// (or [`Index::END`]).
#[derive(Clone, Copy)]
struct Node {
    pos: Pos,
    len: u32,
    prev: u32,
}

impl Index {
    const END: u32 = u32::MAX;

    fn new() -> Index {
        Index {
            heads: HashTable::new(),
            nodes: Vec::new(),
            last: None,
        }
    }

    fn add(&mut self, h: TouchHash, pos: Pos) {
        if self.last == Some(h) {
            if let Some(head) = self.nodes.last_mut() {
                let end = (head.pos.0, head.pos.1 + head.len);
                if (pos.0, pos.1 + 1) == end {
                    return;
                }
                if pos == end {
                    head.len += 1;
                    return;
                }
            }
        }
        let node = self.nodes.len() as u32;
        let prev = match self.heads.find_mut(h, |e| e.0 == h) {
            Some(head) => std::mem::replace(&mut head.1, node),
            None => {
                self.heads.insert_unique(h, (h, node), |e| e.0);
                Self::END
            }
        };
        self.nodes.push(Node { pos, len: 1, prev });
        self.last = Some(h);
    }

    /// Appends the positions with touch `h`, in no particular order.
    fn find(&self, h: TouchHash, out: &mut SmallVec<[Pos; 8]>) {
        let Some(&(_, mut n)) = self.heads.find(h, |e| e.0 == h) else {
            return;
        };
        while n != Self::END {
            let node = self.nodes[n as usize];
            out.extend((0..node.len).map(|i| (node.pos.0, node.pos.1 + i)));
            n = node.prev;
        }
    }
}

/// One side's instructions by the places they mark and by the places they cover.
pub(super) struct Indexed {
    marks: Index,
    covers: Index,
}

impl Indexed {
    /// Indexes the touches of `side` that can meet a touch of the side with spans `other`.
    pub(super) fn of(side: &[Changeset], other: &Spans) -> Indexed {
        // Not sized up front: with disjoint spans most touches are filtered out, and an
        // allocation sized for every instruction would cost more than growing.
        let mut idx = Indexed {
            marks: Index::new(),
            covers: Index::new(),
        };
        for (c, cs) in side.iter().enumerate() {
            for (o, op) in cs.ops.iter().enumerate() {
                if op.fate == Fate::Void {
                    continue;
                }
                touches(&op.instr, |t, role| {
                    if other.may_meet(t) {
                        let (h, pos) = (t.digest(), (c as u32, o as u32));
                        if role.marks() {
                            idx.marks.add(h, pos);
                        }
                        if role.covers() {
                            idx.covers.add(h, pos);
                        }
                    }
                });
            }
        }
        idx
    }

    pub(super) fn is_empty(&self) -> bool {
        self.marks.nodes.is_empty() && self.covers.nodes.is_empty()
    }

    /// Appends the positions of the instructions that meet a touch `h` held with `role`.
    pub(super) fn meeting(&self, h: TouchHash, role: Role, out: &mut SmallVec<[Pos; 8]>) {
        if role.covers() {
            self.marks.find(h, out);
        }
        if role.marks() {
            self.covers.find(h, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::touch::Touch;
    use crate::model::{Instruction, ObjRef, Op, OpId};

    #[test]
    fn spans_rule_out_only_ids_the_other_side_cannot_name() {
        let engine = |peer, seq| {
            ObjKey::Engine(OpId {
                peer: PeerId(peer),
                seq,
            })
        };
        let mut cs = Changeset::new(PeerId(1), 1);
        for seq in [5, 9, 7] {
            cs.ops.push(Op::live(Instruction::Insert {
                obj: ObjRef {
                    ty: "T".into(),
                    key: engine(1, seq),
                },
            }));
        }
        let spans = Spans::survey(std::slice::from_ref(&cs), &mut LinkDefinitions::new());
        let may = |k: &ObjKey| spans.may_meet(Touch::Obj("T", k));
        assert!(may(&engine(1, 5)) && may(&engine(1, 6)) && may(&engine(1, 9)));
        assert!(!may(&engine(1, 4)) && !may(&engine(1, 10)) && !may(&engine(2, 7)));
        assert!(may(&ObjKey::Int(3)), "primary keys are always indexed");
        assert!(spans.may_meet(Touch::Elem(OpId {
            peer: PeerId(9),
            seq: 1
        })));
    }
}
