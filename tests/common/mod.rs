//! Helpers shared by the integration tests.

/// The number of property-test cases: `OBJSYNC_CASES` if set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("OBJSYNC_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
