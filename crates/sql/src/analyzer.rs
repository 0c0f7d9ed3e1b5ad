//! Typing expressions against a source's schema and shaping a query's output, with
//! ksqlDB's rules and messages: numeric promotion and DECIMAL precision/scale, what may be
//! compared with what, how output columns are named (`KSQL_COL_0`, a struct field's name),
//! which key the output has (the source's, or PARTITION BY's), and that the key must be
//! projected.
//!
//! So far single-source queries without aggregation; GROUP BY, windows and joins come with
//! the engine.

use crate::ast::{BinaryOp, Expr, Literal, Query, SelectItem, SourceKind, SqlType};
use crate::catalog::{Catalog, Column, Source};
use crate::value::{type_name, Decimal, DECIMAL_PRECISION_MAX};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AnalysisError(pub String);

fn err(m: impl Into<String>) -> AnalysisError {
    AnalysisError(m.into())
}

/// Columns an expression can see: the source's key and value columns and the pseudo
/// columns.
pub struct Scope<'a> {
    pub source: &'a Source,
    /// The source's alias, if the query gave one.
    pub alias: Option<&'a str>,
}

impl Scope<'_> {
    fn column(&self, qualifier: Option<&str>, name: &str) -> Result<SqlType, AnalysisError> {
        if let Some(q) = qualifier {
            if q != self.source.name && Some(q) != self.alias {
                return Err(err(format!(
                    "Failed to prepare statement: '{q}' is not a valid stream/table name or alias."
                )));
            }
        }
        let found = self
            .source
            .key
            .iter()
            .chain(&self.source.value)
            .find(|c| c.name == name)
            .map(|c| c.sql_type.clone());
        if let Some(t) = found {
            return Ok(t);
        }
        Ok(match name {
            "ROWTIME" => SqlType::Bigint,
            "ROWPARTITION" => SqlType::Int,
            "ROWOFFSET" => SqlType::Bigint,
            _ => {
                let shown = match qualifier {
                    Some(q) => format!("{q}.{name}"),
                    None => name.to_string(),
                };
                return Err(err(format!("Column '{shown}' cannot be resolved.")));
            }
        })
    }
}

fn decimal_of(t: &SqlType) -> Option<(u32, u32)> {
    match t {
        SqlType::Int => Some((10, 0)),
        SqlType::Bigint => Some((19, 0)),
        SqlType::Decimal { precision, scale } => Some((*precision, *scale)),
        _ => None,
    }
}

fn numeric_rank(t: &SqlType) -> Option<u8> {
    Some(match t {
        SqlType::Int => 0,
        SqlType::Bigint => 1,
        SqlType::Decimal { .. } => 2,
        SqlType::Double => 3,
        _ => return None,
    })
}

fn op_name(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Eq => "EQUAL",
        BinaryOp::Neq => "NOT_EQUAL",
        BinaryOp::Lt => "LESS_THAN",
        BinaryOp::Lte => "LESS_THAN_OR_EQUAL",
        BinaryOp::Gt => "GREATER_THAN",
        BinaryOp::Gte => "GREATER_THAN_OR_EQUAL",
        BinaryOp::Add => "ADD",
        BinaryOp::Subtract => "SUBTRACT",
        BinaryOp::Multiply => "MULTIPLY",
        BinaryOp::Divide => "DIVIDE",
        BinaryOp::Modulus => "MODULUS",
        BinaryOp::Concat => "CONCAT",
        BinaryOp::And => "AND",
        BinaryOp::Or => "OR",
    }
}

fn comparable(a: &SqlType, b: &SqlType) -> bool {
    let temporal = |t: &SqlType| matches!(t, SqlType::Timestamp | SqlType::Date | SqlType::Time);
    numeric_rank(a).is_some() && numeric_rank(b).is_some()
        || a == b
        || (temporal(a) && *b == SqlType::String)
        || (temporal(b) && *a == SqlType::String)
        || matches!((a, b), (SqlType::Decimal { .. }, SqlType::Decimal { .. }))
        || matches!((a, b), (SqlType::Array(_), SqlType::Array(_)))
        || matches!((a, b), (SqlType::Struct(_), SqlType::Struct(_)))
}

/// The DECIMAL type of a binary operation, as ksqlDB computes it.
fn decimal_result(op: BinaryOp, (p1, s1): (u32, u32), (p2, s2): (u32, u32)) -> SqlType {
    let (precision, scale) = match op {
        BinaryOp::Add | BinaryOp::Subtract => {
            let scale = s1.max(s2);
            (scale + (p1 - s1).max(p2 - s2) + 1, scale)
        }
        BinaryOp::Multiply => (p1 + p2 + 1, s1 + s2),
        BinaryOp::Divide => {
            let scale = 6.max(s1 + p2 + 1);
            (p1 - s1 + s2 + scale, scale)
        }
        _ => ((p1 - s1).min(p2 - s2) + s1.max(s2), s1.max(s2)),
    };
    SqlType::Decimal {
        precision: precision.min(DECIMAL_PRECISION_MAX),
        scale: scale.min(DECIMAL_PRECISION_MAX),
    }
}

