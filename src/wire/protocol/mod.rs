//! The sync protocol's messages, their binary form, and its error codes.
//!
//! One connection carries one session: a client file bound to one realm. Every message is one
//! frame (a WebSocket binary message, say; framing is the transport's job): a tag byte and
//! the message's fields, in the varint conventions of the changeset encoding. Changesets travel
//! as their encoded bytes ([`crate::wire::encode`]), cut into [`Chunk`]s so that no message need exceed
//! [`Limits::max_message`] whatever the size of a transaction; a receiver integrates a
//! changeset only once all of its bytes have arrived. [`crate::session`] holds the state
//! machines that produce and consume these messages; spec/protocol.md is the full
//! specification, with every field and transition.
//!
//! | tag  | direction       | message                                     |
//! |------|-----------------|---------------------------------------------|
//! | 0x01 | client → server | [`ClientMessage::Bind`]                     |
//! | 0x02 | client → server | [`ClientMessage::Ident`]                    |
//! | 0x03 | client → server | [`ClientMessage::Upload`]                   |
//! | 0x04 | client → server | [`ClientMessage::Mark`]                     |
//! | 0x05 | client → server | [`ClientMessage::Ping`]                     |
//! | 0x81 | server → client | [`ServerMessage::Ident`]                    |
//! | 0x82 | server → client | [`ServerMessage::Download`]                 |
//! | 0x83 | server → client | [`ServerMessage::Mark`]                     |
//! | 0x84 | server → client | [`ServerMessage::Pong`]                     |
//! | 0x85 | server → client | [`ServerMessage::Error`]                    |
//! | 0x86 | server → client | [`ServerMessage::State`]                    |
//! | 0x06 | consumer → server | [`FeedClientMessage::Feed`] (the Adapter feed) |
//! | 0x87 | server → consumer | [`FeedServerMessage::Item`]                 |

mod chunk;
mod codes;
mod feed;

pub use chunk::{Chunk, Outgoing, Reassembly};
pub use codes::{Action, ErrorCode, ErrorMessage};
pub use feed::{is_feed_request, FeedClientMessage, FeedPiece, FeedRequest, FeedServerMessage};

use super::varint::{put_len, put_u64, Reader};
use super::{DecodeError, MessageError};
use crate::model::{
    Checkpoint, ClientVersion, Cursor, Fingerprint, PeerId, RecoveryRequest, ServerVersion,
};
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks. A BIND naming another is refused with
/// [`ErrorCode::WrongProtocolVersion`].
pub const PROTOCOL_VERSION: u32 = 2;

/// Size limits both ends enforce on what they receive (and respect in what they send).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The largest frame accepted; senders cut changesets into chunks to stay under it.
    pub max_message: usize,
    /// The largest single changeset (encoded) accepted; bounds what a receiver buffers while
    /// reassembling one.
    pub max_changeset: u64,
    /// The longest realm path, token or error text accepted.
    pub max_text: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 1 << 20,
            max_changeset: 1 << 30,
            max_text: 16 << 10,
        }
    }
}

/// A client file's identity in one realm: the peer id it writes as, and the secret salt the
/// server issued when it first saw the peer (0 before that), which stops another client from
/// posing as it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileIdent {
    /// The peer id (nonzero, below 2^63).
    pub peer: PeerId,
    /// The server-issued salt; 0 when the client has none yet.
    pub salt: u64,
}

/// What names a history entry in a download.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadHead {
    /// The entry's server version.
    pub server_version: ServerVersion,
    /// The receiver's last changeset the server had integrated before this entry.
    pub last_own: ClientVersion,
    /// The history's fingerprint through this entry.
    pub fingerprint: Fingerprint,
}

