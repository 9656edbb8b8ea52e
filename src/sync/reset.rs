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

use super::{Client, DownloadEntry};
use crate::merge::merge;
use crate::model::{
    Changeset, Checkpoint, ClientVersion, Cursor, Error, Fingerprint, OpId, PeerId,
    RecoveryRequest, Schema, ServerVersion,
};
use crate::replica::{Replica, StateHead};
use crate::snapshot::{Kind, SnapshotError, SnapshotReader, SnapshotWriter};
use crate::store::{MemoryStore, Store};
use hashbrown::HashMap;
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
    /// Take the server's state and drop them; they are handed back in [`ResetReport::reverted`].
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
    /// The server trimmed the history the client needs ([`SyncError::ResetRequired`](super::SyncError::ResetRequired)).
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
    /// The server holds changesets of this peer the client no longer has.
    ClientBehind {
        /// What the server holds.
        integrated: ClientVersion,
        /// What the client has written.
        written: ClientVersion,
    },
    /// The client's changesets are based before a version its earlier ones were based on.
    BaseBehind {
        /// The base of the client's changeset.
        base: ServerVersion,
        /// The base of the peer's last changeset the server integrated.
        floor: ServerVersion,
    },
    /// The server holds another changeset of this peer under a client version it uploads.
    ChangesetMismatch {
        /// The client version.
        client_version: ClientVersion,
    },
    /// The realm's file identifier is another one: the realm was recreated (or repaired under a
    /// new identifier). The client keeps its identity and presents no realm identifier.
    UnknownRealm,
    /// The server does not know the client's identity: the client starts again as a first
    /// contact under its peer id.
    UnknownIdentity,
    /// The server refused this changeset for good (a schema conflict, a bad changeset).
    Refused {
        /// The refused changeset's client version.
        client_version: ClientVersion,
    },
    /// The server refuses every write of this client (it may only read): a reset reverts
    /// everything it has not synced.
    WriteDenied,
    /// The caller asked for a reset.
    Requested,
    /// What the client's user may read changed (spec/permissions.md section 2.5): the
    /// client starts again from the server's state as its user may read it, always
    /// recovering its own changesets (a change of read access is no divergence).
    ReadAccessChanged,
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
            ResetCause::ChangesetMismatch { .. } => 8,
            ResetCause::ClientBehind { .. } => 9,
            ResetCause::BaseBehind { .. } => 10,
            ResetCause::WriteDenied => 11,
            ResetCause::UnknownRealm => 12,
            ResetCause::ReadAccessChanged => 13,
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
            ResetCause::ClientBehind {
                integrated,
                written,
            } => write!(
                f,
                "the server holds client versions up to {integrated}, the client wrote up to {written}"
            ),
            ResetCause::BaseBehind { base, floor } => write!(
                f,
                "the client's changesets are based on server version {base}, its earlier ones on {floor}"
            ),
            ResetCause::ChangesetMismatch { client_version } => write!(
                f,
                "the server holds another changeset under client version {client_version}"
            ),
            ResetCause::UnknownIdentity => f.write_str("the server does not know this client"),
            ResetCause::UnknownRealm => f.write_str("the realm's file identifier is another one"),
            ResetCause::Refused { client_version } => {
                write!(f, "the server refused client version {client_version}")
            }
            ResetCause::Requested => f.write_str("a reset was asked for"),
            ResetCause::WriteDenied => f.write_str("the server refuses this client's writes"),
            ResetCause::ReadAccessChanged => f.write_str("what the client's user may read changed"),
        }
    }
}

/// What a reset did: [`ResetReport`], and in [`ResetMode::Manual`] the client as it was.
#[derive(Debug)]
pub struct Reset<S: Store = MemoryStore> {
    /// What was recovered, reverted and deferred.
    pub report: ResetReport,
    /// With [`ResetMode::Manual`]: the client as it was.
    pub previous: Option<Client<S>>,
}

/// What a reset did with the client's changesets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResetReport {
    /// Why.
    pub cause: ResetCause,
    /// How.
    pub mode: ResetMode,
    /// The client's identity after the reset (another one after
    /// [`Client::reset_into_as`]).
    pub peer: PeerId,
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
    /// With recover: instructions that do not apply to the server's state yet, kept aside
    /// ([`Client::deferred`]). They name objects the server does not have, typically ones
    /// another device created in history the server lost, which that device brings back when
    /// it recovers in turn; each is tried again after every download.
    pub deferred: Vec<Changeset>,
}

