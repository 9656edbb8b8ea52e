//! # objsync
//!
//! The merge engine of an offline-first object database, in the manner of Realm Sync: devices
//! write to their local copy while offline, each write transaction becomes a [`Changeset`] of
//! [`Instruction`]s, a server integrates changesets from many clients in whatever order they
//! arrive, and deterministic transformation makes every replica converge to the same state.
//!
//! The crate is pure: no IO, no clocks, no threads, no randomness. Timestamps, peer ids and
//! bytes are handed in by the caller.
//!
//! ## Layers
//! - [`schema`], [`value`]: object types with primary keys, properties and their values.
//! - [`instruction`], [`changeset`]: what a write transaction is made of.
//! - [`store`]: the [`Store`] trait any backing store implements; [`MemoryStore`] keeps state in
//!   memory.
//! - [`list`]: the merge metadata that gives list elements stable identities and positions.
//! - [`replica`], [`transaction`]: a store plus its merge metadata, and the transaction API that
//!   turns ordinary calls into changesets.
//! - [`transform`], [`sync`], [`clock`]: merging concurrent changesets, the sans-IO client and
//!   server histories, and clocks.
//! - [`json`], [`scenario`]: the JSON forms of state and the conformance scenario runner.
//!
//! ## Example
//! ```
//! use objsync::{ObjectType, PeerId, PropType, Property, Replica, json};
//!
//! let mut replica = Replica::new(PeerId(1));
//! let mut tx = replica.transaction(1_000);
//! tx.add_type(ObjectType::new(
//!     "Person",
//!     Some("id"),
//!     [
//!         Property::new("id", PropType::parse("int")?),
//!         Property::new("name", PropType::parse("string?")?),
//!         Property::new("tags", PropType::parse("list<string>")?),
//!     ],
//! )?)?;
//! tx.insert("Person", 1)?;
//! tx.set("Person", 1, "name", "Ada")?;
//! tx.list_insert("Person", 1, "tags", 0, "math")?;
//! let changeset = tx.commit();
//! assert_eq!(changeset.ops.len(), 4);
//!
//! let state = json::state_json(replica.store())?;
//! assert_eq!(
//!     json::canonical(&state),
//!     r#"{"Person":{"1":{"name":"Ada","tags":["math"]}}}"#
//! );
//! # Ok::<(), objsync::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod changeset;
mod chunked;
pub mod clock;
pub mod decimal;
pub mod encoding;
pub mod error;
pub mod ids;
pub mod instruction;
pub mod json;
pub mod list;
pub mod memory;
pub mod protocol;
pub mod replica;
pub mod scenario;
pub mod schema;
pub mod session;
pub mod store;
pub mod sync;
pub mod transaction;
pub mod transform;
pub mod value;

pub use changeset::Changeset;
pub use clock::{Hlc, VectorClock};
pub use decimal::Decimal128;
pub use error::Error;
pub use ids::{ClientVersion, Key, OpId, PeerId, ServerVersion, Timestamp};
pub use instruction::{Fate, Instruction, Kind, ObjRef, Op};
pub use memory::MemoryStore;
pub use replica::Replica;
pub use schema::{ObjectType, PropType, Property, Schema};
pub use store::Store;
pub use sync::{Client, Server};
pub use transaction::Transaction;
pub use value::{ObjKey, ObjectId, ScalarKind, Value};
