//! Evaluating expressions on one row, with ksqlDB's rules where they are settled: numeric
//! promotion (INT → BIGINT → DECIMAL → DOUBLE), integer arithmetic that wraps as Java's
//! does, division or modulus by zero giving NULL, NULL in → NULL out for arithmetic, a
//! comparison with NULL false (ksqlDB's rule, not SQL's), three-valued AND/OR/NOT, `+` on strings concatenating, LIKE with `%`,
//! `_` and an escape character, CAST between the primitive types.
//!
//! A row is anything that resolves column references ([`Row`]); functions come from a
//! [`Functions`] registry (scalar functions only here; aggregates live with the engine).

use std::cmp::Ordering;

use crate::ast::{BinaryOp, Expr, Literal, SqlType};
use crate::value::{type_name, Decimal, Value, DECIMAL_PRECISION_MAX};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("Column '{0}' cannot be resolved.")]
    UnknownColumn(String),
    #[error("Can't find any functions with the name '{0}'")]
    UnknownFunction(String),
    #[error("{0}")]
    Type(String),
    #[error("{0}")]
    Function(String),
}

/// Column values of the row being evaluated.
pub trait Row {
    fn column(&self, source: Option<&str>, name: &str) -> Option<&Value>;
}

impl Row for Vec<(String, Value)> {
    fn column(&self, _source: Option<&str>, name: &str) -> Option<&Value> {
        self.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// Scalar functions by (upper-case) name.
pub trait Functions {
    fn call(&self, name: &str, args: Vec<Value>) -> Option<Result<Value, EvalError>>;
}

/// No functions at all.
pub struct NoFunctions;

impl Functions for NoFunctions {
    fn call(&self, _name: &str, _args: Vec<Value>) -> Option<Result<Value, EvalError>> {
        None
    }
}

fn type_error(m: impl Into<String>) -> EvalError {
    EvalError::Type(m.into())
}

fn describe(v: &Value) -> String {
    v.sql_type().map_or("NULL".into(), |t| type_name(&t))
}

/// Evaluates `expr` on `row`.
pub fn eval(expr: &Expr, row: &dyn Row, functions: &dyn Functions) -> Result<Value, EvalError> {
    let ev = |e: &Expr| eval(e, row, functions);
    Ok(match expr {
        Expr::Literal(l) => literal(l)?,
        Expr::Column { source, name } => row
            .column(source.as_deref(), name)
            .cloned()
            .ok_or_else(|| EvalError::UnknownColumn(name.clone()))?,
        Expr::Variable(v) => {
            return Err(type_error(format!("variable ${{{v}}} was not substituted")))
        }
        Expr::Binary { op, left, right } => match op {
            BinaryOp::And => logical("AND", false, ev(left)?, || ev(right))?,
            BinaryOp::Or => logical("OR", true, ev(left)?, || ev(right))?,
            BinaryOp::Eq
            | BinaryOp::Neq
            | BinaryOp::Lt
            | BinaryOp::Lte
            | BinaryOp::Gt
            | BinaryOp::Gte => comparison(
                *op,
                &*operand(left, row, functions)?,
                &*operand(right, row, functions)?,
            )?,
            op => binary(*op, ev(left)?, ev(right)?)?,
        },
        Expr::Negate(e) => match ev(e)? {
            Value::Null => Value::Null,
            Value::Int(i) => Value::Int(i.wrapping_neg()),
            Value::Bigint(i) => Value::Bigint(i.wrapping_neg()),
            Value::Double(d) => Value::Double(-d),
            Value::Decimal(d) => Value::Decimal(Decimal {
                unscaled: -d.unscaled,
                scale: d.scale,
            }),
            other => return Err(type_error(format!("Can't negate {}", describe(&other)))),
        },
        Expr::Not(e) => match ev(e)? {
            Value::Null => Value::Null,
            Value::Boolean(b) => Value::Boolean(!b),
            other => return Err(type_error(format!("NOT of {}", describe(&other)))),
        },
        Expr::IsNull { expr, negated } => Value::Boolean(ev(expr)?.is_null() != *negated),
        Expr::IsDistinctFrom {
            left,
            right,
            negated,
        } => {
            let (l, r) = (ev(left)?, ev(right)?);
            let same = match (&l, &r) {
                (Value::Null, Value::Null) => true,
                (Value::Null, _) | (_, Value::Null) => false,
                _ => compare(&l, &r)? == Some(Ordering::Equal),
            };
            Value::Boolean(same == *negated)
        }
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            let v = ev(expr)?;
            let (lo, hi) = (ev(low)?, ev(high)?);
            match (compare(&v, &lo)?, compare(&v, &hi)?) {
                (Some(a), Some(b)) => {
                    Value::Boolean((a != Ordering::Less && b != Ordering::Greater) != *negated)
                }
                _ => Value::Null,
            }
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let v = ev(expr)?;
            if v.is_null() {
                return Ok(Value::Null);
            }
            let mut found = false;
            for item in list {
                if compare(&v, &ev(item)?)? == Some(Ordering::Equal) {
                    found = true;
                    break;
                }
            }
            Value::Boolean(found != *negated)
        }
        Expr::Like {
            expr,
            pattern,
            escape,
            negated,
        } => match (ev(expr)?, ev(pattern)?) {
            (Value::Null, _) | (_, Value::Null) => Value::Null,
            (Value::String(s), Value::String(p)) => {
                let esc = escape.as_ref().and_then(|e| e.chars().next());
                Value::Boolean(like(&s, &p, esc) != *negated)
            }
            (a, b) => {
                return Err(type_error(format!(
                    "LIKE needs STRING operands, not {} and {}",
                    describe(&a),
                    describe(&b)
                )))
            }
        },
        Expr::Case {
            operand,
            whens,
            otherwise,
        } => {
            let subject = operand.as_ref().map(|o| ev(o)).transpose()?;
            for (when, then) in whens {
                let hit = match &subject {
                    Some(s) => compare(s, &ev(when)?)? == Some(Ordering::Equal),
                    None => ev(when)? == Value::Boolean(true),
                };
                if hit {
                    return ev(then);
                }
            }
            match otherwise {
                Some(e) => ev(e)?,
                None => Value::Null,
            }
        }
        Expr::Cast { expr, to } => cast(ev(expr)?, to)?,
        Expr::Function { name, args, .. }
            if args.iter().any(|a| matches!(a, Expr::Lambda { .. })) =>
        {
            lambda_call(name, args, row, functions)?
        }
        Expr::Function { name, args, star } => {
            let values = if *star {
                Vec::new()
            } else {
                args.iter().map(ev).collect::<Result<Vec<_>, _>>()?
            };
            // As ksqlDB's generated code: a function that fails on its arguments gives
            // NULL there (ksqlDB logs it), and the expression around it goes on.
            match builtin(name, &values)
                .or_else(|| functions.call(name, values))
                .unwrap_or_else(|| Err(EvalError::UnknownFunction(name.clone())))
            {
                Ok(v) => v,
                Err(e @ EvalError::UnknownFunction(_)) => return Err(e),
                Err(_) => Value::Null,
            }
        }
        Expr::Subscript { base, index } => match (ev(base)?, ev(index)?) {
            (Value::Null, _) | (_, Value::Null) => Value::Null,
            // ksqlDB arrays are 1-based; negative indexes count from the end.
            (Value::Array(items), Value::Int(_) | Value::Bigint(_)) => {
                let i = as_i64(&ev(index)?).unwrap_or(0);
                let n = items.len() as i64;
                let at = if i > 0 { i - 1 } else { n + i };
                if (0..n).contains(&at) {
                    items[at as usize].clone()
                } else {
                    Value::Null
                }
            }
            (Value::Map(entries), key) => entries
                .iter()
                .find(|(k, _)| compare(k, &key).ok().flatten() == Some(Ordering::Equal))
                .map_or(Value::Null, |(_, v)| v.clone()),
            (b, i) => {
                return Err(type_error(format!(
                    "cannot index {} with {}",
                    describe(&b),
                    describe(&i)
                )))
            }
        },
        Expr::Dereference { base, field } => match ev(base)? {
            Value::Null => Value::Null,
            Value::Struct(fields) => fields
                .into_iter()
                .find(|(n, _)| n == field)
                .map(|(_, v)| v)
                .ok_or_else(|| type_error(format!("Could not find field '{field}'")))?,
            other => return Err(type_error(format!("{} has no fields", describe(&other)))),
        },
        Expr::Array(items) => Value::Array(items.iter().map(ev).collect::<Result<_, _>>()?),
        Expr::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| Ok((ev(k)?, ev(v)?)))
                .collect::<Result<_, EvalError>>()?,
        ),
        Expr::Struct(fields) => Value::Struct(
            fields
                .iter()
                .map(|(n, v)| Ok((n.clone(), ev(v)?)))
                .collect::<Result<_, EvalError>>()?,
        ),
        Expr::TypedLiteral { type_name, value } => {
            let t = match type_name.as_str() {
                "TIMESTAMP" => SqlType::Timestamp,
                "DATE" => SqlType::Date,
                "TIME" => SqlType::Time,
                "DECIMAL" => {
                    let d = Decimal::parse(value)
                        .ok_or_else(|| type_error(format!("'{value}' is not a DECIMAL")))?;
                    return Ok(Value::Decimal(d));
                }
                other => return Err(type_error(format!("no {other} literals"))),
            };
            cast(Value::String(value.clone()), &t)?
        }
        Expr::Unit(_) | Expr::Lambda { .. } => {
            return Err(type_error(
                "a lambda or time unit is only a function argument",
            ))
        }
    })
}