impl fmt::Display for ResetReport {
    /// A readable summary: the cause, the mode, and what was recovered and reverted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops: usize = self.reverted.iter().map(|cs| cs.ops.len()).sum();
        write!(
            f,
            "reset ({}) to server version {}: {}; {} changeset(s) recovered, {} instruction(s) in {} changeset(s) reverted, {} deferred",
            match self.mode {
                ResetMode::Recover => "recover",
                ResetMode::Discard => "discard",
                ResetMode::Manual => "manual",
            },
            self.version,
            self.cause,
            self.recovered.len(),
            ops,
            self.reverted.len(),
            self.deferred.iter().map(|cs| cs.ops.len()).sum::<usize>()
        )
    }
}

/// Why a reset did not happen. The client is left exactly as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
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
    /// The peer's last client version the server has integrated: the recovered changesets
    /// are numbered after it.
    integrated: ClientVersion,
    /// The last client version up to which the server holds the client's own changesets
    /// (below `integrated` when the server holds others under later versions).
    held: ClientVersion,
    /// The checkpoints that hold, ascending.
    verified: Vec<ServerVersion>,
    /// The changesets the client's are concurrent with, as a download would bring them.
    entries: Vec<DownloadEntry>,
}

/// The server's part of a recovery (spec/snapshot.md section 7), after the state.
pub(super) struct RecoveryWindow<'h> {
    pub(super) peer: PeerId,
    pub(super) integrated: ClientVersion,
    pub(super) held: ClientVersion,
    pub(super) verified: Vec<ServerVersion>,
    /// (version, last own, changeset).
    pub(super) entries: Vec<(
        ServerVersion,
        ClientVersion,
        std::borrow::Cow<'h, Changeset>,
    )>,
}

impl RecoveryWindow<'_> {
    pub(super) fn write(&self, w: &mut SnapshotWriter) {
        w.items().u64(self.peer.0);
        w.items().u64(self.integrated.0);
        w.items().u64(self.held.0);
        w.items().count(self.verified.len());
        for v in &self.verified {
            w.items().u64(v.0);
        }
        w.items().count(self.entries.len());
        for (v, last_own, cs) in &self.entries {
            w.items().u64(v.0);
            w.items().u64(last_own.0);
            w.changeset(cs);
        }
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

    /// [`Client::reset_into_as`] a new in-memory store.
    pub fn reset_as(
        &mut self,
        peer: PeerId,
        recovery: &[u8],
        cause: ResetCause,
        mode: ResetMode,
    ) -> Result<Reset, ResetError> {
        self.reset_into_as(MemoryStore::new(), peer, recovery, cause, mode)
    }
}

impl<S: Store> Client<S> {
    /// What to ask the server for a reset for `cause`
    /// ([`Server::recovery`](crate::sync::Server::recovery)).
    pub fn recovery_request(&self, cause: ResetCause) -> RecoveryRequest {
        let mut checkpoints: Vec<Checkpoint> = self.checkpoints.iter().copied().collect();
        checkpoints.push(Checkpoint {
            version: self.cursor.server,
            fingerprint: self.cursor.fingerprint,
        });
        checkpoints.sort_by_key(|c| c.version);
        checkpoints.dedup();
        let diverged_from = match cause {
            ResetCause::ChangesetMismatch { client_version } => Some(client_version),
            _ => None,
        };
        RecoveryRequest {
            checkpoints,
            diverged_from,
        }
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
        self.reset_with(store, recovery, cause, mode, None)
    }

    /// [`Client::reset_into`], and the client takes a new identity, `peer`: what a copied
    /// client does when the server holds another changeset under one of its versions
    /// ([`ResetCause::ChangesetMismatch`]), since two installations with one identity would
    /// mint the same ids. The recovered changesets become `peer`'s, numbered from 1, and every
    /// id they mint is renamed to one of `peer`'s (with every reference to it); what the server
    /// holds under the old identity stays the old identity's.
    pub fn reset_into_as(
        &mut self,
        store: S,
        peer: PeerId,
        recovery: &[u8],
        cause: ResetCause,
        mode: ResetMode,
    ) -> Result<Reset<S>, ResetError> {
        self.reset_with(store, recovery, cause, mode, Some(peer))
    }

