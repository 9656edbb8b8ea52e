//! The sync layer's error.

use super::ResetCause;
use crate::model::{ClientVersion, Error, Fingerprint, PeerId, ServerVersion};
use thiserror::Error as ThisError;

/// A sync failure.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
#[non_exhaustive]
pub enum SyncError {
    /// The server rejected a changeset; nothing of it was applied. The client cannot go on
    /// syncing the changesets built on it.
    #[error("changeset {client_version} of peer {peer} was rejected: {error}")]
    Rejected {
        /// The uploading peer.
        peer: PeerId,
        /// The rejected changeset's client version.
        client_version: ClientVersion,
        /// Why.
        error: Error,
    },
    /// Downloaded changesets could not be integrated with the local ones (for example, both
    /// define a property differently). The client stops syncing.
    #[error("integrating server version {server_version} failed: {error}")]
    Integration {
        /// The server version that failed.
        server_version: ServerVersion,
        /// Why.
        error: Error,
    },
    /// An upload names a server version the server does not have, or goes back in time.
    #[error("bad server version {version} from peer {peer} (server has {latest})")]
    BadServerVersion {
        /// The peer.
        peer: PeerId,
        /// The version it named.
        version: ServerVersion,
        /// The server's latest version.
        latest: ServerVersion,
    },
    /// An uploaded changeset skips a client version: the one before it was never integrated, so
    /// integrating it would lose that one for good.
    #[error("peer {peer} uploaded client version {version} but the server expects {expected}")]
    BadClientVersion {
        /// The peer.
        peer: PeerId,
        /// The version it uploaded.
        version: ClientVersion,
        /// The next version the server can integrate.
        expected: ClientVersion,
    },
    /// An uploaded changeset claims another origin than the uploading peer.
    #[error("peer {peer} uploaded a changeset of peer {origin}")]
    BadOrigin {
        /// The uploader.
        peer: PeerId,
        /// The origin it claimed.
        origin: PeerId,
    },
    /// The server has forgotten the history before `horizon` (it was trimmed), and this
    /// upload or download needs it from `needed` on: the client must start again from the
    /// server's state.
    #[error("the server's history starts after version {horizon}, but version {needed} is needed: reset required")]
    ResetRequired {
        /// The last version the server has forgotten.
        horizon: ServerVersion,
        /// The version the upload was based on, or the download's cursor.
        needed: ServerVersion,
    },
    /// What the peer's user may read changed in a way a download cannot bring (objects its
    /// client holds may no longer be read, objects that existed unseen may now be), or the
    /// server does not know what the client holds: the client resets onto the server's state
    /// as its user may read it (spec/permissions.md section 2.5).
    #[error("the read access of peer {peer} changed (server version {version}): reset onto what it may read")]
    ReadAccessChanged {
        /// The peer.
        peer: PeerId,
        /// The server's latest version.
        version: ServerVersion,
    },
    /// The client has integrated server version `integrated`, but the server's history ends
    /// at `latest`: the server went back (it was restored from a backup).
    #[error("the client has integrated server version {integrated} but the server's history ends at {latest}: the server went back (restored from a backup?)")]
    ServerBehind {
        /// The client's download cursor.
        integrated: ServerVersion,
        /// The server's latest version.
        latest: ServerVersion,
    },
    /// The server's history through `version` is not the one the client integrated (the
    /// fingerprints differ): the server was restored from a backup and has since taken other
    /// changesets under the same versions.
    #[error("the server's history through version {version} is not the one the client integrated (fingerprint {server} instead of {client})")]
    Diverged {
        /// The client's download cursor.
        version: ServerVersion,
        /// The fingerprint the client holds for it.
        client: Fingerprint,
        /// The server's.
        server: Fingerprint,
    },
    /// The server acknowledged changesets of this peer up to `acknowledged` but now has them
    /// only up to `integrated`: it lost some (restored from a backup).
    #[error("the server acknowledged peer {peer}'s changesets up to {acknowledged} but holds them only up to {integrated}: it lost some (restored from a backup?)")]
    ChangesetsLost {
        /// The peer.
        peer: PeerId,
        /// What the client was told was integrated.
        acknowledged: ClientVersion,
        /// What the server has.
        integrated: ClientVersion,
    },
    /// The server already holds another changeset of this peer under this client version: two
    /// clients write with one identity (a copied client), or the server went back and forth
    /// between backups. Acknowledging it would lose it.
    #[error("peer {peer} uploaded client version {version}, but the server holds another changeset under it")]
    ChangesetMismatch {
        /// The peer.
        peer: PeerId,
        /// The client version.
        version: ClientVersion,
    },
    /// The server holds changesets of this peer up to `integrated`, but the client has written
    /// only up to `written`: the client went back (it was restored from a backup, or it dropped
    /// changesets that a server restored from a later backup still has).
    #[error("the server holds peer {peer}'s changesets up to {integrated} but the client has written only up to {written}")]
    ClientBehind {
        /// The peer.
        peer: PeerId,
        /// What the server holds.
        integrated: ClientVersion,
        /// What the client has written.
        written: ClientVersion,
    },
    /// An uploaded changeset is based on server version `base`, but the server integrated an
    /// earlier changeset of this peer based on `floor`, later: the client went back (it was
    /// reset from a server that has since been restored from a later backup).
    #[error("peer {peer} uploaded a changeset based on server version {base}, but its changesets were based on {floor} already: the client went back")]
    BaseBehind {
        /// The peer.
        peer: PeerId,
        /// The changeset's base.
        base: ServerVersion,
        /// The base of the peer's last integrated changeset.
        floor: ServerVersion,
    },
    /// The client already failed and refuses to sync further.
    #[error("the client stopped syncing after an earlier error: {0}")]
    Stopped(Box<SyncError>),
}

