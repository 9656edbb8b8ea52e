//! Read filtering (spec/permissions.md section 2.5): what a user's client may download.
//!
//! A client of a user who is not an admin, in a realm with permission data, holds only what
//! its user may read. The server keeps, per such peer, its *view* at the download cursors it
//! handed out: the objects whose state on the client equals the server's at that version
//! (both present and equal, or both absent), the client holding nothing else. A download from
//! a cursor with a known view passes each instruction whose object is in the view, or readable
//! now and absent at the cursor (its whole life since); a link to an object that does not pass
//! arrives dead. When the readable set at the latest version says an object must leave
//! the client (it exists and may no longer be read) or arrive with a past the client never
//! saw (it existed before the cursor and may now be read), when the client's own writes
//! touched an object that does not pass, or when the view is not known (a restarted server:
//! views are not saved), the download is refused with
//! [`SyncError::ReadAccessChanged`](crate::sync::SyncError::ReadAccessChanged): the client
//! resets onto the server's state restricted to what it may read (a recovery), which is the
//! removal, and the arrival with full list metadata, in one step.

use super::Server;
use crate::merge::link_write;
use crate::model::{Changeset, Fate, Instruction, ObjRef, PeerId, ServerVersion};
use crate::permissions::{self, Identity};
use crate::store::Store;
use hashbrown::{HashMap, HashSet};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A set of objects.
pub(super) type ObjSet = Arc<HashSet<ObjRef>>;

/// The views the server handed out, and the readable sets it computed last. Kept behind a lock
/// because downloads and recoveries, which read the server, record views; not saved, so a
/// loaded server knows no view and resets each filtered client once.
#[derive(Debug, Default)]
pub(super) struct Views {
    /// Per filtered peer, its view at each download cursor it may still present.
    views: HashMap<PeerId, BTreeMap<u64, ObjSet>>,
    /// Per user, the readable set at one server version.
    readable: HashMap<Option<String>, (ServerVersion, ObjSet)>,
}

/// A filtered client's download run over the protocol (spec/permissions.md section 2.5): the
/// filter checked at `from` for the entries up to `until` (the latest version then), and the
/// views the client holds at the versions it reaches.
#[derive(Debug)]
pub(crate) struct ReadRun {
    from: ServerVersion,
    until: ServerVersion,
    view: ObjSet,
    readable: ObjSet,
    /// The view at a version before `until`.
    partial: ObjSet,
}

impl ReadRun {
    /// The last version this run's filter was checked for.
    pub(crate) fn until(&self) -> ServerVersion {
        self.until
    }
}

/// Locks the views; a panic elsewhere while they were held cannot leave them half-written
/// (each change is one insert), so a poisoned lock is taken as it is.
pub(super) fn lock(views: &Mutex<Views>) -> MutexGuard<'_, Views> {
    views.lock().unwrap_or_else(|e| e.into_inner())
}

/// How the entries after a cursor are filtered for one peer (see the module documentation).
pub(super) struct Filter<'a> {
    view: ObjSet,
    readable: ObjSet,
    existence: &'a HashMap<ObjRef, Vec<(u64, bool)>>,
    after: ServerVersion,
}

