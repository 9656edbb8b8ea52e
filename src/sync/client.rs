//! A client: a local replica, its unacknowledged changesets, and its versions.

use super::clock::Hlc;
use super::{Download, DownloadEntry, SyncError, Upload, UploadAck};
use crate::merge::{interacts, merge};
use crate::model::{
    Changeset, Checkpoint, ClientVersion, Cursor, Error, Fingerprint, PeerId, ServerVersion,
    Timestamp,
};
use crate::observe::{Changes, Observe};
use crate::replica::{Replica, StateHead};
use crate::snapshot::{Kind, SnapshotError, SnapshotReader, SnapshotWriter};
use crate::store::{MemoryStore, Store};
use crate::write::Transaction;
use std::borrow::Cow;
use std::collections::VecDeque;

/// Smallest encoded changeset in a snapshot (header varints and an op count).
const MIN_CHANGESET_BYTES: usize = 5;
/// Smallest encoded checkpoint (two varints).
const MIN_CHECKPOINT_BYTES: usize = 2;

/// How many changesets a client keeps after the server integrated them, by default (see
/// [`Client::set_recovery_window`]).
pub const DEFAULT_RECOVERY_WINDOW: usize = 1000;

/// A client: a local replica, its unacknowledged changesets, and its versions.
#[derive(Debug)]
pub struct Client<S: Store = MemoryStore> {
    pub(super) replica: Replica<S>,
    pub(super) unacked: Vec<Changeset>,
    pub(super) cursor: Cursor,
    pub(super) next_version: u64,
    pub(super) acked: ClientVersion,
    failed: Option<SyncError>,
    pub(super) clock: Hlc,
    /// Changesets the server integrated and this client has downloaded past, newest last:
    /// what a reset replays if the server loses them.
    pub(super) retained: VecDeque<Changeset>,
    /// The fingerprints of the latest server versions this client integrated, oldest first:
    /// how a reset finds the last version its history shares with a server restored from a
    /// backup.
    pub(super) checkpoints: VecDeque<Checkpoint>,
    /// How many changesets, and how many checkpoints, to keep.
    pub(super) recovery_window: usize,
    /// The cause of the last reset, until the client syncs again (see [`Client::reset`]).
    pub(super) last_reset: Option<u8>,
    /// Instructions a reset could not apply yet (see [`Client::deferred`]).
    pub(super) deferred: Vec<Changeset>,
    /// The server's corrections of this client's changesets not yet taken (see
    /// [`Client::take_corrections`]).
    corrections: Vec<Changeset>,
}

impl Client<MemoryStore> {
    /// A new client with an empty in-memory replica.
    pub fn new(peer: PeerId) -> Self {
        Client::with_replica(Replica::new(peer))
    }
}

impl Client<MemoryStore> {
    /// Loads a client saved with [`Client::save`], with an in-memory store.
    ///
    /// ```
    /// use objsync::sync::Client;
    /// use objsync::{ObjectType, PeerId, PropType, Property};
    ///
    /// let mut client = Client::new(PeerId(3));
    /// client.write(10, |tx| {
    ///     tx.add_type(ObjectType::new("T", Some("id"), [Property::new("id", PropType::parse("int")?)])?)?;
    ///     tx.insert("T", 1)
    /// })?;
    /// let restarted = Client::load(&client.save())?;
    /// assert_eq!(restarted.upload(), client.upload());
    /// assert_eq!(restarted.last_version(), client.last_version());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(bytes: &[u8]) -> Result<Self, SnapshotError> {
        Client::load_into(MemoryStore::new(), bytes)
    }

    /// [`Client::bootstrap_into`] an in-memory store.
    pub fn bootstrap(peer: PeerId, snapshot: &[u8]) -> Result<Self, SnapshotError> {
        Client::bootstrap_into(MemoryStore::new(), peer, snapshot)
    }
}

