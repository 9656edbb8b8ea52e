//! Client reset, proven on random histories (`objsync_testkit::history`) and on the failure
//! modes Realm's own recovery had:
//!
//! - **Trimming loses nothing.** Trimming the server's history anywhere, any number of times,
//!   with clients that then recover (`ResetMode::Recover`), ends exactly as the run without a
//!   trim: the residue a trim keeps makes every replayed write win or lose as it would have.
//! - **Restoring a backup loses nothing.** A server replaced by its latest copy, with clients
//!   that then recover, converges, and every instruction any client wrote
//!   is in the server's history at the end (recognised by its signature, which neither
//!   transformation nor a reset's renumbering changes) or still deferred on its client. (The end
//!   state
//!   is not that of a run without the fault: a restore also changes what the other clients see
//!   meanwhile, and what they write next.)
//! - **Discard drops exactly what it reports**, and the client then holds the server's state.
//! - Realm's recovery bugs, reproduced: duplicated list inserts (realm-core #7155), resurrected
//!   deleted objects (#7112), reset loops (#7149).
//!
//! `OBJSYNC_CASES` sets the number of random histories (default 1,000 each).

use objsync::json::{canonical, state_json};
use objsync::sync::{Client, ResetCause, ResetError, ResetMode, Server, SyncError};
use objsync::{
    Changeset, ClientVersion, ObjectType, PeerId, PropType, Property, ServerVersion, Store, Value,
};
use objsync_testkit::cases;
use objsync_testkit::history::{history, state, Run, Step};
use proptest::prelude::*;

/// Something that happens to the server between two steps.
#[derive(Debug, Clone)]
enum Fault {
    /// The server forgets its history up to its latest version.
    Trim,
    /// A copy of the server is taken.
    Backup,
    /// The server is replaced by the latest copy (the one the run starts with if none was
    /// taken since).
    Restore,
}

fn faults(steps: usize) -> impl Strategy<Value = Vec<(usize, Fault)>> {
    let fault = prop_oneof![Just(Fault::Trim), Just(Fault::Backup), Just(Fault::Restore)];
    prop::collection::vec((0..steps.max(1), fault), 1..5)
}

fn restores(steps: usize) -> impl Strategy<Value = Vec<(usize, Fault)>> {
    let fault = prop_oneof![Just(Fault::Backup), Just(Fault::Restore)];
    prop::collection::vec((0..steps.max(1), fault), 1..5)
}

/// Runs `steps` with `faults` after the steps they name, resetting clients with `mode` when
/// the server says they must be.
fn faulty(n: usize, steps: &[Step], faults: &[(usize, Fault)], mode: ResetMode) -> Run {
    faulty_writes(n, steps, faults, mode).0
}

/// Each instruction of `cs`, as (origin, the signature of a changeset holding only it).
fn instructions(cs: &Changeset) -> impl Iterator<Item = (PeerId, u64)> + '_ {
    (cs.ops.iter()).map(|op| {
        let alone = Changeset {
            ops: vec![op.clone()],
            ..cs.clone()
        };
        (cs.origin, alone.signature())
    })
}

/// [`faulty`], with every instruction each client wrote ([`instructions`]).
fn faulty_writes(
    n: usize,
    steps: &[Step],
    faults: &[(usize, Fault)],
    mode: ResetMode,
) -> (Run, Vec<(PeerId, u64)>) {
    let order: Vec<usize> = (0..n).collect();
    let mut r = Run::new(n);
    r.actions = 0;
    r.reset_mode = Some(mode);
    let mut written = Vec::new();
    let mut backup = r.server.save();
    for (i, s) in steps.iter().enumerate() {
        let before: Vec<_> = r.clients.iter().map(|c| c.last_version()).collect();
        r.step(s, &order);
        if let Step::Tx(c, _, _) = s {
            let client = &r.clients[*c];
            if client.last_version() > before[*c] {
                let cs = client.unacknowledged().last().expect("a new changeset");
                written.extend(instructions(cs));
            }
        }
        for (_, fault) in faults.iter().filter(|(at, _)| *at == i) {
            match fault {
                Fault::Trim => {
                    let latest = r.server.version();
                    r.server.trim(latest);
                }
                Fault::Backup => backup = r.server.save(),
                Fault::Restore => r.server = Server::load(&backup).expect("a backup loads"),
            }
        }
    }
    r.settle(&order);
    (r, written)
}

fn converged(r: &Run) -> Result<String, TestCaseError> {
    let server = state(r.server.replica());
    for (i, c) in r.clients.iter().enumerate() {
        prop_assert_eq!(state(c.replica()), server.clone(), "client {} diverged", i);
    }
    Ok(server)
}

