//! The binary changeset encoding, tested as a wire format facing hostile input.
//!
//! - Random changesets covering every instruction, fate, key and value variant (floats by raw
//!   bit pattern, decimals across their whole range, empty and long strings) round-trip exactly,
//!   and so does a hand-built changeset holding every variant at its edges.
//! - Every proper prefix of a valid encoding is refused with a truncation error.
//! - Corrupted encodings and arbitrary bytes never panic; whatever decodes re-encodes to itself.
//! - Huge counts are refused quickly and without allocating anything proportional to them
//!   (measured with a counting allocator).
//! - The encoding is compact, with a per-op bound derived from the format.
//! - The serde JSON form round-trips too (with finite floats, which JSON requires).
//!
//! `OBJSYNC_CASES` scales the number of random cases.

use objsync_testkit::cases;

use objsync::wire::{decode, encode, encode_into, DecodeError, FORMAT_VERSION};
use objsync::Decimal128;
use objsync::ElemType;
use objsync::{
    Changeset, ClientVersion, Fate, Instruction, ObjKey, ObjRef, ObjectId, ObjectType, Op, OpId,
    PeerId, PropType, Property, ScalarKind, ServerVersion, Value,
};
use objsync::{Place, Side};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// Allocation accounting. The decoder must refuse a count of 2^60 without reserving anything, and
// only the allocator can tell whether it did; counting per thread keeps concurrently running
// tests out of the measurement.

struct CountingAllocator;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    // try_with: the allocator also runs while thread-locals are being torn down.
    let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(size)));
}

// SAFETY: every method forwards to the system allocator with the caller's own arguments; the
// only addition is bumping a const-initialized thread-local counter, which does not allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Bytes this thread allocated while running `f`.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let out = f();
    (out, ALLOCATED.with(Cell::get) - before)
}

// ---------------------------------------------------------------------------------------------
// Strategies. They build the structs directly: changesets need not make sense, only every field
// must take every shape.

fn any_string() -> BoxedStrategy<Arc<str>> {
    prop_oneof![
        4 => prop::sample::select(vec!["Person", "Dog", "name", "age", "tags", "owner", "id", ""])
            .prop_map(Arc::<str>::from),
        3 => any::<String>().prop_map(Arc::<str>::from),
        1 => prop::collection::vec(any::<char>(), 200..1200)
            .prop_map(|c| Arc::<str>::from(c.into_iter().collect::<String>())),
    ]
    .boxed()
}

/// Names that [`ObjectType::new`] accepts: non-empty, short, no control characters.
fn valid_name() -> BoxedStrategy<Arc<str>> {
    prop_oneof![
        prop::sample::select(vec!["Person", "Dog", "name", "age", "tags", "owner", "id"])
            .prop_map(Arc::from),
        "[^\\p{Cc}]{1,20}".prop_map(Arc::from),
    ]
    .boxed()
}

fn small_or_any_u64() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..300, any::<u64>()]
}

fn op_id() -> impl Strategy<Value = OpId> {
    (small_or_any_u64(), small_or_any_u64()).prop_map(|(peer, seq)| OpId {
        peer: PeerId(peer),
        seq,
    })
}

fn place() -> impl Strategy<Value = Place> {
    (
        prop::option::of(op_id()),
        prop::sample::select(vec![Side::Left, Side::Right]),
    )
        .prop_map(|(parent, side)| Place { parent, side })
}

fn small_or_any_i64() -> impl Strategy<Value = i64> {
    prop_oneof![-100i64..100, any::<i64>(), Just(i64::MIN), Just(i64::MAX)]
}

fn key() -> BoxedStrategy<ObjKey> {
    prop_oneof![
        Just(ObjKey::Null),
        small_or_any_i64().prop_map(ObjKey::Int),
        any_string().prop_map(ObjKey::String),
        any::<[u8; 12]>().prop_map(|b| ObjKey::ObjectId(ObjectId(b))),
        op_id().prop_map(ObjKey::Engine),
    ]
    .boxed()
}

