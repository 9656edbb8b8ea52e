//! The protocol's state machines end to end over an in-memory "network": sessions, chunked
//! large transactions, resumption after dropped connections, progress, and every error a
//! server answers with.

use objsync_testkit::cases;
use objsync_testkit::scenario::{readable_state, without_empty_types};

use objsync::permissions::{self, Identity, Level, Privileges};
use objsync::session::{
    Access, ClientConfig, ClientError, ClientEvent, ClientSession, ServerEvent, ServerRealm,
    ServerSession,
};
use objsync::sync::{Client, Cursor, ResetCause, ResetMode, ResetReport};
use objsync::wire::{
    Action, Bind, ClientMessage, ErrorCode, FileIdent, Ident, Limits, ServerMessage, Start,
    StatePosition, UploadMessage, UploadProgress, PROTOCOL_VERSION,
};
use objsync::{
    json, ClientVersion, Error, ObjectType, PeerId, PropType, Property, Replica, ServerVersion,
};

fn config(limits: Limits) -> ClientConfig {
    ClientConfig {
        path: "/realm".into(),
        token: "t".into(),
        limits,
        start_from_state: false,
    }
}

fn small_limits() -> Limits {
    Limits {
        max_message: 256,
        ..Limits::default()
    }
}

fn state<S: objsync::Store>(r: &Replica<S>) -> String {
    json::canonical(&json::state_json(r.store()).expect("state"))
}

/// Replays a realm's history into a fresh replica: what the realm holds must be exactly that.
fn replay(realm: &ServerRealm) -> String {
    let mut r = Replica::new(PeerId(0));
    for (_, e) in realm.server().history().iter() {
        r.apply_changeset(&e.changeset).expect("replay");
    }
    state(&r)
}

/// One client and the server session of its current connection (if connected).
struct Peer {
    session: ClientSession,
    conn: Option<ServerSession>,
    events: Vec<ClientEvent>,
    error: Option<ClientError>,
}

/// A realm and clients, with a perfectly reliable network the test can cut.
struct World {
    realm: ServerRealm,
    peers: Vec<Peer>,
    access: Access,
    server_limits: Limits,
    server_events: Vec<ServerEvent>,
    salt: u64,
}

impl World {
    fn new(n: u64, limits: Limits) -> World {
        World {
            realm: ServerRealm::new(77),
            peers: (1..=n)
                .map(|p| Peer {
                    session: ClientSession::new(Client::new(PeerId(p)), config(limits), None),
                    conn: None,
                    events: Vec::new(),
                    error: None,
                })
                .collect(),
            access: Access {
                read: true,
                write: true,
            },
            server_limits: limits,
            server_events: Vec::new(),
            salt: 1000,
        }
    }

    fn connect(&mut self, i: usize) {
        let p = &mut self.peers[i];
        p.session.connect();
        p.conn = Some(ServerSession::new(self.server_limits));
        p.error = None;
    }

    fn drop_connection(&mut self, i: usize) {
        let p = &mut self.peers[i];
        if let Some(mut conn) = p.conn.take() {
            conn.disconnect(&mut self.realm);
        }
        p.session.disconnected();
    }

    /// Moves at most `budget` frames from client `i` to the server; returns how many moved.
    fn upstream(&mut self, i: usize, budget: usize) -> usize {
        let mut moved = 0;
        while moved < budget {
            let p = &mut self.peers[i];
            let Some(conn) = p.conn.as_mut() else { break };
            let Some(frame) = p.session.poll_transmit() else {
                break;
            };
            moved += 1;
            if let Ok(Some(_bind)) = conn.receive(&frame) {
                self.salt += 1;
                conn.accept(self.access, self.salt);
            }
            let events = conn.process(&mut self.realm);
            self.server_events.extend(events);
        }
        moved
    }

    /// Moves at most `budget` frames from the server to client `i`.
    fn downstream(&mut self, i: usize, budget: usize) -> usize {
        let mut moved = 0;
        while moved < budget {
            let p = &mut self.peers[i];
            let Some(conn) = p.conn.as_mut() else { break };
            let Some(frame) = conn.poll_transmit(&self.realm) else {
                break;
            };
            moved += 1;
            match p.session.handle(&frame) {
                Ok(events) => p.events.extend(events),
                Err(e) => {
                    p.error = Some(e);
                    self.drop_connection(i);
                    break;
                }
            }
        }
        moved
    }

    /// Runs the network until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = 0;
            for i in 0..self.peers.len() {
                moved += self.upstream(i, usize::MAX);
                moved += self.downstream(i, usize::MAX);
            }
            if moved == 0 {
                break;
            }
        }
    }

    fn client(&mut self, i: usize) -> &mut Client {
        self.peers[i].session.client_mut()
    }

    fn assert_converged(&self) {
        assert_eq!(state(self.realm.server().replica()), replay(&self.realm));
        self.assert_clients_converged();
    }

    /// Every client holds the server's state (a trimmed history no longer replays).
    fn assert_clients_converged(&self) {
        let server = state(self.realm.server().replica());
        for p in &self.peers {
            assert_eq!(state(p.session.client().replica()), server);
        }
    }
}

fn schema() -> ObjectType {
    ObjectType::new(
        "Doc",
        Some("id"),
        [
            Property::new("id", PropType::parse("int").unwrap()),
            Property::new("body", PropType::parse("string?").unwrap()),
            Property::new("n", PropType::parse("int?").unwrap()),
            Property::new("tags", PropType::parse("list<string>").unwrap()),
        ],
    )
    .unwrap()
}

