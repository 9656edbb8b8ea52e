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
    ///
    /// ```
    /// use objsync::Decimal128;
    ///
    /// let price = Decimal128::parse("1.50")?;
    /// assert_eq!(price.to_string(), "1.50");
    /// assert_ne!(price, Decimal128::parse("1.5")?);
    /// assert!(price.numeric_eq(&Decimal128::parse("1.5")?));
    /// assert_eq!(Decimal128::parse("15e2")?.to_string(), "1.5E+3");
    /// assert!(Decimal128::parse(&"1".repeat(35)).is_err());
    /// assert!(Decimal128::parse(" 1").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
mod tests;