fn obj() -> impl Strategy<Value = ObjRef> {
    (any_string(), key()).prop_map(|(ty, key)| ObjRef { ty, key })
}

fn decimal() -> BoxedStrategy<Decimal128> {
    let finite = |coefficient: BoxedStrategy<u128>| {
        (
            any::<bool>(),
            coefficient,
            Decimal128::MIN_EXPONENT..=Decimal128::MAX_EXPONENT,
        )
            .prop_map(|(negative, c, e)| {
                Decimal128::from_parts(negative, c, e).expect("parts are in range")
            })
    };
    prop_oneof![
        Just(Decimal128::nan()),
        any::<bool>().prop_map(Decimal128::infinity),
        finite((0u128..1000).boxed()),
        finite((0..=Decimal128::MAX_COEFFICIENT).boxed()),
        finite(Just(Decimal128::MAX_COEFFICIENT).boxed()),
    ]
    .boxed()
}

const SPECIAL_F32: [u32; 8] = [
    0x0000_0000, // 0.0
    0x8000_0000, // -0.0
    0x7fc0_0000, // quiet NaN
    0xffc0_0001, // negative NaN with payload
    0x7f80_0001, // signalling NaN
    0x7f80_0000, // infinity
    0xff80_0000, // -infinity
    0x0000_0001, // smallest subnormal
];
const SPECIAL_F64: [u64; 8] = [
    0x0000_0000_0000_0000,
    0x8000_0000_0000_0000,
    0x7ff8_0000_0000_0000,
    0xfff8_0000_dead_beef,
    0x7ff0_0000_0000_0001,
    0x7ff0_0000_0000_0000,
    0xfff0_0000_0000_0000,
    0x0000_0000_0000_0001,
];

/// Values; with `finite_floats`, only floats JSON can carry.
fn value(finite_floats: bool) -> BoxedStrategy<Value> {
    let float = if finite_floats {
        any::<u32>()
            .prop_map(f32::from_bits)
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .boxed()
    } else {
        prop_oneof![
            any::<u32>().prop_map(f32::from_bits),
            prop::sample::select(SPECIAL_F32.to_vec()).prop_map(f32::from_bits),
        ]
        .boxed()
    };
    let double = if finite_floats {
        any::<u64>()
            .prop_map(f64::from_bits)
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .boxed()
    } else {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            prop::sample::select(SPECIAL_F64.to_vec()).prop_map(f64::from_bits),
        ]
        .boxed()
    };
    prop_oneof![
        Just(Value::Null),
        small_or_any_i64().prop_map(Value::Int),
        any::<bool>().prop_map(Value::Bool),
        any_string().prop_map(Value::String),
        float.prop_map(Value::Float),
        double.prop_map(Value::Double),
        small_or_any_i64().prop_map(Value::Date),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|d| Value::Data(d.into())),
        any::<[u8; 12]>().prop_map(|b| Value::ObjectId(ObjectId(b))),
        decimal().prop_map(Value::Decimal),
        key().prop_map(Value::Link),
    ]
    .boxed()
}

const SCALAR_KINDS: [ScalarKind; 9] = [
    ScalarKind::Int,
    ScalarKind::Bool,
    ScalarKind::String,
    ScalarKind::Float,
    ScalarKind::Double,
    ScalarKind::Date,
    ScalarKind::Data,
    ScalarKind::ObjectId,
    ScalarKind::Decimal,
];

fn prop_type() -> BoxedStrategy<PropType> {
    let elem = prop_oneof![
        (prop::sample::select(SCALAR_KINDS.to_vec()), any::<bool>())
            .prop_map(|(kind, nullable)| ElemType::Scalar { kind, nullable }),
        any_string().prop_map(|target| ElemType::Link { target }),
    ];
    (elem, any::<bool>())
        .prop_map(|(elem, list)| PropType { elem, list })
        .boxed()
}

