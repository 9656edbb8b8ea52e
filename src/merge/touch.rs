//! What an instruction touches: the places in the state it works in, and how (`Role`). Two
//! instructions can only interact when one covers a place the other marks, which is what lets
//! the merge and the server's history index skip every pair that cannot.

use crate::model::{Changeset, Fate, Instruction, Name, ObjKey, OpId, Value};
use foldhash::fast::FixedState;
use std::hash::BuildHasher;

/// A place in the state that instructions work on, for indexing. Places nest: an object holds
/// its properties, a list property holds its elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Touch<'a> {
    /// An object (type and key).
    Obj(&'a str, &'a ObjKey),
    /// A property of an object: a field, or a list.
    Prop(&'a str, &'a ObjKey, &'a str),
    /// A list element (element ids are unique across lists).
    Elem(OpId),
    /// Link values pointing at an object with this key (of whichever type the link targets;
    /// the types are compared on meeting).
    LinkedTo(&'a ObjKey),
    /// A type's definition.
    Schema(&'a str),
}

/// How an instruction relates to a place it touches. Every instruction *marks* the places it
/// works in (the innermost one and those holding it) and *covers* the places whose every
/// instruction it must meet: a delete covers its object, a set its field, a list_clear its list,
/// an element operation its element. Two instructions meet when one covers a place the other
/// marks. An insert into a list covers nothing, so concurrent inserts never meet each other
/// (the merge tree orders them) but do meet a concurrent list_clear or delete of their object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Mark,
    Cover,
    Both,
}

impl Role {
    pub(crate) fn marks(self) -> bool {
        self != Role::Cover
    }

    pub(crate) fn covers(self) -> bool {
        self != Role::Mark
    }
}

/// A touch reduced to 64 bits, the only form the indices keep. Indices never compare touches
/// themselves: instructions whose touches collide meet in `merge_pair`, which decides from the
/// instructions and leaves a pair that does not interact unchanged, so a collision costs one
/// meeting and never changes a result. The hash is fixed (no per-process seed) so merging is
/// deterministic down to the order of its work.
pub(crate) type TouchHash = u64;

impl<'a> Touch<'a> {
    /// The object key the touch names, if it names one: touches of different keys never meet.
    pub(super) fn key(self) -> Option<&'a ObjKey> {
        match self {
            Touch::Obj(_, k) | Touch::Prop(_, k, _) | Touch::LinkedTo(k) => Some(k),
            Touch::Elem(_) | Touch::Schema(_) => None,
        }
    }

    pub(super) fn digest(self) -> TouchHash {
        FixedState::with_seed(0x6f62_6a73_796e_6321).hash_one(self)
    }
}

/// The link an instruction writes: (owner type, property, target key).
pub(crate) fn link_write(instr: &Instruction) -> Option<(&Name, &Name, &ObjKey)> {
    match instr {
        Instruction::Set {
            obj,
            prop,
            value: Value::Link(k),
            ..
        }
        | Instruction::ListInsert {
            obj,
            prop,
            value: Value::Link(k),
            ..
        }
        | Instruction::ListSet {
            obj,
            prop,
            value: Value::Link(k),
            ..
        } => Some((&obj.ty, prop, k)),
        _ => None,
    }
}

/// Calls `f` with everything an instruction touches and how (see [`Role`]).
pub(crate) fn touches<'a>(instr: &'a Instruction, mut f: impl FnMut(Touch<'a>, Role)) {
    use Instruction as I;
    use Role::{Both, Cover, Mark};
    match instr {
        I::AddType(def) => f(Touch::Schema(&def.name), Both),
        I::AddProperties { ty, .. } => f(Touch::Schema(ty), Both),
        I::Clear { ty, objects } => {
            for k in objects {
                f(Touch::Obj(ty, k), Both);
                f(Touch::LinkedTo(k), Cover);
            }
        }
        I::Delete { obj } => {
            f(Touch::Obj(&obj.ty, &obj.key), Both);
            f(Touch::LinkedTo(&obj.key), Cover);
        }
        I::Insert { obj } => f(Touch::Obj(&obj.ty, &obj.key), Mark),
        I::Set { obj, prop, .. } | I::ListClear { obj, prop } => {
            f(Touch::Obj(&obj.ty, &obj.key), Mark);
            f(Touch::Prop(&obj.ty, &obj.key, prop), Both);
        }
        // Adds commute with each other (R3), so an add only marks its field: it meets the sets
        // that cover the field and never the thousands of concurrent adds of a busy counter.
        I::AddInt { obj, prop, .. } | I::ListInsert { obj, prop, .. } => {
            f(Touch::Obj(&obj.ty, &obj.key), Mark);
            f(Touch::Prop(&obj.ty, &obj.key, prop), Mark);
        }
        I::ListSet {
            obj, prop, elem, ..
        }
        | I::ListErase {
            obj, prop, elem, ..
        }
        | I::ListMove {
            obj, prop, elem, ..
        } => {
            f(Touch::Obj(&obj.ty, &obj.key), Mark);
            f(Touch::Prop(&obj.ty, &obj.key, prop), Mark);
            f(Touch::Elem(*elem), Both);
        }
    }
    if let Some((_, _, k)) = link_write(instr) {
        f(Touch::LinkedTo(k), Mark);
    }
}

/// Calls `f` with the hash and role of every touch of the instructions of `cs` (void ones
/// excepted).
pub(crate) fn touch_hashes(cs: &Changeset, mut f: impl FnMut(TouchHash, Role)) {
    for op in cs.ops.iter().filter(|op| op.fate != Fate::Void) {
        touches(&op.instr, |t, role| f(t.digest(), role));
    }
}
