//! Exact decimal property values: [`Decimal128`], the IEEE 754-2008 decimal128 value set.
//!
//! A `decimal` property holds money, quantities and other values that users type in base ten
//! and expect back digit for digit. `0.1` has no exact binary floating-point form, so going
//! through `f64` would change stored values and make merged state depend on binary rounding;
//! this type is therefore never a float: it is the sign, the integer coefficient
//! (`0 ..= 10^34 - 1`) and the base-ten exponent (`-6176 ..= 6111`) exactly as written, plus NaN
//! and the two infinities. Nothing here ever rounds; input that would need rounding is rejected.
//!
//! The representation is preserved, not just the value: `1.50` and `1.5` are equal numbers with
//! different exponents, and they stay different. Every replica must render byte-identical state
//! after a merge, so if one device wrote `1.50` no replica may print it as `1.5`. Hence `==` and
//! [`Hash`] compare representations, while [`Decimal128::numeric_eq`] compares values (for
//! query-like comparisons and scenario expectations, where `1.5` matches `1.50`).
//!
//! The text form ([`Display`](std::fmt::Display), [`Decimal128::parse`], serde) follows the
//! General Decimal Arithmetic specification's to-scientific-string conversion, which is
//! lossless: parsing what was printed gives back the same representation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A decimal128 value kept exactly as written: sign, coefficient and exponent, or NaN or an
/// infinity.
///
/// `==` and [`Hash`] compare the representation (`1.50 != 1.5`, `-0 != 0`, `NaN == NaN`), which
/// is what state comparison between replicas needs; use [`Decimal128::numeric_eq`] to compare
/// numbers. Every value that exists satisfies the decimal128 ranges, because all constructors
/// check them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decimal128 {
    // Invariant: a `Finite` kind always has coefficient <= MAX_COEFFICIENT and an exponent in
    // MIN_EXPONENT..=MAX_EXPONENT; every constructor enforces it, so readers never re-check.
    kind: DecimalKind,
}

/// The parts of a [`Decimal128`], as returned by [`Decimal128::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecimalKind {
    /// A finite number: `(-1)^negative * coefficient * 10^exponent`.
    Finite {
        /// Whether the sign is negative; zero may be negative too (`-0`).
        negative: bool,
        /// The integer coefficient, `0 ..= Decimal128::MAX_COEFFICIENT`.
        coefficient: u128,
        /// The base-ten exponent, `Decimal128::MIN_EXPONENT ..= Decimal128::MAX_EXPONENT`.
        exponent: i32,
    },
    /// Positive or negative infinity.
    Infinity {
        /// Whether this is negative infinity.
        negative: bool,
    },
    /// Not a number. It carries no sign or payload, so there is exactly one NaN.
    NaN,
}

/// Why a string or a set of parts is not a [`Decimal128`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecimalError {
    /// The input string was empty.
    #[error("empty string is not a decimal")]
    Empty,
    /// A character that cannot appear at that place in a decimal (whitespace included).
    #[error("invalid character {character:?} at byte {position} of decimal")]
    InvalidCharacter {
        /// The offending character.
        character: char,
        /// Its byte offset in the input.
        position: usize,
    },
    /// There was no digit before the exponent (or at all), as in `"+"`, `"."` or `"e5"`.
    #[error("decimal has no digits")]
    MissingDigits,
    /// An `e`/`E` was not followed by exponent digits, as in `"1e"` or `"1e+"`.
    #[error("decimal exponent marker is not followed by digits")]
    MissingExponentDigits,
    /// A sign was written before `NaN`, which has no sign in this representation.
    #[error("NaN cannot carry a sign")]
    SignedNaN,
    /// More significant digits than decimal128 holds; rounding them away would change the value
    /// or at least its representation.
    #[error("decimal has {digits} significant digits, but decimal128 holds at most 34 and values are never rounded")]
    TooManyDigits {
        /// The number of significant digits (leading zeros excluded).
        digits: usize,
    },
    /// The exponent is outside `Decimal128::MIN_EXPONENT ..= Decimal128::MAX_EXPONENT`.
    #[error("decimal exponent {exponent} is outside the decimal128 range -6176..=6111")]
    ExponentOutOfRange {
        /// The effective exponent (the written exponent minus the digits after the point). For
        /// absurdly long written exponents it is clamped to about +/-10^30, which is still far out
        /// of range.
        exponent: i128,
    },
    /// A coefficient passed to [`Decimal128::from_parts`] has more than 34 digits.
    #[error("decimal coefficient {coefficient} exceeds the decimal128 maximum 10^34 - 1")]
    CoefficientOutOfRange {
        /// The offending coefficient.
        coefficient: u128,
    },
}