fn write<T>(
    c: &mut Client,
    t: u64,
    f: impl FnOnce(&mut objsync::Transaction<'_, objsync::MemoryStore>) -> Result<T, Error>,
) {
    c.write(t, |tx| {
        tx.add_type(schema())?;
        f(tx)
    })
    .expect("write");
}

#[test]
fn two_clients_converge_through_the_protocol() {
    let mut w = World::new(2, Limits::default());
    write(w.client(0), 10, |tx| {
        tx.insert("Doc", 1)?;
        tx.set("Doc", 1, "body", "from a")
    });
    write(w.client(1), 20, |tx| {
        tx.insert("Doc", 1)?;
        tx.set("Doc", 1, "body", "from b")?;
        tx.list_insert("Doc", 1, "tags", 0, "x")
    });
    w.connect(0);
    w.connect(1);
    w.settle();
    w.assert_converged();
    assert!(state(w.realm.server().replica()).contains("from b"));
    // Every client was identified and told its changeset was acknowledged.
    for p in &mut w.peers {
        assert!(matches!(p.events[0], ClientEvent::Identified(_)));
        assert!(p
            .events
            .iter()
            .any(|e| *e == ClientEvent::Acknowledged(objsync::ClientVersion(1))));
        assert!(p.session.upload_progress().is_complete());
        assert!(p.session.download_progress().is_complete());
    }
    let registered = w
        .server_events
        .iter()
        .filter(|e| matches!(e, ServerEvent::Registered { .. }))
        .count();
    let integrated = w
        .server_events
        .iter()
        .filter(|e| matches!(e, ServerEvent::Integrated { .. }))
        .count();
    assert_eq!((registered, integrated), (2, 2));
}

#[test]
fn a_large_transaction_travels_in_chunks_and_applies_whole() {
    // 100 objects of 1 MB each: a 100 MB transaction, in 1 MiB frames.
    const OBJECTS: i64 = 100;
    const SIZE: usize = 1 << 20;
    let mut w = World::new(2, Limits::default());
    write(w.client(0), 10, |tx| {
        for i in 0..OBJECTS {
            // Distinct bodies: equal strings would be interned once by the encoding.
            let mut body = format!("{i:08}");
            body.extend(std::iter::repeat(char::from(b'a' + (i % 26) as u8)).take(SIZE));
            tx.insert("Doc", i)?;
            tx.set("Doc", i, "body", body)?;
        }
        Ok(())
    });
    w.connect(0);
    // BIND, IDENT, then about 100 UPLOAD frames: the server holds it back until the last.
    let mut frames = w.upstream(0, 2);
    w.downstream(0, 1);
    loop {
        let moved = w.upstream(0, 1);
        frames += moved;
        if moved == 0 || w.realm.server().version().0 > 0 {
            break;
        }
        assert!(
            state(w.realm.server().replica()) == "{}",
            "part of the transaction was applied before all of it arrived"
        );
    }
    assert!(frames > 100, "only {frames} frames for 100 MB");
    assert_eq!(w.realm.server().version().0, 1);
    // The other client downloads it in chunks too.
    w.connect(1);
    w.settle();
    let st = state(w.peers[1].session.client().replica());
    assert!(st.len() > (OBJECTS as usize) * SIZE);
    assert_eq!(st, state(w.realm.server().replica()));
    let progress = w.peers[1].session.download_progress();
    assert!(progress.is_complete());
    assert!(progress.transferred > (OBJECTS as u64) * SIZE as u64);
}

#[test]
fn a_dropped_connection_mid_upload_resumes_without_duplicates_or_loss() {
    let mut w = World::new(2, small_limits());
    for t in 1..=10u64 {
        write(w.client(0), t, |tx| {
            tx.insert("Doc", t as i64)?;
            tx.set("Doc", t as i64, "body", "x".repeat(100 + t as usize * 40))
        });
    }
    // Cut the connection after every few frames, in the middle of chunked changesets.
    for cut in [3usize, 5, 4, 7, 2, 6] {
        w.connect(0);
        w.upstream(0, cut);
        w.downstream(0, 1);
        w.drop_connection(0);
    }
    // The last acknowledgement may never have reached the client: it re-sends, the server
    // skips what it has.
    w.connect(0);
    w.settle();
    w.connect(1);
    w.settle();
    w.assert_converged();
    let versions: Vec<u64> = w
        .realm
        .server()
        .history()
        .iter()
        .map(|(_, e)| e.changeset.client_version.0)
        .collect();
    assert_eq!(versions, (1..=10).collect::<Vec<_>>());
    assert_eq!(w.peers[0].session.client().acknowledged().0, 10);
}

#[test]
fn a_lost_acknowledgement_makes_the_client_resend_and_the_server_skip() {
    let mut w = World::new(1, Limits::default());
    write(w.client(0), 1, |tx| tx.insert("Doc", 1));
    w.connect(0);
    w.settle();
    write(w.client(0), 2, |tx| tx.insert("Doc", 2));
    // The upload arrives, but the connection drops before the DOWNLOAD acknowledging it.
    w.upstream(0, usize::MAX);
    assert_eq!(w.realm.server().version().0, 2);
    w.drop_connection(0);
    assert_eq!(w.peers[0].session.client().acknowledged().0, 1);
    w.connect(0);
    w.settle();
    assert_eq!(w.realm.server().version().0, 2);
    assert_eq!(w.peers[0].session.client().acknowledged().0, 2);
    w.assert_converged();
}

#[test]
fn a_dropped_connection_mid_download_resumes() {
    let mut w = World::new(3, small_limits());
    for (i, t) in [(0usize, 5u64), (1, 6)] {
        write(w.client(i), t, |tx| {
            for k in 0..20 {
                tx.insert("Doc", k)?;
                tx.set("Doc", k, "body", format!("{i}-{k}-{}", "y".repeat(50)))?;
                tx.list_insert("Doc", k, "tags", 0, format!("t{i}"))?;
            }
            Ok(())
        });
        w.connect(i);
        w.settle();
    }
    for cut in [2usize, 3, 1, 5, 2, 8] {
        w.connect(2);
        w.upstream(2, usize::MAX);
        w.downstream(2, cut);
        w.drop_connection(2);
    }
    w.connect(2);
    w.settle();
    w.connect(0);
    w.settle();
    w.assert_converged();
}

#[test]
fn interleaved_writes_disconnects_and_syncs_converge() {
    // Pseudo-random schedules over three clients: writes on shared objects and one shared
    // list, partial transfers in both directions, and cuts at any frame.
    for seed in 1..=u64::from(cases(40)) {
        random_schedule(seed);
    }
}

fn random_schedule(seed: u64) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut w = World::new(3, small_limits());
    for step in 0..300u64 {
        let i = next(3) as usize;
        match next(7) {
            0 | 1 => {
                let (k, v) = (next(4) as i64, next(1000) as i64);
                let at = next(3) as usize;
                let erase = next(3) == 0;
                write(w.client(i), step, |tx| {
                    tx.insert("Doc", k)?;
                    tx.set("Doc", k, "n", v)?;
                    let len = objsync::Store::list_len(tx.store(), "Doc", &k.into(), "tags")?;
                    if erase && len > 0 {
                        tx.list_erase("Doc", k, "tags", at % len)
                    } else {
                        tx.list_insert("Doc", k, "tags", at.min(len), format!("{i}:{step}"))
                    }
                });
            }
            2 if next(8) == 0 => {
                let k = next(4) as i64;
                write(w.client(i), step, |tx| {
                    if objsync::Store::exists(tx.store(), "Doc", &k.into())? {
                        tx.delete("Doc", k)?;
                    }
                    Ok(())
                });
            }
            2 | 3 => {
                w.upstream(i, next(4) as usize);
            }
            4 => {
                w.downstream(i, next(4) as usize);
            }
            5 if next(4) == 0 => w.drop_connection(i),
            _ => {
                if w.peers[i].conn.is_none() {
                    w.connect(i);
                }
            }
        }
    }
    for i in 0..3 {
        w.drop_connection(i);
        w.connect(i);
    }
    w.settle();
    // A second round: downloads of what others uploaded last.
    w.settle();
    for p in &w.peers {
        assert!(p.error.is_none(), "seed {seed}: {:?}", p.error);
    }
    w.assert_converged();
}

