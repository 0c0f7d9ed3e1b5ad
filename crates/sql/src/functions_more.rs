//! More of ksqlDB's scalar functions: URL, regular expressions, JSON strings, bytes and
//! encodings, geography, series and slices, and a few math ones, with ksqlDB's null rules
//! (a NULL argument gives NULL unless the function says otherwise).
//!
//! `return_type` and `call` follow `functions`' contract: None for a name this module
//! does not know.

use crate::ast::SqlType;
use crate::eval::EvalError;
use crate::format::{base64_decode, base64_encode};
use crate::functions::{float, int, text};
use crate::value::Value;

fn bad(m: impl Into<String>) -> EvalError {
    EvalError::Type(m.into())
}

fn string() -> Option<Option<SqlType>> {
    Some(Some(SqlType::String))
}

fn array_of_strings() -> Option<SqlType> {
    Some(SqlType::Array(Box::new(SqlType::String)))
}

pub const NAMES: &[(&str, &str)] = &[
    ("ATAN2", "MATHEMATICAL"),
    ("CONVERT_TZ", "DATE / TIME"),
    ("DATETOSTRING", "DATE / TIME"),
    ("FORMAT_DATE", "DATE / TIME"),
    ("FORMAT_TIME", "DATE / TIME"),
    ("FORMAT_TIMESTAMP", "DATE / TIME"),
    ("FROM_UNIXTIME", "DATE / TIME"),
    ("PARSE_DATE", "DATE / TIME"),
    ("PARSE_TIME", "DATE / TIME"),
    ("PARSE_TIMESTAMP", "DATE / TIME"),
    ("STRINGTODATE", "DATE / TIME"),
    ("STRINGTOTIMESTAMP", "DATE / TIME"),
    ("TIMESTAMPTOSTRING", "DATE / TIME"),
    ("BIGINT_FROM_BYTES", "CONVERSIONS"),
    ("COSH", "MATHEMATICAL"),
    ("DOUBLE_FROM_BYTES", "CONVERSIONS"),
    ("ELT", "STRING"),
    ("ENCODE", "STRING"),
    ("FIELD", "STRING"),
    ("FROM_BYTES", "CONVERSIONS"),
    ("FROM_DAYS", "DATE / TIME"),
    ("GENERATE_SERIES", "ARRAY"),
    ("GEO_DISTANCE", "GEOSPATIAL"),
    ("INT_FROM_BYTES", "CONVERSIONS"),
    ("IS_JSON_STRING", "JSON"),
    ("JSON_ARRAY_CONTAINS", "JSON"),
    ("JSON_ARRAY_LENGTH", "JSON"),
    ("JSON_CONCAT", "JSON"),
    ("JSON_ITEMS", "JSON"),
    ("JSON_KEYS", "JSON"),
    ("JSON_RECORDS", "JSON"),
    ("REGEXP_EXTRACT", "REGULAR EXPRESSION"),
    ("REGEXP_EXTRACT_ALL", "REGULAR EXPRESSION"),
    ("REGEXP_REPLACE", "REGULAR EXPRESSION"),
    ("REGEXP_SPLIT_TO_ARRAY", "REGULAR EXPRESSION"),
    ("SINH", "MATHEMATICAL"),
    ("SLICE", "ARRAY"),
    ("SPLIT_TO_MAP", "STRING"),
    ("TANH", "MATHEMATICAL"),
    ("TO_BYTES", "CONVERSIONS"),
    ("TRUNC", "MATHEMATICAL"),
    ("URL_DECODE_PARAM", "URL"),
    ("URL_ENCODE_PARAM", "URL"),
    ("URL_EXTRACT_FRAGMENT", "URL"),
    ("URL_EXTRACT_HOST", "URL"),
    ("URL_EXTRACT_PARAMETER", "URL"),
    ("URL_EXTRACT_PATH", "URL"),
    ("URL_EXTRACT_PORT", "URL"),
    ("URL_EXTRACT_PROTOCOL", "URL"),
    ("URL_EXTRACT_QUERY", "URL"),
];