/// The type of a lambda's body with its parameters of the given types: each parameter
/// stands as a typed NULL while the body is typed.
fn lambda_body_type(
    lambda: &Expr,
    param_types: &[Option<SqlType>],
    scope: &Scope<'_>,
) -> Result<Option<SqlType>, AnalysisError> {
    let Expr::Lambda { params, body } = lambda else {
        return Err(err("a lambda is expected here"));
    };
    if params.len() != param_types.len() {
        return Err(err(format!(
            "The lambda takes {} arguments where {} are given",
            params.len(),
            param_types.len()
        )));
    }
    let typed = body.rewrite(&mut |x| match x {
        Expr::Column { source: None, name } => {
            params
                .iter()
                .position(|p| p == name)
                .map(|i| match &param_types[i] {
                    Some(t) => Expr::Cast {
                        expr: Box::new(Expr::Literal(Literal::Null)),
                        to: t.clone(),
                    },
                    None => Expr::Literal(Literal::Null),
                })
        }
        _ => None,
    });
    type_of(&typed, scope)
}

/// TRANSFORM / FILTER / REDUCE: the result type from the collection's and the lambdas'.
fn lambda_type(
    name: &str,
    args: &[Expr],
    scope: &Scope<'_>,
) -> Result<Option<SqlType>, AnalysisError> {
    let collection = type_of(&args[0], scope)?;
    let (item, key_value) = match &collection {
        Some(SqlType::Array(t)) => (Some(t.as_ref().clone()), None),
        Some(SqlType::Map(k, v)) => (None, Some((k.as_ref().clone(), v.as_ref().clone()))),
        _ => return Err(err(format!("{name} takes an ARRAY or a MAP first"))),
    };
    Ok(match (name, item, key_value, args.len()) {
        ("TRANSFORM", Some(t), _, 2) => {
            lambda_body_type(&args[1], &[Some(t)], scope)?.map(|b| SqlType::Array(Box::new(b)))
        }
        ("TRANSFORM", _, Some((k, v)), 3) => {
            let kt = lambda_body_type(&args[1], &[Some(k.clone()), Some(v.clone())], scope)?;
            let vt = lambda_body_type(&args[2], &[Some(k), Some(v)], scope)?;
            match (kt, vt) {
                (Some(kt), Some(vt)) => Some(SqlType::Map(Box::new(kt), Box::new(vt))),
                _ => None,
            }
        }
        ("FILTER", Some(t), _, 2) => {
            lambda_body_type(&args[1], &[Some(t)], scope)?;
            collection
        }
        ("FILTER", _, Some((k, v)), 2) => {
            lambda_body_type(&args[1], &[Some(k), Some(v)], scope)?;
            collection
        }
        ("REDUCE", item, key_value, 3) => {
            let init = type_of(&args[1], scope)?;
            match (item, key_value) {
                (Some(t), _) => {
                    lambda_body_type(&args[2], &[init.clone(), Some(t)], scope)?;
                }
                (_, Some((k, v))) => {
                    lambda_body_type(&args[2], &[init.clone(), Some(k), Some(v)], scope)?;
                }
                _ => {}
            }
            init
        }
        _ => {
            return Err(err(format!(
                "Can't find any functions with the name '{name}' taking these arguments"
            )))
        }
    })
}

