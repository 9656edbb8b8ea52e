//! Changesets: the ordered instructions of one write transaction, with the metadata the sync
//! layer needs (origin peer and timestamp, the origin's own version of it, and the last server
//! version its origin had integrated when it was made or rebased).

use super::ids::{ClientVersion, Digest, Key, PeerId, ServerVersion, Timestamp};
use super::instruction::{Fate, Instruction, Op};
use super::value::ObjKey;
use serde::{Deserialize, Serialize};

/// The instructions of one write transaction and where they came from.
///
/// A transaction's [`commit`](crate::Transaction::commit) returns one; the sync layer numbers
/// it and sends it, and every receiver replays the same instructions, merged against what it
/// has seen concurrently.
///
/// ```
/// use objsync::{Kind, ObjectType, PeerId, PropType, Property, Replica};
///
/// let mut replica = Replica::new(PeerId(1));
/// let mut tx = replica.transaction(1_000);
/// let id = Property::new("id", PropType::parse("int")?);
/// tx.add_type(ObjectType::new("Tag", Some("id"), [id])?)?;
/// tx.insert("Tag", 1)?;
/// let cs = tx.commit();
/// assert_eq!((cs.origin, cs.timestamp), (PeerId(1), 1_000));
/// let kinds: Vec<Kind> = cs.ops.iter().map(|op| op.instr.kind()).collect();
/// assert_eq!(kinds, [Kind::AddType, Kind::Insert]);
/// assert_eq!(cs.to_json()["ops"][1]["instr"]["type"], "INSERT");
/// # Ok::<(), objsync::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Changeset {
    /// The peer that wrote it.
    pub origin: PeerId,
    /// When it was written (milliseconds, handed in by the caller).
    pub timestamp: Timestamp,
    /// Its position in the origin's own history.
    pub client_version: ClientVersion,
    /// The last server version the origin had integrated: the changeset applies on top of that
    /// server state plus the origin's own earlier changesets.
    pub base_version: ServerVersion,
    /// The instructions, in order.
    pub ops: Vec<Op>,
}

impl Changeset {
    /// An empty changeset.
    pub fn new(origin: PeerId, timestamp: Timestamp) -> Changeset {
        Changeset {
            origin,
            timestamp,
            client_version: ClientVersion(0),
            base_version: ServerVersion(0),
            ops: Vec::new(),
        }
    }

    /// The ordering key: (timestamp, origin). Of two concurrent changesets, the one with the
    /// greater key is "later".
    ///
    /// Timestamps come from the writers' clocks and may tie; the peer id breaks the tie, so every
    /// replica picks the same winner without coordinating.
    ///
    /// ```
    /// use objsync::{Changeset, PeerId};
    ///
    /// let early = Changeset::new(PeerId(9), 1_000);
    /// assert!(Changeset::new(PeerId(1), 2_000).key() > early.key());
    /// assert!(Changeset::new(PeerId(10), 1_000).key() > early.key());
    /// ```
    pub fn key(&self) -> Key {
        Key {
            timestamp: self.timestamp,
            peer: self.origin,
        }
    }

    /// A digest of what transformation never changes in a changeset: its timestamp, and for
    /// every instruction its kind, object, property and the list element and position ids it
    /// names. A changeset keeps its signature however often its client rebases it, so a server
    /// that receives a changeset again under a client version it has already integrated tells
    /// a resent one from a different one written under the same version (a copied client).
    ///
    /// ```
    /// use objsync::{ObjectType, PeerId, PropType, Property, Replica};
    ///
    /// let mut replica = Replica::new(PeerId(1));
    /// let mut tx = replica.transaction(10);
    /// tx.add_type(ObjectType::new("T", Some("id"), [Property::new("id", PropType::parse("int")?)])?)?;
    /// tx.commit();
    /// let mut tx = replica.transaction(20);
    /// tx.insert("T", 1)?;
    /// let one = tx.commit();
    /// let mut tx = replica.transaction(20);
    /// tx.insert("T", 2)?;
    /// let two = tx.commit();
    /// assert_ne!(one.signature(), two.signature());
    /// # Ok::<(), objsync::Error>(())
    /// ```
    pub fn signature(&self) -> u64 {
        let mut d = Digest::default();
        d.u64(self.timestamp);
        d.u64(self.ops.len() as u64);
        for op in &self.ops {
            let instr = &op.instr;
            d.bytes(instr.kind().name().as_bytes());
            if let Some(obj) = instr.object() {
                d.bytes(obj.ty.as_bytes());
                // The key as rendered, without allocating for the usual int and string keys.
                match &obj.key {
                    ObjKey::Int(i) => d.bytes(itoa::Buffer::new().format(*i).as_bytes()),
                    ObjKey::String(s) => d.bytes(s.as_bytes()),
                    other => d.bytes(other.render().as_bytes()),
                }
            }
            let mut id = |id: &super::ids::OpId| {
                d.u64(id.peer.0);
                d.u64(id.seq);
            };
            match instr {
                Instruction::ListInsert { elem, .. }
                | Instruction::ListSet { elem, .. }
                | Instruction::ListErase { elem, .. } => id(elem),
                Instruction::ListMove { elem, node, .. } => {
                    id(elem);
                    id(node);
                }
                _ => {}
            }
            match (instr.property(), instr) {
                (Some(prop), _) => d.bytes(prop.as_bytes()),
                (None, Instruction::AddType(def)) => d.bytes(def.name.as_bytes()),
                (None, Instruction::AddProperties { ty, .. } | Instruction::Clear { ty, .. }) => {
                    d.bytes(ty.as_bytes())
                }
                (None, _) => {}
            }
        }
        d.0
    }

    /// Whether nothing in it has any effect.
    pub fn is_void(&self) -> bool {
        self.ops.iter().all(|op| op.fate == Fate::Void)
    }

    /// The JSON form, for debugging, logs and the Adapter feed.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObjRef;

    /// The signature digests an object's key as `ObjKey::render` writes it, whatever the key
    /// (ints and strings are written without a `String` in between).
    #[test]
    fn signature_digests_the_rendered_key() {
        let keys = [
            ObjKey::Int(0),
            ObjKey::Int(-7),
            ObjKey::Int(i64::MIN),
            ObjKey::Int(i64::MAX),
            ObjKey::String("réd".into()),
            ObjKey::Null,
        ];
        for key in keys {
            let mut cs = Changeset::new(PeerId(1), 99);
            let obj = ObjRef {
                ty: "T".into(),
                key: key.clone(),
            };
            cs.ops.push(Op::live(Instruction::Insert { obj }));
            let mut d = Digest::default();
            d.u64(99);
            d.u64(1);
            d.bytes(b"INSERT");
            d.bytes(b"T");
            d.bytes(key.render().as_bytes());
            assert_eq!(cs.signature(), d.0, "{key:?}");
        }
    }
}