    fn reset_with(
        &mut self,
        store: S,
        recovery: &[u8],
        cause: ResetCause,
        mode: ResetMode,
        as_peer: Option<PeerId>,
    ) -> Result<Reset<S>, ResetError> {
        // A change of read access may follow another before the client downloads: it is no
        // loop, and it loses nothing the client wrote.
        let repeatable = matches!(cause, ResetCause::Requested | ResetCause::ReadAccessChanged);
        if !repeatable && self.last_reset == Some(cause.code()) {
            return Err(ResetError::Loop(cause));
        }
        let mode = match cause {
            ResetCause::ReadAccessChanged => ResetMode::Recover,
            _ => mode,
        };
        let renamed = as_peer.filter(|p| *p != self.peer());
        let (mut replica, window) = self.load_recovery(store, recovery, renamed)?;
        let (own, mut reverted) = self.own_changesets(window.held, cause);
        let (mut replayed, mut deferred) = match mode {
            ResetMode::Recover => {
                let schema = replica.store().schema();
                let replayed = transform(own, &window, schema).map_err(ResetError::Merge)?;
                (replayed, self.deferred.clone())
            }
            ResetMode::Discard | ResetMode::Manual => {
                (reverted).extend(own.into_iter().filter(|cs| cs.client_version > window.held));
                reverted.extend(self.deferred.iter().cloned());
                (Vec::new(), Vec::new())
            }
        };
        match renamed {
            Some(_) => rename(self.peer(), &mut replica, &mut replayed, &mut deferred),
            None => replica.mint_after(&self.replica),
        }
        for cs in &mut replayed {
            let failed = replica.apply_changeset_lenient(cs);
            if !failed.is_empty() {
                deferred.push(Changeset {
                    ops: failed,
                    ..cs.clone()
                });
            }
        }
        replayed.retain(|cs| !cs.ops.is_empty());
        let fresh = self.fresh(
            replica,
            &window,
            replayed,
            deferred,
            cause,
            renamed.is_none(),
        );
        let report = ResetReport {
            cause,
            mode,
            peer: fresh.peer(),
            version: window.version,
            recovered: fresh.unacked.iter().map(|cs| cs.client_version).collect(),
            reverted,
            deferred: fresh.deferred.clone(),
        };
        let previous = std::mem::replace(self, fresh);
        Ok(Reset {
            report,
            previous: (mode == ResetMode::Manual).then_some(previous),
        })
    }

    /// Reads a recovery made for this client into a new replica over `store`, for this
    /// client's peer or `renamed`.
    fn load_recovery(
        &self,
        store: S,
        recovery: &[u8],
        renamed: Option<PeerId>,
    ) -> Result<(Replica<S>, Window), ResetError> {
        let peer = renamed.unwrap_or(self.peer());
        let mut replica = Replica::with_store(peer, store);
        let mut r = SnapshotReader::open(recovery, Kind::Recovery)?;
        let head = StateHead::read(r.items())?;
        let mut window = None;
        replica.replace_with(|replica| {
            replica.read_in_place(r.items())?;
            window = Some(read_window(&mut r, self.peer(), head)?);
            r.finish()?;
            replica.adopt(peer)
        })?;
        match window {
            Some(window) => Ok((replica, window)),
            None => Err(SnapshotError::Inconsistent("the recovery has no window").into()),
        }
    }

    /// The client a reset leaves: `replica` at the window's version, `replayed` (applied to
    /// it) numbered after what the server holds of it and based on that version. Unless it
    /// took a new identity, it keeps as retained the changesets the server holds of it, which
    /// a server restored from an older backup later may lose again.
    fn fresh(
        &self,
        replica: Replica<S>,
        window: &Window,
        mut replayed: Vec<Changeset>,
        deferred: Vec<Changeset>,
        cause: ResetCause,
        same_identity: bool,
    ) -> Client<S> {
        let after = if same_identity {
            window.integrated
        } else {
            ClientVersion(0)
        };
        for (i, cs) in replayed.iter_mut().enumerate() {
            cs.client_version = ClientVersion(after.0 + 1 + i as u64);
            cs.base_version = window.version;
        }
        let mut fresh = Client::with_replica(replica);
        fresh.cursor = Cursor {
            server: window.version,
            own: after,
            fingerprint: window.fingerprint,
        };
        fresh.acked = after;
        fresh.next_version = after.0 + 1 + replayed.len() as u64;
        fresh.unacked = replayed;
        fresh.clock = self.clock;
        fresh.clock.observe(window.latest_timestamp);
        fresh.recovery_window = self.recovery_window;
        if same_identity {
            let held = |cs: &&Changeset| cs.client_version <= window.held;
            let kept = self.retained.iter().chain(&self.unacked).filter(held);
            fresh.retained = kept.cloned().collect();
        }
        let before = (self.checkpoints.iter()).filter(|c| c.version < window.version);
        fresh.checkpoints = before.copied().collect();
        fresh.checkpoint(window.version, window.fingerprint);
        fresh.trim_retained();
        fresh.last_reset = Some(cause.code());
        fresh.deferred = deferred;
        fresh.retry_deferred();
        fresh
    }