impl Filter<'_> {
    /// Whether instructions on `obj` reach the client: it is in the client's view, or it may
    /// be read and did not exist at the cursor (the client gets its whole life since).
    fn passes(&self, obj: &ObjRef) -> bool {
        self.view.contains(obj) || (self.readable.contains(obj) && !self.existed(obj))
    }

    /// Whether `obj` existed at the cursor, as far as the recorded changes of existence tell;
    /// an object with none recorded is taken to have existed (it may predate the records).
    fn existed(&self, obj: &ObjRef) -> bool {
        let Some(changes) = self.existence.get(obj) else {
            return true;
        };
        let i = changes.partition_point(|(v, _)| *v <= self.after.0);
        match i.checked_sub(1) {
            Some(last) => changes[last].1,
            None => !changes[0].1,
        }
    }

    /// The view of a client that downloaded the entries this filter passes up to `reached`:
    /// at the latest version, what it may read; before, also the objects of its view (whose
    /// removals it has yet to download).
    pub(super) fn view_at(&self, reached: ServerVersion, latest: ServerVersion) -> ObjSet {
        match reached == latest {
            true => self.readable.clone(),
            false => self.partial(),
        }
    }

    /// The view before the latest version: the objects of the view at the cursor and the
    /// readable ones that did not exist there.
    fn partial(&self) -> ObjSet {
        let new = (self.readable.iter()).filter(|o| !self.existed(o));
        Arc::new(self.view.iter().chain(new).cloned().collect())
    }

    /// Whether the client must be reset onto the readable state instead of downloading: an
    /// object it holds exists and may no longer be read, an object that existed at the
    /// cursor may now be read, or one of its own changesets after the cursor (or their
    /// corrections) touched an object that does not pass (it may hold it, it must not, and
    /// it was not merged with what others did to it), or a correction of one of them brings
    /// back a deleted object with lists ([`restores_list`]).
    fn needs_reset<'c, S: Store>(
        &self,
        store: &S,
        own: impl IntoIterator<Item = &'c Changeset>,
    ) -> bool {
        let exists = |o: &ObjRef| store.exists(&o.ty, &o.key).unwrap_or(false);
        let lost = (self.view.iter()).any(|o| !self.readable.contains(o) && exists(o));
        let gained = (self.readable.iter()).any(|o| !self.view.contains(o) && self.existed(o));
        lost || gained
            || own.into_iter().any(|cs| {
                (cs.ops.iter()).any(|op| objects(&op.instr).any(|o| !self.passes(&o)))
                    || restores_list(store, cs)
            })
    }

    /// A changeset as the client receives it: its instructions on objects that pass, links to
    /// objects that do not made dead; `None` if nothing is left.
    pub(super) fn changeset<S: Store>(&self, store: &S, cs: &Changeset) -> Option<Changeset> {
        let mut ops = Vec::with_capacity(cs.ops.len());
        for op in &cs.ops {
            let mut op = op.clone();
            if let Instruction::Clear { ty, objects } = &mut op.instr {
                objects.retain(|key| self.passes(&ObjRef::new(ty, key.clone())));
                if objects.is_empty() {
                    continue;
                }
            } else if op.instr.object().is_some_and(|o| !self.passes(o)) {
                continue;
            }
            if link_target(store, &op.instr).is_some_and(|t| !self.passes(&t)) {
                op.lower(Fate::DeadLink);
            }
            ops.push(op);
        }
        (!ops.is_empty()).then(|| Changeset { ops, ..cs.clone() })
    }
}

/// The objects an instruction is about (none for a schema change).
fn objects(instr: &Instruction) -> Box<dyn Iterator<Item = ObjRef> + '_> {
    match instr {
        Instruction::Clear { ty, objects } => {
            Box::new((objects.iter()).map(|key| ObjRef::new(ty, key.clone())))
        }
        other => Box::new(other.object().cloned().into_iter()),
    }
}

/// The object a value an instruction writes links to.
fn link_target<S: Store>(store: &S, instr: &Instruction) -> Option<ObjRef> {
    let (ty, prop, key) = link_write(instr)?;
    let def = store.schema().get(ty).ok()?;
    let target = def.properties.get(prop)?.link_target()?;
    Some(ObjRef::new(target, key.clone()))
}

impl<S: Store> Server<S> {
    /// The user whose read access filters what `peer` downloads: `None` for an admin, or where
    /// the realm has no permission data (everyone reads everything, nothing is filtered);
    /// `Some(None)` for a peer the server knows no user of (it belongs to `everyone`).
    /// A peer that holds a view stays filtered when the permission data goes (an admin may
    /// delete the levels): its client lacks what it could not read.
    pub(crate) fn reader(&self, peer: PeerId) -> Option<Option<&str>> {
        let user = match self.identities.get(&peer) {
            Some(Identity::Admin) => return None,
            Some(Identity::User(user)) => Some(user.as_str()),
            None => None,
        };
        let filtered = permissions::is_active(self.replica.store())
            || lock(&self.views).views.contains_key(&peer);
        filtered.then_some(user)
    }

    /// What `user` may read at the latest version, computed once per version and user.
    pub(super) fn readable(&self, user: Option<&str>) -> ObjSet {
        let latest = self.version();
        let mut views = lock(&self.views);
        let key = user.map(str::to_string);
        if let Some((v, set)) = views.readable.get(&key) {
            if *v == latest {
                return set.clone();
            }
        }
        let set: ObjSet = Arc::new(permissions::readable_objects(self.replica.store(), user));
        views.readable.insert(key, (latest, set.clone()));
        set
    }

