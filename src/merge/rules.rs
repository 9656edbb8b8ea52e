//! The rule for every pair of concurrent instructions that meet: `merge_pair` and what it
//! decides with. This is the whole rule table (spec/semantics.md has it with the reasons):
//! deletes win (R4, R5), the later write wins a field or an element (R1, R2), counters add up
//! (R3), list operations on one element or a cleared list resolve by kind (R7), and concurrent
//! schema changes must agree (R8).

use super::touch::link_write;
use crate::model::{
    Error, Fate, Instruction, Key, Kind, Name, ObjKey, Op, OpId, PropType, Schema, SchemaConflict,
    Value,
};
use hashbrown::HashMap;
use smallvec::SmallVec;

/// Resolves the target type of a link property, from the replica's schema and the schema
/// changes carried by the changesets being merged.
pub(super) struct Links<'s> {
    pub(super) schema: &'s Schema,
    pub(super) extra: LinkDefinitions,
}

/// The link properties a schema instruction defines: (type, property) -> target type.
pub(super) type LinkDefinitions = HashMap<(Name, Name), Name>;

/// Records the link properties `instr` defines, if it is a schema instruction.
pub(super) fn define_links(instr: &Instruction, defs: &mut LinkDefinitions) {
    let mut add = |ty: &Name, name: &Name, pt: &PropType| {
        if let Some(t) = pt.link_target() {
            defs.insert((ty.clone(), name.clone()), t.clone());
        }
    };
    match instr {
        Instruction::AddType(def) => {
            for (n, pt) in &def.properties {
                add(&def.name, n, pt)
            }
        }
        Instruction::AddProperties { ty, properties } => {
            for p in properties {
                add(ty, &p.name, &p.ty)
            }
        }
        _ => {}
    }
}

impl Links<'_> {
    fn target(&self, ty: &Name, prop: &Name) -> Option<Name> {
        if let Some(t) = self.extra.get(&(ty.clone(), prop.clone())) {
            return Some(t.clone());
        }
        self.schema
            .get(ty)
            .ok()?
            .properties
            .get(prop)?
            .link_target()
            .cloned()
    }
}

/// Whether `op` deletes the object `(ty, key)` (a live delete, or a live clear listing it).
fn deletes(op: &Op, ty: &str, key: &ObjKey) -> bool {
    if op.fate != Fate::Live {
        return false;
    }
    match &op.instr {
        Instruction::Delete { obj } => *obj.ty == *ty && obj.key == *key,
        Instruction::Clear { ty: t, objects } => **t == *ty && objects.contains(key),
        _ => false,
    }
}

/// Makes `op`'s deletion of `key` void (a clear forgets that object; a delete becomes void).
fn void_deletion(op: &mut Op, key: &ObjKey) {
    match &mut op.instr {
        Instruction::Clear { objects, .. } => objects.retain(|k| k != key),
        _ => op.lower(Fate::Void),
    }
}

/// The objects both instructions touch (several only for two clears of the same type).
fn shared_objects(a: &Instruction, b: &Instruction) -> SmallVec<[(Name, ObjKey); 1]> {
    let objs = |i: &Instruction| -> SmallVec<[(Name, ObjKey); 1]> {
        match i {
            Instruction::Clear { ty, objects } => {
                objects.iter().map(|k| (ty.clone(), k.clone())).collect()
            }
            other => other
                .object()
                .map(|o| (o.ty.clone(), o.key.clone()))
                .into_iter()
                .collect(),
        }
    };
    let oa = objs(a);
    if oa.is_empty() {
        return oa;
    }
    let ob = objs(b);
    oa.into_iter().filter(|o| ob.contains(o)).collect()
}

/// Whether write `x` (key `kx`) beats concurrent write `y`: an ordinary write beats a default
/// write; otherwise the later key wins.
fn beats(x_default: bool, kx: Key, y_default: bool, ky: Key) -> bool {
    if x_default != y_default {
        return !x_default;
    }
    kx > ky
}

