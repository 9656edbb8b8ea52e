//! One realm on the server as the protocol sees it: its [`Server`] plus the client identities
//! it issued (peer ids with their secret salts) and which of them are bound to a session now.

use crate::model::{Changeset, ClientVersion, Cursor, Error, PeerId, ServerVersion};
use crate::replica::Replica;
use crate::snapshot::{Kind, SnapshotError, SnapshotReader, SnapshotWriter};
use crate::store::{MemoryStore, Store};
use crate::sync::{Server, SyncError};
use crate::wire::{ErrorCode, ErrorMessage, FileIdent, Ident, Start};
use hashbrown::HashMap;
use std::sync::Arc;

/// Smallest encoded realm peer (two varints).
const MIN_PEER_BYTES: usize = 2;

/// Peer ids are below 2^63, like every integer of the source documents' protocol.
const MAX_PEER: u64 = (1 << 63) - 1;

/// What the server knows of a client file in one realm.
#[derive(Clone, Copy, Debug)]
struct RealmPeer {
    salt: u64,
    bound: bool,
}

/// One realm on the server: its [`Server`] history plus the client identities the protocol
/// issued. Its sessions ([`super::ServerSession`]) share it.
#[derive(Debug)]
pub struct ServerRealm<S: Store = MemoryStore> {
    pub(super) server: Server<S>,
    file_ident: u64,
    peers: HashMap<PeerId, RealmPeer>,
    /// The state at one version, made once for every new client that asks for it then.
    state: Option<(ServerVersion, Arc<[u8]>)>,
}

impl ServerRealm<MemoryStore> {
    /// An empty realm in memory. `file_ident` (nonzero: 0 is what a client that never saw the
    /// realm sends; 0 is taken as 1) identifies this history: a realm recreated from scratch or
    /// restored from a backup must get a new one (the caller draws it at random), so clients
    /// that knew the old one are told to reset.
    pub fn new(file_ident: u64) -> Self {
        ServerRealm::with_replica(file_ident, Replica::new(PeerId(0)))
    }
}

fn fail<T>(code: ErrorCode, message: String) -> Result<T, ErrorMessage> {
    Err(ErrorMessage::new(code, message))
}

impl<S: Store> ServerRealm<S> {
    /// An empty realm over an empty replica (`file_ident` as for [`ServerRealm::new`]).
    pub fn with_replica(file_ident: u64, replica: Replica<S>) -> Self {
        ServerRealm {
            server: Server::with_replica(replica),
            file_ident: file_ident.max(1),
            peers: HashMap::new(),
            state: None,
        }
    }

    /// The history and state.
    pub fn server(&self) -> &Server<S> {
        &self.server
    }

    /// The realm's file identifier.
    pub fn file_ident(&self) -> u64 {
        self.file_ident
    }

    /// Gives the realm a new file identifier (nonzero; 0 is taken as 1): what a server does
    /// after rebuilding a realm that lost part of its history (a repaired journal), so that
    /// every client that knew the old history is told to reset (207) instead of going on with
    /// server versions that now name other changesets.
    pub fn reissue(&mut self, file_ident: u64) {
        self.file_ident = file_ident.max(1);
    }

    /// Forgets the history up to `horizon` ([`Server::trim`]): clients that need it are told
    /// to reset (222), new clients start from the state.
    pub fn trim(&mut self, horizon: ServerVersion) {
        self.server.trim(horizon);
    }

    /// Compacts the history ([`Server::compact`]); returns how many instructions went.
    pub fn compact(&mut self) -> usize {
        self.server.compact()
    }

    /// Records a client identity (what [`super::ServerEvent::Registered`] reported; used to
    /// rebuild a realm from its log).
    pub fn register(&mut self, peer: PeerId, salt: u64) {
        self.peers.insert(peer, RealmPeer { salt, bound: false });
    }

    /// Says who `peer` writes as ([`Server::set_identity`]); returns whether that changed
    /// anything (a caller that keeps a log records it then, before the peer's next upload).
    pub fn set_identity(&mut self, peer: PeerId, identity: crate::permissions::Identity) -> bool {
        if self.server.identity(peer) == Some(&identity) {
            return false;
        }
        self.server.set_identity(peer, identity);
        true
    }

    /// Integrates one changeset uploaded by `peer` (what [`super::ServerEvent::Integrated`]
    /// reported; used to rebuild a realm from its log, which reproduces the history exactly
    /// since integration is deterministic).
    pub fn integrate(&mut self, peer: PeerId, changeset: Changeset) -> Result<(), SyncError> {
        self.server.integrate_changeset(peer, changeset)
    }

