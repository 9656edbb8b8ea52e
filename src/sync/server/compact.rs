//! History compaction: the server drops from its history the instructions that no late upload
//! and no download can tell from absent, so that every future integration and every client's
//! state come out exactly as without compaction (spec/semantics.md, section 9, has the argument
//! for each rule).
//!
//! Going from the newest entry to the oldest (and within an entry from its last instruction to
//! its first), an instruction goes when:
//! - it is void: a void instruction meets nothing and applies nothing;
//! - it is a set or an add_int of a field that a later live set *dominates*: every concurrent
//!   write that beats the later set beats this one too (an ordinary later set with a key at
//!   least as great dominates any set and any add_int; a default later set dominates only
//!   default sets with keys no greater);
//! - it works on an object that a later live delete (or clear) deletes: every late upload that
//!   could meet it meets that deletion too, and the deletion voids it there. The creation
//!   itself stays: instructions on other objects may link to the object until it goes, and a
//!   replica applying them needs it to exist.
//!
//! Consecutive add_ints of one field in one changeset become one. Entries keep their versions
//! even when nothing is left of them.
//!
//! Trimming uses the same rules for the *residue* it keeps of the entries it forgets
//! ([`residue`]): what is left of them once compacted against everything after them, without
//! the values written, which no late changeset's outcome depends on (spec/semantics.md 9.3).

use super::history::History;
use super::Server;
use crate::model::{Changeset, Fate, Instruction, Key, Name, ObjKey, Op, ServerVersion, Value};
use crate::store::Store;
use hashbrown::{HashMap, HashSet};

/// The strongest sets of one field seen later in the history.
#[derive(Default, Clone, Copy)]
struct LaterSets {
    ordinary: Option<Key>,
    default: Option<Key>,
}

impl LaterSets {
    /// Whether a later set dominates a write with key `key` (a set, default or not, or an
    /// add_int).
    fn dominate(&self, key: Key, write: Write) -> bool {
        let ordinary = self.ordinary.is_some_and(|k| k >= key);
        match write {
            Write::Set { default: false } | Write::Add => ordinary,
            Write::Set { default: true } => {
                self.ordinary.is_some() || self.default.is_some_and(|k| k >= key)
            }
        }
    }

    fn note(&mut self, key: Key, default: bool) {
        let slot = if default {
            &mut self.default
        } else {
            &mut self.ordinary
        };
        *slot = Some(slot.map_or(key, |k| k.max(key)));
    }
}

#[derive(Clone, Copy)]
enum Write {
    Set { default: bool },
    Add,
}

/// What the entries after the current position guarantee, for the compaction rules.
#[derive(Default)]
struct Later {
    fields: HashMap<(Name, ObjKey, Name), LaterSets>,
    deleted: HashSet<(Name, ObjKey)>,
}

impl Later {
    /// Whether `op` (of a changeset with key `key`) can go, given what comes after it.
    fn supersedes(&self, op: &Op, key: Key) -> bool {
        if op.fate == Fate::Void {
            return true;
        }
        let Some(obj) = op.instr.object() else {
            return false;
        };
        if !matches!(
            op.instr,
            Instruction::Delete { .. } | Instruction::Insert { .. }
        ) && self.deleted.contains(&(obj.ty.clone(), obj.key.clone()))
        {
            return true;
        }
        let (prop, write) = match &op.instr {
            Instruction::Set { prop, default, .. } => (prop, Write::Set { default: *default }),
            Instruction::AddInt { prop, .. } => (prop, Write::Add),
            _ => return false,
        };
        (self
            .fields
            .get(&(obj.ty.clone(), obj.key.clone(), prop.clone())))
        .is_some_and(|later| later.dominate(key, write))
    }

    /// Takes note of an op that stays, for the ops before it.
    fn note(&mut self, op: &Op, key: Key) {
        if op.fate == Fate::Void {
            return;
        }
        match &op.instr {
            Instruction::Set {
                obj, prop, default, ..
            } => (self
                .fields
                .entry((obj.ty.clone(), obj.key.clone(), prop.clone())))
            .or_default()
            .note(key, *default),
            Instruction::Delete { obj } if op.fate == Fate::Live => {
                self.deleted.insert((obj.ty.clone(), obj.key.clone()));
            }
            Instruction::Clear { ty, objects } if op.fate == Fate::Live => {
                self.deleted
                    .extend(objects.iter().map(|k| (ty.clone(), k.clone())));
            }
            _ => {}
        }
    }
}

