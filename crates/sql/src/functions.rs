//! ksqlDB's scalar function library (a growing part of it): each function's result type
//! from its argument types ([`return_type`]) and its value ([`call`]), with ksqlDB's null
//! rules (a NULL argument gives NULL unless the function says otherwise).

use std::cmp::Ordering;

use crate::ast::SqlType;
use crate::eval::{compare, EvalError};
use crate::format::json_text;
use crate::value::{Decimal, Value};

/// The functions this engine knows, as SHOW FUNCTIONS lists them: (name, type,
/// category). A test checks every scalar one is accepted by the analyzer.
pub const FUNCTIONS: &[(&str, &str, &str)] = &[
    ("ABS", "SCALAR", "MATHEMATICAL"),
    ("ACOS", "SCALAR", "MATHEMATICAL"),
    ("ARRAY_CONCAT", "SCALAR", "ARRAY"),
    ("ARRAY_CONTAINS", "SCALAR", "ARRAY"),
    ("ARRAY_DISTINCT", "SCALAR", "ARRAY"),
    ("ARRAY_EXCEPT", "SCALAR", "ARRAY"),
    ("ARRAY_INTERSECT", "SCALAR", "ARRAY"),
    ("ARRAY_JOIN", "SCALAR", "ARRAY"),
    ("ARRAY_LENGTH", "SCALAR", "ARRAY"),
    ("ARRAY_MAX", "SCALAR", "ARRAY"),
    ("ARRAY_MIN", "SCALAR", "ARRAY"),
    ("ARRAY_REMOVE", "SCALAR", "ARRAY"),
    ("ARRAY_SORT", "SCALAR", "ARRAY"),
    ("ARRAY_UNION", "SCALAR", "ARRAY"),
    ("ASIN", "SCALAR", "MATHEMATICAL"),
    ("AS_MAP", "SCALAR", "MAP"),
    ("AS_VALUE", "SCALAR", "OTHER"),
    ("ATAN", "SCALAR", "MATHEMATICAL"),
    ("ATTR", "AGGREGATE", "AGGREGATE"),
    ("AVG", "AGGREGATE", "AGGREGATE"),
    ("CORRELATION", "AGGREGATE", "AGGREGATE"),
    ("HISTOGRAM", "AGGREGATE", "AGGREGATE"),
    ("TOPK", "AGGREGATE", "AGGREGATE"),
    ("TOPKDISTINCT", "AGGREGATE", "AGGREGATE"),
    ("CBRT", "SCALAR", "MATHEMATICAL"),
    ("CEIL", "SCALAR", "MATHEMATICAL"),
    ("CHR", "SCALAR", "STRING"),
    ("COALESCE", "SCALAR", "CONDITIONAL"),
    ("COLLECT_LIST", "AGGREGATE", "AGGREGATE"),
    ("COLLECT_SET", "AGGREGATE", "AGGREGATE"),
    ("CONCAT", "SCALAR", "STRING"),
    ("CONCAT_WS", "SCALAR", "STRING"),
    ("COS", "SCALAR", "MATHEMATICAL"),
    ("COT", "SCALAR", "MATHEMATICAL"),
    ("COUNT", "AGGREGATE", "AGGREGATE"),
    ("COUNT_DISTINCT", "AGGREGATE", "AGGREGATE"),
    ("DEGREES", "SCALAR", "MATHEMATICAL"),
    ("EARLIEST_BY_OFFSET", "AGGREGATE", "AGGREGATE"),
    ("ENTRIES", "SCALAR", "MAP"),
    ("EXP", "SCALAR", "MATHEMATICAL"),
    ("EXTRACTJSONFIELD", "SCALAR", "JSON"),
    ("FLOOR", "SCALAR", "MATHEMATICAL"),
    ("GREATEST", "SCALAR", "MATHEMATICAL"),
    ("IFNULL", "SCALAR", "CONDITIONAL"),
    ("INITCAP", "SCALAR", "STRING"),
    ("INSTR", "SCALAR", "STRING"),
    ("LATEST_BY_OFFSET", "AGGREGATE", "AGGREGATE"),
    ("LCASE", "SCALAR", "STRING"),
    ("LEAST", "SCALAR", "MATHEMATICAL"),
    ("LEN", "SCALAR", "STRING"),
    ("LN", "SCALAR", "MATHEMATICAL"),
    ("LOG", "SCALAR", "MATHEMATICAL"),
    ("LPAD", "SCALAR", "STRING"),
    ("MAP_KEYS", "SCALAR", "MAP"),
    ("MAP_UNION", "SCALAR", "MAP"),
    ("MAP_VALUES", "SCALAR", "MAP"),
    ("MAX", "AGGREGATE", "AGGREGATE"),
    ("MIN", "AGGREGATE", "AGGREGATE"),
    ("NULLIF", "SCALAR", "CONDITIONAL"),
    ("PI", "SCALAR", "MATHEMATICAL"),
    ("RANDOM", "SCALAR", "MATHEMATICAL"),
    ("POWER", "SCALAR", "MATHEMATICAL"),
    ("RADIANS", "SCALAR", "MATHEMATICAL"),
    ("REPLACE", "SCALAR", "STRING"),
    ("REVERSE", "SCALAR", "STRING"),
    ("ROUND", "SCALAR", "MATHEMATICAL"),
    ("RPAD", "SCALAR", "STRING"),
    ("SIGN", "SCALAR", "MATHEMATICAL"),
    ("SIN", "SCALAR", "MATHEMATICAL"),
    ("SPLIT", "SCALAR", "STRING"),
    ("SQRT", "SCALAR", "MATHEMATICAL"),
    ("SUBSTRING", "SCALAR", "STRING"),
    ("SUM", "AGGREGATE", "AGGREGATE"),
    ("TAN", "SCALAR", "MATHEMATICAL"),
    ("TO_JSON_STRING", "SCALAR", "JSON"),
    ("TRIM", "SCALAR", "STRING"),
    ("UCASE", "SCALAR", "STRING"),
    ("UNIX_DATE", "SCALAR", "DATE / TIME"),
    ("UNIX_TIMESTAMP", "SCALAR", "DATE / TIME"),
];

