//! The Adapter feed (`objsync::feed`): its JSON shape, its cursor (persisted, resumed: nothing
//! lost or handed out twice), compaction and trimming, and the property a connector relies on:
//! applying every item to a plain mirror gives, after each transaction, the realm's state at
//! that version, for random multi-client histories (concurrent list edits, deletes that unlink,
//! writes that lose).
//!
//! `OBJSYNC_CASES` sets the number of random histories (default 2,000 per property test).

use objsync::feed::{
    Element, Feed, FeedCursor, FeedError, FeedInstruction, FeedItem, FeedTransaction,
};
use objsync::json::{canonical, state_json};
use objsync::sync::{Client, History, Server};
use objsync::{ObjectType, PeerId, PropType, Property, ServerVersion, Store};
use objsync_testkit::cases;
use objsync_testkit::history::{history, run_with, Run};
use objsync_testkit::mirror::Mirror;
use proptest::prelude::*;
use serde_json::json;

fn prop(n: &str, t: &str) -> Property {
    Property::new(n, PropType::parse(t).unwrap())
}

fn state<S: Store>(store: &S) -> String {
    canonical(&state_json(store).unwrap())
}

/// Every item the feed has now, each moved past.
fn drain(feed: &mut Feed, history: &History) -> Vec<FeedItem> {
    let mut items = Vec::new();
    while let Some(item) = feed.current(history).unwrap() {
        items.push(item.clone());
        assert!(feed.advance());
    }
    assert!(!feed.advance(), "nothing to move past");
    items
}

fn transaction(item: &FeedItem) -> &FeedTransaction {
    match item {
        FeedItem::Transaction(t) => t,
        FeedItem::Snapshot(_) => panic!("a snapshot where a transaction was expected"),
    }
}

/// A server with the Dog and Person types and a few transactions from two devices.
fn realm() -> (Server, Vec<Client>) {
    let mut server = Server::new();
    let mut clients = vec![Client::new(PeerId(1)), Client::new(PeerId(2))];
    let mut commit = |c: &mut Client,
                      t: u64,
                      f: &dyn Fn(
        &mut objsync::Transaction<'_, objsync::MemoryStore>,
    ) -> Result<(), objsync::Error>| {
        let d = server.download(c.peer(), c.cursor(), None).unwrap();
        c.integrate(d).unwrap();
        c.write(t, |tx| f(tx)).unwrap();
        let ack = server.integrate(c.peer(), c.upload()).unwrap();
        c.acknowledge(ack);
    };
    let (a, rest) = clients.split_first_mut().unwrap();
    let b = &mut rest[0];
    commit(a, 100, &|tx| {
        tx.add_type(ObjectType::new("Dog", Some("name"), [prop("name", "string")]).unwrap())?;
        tx.add_type(
            ObjectType::new(
                "Person",
                Some("id"),
                [
                    prop("id", "int"),
                    prop("name", "string?"),
                    prop("dog", "link<Dog>"),
                    prop("tags", "list<string>"),
                    prop("dogs", "list<link<Dog>>"),
                ],
            )
            .unwrap(),
        )?;
        tx.insert("Dog", "rex")?;
        tx.insert("Person", 1)?;
        tx.set("Person", 1, "name", "Ada")?;
        tx.set("Person", 1, "dog", "rex")?;
        tx.list_insert("Person", 1, "tags", 0, "a")?;
        tx.list_insert("Person", 1, "dogs", 0, "rex")
    });
    commit(b, 200, &|tx| {
        tx.list_insert("Person", 1, "tags", 1, "b")?;
        tx.list_move("Person", 1, "tags", 1, 0)
    });
    commit(a, 300, &|tx| tx.delete("Dog", "rex"));
    (server, clients)
}

