use super::*;
use crate::model::{
    Decimal128, DecimalError, Instruction, ObjRef, Op, OpId, PropType, Property, Value,
};
use crate::wire::varint::{put_u128, unzigzag, zigzag};
use std::sync::Arc;

fn header(strings: &[&str], ops: u64) -> Vec<u8> {
    let mut b = b"OSC\x01\x07\x08\x09\x0a".to_vec();
    put_len(&mut b, strings.len());
    for s in strings {
        put_len(&mut b, s.len());
        b.extend_from_slice(s.as_bytes());
    }
    put_u64(&mut b, ops);
    b
}

fn sample() -> Changeset {
    let mut cs = Changeset::new(PeerId(7), 8);
    cs.client_version = ClientVersion(9);
    cs.base_version = ServerVersion(10);
    cs
}

#[test]
fn golden_bytes() {
    let mut cs = sample();
    cs.ops.push(Op::live(Instruction::Set {
        obj: ObjRef::new("Person", 300),
        prop: "age".into(),
        value: Value::Int(-2),
        default: true,
    }));
    cs.ops.push(Op {
        instr: Instruction::ListErase {
            obj: ObjRef::new("Person", "ada"),
            prop: "tags".into(),
            index: 1,
            elem: OpId {
                peer: PeerId(2),
                seq: 129,
            },
        },
        fate: Fate::Void,
    });
    let mut expected = header(&["Person", "age", "ada", "tags"], 2);
    expected.extend_from_slice(&[
        0x43, // Set | Live | default
        0, 1, 0xd8, 0x04, // Person, int key 300 (zigzag 600)
        1,    // age
        1, 3,    // int -2 (zigzag 3)
        0x39, // ListErase | Void
        0, 2, 2, // Person, string key "ada"
        3, 1, // tags, index 1
        2, 0x81, 0x01, // elem 2:129
    ]);
    let bytes = encode(&cs);
    assert_eq!(bytes, expected);
    assert_eq!(decode(&bytes), Ok(cs));
}

#[test]
fn varint_limits() {
    for v in [0, 1, 127, 128, 300, u64::MAX >> 1, u64::MAX] {
        let mut b = Vec::new();
        put_u64(&mut b, v);
        let mut r = Reader {
            bytes: &b,
            pos: 0,
            strings: Vec::new(),
        };
        assert_eq!(r.u64("test"), Ok(v));
        assert_eq!(r.pos, b.len());
    }
    for v in [0, 1, -1, i64::MIN, i64::MAX] {
        assert_eq!(unzigzag(zigzag(v)), v);
    }
    let read = |b: &[u8]| {
        Reader {
            bytes: b,
            pos: 0,
            strings: Vec::new(),
        }
        .u64("test")
    };
    // u64::MAX is nine 0xff bytes and a final 0x01; 0x02 there would be bit 64.
    let mut max = vec![0xff; 9];
    max.push(0x01);
    assert_eq!(read(&max), Ok(u64::MAX));
    max[9] = 0x02;
    assert!(matches!(
        read(&max),
        Err(DecodeError::VarintOverflow { offset: 0, .. })
    ));
    assert!(matches!(
        read(&[0xff; 11]),
        Err(DecodeError::VarintOverflow { offset: 0, .. })
    ));
    assert!(matches!(
        read(&[0x80, 0x00]),
        Err(DecodeError::VarintNotMinimal { offset: 0, .. })
    ));
    assert!(matches!(
        read(&[0x80, 0x80]),
        Err(DecodeError::Truncated { offset: 0, .. })
    ));
}

#[test]
fn header_errors() {
    assert_eq!(
        decode(b""),
        Err(DecodeError::Truncated {
            offset: 0,
            what: "magic bytes"
        })
    );
    assert_eq!(
        decode(b"OS"),
        Err(DecodeError::Truncated {
            offset: 0,
            what: "magic bytes"
        })
    );
    assert_eq!(
        decode(b"OSX\x01"),
        Err(DecodeError::BadMagic {
            what: "an encoded changeset",
            expected: "OSC",
            found: b"OSX".to_vec()
        })
    );
    assert_eq!(
        decode(b"{\"origin\""),
        Err(DecodeError::BadMagic {
            what: "an encoded changeset",
            expected: "OSC",
            found: b"{\"o".to_vec()
        })
    );
    assert_eq!(
        decode(b"OSC\x02"),
        Err(DecodeError::UnsupportedVersion {
            version: 2,
            supported: 1
        })
    );
    let mut b = encode(&sample());
    assert_eq!(decode(&b), Ok(sample()));
    b.push(0);
    assert_eq!(
        decode(&b),
        Err(DecodeError::TrailingBytes {
            offset: b.len() - 1,
            count: 1
        })
    );
}

