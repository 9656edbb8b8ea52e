//! Where the server keeps its realms: the [`Storage`] trait and its two implementations, the
//! embedded journal ([`journal`], one process over its own data directory) and PostgreSQL
//! ([`postgres`], any number of processes over one database).
//!
//! Both keep a realm as the same thing: an identity (the file identifier), a snapshot (a
//! `ServerRealm::save`) at some log position, and the log after it, one record per event a
//! session reported (Registered: a client identity with its salt, the per-peer table; Integrated:
//! a changeset as uploaded), in the record format of [`crate::disk`]. Integration is
//! deterministic, so a process rebuilds a realm, or catches up with records other processes
//! appended, by replaying them ([`crate::disk::apply`]).
//!
//! The server drives a realm's [`RealmStore`] in turns (see `server.rs`): before processing a
//! frame that may append (an IDENT, an UPLOAD carrying changesets) it calls
//! [`RealmStore::begin`], which for a shared store takes the realm's write lock across processes
//! and returns what others appended since, to replay first; records the sessions report are
//! buffered in memory, and [`RealmStore::commit`] makes them durable (journal: write and
//! `fdatasync`; PostgreSQL: one transaction that also releases the lock). Nothing a session
//! sends may depend on records not yet committed.

pub mod journal;
pub mod postgres;

use crate::disk::apply;
use futures_util::future::BoxFuture;
use objsync::session::ServerRealm;
use std::io;
use tokio::sync::mpsc;

/// What a storage does to a realm's history when it writes the realm's snapshot, which it does
/// when it opens the realm: trimming and compaction (spec/semantics.md section 9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many history entries (older ones are trimmed: clients further behind
    /// reset, new ones start from the state); `None`: keep every entry.
    pub keep_history: Option<u64>,
    /// Compact the history (`ServerRealm::compact`): what no future upload or download can
    /// tell apart goes.
    pub compact: bool,
}

impl Retention {
    /// Whether opening a realm changes its history, so that a new snapshot is due.
    pub fn changes_history(&self) -> bool {
        self.compact || self.keep_history.is_some()
    }

    /// Trims, then compacts, the history of `realm` (at `path`, for the log).
    pub fn apply(&self, realm: &mut ServerRealm, path: &str) {
        if let Some(keep) = self.keep_history {
            let horizon = realm.server().version().0.saturating_sub(keep);
            realm.trim(objsync::ServerVersion(horizon));
        }
        if self.compact {
            let removed = realm.compact();
            tracing::info!(path = ?path, removed, "compacted the realm's history");
        }
    }
}

/// Records as stored: each a record payload of [`crate::disk`] (Registered or Integrated).
pub type Records = Vec<Vec<u8>>;

/// A realm as opened: its state, its log position (records up to here are in `realm`) and the
/// handle to append after it.
pub struct OpenedRealm {
    /// The realm, rebuilt from its snapshot and log.
    pub realm: ServerRealm,
    /// Log position: how many records the realm holds (counted from the realm's creation).
    pub end: u64,
    /// Where its records go.
    pub store: Box<dyn RealmStore>,
}

/// News that a realm's log grew elsewhere: its path and the log position it reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grown {
    /// The realm's path.
    pub path: String,
    /// Its log position (records) in storage.
    pub end: u64,
}

/// The server's storage: opens realms and tells of changes other processes made.
pub trait Storage: Send + Sync {
    /// Opens the realm at `path` (creating it on first use), after writing a fresh snapshot
    /// of it if records follow the last one. A realm whose stored form is damaged fails with
    /// `InvalidData`.
    fn open<'a>(&'a self, path: &'a str) -> BoxFuture<'a, io::Result<OpenedRealm>>;

    /// Starts whatever reports realms that grew in other processes to `grown` (nothing for
    /// a store only this process writes).
    fn watch(&self, grown: mpsc::UnboundedSender<Grown>);

    /// A short description for the log (`journal in DIR`, `postgres host:port/db`).
    fn describe(&self) -> String;

    /// The paths of every realm stored (for the Adapter feed, which follows realms by path).
    fn realms(&self) -> BoxFuture<'_, io::Result<Vec<String>>>;
}

/// One realm's log, as this process appends to it.
pub trait RealmStore: Send + Sync {
    /// Whether other processes append to this realm too: then a turn must be taken before
    /// processing a frame that may append, and news of growth elsewhere must be read.
    fn shared(&self) -> bool;

    /// Takes the realm's write turn, if this process does not hold it: from then until
    /// [`commit`](Self::commit) no other process appends. Returns the records others appended
    /// after position `at` (this process's position), to replay before processing anything.
    fn begin(&self, at: u64) -> BoxFuture<'_, io::Result<Records>>;

    /// Makes `records`, appended after position `at`, durable, and ends the turn. Fails if
    /// the log is no longer at `at` (another process appended: this one lost its turn) or
    /// the write failed; then what the process holds in memory is suspect.
    fn commit(&self, at: u64, records: Records) -> BoxFuture<'_, io::Result<()>>;

    /// Records others committed after position `at`, read without taking the turn; empty
    /// while this process holds the turn (nobody else can have appended).
    fn since(&self, at: u64) -> BoxFuture<'_, io::Result<Records>>;
}

/// Replays stored records onto a realm (opening it, or catching up with what other processes
/// appended); a record that does not replay is damage, named by its place and realm.
pub fn replay(realm: &mut ServerRealm, records: &[Vec<u8>], path: &str) -> io::Result<()> {
    for (i, record) in records.iter().enumerate() {
        apply(realm, record).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("record {i} of those read for {path} does not replay: {e}"),
            )
        })?;
    }
    Ok(())
}
