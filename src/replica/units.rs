//! Atomic units across a replica's store and the merge metadata of its lists.
//!
//! A unit is opened on the store and on the recorder of change notifications, and recorded
//! here: which lists the unit created or dropped, which existing lists it opened a unit on (each
//! [`Sequence`] keeps its own undo log), and the id counter before it minted. Rolling back
//! undoes all of it, last first; committing the outermost unit forgets it. Units nest: a
//! committed inner unit hands what it touched to the enclosing one, which can still undo it.

use super::{ListAt, Replica, Sequence, UndoLogs};
use crate::model::PropRef;
use crate::store::Store;
use hashbrown::hash_map::EntryRef;
use hashbrown::HashSet;

#[derive(Debug)]
enum Undo {
    CreatedSeq(PropRef),
    DroppedSeq(PropRef, Box<Sequence>),
    Touched(PropRef),
    NextSeq(u64),
}

/// The undo log of the open units. See the module documentation.
#[derive(Debug, Default)]
pub(super) struct Units {
    undo: Vec<Undo>,
    marks: Vec<usize>,
    /// For each open unit, the lists it opened a unit on.
    touched: Vec<HashSet<PropRef>>,
    /// Emptied sets of closed units, kept for the next ones: every applied changeset is a unit,
    /// and allocating a set for each was a measurable share of integrating a long history.
    spare: Vec<HashSet<PropRef>>,
    /// The lists' emptied undo logs, for the same reason.
    logs: UndoLogs,
}

impl Units {
    fn logging(&self) -> bool {
        !self.marks.is_empty()
    }

    /// Keeps a closed unit's set for a later unit, unless it grew large (a unit that touched
    /// many lists should not keep their room for ever).
    fn recycle(&mut self, mut set: HashSet<PropRef>) {
        const KEEP: usize = 16;
        if set.capacity() <= KEEP {
            set.clear();
            self.spare.push(set);
        }
    }

    /// Records that the id counter stood at `seq` before minting.
    pub(super) fn minted(&mut self, seq: u64) {
        if self.logging() {
            self.undo.push(Undo::NextSeq(seq));
        }
    }
}

impl<S: Store> Replica<S> {
    /// Starts an atomic unit across the store and the list metadata. Units nest.
    pub fn begin(&mut self) {
        self.store.begin();
        self.recorder.begin();
        self.units.marks.push(self.units.undo.len());
        let set = self.units.spare.pop().unwrap_or_default();
        self.units.touched.push(set);
    }

    /// Ends the innermost unit, keeping its changes (an enclosing unit can still undo them).
    pub fn commit(&mut self) {
        self.store.commit();
        self.recorder.commit();
        let units = &mut self.units;
        let (Some(mark), Some(mut touched)) = (units.marks.pop(), units.touched.pop()) else {
            return;
        };
        let Some(parent) = units.touched.last_mut() else {
            for key in touched.iter() {
                if let Some(seq) = self.lists.get_mut(key) {
                    seq.commit(&mut units.logs);
                }
            }
            units.recycle(touched);
            units.undo.clear();
            return;
        };
        // A list the enclosing unit had opened merges this unit's changes into its own; a list
        // it had not is handed over, so the enclosing unit can undo what happened here.
        if parent.is_empty() {
            // Every list is handed over: the enclosing unit takes the set as it is, without
            // hashing each list's names again (a writer's instruction is a unit nested in its
            // transaction, which has touched nothing before its first instruction).
            std::mem::swap(parent, &mut touched);
            units.recycle(touched);
            return;
        }
        let mut merged = HashSet::new();
        for key in touched.drain() {
            if parent.contains(&key) {
                if let Some(seq) = self.lists.get_mut(&key) {
                    seq.commit(&mut units.logs);
                }
                merged.insert(key);
            } else {
                parent.insert(key);
            }
        }
        units.recycle(touched);
        if !merged.is_empty() {
            let tail = units.undo.split_off(mark);
            units.undo.extend(
                tail.into_iter()
                    .filter(|u| !matches!(u, Undo::Touched(k) if merged.contains(k))),
            );
        }
    }

    /// Ends the innermost unit, undoing its changes.
    pub fn rollback(&mut self) {
        self.store.rollback();
        self.recorder.rollback();
        let (Some(mark), Some(touched)) = (self.units.marks.pop(), self.units.touched.pop()) else {
            return;
        };
        self.units.recycle(touched);
        while self.units.undo.len() > mark {
            match self.units.undo.pop() {
                Some(Undo::CreatedSeq(k)) => {
                    self.lists.remove(&k);
                }
                Some(Undo::DroppedSeq(k, s)) => {
                    self.lists.insert(k, *s);
                }
                Some(Undo::Touched(k)) => {
                    if let Some(seq) = self.lists.get_mut(&k) {
                        seq.rollback(&mut self.units.logs);
                    }
                }
                Some(Undo::NextSeq(v)) => self.next_seq = v,
                None => break,
            }
        }
    }

    /// The sequence of a list for writing: created (and logged) if new, and opened for undo.
    pub(super) fn seq_mut(&mut self, list: ListAt<'_>) -> &mut Sequence {
        let logging = self.units.logging();
        // One lookup in the unit's set and one in the sequences: this runs for every list
        // instruction, and each lookup hashes the list's names.
        let opened = self.units.touched.last_mut().is_some_and(|t| {
            let before = t.len();
            t.get_or_insert_with(&list, |l| l.to_ref());
            t.len() > before
        });
        let seq = match self.lists.entry_ref(&list) {
            EntryRef::Occupied(o) => o.into_mut(),
            EntryRef::Vacant(v) => {
                if logging {
                    self.units.undo.push(Undo::CreatedSeq(list.to_ref()));
                }
                v.insert(Sequence::new())
            }
        };
        if logging && opened {
            self.units.undo.push(Undo::Touched(list.to_ref()));
            seq.begin(&mut self.units.logs);
        }
        seq
    }

    /// Drops the metadata of a list whose object was deleted (restored by a rollback).
    pub(super) fn drop_seq(&mut self, list: PropRef) {
        if let Some(seq) = self.lists.remove(&list) {
            if self.units.logging() {
                self.units.undo.push(Undo::DroppedSeq(list, Box::new(seq)));
            }
        }
    }
}