#[test]
fn mark_is_answered_once_the_history_at_that_moment_is_downloaded() {
    let mut w = World::new(2, small_limits());
    write(w.client(0), 1, |tx| {
        tx.insert("Doc", 1)?;
        tx.set("Doc", 1, "body", "z".repeat(2000))
    });
    w.connect(0);
    w.settle();
    w.connect(1);
    w.upstream(1, usize::MAX);
    w.downstream(1, 1); // IDENT
    w.peers[1].session.mark(42);
    w.upstream(1, usize::MAX);
    w.downstream(1, 2);
    assert!(!w.peers[1].events.contains(&ClientEvent::MarkReached(42)));
    w.settle();
    let events = &w.peers[1].events;
    let mark = events
        .iter()
        .position(|e| *e == ClientEvent::MarkReached(42))
        .expect("mark answered");
    assert!(events[..mark]
        .iter()
        .any(|e| matches!(e, ClientEvent::Integrated(_))));
    w.assert_converged();
}

#[test]
fn ping_is_answered_in_any_state() {
    let mut conn = ServerSession::new(Limits::default());
    let realm = ServerRealm::new(1);
    assert_eq!(
        conn.receive(&ClientMessage::Ping { timestamp: 9 }.encode()),
        Ok(None)
    );
    let frame = conn.poll_transmit(&realm).expect("pong");
    assert_eq!(
        ServerMessage::decode(&frame, &Limits::default()),
        Ok(ServerMessage::Pong { timestamp: 9 })
    );
}

#[test]
fn progress_counts_transferred_and_pending_bytes() {
    let mut w = World::new(2, small_limits());
    write(w.client(0), 1, |tx| {
        tx.insert("Doc", 1)?;
        tx.set("Doc", 1, "body", "q".repeat(3000))
    });
    let before = w.peers[0].session.upload_progress();
    assert_eq!(before.transferred, 0);
    assert!(before.transferable > 3000);
    w.connect(0);
    w.settle();
    let after = w.peers[0].session.upload_progress();
    assert_eq!(after.transferred, before.transferable);
    assert!(after.is_complete());

    w.connect(1);
    w.upstream(1, usize::MAX);
    w.downstream(1, 3);
    let mid = w.peers[1].session.download_progress();
    assert!(mid.transferred > 0 && mid.transferred < mid.transferable);
    w.settle();
    let done = w.peers[1].session.download_progress();
    assert_eq!(done.transferable, mid.transferable);
    assert!(done.is_complete());
}

/// Runs one client's BIND + IDENT against a server session, answering the BIND with `answer`,
/// and returns the error the client ends with, if any.
fn bind_outcome(
    w: &mut World,
    i: usize,
    answer: impl FnOnce(&mut ServerSession),
) -> Option<ClientError> {
    w.connect(i);
    let p = &mut w.peers[i];
    let conn = p.conn.as_mut().unwrap();
    while let Some(frame) = p.session.poll_transmit() {
        if let Ok(Some(_)) = conn.receive(&frame) {
            break;
        }
    }
    answer(conn);
    w.settle();
    w.peers[i].error.clone()
}

