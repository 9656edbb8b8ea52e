//! What objsync's tests share, and what the tools that check objsync from outside use:
//!
//! - [`scenario`]: the conformance scenario runner (spec/scenario-format.md), behind
//!   `cargo run --release --example scenario -- FILE` and the scenario tests;
//! - [`fuzz`]: the logic of every fuzz target, shared by the cargo-fuzz crate in `fuzz/` and by
//!   the test that replays the committed seed corpora;
//! - [`history`]: random multi-client histories for property tests;
//! - [`mirror`]: a plain consumer of the Adapter feed, for checking what the feed hands out;
//! - [`postgres`]: a throwaway PostgreSQL server for tests with real processes;
//! - [`cases`]: how many cases a property test runs.
//!
//! It depends on the library's public API only; the library never depends on it.

#![forbid(unsafe_code)]

pub mod fuzz;
pub mod history;
pub mod mirror;
pub mod postgres;
pub mod scenario;

/// The number of property-test cases: `OBJSYNC_CASES` if set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("OBJSYNC_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
