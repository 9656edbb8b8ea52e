//! The history lifecycle, proven by property tests on random histories
//! (`objsync_testkit::history`):
//!
//! - **Restart.** Saving and loading every client and the server after any step changes
//!   nothing: the run ends in exactly the state, history and downloads of the run without
//!   restarts, and a loaded replica saves to the same bytes.
//! - **Compaction.** Compacting the server after any step changes nothing for anyone: the same
//!   end state on every replica, unless a client stopped a download inside a compacted span and
//!   wrote against what it saw (intermediate states are not promised, spec/semantics.md 9.1);
//!   then the run still converges. After the history, a late upload from a new client based on any
//!   server version integrates into the compacted and the uncompacted server alike, and a new
//!   client downloading either ends equal.
//!
//! `OBJSYNC_CASES` sets the number of random histories (default 1,000 each).

use objsync::sync::{Client, Server};
use objsync::{Error, MemoryStore, PeerId, Replica, ServerVersion, Store, Transaction};
use objsync_testkit::cases;
use objsync_testkit::history::{
    history, intent, run, run_intent, run_with, state, Intent, Run, Step,
};
use proptest::prelude::*;

fn restart(run: &mut Run) {
    for c in run.clients.iter_mut() {
        let bytes = c.save();
        *c = Client::load(&bytes).expect("a saved client loads");
        assert_eq!(c.save(), bytes, "a loaded client saves to the same bytes");
    }
    let bytes = run.server.save();
    run.server = Server::load(&bytes).expect("a saved server loads");
    assert_eq!(
        run.server.save(),
        bytes,
        "a loaded server saves to the same bytes"
    );
}

/// Everything a run ends with: every replica's state and the server's history.
fn outcome(run: &Run) -> (Vec<String>, String, Vec<u8>) {
    let states = run.clients.iter().map(|c| state(c.replica())).collect();
    let history = format!("{:?}", run.server.history().iter().collect::<Vec<_>>());
    (states, history, run.server.replica().save())
}

/// What each client shows its user after a step.
fn seen(run: &Run) -> Vec<String> {
    run.clients.iter().map(|c| state(c.replica())).collect()
}

/// The server's state, and a new client's state once it downloaded everything (starting from
/// the server's state if the history was trimmed).
fn served(server: &Server) -> (String, String) {
    let mut fresh = if server.history().horizon() > ServerVersion(0) {
        Client::bootstrap(PeerId(99), &server.state_snapshot()).expect("a state loads")
    } else {
        Client::new(PeerId(99))
    };
    let d = server
        .download(fresh.peer(), fresh.cursor(), None)
        .expect("whole");
    fresh.integrate(d).expect("a download integrates");
    (state(server.replica()), state(fresh.replica()))
}

/// A new client that downloaded the first `base` entries of `server`.
fn behind(server: &Server, base: usize) -> Client {
    let mut late = Client::new(PeerId(77));
    let d = server
        .download(late.peer(), late.cursor(), Some(base))
        .expect("whole");
    late.integrate(d).expect("a download integrates");
    late
}

