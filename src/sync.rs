//! The sync model, sans-IO, in the star topology of the source documents: many [`Client`]s and
//! one [`Server`] per realm. Nothing here does IO; the caller moves [`Upload`]s and
//! [`Download`]s between them however it likes (in process, or encoded on a wire).
//!
//! - A client applies each local transaction at once and keeps it as an unacknowledged
//!   changeset, rebased on the last server version it integrated. [`Client::upload`] hands out
//!   what the server has not acknowledged; [`Client::integrate`] merges downloaded server
//!   changesets with the unacknowledged local ones ([`crate::transform::merge`]) and applies
//!   the result.
//! - The server integrates an uploaded changeset, based on server version `b`, by merging it with
//!   every history entry after `b` that came from another client, each as that client sees it
//!   (the *reciprocal* form: the entry transformed past the uploader's own changesets that the
//!   server integrated after it). The result is validated by applying it atomically, and appended
//!   to the history. Each client downloads what it has not seen, never its own changesets (it
//!   learns they were integrated from the acknowledgement instead).
//! - Versions: a client's changesets are numbered by [`ClientVersion`], the server's history by
//!   [`ServerVersion`]. Re-uploads after a reconnect are recognised by client version and ignored;
//!   downloads can stop after any entry and resume.
//!
//! ```
//! use objsync::sync::{Client, Server};
//! use objsync::{json, ObjectType, PeerId, PropType, Property};
//!
//! let mut server = Server::new();
//! let mut alice = Client::new(PeerId(1));
//! let mut bob = Client::new(PeerId(2));
//! let person = ObjectType::new("Person", Some("id"), [
//!     Property::new("id", PropType::parse("int")?),
//!     Property::new("name", PropType::parse("string")?),
//! ])?;
//! for (client, name, t) in [(&mut alice, "Ada", 10), (&mut bob, "Bo", 20)] {
//!     // Both write offline: the same object, concurrently.
//!     client.write(t, |tx| {
//!         tx.add_type(person.clone())?;
//!         tx.insert("Person", 1)?;
//!         tx.set("Person", 1, "name", name)
//!     })?;
//! }
//! for client in [&mut alice, &mut bob] {
//!     let ack = server.integrate(client.peer(), client.upload())?;
//!     client.acknowledge(ack);
//! }
//! for client in [&mut alice, &mut bob] {
//!     let download = server.download(client.peer(), client.cursor(), None);
//!     client.integrate(download)?;
//! }
//! // Bob's write is later: everybody ends with "Bo".
//! for r in [alice.replica(), bob.replica(), server.replica()] {
//!     assert_eq!(json::canonical(&json::state_json(r.store())?), r#"{"Person":{"1":{"name":"Bo"}}}"#);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::changeset::Changeset;
use crate::clock::{Hlc, VectorClock};
use crate::error::Error;
use crate::ids::{ClientVersion, PeerId, ServerVersion, Timestamp};
use crate::memory::MemoryStore;
use crate::replica::Replica;
use crate::store::Store;
use crate::transaction::Transaction;
use crate::transform::{merge, Footprint, HistoryIndex};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error as ThisError;

