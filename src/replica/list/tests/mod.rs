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
    assert_eq!(a.ids.iter(), b.ids.iter());
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
        let mut c = s.node(n).first[slot(side)];
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
    assert_eq!(s.ids.iter().len(), s.nodes.len() - 1);
    for (id, n) in s.ids.iter() {
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
        for (off, &entry) in chunk.entries.iter().enumerate() {
            let n = entry & !VISIBLE_BIT;
            assert_eq!(s.node(n).chunk, c);
            assert_eq!(s.locate(n), (c as usize, off));
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
    // `locate` finds the last node whatever offset its hint holds.
    let last = s.nodes.len() as u32 - 1;
    let at = s.locate(last);
    let mut hinted = s.clone();
    for hint in 0..=s.chunk_max + 1 {
        hinted.last_off = hint;
        assert_eq!(hinted.locate(last), at);
    }
    for (i, elem) in s.visible().enumerate() {
        assert_eq!(s.index_of(elem), Some(i));
        assert_eq!(s.elem_at(i), Some(elem));
    }
    assert_eq!(s.elem_at(s.len()), None);
    check_writer_rule(s);
}

/// The writer rule's walk, which stops at the first visible ancestor entered from a right child,
/// agrees with a walk all the way up at every gap of the visible list, and at every gap of the
/// list without one element (a move's neighbours, with that element's node between them).
fn check_writer_rule(s: &Sequence) {
    let descends = |mut n: u32, ancestor: u32| {
        while n != ROOT && n != ancestor {
            n = s.node(n).parent();
        }
        n == ancestor
    };
    let shown: Vec<u32> = s
        .entries()
        .filter(|entry| entry & VISIBLE_BIT != 0)
        .map(|entry| entry & !VISIBLE_BIT)
        .collect();
    let before = |i: usize| if i == 0 { ROOT } else { shown[i - 1] };
    for (i, &ro) in shown.iter().enumerate() {
        assert_eq!(s.in_subtree_of(ro, before(i), NIL), descends(ro, before(i)));
        if let Some(&after) = shown.get(i + 1) {
            assert_eq!(
                s.in_subtree_of(after, before(i), ro),
                descends(after, before(i))
            );
        }
    }
}

#[test]
fn empty_sequence() {
    let s = Sequence::default();
    assert!(s.is_empty());
    assert_eq!(s.len(), 0);
    assert_eq!(s.node_count(), 0);
    assert_eq!(s.elem_at(0), None);
    assert_eq!(s.elements().count(), 0);
    assert_eq!(s.place_insert(0), Some(Place::root()));
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
    assert_eq!(s.place_insert(2), None);
    assert_eq!(s.place_move(a, 1), None);
    assert_eq!(s.place_move(b, 0), None);
    assert_eq!(s.place_move(m, 0), None);
    assert_eq!(s.place_move(ghost, 0), None);
    assert_eq!(
        s.insert(a, 3, right_of(None), Visible),
        Err(ListProblem::DuplicateNode(a))
    );
    assert_eq!(
        s.insert(m, 3, right_of(None), Visible),
        Err(ListProblem::DuplicateNode(m))
    );
    assert_eq!(
        s.insert(id(1, 4), 3, right_of(Some(ghost)), Visible),
        Err(ListProblem::UnknownNode(ghost))
    );
    let left_of_root = Place {
        parent: None,
        side: Side::Left,
    };
    assert_eq!(
        s.insert(id(1, 4), 3, left_of_root, Visible),
        Err(ListProblem::LeftOfRoot)
    );
    assert_eq!(
        s.add_node(ghost, id(1, 4), 3, right_of(None), true),
        Err(ListProblem::UnknownElement(ghost))
    );
    assert_eq!(
        s.add_node(m, id(1, 4), 3, right_of(None), true),
        Err(ListProblem::NotAnElement(m))
    );
    assert_eq!(
        s.add_node(a, b, 3, right_of(None), true),
        Err(ListProblem::DuplicateNode(b))
    );
    assert_eq!(
        s.add_node(a, id(1, 4), 3, right_of(Some(ghost)), true),
        Err(ListProblem::UnknownNode(ghost))
    );
    assert_eq!(
        s.set_state(ghost, Erased),
        Err(ListProblem::UnknownElement(ghost))
    );
    assert_eq!(s.set_state(m, Erased), Err(ListProblem::NotAnElement(m)));
    assert_eq!(s.state(m), None);
    assert_eq!(s.index_of(m), None);
    assert_eq!(s.current_node(ghost), None);
    assert_eq!(s.place_of(ghost), None);
    assert!(s.contains_node(m) && !s.contains_node(ghost));
    assert_same(&s, &before);
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

    s.begin(&mut UndoLogs::default());
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
    s.rollback(&mut UndoLogs::default());
    assert_same(&s, &before);
    check(&s);

    // Committed changes stay, and a rollback afterwards does nothing.
    s.begin(&mut UndoLogs::default());
    let kept = next_id();
    write_insert(&mut s, kept, 4, 0);
    s.commit(&mut UndoLogs::default());
    let committed = s.clone();
    s.rollback(&mut UndoLogs::default());
    assert_same(&s, &committed);
    assert_eq!(s.elem_at(0), Some(kept));

    // A second begin commits what the first recorded.
    s.begin(&mut UndoLogs::default());
    write_insert(&mut s, next_id(), 5, 0);
    let kept_too = s.clone();
    s.begin(&mut UndoLogs::default());
    write_insert(&mut s, next_id(), 5, 0);
    s.rollback(&mut UndoLogs::default());
    assert_same(&s, &kept_too);
}

#[test]
fn rollback_unlinks_concurrent_siblings() {
    let mut s = Sequence::new();
    let a = id(1, 1);
    let place = write_insert(&mut s, a, 5, 0);
    let before = s.clone();
    s.begin(&mut UndoLogs::default());
    // Keys 9, 3, 6: the last one registered sits between the other two.
    for (peer, ts) in [(2, 9), (3, 3), (4, 6)] {
        s.insert(id(peer, 1), ts, place, Visible).unwrap();
    }
    assert_eq!(list(&s), vec![id(3, 1), a, id(4, 1), id(2, 1)]);
    s.rollback(&mut UndoLogs::default());
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

/// A sequence's document rebuilds it, and a document whose tree does not traverse in the order
/// it was given is refused: each node with a parent, one at a time, moved to the other side of
/// it (a right child of a chain's last node is also the first thing after it, so the trees in
/// between are checked by the traversal, not by the sibling order).
#[test]
fn a_document_rebuilds_its_sequence_and_a_misordered_one_is_refused() {
    let mut s = Sequence::new();
    let mut rng = Rng(7);
    for k in 0..600u64 {
        // Mostly typing forwards, with jumps: chains of right children and left ones.
        let i = match rng.below(4) {
            0 => rng.below(s.len() + 1),
            _ => s.len(),
        };
        write_insert(&mut s, id(1, k + 1), k + 1, i);
    }
    let doc = s.document();
    let back = Sequence::from_document(&doc).expect("its own document");
    assert_eq!(list(&back), list(&s));
    check(&back);
    let mut flipped = 0;
    for (i, node) in doc.iter().enumerate() {
        if node.parent.is_none() {
            continue;
        }
        let mut bad = doc.clone();
        bad[i].side = match node.side {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        };
        assert!(
            Sequence::from_document(&bad).is_err(),
            "node {i} on the other side of its parent"
        );
        flipped += 1;
    }
    assert!(flipped > 500);
}

// ----- convergence between replicas -----

mod replicas;