/// The run of `steps` without faults in which every client that `faulty` reset downloads
/// everything where it was reset instead: a reset tells the client what a download would,
/// and the intents of its later writes resolve against that.
fn plain(n: usize, steps: &[Step], faulty: &Run) -> Run {
    let order: Vec<usize> = (0..n).collect();
    let mut r = Run::new(n);
    r.actions = 0;
    r.catch_up = faulty.resets.iter().map(|(a, c, _)| (*a, *c)).collect();
    for s in steps {
        r.step(s, &order);
    }
    r.settle(&order);
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1000), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn trimming_then_recovering_ends_as_without_the_trim(
        (n, steps) in history(4),
        at in prop::collection::vec(any::<prop::sample::Index>(), 1..4),
    ) {
        let trims: Vec<(usize, Fault)> = at.iter().map(|i| (i.index(steps.len()), Fault::Trim)).collect();
        let trimmed = faulty(n, &steps, &trims, ResetMode::Recover);
        prop_assert_eq!(converged(&trimmed)?, converged(&plain(n, &steps, &trimmed))?);
    }

    #[test]
    fn restoring_a_backup_then_recovering_loses_no_write(
        (n, steps) in history(4),
        f in restores(24),
    ) {
        let (restored, written) = faulty_writes(n, &steps, &f, ResetMode::Recover);
        converged(&restored)?;
        let history = restored.server.history().iter().map(|(_, e)| &e.changeset);
        let deferred = restored.clients.iter().flat_map(|c| c.deferred());
        let mut kept: Vec<(PeerId, u64)> = history.chain(deferred).flat_map(instructions).collect();
        for w in &written {
            let Some(i) = kept.iter().position(|k| k == w) else {
                return Err(TestCaseError::fail(format!(
                    "an instruction of peer {} is lost; resets {:?}", w.0, restored.resets
                )));
            };
            kept.swap_remove(i);
        }
    }

    #[test]
    fn any_fault_and_any_mode_converges(
        (n, steps) in history(4),
        f in faults(24),
        mode in prop_oneof![Just(ResetMode::Recover), Just(ResetMode::Discard), Just(ResetMode::Manual)],
    ) {
        converged(&faulty(n, &steps, &f, mode))?;
    }

    #[test]
    fn discard_drops_exactly_what_it_reports(
        (n, steps) in history(4),
        who in any::<prop::sample::Index>(),
    ) {
        let order: Vec<usize> = (0..n).collect();
        let mut r = Run::new(n);
        for s in &steps {
            r.step(s, &order);
        }
        let c = who.index(n);
        let integrated = r.server.last_integrated(r.clients[c].peer());
        let unsynced: Vec<_> = (r.clients[c].unacknowledged().iter())
            .filter(|cs| cs.client_version > integrated)
            .cloned()
            .collect();
        let reset = r.reset(c, ResetCause::Requested, ResetMode::Discard);
        prop_assert_eq!(&reset.report.reverted, &unsynced);
        prop_assert!(reset.report.recovered.is_empty());
        prop_assert_eq!(state(r.clients[c].replica()), state(r.server.replica()));
        r.settle(&order);
        converged(&r)?;
    }
}

fn person() -> ObjectType {
    let p = |n: &str, t: &str| Property::new(n, PropType::parse(t).unwrap());
    ObjectType::new(
        "Person",
        Some("id"),
        [
            p("id", "int"),
            p("name", "string?"),
            p("tags", "list<string>"),
        ],
    )
    .unwrap()
}

fn sync(server: &mut Server, client: &mut Client) -> Result<(), SyncError> {
    let ack = server.integrate(client.peer(), client.upload())?;
    client.acknowledge(ack);
    let d = server.download(client.peer(), client.cursor(), None)?;
    client.integrate(d)
}

fn reset(server: &Server, client: &mut Client, cause: ResetCause) -> objsync::sync::Reset {
    let recovery = server.recovery(client.peer(), &client.recovery_request(cause));
    client
        .reset(&recovery, cause, ResetMode::Recover)
        .expect("resets")
}

fn json(client: &Client) -> String {
    canonical(&state_json(client.replica().store()).unwrap())
}

/// Two clients that share a person 1 with tags ["a", "b"].
fn two_clients() -> (Server, Client, Client) {
    let mut server = Server::new();
    let mut alice = Client::new(PeerId(1));
    let mut bob = Client::new(PeerId(2));
    alice
        .write(1, |tx| {
            tx.add_type(person())?;
            tx.insert("Person", 1)?;
            tx.list_insert("Person", 1, "tags", 0, "a")?;
            tx.list_insert("Person", 1, "tags", 1, "b")
        })
        .unwrap();
    sync(&mut server, &mut alice).unwrap();
    sync(&mut server, &mut bob).unwrap();
    (server, alice, bob)
}

