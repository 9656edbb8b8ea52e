//! Permissions, proven by a property test (spec/permissions.md).
//!
//! Random histories: client 1 uses the admin token, the others are users `u2`, `u3`, ...;
//! random writes of every instruction kind from every client (testkit's history intents over
//! the types `A` and `B`, and writes to `D`, a type with an ACL) are interleaved with random
//! permission changes (privileges of `everyone` and of a role `editors` at realm, class and
//! object level, and members joining and leaving `editors`), made by the admin or by users,
//! who may lack the right to make them, under random upload, download and sync schedules.
//!
//! After a full sync:
//! - every client has nothing unacknowledged, its uploads were all acknowledged and its whole
//!   state equals the server's state as its user may read it: the corrections brought every
//!   refused write back, whatever was merged with it, objects its user may no longer read
//!   left it, and objects it may now read arrived;
//! - replaying the server's history from scratch, every instruction a user wrote passes the
//!   permission check against the state before it (nothing illegal was integrated), and the
//!   replay ends in the server's state.
//!
//! Grants and revocations include canRead, so clients lose and regain read access at every
//! level; each client must equal the server's state restricted to what its user may read
//! (all of it for the admin), whatever it held before.
//!
//! `OBJSYNC_CASES` sets the number of random histories (default 2,000, about a second in release; 100,000 take about 30 s).

use objsync::json::{canonical, state_json};
use objsync::permissions::{self, Checker, Identity, Level, Privileges};
use objsync::{Fate, Instruction, ObjRef, ObjectType, PeerId, PropType, Property, Replica, Store};
use objsync_testkit::cases;
use objsync_testkit::history::{run_intent, step, Intent, Run, Step};
use objsync_testkit::scenario::{readable_state, without_empty_types};
use proptest::prelude::*;

/// A permission change, or a write to the ACL type `D`.
#[derive(Debug, Clone)]
enum Act {
    /// A step of testkit's random histories.
    Plain(Step),
    /// Client `by` grants (`on`) or revokes flags (`flags`: bits for canRead, canCreate,
    /// canUpdate, canDelete, canSetPermissions) to a role at a level.
    Grant {
        by: usize,
        role: u8,
        level: u8,
        flags: u8,
        on: bool,
    },
    /// Client `by` adds or removes a user to or from `editors`.
    Member { by: usize, user: usize, add: bool },
    /// Client `by` writes to `D[key]`: creates it (filling its ACL), sets `v`, or deletes it.
    Doc { by: usize, key: u8, what: u8 },
}

const ROLES: [&str; 2] = [permissions::EVERYONE, "editors"];
const FLAGS: [Privileges; 5] = [
    Privileges::READ,
    Privileges::CREATE,
    Privileges::UPDATE,
    Privileges::DELETE,
    Privileges::SET_PERMISSIONS,
];

fn act(n: usize) -> impl Strategy<Value = Act> {
    prop_oneof![
        6 => step(n).prop_map(Act::Plain),
        3 => (0..n, 0u8..2, 0u8..6, 1u8..32, any::<bool>())
            .prop_map(|(by, role, level, flags, on)| Act::Grant { by, role, level, flags, on }),
        1 => (0..n, 1..n, any::<bool>()).prop_map(|(by, user, add)| Act::Member { by, user, add }),
        2 => (0..n, 0u8..3, 0u8..3).prop_map(|(by, key, what)| Act::Doc { by, key, what }),
    ]
}

fn history() -> impl Strategy<Value = (usize, Vec<Act>)> {
    (2usize..=4).prop_flat_map(|n| (Just(n), prop::collection::vec(act(n), 1..28)))
}

fn user(c: usize) -> String {
    format!("u{}", c + 1)
}

fn level(l: u8) -> Level {
    match l {
        0 => Level::Realm,
        1 => Level::Class("A".into()),
        2 => Level::Class("B".into()),
        3 => Level::Class("D".into()),
        k => Level::Object(ObjRef::new("D", i64::from(k - 4))),
    }
}

