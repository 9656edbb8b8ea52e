//! Runs every conformance scenario in spec/scenarios (each must pass, and its feed must rebuild
//! its state) and every malformed scenario in tests/malformed (each must be reported as
//! malformed, never panic).

use objsync_testkit::mirror::Mirror;
use objsync_testkit::scenario::{run, run_with_feed, Outcome};
use std::path::Path;

fn files(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_spec_scenario_passes() {
    let files = files("spec/scenarios");
    assert!(!files.is_empty(), "spec/scenarios has no scenarios");
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable scenario");
        match run(&text) {
            Outcome::Pass(_) => {}
            other => failures.push(format!("{}: {other:?}", f.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `--feed` prints each transaction as a line of exactly version, peer, timestamp and
/// instructions, versions 1, 2, ...; the lines, applied in order to an empty mirror, give the
/// printed state: the feed is the server's whole integrated history.
#[test]
fn every_spec_scenario_has_a_feed_that_rebuilds_its_state() {
    for f in files("spec/scenarios") {
        let text = std::fs::read_to_string(&f).expect("readable scenario");
        let (outcome, feed) = run_with_feed(&text);
        let Outcome::Pass(state) = outcome else {
            panic!("{}: {outcome:?}", f.display());
        };
        assert!(!feed.is_empty(), "{}", f.display());
        let mut mirror = Mirror::new();
        for (i, t) in feed.iter().enumerate() {
            let line: serde_json::Value =
                serde_json::from_str(&serde_json::to_string(t).unwrap()).unwrap();
            let keys: Vec<&String> = line.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["instructions", "peer", "timestamp", "version"]);
            assert_eq!(line["version"], i as u64 + 1, "{}", f.display());
            let item = objsync::feed::FeedItem::Transaction(t.clone());
            mirror
                .apply(&item)
                .unwrap_or_else(|e| panic!("{} v{}: {e}", f.display(), i + 1));
        }
        assert_eq!(mirror.state(), state, "{}", f.display());
    }
}

#[test]
fn a_malformed_scenario_has_no_feed() {
    let (outcome, feed) = run_with_feed(r#"{"clients": 1, "steps": [{"upload": 2}]}"#);
    assert!(matches!(outcome, Outcome::Malformed(_)));
    assert!(feed.is_empty());
}

#[test]
fn every_malformed_scenario_is_reported_as_malformed() {
    let files = files("tests/malformed");
    assert!(!files.is_empty());
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable scenario");
        match run(&text) {
            Outcome::Malformed(reason) => {
                assert!(!reason.is_empty());
                assert!(
                    !reason.contains('\n'),
                    "{}: reason must be one line",
                    f.display()
                );
            }
            other => panic!("{}: expected malformed, got {other:?}", f.display()),
        }
    }
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_report() {
    let text = r#"{"clients": 1, "steps": [
        {"client": 1, "time": 1, "tx": [
            {"op": "add_type", "type": "T", "primary_key": "id", "properties": {"id": "int", "v": "int"}},
            {"op": "insert", "type": "T", "pk": 1, "values": {"v": 2}},
            {"op": "insert", "type": "T", "pk": 2}
        ]}],
        "expect": {"T": {"1": {"v": 3}, "3": {}}}}"#;
    match run(text) {
        Outcome::Fail { report, state } => {
            assert!(report.contains("T[1].v: expected 3, got 2"), "{report}");
            assert!(report.contains("T[3] is missing"), "{report}");
            assert!(
                report.contains("T[2] exists but is not expected"),
                "{report}"
            );
            assert_eq!(state["T"]["1"]["v"], 2);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn expectations_compare_numbers_and_decimals_by_value() {
    let text = r#"{"clients": 1, "steps": [
        {"client": 1, "time": 1, "tx": [
            {"op": "add_type", "type": "T", "primary_key": "id", "properties": {"id": "object_id", "d": "double", "x": "decimal"}},
            {"op": "insert", "type": "T", "pk": "0123456789ABCDEF01234567", "values": {"d": 1, "x": "1.50"}}
        ]}],
        "expect": {"T": {"0123456789abcdef01234567": {"d": 1.0, "x": "1.5"}}}}"#;
    assert!(matches!(run(text), Outcome::Pass(_)), "{:?}", run(text));
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "null",
        "[]",
        "{}",
        r#"{"clients": 1}"#,
        r#"{"clients": 1, "steps": "x"}"#,
        r#"{"clients": 1, "steps": [{"client": 1}]}"#,
        r#"{"clients": 1, "steps": [{"client": 1, "time": -1, "tx": []}]}"#,
        r#"{"clients": 1, "steps": [{"client": 1, "time": 1, "tx": [{"op": "insert"}]}]}"#,
        r#"{"clients": 1, "steps": [{"client": 1, "time": 1, "tx": [{"op": "list_insert", "type": "T", "pk": 1, "property": "l", "index": 18446744073709551615, "value": 1}]}]}"#,
        r#"{"clients": 1, "steps": [], "expect": {"T": 5}}"#,
    ] {
        assert!(matches!(run(text), Outcome::Malformed(_)), "{text}");
    }
}

#[test]
fn an_op_file_applies_as_one_transaction() {
    use objsync::json::parse_ops;
    use objsync::{json, PeerId, Replica};
    let ops = parse_ops(
        r#"[{"op": "add_type", "type": "T", "primary_key": "id", "properties": {"id": "int", "n": "int?"}},
            {"op": "insert", "type": "T", "pk": 1, "values": {"n": 5}}]"#,
    )
    .expect("ops");
    let mut replica = Replica::new(PeerId(1));
    let mut tx = replica.transaction(1);
    for op in &ops {
        op.apply(&mut tx).expect("op");
    }
    // add_type, insert, and the set of the insert's value.
    assert_eq!(tx.commit().ops.len(), 3);
    let state = json::canonical(&json::state_json(replica.store()).unwrap());
    assert_eq!(state, r#"{"T":{"1":{"n":5}}}"#);
    for bad in ["{}", "[1]", r#"[{"op": "nope"}]"#, "not json"] {
        assert!(parse_ops(bad).is_err(), "{bad}");
    }
}

/// The clients a step names (all of them for `"sync": "all"`).
fn named(step: &serde_json::Value, clients: u64) -> Vec<u64> {
    let one = |key: &str| step.get(key).and_then(|v| v.as_u64());
    if let Some(k) = one("client").or(one("upload")).or(one("download")) {
        return vec![k];
    }
    match step.get("sync") {
        Some(serde_json::Value::Array(ks)) => ks.iter().filter_map(|k| k.as_u64()).collect(),
        Some(_) => (1..=clients).collect(),
        None => Vec::new(),
    }
}

/// spec/scenario-format.md: inserting `restart`, `compact` or `bootstrap` steps anywhere in a
/// valid scenario does not change its outcome in the slightest. Every spec scenario, with each
/// kind of step inserted at every position (a bootstrap only where its client has not yet
/// written or downloaded).
#[test]
fn lifecycle_steps_anywhere_change_nothing() {
    use serde_json::json;
    let mut runs = 0;
    for f in files("spec/scenarios") {
        let text = std::fs::read_to_string(&f).expect("readable scenario");
        let plain = run(&text);
        let scenario: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let steps = scenario["steps"].as_array().expect("steps").clone();
        let clients = scenario["clients"].as_u64().expect("clients");
        for at in 0..=steps.len() {
            let k = at as u64 % clients + 1;
            let mut inserts = vec![
                json!({"restart": "server"}),
                json!({"restart": k}),
                json!({"compact": "server"}),
            ];
            for k in 1..=clients {
                if !steps[..at].iter().any(|s| named(s, clients).contains(&k)) {
                    inserts.push(json!({"bootstrap": k}));
                }
            }
            for step in inserts {
                let mut changed = scenario.clone();
                let list = changed["steps"].as_array_mut().expect("steps");
                list.insert(at, step.clone());
                runs += 1;
                assert_eq!(
                    run(&changed.to_string()),
                    plain,
                    "{}: {step} before step {}",
                    f.display(),
                    at + 1
                );
            }
        }
    }
    assert!(runs > 1000, "only {runs} variations ran");
}