/// A row with a lambda's parameters bound over the row it is evaluated in.
struct Bound<'a> {
    params: &'a [String],
    values: Vec<Value>,
    outer: &'a dyn Row,
}

impl Row for Bound<'_> {
    fn column(&self, source: Option<&str>, name: &str) -> Option<&Value> {
        if source.is_none() {
            if let Some(i) = self.params.iter().position(|p| p == name) {
                return self.values.get(i);
            }
        }
        self.outer.column(source, name)
    }
}

/// TRANSFORM, FILTER and REDUCE over an array or a map, with ksqlDB's lambdas: a NULL
/// collection gives NULL.
fn lambda_call(
    name: &str,
    args: &[Expr],
    row: &dyn Row,
    functions: &dyn Functions,
) -> Result<Value, EvalError> {
    let apply = |lambda: &Expr, values: Vec<Value>| -> Result<Value, EvalError> {
        let Expr::Lambda { params, body } = lambda else {
            return Err(type_error(format!("{name} expects a lambda")));
        };
        if params.len() != values.len() {
            return Err(type_error(format!(
                "{name}: the lambda takes {} arguments, {} given",
                params.len(),
                values.len()
            )));
        }
        eval(
            body,
            &Bound {
                params,
                values,
                outer: row,
            },
            functions,
        )
    };
    let collection = eval(&args[0], row, functions)?;
    Ok(match (name, collection, args.len()) {
        // REDUCE of a NULL collection is its initial state, as of an empty one.
        ("REDUCE", Value::Null, 3) => eval(&args[1], row, functions)?,
        (_, Value::Null, _) => Value::Null,
        ("TRANSFORM", Value::Array(items), 2) => Value::Array(
            items
                .into_iter()
                .map(|x| apply(&args[1], vec![x]))
                .collect::<Result<_, _>>()?,
        ),
        ("TRANSFORM", Value::Map(entries), 3) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    Ok((
                        apply(&args[1], vec![k.clone(), v.clone()])?,
                        apply(&args[2], vec![k, v])?,
                    ))
                })
                .collect::<Result<_, EvalError>>()?,
        ),
        ("FILTER", Value::Array(items), 2) => {
            let mut out = Vec::new();
            for x in items {
                if apply(&args[1], vec![x.clone()])? == Value::Boolean(true) {
                    out.push(x);
                }
            }
            Value::Array(out)
        }
        ("FILTER", Value::Map(entries), 2) => {
            let mut out = Vec::new();
            for (k, v) in entries {
                if apply(&args[1], vec![k.clone(), v.clone()])? == Value::Boolean(true) {
                    out.push((k, v));
                }
            }
            Value::Map(out)
        }
        ("REDUCE", Value::Array(items), 3) => {
            let mut acc = eval(&args[1], row, functions)?;
            for x in items {
                acc = apply(&args[2], vec![acc, x])?;
            }
            acc
        }
        ("REDUCE", Value::Map(entries), 3) => {
            let mut acc = eval(&args[1], row, functions)?;
            for (k, v) in entries {
                acc = apply(&args[2], vec![acc, k, v])?;
            }
            acc
        }
        (other, c, n) => {
            return Err(type_error(format!(
                "{other} does not take a lambda over {} with {n} arguments",
                describe(&c)
            )))
        }
    })
}

