//! The server of one realm: its replica, its [`History`], and what it knows of each peer.
//!
//! Integrating an upload based on server version `b` merges it with the history entries after
//! `b` from other peers, each in the form its uploader has seen it (the *reciprocal* form, kept
//! in the peer's table), validates the result by applying it atomically, and appends it.

mod compact;
mod history;
mod index;
mod peers;
mod recovery;
mod snapshot;
mod views;

pub use history::{History, HistoryEntry};
pub(crate) use views::ReadRun;

use super::clock::VectorClock;
use super::{Cursor, Download, DownloadEntry, SyncError, Upload, UploadAck};
use crate::merge::{interacts, merge};
use crate::model::{Changeset, ClientVersion, Error, Instruction, ObjRef, PeerId, ServerVersion};
use crate::permissions::{self, Identity};
use crate::replica::Replica;
use crate::store::{MemoryStore, Store};
use hashbrown::HashMap;
use index::Footprint;
use peers::{Integration, PeerState};

/// The server of one realm. See the module documentation.
#[derive(Debug)]
pub struct Server<S: Store = MemoryStore> {
    replica: Replica<S>,
    history: History,
    peers: HashMap<PeerId, PeerState>,
    /// Who each peer writes as; a peer not named here is a user the realm knows nothing of.
    identities: HashMap<PeerId, Identity>,
    /// What the permission checks read again and again, kept while it holds.
    permission_cache: permissions::Cache,
    /// The views of the clients whose downloads are filtered by read access (`views`).
    views: std::sync::Mutex<views::Views>,
    /// The changes of existence of each object (version, exists after it), ascending,
    /// recorded where downloads may be filtered: a download tells from them an object that is
    /// new since the client's cursor from one that existed unseen.
    existence: HashMap<ObjRef, Vec<(u64, bool)>>,
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

/// The window an upload is merged with: versions and the changesets as the uploader sees them.
struct Window {
    versions: Vec<u64>,
    changesets: Vec<Changeset>,
}

impl<S: Store> Server<S> {
    /// A server over an existing (empty) replica.
    pub fn with_replica(replica: Replica<S>) -> Self {
        Server {
            replica,
            history: History::default(),
            peers: HashMap::new(),
            identities: HashMap::new(),
            permission_cache: permissions::Cache::default(),
            views: Default::default(),
            existence: HashMap::new(),
        }
    }

    /// Says who `peer` writes as: an admin, whose changesets are never checked, or a user,
    /// whose instructions are checked against the realm's permissions (spec/permissions.md).
    /// A peer never named here is checked as a user that belongs to `everyone` only.
    pub fn set_identity(&mut self, peer: PeerId, identity: Identity) {
        self.identities.insert(peer, identity);
    }

    /// Who `peer` writes as, if the server was told ([`Server::set_identity`]).
    pub fn identity(&self, peer: PeerId) -> Option<&Identity> {
        self.identities.get(&peer)
    }

    /// The server's replica.
    pub fn replica(&self) -> &Replica<S> {
        &self.replica
    }

    /// The latest server version.
    pub fn version(&self) -> ServerVersion {
        self.history.latest()
    }

    /// The history, oldest first.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Integrates an upload from `peer`. First the upload's cursor and acknowledged version
    /// must fit this history ([`Server::check_position`]); an upload that does not is refused
    /// whole with the reason its client must be reset. Changesets already integrated are
    /// skipped. On the first changeset that cannot be integrated the upload stops with an
    /// error; the ones before it stay integrated and nothing of the failing one is applied.
    pub fn integrate(&mut self, peer: PeerId, upload: Upload) -> Result<UploadAck, SyncError> {
        self.check_position(peer, upload.cursor)?;
        self.check_acknowledged(peer, upload.acknowledged, upload.acknowledged_signature)?;
        for cs in upload.changesets {
            self.integrate_changeset(peer, cs)?;
        }
        Ok(UploadAck {
            integrated: self.last_integrated(peer),
        })
    }

