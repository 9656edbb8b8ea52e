//! The server's check of one instruction against the permission state it meets: what each
//! instruction kind needs (spec/permissions.md, "Per instruction"), the exceptions for objects
//! created in the same changeset, and the cap on granting.

use super::effective::{flags, UserPrivileges};
use super::system::{
    acl_property, is_system_type, realm_key, CLASS, PERMISSION, PERMISSIONS_PROP, REALM, ROLE_PROP,
};
use super::Privileges;
use crate::model::{is_reserved, Instruction, ObjKey, ObjRef, Value};
use crate::store::Store;
use hashbrown::HashSet;

/// Checks the instructions of one changeset of one writer, in order. The caller applies each
/// allowed instruction before asking about the next, so every check sees the permission state
/// left by everything before it. This is what the server does for every changeset of a user.
///
/// ```
/// use objsync::permissions::{self, Checker, Level, Privileges};
/// use objsync::{Instruction, ObjRef, PeerId, Replica};
///
/// let mut replica = Replica::new(PeerId(0));
/// let mut tx = replica.transaction(1);
/// let no_create = |p: Privileges| p & !Privileges::CREATE;
/// permissions::grant(&mut tx, permissions::EVERYONE, &Level::Realm, no_create)?;
/// tx.commit();
/// let create = Instruction::Insert { obj: ObjRef::new("__Role", "admins") };
/// assert!(!Checker::new(Some("eve")).allows(replica.store(), &create));
/// # Ok::<(), objsync::Error>(())
/// ```
#[derive(Debug)]
pub struct Checker<'u> {
    user: Option<&'u str>,
    /// Objects this changeset created: its writer may fill them (and their ACL) with canCreate.
    created: HashSet<ObjRef>,
}

/// Where a permission list that holds a `__Permission` object is.
enum Holder {
    Realm,
    Class(String),
    Object(ObjRef),
}

impl<'u> Checker<'u> {
    /// A checker for the changesets of `user` (`None`: an unknown user, in `everyone` only).
    pub fn new(user: Option<&'u str>) -> Self {
        Checker {
            user,
            created: HashSet::new(),
        }
    }

    /// Whether the writer may make `instr` on `store` (the server's state before it). An
    /// allowed creation counts as made: apply the instruction before checking the next.
    pub fn allows<S: Store>(&mut self, store: &S, instr: &Instruction) -> bool {
        let up = UserPrivileges::new(store, self.user);
        self.allows_as(&up, store, instr)
    }

    /// [`Checker::allows`], with the writer's privileges in `store` already read.
    pub(crate) fn allows_as<S: Store>(
        &mut self,
        up: &UserPrivileges<'_, S>,
        store: &S,
        instr: &Instruction,
    ) -> bool {
        let schema = store.schema();
        match instr {
            Instruction::AddType(def) => match schema.plan_add_type(def) {
                Ok(None) | Err(_) => true,
                Ok(Some(_)) if is_reserved(&def.name) => is_system_type(def),
                Ok(Some(_)) if schema.contains(&def.name) => up
                    .class(&def.name)
                    .contains(Privileges::READ | Privileges::MODIFY_SCHEMA),
                Ok(Some(_)) => up
                    .realm()
                    .contains(Privileges::READ | Privileges::MODIFY_SCHEMA),
            },
            Instruction::AddProperties { ty, properties } => {
                match schema.plan_add_properties(ty, properties) {
                    Ok(None) | Err(_) => true,
                    Ok(Some(_)) if is_reserved(ty) => false,
                    Ok(Some(_)) => up
                        .class(ty)
                        .contains(Privileges::READ | Privileges::MODIFY_SCHEMA),
                }
            }
            Instruction::Insert { obj } => {
                if !schema.contains(&obj.ty) {
                    return false;
                }
                if store.exists(&obj.ty, &obj.key).unwrap_or(false) {
                    return true;
                }
                let allowed = match &*obj.ty {
                    // A permission in no list grants nothing: making one needs no privilege.
                    PERMISSION => true,
                    REALM => up.realm().contains(SET),
                    CLASS => class_name(&obj.key).is_some_and(|c| up.class(c).contains(SET)),
                    ty => up.class(ty).contains(Privileges::READ | Privileges::CREATE),
                };
                if allowed {
                    self.created.insert(obj.clone());
                }
                allowed
            }
            Instruction::Delete { obj } => self.may_delete(up, store, obj),
            Instruction::Clear { ty, objects } => (objects.iter())
                .all(|key| self.may_delete(up, store, &ObjRef::new(ty, key.clone()))),
            _ => self.may_change(up, store, instr),
        }
    }

    /// Whether the writer may delete `obj` (which may be gone already: nothing to check).
    pub fn may_delete<S: Store>(
        &self,
        up: &UserPrivileges<'_, S>,
        store: &S,
        obj: &ObjRef,
    ) -> bool {
        if !store.exists(&obj.ty, &obj.key).unwrap_or(false) {
            return true;
        }
        match &*obj.ty {
            // The level would fall back to its default, everything for everyone.
            REALM | CLASS => false,
            PERMISSION => holders(store, &obj.key)
                .iter()
                .all(|h| level_privileges(up, h).contains(SET)),
            _ => up
                .object(obj)
                .contains(Privileges::READ | Privileges::DELETE),
        }
    }

