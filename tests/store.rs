//! The foundation: every instruction applied and read back, every error path, atomicity of
//! failing changesets and transactions, and unlinking on delete.

use objsync::json::{canonical, state_json};
use objsync::{
    Changeset, Error, Instruction, ObjKey, ObjRef, ObjectType, Op, PeerId, PropType, Property,
    Replica, Store, Value,
};

fn prop(name: &str, ty: &str) -> Property {
    Property::new(name, PropType::parse(ty).expect("valid type string"))
}

fn person() -> ObjectType {
    ObjectType::new(
        "Person",
        Some("id"),
        [
            prop("id", "int"),
            prop("name", "string?"),
            prop("age", "int"),
            prop("best", "link<Person>"),
            prop("friends", "list<link<Person>>"),
            prop("scores", "list<int>"),
        ],
    )
    .expect("valid type")
}

fn replica_with_people() -> Replica {
    let mut r = Replica::new(PeerId(1));
    let mut tx = r.transaction(1);
    tx.add_type(person()).unwrap();
    for id in 1..=3 {
        tx.insert("Person", id).unwrap();
    }
    tx.commit();
    r
}

fn state(r: &Replica) -> String {
    canonical(&state_json(r.store()).unwrap())
}

#[test]
fn every_instruction_applies_and_reads_back() {
    let mut r = replica_with_people();
    let mut tx = r.transaction(2);
    tx.set("Person", 1, "name", "Ada").unwrap();
    tx.set_default("Person", 1, "age", 30).unwrap();
    tx.add_int("Person", 1, "age", 2).unwrap();
    tx.set("Person", 1, "best", Value::Link(2.into())).unwrap();
    tx.list_insert("Person", 1, "scores", 0, 10).unwrap();
    tx.list_insert("Person", 1, "scores", 1, 20).unwrap();
    tx.list_insert("Person", 1, "scores", 2, 30).unwrap();
    tx.list_set("Person", 1, "scores", 0, 11).unwrap();
    tx.list_move("Person", 1, "scores", 0, 2).unwrap();
    tx.list_erase("Person", 1, "scores", 0).unwrap();
    tx.list_insert("Person", 1, "friends", 0, Value::Link(3.into()))
        .unwrap();
    tx.add_properties("Person", vec![prop("email", "string")])
        .unwrap();
    tx.insert("Person", 4).unwrap();
    tx.delete("Person", 4).unwrap();
    let cs = tx.commit();
    let kinds: Vec<_> = cs.ops.iter().map(|op| op.instr.kind().name()).collect();
    assert_eq!(
        kinds,
        [
            "SET",
            "SET",
            "ADD_INT",
            "SET",
            "LIST_INSERT",
            "LIST_INSERT",
            "LIST_INSERT",
            "LIST_SET",
            "LIST_MOVE",
            "LIST_ERASE",
            "LIST_INSERT",
            "ADD_PROPERTIES",
            "INSERT",
            "DELETE"
        ]
    );
    let s = r.store();
    let one = ObjKey::Int(1);
    assert_eq!(s.get("Person", &one, "name").unwrap(), Value::from("Ada"));
    assert_eq!(s.get("Person", &one, "age").unwrap(), Value::Int(32));
    assert_eq!(
        s.get("Person", &one, "best").unwrap(),
        Value::Link(2.into())
    );
    assert_eq!(s.get("Person", &one, "email").unwrap(), Value::from(""));
    assert_eq!(
        s.list("Person", &one, "scores").unwrap(),
        vec![Value::Int(30), Value::Int(11)]
    );
    assert_eq!(
        s.list("Person", &one, "friends").unwrap(),
        vec![Value::Link(3.into())]
    );
    assert!(!s.exists("Person", &ObjKey::Int(4)).unwrap());

    let mut tx = r.transaction(3);
    tx.list_clear("Person", 1, "scores").unwrap();
    tx.clear("Person").unwrap();
    let cs = tx.commit();
    assert_eq!(cs.ops[1].instr.kind().name(), "CLEAR");
    assert_eq!(state(&r), r#"{"Person":{}}"#);
}

#[test]
fn a_changeset_replays_onto_a_copy_of_its_base() {
    let mut r = replica_with_people();
    let base = r.clone();
    let mut tx = r.transaction(5);
    tx.set("Person", 2, "name", "Bo").unwrap();
    tx.list_insert("Person", 2, "scores", 0, 1).unwrap();
    tx.list_insert("Person", 2, "scores", 0, 2).unwrap();
    tx.list_move("Person", 2, "scores", 1, 0).unwrap();
    tx.set("Person", 3, "best", Value::Link(2.into())).unwrap();
    tx.delete("Person", 2).unwrap();
    let cs = tx.commit();
    let mut copy = base.clone();
    copy.apply_changeset(&cs).unwrap();
    assert_eq!(state(&copy), state(&r));
    // Consuming the changeset (values move into the store) gives the same state.
    let mut owned = base.clone();
    owned.apply_changeset_owned(cs.clone()).unwrap();
    assert_eq!(state(&owned), state(&r));
    // And a consumed changeset that fails part-way changes nothing.
    let mut bad = cs;
    bad.ops.push(Op::live(Instruction::Set {
        obj: ObjRef {
            ty: "Person".into(),
            key: ObjKey::Int(99),
        },
        prop: "name".into(),
        value: Value::String("nobody".into()),
        default: false,
    }));
    let mut failed = base.clone();
    assert!(failed.apply_changeset_owned(bad).is_err());
    assert_eq!(state(&failed), state(&base));
}

#[test]
fn deleting_an_object_unlinks_it_everywhere() {
    let mut r = replica_with_people();
    let mut tx = r.transaction(2);
    tx.set("Person", 2, "best", Value::Link(1.into())).unwrap();
    tx.set("Person", 3, "best", Value::Link(2.into())).unwrap();
    for (i, target) in [1, 2, 1, 3, 1].into_iter().enumerate() {
        tx.list_insert("Person", 3, "friends", i, Value::Link(target.into()))
            .unwrap();
    }
    tx.delete("Person", 1).unwrap();
    tx.commit();
    let s = r.store();
    assert_eq!(
        s.get("Person", &ObjKey::Int(2), "best").unwrap(),
        Value::Null
    );
    assert_eq!(
        s.get("Person", &ObjKey::Int(3), "best").unwrap(),
        Value::Link(2.into())
    );
    assert_eq!(
        s.list("Person", &ObjKey::Int(3), "friends").unwrap(),
        vec![Value::Link(2.into()), Value::Link(3.into())]
    );
    // The list's merge metadata agrees with the store.
    let seq = r
        .sequence(&ObjRef::new("Person", 3), "friends")
        .expect("list metadata");
    assert_eq!(seq.len(), 2);
}

#[test]
fn error_paths_are_typed_and_change_nothing() {
    let mut r = replica_with_people();
    let before = state(&r);
    let mut tx = r.transaction(2);
    let e = |r: Result<(), Error>| r.expect_err("must fail");
    assert!(matches!(
        e(tx.set("Nobody", 1, "x", 1)),
        Error::UnknownType { .. }
    ));
    assert!(matches!(
        e(tx.set("Person", 1, "nope", 1)),
        Error::UnknownProperty { .. }
    ));
    assert!(matches!(
        e(tx.set("Person", 1, "age", "x")),
        Error::TypeMismatch { .. }
    ));
    assert!(matches!(
        e(tx.set("Person", 1, "age", Value::Null)),
        Error::NullNotAllowed { .. }
    ));
    assert!(matches!(
        e(tx.list_insert("Person", 1, "scores", 1, 5)),
        Error::IndexOutOfRange { len: 0, .. }
    ));
    assert!(matches!(
        e(tx.list_erase("Person", 1, "scores", 0)),
        Error::IndexOutOfRange { .. }
    ));
    assert!(matches!(
        e(tx.set("Person", 9, "age", 1)),
        Error::MissingObject { .. }
    ));
    assert!(matches!(
        e(tx.delete("Person", 9)),
        Error::MissingObject { .. }
    ));
    assert!(matches!(
        e(tx.set("Person", 1, "best", Value::Link(9.into()))),
        Error::MissingObject { .. }
    ));
    assert!(matches!(
        e(tx.add_properties("Person", vec![prop("age", "string")])),
        Error::SchemaMismatch { .. }
    ));
    assert!(matches!(
        e(
            tx.add_type(
                ObjectType::new("Person", Some("name"), [prop("name", "string?")]).unwrap()
            )
        ),
        Error::SchemaMismatch { .. }
    ));
    assert!(matches!(
        e(tx.add_type(ObjectType::new("__Role", Some("id"), [prop("id", "int")]).unwrap())),
        Error::ReservedName { .. }
    ));
    assert!(matches!(
        e(tx.set("Person", 1, "id", 5)),
        Error::PrimaryKeyImmutable { .. }
    ));
    assert!(matches!(
        e(tx.insert("Person", "text-key").map(|_| ())),
        Error::InvalidKey { .. }
    ));
    assert!(matches!(
        e(tx.list_insert("Person", 1, "age", 0, 1)),
        Error::NotAList { .. }
    ));
    assert!(matches!(
        e(tx.set("Person", 1, "scores", 1)),
        Error::IsAList { .. }
    ));
    assert!(matches!(
        e(tx.add_int("Person", 1, "name", 1)),
        Error::NotAnInt { .. }
    ));
    assert!(matches!(
        ObjectType::new("", None, []),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        PropType::parse("list<list<int>>"),
        Err(Error::InvalidPropertyType { .. })
    ));
    assert!(tx.ops().is_empty());
    let cs = tx.commit();
    assert!(cs.ops.is_empty());
    assert_eq!(state(&r), before);
}

#[test]
fn a_failing_changeset_leaves_the_replica_exactly_as_before() {
    let mut r = replica_with_people();
    let mut tx = r.transaction(2);
    tx.list_insert("Person", 1, "scores", 0, 7).unwrap();
    tx.commit();
    let before = state(&r);
    let mut author = r.clone();
    let mut tx = author.transaction(3);
    tx.add_type(ObjectType::new("Pet", Some("id"), [prop("id", "string")]).unwrap())
        .unwrap();
    tx.insert("Pet", "rex").unwrap();
    tx.set("Person", 2, "name", "Bo").unwrap();
    tx.list_insert("Person", 1, "scores", 0, 8).unwrap();
    tx.list_move("Person", 1, "scores", 0, 1).unwrap();
    tx.delete("Person", 3).unwrap();
    tx.add_properties("Person", vec![prop("nick", "string")])
        .unwrap();
    let mut cs = tx.commit();
    // Spoil the last instruction: a write to a property of the wrong type.
    cs.ops.push(Op::live(Instruction::Set {
        obj: ObjRef::new("Person", 1),
        prop: "age".into(),
        value: Value::from("not a number"),
        default: false,
    }));
    let err = r.apply_changeset(&cs).expect_err("must be rejected");
    assert!(
        matches!(err, Error::InInstruction { index: 7, .. }),
        "{err}"
    );
    assert!(matches!(err.root(), Error::TypeMismatch { .. }));
    assert_eq!(state(&r), before);
    assert!(!r.store().schema().contains("Pet"));
    // And the untouched replica still accepts the good part.
    cs.ops.pop();
    r.apply_changeset(&cs).unwrap();
    assert_eq!(state(&r), state(&author));
}

#[test]
fn dropping_a_transaction_rolls_it_back() {
    let mut r = replica_with_people();
    let before = state(&r);
    {
        let mut tx = r.transaction(2);
        tx.set("Person", 1, "name", "temp").unwrap();
        tx.list_insert("Person", 1, "scores", 0, 1).unwrap();
        tx.delete("Person", 2).unwrap();
    }
    assert_eq!(state(&r), before);
    assert!(r.sequence(&ObjRef::new("Person", 1), "scores").is_none());
}

#[test]
fn atomically_undoes_a_group_of_writes() {
    let mut r = replica_with_people();
    let mut tx = r.transaction(2);
    let result = tx.atomically(|tx| {
        tx.set("Person", 1, "age", 5)?;
        tx.set("Person", 1, "age", "bad")
    });
    assert!(result.is_err());
    assert!(tx.ops().is_empty());
    tx.set("Person", 1, "age", 6).unwrap();
    tx.commit();
    assert_eq!(
        r.store().get("Person", &ObjKey::Int(1), "age").unwrap(),
        Value::Int(6)
    );
}

#[test]
fn engine_ids_identify_objects_without_primary_key() {
    let mut r = Replica::new(PeerId(7));
    let mut tx = r.transaction(1);
    tx.add_type(ObjectType::new("Log", None, [prop("line", "string")]).unwrap())
        .unwrap();
    let a = tx.create("Log").unwrap();
    let b = tx.create("Log").unwrap();
    assert_ne!(a, b);
    assert_eq!(a.render(), "7:1");
    assert!(matches!(
        tx.insert("Log", 1).expect_err("no primary key"),
        Error::InvalidKey { .. }
    ));
    tx.set("Log", b.clone(), "line", "x").unwrap();
    tx.commit();
    assert_eq!(
        state(&r),
        r#"{"Log":{"7:1":{"line":""},"7:2":{"line":"x"}}}"#
    );
}

#[test]
fn changesets_have_a_json_form() {
    let mut r = replica_with_people();
    let mut tx = r.transaction(42);
    tx.set("Person", 1, "name", "Ada").unwrap();
    let cs: Changeset = tx.commit();
    let json = cs.to_json();
    assert_eq!(json["timestamp"], 42);
    assert_eq!(json["ops"][0]["instr"]["type"], "SET");
    let back: Changeset = serde_json::from_value(json).unwrap();
    assert_eq!(back, cs);
}

#[test]
fn a_failed_group_of_writes_leaves_list_metadata_in_step_with_the_store() {
    let mut r = replica_with_people();
    let base = r.clone();
    let mut tx = r.transaction(2);
    tx.list_insert("Person", 1, "scores", 0, 1).unwrap();
    let failed = tx.atomically(|tx| {
        tx.list_insert("Person", 1, "scores", 0, 2)?;
        tx.list_erase("Person", 1, "scores", 1)?;
        tx.list_insert("Person", 2, "scores", 0, 9)?;
        tx.set("Person", 1, "age", "bad")
    });
    assert!(failed.is_err());
    tx.list_insert("Person", 1, "scores", 1, 3).unwrap();
    let cs = tx.commit();
    assert_eq!(
        r.store().list("Person", &ObjKey::Int(1), "scores").unwrap(),
        vec![Value::Int(1), Value::Int(3)]
    );
    assert_eq!(
        r.sequence(&ObjRef::new("Person", 1), "scores")
            .unwrap()
            .len(),
        2
    );
    assert!(r.sequence(&ObjRef::new("Person", 2), "scores").is_none());
    let mut copy = base.clone();
    copy.apply_changeset(&cs).unwrap();
    assert_eq!(state(&copy), state(&r));
}

#[test]
fn a_type_without_properties_holds_objects_and_rolls_back() {
    let mut r = Replica::new(PeerId(1));
    let mut tx = r.transaction(1);
    tx.add_type(ObjectType::new("Marker", None, []).unwrap())
        .unwrap();
    let k = tx.create("Marker").unwrap();
    tx.commit();
    assert_eq!(r.store().objects("Marker").unwrap(), vec![k.clone()]);
    // A failed changeset that adds a type and objects of it leaves no trace of either.
    let before = state(&r);
    let mut cs = Changeset::new(PeerId(2), 2);
    cs.ops.push(Op::live(Instruction::AddType(
        ObjectType::new("Empty", None, []).unwrap(),
    )));
    cs.ops.push(Op::live(Instruction::Insert {
        obj: ObjRef {
            ty: "Empty".into(),
            key: ObjKey::Int(1),
        },
    }));
    assert!(
        r.apply_changeset(&cs).is_err(),
        "an int key for a type without one"
    );
    assert_eq!(state(&r), before);
    assert!(r.store().objects("Empty").is_err());
    cs.ops.pop();
    r.apply_changeset(&cs).unwrap();
    assert_eq!(r.store().objects("Empty").unwrap(), vec![]);
    assert_eq!(r.store().objects("Marker").unwrap(), vec![k]);
}
