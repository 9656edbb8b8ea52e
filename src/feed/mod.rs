//! The Adapter feed, sans-IO: a cursor over the transactions a server integrated into one
//! realm, each handed out as the instructions of the source documents' Adapter API
//! ([`FeedInstruction`], JSON with serde; spec/feed.md), for programs that mirror a realm into
//! another system (a database, a stream).
//!
//! [`Feed::current`] gives the next item, [`Feed::advance`] moves past it; [`Feed::cursor`] is
//! where the feed stands, a small value the caller persists with what it made of the items
//! (in the same database transaction), so that after a restart [`Feed::resume`] hands out
//! exactly the items after it: none lost, none twice. A feed knows nothing of realm paths:
//! choosing realms is the caller's (the network layer's) business, one feed per realm.
//!
//! # Why the feed keeps a replica
//!
//! A history entry holds the changeset as its writer made it, merged: its list indices are the
//! ones its writer saw, and whether a write had a visible effect (a set that became a dead link,
//! an erase of an element already hidden) depends on the state it met. A mirror needs the
//! effects. So the feed applies each entry to its own replica of the realm, at the cursor's
//! version, and reports what that did ([`crate::observe`]'s effects): list indices are where
//! the elements were in the realm's list, and links removed by a deletion are instructions of
//! their own. The replica is the state at the cursor; [`Feed::checkpoint`] saves it (the
//! format of a server's state snapshot), and [`Feed::resume`] starts from a checkpoint, or from
//! nothing, and replays the history up to the cursor without handing anything out.
//!
//! # Over the network
//!
//! The reference server offers the feed of every realm whose path matches a regular expression
//! to connections with the admin token (spec/protocol.md section 13): [`FeedConsumer`] is the
//! consumer's end, sans-IO, and [`item_frames`] cuts an item into the server's frames.
//!
//! # Compaction and trimming
//!
//! Compaction rewrites entries so that no one downloading after any version can tell
//! (spec/semantics.md 9.2); the feed replays entries just as a client downloads them, so it
//! goes on over a compacted history unchanged (a superseded write is simply not seen). A feed
//! whose next entry was trimmed away gets [`FeedError::BehindHorizon`]; it starts again from
//! the server's state ([`Feed::from_state`] over
//! [`Server::state_snapshot`](crate::sync::Server::state_snapshot)), whose first item is a
//! [`FeedItem::Snapshot`]: the whole state as instructions, at its version.
//!
//! ```
//! use objsync::feed::{Feed, FeedInstruction, FeedItem};
//! use objsync::sync::{Client, Server};
//! use objsync::{ObjectType, PeerId, PropType, Property};
//!
//! let mut server = Server::new();
//! let mut device = Client::new(PeerId(7));
//! device.write(1_000, |tx| {
//!     tx.add_type(ObjectType::new("Dog", Some("name"), [
//!         Property::new("name", PropType::parse("string")?),
//!         Property::new("age", PropType::parse("int")?),
//!     ])?)?;
//!     tx.insert("Dog", "rex")?;
//!     tx.set("Dog", "rex", "age", 3)
//! })?;
//! server.integrate(device.peer(), device.upload())?;
//!
//! let mut feed = Feed::new();
//! let Some(FeedItem::Transaction(t)) = feed.current(server.history())? else { panic!() };
//! assert_eq!((t.version.0, t.peer, t.timestamp), (1, PeerId(7), 1_000));
//! assert!(matches!(&t.instructions[0], FeedInstruction::AddType { object_type, .. } if &**object_type == "Dog"));
//! assert_eq!(
//!     serde_json::to_string(&t.instructions[1])?,
//!     r#"{"type":"INSERT","object_type":"Dog","identity":"rex","values":{"age":3}}"#
//! );
//! feed.advance();
//! assert!(feed.current(server.history())?.is_none()); // caught up
//! let cursor = feed.cursor(); // persist it with what the items produced
//! assert_eq!(serde_json::to_string(&cursor)?, r#"{"version":1}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod consumer;
mod instruction;

pub use consumer::{item_frames, ConsumerConfig, ConsumerError, Delivery, FeedConsumer};
pub use instruction::{Element, FeedInstruction, FeedProperty, Values};

use crate::model::{Error, Fingerprint, PeerId, ServerVersion, Timestamp};
use crate::replica::{Replica, StateHead};
use crate::snapshot::SnapshotError;
use crate::store::MemoryStore;
use crate::sync::{History, HistoryEntry};
use serde::{Deserialize, Serialize};