    /// This client's changesets that take part in a recovery, in client-version order: those
    /// the server does not hold (client versions after `held`), and the unacknowledged ones
    /// it holds, which the changesets concurrent with them must still be merged past, as a
    /// download would. And, apart, a changeset the server refused for good.
    fn own_changesets(
        &self,
        held: ClientVersion,
        cause: ResetCause,
    ) -> (Vec<Changeset>, Vec<Changeset>) {
        let refused = match cause {
            ResetCause::Refused { client_version } => Some(client_version),
            _ => None,
        };
        let lost = self.retained.iter().filter(|cs| cs.client_version > held);
        let mut own = Vec::new();
        let mut reverted = Vec::new();
        for cs in lost.chain(&self.unacked).cloned() {
            let unsynced = cs.client_version > held;
            if Some(cs.client_version) == refused || (unsynced && cause == ResetCause::WriteDenied)
            {
                reverted.push(cs);
            } else {
                own.push(cs);
            }
        }
        (own, reverted)
    }
}

/// Reads the server's part of a recovery, after the state.
fn read_window(
    r: &mut SnapshotReader<'_>,
    peer: PeerId,
    head: StateHead,
) -> Result<Window, SnapshotError> {
    let StateHead {
        version,
        fingerprint,
        timestamp: latest_timestamp,
    } = head;
    let inconsistent = SnapshotError::Inconsistent;
    if PeerId(r.items().u64("peer id")?) != peer {
        return Err(inconsistent("the recovery was made for another peer"));
    }
    let integrated = ClientVersion(r.items().u64("integrated client version")?);
    let held = ClientVersion(r.items().u64("held client version")?);
    if held > integrated {
        return Err(inconsistent("the recovery holds more than it integrated"));
    }
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
    let mut entries: Vec<DownloadEntry> = Vec::with_capacity(n);
    for _ in 0..n {
        let v = ServerVersion(r.items().u64("window version")?);
        let last_own = ClientVersion(r.items().u64("window entry's last own version")?);
        let changeset = r.changeset()?;
        let after = entries.last().map_or(true, |l| l.server_version < v);
        if v > version || !after || last_own > held {
            return Err(inconsistent(
                "the recovery's window entries are out of order",
            ));
        }
        entries.push(DownloadEntry {
            server_version: v,
            last_own,
            fingerprint: Fingerprint::default(),
            changeset,
        });
    }
    if integrated.0 == u64::MAX {
        return Err(inconsistent("the recovery leaves no client version"));
    }
    Ok(Window {
        version,
        fingerprint,
        latest_timestamp,
        integrated,
        held,
        verified,
        entries,
    })
}

/// Moves `from`'s changesets to `replica`'s peer: every id they mint is renamed to a new id of
/// the replica's, and every reference to it in them follows.
fn rename<S: Store>(
    from: PeerId,
    replica: &mut Replica<S>,
    replayed: &mut [Changeset],
    deferred: &mut [Changeset],
) {
    let mut renamed: HashMap<OpId, OpId> = HashMap::new();
    for cs in replayed.iter().chain(deferred.iter()) {
        for id in cs.ops.iter().filter_map(|op| op.instr.minted()) {
            if id.peer == from && !renamed.contains_key(&id) {
                renamed.insert(id, replica.mint());
            }
        }
    }
    for cs in replayed.iter_mut().chain(deferred.iter_mut()) {
        cs.origin = replica.peer();
        for op in &mut cs.ops {
            op.instr.ids_mut(|id| {
                if let Some(new) = renamed.get(id) {
                    *id = *new;
                }
            });
        }
    }
}

/// Transforms this client's changesets past the window as the client would have, had it
/// downloaded the window, and returns those the server does not hold. Each changeset joins the
/// unacknowledged ones once the window entries up to its base are integrated (where the base
/// is one the server's history still holds); each batch of entries with the same view of the
/// client's changesets drops those it includes and is merged with the rest, as
/// [`Client::integrate`] does.
fn transform(
    own: Vec<Changeset>,
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
    let mut pending: Vec<Changeset> = Vec::with_capacity(own.len());
    let mut integrate = |pending: &mut Vec<Changeset>, upto: Option<ServerVersion>| {
        let within = |e: &&DownloadEntry| upto.map_or(true, |u| e.server_version <= u);
        while let Some(first) = entries.next_if(within) {
            let mut batch = vec![first.changeset.clone()];
            while let Some(e) = entries.next_if(|e| within(e) && e.last_own == first.last_own) {
                batch.push(e.changeset.clone());
            }
            pending.retain(|cs| cs.client_version > first.last_own);
            merge(&mut batch, pending, schema)?;
        }
        Ok::<(), Error>(())
    };
    for cs in own {
        integrate(&mut pending, Some(held(cs.base_version)))?;
        pending.push(cs);
    }
    integrate(&mut pending, None)?;
    pending.retain(|cs| cs.client_version > window.held);
    Ok(pending)
}
