//! A [`ServerRealm`] and up to three [`ServerSession`]s fed arbitrary frame sequences.
//!
//! The bytes are read as actions on session slots, in any interleaving: raw frames, and
//! structurally valid BIND, IDENT, UPLOAD (chunks of real changesets written by model clients,
//! corrupted ones, hostile hand-made ones, or arbitrary bytes), MARK and PING messages; the
//! caller's answer to a BIND; `process`; `poll_transmit`; disconnects and reconnects. The model
//! clients (one per peer 1 to 3) write through the transaction API and download straight from
//! the realm, so their uploads carry plausible versions and reach the merge.
//!
//! Checked throughout:
//! - nothing panics;
//! - a session that answers a frame (or a `process`) with an error is closed, and its next and
//!   only frame is that ERROR;
//! - the realm's state equals its history replayed into a fresh replica after every `process`
//!   (a refused changeset leaves nothing half-applied);
//! - `poll_transmit` runs dry within a bound set by what there is to send, every frame it gives
//!   decodes under the session's limits, DOWNLOAD chunks continue each other and reassemble to
//!   exactly the history entries of other peers, and cursors never go back;
//! - a client file is refused as bound elsewhere only while another session holds it;
//! - replaying the session events (`Registered`, `Integrated`) into a fresh realm rebuilds the
//!   same history, as the persistence contract promises.

use super::input::Input;
use super::{ops, state};
use objsync::session::{Access, ServerEvent, ServerRealm, ServerSession};
use objsync::sync::{
    Checkpoint, Client, Cursor, RecoveryRequest, ResetCause, ResetError, ResetMode,
};
use objsync::wire::{decode, encode};
use objsync::wire::{
    Bind, Chunk, ClientMessage, DownloadHead, ErrorCode, ErrorMessage, FileIdent, Ident, Limits,
    Reassembly, ServerMessage, Start, StatePosition, UploadMessage, UploadProgress, CHUNK_OVERHEAD,
    MESSAGE_OVERHEAD, MIN_MESSAGE, PROTOCOL_VERSION,
};
use objsync::ElemType;
use objsync::{
    Changeset, ClientVersion, Decimal128, Fate, Fingerprint, Instruction, ObjKey, ObjRef, ObjectId,
    ObjectType, Op, OpId, PeerId, PropType, Property, Replica, ScalarKind, ServerVersion, Value,
};
use std::collections::HashMap;

const SLOTS: usize = 3;
const MODELS: u64 = 3;
const MAX_ACTIONS: usize = 128;

/// What the realm's caller persists, in order.
enum Logged {
    Registered(PeerId, u64),
    Integrated(PeerId, Changeset),
}

/// One connection.
struct Slot {
    session: ServerSession,
    /// A BIND the caller has not answered yet.
    pending_bind: bool,
    /// The peer the last IDENT named.
    ident_peer: Option<PeerId>,
    /// Whether that IDENT asked for a recovery: then its STATE pieces are one, not the
    /// server's state.
    recovering: bool,
    /// The largest frame the client accepts: the server's limit until a BIND names a smaller
    /// one.
    send_limit: usize,
    downloads: Reassembly<DownloadHead>,
    cursor: Cursor,
    /// The server's state being received (a STATE sequence): its version, the offset of the
    /// next piece, and the bytes received here.
    state: Option<(ServerVersion, u64, Vec<u8>)>,
    /// Frames received: each may queue one reply (PONG, MARK).
    frames_in: usize,
}

struct Harness {
    realm: ServerRealm,
    limits: Limits,
    slots: [Option<Slot>; SLOTS],
    models: Vec<Client>,
    salts: HashMap<PeerId, u64>,
    log: Vec<Logged>,
    replay: Replica,
    replayed: usize,
    history_bytes: usize,
}