/// A sync failure.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
#[non_exhaustive]
pub enum SyncError {
    /// The server rejected a changeset; nothing of it was applied. The client cannot go on
    /// syncing the changesets built on it.
    #[error("changeset {client_version} of peer {peer} was rejected: {error}")]
    Rejected {
        /// The uploading peer.
        peer: PeerId,
        /// The rejected changeset's client version.
        client_version: ClientVersion,
        /// Why.
        error: Error,
    },
    /// Downloaded changesets could not be integrated with the local ones (for example, both
    /// define a property differently). The client stops syncing.
    #[error("integrating server version {server_version} failed: {error}")]
    Integration {
        /// The server version that failed.
        server_version: ServerVersion,
        /// Why.
        error: Error,
    },
    /// An upload names a server version the server does not have, or goes back in time.
    #[error("bad server version {version} from peer {peer} (server has {latest})")]
    BadServerVersion {
        /// The peer.
        peer: PeerId,
        /// The version it named.
        version: ServerVersion,
        /// The server's latest version.
        latest: ServerVersion,
    },
    /// An uploaded changeset skips a client version: the one before it was never integrated, so
    /// integrating it would lose that one for good.
    #[error("peer {peer} uploaded client version {version} but the server expects {expected}")]
    BadClientVersion {
        /// The peer.
        peer: PeerId,
        /// The version it uploaded.
        version: ClientVersion,
        /// The next version the server can integrate.
        expected: ClientVersion,
    },
    /// An uploaded changeset claims another origin than the uploading peer.
    #[error("peer {peer} uploaded a changeset of peer {origin}")]
    BadOrigin {
        /// The uploader.
        peer: PeerId,
        /// The origin it claimed.
        origin: PeerId,
    },
    /// The client already failed and refuses to sync further.
    #[error("the client stopped syncing after an earlier error: {0}")]
    Stopped(Box<SyncError>),
}

impl SyncError {
    /// The underlying data error, if the failure was one.
    pub fn data_error(&self) -> Option<&Error> {
        match self {
            SyncError::Rejected { error, .. } | SyncError::Integration { error, .. } => {
                Some(error.root())
            }
            SyncError::Stopped(inner) => inner.data_error(),
            _ => None,
        }
    }
}

/// Changesets a client sends to the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    /// The changesets, in client-version order, each based on the client's last integrated
    /// server version.
    pub changesets: Vec<Changeset>,
}

/// The server's acknowledgement of an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadAck {
    /// The last client version the server has integrated from this peer.
    pub integrated: ClientVersion,
}

/// One server history entry sent to a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownloadEntry {
    /// Its server version.
    pub server_version: ServerVersion,
    /// The last changeset of the receiving peer the server had integrated before this entry:
    /// the receiver's changesets up to it are in this entry's past, later ones are concurrent.
    pub last_own: ClientVersion,
    /// The entry.
    pub changeset: Changeset,
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

/// Server changesets a client has not seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Download {
    /// Entries from other peers, oldest first.
    pub entries: Vec<DownloadEntry>,
    /// Where the client stands once it has integrated them.
    pub cursor: Cursor,
    /// The server's latest version when this was made.
    pub latest: ServerVersion,
}

/// A client: a local replica, its unacknowledged changesets, and its versions.
#[derive(Debug)]
pub struct Client<S: Store = MemoryStore> {
    replica: Replica<S>,
    unacked: Vec<Changeset>,
    cursor: Cursor,
    next_version: u64,
    acked: ClientVersion,
    failed: Option<SyncError>,
    clock: Hlc,
}

impl Client<MemoryStore> {
    /// A new client with an empty in-memory replica.
    pub fn new(peer: PeerId) -> Self {
        Client::with_replica(Replica::new(peer))
    }
}

impl<S: Store> Client<S> {
    /// A client over an existing replica.
    pub fn with_replica(replica: Replica<S>) -> Self {
        Client {
            replica,
            unacked: Vec::new(),
            cursor: Cursor::default(),
            next_version: 1,
            acked: ClientVersion(0),
            failed: None,
            clock: Hlc::new(),
        }
    }

    /// A timestamp for the next local transaction from a physical clock reading: never earlier
    /// than anything this client wrote or integrated (see [`Hlc`]).
    pub fn stamp(&mut self, physical_now: Timestamp) -> Timestamp {
        self.clock.stamp(physical_now)
    }

    /// The peer id.
    pub fn peer(&self) -> PeerId {
        self.replica.peer()
    }

    /// The local replica.
    pub fn replica(&self) -> &Replica<S> {
        &self.replica
    }

    /// Where the download stands.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// The changesets the server has not yet integrated as far as this client knows, plus those
    /// it integrated after the client's download position (kept for merging).
    pub fn unacknowledged(&self) -> &[Changeset] {
        &self.unacked
    }

    /// The last client version the server has acknowledged.
    pub fn acknowledged(&self) -> ClientVersion {
        self.acked
    }