/// Stands for a token in `Debug` output, so that no log or panic message can carry one.
pub(crate) struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// BIND: the first message of a session. Its `Debug` form leaves the token out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// The protocol version the client speaks.
    pub protocol_version: u32,
    /// The realm's path, e.g. `/alice/notes` or `/~/notes`.
    pub path: String,
    /// The credential the server authenticates.
    pub token: String,
    /// The largest frame the client accepts: the server cuts its DOWNLOADs to the smaller of
    /// this and its own limit.
    pub max_message: u64,
}

impl std::fmt::Debug for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bind")
            .field("protocol_version", &self.protocol_version)
            .field("path", &self.path)
            .field("token", &Redacted)
            .field("max_message", &self.max_message)
            .finish()
    }
}

/// IDENT from the client: who it is and where it stands, sent right after BIND.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ident {
    /// The client file's identity (salt 0 on first contact).
    pub file: FileIdent,
    /// The realm's file identifier as the server last reported it; 0 on first contact.
    pub server_file: u64,
    /// Where the download resumes.
    pub download: Cursor,
    /// The latest server version the client has heard of.
    pub latest: ServerVersion,
    /// The client version of the client's latest local changeset: a server that has integrated
    /// a later one knows the client's history went back (restored from a backup) and must reset.
    pub last_version: ClientVersion,
    /// The last client version the server acknowledged to the client: a server that holds less
    /// lost changesets.
    pub acknowledged: ClientVersion,
    /// The [signature](crate::Changeset::signature) of that changeset (0 if the client no
    /// longer has it): a server that holds another one under that version was restored from
    /// another copy.
    pub acknowledged_signature: u64,
    /// Where the session starts: the history after the cursor, the server's state (a new
    /// client), or a recovery (a client being reset).
    pub start: Start,
}

/// Where a session starts (IDENT field 9).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Start {
    /// The history after the client's cursor.
    #[default]
    History,
    /// The server's state (a bootstrap), of which the client holds what the position says.
    State(StatePosition),
    /// A recovery for a client being reset
    /// ([`Server::recovery`](crate::sync::Server::recovery)), of which the client holds what
    /// the position says.
    Recovery(StatePosition, RecoveryRequest),
}

impl Start {
    /// How much the client holds of what it asks for, unless it asks for the history.
    pub fn held(&self) -> Option<StatePosition> {
        match self {
            Start::History => None,
            Start::State(p) | Start::Recovery(p, _) => Some(*p),
        }
    }
}

/// How much of the server's state a bootstrapping client holds: `offset` bytes of the state at
/// `version` (0 and 0 when it holds nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatePosition {
    /// The server version of the state it holds a part of.
    pub version: ServerVersion,
    /// How many of its bytes it holds.
    pub offset: u64,
}

/// How far the client has come, carried by every UPLOAD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadProgress {
    /// Every changeset up to this client version has been sent in full.
    pub client: ClientVersion,
    /// The last server version the client has integrated (acknowledges downloads).
    pub server: ServerVersion,
}

/// UPLOAD: local changesets, in chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadMessage {
    /// Progress after this message.
    pub progress: UploadProgress,
    /// Pieces of changesets, in client-version order.
    pub chunks: Vec<Chunk<ClientVersion>>,
}

/// IDENT from the server: the session is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentReply {
    /// The client file's identity, with its salt (newly issued on first contact).
    pub file: FileIdent,
    /// The realm's file identifier: a client presents it again on every IDENT, so a realm that
    /// was recreated or restored is noticed.
    pub server_file: u64,
    /// The server's latest version.
    pub latest: ServerVersion,
}

/// DOWNLOAD: history entries from other clients, in chunks, and the upload acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadMessage {
    /// Where the client stands once it has integrated every entry completed by this message.
    pub cursor: Cursor,
    /// The server's latest version.
    pub latest: ServerVersion,
    /// The last client version of the receiver the server has integrated.
    pub upload_ack: ClientVersion,
    /// The [signature](crate::Changeset::signature) of the receiver's changeset that
    /// `cursor.own` names, 0 if the server no longer knows it.
    pub own_signature: u64,
    /// Bytes of history still to come for this client after this message.
    pub downloadable: u64,
    /// Pieces of history entries, in server-version order.
    pub chunks: Vec<Chunk<DownloadHead>>,
}

