//! The consumer's end of the feed over the network, sans-IO (spec/protocol.md section 13): it
//! makes the FEED request from the cursors the caller persisted, puts the FEED_ITEM pieces back
//! together, checks that every realm's items come in order, and hands each one out with the
//! cursor to persist with what the caller makes of it.
//!
//! The caller owns the socket and the clock: frames to send come out of
//! [`FeedConsumer::poll_transmit`], received frames go into [`FeedConsumer::handle`].

use super::{FeedCursor, FeedItem};
use crate::model::ServerVersion;
use crate::wire::{
    Action, Chunk, ErrorMessage, FeedClientMessage, FeedPiece, FeedRequest, FeedServerMessage,
    Limits, MessageError, Reassembly, CHUNK_OVERHEAD, MESSAGE_OVERHEAD, PROTOCOL_VERSION,
};
use std::collections::{BTreeMap, VecDeque};

/// What a consumer asks for.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// A regular expression that must match a realm's whole path.
    pub paths: String,
    /// The admin token.
    pub token: String,
    /// What the consumer accepts: `max_message` bounds a frame, `max_changeset` an item's JSON.
    pub limits: Limits,
}

/// One item of one realm, with where the realm's feed stands once the caller has taken it.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The realm's path.
    pub path: String,
    /// The realm's latest version when the item was sent (how far behind the consumer is).
    pub latest: ServerVersion,
    /// The item.
    pub item: FeedItem,
}

impl Delivery {
    /// The realm's cursor after this item: what to persist with what it produced.
    pub fn cursor(&self) -> FeedCursor {
        FeedCursor {
            version: self.item.version(),
        }
    }
}

/// Why a feed connection ended.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The server ended the feed with an ERROR: 203 an unknown token, 206 a token that is not
    /// the admin's, 204 a path expression that does not compile, 100 a server going away.
    #[error("the server ended the feed: {} ({}): {}", .0.code.number(), .0.code.name(), .0.message)]
    Refused(ErrorMessage),
    /// A frame that does not decode.
    #[error("an undecodable frame from the server: {0}")]
    Frame(#[from] MessageError),
    /// An item that is not JSON of a feed item.
    #[error("an item of {path} at version {version} is not a feed item: {error}")]
    Item {
        /// The realm.
        path: String,
        /// The item's version.
        version: ServerVersion,
        /// What the JSON parser said.
        error: String,
    },
    /// A transaction that does not follow the realm's cursor: the server skipped or repeated
    /// one.
    #[error("{path}: transaction {got} after cursor {cursor}")]
    OutOfOrder {
        /// The realm.
        path: String,
        /// Where the consumer stood.
        cursor: ServerVersion,
        /// The transaction's version.
        got: ServerVersion,
    },
    /// A piece of another realm's item before the last item ended.
    #[error("a piece of {got} while an item of {open} is incomplete")]
    Interleaved {
        /// The realm whose item is incomplete.
        open: String,
        /// The realm of the piece.
        got: String,
    },
}

impl ConsumerError {
    /// What to do: reconnect after a backoff (a server going away, a broken connection or
    /// frame) or stop (a refused token or expression).
    pub fn action(&self) -> Action {
        match self {
            ConsumerError::Refused(e) => e.action,
            _ => Action::Retry,
        }
    }
}

/// A feed consumer's protocol state across connections. See the module documentation.
#[derive(Debug)]
pub struct FeedConsumer {
    config: ConsumerConfig,
    /// Where each realm's feed stands, as handed out.
    cursors: BTreeMap<String, ServerVersion>,
    outgoing: VecDeque<Vec<u8>>,
    /// The realm of the item being put together, and its pieces so far.
    assembling: Option<String>,
    pieces: Reassembly<ServerVersion>,
}

impl FeedConsumer {
    /// A consumer that stands at `cursors` (as persisted by the caller; a realm not listed
    /// starts from its beginning).
    pub fn new(
        config: ConsumerConfig,
        cursors: impl IntoIterator<Item = (String, FeedCursor)>,
    ) -> FeedConsumer {
        FeedConsumer {
            config,
            cursors: cursors.into_iter().map(|(p, c)| (p, c.version)).collect(),
            outgoing: VecDeque::new(),
            assembling: None,
            pieces: Reassembly::default(),
        }
    }

