//! The data model every other layer speaks: ids and versions, values and keys, the schema,
//! instructions and changesets, and the data layer's typed [`Error`].
//!
//! Nothing here knows how state is stored, merged or sent; it is plain data with the rules that
//! belong to the data itself (a key fits its type, a value fits its property, a schema only
//! grows). Every other module depends on this one and on nothing above it.

mod changeset;
mod decimal;
mod error;
mod ids;
mod instruction;
mod place;
mod schema;
mod value;

pub use changeset::Changeset;
pub use decimal::{Decimal128, DecimalError, DecimalKind};
pub use error::{Error, ListProblem, SchemaConflict};
pub use ids::{
    Checkpoint, ClientVersion, Cursor, Fingerprint, Key, OpId, PeerId, RecoveryRequest,
    ServerVersion, Timestamp,
};
pub use instruction::{Fate, Instruction, Kind, ObjRef, Op, PropRef};
pub use place::{Place, Side};
pub use schema::{
    check_name, is_reserved, ElemType, Name, ObjectType, PropType, Properties, Property, Schema,
    MAX_NAME_LEN,
};
pub(crate) use schema::{Hint, Repeats};
pub use value::{ObjKey, ObjectId, ScalarKind, Value};
