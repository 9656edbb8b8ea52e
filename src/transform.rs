//! Transformation: merging two concurrent sequences of changesets so that applying either one
//! after the other gives the same state.
//!
//! `merge(a, b)` takes two sequences made concurrently on the same base state and rewrites both
//! in place: afterwards `base + a + b'` equals `base + b + a'`. It is the classic OT grid: every
//! instruction of `a`, in order, meets every instruction of `b`, in order, and each meeting is
//! decided by `merge_pair`, the single place that holds the rule for every pair of instruction
//! kinds (spec/semantics.md has the table with the reasons).
//!
//! Only instructions that can interact ever meet. Both sides are indexed by what they touch: the
//! object (type and key), the object a link value points at, and the type for schema changes.
//! Instructions on different objects commute and are never compared, so merging disjoint work
//! costs one hash lookup per instruction. Because a grid cell depends only on the cell to its
//! left and the cell above, visiting only the interacting cells in row order gives exactly the
//! result of the full grid.
//!
//! Transformation never changes an instruction's kind: it adjusts values (a set absorbs a later
//! concurrent add_int), shrinks a clear's object list, and lowers fates (see [`Fate`]). List
//! positions need no rewriting at all: list instructions name elements by id, and each replica's
//! [`crate::list::Sequence`] turns ids into indices when it applies them.

use crate::changeset::Changeset;
use crate::error::Error;
use crate::ids::{Key, PeerId};
use crate::instruction::{Fate, Instruction, Op};
use crate::schema::{Name, PropType, Schema};
use crate::value::{ObjKey, Value};
use hashbrown::HashMap;
use smallvec::SmallVec;

/// What an instruction touches, for indexing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Touch {
    /// Instructions on this object (a clear touches each object it lists).
    Obj(Name, ObjKey),
    /// Deletions of an object with this key (of any type; types are compared on meeting).
    Deleted(ObjKey),
    /// Link values pointing at an object with this key.
    LinkedTo(ObjKey),
    /// Schema changes of this type.
    Schema(Name),
}

type Pos = (u32, u32);

/// Resolves the target type of a link property, from the replica's schema and the schema
/// changes carried by the changesets being merged.
struct Links<'s> {
    schema: &'s Schema,
    extra: HashMap<(Name, Name), Name>,
}

