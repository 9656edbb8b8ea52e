//! The server's history: its entries by server version, each in the form it was integrated and
//! in its encoded bytes, with the index that finds the entries an upload can meet and the byte
//! counts that make download progress cheap. Nothing outside this module indexes entries by
//! position.
//!
//! The encoded bytes and their counts are built when something first asks for them (a session
//! serving a download) and then kept up to date: a server that only integrates in process (a
//! benchmark, a test, a caller with its own transport) never encodes, and one that serves
//! encodes each entry once.
//!
//! A history may have forgotten its beginning: after [`History::trim`] it holds the entries
//! after its *horizon* only, and versions keep their numbers. What it keeps of the forgotten
//! entries is their *residue*: the instructions a late changeset could still meet, without
//! their values (spec/semantics.md 9.3), which is what a client that recovers from a reset
//! merges its changesets with.
//!
//! Every version has a [`Fingerprint`], chained from the entries before it, so that a client
//! can tell whether the history it integrated is still this one.

use super::index::{Footprint, HistoryIndex};
use crate::model::{Changeset, Fingerprint, PeerId, ServerVersion, Timestamp};
use crate::wire::encode;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

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
/// Entries are encoded once, and every download sends those same bytes; the running byte
/// counts give any client's downloadable bytes without re-encoding.
#[derive(Debug)]
pub struct History {
    /// Every version up to here is forgotten; `entries[i]` has version `horizon + i + 1`.
    horizon: ServerVersion,
    /// The fingerprint at the horizon.
    base_fingerprint: Fingerprint,
    entries: Vec<HistoryEntry>,
    /// `fingerprints[i]` is the fingerprint at version `horizon + i + 1`.
    fingerprints: Vec<Fingerprint>,
    /// The residue of the forgotten entries, oldest first, each with its version.
    residue: Vec<(ServerVersion, Changeset)>,
    index: HistoryIndex,
    /// Built at the first need (see the module documentation).
    encoded: OnceLock<Encoded>,
    /// The latest changeset timestamp ever appended, forgotten entries included: a client that
    /// starts from the state must stamp its writes after it, as one that downloaded would.
    latest_timestamp: Timestamp,
}

/// The encoded entries held, and their running byte counts.
#[derive(Debug, Default)]
struct Encoded {
    bytes: Vec<Arc<[u8]>>,
    /// `through[i]`: encoded bytes of the first `i` entries held.
    through: Vec<u64>,
    /// Per origin: (server version, that origin's bytes through it), one per entry it wrote.
    own: HashMap<PeerId, Vec<(ServerVersion, u64)>>,
}

impl Encoded {
    fn of(history: &History) -> Encoded {
        let mut encoded = Encoded {
            through: vec![0],
            ..Encoded::default()
        };
        for (v, e) in history.iter() {
            encoded.push(v, &e.changeset);
        }
        encoded
    }

    fn push(&mut self, v: ServerVersion, cs: &Changeset) {
        self.push_bytes(v, cs.origin, encode(cs).into());
    }

    fn push_bytes(&mut self, v: ServerVersion, origin: PeerId, bytes: Arc<[u8]>) {
        let size = bytes.len() as u64;
        self.bytes.push(bytes);
        let through = self.through.last().copied().unwrap_or(0);
        self.through.push(through + size);
        let own = self.own.entry(origin).or_default();
        let own_through = own.last().map_or(0, |e| e.1) + size;
        own.push((v, own_through));
    }

    /// Rebuilds the counts from `bytes` (one per entry of `history`), after entries were
    /// forgotten or rewritten.
    fn recount(history: &History, bytes: Vec<Arc<[u8]>>) -> Encoded {
        let mut encoded = Encoded {
            through: vec![0],
            ..Encoded::default()
        };
        for ((v, e), b) in history.iter().zip(bytes) {
            encoded.push_bytes(v, e.changeset.origin, b);
        }
        encoded
    }
}

impl Default for History {
    fn default() -> Self {
        History::starting_at(ServerVersion(0), Fingerprint::default())
    }
}

impl PartialEq for History {
    /// Two histories are equal when their horizons and entries are (the rest is derived).
    fn eq(&self, other: &History) -> bool {
        self.horizon == other.horizon
            && self.base_fingerprint == other.base_fingerprint
            && self.entries == other.entries
            && self.residue == other.residue
            && self.latest_timestamp == other.latest_timestamp
    }
}

