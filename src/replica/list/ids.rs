//! Which arena node holds each node id, kept as runs: a peer mints ids in ascending order and a
//! replica registers one peer's nodes in the order it minted them, so a stretch of ids
//! `seq..seq + len` usually sits in consecutive arena slots `node..node + len` (text typed
//! forwards is one such stretch per uninterrupted burst). One run then stands for a whole
//! stretch, where a hash map held an entry per node ever registered, and a saved list loads by
//! writing runs instead of hashing every node.
//!
//! A peer's runs are a vector sorted by first id, searched by bisection, to which the runs of
//! ids that arrive in ascending order are appended. An id below the end of that vector (a peer
//! that sends its ids out of order) goes to an ordered map beside it instead, so that no order
//! of arrival makes registering or finding cost more than a logarithm of the number of runs.
//! Removing is for undoing the newest registration, which ends a run (constant time); removing
//! an id inside the sorted vector shifts it.

use crate::model::{OpId, PeerId};
use hashbrown::HashMap;
use std::collections::BTreeMap;

/// Ids `first ..= first + (len - 1)` of one peer are arena nodes `node ..= node + (len - 1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    first: u64,
    node: u32,
    len: u32,
}

impl Run {
    fn last(&self) -> u64 {
        self.first + u64::from(self.len - 1)
    }

    fn get(&self, seq: u64) -> Option<u32> {
        (self.first..=self.last())
            .contains(&seq)
            .then(|| self.node + (seq - self.first) as u32)
    }

    /// Whether `(seq, node)` continues this run.
    fn continued_by(&self, seq: u64, node: u32) -> bool {
        self.last().checked_add(1) == Some(seq)
            && self.node.checked_add(self.len) == Some(node)
            && self.len < u32::MAX
    }

    /// What is left of the run without `seq`: the runs before and after it.
    fn without(&self, seq: u64) -> [Option<Run>; 2] {
        let k = (seq - self.first) as u32;
        let before = (k > 0).then_some(Run { len: k, ..*self });
        let after = (k + 1 < self.len).then(|| Run {
            first: seq + 1,
            node: self.node + k + 1,
            len: self.len - k - 1,
        });
        [before, after]
    }
}

/// One peer's runs: every id is in at most one of the two, and each holds its runs in order
/// without overlap.
#[derive(Clone, Debug, Default)]
struct PeerRuns {
    /// Sorted by first id; new ids above its end are appended here.
    sorted: Vec<Run>,
    /// Runs of ids that arrived below the end of `sorted`, by first id.
    strays: BTreeMap<u64, Run>,
}

impl PeerRuns {
    /// The position in `sorted` of the run that holds `seq`, if one does.
    fn in_sorted(&self, seq: u64) -> Option<usize> {
        let i = self.sorted.partition_point(|r| r.last() < seq);
        self.sorted.get(i).filter(|r| r.first <= seq).map(|_| i)
    }

    /// The stray run that holds `seq`, or the one just before it.
    fn stray_at_or_before(&self, seq: u64) -> Option<Run> {
        self.strays.range(..=seq).next_back().map(|(_, r)| *r)
    }

    fn get(&self, seq: u64) -> Option<u32> {
        if let Some(i) = self.in_sorted(seq) {
            return self.sorted[i].get(seq);
        }
        self.stray_at_or_before(seq)?.get(seq)
    }

    fn insert(&mut self, seq: u64, node: u32) -> bool {
        if self.get(seq).is_some() {
            return false;
        }
        let single = Run {
            first: seq,
            node,
            len: 1,
        };
        match self.sorted.last_mut() {
            Some(last) if last.last() >= seq => {
                match self.stray_at_or_before(seq) {
                    Some(prev) if prev.continued_by(seq, node) => self.strays.insert(
                        prev.first,
                        Run {
                            len: prev.len + 1,
                            ..prev
                        },
                    ),
                    _ => self.strays.insert(seq, single),
                };
            }
            Some(last) if last.continued_by(seq, node) => last.len += 1,
            _ => self.sorted.push(single),
        }
        true
    }

    fn remove(&mut self, seq: u64) {
        // What is left of the run goes back where the run was.
        if let Some(i) = self.in_sorted(seq) {
            let rest = self.sorted[i].without(seq);
            self.sorted.splice(i..=i, rest.into_iter().flatten());
            return;
        }
        let Some(run) = (self.stray_at_or_before(seq)).filter(|r| r.get(seq).is_some()) else {
            return;
        };
        self.strays.remove(&run.first);
        for part in run.without(seq).into_iter().flatten() {
            self.strays.insert(part.first, part);
        }
    }

    fn is_empty(&self) -> bool {
        self.sorted.is_empty() && self.strays.is_empty()
    }
}

/// Node ids to arena indices (see the module documentation).
#[derive(Clone, Debug, Default)]
pub(super) struct Ids {
    peers: HashMap<PeerId, PeerRuns>,
}

impl Ids {
    /// The arena node registered under `id`.
    pub(super) fn get(&self, id: OpId) -> Option<u32> {
        self.peers.get(&id.peer)?.get(id.seq)
    }

    pub(super) fn contains(&self, id: OpId) -> bool {
        self.get(id).is_some()
    }

    /// Registers `id` as arena node `node`; `false` (and no change) if `id` is registered.
    pub(super) fn insert(&mut self, id: OpId, node: u32) -> bool {
        self.peers.entry(id.peer).or_default().insert(id.seq, node)
    }

    /// Forgets `id`.
    pub(super) fn remove(&mut self, id: OpId) {
        if let Some(runs) = self.peers.get_mut(&id.peer) {
            runs.remove(id.seq);
            if runs.is_empty() {
                self.peers.remove(&id.peer);
            }
        }
    }

