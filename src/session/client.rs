//! The client's end of the protocol: [`ClientSession`], a [`Client`] plus what one connection
//! needs (the identity the server issued, what is half-sent or half-received, progress).

use super::Progress;
use crate::model::{ClientVersion, Cursor, PeerId, ServerVersion};
use crate::store::{MemoryStore, Store};
use crate::sync::{
    Client, Download, DownloadEntry, ResetCause, ResetError, ResetMode, ResetReport, SyncError,
    UploadAck,
};
use crate::wire::{
    decode_with, encode, Action, Bind, Chunk, ClientMessage, DownloadHead, DownloadMessage,
    ErrorCode, ErrorMessage, FileIdent, Ident, Limits, MessageError, Names, Outgoing, Reassembly,
    ServerMessage, Start, StatePosition, UploadMessage, UploadProgress, CHUNK_OVERHEAD,
    MESSAGE_OVERHEAD, PROTOCOL_VERSION,
};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// What a client keeps between sessions besides its [`Client`]: the identity the server
/// issued. Persist it when [`ClientEvent::Identified`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The client file's identity.
    pub file: FileIdent,
    /// The realm's file identifier.
    pub server_file: u64,
}

/// Where the client binds, and how. Its `Debug` form leaves the token out.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The realm's path.
    pub path: String,
    /// The token.
    pub token: String,
    /// Limits on frames (the server's must be at least as large). A state is bounded by
    /// `max_changeset`, as one changeset is.
    pub limits: Limits,
    /// Whether a new client (nothing written, nothing downloaded) asks for the server's state
    /// instead of its history (a bootstrap, spec/protocol.md section 11): what a new device
    /// wants, since it costs the state's size, not the history's.
    pub start_from_state: bool,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("path", &self.path)
            .field("token", &crate::wire::Redacted)
            .field("limits", &self.limits)
            .field("start_from_state", &self.start_from_state)
            .finish()
    }
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
    /// The client now holds the server's state at this version instead of the history
    /// before it: a durable client saves itself ([`Client::save`]) before anything else.
    StartedFromState(ServerVersion),
    /// The client was reset ([`ClientSession::begin_reset`]): it now holds the server's state
    /// and, with [`ResetMode::Recover`], its changesets replayed on it. A durable client saves
    /// itself ([`Client::save`]) before anything else.
    Reset(ResetReport),
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
    /// A reset could not be carried out (the client is left as it was).
    #[error("the reset failed: {0}")]
    Reset(#[from] ResetError),
    /// The client wrote while it was receiving the server's state, so the state no longer
    /// fits it: the next connection downloads the history instead (nothing is lost).
    #[error(
        "the client wrote while receiving the server's state; reconnect to download the history"
    )]
    StateAbandoned,
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
            ClientError::StateAbandoned => Action::Retry,
            // A reset for the same cause again, or a recovery that does not load: resetting
            // again cannot help.
            ClientError::Reset(_) => Action::Fatal,
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
    /// The names of downloaded changesets, shared between them instead of allocated for each.
    names: Names,
    sizes: HashMap<ClientVersion, u64>,
    upload_done: u64,
    download_done: u64,
    downloadable: u64,
    ping: Option<u64>,
    /// The server's state being received, kept across connections so a dropped one resumes.
    state: Option<PartialState>,
    /// Whether this connection's IDENT asked for the state, and it has not all arrived.
    awaiting_state: bool,
    /// A reset under way: the next connection asks for a recovery instead of the state, and
    /// the client takes the new identity if one is given.
    resetting: Option<(ResetCause, ResetMode, Option<PeerId>)>,
    /// With [`ResetMode::Manual`]: the client as it was before its last reset.
    previous: Option<Client<S>>,
}

/// The part of the server's state received so far.
#[derive(Debug)]
struct PartialState {
    version: ServerVersion,
    total: u64,
    bytes: Vec<u8>,
}