/// Runs the actions in `data`.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let file_ident = 1 + input.below(2) as u64;
    // Small frames cut changesets into many chunks; the protocol's minimum frame still holds
    // a chunk with data and the fixed fields, so every frame the server sends must fit.
    let limits = if input.bool() {
        Limits::default()
    } else {
        Limits {
            max_message: MIN_MESSAGE + input.below(256),
            max_changeset: 2048,
            ..Limits::default()
        }
    };
    let schema = ops::schema(&mut input);
    let mut models: Vec<Client> = (1..=MODELS).map(|p| Client::new(PeerId(p))).collect();
    models[0]
        .write(1, |tx| {
            for t in &schema {
                tx.add_type(t.clone())?;
            }
            Ok(())
        })
        .expect("the initial schema is valid");
    let mut h = Harness {
        realm: ServerRealm::new(file_ident),
        limits,
        slots: [None, None, None],
        models,
        salts: HashMap::new(),
        log: Vec::new(),
        replay: Replica::new(PeerId(0)),
        replayed: 0,
        history_bytes: 0,
    };
    for _ in 0..MAX_ACTIONS {
        if input.is_empty() {
            break;
        }
        let slot = input.below(SLOTS);
        match input.below(14) {
            0 => {
                h.disconnect(slot);
                h.slot(slot);
            }
            1 => h.disconnect(slot),
            2 => {
                let frame = input.bytes(48).to_vec();
                h.deliver(&mut input, slot, frame);
            }
            3 => {
                let msg = bind(&mut input, &limits);
                h.deliver(&mut input, slot, msg.encode());
            }
            4 => {
                let msg = h.ident(&mut input);
                h.deliver(&mut input, slot, msg.encode());
            }
            5 => h.upload_model(&mut input, slot),
            6 => {
                let peer = h.peer_for(&mut input, slot);
                let cs = h.hostile_changeset(&mut input, peer);
                let bytes = encode(&cs);
                h.upload_bytes(&mut input, slot, vec![(cs.client_version, bytes)]);
            }
            7 => {
                let cv = ClientVersion(input.small_or_any());
                let bytes = input.bytes(64).to_vec();
                h.upload_bytes(&mut input, slot, vec![(cv, bytes)]);
            }
            8 => {
                let msg = ClientMessage::Mark {
                    request: input.small_or_any(),
                };
                h.deliver(&mut input, slot, msg.encode());
            }
            9 => {
                let msg = ClientMessage::Ping {
                    timestamp: input.small_or_any(),
                };
                h.deliver(&mut input, slot, msg.encode());
            }
            10 => h.decide(&mut input, slot),
            11 => h.process(slot),
            12 => {
                let n = input.below(4);
                h.poll(slot, (n > 0).then_some(n));
            }
            _ => h.advance_model(&mut input),
        }
    }
    for slot in 0..SLOTS {
        if h.slots[slot].is_some() {
            h.process(slot);
        }
        if h.slots[slot].is_some() {
            h.poll(slot, None);
        }
    }
    h.check_rebuild(file_ident);
}

fn bind(input: &mut Input<'_>, limits: &Limits) -> ClientMessage {
    let protocol_version = if input.one_in(8) {
        u32::from(input.byte())
    } else {
        PROTOCOL_VERSION
    };
    let max_message = match input.below(8) {
        0 => u64::from(input.byte()),
        1 => input.u64(),
        2 => (MIN_MESSAGE + input.below(256)) as u64,
        _ => limits.max_message as u64,
    };
    let texts = ["/a", "", "/~/notes", "x\u{0}y", "\u{1F600}"];
    ClientMessage::Bind(Bind {
        protocol_version,
        path: input.pick(&texts).to_string(),
        token: input.pick(&texts).to_string(),
        max_message,
    })
}

impl Harness {
    /// Slot `i`'s connection, opened if there is none: a frame for a closed slot comes on a
    /// new connection.
    fn slot(&mut self, i: usize) -> &mut Slot {
        self.slots[i].get_or_insert_with(|| Slot {
            session: ServerSession::new(self.limits),
            pending_bind: false,
            ident_peer: None,
            recovering: false,
            send_limit: self.limits.max_message,
            downloads: Reassembly::default(),
            cursor: Cursor::default(),
            state: None,
            frames_in: 0,
        })
    }

    /// The connection is gone: the caller tells the session, once.
    fn disconnect(&mut self, i: usize) {
        if let Some(mut s) = self.slots[i].take() {
            s.session.disconnect(&mut self.realm);
        }
    }