#[test]
fn transactions_come_in_the_adapter_api_json_shape() {
    let (server, _) = realm();
    let items = drain(&mut Feed::new(), server.history());
    let lines: Vec<serde_json::Value> = items
        .iter()
        .map(|i| serde_json::to_value(transaction(i)).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        (
            &lines[0]["version"],
            &lines[0]["peer"],
            &lines[0]["timestamp"]
        ),
        (&json!(1), &json!(1), &json!(100))
    );
    assert_eq!(
        lines[0]["instructions"][1],
        json!({"type": "ADD_TYPE", "object_type": "Person", "primary_key": "id", "properties": {
            "id": {"type": "int", "optional": false},
            "name": {"type": "string", "optional": true},
            "dog": {"type": "object", "objectType": "Dog", "optional": true},
            "tags": {"type": "list", "objectType": "string", "optional": false},
            "dogs": {"type": "list", "objectType": "Dog", "optional": false}}})
    );
    assert_eq!(
        lines[0]["instructions"].as_array().unwrap()[2..],
        [
            json!({"type": "INSERT", "object_type": "Dog", "identity": "rex", "values": {}}),
            json!({"type": "INSERT", "object_type": "Person", "identity": 1,
                   "values": {"name": "Ada", "dog": "rex"}}),
            json!({"type": "LIST_INSERT", "object_type": "Person", "identity": 1,
                   "property": "tags", "list_index": 0, "value": "a"}),
            json!({"type": "LIST_INSERT", "object_type": "Person", "identity": 1,
                   "property": "dogs", "list_index": 0, "object_identity": "rex"}),
        ]
    );
    assert_eq!(
        lines[1]["instructions"],
        json!([
            {"type": "LIST_INSERT", "object_type": "Person", "identity": 1, "property": "tags",
             "list_index": 1, "value": "b"},
            {"type": "LIST_MOVE", "object_type": "Person", "identity": 1, "property": "tags",
             "list_index": 1, "new_index": 0}])
    );
    // The deletion's unlinks come first, each an instruction of its own.
    assert_eq!(
        lines[2]["instructions"],
        json!([
            {"type": "SET", "object_type": "Person", "identity": 1, "values": {"dog": null}},
            {"type": "LIST_ERASE", "object_type": "Person", "identity": 1, "property": "dogs",
             "list_index": 0},
            {"type": "DELETE", "object_type": "Dog", "identity": "rex"}])
    );
    for item in &items {
        let text = serde_json::to_string(item).unwrap();
        assert!(text.starts_with(r#"{"kind":"transaction","version":"#));
        assert_eq!(&serde_json::from_str::<FeedItem>(&text).unwrap(), item);
    }
}

#[test]
fn instructions_deserialize_and_refuse_what_is_not_one() {
    let set: FeedInstruction = serde_json::from_str(
        r#"{"type":"LIST_SET","object_type":"T","identity":"x","property":"l","list_index":2,"value":5}"#,
    )
    .unwrap();
    assert!(matches!(
        set,
        FeedInstruction::ListSet {
            list_index: 2,
            element: Element::Value(_),
            ..
        }
    ));
    for bad in [
        r#"{"type":"LIST_SET","object_type":"T","identity":"x","property":"l","list_index":2}"#,
        r#"{"type":"CHANGE_IDENTITY","object_type":"T","identity":1,"new_identity":2}"#,
        r#"{"type":"SET","object_type":"T","identity":1}"#,
    ] {
        assert!(
            serde_json::from_str::<FeedInstruction>(bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn a_write_that_lost_is_not_in_the_feed() {
    let mut server = Server::new();
    let mut a = Client::new(PeerId(1));
    let mut b = Client::new(PeerId(2));
    let t = ObjectType::new("T", Some("id"), [prop("id", "int"), prop("v", "int")]).unwrap();
    a.write(1, |tx| {
        tx.add_type(t.clone())?;
        tx.insert("T", 1).map(|_| ())
    })
    .unwrap();
    server.integrate(a.peer(), a.upload()).unwrap();
    let d = server.download(b.peer(), b.cursor(), None).unwrap();
    b.integrate(d).unwrap();
    a.write(20, |tx| tx.set("T", 1, "v", 2)).unwrap(); // later
    b.write(10, |tx| tx.set("T", 1, "v", 1)).unwrap(); // earlier, integrated after
    server.integrate(a.peer(), a.upload()).unwrap();
    server.integrate(b.peer(), b.upload()).unwrap();
    let items = drain(&mut Feed::new(), server.history());
    let last = transaction(&items[2]);
    assert_eq!((last.version, last.peer), (ServerVersion(3), PeerId(2)));
    assert!(last.instructions.is_empty(), "{last:?}");
}

#[test]
fn a_persisted_cursor_resumes_exactly_where_the_feed_stopped() {
    let (server, _) = realm();
    let all = drain(&mut Feed::new(), server.history());
    for stop in 0..=all.len() {
        let mut feed = Feed::new();
        for _ in 0..stop {
            feed.current(server.history()).unwrap();
            feed.advance();
        }
        // Handed out but not moved past: it comes again after a restart.
        feed.current(server.history()).unwrap();
        let saved = serde_json::to_string(&feed.cursor()).unwrap();
        let checkpoint = feed.checkpoint();
        let cursor: FeedCursor = serde_json::from_str(&saved).unwrap();
        assert_eq!(cursor.version, ServerVersion(stop as u64));
        for from in [None, Some(&checkpoint[..])] {
            let mut resumed = Feed::resume(from, cursor, server.history()).unwrap();
            assert_eq!(drain(&mut resumed, server.history()), all[stop..]);
        }
        // The original goes on too, after its checkpoint.
        assert_eq!(drain(&mut feed, server.history()), all[stop..]);
    }
}

#[test]
fn a_bad_cursor_or_checkpoint_is_a_typed_error() {
    let (server, _) = realm();
    let h = server.history();
    let ahead = FeedCursor {
        version: ServerVersion(9),
    };
    assert!(matches!(
        Feed::resume(None, ahead, h),
        Err(FeedError::Ahead { .. })
    ));
    let mut late = Feed::new();
    drain(&mut late, h);
    let checkpoint = late.checkpoint();
    let early = FeedCursor {
        version: ServerVersion(1),
    };
    assert!(matches!(
        Feed::resume(Some(&checkpoint), early, h),
        Err(FeedError::CheckpointAhead { .. })
    ));
    assert!(matches!(
        Feed::from_state(b"OSS?"),
        Err(FeedError::State(_))
    ));
    assert!(matches!(
        Feed::resume(Some(&checkpoint[1..]), ahead, h),
        Err(FeedError::State(_))
    ));
    // A feed of another realm: its state does not take this history.
    let mut other = Server::new();
    let mut c = Client::new(PeerId(5));
    c.write(1, |tx| {
        tx.add_type(ObjectType::new("Dog", Some("name"), [prop("name", "int")]).unwrap())
    })
    .unwrap();
    other.integrate(c.peer(), c.upload()).unwrap();
    let mut feed = Feed::resume(
        Some(
            &Feed::from_state(&other.state_snapshot())
                .unwrap()
                .checkpoint(),
        ),
        FeedCursor {
            version: ServerVersion(1),
        },
        h,
    )
    .unwrap();
    assert!(matches!(feed.current(h), Err(FeedError::Apply { .. })));
}

#[test]
fn behind_a_trimmed_horizon_the_feed_starts_from_the_state() {
    let (mut server, mut clients) = realm();
    let mut feed = Feed::new();
    feed.current(server.history()).unwrap();
    feed.advance();
    server.trim(ServerVersion(2));
    assert_eq!(
        feed.current(server.history()).unwrap_err(),
        FeedError::BehindHorizon {
            cursor: ServerVersion(1),
            horizon: ServerVersion(2)
        }
    );
    assert!(matches!(
        Feed::resume(None, feed.cursor(), server.history()),
        Err(FeedError::BehindHorizon { .. })
    ));
    let mut feed = Feed::from_state(&server.state_snapshot()).unwrap();
    let a = &mut clients[0];
    let d = server.download(a.peer(), a.cursor(), None).unwrap();
    a.integrate(d).unwrap();
    a.write(400, |tx| tx.set("Person", 1, "name", "Bo"))
        .unwrap();
    server.integrate(a.peer(), a.upload()).unwrap();
    let items = drain(&mut feed, server.history());
    let FeedItem::Snapshot(s) = &items[0] else {
        panic!("the snapshot first")
    };
    assert_eq!((s.version, s.timestamp), (ServerVersion(3), 300));
    assert_eq!(transaction(&items[1]).version, ServerVersion(4));
    let mut mirror = Mirror::new();
    for item in &items {
        mirror.apply(item).unwrap();
    }
    assert_eq!(canonical(&mirror.state()), state(server.replica().store()));
    // A checkpoint at or after the horizon resumes as ever.
    let checkpoint = feed.checkpoint();
    server.trim(ServerVersion(4));
    let mut resumed = Feed::resume(Some(&checkpoint), feed.cursor(), server.history()).unwrap();
    assert!(drain(&mut resumed, server.history()).is_empty());
}

/// The fenced block after `marker` in spec/feed.md.
fn spec_block(marker: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/spec/feed.md");
    let text = std::fs::read_to_string(path).unwrap();
    let after = &text[text.find(marker).expect("the marker")..];
    let body = &after[after.find("```").unwrap()..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

/// spec/feed.md's example: the runner gives exactly the lines the spec shows.
#[test]
fn the_spec_example_is_what_the_feed_gives() {
    let (outcome, feed) =
        objsync_testkit::scenario::run_with_feed(&spec_block("<!-- example: scenario -->"));
    let objsync_testkit::scenario::Outcome::Pass(state) = outcome else {
        panic!("{outcome:?}");
    };
    let mut lines = vec![canonical(&state)];
    lines.extend(feed.iter().map(|t| serde_json::to_string(t).unwrap()));
    let expected = spec_block("<!-- example: feed -->");
    assert_eq!(lines, expected.lines().collect::<Vec<_>>());
}

/// Applies every item to a mirror, checking after each that the mirror equals the feed's own
/// state (the realm's state at that version); returns the items.
fn mirror_all(
    feed: &mut Feed,
    history: &History,
    mirror: &mut Mirror,
) -> Result<Vec<FeedItem>, TestCaseError> {
    let mut items = Vec::new();
    while let Some(item) = feed.current(history).unwrap() {
        let item = item.clone();
        mirror
            .apply(&item)
            .map_err(|e| TestCaseError::fail(format!("{item:?}: {e}")))?;
        prop_assert!(feed.advance());
        prop_assert_eq!(
            canonical(&mirror.state()),
            state(feed.replica().store()),
            "after {:?}",
            item
        );
        let text = serde_json::to_string(&item).unwrap();
        prop_assert_eq!(&serde_json::from_str::<FeedItem>(&text).unwrap(), &item);
        items.push(item);
    }
    Ok(items)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    /// A mirror fed every item equals the realm at every version, and ends equal to the
    /// server; compacting at a random step changes nothing the mirror ends with.
    #[test]
    fn a_mirror_of_the_feed_is_the_realm(
        (n, steps) in history(4),
        compact_at in any::<prop::sample::Index>(),
    ) {
        let order: Vec<usize> = (0..n).collect();
        let at = compact_at.index(steps.len());
        let run = run_with(n, &steps, &order, |_, _| {});
        let mut mirror = Mirror::new();
        let items = mirror_all(&mut Feed::new(), run.server.history(), &mut mirror)?;
        prop_assert_eq!(items.len() as u64, run.server.version().0);
        prop_assert_eq!(canonical(&mirror.state()), state(run.server.replica().store()));

        let compacted: Run = run_with(n, &steps, &order, |run, i| {
            if i == at {
                run.server.compact();
            }
        });
        let mut mirror = Mirror::new();
        mirror_all(&mut Feed::new(), compacted.server.history(), &mut mirror)?;
        prop_assert_eq!(canonical(&mirror.state()), state(compacted.server.replica().store()));
    }

    /// Resuming at any cursor, from nothing or from a checkpoint taken earlier, hands out
    /// exactly the items after it.
    #[test]
    fn resuming_anywhere_hands_out_the_rest((n, steps) in history(3), stop in any::<prop::sample::Index>(), at in any::<prop::sample::Index>()) {
        let order: Vec<usize> = (0..n).collect();
        let run = run_with(n, &steps, &order, |_, _| {});
        let history = run.server.history();
        let all = drain(&mut Feed::new(), history);
        let stop = stop.index(all.len() + 1);
        let at = at.index(stop + 1);
        let mut feed = Feed::new();
        let mut checkpoint = None;
        for i in 0..stop {
            if i == at {
                checkpoint = Some(feed.checkpoint());
            }
            feed.current(history).unwrap();
            feed.advance();
        }
        let checkpoint = checkpoint.unwrap_or_else(|| feed.checkpoint());
        let mut resumed = Feed::resume(Some(&checkpoint), feed.cursor(), history).unwrap();
        prop_assert_eq!(&drain(&mut resumed, history), &all[stop..]);
    }
}