/// The type of `expr` in `scope` (None: NULL, a type to be decided by its context).
pub fn type_of(expr: &Expr, scope: &Scope<'_>) -> Result<Option<SqlType>, AnalysisError> {
    let ty = |e: &Expr| type_of(e, scope);
    Ok(Some(match expr {
        Expr::Literal(l) => match l {
            Literal::Null => return Ok(None),
            Literal::Boolean(_) => SqlType::Boolean,
            Literal::Integer(i) if i32::try_from(*i).is_ok() => SqlType::Int,
            Literal::Integer(_) => SqlType::Bigint,
            Literal::Decimal(d) => {
                let d = Decimal::parse(d).ok_or_else(|| err(format!("'{d}' is not a number")))?;
                SqlType::Decimal {
                    precision: d.precision(),
                    scale: d.scale,
                }
            }
            Literal::Double(_) => SqlType::Double,
            Literal::String(_) => SqlType::String,
        },
        Expr::Column { source, name } => scope.column(source.as_deref(), name)?,
        Expr::Variable(v) => return Err(err(format!("variable ${{{v}}} was not substituted"))),
        Expr::Binary { op, left, right } => {
            let (l, r) = (ty(left)?, ty(right)?);
            match op {
                BinaryOp::And | BinaryOp::Or => {
                    for (e, t) in [(left, &l), (right, &r)] {
                        if let Some(t) = t {
                            if *t != SqlType::Boolean {
                                return Err(err(format!(
                                    "Logical binary expects two boolean values.  Actual {} of type {}",
                                    format_expr(e),
                                    type_name(t)
                                )));
                            }
                        }
                    }
                    SqlType::Boolean
                }
                BinaryOp::Eq
                | BinaryOp::Neq
                | BinaryOp::Lt
                | BinaryOp::Lte
                | BinaryOp::Gt
                | BinaryOp::Gte => {
                    if l.is_none() && r.is_none() {
                        return Err(err(format!(
                            "Comparison with NULL not supported: {} {} {}",
                            format_expr(left),
                            match op {
                                BinaryOp::Eq => "=",
                                BinaryOp::Neq => "<>",
                                BinaryOp::Lt => "<",
                                BinaryOp::Lte => "<=",
                                BinaryOp::Gt => ">",
                                _ => ">=",
                            },
                            format_expr(right)
                        )));
                    }
                    if let (Some(a), Some(b)) = (&l, &r) {
                        // Collections compare for (in)equality only.
                        let collection = |t: &SqlType| {
                            matches!(t, SqlType::Array(_) | SqlType::Map(..) | SqlType::Struct(_))
                        };
                        let ordering = !matches!(op, BinaryOp::Eq | BinaryOp::Neq);
                        if !comparable(a, b) || ordering && (collection(a) || collection(b)) {
                            return Err(err(format!(
                                "Cannot compare {} ({}) to {} ({}) with {}.",
                                format_expr(left),
                                type_name(a),
                                format_expr(right),
                                type_name(b),
                                op_name(*op)
                            )));
                        }
                    }
                    SqlType::Boolean
                }
                BinaryOp::Concat => SqlType::String,
                _ => match (l, r) {
                    (None, other) | (other, None) => return Ok(other),
                    (Some(SqlType::String), Some(SqlType::String)) if *op == BinaryOp::Add => {
                        SqlType::String
                    }
                    (Some(a), Some(b)) => {
                        let (Some(ra), Some(rb)) = (numeric_rank(&a), numeric_rank(&b)) else {
                            return Err(err(format!(
                                "Error processing expression: {}. Unsupported arithmetic types. {} {}",
                                format_expr(expr),
                                type_name(&a),
                                type_name(&b)
                            )));
                        };
                        match ra.max(rb) {
                            0 => SqlType::Int,
                            1 => SqlType::Bigint,
                            2 => decimal_result(
                                *op,
                                decimal_of(&a).expect("numeric"),
                                decimal_of(&b).expect("numeric"),
                            ),
                            _ => SqlType::Double,
                        }
                    }
                },
            }
        }
        Expr::Negate(e) => return ty(e),
        Expr::Not(_)
        | Expr::IsNull { .. }
        | Expr::IsDistinctFrom { .. }
        | Expr::Between { .. }
        | Expr::InList { .. }
        | Expr::Like { .. } => {
            // The operands must still resolve.
            match expr {
                Expr::Not(e) | Expr::IsNull { expr: e, .. } => {
                    ty(e)?;
                }
                Expr::Like { expr, pattern, .. } => {
                    ty(expr)?;
                    ty(pattern)?;
                }
                _ => {}
            }
            SqlType::Boolean
        }
        Expr::Case {
            operand,
            whens,
            otherwise,
        } => {
            if let Some(o) = operand {
                ty(o)?;
            }
            let mut result = None;
            for (when, then) in whens {
                ty(when)?;
                if let Some(t) = ty(then)? {
                    match &result {
                        None => result = Some(t),
                        Some(r) if *r == t => {}
                        Some(r) => {
                            return Err(err(format!(
                                "Invalid Case expression. Type for all 'THEN' clauses should be the same.\nTHEN expression '{}' has type: {}. Previous THEN expression(s) type: {}.",
                                format_expr(then),
                                type_name(&t),
                                type_name(r)
                            )))
                        }
                    }
                }
            }
            if let Some(e) = otherwise {
                match (ty(e)?, &result) {
                    (Some(t), Some(r)) if t != *r => {
                        return Err(err(format!(
                            "Invalid Case expression. Type for the default clause should be the same as for 'THEN' clauses.\nTHEN type: {}.\nDEFAULT type: {}.",
                            type_name(r),
                            type_name(&t)
                        )));
                    }
                    (Some(t), None) => result = Some(t),
                    _ => {}
                }
            }
            if result.is_none() {
                return Err(err(
                    "Invalid Case expression. All case branches have NULL type",
                ));
            }
            return Ok(result);
        }
        Expr::Cast { expr, to } => {
            let from = ty(expr)?;
            // A collection or struct is made only from its own kind.
            let same_kind = |f: &SqlType| {
                matches!(
                    (f, to),
                    (SqlType::Array(_), SqlType::Array(_))
                        | (SqlType::Map(..), SqlType::Map(..))
                        | (SqlType::Struct(_), SqlType::Struct(_))
                )
            };
            if let Some(f) = &from {
                if matches!(to, SqlType::Array(_) | SqlType::Map(..) | SqlType::Struct(_))
                    && !same_kind(f)
                {
                    return Err(err(format!(
                        "Cast of {} to {} is not supported",
                        type_name(f),
                        type_name(to)
                    )));
                }
            }
            to.clone()
        }
        Expr::Function { name, args, .. }
            if args.iter().any(|a| matches!(a, Expr::Lambda { .. })) =>
        {
            return lambda_type(name, args, scope);
        }
        Expr::Function { name, args, .. } => {
            let types = args.iter().map(ty).collect::<Result<Vec<_>, _>>()?;
            if matches!(name.as_str(), "LEAST" | "GREATEST") {
                return least_greatest_type(name, &types).map_err(err);
            }
            match name.as_str() {
                "COALESCE" if types.is_empty() => {
                    return Err(err("Function 'COALESCE' does not accept parameters ()"))
                }
                "COALESCE" | "IFNULL" | "NULLIF" => return Ok(types.into_iter().flatten().next()),
                "ABS" => return Ok(types.into_iter().next().flatten()),
                "CONCAT" if types.iter().flatten().any(|t| *t == SqlType::Bytes) => SqlType::Bytes,
                "UCASE" | "LCASE" | "TRIM" | "CONCAT" => SqlType::String,
                "LEN" => SqlType::Int,
                _ => match crate::functions::return_type(name, &types) {
                    Some(t) => return Ok(t),
                    None => {
                        return Err(err(format!(
                            "Can't find any functions with the name '{name}'"
                        )))
                    }
                },
            }
        }
        Expr::Subscript { base, index } => {
            ty(index)?;
            match ty(base)? {
                Some(SqlType::Array(item)) => *item,
                Some(SqlType::Map(_, v)) => *v,
                Some(other) => {
                    return Err(err(format!(
                        "Expected collection (ARRAY or MAP), got {}",
                        type_name(&other)
                    )))
                }
                None => return Ok(None),
            }
        }
        Expr::Dereference { base, field } => match ty(base)? {
            Some(SqlType::Struct(fields)) => fields
                .into_iter()
                .find(|(n, _)| n == field)
                .map(|(_, t)| t)
                .ok_or_else(|| {
                    err(format!(
                        "Could not find field '{field}' in '{}'.",
                        format_expr(base)
                    ))
                })?,
            Some(other) => {
                return Err(err(format!(
                    "Expected STRUCT type, got {}",
                    type_name(&other)
                )))
            }
            None => return Ok(None),
        },
        Expr::Array(items) if items.is_empty() => {
            return Err(err("Array constructor cannot be empty. Please supply at least one element (see https://github.com/confluentinc/ksql/issues/4239)."))
        }
        Expr::Map(entries) if entries.is_empty() => {
            return Err(err("Map constructor cannot be empty. Please supply at least one key value pair (see https://github.com/confluentinc/ksql/issues/4239)."))
        }
        Expr::Array(items) => {
            let item = items.iter().map(ty).collect::<Result<Vec<_>, _>>()?;
            SqlType::Array(Box::new(item.into_iter().flatten().next().ok_or_else(|| {
                err("Cannot construct an array with all NULL elements (see https://github.com/confluentinc/ksql/issues/4239). As a workaround, you may cast a NULL value to the desired type.")
            })?))
        }
        Expr::Map(entries) => {
            let (mut k, mut v) = (None, None);
            for (ke, ve) in entries {
                k = k.or(ty(ke)?);
                v = v.or(ty(ve)?);
            }
            SqlType::Map(
                Box::new(k.ok_or_else(|| err("Cannot construct a map with all NULL keys"))?),
                Box::new(v.ok_or_else(|| err("Cannot construct a map with all NULL values"))?),
            )
        }
        Expr::Struct(fields) if fields
            .iter()
            .enumerate()
            .any(|(i, (n, _))| fields[..i].iter().any(|(m, _)| m == n)) =>
        {
            return Err(err("Duplicate field names found in STRUCT"));
        }
        Expr::Struct(fields) => SqlType::Struct(
            fields
                .iter()
                .map(|(n, e)| Ok((n.clone(), ty(e)?.unwrap_or(SqlType::String))))
                .collect::<Result<_, AnalysisError>>()?,
        ),
        Expr::TypedLiteral { type_name: t, .. } => match t.as_str() {
            "TIMESTAMP" => SqlType::Timestamp,
            "DATE" => SqlType::Date,
            "TIME" => SqlType::Time,
            other => return Err(err(format!("no {other} literals"))),
        },
        Expr::Unit(_) | Expr::Lambda { .. } => {
            return Err(err("a lambda or time unit is only a function argument"))
        }
    }))
}

