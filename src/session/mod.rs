//! The protocol's state machines, sans-IO: a [`ClientSession`] on each device and a
//! [`ServerSession`] per connection on the server, over a shared [`ServerRealm`].
//!
//! Nothing here touches a socket, a file or a clock. Frames come in through `receive`/`handle`,
//! frames to send come out of `poll_transmit`, and whatever must outlive the process is handed
//! to the caller as events ([`ServerEvent::Registered`], [`ServerEvent::Integrated`],
//! [`ClientEvent::Identified`], ...) to persist *before* sending the next frame, so that nothing
//! acknowledged is ever lost. Timers are the caller's too: it decides when to [`ClientSession::ping`]
//! and how long to back off after an error whose [`Action`](crate::wire::Action) is [`Action::Retry`](crate::wire::Action::Retry).
//!
//! A session's life (spec/protocol.md has the details):
//! 1. The client sends BIND (realm path, token) and at once IDENT (its identity and where its
//!    download stands). The server hands the BIND to its caller ([`BindRequest`]), who checks
//!    the token and permissions and answers [`ServerSession::accept`] or
//!    [`ServerSession::refuse`]; then the server checks the IDENT against the realm and answers
//!    with its own IDENT (issuing a salt on first contact) or an ERROR.
//! 2. Both sides stream: the client UPLOADs its changesets in chunks (each integrated only
//!    once complete); the server DOWNLOADs other clients' history entries in chunks, each
//!    DOWNLOAD also acknowledging uploads. MARK asks the server to say when everything it had
//!    at that moment has been sent; PING/PONG keep the connection alive.
//! 3. An ERROR ends the session. After a dropped connection the client binds again and resumes
//!    from its last acknowledged versions: re-sent changesets are recognised by client version
//!    and skipped, and the download starts from the client's cursor.
//!
//! ```
//! use objsync::wire::Limits;
//! use objsync::session::{Access, ClientConfig, ClientSession, ServerRealm, ServerSession};
//! use objsync::sync::Client;
//! use objsync::{ObjectType, PeerId, PropType, Property};
//!
//! let mut realm = ServerRealm::new(0x5eed); // one per realm path
//! let mut conn = ServerSession::new(Limits::default()); // one per connection
//! let config = ClientConfig {
//!     path: "/notes".into(),
//!     token: "t".into(),
//!     limits: Limits::default(),
//!     start_from_state: false,
//! };
//! let mut device = ClientSession::new(Client::new(PeerId(7)), config, None);
//! device.client_mut().write(1, |tx| {
//!     tx.add_type(ObjectType::new(
//!         "Note",
//!         Some("id"),
//!         [Property::new("id", PropType::parse("int")?)],
//!     )?)?;
//!     tx.insert("Note", 1)
//! })?;
//! device.connect();
//! loop {
//!     let mut moved = false;
//!     while let Some(frame) = device.poll_transmit() {
//!         moved = true;
//!         if let Ok(Some(_bind)) = conn.receive(&frame) {
//!             // The caller checks the token and the path's permissions here.
//!             conn.accept(Access { read: true, write: true }, 0x1234);
//!         }
//!         for _event in conn.process(&mut realm) { /* persist before sending more */ }
//!     }
//!     while let Some(frame) = conn.poll_transmit(&realm) {
//!         moved = true;
//!         for _event in device.handle(&frame)? { /* persist */ }
//!     }
//!     if !moved {
//!         break;
//!     }
//! }
//! assert_eq!(realm.server().version().0, 1);
//! assert_eq!(device.client().acknowledged().0, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod realm;
mod server;

pub use client::{ClientConfig, ClientError, ClientEvent, ClientSession, Identity};
pub use realm::ServerRealm;
pub use server::{Access, BindRequest, ServerEvent, ServerSession};

use serde::{Deserialize, Serialize};

/// Upload or download progress in bytes of encoded changesets, as the source documents define
/// it: `transferable` is what has been transferred plus what is pending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Bytes transferred so far (since the session object was created).
    pub transferred: u64,
    /// `transferred` plus the bytes still pending.
    pub transferable: u64,
}

impl Progress {
    /// Whether nothing is pending.
    pub fn is_complete(&self) -> bool {
        self.transferred >= self.transferable
    }
}