fn server_code(e: Option<ClientError>) -> (ErrorCode, Action) {
    match e {
        Some(ClientError::Server(m)) => (m.code, m.action),
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// Connects `client` to a new server session on `realm` (the caller accepting its BIND with
/// `access`) and moves frames both ways until nothing moves or the client fails; returns the
/// server session and the client's error, if any.
fn exchange(
    realm: &mut ServerRealm,
    client: &mut ClientSession,
    access: Access,
) -> (ServerSession, Option<ClientError>) {
    let mut conn = ServerSession::new(Limits::default());
    client.connect();
    loop {
        let mut moved = false;
        while let Some(f) = client.poll_transmit() {
            moved = true;
            if let Ok(Some(_)) = conn.receive(&f) {
                conn.accept(access, 1);
            }
            conn.process(realm);
        }
        while let Some(f) = conn.poll_transmit(realm) {
            moved = true;
            if let Err(e) = client.handle(&f) {
                return (conn, Some(e));
            }
        }
        if !moved {
            return (conn, None);
        }
    }
}

#[test]
fn refused_binds_and_permissions() {
    let mut w = World::new(2, Limits::default());
    let e = bind_outcome(&mut w, 0, |c| {
        c.refuse(ErrorCode::BadAuthentication, "bad token")
    });
    assert_eq!(
        server_code(e),
        (ErrorCode::BadAuthentication, Action::Fatal)
    );
    let e = bind_outcome(&mut w, 0, |c| {
        c.accept(
            Access {
                read: false,
                write: false,
            },
            5,
        )
    });
    assert_eq!(server_code(e), (ErrorCode::PermissionDenied, Action::Fatal));

    // Read-only: binds and downloads, but an upload is refused and nothing is applied.
    write(w.client(1), 1, |tx| tx.insert("Doc", 1));
    w.connect(1);
    w.settle();
    write(w.client(0), 2, |tx| tx.insert("Doc", 9));
    let e = bind_outcome(&mut w, 0, |c| {
        c.accept(
            Access {
                read: true,
                write: false,
            },
            6,
        )
    });
    assert_eq!(server_code(e), (ErrorCode::PermissionDenied, Action::Reset));
    assert_eq!(w.realm.server().version().0, 1);
    assert!(!state(w.realm.server().replica()).contains("\"9\""));
}

impl World {
    /// Client `i` ended with an error that asks for a reset: resets it with `mode` over the
    /// protocol and returns the report.
    fn reset(&mut self, i: usize, mode: ResetMode) -> ResetReport {
        let p = &mut self.peers[i];
        let error = p.error.take().expect("the session ended with an error");
        let cause = p.session.reset_cause(&error).expect("a reset cause");
        p.session.begin_reset(cause, mode);
        p.events.clear();
        self.connect(i);
        self.settle();
        let p = &self.peers[i];
        assert_eq!(p.error, None, "the reset client syncs");
        (p.events.iter())
            .find_map(|e| match e {
                ClientEvent::Reset(r) => Some(r.clone()),
                _ => None,
            })
            .expect("a reset")
    }
}

#[test]
fn a_read_only_client_reverts_what_it_wrote_and_converges() {
    let mut w = World::new(2, Limits::default());
    write(w.client(1), 1, |tx| tx.insert("Doc", 1));
    w.connect(1);
    w.settle();
    w.access.write = false;
    write(w.client(0), 2, |tx| tx.insert("Doc", 9));
    write(w.client(0), 3, |tx| tx.insert("Doc", 10));
    w.connect(0);
    w.settle();
    let report = w.reset(0, ResetMode::Recover);
    assert_eq!(report.cause, ResetCause::WriteDenied);
    assert_eq!(report.reverted.len(), 2, "both writes are reverted");
    w.assert_converged();
    assert!(!state(w.realm.server().replica()).contains("\"9\""));
}

#[test]
fn clients_of_a_restored_realm_recover_everything_over_the_protocol() {
    let mut w = World::new(3, Limits::default());
    write(w.client(0), 1, |tx| tx.insert("Doc", 1));
    for i in [0, 1] {
        w.connect(i);
    }
    w.settle();
    let backup = w.realm.save();
    // Acknowledged by the server that will be lost, and one more written offline.
    write(w.client(0), 2, |tx| tx.set("Doc", 1, "body", "acked"));
    write(w.client(1), 3, |tx| {
        tx.list_insert("Doc", 1, "tags", 0, "t")
    });
    w.settle();
    assert_eq!(w.realm.server().version().0, 3);
    write(w.client(1), 4, |tx| tx.insert("Doc", 2));
    for i in [0, 1] {
        w.drop_connection(i);
    }
    w.realm = ServerRealm::load(&backup).expect("a backup loads");
    // The restored realm moves on before the others come back: version numbers exist again.
    write(w.client(2), 5, |tx| tx.insert("Doc", 3));
    w.connect(2);
    w.settle();
    for i in [0, 1] {
        w.connect(i);
        w.settle();
        let error = w.peers[i].error.as_ref();
        assert_eq!(error.map(ClientError::action), Some(Action::Reset));
        w.reset(i, ResetMode::Recover);
    }
    w.settle();
    w.assert_converged();
    let s = state(w.realm.server().replica());
    for expected in ["acked", "\"t\"", "\"2\"", "\"3\""] {
        assert!(s.contains(expected), "{expected} in {s}");
    }
}

#[test]
fn a_client_behind_a_trim_recovers_its_unsynced_writes_over_the_protocol() {
    let mut w = World::new(2, Limits::default());
    write(w.client(0), 1, |tx| tx.insert("Doc", 1));
    w.connect(0);
    w.connect(1);
    w.settle();
    w.drop_connection(1);
    write(w.client(1), 30, |tx| {
        tx.set("Doc", 1, "body", "late but later")
    });
    write(w.client(0), 20, |tx| tx.set("Doc", 1, "body", "early"));
    w.settle();
    let latest = w.realm.server().version();
    w.realm.trim(latest);
    w.connect(1);
    w.settle();
    let report = w.reset(1, ResetMode::Recover);
    assert!(matches!(report.cause, ResetCause::Trimmed { .. }));
    assert_eq!(report.recovered.len(), 1);
    w.settle();
    w.assert_clients_converged();
    assert!(state(w.realm.server().replica()).contains("late but later"));
}

#[test]
fn identity_errors_say_reset_or_retry() {
    let mut w = World::new(2, Limits::default());
    write(w.client(0), 1, |tx| tx.insert("Doc", 1));
    w.connect(0);
    w.settle();
    let identity = w.peers[0].session.identity().expect("identified");
    assert_ne!(identity.file.salt, 0);

    // The same file bound twice at once: retry later.
    let mut twin = ClientSession::new(
        Client::new(PeerId(1)),
        config(Limits::default()),
        Some(identity),
    );
    let (conn, err) = exchange(&mut w.realm, &mut twin, w.access);
    assert_eq!(err.expect("an error").action(), Action::Retry);
    assert!(conn.is_closed());

    // A wrong salt, a different realm, a cursor beyond the history: reset.
    w.drop_connection(0);
    let cases: [(objsync::session::Identity, ErrorCode); 2] = [
        (
            objsync::session::Identity {
                file: objsync::wire::FileIdent {
                    salt: identity.file.salt + 1,
                    ..identity.file
                },
                ..identity
            },
            ErrorCode::BadClientFileIdent,
        ),
        (
            objsync::session::Identity {
                server_file: 999,
                ..identity
            },
            ErrorCode::BadServerFileIdent,
        ),
    ];
    for (bad, code) in cases {
        let mut s =
            ClientSession::new(Client::new(PeerId(1)), config(Limits::default()), Some(bad));
        let err = exchange(&mut w.realm, &mut s, w.access)
            .1
            .expect("an error");
        assert_eq!(err.action(), Action::Reset, "{err}");
        assert!(
            matches!(err, ClientError::Server(ref m) if m.code == code),
            "{err}"
        );
    }

    // A newcomer claiming a peer id that has uploaded, without its salt: reset (pick another).
    let mut s = ClientSession::new(Client::new(PeerId(1)), config(Limits::default()), None);
    let err = exchange(&mut w.realm, &mut s, w.access)
        .1
        .expect("an error");
    assert!(
        matches!(err, ClientError::Server(ref m) if m.code == ErrorCode::BadClientFileIdent),
        "{err}"
    );
}

#[test]
fn a_first_contact_whose_reply_was_lost_can_claim_its_id_again() {
    let mut w = World::new(1, Limits::default());
    write(w.client(0), 1, |tx| tx.insert("Doc", 1));
    w.connect(0);
    w.upstream(0, usize::MAX);
    // The IDENT reply is lost with the connection: the client still has no salt.
    w.drop_connection(0);
    assert_eq!(w.peers[0].session.identity(), None);
    w.connect(0);
    w.settle();
    assert!(w.peers[0].error.is_none(), "{:?}", w.peers[0].error);
    assert!(w.peers[0].session.identity().is_some());
    w.assert_converged();
    let salts: Vec<u64> = w
        .server_events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Registered { salt, .. } => Some(*salt),
            _ => None,
        })
        .collect();
    assert_eq!(salts.len(), 2, "a salt issued per first contact");
    assert_eq!(
        w.peers[0].session.identity().unwrap().file.salt,
        salts[1],
        "the client holds the latest"
    );
}