    /// The client version of the latest local changeset (0 if none).
    pub fn last_version(&self) -> ClientVersion {
        ClientVersion(self.next_version - 1)
    }

    /// The error that stopped this client, if one did.
    pub fn failure(&self) -> Option<&SyncError> {
        self.failed.as_ref()
    }

    /// Runs a local write transaction at `timestamp`. If `f` succeeds the transaction commits
    /// and, unless it wrote nothing, becomes an unacknowledged changeset; its client version is
    /// returned. If `f` fails, nothing is changed.
    pub fn write<T>(
        &mut self,
        timestamp: Timestamp,
        f: impl FnOnce(&mut Transaction<'_, S>) -> Result<T, Error>,
    ) -> Result<(T, Option<ClientVersion>), Error> {
        let mut tx = self.replica.transaction(timestamp);
        let out = f(&mut tx)?;
        self.clock.observe(timestamp);
        let mut cs = tx.commit();
        if cs.ops.is_empty() {
            return Ok((out, None));
        }
        let v = ClientVersion(self.next_version);
        self.next_version += 1;
        cs.client_version = v;
        cs.base_version = self.cursor.server;
        self.unacked.push(cs);
        Ok((out, Some(v)))
    }

    /// Everything the server has not acknowledged, rebased on the last integrated server version.
    pub fn upload(&self) -> Upload {
        Upload {
            changesets: self
                .unacked
                .iter()
                .filter(|cs| cs.client_version > self.acked)
                .cloned()
                .collect(),
        }
    }

    /// Records the server's acknowledgement of an upload.
    pub fn acknowledge(&mut self, ack: UploadAck) {
        self.acked = self.acked.max(ack.integrated);
    }

    fn drop_integrated(&mut self, own: ClientVersion) {
        self.unacked.retain(|cs| cs.client_version > own);
        self.acked = self.acked.max(own);
    }

    /// Integrates downloaded server changesets: each batch is merged with the local
    /// unacknowledged changesets it is concurrent with, and applied.
    pub fn integrate(&mut self, download: Download) -> Result<(), SyncError> {
        if let Some(f) = &self.failed {
            return Err(SyncError::Stopped(Box::new(f.clone())));
        }
        let result = self.integrate_inner(download);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn integrate_inner(&mut self, download: Download) -> Result<(), SyncError> {
        if download.cursor.server < self.cursor.server {
            // A stale or repeated download: everything in it is integrated already.
            return Ok(());
        }
        let from = self.cursor.server;
        let mut entries = download
            .entries
            .into_iter()
            .filter(|e| e.server_version > from)
            .peekable();
        while let Some(first) = entries.next() {
            // Consecutive entries with the same view of this peer's changesets merge as one
            // sequence against the same local changesets.
            let own = first.last_own;
            let mut batch = vec![first];
            while let Some(next) = entries.next_if(|e| e.last_own == own) {
                batch.push(next);
            }
            self.drop_integrated(own);
            let versions: Vec<ServerVersion> = batch.iter().map(|e| e.server_version).collect();
            let mut incoming: Vec<Changeset> = batch.into_iter().map(|e| e.changeset).collect();
            merge(
                &mut incoming,
                &mut self.unacked,
                self.replica.store().schema(),
            )
            .map_err(|error| SyncError::Integration {
                server_version: versions[0],
                error,
            })?;
            // A downloaded changeset is not needed once applied: its values move into the
            // store, and the rest is dropped while still in cache.
            for (cs, v) in incoming.into_iter().zip(versions) {
                self.clock.observe(cs.timestamp);
                self.replica
                    .apply_changeset_owned(cs)
                    .map_err(|error| SyncError::Integration {
                        server_version: v,
                        error,
                    })?;
                self.cursor.server = v;
            }
        }
        self.drop_integrated(download.cursor.own);
        self.cursor = download.cursor;
        for cs in &mut self.unacked {
            cs.base_version = self.cursor.server;
        }
        Ok(())
    }
}

/// One entry of the server's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The changeset as integrated (transformed past everything before it).
    pub changeset: Changeset,
    /// The server version its origin had integrated when it wrote (or last rebased) it: with the
    /// origin's earlier changesets, this is its causal past.
    pub uploaded_base: ServerVersion,
}

#[derive(Debug, Default)]
struct PeerState {
    /// (server version, client version) of every changeset integrated from this peer.
    integrated: Vec<(ServerVersion, ClientVersion)>,
    /// Reciprocal forms of other peers' entries, by server version, for the window after the
    /// peer's last base version.
    reciprocal: BTreeMap<u64, Changeset>,
    base: ServerVersion,
}

impl PeerState {
    fn last(&self) -> ClientVersion {
        self.integrated.last().map_or(ClientVersion(0), |e| e.1)
    }