/// The number of coefficient digits decimal128 holds.
const MAX_DIGITS: usize = 34;

/// Written exponents are clamped to this magnitude while parsing. The number of digits after the
/// point is bounded by the input length (below 2^64, about 1.8 * 10^19), so an exponent this
/// large is out of range whatever the fraction, and the clamp keeps all arithmetic in `i128`
/// without overflow however many exponent digits are written.
const EXPONENT_CLAMP: i128 = 1_000_000_000_000_000_000_000_000_000_000;

impl Decimal128 {
    /// The largest coefficient, `10^34 - 1` (34 nines).
    pub const MAX_COEFFICIENT: u128 = 9_999_999_999_999_999_999_999_999_999_999_999;
    /// The smallest exponent, `-6176`.
    pub const MIN_EXPONENT: i32 = -6176;
    /// The largest exponent, `6111`.
    pub const MAX_EXPONENT: i32 = 6111;

    /// Zero with exponent 0, which prints as `0`; the default value of a decimal property.
    pub const fn zero() -> Self {
        Self::finite(false, 0, 0)
    }

    /// The NaN value, which prints as `NaN`.
    pub const fn nan() -> Self {
        Self {
            kind: DecimalKind::NaN,
        }
    }

    /// Positive or negative infinity, which print as `Infinity` and `-Infinity`.
    pub const fn infinity(negative: bool) -> Self {
        Self {
            kind: DecimalKind::Infinity { negative },
        }
    }

    /// A finite value `(-1)^negative * coefficient * 10^exponent`, kept exactly as given.
    ///
    /// # Errors
    /// [`DecimalError::CoefficientOutOfRange`] if `coefficient > MAX_COEFFICIENT`, and
    /// [`DecimalError::ExponentOutOfRange`] if `exponent` is outside
    /// `MIN_EXPONENT ..= MAX_EXPONENT`.
    pub fn from_parts(
        negative: bool,
        coefficient: u128,
        exponent: i32,
    ) -> Result<Self, DecimalError> {
        if coefficient > Self::MAX_COEFFICIENT {
            return Err(DecimalError::CoefficientOutOfRange { coefficient });
        }
        if !(Self::MIN_EXPONENT..=Self::MAX_EXPONENT).contains(&exponent) {
            return Err(DecimalError::ExponentOutOfRange {
                exponent: i128::from(exponent),
            });
        }
        Ok(Self::finite(negative, coefficient, exponent))
    }

    /// The integer `v` with exponent 0 (so `from_i64(100)` prints as `100`, not `1E+2`).
    pub const fn from_i64(v: i64) -> Self {
        // |i64::MIN| < 2^63 has 19 digits, well inside the 34-digit coefficient.
        Self::finite(v < 0, v.unsigned_abs() as u128, 0)
    }

    /// The sign, coefficient and exponent, or which special value this is.
    pub const fn kind(&self) -> DecimalKind {
        self.kind
    }

    /// Whether this is NaN.
    pub const fn is_nan(&self) -> bool {
        matches!(self.kind, DecimalKind::NaN)
    }

