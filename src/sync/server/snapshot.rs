//! A server in a snapshot: its replica, its history (horizon and entries) and every peer's
//! table. The history index and the byte counts are derived, and rebuilt when loading.

use super::history::{History, HistoryEntry};
use super::peers::{Integration, PeerState};
use super::Server;
use crate::model::{ClientVersion, Fingerprint, PeerId, ServerVersion};
use crate::permissions::Identity;
use crate::replica::{Replica, StateHead};
use crate::snapshot::{Kind, SnapshotError, SnapshotReader, SnapshotWriter};
use crate::store::{MemoryStore, Store};
use hashbrown::HashMap;

/// Smallest encoded sizes, for bounding counts by the input left.
const MIN_ENTRY_BYTES: usize = 7;
/// A version and a changeset.
const MIN_FORM_BYTES: usize = 6;
const MIN_PEER_BYTES: usize = 4;
const MIN_INTEGRATION_BYTES: usize = 3;
/// Smallest encoded identity (a peer id and a tag).
const MIN_IDENTITY_BYTES: usize = 2;

impl Server<MemoryStore> {
    /// Loads a server saved with [`Server::save`], with an in-memory store.
    ///
    /// ```
    /// use objsync::sync::{Client, Server};
    /// use objsync::{ObjectType, PeerId, PropType, Property};
    ///
    /// let mut server = Server::new();
    /// let mut client = Client::new(PeerId(1));
    /// client.write(1, |tx| {
    ///     tx.add_type(ObjectType::new("T", Some("id"), [Property::new("id", PropType::parse("int")?)])?)?;
    ///     tx.insert("T", 1)
    /// })?;
    /// server.integrate(client.peer(), client.upload())?;
    /// let restarted = Server::load(&server.save())?;
    /// assert_eq!(restarted.history(), server.history());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(bytes: &[u8]) -> Result<Self, SnapshotError> {
        Server::load_into(MemoryStore::new(), bytes)
    }
}

impl<S: Store> Server<S> {
    /// A snapshot of this server: state, history and peer tables (spec/snapshot.md). A server
    /// loaded from it integrates every future upload, and serves every download, exactly as
    /// this one would.
    pub fn save(&self) -> Vec<u8> {
        let mut w = SnapshotWriter::new(Kind::Server);
        self.write_state(&mut w);
        w.finish()
    }