impl<S: Store> Client<S> {
    /// A snapshot of this client: its replica, its unacknowledged changesets, its cursor, its
    /// version counters and its clock (spec/snapshot.md). A client that stopped after an error
    /// is saved without the error: loaded, it tries again, and an error that lies in its data
    /// (a download it cannot integrate) stops it again.
    pub fn save(&self) -> Vec<u8> {
        let mut w = SnapshotWriter::new(Kind::Client);
        self.replica.write_state(w.items());
        let e = w.items();
        e.u64(self.cursor.server.0);
        e.u64(self.cursor.own.0);
        e.u64(self.cursor.fingerprint.0);
        e.u64(self.next_version);
        e.u64(self.acked.0);
        e.u64(self.clock.last());
        e.u64(self.recovery_window as u64);
        e.u64(self.last_reset.map_or(0, u64::from));
        e.count(self.unacked.len());
        for cs in &self.unacked {
            w.changeset(cs);
        }
        w.items().count(self.retained.len());
        for cs in &self.retained {
            w.changeset(cs);
        }
        w.items().count(self.checkpoints.len());
        for c in &self.checkpoints {
            w.items().u64(c.version.0);
            w.items().u64(c.fingerprint.0);
        }
        w.items().count(self.deferred.len());
        for cs in &self.deferred {
            w.changeset(cs);
        }
        w.finish()
    }

    /// A new client for `peer` that starts from a server's state
    /// ([`Server::state_snapshot`](crate::sync::Server::state_snapshot)) instead of downloading
    /// the history before it, into `store`, which must be empty. It is then exactly the client
    /// that has downloaded everything up to the snapshot's version and written nothing: same
    /// state, same cursor, same future merges; its clock is past every timestamp in the state.
    pub fn bootstrap_into(store: S, peer: PeerId, snapshot: &[u8]) -> Result<Self, SnapshotError> {
        let mut client = Client::with_replica(Replica::with_store(peer, store));
        client.start_from_state(snapshot)?;
        Ok(client)
    }

    /// Makes this client, which must be new (nothing written, nothing downloaded, an empty
    /// store), the client [`Client::bootstrap_into`] makes. On any error it stays as it was
    /// ([`SnapshotError::NotEmpty`] if it was not new).
    pub fn start_from_state(&mut self, snapshot: &[u8]) -> Result<(), SnapshotError> {
        if self.last_version().0 > 0 || self.cursor != Cursor::default() {
            return Err(SnapshotError::NotEmpty);
        }
        let mut r = SnapshotReader::open(snapshot, Kind::State)?;
        let StateHead {
            version,
            fingerprint,
            timestamp,
        } = StateHead::read(r.items())?;
        let peer = self.peer();
        self.replica.replace_with(|replica| {
            replica.read_in_place(r.items())?;
            r.finish()?;
            replica.adopt(peer)?;
            Ok(())
        })?;
        self.cursor.server = version;
        self.cursor.fingerprint = fingerprint;
        self.checkpoint(version, fingerprint);
        self.clock.observe(timestamp);
        Ok(())
    }

    /// Loads a client saved with [`Client::save`] into `store`, which must be empty.
    pub fn load_into(store: S, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut r = SnapshotReader::open(bytes, Kind::Client)?;
        let replica = Replica::read_state(store, r.items())?;
        let i = r.items();
        let cursor = Cursor {
            server: ServerVersion(i.u64("cursor server version")?),
            own: ClientVersion(i.u64("cursor client version")?),
            fingerprint: Fingerprint(i.u64("cursor fingerprint")?),
        };
        let next_version = i.u64("next client version")?;
        let acked = ClientVersion(i.u64("acknowledged version")?);
        let mut clock = Hlc::new();
        clock.observe(i.u64("clock")?);
        let recovery_window = usize::try_from(i.u64("recovery window")?).unwrap_or(usize::MAX);
        let last_reset = match i.u64("last reset")? {
            0 => None,
            c => Some(u8::try_from(c).map_err(|_| {
                SnapshotError::Inconsistent("the last reset's cause is out of range")
            })?),
        };
        let peer = replica.peer();
        let unacked = read_own(&mut r, peer, "unacknowledged changesets", true, |cs| {
            cs.client_version.0 < next_version
        })?;
        let retained = read_own(&mut r, peer, "retained changesets", true, |cs| {
            cs.client_version <= acked
        })?
        .into();
        let checkpoints = read_checkpoints(&mut r, cursor.server)?;
        let deferred = read_own(&mut r, peer, "deferred changesets", false, |_| true)?;
        r.finish()?;
        if next_version == 0 || acked.0 >= next_version || cursor.own.0 >= next_version {
            return Err(SnapshotError::Inconsistent(
                "the client's versions contradict each other",
            ));
        }
        Ok(Client {
            replica,
            unacked,
            cursor,
            next_version,
            acked,
            failed: None,
            clock,
            retained,
            checkpoints,
            recovery_window,
            last_reset,
            deferred,
            corrections: Vec::new(),
        })
    }

