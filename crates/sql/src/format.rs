//! Record key and value formats as ksqlDB writes and reads them: JSON, DELIMITED, KAFKA and
//! NONE. A format turns a row's columns (names and types) into bytes and back.
//!
//! - JSON: an object keyed by column name, or the bare value when the row has one column
//!   and it is not wrapped (keys by default, values with `WRAP_SINGLE_VALUE=false`).
//!   Reading matches field names case-insensitively and coerces the way ksqlDB does
//!   (numbers from numeric strings, strings from any scalar). DECIMAL is written as an
//!   exact JSON number, TIMESTAMP as milliseconds, DATE as days, TIME as milliseconds,
//!   BYTES as base64.
//! - DELIMITED: one field per column, `,` (or `VALUE_DELIMITER`) between them, quoted
//!   with `"` only when needed; an empty field is NULL.
//! - KAFKA: one primitive column as Kafka's own serializers write it (INT 4 bytes and
//!   BIGINT 8 bytes big-endian, DOUBLE 8 bytes IEEE 754, STRING UTF-8, BYTES as is).
//! - NONE: no columns, no bytes.

use std::fmt::Write as _;

use crate::ast::SqlType;
use crate::eval::{cast, java_double};
use crate::value::{type_name, Decimal, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Json,
    Delimited { delimiter: char },
    Kafka,
    None,
}

