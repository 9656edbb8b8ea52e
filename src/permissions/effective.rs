//! A user's effective privileges, computed from a replica's permission data: the user's
//! roles, then the union over those roles at each level, then the conjunction down the levels
//! (realm, class, object).

use super::system::{
    acl_property, private_role, realm_key, CLASS, EVERYONE, MEMBERS_PROP, PERMISSION,
    PERMISSIONS_PROP, REALM, ROLE, ROLE_PROP,
};
use super::Privileges;
use crate::model::{ObjKey, ObjRef, Value};
use crate::store::Store;
use std::sync::Arc;

/// One user's privileges over one state, read offline from the synced permission data.
///
/// The user's roles are looked up once, when the value is made; make a new one after the
/// permission data changed.
///
/// ```
/// use objsync::permissions::{self, Privileges, UserPrivileges};
/// use objsync::{ObjRef, PeerId, Replica};
///
/// let mut replica = Replica::new(PeerId(1));
/// // A new realm grants everyone everything.
/// let alice = UserPrivileges::new(replica.store(), Some("alice"));
/// assert_eq!(alice.realm(), Privileges::ALL);
/// // Everyone may read, nobody may update.
/// let mut tx = replica.transaction(1);
/// let read_only = Privileges::ALL & !Privileges::UPDATE;
/// permissions::grant(&mut tx, permissions::EVERYONE, &permissions::Level::Realm, |_| read_only)?;
/// tx.commit();
/// let alice = UserPrivileges::new(replica.store(), Some("alice"));
/// assert!(!alice.realm().contains(Privileges::UPDATE));
/// assert!(alice.class("Note").contains(Privileges::READ));
/// # Ok::<(), objsync::Error>(())
/// ```
#[derive(Debug)]
pub struct UserPrivileges<'s, S: Store + ?Sized> {
    store: &'s S,
    roles: Arc<[String]>,
    realm: Privileges,
}

impl<'s, S: Store + ?Sized> UserPrivileges<'s, S> {
    /// The privileges of user `user` (`None`: a user the realm knows nothing of, who belongs
    /// to `everyone` only) in the state of `store`.
    pub fn new(store: &'s S, user: Option<&str>) -> Self {
        let mut p = UserPrivileges::from_parts(store, roles(store, user).into(), Privileges::ALL);
        p.realm = p.level(REALM, &realm_key()).unwrap_or(Privileges::ALL);
        p
    }

    /// The privileges of a user whose roles and realm-level privileges in `store` are known.
    pub(crate) fn from_parts(store: &'s S, roles: Arc<[String]>, realm: Privileges) -> Self {
        UserPrivileges {
            store,
            roles,
            realm,
        }
    }

    /// The user's roles, shared.
    pub(crate) fn shared_roles(&self) -> Arc<[String]> {
        self.roles.clone()
    }

    /// The names of the roles the user belongs to: `everyone`, its private role, and every
    /// `__Role` whose members list the user.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Realm-level privileges.
    pub fn realm(&self) -> Privileges {
        self.realm
    }

    /// Class-level privileges for type `ty` (the realm level narrowed by the class level).
    pub fn class(&self, ty: &str) -> Privileges {
        let key = ObjKey::String(ty.into());
        self.realm & self.level(CLASS, &key).unwrap_or(Privileges::ALL)
    }

    /// Object-level privileges for `obj` (the class level narrowed by the object's ACL, if
    /// its type has an ACL property). An object that does not exist has none.
    pub fn object(&self, obj: &ObjRef) -> Privileges {
        let class = self.class(&obj.ty);
        let schema = self.store.schema();
        let Some(acl) = acl_property(schema, &obj.ty) else {
            return class;
        };
        match self.store.list(&obj.ty, &obj.key, acl) {
            Ok(list) => class & self.granted(&list),
            Err(_) => Privileges::NONE,
        }
    }

    /// The privileges a permission list grants this user: the union of the flags of the
    /// permissions in it whose role is one of the user's.
    pub fn granted(&self, list: &[Value]) -> Privileges {
        let mut p = Privileges::NONE;
        for key in list.iter().filter_map(Value::as_link) {
            let role = self.store.get(PERMISSION, key, ROLE_PROP);
            let role = role.ok().and_then(|r| r.as_link().cloned());
            let ours = role.is_some_and(|r| match r {
                ObjKey::String(name) => self.roles.iter().any(|x| **x == *name),
                _ => false,
            });
            if ours {
                p |= flags(self.store, key);
            }
        }
        p
    }

    /// The privileges the permission list of `ty[key]` (a `__Realm` or `__Class` object)
    /// grants, or `None` if there is no such object (the level's default: everything).
    fn level(&self, ty: &str, key: &ObjKey) -> Option<Privileges> {
        let list = self.store.list(ty, key, PERMISSIONS_PROP).ok()?;
        Some(self.granted(&list))
    }
}

/// The flags one `__Permission` object grants (none if it does not exist).
pub fn flags<S: Store + ?Sized>(store: &S, permission: &ObjKey) -> Privileges {
    let mut p = Privileges::NONE;
    for (flag, name) in Privileges::FLAGS {
        let set = store.get(PERMISSION, permission, name);
        if set.ok().and_then(|v| v.as_bool()) == Some(true) {
            p |= flag;
        }
    }
    p
}

/// The roles of `user`: see [`UserPrivileges::roles`].
fn roles<S: Store + ?Sized>(store: &S, user: Option<&str>) -> Vec<String> {
    let mut roles = vec![EVERYONE.to_string()];
    let Some(user) = user else {
        return roles;
    };
    roles.push(private_role(user));
    let me = Value::Link(ObjKey::String(user.into()));
    for key in store.objects(ROLE).unwrap_or_default() {
        let members = store.list(ROLE, &key, MEMBERS_PROP).unwrap_or_default();
        if let (true, ObjKey::String(name)) = (members.contains(&me), &key) {
            if !roles.iter().any(|r| **r == **name) {
                roles.push(name.to_string());
            }
        }
    }
    roles
}

/// The objects `user` may read in `store`: those whose object-level privileges include
/// canRead, and every object reachable from them through links and lists of links (the
/// source documents' reachability rule). Without realm-level canRead, none.
pub fn readable_objects<S: Store + ?Sized>(
    store: &S,
    user: Option<&str>,
) -> hashbrown::HashSet<ObjRef> {
    let up = UserPrivileges::new(store, user);
    let mut readable = hashbrown::HashSet::new();
    if !up.realm().contains(Privileges::READ) {
        return readable;
    }
    let mut todo = Vec::new();
    for def in store.schema().types() {
        if !up.class(&def.name).contains(Privileges::READ) {
            continue;
        }
        for key in store.objects(&def.name).unwrap_or_default() {
            let obj = ObjRef::new(&def.name, key);
            if up.object(&obj).contains(Privileges::READ) {
                todo.push(obj);
            }
        }
    }
    while let Some(obj) = todo.pop() {
        if !readable.insert(obj.clone()) {
            continue;
        }
        let Ok(def) = store.schema().get(&obj.ty) else {
            continue;
        };
        for (prop, pt) in &def.properties {
            let Some(target) = pt.link_target() else {
                continue;
            };
            let values = match pt.list {
                true => store.list(&obj.ty, &obj.key, prop).unwrap_or_default(),
                false => store.get(&obj.ty, &obj.key, prop).into_iter().collect(),
            };
            for key in values.iter().filter_map(Value::as_link) {
                todo.push(ObjRef::new(target, key.clone()));
            }
        }
    }
    readable
}