/// Type definitions as [`ObjectType::new`] builds them, with and without a primary key.
fn object_type() -> BoxedStrategy<ObjectType> {
    let pk_type = (
        prop::sample::select(vec![
            ScalarKind::Int,
            ScalarKind::String,
            ScalarKind::ObjectId,
        ]),
        any::<bool>(),
    )
        .prop_map(|(kind, nullable)| PropType::scalar(kind, nullable));
    (
        valid_name(),
        prop::option::of((valid_name(), pk_type)),
        prop::collection::vec((valid_name(), prop_type()), 0..6),
    )
        .prop_map(|(name, pk, props)| {
            let mut properties: Vec<Property> = Vec::new();
            for (n, ty) in pk.iter().cloned().chain(props) {
                if properties.iter().all(|p| p.name != n) {
                    properties.push(Property { name: n, ty });
                }
            }
            let pk_name = pk.as_ref().map(|(n, _)| &**n);
            ObjectType::new(&name, pk_name, properties).expect("a valid definition")
        })
        .boxed()
}

fn fate() -> impl Strategy<Value = Fate> {
    prop::sample::select(vec![Fate::Live, Fate::DeadLink, Fate::Dropped, Fate::Void])
}

fn u32_index() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..50, any::<u32>()]
}

fn instruction(finite_floats: bool) -> BoxedStrategy<Instruction> {
    let properties = prop::collection::vec(
        (any_string(), prop_type()).prop_map(|(name, ty)| Property { name, ty }),
        0..5,
    );
    prop_oneof![
        object_type().prop_map(Instruction::AddType),
        (any_string(), properties)
            .prop_map(|(ty, properties)| Instruction::AddProperties { ty, properties }),
        obj().prop_map(|obj| Instruction::Insert { obj }),
        (obj(), any_string(), value(finite_floats), any::<bool>()).prop_map(
            |(obj, prop, value, default)| Instruction::Set {
                obj,
                prop,
                value,
                default
            }
        ),
        (obj(), any_string(), small_or_any_i64())
            .prop_map(|(obj, prop, delta)| Instruction::AddInt { obj, prop, delta }),
        obj().prop_map(|obj| Instruction::Delete { obj }),
        (
            any_string(),
            prop_oneof![
                prop::collection::vec(key(), 0..8),
                prop::collection::vec(key(), 100..400)
            ]
        )
            .prop_map(|(ty, objects)| Instruction::Clear { ty, objects }),
        (
            obj(),
            any_string(),
            u32_index(),
            value(finite_floats),
            op_id(),
            place()
        )
            .prop_map(|(obj, prop, index, value, elem, place)| {
                Instruction::ListInsert {
                    obj,
                    prop,
                    index,
                    value,
                    elem,
                    place,
                }
            }),
        (
            obj(),
            any_string(),
            u32_index(),
            value(finite_floats),
            op_id()
        )
            .prop_map(|(obj, prop, index, value, elem)| Instruction::ListSet {
                obj,
                prop,
                index,
                value,
                elem
            }),
        (obj(), any_string(), u32_index(), op_id()).prop_map(|(obj, prop, index, elem)| {
            Instruction::ListErase {
                obj,
                prop,
                index,
                elem,
            }
        }),
        (
            obj(),
            any_string(),
            u32_index(),
            u32_index(),
            op_id(),
            op_id(),
            place()
        )
            .prop_map(|(obj, prop, from, to, elem, node, place)| {
                Instruction::ListMove {
                    obj,
                    prop,
                    from,
                    to,
                    elem,
                    node,
                    place,
                }
            }),
        (obj(), any_string()).prop_map(|(obj, prop)| Instruction::ListClear { obj, prop }),
    ]
    .boxed()
}

fn changeset_with(finite_floats: bool, max_ops: usize) -> BoxedStrategy<Changeset> {
    (
        small_or_any_u64(),
        small_or_any_u64(),
        small_or_any_u64(),
        small_or_any_u64(),
        prop::collection::vec(
            (instruction(finite_floats), fate()).prop_map(|(instr, fate)| Op { instr, fate }),
            0..max_ops,
        ),
    )
        .prop_map(|(origin, timestamp, cv, bv, ops)| Changeset {
            origin: PeerId(origin),
            timestamp,
            client_version: ClientVersion(cv),
            base_version: ServerVersion(bv),
            ops,
        })
        .boxed()
}

