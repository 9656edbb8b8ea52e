//! The sync model: duplicate uploads, partial downloads, interleaved uploads, rejection of
//! invalid changesets without effect, causality bookkeeping and the client's clock.

use objsync::json::{canonical, state_json};
use objsync::sync::{Client, Server, SyncError};
use objsync::{
    ClientVersion, Error, Instruction, ObjRef, ObjectType, Op, PeerId, PropType, Property,
    ServerVersion, Value,
};

fn setup(n: u64) -> (Server, Vec<Client>) {
    let mut server = Server::new();
    let mut clients: Vec<Client> = (1..=n).map(|k| Client::new(PeerId(k))).collect();
    clients[0]
        .write(1, |tx| {
            tx.add_type(
                ObjectType::new(
                    "T",
                    Some("id"),
                    [
                        Property::new("id", PropType::parse("int").unwrap()),
                        Property::new("v", PropType::parse("int").unwrap()),
                        Property::new("l", PropType::parse("list<int>").unwrap()),
                    ],
                )
                .unwrap(),
            )?;
            tx.insert("T", 1)?;
            Ok(())
        })
        .unwrap();
    let ack = server.integrate(PeerId(1), clients[0].upload()).unwrap();
    clients[0].acknowledge(ack);
    for c in &mut clients {
        let d = server
            .download(c.peer(), c.cursor(), None)
            .expect("the history is whole");
        c.integrate(d).unwrap();
    }
    (server, clients)
}

fn state(c: &Client) -> String {
    canonical(&state_json(c.replica().store()).unwrap())
}

fn server_state(s: &Server) -> String {
    canonical(&state_json(s.replica().store()).unwrap())
}

fn write(c: &mut Client, t: u64, v: i64) {
    c.write(t, |tx| {
        tx.add_int("T", 1, "v", v)?;
        tx.list_insert("T", 1, "l", 0, v)
    })
    .unwrap();
}

#[test]
fn a_duplicate_upload_after_a_lost_acknowledgement_changes_nothing() {
    let (mut server, mut c) = setup(2);
    write(&mut c[1], 10, 1);
    write(&mut c[1], 11, 2);
    let up = c[1].upload();
    let ack = server.integrate(PeerId(2), up.clone()).unwrap();
    assert_eq!(ack.integrated, ClientVersion(2));
    let before = server_state(&server);
    let len = server.history().len();
    // The acknowledgement was lost: the client uploads the same changesets again.
    let again = server.integrate(PeerId(2), up).unwrap();
    assert_eq!(again, ack);
    assert_eq!(server.history().len(), len);
    assert_eq!(server_state(&server), before);
    c[1].acknowledge(ack);
    assert!(c[1].upload().changesets.is_empty());
}

#[test]
fn partial_downloads_end_where_a_single_download_ends() {
    let (mut server, mut c) = setup(3);
    for (i, k) in [1usize, 2, 1, 2, 1].into_iter().enumerate() {
        write(&mut c[k], 20 + i as u64, i as i64 + 1);
        let ack = server.integrate(c[k].peer(), c[k].upload()).unwrap();
        c[k].acknowledge(ack);
    }
    // Client 3 (index 0 here is client 1) has local changes concurrent with all of that.
    write(&mut c[0], 5, 100);
    let mut whole = Client::new(PeerId(1));
    std::mem::swap(&mut whole, &mut c[0]);
    let mut piecewise = {
        // Rebuild an identical client by replaying what client 1 did: same setup, same write.
        let (_, mut fresh) = setup(1);
        write(&mut fresh[0], 5, 100);
        fresh.remove(0)
    };
    let d = server
        .download(whole.peer(), whole.cursor(), None)
        .expect("the history is whole");
    whole.integrate(d).unwrap();
    loop {
        let d = server
            .download(piecewise.peer(), piecewise.cursor(), Some(1))
            .expect("the history is whole");
        if d.entries.is_empty() {
            piecewise.integrate(d).unwrap();
            break;
        }
        piecewise.integrate(d).unwrap();
    }
    assert_eq!(state(&whole), state(&piecewise));
    assert_eq!(whole.cursor(), piecewise.cursor());
    for cl in [&mut whole, &mut piecewise] {
        let ack = server.integrate(cl.peer(), cl.upload()).unwrap();
        cl.acknowledge(ack);
    }
    for cl in [&mut whole, &mut piecewise] {
        let d = server
            .download(cl.peer(), cl.cursor(), None)
            .expect("the history is whole");
        cl.integrate(d).unwrap();
    }
    assert_eq!(state(&whole), server_state(&server));
    assert_eq!(state(&piecewise), server_state(&server));
}