/// A message from a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// Bind the session to a realm.
    Bind(Bind),
    /// Name the client file and where it stands.
    Ident(Ident),
    /// Changesets and progress.
    Upload(UploadMessage),
    /// Ask to be told once everything in the history now has been downloaded.
    Mark {
        /// The request's identifier, echoed back.
        request: u64,
    },
    /// Keep-alive; the server answers with a PONG echoing `timestamp`.
    Ping {
        /// The client's clock reading (any unit), echoed back.
        timestamp: u64,
    },
}

/// A message from the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The session is bound.
    Ident(IdentReply),
    /// History entries and acknowledgements.
    Download(DownloadMessage),
    /// Everything that was in the history when the MARK arrived has been sent.
    Mark {
        /// The request's identifier.
        request: u64,
    },
    /// Answer to a PING.
    Pong {
        /// The PING's timestamp.
        timestamp: u64,
    },
    /// The session ends.
    Error(ErrorMessage),
    /// A piece of the server's state for a bootstrapping client (the snapshot of
    /// `Server::state_snapshot`), before any DOWNLOAD.
    State(Chunk<ServerVersion>),
}

const BIND: u8 = 0x01;
const IDENT: u8 = 0x02;
const UPLOAD: u8 = 0x03;
const MARK: u8 = 0x04;
const PING: u8 = 0x05;
const S_IDENT: u8 = 0x81;
const S_DOWNLOAD: u8 = 0x82;
const S_MARK: u8 = 0x83;
const S_PONG: u8 = 0x84;
const S_ERROR: u8 = 0x85;
const S_STATE: u8 = 0x86;

/// The smallest encoded chunk (four one-byte varints, one of them a zero length), for bounding
/// chunk counts by the input.
const MIN_CHUNK_BYTES: usize = 4;