/// `late` writes `intents` and uploads to `server`; returns what the server then holds and
/// serves, and what the client holds once it downloaded the rest from `server`.
fn late_upload(
    mut late: Client,
    server: &mut Server,
    time: u64,
    intents: &[Intent],
) -> (String, String, String) {
    late.write(time, |tx| {
        for i in intents {
            run_intent(tx, i);
        }
        Ok(())
    })
    .expect("writes");
    server
        .integrate(late.peer(), late.upload())
        .expect("integrates");
    let d = server
        .download(late.peer(), late.cursor(), None)
        .expect("whole");
    late.integrate(d).expect("the rest integrates");
    let (held, fresh) = served(server);
    (held, fresh, state(late.replica()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1000), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn restarting_anyone_anywhere_changes_nothing((n, steps) in history(4), at in any::<u64>()) {
        let order: Vec<usize> = (0..n).collect();
        let plain = run(n, &steps, &order);
        let every = run_with(n, &steps, &order, |r, _| restart(r));
        prop_assert_eq!(outcome(&every), outcome(&plain));
        let once = run_with(n, &steps, &order, |r, i| if i as u64 == at % steps.len() as u64 { restart(r) });
        prop_assert_eq!(outcome(&once), outcome(&plain));
        let bytes = plain.server.replica().save();
        prop_assert_eq!(Replica::load(&bytes).expect("loads").save(), bytes);
    }

    #[test]
    fn compaction_changes_nothing_anyone_can_tell(
        (n, steps) in history(4),
        at in any::<u64>(),
        base in any::<u64>(),
        time in 0u64..50,
        late in prop::collection::vec(intent(), 1..8),
    ) {
        let order: Vec<usize> = (0..n).collect();
        let mut seen_plain = Vec::new();
        let plain = run_with(n, &steps, &order, |r, _| seen_plain.push(seen(r)));
        let at = at % steps.len() as u64;
        let mut seen_compacted = Vec::new();
        let compacted = run_with(n, &steps, &order, |r, i| {
            if i as u64 == at {
                r.server.compact();
            }
            seen_compacted.push(seen(r));
        });
        match seen_plain.iter().zip(&seen_compacted).position(|(p, c)| p != c) {
            // Nobody saw a difference, so everyone wrote the same: every replica ends alike.
            None => {
                prop_assert_eq!(outcome(&compacted).0, outcome(&plain).0);
                prop_assert_eq!(served(&compacted.server), served(&plain.server));
            }
            // Only a download that stops inside the compacted span shows a state without the
            // superseded writes (spec/semantics.md 9.1). What that client then writes differs,
            // and the compacted run must still converge.
            Some(i) => {
                prop_assert!(
                    matches!(steps[i], Step::Download(_, Some(_))),
                    "step {} ({:?}) showed a compacted history", i, steps[i]
                );
                let (held, fresh) = served(&compacted.server);
                prop_assert_eq!(&fresh, &held);
                for c in &compacted.clients {
                    prop_assert_eq!(&state(c.replica()), &held);
                }
            }
        }
        // A late upload from a new client based on any version meets the compacted history as it
        // meets the whole one.
        let mut whole = Server::load(&plain.server.save()).expect("loads");
        let mut small = Server::load(&plain.server.save()).expect("loads");
        small.compact();
        let base = (base % (whole.version().0 + 1)) as usize;
        prop_assert_eq!(
            late_upload(behind(&plain.server, base), &mut small, time, &late),
            late_upload(behind(&plain.server, base), &mut whole, time, &late)
        );
        // A client that downloaded part of the history before compaction and the rest after it
        // ends where everyone else does.
        let mut resumed = behind(&plain.server, base);
        let mut small = Server::load(&plain.server.save()).expect("loads");
        small.compact();
        let d = small.download(resumed.peer(), resumed.cursor(), None).expect("whole");
        resumed.integrate(d).expect("the rest integrates");
        prop_assert_eq!(state(resumed.replica()), state(plain.server.replica()));
    }

    #[test]
    fn starting_from_the_state_is_downloading_the_history(
        (n, steps) in history(4),
        at in any::<u64>(),
        time in 0u64..50,
        late in prop::collection::vec(intent(), 1..8),
    ) {
        let order: Vec<usize> = (0..n).collect();
        let at = (at % steps.len() as u64) as usize;
        let mut joined = None;
        let end = run_with(n, &steps, &order, |r, i| {
            if i == at {
                joined = Some((r.server.state_snapshot(), behind(&r.server, usize::MAX)));
            }
        });
        let (snapshot, downloaded) = joined.expect("the step was run");
        let booted = Client::bootstrap(downloaded.peer(), &snapshot).expect("a state loads");
        prop_assert_eq!(booted.cursor(), downloaded.cursor());
        prop_assert_eq!(state(booted.replica()), state(downloaded.replica()));
        prop_assert!(booted.replica().save() == downloaded.replica().save(), "the same merge metadata");
        // The two write the same late changeset: the server that forgot everything before the
        // bootstrap integrates it as the whole one does.
        let mut whole = Server::load(&end.server.save()).expect("loads");
        let mut trimmed = Server::load(&end.server.save()).expect("loads");
        trimmed.trim(booted.cursor().server);
        prop_assert_eq!(
            late_upload(booted, &mut trimmed, time, &late),
            late_upload(downloaded, &mut whole, time, &late)
        );
    }
}

type Write = dyn Fn(&mut Transaction<'_, MemoryStore>) -> Result<(), Error>;

/// Commits `f` on `client` at `time` and uploads it to `server`.
fn commit(server: &mut Server, client: &mut Client, time: u64, f: &Write) {
    client.write(time, f).expect("writes");
    let ack = server
        .integrate(client.peer(), client.upload())
        .expect("integrates");
    client.acknowledge(ack);
}

/// The kinds of the instructions the server's history holds, entry by entry.
fn kinds(server: &Server) -> Vec<Vec<objsync::Kind>> {
    server
        .history()
        .iter()
        .map(|(_, e)| e.changeset.ops.iter().map(|op| op.instr.kind()).collect())
        .collect()
}

#[test]
fn compaction_drops_superseded_sets_and_writes_to_deleted_objects_and_keeps_the_rest() {
    use objsync::{Kind, ObjectType, PropType, Property};
    let mut server = Server::new();
    let mut client = Client::new(PeerId(1));
    commit(&mut server, &mut client, 1, &|tx| {
        tx.add_type(ObjectType::new(
            "A",
            Some("id"),
            [
                Property::new("id", PropType::parse("int")?),
                Property::new("v", PropType::parse("int")?),
                Property::new("n", PropType::parse("int")?),
            ],
        )?)?;
        tx.insert("A", 1)?;
        tx.set("A", 1, "v", 1)
    });
    commit(&mut server, &mut client, 2, &|tx| tx.set("A", 1, "v", 2));
    commit(&mut server, &mut client, 3, &|tx| {
        tx.add_int("A", 1, "n", 1)?;
        tx.add_int("A", 1, "n", 2)
    });
    commit(&mut server, &mut client, 4, &|tx| {
        tx.insert("A", 2)?;
        tx.set("A", 2, "v", 5)
    });
    commit(&mut server, &mut client, 5, &|tx| tx.delete("A", 2));
    let before = state(server.replica());
    let mut fresh_before = Client::new(PeerId(2));
    fresh_before
        .integrate(
            server
                .download(PeerId(2), fresh_before.cursor(), None)
                .expect("whole"),
        )
        .expect("integrates");

    // The first set of A 1's v (superseded by the second), the set of A 2's v (its object is
    // deleted later) go, and the two add_ints of one changeset become one.
    assert_eq!(server.compact(), 3);
    assert_eq!(
        kinds(&server),
        vec![
            vec![Kind::AddType, Kind::Insert],
            vec![Kind::Set],
            vec![Kind::AddInt],
            vec![Kind::Insert],
            vec![Kind::Delete],
        ]
    );
    assert_eq!(
        server.version(),
        ServerVersion(5),
        "entries keep their versions"
    );
    assert_eq!(state(server.replica()), before);
    let mut fresh = Client::new(PeerId(3));
    fresh
        .integrate(
            server
                .download(PeerId(3), fresh.cursor(), None)
                .expect("whole"),
        )
        .expect("integrates");
    assert_eq!(state(fresh.replica()), state(fresh_before.replica()));
    assert_eq!(server.compact(), 0, "compaction is idempotent");
}

/// What the previous snapshot version saved still loads (spec/snapshot.md section 8): a server
/// and a client saved by version 3 (`tests/snapshots/`, made by the commit before version 4 with
/// a typed list, an erase, a counter), which save again as the current version; a version
/// from the future is refused.
#[test]
fn snapshots_of_version_3_still_load_and_save_as_the_current_version() {
    let expected = r#"{"Doc":{"1":{"n":42,"text":["h","e","l","l","o","w","o","r","l","d"]}}}"#;
    let server_v3 = include_bytes!("snapshots/v3-server.snap");
    let client_v3 = include_bytes!("snapshots/v3-client.snap");
    assert_eq!(server_v3[3], 3, "a version 3 snapshot");
    let server = Server::load(server_v3).expect("a version 3 server loads");
    let mut client = Client::load(client_v3).expect("a version 3 client loads");
    let json = |store: &MemoryStore| objsync::json::state_json(store).expect("state").to_string();
    assert_eq!(json(server.replica().store()), expected);
    assert_eq!(json(client.replica().store()), expected);
    let again = server.save();
    assert_eq!(again[3], objsync::SNAPSHOT_VERSION);
    let server = Server::load(&again).expect("saved again");
    assert_eq!(json(server.replica().store()), expected);
    // The loaded pair syncs on: a new write reaches the server.
    client
        .write(40, |tx| tx.list_insert("Doc", 1, "text", 5, " "))
        .expect("write");
    let mut server = server;
    server
        .integrate(client.peer(), client.upload())
        .expect("upload");
    let text = server
        .replica()
        .store()
        .list("Doc", &1.into(), "text")
        .expect("list");
    assert_eq!(text.len(), 11);

    let mut future = client_v3.to_vec();
    future[3] = objsync::SNAPSHOT_VERSION + 1;
    let body = future.len() - 4;
    let sum = crc32fast::hash(&future[..body]).to_le_bytes();
    future[body..].copy_from_slice(&sum);
    let refused = Client::load(&future).expect_err("a version from the future");
    assert!(refused.to_string().contains("version"), "{refused}");
}