/// Decides one meeting of two concurrent instructions `a` (from a changeset with key `ka`) and
/// `b` (key `kb`), rewriting both. This is the whole rule table; see spec/semantics.md.
pub(super) fn merge_pair(
    a: &mut Op,
    ka: Key,
    b: &mut Op,
    kb: Key,
    links: &Links<'_>,
) -> Result<(), Error> {
    if a.fate == Fate::Void || b.fate == Fate::Void {
        return Ok(());
    }
    schema_pair(&a.instr, &b.instr)?;
    dead_link(a, b, links);
    dead_link(b, a, links);
    for (ty, key) in shared_objects(&a.instr, &b.instr) {
        let (da, db) = (deletes(a, &ty, &key), deletes(b, &ty, &key));
        match (da, db) {
            // R5: concurrent deletes count as one, the latest; the earlier is void, so it does
            // not beat what its writer's rival re-created after the later delete.
            (true, true) => {
                if ka > kb {
                    void_deletion(b, &key)
                } else {
                    void_deletion(a, &key)
                }
            }
            // R4/R5: a delete beats every concurrent change to the object, creation included.
            (true, false) => b.lower(Fate::Void),
            (false, true) => a.lower(Fate::Void),
            (false, false) => same_object(a, ka, b, kb),
        }
        if a.fate == Fate::Void || b.fate == Fate::Void {
            break;
        }
    }
    Ok(())
}

/// Whether `merge_pair` leaves a pair that meets exactly as it is, with no error: two schema
/// changes that agree (R8). Schema changes are only ever checked against each other, never
/// transformed; and every device of a realm sends its schema, so agreeing definitions are most
/// of what meets when many devices start writing together.
pub(super) fn inert(a: &Instruction, b: &Instruction) -> bool {
    // The common case without building what `schema_pair` compares: one definition twice.
    if let (Instruction::AddType(x), Instruction::AddType(y)) = (a, b) {
        if x == y {
            return true;
        }
    }
    let schema = |i: &Instruction| {
        matches!(
            i,
            Instruction::AddType(_) | Instruction::AddProperties { .. }
        )
    };
    schema(a) && schema(b) && schema_pair(a, b).is_ok()
}

/// R8: two schema changes of the same type must agree on every property they both name and, for
/// two type definitions, on the primary key.
fn schema_pair(a: &Instruction, b: &Instruction) -> Result<(), Error> {
    type Definition = (Name, Option<(Name, PropType)>, Vec<(Name, PropType)>);
    let props = |i: &Instruction| -> Option<Definition> {
        match i {
            Instruction::AddType(def) => Some((
                def.name.clone(),
                def.primary_key_def(),
                def.properties
                    .iter()
                    .map(|(n, t)| (n.clone(), t.clone()))
                    .collect(),
            )),
            Instruction::AddProperties { ty, properties } => Some((
                ty.clone(),
                None,
                properties
                    .iter()
                    .map(|p| (p.name.clone(), p.ty.clone()))
                    .collect(),
            )),
            _ => None,
        }
    };
    let (Some((ta, pka, pa)), Some((tb, pkb, pb))) = (props(a), props(b)) else {
        return Ok(());
    };
    if ta != tb {
        return Ok(());
    }
    let both_types = matches!(a, Instruction::AddType(_)) && matches!(b, Instruction::AddType(_));
    if both_types && pka != pkb {
        return Err(Error::SchemaMismatch {
            ty: ta,
            conflict: SchemaConflict::PrimaryKey {
                new: pka,
                existing: pkb,
            },
        });
    }
    for (n, t) in &pa {
        if let Some((_, u)) = pb.iter().find(|(m, _)| m == n) {
            if t != u {
                return Err(Error::SchemaMismatch {
                    ty: ta,
                    conflict: SchemaConflict::PropertyType {
                        prop: n.clone(),
                        new: t.clone(),
                        existing: u.clone(),
                    },
                });
            }
        }
    }
    Ok(())
}

/// R4: a link written concurrently with the deletion of its target is dead: a link property
/// becomes null and a list element stays hidden, even if the key is re-created later.
fn dead_link(w: &mut Op, d: &Op, links: &Links<'_>) {
    let Some((ty, prop, key)) = link_write(&w.instr) else {
        return;
    };
    if w.fate < Fate::DeadLink {
        return;
    }
    let Some(target) = links.target(ty, prop) else {
        return;
    };
    if deletes(d, &target, key) {
        w.lower(Fate::DeadLink);
    }
}

