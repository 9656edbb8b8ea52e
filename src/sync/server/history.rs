//! The server's history: its entries by server version, each in the form it was integrated and
//! in its encoded bytes, with the index that finds the entries an upload can meet and the byte
//! counts that make download progress cheap. Nothing outside this module indexes entries by
//! position.
//!
//! A history may have forgotten its beginning: after [`History::trim`] it holds the entries
//! after its *horizon* only, and versions keep their numbers.

use super::index::{Footprint, HistoryIndex};
use crate::model::{Changeset, PeerId, ServerVersion, Timestamp};
use crate::wire::encode;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One entry of the server's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The changeset as integrated (transformed past everything before it).
    pub changeset: Changeset,
    /// The server version its origin had integrated when it wrote (or last rebased) it: with the
    /// origin's earlier changesets, this is its causal past.
    pub uploaded_base: ServerVersion,
}

/// The history of one realm, oldest first. See the module documentation.
///
/// Entries are encoded once, when they are appended, and every download sends those same
/// bytes; the running byte counts give any client's downloadable bytes without re-encoding.
#[derive(Debug)]
pub struct History {
    /// Every version up to here is forgotten; `entries[i]` has version `horizon + i + 1`.
    horizon: ServerVersion,
    entries: Vec<HistoryEntry>,
    encoded: Vec<Arc<[u8]>>,
    index: HistoryIndex,
    /// `bytes_through[i]`: encoded bytes of the first `i` entries held.
    bytes_through: Vec<u64>,
    /// Per origin: (server version, that origin's bytes through it), one per entry it wrote.
    own_bytes: HashMap<PeerId, Vec<(ServerVersion, u64)>>,
    /// The latest changeset timestamp ever appended, forgotten entries included: a client that
    /// starts from the state must stamp its writes after it, as one that downloaded would.
    latest_timestamp: Timestamp,
}

impl Default for History {
    fn default() -> Self {
        History::starting_at(ServerVersion(0))
    }
}

impl PartialEq for History {
    /// Two histories are equal when their horizons and entries are (the rest is derived).
    fn eq(&self, other: &History) -> bool {
        self.horizon == other.horizon
            && self.entries == other.entries
            && self.latest_timestamp == other.latest_timestamp
    }
}

impl History {
    /// An empty history whose versions start after `horizon`.
    pub(super) fn starting_at(horizon: ServerVersion) -> History {
        History {
            horizon,
            entries: Vec::new(),
            encoded: Vec::new(),
            index: HistoryIndex::default(),
            bytes_through: vec![0],
            own_bytes: HashMap::new(),
            latest_timestamp: 0,
        }
    }

    /// The latest server version (0 for an empty history).
    pub fn latest(&self) -> ServerVersion {
        ServerVersion(self.horizon.0 + self.entries.len() as u64)
    }

    /// The last version forgotten: entries up to it are no longer held (0 if none is).
    pub fn horizon(&self) -> ServerVersion {
        self.horizon
    }

    /// The latest timestamp of any changeset ever appended (0 if none was), including those
    /// trimmed away.
    pub fn latest_timestamp(&self) -> Timestamp {
        self.latest_timestamp
    }

    /// Takes note of a timestamp of a changeset that is no longer held (when loading).
    pub(super) fn observe_timestamp(&mut self, t: Timestamp) {
        self.latest_timestamp = self.latest_timestamp.max(t);
    }

    /// The number of entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The position of version `v` in the entry vectors, if the history holds it.
    fn slot(&self, v: ServerVersion) -> Option<usize> {
        let i = usize::try_from(v.0.checked_sub(self.horizon.0 + 1)?).ok()?;
        (i < self.entries.len()).then_some(i)
    }

    /// The number of entries held at or before version `v`.
    fn held_through(&self, v: ServerVersion) -> usize {
        let n = v.0.saturating_sub(self.horizon.0);
        usize::try_from(n).map_or(self.entries.len(), |n| n.min(self.entries.len()))
    }

    /// The entry with server version `v`.
    pub fn get(&self, v: ServerVersion) -> Option<&HistoryEntry> {
        self.slot(v).map(|i| &self.entries[i])
    }

    /// The encoded form of entry `v`, as downloads send it.
    pub fn encoded(&self, v: ServerVersion) -> Option<&Arc<[u8]>> {
        self.slot(v).map(|i| &self.encoded[i])
    }