/// Feeds raw frames (made for the session's peer, numbered from 100) to a fresh, accepted session
/// after a valid BIND and IDENT
/// and returns the error code it closes with.
fn close_code(
    realm: &mut ServerRealm,
    frames: impl FnOnce(PeerId) -> Vec<Vec<u8>>,
) -> Option<ErrorCode> {
    // A new peer each time: a peer id once registered needs its salt.
    static NEXT_PEER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);
    let peer = NEXT_PEER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut conn = ServerSession::new(small_limits());
    let mut client = ClientSession::new(Client::new(PeerId(peer)), config(small_limits()), None);
    client.connect();
    while let Some(f) = client.poll_transmit() {
        if let Ok(Some(_)) = conn.receive(&f) {
            conn.accept(
                Access {
                    read: true,
                    write: true,
                },
                3,
            );
        }
    }
    let mut events = conn.process(realm);
    for f in frames(PeerId(peer)) {
        let _ = conn.receive(&f);
        events.extend(conn.process(realm));
    }
    conn.disconnect(realm);
    events
        .into_iter()
        .find_map(|e| match e {
            ServerEvent::Closed(m) => Some(m.code),
            _ => None,
        })
        .or_else(|| {
            let mut last = None;
            while let Some(f) = conn.poll_transmit(realm) {
                last = Some(f);
            }
            match ServerMessage::decode(&last?, &Limits::default()).ok()? {
                ServerMessage::Error(m) => Some(m.code),
                _ => None,
            }
        })
}

#[test]
fn bad_input_ends_the_session_with_a_typed_error_and_changes_nothing() {
    let mut w = World::new(1, Limits::default());
    write(w.client(0), 1, |tx| {
        tx.insert("Doc", 1)?;
        tx.set("Doc", 1, "body", "kept")
    });
    w.connect(0);
    w.settle();
    let before = state(w.realm.server().replica());
    let realm = &mut w.realm;

    let upload = |chunks| {
        ClientMessage::Upload(UploadMessage {
            progress: UploadProgress::default(),
            chunks,
        })
        .encode()
    };
    let valid = {
        let mut c = Client::new(PeerId(50));
        c.write(5, |tx| {
            tx.add_type(schema())?;
            tx.insert("Doc", 7)
        })
        .unwrap();
        objsync::wire::encode(&c.unacknowledged()[0])
    };
    let chunk = |bytes: &[u8], total: u64, offset: u64| objsync::wire::Chunk {
        head: objsync::ClientVersion(1),
        total,
        offset,
        data: bytes.to_vec(),
    };

    // Garbage, an unknown tag, an oversized frame.
    assert_eq!(
        close_code(realm, |_| vec![vec![0x03, 0xff]]),
        Some(ErrorCode::MalformedMessage)
    );
    assert_eq!(
        close_code(realm, |_| vec![vec![0x7e]]),
        Some(ErrorCode::UnknownMessage)
    );
    assert_eq!(
        close_code(realm, |_| vec![vec![0x05; 1000]]),
        Some(ErrorCode::LimitsExceeded)
    );
    // A second BIND.
    let bind = ClientMessage::Bind(objsync::wire::Bind {
        protocol_version: objsync::wire::PROTOCOL_VERSION,
        path: "/x".into(),
        token: "t".into(),
        max_message: 1 << 20,
    })
    .encode();
    assert_eq!(
        close_code(realm, |_| vec![bind]),
        Some(ErrorCode::MessageOrder)
    );
    // A corrupted changeset.
    let mut corrupt = valid.clone();
    corrupt[0] ^= 0xff;
    assert_eq!(
        close_code(realm, |_| vec![upload(vec![chunk(
            &corrupt,
            corrupt.len() as u64,
            0
        )])]),
        Some(ErrorCode::BadChangeset)
    );
    // Chunks out of sequence.
    let half = valid.len() / 2;
    assert_eq!(
        close_code(realm, |_| vec![upload(vec![
            chunk(&valid[..half], valid.len() as u64, 0),
            chunk(&valid[half + 1..], valid.len() as u64, half as u64 + 1)
        ])]),
        Some(ErrorCode::MalformedMessage)
    );
    // A changeset claiming another origin.
    let mut foreign = Client::new(PeerId(51));
    foreign
        .write(5, |tx| {
            tx.add_type(schema())?;
            tx.insert("Doc", 8)
        })
        .unwrap();
    let foreign = objsync::wire::encode(&foreign.unacknowledged()[0]);
    assert_eq!(
        close_code(realm, |_| vec![upload(vec![chunk(
            &foreign,
            foreign.len() as u64,
            0
        )])]),
        Some(ErrorCode::BadOriginFileIdent)
    );
    // A schema change that conflicts with the realm's (a property of another type).
    let conflicting = |p: PeerId| {
        let mut c = Client::new(p);
        c.write(5, |tx| {
            tx.add_type(ObjectType::new(
                "Doc",
                Some("id"),
                [
                    Property::new("id", PropType::parse("int")?),
                    Property::new("body", PropType::parse("int")?),
                ],
            )?)
        })
        .unwrap();
        let bytes = objsync::wire::encode(&c.unacknowledged()[0]);
        vec![upload(vec![chunk(&bytes, bytes.len() as u64, 0)])]
    };
    assert_eq!(
        close_code(realm, conflicting),
        Some(ErrorCode::InvalidSchemaChange)
    );

    assert_eq!(state(realm.server().replica()), before);
    assert_eq!(realm.server().version().0, 1);
    assert_eq!(before, replay(realm));
}