/// realm-core #7155: recovery duplicated list insertions. Here a list insert the server lost
/// is replayed once, and one the server kept is not replayed at all.
#[test]
fn recovery_never_duplicates_list_inserts() {
    let (mut server, mut alice, mut bob) = two_clients();
    let backup = server.save();
    alice
        .write(10, |tx| tx.list_insert("Person", 1, "tags", 1, "lost"))
        .unwrap();
    sync(&mut server, &mut alice).unwrap();
    alice
        .write(11, |tx| tx.list_insert("Person", 1, "tags", 0, "unsynced"))
        .unwrap();
    // The server is restored: it lost "lost". Alice's upload finds out and she recovers.
    server = Server::load(&backup).unwrap();
    let error = sync(&mut server, &mut alice).unwrap_err();
    let cause = error.reset_cause().expect("a reset cause");
    let report = reset(&server, &mut alice, cause);
    assert_eq!(report.report.recovered.len(), 2);
    sync(&mut server, &mut alice).unwrap();
    sync(&mut server, &mut bob).unwrap();
    let tags = server
        .replica()
        .store()
        .list("Person", &1.into(), "tags")
        .unwrap();
    assert_eq!(
        tags,
        ["unsynced", "a", "lost", "b"].map(Value::from).to_vec()
    );
    assert_eq!(json(&alice), json(&bob));
    // A reset the server had nothing to lose for replays nothing twice either.
    let report = reset(&server, &mut alice, ResetCause::Requested);
    assert!(report.report.recovered.is_empty());
    sync(&mut server, &mut alice).unwrap();
    assert_eq!(
        server
            .replica()
            .store()
            .list("Person", &1.into(), "tags")
            .unwrap(),
        tags
    );
}

/// realm-core #7112: recovery brought deleted objects back. Here a person deleted on the
/// server while Alice edited it offline stays deleted after her recovery (R4), and her other
/// writes come back.
#[test]
fn recovery_never_resurrects_deleted_objects() {
    let (mut server, mut alice, mut bob) = two_clients();
    alice
        .write(20, |tx| {
            tx.set("Person", 1, "name", "Ada")?;
            tx.list_insert("Person", 1, "tags", 0, "x")?;
            tx.insert("Person", 2)?;
            tx.set("Person", 2, "name", "Bo")
        })
        .unwrap();
    bob.write(10, |tx| tx.delete("Person", 1)).unwrap();
    sync(&mut server, &mut bob).unwrap();
    let latest = server.version();
    server.trim(latest);
    let error = sync(&mut server, &mut alice).unwrap_err();
    assert!(matches!(error, SyncError::ResetRequired { .. }), "{error}");
    reset(&server, &mut alice, error.reset_cause().unwrap());
    sync(&mut server, &mut alice).unwrap();
    sync(&mut server, &mut bob).unwrap();
    assert_eq!(
        json(&alice),
        r#"{"Person":{"2":{"name":"Bo","tags":[]}}}"#,
        "person 1 stays deleted, person 2 is back"
    );
    assert_eq!(json(&alice), json(&bob));
}

/// realm-core #7149: recovery looped. Here a second reset for the same cause without a sync
/// in between is refused, the client is left as it was, and after a sync it may reset again.
#[test]
fn a_reset_for_the_same_cause_twice_in_a_row_stops_instead_of_looping() {
    let (mut server, mut alice, _) = two_clients();
    alice
        .write(5, |tx| tx.set("Person", 1, "name", "A"))
        .unwrap();
    let cause = ResetCause::Trimmed {
        horizon: server.version(),
        needed: ServerVersion(0),
    };
    reset(&server, &mut alice, cause);
    let before = alice.save();
    let recovery = server.recovery(alice.peer(), &alice.recovery_request(cause));
    let again = alice.reset(&recovery, cause, ResetMode::Recover);
    assert!(matches!(again, Err(ResetError::Loop(c)) if c == cause));
    assert_eq!(alice.save(), before, "a refused reset changes nothing");
    // An explicit reset is never a loop; and a sync ends the streak.
    let recovery = server.recovery(alice.peer(), &alice.recovery_request(cause));
    alice
        .reset(&recovery, ResetCause::Requested, ResetMode::Recover)
        .unwrap();
    sync(&mut server, &mut alice).unwrap();
    reset(&server, &mut alice, cause);
}

