//! Client reset (spec/semantics.md section 10): what a client does when its history and the
//! server's no longer fit together, or the server refused one of its changesets for good.
//!
//! The client asks the server for a *recovery* ([`Client::recovery_request`],
//! [`Server::recovery`](crate::sync::Server::recovery)): the server's state at its latest
//! version, what the server still holds of this peer, and the window of other peers'
//! changesets that the client's unsynced ones are concurrent with (for a trimmed history, the
//! residue the trim kept). [`Client::reset`] then starts again from that state, and in
//! [`ResetMode::Recover`] replays on top of it every changeset of its own that the server does
//! not have: transformed past the window by the ordinary merge, with their original keys, so
//! that each write wins or loses exactly as it would have in ordinary merging. The other modes
//! drop them and hand them back.

use super::Client;
use crate::merge::merge;
use crate::model::{
    Changeset, ClientVersion, Cursor, Error, Fingerprint, PeerId, Schema, ServerVersion,
};
use crate::replica::Replica;
use crate::snapshot::{Kind, SnapshotError, SnapshotReader, SnapshotWriter};
use crate::store::{MemoryStore, Store};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Smallest encoded sizes, for bounding counts by the input left.
const MIN_VERSION_BYTES: usize = 1;
const MIN_ENTRY_BYTES: usize = 6;

/// How a reset treats the client's changesets that the server does not have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetMode {
    /// Replay them on the server's state, with their original keys: every write wins or loses
    /// as in ordinary merging, and none is lost that ordinary merging would keep.
    #[default]
    Recover,
    /// Take the server's state and drop them; they are handed back in [`Reset::reverted`].
    Discard,
    /// Take the server's state, drop them, and hand back the whole client as it was
    /// ([`Reset::previous`]), so that the caller decides what to write again.
    Manual,
}

impl ResetMode {
    /// The mode named `name` (`"recover"`, `"discard"` or `"manual"`).
    pub fn parse(name: &str) -> Option<ResetMode> {
        match name {
            "recover" => Some(ResetMode::Recover),
            "discard" => Some(ResetMode::Discard),
            "manual" => Some(ResetMode::Manual),
            _ => None,
        }
    }
}

/// Why a client must be reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum ResetCause {
    /// The server trimmed the history the client needs ([`SyncError::ResetRequired`]).
    Trimmed {
        /// The last version the server forgot.
        horizon: ServerVersion,
        /// The version the client needed.
        needed: ServerVersion,
    },
    /// The client has integrated versions the server no longer has: the server went back.
    ServerBehind {
        /// The client's download cursor.
        integrated: ServerVersion,
        /// The server's latest version.
        latest: ServerVersion,
    },
    /// The server's history through the client's cursor is another one.
    Diverged {
        /// The client's download cursor.
        version: ServerVersion,
    },
    /// The server lost changesets it had acknowledged to the client.
    ChangesetsLost {
        /// What the client was told was integrated.
        acknowledged: ClientVersion,
        /// What the server has.
        integrated: ClientVersion,
    },
    /// The server does not know the client's identity (or the realm's file identifier is
    /// another one): the realm was restored or recreated.
    UnknownIdentity,
    /// The server refused this changeset for good (a schema conflict, a permission).
    Refused {
        /// The refused changeset's client version.
        client_version: ClientVersion,
    },
    /// The caller asked for a reset.
    Requested,
}

impl ResetCause {
    /// A number per cause, what "the same cause" means for a loop.
    fn code(self) -> u8 {
        match self {
            ResetCause::Trimmed { .. } => 1,
            ResetCause::ServerBehind { .. } => 2,
            ResetCause::Diverged { .. } => 3,
            ResetCause::ChangesetsLost { .. } => 4,
            ResetCause::UnknownIdentity => 5,
            ResetCause::Refused { .. } => 6,
            ResetCause::Requested => 7,
        }
    }
}

