//! What the server's checks read again and again, kept between instructions and changesets:
//! whether the realm has permission data, and each user's roles and realm-level privileges.
//! Without it every instruction a user uploads would scan every role's members and read the
//! realm's permission list anew (spec/permissions.md, "Costs" in section 2.5).
//!
//! Everything kept here is read from the permission types' objects and the schema only, so an
//! instruction that writes neither leaves it valid; the server tells the cache of every
//! instruction it applies ([`Cache::note`]), and one that does write them empties it.

use super::effective::UserPrivileges;
use super::system::touches_system_type;
use super::{is_active, Privileges};
use crate::model::Instruction;
use crate::store::Store;
use hashbrown::HashMap;
use std::sync::Arc;

/// The server's memo of permission data (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct Cache {
    active: Option<bool>,
    /// By user id: its roles and realm-level privileges.
    users: HashMap<String, Parts>,
    /// The same for a user the realm knows nothing of.
    unknown: Option<Parts>,
}

/// A user's roles and realm-level privileges.
type Parts = (Arc<[String]>, Privileges);

impl Cache {
    /// Whether `store` holds permission data ([`is_active`]).
    pub(crate) fn is_active<S: Store + ?Sized>(&mut self, store: &S) -> bool {
        *self.active.get_or_insert_with(|| is_active(store))
    }

    /// `user`'s privileges in `store`, its roles and realm level from the memo.
    pub(crate) fn privileges<'s, S: Store + ?Sized>(
        &mut self,
        store: &'s S,
        user: Option<&str>,
    ) -> UserPrivileges<'s, S> {
        let kept = match user {
            Some(user) => self.users.get(user),
            None => self.unknown.as_ref(),
        };
        if let Some((roles, realm)) = kept {
            return UserPrivileges::from_parts(store, roles.clone(), *realm);
        }
        let up = UserPrivileges::new(store, user);
        let parts = (up.shared_roles(), up.realm());
        match user {
            Some(user) => {
                self.users.insert(user.to_string(), parts);
            }
            None => self.unknown = Some(parts),
        }
        up
    }

    /// An instruction was applied to the state the cache describes.
    pub(crate) fn note(&mut self, instr: &Instruction) {
        let schema = matches!(
            instr,
            Instruction::AddType(_) | Instruction::AddProperties { .. }
        );
        if schema || touches_system_type(instr) {
            self.clear();
        }
    }

    /// Forgets everything: the state it describes changed in a way not told instruction by
    /// instruction (a rolled-back transaction).
    pub(crate) fn clear(&mut self) {
        *self = Cache::default();
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Instruction, ObjectType, Op, PeerId, PropType, Property, Value};
    use crate::permissions::{add_member, grant, Identity, Level, Privileges};
    use crate::store::Store;
    use crate::sync::{Client, Server};

    /// Bob may update `Doc`s only as an editor. His changeset makes himself one, updates a
    /// `Doc`, and then fails on a conflicting schema instruction: the server rolls all of it
    /// back, so his next update is refused again, whatever the checks of the failed changeset
    /// had kept.
    #[test]
    fn a_rolled_back_changeset_leaves_nothing_kept() {
        let mut server = Server::new();
        let mut admin = Client::new(PeerId(1));
        server.set_identity(PeerId(1), Identity::Admin);
        admin
            .write(1, |tx| {
                tx.add_type(ObjectType::new(
                    "Doc",
                    Some("id"),
                    [
                        Property::new("id", PropType::parse("int")?),
                        Property::new("v", PropType::parse("int")?),
                    ],
                )?)?;
                tx.insert("Doc", 1)?;
                let doc = Level::Class("Doc".into());
                grant(tx, super::super::EVERYONE, &doc, |p| {
                    p & !Privileges::UPDATE
                })?;
                grant(tx, "editors", &doc, |_| Privileges::ALL)
            })
            .expect("the admin's setup");
        server.integrate(PeerId(1), admin.upload()).expect("setup");
        let state = server.state_snapshot();
        let update = |client: &mut Client, v: i64| {
            client.write(2, |tx| tx.set("Doc", 1, "v", v)).expect("set");
        };

        let mut bob = Client::bootstrap(PeerId(2), &state).expect("bob");
        server.set_identity(PeerId(2), Identity::User("bob".into()));
        bob.write(2, |tx| {
            add_member(tx, "editors", "bob")?;
            tx.set("Doc", 1, "v", 5)
        })
        .expect("join and update");
        let mut upload = bob.upload();
        let conflicting = ObjectType::new(
            "Doc",
            None,
            [Property::new("v", PropType::parse("string").unwrap())],
        )
        .expect("a type");
        let last = upload.changesets.last_mut().expect("bob's changesets");
        last.ops.push(Op::live(Instruction::AddType(conflicting)));
        assert!(server.integrate(PeerId(2), upload).is_err());
        let v = |server: &Server| server.replica().store().get("Doc", &1.into(), "v");
        assert_eq!(v(&server).expect("v"), Value::Int(0));

        let mut again = Client::bootstrap(PeerId(3), &state).expect("bob again");
        server.set_identity(PeerId(3), Identity::User("bob".into()));
        update(&mut again, 6);
        server
            .integrate(PeerId(3), again.upload())
            .expect("bob's update");
        assert_eq!(v(&server).expect("v"), Value::Int(0), "not an editor");
    }
}
