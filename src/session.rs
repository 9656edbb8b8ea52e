//! The protocol's state machines, sans-IO: a [`ClientSession`] on each device and a
//! [`ServerSession`] per connection on the server, over a shared [`ServerRealm`].
//!
//! Nothing here touches a socket, a file or a clock. Frames come in through `receive`/`handle`,
//! frames to send come out of `poll_transmit`, and whatever must outlive the process is handed
//! to the caller as events ([`ServerEvent::Registered`], [`ServerEvent::Integrated`],
//! [`ClientEvent::Identified`], ...) to persist *before* sending the next frame, so that nothing
//! acknowledged is ever lost. Timers are the caller's too: it decides when to [`ClientSession::ping`]
//! and how long to back off after an error whose [`Action`] is [`Action::Retry`].
//!
//! A session's life (spec/protocol.md has the details):
//! 1. The client sends BIND (realm path, token) and at once IDENT (its identity and where its
//!    download stands). The server hands the BIND to its caller ([`BindRequest`]), who checks
//!    the token and permissions and answers [`ServerSession::accept`] or
//!    [`ServerSession::refuse`]; then the server checks the IDENT against the realm and answers
//!    with its own IDENT (issuing a salt on first contact) or an ERROR.
//! 2. Both sides stream: the client UPLOADs its changesets in chunks (each integrated only
//!    once complete); the server DOWNLOADs other clients' history entries in chunks, each
//!    DOWNLOAD also acknowledging uploads. MARK asks the server to say when everything it had
//!    at that moment has been sent; PING/PONG keep the connection alive.
//! 3. An ERROR ends the session. After a dropped connection the client binds again and resumes
//!    from its last acknowledged versions: re-sent changesets are recognised by client version
//!    and skipped, and the download starts from the client's cursor.
//!
//! ```
//! use objsync::protocol::Limits;
//! use objsync::session::{Access, ClientConfig, ClientSession, ServerRealm, ServerSession};
//! use objsync::sync::Client;
//! use objsync::{ObjectType, PeerId, PropType, Property};
//!
//! let mut realm = ServerRealm::new(0x5eed); // one per realm path
//! let mut conn = ServerSession::new(Limits::default()); // one per connection
//! let config = ClientConfig {
//!     path: "/notes".into(),
//!     token: "t".into(),
//!     limits: Limits::default(),
//! };
//! let mut device = ClientSession::new(Client::new(PeerId(7)), config, None);
//! device.client_mut().write(1, |tx| {
//!     tx.add_type(ObjectType::new(
//!         "Note",
//!         Some("id"),
//!         [Property::new("id", PropType::parse("int")?)],
//!     )?)?;
//!     tx.insert("Note", 1)
//! })?;
//! device.connect();
//! loop {
//!     let mut moved = false;
//!     while let Some(frame) = device.poll_transmit() {
//!         moved = true;
//!         if let Ok(Some(_bind)) = conn.receive(&frame) {
//!             // The caller checks the token and the path's permissions here.
//!             conn.accept(Access { read: true, write: true }, 0x1234);
//!         }
//!         for _event in conn.process(&mut realm) { /* persist before sending more */ }
//!     }
//!     while let Some(frame) = conn.poll_transmit(&realm) {
//!         moved = true;
//!         for _event in device.handle(&frame)? { /* persist */ }
//!     }
//!     if !moved {
//!         break;
//!     }
//! }
//! assert_eq!(realm.server().version().0, 1);
//! assert_eq!(device.client().acknowledged().0, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::changeset::Changeset;
use crate::encoding::{decode, encode};
use crate::error::Error;
use crate::ids::{ClientVersion, PeerId, ServerVersion};
use crate::memory::MemoryStore;
use crate::protocol::{
    Action, Bind, ChunkError, ClientMessage, DownloadHead, DownloadMessage, ErrorCode,
    ErrorMessage, FileIdent, Ident, IdentReply, Limits, MessageError, Outgoing, Reassembly,
    ServerMessage, UploadMessage, UploadProgress, CHUNK_OVERHEAD, MESSAGE_OVERHEAD, MIN_MESSAGE,
    PROTOCOL_VERSION,
};
use crate::replica::Replica;
use crate::store::Store;
use crate::sync::{Client, Cursor, Download, DownloadEntry, Server, SyncError, UploadAck};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;

/// Peer ids are below 2^63, like every integer of the source documents' protocol.
const MAX_PEER: u64 = (1 << 63) - 1;

/// Upload or download progress in bytes of encoded changesets, as the source documents define
/// it: `transferable` is what has been transferred plus what is pending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Bytes transferred so far (since the session object was created).
    pub transferred: u64,
    /// `transferred` plus the bytes still pending.
    pub transferable: u64,
}

impl Progress {
    /// Whether nothing is pending.
    pub fn is_complete(&self) -> bool {
        self.transferred >= self.transferable
    }
}

// ---------------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------------

/// What the server knows of a client file in one realm.
#[derive(Clone, Copy, Debug)]
struct RealmPeer {
    salt: u64,
    bound: bool,
}

