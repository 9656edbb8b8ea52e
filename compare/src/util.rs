//! Small helpers shared by the workloads: error context, and reading and writing the values
//! each engine stores.

use automerge::ActorId;
use std::fmt::Display;
use yrs::updates::decoder::Decode;
use yrs::{Any, Doc, Out, Transact, Update};

/// Every failure ends the run with a message; nothing here is recoverable.
pub type Res<T> = Result<T, String>;

/// Turns an engine's error into a message saying what was being done.
pub fn fail<E: Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// An automerge actor id for peer number `n` (actor ids are opaque bytes).
pub fn actor(n: u64) -> ActorId {
    ActorId::from(n.to_be_bytes())
}

/// The int in an automerge value.
pub fn automerge_int(v: &automerge::Value<'_>) -> Res<i64> {
    // Matched exactly: `as_i64` would also accept floats and counters.
    match v {
        automerge::Value::Scalar(s) => match s.as_ref() {
            automerge::ScalarValue::Int(i) => Ok(*i),
            other => Err(format!("automerge: expected an int, found {other:?}")),
        },
        other => Err(format!("automerge: expected an int, found {other:?}")),
    }
}

/// The int in a yrs value.
pub fn yrs_int(out: Out) -> Res<i64> {
    match out {
        Out::Any(any) => match i64::try_from(any) {
            Ok(v) => Ok(v),
            Err(other) => Err(format!("yrs: expected an int, found {other:?}")),
        },
        other => Err(format!("yrs: expected an int, found {other:?}")),
    }
}

/// The int in a loro value.
pub fn loro_int(v: loro::ValueOrContainer) -> Res<i64> {
    match v {
        loro::ValueOrContainer::Value(loro::LoroValue::I64(i)) => Ok(i),
        other => Err(format!("loro: expected an int, found {other:?}")),
    }
}

/// The yrs value for an int. yrs keeps integers as `Number::Int`, so they come back exact.
pub fn yrs_value(v: i64) -> Any {
    Any::from(v)
}

/// Decodes a yrs v1 update and applies it to `doc`, as a receiver of the bytes would.
pub fn yrs_apply(doc: &Doc, bytes: &[u8]) -> Res<()> {
    let update = Update::decode_v1(bytes).map_err(fail("yrs: decoding an update"))?;
    doc.transact_mut()
        .apply_update(update)
        .map_err(fail("yrs: applying an update"))
}
