//! The Adapter feed's messages (spec/protocol.md section 13): a consumer opens a connection
//! with FEED instead of BIND and the server streams FEED_ITEMs, each a piece of one feed item
//! (`crate::feed::FeedItem` as JSON) of one realm. PING/PONG and ERROR are the sync protocol's.
//!
//! A feed connection is not a sync session: it binds to no realm, has no client file, and
//! never uploads. Its first message decides which it is (a FEED's tag is one no sync client
//! sends), so one listening socket serves both.

use super::{put_text, text, Chunk, ErrorMessage, Limits, ServerMessage, CHUNK_OVERHEAD};
use super::{MESSAGE_OVERHEAD, PING};
use crate::model::ServerVersion;
use crate::wire::varint::{put_len, put_u64, Reader};
use crate::wire::{DecodeError, MessageError};
use serde::{Deserialize, Serialize};

/// FEED's tag: the first message of a feed connection.
const FEED: u8 = 0x06;
const S_FEED_ITEM: u8 = 0x87;

/// Smallest encoded cursor (an empty path and a one-byte version).
const MIN_CURSOR_BYTES: usize = 2;

/// FEED: a consumer asks for the feed of every realm whose path matches `paths`. Its `Debug`
/// form leaves the token out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedRequest {
    /// The protocol version the consumer speaks.
    pub protocol_version: u32,
    /// A regular expression that must match a realm's whole path (as the server stores it:
    /// `/~/` resolved), e.g. `/shop/.*`.
    pub paths: String,
    /// The credential: only the admin token may follow the feed.
    pub token: String,
    /// The largest frame the consumer accepts.
    pub max_message: u64,
    /// Where the consumer stands in each realm it has followed before: the last server version
    /// it moved past (a realm not listed starts at 0).
    pub cursors: Vec<(String, ServerVersion)>,
}

impl std::fmt::Debug for FeedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedRequest")
            .field("protocol_version", &self.protocol_version)
            .field("paths", &self.paths)
            .field("token", &super::Redacted)
            .field("max_message", &self.max_message)
            .field("cursors", &self.cursors)
            .finish()
    }
}

/// FEED_ITEM: a piece of one feed item of the realm at `path`: bytes `offset .. offset +
/// length` of the item's JSON, `total` bytes long. The chunk's head is the item's version (a
/// transaction's server version, or a snapshot's state version). Pieces of one item travel back
/// to back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedPiece {
    /// The realm's path.
    pub path: String,
    /// The realm's latest version when the piece was sent: how far the consumer has to go.
    pub latest: ServerVersion,
    /// The piece.
    pub piece: Chunk<ServerVersion>,
}

/// A message from a feed consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedClientMessage {
    /// The first message: which realms, from where.
    Feed(FeedRequest),
    /// Keep-alive (the sync protocol's PING).
    Ping {
        /// Echoed in the PONG.
        timestamp: u64,
    },
}

/// A message to a feed consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedServerMessage {
    /// A piece of an item.
    Item(FeedPiece),
    /// Answer to a PING.
    Pong {
        /// The PING's timestamp.
        timestamp: u64,
    },
    /// The feed ends (the sync protocol's ERROR).
    Error(ErrorMessage),
}