/// One realm on the server: its [`Server`] history plus what the protocol needs around it
/// (client identities, which are bound now, the encoded form and sizes of every entry).
///
/// Entries are encoded once, when integrated, and every session sends the same bytes; the
/// sizes give each client's downloadable bytes without re-encoding.
#[derive(Debug)]
pub struct ServerRealm<S: Store = MemoryStore> {
    server: Server<S>,
    file_ident: u64,
    peers: HashMap<PeerId, RealmPeer>,
    encoded: Vec<Arc<[u8]>>,
    /// `bytes_through[v]`: encoded bytes of entries 1..=v.
    bytes_through: Vec<u64>,
    /// Per origin: (server version, that origin's bytes through it), one per entry it wrote.
    own_bytes: HashMap<PeerId, Vec<(ServerVersion, u64)>>,
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

impl<S: Store> ServerRealm<S> {
    /// An empty realm over an empty replica (`file_ident` as for [`ServerRealm::new`]).
    pub fn with_replica(file_ident: u64, replica: Replica<S>) -> Self {
        ServerRealm {
            server: Server::with_replica(replica),
            file_ident: file_ident.max(1),
            peers: HashMap::new(),
            encoded: Vec::new(),
            bytes_through: vec![0],
            own_bytes: HashMap::new(),
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

    /// Records a client identity (what [`ServerEvent::Registered`] reported; used to rebuild a
    /// realm from its log).
    pub fn register(&mut self, peer: PeerId, salt: u64) {
        self.peers.insert(peer, RealmPeer { salt, bound: false });
    }

    /// Integrates one changeset uploaded by `peer` (what [`ServerEvent::Integrated`] reported;
    /// used to rebuild a realm from its log, which reproduces the history exactly since
    /// integration is deterministic).
    pub fn integrate(&mut self, peer: PeerId, changeset: Changeset) -> Result<(), SyncError> {
        let before = self.server.version();
        let upload = crate::sync::Upload {
            changesets: vec![changeset],
        };
        let result = self.server.integrate(peer, upload).map(|_| ());
        for entry in &self.server.history()[before.0 as usize..] {
            let bytes: Arc<[u8]> = encode(&entry.changeset).into();
            let size = bytes.len() as u64;
            let v = ServerVersion(self.encoded.len() as u64 + 1);
            let through = self.bytes_through.last().copied().unwrap_or(0) + size;
            self.bytes_through.push(through);
            let own = self.own_bytes.entry(entry.changeset.origin).or_default();
            let own_through = own.last().map_or(0, |e| e.1) + size;
            own.push((v, own_through));
            self.encoded.push(bytes);
        }
        result
    }

    /// Bytes of history after `after` that `peer` has yet to download (entries of others).
    pub fn downloadable(&self, peer: PeerId, after: ServerVersion) -> u64 {
        let at = |v: ServerVersion| {
            let i = (v.0 as usize).min(self.bytes_through.len() - 1);
            self.bytes_through[i]
        };
        let own_at = |v: ServerVersion| {
            self.own_bytes.get(&peer).map_or(0, |own| {
                let n = own.partition_point(|e| e.0 <= v);
                if n == 0 {
                    0
                } else {
                    own[n - 1].1
                }
            })
        };
        let latest = self.server.version();
        (at(latest) - at(after)).saturating_sub(own_at(latest) - own_at(after))
    }

    /// Checks a client's IDENT and binds its file; returns the identity and whether a salt was
    /// issued (to be persisted).
    fn check_ident(
        &mut self,
        ident: &Ident,
        fresh_salt: u64,
    ) -> Result<(FileIdent, bool), ErrorMessage> {
        let fail = |code, msg: String| Err(ErrorMessage::new(code, msg));
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
        if ident.file.salt == 0 && ident.download.server.0 != 0 {
            return fail(
                ErrorCode::BadServerVersion,
                "a first contact cannot have downloaded anything".to_string(),
            );
        }
        let integrated = self.server.last_integrated(peer);
        if ident.last_version < integrated {
            return fail(
                ErrorCode::BadClientVersion,
                format!(
                    "the server has integrated client version {integrated} but the client's \
                     history ends at {}: it went back (restored from a backup?)",
                    ident.last_version
                ),
            );
        }
        let latest = self.server.version();
        if ident.latest > latest {
            return fail(
                ErrorCode::DivergingHistories,
                format!(
                    "the client has seen server version {} but the realm ends at {latest}",
                    ident.latest
                ),
            );
        }
        if ident.download.server > latest {
            return fail(
                ErrorCode::BadServerVersion,
                format!(
                    "download cursor {} is beyond the realm's version {latest}",
                    ident.download.server
                ),
            );
        }
        let own = self.server.own_at(peer, ident.download.server);
        if ident.download.own != own {
            return fail(
                ErrorCode::BadClientVersion,
                format!(
                    "download cursor names client version {} at server version {}, the server has {own}",
                    ident.download.own, ident.download.server
                ),
            );
        }
        self.peers.insert(peer, RealmPeer { salt, bound: true });
        Ok((FileIdent { peer, salt }, ident.file.salt == 0))
    }

    fn unbind(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.bound = false;
        }
    }
}

/// What a server's caller is asked to decide: may this token open this realm?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindRequest {
    /// The realm path as sent (the caller resolves `/~/` and checks its form).
    pub path: String,
    /// The token.
    pub token: String,
}

/// What a bound session may do, as the caller's permission check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// May download.
    pub read: bool,
    /// May upload.
    pub write: bool,
}