    /// A client over an existing replica.
    pub fn with_replica(replica: Replica<S>) -> Self {
        Client {
            replica,
            unacked: Vec::new(),
            cursor: Cursor::default(),
            next_version: 1,
            acked: ClientVersion(0),
            failed: None,
            clock: Hlc::new(),
            retained: VecDeque::new(),
            checkpoints: VecDeque::new(),
            recovery_window: DEFAULT_RECOVERY_WINDOW,
            last_reset: None,
            deferred: Vec::new(),
            corrections: Vec::new(),
        }
    }

    /// The server's corrections of this client's writes since they were last taken
    /// (spec/permissions.md): each undoes, on this client, the instructions of its changeset
    /// with the same client version that the server refused for want of a privilege. They
    /// apply like any download, so what they change is also reported by
    /// [`Client::take_changes`].
    pub fn take_corrections(&mut self) -> Vec<Changeset> {
        std::mem::take(&mut self.corrections)
    }

    /// Instructions of this client that a reset replayed but that did not apply to the
    /// server's state, each in a changeset with its original origin and timestamp: they name
    /// objects the server does not have (yet). After every download the client tries them
    /// again; those that apply then become a new local changeset, with their original key.
    pub fn deferred(&self) -> &[Changeset] {
        &self.deferred
    }

    /// Gives up on the deferred instructions ([`Client::deferred`]) and returns them.
    pub fn take_deferred(&mut self) -> Vec<Changeset> {
        std::mem::take(&mut self.deferred)
    }

    /// Applies what it can of the deferred instructions, each changeset's part that applies
    /// becoming a new unacknowledged changeset based on the cursor.
    pub(super) fn retry_deferred(&mut self) {
        for mut cs in std::mem::take(&mut self.deferred) {
            let failed = self.replica.apply_changeset_lenient(&mut cs);
            if !failed.is_empty() {
                (self.deferred).push(Changeset {
                    ops: failed,
                    ..cs.clone()
                });
            }
            if !cs.ops.is_empty() {
                cs.client_version = ClientVersion(self.next_version);
                cs.base_version = self.cursor.server;
                self.next_version += 1;
                self.unacked.push(cs);
            }
        }
    }

    /// Sets how many of its changesets the client keeps after the server has integrated them
    /// and it has downloaded past them, and how many fingerprints of server versions it has
    /// integrated ([`DEFAULT_RECOVERY_WINDOW`] of each by default). A reset replays the kept
    /// changesets the server lost (a server restored from a backup), merged from the last
    /// version both histories share, which the fingerprints find; so a larger window survives
    /// an older backup. Each kept changeset costs its size in memory and in the client's
    /// snapshot, each fingerprint 16 bytes.
    pub fn set_recovery_window(&mut self, changesets: usize) {
        self.recovery_window = changesets;
        self.trim_retained();
    }

    pub(super) fn trim_retained(&mut self) {
        let excess = self.retained.len().saturating_sub(self.recovery_window);
        self.retained.drain(..excess);
        let excess = self.checkpoints.len().saturating_sub(self.recovery_window);
        self.checkpoints.drain(..excess);
    }

    /// Takes note of the fingerprint of a server version this client has integrated.
    pub(super) fn checkpoint(&mut self, version: ServerVersion, fingerprint: Fingerprint) {
        if self
            .checkpoints
            .back()
            .map_or(true, |c| c.version < version)
        {
            (self.checkpoints).push_back(Checkpoint {
                version,
                fingerprint,
            });
        }
    }

