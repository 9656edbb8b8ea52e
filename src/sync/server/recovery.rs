//! What the server gives a client to be reset ([`Server::recovery`]): its state, what it holds
//! of the client's peer, and the window of other peers' changesets the client's unsynced ones
//! must be merged with (spec/semantics.md section 10).

use super::Server;
use crate::model::{Changeset, PeerId, ServerVersion};
use crate::snapshot::{Kind, SnapshotWriter};
use crate::store::Store;
use crate::sync::reset::write_recovery;
use crate::sync::RecoveryRequest;

impl<S: Store> Server<S> {
    /// A recovery for `peer`, whose client asks with `request`
    /// ([`Client::recovery_request`](crate::sync::Client::recovery_request)), for
    /// [`Client::reset`](crate::sync::Client::reset): the state at the latest version, the
    /// last client version of `peer` this server holds, which of the client's checkpoints
    /// this history still has, and every other peer's changeset after the lowest of them, in
    /// the form `peer` must meet it (its reciprocal form where the server keeps one; for a
    /// trimmed part of the history, its residue).
    ///
    /// A checkpoint holds when this history has that version with that fingerprint; one
    /// before the horizon cannot be checked and is taken to hold (a server restored from a
    /// backup *and* trimmed past the backup cannot tell).
    pub fn recovery(&self, peer: PeerId, request: &RecoveryRequest) -> Vec<u8> {
        let horizon = self.history.horizon();
        let latest = self.version();
        let mut verified: Vec<ServerVersion> = (request.checkpoints.iter())
            .filter(|c| {
                c.version <= latest
                    && (c.version < horizon
                        || self.history.fingerprint(c.version) == Some(c.fingerprint))
            })
            .map(|c| c.version)
            .collect();
        verified.sort_unstable();
        verified.dedup();
        // The window starts at the lowest checkpoint where it holds; everything after is
        // concurrent with something the client replays.
        let lowest = request.checkpoints.iter().map(|c| c.version).min();
        let from = match lowest {
            Some(v) if verified.first() == Some(&v) => v,
            _ => ServerVersion(0),
        };
        let reciprocal = self.peers.get(&peer).map(|s| &s.reciprocal);
        let trimmed = (self.history.residue().iter()).map(|(v, cs)| (*v, cs));
        let held = (self.history.after(horizon)).map(|(v, e)| {
            let seen = reciprocal.and_then(|r| r.get(&v.0));
            (v, seen.unwrap_or(&e.changeset))
        });
        let window: Vec<(ServerVersion, &Changeset)> = (trimmed.chain(held))
            .filter(|(v, cs)| *v > from && cs.origin != peer)
            .collect();
        let mut w = SnapshotWriter::new(Kind::Recovery);
        self.write_state_at_latest(&mut w);
        write_recovery(&mut w, peer, self.last_integrated(peer), &verified, &window);
        w.finish()
    }
}
