//! Passes the resolved versions of the peer engines to the harness, which prints them, from the
//! workspace's Cargo.lock (the crates themselves do not export their versions).

use std::path::Path;

fn main() {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    for (krate, var) in [
        ("automerge", "AUTOMERGE_VERSION"),
        ("yrs", "YRS_VERSION"),
        ("loro", "LORO_VERSION"),
    ] {
        // A lock entry is `name = "..."` followed by `version = "..."` on the next line.
        let version = text
            .split("[[package]]")
            .filter_map(|entry| {
                let mut lines = entry.lines().map(str::trim).filter(|l| !l.is_empty());
                let name = lines.next()?.strip_prefix("name = ")?.trim_matches('"');
                let version = lines.next()?.strip_prefix("version = ")?.trim_matches('"');
                (name == krate).then(|| version.to_string())
            })
            .next()
            .unwrap_or_else(|| "(unknown version)".to_string());
        println!("cargo:rustc-env={var}={version}");
    }
}