    fn deliver(&mut self, input: &mut Input<'_>, i: usize, frame: Vec<u8>) {
        let s = self.slot(i);
        s.frames_in += 1;
        let decoded = ClientMessage::decode(&frame, &Limits::default());
        let was_closed = s.session.is_closed();
        match s.session.receive(&frame) {
            Ok(Some(_bind)) => {
                assert!(!was_closed, "a closed session took a BIND");
                let Ok(ClientMessage::Bind(bind)) = decoded else {
                    panic!("a BIND request from {decoded:?}");
                };
                let client_limit = usize::try_from(bind.max_message).unwrap_or(usize::MAX);
                s.send_limit = s.send_limit.min(client_limit);
                s.pending_bind = true;
                // The caller usually answers at once, sometimes after more frames arrived.
                if !input.one_in(4) {
                    self.decide(input, i);
                }
            }
            Ok(None) => {
                // Only an IDENT the session took names its peer and where its download
                // starts; a refused second one does not.
                if let Ok(ClientMessage::Ident(ident)) = &decoded {
                    if !was_closed {
                        s.ident_peer = Some(ident.file.peer);
                        s.recovering = matches!(ident.start, Start::Recovery(..));
                        s.cursor = ident.download;
                    }
                }
            }
            Err(e) => {
                assert!(!was_closed, "a closed session answered a frame with {e}");
                self.expect_closed(i, Some(&e));
            }
        }
    }

    /// The caller's answer to a pending BIND.
    fn decide(&mut self, input: &mut Input<'_>, i: usize) {
        let Some(s) = self.slots[i].as_mut() else {
            return;
        };
        if !std::mem::take(&mut s.pending_bind) {
            return;
        }
        let fresh_salt = input.small_or_any();
        match input.below(8) {
            0 => {
                let code = *input.pick(ErrorCode::ALL);
                s.session.refuse(code, "refused by the caller");
                let expected = ErrorMessage::new(code, "refused by the caller");
                self.expect_closed(i, Some(&expected));
            }
            b => {
                let access = Access {
                    read: b != 1,
                    write: b != 2,
                };
                s.session.accept(access, fresh_salt);
                if !access.read {
                    self.expect_closed(i, None);
                }
            }
        }
    }

    /// The session must be closed, with `error` (or some error) queued as its last frame;
    /// replies queued before the error (an IDENT reply, PONGs) may still precede it. The caller
    /// sends them and drops the connection.
    fn expect_closed(&mut self, i: usize, error: Option<&ErrorMessage>) {
        let s = self.slots[i].as_mut().expect("a session");
        assert!(s.session.is_closed(), "an error left the session open");
        let before_error = s.frames_in + 1;
        for _ in 0..=before_error {
            let s = self.slots[i].as_mut().expect("a session");
            let frame = s
                .session
                .poll_transmit(&self.realm)
                .expect("a closed session queues its ERROR");
            if let Ok(ServerMessage::Error(e)) = ServerMessage::decode(&frame, &Limits::default()) {
                if let Some(expected) = error {
                    assert_eq!(&e, expected, "the ERROR sent is not the error returned");
                }
                assert_eq!(
                    s.session.poll_transmit(&self.realm),
                    None,
                    "a closed session sends more after its ERROR"
                );
                self.disconnect(i);
                return;
            }
            self.check_frame(i, &frame);
        }
        panic!("a closed session sends more than it had queued before its ERROR");
    }

    fn process(&mut self, i: usize) {
        self.slot(i);
        let s = self.slots[i].as_mut().expect("opened");
        let events = s.session.process(&mut self.realm);
        let ident_peer = s.ident_peer;
        let mut closed = None;
        for ev in events {
            assert!(closed.is_none(), "events after Closed");
            match ev {
                ServerEvent::Registered { peer, salt } => {
                    // Issued again if a first contact claims the id afresh (its reply was lost).
                    assert_ne!(salt, 0, "a zero salt was issued");
                    self.salts.insert(peer, salt);
                    self.log.push(Logged::Registered(peer, salt));
                }
                ServerEvent::Integrated { peer, changeset } => {
                    self.log.push(Logged::Integrated(peer, changeset));
                }
                ServerEvent::Closed(e) => closed = Some(e),
            }
        }
        self.check_realm();
        if let Some(e) = closed {
            if e.code == ErrorCode::ClientFileBound {
                let peer = ident_peer.expect("the IDENT named a peer");
                let holders = (0..SLOTS)
                    .filter(|&j| j != i)
                    .filter_map(|j| self.slots[j].as_ref())
                    .filter(|o| o.session.peer() == Some(peer))
                    .count();
                assert!(
                    holders > 0,
                    "peer {peer} refused as bound, but no live session holds it"
                );
            }
            self.expect_closed(i, Some(&e));
        }
    }