impl Format {
    /// A format by ksqlDB's name (`JSON`, `DELIMITED`, `KAFKA`, `NONE`).
    pub fn parse(name: &str, delimiter: Option<&str>) -> Result<Format, FormatError> {
        Ok(match name.trim().to_ascii_uppercase().as_str() {
            "JSON" => Format::Json,
            "KAFKA" => Format::Kafka,
            "NONE" => Format::None,
            "DELIMITED" => Format::Delimited {
                delimiter: match delimiter.map(|d| d.to_ascii_uppercase()) {
                    None => ',',
                    Some(d) if d == "TAB" => '\t',
                    Some(d) if d == "SPACE" => ' ',
                    Some(d) if d.chars().count() == 1 => d.chars().next().expect("one char"),
                    Some(d) => {
                        return Err(FormatError(format!(
                            "Invalid delimiter value: '{d}'. Delimiter must be a single character or TAB or SPACE"
                        )))
                    }
                },
            },
            other => return Err(FormatError(format!("Unknown format: {other}"))),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

/// A column as the formats see it: a name and a type. Implemented by the catalog's and the
/// analyzer's column types, so rows are read and written without copying their schemas.
pub trait FieldSpec {
    fn field_name(&self) -> &str;
    fn field_type(&self) -> &SqlType;
}

impl FieldSpec for (String, SqlType) {
    fn field_name(&self) -> &str {
        &self.0
    }
    fn field_type(&self) -> &SqlType {
        &self.1
    }
}

impl FieldSpec for crate::catalog::Column {
    fn field_name(&self) -> &str {
        &self.name
    }
    fn field_type(&self) -> &SqlType {
        &self.sql_type
    }
}

impl FieldSpec for crate::analyzer::OutputColumn {
    fn field_name(&self) -> &str {
        &self.name
    }
    fn field_type(&self) -> &SqlType {
        &self.sql_type
    }
}

fn err(m: impl Into<String>) -> FormatError {
    FormatError(m.into())
}

/// Whether a key schema can be written in `format`, with ksqlDB's messages: no MAP
/// anywhere in a key; KAFKA keys of INT, BIGINT, DOUBLE, STRING, BYTES (and the temporal
/// types) only.
pub fn check_key_schema<C: FieldSpec>(format: &Format, key: &[C]) -> Result<(), FormatError> {
    fn has_map(t: &SqlType) -> bool {
        match t {
            SqlType::Map(..) => true,
            SqlType::Array(i) => has_map(i),
            SqlType::Struct(fields) => fields.iter().any(|(_, t)| has_map(t)),
            _ => false,
        }
    }
    if let Some(c) = key.iter().find(|c| has_map(c.field_type())) {
        return Err(err(format!(
            "Map keys, including types that contain maps, are not supported as they may lead to unexpected behavior due to inconsistent serialization. Key column name: `{}`. Column type: {}. See https://github.com/confluentinc/ksql/issues/6621 for more.",
            c.field_name(),
            type_name(c.field_type())
        )));
    }
    if *format != Format::Kafka {
        return Ok(());
    }
    let columns = key
        .iter()
        .map(|c| format!("`{}` {} KEY", c.field_name(), type_name(c.field_type())))
        .collect::<Vec<_>>()
        .join(", ");
    if key.len() > 1 {
        return Err(err(format!(
            "Key format does not support schema.\nformat: KAFKA\nschema: Persistence{{columns=[{columns}], features=[]}}\nreason: The 'KAFKA' format only supports a single field. Got: [{columns}]"
        )));
    }
    let unsupported = key.iter().find_map(|c| match c.field_type() {
        SqlType::Boolean => Some("BOOLEAN"),
        SqlType::Decimal { .. } => Some("DECIMAL"),
        SqlType::Array(_) => Some("ARRAY"),
        SqlType::Struct(_) => Some("STRUCT"),
        _ => None,
    });
    match unsupported {
        None => Ok(()),
        Some(kind) => Err(err(format!(
            "Key format does not support schema.\nformat: KAFKA\nschema: Persistence{{columns=[{columns}], features=[]}}\nreason: The 'KAFKA' format does not support type '{kind}'"
        ))),
    }
}

/// Writes `values` (one per column). `wrap`: a single JSON column as an object.
pub fn serialize<C: FieldSpec>(
    format: &Format,
    columns: &[C],
    values: &[Value],
    wrap: bool,
) -> Result<Option<Vec<u8>>, FormatError> {
    match format {
        Format::None => Ok(None),
        Format::Json => {
            if columns.len() == 1 && !wrap {
                if values[0].is_null() {
                    return Ok(None);
                }
                return Ok(Some(json_text(&values[0]).into_bytes()));
            }
            let mut out = String::with_capacity(16 * columns.len() + 16);
            write_json_list(
                columns.iter().zip(values),
                '{',
                '}',
                &mut out,
                |(c, v), out| {
                    write_json_string(c.field_name(), out);
                    out.push(':');
                    write_json(v, out);
                },
            );
            Ok(Some(out.into_bytes()))
        }
        Format::Delimited { delimiter } => {
            let fields: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| delimited_field(v, *delimiter, i == 0))
                .collect::<Result<_, _>>()?;
            Ok(Some(fields.join(&delimiter.to_string()).into_bytes()))
        }
        Format::Kafka => {
            let [v] = values else {
                return Err(err("The 'KAFKA' format only supports a single field."));
            };
            Ok(match v {
                Value::Null => None,
                Value::Int(i) => Some(i.to_be_bytes().to_vec()),
                Value::Bigint(i) => Some(i.to_be_bytes().to_vec()),
                Value::Double(d) => Some(d.to_be_bytes().to_vec()),
                Value::String(s) => Some(s.clone().into_bytes()),
                Value::Bytes(b) => Some(b.clone()),
                other => {
                    return Err(err(format!(
                        "The 'KAFKA' format does not support type '{}'",
                        other.sql_type().map_or("NULL".into(), |t| type_name(&t))
                    )))
                }
            })
        }
    }
}

/// Reads one value per column from `bytes` (None: a null key or a tombstone).
pub fn deserialize<C: FieldSpec>(
    format: &Format,
    columns: &[C],
    bytes: Option<&[u8]>,
    wrapped: bool,
) -> Result<Vec<Value>, FormatError> {
    let Some(bytes) = bytes else {
        return Ok(vec![Value::Null; columns.len()]);
    };
    match format {
        Format::None => Ok(Vec::new()),
        Format::Json => {
            if columns.len() != 1 || wrapped {
                if let Some(slots) = json_object_fields(bytes, columns) {
                    return columns
                        .iter()
                        .zip(slots)
                        .map(|(c, slot)| match slot {
                            None => Ok(Value::Null),
                            Some(j) => from_json_owned(j, c.field_type()),
                        })
                        .collect();
                }
            }
            let json: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|e| err(format!("Failed to deserialize JSON: {e}")))?;
            if columns.len() == 1 && !wrapped {
                return Ok(vec![from_json(&json, columns[0].field_type())?]);
            }
            let serde_json::Value::Object(map) = json else {
                if columns.len() == 1 {
                    // ksqlDB accepts an unwrapped single value where it expected wrapping.
                    return Ok(vec![from_json(&json, columns[0].field_type())?]);
                }
                return Err(err("Failed to deserialize JSON: expected an object"));
            };
            columns
                .iter()
                .map(|c| {
                    let name = c.field_name();
                    let field = map.get(name).or_else(|| {
                        map.iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v)
                    });
                    match field {
                        None => Ok(Value::Null),
                        Some(v) => from_json(v, c.field_type()),
                    }
                })
                .collect()
        }
        Format::Delimited { delimiter } => {
            let text =
                std::str::from_utf8(bytes).map_err(|_| err("DELIMITED data is not UTF-8"))?;
            let fields = split_delimited(text, *delimiter)?;
            if fields.len() != columns.len() {
                return Err(err(format!(
                    "Column count mismatch on deserialization. topic: , expected: {}, got: {}",
                    columns.len(),
                    fields.len()
                )));
            }
            columns
                .iter()
                .zip(fields)
                .map(|(c, f)| match (f, c.field_type()) {
                    (None, _) => Ok(Value::Null),
                    // BYTES as base64 text, as ksqlDB writes them.
                    (Some(s), SqlType::Bytes) => base64_decode(&s)
                        .map(Value::Bytes)
                        .ok_or_else(|| err(format!("'{s}' is not base64"))),
                    // DATE as days, TIME and TIMESTAMP as milliseconds, as ksqlDB writes them.
                    (Some(s), SqlType::Date) if s.parse::<i32>().is_ok() => {
                        Ok(Value::Date(s.parse().expect("checked")))
                    }
                    (Some(s), SqlType::Time) if s.parse::<i32>().is_ok() => {
                        Ok(Value::Time(s.parse().expect("checked")))
                    }
                    (Some(s), SqlType::Timestamp) if s.parse::<i64>().is_ok() => {
                        Ok(Value::Timestamp(s.parse().expect("checked")))
                    }
                    (Some(s), t) => cast(Value::String(s), t).map_err(|e| err(e.to_string())),
                })
                .collect()
        }
        Format::Kafka => {
            let [c] = columns else {
                return Err(err("The 'KAFKA' format only supports a single field."));
            };
            let t = c.field_type();
            let fixed = |n: usize| -> Result<&[u8], FormatError> {
                if bytes.len() == n {
                    Ok(bytes)
                } else {
                    Err(err(format!(
                        "Size of data received by Deserializer is not {n}: {} bytes",
                        bytes.len()
                    )))
                }
            };
            Ok(vec![match t {
                SqlType::Int => Value::Int(i32::from_be_bytes(fixed(4)?.try_into().expect("4"))),
                SqlType::Bigint => {
                    Value::Bigint(i64::from_be_bytes(fixed(8)?.try_into().expect("8")))
                }
                SqlType::Double => {
                    Value::Double(f64::from_be_bytes(fixed(8)?.try_into().expect("8")))
                }
                SqlType::String => Value::String(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| err("KAFKA STRING is not UTF-8"))?,
                ),
                SqlType::Bytes => Value::Bytes(bytes.to_vec()),
                other => {
                    return Err(err(format!(
                        "The 'KAFKA' format does not support type '{}'",
                        type_name(other)
                    )))
                }
            }])
        }
    }
}

