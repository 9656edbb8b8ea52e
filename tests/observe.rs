//! Change notifications (`objsync::observe`): what local writes and integrated downloads report
//! to observers, and the property that matters to a view: the reported changes, applied to the
//! old state as a table view applies them (objects deleted, inserted and reloaded; list rows
//! deleted at old indices, highest first, then inserted at new indices, lowest first, then
//! reloaded), give the new state.
//!
//! `OBJSYNC_CASES` sets the number of random histories (default 2,000 per property test).

use objsync::json::{canonical, state_json, value_to_json};
use objsync::observe::{Changes, IndexSet, ListChanges, Move, Observe};
use objsync::sync::{Client, Server};
use objsync::{Error, ObjKey, ObjectType, PeerId, PropType, Property, Schema, Store, Value};
use objsync_testkit::cases;
use objsync_testkit::history::{history, Run, Step};
use proptest::prelude::*;
use serde_json::{Map, Value as Json};

fn prop(n: &str, t: &str) -> Property {
    Property::new(n, PropType::parse(t).unwrap())
}

fn person() -> ObjectType {
    ObjectType::new(
        "Person",
        Some("id"),
        [
            prop("id", "int"),
            prop("name", "string?"),
            prop("age", "int"),
            prop("dog", "link<Dog>"),
            prop("tags", "list<string>"),
            prop("dogs", "list<link<Dog>>"),
        ],
    )
    .unwrap()
}

fn dog() -> ObjectType {
    ObjectType::new("Dog", Some("name"), [prop("name", "string")]).unwrap()
}

/// A server and `n` clients sharing the Dog and Person types, Dog "rex" and Person 1.
fn setup(n: u64) -> (Server, Vec<Client>) {
    let mut server = Server::new();
    let mut clients: Vec<Client> = (1..=n).map(|k| Client::new(PeerId(k))).collect();
    clients[0]
        .write(1, |tx| {
            tx.add_type(dog())?;
            tx.add_type(person())?;
            tx.insert("Dog", "rex")?;
            tx.insert("Person", 1)?;
            tx.list_insert("Person", 1, "tags", 0, "a")?;
            tx.list_insert("Person", 1, "tags", 1, "b")?;
            tx.list_insert("Person", 1, "tags", 2, "c")
        })
        .unwrap();
    let all: Vec<usize> = (0..clients.len()).collect();
    sync(&mut server, &mut clients, &all);
    (server, clients)
}

/// Uploads then downloads the clients `which`, in that order.
fn sync(server: &mut Server, clients: &mut [Client], which: &[usize]) {
    for &k in which {
        let c = &mut clients[k];
        let ack = server.integrate(c.peer(), c.upload()).unwrap();
        c.acknowledge(ack);
    }
    for &k in which {
        let c = &mut clients[k];
        let d = server.download(c.peer(), c.cursor(), None).unwrap();
        c.integrate(d).unwrap();
    }
}

/// The one range of a set that has one.
fn only(set: &IndexSet) -> Option<std::ops::Range<usize>> {
    match set.ranges() {
        [r] => Some(r.clone()),
        _ => None,
    }
}

fn keys(keys: &[i64]) -> Vec<ObjKey> {
    keys.iter().map(|&k| k.into()).collect()
}