    /// The realm equals its history replayed (entries are only ever appended).
    fn check_realm(&mut self) {
        let history = self.realm.server().history();
        for (_, e) in history.after(ServerVersion(self.replayed as u64)) {
            self.replay
                .apply_changeset(&e.changeset)
                .expect("a history entry replays");
            self.history_bytes += encode(&e.changeset).len();
        }
        if self.replayed < history.len() {
            self.replayed = history.len();
            assert_eq!(
                state(&self.replay),
                state(self.realm.server().replica()),
                "the realm differs from its history replayed"
            );
        }
    }

    /// Takes up to `max` frames (all if `None`, which must end).
    fn poll(&mut self, i: usize, max: Option<usize>) {
        let history_len = self.realm.server().history().len();
        let bound = 16 + 2 * self.history_bytes + 4 * history_len + 2 * self.slot(i).frames_in;
        let mut sent = 0;
        loop {
            if max.is_some_and(|m| sent >= m) {
                return;
            }
            let s = self.slots[i].as_mut().expect("opened");
            let Some(frame) = s.session.poll_transmit(&self.realm) else {
                break;
            };
            sent += 1;
            assert!(sent <= bound, "poll_transmit does not run dry");
            self.check_frame(i, &frame);
        }
        let s = self.slots[i].as_mut().expect("opened");
        assert_eq!(
            s.session.poll_transmit(&self.realm),
            None,
            "poll_transmit gave more after None"
        );
    }

    fn check_frame(&mut self, i: usize, frame: &[u8]) {
        let s = self.slots[i].as_ref().expect("a session");
        let client_limits = Limits {
            max_message: s.send_limit,
            ..self.limits
        };
        let msg = ServerMessage::decode(frame, &client_limits)
            .unwrap_or_else(|e| panic!("the server sent a frame the client's limits refuse: {e}"));
        let server = self.realm.server();
        let salts = &self.salts;
        let s = self.slots[i].as_mut().expect("a session");
        match msg {
            // Errors are returned by `receive` or reported by `process`, which end in
            // `expect_closed`: an ERROR showing up here was never reported.
            ServerMessage::Error(e) => panic!("an ERROR ({e}) nobody was told about"),
            ServerMessage::Ident(reply) => {
                assert_eq!(
                    Some(reply.file.peer),
                    s.ident_peer,
                    "IDENT for another peer"
                );
                assert_eq!(salts.get(&reply.file.peer), Some(&reply.file.salt));
            }
            ServerMessage::Download(d) => {
                let peer = s.session.peer().expect("DOWNLOAD on a bound session");
                assert!(
                    d.cursor.server >= s.cursor.server,
                    "the download cursor went back"
                );
                assert!(d.cursor.server <= server.version());
                assert_eq!(d.cursor.own, server.own_at(peer, d.cursor.server));
                assert_eq!(d.upload_ack, server.last_integrated(peer));
                s.cursor = d.cursor;
                for chunk in d.chunks {
                    let done = s
                        .downloads
                        .push(chunk)
                        .unwrap_or_else(|e| panic!("DOWNLOAD chunks out of sequence: {e}"));
                    if let Some((head, bytes)) = done {
                        let v = head.server_version;
                        let entry = server.history().get(v).expect("the entry exists");
                        assert_ne!(entry.changeset.origin, peer, "a peer got its own entry");
                        assert_eq!(head.last_own, server.own_at(peer, ServerVersion(v.0 - 1)));
                        assert_eq!(decode(&bytes).as_ref(), Ok(&entry.changeset));
                    }
                }
            }
            ServerMessage::State(piece) => {
                // A new device's state comes before any download; a recovery is for a client
                // that has downloaded already.
                assert!(
                    s.recovering || s.cursor == Cursor::default(),
                    "a STATE after downloads"
                );
                assert!(piece.head <= server.version(), "a state from the future");
                // A resumed state starts where the IDENT said the client stood; the bytes
                // before it were never sent here, so only the sequence can be checked.
                let (v, next, bytes) = s
                    .state
                    .get_or_insert_with(|| (piece.head, piece.offset, Vec::new()));
                assert_eq!(*v, piece.head, "STATE pieces of two versions");
                assert_eq!(piece.offset, *next, "STATE pieces out of sequence");
                *next += piece.data.len() as u64;
                bytes.extend_from_slice(&piece.data);
                if piece.is_last() {
                    if bytes.len() as u64 == piece.total {
                        let peer = s.ident_peer.expect("a STATE after an IDENT");
                        if s.recovering {
                            // A recovery for this peer: a fresh client of it takes it (or
                            // stops for a merge it cannot make), it never fails to load.
                            let reset = Client::new(peer).reset(
                                bytes,
                                ResetCause::Requested,
                                ResetMode::Discard,
                            );
                            assert!(
                                !matches!(reset, Err(ResetError::Snapshot(_))),
                                "the recovery loads: {:?}",
                                reset.err()
                            );
                        } else {
                            let client =
                                Client::bootstrap(peer, bytes).expect("the server's state loads");
                            assert_eq!(client.cursor().server, piece.head);
                            if piece.head == server.version() {
                                assert_eq!(state(client.replica()), state(server.replica()));
                            }
                        }
                    }
                    s.cursor.server = piece.head;
                    s.state = None;
                }
            }
            ServerMessage::Mark { .. } | ServerMessage::Pong { .. } => {}
        }
    }

