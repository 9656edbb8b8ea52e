//! Fine-grained permissions (spec/permissions.md): role-based privileges at realm, class and
//! object level, stored as ordinary synced data in the engine's own types, checked by the
//! server instruction by instruction, and corrected on clients that wrote what they may not.
//!
//! - `system`: the permission types (`__Realm`, `__Class`, `__Role`, `__User`,
//!   `__Permission`) and how a type declares an ACL property;
//! - `privileges`: the seven flags as a bitset ([`Privileges`]);
//! - `effective`: a user's privileges read offline from a state ([`UserPrivileges`]);
//! - `grant`: writing permission data in a transaction ([`grant`], [`add_member`], ...);
//! - `check`: what each instruction needs, for the server;
//! - `cache`: what those checks read again and again, kept while the permission data holds;
//! - `enforce`: the server's checked integration and the correction it sends the writer.
//!
//! A realm without permission levels or ACLs has only the defaults (everyone may do
//! everything), so the server checks nothing there ([`is_active`]).
//!
//! ```
//! use objsync::permissions::{self, Level, Privileges, UserPrivileges};
//! use objsync::{ObjRef, ObjectType, PeerId, PropType, Property, Replica};
//!
//! let mut replica = Replica::new(PeerId(1));
//! let mut tx = replica.transaction(1);
//! permissions::ensure_system_types(&mut tx)?;
//! tx.add_type(ObjectType::new("Doc", Some("id"), [
//!     Property::new("id", PropType::parse("int")?),
//!     Property::new("acl", PropType::parse("list<link<__Permission>>")?),
//! ])?)?;
//! tx.insert("Doc", 1)?;
//! // Only the author's private role may read the document.
//! let doc = Level::Object(ObjRef::new("Doc", 1));
//! permissions::grant(&mut tx, &permissions::private_role("ann"), &doc, |_| Privileges::ALL)?;
//! tx.commit();
//! let store = replica.store();
//! let doc = ObjRef::new("Doc", 1);
//! assert!(UserPrivileges::new(store, Some("ann")).object(&doc).contains(Privileges::READ));
//! assert_eq!(UserPrivileges::new(store, Some("bob")).object(&doc), Privileges::NONE);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cache;
mod check;
mod effective;
mod enforce;
mod grant;
mod privileges;
mod system;

pub use check::Checker;
pub use effective::{flags, readable_objects, UserPrivileges};
pub use grant::{add_member, ensure_system_types, ensure_user, grant, remove_member, Level};
pub use privileges::Privileges;
pub use system::{
    acl_property, private_role, system_types, CLASS, EVERYONE, MEMBERS_PROP, PERMISSION,
    PERMISSIONS_PROP, REALM, ROLE, ROLE_PROP, USER,
};

pub(crate) use cache::Cache;
pub(crate) use enforce::{apply_checked, correction, Refusals};
pub(crate) use system::touches_system_type;

use crate::store::Store;

/// Who a server's peer writes as: how the server checks its changesets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// An admin (the server's admin token): never checked.
    Admin,
    /// A user, by user id (the key of its `__User` object).
    User(String),
}

/// Whether a state holds permission data beyond the defaults: a `__Realm` or `__Class`
/// object, or a type with an ACL property. Without any, every user holds every privilege
/// and nothing needs checking.
pub fn is_active<S: Store + ?Sized>(store: &S) -> bool {
    let schema = store.schema();
    if !schema.contains(PERMISSION) {
        return false;
    }
    let any = |ty: &str| store.objects(ty).is_ok_and(|o| !o.is_empty());
    any(REALM)
        || any(CLASS)
        || schema
            .types()
            .any(|d| acl_property(schema, &d.name).is_some())
}