/// The fields of a JSON object that name columns, read in one pass straight into one slot
/// per column, without building the whole document: a field whose name equals a column's
/// fills it (the last such field wins, as in a parsed object); else a field whose name
/// equals it ignoring ASCII case fills it if nothing has yet. None when `bytes` is not one
/// JSON object (the caller then takes the general path, which also words the error).
fn json_object_fields<C: FieldSpec>(
    bytes: &[u8],
    columns: &[C],
) -> Option<Vec<Option<serde_json::Value>>> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

    #[derive(Clone, Copy, PartialEq)]
    enum Filled {
        No,
        IgnoringCase,
        Exactly,
    }

    /// A field name: the first column it names exactly and the first it names ignoring
    /// case (no allocation). Two columns whose names differ only in case are rare (quoted
    /// identifiers); a field naming more than these two is read for these two only.
    type Hits = (Option<usize>, Option<usize>);
    struct KeySeed<'c, C>(&'c [C]);
    impl<'de, C: FieldSpec> DeserializeSeed<'de> for KeySeed<'_, C> {
        type Value = Hits;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl<C: FieldSpec> Visitor<'_> for KeySeed<'_, C> {
        type Value = Hits;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a field name")
        }
        fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
            let exact = self.0.iter().position(|c| c.field_name() == key);
            let ignoring_case = self
                .0
                .iter()
                .position(|c| c.field_name() != key && c.field_name().eq_ignore_ascii_case(key));
            Ok((exact, ignoring_case))
        }
    }

    struct Object<'c, C>(&'c [C]);
    impl<'de, C: FieldSpec> Visitor<'de> for Object<'_, C> {
        type Value = Vec<Option<serde_json::Value>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut slots: Vec<Option<serde_json::Value>> = vec![None; self.0.len()];
            let mut filled = vec![Filled::No; self.0.len()];
            while let Some((exact, ignoring_case)) = map.next_key_seed(KeySeed(self.0))? {
                let ignoring_case = ignoring_case.filter(|&i| filled[i] == Filled::No);
                let v: serde_json::Value = match (exact, ignoring_case) {
                    (None, None) => {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    _ => map.next_value()?,
                };
                match (exact, ignoring_case) {
                    (Some(e), Some(i)) => {
                        (filled[i], slots[i]) = (Filled::IgnoringCase, Some(v.clone()));
                        (filled[e], slots[e]) = (Filled::Exactly, Some(v));
                    }
                    (Some(e), None) => (filled[e], slots[e]) = (Filled::Exactly, Some(v)),
                    (None, Some(i)) => (filled[i], slots[i]) = (Filled::IgnoringCase, Some(v)),
                    (None, None) => {}
                }
            }
            Ok(slots)
        }
    }

    let mut de = serde_json::Deserializer::from_slice(bytes);
    let slots = de.deserialize_map(Object(columns)).ok()?;
    de.end().ok()?;
    Some(slots)
}