fn changeset() -> BoxedStrategy<Changeset> {
    changeset_with(false, 30)
}

/// A few random changesets from a fixed seed, for exhaustive per-byte tests.
fn sample_changesets(n: usize, max_ops: usize) -> Vec<Changeset> {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = changeset_with(false, max_ops);
    (0..n)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("strategy generates")
                .current()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A hand-built changeset holding every variant at its edges.

fn id(peer: u64, seq: u64) -> OpId {
    OpId {
        peer: PeerId(peer),
        seq,
    }
}

fn kitchen_sink() -> Changeset {
    let mut values = vec![
        Value::Null,
        Value::Int(0),
        Value::Int(i64::MIN),
        Value::Int(i64::MAX),
        Value::Bool(false),
        Value::Bool(true),
        Value::String("".into()),
        Value::String("é ✓ 𝄞 \0 \u{7f}".into()),
        Value::String("x".repeat(100_000).into()),
        Value::Date(-1),
        Value::Data(Arc::from(&[][..])),
        Value::Data((0..=255u8).collect::<Vec<_>>().into()),
        Value::ObjectId(ObjectId([0xab; 12])),
        Value::Decimal(Decimal128::nan()),
        Value::Decimal(Decimal128::infinity(false)),
        Value::Decimal(Decimal128::infinity(true)),
        Value::Decimal(Decimal128::zero()),
        Value::Decimal(Decimal128::parse("-0").expect("decimal")),
        Value::Decimal(Decimal128::parse("1.50").expect("decimal")),
        Value::Decimal(
            Decimal128::from_parts(true, Decimal128::MAX_COEFFICIENT, Decimal128::MIN_EXPONENT)
                .expect("decimal"),
        ),
        Value::Decimal(
            Decimal128::from_parts(false, 1, Decimal128::MAX_EXPONENT).expect("decimal"),
        ),
        Value::Link(ObjKey::Null),
        Value::Link(ObjKey::Int(-7)),
        Value::Link(ObjKey::String("target".into())),
        Value::Link(ObjKey::ObjectId(ObjectId([1; 12]))),
        Value::Link(ObjKey::Engine(id(u64::MAX, u64::MAX))),
    ];
    values.extend(SPECIAL_F32.iter().map(|&b| Value::Float(f32::from_bits(b))));
    values.extend(
        SPECIAL_F64
            .iter()
            .map(|&b| Value::Double(f64::from_bits(b))),
    );

    let person = ObjectType::new(
        "Person",
        Some("id"),
        [
            Property::new("id", PropType::scalar(ScalarKind::ObjectId, true)),
            Property::new("name", PropType::parse("string?").expect("type")),
            Property::new(
                "friends",
                PropType::parse("list<link<Person>>").expect("type"),
            ),
            Property::new("best", PropType::link("Person")),
            Property::new("scores", PropType::parse("list<decimal?>").expect("type")),
        ],
    )
    .expect("definition");
    let engine = ObjectType::new(
        "Note",
        None,
        [Property::new(
            "text",
            PropType::parse("string").expect("type"),
        )],
    )
    .expect("definition");
    let every_prop_type: Vec<Property> = SCALAR_KINDS
        .iter()
        .flat_map(|&kind| {
            [false, true].into_iter().flat_map(move |nullable| {
                [false, true].into_iter().map(move |list| {
                    Property::new(
                        &format!("{}{nullable}{list}", kind.name()),
                        PropType {
                            elem: ElemType::Scalar { kind, nullable },
                            list,
                        },
                    )
                })
            })
        })
        .chain([
            Property::new("l", PropType::link("Dog")),
            Property::new(
                "ll",
                PropType::list_of(ElemType::Link { target: "".into() }),
            ),
        ])
        .collect();

    let obj = ObjRef::new("Person", ObjKey::ObjectId(ObjectId([7; 12])));
    let mut instrs = vec![
        Instruction::AddType(person),
        Instruction::AddType(engine),
        Instruction::AddProperties {
            ty: "Dog".into(),
            properties: every_prop_type,
        },
        Instruction::AddProperties {
            ty: "Dog".into(),
            properties: vec![],
        },
        Instruction::Insert {
            obj: ObjRef::new("Note", ObjKey::Engine(id(3, 1))),
        },
        Instruction::Insert {
            obj: ObjRef::new("Person", ObjKey::Null),
        },
        Instruction::AddInt {
            obj: ObjRef::new("Counter", i64::MIN),
            prop: "n".into(),
            delta: i64::MIN,
        },
        Instruction::Delete {
            obj: ObjRef::new("Person", "ada"),
        },
        Instruction::Clear {
            ty: "Person".into(),
            objects: (0..5000).map(ObjKey::Int).collect(),
        },
        Instruction::Clear {
            ty: "Note".into(),
            objects: vec![],
        },
        Instruction::ListErase {
            obj: obj.clone(),
            prop: "friends".into(),
            index: u32::MAX,
            elem: id(1, 2),
        },
        Instruction::ListMove {
            obj: obj.clone(),
            prop: "friends".into(),
            from: 0,
            to: u32::MAX,
            elem: id(1, 2),
            node: id(2, 9),
            place: Place {
                parent: None,
                side: Side::Right,
            },
        },
        Instruction::ListClear {
            obj: obj.clone(),
            prop: "friends".into(),
        },
    ];
    for (i, v) in values.into_iter().enumerate() {
        let i = i as u32;
        let place = Place {
            parent: (i % 2 == 0).then(|| id(1, u64::from(i))),
            side: if i % 3 == 0 { Side::Left } else { Side::Right },
        };
        instrs.push(Instruction::Set {
            obj: obj.clone(),
            prop: "name".into(),
            value: v.clone(),
            default: i % 2 == 1,
        });
        instrs.push(Instruction::ListInsert {
            obj: obj.clone(),
            prop: "scores".into(),
            index: i,
            value: v.clone(),
            elem: id(5, u64::from(i)),
            place,
        });
        instrs.push(Instruction::ListSet {
            obj: obj.clone(),
            prop: "scores".into(),
            index: i,
            value: v,
            elem: id(5, u64::from(i)),
        });
    }
    let fates = [Fate::Live, Fate::DeadLink, Fate::Dropped, Fate::Void];
    Changeset {
        origin: PeerId(u64::MAX),
        timestamp: 1_700_000_000_000,
        client_version: ClientVersion(0),
        base_version: ServerVersion(u64::MAX),
        ops: instrs
            .into_iter()
            .enumerate()
            .map(|(i, instr)| Op {
                instr,
                fate: fates[i % 4],
            })
            .collect(),
    }
}

/// Changesets whose encodings the exhaustive per-byte tests walk.
fn fixtures() -> Vec<Changeset> {
    let mut small = Changeset::new(PeerId(1), 2);
    small.ops.push(Op::live(Instruction::Set {
        obj: ObjRef::new("Person", 1),
        prop: "name".into(),
        value: Value::Decimal(Decimal128::parse("-12.5E-3").expect("decimal")),
        default: false,
    }));
    let mut out = vec![Changeset::new(PeerId(0), 0), small];
    out.extend(sample_changesets(6, 12));
    out
}

fn assert_round_trip(cs: &Changeset) -> Result<(), TestCaseError> {
    let bytes = encode(cs);
    prop_assert_eq!(decode(&bytes), Ok(cs.clone()));
    let mut appended = vec![0xee; 3];
    encode_into(cs, &mut appended);
    prop_assert_eq!(&appended[..3], &[0xee; 3]);
    prop_assert_eq!(&appended[3..], &bytes[..]);
    Ok(())
}

// ---------------------------------------------------------------------------------------------

#[test]
fn every_variant_round_trips() {
    let cs = kitchen_sink();
    let kinds: std::collections::BTreeSet<_> = cs.ops.iter().map(|op| op.instr.kind()).collect();
    assert_eq!(kinds.len(), objsync::Kind::ALL.len());
    assert_round_trip(&cs).expect("round trip");
    let bytes = encode(&cs);
    assert_eq!(&bytes[..4], b"OSC\x01");
    assert_eq!(bytes[3], FORMAT_VERSION);
    // The 100,000-byte string is written once although three instructions use it.
    assert!(bytes.len() < 120_000, "{} bytes", bytes.len());
}

#[test]
fn every_truncation_is_a_typed_error() {
    let mut fixtures = fixtures();
    // The kitchen sink is large; its prefixes are walked with a stride plus every cut near the
    // start and the end, where the header and the last op are.
    let sink = encode(&kitchen_sink());
    let mut checked = 0;
    for cs in fixtures.drain(..) {
        let bytes = encode(&cs);
        for len in 0..bytes.len() {
            check_truncation(&bytes, len);
            checked += 1;
        }
    }
    let n = sink.len();
    for len in (0..n).filter(|&l| l < 2000 || l > n - 2000 || l % 97 == 0) {
        check_truncation(&sink, len);
        checked += 1;
    }
    assert!(checked > 5000, "only {checked} prefixes checked");
}

fn check_truncation(bytes: &[u8], len: usize) {
    let prefix = &bytes[..len];
    match decode(prefix) {
        // A prefix reads exactly like the full input until it runs out, so running out is the
        // only possible complaint.
        Err(DecodeError::Truncated { offset, .. } | DecodeError::CountTooLarge { offset, .. }) => {
            assert!(offset <= len, "offset {offset} past a {len}-byte prefix")
        }
        other => panic!("prefix of {len} bytes of {}: {other:?}", bytes.len()),
    }
}

#[test]
fn huge_counts_fail_fast_without_allocating() {
    let header = |strings: &[u8]| {
        let mut b = b"OSC\x01\x01\x02\x03\x04".to_vec();
        b.extend_from_slice(strings);
        b
    };
    // 2^60 as a varint.
    let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10];
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    cases.push(("string count", header(&huge)));
    let mut ops = header(&[0]);
    ops.extend_from_slice(&huge);
    ops.extend_from_slice(&[0; 64]);
    cases.push(("op count", ops));
    let mut long_string = header(&[1]);
    long_string.extend_from_slice(&huge);
    long_string.extend_from_slice(b"abc");
    cases.push(("string length", long_string));
    let with_op = |op: &[u8]| {
        let mut b = header(&[1, 1, b'T', 1]);
        b.extend_from_slice(op);
        b.extend_from_slice(&[0; 32]);
        b
    };
    let mut clear = vec![6, 0];
    clear.extend_from_slice(&huge);
    cases.push(("cleared objects", with_op(&clear)));
    let mut add_props = vec![1, 0];
    add_props.extend_from_slice(&huge);
    cases.push(("properties", with_op(&add_props)));
    let mut add_type = vec![0, 0, 0];
    add_type.extend_from_slice(&huge);
    cases.push(("type properties", with_op(&add_type)));
    let mut data = vec![3, 0, 0, 0, 7];
    data.extend_from_slice(&huge);
    cases.push(("data length", with_op(&data)));
    // u64::MAX counts too.
    let mut max = header(&[0]);
    max.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    cases.push(("u64::MAX op count", max));

    for (what, bytes) in cases {
        let (result, allocated) = allocated_by(|| decode(&bytes));
        let err = result.expect_err(what);
        assert!(
            matches!(
                err,
                DecodeError::CountTooLarge { .. } | DecodeError::Truncated { .. }
            ),
            "{what}: {err:?}"
        );
        // A small string table, a boxed error message at most; nothing proportional to 2^60.
        assert!(allocated < 1024, "{what}: allocated {allocated} bytes");
    }
}