#[test]
fn a_client_refuses_a_server_that_breaks_the_protocol() {
    let mut s = ClientSession::new(Client::new(PeerId(1)), config(Limits::default()), None);
    s.connect();
    // A DOWNLOAD before IDENT.
    let d = ServerMessage::Download(objsync::wire::DownloadMessage {
        cursor: Default::default(),
        latest: objsync::ServerVersion(0),
        upload_ack: objsync::ClientVersion(5),
        own_signature: 0,
        downloadable: 0,
        chunks: vec![],
    });
    let e = s.handle(&d.encode()).unwrap_err();
    assert!(matches!(e, ClientError::Protocol(_)), "{e}");
    assert_eq!(e.action(), Action::Retry);
    assert!(!s.is_active());
    assert!(matches!(
        s.handle(&[0xee]).unwrap_err(),
        ClientError::Protocol(_)
    ));
}

#[test]
fn a_client_whose_history_went_back_is_told_to_reset() {
    let mut w = World::new(1, Limits::default());
    for t in 1..=3 {
        write(w.client(0), t, |tx| tx.insert("Doc", t as i64));
    }
    w.connect(0);
    w.settle();
    let identity = w.peers[0].session.identity();
    w.drop_connection(0);
    // The device is restored from a backup taken after its first write.
    let mut restored = Client::new(PeerId(1));
    write(&mut restored, 1, |tx| tx.insert("Doc", 1));
    w.peers[0].session = ClientSession::new(restored, config(Limits::default()), identity);
    w.connect(0);
    w.settle();
    let e = server_code(w.peers[0].error.clone());
    assert_eq!(e, (ErrorCode::BadClientVersion, Action::Reset));
    assert_eq!(w.realm.server().version().0, 3);
}

#[test]
fn downloads_fit_the_clients_frame_limit() {
    let client_limits = Limits {
        max_message: 300,
        ..Limits::default()
    };
    let mut w = World::new(2, Limits::default());
    w.peers[1].session = ClientSession::new(Client::new(PeerId(2)), config(client_limits), None);
    write(w.client(0), 1, |tx| {
        tx.insert("Doc", 1)?;
        tx.set("Doc", 1, "body", "w".repeat(5000))
    });
    w.connect(0);
    w.settle();
    w.connect(1);
    w.settle();
    assert!(w.peers[1].error.is_none(), "{:?}", w.peers[1].error);
    w.assert_converged();

    // A client announcing a limit no message fits in is refused.
    let mut conn = ServerSession::new(Limits::default());
    let bind = ClientMessage::Bind(objsync::wire::Bind {
        protocol_version: objsync::wire::PROTOCOL_VERSION,
        path: "/x".into(),
        token: "t".into(),
        max_message: 100,
    });
    let e = conn.receive(&bind.encode()).unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitsExceeded);
}

#[test]
fn uploads_before_the_server_ident_and_bad_versions_are_refused() {
    let mut realm = ServerRealm::new(5);
    // UPLOAD pipelined after BIND and IDENT, before the caller accepted: nothing is buffered.
    let mut s = ClientSession::new(Client::new(PeerId(9)), config(Limits::default()), None);
    s.connect();
    let mut conn = ServerSession::new(Limits::default());
    while let Some(f) = s.poll_transmit() {
        conn.receive(&f).unwrap();
    }
    let upload =
        |progress, chunks| ClientMessage::Upload(UploadMessage { progress, chunks }).encode();
    let e = conn
        .receive(&upload(UploadProgress::default(), vec![]))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::MessageOrder);
    assert!(conn.is_closed());

    // Client version 0, and upload progress going back.
    let zero = objsync::wire::Chunk {
        head: objsync::ClientVersion(0),
        total: 1,
        offset: 0,
        data: vec![0],
    };
    assert_eq!(
        close_code(&mut realm, |_| vec![upload(
            UploadProgress::default(),
            vec![zero]
        )]),
        Some(ErrorCode::BadClientVersion)
    );
    let mut c = Client::new(PeerId(8));
    write(&mut c, 1, |tx| tx.insert("Doc", 1));
    let mut s = ClientSession::new(c, config(Limits::default()), None);
    let access = Access {
        read: true,
        write: true,
    };
    let (mut conn, err) = exchange(&mut realm, &mut s, access);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(realm.server().version().0, 1);
    let back = UploadProgress {
        client: objsync::ClientVersion(1),
        server: objsync::ServerVersion(0),
    };
    let forward = UploadProgress {
        server: objsync::ServerVersion(1),
        ..back
    };
    conn.receive(&upload(forward, vec![])).unwrap();
    assert!(conn.process(&mut realm).is_empty());
    conn.receive(&upload(back, vec![])).unwrap();
    let events = conn.process(&mut realm);
    assert!(
        matches!(&events[..], [ServerEvent::Closed(m)] if m.code == ErrorCode::BadServerVersion),
        "{events:?}"
    );
}

#[test]
fn a_mark_asked_before_the_server_ident_waits_for_it() {
    let mut w = World::new(2, Limits::default());
    write(w.client(0), 1, |tx| tx.insert("Doc", 1));
    w.connect(0);
    w.settle();
    w.connect(1);
    w.peers[1].session.mark(7);
    w.settle();
    assert!(w.peers[1].error.is_none(), "{:?}", w.peers[1].error);
    assert!(w.peers[1].events.contains(&ClientEvent::MarkReached(7)));
    w.assert_converged();
}

/// A realm with a long history (`n` transactions by two writers) and a third, new client that
/// asks for the state.
fn realm_with_history(n: i64, limits: Limits) -> World {
    let mut w = World::new(3, limits);
    for i in 0..2usize {
        for k in 0..n {
            write(w.client(i), 10 + k as u64, |tx| {
                tx.insert("Doc", k % 7)?;
                tx.set("Doc", k % 7, "body", format!("{i}-{k}"))?;
                tx.list_insert("Doc", k % 7, "tags", 0, format!("t{i}{k}"))
            });
        }
        w.connect(i);
        w.settle();
    }
    w.peers[2].session = ClientSession::new(
        Client::new(PeerId(3)),
        ClientConfig {
            start_from_state: true,
            ..config(limits)
        },
        None,
    );
    w
}