    /// The filter of the entries after `after` for a client holding `view`, of a user who may
    /// read `readable` at the latest version.
    pub(super) fn filter(
        &self,
        view: ObjSet,
        readable: ObjSet,
        after: ServerVersion,
    ) -> Filter<'_> {
        Filter {
            view,
            readable,
            existence: &self.existence,
            after,
        }
    }

    /// Records that the client of `peer` holds `view` at version `at`, and forgets its views
    /// before `from` (the cursor it downloads from: it does not go back).
    pub(super) fn record_view(
        &self,
        peer: PeerId,
        from: ServerVersion,
        at: ServerVersion,
        view: ObjSet,
    ) {
        let mut views = lock(&self.views);
        let table = views.views.entry(peer).or_default();
        *table = table.split_off(&from.0);
        table.insert(at.0, view);
    }

    /// The filter of a download by `peer` of user `user` from `cursor`, or the error saying
    /// the client must be reset onto what it may read.
    pub(super) fn download_filter(
        &self,
        peer: PeerId,
        user: Option<&str>,
        cursor: ServerVersion,
    ) -> Result<Filter<'_>, crate::sync::SyncError> {
        let changed = crate::sync::SyncError::ReadAccessChanged {
            peer,
            version: self.version(),
        };
        // At version 0 the state is empty: so is every client's view there.
        let view = match cursor.0 {
            0 => Some(ObjSet::default()),
            v => (lock(&self.views).views.get(&peer)).and_then(|t| t.get(&v).cloned()),
        };
        let Some(view) = view else {
            return Err(changed);
        };
        let filter = self.filter(view, self.readable(user), cursor);
        let own = (self.history.after(cursor))
            .filter(|(_, e)| e.changeset.origin == peer)
            .flat_map(|(v, e)| {
                let correction = self.download_form(peer, v, e);
                std::iter::once(&e.changeset).chain(correction)
            });
        if filter.needs_reset(self.replica.store(), own) {
            return Err(changed);
        }
        Ok(filter)
    }

    /// The run of a download by `peer` from `from` over the protocol: `None` if its downloads
    /// are not filtered, or the error saying its client must be reset onto what it may read.
    pub(crate) fn read_run(
        &self,
        peer: PeerId,
        from: ServerVersion,
    ) -> Result<Option<ReadRun>, crate::sync::SyncError> {
        let Some(user) = self.reader(peer) else {
            return Ok(None);
        };
        let filter = self.download_filter(peer, user, from)?;
        let until = self.version();
        let partial = filter.partial();
        Ok(Some(ReadRun {
            from,
            until,
            view: filter.view,
            readable: filter.readable,
            partial,
        }))
    }

    /// The next entry after `after` that `peer` downloads within `run` (up to its `until`), as
    /// it receives it ([`Server::next_download`] where `run` is `None`).
    pub(crate) fn next_download_in(
        &self,
        peer: PeerId,
        mut after: ServerVersion,
        run: Option<&ReadRun>,
    ) -> Option<(ServerVersion, Arc<[u8]>, crate::model::ClientVersion)> {
        let Some(run) = run else {
            return self.next_download(peer, after);
        };
        let filter = self.filter(run.view.clone(), run.readable.clone(), run.from);
        loop {
            let (v, _, last_own) = self.next_download(peer, after)?;
            if v > run.until {
                return None;
            }
            let entry = self.history.get(v)?;
            let form = self.download_form(peer, v, entry);
            if let Some(cs) = form.and_then(|cs| filter.changeset(self.replica.store(), cs)) {
                return Some((v, crate::wire::encode(&cs).into(), last_own));
            }
            after = v;
        }
    }

    /// Records the view of `peer`'s client once it has what `run` passes up to `at`, keeping
    /// its views from `kept` on (where the client's download stands at least).
    pub(crate) fn record_run(
        &self,
        peer: PeerId,
        run: &ReadRun,
        kept: ServerVersion,
        at: ServerVersion,
    ) {
        let view = match at >= run.until {
            true => run.readable.clone(),
            false => run.partial.clone(),
        };
        self.record_view(peer, kept.min(run.from), at, view);
    }

    /// What `user` may read at the latest version, recorded as the view of `peer` there: what
    /// a recovery or a state snapshot restricted to it gives the client.
    pub(super) fn readable_view(&self, peer: PeerId, user: Option<&str>) -> ObjSet {
        let readable = self.readable(user);
        let latest = self.version();
        self.record_view(peer, latest, latest, readable.clone());
        readable
    }

    /// Whether some peer's downloads are filtered (it holds a view), even if the realm no
    /// longer has permission data.
    pub(super) fn filters_any(&self) -> bool {
        !lock(&self.views).views.is_empty()
    }

    /// Records the changes of existence a changeset integrated at `at` made to `touched`
    /// (the objects it inserts or deletes, each with whether it existed before), for filtering
    /// downloads.
    pub(super) fn note_existence(&mut self, at: ServerVersion, touched: Vec<(ObjRef, bool)>) {
        for (obj, before) in touched {
            let after = self
                .replica
                .store()
                .exists(&obj.ty, &obj.key)
                .unwrap_or(false);
            if after != before {
                self.existence.entry(obj).or_default().push((at.0, after));
            }
        }
    }
}

/// Whether `cs` is a correction that brings back an object its writer deleted, of a type with
/// a list property: the correction can restore the list's visible elements only, and later
/// instructions may be placed against its other nodes (spec/permissions.md rule 24 (e)).
fn restores_list<S: Store>(store: &S, cs: &Changeset) -> bool {
    let has_list = |ty: &str| {
        (store.schema().get(ty)).is_ok_and(|def| def.properties.iter().any(|(_, pt)| pt.list))
    };
    cs.origin == PeerId(0)
        && (cs.ops.iter())
            .any(|op| matches!(&op.instr, Instruction::Insert { obj } if has_list(&obj.ty)))
}