    /// Checks that a client of `peer` whose download stands at `cursor` holds a part of this
    /// history: the version exists, the fingerprints agree, the history there was not trimmed,
    /// and the server still has every changeset of `peer` the cursor names. Each failure is an
    /// error whose [`SyncError::reset_cause`] says why the client must be reset.
    pub fn check_position(&self, peer: PeerId, cursor: Cursor) -> Result<(), SyncError> {
        let latest = self.version();
        if cursor.server > latest {
            return Err(SyncError::ServerBehind {
                integrated: cursor.server,
                latest,
            });
        }
        let Some(fingerprint) = self.history.fingerprint(cursor.server) else {
            return Err(SyncError::ResetRequired {
                horizon: self.history.horizon(),
                needed: cursor.server,
            });
        };
        if fingerprint != cursor.fingerprint {
            return Err(SyncError::Diverged {
                version: cursor.server,
                client: cursor.fingerprint,
                server: fingerprint,
            });
        }
        let own = self.own_at(peer, cursor.server);
        if cursor.own > own {
            return Err(SyncError::ChangesetsLost {
                peer,
                acknowledged: cursor.own,
                integrated: own,
            });
        }
        Ok(())
    }

    /// Checks that the server still holds the changesets of `peer` it acknowledged up to
    /// `acknowledged`, and under that version the changeset with `signature` (if given).
    pub fn check_acknowledged(
        &self,
        peer: PeerId,
        acknowledged: ClientVersion,
        signature: Option<u64>,
    ) -> Result<(), SyncError> {
        let integrated = self.last_integrated(peer);
        if acknowledged > integrated {
            return Err(SyncError::ChangesetsLost {
                peer,
                acknowledged,
                integrated,
            });
        }
        let held = self
            .peers
            .get(&peer)
            .and_then(|s| s.signature(acknowledged));
        match (held, signature) {
            (Some(held), Some(theirs)) if held != theirs => Err(SyncError::ChangesetMismatch {
                peer,
                version: acknowledged,
            }),
            _ => Ok(()),
        }
    }

    /// Integrates one changeset uploaded by `peer`, without looking at where its client's
    /// download stands: what an upload does for each of its changesets, and what replaying
    /// a log of uploads does.
    pub(crate) fn integrate_changeset(
        &mut self,
        peer: PeerId,
        cs: Changeset,
    ) -> Result<(), SyncError> {
        if cs.client_version <= self.last_integrated(peer) {
            // A changeset resent after a lost acknowledgement; unless it is another one
            // written under the same version (a copied client), which must not vanish.
            let held = self
                .peers
                .get(&peer)
                .and_then(|s| s.signature(cs.client_version));
            return match held {
                Some(signature) if signature != cs.signature() => {
                    Err(SyncError::ChangesetMismatch {
                        peer,
                        version: cs.client_version,
                    })
                }
                _ => Ok(()),
            };
        }
        self.check_upload(peer, &cs)?;
        let (b, client_version, signature) = (cs.base_version, cs.client_version, cs.signature());
        let reject = |error: Error| SyncError::Rejected {
            peer,
            client_version,
            error,
        };
        let footprint = Footprint::of(std::slice::from_ref(&cs));
        let mut window = self.window(peer, &cs, &footprint);
        // Unmerged, the changeset integrated is the upload less any refused instructions, so
        // the upload's footprint indexes it; a merge may move what it touches.
        let merged = !window.changesets.is_empty();
        let mut incoming = vec![cs];
        merge(
            &mut incoming,
            &mut window.changesets,
            self.replica.store().schema(),
        )
        .map_err(reject)?;
        let mut integrated = incoming.pop().expect("one changeset");
        let (refused, touched) = self
            .apply_integrated(peer, &mut integrated)
            .map_err(reject)?;
        integrated.base_version = self.version();
        let correction = match refused.refused.is_empty() {
            true => None,
            false => permissions::correction(&self.replica, &integrated, &refused),
        };
        let footprint = match merged {
            true => Footprint::of(std::slice::from_ref(&integrated)),
            false => footprint,
        };
        let at = self.history.push(
            HistoryEntry {
                changeset: integrated,
                uploaded_base: b,
            },
            signature,
            &footprint,
        );
        self.note_existence(at, touched);
        let seen = window.versions.into_iter().zip(window.changesets);
        let integration = Integration {
            server: at,
            client: client_version,
            signature,
        };
        let state = self.peers.entry(peer).or_default();
        state.integrated(integration, b, seen);
        if let Some(correction) = correction {
            state.corrections.insert(at.0, correction);
        }
        Ok(())
    }

