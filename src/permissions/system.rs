//! The permission data's types (`__Realm`, `__Class`, `__Role`, `__User`, `__Permission`) and
//! the keys of their well-known objects. They are ordinary synced types whose names the engine
//! reserves, so applications write them only through the helpers of this module's parent.

use super::Privileges;
use crate::model::{
    is_reserved, ElemType, Instruction, Name, ObjKey, ObjectType, PropType, Property, ScalarKind,
    Schema,
};

/// The realm-level permissions: one object, key 0, with a `permissions` list.
pub const REALM: &str = "__Realm";
/// The class-level permissions: one object per class, keyed by the class name.
pub const CLASS: &str = "__Class";
/// Roles, keyed by name, with a `members` list of users.
pub const ROLE: &str = "__Role";
/// Users, keyed by user id, with a link to their private role.
pub const USER: &str = "__User";
/// One grant: a role and seven flags.
pub const PERMISSION: &str = "__Permission";
/// The list property of `__Realm` and `__Class` objects.
pub const PERMISSIONS_PROP: &str = "permissions";
/// The member list of a role.
pub const MEMBERS_PROP: &str = "members";
/// The role link of a permission and of a user.
pub const ROLE_PROP: &str = "role";
/// The role every user belongs to.
pub const EVERYONE: &str = "everyone";

/// The key of the one `__Realm` object.
pub(crate) fn realm_key() -> ObjKey {
    ObjKey::Int(0)
}

/// The name of a user's private role (`__User:<id>`).
pub fn private_role(user: &str) -> String {
    format!("__User:{user}")
}

fn prop(name: &str, ty: PropType) -> Property {
    Property::new(name, ty)
}

fn permission_list() -> PropType {
    PropType::list_of(ElemType::Link {
        target: PERMISSION.into(),
    })
}

/// The five permission types, each exactly as every replica declares it.
pub fn system_types() -> [ObjectType; 5] {
    let string = || PropType::scalar(ScalarKind::String, false);
    let flags =
        (Privileges::FLAGS.iter()).map(|(_, n)| prop(n, PropType::scalar(ScalarKind::Bool, false)));
    let permission = [prop("id", string()), prop(ROLE_PROP, PropType::link(ROLE))];
    let make = |name: &str, pk: &str, props: Vec<Property>| {
        ObjectType::new(name, Some(pk), props).expect("the system types are well formed")
    };
    [
        make(
            REALM,
            "id",
            vec![
                prop("id", PropType::scalar(ScalarKind::Int, false)),
                prop(PERMISSIONS_PROP, permission_list()),
            ],
        ),
        make(
            CLASS,
            "name",
            vec![
                prop("name", string()),
                prop(PERMISSIONS_PROP, permission_list()),
            ],
        ),
        make(
            ROLE,
            "name",
            vec![
                prop("name", string()),
                prop(
                    MEMBERS_PROP,
                    PropType::list_of(ElemType::Link {
                        target: USER.into(),
                    }),
                ),
            ],
        ),
        make(
            USER,
            "id",
            vec![prop("id", string()), prop(ROLE_PROP, PropType::link(ROLE))],
        ),
        make(
            PERMISSION,
            "id",
            permission.into_iter().chain(flags).collect(),
        ),
    ]
}

/// Whether `def` is one of the permission types as [`system_types`] declares it, or a part
/// of one (its primary key and some of its properties: `__Role` and `__User` link to each
/// other, so one of them is declared in two steps).
pub(crate) fn is_system_type(def: &ObjectType) -> bool {
    system_types().iter().any(|s| {
        s.name == def.name
            && s.primary_key == def.primary_key
            && (def.properties.iter()).all(|(n, t)| s.properties.get(n) == Some(t))
    })
}

/// The declarations that add the permission types to a schema, in an order in which each
/// one's link targets exist: `__Role` first without its members, last whole.
pub(crate) fn declarations() -> Vec<ObjectType> {
    let [realm, class, role, user, permission] = system_types();
    let mut bare_role = role.clone();
    bare_role
        .properties
        .retain(|n, _| Some(n) == role.primary_key.as_ref());
    vec![bare_role, user, permission, realm, class, role]
}

/// The ACL property of a type: its property of type `list<link<__Permission>>`, if it has
/// one (the permission types' own `permissions` lists are levels, not ACLs).
pub fn acl_property<'s>(schema: &'s Schema, ty: &str) -> Option<&'s Name> {
    if ty == REALM || ty == CLASS {
        return None;
    }
    let def = schema.get(ty).ok()?;
    (def.properties.iter())
        .find(|(_, pt)| pt.list && pt.link_target().is_some_and(|t| &**t == PERMISSION))
        .map(|(n, _)| n)
}

/// Whether an instruction writes the permission types (an object of one, or their schema).
pub(crate) fn touches_system_type(instr: &Instruction) -> bool {
    let ty = match instr {
        Instruction::AddType(def) => &def.name,
        Instruction::AddProperties { ty, .. } | Instruction::Clear { ty, .. } => ty,
        other => match other.object() {
            Some(obj) => &obj.ty,
            None => return false,
        },
    };
    is_reserved(ty)
}