/// An expression as ksqlDB prints it in messages and generated column names.
pub fn format_expr(e: &Expr) -> String {
    match e {
        Expr::Literal(Literal::String(s)) => format!("'{}'", s.replace('\'', "''")),
        Expr::Literal(Literal::Null) => "null".into(),
        Expr::Literal(Literal::Boolean(b)) => b.to_string(),
        Expr::Literal(Literal::Integer(i)) => i.to_string(),
        Expr::Literal(Literal::Decimal(d)) => d.clone(),
        Expr::Literal(Literal::Double(d)) => crate::eval::java_double(*d),
        Expr::Column {
            source: Some(s),
            name,
        } => format!("{s}.{name}"),
        Expr::Column { source: None, name } => name.clone(),
        Expr::Variable(v) => format!("${{{v}}}"),
        Expr::Binary { op, left, right } => {
            let sym = match op {
                BinaryOp::Add => "+",
                BinaryOp::Subtract => "-",
                BinaryOp::Multiply => "*",
                BinaryOp::Divide => "/",
                BinaryOp::Modulus => "%",
                BinaryOp::Concat => "||",
                BinaryOp::Eq => "=",
                BinaryOp::Neq => "<>",
                BinaryOp::Lt => "<",
                BinaryOp::Lte => "<=",
                BinaryOp::Gt => ">",
                BinaryOp::Gte => ">=",
                BinaryOp::And => "AND",
                BinaryOp::Or => "OR",
            };
            format!("({} {sym} {})", format_expr(left), format_expr(right))
        }
        Expr::Negate(e) => format!("-{}", format_expr(e)),
        Expr::Not(e) => format!("(NOT {})", format_expr(e)),
        Expr::IsNull { expr, negated } => format!(
            "({} IS {}NULL)",
            format_expr(expr),
            if *negated { "NOT " } else { "" }
        ),
        Expr::Function { name, args, star } => {
            if *star {
                format!("{name}(*)")
            } else {
                format!(
                    "{name}({})",
                    args.iter().map(format_expr).collect::<Vec<_>>().join(", ")
                )
            }
        }
        Expr::Dereference { base, field } => format!("{}->{field}", format_expr(base)),
        Expr::Subscript { base, index } => format!("{}[{}]", format_expr(base), format_expr(index)),
        Expr::Cast { expr, to } => format!("CAST({} AS {})", format_expr(expr), type_name(to)),
        other => format!("{other:?}"),
    }
}