impl History {
    /// An empty history whose versions start after `horizon`, where the fingerprint is
    /// `fingerprint`.
    pub(super) fn starting_at(horizon: ServerVersion, fingerprint: Fingerprint) -> History {
        History {
            horizon,
            base_fingerprint: fingerprint,
            entries: Vec::new(),
            fingerprints: Vec::new(),
            residue: Vec::new(),
            index: HistoryIndex::default(),
            encoded: OnceLock::new(),
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

    /// The fingerprint of the history through version `v`, if `v` is the horizon or a version
    /// held. Before the horizon it is forgotten with the entries.
    pub fn fingerprint(&self, v: ServerVersion) -> Option<Fingerprint> {
        if v == self.horizon {
            return Some(self.base_fingerprint);
        }
        self.slot(v).map(|i| self.fingerprints[i])
    }

    /// The fingerprint at the horizon.
    pub fn horizon_fingerprint(&self) -> Fingerprint {
        self.base_fingerprint
    }

    /// The fingerprint at the latest version.
    pub fn latest_fingerprint(&self) -> Fingerprint {
        *self.fingerprints.last().unwrap_or(&self.base_fingerprint)
    }

    /// The residue of the forgotten entries (see the module documentation), oldest first.
    pub fn residue(&self) -> &[(ServerVersion, Changeset)] {
        &self.residue
    }

    /// Sets the residue of the forgotten entries (when loading).
    pub(super) fn set_residue(&mut self, residue: Vec<(ServerVersion, Changeset)>) {
        self.residue = residue;
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

    fn bytes(&self) -> &Encoded {
        self.encoded.get_or_init(|| Encoded::of(self))
    }

    /// The encoded form of entry `v`, as downloads send it.
    pub fn encoded(&self, v: ServerVersion) -> Option<&Arc<[u8]>> {
        self.slot(v).map(|i| &self.bytes().bytes[i])
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
        let bytes = self.bytes();
        let through = |v: ServerVersion| bytes.through[self.held_through(v)];
        let own_through = |v: ServerVersion| {
            bytes.own.get(&peer).map_or(0, |own| {
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

    /// Appends an integrated entry whose changeset, as uploaded, has signature `signature`
    /// and footprint `footprint` (see [`HistoryIndex::add`]); returns its version.
    pub(super) fn push(
        &mut self,
        entry: HistoryEntry,
        signature: u64,
        footprint: &Footprint,
    ) -> ServerVersion {
        let cs = &entry.changeset;
        let next = (self.latest_fingerprint()).then(cs.origin, cs.client_version, signature);
        self.append_with(entry, next, footprint)
    }

    /// Appends an entry with the fingerprint through it (when loading); returns its version.
    pub(super) fn append(
        &mut self,
        entry: HistoryEntry,
        fingerprint: Fingerprint,
    ) -> ServerVersion {
        let footprint = Footprint::of(std::slice::from_ref(&entry.changeset));
        self.append_with(entry, fingerprint, &footprint)
    }

    fn append_with(
        &mut self,
        entry: HistoryEntry,
        fingerprint: Fingerprint,
        footprint: &Footprint,
    ) -> ServerVersion {
        let v = ServerVersion(self.latest().0 + 1);
        self.fingerprints.push(fingerprint);
        self.observe_timestamp(entry.changeset.timestamp);
        self.index.add(v.0, entry.changeset.origin, footprint);
        if let Some(encoded) = self.encoded.get_mut() {
            encoded.push(v, &entry.changeset);
        }
        self.entries.push(entry);
        v
    }

    /// Forgets every entry up to `horizon` (which must not be past the latest version),
    /// keeping `residue` as the residue of everything forgotten so far.
    pub(super) fn trim(
        &mut self,
        horizon: ServerVersion,
        residue: Vec<(ServerVersion, Changeset)>,
    ) {
        let cut = self.held_through(horizon);
        self.entries.drain(..cut);
        if let Some(last) = self.fingerprints.drain(..cut).next_back() {
            self.base_fingerprint = last;
        }
        self.residue = residue;
        self.horizon = ServerVersion(self.horizon.0 + cut as u64);
        self.reindex(|mut bytes, _| {
            bytes.drain(..cut);
            bytes
        });
    }

    /// Lets `rewrite` change the changesets of the entries held (compaction), keeping their
    /// versions; it returns whether it changed the one it was given.
    pub(super) fn rewrite(
        &mut self,
        mut rewrite: impl FnMut(ServerVersion, &mut Changeset) -> bool,
    ) {
        let horizon = self.horizon.0;
        let changed: Vec<usize> = (self.entries.iter_mut().enumerate())
            .filter_map(|(i, e)| {
                rewrite(ServerVersion(horizon + i as u64 + 1), &mut e.changeset).then_some(i)
            })
            .collect();
        self.reindex(|mut bytes, entries| {
            for i in changed {
                bytes[i] = encode(&entries[i].changeset).into();
            }
            bytes
        });
    }

    /// Rebuilds the index from the entries held, and the byte counts (if built) from the
    /// encoded entries `bytes` makes of the old ones.
    fn reindex(&mut self, bytes: impl FnOnce(Vec<Arc<[u8]>>, &[HistoryEntry]) -> Vec<Arc<[u8]>>) {
        let mut index = HistoryIndex::default();
        for (v, e) in self.iter() {
            let footprint = Footprint::of(std::slice::from_ref(&e.changeset));
            index.add(v.0, e.changeset.origin, &footprint);
        }
        self.index = index;
        if let Some(old) = self.encoded.take() {
            let encoded = Encoded::recount(self, bytes(old.bytes, &self.entries));
            self.encoded = OnceLock::from(encoded);
        }
    }
}