    /// The server's state at its latest version ([`Server::state_snapshot`]), shared by every
    /// session that sends it until the version moves on.
    pub(super) fn state(&mut self) -> (ServerVersion, Arc<[u8]>) {
        let v = self.server.version();
        match &self.state {
            Some((at, bytes)) if *at == v => (v, bytes.clone()),
            _ => {
                let bytes: Arc<[u8]> = self.server.state_snapshot().into();
                self.state = Some((v, bytes.clone()));
                (v, bytes)
            }
        }
    }

    /// Checks a client's IDENT and binds its file; returns the identity and whether a salt was
    /// issued (to be persisted).
    pub(super) fn check_ident(
        &mut self,
        ident: &Ident,
        fresh_salt: u64,
    ) -> Result<(FileIdent, bool), ErrorMessage> {
        let salt = self.check_identity(ident, fresh_salt)?;
        self.check_position(ident)?;
        if matches!(ident.start, Start::State(_))
            && (ident.download != Cursor::default() || ident.last_version.0 > 0)
        {
            return fail(
                ErrorCode::BadStateRequest,
                format!(
                    "peer {} asked for the state at cursor {} with client version {}",
                    ident.file.peer, ident.download.server, ident.last_version
                ),
            );
        }
        let peer = ident.file.peer;
        self.peers.insert(peer, RealmPeer { salt, bound: true });
        Ok((FileIdent { peer, salt }, ident.file.salt == 0))
    }

    /// Who the client is: a valid peer id, this realm, its salt (or a fresh one on first
    /// contact), and not bound elsewhere. Returns the salt.
    fn check_identity(&self, ident: &Ident, fresh_salt: u64) -> Result<u64, ErrorMessage> {
        let peer = ident.file.peer;
        if peer.0 == 0 || peer.0 > MAX_PEER {
            return fail(
                ErrorCode::BadClientFileIdent,
                format!("peer id {} is not in 1..2^63", peer.0),
            );
        }
        if ident.server_file != 0 && ident.server_file != self.file_ident {
            return fail(
                ErrorCode::BadServerFileIdent,
                format!(
                    "the client knew realm file {} but this realm is file {}",
                    ident.server_file, self.file_ident
                ),
            );
        }
        let salt = match (self.peers.get(&peer), ident.file.salt) {
            (Some(known), salt) if salt == known.salt => salt,
            // The IDENT reply of a first contact can be lost with its connection; until the
            // peer has uploaded something it can claim the id afresh, and losing that race costs
            // a rival nothing it could not download again.
            (Some(_), 0) if self.server.last_integrated(peer).0 == 0 => fresh_salt.max(1),
            (Some(_), 0) => {
                return fail(
                    ErrorCode::BadClientFileIdent,
                    format!("peer id {peer} is taken: choose another"),
                )
            }
            (Some(_), _) => {
                return fail(
                    ErrorCode::BadClientFileIdent,
                    format!("wrong salt for peer {peer}"),
                )
            }
            (None, 0) => fresh_salt.max(1),
            (None, _) => {
                return fail(
                    ErrorCode::BadClientFileIdent,
                    format!("peer {peer} is unknown to this realm"),
                )
            }
        };
        // Only after the salt: whether a file is online is nobody else's business.
        if self.peers.get(&peer).is_some_and(|p| p.bound) {
            return fail(
                ErrorCode::ClientFileBound,
                format!("peer {peer} is bound in another session"),
            );
        }
        Ok(salt)
    }

    /// Where the client stands: its versions must fit what the realm has of it. A client
    /// asking for a recovery is being reset, so where it stood does not matter; one asking for
    /// the state must be new (checked by the caller).
    fn check_position(&self, ident: &Ident) -> Result<(), ErrorMessage> {
        let peer = ident.file.peer;
        if let Start::Recovery(..) = ident.start {
            return Ok(());
        }
        let integrated = self.server.last_integrated(peer);
        if ident.last_version < integrated {
            let behind = SyncError::ClientBehind {
                peer,
                integrated,
                written: ident.last_version,
            };
            return Err(sync_error(&behind));
        }
        let latest = self.server.version();
        if ident.latest > latest {
            return Err(ErrorMessage::new(
                ErrorCode::DivergingHistories,
                format!(
                    "the client has seen server version {} but the realm ends at {latest}",
                    ident.latest
                ),
            )
            .about_server(latest));
        }
        if let Start::State(_) = ident.start {
            return Ok(());
        }
        let signature = (ident.acknowledged_signature != 0).then_some(ident.acknowledged_signature);
        (self.server.check_position(peer, ident.download))
            .and_then(|()| (self.server).check_acknowledged(peer, ident.acknowledged, signature))
            .map_err(|e| sync_error(&e))?;
        let own = self.server.own_at(peer, ident.download.server);
        if ident.download.own < own {
            return fail(
                ErrorCode::BadClientVersion,
                format!(
                    "download cursor names client version {} at server version {}, the server has {own}",
                    ident.download.own, ident.download.server
                ),
            );
        }
        Ok(())
    }