fn literal(l: &Literal) -> Result<Value, EvalError> {
    Ok(match l {
        Literal::Null => Value::Null,
        Literal::Boolean(b) => Value::Boolean(*b),
        // ksqlDB types an integer literal INT when it fits, else BIGINT.
        Literal::Integer(i) => match i32::try_from(*i) {
            Ok(v) => Value::Int(v),
            Err(_) => Value::Bigint(*i),
        },
        Literal::Decimal(d) => Value::Decimal(
            Decimal::parse(d).ok_or_else(|| type_error(format!("'{d}' is not a number")))?,
        ),
        Literal::Double(d) => Value::Double(*d),
        Literal::String(s) => Value::String(s.clone()),
    })
}

/// SQL's three-valued AND (`short` = false) or OR (`short` = true): `short` on either side
/// decides, else NULL if either is NULL; the right side is evaluated only when needed.
fn logical(
    name: &str,
    short: bool,
    left: Value,
    right: impl FnOnce() -> Result<Value, EvalError>,
) -> Result<Value, EvalError> {
    if left == Value::Boolean(short) {
        return Ok(left);
    }
    Ok(match (left, right()?) {
        (_, Value::Boolean(b)) if b == short => Value::Boolean(short),
        (Value::Boolean(_), Value::Boolean(_)) => Value::Boolean(!short),
        (Value::Null | Value::Boolean(_), Value::Null | Value::Boolean(_)) => Value::Null,
        (a, b) => {
            return Err(type_error(format!(
                "{name} needs BOOLEAN operands, not {} and {}",
                describe(&a),
                describe(&b)
            )))
        }
    })
}

/// Numeric rank for promotion: INT < BIGINT < DECIMAL < DOUBLE.
fn rank(v: &Value) -> Option<u8> {
    Some(match v {
        Value::Int(_) => 0,
        Value::Bigint(_) => 1,
        Value::Decimal(_) => 2,
        Value::Double(_) => 3,
        _ => return None,
    })
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i as i64),
        Value::Bigint(i) => Some(*i),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Bigint(i) => Some(*i as f64),
        Value::Double(d) => Some(*d),
        Value::Decimal(d) => Some(d.to_f64()),
        _ => None,
    }
}

fn as_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Int(i) => Some(Decimal::from_i64(*i as i64)),
        Value::Bigint(i) => Some(Decimal::from_i64(*i)),
        Value::Decimal(d) => Some(*d),
        _ => None,
    }
}

/// An operand as evaluated: a column's value is borrowed from the row, not copied.
fn operand<'r>(
    e: &Expr,
    row: &'r dyn Row,
    functions: &dyn Functions,
) -> Result<std::borrow::Cow<'r, Value>, EvalError> {
    Ok(match e {
        Expr::Column { source, name } => std::borrow::Cow::Borrowed(
            row.column(source.as_deref(), name)
                .ok_or_else(|| EvalError::UnknownColumn(name.clone()))?,
        ),
        e => std::borrow::Cow::Owned(eval(e, row, functions)?),
    })
}

/// `=`, `<>`, `<`, `<=`, `>`, `>=`. ksqlDB: a comparison with NULL on either side is false
/// (not NULL).
fn comparison(op: BinaryOp, l: &Value, r: &Value) -> Result<Value, EvalError> {
    use BinaryOp::*;
    let Some(ord) = compare(l, r)? else {
        return Ok(Value::Boolean(false));
    };
    Ok(Value::Boolean(match op {
        Eq => ord == Ordering::Equal,
        Neq => ord != Ordering::Equal,
        Lt => ord == Ordering::Less,
        Lte => ord != Ordering::Greater,
        Gt => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    }))
}

