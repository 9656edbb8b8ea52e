//! Enforcement on the server: integrating a changeset instruction by instruction, each checked
//! against the permission state left by everything before it, and the correction that undoes
//! the refused instructions on the client that wrote them.
//!
//! A refused instruction is not integrated: it leaves the changeset, except that a refused
//! list insert or move stays as a lost one (its position node is registered and nothing is
//! visible), because the writer's later instructions may be placed against that node. The
//! correction is an ordinary changeset made from the server's state after the changeset: for
//! each refused instruction it puts back what the server has (values with default writes,
//! which lose to anything the writer did concurrently; an object the server still has; a list
//! element as the server has it) or removes what the server does not have.

use super::cache::Cache;
use super::check::Checker;
use crate::model::{
    Changeset, Error, Fate, Instruction, Name, ObjRef, Op, OpId, Place, PropRef, Side, Value,
};
use crate::replica::Replica;
use crate::store::Store;
use hashbrown::HashSet;

/// Applies `cs` to `replica` as written by `user`, atomically: allowed instructions apply, the
/// refused ones leave `cs` (see the module documentation). Returns the refused instructions,
/// in order. An allowed instruction that fails to apply is refused too (it depends on a
/// refused one, such as a write to an object whose creation was refused), except a schema
/// change, whose failure is the changeset's error.
pub(crate) fn apply_checked<S: Store>(
    replica: &mut Replica<S>,
    cache: &mut Cache,
    cs: &mut Changeset,
    user: Option<&str>,
) -> Result<Refusals, Error> {
    let mut checker = Checker::new(user);
    let mut refused = Vec::new();
    let mut inserted = hashbrown::HashMap::new();
    let mut deleted = hashbrown::HashMap::new();
    let mut kept = Vec::with_capacity(cs.ops.len());
    replica.begin();
    for (index, mut op) in std::mem::take(&mut cs.ops).into_iter().enumerate() {
        if op.fate == Fate::Void {
            kept.push(op);
            continue;
        }
        let up = cache.privileges(replica.store(), user);
        if let Instruction::Clear { ty, objects } = &mut op.instr {
            objects.retain(|key| {
                let obj = ObjRef::new(ty, key.clone());
                let allowed = checker.may_delete(&up, replica.store(), &obj);
                if !allowed {
                    refused.push(Instruction::Delete { obj });
                }
                allowed
            });
        } else if !checker.allows_as(&up, replica.store(), &op.instr) {
            refused.push(op.instr.clone());
            if matches!(
                op.instr,
                Instruction::ListInsert { .. } | Instruction::ListMove { .. }
            ) {
                op.fate = Fate::Dropped;
                if try_apply(replica, &op, cs.timestamp).is_ok() {
                    kept.push(op);
                }
            }
            continue;
        }
        match try_apply(replica, &op, cs.timestamp) {
            Ok(()) => {
                cache.note(&op.instr);
                match &op.instr {
                    Instruction::ListInsert { elem, .. } => {
                        inserted.insert(*elem, refused.len());
                    }
                    Instruction::Delete { obj } => {
                        deleted.insert(obj.clone(), refused.len());
                    }
                    Instruction::Clear { ty, objects } => {
                        for key in objects {
                            deleted.insert(ObjRef::new(ty, key.clone()), refused.len());
                        }
                    }
                    _ => {}
                }
                kept.push(op)
            }
            Err(source) if is_schema(&op.instr) => {
                replica.rollback();
                cache.clear();
                return Err(Error::InInstruction {
                    index,
                    source: Box::new(source),
                });
            }
            Err(_) => refused.push(op.instr),
        }
    }
    replica.commit();
    cs.ops = kept;
    Ok(Refusals {
        refused,
        inserted,
        deleted,
    })
}

/// What [`apply_checked`] refused, in order, and when (after how many refusals) each list
/// element the changeset inserted was integrated: what its writer did after deleting an object
/// is on its device already.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    pub(crate) refused: Vec<Instruction>,
    inserted: hashbrown::HashMap<OpId, usize>,
    /// The objects the changeset deleted, each with the number of refusals before its
    /// (last) delete.
    deleted: hashbrown::HashMap<ObjRef, usize>,
}

/// Applies one op as a nested unit (if it fails, nothing changed).
fn try_apply<S: Store>(replica: &mut Replica<S>, op: &Op, ts: u64) -> Result<(), Error> {
    replica.begin();
    let result = replica.apply_op(op, ts);
    match result {
        Ok(()) => replica.commit(),
        Err(_) => replica.rollback(),
    }
    result
}

fn is_schema(instr: &Instruction) -> bool {
    matches!(
        instr,
        Instruction::AddType(_) | Instruction::AddProperties { .. }
    )
}