/// Two instructions on the same object, neither deleting it.
fn same_object(a: &mut Op, ka: Key, b: &mut Op, kb: Key) {
    use Instruction as I;
    match (&a.instr, &b.instr) {
        // R1/R2: of two concurrent writes of a property the later wins; default writes lose to
        // ordinary ones.
        (
            I::Set {
                prop: pa,
                default: da,
                ..
            },
            I::Set {
                prop: pb,
                default: db,
                ..
            },
        ) if pa == pb => {
            if beats(*da, ka, *db, kb) {
                b.lower(Fate::Void)
            } else {
                a.lower(Fate::Void)
            }
        }
        (I::Set { prop: pa, .. }, I::AddInt { prop: pb, .. }) if pa == pb => {
            set_meets_add(a, ka, b, kb)
        }
        (I::AddInt { prop: pa, .. }, I::Set { prop: pb, .. }) if pa == pb => {
            set_meets_add(b, kb, a, ka)
        }
        _ => same_list(a, ka, b, kb),
    }
}

/// R3: an add_int later than a concurrent set (or concurrent with a default set) counts on top of
/// it, so the set absorbs it; an earlier one is dropped.
fn set_meets_add(set: &mut Op, ks: Key, add: &mut Op, kd: Key) {
    let (Instruction::Set { default, value, .. }, Instruction::AddInt { delta, .. }) =
        (&mut set.instr, &add.instr)
    else {
        return;
    };
    if beats(false, kd, *default, ks) {
        if let Value::Int(v) = value {
            *v = v.wrapping_add(*delta);
        }
    } else {
        add.lower(Fate::Void)
    }
}

/// The list property an instruction works on, and the element it addresses (if one).
fn list_target(i: &Instruction) -> Option<(&Name, Option<OpId>)> {
    match i {
        Instruction::ListInsert { prop, .. } => Some((prop, None)),
        Instruction::ListSet { prop, elem, .. }
        | Instruction::ListErase { prop, elem, .. }
        | Instruction::ListMove { prop, elem, .. } => Some((prop, Some(*elem))),
        Instruction::ListClear { prop, .. } => Some((prop, None)),
        _ => None,
    }
}

/// R7: two instructions on the same list. Positions never need adjusting (elements are named by
/// id); only which of them takes effect is decided here.
fn same_list(a: &mut Op, ka: Key, b: &mut Op, kb: Key) {
    use Kind as K;
    let (Some((pa, ea)), Some((pb, eb))) = (list_target(&a.instr), list_target(&b.instr)) else {
        return;
    };
    if pa != pb {
        return;
    }
    let same_elem = ea.is_some() && ea == eb;
    let (x, y) = (a.instr.kind(), b.instr.kind());
    // Orient the pair so that each rule is written once: `first` is the op whose kind comes
    // first in this list.
    let order = [
        K::ListClear,
        K::ListErase,
        K::ListMove,
        K::ListSet,
        K::ListInsert,
    ];
    let rank = |k: K| order.iter().position(|o| *o == k).unwrap_or(order.len());
    let (f, kf, s, ks) = if rank(x) <= rank(y) {
        (a, ka, b, kb)
    } else {
        (b, kb, a, ka)
    };
    match (f.instr.kind(), s.instr.kind()) {
        // Of two concurrent list_clears the later wins: the earlier is void and does not drop
        // what the later one's transaction inserted after it.
        (K::ListClear, K::ListClear) => {
            if kf > ks {
                s.lower(Fate::Void)
            } else {
                f.lower(Fate::Void)
            }
        }
        // list_clear drops every concurrent operation on the list's elements; inserts and moves
        // keep their positions in the merge tree, invisibly.
        (K::ListClear, K::ListInsert | K::ListMove) => s.lower(Fate::Dropped),
        (K::ListClear, K::ListSet | K::ListErase) => s.lower(Fate::Void),
        // Concurrent erases of one element erase it once.
        (K::ListErase, K::ListErase) if same_elem => {
            f.lower(Fate::Void);
            s.lower(Fate::Void);
        }
        // An erase beats a concurrent move or list_set of the element.
        (K::ListErase, K::ListMove) if same_elem => s.lower(Fate::Dropped),
        (K::ListErase, K::ListSet) if same_elem => s.lower(Fate::Void),
        // Of two concurrent moves of one element the later wins.
        (K::ListMove, K::ListMove) if same_elem && f.fate == Fate::Live && s.fate == Fate::Live => {
            if kf > ks {
                s.lower(Fate::Dropped)
            } else {
                f.lower(Fate::Dropped)
            }
        }
        // R1 for list elements.
        (K::ListSet, K::ListSet) if same_elem => {
            if kf > ks {
                s.lower(Fate::Void)
            } else {
                f.lower(Fate::Void)
            }
        }
        // Everything else commutes: inserts, and operations on different elements, are placed
        // by the merge tree.
        _ => {}
    }
}