#[test]
fn a_write_reports_inserted_deleted_and_modified_objects_with_their_properties() {
    let (_, mut clients) = setup(1);
    let c = &mut clients[0];
    c.observe(Observe::ty("Person"));
    c.write(10, |tx| {
        tx.insert("Person", 2)?;
        tx.set("Person", 2, "name", "new")?; // part of the insertion
        tx.set("Person", 1, "name", "Ada")?;
        tx.add_int("Person", 1, "age", 1)?;
        tx.insert("Person", 3)?;
        tx.delete("Person", 3) // created and deleted: nothing to tell
    })
    .unwrap();
    let changes = c.take_changes();
    let people = changes.of("Person").unwrap();
    assert_eq!(people.inserted, keys(&[2]));
    assert!(people.deleted.is_empty() && !people.created);
    let ada = people.object(&1.into()).unwrap();
    assert_eq!(&*ada.properties, ["name".into(), "age".into()]);
    assert!(ada.lists.is_empty());
    assert_eq!(changes.types.len(), 1, "Dog is not observed");
    assert!(c.take_changes().is_empty(), "taken once");

    c.write(11, |tx| {
        tx.delete("Person", 1)?;
        tx.insert("Person", 1) // another object under the same key
    })
    .unwrap();
    c.write(12, |tx| tx.delete("Person", 2)).unwrap();
    let people = c.take_changes().of("Person").cloned().unwrap();
    assert_eq!(
        (people.inserted, people.deleted),
        (keys(&[1]), keys(&[1, 2]))
    );
    assert!(people.modified.is_empty());
}

#[test]
fn changes_accumulate_until_taken() {
    let (_, mut clients) = setup(1);
    let c = &mut clients[0];
    c.observe(Observe::ty("Person"));
    c.write(10, |tx| tx.insert("Person", 5).map(|_| ()))
        .unwrap();
    c.write(11, |tx| tx.set("Person", 5, "age", 3)).unwrap();
    c.write(12, |tx| tx.list_erase("Person", 1, "tags", 0))
        .unwrap();
    c.write(13, |tx| tx.list_insert("Person", 1, "tags", 2, "x"))
        .unwrap();
    let people = c.take_changes().of("Person").cloned().unwrap();
    assert_eq!(people.inserted, keys(&[5]));
    let tags = people
        .object(&1.into())
        .and_then(|o| o.list("tags"))
        .unwrap();
    // [a, b, c] -> [b, c, x]: a deleted at old 0, x inserted at new 2.
    assert_eq!(only(&tags.deletions), Some(0..1));
    assert_eq!(only(&tags.insertions), Some(2..3));
    assert!(tags.modifications.is_empty() && tags.moves.is_empty());
}

#[test]
fn what_is_rolled_back_is_not_reported() {
    let (_, mut clients) = setup(1);
    let c = &mut clients[0];
    c.observe(Observe::ty("Person"));
    let failed = c.write(10, |tx| {
        tx.set("Person", 1, "name", "gone")?;
        tx.set("Person", 1, "name", 5) // a type error: the whole transaction goes
    });
    assert!(failed.is_err());
    c.write(11, |tx| {
        tx.set("Person", 1, "age", 4)?;
        // Rejected inside the transaction: only this write is undone.
        let rejected = tx.atomically(|tx| {
            tx.insert("Person", 9)?;
            tx.list_insert("Person", 1, "tags", 99, "x")
        });
        assert!(matches!(rejected, Err(Error::IndexOutOfRange { .. })));
        Ok(())
    })
    .unwrap();
    let people = c.take_changes().of("Person").cloned().unwrap();
    assert!(people.inserted.is_empty());
    assert_eq!(&*people.modified[0].properties, ["age".into()]);
    assert_eq!(people.modified.len(), 1);
}

#[test]
fn observing_an_object_reports_that_object_only_and_unobserving_stops() {
    let (_, mut clients) = setup(1);
    let c = &mut clients[0];
    let one = Observe::object("Person", 1);
    assert!(c.observe(one.clone()));
    assert!(!c.observe(one.clone()), "already observed");
    c.write(10, |tx| {
        tx.set("Person", 1, "age", 1)?;
        tx.insert("Person", 2)?;
        tx.set("Person", 2, "age", 2)
    })
    .unwrap();
    let people = c.take_changes().of("Person").cloned().unwrap();
    assert!(people.inserted.is_empty());
    assert_eq!(people.modified.len(), 1);
    assert!(c.unobserve(&one));
    c.write(11, |tx| tx.set("Person", 1, "age", 3)).unwrap();
    assert!(c.take_changes().is_empty());
}