#[test]
fn decoded_memory_is_bounded_by_input_length() {
    // The worst case for the count checks: a maximal op count of minimal ops (Insert of a null
    // key, 3 bytes each), so the reserved Vec<Op> is as large as the input allows.
    let n = 10_000usize;
    let mut b = b"OSC\x01\x00\x00\x00\x00\x01\x01T".to_vec();
    b.extend_from_slice(&[0x90, 0x4e]); // 10_000
    for _ in 0..n {
        b.extend_from_slice(&[2, 0, 0]);
    }
    let (cs, allocated) = allocated_by(|| decode(&b));
    assert_eq!(cs.expect("decodes").ops.len(), n);
    // The ops vector, at most one Op per 3 input bytes, and a little for the string table.
    let bound = b.len() / 3 * std::mem::size_of::<Op>() + 1024;
    assert!(
        allocated <= bound,
        "{allocated} bytes allocated for {} input bytes (bound {bound})",
        b.len()
    );
}

#[test]
fn encoding_is_compact() {
    // 1000 Sets of small ints on one type and property, keys 0..1000. Per op: tag 1, type
    // index 1, key tag 1, key zigzag varint <= 2 (|k| < 8192), property index 1, value tag 1,
    // value zigzag varint 1 (|v| < 64) = at most 8 bytes. Fixed part: magic and version 4,
    // four one-byte header varints 4, string table 1 + (1 + 6) + (1 + 3), op count 2 = 22.
    let mut cs = Changeset::new(PeerId(1), 2);
    for i in 0..1000i64 {
        cs.ops.push(Op::live(Instruction::Set {
            obj: ObjRef::new("Person", i),
            prop: "age".into(),
            value: Value::Int(i % 64 - 32),
            default: false,
        }));
    }
    let bytes = encode(&cs);
    assert!(bytes.len() <= 22 + 1000 * 8, "{} bytes", bytes.len());
    assert_eq!(decode(&bytes), Ok(cs.clone()));

    // Keys below 64 need one byte less.
    for (i, op) in cs.ops.iter_mut().enumerate() {
        if let Instruction::Set { obj, .. } = &mut op.instr {
            obj.key = ObjKey::Int(i as i64 % 64);
        }
    }
    assert!(encode(&cs).len() <= 22 + 1000 * 7);

    // A repeated string value is written once: 1000 Sets of the same 1 KiB string cost little
    // more than 1000 Sets of an int.
    let long: Arc<str> = "y".repeat(1024).into();
    for op in &mut cs.ops {
        if let Instruction::Set { value, .. } = &mut op.instr {
            *value = Value::String(long.clone());
        }
    }
    assert!(encode(&cs).len() <= 22 + 1026 + 1000 * 7);

    // List inserts at the end of a list: tag, obj (3), property, index (<= 2), value (2),
    // element id (peer 1 + seq <= 2), place (byte + parent id of <= 3) = at most 16 bytes.
    let mut cs = Changeset::new(PeerId(1), 2);
    for i in 0..1000u32 {
        cs.ops.push(Op::live(Instruction::ListInsert {
            obj: ObjRef::new("Person", 1),
            prop: "tags".into(),
            index: i,
            value: Value::Int(1),
            elem: id(1, u64::from(i) + 1),
            place: Place {
                parent: (i > 0).then(|| id(1, u64::from(i))),
                side: Side::Right,
            },
        }));
    }
    assert!(encode(&cs).len() <= 22 + 1000 * 16);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), ..ProptestConfig::default() })]

    #[test]
    fn random_changesets_round_trip(cs in changeset()) {
        assert_round_trip(&cs)?;
    }

    #[test]
    fn json_form_round_trips(cs in changeset_with(true, 30)) {
        let text = serde_json::to_string(&cs).expect("serializes");
        let back: Changeset = serde_json::from_str(&text).expect("deserializes");
        prop_assert_eq!(&back, &cs);
        prop_assert_eq!(serde_json::to_string(&back).expect("serializes"), text);
    }
}