    /// Parses the text form, keeping the representation exactly as written.
    ///
    /// Accepted: an optional `+` or `-`; digits with at most one `.` (at least one digit, so
    /// `1.` and `.5` are fine); an optional exponent `e`/`E` with an optional sign and at least one
    /// digit. Also `NaN` (unsigned) and `Infinity` or `Inf` (optionally signed), in any letter
    /// case. The coefficient is the digits without the point and the exponent is the written
    /// exponent minus the number of digits after the point, so `1.50` is 150 with exponent -2
    /// and `1.5E+3` is 15 with exponent 2. Whitespace is not allowed.
    ///
    /// # Errors
    /// A [`DecimalError`] saying what is wrong. Nothing is ever rounded: more than 34
    /// significant digits is [`DecimalError::TooManyDigits`] even when the trailing ones are
    /// zeros, since dropping them would change the representation.
    pub fn parse(s: &str) -> Result<Self, DecimalError> {
        let (negative, body_start) = match s.as_bytes().first() {
            None => return Err(DecimalError::Empty),
            Some(b'-') => (true, 1),
            Some(b'+') => (false, 1),
            Some(_) => (false, 0),
        };
        // Slicing at 1 is on a char boundary: the byte there is an ASCII sign.
        let body = &s[body_start..];
        if body.eq_ignore_ascii_case("nan") {
            // NaN has a single, unsigned representation; accepting "-NaN" would make the printed
            // form ("NaN") differ from the input, which a lossless format must not do silently.
            return if body_start == 0 {
                Ok(Self::nan())
            } else {
                Err(DecimalError::SignedNaN)
            };
        }
        if body.eq_ignore_ascii_case("infinity") || body.eq_ignore_ascii_case("inf") {
            return Ok(Self::infinity(negative));
        }

        let mut coefficient: u128 = 0;
        let mut significant_digits: usize = 0;
        let mut any_digit = false;
        let mut fraction_digits: usize = 0;
        let mut seen_point = false;
        let mut written_exponent: i128 = 0;
        for (i, ch) in body.char_indices() {
            match ch {
                '0'..='9' => {
                    any_digit = true;
                    if seen_point {
                        fraction_digits += 1;
                    }
                    let digit = u128::from(ch as u8 - b'0');
                    if significant_digits == 0 && digit == 0 {
                        continue;
                    }
                    significant_digits += 1;
                    // Past 34 digits the input is rejected anyway; keep counting for the error
                    // message but stop accumulating so the u128 cannot overflow.
                    if significant_digits <= MAX_DIGITS {
                        coefficient = coefficient * 10 + digit;
                    }
                }
                '.' if !seen_point => seen_point = true,
                'e' | 'E' => {
                    let start = i + 1;
                    written_exponent = parse_exponent(&body[start..], body_start + start)?;
                    break;
                }
                _ => {
                    return Err(DecimalError::InvalidCharacter {
                        character: ch,
                        position: body_start + i,
                    })
                }
            }
        }
        if !any_digit {
            return Err(DecimalError::MissingDigits);
        }
        if significant_digits > MAX_DIGITS {
            return Err(DecimalError::TooManyDigits {
                digits: significant_digits,
            });
        }
        // usize -> i128 is lossless on every supported platform, and the clamp on the written
        // exponent keeps the subtraction far from i128's limits.
        let exponent = written_exponent - fraction_digits as i128;
        match i32::try_from(exponent) {
            Ok(e) if (Self::MIN_EXPONENT..=Self::MAX_EXPONENT).contains(&e) => {
                Ok(Self::finite(negative, coefficient, e))
            }
            _ => Err(DecimalError::ExponentOutOfRange { exponent }),
        }
    }

    /// Whether the two values are the same number, whatever their representations: `1.50`
    /// equals `1.5`, `0` equals `-0` and `0E+5`, `1E+2` equals `100`, and each infinity equals
    /// itself. NaN is not numerically equal to anything, itself included.
    pub fn numeric_eq(&self, other: &Self) -> bool {
        match (self.kind, other.kind) {
            (
                DecimalKind::Finite {
                    negative: na,
                    coefficient: ca,
                    exponent: ea,
                },
                DecimalKind::Finite {
                    negative: nb,
                    coefficient: cb,
                    exponent: eb,
                },
            ) => {
                // Zeros of every sign and exponent are one number.
                if ca == 0 || cb == 0 {
                    return ca == cb;
                }
                // A nonzero value has a unique form with no trailing zeros in the coefficient, so
                // comparing those forms is exact and needs no wider arithmetic.
                na == nb && strip_trailing_zeros(ca, ea) == strip_trailing_zeros(cb, eb)
            }
            (DecimalKind::Infinity { negative: a }, DecimalKind::Infinity { negative: b }) => {
                a == b
            }
            _ => false,
        }
    }

    const fn finite(negative: bool, coefficient: u128, exponent: i32) -> Self {
        Self {
            kind: DecimalKind::Finite {
                negative,
                coefficient,
                exponent,
            },
        }
    }
}

