#![doc = include_str!("../README.md")]
//!
//! # The crate
//!
//! The everyday types are at the crate root: the model ([`Value`], [`ObjKey`], [`Schema`],
//! [`ObjectType`], [`Instruction`], [`Changeset`], ids and versions), a [`Replica`] and its
//! [`Transaction`]s, the [`Store`] trait and [`MemoryStore`], and the data layer's [`Error`].
//! Eight modules hold the rest:
//!
//! - [`sync`]: the sans-IO [`sync::Client`] and [`sync::Server`], what they exchange, and clocks;
//! - [`session`]: the protocol's state machines, frames in and frames out;
//! - [`wire`]: the binary forms of changesets and protocol messages;
//! - [`json`]: the JSON forms of values, writes and states;
//! - [`store`]: the [`Store`] trait and what implementing one involves;
//! - [`observe`]: change notifications ([`Observe`], [`Changes`]);
//! - [`feed`]: the Adapter feed over a server's history;
//! - [`permissions`]: role-based privileges at realm, class and object level.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod merge;
mod model;
mod replica;
mod snapshot;
mod write;

pub mod feed;
pub mod json;
pub mod observe;
pub mod permissions;
pub mod session;
pub mod store;
pub mod sync;
pub mod wire;

pub use merge::merge;
pub use model::{
    check_name, is_reserved, Changeset, ClientVersion, Cursor, Decimal128, DecimalError,
    DecimalKind, ElemType, Error, Fate, Fingerprint, Instruction, Key, Kind, ListProblem, Name,
    ObjKey, ObjRef, ObjectId, ObjectType, Op, OpId, PeerId, Place, PropRef, PropType, Properties,
    Property, ScalarKind, Schema, SchemaConflict, ServerVersion, Side, Timestamp, Value,
    MAX_NAME_LEN,
};
pub use observe::{Changes, Observe};
pub use replica::{ElemState, Replica, Sequence};
pub use snapshot::{SnapshotError, SNAPSHOT_VERSION};
pub use store::{MemoryStore, Store};
pub use sync::{Client, Hlc, Server, VectorClock};
pub use write::Transaction;