/// Where a feed stands: every transaction up to `version` has been handed out and moved past.
/// The caller persists it with what it made of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeedCursor {
    /// The last server version moved past (0: none).
    pub version: ServerVersion,
}

/// One integrated transaction: `{"version": 3, "peer": 7, "timestamp": 1000, "instructions":
/// [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedTransaction {
    /// Its server version.
    pub version: ServerVersion,
    /// The peer (client file) that wrote it.
    pub peer: PeerId,
    /// Its origin timestamp (milliseconds, from the writer's clock).
    pub timestamp: Timestamp,
    /// What it did, in order (empty if everything in it lost a conflict).
    pub instructions: Vec<FeedInstruction>,
}

/// A whole state, for a feed that starts from a server's state: the instructions that build it
/// from nothing (`ADD_TYPE`s, `INSERT`s, then links as `SET`s, then `LIST_INSERT`s). Whatever
/// the consumer held before is replaced by it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedSnapshot {
    /// The server version of the state.
    pub version: ServerVersion,
    /// The latest origin timestamp of any transaction in it.
    pub timestamp: Timestamp,
    /// The instructions that build it.
    pub instructions: Vec<FeedInstruction>,
}

/// What [`Feed::current`] hands out: `{"kind": "transaction", ...}` or `{"kind": "snapshot",
/// ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeedItem {
    /// The next integrated transaction.
    Transaction(FeedTransaction),
    /// The state the feed starts from.
    Snapshot(FeedSnapshot),
}

impl FeedItem {
    /// A transaction's server version, or the version of a snapshot's state.
    pub fn version(&self) -> ServerVersion {
        match self {
            FeedItem::Transaction(t) => t.version,
            FeedItem::Snapshot(s) => s.version,
        }
    }
}

/// Why a feed cannot go on. Nothing is handed out or moved past when this is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The history no longer holds the feed's next transaction: start again from the server's
    /// state ([`Feed::from_state`]).
    #[error("the feed is at version {cursor}, behind the history's horizon {horizon}: start from the server's state")]
    BehindHorizon {
        /// Where the feed stands.
        cursor: ServerVersion,
        /// The last version the history has forgotten.
        horizon: ServerVersion,
    },
    /// The feed stands past the history's latest version: its cursor or checkpoint belongs to
    /// another realm, or to a server that lost what it had integrated.
    #[error("the feed is at version {cursor}, past the history's latest version {latest}")]
    Ahead {
        /// Where the feed stands.
        cursor: ServerVersion,
        /// The history's latest version.
        latest: ServerVersion,
    },
    /// A checkpoint after the cursor it should resume at.
    #[error("the checkpoint is at version {checkpoint}, after the cursor {cursor}")]
    CheckpointAhead {
        /// The checkpoint's version.
        checkpoint: ServerVersion,
        /// The cursor.
        cursor: ServerVersion,
    },
    /// A history entry does not apply to the feed's state (the state is not this realm's).
    #[error("history entry {version} does not apply to the feed's state: {error}")]
    Apply {
        /// The entry.
        version: ServerVersion,
        /// Why.
        error: Error,
    },
    /// A checkpoint or server state that does not load.
    #[error("the feed's starting state does not load: {0}")]
    State(#[from] SnapshotError),
}

/// A cursor over one realm's integrated transactions. See the module documentation.
#[derive(Debug)]
pub struct Feed {
    /// The realm's state at `version`, plus the effects of the current transaction (in an open
    /// unit) while one is handed out.
    replica: Replica<MemoryStore>,
    /// The version, the history's fingerprint there and the latest origin timestamp in the
    /// state.
    head: StateHead,
    /// The fingerprint through the transaction handed out.
    pending: Fingerprint,
    current: Option<FeedItem>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new()
    }
}

impl Feed {
    /// A feed from the very first transaction of a realm (for a history that was never
    /// trimmed; otherwise the first [`Feed::current`] is [`FeedError::BehindHorizon`]).
    pub fn new() -> Feed {
        Feed::at(Replica::new(PeerId(0)), StateHead::default(), None)
    }

    /// A feed that starts from a server's state (a
    /// [`Server::state_snapshot`](crate::sync::Server::state_snapshot)): its first item is that
    /// state as a [`FeedItem::Snapshot`], then the transactions after it.
    pub fn from_state(state: &[u8]) -> Result<Feed, FeedError> {
        let (replica, head) = Replica::read_server_state(MemoryStore::new(), state)?;
        let snapshot = FeedSnapshot {
            version: head.version,
            timestamp: head.timestamp,
            instructions: instruction::state_instructions(replica.store()),
        };
        Ok(Feed::at(replica, head, Some(FeedItem::Snapshot(snapshot))))
    }