fn put_text(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_cursor(out: &mut Vec<u8>, c: Cursor) {
    put_u64(out, c.server.0);
    put_u64(out, c.own.0);
    put_u64(out, c.fingerprint.0);
}

fn put_chunks<H>(out: &mut Vec<u8>, chunks: &[Chunk<H>], head: impl Fn(&mut Vec<u8>, &H)) {
    put_len(out, chunks.len());
    for c in chunks {
        head(out, &c.head);
        put_u64(out, c.total);
        put_u64(out, c.offset);
        put_len(out, c.data.len());
        out.extend_from_slice(&c.data);
    }
}

/// The encoded size of a chunk's framing (everything but its data), for senders filling a
/// message up to [`Limits::max_message`]: at most this many bytes.
pub const CHUNK_OVERHEAD: usize = 5 * 10;

/// The smallest frame limit a receiver may announce: room for a message's fixed fields, one
/// chunk's framing, and data.
pub const MIN_MESSAGE: usize = 256;

/// The encoded size of a message's fixed fields: at most this many bytes besides its chunks
/// (for UPLOAD and DOWNLOAD) and texts.
pub const MESSAGE_OVERHEAD: usize = 1 + 8 * 10;

impl ClientMessage {
    /// The message's binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ClientMessage::Bind(b) => {
                out.push(BIND);
                put_u64(&mut out, u64::from(b.protocol_version));
                put_text(&mut out, &b.path);
                put_text(&mut out, &b.token);
                put_u64(&mut out, b.max_message);
            }
            ClientMessage::Ident(i) => {
                out.push(IDENT);
                put_u64(&mut out, i.file.peer.0);
                put_u64(&mut out, i.file.salt);
                put_u64(&mut out, i.server_file);
                put_cursor(&mut out, i.download);
                put_u64(&mut out, i.latest.0);
                put_u64(&mut out, i.last_version.0);
                put_u64(&mut out, i.acknowledged.0);
                put_u64(&mut out, i.acknowledged_signature);
                put_start(&mut out, &i.start);
            }
            ClientMessage::Upload(u) => {
                let data: usize = u.chunks.iter().map(|c| c.data.len()).sum();
                out.reserve(MESSAGE_OVERHEAD + data + u.chunks.len() * CHUNK_OVERHEAD);
                out.push(UPLOAD);
                put_u64(&mut out, u.progress.client.0);
                put_u64(&mut out, u.progress.server.0);
                put_chunks(&mut out, &u.chunks, |o, v| put_u64(o, v.0));
            }
            ClientMessage::Mark { request } => {
                out.push(MARK);
                put_u64(&mut out, *request);
            }
            ClientMessage::Ping { timestamp } => {
                out.push(PING);
                put_u64(&mut out, *timestamp);
            }
        }
        out
    }

    /// Decodes one frame, refusing anything beyond `limits` before allocating for it.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<ClientMessage, MessageError> {
        check_size(bytes, limits)?;
        let mut r = Reader::new(bytes);
        let msg = match r.byte("message tag")? {
            BIND => ClientMessage::Bind(Bind {
                protocol_version: r.u32("protocol version")?,
                path: text(&mut r, limits, "realm path")?,
                token: text(&mut r, limits, "token")?,
                max_message: r.u64("client frame limit")?,
            }),
            IDENT => ClientMessage::Ident(Ident {
                file: FileIdent {
                    peer: PeerId(r.u64("peer")?),
                    salt: r.u64("salt")?,
                },
                server_file: r.u64("server file identifier")?,
                download: cursor(&mut r)?,
                latest: ServerVersion(r.u64("latest server version")?),
                last_version: ClientVersion(r.u64("last client version")?),
                acknowledged: ClientVersion(r.u64("acknowledged client version")?),
                acknowledged_signature: r.u64("acknowledged signature")?,
                start: start(&mut r)?,
            }),
            UPLOAD => ClientMessage::Upload(UploadMessage {
                progress: UploadProgress {
                    client: ClientVersion(r.u64("progress client version")?),
                    server: ServerVersion(r.u64("progress server version")?),
                },
                chunks: chunks(&mut r, limits, |r| {
                    Ok(ClientVersion(r.u64("chunk client version")?))
                })?,
            }),
            MARK => ClientMessage::Mark {
                request: r.u64("mark request")?,
            },
            PING => ClientMessage::Ping {
                timestamp: r.u64("ping timestamp")?,
            },
            tag => return Err(MessageError::UnknownMessage { tag }),
        };
        r.finish()?;
        Ok(msg)
    }
}