#[derive(Debug, Clone)]
enum Corruption {
    Flip(prop::sample::Index, u8),
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    let at = any::<prop::sample::Index>;
    prop_oneof![
        (at(), 0u8..8).prop_map(|(i, bit)| Corruption::Flip(i, 1 << bit)),
        (
            at(),
            prop_oneof![Just(0u8), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()]
        )
            .prop_map(|(i, b)| Corruption::Set(i, b)),
        (at(), any::<u8>()).prop_map(|(i, b)| Corruption::Insert(i, b)),
        at().prop_map(Corruption::Delete),
    ]
}

fn corrupt(mut bytes: Vec<u8>, corruptions: &[Corruption]) -> Vec<u8> {
    for c in corruptions {
        match c {
            Corruption::Insert(at, b) => {
                let i = at.index(bytes.len() + 1);
                bytes.insert(i, *b);
            }
            _ if bytes.is_empty() => {}
            Corruption::Flip(at, mask) => {
                let i = at.index(bytes.len());
                bytes[i] ^= mask;
            }
            Corruption::Set(at, b) => {
                let i = at.index(bytes.len());
                bytes[i] = *b;
            }
            Corruption::Delete(at) => {
                let i = at.index(bytes.len());
                bytes.remove(i);
            }
        }
    }
    bytes
}