/// Takes note of every op of a changeset that stays whole.
fn note_all(cs: &Changeset, later: &mut Later) {
    let key = cs.key();
    for op in cs.ops.iter().rev() {
        later.note(op, key);
    }
}

/// Drops the values an op writes. Whether a concurrent instruction meets it, and what the
/// meeting does to that instruction, depends on the op's kind, target, fate and changeset key
/// and on an add_int's delta, never on a value it writes (spec/semantics.md 9.3).
fn strip_value(op: &mut Op) {
    match &mut op.instr {
        Instruction::Set { value, .. }
        | Instruction::ListSet { value, .. }
        | Instruction::ListInsert { value, .. } => *value = Value::Null,
        _ => {}
    }
}

/// The residue of the entries of `history` up to `horizon`, and of its residue so far: each
/// compacted against everything after it, its values dropped, empty ones left out.
pub(super) fn residue(
    history: &History,
    horizon: ServerVersion,
) -> Vec<(ServerVersion, Changeset)> {
    let mut later = Later::default();
    let held: Vec<_> = history.iter().collect();
    let cut = held.partition_point(|(v, _)| *v <= horizon);
    for (_, e) in held[cut..].iter().rev() {
        note_all(&e.changeset, &mut later);
    }
    let forgotten = (held[..cut].iter().rev()).map(|(v, e)| (*v, &e.changeset));
    let older = history.residue().iter().rev().map(|(v, cs)| (*v, cs));
    let mut out: Vec<(ServerVersion, Changeset)> = Vec::new();
    for (v, cs) in forgotten.chain(older) {
        let mut cs = cs.clone();
        compact(&mut cs, &mut later);
        cs.ops.iter_mut().for_each(strip_value);
        if !cs.ops.is_empty() {
            out.push((v, cs));
        }
    }
    out.reverse();
    out
}

/// Merges each add_int into a live add_int of the same field just before it.
fn fold_adds(ops: &mut Vec<Op>) {
    let mut out: Vec<Op> = Vec::with_capacity(ops.len());
    for op in ops.drain(..) {
        if let (
            Some(Op {
                instr:
                    Instruction::AddInt {
                        obj: o1,
                        prop: p1,
                        delta: d1,
                    },
                fate: Fate::Live,
            }),
            Instruction::AddInt {
                obj: o2,
                prop: p2,
                delta: d2,
            },
        ) = (out.last_mut(), &op.instr)
        {
            if op.fate == Fate::Live && o1 == o2 && p1 == p2 {
                *d1 = d1.wrapping_add(*d2);
                continue;
            }
        }
        out.push(op);
    }
    *ops = out;
}

/// Compacts one changeset given what comes after it; returns whether it changed.
fn compact(cs: &mut Changeset, later: &mut Later) -> bool {
    let key = cs.key();
    let before = cs.ops.len();
    let mut kept: Vec<Op> = Vec::with_capacity(cs.ops.len());
    for op in cs.ops.drain(..).rev() {
        if later.supersedes(&op, key) {
            continue;
        }
        later.note(&op, key);
        kept.push(op);
    }
    kept.reverse();
    fold_adds(&mut kept);
    let changed = kept.len() != before;
    cs.ops = kept;
    changed
}

impl<S: Store> Server<S> {
    /// Compacts the history (see the module documentation): the server's state, every future
    /// integration and every download's result stay exactly as they were. Returns how many
    /// instructions went.
    pub fn compact(&mut self) -> usize {
        let mut entries: Vec<_> = self.history.iter().map(|(v, _)| v).collect();
        entries.reverse();
        let mut later = Later::default();
        let mut compacted = HashMap::new();
        let mut removed = 0;
        for v in entries {
            let Some(entry) = self.history.get(v) else {
                continue;
            };
            let mut cs = entry.changeset.clone();
            let before = cs.ops.len();
            if compact(&mut cs, &mut later) {
                removed += before - cs.ops.len();
                compacted.insert(v, cs);
            }
        }
        self.history.rewrite(|v, cs| match compacted.remove(&v) {
            Some(new) => {
                *cs = new;
                true
            }
            None => false,
        });
        removed
    }
}