    /// The feed that stood at `cursor`, rebuilt: from `checkpoint` (a [`Feed::checkpoint`] at
    /// or before the cursor) or, without one, from the start of the realm, by replaying the
    /// history up to the cursor. Its first item is the transaction after the cursor.
    pub fn resume(
        checkpoint: Option<&[u8]>,
        cursor: FeedCursor,
        history: &History,
    ) -> Result<Feed, FeedError> {
        let mut feed = match checkpoint {
            Some(bytes) => {
                let (replica, head) = Replica::read_server_state(MemoryStore::new(), bytes)?;
                Feed::at(replica, head, None)
            }
            None => Feed::new(),
        };
        if feed.head.version > cursor.version {
            return Err(FeedError::CheckpointAhead {
                checkpoint: feed.head.version,
                cursor: cursor.version,
            });
        }
        while feed.head.version < cursor.version {
            let Some((version, entry)) = feed.open_next(history)? else {
                return Err(FeedError::Ahead {
                    cursor: cursor.version,
                    latest: history.latest(),
                });
            };
            let timestamp = entry.changeset.timestamp;
            feed.replica.take_effects();
            feed.moved_past(version, timestamp);
        }
        Ok(feed)
    }

    fn at(mut replica: Replica<MemoryStore>, head: StateHead, current: Option<FeedItem>) -> Feed {
        replica.record_effects();
        Feed {
            replica,
            head,
            pending: head.fingerprint,
            current,
        }
    }

    /// Where the feed stands: every transaction up to it has been moved past.
    pub fn cursor(&self) -> FeedCursor {
        FeedCursor {
            version: self.head.version,
        }
    }

    /// The realm's state at the cursor, as the feed holds it.
    pub fn replica(&self) -> &Replica<MemoryStore> {
        &self.replica
    }

    /// The next item, or `None` when `history` holds nothing after the cursor (yet). The same
    /// item until [`Feed::advance`].
    pub fn current(&mut self, history: &History) -> Result<Option<&FeedItem>, FeedError> {
        if self.current.is_none() {
            if let Some((version, entry)) = self.open_next(history)? {
                let cs = &entry.changeset;
                self.current = Some(FeedItem::Transaction(FeedTransaction {
                    version,
                    peer: cs.origin,
                    timestamp: cs.timestamp,
                    instructions: instruction::translate(self.replica.take_effects()),
                }));
            }
        }
        Ok(self.current.as_ref())
    }

    /// Moves past the item [`Feed::current`] gave; returns whether there was one.
    pub fn advance(&mut self) -> bool {
        match self.current.take() {
            Some(FeedItem::Transaction(t)) => {
                self.moved_past(t.version, t.timestamp);
                true
            }
            Some(FeedItem::Snapshot(_)) => true,
            None => false,
        }
    }

    /// Keeps the effects of the entry `version`, made at `timestamp`, applied in the open unit.
    fn moved_past(&mut self, version: ServerVersion, timestamp: Timestamp) {
        self.replica.commit();
        self.head = StateHead {
            version,
            fingerprint: self.pending,
            timestamp: self.head.timestamp.max(timestamp),
        };
    }

    /// The feed's state at its cursor, for [`Feed::resume`] (the format of a server's state
    /// snapshot, spec/snapshot.md). A transaction handed out and not moved past is handed out
    /// again.
    pub fn checkpoint(&mut self) -> Vec<u8> {
        if let Some(FeedItem::Transaction(_)) = self.current.take() {
            self.replica.rollback();
        }
        self.replica.server_state(self.head, None)
    }

    /// Applies the entry after the cursor in a unit left open (its effects recorded), and
    /// returns it; `None` if the history holds nothing after the cursor.
    fn open_next<'h>(
        &mut self,
        history: &'h History,
    ) -> Result<Option<(ServerVersion, &'h HistoryEntry)>, FeedError> {
        let (cursor, horizon, latest) = (self.head.version, history.horizon(), history.latest());
        if cursor < horizon {
            return Err(FeedError::BehindHorizon { cursor, horizon });
        }
        if cursor > latest {
            return Err(FeedError::Ahead { cursor, latest });
        }
        let version = ServerVersion(cursor.0 + 1);
        let Some(entry) = history.get(version) else {
            return Ok(None);
        };
        self.replica.begin();
        if let Err(error) = self.replica.apply_changeset(&entry.changeset) {
            self.replica.rollback();
            self.replica.take_effects();
            return Err(FeedError::Apply { version, error });
        }
        self.pending = history.fingerprint(version).unwrap_or_default();
        Ok(Some((version, entry)))
    }
}
