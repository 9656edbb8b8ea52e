//! What the server knows of each peer: the changesets it integrated from it (by server and
//! client version) and the forms in which that peer has seen the other peers' recent entries.

use crate::model::{Changeset, ClientVersion, ServerVersion};
use std::collections::BTreeMap;

/// One peer's table. See the module documentation.
#[derive(Debug, Default)]
pub(super) struct PeerState {
    /// (server version, client version) of every changeset integrated from this peer.
    pub(super) integrated: Vec<(ServerVersion, ClientVersion)>,
    /// Reciprocal forms of other peers' entries, by server version, for the window after the
    /// peer's last base version: each entry as transformed past this peer's changesets that
    /// were integrated after it, which is how this peer's later uploads must meet it.
    pub(super) reciprocal: BTreeMap<u64, Changeset>,
    /// The base version of the last changeset integrated from this peer; its uploads never go
    /// back before it.
    pub(super) base: ServerVersion,
}

impl PeerState {
    /// The last client version integrated (0 if none).
    pub(super) fn last(&self) -> ClientVersion {
        self.integrated.last().map_or(ClientVersion(0), |e| e.1)
    }

    /// The last client version integrated at or before server version `v`.
    pub(super) fn own_at(&self, v: ServerVersion) -> ClientVersion {
        let n = self.integrated.partition_point(|e| e.0 <= v);
        n.checked_sub(1)
            .map_or(ClientVersion(0), |i| self.integrated[i].1)
    }

    /// Forgets what only the history up to `horizon` needed: reciprocal forms at or before it,
    /// and integrations before the last one at or before it (which `own_at` still needs).
    pub(super) fn forget(&mut self, horizon: ServerVersion) {
        self.reciprocal = self.reciprocal.split_off(&(horizon.0 + 1));
        let keep = self.integrated.partition_point(|e| e.0 <= horizon);
        self.integrated.drain(..keep.saturating_sub(1));
    }

    /// Records the integration of client version `cv` at server version `at`, based on `base`,
    /// with the window entries `seen` in the form the merge left them for this peer.
    pub(super) fn integrated(
        &mut self,
        at: ServerVersion,
        cv: ClientVersion,
        base: ServerVersion,
        seen: impl IntoIterator<Item = (u64, Changeset)>,
    ) {
        self.base = base;
        self.reciprocal = self.reciprocal.split_off(&(base.0 + 1));
        self.reciprocal.extend(seen);
        self.integrated.push((at, cv));
    }
}