/// Observing from inside an open unit: what that unit did is dropped with it when it rolls
/// back, and kept when it commits.
#[test]
fn observing_inside_an_open_unit_follows_the_unit() {
    for commit in [false, true] {
        let mut r = objsync::Replica::new(PeerId(1));
        r.begin();
        r.observe(Observe::ty("Dog"));
        let mut tx = r.transaction(1);
        tx.add_type(dog()).unwrap();
        tx.insert("Dog", "rex").unwrap();
        tx.commit();
        // Taken while the unit is open: what it did is not reported yet.
        assert!(r.take_changes().is_empty());
        if commit {
            r.commit();
        } else {
            r.rollback();
        }
        let dogs = r.take_changes().of("Dog").cloned();
        assert_eq!(dogs.is_some(), commit);
        if let Some(dogs) = dogs {
            assert!(dogs.created);
            assert_eq!(dogs.inserted, [ObjKey::from("rex")]);
        }
    }
}

/// Many observed types are looked up by hash, a few by comparing names: the same answers.
#[test]
fn many_observed_types_report_as_few_do() {
    let (_, mut clients) = setup(1);
    let c = &mut clients[0];
    let others: Vec<Observe> = (0..9).map(|i| Observe::ty(&format!("T{i}"))).collect();
    for many in [true, false] {
        for o in &others {
            if many {
                c.observe(o.clone());
            } else {
                c.unobserve(o);
            }
        }
        c.observe(Observe::ty("Person"));
        c.write(10, |tx| {
            tx.set("Person", 1, "age", 1)?;
            tx.insert("Dog", "fido").map(|_| ())
        })
        .unwrap();
        let changes = c.take_changes();
        assert_eq!(changes.of("Person").map(|p| p.modified.len()), Some(1));
        assert!(changes.of("Dog").is_none());
        assert!(c.unobserve(&Observe::ty("Person")));
        c.write(11, |tx| tx.set("Person", 1, "age", 2)).unwrap();
        assert!(c.take_changes().is_empty());
    }
}

#[test]
fn nothing_observed_reports_nothing() {
    let (_, mut clients) = setup(1);
    let c = &mut clients[0];
    c.write(10, |tx| tx.set("Person", 1, "age", 1)).unwrap();
    assert!(c.take_changes().is_empty());
}

#[test]
fn a_type_created_reports_its_properties_and_added_properties_are_reported() {
    let mut c = Client::new(PeerId(1));
    c.observe(Observe::ty("Dog"));
    c.write(1, |tx| tx.add_type(dog())).unwrap();
    let dogs = c.take_changes().of("Dog").cloned().unwrap();
    assert!(dogs.created);
    assert_eq!(&*dogs.added_properties, ["name".into()]);
    c.write(2, |tx| tx.add_properties("Dog", vec![prop("age", "int")]))
        .unwrap();
    c.write(3, |tx| tx.add_type(dog())).unwrap(); // nothing new
    let dogs = c.take_changes().of("Dog").cloned().unwrap();
    assert!(!dogs.created);
    assert_eq!(&*dogs.added_properties, ["age".into()]);
}

#[test]
fn deleting_a_link_target_modifies_the_objects_that_linked_to_it() {
    let (_, mut clients) = setup(1);
    let c = &mut clients[0];
    c.write(10, |tx| {
        tx.set("Person", 1, "dog", "rex")?;
        tx.list_insert("Person", 1, "dogs", 0, "rex")
    })
    .unwrap();
    c.observe(Observe::ty("Person"));
    c.write(11, |tx| tx.delete("Dog", "rex")).unwrap();
    let changes = c.take_changes();
    let ada = changes
        .of("Person")
        .and_then(|t| t.object(&1.into()))
        .unwrap();
    assert_eq!(&*ada.properties, ["dog".into(), "dogs".into()]);
    assert_eq!(only(&ada.list("dogs").unwrap().deletions), Some(0..1));
    assert!(changes.of("Dog").is_none(), "Dog is not observed");
}

