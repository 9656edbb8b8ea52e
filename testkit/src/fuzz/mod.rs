//! The logic of every fuzz target, shared by the cargo-fuzz crate in fuzz/ (which depends on this
//! crate) and by tests/fuzz_corpus.rs, which replays the committed seed corpora through
//! it as an ordinary test. A target's name is its corpus directory, fuzz/seeds/<name>/, and its
//! binary, fuzz/fuzz_targets/<name>.rs.

pub mod converge;
pub mod decode;
pub mod input;
pub mod ops;
pub mod session;

use objsync::json::{canonical, state_json};
use objsync::Replica;

/// What a fuzz target does with one input: panics on a finding, returns otherwise.
pub type Target = fn(&[u8]);

/// Every target: its name and the function a fuzz input is fed to.
pub const TARGETS: [(&str, Target); 5] = [
    ("decode_changeset", decode::changeset),
    ("decode_snapshot", decode::snapshot),
    ("decode_message", decode::message),
    ("converge", converge::run),
    ("server_session", session::run),
];

/// A replica's state, rendered canonically for comparison.
pub fn state(r: &Replica) -> String {
    canonical(&state_json(r.store()).expect("state renders"))
}