#[test]
fn structural_errors_name_the_offset() {
    let base = header(&["T", "p"], 1);
    let at = base.len();
    // Padding keeps the op count plausible; every error below comes before it.
    let with = |tail: &[u8]| {
        let mut b = base.clone();
        b.extend_from_slice(tail);
        b.extend_from_slice(&[0; 8]);
        decode(&b)
    };
    assert_eq!(
        with(&[0x0c]),
        Err(DecodeError::UnknownTag {
            offset: at,
            what: "instruction",
            tag: 0x0c
        })
    );
    // The default flag belongs to Set only.
    assert!(matches!(
        with(&[0x42, 0, 0]),
        Err(DecodeError::UnknownTag { .. })
    ));
    assert_eq!(
        with(&[INSERT, 5, 0]),
        Err(DecodeError::StringIndexOutOfRange {
            offset: at + 1,
            index: 5,
            len: 2
        })
    );
    assert_eq!(
        with(&[INSERT, 0, 9]),
        Err(DecodeError::UnknownTag {
            offset: at + 2,
            what: "key",
            tag: 9
        })
    );
    assert_eq!(
        with(&[SET, 0, 0, 1, VAL_BOOL, 2]),
        Err(DecodeError::UnknownTag {
            offset: at + 5,
            what: "bool",
            tag: 2
        })
    );
    assert!(matches!(
        with(&[LIST_ERASE, 0, 0, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 1]),
        Err(DecodeError::IntegerOutOfRange { offset, .. }) if offset == at + 4
    ));
    assert!(matches!(
        with(&[LIST_INSERT, 0, 0, 1, 0, 0, 1, 1, 0x04]),
        Err(DecodeError::UnknownTag { what: "place", .. })
    ));
    // 10^34 as a coefficient.
    let mut tail = vec![SET, 0, 0, 1, VAL_DECIMAL, DEC_FINITE];
    put_u128(&mut tail, Decimal128::MAX_COEFFICIENT + 1);
    tail.push(0);
    assert!(matches!(
        with(&tail),
        Err(DecodeError::InvalidDecimal {
            offset,
            source: DecimalError::CoefficientOutOfRange { .. }
        }) if offset == at + 5
    ));
    let mut tail = vec![SET, 0, 0, 1, VAL_DECIMAL, DEC_FINITE, 1];
    put_u64(&mut tail, zigzag(i64::from(i32::MAX) + 1));
    assert!(matches!(
        with(&tail),
        Err(DecodeError::InvalidDecimal {
            source: DecimalError::ExponentOutOfRange { .. },
            ..
        })
    ));
    assert!(matches!(
        with(&[ADD_PROPERTIES, 0, 1, 1, 0x19]),
        Err(DecodeError::InvalidPropertyType { byte: 0x19, .. })
    ));
    assert!(matches!(
        with(&[ADD_PROPERTIES, 0, 1, 1, 0x0a]),
        Err(DecodeError::InvalidPropertyType { byte: 0x0a, .. })
    ));
    assert!(matches!(
        with(&[ADD_PROPERTIES, 0, 1, 1, 0x40]),
        Err(DecodeError::InvalidPropertyType { byte: 0x40, .. })
    ));
    assert!(matches!(
        with(&[CLEAR, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]),
        Err(DecodeError::CountTooLarge { count, .. }) if count == 1 << 62
    ));
}

#[test]
fn invalid_utf8_is_located() {
    let mut b = b"OSC\x01\x00\x00\x00\x00\x01\x03a".to_vec();
    b.extend_from_slice(&[0xc3, 0x28, 0x00]);
    assert_eq!(decode(&b), Err(DecodeError::InvalidUtf8 { offset: 11 }));
}

#[test]
fn type_definitions_are_checked() {
    let base = header(&["T", "id", "x", ""], 1);
    let at = base.len();
    let def = |pk: u8, props: &[u8]| {
        let mut b = base.clone();
        b.extend_from_slice(&[ADD_TYPE, 0, pk]);
        b.extend_from_slice(props);
        decode(&b)
    };
    // T with int primary key "id".
    let ok = def(2, &[1, 1, 0]).expect("valid definition");
    let Instruction::AddType(t) = &ok.ops[0].instr else {
        panic!("not an AddType: {ok:?}");
    };
    assert_eq!(t.primary_key.as_deref(), Some("id"));
    // Primary key not among the properties.
    assert!(matches!(
        def(3, &[1, 1, 0]),
        Err(DecodeError::InvalidObjectType { offset, .. }) if offset == at + 1
    ));
    // A bool primary key.
    assert!(matches!(
        def(2, &[1, 1, 1]),
        Err(DecodeError::InvalidObjectType { .. })
    ));
    // An empty property name.
    assert!(matches!(
        def(0, &[1, 3, 0]),
        Err(DecodeError::InvalidObjectType { .. })
    ));
    // The same property twice, even identically.
    assert!(matches!(
        def(0, &[2, 2, 0, 2, 0]),
        Err(DecodeError::InvalidObjectType { .. })
    ));
    // The pk index is checked against the table.
    assert!(matches!(
        def(9, &[0]),
        Err(DecodeError::StringIndexOutOfRange { index: 8, .. })
    ));
}

#[test]
fn scalar_link_is_refused_not_misread() {
    let mut cs = sample();
    cs.ops.push(Op::live(Instruction::AddProperties {
        ty: "T".into(),
        properties: vec![Property::new(
            "p",
            PropType::scalar(ScalarKind::Link, false),
        )],
    }));
    assert!(matches!(
        decode(&encode(&cs)),
        Err(DecodeError::InvalidPropertyType { byte: 0x0f, .. })
    ));
}

#[test]
fn encode_into_appends() {
    let mut out = b"xy".to_vec();
    encode_into(&sample(), &mut out);
    assert_eq!(&out[..2], b"xy");
    assert_eq!(decode(&out[2..]), Ok(sample()));
}

#[test]
fn names_keep_a_bounded_number_of_short_names() {
    let mut names = Names::default();
    let long = "x".repeat(Names::MAX_LEN + 1);
    let a = names.share(&long);
    assert!(
        !Arc::ptr_eq(&a, &names.share(&long)),
        "a long name is not kept"
    );
    let first = names.share("n0");
    assert!(Arc::ptr_eq(&first, &names.share("n0")));
    for i in 1..Names::MAX + 10 {
        names.share(&format!("n{i}"));
    }
    assert_eq!(names.set.len(), Names::MAX);
    let past = format!("n{}", Names::MAX + 5);
    assert!(!Arc::ptr_eq(&names.share(&past), &names.share(&past)));
    assert!(Arc::ptr_eq(&first, &names.share("n0")), "kept names stay");
}
