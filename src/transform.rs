//! Transformation: merging two concurrent sequences of changesets so that applying either one
//! after the other gives the same state.
//!
//! `merge(a, b)` takes two sequences made concurrently on the same base state and rewrites both
//! in place: afterwards `base + a + b'` equals `base + b + a'`. It is the classic OT grid: every
//! instruction of `a`, in order, meets every instruction of `b`, in order, and each meeting is
//! decided by `merge_pair`, the single place that holds the rule for every pair of instruction
//! kinds (spec/semantics.md has the table with the reasons).
//!
//! Only instructions that can interact ever meet. Each instruction marks the places it works in
//! (object, property, list element, link target, type) and covers the places whose every
//! instruction it must meet (`Role`); one side is indexed by both, and the other side's
//! instructions look up only what they cover or mark. Instructions on different objects, or
//! different fields, or inserts into one list, are never compared, and touches of objects only
//! one side can name (engine ids the other side's spans rule out) are not even indexed, so
//! merging disjoint work costs about a pass over each side. Because a grid cell depends only on
//! the cell to its left and the cell above, visiting only the interacting cells in row order
//! gives exactly the result of the full grid.
//!
//! Transformation never changes an instruction's kind: it adjusts values (a set absorbs a later
//! concurrent add_int), shrinks a clear's object list, and lowers fates (see [`Fate`]). List
//! positions need no rewriting at all: list instructions name elements by id, and each replica's
//! [`crate::list::Sequence`] turns ids into indices when it applies them.

use crate::changeset::Changeset;
use crate::error::Error;
use crate::ids::{Key, OpId, PeerId};
use crate::instruction::{Fate, Instruction, Op};
use crate::schema::{Name, PropType, Schema};
use crate::value::{ObjKey, Value};
use foldhash::fast::FixedState;
use hashbrown::{HashMap, HashTable};
use smallvec::SmallVec;
use std::hash::BuildHasher;

/// A place in the state that instructions work on, for indexing. Places nest: an object holds
/// its properties, a list property holds its elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Touch<'a> {
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
enum Role {
    Mark,
    Cover,
    Both,
}

impl Role {
    fn marks(self) -> bool {
        self != Role::Cover
    }

    fn covers(self) -> bool {
        self != Role::Mark
    }
}

/// A touch reduced to 64 bits, the only form the indices keep. Indices never compare touches
/// themselves: instructions whose touches collide meet in [`merge_pair`], which decides from the
/// instructions and leaves a pair that does not interact unchanged, so a collision costs one
/// meeting and never changes a result. The hash is fixed (no per-process seed) so merging is
/// deterministic down to the order of its work.
type TouchHash = u64;

impl<'a> Touch<'a> {
    /// The object key the touch names, if it names one: touches of different keys never meet.
    fn key(self) -> Option<&'a ObjKey> {
        match self {
            Touch::Obj(_, k) | Touch::Prop(_, k, _) | Touch::LinkedTo(k) => Some(k),
            Touch::Elem(_) | Touch::Schema(_) => None,
        }
    }

    fn digest(self) -> TouchHash {
        FixedState::with_seed(0x6f62_6a73_796e_6321).hash_one(self)
    }
}

type Pos = (u32, u32);

/// Resolves the target type of a link property, from the replica's schema and the schema
/// changes carried by the changesets being merged.
struct Links<'s> {
    schema: &'s Schema,
    extra: LinkDefinitions,
}

/// The link properties a schema instruction defines: (type, property) -> target type.
type LinkDefinitions = HashMap<(Name, Name), Name>;

