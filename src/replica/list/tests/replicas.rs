//! Replicas of one list that edit it concurrently and exchange operations in random orders:
//! every replica must end with the same document order, whatever the order of delivery.

use super::*;

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
        r.seq.begin(&mut UndoLogs::default());
        r.integrate(log, pending.clone());
        r.seq.rollback(&mut UndoLogs::default());
        assert_same(&r.seq, &saved.seq);
        *r = Replica {
            seq: std::mem::take(&mut r.seq),
            ..saved
        };
    }
    r.seq.begin(&mut UndoLogs::default());
    r.integrate(log, pending);
    r.seq.commit(&mut UndoLogs::default());
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
