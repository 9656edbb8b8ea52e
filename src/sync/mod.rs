//! The sync model, sans-IO, in the star topology of the source documents: many [`Client`]s and
//! one [`Server`] per realm. Nothing here does IO; the caller moves [`Upload`]s and
//! [`Download`]s between them however it likes (in process, or encoded on a wire).
//!
//! - A client applies each local transaction at once and keeps it as an unacknowledged
//!   changeset, rebased on the last server version it integrated. [`Client::upload`] hands out
//!   what the server has not acknowledged; [`Client::integrate`] merges downloaded server
//!   changesets with the unacknowledged local ones ([`crate::merge`]) and applies
//!   the result.
//! - The server integrates an uploaded changeset, based on server version `b`, by merging it with
//!   every history entry after `b` that came from another client, each as that client sees it
//!   (the *reciprocal* form: the entry transformed past the uploader's own changesets that the
//!   server integrated after it). The result is validated by applying it atomically, and appended
//!   to the history. Each client downloads what it has not seen, never its own changesets (it
//!   learns they were integrated from the acknowledgement instead).
//! - Versions: a client's changesets are numbered by [`ClientVersion`](crate::ClientVersion), the server's history by
//!   [`ServerVersion`](crate::ServerVersion). Re-uploads after a reconnect are recognised by client version and ignored;
//!   downloads can stop after any entry and resume.
//!
//! ```
//! use objsync::sync::{Client, Server};
//! use objsync::{json, ObjectType, PeerId, PropType, Property};
//!
//! let mut server = Server::new();
//! let mut alice = Client::new(PeerId(1));
//! let mut bob = Client::new(PeerId(2));
//! let person = ObjectType::new("Person", Some("id"), [
//!     Property::new("id", PropType::parse("int")?),
//!     Property::new("name", PropType::parse("string")?),
//! ])?;
//! for (client, name, t) in [(&mut alice, "Ada", 10), (&mut bob, "Bo", 20)] {
//!     // Both write offline: the same object, concurrently.
//!     client.write(t, |tx| {
//!         tx.add_type(person.clone())?;
//!         tx.insert("Person", 1)?;
//!         tx.set("Person", 1, "name", name)
//!     })?;
//! }
//! for client in [&mut alice, &mut bob] {
//!     let ack = server.integrate(client.peer(), client.upload())?;
//!     client.acknowledge(ack);
//! }
//! for client in [&mut alice, &mut bob] {
//!     let download = server.download(client.peer(), client.cursor(), None)?;
//!     client.integrate(download)?;
//! }
//! // Bob's write is later: everybody ends with "Bo".
//! for r in [alice.replica(), bob.replica(), server.replica()] {
//!     assert_eq!(json::canonical(&json::state_json(r.store())?), r#"{"Person":{"1":{"name":"Bo"}}}"#);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod clock;
mod error;
mod messages;
mod reset;
mod server;

pub use crate::model::Cursor;
pub use crate::model::{Checkpoint, RecoveryRequest};
pub use client::{Client, DEFAULT_RECOVERY_WINDOW};
pub use clock::{Hlc, VectorClock, DEFAULT_MAX_SKEW};
pub use error::SyncError;
pub use messages::{Download, DownloadEntry, Upload, UploadAck};
pub use reset::{Reset, ResetCause, ResetError, ResetMode, ResetReport};
pub(crate) use server::ReadRun;
pub use server::{History, HistoryEntry, Server};