    fn model(&mut self, peer: PeerId) -> Option<&mut Client> {
        let k = usize::try_from(peer.0).ok()?.checked_sub(1)?;
        self.models.get_mut(k)
    }

    fn ident(&mut self, input: &mut Input<'_>) -> ClientMessage {
        let peer = match input.below(16) {
            0 => PeerId(0),
            1 => PeerId(1 << 63),
            2 => PeerId(input.u64()),
            b => PeerId(1 + b as u64 % MODELS),
        };
        let known = self.salts.get(&peer).copied().unwrap_or(0);
        let salt = match input.below(4) {
            0 => 0,
            1 => input.small_or_any(),
            _ => known,
        };
        let server_file = match input.below(4) {
            0 => 0,
            1 => input.small_or_any(),
            _ => self.realm.file_ident(),
        };
        let model = (self.model(peer)).map(|m| {
            let signature = m.acknowledged_signature().unwrap_or(0);
            (m.cursor(), m.last_version(), (m.acknowledged(), signature))
        });
        let (model_cursor, model_last, model_acked) = model.unwrap_or_default();
        let download = match input.below(4) {
            0 => Cursor {
                server: ServerVersion(input.small_or_any()),
                own: ClientVersion(input.small_or_any()),
                fingerprint: Fingerprint(input.small_or_any()),
            },
            1 => Cursor::default(),
            _ => model_cursor,
        };
        let latest = if input.one_in(4) {
            ServerVersion(input.small_or_any())
        } else {
            download.server
        };
        let last_version = if input.one_in(8) {
            ClientVersion(input.small_or_any())
        } else {
            model_last
        };
        let (acknowledged, acknowledged_signature) = if input.one_in(8) {
            (ClientVersion(input.small_or_any()), input.small_or_any())
        } else {
            model_acked
        };
        let held = StatePosition {
            version: ServerVersion(input.below(4) as u64),
            offset: input.below(64) as u64,
        };
        let start = match input.below(8) {
            0 => Start::State(held),
            1 => {
                let checkpoints = (0..input.below(4))
                    .map(|_| Checkpoint {
                        version: ServerVersion(input.small_or_any()),
                        fingerprint: Fingerprint(input.small_or_any()),
                    })
                    .collect();
                let diverged_from = input.one_in(4).then(|| ClientVersion(input.small_or_any()));
                let request = RecoveryRequest {
                    checkpoints,
                    diverged_from,
                };
                Start::Recovery(held, request)
            }
            _ => Start::History,
        };
        ClientMessage::Ident(Ident {
            file: FileIdent { peer, salt },
            server_file,
            download,
            latest,
            last_version,
            acknowledged,
            acknowledged_signature,
            start,
        })
    }

