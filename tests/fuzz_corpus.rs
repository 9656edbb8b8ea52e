//! Replays every committed seed input of every fuzz target (fuzz/seeds/<target>/) through the
//! target's logic, so `cargo test` guards what fuzzing found (minimized crashes are added to
//! the seeds) without needing cargo-fuzz or a nightly toolchain.

use objsync_testkit::fuzz;

use std::path::Path;

#[test]
fn seed_corpora_pass() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (name, target) in fuzz::TARGETS {
        let dir = seeds.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no seeds for {name}");
        for file in files {
            let data = std::fs::read(&file).expect("a seed file");
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", file.display());
        }
    }
}
