use super::*;
use proptest::prelude::*;
use std::collections::HashSet;

fn d(s: &str) -> Decimal128 {
    Decimal128::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn parts(negative: bool, coefficient: u128, exponent: i32) -> Decimal128 {
    Decimal128::from_parts(negative, coefficient, exponent).unwrap()
}

fn finite(negative: bool, coefficient: u128, exponent: i32) -> DecimalKind {
    DecimalKind::Finite {
        negative,
        coefficient,
        exponent,
    }
}

#[test]
fn constants_and_constructors() {
    assert_eq!(Decimal128::MAX_COEFFICIENT, 10u128.pow(34) - 1);
    assert_eq!(Decimal128::MIN_EXPONENT, -6176);
    assert_eq!(Decimal128::MAX_EXPONENT, 6111);
    assert_eq!(Decimal128::zero().kind(), finite(false, 0, 0));
    assert_eq!(Decimal128::default(), Decimal128::zero());
    assert_eq!(Decimal128::nan().kind(), DecimalKind::NaN);
    assert!(Decimal128::nan().is_nan());
    assert!(!Decimal128::zero().is_nan());
    assert_eq!(
        Decimal128::infinity(true).kind(),
        DecimalKind::Infinity { negative: true }
    );
    assert_eq!(
        Decimal128::from_parts(true, Decimal128::MAX_COEFFICIENT, Decimal128::MIN_EXPONENT)
            .unwrap()
            .kind(),
        finite(true, Decimal128::MAX_COEFFICIENT, -6176)
    );
}

#[test]
fn display_examples() {
    let cases: &[(bool, u128, i32, &str)] = &[
        (false, 5, -3, "0.005"),
        (false, 150, -2, "1.50"),
        (false, 0, -2, "0.00"),
        (false, 123, 3, "1.23E+5"),
        (false, 1, 2, "1E+2"),
        (false, 1, -7, "1E-7"),
        (false, 1, -6, "0.000001"),
        (false, 0, 0, "0"),
        (true, 0, 0, "-0"),
        (true, 0, -1, "-0.0"),
        (false, 0, 3, "0E+3"),
        (false, 0, -6, "0.000000"),
        (false, 0, -7, "0E-7"),
        (false, 0, -8, "0E-8"),
        (false, 123, 0, "123"),
        (true, 123, -1, "-12.3"),
        (false, 123, -3, "0.123"),
        (false, 123, -5, "0.00123"),
        (false, 123, -8, "0.00000123"),
        (false, 123, -9, "1.23E-7"),
        (false, 123, 1, "1.23E+3"),
        (false, 1, -6176, "1E-6176"),
        (false, 1, 6111, "1E+6111"),
        (
            true,
            Decimal128::MAX_COEFFICIENT,
            6111,
            "-9.999999999999999999999999999999999E+6144",
        ),
        (
            false,
            Decimal128::MAX_COEFFICIENT,
            -6176,
            "9.999999999999999999999999999999999E-6143",
        ),
        (
            false,
            Decimal128::MAX_COEFFICIENT,
            -33,
            "9.999999999999999999999999999999999",
        ),
        (
            false,
            Decimal128::MAX_COEFFICIENT,
            -39,
            "0.000009999999999999999999999999999999999",
        ),
    ];
    for &(negative, coefficient, exponent, text) in cases {
        let value = parts(negative, coefficient, exponent);
        assert_eq!(
            value.to_string(),
            text,
            "{negative} {coefficient} {exponent}"
        );
        assert_eq!(Decimal128::parse(text), Ok(value), "{text}");
    }
    assert_eq!(Decimal128::nan().to_string(), "NaN");
    assert_eq!(Decimal128::infinity(false).to_string(), "Infinity");
    assert_eq!(Decimal128::infinity(true).to_string(), "-Infinity");
}

#[test]
fn display_honors_width_and_alignment() {
    assert_eq!(format!("{:>6}", d("1.5")), "   1.5");
    assert_eq!(format!("{:*<5}", Decimal128::nan()), "NaN**");
}

#[test]
fn parse_examples() {
    let cases: &[(&str, DecimalKind)] = &[
        ("1.50", finite(false, 150, -2)),
        ("1.5", finite(false, 15, -1)),
        ("+1.5", finite(false, 15, -1)),
        ("-1.5", finite(true, 15, -1)),
        ("1.", finite(false, 1, 0)),
        (".5", finite(false, 5, -1)),
        ("-.5e1", finite(true, 5, 0)),
        ("0", finite(false, 0, 0)),
        ("-0", finite(true, 0, 0)),
        ("000", finite(false, 0, 0)),
        ("0.000", finite(false, 0, -3)),
        ("007.10", finite(false, 710, -2)),
        ("100", finite(false, 100, 0)),
        ("1E+2", finite(false, 1, 2)),
        ("1e2", finite(false, 1, 2)),
        ("1.23E+5", finite(false, 123, 3)),
        ("12.5e-3", finite(false, 125, -4)),
        ("1E-7", finite(false, 1, -7)),
        ("0E+3", finite(false, 0, 3)),
        (
            "1e0000000000000000000000000000000000000000005",
            finite(false, 1, 5),
        ),
        ("1E+6111", finite(false, 1, 6111)),
        ("1E-6176", finite(false, 1, -6176)),
        // The fraction digits pull an exponent that alone is out of range back into it.
        ("0.001E+6114", finite(false, 1, 6111)),
        (
            "9999999999999999999999999999999999",
            finite(false, Decimal128::MAX_COEFFICIENT, 0),
        ),
        (
            "0000000000000000000000000000000000000000.9999999999999999999999999999999999",
            finite(false, Decimal128::MAX_COEFFICIENT, -34),
        ),
    ];
    for (text, kind) in cases {
        assert_eq!(d(text).kind(), *kind, "{text}");
        assert_eq!(text.parse::<Decimal128>().map(|v| v.kind()), Ok(*kind));
    }
    // Thousands of leading fraction zeros are fine when the exponent makes up for them.
    let long = format!("0.{}1E+9000", "0".repeat(9999));
    assert_eq!(d(&long).kind(), finite(false, 1, -1000));
}

#[test]
fn parse_special_values_in_any_case() {
    for text in ["NaN", "nan", "NAN", "nAn"] {
        assert_eq!(d(text), Decimal128::nan(), "{text}");
    }
    for text in [
        "Infinity",
        "infinity",
        "INFINITY",
        "Inf",
        "inf",
        "+INF",
        "+iNfInItY",
    ] {
        assert_eq!(d(text), Decimal128::infinity(false), "{text}");
    }
    for text in ["-Infinity", "-inf", "-INF", "-InFiNiTy"] {
        assert_eq!(d(text), Decimal128::infinity(true), "{text}");
    }
}

#[test]
fn error_empty() {
    assert_eq!(Decimal128::parse(""), Err(DecimalError::Empty));
    assert_eq!(
        DecimalError::Empty.to_string(),
        "empty string is not a decimal"
    );
}

#[test]
fn error_invalid_character() {
    let cases: &[(&str, char, usize)] = &[
        (" 1", ' ', 0),
        ("1 ", ' ', 1),
        ("\t1", '\t', 0),
        ("1.2.3", '.', 3),
        ("--1", '-', 1),
        ("+-1", '-', 1),
        ("1x", 'x', 1),
        ("0x10", 'x', 1),
        ("1_000", '_', 1),
        ("1,5", ',', 1),
        ("é", 'é', 0),
        ("-1é", 'é', 2),
        ("1e5.0", '.', 3),
        ("1e+-5", '-', 3),
        ("1e5e5", 'e', 3),
        ("1ee5", 'e', 2),
        ("1e 5", ' ', 2),
        ("1e5 ", ' ', 3),
        ("1e５", '５', 2),
        ("١", '١', 0),
        ("nana", 'n', 0),
        ("Infinit", 'I', 0),
        ("-NaNx", 'N', 1),
        ("1e-2147483648.", '.', 13),
    ];
    for &(text, character, position) in cases {
        assert_eq!(
            Decimal128::parse(text),
            Err(DecimalError::InvalidCharacter {
                character,
                position
            }),
            "{text:?}"
        );
    }
    assert_eq!(
        DecimalError::InvalidCharacter {
            character: 'x',
            position: 1
        }
        .to_string(),
        "invalid character 'x' at byte 1 of decimal"
    );
}

#[test]
fn error_missing_digits() {
    for text in ["+", "-", ".", "-.", "+.", "e5", ".e5", "-E-5"] {
        assert_eq!(
            Decimal128::parse(text),
            Err(DecimalError::MissingDigits),
            "{text:?}"
        );
    }
    assert_eq!(
        DecimalError::MissingDigits.to_string(),
        "decimal has no digits"
    );
}

#[test]
fn error_missing_exponent_digits() {
    for text in ["1e", "1E", "1e+", "1E-", ".5e", "1.e-"] {
        assert_eq!(
            Decimal128::parse(text),
            Err(DecimalError::MissingExponentDigits),
            "{text:?}"
        );
    }
    assert!(DecimalError::MissingExponentDigits
        .to_string()
        .contains("exponent"));
}

#[test]
fn error_signed_nan() {
    for text in ["-NaN", "+nan", "-nan"] {
        assert_eq!(
            Decimal128::parse(text),
            Err(DecimalError::SignedNaN),
            "{text:?}"
        );
    }
    assert_eq!(
        DecimalError::SignedNaN.to_string(),
        "NaN cannot carry a sign"
    );
}

#[test]
fn error_too_many_digits() {
    let thirty_five = "12345678901234567890123456789012345";
    assert_eq!(
        Decimal128::parse(thirty_five),
        Err(DecimalError::TooManyDigits { digits: 35 })
    );
    // Trailing zeros are significant: dropping them would change the representation.
    assert_eq!(
        Decimal128::parse(&format!("1{}", "0".repeat(34))),
        Err(DecimalError::TooManyDigits { digits: 35 })
    );
    assert_eq!(
        Decimal128::parse(&format!("-0.{}", "1".repeat(40))),
        Err(DecimalError::TooManyDigits { digits: 40 })
    );
    assert_eq!(
        Decimal128::parse(&format!("{}e3", "9".repeat(100))),
        Err(DecimalError::TooManyDigits { digits: 100 })
    );
    // Leading zeros are not significant, wherever the point is.
    assert!(Decimal128::parse(&format!("{}{}", "0".repeat(50), "9".repeat(34))).is_ok());
    assert!(Decimal128::parse(&format!("0.{}{}", "0".repeat(50), "9".repeat(34))).is_ok());
    assert_eq!(
        DecimalError::TooManyDigits { digits: 35 }.to_string(),
        "decimal has 35 significant digits, but decimal128 holds at most 34 and values are never rounded"
    );
}

#[test]
fn error_exponent_out_of_range() {
    let cases: &[(&str, i128)] = &[
        ("1E+6112", 6112),
        ("1E-6177", -6177),
        ("0E-6177", -6177),
        ("0E+6112", 6112),
        ("1.0E-6176", -6177),
        ("1e2147483647", 2147483647),
        ("1e-2147483648", -2147483648),
        // Never clamped into range: that would change the representation.
        ("1000E-6179", -6179),
        ("0.1E+6113", 6112),
    ];
    for &(text, exponent) in cases {
        assert_eq!(
            Decimal128::parse(text),
            Err(DecimalError::ExponentOutOfRange { exponent }),
            "{text}"
        );
    }
    // Huge written exponents must neither panic nor wrap around into range.
    for text in [
        "1e99999999999999999999",
        "1e-99999999999999999999",
        "1e99999999999999999999999999999999999999999999999999999999999",
        "-1.5E-99999999999999999999999999999999999999999999999999999999999",
        "1e18446744073709551616",
        "1e9223372036854775807",
        "1e170141183460469231731687303715884105727",
    ] {
        match Decimal128::parse(text) {
            Err(DecimalError::ExponentOutOfRange { exponent }) => {
                assert!(exponent.unsigned_abs() > 1_000_000, "{text}: {exponent}")
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    assert_eq!(
        Decimal128::from_parts(false, 1, 6112),
        Err(DecimalError::ExponentOutOfRange { exponent: 6112 })
    );
    assert_eq!(
        Decimal128::from_parts(true, 0, i32::MIN),
        Err(DecimalError::ExponentOutOfRange {
            exponent: i128::from(i32::MIN)
        })
    );
    assert_eq!(
        DecimalError::ExponentOutOfRange { exponent: 6112 }.to_string(),
        "decimal exponent 6112 is outside the decimal128 range -6176..=6111"
    );
}

#[test]
fn error_coefficient_out_of_range() {
    assert_eq!(
        Decimal128::from_parts(false, Decimal128::MAX_COEFFICIENT + 1, 0),
        Err(DecimalError::CoefficientOutOfRange {
            coefficient: 10u128.pow(34)
        })
    );
    assert_eq!(
        Decimal128::from_parts(true, u128::MAX, 0),
        Err(DecimalError::CoefficientOutOfRange {
            coefficient: u128::MAX
        })
    );
    assert!(DecimalError::CoefficientOutOfRange { coefficient: 1 }
        .to_string()
        .contains("10^34 - 1"));
}

#[test]
fn representation_equality_is_exact() {
    assert_ne!(d("1.50"), d("1.5"));
    assert_ne!(d("0"), d("-0"));
    assert_ne!(d("1E+2"), d("100"));
    assert_eq!(d("1.5"), d("+1.5"));
    assert_eq!(d("1.5e0"), d("15E-1"));
    assert_eq!(Decimal128::nan(), Decimal128::nan());
    let set: HashSet<Decimal128> = ["1.50", "1.5", "0", "-0", "0.0", "1.5"]
        .iter()
        .map(|s| d(s))
        .collect();
    assert_eq!(set.len(), 5);
}

#[test]
fn numeric_eq_cases() {
    let equal = [
        ("1.50", "1.5"),
        ("0", "-0"),
        ("0", "0E+6111"),
        ("-0.000", "0E-6176"),
        ("1E+2", "100"),
        ("100", "1.00E2"),
        ("-12.5", "-1250E-2"),
        ("1E+6111", "1000E+6108"),
        ("1E-6143", "1000000000000000000000000000000000E-6176"),
        ("Infinity", "Inf"),
        ("-Infinity", "-inf"),
    ];
    for (a, b) in equal {
        assert!(d(a).numeric_eq(&d(b)), "{a} == {b}");
        assert!(d(b).numeric_eq(&d(a)), "{b} == {a}");
    }
    let different = [
        ("1", "-1"),
        ("1", "2"),
        ("1.5", "15"),
        ("0", "1E-6176"),
        ("10", "1"),
        ("Infinity", "-Infinity"),
        ("Infinity", "9.999999999999999999999999999999999E+6144"),
        ("NaN", "NaN"),
        ("NaN", "0"),
        ("NaN", "Infinity"),
    ];
    for (a, b) in different {
        assert!(!d(a).numeric_eq(&d(b)), "{a} != {b}");
        assert!(!d(b).numeric_eq(&d(a)), "{b} != {a}");
    }
    let nan = Decimal128::nan();
    assert!(!nan.numeric_eq(&nan));
}

#[test]
fn from_i64_values() {
    for v in [0, 1, -1, 100, -12345, i64::MAX, i64::MIN] {
        let x = Decimal128::from_i64(v);
        assert_eq!(x.to_string(), v.to_string());
        assert_eq!(d(&v.to_string()), x);
        assert_eq!(Decimal128::from(v), x);
    }
    assert_eq!(Decimal128::from_i64(0), Decimal128::zero());
    assert_eq!(
        Decimal128::from_i64(i64::MIN).kind(),
        finite(true, 9_223_372_036_854_775_808, 0)
    );
}

#[test]
fn serde_json_round_trip() {
    for text in [
        "1.50",
        "-0",
        "0E+3",
        "1.23E+5",
        "1E-7",
        "NaN",
        "Infinity",
        "-Infinity",
    ] {
        let value = d(text);
        let json = serde_json::to_string(&value).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<Decimal128>(&json).unwrap(), value);
    }
    // Input forms are accepted but re-serialize canonically.
    let parsed: Decimal128 = serde_json::from_str("\"1.5e3\"").unwrap();
    assert_eq!(serde_json::to_string(&parsed).unwrap(), "\"1.5E+3\"");
    // Inside containers, and from owned (escaped) strings too.
    let list: Vec<Decimal128> = serde_json::from_str(r#"["1.50", "\u0031.5"]"#).unwrap();
    assert_eq!(list, vec![d("1.50"), d("1.5")]);
    assert_eq!(
        serde_json::to_value(&list).unwrap(),
        serde_json::json!(["1.50", "1.5"])
    );
}

#[test]
fn serde_json_rejects_bad_input() {
    let err = serde_json::from_str::<Decimal128>("\"1.2.3\"").unwrap_err();
    assert!(err.to_string().contains("invalid character"), "{err}");
    let err = serde_json::from_str::<Decimal128>("\"\"").unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    // A JSON number is not the serialized form: it would already have been through a float.
    assert!(serde_json::from_str::<Decimal128>("1.5").is_err());
    assert!(serde_json::from_str::<Decimal128>("null").is_err());
}

fn coefficient_strategy() -> impl Strategy<Value = u128> {
    prop_oneof![
        Just(0u128),
        Just(1u128),
        Just(Decimal128::MAX_COEFFICIENT),
        0u128..=Decimal128::MAX_COEFFICIENT,
        0u128..1000,
        (0u32..34).prop_map(|p| 10u128.pow(p)),
        (1u32..=34).prop_map(|p| 10u128.pow(p) - 1),
    ]
}

fn exponent_strategy() -> impl Strategy<Value = i32> {
    prop_oneof![
        Just(Decimal128::MIN_EXPONENT),
        Just(Decimal128::MAX_EXPONENT),
        Just(0),
        Decimal128::MIN_EXPONENT..=Decimal128::MAX_EXPONENT,
        -45i32..=5,
    ]
}

fn decimal_strategy() -> impl Strategy<Value = Decimal128> {
    prop_oneof![
        18 => (any::<bool>(), coefficient_strategy(), exponent_strategy())
            .prop_map(|(n, c, e)| Decimal128::from_parts(n, c, e).unwrap()),
        1 => Just(Decimal128::nan()),
        1 => any::<bool>().prop_map(Decimal128::infinity),
    ]
}

/// Checks that a successfully parsed value prints to something that parses back to it.
fn assert_reparses(value: Decimal128) -> Result<(), TestCaseError> {
    let text = value.to_string();
    prop_assert_eq!(Decimal128::parse(&text), Ok(value), "{}", text);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn display_parse_round_trip(value in decimal_strategy()) {
        let text = value.to_string();
        prop_assert_eq!(Decimal128::parse(&text), Ok(value), "{}", text);
        let json = serde_json::to_string(&value).unwrap();
        prop_assert_eq!(serde_json::from_str::<Decimal128>(&json).unwrap(), value);
        prop_assert_eq!(value.numeric_eq(&value), !value.is_nan());
    }

    #[test]
    fn rescaling_keeps_numeric_value(
        negative in any::<bool>(),
        coefficient in 0u128..=Decimal128::MAX_COEFFICIENT / 10,
        exponent in (Decimal128::MIN_EXPONENT + 1)..=Decimal128::MAX_EXPONENT,
    ) {
        let a = Decimal128::from_parts(negative, coefficient, exponent).unwrap();
        let b = Decimal128::from_parts(negative, coefficient * 10, exponent - 1).unwrap();
        prop_assert!(a.numeric_eq(&b));
        prop_assert!(b.numeric_eq(&a));
        prop_assert_ne!(a, b);
        let c = Decimal128::from_parts(negative, coefficient + 1, exponent).unwrap();
        prop_assert!(!a.numeric_eq(&c));
    }

    #[test]
    fn i64_text_matches_from_i64(v in any::<i64>()) {
        let x = Decimal128::from_i64(v);
        prop_assert_eq!(x.to_string(), v.to_string());
        prop_assert_eq!(Decimal128::parse(&v.to_string()), Ok(x));
    }

    #[test]
    fn parse_never_panics_on_arbitrary_strings(s in any::<String>()) {
        if let Ok(value) = Decimal128::parse(&s) {
            assert_reparses(value)?;
        }
    }

    #[test]
    fn parse_never_panics_on_decimal_like_strings(
        s in "[-+]?[0-9.]{0,45}([eE][-+]?[0-9]{0,45})?[eE.+-]?|[-+]?(?i:nan|inf|infinity)[a-z]?|[ -~]{0,12}"
    ) {
        if let Ok(value) = Decimal128::parse(&s) {
            assert_reparses(value)?;
        }
    }

    #[test]
    fn parse_matches_reference_model(
        sign in prop_oneof![Just(""), Just("+"), Just("-")],
        int_digits in "[0-9]{0,40}",
        point in any::<bool>(),
        frac_digits in "[0-9]{0,40}",
        exponent in proptest::option::of(-7000i64..7000),
    ) {
        // A straightforward model built on strings and i64, independent of the parser.
        let frac_digits = if point { frac_digits } else { String::new() };
        let mut text = format!("{sign}{int_digits}");
        if point {
            text.push('.');
            text.push_str(&frac_digits);
        }
        if let Some(e) = exponent {
            text.push_str(&format!("E{e}"));
        }
        let all_digits = format!("{int_digits}{frac_digits}");
        let significant = all_digits.trim_start_matches('0');
        let effective = exponent.unwrap_or(0) - frac_digits.len() as i64;
        let expected = if text.is_empty() {
            Err(DecimalError::Empty)
        } else if all_digits.is_empty() {
            Err(DecimalError::MissingDigits)
        } else if significant.len() > 34 {
            Err(DecimalError::TooManyDigits { digits: significant.len() })
        } else if !(-6176..=6111).contains(&effective) {
            Err(DecimalError::ExponentOutOfRange { exponent: i128::from(effective) })
        } else {
            let coefficient = if significant.is_empty() { 0 } else { significant.parse().unwrap() };
            Ok(Decimal128::from_parts(sign == "-", coefficient, effective as i32).unwrap())
        };
        prop_assert_eq!(Decimal128::parse(&text), expected, "{}", text);
    }
}