    /// A timestamp for the next local transaction from a physical clock reading: never earlier
    /// than anything this client wrote or integrated (see [`Hlc`]).
    pub fn stamp(&mut self, physical_now: Timestamp) -> Timestamp {
        self.clock.stamp(physical_now)
    }

    /// The peer id.
    pub fn peer(&self) -> PeerId {
        self.replica.peer()
    }

    /// The local replica.
    pub fn replica(&self) -> &Replica<S> {
        &self.replica
    }

    /// Starts observing a type or an object: what changes in it, by local writes and by
    /// integrated downloads, is reported by [`Client::take_changes`]
    /// ([`Replica::observe`]).
    pub fn observe(&mut self, what: Observe) -> bool {
        self.replica.observe(what)
    }

    /// Stops observing a type or an object ([`Replica::unobserve`]).
    pub fn unobserve(&mut self, what: &Observe) -> bool {
        self.replica.unobserve(what)
    }

    /// What changed in the observed types and objects since the changes were last taken
    /// ([`Replica::take_changes`]).
    pub fn take_changes(&mut self) -> Changes {
        self.replica.take_changes()
    }

    /// Where the download stands.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// The changesets the server has not yet integrated as far as this client knows, plus those
    /// it integrated after the client's download position (kept for merging).
    pub fn unacknowledged(&self) -> &[Changeset] {
        &self.unacked
    }

    /// The last client version the server has acknowledged.
    pub fn acknowledged(&self) -> ClientVersion {
        self.acked
    }

    /// The client version of the latest local changeset (0 if none).
    pub fn last_version(&self) -> ClientVersion {
        ClientVersion(self.next_version - 1)
    }

    /// The error that stopped this client, if one did.
    pub fn failure(&self) -> Option<&SyncError> {
        self.failed.as_ref()
    }