/// What a [`ServerSession`] reports to its caller.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerEvent {
    /// A client identity was issued: persist it before sending further frames.
    Registered {
        /// The peer.
        peer: PeerId,
        /// Its salt.
        salt: u64,
    },
    /// A changeset was integrated: persist it (as uploaded) before any session of the realm
    /// sends further frames, since the next DOWNLOAD of its uploader acknowledges it and the
    /// next DOWNLOAD of any other session reveals it.
    Integrated {
        /// The uploader.
        peer: PeerId,
        /// The changeset as uploaded.
        changeset: Changeset,
    },
    /// The session ended with this error (already queued for the client); close the
    /// connection once the outgoing frames are sent.
    Closed(ErrorMessage),
}

#[derive(Debug)]
enum ServerPhase {
    AwaitBind,
    /// BIND received; the caller has not decided yet.
    AwaitAccept,
    /// Accepted; the IDENT is checked at the next `process`.
    Accepted {
        access: Access,
        fresh_salt: u64,
    },
    Active {
        peer: PeerId,
        access: Access,
    },
    Closed,
}

#[derive(Debug)]
enum Input {
    Ident(Ident),
    Changeset(ClientVersion, Vec<u8>),
    Progress(UploadProgress),
    Mark(u64),
}

/// The server's end of one connection.
#[derive(Debug)]
pub struct ServerSession {
    limits: Limits,
    /// The largest frame to send: the smaller of ours and the client's.
    send_limit: usize,
    /// The last upload progress reported (downloads acknowledged) in this session.
    progress: ServerVersion,
    phase: ServerPhase,
    /// The client file this session holds bound in the realm, until `disconnect`.
    bound: Option<PeerId>,
    ident_received: bool,
    outbox: VecDeque<Vec<u8>>,
    inbox: VecDeque<Input>,
    reassembly: Reassembly<ClientVersion>,
    /// Download position: every entry up to here is sent (or is the client's own).
    next: ServerVersion,
    /// The entry being sent in chunks.
    sending: Option<Outgoing<DownloadHead>>,
    ack_sent: Option<ClientVersion>,
    marks: VecDeque<(u64, ServerVersion)>,
}

impl ServerSession {
    /// A session for a new connection.
    pub fn new(limits: Limits) -> Self {
        ServerSession {
            limits,
            send_limit: limits.max_message,
            progress: ServerVersion(0),
            phase: ServerPhase::AwaitBind,
            bound: None,
            ident_received: false,
            outbox: VecDeque::new(),
            inbox: VecDeque::new(),
            reassembly: Reassembly::default(),
            next: ServerVersion(0),
            sending: None,
            ack_sent: None,
            marks: VecDeque::new(),
        }
    }

    /// The bound peer, once IDENT has been accepted.
    pub fn peer(&self) -> Option<PeerId> {
        match self.phase {
            ServerPhase::Active { peer, .. } => Some(peer),
            _ => None,
        }
    }