/// `from_json` of a value the caller owns (a string moves instead of being copied).
fn from_json_owned(j: serde_json::Value, t: &SqlType) -> Result<Value, FormatError> {
    match (j, t) {
        (serde_json::Value::String(s), SqlType::String) => Ok(Value::String(s)),
        (serde_json::Value::Number(n), SqlType::Bigint) if n.is_i64() => {
            Ok(Value::Bigint(n.as_i64().expect("i64")))
        }
        (serde_json::Value::Number(n), SqlType::Int)
            if n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) =>
        {
            Ok(Value::Int(n.as_i64().expect("i64") as i32))
        }
        (serde_json::Value::Number(n), SqlType::Double) if n.is_f64() => {
            Ok(Value::Double(n.as_f64().expect("f64")))
        }
        (j, t) => from_json(&j, t),
    }
}

/// A value as ksqlDB's JSON format writes it (DECIMAL with its exact digits and scale).
pub fn json_text(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_json_list<I>(
    items: impl Iterator<Item = I>,
    open: char,
    close: char,
    out: &mut String,
    mut each: impl FnMut(I, &mut String),
) {
    out.push(open);
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        each(item, out);
    }
    out.push(close);
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) | Value::Date(i) | Value::Time(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Bigint(i) | Value::Timestamp(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Double(d) if d.is_finite() => out.push_str(&java_double(*d)),
        // As Jackson writes them (quoted non-numeric numbers).
        Value::Double(d) if d.is_nan() => out.push_str("\"NaN\""),
        Value::Double(d) if *d > 0.0 => out.push_str("\"Infinity\""),
        Value::Double(_) => out.push_str("\"-Infinity\""),
        Value::Decimal(d) => {
            let _ = write!(out, "{d}");
        }
        Value::String(s) => write_json_string(s, out),
        Value::Bytes(b) => write_json_string(&base64_encode(b), out),
        Value::Array(items) => write_json_list(items.iter(), '[', ']', out, write_json),
        Value::Map(entries) => write_json_list(entries.iter(), '{', '}', out, |(k, v), out| {
            write_json_string(&crate::eval::to_string(k), out);
            out.push(':');
            write_json(v, out);
        }),
        Value::Struct(fields) => write_json_list(fields.iter(), '{', '}', out, |(n, v), out| {
            write_json_string(n, out);
            out.push(':');
            write_json(v, out);
        }),
    }
}