/// Client 1 (the admin) adds the ACL type `D` and the permission types; everyone syncs. A
/// client whose read access changes is reset onto what it may read (always recovering).
fn start(n: usize) -> Run {
    let mut run = Run::new(n);
    run.reset_mode = Some(objsync::sync::ResetMode::Recover);
    run.server.set_identity(PeerId(1), Identity::Admin);
    for c in 1..n {
        (run.server).set_identity(PeerId(c as u64 + 1), Identity::User(user(c)));
    }
    let p = |n: &str, t: &str| Property::new(n, PropType::parse(t).unwrap());
    let d = ObjectType::new(
        "D",
        Some("id"),
        [
            p("id", "int"),
            p("v", "int"),
            p("acl", "list<link<__Permission>>"),
        ],
    )
    .unwrap();
    run.clients[0]
        .write(1, |tx| {
            permissions::ensure_system_types(tx)?;
            tx.add_type(d)
        })
        .unwrap();
    run.upload(0);
    for c in 0..n {
        run.download(c, None);
    }
    run
}

fn apply(run: &mut Run, a: &Act, t: u64) {
    let identity: Vec<usize> = (0..run.clients.len()).collect();
    match a {
        Act::Plain(s) => run.step(s, &identity),
        Act::Grant {
            by,
            role,
            level: l,
            flags,
            on,
        } => {
            let chosen = (FLAGS.iter().enumerate())
                .filter(|(i, _)| flags & (1 << i) != 0)
                .fold(Privileges::NONE, |acc, (_, f)| acc | *f);
            let change = |now: Privileges| match on {
                true => now | chosen,
                false => now & !chosen,
            };
            let role = ROLES[*role as usize];
            let _ = run.clients[*by].write(t, |tx| {
                let _ = tx.atomically(|tx| permissions::grant(tx, role, &level(*l), change));
                Ok(())
            });
        }
        Act::Member { by, user: u, add } => {
            let _ = run.clients[*by].write(t, |tx| {
                let _ = tx.atomically(|tx| match add {
                    true => permissions::add_member(tx, "editors", &user(*u)),
                    false => permissions::remove_member(tx, "editors", &user(*u)),
                });
                Ok(())
            });
        }
        Act::Doc { by, key, what } => {
            let key = i64::from(*key);
            let _ = run.clients[*by].write(t, |tx| {
                let _ = tx.atomically(|tx| match what {
                    0 => {
                        tx.insert("D", key)?;
                        let all = |_| Privileges::ALL;
                        let object = level(4 + key as u8);
                        permissions::grant(tx, permissions::EVERYONE, &object, all)
                    }
                    1 => tx.set("D", key, "v", t as i64),
                    _ => tx.delete("D", key),
                });
                Ok(())
            });
        }
    }
}

/// A client's state without empty types, and without the properties the server's schema
/// lacks: a refused schema change stays on the device (spec/permissions.md rule 18), and its
/// properties show on every object of the type there.
fn on_schema(state: serde_json::Value, schema: &objsync::Schema) -> serde_json::Value {
    let mut state = without_empty_types(state);
    for (ty, objects) in state.as_object_mut().into_iter().flatten() {
        let Ok(def) = schema.get(ty) else {
            continue;
        };
        for object in objects
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            if let Some(props) = object.as_object_mut() {
                props.retain(|p, _| def.properties.contains_key(p.as_str()));
            }
        }
    }
    state
}

/// Replays the server's history from scratch, checking every live instruction of a user
/// against the state before it; returns the replayed state.
fn replay_checked(run: &Run) -> Result<String, TestCaseError> {
    let mut replay = Replica::new(PeerId(0));
    for (v, e) in run.server.history().iter() {
        let cs = &e.changeset;
        let user = (cs.origin != PeerId(1)).then(|| user(cs.origin.0 as usize - 1));
        let mut checker = Checker::new(user.as_deref());
        for op in &cs.ops {
            // Refused list inserts and moves stay as lost ones: they change nothing.
            let effective = op.fate != Fate::Void && op.fate != Fate::Dropped;
            if user.is_some() && effective {
                prop_assert!(
                    checker.allows(replay.store(), &op.instr),
                    "version {}: {:?} by {:?} was not allowed",
                    v.0,
                    op.instr,
                    user
                );
            }
            let one = objsync::Changeset {
                ops: vec![op.clone()],
                ..cs.clone()
            };
            replay.apply_changeset(&one).unwrap();
        }
    }
    Ok(canonical(&state_json(replay.store()).unwrap()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), max_shrink_iters: 1000, ..ProptestConfig::default() })]

    #[test]
    fn permission_histories_converge_and_hold_nothing_illegal((n, acts) in history()) {
        let mut run = start(n);
        for (i, a) in acts.iter().enumerate() {
            apply(&mut run, a, 10 + i as u64);
        }
        let order: Vec<usize> = (0..n).collect();
        run.settle(&order);
        let server = canonical(&state_json(run.server.replica().store()).unwrap());
        for (i, c) in run.clients.iter().enumerate() {
            prop_assert!(c.unacknowledged().is_empty(), "client {} has unacknowledged changesets", i + 1);
            prop_assert_eq!(c.acknowledged(), c.last_version(), "client {}", i + 1);
            let state = on_schema(state_json(c.replica().store()).unwrap(), run.server.replica().store().schema());
            let identity = run.server.identity(c.peer()).expect("every peer is named");
            let readable = readable_state(&run.server, identity).unwrap();
            prop_assert_eq!(canonical(&state), canonical(&readable), "client {} diverged from what it may read", i + 1);
        }
        prop_assert_eq!(replay_checked(&run)?, server, "the replayed history differs");
    }
}

