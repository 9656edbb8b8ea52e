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

/// Where a client's download stands: the last server version it integrated, the last of its
/// own changesets the server had integrated at that point, and the fingerprint of the history
/// through that version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Server version integrated.
    pub server: ServerVersion,
    /// The peer's own last client version included in that server version.
    pub own: ClientVersion,
    /// The history's fingerprint at `server`: a server whose history through that version is
    /// another one (restored from a backup, then moved on) is told apart by it.
    #[serde(default)]
    pub fingerprint: Fingerprint,
}

/// A digest of a server history through one version: each entry's origin, client version and
/// [signature](crate::Changeset::signature) chained onto the fingerprint before it (the empty
/// history's is 0).
///
/// Two histories with the same fingerprint at a version hold the same changesets up to it
/// (short of a 64-bit collision). What it covers never changes once an entry is appended, so
/// compaction, which rewrites an entry's instructions, keeps every fingerprint (a server keeps
/// them rather than computing them again from its compacted entries). A client keeps
/// the fingerprint of its cursor, and a server that was restored from a backup and then took
/// other changesets under the same versions is found out by it.
///
/// ```
/// use objsync::{ClientVersion, Fingerprint, PeerId};
///
/// let one = Fingerprint::default().then(PeerId(1), ClientVersion(1), 0x5eed);
/// let other = Fingerprint::default().then(PeerId(2), ClientVersion(1), 0x5eed);
/// assert_ne!(one, other);
/// assert_eq!(one, Fingerprint::default().then(PeerId(1), ClientVersion(1), 0x5eed));
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// The fingerprint after appending an entry from `origin`'s changeset `version` whose
    /// signature is `signature`.
    pub fn then(self, origin: PeerId, version: ClientVersion, signature: u64) -> Fingerprint {
        // Fingerprints are persisted by clients and servers and compared across processes,
        // machines and releases, so the function is spelled out here (spec/protocol.md gives
        // it) rather than borrowed from a hasher that may change between versions.
        let mut d = Digest(self.0);
        d.u64(origin.0);
        d.u64(version.0);
        d.u64(signature);
        Fingerprint(d.0)
    }
}

/// A 64-bit digest built from integers and bytes, the same on every machine and in every
/// release (it is persisted and compared across them): each input is mixed into the state
/// with SplitMix64's finalizer.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Digest(pub(crate) u64);

impl Digest {
    pub(crate) fn u64(&mut self, x: u64) {
        self.0 = mix(self.0 ^ mix(x));
    }

    /// Bytes, with their length (so that two fields cannot run into each other).
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        for chunk in b.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.u64(u64::from_le_bytes(word));
        }
    }
}

/// The finalizer of SplitMix64 (Steele, Lea, Flood 2014): a bijection on u64 in which every
/// input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
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

/// A server version the client's changesets are based on, with the history's fingerprint
/// there as the client integrated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The server version.
    pub version: ServerVersion,
    /// The fingerprint the client holds for it.
    pub fingerprint: Fingerprint,
}

/// What a client sends the server to be recovered: where its history is based.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryRequest {
    /// Server versions the client integrated, with their fingerprints, ascending; the last is
    /// its download cursor.
    pub checkpoints: Vec<Checkpoint>,
    /// The client version from which the server holds other changesets than the client's
    /// under the same versions
    /// ([`ResetCause::ChangesetMismatch`](crate::sync::ResetCause::ChangesetMismatch)).
    pub diverged_from: Option<ClientVersion>,
}