/// A JSON value read as `t`, with ksqlDB's coercions.
pub fn from_json(j: &serde_json::Value, t: &SqlType) -> Result<Value, FormatError> {
    use serde_json::Value as J;
    if j.is_null() {
        return Ok(Value::Null);
    }
    let mismatch = || {
        err(format!(
            "Can't convert type. sourceType: {}, requiredType: {}, value: {j}",
            json_type(j),
            type_name(t)
        ))
    };
    Ok(match t {
        SqlType::Boolean => match j {
            J::Bool(b) => Value::Boolean(*b),
            J::String(s) if s.eq_ignore_ascii_case("true") => Value::Boolean(true),
            J::String(s) if s.eq_ignore_ascii_case("false") => Value::Boolean(false),
            _ => return Err(mismatch()),
        },
        SqlType::Int | SqlType::Bigint | SqlType::Double | SqlType::Decimal { .. } => {
            let text = match j {
                J::Number(n) => n.to_string(),
                J::String(s) => s.trim().to_string(),
                _ => return Err(mismatch()),
            };
            let v = match t {
                SqlType::Double => Value::Double(text.parse().map_err(|_| mismatch())?),
                SqlType::Decimal { .. } => Value::Decimal(
                    Decimal::parse(&text)
                        .or_else(|| {
                            text.parse::<f64>()
                                .ok()
                                .and_then(|d| Decimal::parse(&format!("{d}")))
                        })
                        .ok_or_else(mismatch)?,
                ),
                _ => {
                    let i: i64 = text
                        .parse()
                        .or_else(|_| text.parse::<f64>().map(|d| d as i64))
                        .map_err(|_| mismatch())?;
                    if *t == SqlType::Int {
                        Value::Int(i as i32)
                    } else {
                        Value::Bigint(i)
                    }
                }
            };
            cast(v, t).map_err(|e| err(e.to_string()))?
        }
        SqlType::String => match j {
            J::String(s) => Value::String(s.clone()),
            J::Number(n) => Value::String(match n.as_f64() {
                Some(d) if n.is_f64() => java_double(d),
                _ => n.to_string(),
            }),
            J::Bool(b) => Value::String(b.to_string()),
            other => Value::String(other.to_string()),
        },
        SqlType::Bytes => match j {
            J::String(s) => Value::Bytes(base64_decode(s).ok_or_else(mismatch)?),
            _ => return Err(mismatch()),
        },
        SqlType::Timestamp => match j {
            J::Number(n) => Value::Timestamp(n.as_i64().ok_or_else(mismatch)?),
            J::String(s) => cast(Value::String(s.clone()), t).map_err(|e| err(e.to_string()))?,
            _ => return Err(mismatch()),
        },
        SqlType::Date => match j {
            J::Number(n) => Value::Date(n.as_i64().ok_or_else(mismatch)? as i32),
            J::String(s) => cast(Value::String(s.clone()), t).map_err(|e| err(e.to_string()))?,
            _ => return Err(mismatch()),
        },
        SqlType::Time => match j {
            J::Number(n) => Value::Time(n.as_i64().ok_or_else(mismatch)? as i32),
            J::String(s) => cast(Value::String(s.clone()), t).map_err(|e| err(e.to_string()))?,
            _ => return Err(mismatch()),
        },
        SqlType::Array(item) => match j {
            J::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| from_json(i, item))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(mismatch()),
        },
        SqlType::Map(kt, vt) => match j {
            J::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| {
                        Ok((
                            cast(Value::String(k.clone()), kt).map_err(|e| err(e.to_string()))?,
                            from_json(v, vt)?,
                        ))
                    })
                    .collect::<Result<_, FormatError>>()?,
            ),
            _ => return Err(mismatch()),
        },
        SqlType::Struct(fields) => match j {
            J::Object(map) => Value::Struct(
                fields
                    .iter()
                    .map(|(name, ft)| {
                        let v = map.get(name).or_else(|| {
                            map.iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                                .map(|(_, v)| v)
                        });
                        Ok((
                            name.clone(),
                            match v {
                                None => Value::Null,
                                Some(v) => from_json(v, ft)?,
                            },
                        ))
                    })
                    .collect::<Result<_, FormatError>>()?,
            ),
            _ => return Err(mismatch()),
        },
        SqlType::Custom(name) => return Err(err(format!("unresolved type {name}"))),
    })
}

fn json_type(j: &serde_json::Value) -> &'static str {
    match j {
        serde_json::Value::Null => "NULL",
        serde_json::Value::Bool(_) => "BOOLEAN",
        serde_json::Value::Number(_) => "NUMBER",
        serde_json::Value::String(_) => "STRING",
        serde_json::Value::Array(_) => "ARRAY",
        serde_json::Value::Object(_) => "OBJECT",
    }
}