    /// The last client version integrated at or before server version `v`.
    fn own_at(&self, v: ServerVersion) -> ClientVersion {
        let n = self.integrated.partition_point(|e| e.0 <= v);
        if n == 0 {
            ClientVersion(0)
        } else {
            self.integrated[n - 1].1
        }
    }
}

/// The server of one realm: its replica, its history and what it knows of each peer.
#[derive(Debug)]
pub struct Server<S: Store = MemoryStore> {
    replica: Replica<S>,
    history: Vec<HistoryEntry>,
    index: HistoryIndex,
    peers: HashMap<PeerId, PeerState>,
}

impl Server<MemoryStore> {
    /// A new server with an empty in-memory replica.
    pub fn new() -> Self {
        Server::with_replica(Replica::new(PeerId(0)))
    }
}

impl Default for Server<MemoryStore> {
    fn default() -> Self {
        Server::new()
    }
}

impl<S: Store> Server<S> {
    /// A server over an existing (empty) replica.
    pub fn with_replica(replica: Replica<S>) -> Self {
        Server {
            replica,
            history: Vec::new(),
            index: HistoryIndex::default(),
            peers: HashMap::new(),
        }
    }

    /// The server's replica.
    pub fn replica(&self) -> &Replica<S> {
        &self.replica
    }

    /// The latest server version.
    pub fn version(&self) -> ServerVersion {
        ServerVersion(self.history.len() as u64)
    }

    /// The history, oldest first (entry i has server version i + 1).
    pub fn history(&self) -> &[HistoryEntry] {
        &self.history
    }

    /// Integrates an upload from `peer`. Changesets already integrated are skipped. On the first
    /// changeset that cannot be integrated the upload stops with an error; the ones before it
    /// stay integrated and nothing of the failing one is applied.
    pub fn integrate(&mut self, peer: PeerId, upload: Upload) -> Result<UploadAck, SyncError> {
        for cs in upload.changesets {
            self.integrate_one(peer, cs)?;
        }
        Ok(UploadAck {
            integrated: self.last_integrated(peer),
        })
    }

