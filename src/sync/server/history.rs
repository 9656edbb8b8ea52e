//! The server's history: its entries by server version, each in the form it was integrated and
//! in its encoded bytes, with the index that finds the entries an upload can meet and the byte
//! counts that make download progress cheap. Nothing outside this module indexes entries by
//! position.

use super::index::{Footprint, HistoryIndex};
use crate::model::{Changeset, PeerId, ServerVersion};
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
    entries: Vec<HistoryEntry>,
    encoded: Vec<Arc<[u8]>>,
    index: HistoryIndex,
    /// `bytes_through[v]`: encoded bytes of entries 1..=v.
    bytes_through: Vec<u64>,
    /// Per origin: (server version, that origin's bytes through it), one per entry it wrote.
    own_bytes: HashMap<PeerId, Vec<(ServerVersion, u64)>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            entries: Vec::new(),
            encoded: Vec::new(),
            index: HistoryIndex::default(),
            bytes_through: vec![0],
            own_bytes: HashMap::new(),
        }
    }
}

impl PartialEq for History {
    /// Two histories are equal when their entries are (the rest is derived from them).
    fn eq(&self, other: &History) -> bool {
        self.entries == other.entries
    }
}

impl History {
    /// The latest server version (0 for an empty history).
    pub fn latest(&self) -> ServerVersion {
        ServerVersion(self.entries.len() as u64)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the history has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The position of version `v` in the entry vectors, if the history has it.
    fn slot(&self, v: ServerVersion) -> Option<usize> {
        let i = usize::try_from(v.0.checked_sub(1)?).ok()?;
        (i < self.entries.len()).then_some(i)
    }

    /// The entry with server version `v`.
    pub fn get(&self, v: ServerVersion) -> Option<&HistoryEntry> {
        self.slot(v).map(|i| &self.entries[i])
    }

    /// The encoded form of entry `v`, as downloads send it.
    pub fn encoded(&self, v: ServerVersion) -> Option<&Arc<[u8]>> {
        self.slot(v).map(|i| &self.encoded[i])
    }

    /// The entries after version `after`, oldest first, with their versions.
    pub fn after(
        &self,
        after: ServerVersion,
    ) -> impl Iterator<Item = (ServerVersion, &HistoryEntry)> {
        let from = usize::try_from(after.0)
            .unwrap_or(usize::MAX)
            .min(self.entries.len());
        (self.entries[from..].iter())
            .enumerate()
            .map(move |(i, e)| (ServerVersion((from + i) as u64 + 1), e))
    }

    /// Every entry, oldest first, with its version.
    pub fn iter(&self) -> impl Iterator<Item = (ServerVersion, &HistoryEntry)> {
        self.after(ServerVersion(0))
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
        let through = |v: ServerVersion| {
            let i = usize::try_from(v.0).map_or(usize::MAX, |i| i);
            self.bytes_through[i.min(self.bytes_through.len() - 1)]
        };
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
        let size = bytes.len() as u64;
        let through = self.bytes_through.last().copied().unwrap_or(0);
        self.bytes_through.push(through + size);
        let own = self.own_bytes.entry(entry.changeset.origin).or_default();
        let own_through = own.last().map_or(0, |e| e.1) + size;
        own.push((v, own_through));
        self.index.add(v.0, &entry.changeset);
        self.entries.push(entry);
        self.encoded.push(bytes);
        v
    }
}
