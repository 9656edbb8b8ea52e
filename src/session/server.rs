//! The server's end of one connection: [`ServerSession`], driven by the caller with frames in
//! and frames out, over the realm the BIND resolved to.

use super::realm::{sync_error, ServerRealm};
use crate::model::{Changeset, ClientVersion, PeerId, ServerVersion, Timestamp};
use crate::store::Store;
use crate::sync::ReadRun;
use crate::wire::{
    decode_with, Action, Bind, ClientMessage, DownloadHead, DownloadMessage, ErrorCode,
    ErrorMessage, Ident, IdentReply, Limits, MessageError, Names, Outgoing, Reassembly,
    ServerMessage, Start, UploadMessage, UploadProgress, CHUNK_OVERHEAD, MESSAGE_OVERHEAD,
    MIN_MESSAGE, PROTOCOL_VERSION,
};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// What a server's caller is asked to decide: may this token open this realm? Its `Debug`
/// form leaves the token out.
#[derive(Clone, PartialEq, Eq)]
pub struct BindRequest {
    /// The realm path as sent (the caller resolves `/~/` and checks its form).
    pub path: String,
    /// The token.
    pub token: String,
}

impl std::fmt::Debug for BindRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindRequest")
            .field("path", &self.path)
            .field("token", &crate::wire::Redacted)
            .finish()
    }
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
    /// The names of the client's changesets, shared between them (and the history entries
    /// they become) instead of allocated for each.
    names: Names,
    /// Download position: every entry up to here is sent (or is the client's own).
    next: ServerVersion,
    /// The entry being sent in chunks.
    sending: Option<Outgoing<DownloadHead>>,
    /// The server's state being sent to a bootstrapping client, before any DOWNLOAD.
    state: Option<Outgoing<ServerVersion>>,
    ack_sent: Option<ClientVersion>,
    marks: VecDeque<(u64, ServerVersion)>,
    /// Bytes in `outbox`.
    queued: usize,
    /// The caller's clock reading and how far ahead of it a changeset may be stamped.
    clock: Option<(Timestamp, u64)>,
    /// Where the client's downloads are filtered by what its user may read, the run of
    /// entries whose filter was checked (spec/permissions.md section 2.5).
    read: Option<ReadRun>,
}