impl fmt::Display for ResetCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResetCause::Trimmed { horizon, needed } => write!(
                f,
                "the server forgot its history through version {horizon}, the client needs it from {needed}"
            ),
            ResetCause::ServerBehind { integrated, latest } => write!(
                f,
                "the client has integrated server version {integrated}, the server ends at {latest}"
            ),
            ResetCause::Diverged { version } => {
                write!(f, "the server's history through version {version} is another one")
            }
            ResetCause::ChangesetsLost {
                acknowledged,
                integrated,
            } => write!(
                f,
                "the server acknowledged client version {acknowledged} but holds only up to {integrated}"
            ),
            ResetCause::UnknownIdentity => f.write_str("the server does not know this client"),
            ResetCause::Refused { client_version } => {
                write!(f, "the server refused client version {client_version}")
            }
            ResetCause::Requested => f.write_str("a reset was asked for"),
        }
    }
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

/// What a client sends the server to be recovered: where its unsynced changesets are based.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryRequest {
    /// The client's download cursor and the bases of the changesets it would replay.
    pub checkpoints: Vec<Checkpoint>,
}

/// What a reset did.
#[derive(Debug)]
pub struct Reset<S: Store = MemoryStore> {
    /// Why.
    pub cause: ResetCause,
    /// How.
    pub mode: ResetMode,
    /// The server version the client now starts from.
    pub version: ServerVersion,
    /// The client versions (new numbering) of the changesets replayed on the server's state,
    /// now unacknowledged.
    pub recovered: Vec<ClientVersion>,
    /// Local changes that are not in the new state: every unsynced changeset (discard,
    /// manual); with recover, a refused changeset and any instruction that no longer applies.
    /// Writes that lose to concurrent ones by the ordinary rules are not listed: they lose as
    /// in any sync.
    pub reverted: Vec<Changeset>,
    /// With [`ResetMode::Manual`]: the client as it was.
    pub previous: Option<Client<S>>,
}

impl<S: Store> fmt::Display for Reset<S> {
    /// A readable summary: the cause, the mode, and what was recovered and reverted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops: usize = self.reverted.iter().map(|cs| cs.ops.len()).sum();
        write!(
            f,
            "reset ({}) to server version {}: {}; {} changeset(s) recovered, {} instruction(s) in {} changeset(s) reverted",
            match self.mode {
                ResetMode::Recover => "recover",
                ResetMode::Discard => "discard",
                ResetMode::Manual => "manual",
            },
            self.version,
            self.cause,
            self.recovered.len(),
            ops,
            self.reverted.len()
        )
    }
}

/// Why a reset did not happen. The client is left exactly as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResetError {
    /// The recovery does not load, or is not for this client.
    #[error("the recovery does not load: {0}")]
    Snapshot(#[from] SnapshotError),
    /// The client was reset for this same cause and has not synced since: resetting again
    /// would loop. Something outside the client must change first.
    #[error("the client was already reset for this cause and has not synced since ({0}): stopping instead of looping")]
    Loop(ResetCause),
    /// The client's own changesets cannot be merged with the server's (a schema change of
    /// its own conflicts with one the server has).
    #[error("the client's changesets cannot be merged with the server's: {0}")]
    Merge(Error),
}

/// A recovery as read: the server's state goes into the new replica, the rest is here.
struct Window {
    version: ServerVersion,
    fingerprint: Fingerprint,
    latest_timestamp: u64,
    /// The last client version of the peer the server holds.
    integrated: ClientVersion,
    /// The checkpoints that hold, ascending.
    verified: Vec<ServerVersion>,
    /// Other peers' changesets after the lowest checkpoint, as the peer sees them.
    entries: Vec<(ServerVersion, Changeset)>,
}

/// Writes a recovery (spec/snapshot.md section 7): the server's part.
pub(super) fn write_recovery(
    w: &mut SnapshotWriter,
    peer: PeerId,
    integrated: ClientVersion,
    verified: &[ServerVersion],
    entries: &[(ServerVersion, &Changeset)],
) {
    w.items().u64(peer.0);
    w.items().u64(integrated.0);
    w.items().count(verified.len());
    for v in verified {
        w.items().u64(v.0);
    }
    w.items().count(entries.len());
    for (v, cs) in entries {
        w.items().u64(v.0);
        w.changeset(cs);
    }
}

impl Client<MemoryStore> {
    /// [`Client::reset_into`] a new in-memory store.
    pub fn reset(
        &mut self,
        recovery: &[u8],
        cause: ResetCause,
        mode: ResetMode,
    ) -> Result<Reset, ResetError> {
        self.reset_into(MemoryStore::new(), recovery, cause, mode)
    }
}