#[test]
fn interleaved_uploads_from_many_clients_converge() {
    let (mut server, mut c) = setup(4);
    for round in 0..6u64 {
        for (k, cl) in c.iter_mut().enumerate() {
            write(
                cl,
                100 + round * 10 + k as u64,
                (round * 4 + k as u64) as i64,
            );
        }
        // Upload in a rotating order, download only some.
        for k in 0..4 {
            let k = (k + round as usize) % 4;
            let ack = server.integrate(c[k].peer(), c[k].upload()).unwrap();
            c[k].acknowledge(ack);
        }
        let k = round as usize % 4;
        let d = server
            .download(c[k].peer(), c[k].cursor(), Some(2))
            .expect("the history is whole");
        c[k].integrate(d).unwrap();
    }
    for cl in c.iter_mut() {
        let d = server
            .download(cl.peer(), cl.cursor(), None)
            .expect("the history is whole");
        cl.integrate(d).unwrap();
        let ack = server.integrate(cl.peer(), cl.upload()).unwrap();
        cl.acknowledge(ack);
    }
    for cl in c.iter_mut() {
        let d = server
            .download(cl.peer(), cl.cursor(), None)
            .expect("the history is whole");
        cl.integrate(d).unwrap();
        assert!(cl.unacknowledged().is_empty());
        assert_eq!(state(cl), server_state(&server));
    }
    let v: serde_json::Value = serde_json::from_str(&server_state(&server)).unwrap();
    assert_eq!(v["T"]["1"]["v"], (0..24).sum::<i64>());
    assert_eq!(v["T"]["1"]["l"].as_array().unwrap().len(), 24);
}