/// How many bytes of replies (PONGs, the IDENT reply, an ERROR) may wait in a session's outbox,
/// in frames of the session's `max_message`: a client answers at most a few at a time, so only
/// one that keeps sending PINGs without reading their PONGs gets near it. Its caller should
/// stop reading from such a client well before ([`ServerSession::backlog`]).
const MAX_BACKLOG_FRAMES: usize = 4;

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
            names: Names::default(),
            next: ServerVersion(0),
            sending: None,
            state: None,
            ack_sent: None,
            marks: VecDeque::new(),
            queued: 0,
            clock: None,
            read: None,
        }
    }

    /// Builds frames of at most `bytes` (at least [`MIN_MESSAGE`]; by default the session's
    /// `max_message`), and of at most the client's `max_message` as always. Call it before the
    /// BIND arrives. Smaller frames bound what a connection to a client that reads slowly holds
    /// in its buffers, at a little cost in framing; they change nothing else.
    pub fn with_frame_size(mut self, bytes: usize) -> Self {
        self.send_limit = bytes.max(MIN_MESSAGE).min(self.send_limit);
        self
    }

    /// Bytes of replies queued and not yet taken by [`poll_transmit`](Self::poll_transmit) or
    /// [`poll_queued`](Self::poll_queued). Every PING adds a PONG: a caller that keeps
    /// reading from a client that does not read grows it, so the caller stops reading while it
    /// is above its own bound and reads again once it drains. (DOWNLOADs are never queued: they
    /// are built when the caller asks for the next frame.) The session itself refuses PINGs
    /// once this passes four of its frames (104).
    pub fn backlog(&self) -> usize {
        self.queued
    }

    /// Bytes of an incomplete changeset buffered for reassembly (at most `max_changeset`): what
    /// a caller counts against a budget shared by its sessions.
    pub fn reassembling(&self) -> usize {
        self.reassembly.buffered()
    }

    /// The caller's clock (milliseconds, as changesets are stamped) and the furthest a
    /// changeset may be stamped ahead of it: an upload stamped later is refused with 232
    /// (retry), so one forged or wildly wrong timestamp cannot win every last-write-wins
    /// conflict and pin every client's clock. Set it before each [`process`](Self::process);
    /// without it no timestamp is refused.
    pub fn set_clock(&mut self, now: Timestamp, max_skew: u64) {
        self.clock = Some((now, max_skew));
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
                let bound = MAX_BACKLOG_FRAMES.saturating_mul(self.limits.max_message);
                if self.queued > bound {
                    return Err(ErrorMessage::new(
                        ErrorCode::LimitsExceeded,
                        format!("more than {bound} bytes of replies wait for a client that does not read them"),
                    ));
                }
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
                    .send_limit
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
                    // The client can still read: it reverts what it wrote by a reset.
                    return Err(ErrorMessage {
                        action: Action::Reset,
                        ..ErrorMessage::new(
                            ErrorCode::PermissionDenied,
                            "no write access to this realm",
                        )
                    });
                }
                for chunk in chunks {
                    if let Some((cv, bytes)) = self.reassembly.push(chunk).map_err(message_error)? {
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

    /// Like [`refuse`](Self::refuse), with the whole ERROR given: its action too (the
    /// reference server sends 104 with retry when its memory budget for changesets in transit
    /// is spent, a condition that passes).
    pub fn refuse_with(&mut self, error: ErrorMessage) {
        if !self.is_closed() {
            self.close(error);
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
        let frame = msg.encode();
        self.queued += frame.len();
        self.outbox.push_back(frame);
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
                    let ident = ident.clone();
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
                    if let Some(at) = ident.start.held() {
                        // A state, or a recovery (the state and what a reset needs): the client
                        // resumes one it partly holds if that is still the server's (both are
                        // functions of the version and the request), else it starts again
                        // from the current one.
                        let (v, bytes) = match &ident.start {
                            Start::Recovery(_, request) => {
                                // Where a client being reset stood says nothing of where it
                                // will stand: its progress starts again.
                                self.progress = ServerVersion(0);
                                let bytes = realm.server.recovery(file.peer, request);
                                (realm.server.version(), bytes.into())
                            }
                            // A filtered client starts from what its user may read.
                            _ if realm.server.reader(file.peer).is_some() => (
                                realm.server.version(),
                                realm.server.state_snapshot_for(file.peer).into(),
                            ),
                            _ => realm.state(),
                        };
                        let held = if at.version == v { at.offset } else { 0 };
                        let held = usize::try_from(held).unwrap_or(usize::MAX);
                        self.state = Some(Outgoing::resume(v, bytes, held));
                        self.next = v;
                    }
                    self.send(ServerMessage::Ident(IdentReply {
                        file,
                        server_file: realm.file_ident(),
                        latest: realm.server.version(),
                    }));
                }
                ServerPhase::Active { peer, .. } => {
                    let peer = *peer;
                    let Some(input) = self.inbox.pop_front() else {
                        return Ok(());
                    };
                    self.handle_input(realm, peer, input, events)?;
                }
                _ => return Ok(()),
            }
        }
    }

    /// Handles one input of an active session.
    fn handle_input<S: Store>(
        &mut self,
        realm: &mut ServerRealm<S>,
        peer: PeerId,
        input: Input,
        events: &mut Vec<ServerEvent>,
    ) -> Result<(), ErrorMessage> {
        match input {
            Input::Ident(_) => {
                return Err(ErrorMessage::new(ErrorCode::MessageOrder, "a second IDENT"))
            }
            Input::Changeset(cv, bytes) => {
                if cv.0 == 0 {
                    return Err(ErrorMessage::new(
                        ErrorCode::BadClientVersion,
                        "client versions start at 1",
                    ));
                }
                let cs = decode_with(&bytes, &mut self.names).map_err(|e| {
                    ErrorMessage::new(ErrorCode::BadChangeset, format!("changeset {cv}: {e}"))
                        .about_client(cv)
                })?;
                if cs.client_version != cv {
                    return Err(ErrorMessage::new(
                        ErrorCode::BadChangeset,
                        format!(
                            "chunks name client version {cv}, the changeset {}",
                            cs.client_version
                        ),
                    )
                    .about_client(cv));
                }
                if cv <= realm.server.last_integrated(peer) {
                    // A resend, recognised by version; a different changeset under it is an
                    // error, not a duplicate.
                    return realm.integrate(peer, cs).map_err(|e| sync_error(&e));
                }
                if let Some((now, max_skew)) = self.clock {
                    if cs.timestamp > now.saturating_add(max_skew) {
                        return Err(ErrorMessage::new(
                            ErrorCode::TimestampAhead,
                            format!(
                                "changeset {cv} is stamped {} ms, more than {max_skew} ms ahead of the server's clock ({now} ms): check the device's clock",
                                cs.timestamp
                            ),
                        ));
                    }
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
        Ok(())
    }

    /// The next frame already queued (a PONG, an IDENT reply, an ERROR), without looking at
    /// the realm: what a caller sends before a BIND has resolved to a realm.
    pub fn poll_queued(&mut self) -> Option<Vec<u8>> {
        let frame = self.outbox.pop_front()?;
        self.queued -= frame.len();
        Some(frame)
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
        // The state goes first, a piece a message: everything after it builds on it.
        if let Some(out) = &mut self.state {
            let mut budget = self.send_limit.saturating_sub(MESSAGE_OVERHEAD);
            let piece = out.next_chunk(&mut budget);
            if out.is_done() {
                self.state = None;
            }
            return Some(ServerMessage::State(piece).encode());
        }
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
        let checked = self.read.as_ref().map_or(latest, ReadRun::until);
        if self.sending.is_none()
            && self.next < latest
            && (self.read.is_none() || self.next >= checked)
        {
            match realm.server.read_run(peer, self.next) {
                Ok(run) => self.read = run,
                Err(e) => {
                    self.close(sync_error(&e));
                    return self.poll_queued();
                }
            }
        }
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
                let next = realm
                    .server
                    .next_download_in(peer, self.next, self.read.as_ref());
                let Some((v, bytes, last_own)) = next else {
                    // A filtered run ends where its filter was checked.
                    let end = self.read.as_ref().map_or(latest, ReadRun::until);
                    self.next = self.next.max(end);
                    break;
                };
                if budget <= CHUNK_OVERHEAD && !chunks.is_empty() {
                    break;
                }
                // The client's own entries before `v` need not be sent.
                self.next = ServerVersion(v.0 - 1);
                let head = DownloadHead {
                    server_version: v,
                    last_own,
                    fingerprint: history.fingerprint(v).unwrap_or_default(),
                };
                self.sending = Some(Outgoing::new(head, bytes));
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
        if let Some(run) = &self.read {
            realm.server.record_run(peer, run, self.progress, self.next);
        }
        let in_flight = self.sending.as_ref().map_or(0, |s| s.sent() as u64);
        DownloadMessage {
            cursor: realm.server.cursor_at(peer, self.next),
            latest,
            upload_ack: realm.server.last_integrated(peer),
            own_signature: realm.server.own_signature(peer, self.next).unwrap_or(0),
            downloadable: history
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