fn bad(m: impl Into<String>) -> EvalError {
    EvalError::Function(m.into())
}

/// Numeric widening as ksqlDB orders it: INT < BIGINT < DECIMAL < DOUBLE.
fn widest(types: &[Option<SqlType>]) -> Option<SqlType> {
    let rank = |t: &SqlType| match t {
        SqlType::Int => 1,
        SqlType::Bigint => 2,
        SqlType::Decimal { .. } => 3,
        SqlType::Double => 4,
        _ => 0,
    };
    let mut best: Option<SqlType> = None;
    for t in types.iter().flatten() {
        best = match best {
            None => Some(t.clone()),
            Some(b) if rank(t) > rank(&b) => Some(t.clone()),
            Some(b) => Some(b),
        };
    }
    best
}

fn array_of(t: &Option<SqlType>) -> Option<SqlType> {
    match t {
        Some(SqlType::Array(i)) => Some((**i).clone()),
        _ => None,
    }
}

/// The result type of `name(args)`, None if there is no such function here. An inner
/// None is a NULL-typed result (unknown).
pub fn return_type(name: &str, args: &[Option<SqlType>]) -> Option<Option<SqlType>> {
    let first = args.first().cloned().flatten();
    let double = Some(Some(SqlType::Double));
    Some(match name {
        "AS_VALUE" => first,
        "SUBSTRING" | "LPAD" | "RPAD" | "CONCAT_WS" if first == Some(SqlType::Bytes) => {
            Some(SqlType::Bytes)
        }
        "SUBSTRING" | "REPLACE" | "LPAD" | "RPAD" | "CONCAT_WS" | "INITCAP" | "CHR"
        | "TO_JSON_STRING" | "EXTRACTJSONFIELD" | "ARRAY_JOIN" | "REVERSE" => Some(SqlType::String),
        "LEAST" | "GREATEST" => widest(args),
        "INSTR" | "ARRAY_LENGTH" | "UNIX_DATE" => Some(SqlType::Int),
        "UNIX_TIMESTAMP" => Some(SqlType::Bigint),
        "ARRAY_CONTAINS" => Some(SqlType::Boolean),
        "SPLIT" => match first {
            Some(SqlType::Bytes) => Some(SqlType::Array(Box::new(SqlType::Bytes))),
            _ => Some(SqlType::Array(Box::new(SqlType::String))),
        },
        "ROUND" => match (&first, args.len()) {
            (Some(SqlType::Double), 1) => Some(SqlType::Bigint),
            (Some(SqlType::Decimal { precision, scale }), 1) => Some(SqlType::Decimal {
                precision: (precision - scale + 1).max(1),
                scale: 0,
            }),
            _ => first,
        },
        "FLOOR" | "CEIL" | "SIGN" if matches!(first, Some(SqlType::Decimal { .. })) => first,
        "FLOOR" | "CEIL" | "SIGN" => first,
        "SQRT" | "EXP" | "LN" | "LOG" | "POWER" | "SIN" | "COS" | "TAN" | "ASIN" | "ACOS"
        | "ATAN" | "COT" | "DEGREES" | "RADIANS" | "PI" | "CBRT" | "RANDOM" => return double,
        "ARRAY_DISTINCT" | "ARRAY_SORT" | "ARRAY_REMOVE" | "ARRAY_UNION" | "ARRAY_INTERSECT"
        | "ARRAY_EXCEPT" | "ARRAY_CONCAT" => first,
        "ARRAY_MIN" | "ARRAY_MAX" => array_of(&first),
        "MAP_KEYS" => match &first {
            Some(SqlType::Map(k, _)) => Some(SqlType::Array(k.clone())),
            _ => None,
        },
        "MAP_VALUES" => match &first {
            Some(SqlType::Map(_, v)) => Some(SqlType::Array(v.clone())),
            _ => None,
        },
        "MAP_UNION" => first.or_else(|| args.get(1).cloned().flatten()),
        // An array of STRUCT<K, V>, one per entry.
        "ENTRIES" => match &first {
            Some(SqlType::Map(k, v)) => Some(SqlType::Array(Box::new(SqlType::Struct(vec![
                ("K".into(), (**k).clone()),
                ("V".into(), (**v).clone()),
            ])))),
            _ => None,
        },
        "AS_MAP" => match (&first, args.get(1).cloned().flatten()) {
            (Some(SqlType::Array(k)), Some(SqlType::Array(v))) => Some(SqlType::Map(k.clone(), v)),
            _ => None,
        },
        _ => return crate::functions_more::return_type(name, args),
    })
}