pub fn binary(op: BinaryOp, l: Value, r: Value) -> Result<Value, EvalError> {
    use BinaryOp::*;
    if matches!(op, Eq | Neq | Lt | Lte | Gt | Gte) {
        return comparison(op, &l, &r);
    }
    if l.is_null() || r.is_null() {
        return Ok(Value::Null);
    }
    if op == Concat || (op == Add && matches!((&l, &r), (Value::String(_), Value::String(_)))) {
        return match (l, r) {
            (Value::String(a), Value::String(b)) => Ok(Value::String(a + &b)),
            (a, b) => Err(type_error(format!(
                "|| needs STRING operands, not {} and {}",
                describe(&a),
                describe(&b)
            ))),
        };
    }
    let (Some(lr), Some(rr)) = (rank(&l), rank(&r)) else {
        return Err(type_error(format!(
            "Error processing expression: unsupported arithmetic on {} and {}",
            describe(&l),
            describe(&r)
        )));
    };
    Ok(match lr.max(rr) {
        0 => {
            let (a, b) = (as_i64(&l).unwrap() as i32, as_i64(&r).unwrap() as i32);
            match op {
                Add => Value::Int(a.wrapping_add(b)),
                Subtract => Value::Int(a.wrapping_sub(b)),
                Multiply => Value::Int(a.wrapping_mul(b)),
                Divide if b == 0 => Value::Null,
                Divide => Value::Int(a.wrapping_div(b)),
                Modulus if b == 0 => Value::Null,
                _ => Value::Int(a.wrapping_rem(b)),
            }
        }
        1 => {
            let (a, b) = (as_i64(&l).unwrap(), as_i64(&r).unwrap());
            match op {
                Add => Value::Bigint(a.wrapping_add(b)),
                Subtract => Value::Bigint(a.wrapping_sub(b)),
                Multiply => Value::Bigint(a.wrapping_mul(b)),
                Divide if b == 0 => Value::Null,
                Divide => Value::Bigint(a.wrapping_div(b)),
                Modulus if b == 0 => Value::Null,
                _ => Value::Bigint(a.wrapping_rem(b)),
            }
        }
        2 => decimal_arithmetic(op, as_decimal(&l).unwrap(), as_decimal(&r).unwrap())?,
        _ => {
            let (a, b) = (as_f64(&l).unwrap(), as_f64(&r).unwrap());
            Value::Double(match op {
                Add => a + b,
                Subtract => a - b,
                Multiply => a * b,
                Divide => a / b,
                _ => a % b,
            })
        }
    })
}

fn decimal_arithmetic(op: BinaryOp, a: Decimal, b: Decimal) -> Result<Value, EvalError> {
    use BinaryOp::*;
    let overflow = || type_error("Numeric field overflow: a DECIMAL result exceeds 38 digits");
    Ok(Value::Decimal(match op {
        Add | Subtract => {
            let scale = a.scale.max(b.scale);
            let (x, y) = (
                a.rescale(scale).ok_or_else(overflow)?,
                b.rescale(scale).ok_or_else(overflow)?,
            );
            let unscaled = if op == Add {
                x.unscaled.checked_add(y.unscaled)
            } else {
                x.unscaled.checked_sub(y.unscaled)
            }
            .ok_or_else(overflow)?;
            Decimal { unscaled, scale }
        }
        Multiply => Decimal {
            unscaled: a.unscaled.checked_mul(b.unscaled).ok_or_else(overflow)?,
            scale: a.scale + b.scale,
        },
        Divide | Modulus if b.unscaled == 0 => return Ok(Value::Null),
        Divide => {
            // ksqlDB's division scale: max(6, s1 + p2 + 1), capped by the digits available.
            let scale = (a.scale + b.precision() + 1).clamp(6, DECIMAL_PRECISION_MAX);
            let shift = scale + b.scale - a.scale;
            let numerator = a
                .unscaled
                .checked_mul(10i128.checked_pow(shift + 1).ok_or_else(overflow)?)
                .ok_or_else(overflow)?;
            let q = numerator / b.unscaled;
            // Round half up on the extra digit.
            let rounded = (q + q.signum() * 5) / 10;
            Decimal {
                unscaled: rounded,
                scale,
            }
        }
        _ => {
            let scale = a.scale.max(b.scale);
            let (x, y) = (
                a.rescale(scale).ok_or_else(overflow)?,
                b.rescale(scale).ok_or_else(overflow)?,
            );
            Decimal {
                unscaled: x.unscaled % y.unscaled,
                scale,
            }
        }
    }))
}

/// Orders two values of comparable types (None when either is NULL).
pub fn compare(l: &Value, r: &Value) -> Result<Option<Ordering>, EvalError> {
    if l.is_null() || r.is_null() {
        return Ok(None);
    }
    if let (Some(lr), Some(rr)) = (rank(l), rank(r)) {
        return Ok(Some(match lr.max(rr) {
            0 | 1 => as_i64(l).unwrap().cmp(&as_i64(r).unwrap()),
            2 => as_decimal(l).unwrap().compare(&as_decimal(r).unwrap()),
            _ => as_f64(l).unwrap().total_cmp(&as_f64(r).unwrap()),
        }));
    }
    Ok(Some(match (l, r) {
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Boolean(a), Value::Boolean(b)) => a.cmp(b),
        (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
        (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
        (Value::Date(a), Value::Date(b)) => a.cmp(b),
        (Value::Time(a), Value::Time(b)) => a.cmp(b),
        // A string compared with a temporal value is read as one (ROWTIME >= '2020-01-01').
        (Value::String(_), Value::Timestamp(_) | Value::Date(_) | Value::Time(_)) => {
            let t = r.sql_type().expect("not null");
            return compare(&cast(l.clone(), &t)?, r);
        }
        (Value::Timestamp(_) | Value::Date(_) | Value::Time(_), Value::String(_)) => {
            let t = l.sql_type().expect("not null");
            return compare(l, &cast(r.clone(), &t)?);
        }
        // Maps compare for equality only (entries in any order).
        (Value::Map(a), Value::Map(b)) => {
            let contains = |m: &[(Value, Value)], k: &Value, v: &Value| {
                m.iter().any(|(k2, v2)| {
                    compare(k, k2).ok().flatten() == Some(Ordering::Equal)
                        && (v.is_null() && v2.is_null()
                            || compare(v, v2).ok().flatten() == Some(Ordering::Equal))
                })
            };
            let equal = a.len() == b.len() && a.iter().all(|(k, v)| contains(b, k, v));
            if equal {
                Ordering::Equal
            } else {
                Ordering::Less
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (x, y) in a.iter().zip(b) {
                match compare_nested(x, y)? {
                    Some(Ordering::Equal) => {}
                    other => return Ok(other),
                }
            }
            a.len().cmp(&b.len())
        }
        (Value::Struct(a), Value::Struct(b)) if a.len() == b.len() => {
            for ((n1, x), (n2, y)) in a.iter().zip(b) {
                if n1 != n2 {
                    return Err(type_error("cannot compare structs with different fields"));
                }
                match compare_nested(x, y)? {
                    Some(Ordering::Equal) => {}
                    other => return Ok(other),
                }
            }
            Ordering::Equal
        }
        _ => {
            return Err(type_error(format!(
                "Cannot compare {} to {}",
                describe(l),
                describe(r)
            )))
        }
    }))
}

/// An element of an array or a field of a struct compared as Java's `equals` does: a
/// NULL inside equals NULL and nothing else.
fn compare_nested(x: &Value, y: &Value) -> Result<Option<Ordering>, EvalError> {
    Ok(match (x.is_null(), y.is_null()) {
        (true, true) => Some(Ordering::Equal),
        (true, false) => Some(Ordering::Less),
        (false, true) => Some(Ordering::Greater),
        (false, false) => compare(x, y)?,
    })
}

/// SQL LIKE: `%` any run, `_` one character, `escape` makes the next one literal.
pub fn like(s: &str, pattern: &str, escape: Option<char>) -> bool {
    // Tokens: Some(c) literal, None for '_', and a marker for '%'.
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Lit(char),
        One,
        Any,
    }
    let mut pat = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        pat.push(match c {
            c if Some(c) == escape => P::Lit(chars.next().unwrap_or(c)),
            '%' => P::Any,
            '_' => P::One,
            c => P::Lit(c),
        });
    }
    let text: Vec<char> = s.chars().collect();
    // Iterative matching with backtracking to the last '%'.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(P::Lit(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(P::One) => {
                t += 1;
                p += 1;
            }
            Some(P::Any) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|x| *x == P::Any)
}