impl ServerMessage {
    /// The message's binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ServerMessage::Ident(i) => {
                out.push(S_IDENT);
                put_u64(&mut out, i.file.peer.0);
                put_u64(&mut out, i.file.salt);
                put_u64(&mut out, i.server_file);
                put_u64(&mut out, i.latest.0);
            }
            ServerMessage::Download(d) => {
                let data: usize = d.chunks.iter().map(|c| c.data.len()).sum();
                out.reserve(MESSAGE_OVERHEAD + data + d.chunks.len() * CHUNK_OVERHEAD);
                out.push(S_DOWNLOAD);
                put_cursor(&mut out, d.cursor);
                put_u64(&mut out, d.latest.0);
                put_u64(&mut out, d.upload_ack.0);
                put_u64(&mut out, d.own_signature);
                put_u64(&mut out, d.downloadable);
                put_chunks(&mut out, &d.chunks, |o, h| {
                    put_u64(o, h.server_version.0);
                    put_u64(o, h.last_own.0);
                    put_u64(o, h.fingerprint.0);
                });
            }
            ServerMessage::Mark { request } => {
                out.push(S_MARK);
                put_u64(&mut out, *request);
            }
            ServerMessage::Pong { timestamp } => {
                out.push(S_PONG);
                put_u64(&mut out, *timestamp);
            }
            ServerMessage::Error(e) => {
                out.push(S_ERROR);
                put_u64(&mut out, u64::from(e.code.number()));
                out.push(e.action.code());
                put_text(&mut out, &e.message);
                put_u64(&mut out, e.client_version.0);
                put_u64(&mut out, e.server_version.0);
            }
            ServerMessage::State(c) => {
                out.reserve(MESSAGE_OVERHEAD + c.data.len() + CHUNK_OVERHEAD);
                out.push(S_STATE);
                put_chunks(&mut out, std::slice::from_ref(c), |o, v| put_u64(o, v.0));
            }
        }
        out
    }

    /// Decodes one frame, refusing anything beyond `limits` before allocating for it.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<ServerMessage, MessageError> {
        check_size(bytes, limits)?;
        let mut r = Reader::new(bytes);
        let msg = match r.byte("message tag")? {
            S_IDENT => ServerMessage::Ident(IdentReply {
                file: FileIdent {
                    peer: PeerId(r.u64("peer")?),
                    salt: r.u64("salt")?,
                },
                server_file: r.u64("server file identifier")?,
                latest: ServerVersion(r.u64("latest server version")?),
            }),
            S_DOWNLOAD => ServerMessage::Download(DownloadMessage {
                cursor: cursor(&mut r)?,
                latest: ServerVersion(r.u64("latest server version")?),
                upload_ack: ClientVersion(r.u64("upload acknowledgement")?),
                own_signature: r.u64("own signature")?,
                downloadable: r.u64("downloadable bytes")?,
                chunks: chunks(&mut r, limits, |r| {
                    Ok(DownloadHead {
                        server_version: ServerVersion(r.u64("chunk server version")?),
                        last_own: ClientVersion(r.u64("chunk last own version")?),
                        fingerprint: Fingerprint(r.u64("chunk fingerprint")?),
                    })
                })?,
            }),
            S_MARK => ServerMessage::Mark {
                request: r.u64("mark request")?,
            },
            S_PONG => ServerMessage::Pong {
                timestamp: r.u64("pong timestamp")?,
            },
            S_ERROR => {
                let code = ErrorCode::from_number(r.u32("error code")?);
                let at = r.pos();
                let b = r.byte("error action")?;
                let action = Action::from_code(b).ok_or(MessageError::Malformed(
                    DecodeError::UnknownTag {
                        offset: at,
                        what: "error action",
                        tag: b,
                    },
                ))?;
                ServerMessage::Error(ErrorMessage {
                    code,
                    action,
                    message: text(&mut r, limits, "error message")?,
                    client_version: ClientVersion(r.u64("error client version")?),
                    server_version: ServerVersion(r.u64("error server version")?),
                })
            }
            S_STATE => {
                let at = r.pos();
                let mut pieces = chunks(&mut r, limits, |r| {
                    Ok(ServerVersion(r.u64("state server version")?))
                })?;
                match (pieces.pop(), pieces.is_empty()) {
                    (Some(c), true) => ServerMessage::State(c),
                    _ => {
                        return Err(DecodeError::IntegerOutOfRange {
                            offset: at,
                            what: "state pieces (exactly one per message)",
                            value: pieces.len() as u64 + 1,
                        }
                        .into())
                    }
                }
            }
            tag => return Err(MessageError::UnknownMessage { tag }),
        };
        r.finish()?;
        Ok(msg)
    }
}

fn check_size(bytes: &[u8], limits: &Limits) -> Result<(), MessageError> {
    if bytes.len() > limits.max_message {
        return Err(MessageError::TooLarge {
            what: "frame",
            size: bytes.len() as u64,
            limit: limits.max_message as u64,
        });
    }
    Ok(())
}