/// Whatever decodes is a changeset like any other: it re-encodes and decodes to itself. Errors
/// point into the input.
fn check_arbitrary(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes) {
        Ok(cs) => {
            let again = encode(&cs);
            prop_assert_eq!(decode(&again), Ok(cs));
        }
        Err(e) => {
            prop_assert!(
                e.offset() <= bytes.len(),
                "{:?} for {} bytes",
                e,
                bytes.len()
            );
            prop_assert!(!e.to_string().is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(5000), ..ProptestConfig::default() })]

    #[test]
    fn corrupted_encodings_never_panic(
        cs in changeset_with(false, 8),
        corruptions in prop::collection::vec(corruption(), 1..4),
    ) {
        let bytes = corrupt(encode(&cs), &corruptions);
        check_arbitrary(&bytes)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_arbitrary(&bytes)?;
    }

    #[test]
    fn arbitrary_bodies_never_panic(
        // A valid header and small bytes (the ones tags, indices and counts are made of) get the
        // decoder deep into ops.
        strings in prop::collection::vec("[a-z]{0,3}", 12..17),
        body in prop::collection::vec(
            prop_oneof![6 => 0u8..16, 1 => any::<u8>()],
            0..256,
        ),
    ) {
        let mut bytes = b"OSC\x01\x01\x02\x03\x04".to_vec();
        bytes.push(strings.len() as u8);
        for s in &strings {
            bytes.push(s.len() as u8);
            bytes.extend_from_slice(s.as_bytes());
        }
        bytes.extend_from_slice(&body);
        check_arbitrary(&bytes)?;
    }
}

#[test]
fn every_single_byte_corruption_of_fixtures_is_handled() {
    // Exhaustive over positions for the small fixtures: each byte replaced by a few values that
    // sit on format boundaries.
    let mut decoded = 0usize;
    let mut refused = 0usize;
    for cs in fixtures() {
        let bytes = encode(&cs);
        for i in 0..bytes.len() {
            for b in [0x00, 0x01, 0x0f, 0x10, 0x3f, 0x7f, 0x80, 0xff] {
                let mut c = bytes.clone();
                c[i] = b;
                match decode(&c) {
                    Ok(cs) => {
                        assert_eq!(decode(&encode(&cs)), Ok(cs));
                        decoded += 1;
                    }
                    Err(e) => {
                        assert!(e.offset() <= c.len());
                        refused += 1;
                    }
                }
            }
        }
    }
    assert!(
        decoded > 0 && refused > 0,
        "{decoded} decoded, {refused} refused"
    );
}