    /// Every registered id and its node, by peer and id.
    #[cfg(test)]
    pub(super) fn iter(&self) -> Vec<(OpId, u32)> {
        let mut all: Vec<(OpId, u32)> = (self.peers.iter())
            .flat_map(|(&peer, runs)| {
                (runs.sorted.iter().chain(runs.strays.values())).flat_map(move |r| {
                    (0..r.len).map(move |k| {
                        let seq = r.first + u64::from(k);
                        (OpId { peer, seq }, r.node + k)
                    })
                })
            })
            .collect();
        all.sort_unstable();
        all
    }

    /// The index of a list whose node ids are `ids`, in arena order from node `first`: built
    /// in one pass and one sort of the runs rather than an insertion per node. `Err` names an
    /// id given twice.
    pub(super) fn build(ids: impl IntoIterator<Item = OpId>, first: u32) -> Result<Ids, OpId> {
        let mut all: Vec<(PeerId, Run)> = Vec::new();
        for (id, node) in ids.into_iter().zip(first..) {
            match all.last_mut() {
                Some((peer, run)) if *peer == id.peer && run.continued_by(id.seq, node) => {
                    run.len += 1
                }
                _ => all.push((
                    id.peer,
                    Run {
                        first: id.seq,
                        node,
                        len: 1,
                    },
                )),
            }
        }
        all.sort_unstable_by_key(|(peer, run)| (*peer, run.first));
        for pair in all.windows(2) {
            let ((p, a), (q, b)) = (pair[0], pair[1]);
            if p == q && b.first <= a.last() {
                return Err(OpId {
                    peer: p,
                    seq: b.first,
                });
            }
        }
        let mut peers: HashMap<PeerId, PeerRuns> = HashMap::new();
        for (peer, run) in all {
            peers.entry(peer).or_default().sorted.push(run);
        }
        Ok(Ids { peers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap as Model;

    fn id(peer: u64, seq: u64) -> OpId {
        OpId {
            peer: PeerId(peer),
            seq,
        }
    }

    #[test]
    fn typing_forwards_is_one_run_per_peer() {
        let mut ids = Ids::default();
        for k in 0..1000 {
            assert!(ids.insert(id(1, 10 + k), 1 + k as u32));
        }
        assert_eq!(ids.peers[&PeerId(1)].sorted.len(), 1);
        assert_eq!(ids.get(id(1, 10)), Some(1));
        assert_eq!(ids.get(id(1, 1009)), Some(1000));
        assert_eq!(ids.get(id(1, 1010)), None);
        assert_eq!(ids.get(id(1, 9)), None);
        assert_eq!(ids.get(id(2, 10)), None);
        assert!(!ids.insert(id(1, 500), 2000), "registered already");
        ids.remove(id(1, 500));
        assert_eq!(ids.peers[&PeerId(1)].sorted.len(), 2);
        assert_eq!(ids.get(id(1, 500)), None);
        assert_eq!(ids.get(id(1, 501)), Some(492));
        assert_eq!(ids.get(id(1, 499)), Some(490));
    }

    #[test]
    fn a_list_loads_into_runs_and_refuses_an_id_twice() {
        let doc = [id(1, 5), id(1, 6), id(2, 1), id(1, 1), id(1, 2), id(1, 7)];
        let ids = Ids::build(doc, 1).expect("distinct");
        for (node, i) in (1..).zip(doc) {
            assert_eq!(ids.get(i), Some(node));
        }
        assert_eq!(ids.peers[&PeerId(1)].sorted.len(), 3);
        let twice = [id(1, 5), id(1, 6), id(1, 7), id(2, 1), id(1, 6)];
        assert_eq!(Ids::build(twice, 1).map(|_| ()), Err(id(1, 6)));
    }

    #[derive(Clone, Debug)]
    enum Step {
        Insert(u64, u64),
        Remove(u64, u64),
    }

    proptest! {
        /// Any order of inserts and removes, ascending or not, answers as a hash map would,
        /// and loading what the map holds gives the same answers.
        #[test]
        fn runs_answer_as_a_map(steps in prop::collection::vec(
            prop_oneof![
                4 => (0u64..3, 0u64..40).prop_map(|(p, s)| Step::Insert(p, s)),
                1 => (0u64..3, 0u64..40).prop_map(|(p, s)| Step::Remove(p, s)),
            ],
            0..200,
        )) {
            let mut ids = Ids::default();
            let mut model: Model<OpId, u32> = Model::new();
            let mut next = 1u32;
            for step in steps {
                match step {
                    Step::Insert(p, s) => {
                        let fresh = !model.contains_key(&id(p, s));
                        prop_assert_eq!(ids.insert(id(p, s), next), fresh);
                        if fresh {
                            model.insert(id(p, s), next);
                            next += 1;
                        }
                    }
                    Step::Remove(p, s) => {
                        ids.remove(id(p, s));
                        model.remove(&id(p, s));
                    }
                }
                for p in 0..3 {
                    for s in 0..40 {
                        prop_assert_eq!(ids.get(id(p, s)), model.get(&id(p, s)).copied());
                    }
                }
            }
            let mut held: Vec<(u32, OpId)> = model.iter().map(|(i, n)| (*n, *i)).collect();
            held.sort_unstable();
            let dense: Vec<OpId> = held.iter().map(|(_, i)| *i).collect();
            let built = Ids::build(dense.iter().copied(), 1).expect("distinct");
            for (node, i) in (1..).zip(&dense) {
                prop_assert_eq!(built.get(*i), Some(node));
            }
        }
    }
}
