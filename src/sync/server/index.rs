//! What a server's history entries touch, so that integrating an upload visits only the
//! entries of its window that can meet it instead of every entry since its base. It uses the
//! merge's own touch relation (`crate::merge`): an entry is a candidate exactly when one of its
//! instructions may meet one of the upload's.

use crate::merge::{touch_hashes, TouchHash};
use crate::model::{Changeset, PeerId};
use hashbrown::HashMap;
use smallvec::SmallVec;

/// What some changesets touch, to find the changesets that interact with them without
/// comparing instructions pairwise.
pub(crate) struct Footprint {
    /// The hashes of the places they mark, sorted, without repeats.
    marks: Vec<TouchHash>,
    /// The hashes of the places they cover, sorted, without repeats.
    covers: Vec<TouchHash>,
}

impl Footprint {
    /// The footprint of a sequence of changesets.
    pub(crate) fn of(side: &[Changeset]) -> Footprint {
        let (mut marks, mut covers) = (Vec::new(), Vec::new());
        for cs in side {
            touch_hashes(cs, |h, role| {
                if role.marks() {
                    marks.push(h);
                }
                if role.covers() {
                    covers.push(h);
                }
            });
        }
        for v in [&mut marks, &mut covers] {
            v.sort_unstable();
            v.dedup();
        }
        Footprint { marks, covers }
    }

    /// Whether merging `cs` with the changesets of this footprint could change either side:
    /// whether one of its instructions may meet one of theirs.
    pub(crate) fn meets(&self, cs: &Changeset) -> bool {
        let mut found = false;
        touch_hashes(cs, |h, role| {
            found |= (role.marks() && self.covers.binary_search(&h).is_ok())
                || (role.covers() && self.marks.binary_search(&h).is_ok());
        });
        found
    }
}

/// The versions (ascending) of history entries with one touch, grouped in runs of consecutive
/// entries from one origin: an uploader's own entries never meet its uploads, and a run of them
/// (a single writer's long history) is skipped in one step.
///
/// Most touches (a list element, a field) belong to one or two entries, so a touch's first run
/// and first version live inline, without an allocation.
type Runs = SmallVec<[(PeerId, SmallVec<[u64; 1]>); 1]>;

/// What a server's history entries touch, by touch, so that integrating an upload visits only
/// the entries of its window that can meet it instead of every entry since its base.
#[derive(Debug, Default)]
pub(crate) struct HistoryIndex {
    by_mark: HashMap<TouchHash, Runs>,
    by_cover: HashMap<TouchHash, Runs>,
}

impl HistoryIndex {
    /// Records history entry `version` from `origin` (versions are added in ascending order)
    /// with what it touches: its changeset's footprint, or the footprint of a changeset it was
    /// made from by removing instructions or their touches (a superset only adds candidates).
    pub(crate) fn add(&mut self, version: u64, origin: PeerId, footprint: &Footprint) {
        let record = |runs: &mut Runs| match runs.last_mut() {
            Some((o, versions)) if *o == origin => versions.push(version),
            _ => runs.push((origin, SmallVec::from_elem(version, 1))),
        };
        // The footprint has each hash once, so an entry is recorded once per hash and role.
        for h in &footprint.marks {
            record(self.by_mark.entry(*h).or_default());
        }
        for h in &footprint.covers {
            record(self.by_cover.entry(*h).or_default());
        }
    }

    /// The versions after `after`, ascending and without repeats, of the entries from origins
    /// other than `peer` holding an instruction that may meet one of `footprint` (a superset of
    /// those that meet it in their current form, since transformation only ever removes
    /// touches).
    pub(crate) fn candidates(&self, footprint: &Footprint, after: u64, peer: PeerId) -> Vec<u64> {
        let mut out = Vec::new();
        let lookups = (footprint.covers.iter().map(|h| self.by_mark.get(h)))
            .chain(footprint.marks.iter().map(|h| self.by_cover.get(h)));
        for runs in lookups.flatten() {
            let first = runs.partition_point(|(_, v)| v.last().is_some_and(|&l| l <= after));
            for (origin, versions) in &runs[first..] {
                if *origin != peer {
                    let from = versions.partition_point(|&v| v <= after);
                    out.extend_from_slice(&versions[from..]);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Instruction, ObjKey, ObjRef, Op, OpId, Place, Value};

    fn obj(key: i64) -> ObjRef {
        ObjRef {
            ty: "T".into(),
            key: ObjKey::Int(key),
        }
    }

    fn elem(seq: u64) -> OpId {
        OpId {
            peer: PeerId(9),
            seq,
        }
    }

    fn insert(key: i64, seq: u64) -> Instruction {
        Instruction::ListInsert {
            obj: obj(key),
            prop: "l".into(),
            index: 0,
            value: Value::Int(1),
            elem: elem(seq),
            place: Place::root(),
        }
    }

    fn set(key: i64, prop: &str, value: Value) -> Instruction {
        Instruction::Set {
            obj: obj(key),
            prop: prop.into(),
            value,
            default: false,
        }
    }

    fn erase(seq: u64) -> Instruction {
        Instruction::ListErase {
            obj: obj(1),
            prop: "l".into(),
            index: 0,
            elem: elem(seq),
        }
    }

    /// Whether the footprint of `a` says `b` may meet it, checked both ways round.
    fn meet(a: Instruction, b: Instruction) -> bool {
        let cs = |i: Instruction| {
            let mut cs = Changeset::new(PeerId(1), 1);
            cs.ops.push(Op::live(i));
            cs
        };
        let (a, b) = (cs(a), cs(b));
        let ab = Footprint::of(std::slice::from_ref(&a)).meets(&b);
        let ba = Footprint::of(std::slice::from_ref(&b)).meets(&a);
        assert_eq!(ab, ba, "the meeting relation is symmetric");
        ab
    }

    #[test]
    fn instructions_meet_only_where_a_rule_can_apply() {
        let delete = |key| Instruction::Delete { obj: obj(key) };
        let clear_list = Instruction::ListClear {
            obj: obj(1),
            prop: "l".into(),
        };
        // Inserts into one list commute; the merge tree orders them.
        assert!(!meet(insert(1, 1), insert(1, 2)));
        // Inserts meet what can drop or void them.
        assert!(meet(insert(1, 1), clear_list.clone()));
        assert!(meet(insert(1, 1), delete(1)));
        assert!(!meet(insert(1, 1), delete(2)));
        // Element operations meet operations on the same element, and list_clear.
        assert!(meet(erase(1), erase(1)));
        assert!(!meet(erase(1), erase(2)));
        assert!(meet(erase(2), clear_list.clone()));
        assert!(meet(clear_list.clone(), clear_list));
        // Fields meet writes of the same field and deletes of the object.
        assert!(meet(set(1, "a", Value::Int(1)), set(1, "a", Value::Int(2))));
        assert!(!meet(
            set(1, "a", Value::Int(1)),
            set(1, "b", Value::Int(2))
        ));
        assert!(meet(set(1, "a", Value::Int(1)), delete(1)));
        assert!(meet(Instruction::Insert { obj: obj(1) }, delete(1)));
        // A link meets a delete of an object with its target's key, of any type.
        let link = set(2, "to", Value::Link(ObjKey::Int(7)));
        assert!(meet(link.clone(), delete(7)));
        assert!(!meet(link, delete(8)));
    }
}