    /// Applies an integrated changeset of `peer`: whole, or instruction by instruction with
    /// the permission checks when the realm has permission data (or the changeset brings
    /// some) and the peer is not an admin. Returns the refused instructions, which have left
    /// the changeset, and, where downloads may be filtered, the objects it inserts or deletes
    /// with whether each existed before it.
    fn apply_integrated(
        &mut self,
        peer: PeerId,
        cs: &mut Changeset,
    ) -> Result<(permissions::Refusals, Vec<(ObjRef, bool)>), Error> {
        let user = match self.identities.get(&peer) {
            Some(Identity::Admin) => None,
            Some(Identity::User(user)) => Some(Some(user.as_str())),
            None => Some(None),
        };
        let brings = (cs.ops.iter()).any(|op| permissions::touches_system_type(&op.instr));
        let active = brings || self.permission_cache.is_active(self.replica.store());
        // Changes of existence are recorded where downloads may be filtered.
        let touched = match active || self.filters_any() {
            true => existence_before(self.replica.store(), cs),
            false => Vec::new(),
        };
        let cache = &mut self.permission_cache;
        let refused = match user {
            Some(user) if active => permissions::apply_checked(&mut self.replica, cache, cs, user)?,
            _ => {
                self.replica.apply_changeset(cs)?;
                cs.ops.iter().for_each(|op| cache.note(&op.instr));
                permissions::Refusals::default()
            }
        };
        Ok((refused, touched))
    }

    /// Checks an upload's versions and origin against what the server has of `peer`.
    fn check_upload(&self, peer: PeerId, cs: &Changeset) -> Result<(), SyncError> {
        let expected = ClientVersion(self.last_integrated(peer).0 + 1);
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
        let horizon = self.history.horizon();
        if cs.base_version < horizon {
            return Err(SyncError::ResetRequired {
                horizon,
                needed: cs.base_version,
            });
        }
        let floor = self.peers.get(&peer).map_or(ServerVersion(0), |s| s.base);
        if cs.base_version < floor {
            return Err(SyncError::BaseBehind {
                peer,
                base: cs.base_version,
                floor,
            });
        }
        let latest = self.version();
        if cs.base_version > latest {
            return Err(SyncError::BadServerVersion {
                peer,
                version: cs.base_version,
                latest,
            });
        }
        Ok(())
    }