impl<S: Store + Default> ClientSession<S> {
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
            names: Names::default(),
            sizes: HashMap::new(),
            upload_done: 0,
            download_done: 0,
            downloadable: 0,
            ping: None,
            state: None,
            awaiting_state: false,
            resetting: None,
            previous: None,
        }
    }

    /// Why the session's error means the client must be reset, if it does: the server's
    /// error code and the versions it names (spec/protocol.md 9.3), or a sync error's cause.
    pub fn reset_cause(&self, error: &ClientError) -> Option<ResetCause> {
        let e = match error {
            ClientError::Server(e) if e.action == Action::Reset => e,
            ClientError::Sync(e) => return e.reset_cause(),
            ClientError::Diverged(_) => {
                return Some(ResetCause::ClientBehind {
                    integrated: self.client.acknowledged(),
                    written: self.client.last_version(),
                })
            }
            _ => return None,
        };
        let cursor = self.client.cursor();
        Some(match e.code {
            ErrorCode::BadServerFileIdent => ResetCause::UnknownRealm,
            ErrorCode::BadClientFileIdent => ResetCause::UnknownIdentity,
            ErrorCode::ClientFileExpired => ResetCause::Trimmed {
                horizon: e.server_version,
                needed: cursor.server,
            },
            ErrorCode::BadServerVersion => ResetCause::ServerBehind {
                integrated: cursor.server,
                latest: e.server_version,
            },
            ErrorCode::DivergingHistories => ResetCause::Diverged {
                version: cursor.server,
            },
            ErrorCode::ChangesetsLost => ResetCause::ChangesetsLost {
                acknowledged: self.client.acknowledged(),
                integrated: e.client_version,
            },
            ErrorCode::ClientVersionReused => ResetCause::ChangesetMismatch {
                client_version: e.client_version,
            },
            ErrorCode::BadClientVersion => ResetCause::ClientBehind {
                integrated: e.client_version,
                written: self.client.last_version(),
            },
            ErrorCode::PermissionDenied => ResetCause::WriteDenied,
            ErrorCode::ReadAccessChanged => ResetCause::ReadAccessChanged,
            _ if e.client_version.0 > 0 => ResetCause::Refused {
                client_version: e.client_version,
            },
            _ => return None,
        })
    }

    /// Resets the client on the next connection: it asks the server for a recovery and
    /// resets with `mode` when it has arrived ([`ClientEvent::Reset`]; `cause` is usually
    /// [`ClientSession::reset_cause`] of the error that ended the last session). A client the
    /// server does not know starts again as a first contact under its peer id; one that knew
    /// another realm file presents its identity without it.
    pub fn begin_reset(&mut self, cause: ResetCause, mode: ResetMode) {
        self.begin(cause, mode, None);
    }

    /// [`ClientSession::begin_reset`], and the client takes the new identity `peer`
    /// ([`Client::reset_into_as`]): what a copied client does when the server holds another
    /// changeset under one of its versions. The recovery comes under the old identity; once it
    /// has been carried out the connection ends ([`ClientSession::is_connected`] is false) and
    /// the next one makes a first contact under `peer`.
    pub fn begin_reset_as(&mut self, cause: ResetCause, mode: ResetMode, peer: PeerId) {
        self.begin(cause, mode, Some(peer));
    }

    fn begin(&mut self, cause: ResetCause, mode: ResetMode, peer: Option<PeerId>) {
        match cause {
            ResetCause::UnknownIdentity => self.identity = None,
            ResetCause::UnknownRealm => {
                if let Some(identity) = &mut self.identity {
                    identity.server_file = 0;
                }
            }
            _ => {}
        }
        if self.resetting.is_none() {
            // A partial state of a bootstrap is not what the reset waits for.
            self.state = None;
        }
        self.resetting = Some((cause, mode, peer));
    }

    /// Whether a connection is open (it may not be active yet). A reset that gave the client a
    /// new identity ends the connection by itself.
    pub fn is_connected(&self) -> bool {
        self.phase != ClientPhase::Disconnected
    }

    /// Whether a reset is under way.
    pub fn is_resetting(&self) -> bool {
        self.resetting.is_some()
    }

    /// With [`ResetMode::Manual`]: takes the client as it was before its last reset.
    pub fn take_previous(&mut self) -> Option<Client<S>> {
        self.previous.take()
    }

    /// Whether this connection asks for the server's state: the configuration wants it and
    /// the client is still new.
    fn wants_state(&self) -> bool {
        self.config.start_from_state
            && self.client.last_version().0 == 0
            && self.client.cursor() == Cursor::default()
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
        let held = self
            .state
            .as_ref()
            .map_or(StatePosition::default(), |p| StatePosition {
                version: p.version,
                offset: p.bytes.len() as u64,
            });
        let start = match self.resetting {
            Some((cause, ..)) => Start::Recovery(held, self.client.recovery_request(cause)),
            None if self.wants_state() => Start::State(held),
            None => Start::History,
        };
        self.awaiting_state = start != Start::History;
        self.send(ClientMessage::Ident(Ident {
            file,
            server_file: self.identity.map_or(0, |i| i.server_file),
            download: self.client.cursor(),
            latest: self.latest.max(self.client.cursor().server),
            last_version: self.client.last_version(),
            acknowledged: self.client.acknowledged(),
            acknowledged_signature: self.client.acknowledged_signature().unwrap_or(0),
            start,
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
            (ClientPhase::Active, ServerMessage::State(chunk)) if self.awaiting_state => {
                self.state_piece(chunk, &mut events)?;
            }
            (ClientPhase::Active, ServerMessage::Download(_)) if self.awaiting_state => {
                return protocol("DOWNLOAD before the state it was asked for".into());
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
            let changeset = decode_with(&bytes, &mut self.names).map_err(|e| {
                ClientError::Protocol(format!("server version {}: {e}", head.server_version))
            })?;
            entries.push(DownloadEntry {
                server_version: head.server_version,
                last_own: head.last_own,
                fingerprint: head.fingerprint,
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
            own_signature: (d.own_signature != 0).then_some(d.own_signature),
            latest: d.latest,
            integrated: d.upload_ack,
        };
        let moves = !download.entries.is_empty() || download.cursor.server > before.server;
        self.client.integrate_ref(&download)?;
        self.note_acknowledged(acked);
        if moves {
            events.push(ClientEvent::Integrated(download));
        }
        if self.client.acknowledged() > acked {
            events.push(ClientEvent::Acknowledged(self.client.acknowledged()));
        }
        Ok(())
    }

    /// Takes a piece of the server's state: a new state from offset 0 (the server's moved on
    /// since a dropped connection, or this is the first piece), or the continuation of the one
    /// held. The last piece makes the client start from it.
    fn state_piece(
        &mut self,
        chunk: Chunk<ServerVersion>,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientError> {
        let fresh = chunk.offset == 0;
        let held = self
            .state
            .as_ref()
            .filter(|p| !fresh || p.version == chunk.head);
        let continues = held.map_or(fresh, |p| {
            p.version == chunk.head
                && p.total == chunk.total
                && p.bytes.len() as u64 == chunk.offset
        });
        if !continues || chunk.total > self.config.limits.max_changeset {
            return Err(ClientError::Protocol(format!(
                "state piece {}..+{} of {} at version {} does not continue what was received",
                chunk.offset,
                chunk.data.len(),
                chunk.total,
                chunk.head
            )));
        }
        let state = self.state.get_or_insert_with(|| PartialState {
            version: chunk.head,
            total: chunk.total,
            bytes: Vec::new(),
        });
        if fresh {
            *state = PartialState {
                version: chunk.head,
                total: chunk.total,
                bytes: Vec::new(),
            };
        }
        state.bytes.extend_from_slice(&chunk.data);
        self.download_done += chunk.data.len() as u64;
        self.downloadable = state.total - state.bytes.len() as u64;
        if (state.bytes.len() as u64) < state.total {
            return Ok(());
        }
        let Some(state) = self.state.take() else {
            return Ok(());
        };
        self.awaiting_state = false;
        self.latest = self.latest.max(state.version);
        if let Some((cause, mode, peer)) = self.resetting {
            let reset = match peer {
                Some(peer) => {
                    (self.client).reset_into_as(S::default(), peer, &state.bytes, cause, mode)?
                }
                None => (self.client).reset_into(S::default(), &state.bytes, cause, mode)?,
            };
            self.resetting = None;
            self.previous = reset.previous;
            self.sent = self.client.acknowledged();
            self.sizes.clear();
            if peer.is_some() {
                // This connection is bound to the old identity: the new one makes a first
                // contact on the next.
                self.identity = None;
                self.disconnected();
            }
            events.push(ClientEvent::Reset(reset.report));
            return Ok(());
        }
        if !self.wants_state() {
            return Err(ClientError::StateAbandoned);
        }
        (self.client.start_from_state(&state.bytes))
            .map_err(|e| ClientError::Protocol(format!("the server's state: {e}")))?;
        events.push(ClientEvent::StartedFromState(state.version));
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
        ServerMessage::State(_) => "STATE",
    }
}