/// A client whose sync failed goes on accepting writes, and its reset replays them.
#[test]
fn writes_made_while_a_client_must_reset_are_replayed() {
    let (mut server, mut alice, mut bob) = two_clients();
    alice
        .write(5, |tx| tx.set("Person", 1, "name", "A"))
        .unwrap();
    bob.write(6, |tx| tx.insert("Person", 3)).unwrap();
    sync(&mut server, &mut bob).unwrap();
    let latest = server.version();
    server.trim(latest);
    let error = sync(&mut server, &mut alice).unwrap_err();
    alice.write(7, |tx| tx.insert("Person", 4)).unwrap();
    let report = reset(&server, &mut alice, error.reset_cause().unwrap());
    assert_eq!(
        report.report.recovered,
        [ClientVersion(2), ClientVersion(3)]
    );
    sync(&mut server, &mut alice).unwrap();
    sync(&mut server, &mut bob).unwrap();
    let people = server.replica().store().objects("Person").unwrap();
    assert_eq!(people, [1, 3, 4].map(objsync::ObjKey::from).to_vec());
    assert_eq!(json(&alice), json(&bob));
}

/// A changeset the server refuses for good is reverted on its client by a reset, which reports
/// it; the client's other writes are replayed and everyone converges.
#[test]
fn a_refused_changeset_is_reverted_and_reported() {
    let (mut server, mut alice, mut bob) = two_clients();
    let clash = |ty: &str| {
        ObjectType::new(
            "Note",
            Some("id"),
            [Property::new("id", PropType::parse(ty).unwrap())],
        )
        .unwrap()
    };
    bob.write(3, |tx| tx.add_type(clash("int"))).unwrap();
    sync(&mut server, &mut bob).unwrap();
    alice.write(4, |tx| tx.add_type(clash("string"))).unwrap();
    alice.write(5, |tx| tx.insert("Person", 9)).unwrap();
    let error = server.integrate(alice.peer(), alice.upload()).unwrap_err();
    let cause = error.reset_cause().expect("a refusal resets");
    assert_eq!(
        cause,
        ResetCause::Refused {
            client_version: ClientVersion(2)
        }
    );
    let report = reset(&server, &mut alice, cause);
    assert_eq!(report.report.reverted.len(), 1);
    assert_eq!(report.report.reverted[0].client_version, ClientVersion(2));
    sync(&mut server, &mut alice).unwrap();
    sync(&mut server, &mut bob).unwrap();
    assert_eq!(json(&alice), json(&bob));
    assert!(server
        .replica()
        .store()
        .objects("Person")
        .unwrap()
        .contains(&9.into()));
}

/// A client copied after it synced (a restored backup of a device, a cloned container) writes
/// under the same identity as the original: the server finds out from the signatures, and the
/// copy resets as a new identity with its writes, whose ids are renamed so that they cannot
/// collide with the original's. Both sides' writes survive and everyone converges.
#[test]
fn a_copied_client_resets_as_a_new_identity_and_loses_nothing() {
    let (mut server, mut alice, mut bob) = two_clients();
    let mut copy = Client::load(&alice.save()).expect("a copy");
    let tasks = || {
        let p = |n: &str, t: &str| Property::new(n, PropType::parse(t).unwrap());
        ObjectType::new("Task", None, [p("title", "string")]).unwrap()
    };
    for (client, who, t) in [(&mut alice, "alice", 10), (&mut copy, "copy", 11)] {
        client
            .write(t, |tx| {
                tx.add_type(tasks())?;
                tx.list_insert("Person", 1, "tags", 0, who)?;
                let task = tx.create("Task")?;
                tx.set("Task", task, "title", who)
            })
            .unwrap();
    }
    sync(&mut server, &mut alice).unwrap();
    let error = sync(&mut server, &mut copy).unwrap_err();
    let cause = error.reset_cause().expect("a reset cause");
    assert!(
        matches!(cause, ResetCause::ChangesetMismatch { .. }),
        "{cause:?}"
    );
    let recovery = server.recovery(copy.peer(), &copy.recovery_request(cause));
    let reset = copy
        .reset_as(PeerId(42), &recovery, cause, ResetMode::Recover)
        .expect("resets");
    assert_eq!(reset.report.peer, PeerId(42));
    assert_eq!(reset.report.recovered.len(), 1);
    for c in [&mut copy, &mut alice, &mut bob] {
        sync(&mut server, c).unwrap();
    }
    sync(&mut server, &mut copy).unwrap();
    assert_eq!(json(&alice), json(&copy));
    assert_eq!(json(&alice), json(&bob));
    let tags = (server.replica().store())
        .list("Person", &1.into(), "tags")
        .unwrap();
    for who in ["alice", "copy"] {
        assert!(tags.contains(&Value::from(who)), "{who} in {tags:?}");
    }
    assert_eq!(server.replica().store().objects("Task").unwrap().len(), 2);
}