/// Records the link properties `instr` defines, if it is a schema instruction.
fn define_links(instr: &Instruction, defs: &mut LinkDefinitions) {
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

/// Calls `f` with everything an instruction touches and how (see [`Role`]).
fn touches<'a>(instr: &'a Instruction, mut f: impl FnMut(Touch<'a>, Role)) {
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
        I::Set { obj, prop, .. } | I::AddInt { obj, prop, .. } | I::ListClear { obj, prop } => {
            f(Touch::Obj(&obj.ty, &obj.key), Mark);
            f(Touch::Prop(&obj.ty, &obj.key, prop), Both);
        }
        I::ListInsert { obj, prop, .. } => {
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
fn touch_hashes(cs: &Changeset, mut f: impl FnMut(TouchHash, Role)) {
    for op in cs.ops.iter().filter(|op| op.fate != Fate::Void) {
        touches(&op.instr, |t, role| f(t.digest(), role));
    }
}

/// What some changesets touch, to find the changesets that interact with them without
/// comparing instructions pairwise.
pub struct Footprint {
    /// The hashes of the places they mark, sorted, without repeats.
    marks: Vec<TouchHash>,
    /// The hashes of the places they cover, sorted, without repeats.
    covers: Vec<TouchHash>,
}

impl Footprint {
    /// The footprint of a sequence of changesets.
    pub fn of(side: &[Changeset]) -> Footprint {
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
    pub fn meets(&self, cs: &Changeset) -> bool {
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
pub struct HistoryIndex {
    by_mark: HashMap<TouchHash, Runs>,
    by_cover: HashMap<TouchHash, Runs>,
}

impl HistoryIndex {
    /// Records history entry `version` (versions are added in ascending order).
    pub fn add(&mut self, version: u64, cs: &Changeset) {
        let record = |runs: &mut Runs| match runs.last_mut() {
            Some((origin, versions)) if *origin == cs.origin => {
                if versions.last() != Some(&version) {
                    versions.push(version);
                }
            }
            _ => runs.push((cs.origin, SmallVec::from_elem(version, 1))),
        };
        touch_hashes(cs, |h, role| {
            if role.marks() {
                record(self.by_mark.entry(h).or_default());
            }
            if role.covers() {
                record(self.by_cover.entry(h).or_default());
            }
        });
    }

    /// The versions after `after`, ascending and without repeats, of the entries from origins
    /// other than `peer` holding an instruction that may meet one of `footprint` (a superset of
    /// those that meet it in their current form, since transformation only ever removes
    /// touches).
    pub fn candidates(&self, footprint: &Footprint, after: u64, peer: PeerId) -> Vec<u64> {
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

/// The engine ids a side touches: for each minting peer, the span from the smallest to the
/// largest sequence number. Ids minted by different peers never collide and a peer mints in
/// ascending order, so when both sides mostly work on objects they created themselves, their
/// spans do not overlap and none of those touches is indexed or looked up. Other keys (primary
/// keys) are always indexed.
struct Spans(Vec<(PeerId, u64, u64)>);

impl Spans {
    /// The spans of a side, from the one pass over it that a merge makes before indexing; the
    /// pass also records the link properties the side's schema instructions define.
    fn survey(side: &[Changeset], links: &mut LinkDefinitions) -> Spans {
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

    /// Whether a touch of the other side can meet one of this side's.
    fn may_meet(&self, t: Touch<'_>) -> bool {
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
struct Indexed {
    marks: Index,
    covers: Index,
}

impl Indexed {
    /// Indexes the touches of `side` that can meet a touch of the side with spans `other`.
    fn of(side: &[Changeset], other: &Spans) -> Indexed {
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

    fn is_empty(&self) -> bool {
        self.marks.nodes.is_empty() && self.covers.nodes.is_empty()
    }

    /// Appends the positions of the instructions that meet a touch `h` held with `role`.
    fn meeting(&self, h: TouchHash, role: Role, out: &mut SmallVec<[Pos; 8]>) {
        if role.covers() {
            self.marks.find(h, out);
        }
        if role.marks() {
            self.covers.find(h, out);
        }
    }
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
    let mut extra = LinkDefinitions::new();
    let spans = [Spans::survey(a, &mut extra), Spans::survey(b, &mut extra)];
    let links = Links { schema, extra };
    // Either side may be the one indexed: visiting cells row by row or column by column gives
    // the same grid. Indexing costs more than looking up, so index the smaller side.
    if count(a) <= count(b) {
        walk((b, &spans[1]), (a, &spans[0]), &links)
    } else {
        walk((a, &spans[0]), (b, &spans[1]), &links)
    }
}

/// Visits the grid row by row: each instruction of `rows`, in order, meets the instructions of
/// `cols` it interacts with, in order.
fn walk(
    (rows, row_spans): (&mut [Changeset], &Spans),
    (cols, col_spans): (&mut [Changeset], &Spans),
    links: &Links<'_>,
) -> Result<(), Error> {
    let idx = Indexed::of(cols, row_spans);
    if idx.is_empty() {
        return Ok(());
    }
    let mut cands: SmallVec<[Pos; 8]> = SmallVec::new();
    for cs in rows.iter_mut() {
        let key_r = cs.key();
        for x in cs.ops.iter_mut() {
            if x.fate == Fate::Void {
                continue;
            }
            cands.clear();
            touches(&x.instr, |t, role| {
                if col_spans.may_meet(t) {
                    idx.meeting(t.digest(), role, &mut cands)
                }
            });
            if cands.is_empty() {
                continue;
            }
            cands.sort_unstable();
            cands.dedup();
            for &(c, o) in cands.iter() {
                let other = &mut cols[c as usize];
                let key_c = other.key();
                merge_pair(x, key_r, &mut other.ops[o as usize], key_c, links)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instruction::ObjRef;
    use crate::list::{Place, Side};

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
            place: Place {
                parent: None,
                side: Side::Right,
            },
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
        assert!(spans.may_meet(Touch::Elem(elem(1))));
    }
}