    /// Whether the writer may make `instr`, which changes a property or a list of one object.
    fn may_change<S: Store>(
        &self,
        up: &UserPrivileges<'_, S>,
        store: &S,
        instr: &Instruction,
    ) -> bool {
        let (Some(obj), Some(prop)) = (instr.object(), instr.property().map(|p| p.as_ref())) else {
            return false;
        };
        if !store.exists(&obj.ty, &obj.key).unwrap_or(false) {
            return false;
        }
        let created = self.created.contains(obj);
        let granted = granted_permission(store, instr);
        match &*obj.ty {
            // A level object made in this changeset was made with the defaults' privileges
            // (everything); its list is filled under them.
            REALM | CLASS if prop == PERMISSIONS_PROP && created => true,
            REALM if prop == PERMISSIONS_PROP => {
                capped(up.realm(), SET, granted) && obj.key == realm_key()
            }
            CLASS if prop == PERMISSIONS_PROP => {
                let level = class_name(&obj.key).map_or(Privileges::NONE, |c| up.class(c));
                capped(level, SET, granted)
            }
            PERMISSION if !created => {
                let holders = holders(store, &obj.key);
                if holders.is_empty() {
                    return true;
                }
                let raised = raised_flags(store, &obj.key, prop, instr);
                holders
                    .iter()
                    .all(|h| capped(level_privileges(up, h), SET, raised))
            }
            ty if acl_property(store.schema(), ty).is_some_and(|a| **a == *prop) => match created {
                true => capped(up.class(ty), Privileges::NONE, granted),
                false => capped(up.object(obj), SET, granted),
            },
            _ if created => true,
            _ => up
                .object(obj)
                .contains(Privileges::READ | Privileges::UPDATE),
        }
    }
}

const SET: Privileges = Privileges::READ.union(Privileges::SET_PERMISSIONS);

/// Whether `level` holds `needed` and every privilege in `granted` (nobody grants more than
/// they have at the level).
fn capped(level: Privileges, needed: Privileges, granted: Privileges) -> bool {
    level.contains(needed) && level.contains(granted)
}

/// The class a `__Class` object's key names.
fn class_name(key: &ObjKey) -> Option<&str> {
    match key {
        ObjKey::String(s) => Some(s),
        _ => None,
    }
}

/// The flags of the permission an instruction puts into a permission list (a list insert or
/// set of a link to a `__Permission`).
fn granted_permission<S: Store>(store: &S, instr: &Instruction) -> Privileges {
    match instr {
        Instruction::ListInsert { value, .. } | Instruction::ListSet { value, .. } => value
            .as_link()
            .map_or(Privileges::NONE, |k| flags(store, k)),
        _ => Privileges::NONE,
    }
}

/// The flags a change of permission `key` may raise: the flag a set turns on, or every flag
/// of the permission when its role changes.
fn raised_flags<S: Store>(store: &S, key: &ObjKey, prop: &str, instr: &Instruction) -> Privileges {
    match (instr, Privileges::from_name(prop)) {
        (Instruction::Set { value, .. }, Some(flag)) if value.as_bool() == Some(true) => flag,
        (Instruction::Set { .. }, Some(_)) => Privileges::NONE,
        _ if prop == ROLE_PROP => flags(store, key),
        _ => Privileges::ALL,
    }
}

/// A user's privileges at the level a permission list belongs to.
fn level_privileges<S: Store>(up: &UserPrivileges<'_, S>, holder: &Holder) -> Privileges {
    match holder {
        Holder::Realm => up.realm(),
        Holder::Class(c) => up.class(c),
        Holder::Object(obj) => up.object(obj),
    }
}

/// Every permission list that holds permission `key`.
fn holders<S: Store>(store: &S, key: &ObjKey) -> Vec<Holder> {
    let link = Value::Link(key.clone());
    let holds = |ty: &str, k: &ObjKey, prop: &str| {
        (store.list(ty, k, prop).unwrap_or_default()).contains(&link)
    };
    let mut out = Vec::new();
    if holds(REALM, &realm_key(), PERMISSIONS_PROP) {
        out.push(Holder::Realm);
    }
    for k in store.objects(CLASS).unwrap_or_default() {
        if let (true, Some(c)) = (holds(CLASS, &k, PERMISSIONS_PROP), class_name(&k)) {
            out.push(Holder::Class(c.to_string()));
        }
    }
    for def in store.schema().types() {
        let Some(acl) = acl_property(store.schema(), &def.name) else {
            continue;
        };
        for k in store.objects(&def.name).unwrap_or_default() {
            if holds(&def.name, &k, acl) {
                out.push(Holder::Object(ObjRef::new(&def.name, k)));
            }
        }
    }
    out
}