/// Parses the part after `e`/`E`: an optional sign and at least one digit. `offset` is where
/// `text` starts in the whole input, for error positions.
fn parse_exponent(text: &str, offset: usize) -> Result<i128, DecimalError> {
    let (negative, digits_start) = match text.as_bytes().first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let digits = &text[digits_start..];
    if digits.is_empty() {
        return Err(DecimalError::MissingExponentDigits);
    }
    let mut magnitude: i128 = 0;
    for (i, ch) in digits.char_indices() {
        if !ch.is_ascii_digit() {
            return Err(DecimalError::InvalidCharacter {
                character: ch,
                position: offset + digits_start + i,
            });
        }
        let digit = i128::from(ch as u8 - b'0');
        magnitude = (magnitude * 10 + digit).min(EXPONENT_CLAMP);
    }
    Ok(if negative { -magnitude } else { magnitude })
}

/// Moves trailing zeros of a nonzero coefficient into the exponent. The exponent can leave the
/// decimal128 range on the way (by at most 33), which `i32` holds easily; the result is only
/// compared, never stored.
fn strip_trailing_zeros(mut coefficient: u128, mut exponent: i32) -> (u128, i32) {
    debug_assert!(coefficient != 0);
    loop {
        let quotient = coefficient / 10;
        if quotient * 10 != coefficient {
            break;
        }
        coefficient = quotient;
        exponent += 1;
    }
    (coefficient, exponent)
}

impl Default for Decimal128 {
    /// [`Decimal128::zero`].
    fn default() -> Self {
        Self::zero()
    }
}

impl From<i64> for Decimal128 {
    /// [`Decimal128::from_i64`].
    fn from(v: i64) -> Self {
        Self::from_i64(v)
    }
}

impl fmt::Display for Decimal128 {
    /// The General Decimal Arithmetic to-scientific-string form: plain notation (`1.50`,
    /// `0.005`, `-0`) when the exponent is at most 0 and the adjusted exponent is at least -6,
    /// scientific otherwise (`1.23E+5`, `1E-7`, `0E+3`); `NaN`, `Infinity` and `-Infinity` for
    /// the special values. Honors width, fill and alignment.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (negative, coefficient, exponent) = match self.kind {
            DecimalKind::NaN => return f.pad("NaN"),
            DecimalKind::Infinity { negative: false } => return f.pad("Infinity"),
            DecimalKind::Infinity { negative: true } => return f.pad("-Infinity"),
            DecimalKind::Finite {
                negative,
                coefficient,
                exponent,
            } => (negative, coefficient, exponent),
        };
        let digits = coefficient.to_string();
        // At most 34 digits, so the length fits in i32 exactly.
        let digit_count = digits.len() as i32;
        let adjusted = exponent + digit_count - 1;
        // Longest form: sign, "0.", five zeros and 34 digits, or sign, 34 digits, point and
        // "E+6144" -- both under 48 bytes.
        let mut out = String::with_capacity(48);
        if negative {
            out.push('-');
        }
        if exponent <= 0 && adjusted >= -6 {
            // Digits before the point; zero or negative means the value is below 1 and needs
            // leading zeros after "0.".
            let integer_digits = digit_count + exponent;
            if exponent == 0 {
                out.push_str(&digits);
            } else if integer_digits > 0 {
                let (int_part, frac_part) = digits.split_at(integer_digits as usize);
                out.push_str(int_part);
                out.push('.');
                out.push_str(frac_part);
            } else {
                out.push_str("0.");
                for _ in 0..-integer_digits {
                    out.push('0');
                }
                out.push_str(&digits);
            }
        } else {
            let (first, rest) = digits.split_at(1);
            out.push_str(first);
            if !rest.is_empty() {
                out.push('.');
                out.push_str(rest);
            }
            out.push('E');
            out.push(if adjusted >= 0 { '+' } else { '-' });
            out.push_str(&adjusted.unsigned_abs().to_string());
        }
        f.pad(&out)
    }
}

impl FromStr for Decimal128 {
    type Err = DecimalError;

    /// [`Decimal128::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Decimal128 {
    /// A string in the [`Display`](fmt::Display) form, because a JSON number would be read back
    /// as a float by most consumers and would lose the representation.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Decimal128 {
    /// A string accepted by [`Decimal128::parse`]; anything else is an error.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DecimalVisitor;

        impl serde::de::Visitor<'_> for DecimalVisitor {
            type Value = Decimal128;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal128 string such as \"1.50\"")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Decimal128, E> {
                Decimal128::parse(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(DecimalVisitor)
    }
}

#[cfg(test)]
mod tests {
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
}