/// One DELIMITED field; `first`: it starts the line (an empty string is quoted only
/// there, as Commons CSV does, so a line of one empty field is not an empty line).
fn delimited_field(v: &Value, delimiter: char, first: bool) -> Result<String, FormatError> {
    let text = match v {
        Value::Null => return Ok(String::new()),
        Value::Array(_) | Value::Map(_) | Value::Struct(_) => {
            return Err(err(
                "The 'DELIMITED' format does not support type 'ARRAY', 'MAP' or 'STRUCT'",
            ))
        }
        Value::Bytes(b) => base64_encode(b),
        Value::Timestamp(ms) => ms.to_string(),
        Value::Date(d) => d.to_string(),
        Value::Time(t) => t.to_string(),
        other => crate::eval::to_string(other),
    };
    // Commons CSV's minimal quoting (ksqlDB's writer): also a field starting with a
    // character up to '#' or ending with one up to ' '.
    let edge = text.starts_with(|c: char| c <= '#') || text.ends_with(|c: char| c <= ' ');
    if edge
        || text.contains([delimiter, '"', '\n', '\r'])
        || first && text.is_empty() && matches!(v, Value::String(_))
    {
        Ok(format!("\"{}\"", text.replace('"', "\"\"")))
    } else {
        Ok(text)
    }
}