impl<'s> Links<'s> {
    fn new(schema: &'s Schema, sides: [&[Changeset]; 2]) -> Self {
        let mut extra = HashMap::new();
        let mut add = |ty: &Name, name: &Name, pt: &PropType| {
            if let Some(t) = pt.link_target() {
                extra.insert((ty.clone(), name.clone()), t.clone());
            }
        };
        for side in sides {
            for op in side.iter().flat_map(|cs| &cs.ops) {
                match &op.instr {
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
        }
        Links { schema, extra }
    }

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

/// The link an instruction writes: (owner type, property, target key).
fn link_write(instr: &Instruction) -> Option<(&Name, &Name, &ObjKey)> {
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

/// Everything an instruction touches.
fn touches(instr: &Instruction) -> SmallVec<[Touch; 2]> {
    let mut out = SmallVec::new();
    match instr {
        Instruction::AddType(def) => out.push(Touch::Schema(def.name.clone())),
        Instruction::AddProperties { ty, .. } => out.push(Touch::Schema(ty.clone())),
        Instruction::Clear { ty, objects } => {
            for k in objects {
                out.push(Touch::Obj(ty.clone(), k.clone()));
                out.push(Touch::Deleted(k.clone()));
            }
        }
        Instruction::Delete { obj } => {
            out.push(Touch::Obj(obj.ty.clone(), obj.key.clone()));
            out.push(Touch::Deleted(obj.key.clone()));
        }
        other => {
            if let Some(obj) = other.object() {
                out.push(Touch::Obj(obj.ty.clone(), obj.key.clone()));
            }
            if let Some((_, _, k)) = link_write(other) {
                out.push(Touch::LinkedTo(k.clone()));
            }
        }
    }
    out
}

/// The touches of the other side an instruction must meet: objects meet objects, link values
/// meet deletions of their target, deletions meet link values and other deletions.
fn meets(t: &Touch) -> SmallVec<[Touch; 2]> {
    match t {
        Touch::Obj(..) | Touch::Schema(_) => SmallVec::from_iter([t.clone()]),
        Touch::Deleted(k) => {
            SmallVec::from_iter([Touch::Deleted(k.clone()), Touch::LinkedTo(k.clone())])
        }
        Touch::LinkedTo(k) => SmallVec::from_iter([Touch::Deleted(k.clone())]),
    }
}

/// An index of what the instructions of some changesets touch, to find the changesets that
/// interact with them without comparing instructions pairwise.
pub struct Footprint {
    touched: HashMap<Touch, SmallVec<[Pos; 2]>>,
}

impl Footprint {
    /// Indexes a sequence of changesets.
    pub fn of(side: &[Changeset]) -> Footprint {
        Footprint {
            touched: index(side),
        }
    }

    /// Whether merging `cs` with the indexed changesets would change either side: whether any of
    /// its instructions meets one of theirs.
    pub fn meets(&self, cs: &Changeset) -> bool {
        !self.touched.is_empty()
            && cs.ops.iter().filter(|op| op.fate != Fate::Void).any(|op| {
                touches(&op.instr)
                    .iter()
                    .flat_map(meets)
                    .any(|m| self.touched.contains_key(&m))
            })
    }
}

/// What a server's history entries touch, by touch, so that integrating an upload visits only
/// the entries of its window that can meet it instead of every entry since its base.
#[derive(Debug, Default)]
pub struct HistoryIndex {
    /// For each touch, the versions (ascending) of the entries with it, grouped in runs of
    /// consecutive entries from one origin: an uploader's own entries never meet its uploads,
    /// and a run of them (a single writer's long history) is skipped in one step.
    by_touch: HashMap<Touch, Vec<(PeerId, Vec<u64>)>>,
}

impl HistoryIndex {
    /// Records history entry `version` (versions are added in ascending order).
    pub fn add(&mut self, version: u64, cs: &Changeset) {
        for op in &cs.ops {
            if op.fate == Fate::Void {
                continue;
            }
            for t in touches(&op.instr) {
                let runs = self.by_touch.entry(t).or_default();
                match runs.last_mut() {
                    Some((origin, versions)) if *origin == cs.origin => {
                        if versions.last() != Some(&version) {
                            versions.push(version);
                        }
                    }
                    _ => runs.push((cs.origin, vec![version])),
                }
            }
        }
    }

    /// The versions after `after`, ascending and without repeats, of the entries from origins
    /// other than `peer` holding an instruction that meets one indexed by `footprint` (a
    /// superset of those that meet it in their current form, since transformation only ever
    /// removes touches).
    pub fn candidates(&self, footprint: &Footprint, after: u64, peer: PeerId) -> Vec<u64> {
        let mut out = Vec::new();
        // The meeting relation is symmetric, so the entries meeting a touch `k` are those
        // touching one of `meets(k)`.
        for k in footprint.touched.keys() {
            for m in meets(k) {
                let Some(runs) = self.by_touch.get(&m) else {
                    continue;
                };
                let first = runs.partition_point(|(_, v)| v.last().is_some_and(|&l| l <= after));
                for (origin, versions) in &runs[first..] {
                    if *origin != peer {
                        let from = versions.partition_point(|&v| v <= after);
                        out.extend_from_slice(&versions[from..]);
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn index(side: &[Changeset]) -> HashMap<Touch, SmallVec<[Pos; 2]>> {
    let mut idx: HashMap<Touch, SmallVec<[Pos; 2]>> = HashMap::new();
    for (c, cs) in side.iter().enumerate() {
        for (o, op) in cs.ops.iter().enumerate() {
            if op.fate == Fate::Void {
                continue;
            }
            for t in touches(&op.instr) {
                idx.entry(t).or_default().push((c as u32, o as u32));
            }
        }
    }
    idx
}

fn count(side: &[Changeset]) -> usize {
    side.iter().map(|cs| cs.ops.len()).sum()
}

/// Merges two concurrent sequences of changesets in place (see the module documentation).
///
/// `schema` is the schema of the replica doing the merge; it resolves link targets. Fails with
/// [`Error::SchemaMismatch`] when the two sides define a type or property incompatibly; the
/// sequences may then be partly transformed and must be discarded.
pub fn merge(a: &mut [Changeset], b: &mut [Changeset], schema: &Schema) -> Result<(), Error> {
    let links = Links::new(schema, [a, b]);
    // Either side may be the one indexed: visiting cells row by row or column by column gives
    // the same grid, so index the larger side and walk the smaller.
    if count(a) <= count(b) {
        walk(a, b, &links)
    } else {
        walk(b, a, &links)
    }
}

fn walk(small: &mut [Changeset], large: &mut [Changeset], links: &Links<'_>) -> Result<(), Error> {
    let idx = index(large);
    if idx.is_empty() {
        return Ok(());
    }
    let mut cands: SmallVec<[Pos; 8]> = SmallVec::new();
    for cs in small.iter_mut() {
        let key_s = cs.key();
        for x in cs.ops.iter_mut() {
            cands.clear();
            for t in touches(&x.instr) {
                for m in meets(&t) {
                    if let Some(ps) = idx.get(&m) {
                        cands.extend_from_slice(ps);
                    }
                }
            }
            if cands.is_empty() {
                continue;
            }
            cands.sort_unstable();
            cands.dedup();
            for &(lc, lo) in cands.iter() {
                let other = &mut large[lc as usize];
                let key_l = other.key();
                merge_pair(x, key_s, &mut other.ops[lo as usize], key_l, links)?;
            }
        }
    }
    Ok(())
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
fn merge_pair(a: &mut Op, ka: Key, b: &mut Op, kb: Key, links: &Links<'_>) -> Result<(), Error> {
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

/// R8: two schema changes of the same type must agree on every property they both name and, for
/// two type definitions, on the primary key.
fn schema_pair(a: &Instruction, b: &Instruction) -> Result<(), Error> {
    type Definition = (Name, Option<(Name, PropType)>, Vec<(Name, PropType)>);
    let props = |i: &Instruction| -> Option<Definition> {
        match i {
            Instruction::AddType(def) => Some((
                def.name.clone(),
                def.primary_key
                    .as_ref()
                    .and_then(|pk| def.properties.get(pk).map(|t| (pk.clone(), t.clone()))),
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
            ty: ta.to_string(),
            detail: "concurrent definitions with different primary keys".to_string(),
        });
    }
    for (n, t) in &pa {
        if let Some((_, u)) = pb.iter().find(|(m, _)| m == n) {
            if t != u {
                return Err(Error::SchemaMismatch {
                    ty: ta.to_string(),
                    detail: format!("property `{n}` is defined concurrently as {t} and as {u}"),
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
fn list_target(i: &Instruction) -> Option<(&Name, Option<crate::ids::OpId>)> {
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
    use crate::instruction::Kind as K;
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