#[test]
fn a_new_client_starts_from_the_state_in_pieces_and_then_syncs_as_any_other() {
    let mut w = realm_with_history(40, small_limits());
    let version = w.realm.server().version();
    let history_bytes: usize = (1..=version.0)
        .map(|v| {
            w.realm
                .server()
                .history()
                .encoded(ServerVersion(v))
                .map_or(0, |b| b.len())
        })
        .sum();
    // A restarted server (its realm saved and loaded) serves the state as before.
    let saved = w.realm.save();
    w.realm = ServerRealm::load(&saved).expect("a saved realm loads");
    assert_eq!(w.realm.save(), saved);
    w.connect(2);
    w.settle();
    w.assert_converged();
    let p = &w.peers[2];
    assert!(p.events.contains(&ClientEvent::StartedFromState(version)));
    // It received the state, not the history: nothing was downloaded as entries.
    assert!(!p
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::Integrated(d) if !d.entries.is_empty())));
    let progress = p.session.download_progress();
    assert!(progress.is_complete());
    let state_bytes = w.realm.server().state_snapshot().len() as u64;
    assert_eq!(progress.transferred, state_bytes);
    assert!(
        state_bytes < history_bytes as u64,
        "{state_bytes} vs {history_bytes}"
    );
    // Its writes are merged like anyone's, both ways.
    write(w.client(2), 5, |tx| {
        tx.list_insert("Doc", 1, "tags", 1, "from the new one")
    });
    write(w.client(0), 6, |tx| tx.set("Doc", 1, "body", "after"));
    w.settle();
    w.assert_converged();
    assert!(state(w.realm.server().replica()).contains("from the new one"));
}

#[test]
fn a_state_transfer_cut_anywhere_resumes_where_it_stopped() {
    let mut w = realm_with_history(30, small_limits());
    let total = w.realm.server().state_snapshot().len() as u64;
    for cut in [2usize, 1, 2, 1, 2] {
        w.connect(2);
        w.upstream(2, usize::MAX);
        w.downstream(2, cut);
        w.drop_connection(2);
    }
    let before = w.peers[2].session.download_progress().transferred;
    assert!(before > 0 && before < total, "{before} of {total}");
    w.connect(2);
    w.settle();
    w.assert_converged();
    // Nothing was sent twice: the resumed transfer started at the offset the client held.
    assert_eq!(w.peers[2].session.download_progress().transferred, total);
    assert!(w.peers[2]
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::StartedFromState(_))));
}

#[test]
fn a_state_that_moved_on_during_a_dropped_connection_starts_again() {
    let mut w = realm_with_history(30, small_limits());
    w.connect(2);
    w.upstream(2, usize::MAX);
    w.downstream(2, 3);
    w.drop_connection(2);
    write(w.client(0), 500, |tx| tx.set("Doc", 2, "body", "newer"));
    w.settle();
    let version = w.realm.server().version();
    w.connect(2);
    w.settle();
    w.assert_converged();
    assert!(w.peers[2]
        .events
        .contains(&ClientEvent::StartedFromState(version)));
}

#[test]
fn writing_during_a_state_transfer_falls_back_to_the_history_and_loses_nothing() {
    let mut w = realm_with_history(20, small_limits());
    w.connect(2);
    w.upstream(2, usize::MAX);
    w.downstream(2, 2);
    write(w.client(2), 900, |tx| {
        tx.insert("Doc", 3)?;
        tx.set("Doc", 3, "body", "mine")
    });
    w.settle();
    assert_eq!(w.peers[2].error, Some(ClientError::StateAbandoned));
    assert_eq!(ClientError::StateAbandoned.action(), Action::Retry);
    w.connect(2);
    w.settle();
    w.assert_converged();
    assert!(state(w.realm.server().replica()).contains("mine"));
}

#[test]
fn only_a_new_client_may_ask_for_the_state() {
    let mut w = realm_with_history(3, Limits::default());
    let ident = Ident {
        file: FileIdent {
            peer: PeerId(9),
            salt: 0,
        },
        server_file: 0,
        download: Cursor::default(),
        latest: ServerVersion(0),
        last_version: ClientVersion(4),
        acknowledged: ClientVersion(0),
        acknowledged_signature: 0,
        start: Start::State(StatePosition::default()),
    };
    let mut conn = ServerSession::new(Limits::default());
    let bind = ClientMessage::Bind(Bind {
        protocol_version: PROTOCOL_VERSION,
        path: "/realm".into(),
        token: "t".into(),
        max_message: 1 << 20,
    });
    assert!(conn.receive(&bind.encode()).expect("a BIND").is_some());
    conn.accept(w.access, 1);
    conn.receive(&ClientMessage::Ident(ident).encode())
        .expect("an IDENT");
    conn.process(&mut w.realm);
    let mut last = None;
    while let Some(frame) = conn.poll_transmit(&w.realm) {
        last = Some(frame);
    }
    match ServerMessage::decode(&last.expect("an ERROR"), &Limits::default()) {
        Ok(ServerMessage::Error(e)) => assert_eq!(e.code, ErrorCode::BadStateRequest),
        other => panic!("expected an ERROR, got {other:?}"),
    }
}

#[test]
fn a_client_behind_a_trimmed_history_is_told_to_reset_and_a_new_one_starts_from_the_state() {
    let mut w = realm_with_history(5, Limits::default());
    // Client 1 falls behind, then the server forgets everything it has.
    w.drop_connection(1);
    write(w.client(0), 100, |tx| tx.set("Doc", 1, "body", "later"));
    w.settle();
    let version = w.realm.server().version();
    w.realm.trim(version);
    w.connect(1);
    w.settle();
    let error = w.peers[1].error.clone();
    assert_eq!(
        server_code(error),
        (ErrorCode::ClientFileExpired, Action::Reset)
    );
    // A new device needs no history: it starts from the state, then syncs.
    w.connect(2);
    w.settle();
    assert!(w.peers[2]
        .events
        .contains(&ClientEvent::StartedFromState(version)));
    write(w.client(2), 200, |tx| {
        tx.set("Doc", 2, "body", "new device")
    });
    w.settle();
    assert!(state(w.realm.server().replica()).contains("new device"));
    assert_eq!(
        state(w.peers[0].session.client().replica()),
        state(w.realm.server().replica())
    );
}

/// Client 1 (the admin) declares the permission types, `Doc` and `Secret` (which everyone is
/// denied reading), one object of each, and sets `everyone`'s class-level canRead on `Doc`.
fn admin_writes(w: &mut World, t: u64, read_docs: bool) {
    let secret = ObjectType::new(
        "Secret",
        Some("id"),
        [Property::new("id", PropType::parse("int").unwrap())],
    )
    .unwrap();
    write(w.client(0), t, |tx| {
        permissions::ensure_system_types(tx)?;
        tx.add_type(secret)?;
        tx.insert("Doc", 1)?;
        tx.insert("Secret", 1)?;
        let no_read = |p: Privileges| p & !Privileges::READ;
        permissions::grant(
            tx,
            permissions::EVERYONE,
            &Level::Class("Secret".into()),
            no_read,
        )?;
        let docs = |p: Privileges| match read_docs {
            true => p | Privileges::READ,
            false => p & !Privileges::READ,
        };
        permissions::grant(tx, permissions::EVERYONE, &Level::Class("Doc".into()), docs)
    });
}