/// One output column: its name, type and how it is computed.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputColumn {
    pub name: String,
    pub sql_type: SqlType,
    pub expr: Expr,
}

impl OutputColumn {
    /// Output columns as (name, type) pairs, as the formats take them.
    pub fn name_types(columns: &[OutputColumn]) -> Vec<(String, SqlType)> {
        columns
            .iter()
            .map(|c| (c.name.clone(), c.sql_type.clone()))
            .collect()
    }
}

/// What a (non-aggregate, single-source) query produces.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub kind: SourceKind,
    pub key: Vec<OutputColumn>,
    pub value: Vec<OutputColumn>,
    pub filter: Option<Expr>,
}

fn column_expr(c: &Column) -> Expr {
    Expr::Column {
        source: None,
        name: c.name.clone(),
    }
}

/// The columns a single-source, non-aggregate query selects, in the order written (what a
/// transient query returns), after checking its WHERE clause.
pub fn select_columns(
    query: &Query,
    catalog: &Catalog,
) -> Result<Vec<OutputColumn>, AnalysisError> {
    if !query.joins.is_empty() || !query.group_by.is_empty() || query.window.is_some() {
        return Err(err("joins, GROUP BY and windows are not analyzed yet"));
    }
    let source = catalog
        .get(&query.from)
        .ok_or_else(|| err(format!("{} does not exist.", query.from)))?;
    let scope = Scope {
        source,
        alias: query.from_alias.as_deref(),
    };
    if let Some(w) = &query.where_clause {
        let checked = type_of(w, &scope).map_err(|e| match unresolved_in("WHERE", &e) {
            Some(e) => e,
            None => err(format!("Error in WHERE expression: {}", e.0)),
        });
        match checked? {
            Some(SqlType::Boolean) | None => {}
            Some(other) => {
                return Err(err(format!(
                    "Type error in WHERE expression: Should evaluate to boolean but is {} ({}) instead.",
                    format_expr(w),
                    type_name(&other)
                )))
            }
        }
    }
    let mut selected: Vec<OutputColumn> = Vec::new();
    let mut generated = 0;
    // A struct field selected without an alias is named after the field, with `_1`,
    // `_2`… when a source column or an earlier such name has it (ksqlDB's alias
    // generator).
    let mut taken: std::collections::HashSet<String> = source
        .key
        .iter()
        .chain(&source.value)
        .map(|c| c.name.clone())
        .collect();
    for item in &query.select {
        match item {
            SelectItem::All { source: q } => {
                if let Some(q) = q {
                    if *q != source.name && Some(q.as_str()) != scope.alias {
                        return Err(err(format!(
                            "Failed to prepare statement: '{q}' is not a valid stream/table name or alias."
                        )));
                    }
                }
                // Key columns first; with PARTITION BY the old key moves into the value,
                // after the value columns, as ksqlDB orders it.
                let ordered: Vec<&Column> = if query.partition_by.is_empty() {
                    source.key.iter().chain(&source.value).collect()
                } else {
                    source.value.iter().chain(&source.key).collect()
                };
                for c in ordered {
                    selected.push(OutputColumn {
                        name: c.name.clone(),
                        sql_type: c.sql_type.clone(),
                        expr: column_expr(c),
                    });
                }
            }
            SelectItem::StructAll(base) => match type_of(base, &scope)? {
                Some(SqlType::Struct(fields)) => {
                    for (n, t) in fields {
                        selected.push(OutputColumn {
                            name: n.clone(),
                            sql_type: t,
                            expr: Expr::Dereference {
                                base: Box::new(base.clone()),
                                field: n,
                            },
                        });
                    }
                }
                _ => return Err(err(format!("{}->* needs a STRUCT", format_expr(base)))),
            },
            SelectItem::Expr { expr, alias } => {
                let sql_type = type_of(expr, &scope)
                    .map_err(|e| match unresolved_in("SELECT", &e) {
                        Some(e) => e,
                        None if e.0.starts_with("Cast of ") => err(format!("Invalid Select: {}", e.0)),
                        None => e,
                    })?
                    .ok_or_else(|| {
                    err("Can't infer a type of null. Please explicitly cast it to a required type, e.g. CAST(null AS VARCHAR).")
                })?;
                let name = match (alias, expr) {
                    (Some(a), _) => a.clone(),
                    (None, Expr::Column { name, .. }) => name.clone(),
                    (None, Expr::Dereference { field, .. }) => {
                        let mut n = field.clone();
                        let mut i = 0;
                        while taken.contains(&n) {
                            i += 1;
                            n = format!("{field}_{i}");
                        }
                        taken.insert(n.clone());
                        n
                    }
                    (None, _) => {
                        let n = format!("KSQL_COL_{generated}");
                        generated += 1;
                        n
                    }
                };
                if crate::catalog::RESERVED_COLUMNS.contains(&name.as_str()) {
                    return Err(match alias {
                        Some(_) => err(format!(
                            "`{name}` is a reserved column name. You cannot use it as an alias for a column."
                        )),
                        None => err(format!(
                            "Reserved column name in select: `{name}`. Please remove or alias the column."
                        )),
                    });
                }
                if selected.iter().any(|c| c.name == name) {
                    return Err(err(format!(
                        "Duplicate value columns found in schema: `{name}`"
                    )));
                }
                selected.push(OutputColumn {
                    name,
                    sql_type,
                    expr: expr.clone(),
                });
            }
        }
    }
    Ok(selected)
}