/// The correction of a changeset whose `refused` instructions the server did not integrate,
/// made from the server's state `replica` after integrating the rest (see the module
/// documentation), or `None` if nothing needs undoing on the writer.
pub(crate) fn correction<S: Store>(
    replica: &Replica<S>,
    corrected: &Changeset,
    refusals: &Refusals,
) -> Option<Changeset> {
    let refused = &refusals.refused;
    let mut undo = Undo {
        replica,
        ops: Vec::new(),
        whole: HashSet::new(),
        restored: Vec::new(),
        elems: HashSet::new(),
    };
    // Whole objects first: an object the writer deleted comes back before its lists are
    // touched, and one the server does not have goes before anything else is said about it.
    let whole =
        |i: &&Instruction| matches!(i, Instruction::Insert { .. } | Instruction::Delete { .. });
    for instr in refused.iter().filter(whole) {
        undo.undo(instr);
    }
    // What the writer did to an object before deleting it went with the object; what it did
    // after, it has.
    let mut last_delete: hashbrown::HashMap<&ObjRef, usize> =
        (refusals.deleted.iter()).map(|(o, t)| (o, *t)).collect();
    for (i, instr) in refused.iter().enumerate() {
        if let Instruction::Delete { obj } = instr {
            let t = last_delete.entry(obj).or_insert(i);
            *t = (*t).max(i);
        }
    }
    // Objects that come back may link to each other: all exist before any is filled.
    let restored = undo.restored.clone();
    for obj in &restored {
        let deleted = last_delete.get(obj).copied().unwrap_or(0);
        let has = |e: &OpId| refusals.inserted.get(e).is_some_and(|t| *t > deleted);
        undo.fill_object(obj, has);
    }
    for obj in &restored {
        undo.restore_links_to(obj);
    }
    for (i, instr) in refused.iter().enumerate().filter(|(_, i)| !whole(i)) {
        let deleted_later = instr.object().and_then(|o| last_delete.get(o));
        if deleted_later.map_or(true, |d| *d <= i) {
            undo.undo(instr);
        }
    }
    if undo.ops.is_empty() {
        return None;
    }
    Some(Changeset {
        origin: crate::model::PeerId(0),
        ops: undo.ops,
        ..corrected.clone()
    })
}

/// The undo instructions built so far, and what they deleted or restored.
struct Undo<'r, S: Store> {
    replica: &'r Replica<S>,
    ops: Vec<Op>,
    /// Objects the correction deletes: nothing more is said about them.
    whole: HashSet<ObjRef>,
    /// Objects brought back, to be filled once all of them exist.
    restored: Vec<ObjRef>,
    /// List elements already restored.
    elems: HashSet<OpId>,
}