impl SyncError {
    /// Why this error means the client must be reset ([`Client::reset`](crate::sync::Client::reset)),
    /// if it does: its history and the server's no longer fit together, or the server refused
    /// one of its changesets for good. Other errors are either the caller's to fix or mean
    /// the client cannot go on at all.
    pub fn reset_cause(&self) -> Option<ResetCause> {
        Some(match self {
            SyncError::ResetRequired { horizon, needed } => ResetCause::Trimmed {
                horizon: *horizon,
                needed: *needed,
            },
            SyncError::ServerBehind { integrated, latest } => ResetCause::ServerBehind {
                integrated: *integrated,
                latest: *latest,
            },
            SyncError::Diverged { version, .. } => ResetCause::Diverged { version: *version },
            SyncError::ReadAccessChanged { .. } => ResetCause::ReadAccessChanged,
            SyncError::ChangesetsLost {
                acknowledged,
                integrated,
                ..
            } => ResetCause::ChangesetsLost {
                acknowledged: *acknowledged,
                integrated: *integrated,
            },
            SyncError::ClientBehind {
                integrated,
                written,
                ..
            } => ResetCause::ClientBehind {
                integrated: *integrated,
                written: *written,
            },
            SyncError::BaseBehind { base, floor, .. } => ResetCause::BaseBehind {
                base: *base,
                floor: *floor,
            },
            SyncError::ChangesetMismatch { version, .. } => ResetCause::ChangesetMismatch {
                client_version: *version,
            },
            SyncError::Rejected { client_version, .. } => ResetCause::Refused {
                client_version: *client_version,
            },
            SyncError::Stopped(inner) => return inner.reset_cause(),
            _ => return None,
        })
    }

    /// The underlying data error, if the failure was one.
    pub fn data_error(&self) -> Option<&Error> {
        match self {
            SyncError::Rejected { error, .. } | SyncError::Integration { error, .. } => {
                Some(error.root())
            }
            SyncError::Stopped(inner) => inner.data_error(),
            _ => None,
        }
    }
}