impl<S: Store> Client<S> {
    /// What to ask the server for a reset ([`Server::recovery`](crate::sync::Server::recovery)).
    pub fn recovery_request(&self) -> RecoveryRequest {
        let mut checkpoints: Vec<Checkpoint> = self.checkpoints.iter().copied().collect();
        checkpoints.push(Checkpoint {
            version: self.cursor.server,
            fingerprint: self.cursor.fingerprint,
        });
        checkpoints.sort_by_key(|c| c.version);
        checkpoints.dedup();
        RecoveryRequest { checkpoints }
    }

    /// Starts this client again from the server's state in `recovery` (what
    /// [`Server::recovery`](crate::sync::Server::recovery) made for this client's
    /// [`Client::recovery_request`]), into `store`, which must be empty; see the module
    /// documentation. The reset is all or nothing: on any error the client is left as it was.
    /// A client reset for a cause, other than [`ResetCause::Requested`], that has not synced
    /// since its last reset for the same cause is not reset again ([`ResetError::Loop`]).
    pub fn reset_into(
        &mut self,
        store: S,
        recovery: &[u8],
        cause: ResetCause,
        mode: ResetMode,
    ) -> Result<Reset<S>, ResetError> {
        if cause != ResetCause::Requested && self.last_reset == Some(cause.code()) {
            return Err(ResetError::Loop(cause));
        }
        let peer = self.peer();
        let mut replica = Replica::with_store(peer, store);
        let mut r = SnapshotReader::open(recovery, Kind::Recovery)?;
        let (version, fingerprint, latest_timestamp) = read_head(&mut r)?;
        let mut window = None;
        replica.replace_with(|replica| {
            replica.read_in_place(r.items())?;
            window = Some(read_window(
                &mut r,
                peer,
                version,
                fingerprint,
                latest_timestamp,
            )?);
            r.finish()?;
            replica.adopt(peer)
        })?;
        let Some(window) = window else {
            return Err(SnapshotError::Inconsistent("the recovery has no window").into());
        };
        replica.mint_after(&self.replica);
        let (replay, mut reverted) = self.unsynced(window.integrated, cause);
        let mut replayed = match mode {
            ResetMode::Recover => {
                let schema = replica.store().schema();
                transform(replay, &window, schema).map_err(ResetError::Merge)?
            }
            ResetMode::Discard | ResetMode::Manual => {
                reverted.extend(replay);
                Vec::new()
            }
        };
        for cs in &mut replayed {
            let failed = replica.apply_changeset_lenient(cs);
            if !failed.is_empty() {
                reverted.push(Changeset {
                    ops: failed,
                    ..cs.clone()
                });
            }
        }
        replayed.retain(|cs| !cs.ops.is_empty());
        let mut recovered = Vec::with_capacity(replayed.len());
        for (i, cs) in replayed.iter_mut().enumerate() {
            cs.client_version = ClientVersion(window.integrated.0 + 1 + i as u64);
            cs.base_version = window.version;
            recovered.push(cs.client_version);
        }
        let mut fresh = Client::with_replica(replica);
        fresh.cursor = Cursor {
            server: window.version,
            own: window.integrated,
            fingerprint: window.fingerprint,
        };
        fresh.acked = window.integrated;
        fresh.next_version = window.integrated.0 + 1 + replayed.len() as u64;
        fresh.unacked = replayed;
        fresh.clock = self.clock.clone();
        fresh.clock.observe(window.latest_timestamp);
        fresh.recovery_window = self.recovery_window;
        fresh.checkpoint(window.version, window.fingerprint);
        fresh.last_reset = Some(cause.code());
        let previous = std::mem::replace(self, fresh);
        Ok(Reset {
            cause,
            mode,
            version: window.version,
            recovered,
            reverted,
            previous: (mode == ResetMode::Manual).then_some(previous),
        })
    }