/// The result type of `name(args)`, None if this module does not know `name`.
pub fn return_type(name: &str, args: &[Option<SqlType>]) -> Option<Option<SqlType>> {
    let first = args.first().cloned().flatten();
    Some(match name {
        "SINH" | "COSH" | "TANH" | "ATAN2" | "GEO_DISTANCE" | "DOUBLE_FROM_BYTES" => {
            Some(SqlType::Double)
        }
        "TRUNC" => match (&first, args.len()) {
            (Some(SqlType::Double), 1) => Some(SqlType::Bigint),
            (Some(SqlType::Decimal { precision, scale }), 1) => Some(SqlType::Decimal {
                precision: (precision - scale).max(1),
                scale: 0,
            }),
            _ => first,
        },
        "SLICE" => first,
        "GENERATE_SERIES" => Some(SqlType::Array(Box::new(
            if args.contains(&Some(SqlType::Bigint)) {
                SqlType::Bigint
            } else {
                SqlType::Int
            },
        ))),
        "ELT"
        | "ENCODE"
        | "FROM_BYTES"
        | "JSON_CONCAT"
        | "REGEXP_EXTRACT"
        | "REGEXP_REPLACE"
        | "URL_DECODE_PARAM"
        | "URL_ENCODE_PARAM"
        | "URL_EXTRACT_FRAGMENT"
        | "URL_EXTRACT_HOST"
        | "URL_EXTRACT_PARAMETER"
        | "URL_EXTRACT_PATH"
        | "URL_EXTRACT_PROTOCOL"
        | "URL_EXTRACT_QUERY" => return string(),
        "FIELD" | "INT_FROM_BYTES" | "JSON_ARRAY_LENGTH" | "URL_EXTRACT_PORT" => Some(SqlType::Int),
        "BIGINT_FROM_BYTES" => Some(SqlType::Bigint),
        "IS_JSON_STRING" | "JSON_ARRAY_CONTAINS" => Some(SqlType::Boolean),
        "TO_BYTES" => Some(SqlType::Bytes),
        "TIMESTAMPTOSTRING" | "FORMAT_TIMESTAMP" | "FORMAT_DATE" | "FORMAT_TIME"
        | "DATETOSTRING" => return string(),
        "STRINGTOTIMESTAMP" => Some(SqlType::Bigint),
        "STRINGTODATE" => Some(SqlType::Int),
        "PARSE_TIMESTAMP" | "CONVERT_TZ" | "FROM_UNIXTIME" => Some(SqlType::Timestamp),
        "PARSE_DATE" => Some(SqlType::Date),
        "PARSE_TIME" => Some(SqlType::Time),
        "FROM_DAYS" => Some(SqlType::Date),
        "JSON_KEYS" | "JSON_ITEMS" | "REGEXP_EXTRACT_ALL" | "REGEXP_SPLIT_TO_ARRAY" => {
            array_of_strings()
        }
        "JSON_RECORDS" | "SPLIT_TO_MAP" => Some(SqlType::Map(
            Box::new(SqlType::String),
            Box::new(SqlType::String),
        )),
        _ => return None,
    })
}

/// Bytes from text in an encoding ksqlDB names (hex, utf8, ascii, base64).
fn decode(s: &str, encoding: &str) -> Result<Vec<u8>, EvalError> {
    Ok(match encoding.to_ascii_lowercase().as_str() {
        // Hex digits, `0x…` (an odd count takes a leading 0) or `X'…'` (even count).
        "hex" => {
            let invalid = || bad(format!("Invalid hex string: {s}"));
            let s = if let Some(digits) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                if digits.len() % 2 == 1 {
                    format!("0{digits}")
                } else {
                    digits.to_string()
                }
            } else if let Some(quoted) = s.strip_prefix("X'").or_else(|| s.strip_prefix("x'")) {
                quoted.strip_suffix('\'').ok_or_else(invalid)?.to_string()
            } else {
                s.to_string()
            };
            if s.len() % 2 == 1 || !s.is_ascii() {
                return Err(invalid());
            }
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
                .collect::<Result<_, _>>()
                .map_err(|_| bad(format!("Invalid hex string: {s}")))?
        }
        "utf8" => s.as_bytes().to_vec(),
        // As Java's getBytes(US_ASCII): a character outside ASCII becomes '?'.
        "ascii" => s
            .chars()
            .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
            .collect(),
        "base64" => base64_decode(s).ok_or_else(|| bad("Invalid base64 string"))?,
        other => {
            return Err(bad(format!(
                "Supported input encodings are: hex, utf8, ascii and base64; got {other}"
            )))
        }
    })
}