#[test]
fn a_client_over_the_protocol_receives_only_what_its_user_may_read() {
    let mut w = World::new(2, Limits::default());
    w.realm.set_identity(PeerId(1), Identity::Admin);
    w.realm
        .set_identity(PeerId(2), Identity::User("eve".into()));
    admin_writes(&mut w, 1, true);
    w.connect(0);
    w.connect(1);
    w.settle();
    let readable = |w: &World| {
        let state = readable_state(w.realm.server(), &Identity::User("eve".into())).unwrap();
        objsync::json::canonical(&state)
    };
    let eve = |w: &World| {
        let store = w.peers[1].session.client().replica().store();
        objsync::json::canonical(&without_empty_types(
            objsync::json::state_json(store).unwrap(),
        ))
    };
    assert_eq!(eve(&w), readable(&w));
    assert!(eve(&w).contains("Doc") && !eve(&w).contains("Secret"));
    assert!(state(w.realm.server().replica()).contains("Secret"));

    // Losing read access: Doc 1 leaves Eve's client by a reset, not the realm.
    admin_writes(&mut w, 2, false);
    w.settle();
    let report = w.reset(1, ResetMode::Discard);
    assert_eq!(report.cause, ResetCause::ReadAccessChanged);
    assert_eq!(
        report.mode,
        ResetMode::Recover,
        "a change of read access always recovers"
    );
    assert_eq!(eve(&w), "{}");
    assert!(state(w.realm.server().replica()).contains("Doc"));

    // Gaining it back: Doc 1 arrives again.
    admin_writes(&mut w, 3, true);
    w.settle();
    w.reset(1, ResetMode::Recover);
    assert_eq!(eve(&w), readable(&w));
    assert!(eve(&w).contains("Doc") && !eve(&w).contains("Secret"));
    // The admin is not filtered.
    assert_eq!(
        state(w.peers[0].session.client().replica()),
        state(w.realm.server().replica())
    );
}

impl World {
    /// Connects client `i` again; one whose session ended asking for a reset (read access
    /// changed) resets over the new connection, recovering its writes.
    fn reconnect(&mut self, i: usize) {
        let p = &mut self.peers[i];
        if let Some(e) = p.error.take() {
            let cause = p.session.reset_cause(&e).unwrap_or_else(|| panic!("{e}"));
            p.session.begin_reset(cause, ResetMode::Recover);
        }
        self.drop_connection(i);
        self.connect(i);
    }
}

#[test]
fn read_filtering_over_the_protocol_converges_under_random_schedules() {
    // Pseudo-random schedules: the admin (client 1) writes and toggles everyone's canRead on
    // `Doc` and two users' membership of `readers` (who may always read it), users write too,
    // with partial transfers and cuts; at the end every user's client equals the server's
    // state as its user may read it.
    let resets: usize = (1..=u64::from(cases(40))).map(random_read_schedule).sum();
    assert!(resets > 0, "read access changed under some schedule");
}

/// Runs one schedule; returns how many resets for a change of read access it made.
fn random_read_schedule(seed: u64) -> usize {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    // Frames fit a reset's IDENT, which names every checkpoint the client keeps.
    let limits = Limits {
        max_message: 8192,
        ..Limits::default()
    };
    let mut w = World::new(3, limits);
    let users = ["u2", "u3"];
    w.realm.set_identity(PeerId(1), Identity::Admin);
    for (i, u) in users.iter().enumerate() {
        w.realm
            .set_identity(PeerId(i as u64 + 2), Identity::User(u.to_string()));
    }
    write(w.client(0), 0, |tx| {
        permissions::ensure_system_types(tx)?;
        let read = |p: Privileges| p | Privileges::READ;
        permissions::grant(tx, "readers", &Level::Class("Doc".into()), read)
    });
    for step in 1..300u64 {
        let i = next(3) as usize;
        match next(8) {
            0 | 1 => {
                let (k, v) = (next(4) as i64, next(1000) as i64);
                write(w.client(i), step, |tx| {
                    tx.insert("Doc", k)?;
                    tx.set("Doc", k, "n", v)?;
                    let len = objsync::Store::list_len(tx.store(), "Doc", &k.into(), "tags")?;
                    tx.list_insert("Doc", k, "tags", len / 2, format!("{i}:{step}"))
                });
            }
            2 => {
                let (read, user) = (next(2) == 0, users[next(2) as usize]);
                write(w.client(0), step, |tx| match next(2) {
                    0 => permissions::grant(
                        tx,
                        permissions::EVERYONE,
                        &Level::Class("Doc".into()),
                        |p| match read {
                            true => p | Privileges::READ,
                            false => p & !Privileges::READ,
                        },
                    ),
                    _ if read => permissions::add_member(tx, "readers", user),
                    _ => permissions::remove_member(tx, "readers", user),
                });
            }
            3 => {
                w.upstream(i, next(4) as usize);
            }
            4 | 5 => {
                w.downstream(i, next(4) as usize);
            }
            6 if next(4) == 0 => w.drop_connection(i),
            _ => {
                if w.peers[i].conn.is_none() {
                    w.reconnect(i);
                }
            }
        }
    }
    for _ in 0..4 {
        for i in 0..3 {
            w.reconnect(i);
        }
        w.settle();
    }
    for (i, p) in w.peers.iter().enumerate() {
        assert!(
            p.error.is_none(),
            "seed {seed}: client {}: {:?}",
            i + 1,
            p.error
        );
        let identity = w.realm.server().identity(PeerId(i as u64 + 1)).unwrap();
        let readable = readable_state(w.realm.server(), identity).unwrap();
        let store = p.session.client().replica().store();
        let own = without_empty_types(objsync::json::state_json(store).unwrap());
        assert_eq!(
            json::canonical(&own),
            json::canonical(&readable),
            "seed {seed}: client {} holds what its user may read",
            i + 1
        );
    }
    (w.peers.iter().flat_map(|p| &p.events))
        .filter(|e| matches!(e, ClientEvent::Reset(r) if r.cause == ResetCause::ReadAccessChanged))
        .count()
}
