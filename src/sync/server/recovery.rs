//! What the server gives a client to be reset ([`Server::recovery`]): its state, what it holds
//! of the client's peer, and the window of changesets the client's own must be merged with
//! (spec/semantics.md section 10).

use super::Server;
use crate::model::{ClientVersion, PeerId, RecoveryRequest, ServerVersion};
use crate::snapshot::{Kind, SnapshotWriter};
use crate::store::Store;
use crate::sync::reset::RecoveryWindow;
use std::borrow::Cow;

impl<S: Store> Server<S> {
    /// A recovery for `peer`, whose client asks with `request`
    /// ([`Client::recovery_request`](crate::sync::Client::recovery_request)), for
    /// [`Client::reset`](crate::sync::Client::reset): the state at the latest version, the
    /// last client version of `peer` this server has integrated, which of the client's
    /// checkpoints this history still has, and every changeset after the lowest of them that
    /// the client's own are concurrent with, as a download would bring it (for a trimmed part
    /// of the history, its residue), with the client's last changeset each one includes.
    ///
    /// A checkpoint holds when this history has that version with that fingerprint; one
    /// before the horizon cannot be checked and is taken to hold (a server restored from a
    /// backup *and* trimmed past the backup cannot tell). When the request says the server
    /// holds other changesets than the client's from some client version on, those count as
    /// another peer's.
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
        // The window starts at the lowest checkpoint where it holds: everything after may be
        // concurrent with something of the client's.
        let lowest = request.checkpoints.iter().map(|c| c.version).min();
        let from = match lowest {
            Some(v) if verified.first() == Some(&v) => v,
            _ => ServerVersion(0),
        };
        let integrated = self.last_integrated(peer);
        let held = match request.diverged_from {
            Some(d) => integrated.min(ClientVersion(d.0.saturating_sub(1))),
            None => integrated,
        };
        // A client whose downloads are filtered gets the state it may read, and the window as
        // it would download it holding that: its own changesets meet nothing it may not read.
        let only = self.reader(peer).map(|user| self.readable_view(peer, user));
        let filter = (only.clone()).map(|o| self.filter(o.clone(), o, latest));
        let trimmed = (self.history.residue().iter()).map(|(v, cs)| (*v, cs));
        let kept = self.history.after(horizon).map(|(v, e)| (v, &e.changeset));
        let entries = (trimmed.chain(kept))
            .filter(|(v, cs)| *v > from && (cs.origin != peer || cs.client_version > held))
            .filter_map(|(v, cs)| {
                let last_own = self.own_at(peer, ServerVersion(v.0 - 1)).min(held);
                let cs = match &filter {
                    Some(f) => Cow::Owned(f.changeset(self.replica.store(), cs)?),
                    None => Cow::Borrowed(cs),
                };
                Some((v, last_own, cs))
            })
            .collect();
        let window = RecoveryWindow {
            peer,
            integrated,
            held,
            verified,
            entries,
        };
        let mut w = SnapshotWriter::new(Kind::Recovery);
        self.replica
            .write_server_state(&mut w, self.state_head(), only.as_deref());
        window.write(&mut w);
        w.finish()
    }
}