impl<S: Store> Undo<'_, S> {
    fn store(&self) -> &S {
        self.replica.store()
    }

    fn exists(&self, obj: &ObjRef) -> bool {
        self.store().exists(&obj.ty, &obj.key).unwrap_or(false)
    }

    fn push(&mut self, instr: Instruction) {
        self.ops.push(Op::live(instr));
    }

    fn undo(&mut self, instr: &Instruction) {
        let Some(obj) = instr.object() else {
            // A schema change cannot be taken back; what the writer put into it is.
            return;
        };
        if self.whole.contains(obj) {
            return;
        }
        if !self.exists(obj) {
            self.whole.insert(obj.clone());
            self.push(Instruction::Delete { obj: obj.clone() });
            return;
        }
        match instr {
            Instruction::Insert { .. } => {}
            Instruction::Delete { obj } => self.restore_object(obj),
            Instruction::Set { prop, .. } | Instruction::AddInt { prop, .. } => {
                self.restore_field(obj, prop)
            }
            Instruction::ListInsert { prop, elem, .. }
            | Instruction::ListSet { prop, elem, .. }
            | Instruction::ListErase { prop, elem, .. } => {
                self.restore_elem(&obj.prop(prop), *elem)
            }
            Instruction::ListMove { prop, elem, .. } => {
                self.restore_position(&obj.prop(prop), *elem)
            }
            Instruction::ListClear { prop, .. } => {
                let list = obj.prop(prop);
                let visible: Vec<OpId> = (self.replica.sequence(obj, prop).into_iter())
                    .flat_map(|s| s.visible())
                    .collect();
                for elem in visible {
                    self.restore_elem(&list, elem);
                }
            }
            Instruction::AddType(_)
            | Instruction::AddProperties { .. }
            | Instruction::Clear { .. } => {}
        }
    }

    /// A default write of the server's value of a field.
    fn restore_field(&mut self, obj: &ObjRef, prop: &Name) {
        if let Ok(value) = self.store().get(&obj.ty, &obj.key, prop) {
            self.push(Instruction::Set {
                obj: obj.clone(),
                prop: prop.clone(),
                value,
                default: true,
            });
        }
    }

    /// A list element as the server has it: its value if it is visible, erased if it is or
    /// if the server does not have it. Each element is restored once, to its final state.
    fn restore_elem(&mut self, list: &PropRef, elem: OpId) {
        if !self.elems.insert(elem) {
            return;
        }
        let (obj, prop) = (list.obj.clone(), list.prop.clone());
        let seq = self.replica.sequence(&list.obj, &list.prop);
        let state = seq.and_then(|s| s.state(elem));
        let index = seq.and_then(|s| s.index_of(elem));
        let values = self
            .store()
            .list(&obj.ty, &obj.key, &prop)
            .unwrap_or_default();
        match (state, index.and_then(|i| Some((i, values.get(i)?.clone())))) {
            (Some(crate::ElemState::Visible), Some((index, value))) => {
                self.push(Instruction::ListSet {
                    obj,
                    prop,
                    index: index as u32,
                    value,
                    elem,
                })
            }
            // Hidden on the server (a link to a deleted object): the writer's element is a
            // link to an object it does not have either, so it is hidden there too.
            (Some(crate::ElemState::Hidden), _) => {}
            _ => self.push(Instruction::ListErase {
                obj,
                prop,
                index: 0,
                elem,
            }),
        }
    }

    /// A list element back at the server's position: its current node re-selected.
    fn restore_position(&mut self, list: &PropRef, elem: OpId) {
        let Some(seq) = self.replica.sequence(&list.obj, &list.prop) else {
            return;
        };
        let (Some(node), index) = (seq.current_node(elem), seq.index_of(elem).unwrap_or(0)) else {
            return;
        };
        let place = seq.place_of(node).unwrap_or_else(Place::root);
        self.push(Instruction::ListMove {
            obj: list.obj.clone(),
            prop: list.prop.clone(),
            from: index as u32,
            to: index as u32,
            elem,
            node,
            place,
        });
    }

    /// An object the writer deleted, back (filled later by [`Undo::fill_object`]). Its later
    /// undos still apply: the writer may have made it again after deleting it.
    fn restore_object(&mut self, obj: &ObjRef) {
        if self.restored.contains(obj) {
            return;
        }
        self.restored.push(obj.clone());
        self.push(Instruction::Insert { obj: obj.clone() });
    }

    /// A restored object's server values and lists (their visible elements, under the
    /// server's ids).
    fn fill_object(&mut self, obj: &ObjRef, has: impl Fn(&OpId) -> bool) {
        let Ok(def) = self.store().schema().get(&obj.ty) else {
            return;
        };
        let props: Vec<(Name, bool)> = (def.properties.iter())
            .filter(|(n, _)| def.primary_key.as_ref() != Some(n))
            .map(|(n, pt)| (n.clone(), pt.list))
            .collect();
        for (prop, list) in props {
            match list {
                true => self.refill(obj, &prop, &has),
                false => self.restore_field(obj, &prop),
            }
        }
    }

    /// Inserts the server's visible elements of a list the writer no longer has, in order.
    fn refill(&mut self, obj: &ObjRef, prop: &Name, has: &impl Fn(&OpId) -> bool) {
        let Some(seq) = self.replica.sequence(obj, prop) else {
            return;
        };
        let elems: Vec<(OpId, Option<OpId>)> =
            seq.visible().map(|e| (e, seq.current_node(e))).collect();
        let values = (self.store().list(&obj.ty, &obj.key, prop)).unwrap_or_default();
        // Each missing element goes right after the one before it in the server's order
        // (its first child there, as the correction's key is the smallest), whether the
        // writer has that one or gets it here: the writer's list reads as the server's.
        let mut place = Place::root();
        for (index, ((elem, node), value)) in elems.into_iter().zip(values).enumerate() {
            if !has(&elem) {
                self.push(Instruction::ListInsert {
                    obj: obj.clone(),
                    prop: prop.clone(),
                    index: index as u32,
                    value,
                    elem,
                    place,
                });
            }
            place = Place {
                parent: Some(if has(&elem) {
                    node.unwrap_or(elem)
                } else {
                    elem
                }),
                side: Side::Right,
            };
        }
    }

    /// The links to `obj` the writer's delete took away: link fields and list elements.
    fn restore_links_to(&mut self, obj: &ObjRef) {
        let link = Value::Link(obj.key.clone());
        let schema = self.store().schema().clone();
        for def in schema.types() {
            let props = (def.properties.iter())
                .filter(|(_, pt)| pt.link_target().is_some_and(|t| *t == obj.ty));
            for (prop, pt) in props {
                for key in self.store().objects(&def.name).unwrap_or_default() {
                    let from = ObjRef::new(&def.name, key);
                    if self.whole.contains(&from) {
                        continue;
                    }
                    if !pt.list {
                        if self.store().get(&from.ty, &from.key, prop).ok() == Some(link.clone()) {
                            self.restore_field(&from, prop);
                        }
                        continue;
                    }
                    let values = (self.store().list(&from.ty, &from.key, prop)).unwrap_or_default();
                    let elems: Vec<OpId> = (self.replica.sequence(&from, prop).into_iter())
                        .flat_map(|s| s.visible())
                        .collect();
                    let list = from.prop(prop);
                    for (elem, _) in elems.into_iter().zip(values).filter(|(_, v)| *v == link) {
                        self.restore_elem(&list, elem);
                    }
                }
            }
        }
    }
}