/// A downloaded write that lost to a later local one changes nothing here, so nothing is
/// reported; one that won is.
#[test]
fn a_download_reports_what_it_changed_and_not_what_lost() {
    let (mut server, mut clients) = setup(2);
    clients[0]
        .write(10, |tx| {
            tx.set("Person", 1, "name", "early")?;
            tx.set("Person", 1, "age", 7)
        })
        .unwrap();
    clients[1]
        .write(20, |tx| tx.set("Person", 1, "name", "late"))
        .unwrap();
    sync(&mut server, &mut clients, &[0]);
    clients[1].observe(Observe::ty("Person"));
    sync(&mut server, &mut clients, &[1]);
    let people = clients[1].take_changes().of("Person").cloned().unwrap();
    assert_eq!(&*people.modified[0].properties, ["age".into()], "name lost");

    clients[0].observe(Observe::ty("Person"));
    sync(&mut server, &mut clients, &[0]);
    let people = clients[0].take_changes().of("Person").cloned().unwrap();
    assert_eq!(&*people.modified[0].properties, ["name".into()]);
}

/// A downloaded list insert that a concurrent clear dropped changes nothing here: only the
/// download's other write is reported.
#[test]
fn a_dropped_list_insert_is_not_reported() {
    let (mut server, mut clients) = setup(2);
    clients[0]
        .write(10, |tx| tx.list_clear("Person", 1, "tags"))
        .unwrap();
    clients[1]
        .write(50, |tx| {
            tx.list_insert("Person", 1, "tags", 1, "x")?;
            tx.set("Person", 1, "age", 5)
        })
        .unwrap();
    sync(&mut server, &mut clients, &[1]);
    clients[0].observe(Observe::ty("Person"));
    sync(&mut server, &mut clients, &[0]);
    let tags = clients[0]
        .replica()
        .store()
        .list("Person", &1.into(), "tags");
    assert_eq!(tags.unwrap(), Vec::<Value>::new());
    let people = clients[0].take_changes().of("Person").cloned().unwrap();
    assert_eq!(&*people.modified[0].properties, ["age".into()]);
    assert!(people.modified[0].lists.is_empty());
}

/// Concurrent list edits: the receiver reports the indices where the merged edits landed in
/// its own list.
#[test]
fn a_download_reports_list_indices_of_the_merged_list() {
    let (mut server, mut clients) = setup(2);
    clients[0]
        .write(10, |tx| {
            tx.list_insert("Person", 1, "tags", 0, "x")?;
            tx.list_move("Person", 1, "tags", 3, 1) // c to just after x
        })
        .unwrap();
    clients[1]
        .write(20, |tx| {
            tx.list_erase("Person", 1, "tags", 1)?; // b
            tx.list_set("Person", 1, "tags", 0, "A")
        })
        .unwrap();
    sync(&mut server, &mut clients, &[1]);
    clients[0].observe(Observe::ty("Person"));
    let before = clients[0]
        .replica()
        .store()
        .list("Person", &1.into(), "tags")
        .unwrap();
    sync(&mut server, &mut clients, &[0]);
    let after = clients[0]
        .replica()
        .store()
        .list("Person", &1.into(), "tags")
        .unwrap();
    assert_eq!(before, ["x", "c", "a", "b"].map(Value::from));
    assert_eq!(after, ["x", "c", "A"].map(Value::from));
    let changes = clients[0].take_changes();
    let tags = changes
        .of("Person")
        .and_then(|t| t.object(&1.into()))
        .and_then(|o| o.list("tags"));
    let expected = ListChanges {
        deletions: IndexSet::from_indices([3]),
        modifications: IndexSet::from_indices([2]),
        ..ListChanges::default()
    };
    assert_eq!(tags, Some(&expected));
}