    /// The peer a slot's uploads claim to come from: its IDENT's, or a model's.
    fn peer_for(&mut self, input: &mut Input<'_>, i: usize) -> PeerId {
        match self.slot(i).ident_peer {
            Some(p) if !input.one_in(8) => p,
            _ => PeerId(1 + input.below(MODELS as usize) as u64),
        }
    }

    /// Uploads a model client's changesets, perhaps re-sending old ones or corrupting one.
    fn upload_model(&mut self, input: &mut Input<'_>, i: usize) {
        let peer = self.peer_for(input, i);
        let integrated = self.realm.server().last_integrated(peer);
        let Some(model) = self.model(peer) else {
            return;
        };
        let floor = match input.below(4) {
            0 => ClientVersion(0),
            _ => integrated,
        };
        let count = 1 + input.below(3);
        let mut pieces: Vec<(ClientVersion, Vec<u8>)> = model
            .unacknowledged()
            .iter()
            .filter(|cs| cs.client_version > floor)
            .take(count)
            .map(|cs| (cs.client_version, encode(cs)))
            .collect();
        if input.one_in(6) {
            corrupt(input, &mut pieces);
        }
        self.upload_bytes(input, i, pieces);
    }

    /// Sends changeset encodings cut into chunks, as a client does: chunks small enough for
    /// the frame limit, one to three UPLOAD messages (one per chunk under tight limits). Now
    /// and then the limit is ignored, which the server must refuse.
    fn upload_bytes(
        &mut self,
        input: &mut Input<'_>,
        i: usize,
        pieces: Vec<(ClientVersion, Vec<u8>)>,
    ) {
        let obey = !input.one_in(16);
        let fits = self.limits.max_message - MESSAGE_OVERHEAD - CHUNK_OVERHEAD;
        let tight = self.limits.max_message < Limits::default().max_message;
        let mut chunks = Vec::new();
        for (head, bytes) in &pieces {
            let room = if input.bool() { 16 } else { 256 };
            let mut size = 1 + input.below(room);
            if obey {
                size = size.min(fits);
            }
            let total = bytes.len() as u64;
            let mut offset = 0;
            loop {
                let end = (offset + size).min(bytes.len());
                chunks.push(Chunk {
                    head: *head,
                    total,
                    offset: offset as u64,
                    data: bytes[offset..end].to_vec(),
                });
                offset = end;
                if offset >= bytes.len() {
                    break;
                }
            }
        }
        let last = pieces.last().map_or(ClientVersion(0), |p| p.0);
        let peer = self.slot(i).ident_peer;
        let server = peer
            .and_then(|p| self.model(p))
            .map_or(ServerVersion(0), |m| m.cursor().server);
        let per = if tight && obey {
            1
        } else {
            chunks.len().div_ceil(1 + input.below(3)).max(1)
        };
        let mut groups: Vec<Vec<Chunk<ClientVersion>>> =
            chunks.chunks(per).map(<[_]>::to_vec).collect();
        if groups.is_empty() {
            groups.push(Vec::new());
        }
        for group in groups {
            let progress = if input.one_in(8) {
                UploadProgress {
                    client: ClientVersion(input.small_or_any()),
                    server: ServerVersion(input.small_or_any()),
                }
            } else {
                UploadProgress {
                    client: last,
                    server,
                }
            };
            let msg = ClientMessage::Upload(UploadMessage {
                progress,
                chunks: group,
            });
            self.deliver(input, i, msg.encode());
            if self.slots[i].is_none() {
                return;
            }
        }
    }

    /// A model client writes, then maybe catches up with the realm directly.
    fn advance_model(&mut self, input: &mut Input<'_>) {
        let k = input.below(MODELS as usize);
        let t = u64::from(input.byte());
        let model = &mut self.models[k];
        model
            .write(t, |tx| {
                ops::transaction(input, tx, 4);
                Ok(())
            })
            .expect("skipped writes never fail the transaction");
        if input.bool() {
            let d = self
                .realm
                .server()
                .download(model.peer(), model.cursor(), None)
                .expect("the realm's history is never trimmed here");
            // Hostile entries the realm accepted may not merge here; the model then stops
            // following, which only makes its later uploads stale.
            let _ = model.integrate(d);
        }
    }