impl FeedClientMessage {
    /// The message's binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            FeedClientMessage::Feed(r) => {
                out.push(FEED);
                put_u64(&mut out, u64::from(r.protocol_version));
                put_text(&mut out, &r.paths);
                put_text(&mut out, &r.token);
                put_u64(&mut out, r.max_message);
                put_len(&mut out, r.cursors.len());
                for (path, version) in &r.cursors {
                    put_text(&mut out, path);
                    put_u64(&mut out, version.0);
                }
            }
            FeedClientMessage::Ping { timestamp } => {
                out.push(PING);
                put_u64(&mut out, *timestamp);
            }
        }
        out
    }

    /// Decodes one frame, refusing anything beyond `limits` before allocating for it.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<FeedClientMessage, MessageError> {
        super::check_size(bytes, limits)?;
        let mut r = Reader::new(bytes);
        let msg = match r.byte("message tag")? {
            FEED => {
                let protocol_version = r.u32("protocol version")?;
                let paths = text(&mut r, limits, "realm path expression")?;
                let token = text(&mut r, limits, "token")?;
                let max_message = r.u64("consumer frame limit")?;
                let n = r.count(MIN_CURSOR_BYTES, "feed cursors")?;
                let mut cursors = Vec::with_capacity(n);
                for _ in 0..n {
                    let path = text(&mut r, limits, "realm path")?;
                    cursors.push((path, ServerVersion(r.u64("cursor version")?)));
                }
                FeedClientMessage::Feed(FeedRequest {
                    protocol_version,
                    paths,
                    token,
                    max_message,
                    cursors,
                })
            }
            PING => FeedClientMessage::Ping {
                timestamp: r.u64("ping timestamp")?,
            },
            tag => return Err(MessageError::UnknownMessage { tag }),
        };
        r.finish()?;
        Ok(msg)
    }
}

impl FeedServerMessage {
    /// The message's binary form.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            FeedServerMessage::Item(p) => {
                let c = &p.piece;
                let mut out = Vec::with_capacity(
                    MESSAGE_OVERHEAD + CHUNK_OVERHEAD + p.path.len() + c.data.len(),
                );
                out.push(S_FEED_ITEM);
                put_text(&mut out, &p.path);
                put_u64(&mut out, p.latest.0);
                put_u64(&mut out, c.head.0);
                put_u64(&mut out, c.total);
                put_u64(&mut out, c.offset);
                put_len(&mut out, c.data.len());
                out.extend_from_slice(&c.data);
                out
            }
            FeedServerMessage::Pong { timestamp } => ServerMessage::Pong {
                timestamp: *timestamp,
            }
            .encode(),
            FeedServerMessage::Error(e) => ServerMessage::Error(e.clone()).encode(),
        }
    }

    /// Decodes one frame, refusing anything beyond `limits` before allocating for it: an item
    /// longer than `max_changeset` is refused at its first piece.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<FeedServerMessage, MessageError> {
        if bytes.first() != Some(&S_FEED_ITEM) {
            return match ServerMessage::decode(bytes, limits)? {
                ServerMessage::Pong { timestamp } => Ok(FeedServerMessage::Pong { timestamp }),
                ServerMessage::Error(e) => Ok(FeedServerMessage::Error(e)),
                _ => Err(MessageError::UnknownMessage { tag: bytes[0] }),
            };
        }
        super::check_size(bytes, limits)?;
        let mut r = Reader::new(bytes);
        r.byte("message tag")?;
        let path = text(&mut r, limits, "realm path")?;
        let latest = ServerVersion(r.u64("latest server version")?);
        let head = ServerVersion(r.u64("item version")?);
        let total = r.u64("item total length")?;
        let at = r.pos();
        let offset = r.u64("item offset")?;
        if total > limits.max_changeset {
            return Err(MessageError::TooLarge {
                what: "feed item",
                size: total,
                limit: limits.max_changeset,
            });
        }
        let len_at = r.pos();
        let len = r.u64("item piece length")?;
        if !matches!(offset.checked_add(len), Some(end) if end <= total) {
            return Err(DecodeError::IntegerOutOfRange {
                offset: at,
                what: "piece end (offset + length, beyond the item's total)",
                value: offset.saturating_add(len),
            }
            .into());
        }
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated {
            offset: len_at,
            what: "item piece",
        })?;
        let data = r.take(len, len_at, "item piece")?.to_vec();
        r.finish()?;
        Ok(FeedServerMessage::Item(FeedPiece {
            path,
            latest,
            piece: Chunk {
                head,
                total,
                offset,
                data,
            },
        }))
    }
}

/// Whether `frame` opens a feed connection (a FEED message) rather than a sync session.
pub fn is_feed_request(frame: &[u8]) -> bool {
    frame.first() == Some(&FEED)
}