fn encode(b: &[u8], encoding: &str) -> Result<String, EvalError> {
    Ok(match encoding.to_ascii_lowercase().as_str() {
        "hex" => b.iter().map(|x| format!("{x:02x}")).collect(),
        "utf8" => String::from_utf8_lossy(b).into_owned(),
        "ascii" => b
            .iter()
            .map(|&c| if c < 128 { c as char } else { '\u{FFFD}' })
            .collect(),
        "base64" => base64_encode(b),
        other => {
            return Err(bad(format!(
                "Supported output encodings are: hex, utf8, ascii and base64; got {other}"
            )))
        }
    })
}

/// The parts of a URL: (protocol, host, port, path, query, fragment).
struct Url<'a> {
    protocol: Option<&'a str>,
    host: Option<&'a str>,
    port: Option<i32>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

fn parse_url(s: &str) -> Option<Url<'_>> {
    let (protocol, rest) = match s.split_once("://") {
        Some((p, r))
            if !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (Some(p), r)
        }
        _ => (None, s),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = if protocol.is_some() {
        match rest.find('/') {
            Some(i) => (Some(&rest[..i]), &rest[i..]),
            None => (Some(rest), ""),
        }
    } else {
        (None, rest)
    };
    let (host, port) = match authority {
        Some(a) => {
            let a = a.rsplit_once('@').map_or(a, |(_, h)| h);
            match a.rsplit_once(':') {
                Some((h, p)) if !p.is_empty() => (Some(h), Some(p.parse().ok()?)),
                _ => (Some(a), None),
            }
        }
        None => (None, None),
    };
    Some(Url {
        protocol,
        host,
        port,
        path,
        query,
        fragment,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(x) => {
                    out.push(x);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for &c in s.as_bytes() {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(c as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{c:02X}")),
        }
    }
    out
}

fn regex(pattern: &str) -> Result<regex::Regex, EvalError> {
    regex::Regex::new(pattern).map_err(|e| bad(format!("Invalid regular expression pattern: {e}")))
}

/// A JSON item as text: a string's own text, anything else its JSON.
fn item_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => json_text(other),
    }
}