    /// The server's state at its latest version, for a client that has never downloaded:
    /// [`Client::bootstrap`](crate::sync::Client::bootstrap) starts from it instead of
    /// downloading the history (spec/snapshot.md, section "state"). Its size follows the state,
    /// not the history's length, and a trimmed history still has it.
    ///
    /// ```
    /// use objsync::sync::{Client, Server};
    /// use objsync::{ObjectType, PeerId, PropType, Property};
    ///
    /// let mut server = Server::new();
    /// let mut writer = Client::new(PeerId(1));
    /// writer.write(1, |tx| {
    ///     tx.add_type(ObjectType::new("T", Some("id"), [Property::new("id", PropType::parse("int")?)])?)?;
    ///     tx.insert("T", 1)
    /// })?;
    /// server.integrate(writer.peer(), writer.upload())?;
    /// server.trim(server.version());
    ///
    /// let joined = Client::bootstrap(PeerId(2), &server.state_snapshot())?;
    /// assert_eq!(joined.cursor().server, server.version());
    /// assert_eq!(joined.replica().store().objects("T")?, server.replica().store().objects("T")?);
    /// # use objsync::Store;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn state_snapshot(&self) -> Vec<u8> {
        self.replica.server_state(self.state_head(), None)
    }

    /// The state a new client of `peer` starts from: [`Server::state_snapshot`], restricted to
    /// what its user may read where downloads are filtered (spec/permissions.md section 2.5).
    pub fn state_snapshot_for(&self, peer: PeerId) -> Vec<u8> {
        let only = self.reader(peer).map(|user| self.readable_view(peer, user));
        self.replica
            .server_state(self.state_head(), only.as_deref())
    }

    /// Loads a server saved with [`Server::save`] into `store`, which must be empty.
    pub fn load_into(store: S, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut r = SnapshotReader::open(bytes, Kind::Server)?;
        let server = Server::read_state(store, &mut r)?;
        r.finish()?;
        Ok(server)
    }

    /// What the state at the latest version says besides the replica.
    pub(super) fn state_head(&self) -> StateHead {
        StateHead {
            version: self.version(),
            fingerprint: self.history.latest_fingerprint(),
            timestamp: self.history.latest_timestamp(),
        }
    }

    /// Writes the server's state (also the inner part of a realm's snapshot).
    pub(crate) fn write_state(&self, w: &mut SnapshotWriter) {
        self.replica.write_state(w.items());
        let horizon = self.history.horizon();
        w.items().u64(horizon.0);
        w.items().u64(self.history.horizon_fingerprint().0);
        w.items().u64(self.history.latest_timestamp());
        w.items().count(self.history.residue().len());
        for (v, cs) in self.history.residue() {
            w.items().u64(v.0);
            w.changeset(cs);
        }
        w.items().count(self.history.len());
        for (v, entry) in self.history.iter() {
            w.items().u64(entry.uploaded_base.0);
            w.items()
                .u64(self.history.fingerprint(v).unwrap_or_default().0);
            w.changeset(&entry.changeset);
        }
        let mut peers: Vec<_> = self.peers.iter().collect();
        peers.sort_by_key(|(p, _)| **p);
        w.items().count(peers.len());
        for (peer, state) in peers {
            let e = w.items();
            e.u64(peer.0);
            e.u64(state.base.0);
            e.count(state.integrated.len());
            for i in &state.integrated {
                e.u64(i.server.0);
                e.u64(i.client.0);
                e.u64(i.signature);
            }
            e.count(state.reciprocal.len());
            for (v, cs) in &state.reciprocal {
                w.items().u64(*v);
                w.changeset(cs);
            }
            w.items().count(state.corrections.len());
            for (v, cs) in &state.corrections {
                w.items().u64(*v);
                w.changeset(cs);
            }
        }
        let mut identities: Vec<_> = self.identities.iter().collect();
        identities.sort_by_key(|(p, _)| **p);
        w.items().count(identities.len());
        for (peer, identity) in identities {
            let e = w.items();
            e.u64(peer.0);
            match identity {
                Identity::Admin => e.byte(0),
                Identity::User(user) => {
                    e.byte(1);
                    e.str(&user.as_str().into());
                }
            }
        }
    }

    /// Reads what [`Server::write_state`] wrote, checking that the history and the peer
    /// tables fit each other.
    pub(crate) fn read_state(store: S, r: &mut SnapshotReader<'_>) -> Result<Self, SnapshotError> {
        let replica = Replica::read_state(store, r.items())?;
        let history = read_history(r)?;
        let mut peers = HashMap::new();
        let n = r.count(MIN_PEER_BYTES, "peers")?;
        for _ in 0..n {
            let (peer, state) = read_peer(r, &history)?;
            if state.base > history.latest() || peers.insert(peer, state).is_some() {
                return Err(SnapshotError::Inconsistent(
                    "a peer's table is invalid or appears twice",
                ));
            }
        }
        let mut identities = HashMap::new();
        let n = r.count(MIN_IDENTITY_BYTES, "identities")?;
        for _ in 0..n {
            let peer = PeerId(r.items().u64("identity peer")?);
            let identity = match r.items().byte("identity")? {
                0 => Identity::Admin,
                1 => Identity::User(r.items().str("user id")?.to_string()),
                _ => {
                    return Err(SnapshotError::Inconsistent(
                        "an identity is neither admin nor user",
                    ))
                }
            };
            identities.insert(peer, identity);
        }
        // Views and changes of existence are not saved: a loaded server knows no client's view, and
        // resets each filtered client onto what it may read once.
        Ok(Server {
            replica,
            history,
            peers,
            identities,
            permission_cache: Default::default(),
            views: Default::default(),
            existence: Default::default(),
        })
    }
}