/// Splits a DELIMITED line (RFC 4180 quoting): None for an empty unquoted field.
fn split_delimited(text: &str, delimiter: char) -> Result<Vec<Option<String>>, FormatError> {
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut field = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(err("DELIMITED: unterminated quoted field")),
                }
            }
        }
        while let Some(&c) = chars.peek() {
            if c == delimiter {
                break;
            }
            if quoted {
                return Err(err("DELIMITED: text after a quoted field"));
            }
            field.push(c);
            chars.next();
        }
        fields.push(if field.is_empty() && !quoted {
            None
        } else {
            Some(field)
        });
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<(String, SqlType)> {
        vec![
            ("ID".into(), SqlType::Int),
            ("NAME".into(), SqlType::String),
            (
                "PRICE".into(),
                SqlType::Decimal {
                    precision: 4,
                    scale: 2,
                },
            ),
        ]
    }

    #[test]
    fn json_round_trip_exact_decimals_and_case_insensitive_fields() {
        let values = vec![
            Value::Int(1),
            Value::String("a,\"b\"".into()),
            Value::Decimal(Decimal::parse("1.50").unwrap()),
        ];
        let bytes = serialize(&Format::Json, &cols(), &values, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"ID":1,"NAME":"a,\"b\"","PRICE":1.50}"#
        );
        assert_eq!(
            deserialize(&Format::Json, &cols(), Some(&bytes), true).unwrap(),
            values
        );
        let read = deserialize(
            &Format::Json,
            &cols(),
            Some(br#"{"id":"7","Name":3,"price":2}"#),
            true,
        )
        .unwrap();
        assert_eq!(
            read,
            vec![
                Value::Int(7),
                Value::String("3".into()),
                Value::Decimal(Decimal::parse("2.00").unwrap())
            ]
        );
        // A single unwrapped key column.
        let key = vec![("K".into(), SqlType::String)];
        let bytes = serialize(&Format::Json, &key, &[Value::String("x".into())], false)
            .unwrap()
            .unwrap();
        assert_eq!(bytes, b"\"x\"");
        assert_eq!(
            deserialize(&Format::Json, &key, None, false).unwrap(),
            vec![Value::Null]
        );
        assert!(deserialize(&Format::Json, &cols(), Some(b"{nope"), true).is_err());
    }

    #[test]
    fn json_fields_read_in_one_pass_follow_the_parsed_objects_rules() {
        // The general path: parse the whole object, then look each column up.
        let general = |bytes: &[u8]| -> Vec<Value> {
            let serde_json::Value::Object(map) = serde_json::from_slice(bytes).unwrap() else {
                panic!("not an object")
            };
            cols()
                .iter()
                .map(|(name, t)| {
                    map.get(name)
                        .or_else(|| {
                            map.iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                                .map(|(_, v)| v)
                        })
                        .map_or(Value::Null, |v| from_json(v, t).unwrap())
                })
                .collect()
        };
        for doc in [
            &br#"{"ID":1,"NAME":"a","PRICE":1.5}"#[..],
            br#"{"id":1,"ID":2,"name":"lower","NAME":"upper"}"#,
            br#"{"ID":2,"id":1}"#,
            br#"{"ID":1,"ID":3,"other":{"x":[1,2]},"Name":"first","nAme":"second"}"#,
            br#"{"N\u0041ME":"escaped key","price":"12.5"}"#,
            br#" {} "#,
        ] {
            let fast = deserialize(&Format::Json, &cols(), Some(doc), true).unwrap();
            assert_eq!(fast, general(doc), "{}", String::from_utf8_lossy(doc));
        }
        assert_eq!(
            deserialize(&Format::Json, &cols(), Some(br#"{"id":1,"ID":2}"#), true).unwrap()[0],
            Value::Int(2)
        );
        // Not one object: errors as before; a bare value for a single wrapped column.
        for bad in [&b"{\"ID\":1} x"[..], b"[1]", b"{\"ID\":}"] {
            assert!(deserialize(&Format::Json, &cols(), Some(bad), true).is_err());
        }
        let one = vec![("V".to_string(), SqlType::Bigint)];
        assert_eq!(
            deserialize(&Format::Json, &one, Some(b"42"), true).unwrap(),
            vec![Value::Bigint(42)]
        );
        assert_eq!(
            deserialize(
                &Format::Json,
                &one,
                Some(br#"{"v":9007199254740993}"#),
                true
            )
            .unwrap(),
            vec![Value::Bigint(9_007_199_254_740_993)]
        );
    }

    #[test]
    fn delimited_quotes_only_when_needed_and_reads_back() {
        let values = vec![Value::Int(1), Value::String("a,\"b\"".into()), Value::Null];
        let f = Format::parse("DELIMITED", None).unwrap();
        let bytes = serialize(&f, &cols(), &values, true).unwrap().unwrap();
        assert_eq!(bytes, b"1,\"a,\"\"b\"\"\",");
        assert_eq!(
            deserialize(&f, &cols(), Some(&bytes), true).unwrap(),
            values
        );
        let tab = Format::parse("DELIMITED", Some("TAB")).unwrap();
        assert_eq!(
            deserialize(&tab, &cols(), Some(b"2\tx\t3.25"), true).unwrap(),
            vec![
                Value::Int(2),
                Value::String("x".into()),
                Value::Decimal(Decimal::parse("3.25").unwrap())
            ]
        );
        let e = deserialize(&f, &cols(), Some(b"1,2"), true).unwrap_err();
        assert!(e.0.contains("Column count mismatch"), "{e}");
        assert!(Format::parse("DELIMITED", Some("ab")).is_err());
    }

    #[test]
    fn kafka_primitives_as_kafkas_serializers_write_them() {
        let int = vec![("K".into(), SqlType::Int)];
        assert_eq!(
            serialize(&Format::Kafka, &int, &[Value::Int(1)], false)
                .unwrap()
                .unwrap(),
            [0, 0, 0, 1]
        );
        assert_eq!(
            deserialize(&Format::Kafka, &int, Some(&[0, 0, 1, 0]), false).unwrap(),
            vec![Value::Int(256)]
        );
        assert!(deserialize(&Format::Kafka, &int, Some(&[0, 1]), false).is_err());
        let big = vec![("K".into(), SqlType::Bigint)];
        assert_eq!(
            deserialize(&Format::Kafka, &big, Some(&(-2i64).to_be_bytes()), false).unwrap(),
            vec![Value::Bigint(-2)]
        );
        assert!(serialize(
            &Format::Kafka,
            &cols(),
            &[Value::Null, Value::Null, Value::Null],
            false
        )
        .is_err());
    }

    #[test]
    fn json_text_escapes_and_nests() {
        let v = Value::Struct(vec![
            ("A".into(), Value::String("q\"\\\n\u{1}".into())),
            (
                "B".into(),
                Value::Array(vec![Value::Double(1.0), Value::Null]),
            ),
            (
                "C".into(),
                Value::Map(vec![(
                    Value::String("k".into()),
                    Value::Bytes(b"hi".to_vec()),
                )]),
            ),
        ]);
        let text = json_text(&v);
        assert_eq!(
            text,
            r#"{"A":"q\"\\\n\u0001","B":[1.0,null],"C":{"k":"aGk="}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["A"], "q\"\\\n\u{1}");
    }

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\x00\xff\x10"] {
            assert_eq!(base64_decode(&base64_encode(data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
        assert!(base64_decode("!!").is_none());
    }
}