#[test]
fn moves_are_reported_as_moves() {
    let (_, mut clients) = setup(1);
    let c = &mut clients[0];
    c.observe(Observe::object("Person", 1));
    c.write(10, |tx| tx.list_move("Person", 1, "tags", 2, 0))
        .unwrap();
    let changes = c.take_changes();
    let tags = changes
        .of("Person")
        .and_then(|t| t.object(&1.into()))
        .and_then(|o| o.list("tags"))
        .unwrap();
    assert_eq!(tags.moves, [Move { from: 2, to: 0 }]);
    assert!(tags.deletions.is_empty() && tags.insertions.is_empty());
}

// ----- the property: changes animate the old state into the new one -----

/// The state as JSON objects: type -> rendered key -> property -> value.
type State = Map<String, Json>;

fn state_of(c: &Client) -> State {
    match state_json(c.replica().store()).unwrap() {
        Json::Object(m) => m,
        _ => unreachable!("a state is an object"),
    }
}

fn default_json(pt: &PropType) -> Json {
    if pt.list {
        Json::Array(Vec::new())
    } else {
        value_to_json(&pt.default_value())
    }
}

/// Applies a list's changes to `old` as a table view does: removed rows (deletions and move
/// sources) go highest first, then arriving rows (insertions from the new list, moved rows with
/// their old value) are inserted lowest first, then modified rows are reloaded.
fn animate_list(old: &[Json], c: &ListChanges, new: &[Json]) -> Result<Vec<Json>, String> {
    let mut gone: Vec<usize> = c
        .deletions
        .iter()
        .chain(c.moves.iter().map(|m| m.from))
        .collect();
    gone.sort_unstable();
    if gone.windows(2).any(|w| w[0] == w[1]) || gone.last().is_some_and(|&i| i >= old.len()) {
        return Err(format!("bad old indices {gone:?} for {} rows", old.len()));
    }
    let mut rows = old.to_vec();
    for &i in gone.iter().rev() {
        rows.remove(i);
    }
    let mut arriving: Vec<(usize, Json)> = Vec::new();
    for i in c.insertions.iter() {
        arriving.push((i, new.get(i).cloned().ok_or("insertion past the new list")?));
    }
    for m in &c.moves {
        arriving.push((m.to, old[m.from].clone()));
    }
    arriving.sort_by_key(|a| a.0);
    for (i, v) in arriving {
        if i > rows.len() {
            return Err(format!("insertion at {i} past {} rows", rows.len()));
        }
        rows.insert(i, v);
    }
    for i in c.modifications.iter() {
        let v = new.get(i).ok_or("modification past the new list")?;
        *rows.get_mut(i).ok_or("modification past the rows")? = v.clone();
    }
    Ok(rows)
}

/// The old state brought up to date with `changes` the way a view does it, reading inserted
/// objects and reloaded values from the new state.
fn animate(old: &State, changes: &Changes, new: &State, schema: &Schema) -> Result<State, String> {
    let mut state = old.clone();
    for (ty, tc) in &changes.types {
        let def = schema.get(ty).map_err(|e| e.to_string())?;
        if tc.created
            && state
                .insert(ty.to_string(), Json::Object(Map::new()))
                .is_some()
        {
            return Err(format!("{ty} reported created but was there"));
        }
        let new_objects = new
            .get(&**ty)
            .and_then(Json::as_object)
            .ok_or("type not in the new state")?;
        let objects = state
            .get_mut(&**ty)
            .and_then(Json::as_object_mut)
            .ok_or_else(|| format!("changes for {ty}, which was not there"))?;
        for key in &tc.deleted {
            objects
                .remove(&key.render())
                .ok_or_else(|| format!("deleted {ty}[{key}] was not there"))?;
        }
        for added in &tc.added_properties {
            let pt = def.property(added).map_err(|e| e.to_string())?;
            if def.primary_key.as_ref() == Some(added) {
                continue;
            }
            for o in objects.values_mut() {
                o.as_object_mut()
                    .ok_or("object")?
                    .insert(added.to_string(), default_json(pt));
            }
        }
        for key in &tc.inserted {
            let k = key.render();
            let v = new_objects
                .get(&k)
                .ok_or_else(|| format!("inserted {ty}[{k}] is not there"))?;
            if objects.insert(k.clone(), v.clone()).is_some() {
                return Err(format!("inserted {ty}[{k}] was there"));
            }
        }
        for m in &tc.modified {
            let k = m.key.render();
            let now = new_objects
                .get(&k)
                .and_then(Json::as_object)
                .ok_or("modified, not in new")?;
            let o = objects
                .get_mut(&k)
                .and_then(Json::as_object_mut)
                .ok_or("modified, not in old")?;
            for p in &m.properties {
                let v = now.get(&**p).ok_or("property not in new")?;
                let value = match m.lists.get(p) {
                    Some(lc) => {
                        let was = o
                            .get(&**p)
                            .and_then(Json::as_array)
                            .ok_or("list not in old")?;
                        let new_rows = v.as_array().ok_or("list")?;
                        let rows = animate_list(was, lc, new_rows)
                            .map_err(|e| format!("{ty}[{k}].{p}: {e}"))?;
                        Json::Array(rows)
                    }
                    None => v.clone(),
                };
                o.insert(p.to_string(), value);
            }
        }
    }
    Ok(state)
}