    pub(super) fn unbind(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.bound = false;
        }
    }
}

impl ServerRealm<MemoryStore> {
    /// Loads a realm saved with [`ServerRealm::save`], with an in-memory store.
    ///
    /// ```
    /// use objsync::session::ServerRealm;
    /// use objsync::PeerId;
    ///
    /// let mut realm = ServerRealm::new(0x5eed);
    /// realm.register(PeerId(7), 0x1234);
    /// let restarted = ServerRealm::load(&realm.save())?;
    /// assert_eq!(restarted.file_ident(), 0x5eed);
    /// assert_eq!(restarted.save(), realm.save());
    /// # Ok::<(), objsync::SnapshotError>(())
    /// ```
    pub fn load(bytes: &[u8]) -> Result<Self, SnapshotError> {
        ServerRealm::load_into(MemoryStore::new(), bytes)
    }
}

impl<S: Store> ServerRealm<S> {
    /// A snapshot of the realm (spec/snapshot.md section 6): its file identifier, the client
    /// identities it issued (peer ids and salts) and its server. What a server process writes
    /// so that it restarts from the snapshot plus the journal after it, not from the whole
    /// journal. Which files are bound to a session is not saved: after a restart none is.
    pub fn save(&self) -> Vec<u8> {
        let mut w = SnapshotWriter::new(Kind::Realm);
        w.items().u64(self.file_ident);
        let mut peers: Vec<(&PeerId, &RealmPeer)> = self.peers.iter().collect();
        peers.sort_by_key(|(p, _)| **p);
        w.items().count(peers.len());
        for (peer, p) in peers {
            w.items().u64(peer.0);
            w.items().u64(p.salt);
        }
        self.server.write_state(&mut w);
        w.finish()
    }

    /// Loads a realm saved with [`ServerRealm::save`] into `store`, which must be empty.
    pub fn load_into(store: S, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut r = SnapshotReader::open(bytes, Kind::Realm)?;
        let file_ident = r.items().u64("realm file identifier")?;
        if file_ident == 0 {
            return Err(SnapshotError::Inconsistent("a realm file identifier of 0"));
        }
        let n = r.count(MIN_PEER_BYTES, "realm peers")?;
        let mut peers = HashMap::with_capacity(n);
        for _ in 0..n {
            let peer = PeerId(r.items().u64("peer id")?);
            let salt = r.items().u64("salt")?;
            if peers
                .insert(peer, RealmPeer { salt, bound: false })
                .is_some()
            {
                return Err(SnapshotError::Inconsistent("a realm peer appears twice"));
            }
        }
        let server = Server::read_state(store, &mut r)?;
        r.finish()?;
        Ok(ServerRealm {
            server,
            file_ident,
            peers,
            state: None,
        })
    }
}

/// The protocol's error for a sync error: its code, and the versions it is about (so that the
/// client can tell why it must be reset, spec/protocol.md 9.3).
pub(super) fn sync_error(e: &SyncError) -> ErrorMessage {
    let none = (ClientVersion(0), ServerVersion(0));
    let (code, (client, server)) = match e {
        SyncError::ResetRequired { horizon, .. } => {
            (ErrorCode::ClientFileExpired, (none.0, *horizon))
        }
        SyncError::ServerBehind { latest, .. } | SyncError::BadServerVersion { latest, .. } => {
            (ErrorCode::BadServerVersion, (none.0, *latest))
        }
        SyncError::BaseBehind { floor, .. } => (ErrorCode::BadServerVersion, (none.0, *floor)),
        SyncError::ReadAccessChanged { version, .. } => {
            (ErrorCode::ReadAccessChanged, (none.0, *version))
        }
        SyncError::Diverged { version, .. } => (ErrorCode::DivergingHistories, (none.0, *version)),
        SyncError::ChangesetsLost { integrated, .. } => {
            (ErrorCode::ChangesetsLost, (*integrated, none.1))
        }
        SyncError::ChangesetMismatch { version, .. } => {
            (ErrorCode::ClientVersionReused, (*version, none.1))
        }
        SyncError::ClientBehind { integrated, .. } => {
            (ErrorCode::BadClientVersion, (*integrated, none.1))
        }
        SyncError::BadClientVersion { .. } => (ErrorCode::BadClientVersion, none),
        SyncError::BadOrigin { .. } => (ErrorCode::BadOriginFileIdent, none),
        SyncError::Rejected {
            client_version,
            error,
            ..
        } => {
            let code = match error.root() {
                Error::SchemaMismatch { .. } => ErrorCode::InvalidSchemaChange,
                _ => ErrorCode::BadChangeset,
            };
            (code, (*client_version, none.1))
        }
        _ => (ErrorCode::BadChangeset, none),
    };
    (ErrorMessage::new(code, e.to_string()))
        .about_client(client)
        .about_server(server)
}