fn json_text(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Calls `name`, None if this module does not know it.
pub fn call(name: &str, args: &[Value]) -> Option<Result<Value, EvalError>> {
    return_type(name, &[])?;
    Some(call_known(name, args))
}

fn call_known(name: &str, args: &[Value]) -> Result<Value, EvalError> {
    static NULL: Value = Value::Null;
    let at = |i: usize| args.get(i).unwrap_or(&NULL);
    let any_null = || args.iter().any(Value::is_null);
    // Functions that take NULL arguments as values.
    match name {
        "ELT" => {
            let Some(n) = int(at(0)) else {
                return Ok(Value::Null);
            };
            return Ok(if n >= 1 && (n as usize) < args.len() {
                args[n as usize].clone()
            } else {
                Value::Null
            });
        }
        "FIELD" => {
            let Some(s) = text(at(0)) else {
                return Ok(Value::Int(0));
            };
            return Ok(Value::Int(
                args[1..]
                    .iter()
                    .position(|a| text(a) == Some(s))
                    .map_or(0, |i| i as i32 + 1),
            ));
        }
        "JSON_CONCAT" => {
            if any_null() {
                return Ok(Value::Null);
            }
            let parsed: Option<Vec<serde_json::Value>> = args
                .iter()
                .map(|a| text(a).and_then(|s| serde_json::from_str(s).ok()))
                .collect();
            let Some(parsed) = parsed else {
                return Ok(Value::Null);
            };
            let out = if parsed.iter().all(|p| p.is_object()) {
                let mut m = serde_json::Map::new();
                for p in parsed {
                    if let serde_json::Value::Object(o) = p {
                        m.extend(o);
                    }
                }
                serde_json::Value::Object(m)
            } else {
                let mut items = Vec::new();
                for p in parsed {
                    match p {
                        serde_json::Value::Array(a) => items.extend(a),
                        other => items.push(other),
                    }
                }
                serde_json::Value::Array(items)
            };
            return Ok(Value::String(json_text(&out)));
        }
        "GEO_DISTANCE" if args.len() == 5 && args[4].is_null() => {
            return call_known(name, &args[..4]);
        }
        "IS_JSON_STRING" => {
            return Ok(Value::Boolean(text(at(0)).is_some_and(|s| {
                serde_json::from_str::<serde_json::Value>(s).is_ok()
            })))
        }
        _ => {}
    }
    if any_null() {
        return Ok(Value::Null);
    }
    let s = |i: usize| text(at(i)).ok_or_else(|| bad(format!("{name} needs a string argument")));
    let f = |i: usize| float(at(i)).ok_or_else(|| bad(format!("{name} needs a number")));
    Ok(match name {
        "TIMESTAMPTOSTRING" | "FORMAT_TIMESTAMP" => {
            let ms = match at(0) {
                Value::Timestamp(t) | Value::Bigint(t) => *t,
                Value::Int(t) => *t as i64,
                _ => return Err(bad(format!("{name} needs a timestamp"))),
            };
            let zone = args.get(2).and_then(text).unwrap_or("UTC");
            Value::String(crate::datetime::format(ms, s(1)?, zone).map_err(bad)?)
        }
        "FORMAT_DATE" | "DATETOSTRING" => {
            let days = match at(0) {
                Value::Date(d) | Value::Int(d) => *d as i64,
                _ => return Err(bad(format!("{name} needs a date"))),
            };
            Value::String(crate::datetime::format(days * 86_400_000, s(1)?, "UTC").map_err(bad)?)
        }
        "FORMAT_TIME" => {
            let Value::Time(t) = at(0) else {
                return Err(bad("FORMAT_TIME needs a time"));
            };
            Value::String(crate::datetime::format(*t as i64, s(1)?, "UTC").map_err(bad)?)
        }
        "STRINGTOTIMESTAMP" | "PARSE_TIMESTAMP" => {
            let zone = args.get(2).and_then(text).unwrap_or("UTC");
            let ms = crate::datetime::parse(s(0)?, s(1)?, zone).map_err(bad)?;
            if name == "PARSE_TIMESTAMP" {
                Value::Timestamp(ms)
            } else {
                Value::Bigint(ms)
            }
        }
        "PARSE_DATE" | "STRINGTODATE" => {
            let days = crate::datetime::parse(s(0)?, s(1)?, "UTC")
                .map_err(bad)?
                .div_euclid(86_400_000) as i32;
            if name == "PARSE_DATE" {
                Value::Date(days)
            } else {
                Value::Int(days)
            }
        }
        "PARSE_TIME" => {
            let ms = crate::datetime::parse(s(0)?, s(1)?, "UTC").map_err(bad)?;
            Value::Time(ms.rem_euclid(86_400_000) as i32)
        }
        "CONVERT_TZ" => {
            let Value::Timestamp(t) = at(0) else {
                return Err(bad("CONVERT_TZ needs a timestamp"));
            };
            // The timestamp's fields read in one zone, written in the other.
            let from = crate::datetime::zone(s(1)?).map_err(bad)?;
            let to = crate::datetime::zone(s(2)?).map_err(bad)?;
            let instant = *t - i64::from(from.for_local(*t)) * 1000;
            Value::Timestamp(instant + i64::from(to.at_instant(instant).0) * 1000)
        }
        "FROM_UNIXTIME" => Value::Timestamp(int(at(0)).unwrap_or(0)),
        "SINH" => Value::Double(f(0)?.sinh()),
        "ATAN2" => Value::Double(f(0)?.atan2(f(1)?)),
        "COSH" => Value::Double(f(0)?.cosh()),
        "TANH" => Value::Double(f(0)?.tanh()),
        "TRUNC" => {
            let v = at(0).clone();
            let places = args.get(1).and_then(int);
            match (&v, places) {
                (Value::Int(_) | Value::Bigint(_), None) => v,
                (Value::Double(d), None) => Value::Bigint(d.trunc() as i64),
                (Value::Double(d), Some(p)) => {
                    let m = 10f64.powi(p as i32);
                    // `+ 0.0`: a truncation to zero is 0.0, not -0.0 (as Java's BigDecimal).
                    Value::Double((d * m).trunc() / m + 0.0)
                }
                (Value::Decimal(d), p) => {
                    let p = p.unwrap_or(0).max(0) as u32;
                    let unscaled = if p >= d.scale {
                        d.unscaled
                    } else {
                        let m = 10i128.pow(d.scale - p);
                        (d.unscaled / m) * m
                    };
                    let cut = crate::value::Decimal {
                        unscaled,
                        scale: d.scale,
                    };
                    Value::Decimal(if args.len() == 1 {
                        cut.rescale(0).unwrap_or(cut)
                    } else {
                        cut
                    })
                }
                (Value::Int(i), Some(p)) if p < 0 => {
                    let m = 10i64.pow((-p) as u32);
                    Value::Int(((*i as i64 / m) * m) as i32)
                }
                (Value::Bigint(i), Some(p)) if p < 0 => {
                    let m = 10i64.pow((-p) as u32);
                    Value::Bigint((i / m) * m)
                }
                (v, _) => v.clone(),
            }
        }
        "SLICE" => {
            let Value::Array(items) = at(0) else {
                return Err(bad("SLICE needs an array"));
            };
            let (from, to) = (
                int(at(1)).unwrap_or(1),
                int(at(2)).unwrap_or(items.len() as i64),
            );
            let from = from.max(1) as usize;
            let to = (to.max(0) as usize).min(items.len());
            Value::Array(if from > to {
                Vec::new()
            } else {
                items[from - 1..to].to_vec()
            })
        }
        "GENERATE_SERIES" => {
            let (start, end) = (int(at(0)).unwrap_or(0), int(at(1)).unwrap_or(0));
            let step = args
                .get(2)
                .and_then(int)
                .unwrap_or(if end >= start { 1 } else { -1 });
            if step == 0 {
                return Err(bad("GENERATE_SERIES step cannot be zero"));
            }
            if (end - start).signum() * step.signum() < 0 {
                return Err(bad("GENERATE_SERIES step has the wrong sign"));
            }
            let count = ((end - start) / step + 1).max(0);
            if count > 1_000_000 {
                return Err(bad("GENERATE_SERIES would make more than 1,000,000 values"));
            }
            let bigint = args.iter().any(|a| matches!(a, Value::Bigint(_)));
            Value::Array(
                (0..count)
                    .map(|i| start + i * step)
                    .map(|x| {
                        if bigint {
                            Value::Bigint(x)
                        } else {
                            Value::Int(x as i32)
                        }
                    })
                    .collect(),
            )
        }
        "ENCODE" => Value::String(encode(&decode(s(0)?, s(1)?)?, s(2)?)?),
        "TO_BYTES" => Value::Bytes(decode(s(0)?, s(1)?)?),
        "FROM_BYTES" => {
            let Value::Bytes(b) = at(0) else {
                return Err(bad("FROM_BYTES needs BYTES"));
            };
            // ksqlDB's FROM_BYTES writes hex in upper case (ENCODE in lower case).
            let text = encode(b, s(1)?)?;
            Value::String(if s(1)?.eq_ignore_ascii_case("hex") {
                text.to_ascii_uppercase()
            } else {
                text
            })
        }
        "INT_FROM_BYTES" | "BIGINT_FROM_BYTES" | "DOUBLE_FROM_BYTES" => {
            let Value::Bytes(b) = at(0) else {
                return Err(bad(format!("{name} needs BYTES")));
            };
            let little = args
                .get(1)
                .and_then(text)
                .is_some_and(|o| o.eq_ignore_ascii_case("LITTLE_ENDIAN"));
            let width = if name == "INT_FROM_BYTES" { 4 } else { 8 };
            if b.len() != width {
                return Err(bad(format!(
                    "Number of bytes must be equal to {width}, but found {}",
                    b.len()
                )));
            }
            let mut a = [0u8; 8];
            a[..width].copy_from_slice(b);
            if little {
                a[..width].reverse();
            }
            match name {
                "INT_FROM_BYTES" => Value::Int(i32::from_be_bytes(a[..4].try_into().expect("4"))),
                "BIGINT_FROM_BYTES" => Value::Bigint(i64::from_be_bytes(a)),
                _ => Value::Double(f64::from_be_bytes(a)),
            }
        }
        "FROM_DAYS" => Value::Date(int(at(0)).unwrap_or(0) as i32),
        "GEO_DISTANCE" => {
            let (lat1, lon1, lat2, lon2) = (f(0)?, f(1)?, f(2)?, f(3)?);
            if !(-90.0..=90.0).contains(&lat1) || !(-90.0..=90.0).contains(&lat2) {
                return Err(bad("valid latitude values for GEO_DISTANCE are -90 to 90"));
            }
            if !(-180.0..=180.0).contains(&lon1) || !(-180.0..=180.0).contains(&lon2) {
                return Err(bad(
                    "valid longitude values for GEO_DISTANCE are -180 to 180",
                ));
            }
            let radius = match args.get(4).and_then(text).map(|u| u.to_ascii_lowercase()) {
                None => 6371.0,
                Some(u) if u == "km" || u == "kilometers" || u == "kilometres" => 6371.0,
                Some(u) if u == "mi" || u == "miles" => 3959.0,
                Some(u) => {
                    return Err(bad(format!(
                        "GEO_DISTANCE units must be one of KM or MILES; got {u}"
                    )))
                }
            };
            let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
            let dp = (lat2 - lat1).to_radians();
            let dl = (lon2 - lon1).to_radians();
            let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
            Value::Double(2.0 * radius * a.sqrt().asin())
        }
        "JSON_ARRAY_LENGTH" => match serde_json::from_str::<serde_json::Value>(s(0)?) {
            Ok(serde_json::Value::Array(a)) => Value::Int(a.len() as i32),
            _ => Value::Null,
        },
        "JSON_ARRAY_CONTAINS" => match serde_json::from_str::<serde_json::Value>(s(0)?) {
            Ok(serde_json::Value::Array(a)) => {
                let want = at(1);
                Value::Boolean(a.iter().any(|j| match (j, want) {
                    (serde_json::Value::String(x), Value::String(y)) => x == y,
                    (serde_json::Value::Bool(x), Value::Boolean(y)) => x == y,
                    (serde_json::Value::Number(n), v) => match (n.as_f64(), float(v)) {
                        (Some(x), Some(y)) => x == y,
                        _ => false,
                    },
                    _ => false,
                }))
            }
            _ => Value::Boolean(false),
        },
        "JSON_KEYS" => match serde_json::from_str::<serde_json::Value>(s(0)?) {
            Ok(serde_json::Value::Object(o)) => {
                Value::Array(o.keys().map(|k| Value::String(k.clone())).collect())
            }
            _ => Value::Null,
        },
        "JSON_RECORDS" => match serde_json::from_str::<serde_json::Value>(s(0)?) {
            Ok(serde_json::Value::Object(o)) => Value::Map(
                o.iter()
                    .map(|(k, v)| (Value::String(k.clone()), Value::String(item_text(v))))
                    .collect(),
            ),
            _ => Value::Null,
        },
        "JSON_ITEMS" => match serde_json::from_str::<serde_json::Value>(s(0)?) {
            Ok(serde_json::Value::Array(a)) => {
                Value::Array(a.iter().map(|v| Value::String(item_text(v))).collect())
            }
            _ => Value::Null,
        },
        "SPLIT_TO_MAP" => {
            let (text, entry, kv) = (s(0)?, s(1)?, s(2)?);
            if entry.is_empty() || kv.is_empty() {
                return Ok(Value::Null);
            }
            let mut out: Vec<(Value, Value)> = Vec::new();
            // As ksqlDB: an entry without the separator is skipped, and of one with
            // several only the first two parts count.
            for part in text.split(entry) {
                let mut parts = part.split(kv);
                if let (Some(k), Some(v)) = (parts.next(), parts.next()) {
                    let k = Value::String(k.to_string());
                    out.retain(|(x, _)| *x != k);
                    out.push((k, Value::String(v.to_string())));
                }
            }
            Value::Map(out)
        }
        "REGEXP_EXTRACT" => {
            let re = regex(s(0)?)?;
            let group = args.get(2).and_then(int).unwrap_or(0).max(0) as usize;
            match re.captures(s(1)?).and_then(|c| c.get(group)) {
                Some(m) => Value::String(m.as_str().to_string()),
                None => Value::Null,
            }
        }
        "REGEXP_EXTRACT_ALL" => {
            let re = regex(s(0)?)?;
            let group = args.get(2).and_then(int).unwrap_or(0).max(0) as usize;
            Value::Array(
                re.captures_iter(s(1)?)
                    .map(|c| {
                        c.get(group)
                            .map_or(Value::Null, |m| Value::String(m.as_str().to_string()))
                    })
                    .collect(),
            )
        }
        "REGEXP_REPLACE" => {
            let re = regex(s(1)?)?;
            // Java's `$1` group references are the regex crate's too.
            Value::String(re.replace_all(s(0)?, s(2)?).into_owned())
        }
        "REGEXP_SPLIT_TO_ARRAY" => {
            let re = regex(s(1)?)?;
            Value::Array(
                re.split(s(0)?)
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            )
        }
        "URL_ENCODE_PARAM" => Value::String(percent_encode(s(0)?)),
        "URL_DECODE_PARAM" => Value::String(percent_decode(s(0)?)),
        "URL_EXTRACT_HOST"
        | "URL_EXTRACT_PATH"
        | "URL_EXTRACT_PORT"
        | "URL_EXTRACT_PROTOCOL"
        | "URL_EXTRACT_QUERY"
        | "URL_EXTRACT_FRAGMENT"
        | "URL_EXTRACT_PARAMETER" => {
            let Some(u) = parse_url(s(0)?) else {
                return Ok(Value::Null);
            };
            let opt = |x: Option<&str>| x.map_or(Value::Null, |v| Value::String(v.to_string()));
            match name {
                "URL_EXTRACT_HOST" => opt(u.host),
                "URL_EXTRACT_PATH" => Value::String(u.path.to_string()),
                "URL_EXTRACT_PORT" => u.port.map_or(Value::Null, Value::Int),
                "URL_EXTRACT_PROTOCOL" => opt(u.protocol),
                "URL_EXTRACT_QUERY" => opt(u.query),
                "URL_EXTRACT_FRAGMENT" => opt(u.fragment),
                _ => {
                    let want = s(1)?;
                    let found = u.query.and_then(|q| {
                        q.split('&').find_map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                            (percent_decode(k) == want).then(|| percent_decode(v))
                        })
                    });
                    opt(found.as_deref())
                }
            }
        }
        other => {
            return Err(bad(format!(
                "Can't find any functions with the name '{other}'"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::String(x.into())
    }

    fn call(name: &str, args: &[Value]) -> Value {
        super::call(name, args).unwrap().unwrap()
    }

    #[test]
    fn url_functions_take_a_url_apart() {
        let u = s("https://user@www.example.com:8080/a/b?x=1&q=hello%20world#frag");
        let u = &u;
        assert_eq!(
            call("URL_EXTRACT_HOST", std::slice::from_ref(u)),
            s("www.example.com")
        );
        assert_eq!(
            call("URL_EXTRACT_PORT", std::slice::from_ref(u)),
            Value::Int(8080)
        );
        assert_eq!(call("URL_EXTRACT_PATH", std::slice::from_ref(u)), s("/a/b"));
        assert_eq!(
            call("URL_EXTRACT_PROTOCOL", std::slice::from_ref(u)),
            s("https")
        );
        assert_eq!(
            call("URL_EXTRACT_FRAGMENT", std::slice::from_ref(u)),
            s("frag")
        );
        assert_eq!(
            call("URL_EXTRACT_PARAMETER", &[u.clone(), s("q")]),
            s("hello world")
        );
        assert_eq!(call("URL_EXTRACT_PORT", &[s("http://h/p")]), Value::Null);
        assert_eq!(call("URL_ENCODE_PARAM", &[s("a b&c")]), s("a+b%26c"));
        assert_eq!(call("URL_DECODE_PARAM", &[s("a+b%26c")]), s("a b&c"));
    }

    #[test]
    fn bytes_json_regex_and_math() {
        assert_eq!(
            call("ENCODE", &[s("4578616d706c6521"), s("hex"), s("base64")]),
            s("RXhhbXBsZSE=")
        );
        assert_eq!(
            call("INT_FROM_BYTES", &[Value::Bytes(vec![0, 0, 7, 229])]),
            Value::Int(2021)
        );
        assert_eq!(
            call("JSON_KEYS", &[s(r#"{"a":1,"b":[2]}"#)]),
            Value::Array(vec![s("a"), s("b")])
        );
        assert_eq!(call("JSON_ARRAY_LENGTH", &[s("[1,2,3]")]), Value::Int(3));
        assert_eq!(call("IS_JSON_STRING", &[s("{")]), Value::Boolean(false));
        assert_eq!(
            call(
                "REGEXP_EXTRACT",
                &[s("(\\d+)-(\\d+)"), s("ab 12-34"), Value::Int(2)]
            ),
            s("34")
        );
        assert_eq!(
            call("REGEXP_REPLACE", &[s("a1b22"), s("\\d+"), s("#")]),
            s("a#b#")
        );
        assert_eq!(call("TRUNC", &[Value::Double(-1.7)]), Value::Bigint(-1));
        assert_eq!(
            call(
                "SLICE",
                &[
                    Value::Array(vec![s("a"), s("b"), s("c")]),
                    Value::Int(2),
                    Value::Int(3)
                ]
            ),
            Value::Array(vec![s("b"), s("c")])
        );
        assert_eq!(
            call(
                "GENERATE_SERIES",
                &[Value::Int(0), Value::Int(6), Value::Int(2)]
            ),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(2),
                Value::Int(4),
                Value::Int(6)
            ])
        );
        assert_eq!(call("ELT", &[Value::Int(2), s("x"), s("y")]), s("y"));
        assert_eq!(call("FIELD", &[s("y"), s("x"), s("y")]), Value::Int(2));
        let d = call(
            "GEO_DISTANCE",
            &[
                Value::Double(37.4439),
                Value::Double(-122.1663),
                Value::Double(51.5257),
                Value::Double(-0.1122),
            ],
        );
        assert!(
            matches!(d, Value::Double(x) if (x - 8634.66).abs() < 1.0),
            "{d:?}"
        );
        assert_eq!(call("SINH", &[Value::Null]), Value::Null);
    }
}