/// `v` with its dates, times and timestamps (at any depth) as their ISO text.
fn temporal_as_text(v: Value) -> Value {
    match v {
        Value::Date(d) => Value::String(crate::eval::format_date(d)),
        Value::Time(t) => Value::String(crate::eval::format_time(t)),
        Value::Timestamp(t) => Value::String(crate::eval::format_timestamp(t)),
        Value::Array(items) => Value::Array(items.into_iter().map(temporal_as_text).collect()),
        Value::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k, temporal_as_text(v)))
                .collect(),
        ),
        Value::Struct(fields) => Value::Struct(
            fields
                .into_iter()
                .map(|(k, v)| (k, temporal_as_text(v)))
                .collect(),
        ),
        other => other,
    }
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i as i64),
        Value::Bigint(i) => Some(*i),
        _ => None,
    }
}

pub(crate) fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Bigint(i) => Some(*i as f64),
        Value::Double(d) => Some(*d),
        Value::Decimal(d) => Some(d.to_f64()),
        _ => None,
    }
}

pub(crate) fn text(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// `value` widened to the type of `like` (for LEAST / GREATEST).
fn widen(v: Value, to: &Value) -> Value {
    match (to, &v) {
        (Value::Double(_), _) => float(&v).map_or(v, Value::Double),
        (Value::Bigint(_), Value::Int(i)) => Value::Bigint(*i as i64),
        (Value::Decimal(d), Value::Int(_) | Value::Bigint(_)) => {
            let x = Decimal::from_i64(int(&v).unwrap_or(0));
            Value::Decimal(x.rescale(d.scale).unwrap_or(x))
        }
        _ => v,
    }
}

fn substring(s: &str, pos: i64, len: Option<i64>) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len() as i64;
    let start = if pos < 0 {
        (n + pos).max(0)
    } else {
        (pos - 1).min(n).max(0)
    };
    let end = match len {
        Some(l) => (start + l).min(n).max(start),
        None => n,
    };
    chars[start as usize..end as usize].iter().collect()
}

