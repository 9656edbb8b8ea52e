//! What clients and the server hand each other: uploads, their acknowledgements and downloads.

use crate::model::{Changeset, ClientVersion, Cursor, Fingerprint, ServerVersion};
use serde::{Deserialize, Serialize};

/// Changesets a client sends to the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    /// Where the client's download stands: the server checks that its history through the
    /// cursor is the one the client integrated.
    pub cursor: Cursor,
    /// The last client version the server acknowledged to this client: a server that holds
    /// less has lost changesets.
    pub acknowledged: ClientVersion,
    /// The [signature](crate::Changeset::signature) of that changeset, if the client still
    /// has it: a server that holds another one under that version was restored from another
    /// copy.
    pub acknowledged_signature: Option<u64>,
    /// The changesets, in client-version order, each based on the client's last integrated
    /// server version.
    pub changesets: Vec<Changeset>,
}

/// The server's acknowledgement of an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadAck {
    /// The last client version the server has integrated from this peer.
    pub integrated: ClientVersion,
}

/// One server history entry sent to a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownloadEntry {
    /// Its server version.
    pub server_version: ServerVersion,
    /// The last changeset of the receiving peer the server had integrated before this entry:
    /// the receiver's changesets up to it are in this entry's past, later ones are concurrent.
    pub last_own: ClientVersion,
    /// The history's fingerprint through this entry.
    pub fingerprint: Fingerprint,
    /// The entry.
    pub changeset: Changeset,
}

/// Server changesets a client has not seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Download {
    /// Entries from other peers, oldest first.
    pub entries: Vec<DownloadEntry>,
    /// Where the client stands once it has integrated them.
    pub cursor: Cursor,
    /// The [signature](crate::Changeset::signature) of the client's changeset the cursor names
    /// (`cursor.own`), when the server holds it: a client whose own changeset under that
    /// version is another one finds out.
    pub own_signature: Option<u64>,
    /// The server's latest version when this was made.
    pub latest: ServerVersion,
    /// The last client version of the receiver the server has integrated: one below what it
    /// acknowledged means it lost changesets.
    pub integrated: ClientVersion,
}