fn text(r: &mut Reader<'_>, limits: &Limits, what: &'static str) -> Result<String, MessageError> {
    let s = r.table_entry()?;
    if s.len() > limits.max_text {
        return Err(MessageError::TooLarge {
            what,
            size: s.len() as u64,
            limit: limits.max_text as u64,
        });
    }
    Ok(s.to_string())
}

fn put_start(out: &mut Vec<u8>, start: &Start) {
    let held = |out: &mut Vec<u8>, p: &StatePosition| {
        put_u64(out, p.version.0);
        put_u64(out, p.offset);
    };
    match start {
        Start::History => put_u64(out, 0),
        Start::State(p) => {
            put_u64(out, 1);
            held(out, p);
        }
        Start::Recovery(p, request) => {
            put_u64(out, 2);
            held(out, p);
            put_len(out, request.checkpoints.len());
            for c in &request.checkpoints {
                put_u64(out, c.version.0);
                put_u64(out, c.fingerprint.0);
            }
            put_u64(out, request.diverged_from.map_or(0, |v| v.0));
        }
    }
}

/// Smallest encoded checkpoint (two varints).
const MIN_CHECKPOINT_BYTES: usize = 2;

fn start(r: &mut Reader<'_>) -> Result<Start, DecodeError> {
    let at = r.pos();
    let tag = r.u64("start")?;
    if tag == 0 {
        return Ok(Start::History);
    }
    let held = StatePosition {
        version: ServerVersion(r.u64("state version")?),
        offset: r.u64("state offset")?,
    };
    match tag {
        1 => Ok(Start::State(held)),
        2 => {
            let n = r.count(MIN_CHECKPOINT_BYTES, "checkpoints")?;
            let mut checkpoints = Vec::with_capacity(n);
            for _ in 0..n {
                checkpoints.push(Checkpoint {
                    version: ServerVersion(r.u64("checkpoint version")?),
                    fingerprint: Fingerprint(r.u64("checkpoint fingerprint")?),
                });
            }
            let diverged_from = match r.u64("diverged from")? {
                0 => None,
                v => Some(ClientVersion(v)),
            };
            let request = RecoveryRequest {
                checkpoints,
                diverged_from,
            };
            Ok(Start::Recovery(held, request))
        }
        value => Err(DecodeError::IntegerOutOfRange {
            offset: at,
            what: "start (0, 1 or 2)",
            value,
        }),
    }
}

fn cursor(r: &mut Reader<'_>) -> Result<Cursor, DecodeError> {
    Ok(Cursor {
        server: ServerVersion(r.u64("cursor server version")?),
        own: ClientVersion(r.u64("cursor client version")?),
        fingerprint: Fingerprint(r.u64("cursor fingerprint")?),
    })
}

fn chunks<H>(
    r: &mut Reader<'_>,
    limits: &Limits,
    head: impl Fn(&mut Reader<'_>) -> Result<H, DecodeError>,
) -> Result<Vec<Chunk<H>>, MessageError> {
    let n = r.count(MIN_CHUNK_BYTES, "chunks")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let head = head(r)?;
        let total = r.u64("chunk total length")?;
        let at = r.pos();
        let offset = r.u64("chunk offset")?;
        if total > limits.max_changeset {
            return Err(MessageError::TooLarge {
                what: "changeset",
                size: total,
                limit: limits.max_changeset,
            });
        }
        let len_at = r.pos();
        let len = r.u64("chunk length")?;
        let end = offset.checked_add(len).filter(|&end| end <= total);
        if end.is_none() {
            return Err(DecodeError::IntegerOutOfRange {
                offset: at,
                what: "chunk end (offset + length, beyond the changeset's total)",
                value: offset.saturating_add(len),
            }
            .into());
        }
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated {
            offset: len_at,
            what: "chunk data",
        })?;
        let data = r.take(len, len_at, "chunk data")?.to_vec();
        out.push(Chunk {
            head,
            total,
            offset,
            data,
        });
    }
    Ok(out)
}