/// A JSONPath like `$.a.b[0]` into a JSON value; a string result comes back bare, others
/// as their JSON text.
fn extract_json_field(json: &str, path: &str) -> Option<String> {
    // The first JSON value of the text; what follows it is ignored, as Jackson's parser
    // in ksqlDB does.
    let mut cur: serde_json::Value = serde_json::Deserializer::from_str(json)
        .into_iter::<serde_json::Value>()
        .next()?
        .ok()?;
    let path = path.strip_prefix('$')?;
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            cur = cur.get(&r[..end])?.clone();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim_matches(|c| c == '\'' || c == '"');
            cur = match inner.parse::<usize>() {
                Ok(i) => cur.get(i)?.clone(),
                Err(_) => cur.get(inner)?.clone(),
            };
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    match cur {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

fn dedup(items: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for v in items {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// SPLIT over bytes: the pieces between delimiters (each byte when the delimiter is empty).
fn split_bytes(b: &[u8], d: &[u8]) -> Vec<Value> {
    if d.is_empty() && b.is_empty() {
        return vec![Value::Bytes(Vec::new())];
    }
    if d.is_empty() {
        return b.iter().map(|x| Value::Bytes(vec![*x])).collect();
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + d.len() <= b.len() {
        if &b[i..i + d.len()] == d {
            out.push(Value::Bytes(b[start..i].to_vec()));
            i += d.len();
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(Value::Bytes(b[start..].to_vec()));
    out
}

/// `name(args)`, None if there is no such function here.
pub fn call(name: &str, args: &[Value]) -> Option<Result<Value, EvalError>> {
    if let Some(r) = crate::functions_more::call(name, args) {
        return Some(r);
    }
    if return_type(name, &[]).is_none() && !matches!(name, "LEAST" | "GREATEST") {
        return None;
    }
    Some(call_known(name, args))
}

/// SUBSTRING, LPAD, RPAD and CONCAT_WS over BYTES (ksqlDB's byte overloads), the same
/// rules as their STRING forms with bytes for characters.
fn bytes_variant(name: &str, args: &[Value]) -> Option<Value> {
    let bytes = |v: &Value| match v {
        Value::Bytes(b) => Some(b.clone()),
        _ => None,
    };
    let null = args.iter().any(Value::is_null);
    Some(match name {
        "SUBSTRING" => {
            let b = bytes(args.first()?)?;
            if null {
                return Some(Value::Null);
            }
            let n = b.len() as i64;
            let pos = int(args.get(1)?)?;
            let start = if pos < 0 {
                (n + pos).max(0)
            } else {
                (pos - 1).min(n).max(0)
            };
            let end = match args.get(2).map(int) {
                Some(Some(l)) => (start + l).min(n).max(start),
                Some(None) => return Some(Value::Null),
                None => n,
            };
            Value::Bytes(b[start as usize..end as usize].to_vec())
        }
        "LPAD" | "RPAD" => {
            let b = bytes(args.first()?)?;
            if null {
                return Some(Value::Null);
            }
            let (len, pad) = (int(args.get(1)?)?, bytes(args.get(2)?)?);
            if len < 0 || pad.is_empty() {
                return Some(Value::Null);
            }
            let len = len as usize;
            if b.len() >= len {
                return Some(Value::Bytes(b[..len].to_vec()));
            }
            let fill: Vec<u8> = pad.iter().copied().cycle().take(len - b.len()).collect();
            Value::Bytes(if name == "LPAD" {
                [fill, b].concat()
            } else {
                [b, fill].concat()
            })
        }
        "CONCAT_WS" => {
            let sep = match args.first()? {
                Value::Null => return Some(Value::Null),
                v => bytes(v)?,
            };
            let parts: Vec<Vec<u8>> = args[1..].iter().filter_map(bytes).collect();
            Value::Bytes(parts.join(&sep[..]))
        }
        _ => return None,
    })
}

fn call_known(name: &str, args: &[Value]) -> Result<Value, EvalError> {
    if args.iter().any(|a| matches!(a, Value::Bytes(_))) {
        if let Some(v) = bytes_variant(name, args) {
            return Ok(v);
        }
    }
    let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
    static NULL: Value = Value::Null;
    let at = |i: usize| args.get(i).unwrap_or(&NULL);
    let nulls_in = || args.iter().any(Value::is_null);
    let math = |f: fn(f64) -> f64| -> Result<Value, EvalError> {
        Ok(match float(at(0)) {
            Some(x) => Value::Double(f(x)),
            None => Value::Null,
        })
    };
    Ok(match name {
        "AS_VALUE" => arg(0),
        "SUBSTRING" => {
            if nulls_in() {
                return Ok(Value::Null);
            }
            let s = text(at(0)).ok_or_else(|| bad("SUBSTRING needs a STRING"))?;
            let pos = int(at(1)).ok_or_else(|| bad("SUBSTRING needs an INT position"))?;
            Value::String(substring(s, pos, args.get(2).and_then(int)))
        }
        "LEAST" | "GREATEST" => {
            let mut best: Option<Value> = None;
            for v in args.iter().filter(|v| !v.is_null()) {
                best = Some(match best {
                    None => v.clone(),
                    Some(b) => {
                        let ord = compare(v, &b)?;
                        let better = match name {
                            "LEAST" => ord == Some(Ordering::Less),
                            _ => ord == Some(Ordering::Greater),
                        };
                        if better {
                            v.clone()
                        } else {
                            b
                        }
                    }
                });
            }
            // The result has the widest argument type.
            let widest = args
                .iter()
                .filter(|v| !v.is_null())
                .max_by_key(|v| match v {
                    Value::Int(_) => 1,
                    Value::Bigint(_) => 2,
                    Value::Decimal(_) => 3,
                    Value::Double(_) => 4,
                    _ => 0,
                })
                .cloned();
            match (best, widest) {
                (Some(b), Some(w)) => widen(b, &w),
                _ => Value::Null,
            }
        }
        "INSTR" => {
            if nulls_in() {
                return Ok(Value::Null);
            }
            let (Some(s), Some(sub)) = (text(at(0)), text(at(1))) else {
                return Err(bad("INSTR needs STRING arguments"));
            };
            let chars: Vec<char> = s.chars().collect();
            let needle: Vec<char> = sub.chars().collect();
            let n = chars.len() as i64;
            let pos = args.get(2).and_then(int).unwrap_or(1);
            let occurrence = args.get(3).and_then(int).unwrap_or(1).max(1);
            let matches_at = |i: i64| {
                i >= 0
                    && i + needle.len() as i64 <= n
                    && chars[i as usize..i as usize + needle.len()] == needle[..]
            };
            let mut seen = 0;
            let mut found = 0;
            if pos > 0 {
                let mut i = pos - 1;
                while i < n {
                    if matches_at(i) {
                        seen += 1;
                        if seen == occurrence {
                            found = i + 1;
                            break;
                        }
                    }
                    i += 1;
                }
            } else if pos < 0 {
                let mut i = n + pos;
                while i >= 0 {
                    if matches_at(i) {
                        seen += 1;
                        if seen == occurrence {
                            found = i + 1;
                            break;
                        }
                    }
                    i -= 1;
                }
            }
            Value::Int(found as i32)
        }
        "REPLACE" => {
            if nulls_in() {
                return Ok(Value::Null);
            }
            match (text(at(0)), text(at(1)), text(at(2))) {
                (Some(s), Some(a), Some(b)) => Value::String(s.replace(a, b)),
                _ => return Err(bad("REPLACE needs STRING arguments")),
            }
        }
        "LPAD" | "RPAD" => {
            if nulls_in() {
                return Ok(Value::Null);
            }
            let (Some(s), Some(len), Some(pad)) = (text(at(0)), int(at(1)), text(at(2))) else {
                return Err(bad(format!("{name} needs (STRING, INT, STRING)")));
            };
            if len < 0 || pad.is_empty() {
                return Ok(Value::Null);
            }
            let len = len as usize;
            let s: Vec<char> = s.chars().collect();
            if s.len() >= len {
                return Ok(Value::String(s[..len].iter().collect()));
            }
            let fill: String = pad.chars().cycle().take(len - s.len()).collect();
            let s: String = s.into_iter().collect();
            Value::String(if name == "LPAD" { fill + &s } else { s + &fill })
        }
        "CONCAT_WS" => {
            let Some(sep) = text(at(0)) else {
                return Ok(Value::Null);
            };
            Value::String(
                args[1..]
                    .iter()
                    .filter_map(text)
                    .collect::<Vec<_>>()
                    .join(sep),
            )
        }
        "INITCAP" => match text(at(0)) {
            None => Value::Null,
            Some(s) => Value::String(
                s.split(' ')
                    .map(|w| {
                        let mut c = w.chars();
                        match c.next() {
                            Some(f) => {
                                f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase()
                            }
                            None => String::new(),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        },
        "REVERSE" => match text(at(0)) {
            None => Value::Null,
            Some(s) => Value::String(s.chars().rev().collect()),
        },
        "CHR" => match &arg(0) {
            Value::Null => Value::Null,
            Value::String(s) => {
                let code = s
                    .strip_prefix("\\u")
                    .and_then(|h| u32::from_str_radix(h, 16).ok());
                match code.and_then(char::from_u32) {
                    Some(c) => Value::String(c.to_string()),
                    None => Value::Null,
                }
            }
            v => match int(v)
                .and_then(|i| u32::try_from(i).ok())
                .and_then(char::from_u32)
            {
                Some(c) => Value::String(c.to_string()),
                None => Value::Null,
            },
        },
        "SPLIT" => {
            if nulls_in() {
                return Ok(Value::Null);
            }
            if let (Value::Bytes(b), Value::Bytes(d)) = (at(0), at(1)) {
                return Ok(Value::Array(split_bytes(b, d)));
            }
            let (Some(s), Some(d)) = (text(at(0)), text(at(1))) else {
                return Err(bad("SPLIT needs STRING or BYTES arguments"));
            };
            Value::Array(if d.is_empty() && s.is_empty() {
                vec![Value::String(String::new())]
            } else if d.is_empty() {
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(d).map(|p| Value::String(p.to_string())).collect()
            })
        }
        // Dates, times and timestamps as ISO text, as ksqlDB's TO_JSON_STRING writes them.
        "TO_JSON_STRING" => Value::String(json_text(&temporal_as_text(at(0).clone()))),
        "EXTRACTJSONFIELD" => {
            if nulls_in() {
                return Ok(Value::Null);
            }
            match (text(at(0)), text(at(1))) {
                (Some(j), Some(p)) => extract_json_field(j, p).map_or(Value::Null, Value::String),
                _ => Value::Null,
            }
        }
        "ROUND" => {
            let v = arg(0);
            let places = args.get(1).and_then(int);
            match (&v, places) {
                (Value::Null, _) => Value::Null,
                (_, None) if args.len() > 1 => Value::Null,
                (Value::Int(_) | Value::Bigint(_), None) => v,
                (Value::Double(d), None) => Value::Bigint((d + 0.5).floor() as i64),
                (Value::Double(d), Some(p)) => {
                    let f = 10f64.powi(p as i32);
                    Value::Double((d * f + 0.5).floor() / f)
                }
                (Value::Decimal(d), p) => {
                    let p = p.unwrap_or(0).max(0) as u32;
                    let r = d.rescale(p).unwrap_or(*d);
                    if args.len() == 1 {
                        Value::Decimal(r)
                    } else {
                        Value::Decimal(r.rescale(d.scale).unwrap_or(r))
                    }
                }
                (Value::Int(i), Some(p)) if p >= 0 => Value::Int(*i),
                (Value::Bigint(i), Some(p)) if p >= 0 => Value::Bigint(*i),
                (v, Some(p)) => {
                    let f = 10f64.powi((-p) as i32);
                    let x = float(v).unwrap_or(0.0);
                    let r = ((x / f + 0.5).floor() * f) as i64;
                    match v {
                        Value::Int(_) => Value::Int(r as i32),
                        _ => Value::Bigint(r),
                    }
                }
                _ => return Err(bad("ROUND needs a number")),
            }
        }
        "FLOOR" | "CEIL" => match arg(0) {
            Value::Null => Value::Null,
            v @ (Value::Int(_) | Value::Bigint(_)) => v,
            Value::Double(d) => Value::Double(if name == "FLOOR" { d.floor() } else { d.ceil() }),
            Value::Decimal(d) => {
                let unit = 10i128.pow(d.scale);
                let q = d.unscaled.div_euclid(unit);
                let q = if name == "CEIL" && d.unscaled.rem_euclid(unit) != 0 {
                    q + 1
                } else {
                    q
                };
                Value::Decimal(Decimal {
                    unscaled: q * unit,
                    scale: d.scale,
                })
            }
            _ => return Err(bad(format!("{name} needs a number"))),
        },
        "SIGN" => match arg(0) {
            Value::Null => Value::Null,
            Value::Int(i) => Value::Int(i.signum()),
            Value::Bigint(i) => Value::Bigint(i.signum()),
            Value::Double(d) => Value::Double(if d == 0.0 { 0.0 } else { d.signum() }),
            Value::Decimal(d) => Value::Decimal(Decimal {
                unscaled: d.unscaled.signum() * 10i128.pow(d.scale),
                scale: d.scale,
            }),
            _ => return Err(bad("SIGN needs a number")),
        },
        "SQRT" => math(f64::sqrt)?,
        "CBRT" => math(f64::cbrt)?,
        "EXP" => math(f64::exp)?,
        "LN" => math(f64::ln)?,
        "LOG" if args.len() == 2 => match (float(at(0)), float(at(1))) {
            // ksqlDB: NaN for a base that is not positive or is 1 (and, as ln gives, for a
            // negative value; a zero value is -Infinity).
            (Some(base), Some(_)) if base <= 0.0 || base == 1.0 => Value::Double(f64::NAN),
            (Some(base), Some(x)) => Value::Double(x.ln() / base.ln()),
            _ => Value::Null,
        },
        "LOG" => math(f64::ln)?,
        "POWER" => match (float(at(0)), float(at(1))) {
            (Some(b), Some(e)) => Value::Double(b.powf(e)),
            _ => Value::Null,
        },
        "SIN" => math(f64::sin)?,
        "COS" => math(f64::cos)?,
        "TAN" => math(f64::tan)?,
        "ASIN" => math(f64::asin)?,
        "ACOS" => math(f64::acos)?,
        "ATAN" => math(f64::atan)?,
        "COT" => math(|x| 1.0 / x.tan())?,
        "DEGREES" => math(f64::to_degrees)?,
        "RADIANS" => math(f64::to_radians)?,
        "PI" => Value::Double(std::f64::consts::PI),
        // A uniform DOUBLE in [0, 1): the standard library's per-process random hash keys
        // mixed with a counter (no cryptographic use).
        "RANDOM" => {
            use std::hash::{BuildHasher, Hasher};
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            Value::Double((h.finish() >> 11) as f64 / (1u64 << 53) as f64)
        }
        "UNIX_TIMESTAMP" => match arg(0) {
            Value::Timestamp(t) => Value::Bigint(t),
            _ if args.is_empty() => Value::Bigint(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            ),
            _ => Value::Null,
        },
        "UNIX_DATE" => match (args.len(), arg(0)) {
            // No argument: today (UTC) in days since the epoch.
            (0, _) => Value::Int(
                (std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    / 86_400) as i32,
            ),
            (_, Value::Date(d)) => Value::Int(d),
            _ => Value::Null,
        },
        "ARRAY_LENGTH" => match arg(0) {
            Value::Array(a) => Value::Int(a.len() as i32),
            _ => Value::Null,
        },
        "ARRAY_CONTAINS" => match arg(0) {
            Value::Array(a) => Value::Boolean(a.contains(&arg(1))),
            _ => Value::Boolean(false),
        },
        "ARRAY_DISTINCT" => match arg(0) {
            Value::Array(a) => Value::Array(dedup(a)),
            _ => Value::Null,
        },
        "ARRAY_CONCAT" => match (arg(0), arg(1)) {
            (Value::Array(mut a), Value::Array(b)) => {
                a.extend(b);
                Value::Array(a)
            }
            (Value::Array(a), Value::Null) | (Value::Null, Value::Array(a)) => Value::Array(a),
            _ => Value::Null,
        },
        "ARRAY_UNION" => match (arg(0), arg(1)) {
            (Value::Array(mut a), Value::Array(b)) => {
                a.extend(b);
                Value::Array(dedup(a))
            }
            _ => Value::Null,
        },
        "ARRAY_INTERSECT" => match (arg(0), arg(1)) {
            (Value::Array(a), Value::Array(b)) => {
                Value::Array(dedup(a.into_iter().filter(|v| b.contains(v)).collect()))
            }
            _ => Value::Null,
        },
        "ARRAY_EXCEPT" => match (arg(0), arg(1)) {
            (Value::Array(a), Value::Array(b)) => {
                Value::Array(dedup(a.into_iter().filter(|v| !b.contains(v)).collect()))
            }
            _ => Value::Null,
        },
        "ARRAY_REMOVE" => match arg(0) {
            Value::Array(a) => {
                let x = arg(1);
                Value::Array(a.into_iter().filter(|v| *v != x).collect())
            }
            _ => Value::Null,
        },
        "ARRAY_JOIN" => match arg(0) {
            Value::Array(a) => {
                let sep = match args.get(1) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) => String::new(),
                    _ => ",".into(),
                };
                Value::String(
                    a.iter()
                        .map(|v| match v {
                            Value::String(s) => s.clone(),
                            Value::Null => "null".into(),
                            other => json_text(other),
                        })
                        .collect::<Vec<_>>()
                        .join(&sep),
                )
            }
            _ => Value::Null,
        },
        "ARRAY_MIN" | "ARRAY_MAX" => match arg(0) {
            Value::Array(a) => {
                let mut best: Option<Value> = None;
                for v in a.into_iter().filter(|v| !v.is_null()) {
                    best = match best {
                        None => Some(v),
                        Some(b) => {
                            let ord = compare(&v, &b)?;
                            let better = if name == "ARRAY_MIN" {
                                ord == Some(Ordering::Less)
                            } else {
                                ord == Some(Ordering::Greater)
                            };
                            Some(if better { v } else { b })
                        }
                    };
                }
                best.unwrap_or(Value::Null)
            }
            _ => Value::Null,
        },
        "ARRAY_SORT" => match arg(0) {
            Value::Array(mut a) => {
                let desc =
                    matches!(args.get(1), Some(Value::String(s)) if s.eq_ignore_ascii_case("DESC"));
                let nulls: Vec<Value> = a.iter().filter(|v| v.is_null()).cloned().collect();
                a.retain(|v| !v.is_null());
                a.sort_by(|x, y| compare(x, y).ok().flatten().unwrap_or(Ordering::Equal));
                if desc {
                    a.reverse();
                }
                a.extend(nulls);
                Value::Array(a)
            }
            _ => Value::Null,
        },
        "MAP_KEYS" => match arg(0) {
            Value::Map(m) => Value::Array(m.into_iter().map(|(k, _)| k).collect()),
            _ => Value::Null,
        },
        "MAP_VALUES" => match arg(0) {
            Value::Map(m) => Value::Array(m.into_iter().map(|(_, v)| v).collect()),
            _ => Value::Null,
        },
        // The second map's entries win; a NULL map counts as empty unless both are.
        "MAP_UNION" => match (arg(0), arg(1)) {
            (Value::Null, Value::Null) => Value::Null,
            (a, b) => {
                let mut out = match a {
                    Value::Map(m) => m,
                    _ => Vec::new(),
                };
                if let Value::Map(m) = b {
                    for (k, v) in m {
                        match out.iter_mut().find(|(x, _)| *x == k) {
                            Some(slot) => slot.1 = v,
                            None => out.push((k, v)),
                        }
                    }
                }
                Value::Map(out)
            }
        },
        // ENTRIES(map, sorted): the entries as STRUCT<K, V>, by key when sorted.
        "ENTRIES" => match arg(0) {
            Value::Map(mut m) => {
                if at(1) == &Value::Boolean(true) {
                    m.sort_by(|(x, _), (y, _)| {
                        compare(x, y).ok().flatten().unwrap_or(Ordering::Equal)
                    });
                }
                Value::Array(
                    m.into_iter()
                        .map(|(k, v)| Value::Struct(vec![("K".into(), k), ("V".into(), v)]))
                        .collect(),
                )
            }
            _ => Value::Null,
        },
        // AS_MAP(keys, values): the i-th key to the i-th value (NULL past the values' end).
        "AS_MAP" => match (arg(0), arg(1)) {
            (Value::Array(keys), Value::Array(values)) => {
                let mut out: Vec<(Value, Value)> = Vec::with_capacity(keys.len());
                for (i, k) in keys.into_iter().enumerate() {
                    let v = values.get(i).cloned().unwrap_or(Value::Null);
                    match out.iter_mut().find(|(x, _)| *x == k) {
                        Some(slot) => slot.1 = v,
                        None => out.push((k, v)),
                    }
                }
                Value::Map(out)
            }
            _ => Value::Null,
        },
        other => return Err(EvalError::UnknownFunction(other.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::String(x.into())
    }

    #[test]
    fn map_functions_union_entries_and_build_from_lists() {
        let m = |kv: &[(&str, i32)]| {
            Value::Map(kv.iter().map(|(k, v)| (s(k), Value::Int(*v))).collect())
        };
        let call_ok = |name: &str, args: &[Value]| call(name, args).unwrap().unwrap();
        assert_eq!(
            call_ok(
                "MAP_UNION",
                &[
                    m(&[("foo", 10), ("bar", 20)]),
                    m(&[("foo", 99), ("apple", -1)])
                ]
            ),
            m(&[("foo", 99), ("bar", 20), ("apple", -1)])
        );
        assert_eq!(
            call_ok("MAP_UNION", &[Value::Null, m(&[("a", 1)])]),
            m(&[("a", 1)])
        );
        assert_eq!(
            call_ok("MAP_UNION", &[Value::Null, Value::Null]),
            Value::Null
        );
        let entry =
            |k: &str, v: i32| Value::Struct(vec![("K".into(), s(k)), ("V".into(), Value::Int(v))]);
        assert_eq!(
            call_ok("ENTRIES", &[m(&[("b", 2), ("a", 1)]), Value::Boolean(true)]),
            Value::Array(vec![entry("a", 1), entry("b", 2)])
        );
        let list = |xs: Vec<Value>| Value::Array(xs);
        assert_eq!(
            call_ok(
                "AS_MAP",
                &[
                    list(vec![s("a"), s("b"), s("c")]),
                    list(vec![Value::Int(1), Value::Int(2)])
                ]
            ),
            Value::Map(vec![
                (s("a"), Value::Int(1)),
                (s("b"), Value::Int(2)),
                (s("c"), Value::Null)
            ])
        );
        // SPLIT_TO_MAP: of an entry with several separators only the first two parts count.
        assert_eq!(
            call_ok(
                "SPLIT_TO_MAP",
                &[s("apple:green/banana:yellow"), s("&&"), s(":")]
            ),
            Value::Map(vec![(s("apple"), s("green/banana"))])
        );
    }

    #[test]
    fn string_functions_follow_ksqldb() {
        assert_eq!(
            call("SUBSTRING", &[s("hello"), Value::Int(2)])
                .unwrap()
                .unwrap(),
            s("ello")
        );
        assert_eq!(
            call("SUBSTRING", &[s("hello"), Value::Int(-3), Value::Int(2)])
                .unwrap()
                .unwrap(),
            s("ll")
        );
        assert_eq!(
            call("SUBSTRING", &[s("hello"), Value::Int(9)])
                .unwrap()
                .unwrap(),
            s("")
        );
        assert_eq!(
            call("INSTR", &[s("CORPORATE FLOOR"), s("OR")])
                .unwrap()
                .unwrap(),
            Value::Int(2)
        );
        assert_eq!(
            call(
                "INSTR",
                &[s("CORPORATE FLOOR"), s("OR"), Value::Int(3), Value::Int(2)]
            )
            .unwrap()
            .unwrap(),
            Value::Int(14)
        );
        assert_eq!(
            call("INSTR", &[s("CORPORATE FLOOR"), s("OR"), Value::Int(-3)])
                .unwrap()
                .unwrap(),
            Value::Int(5)
        );
        assert_eq!(
            call("LPAD", &[s("ab"), Value::Int(5), s("xy")])
                .unwrap()
                .unwrap(),
            s("xyxab")
        );
        assert_eq!(
            call("CONCAT_WS", &[s("-"), s("a"), Value::Null, s("b")])
                .unwrap()
                .unwrap(),
            s("a-b")
        );
        assert_eq!(
            call(
                "EXTRACTJSONFIELD",
                &[s(r#"{"a":{"b":[1,"x"]}}"#), s("$.a.b[1]")]
            )
            .unwrap()
            .unwrap(),
            s("x")
        );
        assert_eq!(
            call("SUBSTRING", &[Value::Null, Value::Int(1)])
                .unwrap()
                .unwrap(),
            Value::Null
        );
        assert!(call("NO_SUCH_FUNCTION", &[]).is_none());
    }

    #[test]
    fn least_and_greatest_skip_nulls_and_widen() {
        assert_eq!(
            call("GREATEST", &[Value::Int(3), Value::Null, Value::Bigint(2)])
                .unwrap()
                .unwrap(),
            Value::Bigint(3)
        );
        assert_eq!(
            call("LEAST", &[Value::Null, Value::Null]).unwrap().unwrap(),
            Value::Null
        );
        assert_eq!(
            return_type("LEAST", &[Some(SqlType::Int), Some(SqlType::Double)]),
            Some(Some(SqlType::Double))
        );
    }

    #[test]
    fn every_listed_scalar_function_is_known_to_the_analyzer() {
        use crate::analyzer::{type_of, Scope};
        let mut c = crate::catalog::Catalog::default();
        struct One;
        impl crate::catalog::Topics for One {
            fn partitions(&self, _: &str) -> Option<i32> {
                Some(1)
            }
        }
        c.create_source(
            &crate::parse_statement("CREATE STREAM S (A INT KEY, B STRING) WITH (kafka_topic='s', value_format='JSON');").unwrap(),
            &One,
        )
        .unwrap();
        let scope = Scope {
            source: c.get("S").unwrap(),
            alias: None,
        };
        let more = crate::functions_more::NAMES
            .iter()
            .map(|(n, c)| (n, &"SCALAR", c));
        for (name, kind, _) in super::FUNCTIONS
            .iter()
            .map(|(n, k, c)| (n, k, c))
            .chain(more)
        {
            if *kind != "SCALAR" {
                continue;
            }
            for args in ["", "A", "B", "A, A", "B, B", "B, A, A", "B, B, B"] {
                let e = crate::parse_expression(&format!("{name}({args})")).unwrap();
                if let Err(e) = type_of(&e, &scope) {
                    assert!(!e.0.contains("Can't find any functions"), "{name}: {e}");
                }
            }
        }
        assert!(super::FUNCTIONS
            .iter()
            .any(|f| f.0 == "COUNT" && f.1 == "AGGREGATE"));
    }
}
