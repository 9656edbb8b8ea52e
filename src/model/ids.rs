//! Identifiers and versions: newtypes so that a peer id, a client version and a
//! server version can never be mixed up.
//!
//! Every changeset carries an ordering key, [`Key`], made of its origin timestamp and
//! origin peer id. Conflicts between concurrent changesets are decided by comparing keys
//! lexicographically, so two changesets from different peers never tie.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch, as handed in by the caller. The library never reads a clock.
pub type Timestamp = u64;

/// The identity of a peer (a client file, in the source documents' words). Unique within a realm.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A position in a client's own history: the n-th changeset that client committed (1-based; 0 = none).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct ClientVersion(pub u64);

/// A position in the server's history: server version v means "history entries 1..=v applied" (0 = empty).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct ServerVersion(pub u64);

impl fmt::Display for ClientVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A globally unique operation id: the peer that made it and that peer's own counter.
///
/// Used for list elements and list positions, and for the engine ids of objects whose type has
/// no primary key. Because the peer id is part of it, ids minted offline by different peers never
/// collide, and an id never changes once minted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OpId {
    /// The peer that minted the id.
    pub peer: PeerId,
    /// The peer's counter value when the id was minted (starts at 1).
    pub seq: u64,
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.peer.0, self.seq)
    }
}

/// Where a client's download stands: the last server version it integrated and the last of its
/// own changesets the server had integrated at that point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Server version integrated.
    pub server: ServerVersion,
    /// The peer's own last client version included in that server version.
    pub own: ClientVersion,
}

/// The ordering key of a changeset: (origin timestamp, origin peer id), compared lexicographically.
/// "Later" in the conflict rules means a greater key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    /// Origin timestamp in milliseconds.
    pub timestamp: Timestamp,
    /// Origin peer id; breaks ties between equal timestamps.
    pub peer: PeerId,
}