/// A selected column's value as ksqlDB's select mapper computes it: an expression that
/// fails on this row (a function's error, a cast that cannot be made) is NULL in that
/// column and the row is still written (ksqlDB logs it to its processing log).
pub fn eval_column(expr: &Expr, to: &SqlType, row: &dyn Row, functions: &dyn Functions) -> Value {
    eval(expr, row, functions)
        .and_then(|v| cast(v, to))
        .unwrap_or(Value::Null)
}

/// Whether a row passes a WHERE (or HAVING) condition, as ksqlDB's predicate decides it:
/// only TRUE passes; NULL, FALSE and an expression that fails on this row do not.
pub fn eval_condition(expr: &Expr, row: &dyn Row, functions: &dyn Functions) -> bool {
    matches!(eval(expr, row, functions), Ok(Value::Boolean(true)))
}

/// CAST between types, as ksqlDB allows it.
pub fn cast(v: Value, to: &SqlType) -> Result<Value, EvalError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let fail = |v: &Value| {
        type_error(format!(
            "Cast of {} to {} is not supported",
            describe(v),
            type_name(to)
        ))
    };
    Ok(match to {
        SqlType::Boolean => match &v {
            Value::Boolean(_) => v,
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "y" => Value::Boolean(true),
                "false" | "f" | "no" | "n" => Value::Boolean(false),
                _ => return Err(type_error(format!("Cannot cast '{s}' to BOOLEAN"))),
            },
            _ => return Err(fail(&v)),
        },
        SqlType::Int | SqlType::Bigint => {
            let i: i64 = match &v {
                Value::Int(i) => *i as i64,
                Value::Bigint(i) => *i,
                Value::Double(d) => *d as i64,
                Value::Decimal(d) => (d.unscaled / 10i128.pow(d.scale)) as i64,
                Value::String(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| type_error(format!("Cannot cast '{s}' to {}", type_name(to))))?,
                _ => return Err(fail(&v)),
            };
            if *to == SqlType::Int {
                Value::Int(i as i32)
            } else {
                Value::Bigint(i)
            }
        }
        SqlType::Double => match &v {
            Value::String(s) => Value::Double(
                s.trim()
                    .parse()
                    .map_err(|_| type_error(format!("Cannot cast '{s}' to DOUBLE")))?,
            ),
            other => Value::Double(as_f64(other).ok_or_else(|| fail(&v))?),
        },
        SqlType::Decimal { precision, scale } => {
            let d = match &v {
                Value::String(s) => Decimal::parse(s)
                    .ok_or_else(|| type_error(format!("Cannot cast '{s}' to {}", type_name(to))))?,
                Value::Double(d) => Decimal::parse(&format!("{d:.*}", *scale as usize + 1))
                    .ok_or_else(|| fail(&v))?,
                other => as_decimal(other).ok_or_else(|| fail(&v))?,
            };
            let d = d.rescale(*scale).ok_or_else(|| fail(&v))?;
            if d.unscaled
                .unsigned_abs()
                .checked_ilog10()
                .map_or(1, |x| x + 1)
                > *precision
            {
                return Err(type_error(format!(
                    "Cannot fit decimal '{d}' into {}",
                    type_name(to)
                )));
            }
            Value::Decimal(d)
        }
        SqlType::String => Value::String(match &v {
            Value::String(s) => s.clone(),
            other => to_string(other),
        }),
        SqlType::Bytes => match v {
            Value::Bytes(_) => v,
            _ => return Err(fail(&v)),
        },
        SqlType::Timestamp => match &v {
            Value::Timestamp(_) => v,
            Value::Date(d) => Value::Timestamp(*d as i64 * 86_400_000),
            Value::String(s) => Value::Timestamp(
                parse_timestamp(s)
                    .ok_or_else(|| type_error(format!("Cannot cast '{s}' to TIMESTAMP")))?,
            ),
            _ => return Err(fail(&v)),
        },
        SqlType::Date => match &v {
            Value::Date(_) => v,
            Value::Timestamp(ms) => Value::Date(ms.div_euclid(86_400_000) as i32),
            Value::String(s) => Value::Date(
                parse_date(s).ok_or_else(|| type_error(format!("Cannot cast '{s}' to DATE")))?,
            ),
            _ => return Err(fail(&v)),
        },
        SqlType::Time => match &v {
            Value::Time(_) => v,
            Value::Timestamp(ms) => Value::Time(ms.rem_euclid(86_400_000) as i32),
            Value::String(s) => Value::Time(
                parse_time(s).ok_or_else(|| type_error(format!("Cannot cast '{s}' to TIME")))?,
            ),
            _ => return Err(fail(&v)),
        },
        SqlType::Array(item) => match v {
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|i| cast(i, item))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(fail(&v)),
        },
        SqlType::Map(kt, vt) => match v {
            Value::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, x)| Ok((cast(k, kt)?, cast(x, vt)?)))
                    .collect::<Result<_, EvalError>>()?,
            ),
            _ => return Err(fail(&v)),
        },
        SqlType::Struct(target) => match v {
            // Field by field, by name: a field the value lacks is NULL, one the target
            // lacks is dropped (ksqlDB's struct-to-struct CAST).
            Value::Struct(fields) => {
                let mut fields = fields;
                Value::Struct(
                    target
                        .iter()
                        .map(|(name, t)| {
                            let at = fields.iter().position(|(n, _)| n == name);
                            let v = at.map_or(Value::Null, |i| fields.swap_remove(i).1);
                            Ok((name.clone(), cast(v, t)?))
                        })
                        .collect::<Result<_, EvalError>>()?,
                )
            }
            other => return Err(fail(&other)),
        },
        SqlType::Custom(_) => return Err(fail(&v)),
    })
}