    /// Runs a local write transaction at `timestamp`. If `f` succeeds the transaction commits
    /// and, unless it wrote nothing, becomes an unacknowledged changeset; its client version is
    /// returned. If `f` fails, nothing is changed.
    pub fn write<T>(
        &mut self,
        timestamp: Timestamp,
        f: impl FnOnce(&mut Transaction<'_, S>) -> Result<T, Error>,
    ) -> Result<(T, Option<ClientVersion>), Error> {
        let mut tx = self.replica.transaction(timestamp);
        let out = f(&mut tx)?;
        self.clock.observe(timestamp);
        let mut cs = tx.commit();
        if cs.ops.is_empty() {
            return Ok((out, None));
        }
        let v = ClientVersion(self.next_version);
        self.next_version += 1;
        cs.client_version = v;
        cs.base_version = self.cursor.server;
        self.unacked.push(cs);
        Ok((out, Some(v)))
    }

    /// Everything the server has not acknowledged, rebased on the last integrated server
    /// version, with where the client stands.
    pub fn upload(&self) -> Upload {
        Upload {
            cursor: self.cursor,
            acknowledged: self.acked,
            acknowledged_signature: self.acknowledged_signature(),
            changesets: self
                .unacked
                .iter()
                .filter(|cs| cs.client_version > self.acked)
                .cloned()
                .collect(),
        }
    }

    /// The [signature](Changeset::signature) of the last changeset the server acknowledged, if
    /// the client still has it: what it shows a server so that one holding another changeset
    /// under that version finds out.
    pub fn acknowledged_signature(&self) -> Option<u64> {
        self.own(self.acked).map(Changeset::signature)
    }

    /// This client's changeset with client version `cv`, if it still has it.
    fn own(&self, cv: ClientVersion) -> Option<&Changeset> {
        let retained = self.retained.iter().rev();
        (self.unacked.iter().chain(retained)).find(|cs| cs.client_version == cv)
    }

    /// Records the server's acknowledgement of an upload.
    pub fn acknowledge(&mut self, ack: UploadAck) {
        // The server took an upload: a reset before it did its work.
        self.last_reset = None;
        self.acked = self.acked.max(ack.integrated);
    }

    /// Drops the changesets the server integrated up to `own` from the unacknowledged ones,
    /// keeping them for a reset as transformed so far, based on the cursor.
    fn drop_integrated(&mut self, own: ClientVersion) {
        let n = self.unacked.partition_point(|cs| cs.client_version <= own);
        for mut cs in self.unacked.drain(..n) {
            cs.base_version = self.cursor.server;
            self.retained.push_back(cs);
        }
        self.trim_retained();
        self.acked = self.acked.max(own);
    }

    /// Integrates downloaded server changesets: each batch is merged with the local
    /// unacknowledged changesets it is concurrent with, and applied.
    pub fn integrate(&mut self, download: Download) -> Result<(), SyncError> {
        self.integrate_guarded(Cow::Owned(download))
    }

    /// [`integrate`](Self::integrate) a download the caller keeps (to log it, say): the
    /// changesets are copied only where a local changeset meets them, which a batch that only
    /// touches what this client is not writing never does.
    pub fn integrate_ref(&mut self, download: &Download) -> Result<(), SyncError> {
        self.integrate_guarded(Cow::Borrowed(download))
    }

    fn integrate_guarded(&mut self, download: Cow<'_, Download>) -> Result<(), SyncError> {
        if let Some(f) = &self.failed {
            return Err(SyncError::Stopped(Box::new(f.clone())));
        }
        let result = self.integrate_inner(download);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// Checks that a download fits this client: the server holds no more of its changesets
    /// than it wrote, none fewer than it acknowledged, and the same content for the newest.
    fn check_download(&self, download: &Download) -> Result<(), SyncError> {
        if download.cursor.own > self.last_version() {
            return Err(SyncError::ClientBehind {
                peer: self.peer(),
                integrated: download.cursor.own,
                written: self.last_version(),
            });
        }
        if download.integrated < self.acked {
            return Err(SyncError::ChangesetsLost {
                peer: self.peer(),
                acknowledged: self.acked,
                integrated: download.integrated,
            });
        }
        let own = self.own(download.cursor.own);
        if let (Some(own), Some(signature)) = (own, download.own_signature) {
            if own.signature() != signature {
                return Err(SyncError::ChangesetMismatch {
                    peer: self.peer(),
                    version: own.client_version,
                });
            }
        }
        Ok(())
    }

    fn integrate_inner(&mut self, download: Cow<'_, Download>) -> Result<(), SyncError> {
        self.check_download(&download)?;
        if download.cursor.server < self.cursor.server {
            // A stale or repeated download: everything in it is integrated already.
            return Ok(());
        }
        let from = self.cursor.server;
        let cursor = download.cursor;
        let entries: Box<dyn Iterator<Item = Cow<'_, DownloadEntry>>> = match download {
            Cow::Owned(d) => Box::new(d.entries.into_iter().map(Cow::Owned)),
            Cow::Borrowed(d) => Box::new(d.entries.iter().map(Cow::Borrowed)),
        };
        let mut entries = entries.filter(|e| e.server_version > from).peekable();
        while let Some(first) = entries.next() {
            // Consecutive entries with the same view of this peer's changesets merge as one
            // sequence against the same local changesets.
            let own = first.last_own;
            let mut batch = vec![first];
            while let Some(next) = entries.next_if(|e| e.last_own == own) {
                batch.push(next);
            }
            self.drop_integrated(own);
            (self.corrections).extend(
                (batch.iter())
                    .filter(|e| e.changeset.origin == PeerId(0))
                    .map(|e| e.changeset.clone()),
            );
            self.integrate_batch(batch)?;
        }
        self.drop_integrated(cursor.own);
        // The server served this client's position: a reset before it did its work.
        self.last_reset = None;
        self.cursor = cursor;
        self.retry_deferred();
        self.checkpoint(self.cursor.server, self.cursor.fingerprint);
        self.trim_retained();
        for cs in &mut self.unacked {
            cs.base_version = self.cursor.server;
        }
        Ok(())
    }

    /// Merges a batch of downloaded entries (all owned or all borrowed) with the
    /// unacknowledged changesets and applies them. Merging changes nothing unless an
    /// instruction of one side meets one of the other, so a borrowed batch that meets none is
    /// applied as it came, without copying what the caller keeps.
    fn integrate_batch(&mut self, batch: Vec<Cow<'_, DownloadEntry>>) -> Result<(), SyncError> {
        // Merging an owned batch costs what finding out whether it would change anything
        // does; a borrowed one is worth the look, since merging it means copying it first.
        let borrowed = matches!(batch.first(), Some(Cow::Borrowed(_)));
        let incoming = batch.iter().map(|e| &e.changeset);
        if self.unacked.is_empty() || (borrowed && !interacts(incoming, &self.unacked)) {
            for entry in batch {
                let (v, fingerprint) = (entry.server_version, entry.fingerprint);
                let changeset = match entry {
                    Cow::Owned(e) => Cow::Owned(e.changeset),
                    Cow::Borrowed(e) => Cow::Borrowed(&e.changeset),
                };
                self.apply_entry(v, fingerprint, changeset)?;
            }
            return Ok(());
        }
        let versions: Vec<(ServerVersion, Fingerprint)> = (batch.iter())
            .map(|e| (e.server_version, e.fingerprint))
            .collect();
        let mut incoming: Vec<Changeset> = (batch.into_iter())
            .map(|e| e.into_owned().changeset)
            .collect();
        merge(
            &mut incoming,
            &mut self.unacked,
            self.replica.store().schema(),
        )
        .map_err(|error| SyncError::Integration {
            server_version: versions[0].0,
            error,
        })?;
        for (cs, (v, fingerprint)) in incoming.into_iter().zip(versions) {
            self.apply_entry(v, fingerprint, Cow::Owned(cs))?;
        }
        Ok(())
    }

    /// Applies downloaded entry `v` and moves the cursor past it. An owned changeset is not
    /// needed once applied: its values move into the store, and the rest is dropped while
    /// still in cache.
    fn apply_entry(
        &mut self,
        v: ServerVersion,
        fingerprint: Fingerprint,
        changeset: Cow<'_, Changeset>,
    ) -> Result<(), SyncError> {
        self.clock.observe(changeset.timestamp);
        let applied = match changeset {
            Cow::Owned(cs) => self.replica.apply_changeset_owned(cs),
            Cow::Borrowed(cs) => self.replica.apply_changeset(cs),
        };
        applied.map_err(|error| SyncError::Integration {
            server_version: v,
            error,
        })?;
        self.cursor.server = v;
        self.cursor.fingerprint = fingerprint;
        self.checkpoint(v, fingerprint);
        Ok(())
    }
}

/// Reads a list of the client's own changesets from its snapshot: each of `peer`, accepted by
/// `fits`, and with increasing client versions if `ordered`.
fn read_own(
    r: &mut SnapshotReader<'_>,
    peer: PeerId,
    what: &'static str,
    ordered: bool,
    fits: impl Fn(&Changeset) -> bool,
) -> Result<Vec<Changeset>, SnapshotError> {
    let n = r.count(MIN_CHANGESET_BYTES, what)?;
    let mut list: Vec<Changeset> = Vec::with_capacity(n);
    for _ in 0..n {
        let cs = r.changeset()?;
        let after_previous = !ordered
            || list
                .last()
                .map_or(true, |p| p.client_version < cs.client_version);
        if cs.origin != peer || !after_previous || !fits(&cs) {
            return Err(SnapshotError::Inconsistent(
                "the client's own changesets do not follow its versions",
            ));
        }
        list.push(cs);
    }
    Ok(list)
}

/// Reads the checkpoints of a client snapshot: increasing versions up to the cursor's.
fn read_checkpoints(
    r: &mut SnapshotReader<'_>,
    cursor: ServerVersion,
) -> Result<VecDeque<Checkpoint>, SnapshotError> {
    let n = r.count(MIN_CHECKPOINT_BYTES, "checkpoints")?;
    let mut checkpoints: VecDeque<Checkpoint> = VecDeque::with_capacity(n);
    for _ in 0..n {
        let version = ServerVersion(r.items().u64("checkpoint version")?);
        let fingerprint = Fingerprint(r.items().u64("checkpoint fingerprint")?);
        if version > cursor || checkpoints.back().is_some_and(|c| c.version >= version) {
            return Err(SnapshotError::Inconsistent(
                "the checkpoints are not increasing versions up to the cursor",
            ));
        }
        checkpoints.push_back(Checkpoint {
            version,
            fingerprint,
        });
    }
    Ok(checkpoints)
}
