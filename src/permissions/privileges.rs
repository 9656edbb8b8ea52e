//! The seven privileges as a bitset, and the names the source documents give them.

use std::fmt;

/// A set of privileges: which of the seven flags a user holds at one level (realm, class or
/// object), or which flags one `__Permission` object grants.
///
/// ```
/// use objsync::permissions::Privileges;
///
/// let p = Privileges::READ | Privileges::UPDATE;
/// assert!(p.contains(Privileges::READ));
/// assert!(!p.contains(Privileges::DELETE));
/// assert_eq!((p & Privileges::READ), Privileges::READ);
/// assert_eq!(p.to_string(), "canRead|canUpdate");
/// assert_eq!(Privileges::from_name("canDelete"), Some(Privileges::DELETE));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Privileges(u8);

impl Privileges {
    /// No privilege.
    pub const NONE: Privileges = Privileges(0);
    /// canRead: see the realm, the objects of a class, an object.
    pub const READ: Privileges = Privileges(1);
    /// canQuery: subscribe to a class on the server (checked nowhere else).
    pub const QUERY: Privileges = Privileges(1 << 1);
    /// canCreate: create objects of a class.
    pub const CREATE: Privileges = Privileges(1 << 2);
    /// canUpdate: change properties and lists.
    pub const UPDATE: Privileges = Privileges(1 << 3);
    /// canDelete: delete objects.
    pub const DELETE: Privileges = Privileges(1 << 4);
    /// canSetPermissions: change the permissions of the level.
    pub const SET_PERMISSIONS: Privileges = Privileges(1 << 5);
    /// canModifySchema: add types (realm) or properties (class).
    pub const MODIFY_SCHEMA: Privileges = Privileges(1 << 6);
    /// Every privilege.
    pub const ALL: Privileges = Privileges(0x7f);

    /// Each flag with its property name on `__Permission`, in the seed's order.
    pub const FLAGS: [(Privileges, &'static str); 7] = [
        (Privileges::READ, "canRead"),
        (Privileges::QUERY, "canQuery"),
        (Privileges::CREATE, "canCreate"),
        (Privileges::UPDATE, "canUpdate"),
        (Privileges::DELETE, "canDelete"),
        (Privileges::SET_PERMISSIONS, "canSetPermissions"),
        (Privileges::MODIFY_SCHEMA, "canModifySchema"),
    ];

    /// The flags of both (`|`, usable in constants).
    pub const fn union(self, other: Privileges) -> Privileges {
        Privileges(self.0 | other.0)
    }

    /// Whether every flag of `other` is in `self`.
    pub fn contains(self, other: Privileges) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The flag a `__Permission` property names (`canRead`, ...).
    pub fn from_name(name: &str) -> Option<Privileges> {
        (Privileges::FLAGS.iter())
            .find(|(_, n)| *n == name)
            .map(|(p, _)| *p)
    }
}

impl std::ops::BitOr for Privileges {
    type Output = Privileges;
    fn bitor(self, rhs: Privileges) -> Privileges {
        Privileges(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Privileges {
    fn bitor_assign(&mut self, rhs: Privileges) {
        self.0 |= rhs.0;
    }
}

impl std::ops::BitAnd for Privileges {
    type Output = Privileges;
    fn bitand(self, rhs: Privileges) -> Privileges {
        Privileges(self.0 & rhs.0)
    }
}

impl std::ops::Not for Privileges {
    type Output = Privileges;
    fn not(self) -> Privileges {
        Privileges(!self.0 & Privileges::ALL.0)
    }
}

impl fmt::Display for Privileges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = (Privileges::FLAGS.iter())
            .filter(|(p, _)| self.contains(*p))
            .map(|(_, n)| *n)
            .collect();
        match names.is_empty() {
            true => f.write_str("none"),
            false => f.write_str(&names.join("|")),
        }
    }
}