/// A value as ksqlDB's CAST(… AS STRING) writes it.
pub fn to_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Bigint(i) => i.to_string(),
        Value::Double(d) => java_double(*d),
        Value::Decimal(d) => d.to_string(),
        Value::String(s) => s.clone(),
        Value::Bytes(b) => b.iter().map(|x| format!("{x:02X}")).collect(),
        Value::Timestamp(ms) => format_timestamp(*ms),
        Value::Date(d) => format_date(*d),
        Value::Time(t) => format_time(*t),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(to_string).collect::<Vec<_>>().join(", ")
        ),
        Value::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!("{}={}", to_string(k), to_string(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Struct(fields) => format!(
            "Struct{{{}}}",
            fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(n, v)| format!("{n}={}", to_string(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// Java's `Double.toString`: `1.0`, `0.1`, `1.0E10`, `1.0E-5`.
pub fn java_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let abs = d.abs();
    // Java's Double.toString keeps two digits for the smallest subnormal.
    if abs == f64::from_bits(1) {
        return if d > 0.0 { "4.9E-324" } else { "-4.9E-324" }.into();
    }
    if abs == 0.0 || (1e-3..1e7).contains(&abs) {
        let s = format!("{d}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{d:E}");
    let (mantissa, exp) = s.split_once('E').expect("exponent form");
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.0")
    };
    format!("{mantissa}E{exp}")
}

// ---- dates and times (UTC, proleptic Gregorian) ----

pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn parse_date(s: &str) -> Option<i32> {
    let mut parts = s.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next().map_or(Some(1), |p| p.parse().ok())?;
    let d: u32 = parts.next().map_or(Some(1), |p| p.parse().ok())?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    i32::try_from(days_from_civil(y, m, d)).ok()
}

fn parse_time(s: &str) -> Option<i32> {
    let mut parts = s.trim().split(':');
    let h: i32 = parts.next()?.parse().ok()?;
    let m: i32 = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let (sec, ms) = match parts.next() {
        None => (0, 0),
        Some(p) => {
            let (s, frac) = p.split_once('.').unwrap_or((p, ""));
            let frac = format!("{:0<3}", &frac[..frac.len().min(3)]);
            (s.parse().ok()?, frac.parse::<i32>().ok()?)
        }
    };
    if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..60).contains(&sec) {
        return None;
    }
    Some(((h * 60 + m) * 60 + sec) * 1000 + ms)
}

/// `2020-01-01`, `2020-01-01T10:00`, `2020-01-01T10:00:00.123`, with an optional `Z` or
/// `±hh:mm` offset (ksqlDB's partial ISO-8601 timestamps, UTC by default).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = match s.split_once('T') {
        Some((d, r)) => (d, r),
        None => (s, ""),
    };
    let days = parse_date(date)? as i64;
    let (time, offset_ms) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']).filter(|&i| i > 0) {
        let (t, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let off = &off[1..];
        let (h, m) = off
            .split_once(':')
            .unwrap_or((&off[..off.len().min(2)], &off[off.len().min(2)..]));
        let minutes = h.parse::<i64>().ok()? * 60
            + if m.is_empty() {
                0
            } else {
                m.parse::<i64>().ok()?
            };
        (t, sign * minutes * 60_000)
    } else {
        (rest, 0)
    };
    let ms = if time.is_empty() {
        0
    } else {
        parse_time(time)? as i64
    };
    Some(days * 86_400_000 + ms - offset_ms)
}

pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

pub fn format_time(ms: i32) -> String {
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, milli) = (rest / 1000, rest % 1000);
    if milli == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}.{milli:03}")
    }
}

/// ksqlDB's TIMESTAMP text: `2020-01-01T10:00:00.000` (UTC).
pub fn format_timestamp(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000) as i32;
    let (y, m, d) = civil_from_days(days);
    let (h, r) = (rest / 3_600_000, rest % 3_600_000);
    let (mi, r) = (r / 60_000, r % 60_000);
    format!(
        "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{:02}.{:03}",
        r / 1000,
        r % 1000
    )
}

