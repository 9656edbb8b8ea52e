//! The binary forms: changesets as they cross the network and sit in histories, and the sync
//! protocol's messages.
//!
//! Every decoder here treats its input as hostile: any bytes either decode or yield a typed
//! [`DecodeError`] (with the offset of what is wrong) or [`MessageError`], never a panic, and
//! no decoder allocates more than a small multiple of its input. Encodings are canonical: what
//! decodes re-encodes to the same bytes. `spec/protocol.md` specifies the messages; the
//! changeset format is specified in [`encode`]'s module (`wire::changeset`).
//!
//! ```
//! use objsync::wire::{decode, encode};
//! use objsync::{Changeset, PeerId};
//!
//! let cs = Changeset::new(PeerId(7), 1_000);
//! let bytes = encode(&cs);
//! assert_eq!(&bytes[..3], b"OSC");
//! assert_eq!(decode(&bytes)?, cs);
//! assert!(decode(&bytes[..5]).is_err());
//! # Ok::<(), objsync::wire::DecodeError>(())
//! ```

mod changeset;
mod error;
mod protocol;
mod varint;

pub(crate) use changeset::Encoder;
pub use changeset::{decode, decode_with, encode, encode_into, Names, FORMAT_VERSION};
pub use error::{DecodeError, MessageError};
pub(crate) use protocol::Redacted;
pub use protocol::{
    is_feed_request, Action, Bind, Chunk, ClientMessage, DownloadHead, DownloadMessage, ErrorCode,
    ErrorMessage, FeedClientMessage, FeedPiece, FeedRequest, FeedServerMessage, FileIdent, Ident,
    IdentReply, Limits, Outgoing, Reassembly, ServerMessage, Start, StatePosition, UploadMessage,
    UploadProgress, CHUNK_OVERHEAD, MESSAGE_OVERHEAD, MIN_MESSAGE, PROTOCOL_VERSION,
};
pub(crate) use varint::Reader;
