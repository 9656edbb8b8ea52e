//! What the server knows of each peer: the changesets it integrated from it (by server and
//! client version) and the forms in which that peer has seen the other peers' recent entries.

use crate::model::{Changeset, ClientVersion, ServerVersion};
use std::collections::BTreeMap;

/// One peer's table. See the module documentation.
#[derive(Debug, Default)]
pub(super) struct PeerState {
    /// Every changeset integrated from this peer: its server version, client version and
    /// [signature](Changeset::signature).
    pub(super) integrated: Vec<Integration>,
    /// Reciprocal forms of other peers' entries, by server version, for the window after the
    /// peer's last base version: each entry as transformed past this peer's changesets that
    /// were integrated after it, which is how this peer's later uploads must meet it.
    pub(super) reciprocal: BTreeMap<u64, Changeset>,
    /// The base version of the last changeset integrated from this peer; its uploads never go
    /// back before it.
    pub(super) base: ServerVersion,
    /// Corrections of this peer's changesets (spec/permissions.md), by the server version of
    /// the changeset they correct: this peer downloads each in place of its own entry, and its
    /// later uploads are merged with it as with any entry it has not seen.
    pub(super) corrections: BTreeMap<u64, Changeset>,
}

/// How many integrations at or before the horizon a peer's table keeps: as many as a client
/// keeps changesets for a reset by default.
const KEPT_INTEGRATIONS: usize = crate::sync::DEFAULT_RECOVERY_WINDOW;

/// One changeset integrated from a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Integration {
    pub(super) server: ServerVersion,
    pub(super) client: ClientVersion,
    pub(super) signature: u64,
}

impl PeerState {
    /// The last client version integrated (0 if none).
    pub(super) fn last(&self) -> ClientVersion {
        self.integrated
            .last()
            .map_or(ClientVersion(0), |e| e.client)
    }

    /// The last client version integrated at or before server version `v`.
    pub(super) fn own_at(&self, v: ServerVersion) -> ClientVersion {
        let n = self.integrated.partition_point(|e| e.server <= v);
        n.checked_sub(1)
            .map_or(ClientVersion(0), |i| self.integrated[i].client)
    }

    /// The signature of client version `cv`, if the table still holds it.
    pub(super) fn signature(&self, cv: ClientVersion) -> Option<u64> {
        let i = self
            .integrated
            .binary_search_by_key(&cv, |e| e.client)
            .ok()?;
        Some(self.integrated[i].signature)
    }

    /// Forgets what only the history up to `horizon` needed: reciprocal forms at or before it,
    /// and integrations at or before it but the last [`KEPT_INTEGRATIONS`] (a client that
    /// recovers past the horizon learns from them which of its changesets each entry of the
    /// residue included; `own_at` needs the last one).
    pub(super) fn forget(&mut self, horizon: ServerVersion) {
        self.reciprocal = self.reciprocal.split_off(&(horizon.0 + 1));
        self.corrections = self.corrections.split_off(&(horizon.0 + 1));
        let before = self.integrated.partition_point(|e| e.server <= horizon);
        self.integrated
            .drain(..before.saturating_sub(KEPT_INTEGRATIONS));
    }

    /// Records an integration based on `base`, with the window entries `seen` in the form the
    /// merge left them for this peer.
    pub(super) fn integrated(
        &mut self,
        integration: Integration,
        base: ServerVersion,
        seen: impl IntoIterator<Item = (u64, Changeset)>,
    ) {
        self.base = base;
        self.reciprocal = self.reciprocal.split_off(&(base.0 + 1));
        self.reciprocal.extend(seen);
        self.integrated.push(integration);
    }
}