/// What of a state is observed: everything, or type A and the object B["b1"].
fn restrict(state: &State, everything: bool) -> State {
    if everything {
        return state.clone();
    }
    let mut out = Map::new();
    if let Some(a) = state.get("A") {
        out.insert("A".into(), a.clone());
    }
    if let Some(b1) = state.get("B").and_then(|b| b.get("b1")) {
        out.insert("b1".into(), b1.clone());
    }
    out
}

/// Runs a random history with every client observing (everything, or type A and B["b1"])
/// from the start, and checks after every step that each client's changes animate its old
/// state into its new one.
fn check_history(n: usize, steps: &[Step], everything: bool) -> Result<(), TestCaseError> {
    let mut run = Run::empty(n);
    for c in &mut run.clients {
        if everything {
            c.observe(Observe::ty("A"));
            c.observe(Observe::ty("B"));
        } else {
            c.observe(Observe::ty("A"));
            c.observe(Observe::object("B", "b1"));
        }
    }
    let order: Vec<usize> = (0..n).collect();
    let mut before: Vec<State> = run.clients.iter().map(state_of).collect();
    let mut check = |run: &mut Run, what: &str| -> Result<(), TestCaseError> {
        for (i, c) in run.clients.iter_mut().enumerate() {
            let changes = c.take_changes();
            let after = state_of(c);
            if let (false, Some(b)) = (everything, changes.of("B")) {
                let b1: ObjKey = "b1".into();
                prop_assert!(b.inserted.iter().chain(&b.deleted).all(|k| *k == b1));
                prop_assert!(b.modified.iter().all(|m| m.key == b1));
                prop_assert!(!b.created && b.added_properties.is_empty());
            }
            let animated = animate(&before[i], &changes, &after, c.replica().store().schema())
                .map_err(|e| TestCaseError::fail(format!("client {} after {what}: {e}", i + 1)))?;
            prop_assert_eq!(
                canonical(&Json::Object(restrict(&animated, everything))),
                canonical(&Json::Object(restrict(&after, everything))),
                "client {} after {}: changes {:?}",
                i + 1,
                what,
                changes
            );
            prop_assert!(c.take_changes().is_empty());
            before[i] = after;
        }
        Ok(())
    };
    run.share_schema();
    check(&mut run, "the schema")?;
    for (i, s) in steps.iter().enumerate() {
        run.step(s, &order);
        check(&mut run, &format!("step {i} {s:?}"))?;
    }
    run.settle(&order);
    check(&mut run, "the closing sync")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn changes_animate_the_old_state_into_the_new((n, steps) in history(4)) {
        check_history(n, &steps, true)?;
    }

    #[test]
    fn changes_of_a_type_and_an_object_animate_them((n, steps) in history(3)) {
        check_history(n, &steps, false)?;
    }
}