    /// The concurrent window of `cs`: entries after its base from other peers, as `peer` sees
    /// them. Only the entries that touch what `cs` touches can change or be changed; the rest
    /// commute with it and are left alone, so integrating costs a read of the window.
    fn window(&self, peer: PeerId, cs: &Changeset, footprint: &Footprint) -> Window {
        let b = cs.base_version;
        let reciprocal = self.peers.get(&peer).map(|s| &s.reciprocal);
        let mut candidates = self.history.candidates(footprint, b, peer);
        // Reciprocal forms are looked at whatever the index says: they are what this peer saw,
        // and the index holds the history's forms.
        candidates.extend(
            reciprocal
                .into_iter()
                .flat_map(|r| r.range(b.0 + 1..).map(|(v, _)| *v)),
        );
        // The corrections this peer receives are entries of the history as it sees it.
        let corrections = self.peers.get(&peer).map(|s| &s.corrections);
        candidates
            .extend((corrections.into_iter()).flat_map(|c| c.range(b.0 + 1..).map(|(v, _)| *v)));
        candidates.sort_unstable();
        candidates.dedup();
        let mut meeting: Vec<(u64, &Changeset)> = Vec::new();
        for v in candidates {
            let Some(entry) = self.history.get(ServerVersion(v)) else {
                continue;
            };
            let original = match entry.changeset.origin == peer {
                true => corrections.and_then(|c| c.get(&v)),
                false => Some(&entry.changeset),
            };
            let Some(original) = original else {
                continue;
            };
            let seen = reciprocal.and_then(|r| r.get(&v)).unwrap_or(original);
            if footprint.meets(seen) {
                meeting.push((v, seen));
            }
        }
        // A window the merge would leave as it is (agreeing type definitions, say: every
        // device sends its schema) is not copied, merged or kept as this peer's reciprocal
        // forms, which stay what they were.
        let forms = meeting.iter().map(|&(_, seen)| seen);
        if !interacts(forms, std::slice::from_ref(cs)) {
            meeting.clear();
        }
        Window {
            versions: meeting.iter().map(|&(v, _)| v).collect(),
            changesets: meeting.into_iter().map(|(_, seen)| seen.clone()).collect(),
        }
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
    /// included. Costs a binary search per peer.
    pub fn state_clock(&self, v: ServerVersion) -> VectorClock {
        let mut clock = VectorClock::new();
        for (peer, state) in &self.peers {
            clock.observe(*peer, state.own_at(v).0);
        }
        clock
    }

    /// The vector clock of history entry `v`: its causal past plus itself, as far as the server
    /// can tell. A changeset its client rebased before uploading names the later base, so
    /// entries it was merged with count as its past here (spec/semantics.md, open questions).
    pub fn entry_clock(&self, v: ServerVersion) -> Option<VectorClock> {
        let e = self.history.get(v)?;
        let mut clock = self.state_clock(e.uploaded_base);
        clock.observe(e.changeset.origin, e.changeset.client_version.0);
        Some(clock)
    }

    /// What `peer` has not seen after `cursor`: entries from other peers, at most `limit` of
    /// them (all if `None`). A cursor that does not fit this history
    /// ([`Server::check_position`]), for instance one before the history's horizon, which
    /// needs entries the server no longer has, is an error that says why its client must be
    /// reset.
    ///
    /// Where the realm has permission data and `peer` is not an admin, the entries are
    /// filtered by what its user may read (spec/permissions.md section 2.5), and a client
    /// whose objects must change otherwise (read access lost or gained on existing objects)
    /// gets [`SyncError::ReadAccessChanged`]: it resets onto what it may read
    /// ([`Server::recovery`]).
    pub fn download(
        &self,
        peer: PeerId,
        cursor: Cursor,
        limit: Option<usize>,
    ) -> Result<Download, SyncError> {
        self.check_position(peer, cursor)?;
        let Some(user) = self.reader(peer) else {
            return Ok(self.download_filtered(peer, cursor, limit, None));
        };
        let filter = self.download_filter(peer, user, cursor.server)?;
        let download = self.download_filtered(peer, cursor, limit, Some(&filter));
        let view = filter.view_at(download.cursor.server, download.latest);
        self.record_view(peer, cursor.server, download.cursor.server, view);
        Ok(download)
    }

    /// [`Server::download`] once the cursor is checked, through `filter` if given.
    fn download_filtered(
        &self,
        peer: PeerId,
        cursor: Cursor,
        limit: Option<usize>,
        filter: Option<&views::Filter<'_>>,
    ) -> Download {
        let latest = self.version();
        let mut entries = Vec::new();
        let mut reached = cursor.server;
        for (v, entry) in self.history.after(cursor.server) {
            let form = self.download_form(peer, v, entry);
            let changeset = match (form, filter) {
                (Some(cs), Some(f)) => f.changeset(self.replica.store(), cs),
                (form, _) => form.cloned(),
            };
            if let Some(changeset) = changeset {
                if limit.is_some_and(|l| entries.len() >= l) {
                    break;
                }
                // A correction follows the changeset it corrects.
                let before = ServerVersion(v.0 - u64::from(entry.changeset.origin != peer));
                entries.push(DownloadEntry {
                    server_version: v,
                    last_own: self.own_at(peer, before),
                    fingerprint: self.history.fingerprint(v).unwrap_or_default(),
                    changeset,
                });
            }
            reached = v;
        }
        Download {
            entries,
            cursor: self.cursor_at(peer, reached),
            own_signature: self.own_signature(peer, reached),
            integrated: self.last_integrated(peer),
            latest,
        }
    }

    /// The next entry after `after` that `peer` downloads, with its encoded bytes and the
    /// `last_own` of its download head: another peer's entry, or the correction of one of its
    /// own (see [`Server::download`]).
    pub(crate) fn next_download(
        &self,
        peer: PeerId,
        after: ServerVersion,
    ) -> Option<(ServerVersion, std::sync::Arc<[u8]>, ClientVersion)> {
        let theirs = self.history.next_for(peer, after);
        let corrections = self.peers.get(&peer).map(|s| &s.corrections);
        let correction = corrections.and_then(|c| c.range(after.0 + 1..).next());
        match (theirs, correction) {
            (theirs, Some((v, cs))) if theirs.map_or(true, |t| t.0 > *v) => {
                let v = ServerVersion(*v);
                Some((v, crate::wire::encode(cs).into(), self.own_at(peer, v)))
            }
            (Some(v), _) => {
                let bytes = self.history.encoded(v)?.clone();
                Some((v, bytes, self.own_at(peer, ServerVersion(v.0 - 1))))
            }
            (None, _) => None,
        }
    }

    /// What `peer` downloads of history entry `v`: another peer's changeset, the correction
    /// of its own changeset if the server refused part of it, or nothing.
    pub(crate) fn download_form<'h>(
        &'h self,
        peer: PeerId,
        v: ServerVersion,
        entry: &'h HistoryEntry,
    ) -> Option<&'h Changeset> {
        match entry.changeset.origin == peer {
            false => Some(&entry.changeset),
            true => self.peers.get(&peer)?.corrections.get(&v.0),
        }
    }