#[test]
fn a_refused_write_is_corrected_and_reported() {
    let mut run = start(2);
    run.clients[0]
        .write(2, |tx| {
            let read_only = |p: Privileges| p & !Privileges::UPDATE;
            permissions::grant(tx, permissions::EVERYONE, &Level::Realm, read_only)?;
            tx.insert("A", 1)?;
            tx.set("A", 1, "v", 7)
        })
        .unwrap();
    run.upload(0);
    run.download(1, None);
    run_intent_on(&mut run, 1, &Intent::Set(1, 0, 99, false));
    run.upload(1);
    run.download(1, None);
    let corrections = run.clients[1].take_corrections();
    assert_eq!(corrections.len(), 1, "one changeset was corrected");
    assert_eq!(corrections[0].client_version, run.clients[1].last_version());
    assert!(matches!(
        &corrections[0].ops[0].instr,
        Instruction::Set { default: true, .. }
    ));
    let v = Store::get(run.clients[1].replica().store(), "A", &1.into(), "v").unwrap();
    assert_eq!(v, objsync::Value::Int(7));
}

fn run_intent_on(run: &mut Run, c: usize, i: &Intent) {
    run.clients[c]
        .write(3, |tx| {
            run_intent(tx, i);
            Ok(())
        })
        .unwrap();
}

#[test]
fn losing_read_access_removes_objects_from_the_client_only_and_keeps_its_pending_edit() {
    let mut run = start(3);
    let everyone_reads_a = |run: &mut Run, t: u64, read: bool| {
        run.clients[0]
            .write(t, |tx| {
                let class = Level::Class("A".into());
                permissions::grant(tx, permissions::EVERYONE, &class, |p| match read {
                    true => p | Privileges::READ,
                    false => p & !Privileges::READ,
                })
            })
            .unwrap();
        run.upload(0);
    };
    run_intent_on(&mut run, 0, &Intent::Insert(1, 1));
    run.settle(&[0, 1, 2]);
    let has_a1 = |run: &Run, c: usize| {
        let store = run.clients[c].replica().store();
        store.exists("A", &1.into()).unwrap()
    };
    assert!(has_a1(&run, 1) && has_a1(&run, 2));

    // Client 2 edits A[1] offline while everyone loses read access to A.
    run_intent_on(&mut run, 1, &Intent::Set(1, 0, 5, false));
    everyone_reads_a(&mut run, 4, false);
    run.download(1, None);
    run.download(2, None);
    assert!(
        !has_a1(&run, 1) && !has_a1(&run, 2),
        "A[1] left both users' clients"
    );
    assert!(has_a1(&run, 0), "the admin keeps it");
    assert!(
        run.server.replica().store().exists("A", &1.into()).unwrap(),
        "the realm keeps it"
    );
    let reset = |c: usize| (run.resets.iter()).rev().find(|r| r.1 == c).map(|r| r.2);
    assert_eq!(reset(1), Some(objsync::sync::ResetCause::ReadAccessChanged));
    assert!(run.clients[1].unacknowledged().is_empty());
    assert_eq!(
        run.clients[1].deferred().len(),
        1,
        "the pending edit is kept aside"
    );

    // Read access comes back: A[1] arrives again, and the pending edit applies and syncs.
    everyone_reads_a(&mut run, 5, true);
    run.settle(&[0, 1, 2]);
    assert!(has_a1(&run, 1) && has_a1(&run, 2));
    let v = run
        .server
        .replica()
        .store()
        .get("A", &1.into(), "v")
        .unwrap();
    assert_eq!(v, objsync::Value::Int(5));
    assert!(run.clients[1].deferred().is_empty());
}
