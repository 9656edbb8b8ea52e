//! The sync layer's error.

use crate::model::{ClientVersion, Error, PeerId, ServerVersion};
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
    /// The client already failed and refuses to sync further.
    #[error("the client stopped syncing after an earlier error: {0}")]
    Stopped(Box<SyncError>),
}

impl SyncError {
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