    /// A new connection: queues the FEED request with the cursors as they stand now, and
    /// forgets an item cut off by the connection before.
    pub fn connect(&mut self) {
        self.outgoing.clear();
        self.assembling = None;
        self.pieces.clear();
        let request = FeedRequest {
            protocol_version: PROTOCOL_VERSION,
            paths: self.config.paths.clone(),
            token: self.config.token.clone(),
            max_message: self.config.limits.max_message as u64,
            cursors: (self.cursors.iter())
                .map(|(p, v)| (p.clone(), *v))
                .collect(),
        };
        let frame = FeedClientMessage::Feed(request).encode();
        self.outgoing.push_back(frame);
    }

    /// Queues a PING (the server drops connections silent for a minute).
    pub fn ping(&mut self, timestamp: u64) {
        self.outgoing
            .push_back(FeedClientMessage::Ping { timestamp }.encode());
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outgoing.pop_front()
    }

    /// Where the feed of the realm at `path` stands.
    pub fn cursor(&self, path: &str) -> FeedCursor {
        FeedCursor {
            version: self.cursors.get(path).copied().unwrap_or_default(),
        }
    }

    /// Takes one frame from the server: an item when it completes one.
    pub fn handle(&mut self, frame: &[u8]) -> Result<Option<Delivery>, ConsumerError> {
        let piece = match FeedServerMessage::decode(frame, &self.config.limits)? {
            FeedServerMessage::Pong { .. } => return Ok(None),
            FeedServerMessage::Error(e) => return Err(ConsumerError::Refused(e)),
            FeedServerMessage::Item(piece) => piece,
        };
        if let Some(open) = &self.assembling {
            if *open != piece.path {
                return Err(ConsumerError::Interleaved {
                    open: open.clone(),
                    got: piece.path,
                });
            }
        }
        let Some((version, bytes)) = self.pieces.push(piece.piece)? else {
            self.assembling = Some(piece.path);
            return Ok(None);
        };
        self.assembling = None;
        let path = piece.path;
        let item: FeedItem = serde_json::from_slice(&bytes).map_err(|e| ConsumerError::Item {
            path: path.clone(),
            version,
            error: e.to_string(),
        })?;
        let cursor = self.cursor(&path).version;
        if let FeedItem::Transaction(t) = &item {
            if t.version.0 != cursor.0 + 1 || t.version != version {
                return Err(ConsumerError::OutOfOrder {
                    path,
                    cursor,
                    got: t.version,
                });
            }
        }
        let delivery = Delivery {
            path,
            latest: piece.latest,
            item,
        };
        self.cursors
            .insert(delivery.path.clone(), delivery.cursor().version);
        Ok(Some(delivery))
    }
}

/// The server's half: `item` of the realm at `path` as FEED_ITEM frames of at most
/// `max_message` bytes (the smaller of the server's and the consumer's limits; at least
/// [`MIN_MESSAGE`](crate::wire::MIN_MESSAGE) for any path the server accepts).
pub fn item_frames(
    path: &str,
    latest: ServerVersion,
    item: &FeedItem,
    max_message: usize,
) -> Vec<Vec<u8>> {
    let json = serde_json::to_vec(item).expect("a feed item renders as JSON");
    let version = item.version();
    // Room for the tag, the path (a length varint and its bytes) and the piece's varints.
    let overhead = MESSAGE_OVERHEAD + CHUNK_OVERHEAD + path.len();
    let room = max_message.saturating_sub(overhead).max(1);
    let total = json.len() as u64;
    let mut frames = Vec::with_capacity(json.len() / room + 1);
    let mut offset = 0;
    loop {
        let end = (offset + room).min(json.len());
        let piece = FeedPiece {
            path: path.to_string(),
            latest,
            piece: Chunk {
                head: version,
                total,
                offset: offset as u64,
                data: json[offset..end].to_vec(),
            },
        };
        frames.push(FeedServerMessage::Item(piece).encode());
        offset = end;
        if offset >= json.len() {
            return frames;
        }
    }
}