/// ksqlDB names the clause of a column it cannot resolve ("WHERE column 'X' cannot be
/// resolved."); None when `e` is another error.
pub fn unresolved_in(clause: &str, e: &AnalysisError) -> Option<AnalysisError> {
    let rest = e.0.strip_prefix("Column '")?;
    rest.ends_with("cannot be resolved.")
        .then(|| err(format!("{clause} column '{rest}")))
}

/// LEAST / GREATEST: ksqlDB's generic `T f(T, T...)`: every argument of one type (DECIMALs
/// widened to hold them all), with ksqlDB's errors for the rest.
fn least_greatest_type(name: &str, types: &[Option<SqlType>]) -> Result<Option<SqlType>, String> {
    let lower = name.to_ascii_lowercase();
    let shown = || {
        types
            .iter()
            .map(|t| {
                t.as_ref()
                    .map_or("null".to_string(), crate::value::type_name)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let known: Vec<&SqlType> = types.iter().flatten().collect();
    let Some(first) = known.first() else {
        return Err(if types.is_empty() {
            format!("Function '{lower}' does not accept parameters ().")
        } else {
            format!(
                "Function '{lower}' cannot be resolved due to ambiguous method parameters ({}).",
                shown()
            )
        });
    };
    if known.iter().all(|t| matches!(t, SqlType::Decimal { .. })) {
        let (mut digits, mut scale) = (0, 0);
        for t in &known {
            if let SqlType::Decimal {
                precision,
                scale: s,
            } = t
            {
                digits = digits.max(precision - s);
                scale = scale.max(*s);
            }
        }
        return Ok(Some(SqlType::Decimal {
            precision: digits + scale,
            scale,
        }));
    }
    if known.iter().all(|t| t == first) {
        return Ok(Some((*first).clone()));
    }
    let numeric = |t: &SqlType| {
        matches!(
            t,
            SqlType::Int | SqlType::Bigint | SqlType::Double | SqlType::Decimal { .. }
        )
    };
    // Dates, times and timestamps with text that reads as one (literals).
    let temporal = known
        .iter()
        .find(|t| matches!(t, SqlType::Date | SqlType::Time | SqlType::Timestamp));
    if let Some(t) = temporal {
        if known.iter().all(|k| k == t || **k == SqlType::String) {
            return Ok(Some((*t).clone()));
        }
    }
    // Mixed numbers resolve only to DOUBLE (the one overload all of them cast to when a
    // DOUBLE is among them); otherwise several overloads fit.
    if known.iter().all(|t| numeric(t)) && known.contains(&&SqlType::Double) {
        return Ok(Some(SqlType::Double));
    }
    if known.iter().all(|t| numeric(t)) {
        Err(format!(
            "Function '{lower}' cannot be resolved due to ambiguous method parameters ({}).",
            shown()
        ))
    } else {
        Err(format!(
            "Function '{lower}' does not accept parameters ({}).",
            shown()
        ))
    }
}

/// Shapes a query that reads one source without aggregating (a filter / projection /
/// repartition): its key and value columns, named and typed as ksqlDB names and types them.
/// `sink` names the output for error messages.
pub fn project(query: &Query, catalog: &Catalog, sink: &str) -> Result<Projection, AnalysisError> {
    let mut selected = select_columns(query, catalog)?;
    let source = catalog
        .get(&query.from)
        .ok_or_else(|| err(format!("{} does not exist.", query.from)))?;
    let scope = Scope {
        source,
        alias: query.from_alias.as_deref(),
    };
    // The output's key: PARTITION BY's expressions, else the source's key columns, which
    // must then be projected.
    let mut key = Vec::new();
    if query.partition_by.is_empty() {
        let qualifiers = [Some(source.name.as_str()), query.from_alias.as_deref()];
        for k in &source.key {
            // The key column, bare or qualified by the source's name or alias.
            let at = selected.iter().position(|c| {
                c.expr == column_expr(k)
                    || matches!(&c.expr, Expr::Column { source: Some(q), name }
                        if *name == k.name && qualifiers.contains(&Some(q.as_str())))
            });
            match at {
                Some(i) => {
                    let k_col = selected.remove(i);
                    // The key once: a second copy under another name is refused.
                    if let Some(again) = selected.iter().find(|c| c.expr == k_col.expr) {
                        return Err(err(format!(
                            "The projection contains a key column (`{}`) more than once, aliased as: {} and {}.",
                            k.name, k_col.name, again.name
                        )));
                    }
                    key.push(k_col)
                }
                None => {
                    return Err(err(format!(
                        "The query used to build `{sink}` must include the key column {} in its projection (eg, SELECT {}...).",
                        k.name, k.name
                    )))
                }
            }
        }
    } else {
        for p in &query.partition_by {
            if matches!(p, Expr::Literal(Literal::Null)) {
                continue; // PARTITION BY NULL: no key.
            }
            let sql_type = type_of(p, &scope)
                .map_err(|e| unresolved_in("PARTITION BY", &e).unwrap_or(e))?
                .ok_or_else(|| err("PARTITION BY NULL must stand alone"))?;
            let at = selected.iter().position(|c| c.expr == *p);
            let star = query
                .select
                .iter()
                .any(|i| matches!(i, SelectItem::All { .. }));
            match at {
                Some(i) => {
                    let k_col = selected.remove(i);
                    if let Some(again) = selected.iter().find(|c| c.expr == k_col.expr) {
                        return Err(err(format!(
                            "The projection contains a key column (`{}`) more than once, aliased as: {} and {}.",
                            format_expr(p),
                            k_col.name,
                            again.name
                        )));
                    }
                    key.push(k_col)
                }
                // With `SELECT *` the partitioning expression becomes the key as it is,
                // named as ksqlDB names it.
                None if star => key.push(OutputColumn {
                    name: match p {
                        Expr::Column { name, .. }
                            if !crate::catalog::RESERVED_COLUMNS.contains(&name.as_str()) =>
                        {
                            name.clone()
                        }
                        Expr::Dereference { field, .. } => field.clone(),
                        _ => format!("KSQL_COL_{}", key.len()),
                    },
                    sql_type: sql_type.clone(),
                    expr: p.clone(),
                }),
                None => {
                    // ksqlDB names the expression's columns with their source.
                    let qualified = format_expr(&p.rewrite(&mut |x| match x {
                        Expr::Column { source: None, name } => Some(Expr::Column {
                            source: Some(source.name.clone()),
                            name: name.clone(),
                        }),
                        _ => None,
                    }));
                    return Err(err(format!(
                        "The query used to build `{sink}` must include the partitioning expression {qualified} in its projection (eg, SELECT {qualified}...)."
                    )));
                }
            }
            let _ = sql_type;
        }
    }
    if selected.is_empty() {
        return Err(err("The projection contains no value columns."));
    }
    Ok(Projection {
        kind: source.kind,
        key,
        value: selected,
        filter: query.where_clause.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Statement;
    use crate::catalog::Topics;
    use crate::{parse_expression, parse_statement};

    struct All;
    impl Topics for All {
        fn partitions(&self, _: &str) -> Option<i32> {
            Some(1)
        }
    }

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        c.create_source(
            &parse_statement("CREATE STREAM INPUT (ID INT KEY, NAME STRING, PRICE DECIMAL(4, 2), QTY BIGINT, ADDR STRUCT<CITY STRING>, TAGS ARRAY<STRING>) WITH (kafka_topic='t', value_format='JSON')").unwrap(),
            &All,
        )
        .unwrap();
        c
    }

    fn typed(text: &str) -> Result<Option<SqlType>, AnalysisError> {
        let c = catalog();
        let scope = Scope {
            source: c.get("INPUT").unwrap(),
            alias: None,
        };
        type_of(&parse_expression(text).unwrap(), &scope)
    }

    fn project_sql(sql: &str) -> Result<Projection, AnalysisError> {
        let Statement::CreateAsSelect { query, .. } = parse_statement(sql).unwrap() else {
            panic!()
        };
        project(&query, &catalog(), "OUTPUT")
    }

    #[test]
    fn expression_types_follow_ksqldbs_promotion() {
        assert_eq!(typed("ID + 1").unwrap(), Some(SqlType::Int));
        assert_eq!(typed("ID + QTY").unwrap(), Some(SqlType::Bigint));
        assert_eq!(typed("QTY * 1.5E0").unwrap(), Some(SqlType::Double));
        assert_eq!(
            typed("PRICE + PRICE").unwrap(),
            Some(SqlType::Decimal {
                precision: 5,
                scale: 2
            })
        );
        assert_eq!(
            typed("PRICE * ID").unwrap(),
            Some(SqlType::Decimal {
                precision: 15,
                scale: 2
            })
        );
        assert_eq!(
            typed("PRICE / PRICE").unwrap(),
            Some(SqlType::Decimal {
                precision: 11,
                scale: 7
            })
        );
        assert_eq!(
            typed("1.50").unwrap(),
            Some(SqlType::Decimal {
                precision: 3,
                scale: 2
            })
        );
        assert_eq!(typed("ADDR->CITY").unwrap(), Some(SqlType::String));
        assert_eq!(typed("TAGS[1]").unwrap(), Some(SqlType::String));
        assert_eq!(
            typed("NAME LIKE 'a%' AND ID > 1").unwrap(),
            Some(SqlType::Boolean)
        );
        assert_eq!(typed("NULL").unwrap(), None);
        assert_eq!(typed("ROWTIME").unwrap(), Some(SqlType::Bigint));
    }

    #[test]
    fn type_errors_with_ksqldbs_messages() {
        for (text, message) in [
            (
                "ID >= 'not an int'",
                "Cannot compare ID (INTEGER) to 'not an int' (STRING) with GREATER_THAN_OR_EQUAL.",
            ),
            ("NOPE + 1", "Column 'NOPE' cannot be resolved."),
            (
                "WONT_FIND_ME(ID)",
                "Can't find any functions with the name 'WONT_FIND_ME'",
            ),
            ("NAME * 2", "Unsupported arithmetic types"),
            (
                "CASE WHEN ID > 1 THEN 'a' ELSE 1 END",
                "Invalid Case expression",
            ),
            ("ADDR->ZIP", "Could not find field 'ZIP'"),
        ] {
            let e = typed(text).unwrap_err();
            assert!(e.0.contains(message), "{text}: {e}");
        }
    }

    #[test]
    fn a_struct_field_named_like_a_source_column_gets_a_numbered_name() {
        let mut c = Catalog::default();
        c.create_source(
            &crate::parse_statement("CREATE STREAM INPUT (ROWKEY STRING KEY, B INT, A STRUCT<B INT>, C STRUCT<B INT, D INT>) WITH (kafka_topic='t', value_format='JSON');").unwrap(),
            &All,
        )
        .unwrap();
        let crate::ast::Statement::CreateAsSelect { query, .. } = crate::parse_statement(
            "CREATE STREAM OUTPUT AS SELECT ROWKEY, B, A->B, C->B, C->D FROM INPUT;",
        )
        .unwrap() else {
            panic!()
        };
        let names: Vec<String> = select_columns(&query, &c)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["ROWKEY", "B", "B_1", "B_2", "D"]);
    }

    #[test]
    fn projections_name_and_key_their_columns() {
        let p = project_sql("CREATE STREAM OUTPUT AS SELECT ID, NAME, PRICE * 2, ADDR->CITY, UCASE(NAME) AS UPPER FROM INPUT WHERE ID < 10;").unwrap();
        assert_eq!(
            p.key.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["ID"]
        );
        assert_eq!(
            p.value.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["NAME", "KSQL_COL_0", "CITY", "UPPER"]
        );
        let p = project_sql("CREATE STREAM OUTPUT AS SELECT * FROM INPUT;").unwrap();
        assert_eq!(p.key.len(), 1);
        assert_eq!(p.value.len(), 5);
        let p =
            project_sql("CREATE STREAM OUTPUT AS SELECT NAME, ID FROM INPUT PARTITION BY NAME;")
                .unwrap();
        assert_eq!(p.key[0].name, "NAME");
        assert_eq!(p.value[0].name, "ID");
        for (sql, message) in [
            ("CREATE STREAM OUTPUT AS SELECT NAME FROM INPUT;", "must include the key column ID in its projection"),
            ("CREATE STREAM OUTPUT AS SELECT ID FROM INPUT;", "The projection contains no value columns."),
            ("CREATE STREAM OUTPUT AS SELECT ID, NAME AS ROWPARTITION FROM INPUT;", "`ROWPARTITION` is a reserved column name. You cannot use it as an alias for a column."),
            ("CREATE STREAM OUTPUT AS SELECT ID, ROWOFFSET FROM INPUT;", "Reserved column name in select: `ROWOFFSET`."),
            ("CREATE STREAM OUTPUT AS SELECT * FROM INPUT WHERE ID >= 'x';", "Error in WHERE expression: Cannot compare ID (INTEGER) to 'x' (STRING)"),
            ("CREATE STREAM OUTPUT AS SELECT X.ID, NAME FROM INPUT;", "'X' is not a valid stream/table name or alias."),
            ("CREATE STREAM OUTPUT AS SELECT * FROM NOPE;", "NOPE does not exist."),
            ("CREATE STREAM OUTPUT AS SELECT ID, ID AS ID2, NAME FROM INPUT;", "The projection contains a key column (`ID`) more than once, aliased as: ID and ID2."),
            ("CREATE STREAM OUTPUT AS SELECT NAME, NAME AS N2, ID FROM INPUT PARTITION BY NAME;", "The projection contains a key column (`NAME`) more than once, aliased as: NAME and N2."),
            ("CREATE STREAM OUTPUT AS SELECT BOB FROM INPUT;", "SELECT column 'BOB' cannot be resolved."),
            ("CREATE STREAM OUTPUT AS SELECT * FROM INPUT WHERE BOB = 1;", "WHERE column 'BOB' cannot be resolved."),
            ("CREATE STREAM OUTPUT AS SELECT NAME, ID FROM INPUT PARTITION BY ABS(ID);", "must include the partitioning expression ABS(INPUT.ID) in its projection"),
        ] {
            let e = project_sql(sql).unwrap_err();
            assert!(e.0.contains(message), "{sql}: {e}");
        }
    }
}