/// Reads the history part of a server snapshot: horizon, residue and entries.
fn read_history(r: &mut SnapshotReader<'_>) -> Result<History, SnapshotError> {
    let inconsistent = SnapshotError::Inconsistent;
    let horizon = ServerVersion(r.items().u64("history horizon")?);
    // Versions after the horizon are horizon + 1, ...: u64::MAX has none (and the history's
    // arithmetic assumes one).
    if horizon.0 == u64::MAX {
        return Err(inconsistent(
            "the history horizon leaves no version after it",
        ));
    }
    let fingerprint = Fingerprint(r.items().u64("horizon fingerprint")?);
    let mut history = History::starting_at(horizon, fingerprint);
    history.observe_timestamp(r.items().u64("latest timestamp")?);
    let n = r.count(MIN_FORM_BYTES, "residue entries")?;
    let mut residue: Vec<(ServerVersion, _)> = Vec::with_capacity(n);
    for _ in 0..n {
        let v = ServerVersion(r.items().u64("residue version")?);
        let cs = r.changeset()?;
        if v > horizon || v.0 == 0 || residue.last().is_some_and(|(l, _)| *l >= v) {
            return Err(inconsistent(
                "the residue's versions are not before the horizon",
            ));
        }
        residue.push((v, cs));
    }
    history.set_residue(residue);
    let n = r.count(MIN_ENTRY_BYTES, "history entries")?;
    for _ in 0..n {
        let uploaded_base = ServerVersion(r.items().u64("uploaded base")?);
        let fingerprint = Fingerprint(r.items().u64("entry fingerprint")?);
        let changeset = r.changeset()?;
        // The entry gets version latest + 1, which must exist.
        if changeset.base_version != history.latest()
            || uploaded_base > history.latest()
            || history.latest().0 == u64::MAX
        {
            return Err(inconsistent(
                "a history entry names versions it cannot have",
            ));
        }
        history.append(
            HistoryEntry {
                changeset,
                uploaded_base,
            },
            fingerprint,
        );
    }
    Ok(history)
}

/// Reads one peer's table, checking it against the history already read.
fn read_peer(
    r: &mut SnapshotReader<'_>,
    history: &History,
) -> Result<(PeerId, PeerState), SnapshotError> {
    let inconsistent = SnapshotError::Inconsistent;
    let peer = PeerId(r.items().u64("peer id")?);
    let mut state = PeerState {
        base: ServerVersion(r.items().u64("peer base")?),
        ..PeerState::default()
    };
    let m = r.count(MIN_INTEGRATION_BYTES, "integrations")?;
    for _ in 0..m {
        let sv = ServerVersion(r.items().u64("integrated server version")?);
        let cv = ClientVersion(r.items().u64("integrated client version")?);
        let signature = r.items().u64("integrated signature")?;
        let fits = history.get(sv).map_or(true, |e| {
            e.changeset.origin == peer && e.changeset.client_version == cv
        });
        let ordered = state
            .integrated
            .last()
            .map_or(true, |l| l.server < sv && l.client < cv);
        if !fits || !ordered || sv > history.latest() {
            return Err(inconsistent(
                "a peer's integrations do not match the history",
            ));
        }
        state.integrated.push(Integration {
            server: sv,
            client: cv,
            signature,
        });
    }
    let m = r.count(MIN_FORM_BYTES, "reciprocal forms")?;
    for _ in 0..m {
        let v = r.items().u64("reciprocal version")?;
        let cs = r.changeset()?;
        if v <= state.base.0 || v > history.latest().0 {
            return Err(inconsistent(
                "a reciprocal form is outside its peer's window",
            ));
        }
        state.reciprocal.insert(v, cs);
    }
    let m = r.count(MIN_FORM_BYTES, "corrections")?;
    for _ in 0..m {
        let v = r.items().u64("correction version")?;
        let cs = r.changeset()?;
        let own = history
            .get(ServerVersion(v))
            .map_or(true, |e| e.changeset.origin == peer);
        if v > history.latest().0 || !own {
            return Err(inconsistent("a correction is not of its peer's changeset"));
        }
        state.corrections.insert(v, cs);
    }
    Ok((peer, state))
}