/// The scalar functions every query has (the rest come from the registry).
fn builtin(name: &str, args: &[Value]) -> Option<Result<Value, EvalError>> {
    let arity = |n: usize| -> Result<(), EvalError> {
        if args.len() == n {
            Ok(())
        } else {
            Err(EvalError::Function(format!(
                "Function '{name}' does not accept parameters ({})",
                args.iter().map(describe).collect::<Vec<_>>().join(", ")
            )))
        }
    };
    let string = |i: usize| match &args[i] {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    };
    Some((|| -> Result<Value, EvalError> {
        Ok(match name {
            "COALESCE" => args
                .iter()
                .find(|v| !v.is_null())
                .cloned()
                .unwrap_or(Value::Null),
            "IFNULL" => {
                arity(2)?;
                if args[0].is_null() {
                    args[1].clone()
                } else {
                    args[0].clone()
                }
            }
            "NULLIF" => {
                arity(2)?;
                if compare(&args[0], &args[1])? == Some(Ordering::Equal) {
                    Value::Null
                } else {
                    args[0].clone()
                }
            }
            "ABS" => {
                arity(1)?;
                match &args[0] {
                    Value::Null => Value::Null,
                    Value::Int(i) => Value::Int(i.wrapping_abs()),
                    Value::Bigint(i) => Value::Bigint(i.wrapping_abs()),
                    Value::Double(d) => Value::Double(d.abs()),
                    Value::Decimal(d) => Value::Decimal(Decimal {
                        unscaled: d.unscaled.abs(),
                        scale: d.scale,
                    }),
                    other => return Err(type_error(format!("ABS of {}", describe(other)))),
                }
            }
            "UCASE" | "LCASE" | "LEN" | "TRIM" => {
                arity(1)?;
                if args[0].is_null() {
                    return Ok(Value::Null);
                }
                if let (Value::Bytes(b), "LEN") = (&args[0], name) {
                    return Ok(Value::Int(b.len() as i32));
                }
                let s = string(0).ok_or_else(|| type_error(format!("{name} needs a STRING")))?;
                match name {
                    "UCASE" => Value::String(s.to_uppercase()),
                    "LCASE" => Value::String(s.to_lowercase()),
                    "TRIM" => Value::String(s.trim().to_string()),
                    _ => Value::Int(s.chars().count() as i32),
                }
            }
            "CONCAT" if args.iter().any(|a| matches!(a, Value::Bytes(_))) => {
                let mut out = Vec::new();
                for a in args {
                    match a {
                        Value::Bytes(b) => out.extend_from_slice(b),
                        Value::Null => {}
                        _ => {
                            return Err(type_error(
                                "CONCAT needs all STRING or all BYTES arguments",
                            ))
                        }
                    }
                }
                Value::Bytes(out)
            }
            "CONCAT" => {
                if args
                    .iter()
                    .any(|a| !matches!(a, Value::String(_) | Value::Null))
                {
                    return Err(type_error("CONCAT needs STRING arguments"));
                }
                Value::String(
                    args.iter()
                        .filter_map(|a| match a {
                            Value::String(s) => Some(s.as_str()),
                            _ => None,
                        })
                        .collect(),
                )
            }
            _ => {
                return crate::functions::call(name, args)
                    .unwrap_or(Err(EvalError::UnknownFunction(String::new())))
            }
        })
    })())
    .filter(|r| !matches!(r, Err(EvalError::UnknownFunction(n)) if n.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_expression;

    fn row() -> Vec<(String, Value)> {
        vec![
            ("A".into(), Value::Int(7)),
            ("B".into(), Value::Bigint(3)),
            ("D".into(), Value::Double(1.5)),
            ("S".into(), Value::String("Hello".into())),
            ("N".into(), Value::Null),
            (
                "DEC".into(),
                Value::Decimal(Decimal::parse("10.25").unwrap()),
            ),
            (
                "ARR".into(),
                Value::Array(vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
            ),
            (
                "ST".into(),
                Value::Struct(vec![("F".into(), Value::String("x".into()))]),
            ),
            ("TS".into(), Value::Timestamp(1_577_836_800_000)),
        ]
    }

    fn ev(text: &str) -> Value {
        let r = row();
        eval(&parse_expression(text).unwrap(), &r, &NoFunctions)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn arithmetic_promotes_and_nulls_propagate() {
        assert_eq!(ev("A + 1"), Value::Int(8));
        assert_eq!(ev("A + B"), Value::Bigint(10));
        assert_eq!(ev("A / 2"), Value::Int(3));
        assert_eq!(ev("A % 4"), Value::Int(3));
        assert_eq!(ev("A * D"), Value::Double(10.5));
        assert_eq!(ev("A / 0"), Value::Null, "division by zero is NULL");
        assert_eq!(ev("A + N"), Value::Null);
        assert_eq!(
            ev("2147483647 + 1"),
            Value::Int(i32::MIN),
            "wraps as Java's int"
        );
        assert_eq!(
            ev("DEC + 1").to_owned(),
            Value::Decimal(Decimal::parse("11.25").unwrap())
        );
        assert_eq!(
            ev("DEC * 2"),
            Value::Decimal(Decimal::parse("20.50").unwrap())
        );
        assert_eq!(
            ev("DEC + 0.5"),
            Value::Decimal(Decimal::parse("10.75").unwrap())
        );
        assert_eq!(ev("DEC + D"), Value::Double(11.75));
        assert_eq!(ev("S + ' world'"), Value::String("Hello world".into()));
        assert_eq!(ev("S || '!'"), Value::String("Hello!".into()));
        assert_eq!(ev("-A"), Value::Int(-7));
    }

    #[test]
    fn comparisons_logic_and_predicates() {
        assert_eq!(ev("A > B"), Value::Boolean(true));
        assert_eq!(ev("A = 7.0"), Value::Boolean(true));
        assert_eq!(
            ev("N = 1"),
            Value::Boolean(false),
            "ksqlDB: false, not NULL"
        );
        assert_eq!(ev("N <> 1"), Value::Boolean(false));
        assert_eq!(ev("N = 1 OR A = 7"), Value::Boolean(true));
        assert_eq!(ev("CAST(NULL AS BOOLEAN) AND A = 7"), Value::Null);
        assert_eq!(ev("N = 1 AND A = 8"), Value::Boolean(false));
        assert_eq!(ev("NOT (A = 7)"), Value::Boolean(false));
        assert_eq!(ev("N IS NULL AND A IS NOT NULL"), Value::Boolean(true));
        assert_eq!(ev("A BETWEEN 1 AND 7"), Value::Boolean(true));
        assert_eq!(ev("A NOT BETWEEN 1 AND 7"), Value::Boolean(false));
        assert_eq!(ev("A IN (1, 7)"), Value::Boolean(true));
        assert_eq!(ev("S LIKE 'H%o'"), Value::Boolean(true));
        assert_eq!(ev("S LIKE 'h%'"), Value::Boolean(false));
        assert_eq!(ev("S LIKE '_ello'"), Value::Boolean(true));
        assert_eq!(ev("'50%' LIKE '50!%' ESCAPE '!'"), Value::Boolean(true));
        assert_eq!(ev("N IS NOT DISTINCT FROM NULL"), Value::Boolean(true));
        assert_eq!(ev("TS >= '2020-01-01'"), Value::Boolean(true));
        assert_eq!(ev("TS > '2020-01-01T00:00:01'"), Value::Boolean(false));
    }

    #[test]
    fn case_cast_collections_and_functions() {
        assert_eq!(
            ev("CASE WHEN A > 5 THEN 'big' ELSE 'small' END"),
            Value::String("big".into())
        );
        assert_eq!(ev("CASE A WHEN 1 THEN 'one' END"), Value::Null);
        assert_eq!(ev("CAST(A AS STRING)"), Value::String("7".into()));
        assert_eq!(ev("CAST('12' AS BIGINT)"), Value::Bigint(12));
        assert_eq!(ev("CAST(D AS STRING)"), Value::String("1.5".into()));
        assert_eq!(
            ev("CAST(DEC AS DECIMAL(5, 1))"),
            Value::Decimal(Decimal::parse("10.3").unwrap())
        );
        assert_eq!(
            ev("CAST(TS AS STRING)"),
            Value::String("2020-01-01T00:00:00.000".into())
        );
        assert_eq!(ev("CAST('2020-02-29' AS DATE)"), Value::Date(18_321));
        assert_eq!(
            ev("CAST(CAST('2020-02-29' AS DATE) AS STRING)"),
            Value::String("2020-02-29".into())
        );
        assert_eq!(ev("ARR[1]"), Value::Int(1));
        assert_eq!(ev("ARR[-1]"), Value::Int(3));
        assert_eq!(ev("ARR[9]"), Value::Null);
        assert_eq!(ev("ST->F"), Value::String("x".into()));
        assert_eq!(ev("MAP('k' := 1)['k']"), Value::Int(1));
        assert_eq!(ev("COALESCE(N, A)"), Value::Int(7));
        assert_eq!(ev("UCASE(S)"), Value::String("HELLO".into()));
        assert_eq!(ev("LEN(S)"), Value::Int(5));
        let r = row();
        assert!(matches!(
            eval(&parse_expression("NOPE(A)").unwrap(), &r, &NoFunctions),
            Err(EvalError::UnknownFunction(n)) if n == "NOPE"
        ));
        assert!(matches!(
            eval(&parse_expression("MISSING + 1").unwrap(), &r, &NoFunctions),
            Err(EvalError::UnknownColumn(_))
        ));
    }

    #[test]
    fn like_backtracks() {
        assert!(like("aaab", "%a%b", None));
        assert!(like("", "%", None));
        assert!(!like("abc", "a_", None));
        assert!(like("a%c", "a\\%c", Some('\\')));
    }

    #[test]
    fn java_doubles_and_dates_round_trip() {
        assert_eq!(java_double(1.0), "1.0");
        assert_eq!(java_double(0.1), "0.1");
        assert_eq!(java_double(1e10), "1.0E10");
        assert_eq!(java_double(1.5e-5), "1.5E-5");
        for days in [-1, 0, 18_321, 100_000] {
            assert_eq!(parse_date(&format_date(days)), Some(days));
        }
        assert_eq!(
            parse_timestamp("2020-01-01T00:00:00Z"),
            Some(1_577_836_800_000)
        );
        assert_eq!(
            parse_timestamp("2020-01-01T01:00:00+01:00"),
            Some(1_577_836_800_000)
        );
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999");
    }

    #[test]
    fn lambdas_transform_filter_and_reduce() {
        let row: Vec<(String, Value)> = vec![(
            "XS".to_string(),
            Value::Array(vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
        )];
        let run =
            |text: &str| eval(&crate::parse_expression(text).unwrap(), &row, &NoFunctions).unwrap();
        assert_eq!(
            run("TRANSFORM(XS, x => x * 10)"),
            Value::Array(vec![Value::Int(10), Value::Int(20), Value::Int(30)])
        );
        assert_eq!(
            run("FILTER(XS, x => x > 1)"),
            Value::Array(vec![Value::Int(2), Value::Int(3)])
        );
        assert_eq!(run("REDUCE(XS, 0, (s, x) => s + x)"), Value::Int(6));
        assert_eq!(
            run("REDUCE(CAST(NULL AS ARRAY<INT>), 5, (s, x) => s + x)"),
            Value::Int(5)
        );
    }
}