#[test]
fn an_invalid_upload_is_rejected_whole_and_changes_nothing() {
    let (mut server, mut c) = setup(2);
    c[1].write(30, |tx| tx.set("T", 1, "v", 7)).unwrap();
    let mut up = c[1].upload();
    up.changesets[0].ops.insert(
        0,
        Op::live(Instruction::Set {
            obj: ObjRef::new("T", 1),
            prop: "v".into(),
            value: Value::from("seven"),
            default: false,
        }),
    );
    let before = server_state(&server);
    let len = server.history().len();
    match server.integrate(PeerId(2), up) {
        Err(SyncError::Rejected { error, .. }) => {
            assert!(
                matches!(error.root(), Error::TypeMismatch { .. }),
                "{error}"
            )
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(server_state(&server), before);
    assert_eq!(server.history().len(), len);
}

#[test]
fn an_upload_with_a_future_base_version_is_refused() {
    let (mut server, mut c) = setup(2);
    c[1].write(30, |tx| tx.set("T", 1, "v", 7)).unwrap();
    let mut up = c[1].upload();
    up.changesets[0].base_version = ServerVersion(99);
    assert!(matches!(
        server.integrate(PeerId(2), up),
        Err(SyncError::BadServerVersion { .. })
    ));
    let mut up = c[1].upload();
    up.changesets[0].origin = PeerId(1);
    assert!(matches!(
        server.integrate(PeerId(2), up),
        Err(SyncError::BadOrigin { .. })
    ));
}

#[test]
fn vector_clocks_of_history_entries_tell_concurrency() {
    let (mut server, mut c) = setup(3);
    write(&mut c[1], 10, 1); // concurrent with client 3's write below
    let ack = server.integrate(PeerId(2), c[1].upload()).unwrap();
    c[1].acknowledge(ack);
    write(&mut c[2], 11, 2);
    let ack = server.integrate(PeerId(3), c[2].upload()).unwrap();
    c[2].acknowledge(ack);
    let d = server
        .download(PeerId(3), c[2].cursor(), None)
        .expect("the history is whole");
    c[2].integrate(d).unwrap();
    write(&mut c[2], 12, 3); // causally after client 2's write
    let ack = server.integrate(PeerId(3), c[2].upload()).unwrap();
    c[2].acknowledge(ack);
    let clock = |v| server.entry_clock(ServerVersion(v)).unwrap();
    assert!(clock(1) < clock(2));
    assert!(clock(2).concurrent(&clock(3)));
    assert!(clock(2) < clock(4));
    assert!(clock(3) < clock(4));
}

#[test]
fn the_client_clock_stamps_after_everything_it_saw() {
    let (mut server, mut c) = setup(2);
    c[1].write(5_000, |tx| tx.set("T", 1, "v", 1)).unwrap();
    let ack = server.integrate(PeerId(2), c[1].upload()).unwrap();
    c[1].acknowledge(ack);
    let d = server
        .download(PeerId(1), c[0].cursor(), None)
        .expect("the history is whole");
    c[0].integrate(d).unwrap();
    // Client 1's physical clock is behind: its next write is still stamped later, so it wins.
    let t = c[0].stamp(1_000);
    assert!(t > 5_000);
    c[0].write(t, |tx| tx.set("T", 1, "v", 2)).unwrap();
    let ack = server.integrate(PeerId(1), c[0].upload()).unwrap();
    c[0].acknowledge(ack);
    assert!(server_state(&server).contains(r#""v":2"#));
}

#[test]
fn integrating_the_same_download_twice_changes_nothing() {
    let (mut server, mut c) = setup(2);
    write(&mut c[1], 10, 5);
    let ack = server.integrate(PeerId(2), c[1].upload()).unwrap();
    c[1].acknowledge(ack);
    let d = server
        .download(PeerId(1), c[0].cursor(), None)
        .expect("the history is whole");
    c[0].integrate(d.clone()).unwrap();
    let once = state(&c[0]);
    c[0].integrate(d).unwrap();
    assert_eq!(state(&c[0]), once);
    assert_eq!(once, server_state(&server));
}

#[test]
fn an_upload_that_skips_a_client_version_is_refused() {
    let (mut server, mut c) = setup(2);
    write(&mut c[1], 10, 1);
    write(&mut c[1], 11, 2);
    let mut up = c[1].upload();
    up.changesets.remove(0);
    assert!(matches!(
        server.integrate(PeerId(2), up),
        Err(SyncError::BadClientVersion { .. })
    ));
    let ack = server.integrate(PeerId(2), c[1].upload()).unwrap();
    assert_eq!(ack.integrated, ClientVersion(2));
}

/// A download integrated by reference (what a session does, keeping the download for its
/// event) gives what integrating it by value gives, whether or not the client's unacknowledged
/// changesets meet it: the same state, the same transformed changesets to upload.
#[test]
fn integrating_by_reference_is_integrating_by_value() {
    let set = |c: &mut Client, t: u64, v: i64| {
        c.write(t, |tx| tx.set("T", 1, "v", v)).unwrap();
    };
    let insert = |c: &mut Client, t: u64, k: i64| {
        c.write(t, |tx| tx.insert("T", k)).unwrap();
    };
    // Concurrent sets of one field meet (the later wins, on both sides); an insert of another
    // object meets nothing.
    for meets in [true, false] {
        let (mut server, mut c) = setup(2);
        set(&mut c[1], 20, 7);
        let ack = server.integrate(PeerId(2), c[1].upload()).unwrap();
        c[1].acknowledge(ack);
        match meets {
            true => set(&mut c[0], 10, 3),
            false => insert(&mut c[0], 10, 2),
        }
        let d = server
            .download(PeerId(1), c[0].cursor(), None)
            .expect("the history is whole");
        let mut by_value = Client::load(&c[0].save()).expect("reloads");
        by_value.integrate(d.clone()).unwrap();
        c[0].integrate_ref(&d).unwrap();
        assert_eq!(state(&c[0]), state(&by_value), "meets: {meets}");
        assert_eq!(c[0].upload(), by_value.upload(), "meets: {meets}");
        // And both end where the server does once the local changeset is there too.
        let ack = server.integrate(PeerId(1), c[0].upload()).unwrap();
        c[0].acknowledge(ack);
        assert_eq!(state(&c[0]), server_state(&server), "meets: {meets}");
        assert_ne!(
            state(&c[0]),
            state(&setup(2).1[0]),
            "the download changed something"
        );
    }
}

/// Two devices that define one type concurrently: by reference as by value, agreeing
/// definitions merge to the same state and upload, and conflicting ones fail the same way.
#[test]
fn schema_definitions_integrate_by_reference_as_by_value() {
    let define = |c: &mut Client, t: u64, key: &str| {
        c.write(t, |tx| {
            let props = [
                Property::new("id", PropType::parse(key).unwrap()),
                Property::new("n", PropType::parse("int").unwrap()),
            ];
            tx.add_type(ObjectType::new("U", Some("id"), props)?)
        })
        .unwrap();
    };
    for (mine, agree) in [("int", true), ("string", false)] {
        let (mut server, mut c) = setup(2);
        define(&mut c[1], 20, "int");
        c[1].write(21, |tx| tx.insert("U", 5)).unwrap();
        let ack = server.integrate(PeerId(2), c[1].upload()).unwrap();
        c[1].acknowledge(ack);
        define(&mut c[0], 10, mine);
        let d = server
            .download(PeerId(1), c[0].cursor(), None)
            .expect("the history is whole");
        let mut by_value = Client::load(&c[0].save()).expect("reloads");
        let value = by_value.integrate(d.clone());
        let reference = c[0].integrate_ref(&d);
        match agree {
            true => {
                assert!(
                    value.is_ok() && reference.is_ok(),
                    "{value:?} {reference:?}"
                );
                assert_eq!(state(&c[0]), state(&by_value));
                assert!(state(&c[0]).contains("\"U\""));
                assert_eq!(c[0].upload(), by_value.upload());
            }
            false => {
                let (value, reference) = (value.unwrap_err(), reference.unwrap_err());
                assert_eq!(reference.to_string(), value.to_string());
                assert!(
                    matches!(reference, SyncError::Integration { .. }),
                    "{reference}"
                );
            }
        }
    }
}