    /// A changeset made by hand rather than by the transaction API: any instruction, any names,
    /// any ids, any fate; its versions are usually the ones the realm expects next, so it gets
    /// past the version checks to the merge and the store.
    fn hostile_changeset(&self, input: &mut Input<'_>, peer: PeerId) -> Changeset {
        let server = self.realm.server();
        let origin = if input.one_in(16) {
            PeerId(input.small_or_any())
        } else {
            peer
        };
        let mut cs = Changeset::new(origin, u64::from(input.byte()));
        cs.client_version = if input.one_in(8) {
            ClientVersion(input.small_or_any())
        } else {
            ClientVersion(server.last_integrated(peer).0 + 1)
        };
        let latest = server.version().0;
        cs.base_version = if input.one_in(16) {
            ServerVersion(input.small_or_any())
        } else {
            ServerVersion(latest - (input.small_or_any() % (latest + 1)))
        };
        for _ in 0..1 + input.below(6) {
            cs.ops.push(hostile_op(input));
        }
        cs
    }

    /// Rebuilds the realm from the logged events and compares.
    fn check_rebuild(&self, file_ident: u64) {
        let mut rebuilt = ServerRealm::new(file_ident);
        for entry in &self.log {
            match entry {
                Logged::Registered(peer, salt) => rebuilt.register(*peer, *salt),
                Logged::Integrated(peer, cs) => rebuilt
                    .integrate(*peer, cs.clone())
                    .unwrap_or_else(|e| panic!("a logged changeset does not integrate again: {e}")),
            }
        }
        assert_eq!(
            rebuilt.server().history(),
            self.realm.server().history(),
            "the rebuilt history differs"
        );
        assert_eq!(
            state(rebuilt.server().replica()),
            state(self.realm.server().replica())
        );
    }
}

/// Flips, truncates, extends or renames one of the encodings.
fn corrupt(input: &mut Input<'_>, pieces: &mut [(ClientVersion, Vec<u8>)]) {
    let Some(n) = pieces.len().checked_sub(1) else {
        return;
    };
    let (head, bytes) = &mut pieces[input.below(n + 1)];
    match input.below(4) {
        0 if !bytes.is_empty() => {
            let at = input.small_or_any() as usize % bytes.len();
            bytes[at] ^= input.byte() | 1;
        }
        1 => {
            let keep = input.small_or_any() as usize % (bytes.len() + 1);
            bytes.truncate(keep);
        }
        2 => bytes.push(input.byte()),
        _ => *head = ClientVersion(input.small_or_any()),
    }
}

const TYPES: [&str; 6] = ["A", "B", "C", "D", "E", "Z"];
const PROPS: [&str; 12] = [
    "id", "v", "s", "l", "xs", "ls", "n", "c", "a", "bs", "e2", "zz",
];

fn name(input: &mut Input<'_>, pool: &[&str]) -> objsync::Name {
    (*input.pick(pool)).into()
}

fn op_id(input: &mut Input<'_>) -> OpId {
    OpId {
        peer: PeerId(input.below(5) as u64),
        seq: input.small_or_any() % 12,
    }
}

fn any_key(input: &mut Input<'_>) -> ObjKey {
    match input.below(5) {
        0 => ObjKey::Null,
        1 => ObjKey::Int(i64::from(input.byte() as i8 % 5)),
        2 => ObjKey::String(name(input, &["", "a", "b"])),
        3 => ObjKey::ObjectId(ObjectId([input.byte() % 3; 12])),
        _ => ObjKey::Engine(op_id(input)),
    }
}

fn any_value(input: &mut Input<'_>) -> Value {
    match input.below(11) {
        0 => Value::Null,
        1 => Value::Int(match input.byte() {
            0xff => i64::MIN,
            b => i64::from(b as i8),
        }),
        2 => Value::Bool(input.bool()),
        3 => Value::String(name(input, &["", "a", "é"])),
        4 => Value::Float(f32::from_bits(input.u64() as u32)),
        5 => Value::Double(f64::from_bits(input.small_or_any())),
        6 => Value::Date(i64::from(input.byte() as i8)),
        7 => Value::Data(input.bytes(3).into()),
        8 => Value::ObjectId(ObjectId([input.byte() % 3; 12])),
        9 => Value::Decimal(Decimal128::from_i64(i64::from(input.byte() as i8))),
        _ => Value::Link(any_key(input)),
    }
}

