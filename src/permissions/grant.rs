//! Writing permission data as ordinary instructions: granting a role privileges at a level,
//! and adding or removing a role's members. What a transaction writes here syncs and merges
//! like any other write; the server checks it like any other write.

use super::effective::flags;
use super::system::{
    acl_property, declarations, private_role, realm_key, system_types, CLASS, EVERYONE,
    MEMBERS_PROP, PERMISSION, PERMISSIONS_PROP, REALM, ROLE, ROLE_PROP, USER,
};
use super::Privileges;
use crate::model::{Error, ObjKey, ObjRef, Value};
use crate::store::Store;
use crate::write::Transaction;

/// A permission level: where a permission list is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// The realm (`__Realm` object 0).
    Realm,
    /// A class (its `__Class` object, keyed by the class name).
    Class(String),
    /// One object (its ACL property).
    Object(ObjRef),
}

impl Level {
    /// The object holding the level's permission list, and the list's property.
    fn list<S: Store>(&self, tx: &Transaction<'_, S>) -> Result<(ObjRef, String), Error> {
        Ok(match self {
            Level::Realm => (ObjRef::new(REALM, realm_key()), PERMISSIONS_PROP.into()),
            Level::Class(ty) => (ObjRef::new(CLASS, ty.as_str()), PERMISSIONS_PROP.into()),
            Level::Object(obj) => {
                let acl = acl_property(tx.store().schema(), &obj.ty).ok_or_else(|| {
                    Error::UnknownProperty {
                        ty: obj.ty.clone(),
                        prop: "list<link<__Permission>>".into(),
                    }
                })?;
                (obj.clone(), acl.to_string())
            }
        })
    }

    /// The key of this level's permission object for `role`: one per level and role, so that
    /// two devices granting the same role concurrently write to the same object.
    fn permission_key(&self, role: &str) -> String {
        match self {
            Level::Realm => format!("realm:{role}"),
            Level::Class(ty) => format!("class:{ty}:{role}"),
            Level::Object(obj) => format!("object:{}:{}:{role}", obj.ty, obj.key.render()),
        }
    }
}

/// Adds the permission types to the transaction's schema if they are missing.
pub fn ensure_system_types<S: Store>(tx: &mut Transaction<'_, S>) -> Result<(), Error> {
    if system_types()
        .iter()
        .all(|d| tx.store().schema().get(&d.name).ok() == Some(d))
    {
        return Ok(());
    }
    for def in declarations() {
        tx.add_system_type(def)?;
    }
    Ok(())
}

/// Grants `role` at `level` the privileges `change` makes of its current ones: a role with no
/// permission in the level's list starts from none, and a realm or class without permission
/// data starts with `everyone` holding everything (the default). Only the flags that change
/// are written. The role and the level's object are created if missing (an object level
/// needs the object and its type's ACL property).
pub fn grant<S: Store>(
    tx: &mut Transaction<'_, S>,
    role: &str,
    level: &Level,
    change: impl FnOnce(Privileges) -> Privileges,
) -> Result<(), Error> {
    ensure_system_types(tx)?;
    ensure_role(tx, role)?;
    let (holder, prop) = level.list(tx)?;
    if !tx.store().exists(&holder.ty, &holder.key)? {
        if matches!(level, Level::Object(_)) {
            return Err(Error::MissingObject { obj: holder });
        }
        // The default made explicit: everyone holds everything. The permission comes first,
        // so that it is made while the level has no permission data yet.
        let everyone = make_permission(tx, level, EVERYONE, Privileges::ALL)?;
        tx.insert(&holder.ty, holder.key.clone())?;
        append(tx, level, everyone)?;
    }
    let list = tx.store().list(&holder.ty, &holder.key, &prop)?;
    let mine = (list.iter().filter_map(Value::as_link)).find(|key| {
        let r = tx.store().get(PERMISSION, key, ROLE_PROP);
        r.ok().and_then(|r| r.as_link().cloned()) == Some(ObjKey::String(role.into()))
    });
    match mine.cloned() {
        Some(key) => {
            let now = flags(tx.store(), &key);
            set_flags(tx, &key, now, change(now))
        }
        None => {
            let key = make_permission(tx, level, role, change(Privileges::NONE))?;
            append(tx, level, key)
        }
    }
}