    /// The changesets of this client the server does not hold (client versions after
    /// `integrated`), in client-version order; and, apart, a changeset the server refused for
    /// good.
    fn unsynced(
        &self,
        integrated: ClientVersion,
        cause: ResetCause,
    ) -> (Vec<Changeset>, Vec<Changeset>) {
        let refused = match cause {
            ResetCause::Refused { client_version } => Some(client_version),
            _ => None,
        };
        let retained = self.retained.iter();
        let mut replay = Vec::new();
        let mut reverted = Vec::new();
        for cs in retained.chain(&self.unacked).cloned() {
            if cs.client_version <= integrated {
                continue;
            }
            if Some(cs.client_version) == refused {
                reverted.push(cs);
            } else {
                replay.push(cs);
            }
        }
        (replay, reverted)
    }
}

/// Reads the head of a recovery: the server's version, its fingerprint and the latest
/// timestamp.
fn read_head(
    r: &mut SnapshotReader<'_>,
) -> Result<(ServerVersion, Fingerprint, u64), SnapshotError> {
    Ok((
        ServerVersion(r.items().u64("server version")?),
        Fingerprint(r.items().u64("fingerprint")?),
        r.items().u64("latest timestamp")?,
    ))
}

/// Reads the server's part of a recovery, after the state.
fn read_window(
    r: &mut SnapshotReader<'_>,
    peer: PeerId,
    version: ServerVersion,
    fingerprint: Fingerprint,
    latest_timestamp: u64,
) -> Result<Window, SnapshotError> {
    let inconsistent = SnapshotError::Inconsistent;
    if PeerId(r.items().u64("peer id")?) != peer {
        return Err(inconsistent("the recovery was made for another peer"));
    }
    let integrated = ClientVersion(r.items().u64("integrated client version")?);
    let n = r.count(MIN_VERSION_BYTES, "verified checkpoints")?;
    let mut verified: Vec<ServerVersion> = Vec::with_capacity(n);
    for _ in 0..n {
        let v = ServerVersion(r.items().u64("checkpoint")?);
        if v > version || verified.last().is_some_and(|l| *l >= v) {
            return Err(inconsistent("the recovery's checkpoints are out of order"));
        }
        verified.push(v);
    }
    let n = r.count(MIN_ENTRY_BYTES, "window entries")?;
    let mut entries: Vec<(ServerVersion, Changeset)> = Vec::with_capacity(n);
    for _ in 0..n {
        let v = ServerVersion(r.items().u64("window version")?);
        let cs = r.changeset()?;
        if v > version || cs.origin == peer || entries.last().is_some_and(|(l, _)| *l >= v) {
            return Err(inconsistent(
                "the recovery's window entries are out of order",
            ));
        }
        entries.push((v, cs));
    }
    if integrated.0 == u64::MAX {
        return Err(inconsistent("the recovery leaves no client version"));
    }
    Ok(Window {
        version,
        fingerprint,
        latest_timestamp,
        integrated,
        verified,
        entries,
    })
}

/// Transforms the changesets to replay past the window as the client would have, had it
/// downloaded the window: each is merged with the window entries up to its base (where
/// that base is one the server's history still holds), the way a client integrates a download
/// with its unacknowledged changesets, and the rest of the window comes last.
fn transform(
    replay: Vec<Changeset>,
    window: &Window,
    schema: &Schema,
) -> Result<Vec<Changeset>, Error> {
    // A base the server's history no longer holds (it was restored from an older copy)
    // counts as the latest one before it that it does hold.
    let held = |b: ServerVersion| {
        let n = window.verified.partition_point(|v| *v <= b);
        n.checked_sub(1)
            .map_or(ServerVersion(0), |i| window.verified[i])
    };
    let mut entries = window.entries.iter().peekable();
    let mut pending: Vec<Changeset> = Vec::with_capacity(replay.len());
    for cs in replay {
        let base = held(cs.base_version);
        let mut incoming: Vec<Changeset> = Vec::new();
        while let Some((_, e)) = entries.next_if(|(v, _)| *v <= base) {
            incoming.push(e.clone());
        }
        if !incoming.is_empty() {
            merge(&mut incoming, &mut pending, schema)?;
        }
        pending.push(cs);
    }
    let mut rest: Vec<Changeset> = entries.map(|(_, e)| e.clone()).collect();
    if !rest.is_empty() {
        merge(&mut rest, &mut pending, schema)?;
    }
    Ok(pending)
}
