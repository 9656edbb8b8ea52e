//! One realm as the server holds it: its state behind a lock, the records not yet committed,
//! and the gate through which commits, turns and catching up with other processes pass (see
//! the server's module documentation for why frames wait for commits).

use crate::disk;
use crate::storage::{replay, OpenedRealm, RealmStore, Records};
use objsync::session::{ServerEvent, ServerRealm};
use objsync::wire::{ClientMessage, Limits};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::watch;
use tracing::error;

/// What a realm's lock guards.
pub(super) struct RealmState {
    pub(super) realm: ServerRealm,
    /// Records of events not yet committed, in order.
    pub(super) pending: Records,
    /// Log position after the last record `realm` holds (committed or pending).
    pub(super) end: u64,
    /// A commit failed: the in-memory realm may be ahead of storage and must not be used.
    pub(super) broken: bool,
}

impl RealmState {
    /// Buffers the records of `events`; returns whether the history grew.
    pub(super) fn persist(&mut self, events: &[ServerEvent]) -> bool {
        let (records, grew) = disk::records(events);
        self.end += records.len() as u64;
        self.pending.extend(records);
        grew
    }

    /// Buffers one record, if there is one.
    pub(super) fn record(&mut self, record: Option<Vec<u8>>) {
        if let Some(record) = record {
            self.end += 1;
            self.pending.push(record);
        }
    }
}

/// One realm, shared by its sessions.
pub(super) struct Realm {
    pub(super) path: String,
    pub(super) state: Mutex<RealmState>,
    /// Log position known to be committed; every waiter sees it move at once.
    pub(super) synced: watch::Sender<u64>,
    /// Serializes commits, turns and catching up: whoever holds it commits everything buffered.
    pub(super) gate: tokio::sync::Mutex<()>,
    pub(super) store: Box<dyn RealmStore>,
    /// Bumped when the history grows or the realm breaks.
    pub(super) changed: watch::Sender<()>,
    /// Sessions bound to it (counted under the server's map of realms).
    pub(super) sessions: AtomicUsize,
    /// The newest log position storage reported (for the status line's lag).
    pub(super) newest: AtomicU64,
}

/// The error of a realm whose commit failed.
fn broken_realm() -> io::Error {
    io::Error::other("a commit of the realm failed")
}

impl Realm {
    pub(super) fn new(path: String, opened: OpenedRealm) -> Realm {
        Realm {
            path,
            state: Mutex::new(RealmState {
                realm: opened.realm,
                pending: Vec::new(),
                end: opened.end,
                broken: false,
            }),
            // Opening leaves everything committed.
            synced: watch::channel(opened.end).0,
            gate: tokio::sync::Mutex::new(()),
            store: opened.store,
            changed: watch::channel(()).0,
            sessions: AtomicUsize::new(0),
            newest: AtomicU64::new(opened.end),
        }
    }

    /// The state, unless the realm is broken (or a panic poisoned the lock, which leaves the
    /// state suspect just the same).
    pub(super) fn lock(&self) -> Option<MutexGuard<'_, RealmState>> {
        self.state.lock().ok().filter(|s| !s.broken)
    }

    pub(super) fn committed(&self) -> u64 {
        *self.synced.borrow()
    }

    /// Waits until the log is committed up to position `target`. One session at a time
    /// commits (everything buffered by then, not just up to its target); the others queue at
    /// the gate and usually find their records covered when they get there.
    pub(super) async fn sync_to(&self, target: u64) -> io::Result<()> {
        if self.committed() >= target {
            return Ok(());
        }
        let gate = self.gate.lock().await;
        if self.committed() >= target {
            return Ok(());
        }
        self.commit(&gate).await
    }

    /// Commits everything buffered, ending this process's turn if it holds one.
    async fn commit(&self, _gate: &tokio::sync::MutexGuard<'_, ()>) -> io::Result<()> {
        let (at, records, end) = {
            let mut state = self.lock().ok_or_else(broken_realm)?;
            let records = std::mem::take(&mut state.pending);
            (state.end - records.len() as u64, records, state.end)
        };
        self.store.commit(at, records).await?;
        self.synced.send_modify(|s| *s = (*s).max(end));
        Ok(())
    }

    /// Takes the realm's write turn for a frame that may append: the gate here, and the
    /// storage's lock across processes, with what others appended replayed first.
    pub(super) async fn begin_turn(&self) -> io::Result<tokio::sync::MutexGuard<'_, ()>> {
        let gate = self.gate.lock().await;
        let at = self.committed();
        let missed = self.store.begin(at).await?;
        self.absorb(at, &missed)?;
        Ok(gate)
    }

    /// Ends a turn taken for a frame: commits what it (and frames after it) appended.
    pub(super) async fn end_turn(&self) -> io::Result<()> {
        let gate = self.gate.lock().await;
        self.commit(&gate).await
    }

    /// Catches up with records other processes committed up to position `end` (`u64::MAX`:
    /// all there are).
    pub(super) async fn refresh(&self, end: u64) -> io::Result<()> {
        if end != u64::MAX {
            self.newest.fetch_max(end, Ordering::AcqRel);
        }
        if self.committed() >= end {
            return Ok(());
        }
        let _gate = self.gate.lock().await;
        let at = self.committed();
        if at >= end {
            return Ok(());
        }
        let records = self.store.since(at).await?;
        self.absorb(at, &records)
    }

    /// Replays records read from storage after position `at` (the gate held, so nothing of
    /// this process's is pending) and wakes the sessions to send them.
    fn absorb(&self, at: u64, records: &Records) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let end = {
            let mut state = self.lock().ok_or_else(broken_realm)?;
            if state.end != at {
                return Err(io::Error::other(
                    "records of this process are pending while catching up",
                ));
            }
            replay(&mut state.realm, records, &self.path)?;
            state.end += records.len() as u64;
            state.end
        };
        self.newest.fetch_max(end, Ordering::AcqRel);
        self.synced.send_modify(|s| *s = (*s).max(end));
        self.changed.send_replace(());
        Ok(())
    }

    /// How far this process's copy is behind the newest log position storage reported.
    pub(super) fn lag(&self) -> u64 {
        self.newest
            .load(Ordering::Acquire)
            .saturating_sub(self.committed())
    }

    /// Marks the realm broken and wakes its sessions so they close.
    pub(super) fn break_down(&self, why: &io::Error) {
        error!(path = ?self.path, error = %why, "realm storage failed; closing its sessions");
        match self.state.lock() {
            Ok(mut s) => s.broken = true,
            Err(poisoned) => poisoned.into_inner().broken = true,
        }
        self.changed.send_replace(());
        // Sessions waiting for a commit look again, and find the realm broken.
        self.synced.send_modify(|_| {});
    }
}

/// What a frame needs of a shared storage before it is processed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Needs {
    Nothing,
    /// The newest history: a MARK is answered once the client has everything the realm had
    /// when it arrived, and the realm is what the database holds, not this process's copy.
    Newest,
    /// A turn: the frame may append (an UPLOAD carrying changesets) or needs the newest
    /// history for its checks and may register a client (an IDENT).
    Turn,
}

/// What `frame` needs of a shared storage. A frame that does not decode needs nothing (the
/// session refuses it).
pub(super) fn needs(frame: &[u8], limits: &Limits) -> Needs {
    match ClientMessage::decode(frame, limits) {
        Ok(ClientMessage::Ident(_)) => Needs::Turn,
        Ok(ClientMessage::Upload(upload)) if !upload.chunks.is_empty() => Needs::Turn,
        Ok(ClientMessage::Mark { .. }) => Needs::Newest,
        _ => Needs::Nothing,
    }
}