/// Creates (or reuses) the level's permission object for `role` with `privileges`.
fn make_permission<S: Store>(
    tx: &mut Transaction<'_, S>,
    level: &Level,
    role: &str,
    privileges: Privileges,
) -> Result<ObjKey, Error> {
    ensure_role(tx, role)?;
    let key = ObjKey::String(level.permission_key(role).into());
    tx.insert(PERMISSION, key.clone())?;
    tx.set(PERMISSION, key.clone(), ROLE_PROP, role)?;
    let now = flags(tx.store(), &key);
    set_flags(tx, &key, now, privileges)?;
    Ok(key)
}

/// Appends permission `key` to the level's list.
fn append<S: Store>(tx: &mut Transaction<'_, S>, level: &Level, key: ObjKey) -> Result<(), Error> {
    let (holder, prop) = level.list(tx)?;
    let len = tx.store().list_len(&holder.ty, &holder.key, &prop)?;
    tx.list_insert(&holder.ty, holder.key, &prop, len, Value::Link(key))
}

/// Writes the flags of permission `key` that differ between `now` and `new`.
fn set_flags<S: Store>(
    tx: &mut Transaction<'_, S>,
    key: &ObjKey,
    now: Privileges,
    new: Privileges,
) -> Result<(), Error> {
    for (flag, name) in Privileges::FLAGS {
        if now.contains(flag) != new.contains(flag) {
            tx.set(PERMISSION, key.clone(), name, new.contains(flag))?;
        }
    }
    Ok(())
}

/// Creates the role if it is missing.
fn ensure_role<S: Store>(tx: &mut Transaction<'_, S>, role: &str) -> Result<(), Error> {
    ensure_system_types(tx)?;
    if !tx.store().exists(ROLE, &ObjKey::String(role.into()))? {
        tx.insert(ROLE, role)?;
    }
    Ok(())
}

/// Creates the user's `__User` object, with its private role, if it is missing.
pub fn ensure_user<S: Store>(tx: &mut Transaction<'_, S>, user: &str) -> Result<(), Error> {
    ensure_system_types(tx)?;
    if tx.store().exists(USER, &ObjKey::String(user.into()))? {
        return Ok(());
    }
    let private = private_role(user);
    ensure_role(tx, &private)?;
    tx.insert(USER, user)?;
    tx.set(USER, user, ROLE_PROP, private.as_str())?;
    add_member(tx, &private, user)
}

/// Adds `user` to `role`'s members (creating the role and the user if missing).
pub fn add_member<S: Store>(
    tx: &mut Transaction<'_, S>,
    role: &str,
    user: &str,
) -> Result<(), Error> {
    ensure_role(tx, role)?;
    ensure_user(tx, user)?;
    let members = tx
        .store()
        .list(ROLE, &ObjKey::String(role.into()), MEMBERS_PROP)?;
    let me = Value::Link(ObjKey::String(user.into()));
    if !members.contains(&me) {
        tx.list_insert(ROLE, role, MEMBERS_PROP, members.len(), me)?;
    }
    Ok(())
}

/// Removes every occurrence of `user` from `role`'s members (creating the role if missing).
pub fn remove_member<S: Store>(
    tx: &mut Transaction<'_, S>,
    role: &str,
    user: &str,
) -> Result<(), Error> {
    ensure_role(tx, role)?;
    let members = tx
        .store()
        .list(ROLE, &ObjKey::String(role.into()), MEMBERS_PROP)?;
    let me = Value::Link(ObjKey::String(user.into()));
    for (i, _) in members.iter().enumerate().rev().filter(|(_, m)| **m == me) {
        tx.list_erase(ROLE, role, MEMBERS_PROP, i)?;
    }
    Ok(())
}