fn any_prop_type(input: &mut Input<'_>) -> PropType {
    let kinds = [
        ScalarKind::Int,
        ScalarKind::Bool,
        ScalarKind::String,
        ScalarKind::Double,
        ScalarKind::ObjectId,
    ];
    let elem = if input.one_in(4) {
        ElemType::Link {
            target: name(input, &TYPES),
        }
    } else {
        ElemType::Scalar {
            kind: *input.pick(&kinds),
            nullable: input.bool(),
        }
    };
    PropType {
        elem,
        list: input.one_in(3),
    }
}

fn any_properties(input: &mut Input<'_>) -> Vec<Property> {
    (0..1 + input.below(3))
        .map(|_| Property {
            name: name(input, &PROPS),
            ty: any_prop_type(input),
        })
        .collect()
}

fn place(input: &mut Input<'_>) -> objsync::Place {
    objsync::Place {
        parent: input.bool().then(|| op_id(input)),
        side: if input.bool() {
            objsync::Side::Right
        } else {
            objsync::Side::Left
        },
    }
}

fn hostile_op(input: &mut Input<'_>) -> Op {
    let obj = |input: &mut Input<'_>| ObjRef {
        ty: name(input, &TYPES),
        key: any_key(input),
    };
    let index = |input: &mut Input<'_>| match input.byte() {
        0xff => u32::MAX,
        b => u32::from(b % 6),
    };
    let instr = match input.below(12) {
        0 => {
            let ty = name(input, &TYPES);
            let pk = input.bool().then_some("id");
            let mut props = any_properties(input);
            if pk.is_some() {
                props.push(Property::new(
                    "id",
                    PropType::scalar(ScalarKind::Int, false),
                ));
            }
            match ObjectType::new(&ty, pk, props) {
                Ok(def) => Instruction::AddType(def),
                Err(_) => Instruction::Insert { obj: obj(input) },
            }
        }
        1 => Instruction::AddProperties {
            ty: name(input, &TYPES),
            properties: any_properties(input),
        },
        2 => Instruction::Insert { obj: obj(input) },
        3 => Instruction::Set {
            obj: obj(input),
            prop: name(input, &PROPS),
            value: any_value(input),
            default: input.one_in(4),
        },
        4 => Instruction::AddInt {
            obj: obj(input),
            prop: name(input, &PROPS),
            delta: match input.byte() {
                0xff => i64::MAX,
                0xfe => i64::MIN,
                b => i64::from(b as i8),
            },
        },
        5 => Instruction::Delete { obj: obj(input) },
        6 => Instruction::Clear {
            ty: name(input, &TYPES),
            objects: (0..input.below(3)).map(|_| any_key(input)).collect(),
        },
        7 => Instruction::ListInsert {
            obj: obj(input),
            prop: name(input, &PROPS),
            index: index(input),
            value: any_value(input),
            elem: op_id(input),
            place: place(input),
        },
        8 => Instruction::ListSet {
            obj: obj(input),
            prop: name(input, &PROPS),
            index: index(input),
            value: any_value(input),
            elem: op_id(input),
        },
        9 => Instruction::ListErase {
            obj: obj(input),
            prop: name(input, &PROPS),
            index: index(input),
            elem: op_id(input),
        },
        10 => Instruction::ListMove {
            obj: obj(input),
            prop: name(input, &PROPS),
            from: index(input),
            to: index(input),
            elem: op_id(input),
            node: op_id(input),
            place: place(input),
        },
        _ => Instruction::ListClear {
            obj: obj(input),
            prop: name(input, &PROPS),
        },
    };
    let fate = match input.below(8) {
        0 => Fate::Void,
        1 => Fate::Dropped,
        2 => Fate::DeadLink,
        _ => Fate::Live,
    };
    Op { instr, fate }
}