    /// The signature of the last changeset of `peer` integrated at or before `v`, if the peer's
    /// table still holds it.
    pub(crate) fn own_signature(&self, peer: PeerId, v: ServerVersion) -> Option<u64> {
        let state = self.peers.get(&peer)?;
        state.signature(state.own_at(v))
    }

    /// The download cursor of `peer` at version `v` (which must be held or the horizon).
    pub(crate) fn cursor_at(&self, peer: PeerId, v: ServerVersion) -> Cursor {
        Cursor {
            server: v,
            own: self.own_at(peer, v),
            fingerprint: self.history.fingerprint(v).unwrap_or_default(),
        }
    }

    /// Forgets the history up to `horizon` (at most the latest version). The state stays; an
    /// upload based before the horizon, or a download from before it, is then refused with
    /// [`SyncError::ResetRequired`], and a new client starts from the state
    /// ([`Server::save`] or a bootstrap).
    pub fn trim(&mut self, horizon: ServerVersion) {
        let horizon = horizon.min(self.version());
        if horizon <= self.history.horizon() {
            return;
        }
        let residue = compact::residue(&self.history, horizon);
        self.history.trim(horizon, residue);
        for state in self.peers.values_mut() {
            state.forget(horizon);
        }
    }
}

/// The objects `cs` inserts or deletes, once each, with whether each exists in `store`.
fn existence_before<S: Store>(store: &S, cs: &Changeset) -> Vec<(ObjRef, bool)> {
    let mut touched: Vec<ObjRef> = Vec::new();
    for op in &cs.ops {
        match &op.instr {
            Instruction::Insert { obj } | Instruction::Delete { obj } => touched.push(obj.clone()),
            Instruction::Clear { ty, objects } => {
                (touched).extend(objects.iter().map(|k| ObjRef::new(ty, k.clone())))
            }
            _ => {}
        }
    }
    touched.sort_unstable();
    touched.dedup();
    (touched.into_iter())
        .map(|o| {
            let exists = store.exists(&o.ty, &o.key).unwrap_or(false);
            (o, exists)
        })
        .collect()
}
