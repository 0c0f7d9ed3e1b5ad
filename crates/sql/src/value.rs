//! Values of ksqlDB's types, and how ksqlDB names the types (`INTEGER`, `DECIMAL(4, 2)`,
//! `STRUCT<`A` INTEGER>`).
//!
//! DECIMAL is exact: an `i128` unscaled value and a scale (precision up to 38 digits, as
//! ksqlDB's Connect decimals allow in practice).

use std::cmp::Ordering;
use std::fmt;

use crate::ast::SqlType;

/// The largest DECIMAL precision.
pub const DECIMAL_PRECISION_MAX: u32 = 38;

/// An exact decimal: `unscaled × 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    pub unscaled: i128,
    pub scale: u32,
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Decimal {
    /// Parses `-12.340` keeping its scale (3).
    pub fn parse(text: &str) -> Option<Decimal> {
        let text = text.trim();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty()
            || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let all = format!("{int}{frac}");
        let unscaled: i128 = if all.is_empty() { 0 } else { all.parse().ok()? };
        Some(Decimal {
            unscaled: if negative { -unscaled } else { unscaled },
            scale: frac.len() as u32,
        })
    }

    /// The precision of the type a value like this gets: its unscaled digits, at least its
    /// scale (`0.05` is DECIMAL(2, 2), `1.50` DECIMAL(3, 2)).
    pub fn precision(&self) -> u32 {
        let digits = self
            .unscaled
            .unsigned_abs()
            .checked_ilog10()
            .map_or(1, |d| d + 1);
        digits.max(self.scale)
    }

    /// The same value at `scale`, rounding half up when it drops digits (Java's HALF_UP).
    pub fn rescale(&self, scale: u32) -> Option<Decimal> {
        match scale.cmp(&self.scale) {
            Ordering::Equal => Some(*self),
            Ordering::Greater => Some(Decimal {
                unscaled: self.unscaled.checked_mul(pow10(scale - self.scale)?)?,
                scale,
            }),
            Ordering::Less => {
                let div = pow10(self.scale - scale)?;
                let q = self.unscaled / div;
                let r = self.unscaled % div;
                let round = if r.unsigned_abs() * 2 >= div.unsigned_abs() {
                    self.unscaled.signum()
                } else {
                    0
                };
                Some(Decimal {
                    unscaled: q + round,
                    scale,
                })
            }
        }
    }

    pub fn to_f64(&self) -> f64 {
        self.unscaled as f64 / 10f64.powi(self.scale as i32)
    }

    pub fn from_i64(v: i64) -> Decimal {
        Decimal {
            unscaled: v as i128,
            scale: 0,
        }
    }

    /// Compares numerically (scales may differ).
    pub fn compare(&self, other: &Decimal) -> Ordering {
        let scale = self.scale.max(other.scale);
        match (self.rescale(scale), other.rescale(scale)) {
            (Some(a), Some(b)) => a.unscaled.cmp(&b.unscaled),
            _ => self.to_f64().total_cmp(&other.to_f64()),
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.unscaled.unsigned_abs().to_string();
        let sign = if self.unscaled < 0 { "-" } else { "" };
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

/// A value of a ksqlDB type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Int(i32),
    Bigint(i64),
    Double(f64),
    Decimal(Decimal),
    String(String),
    Bytes(Vec<u8>),
    /// Milliseconds since the epoch.
    Timestamp(i64),
    /// Days since the epoch.
    Date(i32),
    /// Milliseconds since midnight.
    Time(i32),
    Array(Vec<Value>),
    /// Entries in insertion order (ksqlDB maps keep their keys' order when serialized).
    Map(Vec<(Value, Value)>),
    Struct(Vec<(String, Value)>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value's type where the value alone says it (None for NULL and empty
    /// collections).
    pub fn sql_type(&self) -> Option<SqlType> {
        Some(match self {
            Value::Null => return None,
            Value::Boolean(_) => SqlType::Boolean,
            Value::Int(_) => SqlType::Int,
            Value::Bigint(_) => SqlType::Bigint,
            Value::Double(_) => SqlType::Double,
            Value::Decimal(d) => SqlType::Decimal {
                precision: d.precision(),
                scale: d.scale,
            },
            Value::String(_) => SqlType::String,
            Value::Bytes(_) => SqlType::Bytes,
            Value::Timestamp(_) => SqlType::Timestamp,
            Value::Date(_) => SqlType::Date,
            Value::Time(_) => SqlType::Time,
            Value::Array(items) => {
                SqlType::Array(Box::new(items.iter().find_map(Value::sql_type)?))
            }
            Value::Map(entries) => {
                let (k, v) = entries.first()?;
                SqlType::Map(Box::new(k.sql_type()?), Box::new(v.sql_type()?))
            }
            Value::Struct(fields) => SqlType::Struct(
                fields
                    .iter()
                    .map(|(n, v)| Some((n.clone(), v.sql_type()?)))
                    .collect::<Option<Vec<_>>>()?,
            ),
        })
    }
}

/// Nesting a stored value may have (arrays, maps, structs inside each other).
const MAX_STORED_DEPTH: usize = 64;

impl Value {
    /// The value in a compact binary form, for a state store (read back by
    /// [`Value::decode_stored`]): a tag byte, then the payload (integers little-endian,
    /// lengths and counts as u32).
    pub fn encode_stored(&self, out: &mut Vec<u8>) {
        fn len(out: &mut Vec<u8>, n: usize) {
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        match self {
            Value::Null => out.push(0),
            Value::Boolean(b) => out.extend_from_slice(&[1, *b as u8]),
            Value::Int(v) => {
                out.push(2);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::Bigint(v) => {
                out.push(3);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::Double(v) => {
                out.push(4);
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            Value::Decimal(d) => {
                out.push(5);
                out.extend_from_slice(&d.unscaled.to_le_bytes());
                out.extend_from_slice(&d.scale.to_le_bytes());
            }
            Value::String(s) => {
                out.push(6);
                len(out, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bytes(b) => {
                out.push(7);
                len(out, b.len());
                out.extend_from_slice(b);
            }
            Value::Timestamp(v) => {
                out.push(8);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::Date(v) => {
                out.push(9);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::Time(v) => {
                out.push(10);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::Array(items) => {
                out.push(11);
                len(out, items.len());
                for v in items {
                    v.encode_stored(out);
                }
            }
            Value::Map(entries) => {
                out.push(12);
                len(out, entries.len());
                for (k, v) in entries {
                    k.encode_stored(out);
                    v.encode_stored(out);
                }
            }
            Value::Struct(fields) => {
                out.push(13);
                len(out, fields.len());
                for (name, v) in fields {
                    len(out, name.len());
                    out.extend_from_slice(name.as_bytes());
                    v.encode_stored(out);
                }
            }
        }
    }

    /// Reads a value [`Value::encode_stored`] wrote from the front of `input`, advancing
    /// it; None for anything malformed (counts are checked against the bytes left before
    /// anything is allocated for them, nesting is bounded).
    pub fn decode_stored(input: &mut &[u8]) -> Option<Value> {
        Self::decode_at(input, 0)
    }

    fn decode_at(input: &mut &[u8], depth: usize) -> Option<Value> {
        fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if input.len() < n {
                return None;
            }
            let (head, rest) = input.split_at(n);
            *input = rest;
            Some(head)
        }
        fn array<const N: usize>(input: &mut &[u8]) -> Option<[u8; N]> {
            take(input, N)?.try_into().ok()
        }
        // Every element takes at least one byte: a count above what is left is malformed.
        fn count(input: &mut &[u8]) -> Option<usize> {
            let n = u32::from_le_bytes(array(input)?) as usize;
            (n <= input.len()).then_some(n)
        }
        fn text(input: &mut &[u8]) -> Option<String> {
            let n = count(input)?;
            String::from_utf8(take(input, n)?.to_vec()).ok()
        }
        if depth > MAX_STORED_DEPTH {
            return None;
        }
        let tag = take(input, 1)?[0];
        Some(match tag {
            0 => Value::Null,
            1 => Value::Boolean(take(input, 1)?[0] != 0),
            2 => Value::Int(i32::from_le_bytes(array(input)?)),
            3 => Value::Bigint(i64::from_le_bytes(array(input)?)),
            4 => Value::Double(f64::from_bits(u64::from_le_bytes(array(input)?))),
            5 => {
                let unscaled = i128::from_le_bytes(array(input)?);
                let scale = u32::from_le_bytes(array(input)?);
                Value::Decimal(Decimal { unscaled, scale })
            }
            6 => Value::String(text(input)?),
            7 => {
                let n = count(input)?;
                Value::Bytes(take(input, n)?.to_vec())
            }
            8 => Value::Timestamp(i64::from_le_bytes(array(input)?)),
            9 => Value::Date(i32::from_le_bytes(array(input)?)),
            10 => Value::Time(i32::from_le_bytes(array(input)?)),
            11 => {
                let n = count(input)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(Self::decode_at(input, depth + 1)?);
                }
                Value::Array(items)
            }
            12 => {
                let n = count(input)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = Self::decode_at(input, depth + 1)?;
                    entries.push((k, Self::decode_at(input, depth + 1)?));
                }
                Value::Map(entries)
            }
            13 => {
                let n = count(input)?;
                let mut fields = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = text(input)?;
                    fields.push((name, Self::decode_at(input, depth + 1)?));
                }
                Value::Struct(fields)
            }
            _ => return None,
        })
    }
}

/// ksqlDB's name for a type, as DESCRIBE and error messages print it.
pub fn type_name(t: &SqlType) -> String {
    match t {
        SqlType::Boolean => "BOOLEAN".into(),
        SqlType::Int => "INTEGER".into(),
        SqlType::Bigint => "BIGINT".into(),
        SqlType::Double => "DOUBLE".into(),
        SqlType::Decimal { precision, scale } => format!("DECIMAL({precision}, {scale})"),
        SqlType::String => "STRING".into(),
        SqlType::Bytes => "BYTES".into(),
        SqlType::Timestamp => "TIMESTAMP".into(),
        SqlType::Date => "DATE".into(),
        SqlType::Time => "TIME".into(),
        SqlType::Array(item) => format!("ARRAY<{}>", type_name(item)),
        SqlType::Map(k, v) => format!("MAP<{}, {}>", type_name(k), type_name(v)),
        SqlType::Struct(fields) => format!(
            "STRUCT<{}>",
            fields
                .iter()
                .map(|(n, t)| format!("`{n}` {}", type_name(t)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        SqlType::Custom(name) => name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_their_scale_and_round_half_up() {
        let d = Decimal::parse("-12.340").unwrap();
        assert_eq!((d.unscaled, d.scale), (-12340, 3));
        assert_eq!(d.to_string(), "-12.340");
        assert_eq!(Decimal::parse("0.05").unwrap().to_string(), "0.05");
        assert_eq!(Decimal::parse(".5").unwrap().to_string(), "0.5");
        assert_eq!(
            Decimal::parse("2.345")
                .unwrap()
                .rescale(2)
                .unwrap()
                .to_string(),
            "2.35"
        );
        assert_eq!(
            Decimal::parse("-2.345")
                .unwrap()
                .rescale(2)
                .unwrap()
                .to_string(),
            "-2.35"
        );
        assert_eq!(
            Decimal::parse("1.5")
                .unwrap()
                .rescale(3)
                .unwrap()
                .to_string(),
            "1.500"
        );
        assert_eq!(Decimal::parse("1.50").unwrap().precision(), 3);
        assert_eq!(Decimal::parse("0.05").unwrap().precision(), 2);
        assert_eq!(
            Decimal::parse("1.5")
                .unwrap()
                .compare(&Decimal::parse("1.50").unwrap()),
            Ordering::Equal
        );
        for bad in ["", ".", "1.2.3", "1e5", "abc", "--1"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn stored_values_read_back_and_malformed_ones_are_refused() {
        let v = Value::Struct(vec![
            ("A".into(), Value::Int(-7)),
            (
                "m".into(),
                Value::Map(vec![(
                    Value::String("k".into()),
                    Value::Array(vec![
                        Value::Decimal(Decimal::parse("-12.340").unwrap()),
                        Value::Null,
                        Value::Double(1.5),
                    ]),
                )]),
            ),
            ("b".into(), Value::Bytes(vec![0, 255])),
            ("t".into(), Value::Timestamp(1_700_000_000_000)),
            ("d".into(), Value::Date(19_000)),
            ("tm".into(), Value::Time(3_600_000)),
            ("x".into(), Value::Bigint(i64::MIN)),
            ("ok".into(), Value::Boolean(true)),
        ]);
        let mut out = Vec::new();
        v.encode_stored(&mut out);
        Value::String("next".into()).encode_stored(&mut out);
        let mut input = &out[..];
        assert_eq!(Value::decode_stored(&mut input), Some(v));
        assert_eq!(
            Value::decode_stored(&mut input),
            Some(Value::String("next".into()))
        );
        assert!(input.is_empty());
        for cut in 0..out.len() {
            // Every truncation fails cleanly (or reads a shorter prefix value).
            let mut input = &out[..cut];
            let _ = Value::decode_stored(&mut input);
        }
        // A count far beyond the bytes left allocates nothing.
        let mut huge = &[11u8, 0xff, 0xff, 0xff, 0xff, 0][..];
        assert_eq!(Value::decode_stored(&mut huge), None);
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep.extend_from_slice(&[11, 1, 0, 0, 0]);
        }
        deep.push(0);
        assert_eq!(
            Value::decode_stored(&mut &deep[..]),
            None,
            "nesting is bounded"
        );
        assert_eq!(Value::decode_stored(&mut &[99u8][..]), None);
    }

    #[test]
    fn type_names_as_ksqldb_prints_them() {
        let t = SqlType::Struct(vec![
            ("A".into(), SqlType::Int),
            (
                "b".into(),
                SqlType::Map(
                    Box::new(SqlType::String),
                    Box::new(SqlType::Array(Box::new(SqlType::Decimal {
                        precision: 4,
                        scale: 2,
                    }))),
                ),
            ),
        ]);
        assert_eq!(
            type_name(&t),
            "STRUCT<`A` INTEGER, `b` MAP<STRING, ARRAY<DECIMAL(4, 2)>>>"
        );
    }
}