    /// The entries held after version `after`, oldest first, with their versions.
    pub fn after(
        &self,
        after: ServerVersion,
    ) -> impl Iterator<Item = (ServerVersion, &HistoryEntry)> {
        let from = self.held_through(after);
        let horizon = self.horizon.0;
        (self.entries[from..].iter())
            .enumerate()
            .map(move |(i, e)| (ServerVersion(horizon + (from + i) as u64 + 1), e))
    }

    /// Every entry held, oldest first, with its version.
    pub fn iter(&self) -> impl Iterator<Item = (ServerVersion, &HistoryEntry)> {
        self.after(self.horizon)
    }

    /// The first version after `after` whose entry came from another origin than `peer`: the
    /// next entry `peer` downloads.
    pub fn next_for(&self, peer: PeerId, after: ServerVersion) -> Option<ServerVersion> {
        self.after(after)
            .find(|(_, e)| e.changeset.origin != peer)
            .map(|(v, _)| v)
    }

    /// Bytes of history after `after` that `peer` has yet to download (entries of others).
    pub fn downloadable(&self, peer: PeerId, after: ServerVersion) -> u64 {
        let through = |v: ServerVersion| self.bytes_through[self.held_through(v)];
        let own_through = |v: ServerVersion| {
            self.own_bytes.get(&peer).map_or(0, |own| {
                let n = own.partition_point(|e| e.0 <= v);
                n.checked_sub(1).map_or(0, |i| own[i].1)
            })
        };
        let latest = self.latest();
        (through(latest) - through(after)).saturating_sub(own_through(latest) - own_through(after))
    }

    /// The versions after `after`, ascending, of entries from other origins than `peer` that
    /// may meet something of `footprint`.
    pub(super) fn candidates(
        &self,
        footprint: &Footprint,
        after: ServerVersion,
        peer: PeerId,
    ) -> Vec<u64> {
        self.index.candidates(footprint, after.0, peer)
    }

    /// Appends an integrated entry and returns its version.
    pub(super) fn push(&mut self, entry: HistoryEntry) -> ServerVersion {
        let v = ServerVersion(self.latest().0 + 1);
        let bytes: Arc<[u8]> = encode(&entry.changeset).into();
        self.observe_timestamp(entry.changeset.timestamp);
        self.account(v, &entry.changeset, bytes.len() as u64);
        self.entries.push(entry);
        self.encoded.push(bytes);
        v
    }

    /// Adds entry `v`'s bytes to the running counts and its touches to the index.
    fn account(&mut self, v: ServerVersion, cs: &Changeset, size: u64) {
        let through = self.bytes_through.last().copied().unwrap_or(0);
        self.bytes_through.push(through + size);
        let own = self.own_bytes.entry(cs.origin).or_default();
        let own_through = own.last().map_or(0, |e| e.1) + size;
        own.push((v, own_through));
        self.index.add(v.0, cs);
    }

    /// Forgets every entry up to `horizon` (which must not be past the latest version).
    pub(super) fn trim(&mut self, horizon: ServerVersion) {
        let cut = self.held_through(horizon);
        self.entries.drain(..cut);
        self.encoded.drain(..cut);
        self.horizon = ServerVersion(self.horizon.0 + cut as u64);
        self.reindex();
    }

    /// Lets `rewrite` change the changesets of the entries held (compaction), keeping their
    /// versions; it returns whether it changed the one it was given.
    pub(super) fn rewrite(
        &mut self,
        mut rewrite: impl FnMut(ServerVersion, &mut Changeset) -> bool,
    ) {
        let horizon = self.horizon.0;
        for (i, (entry, bytes)) in self.entries.iter_mut().zip(&mut self.encoded).enumerate() {
            if rewrite(ServerVersion(horizon + i as u64 + 1), &mut entry.changeset) {
                *bytes = encode(&entry.changeset).into();
            }
        }
        self.reindex();
    }

    /// Rebuilds the byte counts and the index from the entries held.
    fn reindex(&mut self) {
        self.bytes_through = vec![0];
        self.own_bytes.clear();
        self.index = HistoryIndex::default();
        let horizon = self.horizon.0;
        let entries = std::mem::take(&mut self.entries);
        for (i, e) in entries.iter().enumerate() {
            let size = self.encoded[i].len() as u64;
            self.account(ServerVersion(horizon + i as u64 + 1), &e.changeset, size);
        }
        self.entries = entries;
    }
}