    /// Whether the session has ended (an ERROR is queued or sent).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, ServerPhase::Closed)
    }

    /// Takes one frame from the client. Returns the BIND for the caller to decide on
    /// ([`accept`](Self::accept) or [`refuse`](Self::refuse)); any message that needs the realm
    /// waits for the next [`process`](Self::process). A bad frame ends the session: the ERROR
    /// is queued and returned.
    pub fn receive(&mut self, frame: &[u8]) -> Result<Option<BindRequest>, ErrorMessage> {
        if self.is_closed() {
            return Ok(None);
        }
        let result = self.receive_inner(frame);
        if let Err(e) = &result {
            self.close(e.clone());
        }
        result
    }

    fn receive_inner(&mut self, frame: &[u8]) -> Result<Option<BindRequest>, ErrorMessage> {
        let msg = ClientMessage::decode(frame, &self.limits).map_err(message_error)?;
        let order = |what: &str| {
            Err(ErrorMessage::new(
                ErrorCode::MessageOrder,
                format!("{what} is not allowed here"),
            ))
        };
        match msg {
            ClientMessage::Ping { timestamp } => {
                self.send(ServerMessage::Pong { timestamp });
                Ok(None)
            }
            ClientMessage::Bind(Bind {
                protocol_version,
                path,
                token,
                max_message,
            }) => {
                if !matches!(self.phase, ServerPhase::AwaitBind) {
                    return order("a second BIND");
                }
                if protocol_version != PROTOCOL_VERSION {
                    return Err(ErrorMessage::new(
                        ErrorCode::WrongProtocolVersion,
                        format!(
                            "the client speaks protocol {protocol_version}, the server {PROTOCOL_VERSION}"
                        ),
                    ));
                }
                if max_message < MIN_MESSAGE as u64 {
                    return Err(ErrorMessage::new(
                        ErrorCode::LimitsExceeded,
                        format!("the client accepts frames of {max_message} bytes, less than the minimum {MIN_MESSAGE}"),
                    ));
                }
                self.send_limit = self
                    .limits
                    .max_message
                    .min(usize::try_from(max_message).unwrap_or(usize::MAX));
                self.phase = ServerPhase::AwaitAccept;
                Ok(Some(BindRequest { path, token }))
            }
            ClientMessage::Ident(ident) => {
                if matches!(self.phase, ServerPhase::AwaitBind) || self.ident_received {
                    return order("IDENT before BIND or a second IDENT");
                }
                self.ident_received = true;
                self.inbox.push_back(Input::Ident(ident));
                Ok(None)
            }
            ClientMessage::Upload(UploadMessage { progress, chunks }) => {
                // Nothing is buffered for a client the caller has not accepted.
                let ServerPhase::Active { access, .. } = self.phase else {
                    return order("UPLOAD before the server's IDENT");
                };
                if !access.write && !chunks.is_empty() {
                    return Err(ErrorMessage::new(
                        ErrorCode::PermissionDenied,
                        "no write access to this realm",
                    ));
                }
                for chunk in chunks {
                    if let Some((cv, bytes)) = self.reassembly.push(chunk).map_err(chunk_error)? {
                        self.inbox.push_back(Input::Changeset(cv, bytes));
                    }
                }
                self.inbox.push_back(Input::Progress(progress));
                Ok(None)
            }
            ClientMessage::Mark { request } => {
                if !matches!(self.phase, ServerPhase::Active { .. }) {
                    return order("MARK before the server's IDENT");
                }
                self.inbox.push_back(Input::Mark(request));
                Ok(None)
            }
        }
    }

    /// The caller's answer to a [`BindRequest`]: the session may proceed with `access`
    /// (refused with permission denied if it cannot even read). `fresh_salt` is a random
    /// nonzero number, used if the client turns out to be new to the realm.
    pub fn accept(&mut self, access: Access, fresh_salt: u64) {
        if !matches!(self.phase, ServerPhase::AwaitAccept) {
            return;
        }
        if !access.read {
            self.refuse(ErrorCode::PermissionDenied, "no read access to this realm");
            return;
        }
        self.phase = ServerPhase::Accepted { access, fresh_salt };
    }

    /// The caller's answer to a [`BindRequest`]: refused (bad token, illegal path, no
    /// permission, ...).
    pub fn refuse(&mut self, code: ErrorCode, message: impl Into<String>) {
        if !self.is_closed() {
            self.close(ErrorMessage::new(code, message));
        }
    }

    fn close(&mut self, error: ErrorMessage) {
        // Frames already queued (an IDENT reply with a new salt, a PONG) still go out first.
        self.send(ServerMessage::Error(error));
        self.phase = ServerPhase::Closed;
        self.inbox.clear();
        self.reassembly.clear();
    }

    fn send(&mut self, msg: ServerMessage) {
        self.outbox.push_back(msg.encode());
    }

    /// Handles what the received frames asked of the realm (the IDENT check, integration of
    /// complete changesets, MARKs). Call it after `receive` (with the realm the BIND resolved
    /// to) and persist the events before transmitting.
    pub fn process<S: Store>(&mut self, realm: &mut ServerRealm<S>) -> Vec<ServerEvent> {
        let mut events = Vec::new();
        if self.is_closed() {
            // Closed by a bad frame in `receive`, which has no realm to release the file in.
            self.disconnect(realm);
            return events;
        }
        if let Err(e) = self.process_inner(realm, &mut events) {
            self.disconnect(realm);
            self.close(e.clone());
            events.push(ServerEvent::Closed(e));
        }
        events
    }

    fn process_inner<S: Store>(
        &mut self,
        realm: &mut ServerRealm<S>,
        events: &mut Vec<ServerEvent>,
    ) -> Result<(), ErrorMessage> {
        loop {
            match &self.phase {
                ServerPhase::Accepted { access, fresh_salt } => {
                    let (access, fresh_salt) = (*access, *fresh_salt);
                    let Some(Input::Ident(ident)) = self.inbox.front() else {
                        return Ok(());
                    };
                    let ident = *ident;
                    self.inbox.pop_front();
                    let (file, issued) = realm.check_ident(&ident, fresh_salt)?;
                    if issued {
                        events.push(ServerEvent::Registered {
                            peer: file.peer,
                            salt: file.salt,
                        });
                    }
                    self.phase = ServerPhase::Active {
                        peer: file.peer,
                        access,
                    };
                    self.bound = Some(file.peer);
                    self.next = ident.download.server;
                    self.progress = ident.download.server;
                    self.send(ServerMessage::Ident(IdentReply {
                        file,
                        server_file: realm.file_ident,
                        latest: realm.server.version(),
                    }));
                }
                ServerPhase::Active { peer, .. } => {
                    let peer = *peer;
                    let Some(input) = self.inbox.pop_front() else {
                        return Ok(());
                    };
                    match input {
                        Input::Ident(_) => {
                            return Err(ErrorMessage::new(
                                ErrorCode::MessageOrder,
                                "a second IDENT",
                            ))
                        }
                        Input::Changeset(cv, bytes) => {
                            if cv.0 == 0 {
                                return Err(ErrorMessage::new(
                                    ErrorCode::BadClientVersion,
                                    "client versions start at 1",
                                ));
                            }
                            let cs = decode(&bytes).map_err(|e| {
                                ErrorMessage::new(
                                    ErrorCode::BadChangeset,
                                    format!("changeset {cv}: {e}"),
                                )
                            })?;
                            if cs.client_version != cv {
                                return Err(ErrorMessage::new(
                                    ErrorCode::BadChangeset,
                                    format!(
                                        "chunks name client version {cv}, the changeset {}",
                                        cs.client_version
                                    ),
                                ));
                            }
                            if cv <= realm.server.last_integrated(peer) {
                                continue;
                            }
                            realm
                                .integrate(peer, cs.clone())
                                .map_err(|e| sync_error(&e))?;
                            events.push(ServerEvent::Integrated {
                                peer,
                                changeset: cs,
                            });
                        }
                        Input::Progress(p) => {
                            if p.server > realm.server.version() || p.server < self.progress {
                                return Err(ErrorMessage::new(
                                    ErrorCode::BadServerVersion,
                                    format!(
                                        "upload progress names server version {}, outside {}..={}",
                                        p.server,
                                        self.progress,
                                        realm.server.version()
                                    ),
                                ));
                            }
                            self.progress = p.server;
                        }
                        Input::Mark(request) => {
                            self.marks.push_back((request, realm.server.version()));
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// The next frame already queued (a PONG, an IDENT reply, an ERROR), without looking at
    /// the realm: what a caller sends before a BIND has resolved to a realm.
    pub fn poll_queued(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// The next frame to send: queued replies first, then DOWNLOADs while the client is
    /// behind (one message at a time, so a long history is never copied into a queue), the
    /// upload acknowledgement, and MARK replies. `None` when there is nothing to send.
    pub fn poll_transmit<S: Store>(&mut self, realm: &ServerRealm<S>) -> Option<Vec<u8>> {
        if let Some(frame) = self.poll_queued() {
            return Some(frame);
        }
        let ServerPhase::Active { peer, .. } = self.phase else {
            return None;
        };
        // A MARK is answered as soon as the download has passed its target, even while newer
        // entries keep coming.
        if let Some(&(request, target)) = self.marks.front() {
            // Every entry up to `next` is complete at the client, whatever is under way after.
            if self.next >= target {
                self.marks.pop_front();
                return Some(ServerMessage::Mark { request }.encode());
            }
        }
        let ack = realm.server.last_integrated(peer);
        let latest = realm.server.version();
        if self.next < latest || self.sending.is_some() || self.ack_sent != Some(ack) {
            let msg = self.download(realm, peer);
            self.ack_sent = Some(ack);
            return Some(ServerMessage::Download(msg).encode());
        }
        None
    }

    fn download<S: Store>(&mut self, realm: &ServerRealm<S>, peer: PeerId) -> DownloadMessage {
        let history = realm.server.history();
        let latest = realm.server.version();
        let mut budget = self.send_limit.saturating_sub(MESSAGE_OVERHEAD);
        let mut chunks = Vec::new();
        loop {
            if self.sending.is_none() {
                let next = history[self.next.0 as usize..]
                    .iter()
                    .position(|e| e.changeset.origin != peer)
                    .map(|i| ServerVersion(self.next.0 + i as u64 + 1));
                let Some(v) = next else {
                    self.next = latest;
                    break;
                };
                if budget <= CHUNK_OVERHEAD && !chunks.is_empty() {
                    break;
                }
                // The client's own entries before `v` need not be sent.
                self.next = ServerVersion(v.0 - 1);
                let head = DownloadHead {
                    server_version: v,
                    last_own: realm.server.own_at(peer, self.next),
                };
                self.sending = Some(Outgoing::new(
                    head,
                    realm.encoded[(v.0 - 1) as usize].clone(),
                ));
            }
            let Some(out) = &mut self.sending else {
                break;
            };
            chunks.push(out.next_chunk(&mut budget));
            if !out.is_done() {
                break;
            }
            self.next = out.head().server_version;
            self.sending = None;
        }
        let in_flight = self.sending.as_ref().map_or(0, |s| s.sent() as u64);
        DownloadMessage {
            cursor: Cursor {
                server: self.next,
                own: realm.server.own_at(peer, self.next),
            },
            latest,
            upload_ack: realm.server.last_integrated(peer),
            downloadable: realm
                .downloadable(peer, self.next)
                .saturating_sub(in_flight),
            chunks,
        }
    }

    /// The connection is gone (or is being closed): releases the client file so it can bind
    /// again. Call it once per session, whatever ended it.
    pub fn disconnect<S: Store>(&mut self, realm: &mut ServerRealm<S>) {
        if let Some(peer) = self.bound.take() {
            realm.unbind(peer);
        }
        self.phase = ServerPhase::Closed;
    }
}

fn message_error(e: MessageError) -> ErrorMessage {
    ErrorMessage::new(e.code(), e.to_string())
}

fn chunk_error(e: ChunkError) -> ErrorMessage {
    ErrorMessage::new(ErrorCode::MalformedMessage, e.to_string())
}

fn sync_error(e: &SyncError) -> ErrorMessage {
    let code = match e {
        SyncError::BadServerVersion { .. } => ErrorCode::BadServerVersion,
        SyncError::BadClientVersion { .. } => ErrorCode::BadClientVersion,
        SyncError::BadOrigin { .. } => ErrorCode::BadOriginFileIdent,
        _ if matches!(e.data_error(), Some(Error::SchemaMismatch { .. })) => {
            ErrorCode::InvalidSchemaChange
        }
        _ => ErrorCode::BadChangeset,
    };
    ErrorMessage::new(code, e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------

/// What a client keeps between sessions besides its [`Client`]: the identity the server
/// issued. Persist it when [`ClientEvent::Identified`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The client file's identity.
    pub file: FileIdent,
    /// The realm's file identifier.
    pub server_file: u64,
}

/// Where the client binds, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The realm's path.
    pub path: String,
    /// The token.
    pub token: String,
    /// Limits on frames (the server's must be at least as large).
    pub limits: Limits,
}

/// What a [`ClientSession`] reports.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// The server accepted the session; persist the identity.
    Identified(Identity),
    /// Downloaded history entries were integrated. A durable client logs the download: its
    /// local writes, the downloads and the acknowledgements, replayed in order through
    /// [`Client::write`], [`Client::integrate`] and [`Client::acknowledge`], rebuild it exactly.
    Integrated(Download),
    /// The server acknowledged local changesets up to this version.
    Acknowledged(ClientVersion),
    /// A MARK was answered: everything the server had when it got the MARK is integrated.
    MarkReached(u64),
    /// A PONG arrived for the PING sent at `timestamp`.
    Pong {
        /// The PING's timestamp.
        timestamp: u64,
    },
}

/// Why a client session ended.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server sent an ERROR.
    #[error("server error: {0}")]
    Server(ErrorMessage),
    /// The server sent something that breaks the protocol.
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    /// Downloaded changesets could not be integrated.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The server sent a frame or changeset beyond this client's [`Limits`].
    #[error("the server sent more than this client accepts: {0}")]
    TooLarge(MessageError),
    /// The server knows more of this client's history than the client has: the local realm
    /// went back (restored from a backup) and must be reset.
    #[error("the client's history diverged from the server's: {0}")]
    Diverged(String),
}

impl ClientError {
    /// What to do next.
    pub fn action(&self) -> Action {
        match self {
            ClientError::Server(e) => e.action,
            // A misbehaving server or transport: the history is intact, try again later.
            ClientError::Protocol(_) => Action::Retry,
            ClientError::Sync(_) => Action::Fatal,
            ClientError::Diverged(_) => Action::Reset,
            ClientError::TooLarge(_) => Action::Fatal,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientPhase {
    Disconnected,
    AwaitIdent,
    Active,
}

/// A client's end of the protocol: a [`Client`] plus what one connection needs.
#[derive(Debug)]
pub struct ClientSession<S: Store = MemoryStore> {
    client: Client<S>,
    config: ClientConfig,
    identity: Option<Identity>,
    latest: ServerVersion,
    phase: ClientPhase,
    outbox: VecDeque<Vec<u8>>,
    /// Every changeset up to this version has been sent in full on this connection.
    sent: ClientVersion,
    sending: Option<Outgoing<ClientVersion>>,
    reported: Option<ServerVersion>,
    /// MARKs asked for before the server's IDENT, sent once it arrives.
    marks: Vec<u64>,
    reassembly: Reassembly<DownloadHead>,
    sizes: HashMap<ClientVersion, u64>,
    upload_done: u64,
    download_done: u64,
    downloadable: u64,
    ping: Option<u64>,
}

impl<S: Store> ClientSession<S> {
    /// A session around `client`; `identity` is what an earlier session reported (None for a
    /// client file new to the realm).
    pub fn new(client: Client<S>, config: ClientConfig, identity: Option<Identity>) -> Self {
        ClientSession {
            client,
            config,
            identity,
            latest: ServerVersion(0),
            phase: ClientPhase::Disconnected,
            outbox: VecDeque::new(),
            sent: ClientVersion(0),
            sending: None,
            reported: None,
            marks: Vec::new(),
            reassembly: Reassembly::default(),
            sizes: HashMap::new(),
            upload_done: 0,
            download_done: 0,
            downloadable: 0,
            ping: None,
        }
    }

    /// The client (replica, versions, unacknowledged changesets).
    pub fn client(&self) -> &Client<S> {
        &self.client
    }

    /// The client, for local writes ([`Client::write`]); uploads pick them up by themselves.
    pub fn client_mut(&mut self) -> &mut Client<S> {
        &mut self.client
    }

    /// Where and how the client binds.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The identity, once the server issued it.
    pub fn identity(&self) -> Option<Identity> {
        self.identity
    }

    /// The latest server version the client has heard of (persist it with the client).
    pub fn latest(&self) -> ServerVersion {
        self.latest
    }

    /// Sets the latest server version heard of, as persisted by an earlier session.
    pub fn set_latest(&mut self, latest: ServerVersion) {
        self.latest = latest;
    }

    /// Whether the session is bound and syncing.
    pub fn is_active(&self) -> bool {
        self.phase == ClientPhase::Active
    }

    /// A connection is open: queues BIND and IDENT. Whatever a previous connection left
    /// half-sent is forgotten; uploads resume after the last acknowledged changeset.
    pub fn connect(&mut self) {
        self.outbox.clear();
        self.reassembly.clear();
        self.sending = None;
        self.sent = self.client.acknowledged();
        self.reported = None;
        self.ping = None;
        self.phase = ClientPhase::AwaitIdent;
        let file = self.identity.map_or(
            FileIdent {
                peer: self.client.peer(),
                salt: 0,
            },
            |i| i.file,
        );
        self.send(ClientMessage::Bind(Bind {
            protocol_version: PROTOCOL_VERSION,
            path: self.config.path.clone(),
            token: self.config.token.clone(),
            max_message: self.config.limits.max_message as u64,
        }));
        self.send(ClientMessage::Ident(Ident {
            file,
            server_file: self.identity.map_or(0, |i| i.server_file),
            download: self.client.cursor(),
            latest: self.latest.max(self.client.cursor().server),
            last_version: self.client.last_version(),
        }));
    }

    /// The connection dropped (or was closed).
    pub fn disconnected(&mut self) {
        self.phase = ClientPhase::Disconnected;
        self.outbox.clear();
        self.reassembly.clear();
        self.sending = None;
    }

    /// Queues a PING unless one is outstanding; returns whether it did.
    pub fn ping(&mut self, timestamp: u64) -> bool {
        if self.phase == ClientPhase::Disconnected || self.ping.is_some() {
            return false;
        }
        self.ping = Some(timestamp);
        self.send(ClientMessage::Ping { timestamp });
        true
    }

    /// Queues a MARK: [`ClientEvent::MarkReached`] reports when everything the server has now
    /// is integrated here.
    pub fn mark(&mut self, request: u64) {
        match self.phase {
            ClientPhase::Active => self.send(ClientMessage::Mark { request }),
            // The server takes MARKs only once it has answered the IDENT.
            ClientPhase::AwaitIdent => self.marks.push(request),
            ClientPhase::Disconnected => {}
        }
    }

    fn send(&mut self, msg: ClientMessage) {
        self.outbox.push_back(msg.encode());
    }

    /// Takes one frame from the server. An error ends the session (the caller closes the
    /// connection and, if the action is [`Action::Retry`], connects again after a backoff).
    pub fn handle(&mut self, frame: &[u8]) -> Result<Vec<ClientEvent>, ClientError> {
        let result = self.handle_inner(frame);
        if result.is_err() {
            self.disconnected();
        }
        result
    }

    fn handle_inner(&mut self, frame: &[u8]) -> Result<Vec<ClientEvent>, ClientError> {
        let protocol = |what: String| Err(ClientError::Protocol(what));
        let msg = match ServerMessage::decode(frame, &self.config.limits) {
            Ok(msg) => msg,
            // Waiting will not make a frame or changeset fit this client's limits.
            Err(e @ MessageError::TooLarge { .. }) => return Err(ClientError::TooLarge(e)),
            Err(e) => return protocol(e.to_string()),
        };
        let mut events = Vec::new();
        match (self.phase, msg) {
            (_, ServerMessage::Error(e)) => return Err(ClientError::Server(e)),
            (ClientPhase::Disconnected, _) => {
                return protocol("a message while disconnected".into())
            }
            (_, ServerMessage::Pong { timestamp }) => {
                if self.ping.take() != Some(timestamp) {
                    return protocol(format!("PONG for an unsent PING {timestamp}"));
                }
                events.push(ClientEvent::Pong { timestamp });
            }
            (ClientPhase::AwaitIdent, ServerMessage::Ident(reply)) => {
                if reply.file.peer != self.client.peer() {
                    return protocol(format!("IDENT for another peer {}", reply.file.peer));
                }
                let identity = Identity {
                    file: reply.file,
                    server_file: reply.server_file,
                };
                self.identity = Some(identity);
                self.latest = self.latest.max(reply.latest);
                self.phase = ClientPhase::Active;
                for request in std::mem::take(&mut self.marks) {
                    self.send(ClientMessage::Mark { request });
                }
                events.push(ClientEvent::Identified(identity));
            }
            (ClientPhase::Active, ServerMessage::Download(d)) => self.download(d, &mut events)?,
            (ClientPhase::Active, ServerMessage::Mark { request }) => {
                events.push(ClientEvent::MarkReached(request));
            }
            (_, other) => return protocol(format!("unexpected {}", server_message_name(&other))),
        }
        Ok(events)
    }

    fn download(
        &mut self,
        d: DownloadMessage,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientError> {
        let protocol = |what: String| Err(ClientError::Protocol(what));
        let before = self.client.cursor();
        if d.cursor.server < before.server || d.cursor.server > d.latest {
            return protocol(format!(
                "DOWNLOAD cursor {} outside {}..={}",
                d.cursor.server, before.server, d.latest
            ));
        }
        let mut entries: Vec<DownloadEntry> = Vec::new();
        for chunk in d.chunks {
            self.download_done += chunk.data.len() as u64;
            let done = self
                .reassembly
                .push(chunk)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let Some((head, bytes)) = done else { continue };
            let floor = entries.last().map_or(before.server, |e| e.server_version);
            if head.server_version <= floor
                || head.server_version > d.cursor.server
                || head.last_own > d.cursor.own
            {
                return protocol(format!(
                    "entry {} (after own {}) outside {floor}<..={} (own {})",
                    head.server_version, head.last_own, d.cursor.server, d.cursor.own
                ));
            }
            let changeset = decode(&bytes).map_err(|e| {
                ClientError::Protocol(format!("server version {}: {e}", head.server_version))
            })?;
            entries.push(DownloadEntry {
                server_version: head.server_version,
                last_own: head.last_own,
                changeset,
            });
        }
        let acked = self.client.acknowledged();
        if d.upload_ack.max(d.cursor.own) > self.client.last_version() {
            return Err(ClientError::Diverged(format!(
                "the server has integrated client version {} but the last one written here is {}",
                d.upload_ack.max(d.cursor.own),
                self.client.last_version()
            )));
        }
        if d.upload_ack < acked {
            return protocol(format!(
                "acknowledgement went back from {acked} to {}",
                d.upload_ack
            ));
        }
        self.downloadable = d.downloadable;
        self.latest = self.latest.max(d.latest);
        self.client.acknowledge(UploadAck {
            integrated: d.upload_ack,
        });
        let download = Download {
            entries,
            cursor: d.cursor,
            latest: d.latest,
        };
        let moves = !download.entries.is_empty() || download.cursor.server > before.server;
        self.client.integrate(download.clone())?;
        self.note_acknowledged(acked);
        if moves {
            events.push(ClientEvent::Integrated(download));
        }
        if self.client.acknowledged() > acked {
            events.push(ClientEvent::Acknowledged(self.client.acknowledged()));
        }
        Ok(())
    }

    /// Moves the sizes of newly acknowledged changesets from pending to transferred.
    fn note_acknowledged(&mut self, before: ClientVersion) {
        let now = self.client.acknowledged();
        if now > before {
            let mut done = 0;
            self.sizes.retain(|v, size| {
                let keep = *v > now;
                if !keep {
                    done += *size;
                }
                keep
            });
            self.upload_done += done;
        }
    }

    /// The next frame to send, or `None`. UPLOADs are made here, one message at a time, from
    /// the changesets not yet sent on this connection.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if let Some(frame) = self.outbox.pop_front() {
            return Some(frame);
        }
        if self.phase != ClientPhase::Active {
            return None;
        }
        let msg = self.upload()?;
        Some(ClientMessage::Upload(msg).encode())
    }

    fn upload(&mut self) -> Option<UploadMessage> {
        let mut budget = self
            .config
            .limits
            .max_message
            .saturating_sub(MESSAGE_OVERHEAD);
        let mut chunks = Vec::new();
        loop {
            if self.sending.is_none() {
                let floor = self.sent.max(self.client.acknowledged());
                let Some(cs) = self
                    .client
                    .unacknowledged()
                    .iter()
                    .find(|cs| cs.client_version > floor)
                else {
                    break;
                };
                if budget <= CHUNK_OVERHEAD && !chunks.is_empty() {
                    break;
                }
                let bytes = encode(cs);
                self.sizes.insert(cs.client_version, bytes.len() as u64);
                self.sending = Some(Outgoing::new(cs.client_version, bytes.into()));
            }
            let Some(out) = &mut self.sending else {
                break;
            };
            chunks.push(out.next_chunk(&mut budget));
            if !out.is_done() {
                break;
            }
            self.sent = out.head();
            self.sending = None;
        }
        let progress = UploadProgress {
            client: self.sent,
            server: self.client.cursor().server,
        };
        if chunks.is_empty() && self.reported == Some(progress.server) {
            return None;
        }
        self.reported = Some(progress.server);
        Some(UploadMessage { progress, chunks })
    }

    /// Upload progress: bytes of local changesets the server acknowledged, and those plus the
    /// ones still unacknowledged.
    pub fn upload_progress(&mut self) -> Progress {
        let floor = self.client.acknowledged();
        let mut pending = 0;
        for cs in self.client.unacknowledged() {
            if cs.client_version > floor {
                // Sizes are remembered so that polling progress does not re-encode.
                pending += *self
                    .sizes
                    .entry(cs.client_version)
                    .or_insert_with(|| encode(cs).len() as u64);
            }
        }
        Progress {
            transferred: self.upload_done,
            transferable: self.upload_done + pending,
        }
    }

    /// Download progress: bytes of history received, and those plus what the server last said
    /// remains.
    pub fn download_progress(&self) -> Progress {
        Progress {
            transferred: self.download_done,
            transferable: self.download_done + self.downloadable,
        }
    }
}

fn server_message_name(m: &ServerMessage) -> &'static str {
    match m {
        ServerMessage::Ident(_) => "IDENT",
        ServerMessage::Download(_) => "DOWNLOAD",
        ServerMessage::Mark { .. } => "MARK",
        ServerMessage::Pong { .. } => "PONG",
        ServerMessage::Error(_) => "ERROR",
    }
}