    fn integrate_one(&mut self, peer: PeerId, cs: Changeset) -> Result<(), SyncError> {
        let latest = self.version();
        let state = self.peers.entry(peer).or_default();
        if cs.client_version <= state.last() {
            return Ok(());
        }
        let expected = ClientVersion(state.last().0 + 1);
        if cs.client_version != expected {
            return Err(SyncError::BadClientVersion {
                peer,
                version: cs.client_version,
                expected,
            });
        }
        if cs.origin != peer {
            return Err(SyncError::BadOrigin {
                peer,
                origin: cs.origin,
            });
        }
        let b = cs.base_version;
        if b > latest || b < state.base {
            return Err(SyncError::BadServerVersion {
                peer,
                version: b,
                latest,
            });
        }
        // The concurrent window: entries after b from other peers, as this peer sees them. Only
        // the entries that touch what this changeset touches can change or be changed; the rest
        // commute with it and are left alone, so integrating costs a read of the window.
        let footprint = Footprint::of(std::slice::from_ref(&cs));
        let mut window_versions = Vec::new();
        let mut window = Vec::new();
        // Reciprocal forms are looked at whatever the index says: they are what this peer
        // saw, and the index holds the history's forms.
        let mut candidates = self.index.candidates(&footprint, b.0, peer);
        candidates.extend(state.reciprocal.range(b.0 + 1..).map(|(v, _)| *v));
        candidates.sort_unstable();
        candidates.dedup();
        for v in candidates {
            let entry = &self.history[(v - 1) as usize];
            if entry.changeset.origin == peer {
                continue;
            }
            let seen = state.reciprocal.get(&v).unwrap_or(&entry.changeset);
            if footprint.meets(seen) {
                window_versions.push(v);
                window.push(seen.clone());
            }
        }
        let client_version = cs.client_version;
        let reject = |error: Error| SyncError::Rejected {
            peer,
            client_version,
            error,
        };
        let mut incoming = vec![cs];
        merge(&mut incoming, &mut window, self.replica.store().schema()).map_err(reject)?;
        let mut integrated = incoming.pop().expect("one changeset");
        self.replica.apply_changeset(&integrated).map_err(reject)?;
        integrated.base_version = latest;
        self.index.add(latest.0 + 1, &integrated);
        self.history.push(HistoryEntry {
            changeset: integrated,
            uploaded_base: b,
        });
        let state = self.peers.entry(peer).or_default();
        state.base = b;
        state.reciprocal = state.reciprocal.split_off(&(b.0 + 1));
        for (v, cs) in window_versions.into_iter().zip(window) {
            state.reciprocal.insert(v, cs);
        }
        state
            .integrated
            .push((ServerVersion(latest.0 + 1), client_version));
        Ok(())
    }

    /// The last client version of `peer` the server has integrated (0 if none).
    pub fn last_integrated(&self, peer: PeerId) -> ClientVersion {
        self.peers
            .get(&peer)
            .map_or(ClientVersion(0), PeerState::last)
    }

    /// The last client version of `peer` integrated at or before server version `v`: the `own`
    /// half of a download cursor at `v`.
    pub fn own_at(&self, peer: PeerId, v: ServerVersion) -> ClientVersion {
        self.peers
            .get(&peer)
            .map_or(ClientVersion(0), |s| s.own_at(v))
    }

    /// The vector clock of the state at server version `v`: every peer's last changeset
    /// included.
    pub fn state_clock(&self, v: ServerVersion) -> VectorClock {
        let mut clock = VectorClock::new();
        for e in self.history.iter().take(v.0 as usize) {
            clock.observe(e.changeset.origin, e.changeset.client_version.0);
        }
        clock
    }

    /// The vector clock of history entry `v` (1-based): its causal past plus itself, as far as
    /// the server can tell. A changeset its client rebased before uploading names the later base,
    /// so entries it was merged with count as its past here (spec/semantics.md, open questions).
    pub fn entry_clock(&self, v: ServerVersion) -> Option<VectorClock> {
        let e = self.history.get((v.0 as usize).checked_sub(1)?)?;
        let mut clock = self.state_clock(e.uploaded_base);
        clock.observe(e.changeset.origin, e.changeset.client_version.0);
        Some(clock)
    }

    /// What `peer` has not seen after `cursor`: entries from other peers, at most `limit` of
    /// them (all if `None`).
    pub fn download(&self, peer: PeerId, cursor: Cursor, limit: Option<usize>) -> Download {
        let own_at = |v: ServerVersion| self.own_at(peer, v);
        let latest = self.version();
        let mut entries = Vec::new();
        let mut reached = cursor.server;
        for v in cursor.server.0 + 1..=latest.0 {
            let entry = &self.history[(v - 1) as usize];
            if entry.changeset.origin != peer {
                if limit.is_some_and(|l| entries.len() >= l) {
                    break;
                }
                entries.push(DownloadEntry {
                    server_version: ServerVersion(v),
                    last_own: own_at(ServerVersion(v - 1)),
                    changeset: entry.changeset.clone(),
                });
            }
            reached = ServerVersion(v);
        }
        Download {
            entries,
            cursor: Cursor {
                server: reached,
                own: own_at(reached),
            },
            latest,
        }
    }
}
