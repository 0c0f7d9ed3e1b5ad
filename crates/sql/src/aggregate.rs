//! GROUP BY over a stream (no window yet): the analysis of an aggregate query and its
//! state, record by record. Pure: the engine keeps the state map, writes the outputs and
//! the state's changelog.
//!
//! A query's select items and HAVING are rewritten so that each grouping expression
//! becomes the column `KSQL_GROUP_i` and each aggregate call `KSQL_AGG_j`; output columns
//! are then plain expressions over one row of those, as ksqlDB evaluates its final
//! projection over the aggregated row. Every input record updates its group's
//! accumulators and emits the group's new row (ksqlDB with caching off), or a tombstone
//! when HAVING rejects it. The output timestamp is the largest of the group's inputs'.

use std::collections::BTreeMap;

use crate::analyzer::{format_expr, type_of, AnalysisError, OutputColumn, Scope};
use crate::ast::{BinaryOp, Expr, Query, SelectItem, SourceKind, SqlType};
use crate::catalog::{Catalog, Column, Source};
use crate::eval::{binary, cast, compare, eval, eval_column, eval_condition, Functions, Row};
use crate::format::{from_json, json_text, serialize};
use crate::pipeline::{decode_values, RecordIn, Sink, SourceRow};
use crate::value::Value;

fn err(m: impl Into<String>) -> AnalysisError {
    AnalysisError(m.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    Count,
    CountStar,
    CountDistinct,
    Sum,
    Min,
    Max,
    Avg,
    LatestByOffset,
    EarliestByOffset,
    CollectList,
    CollectSet,
    TopK,
    TopKDistinct,
    Histogram,
    Attr,
    /// CORRELATION(x, y): Pearson's coefficient. Its accumulator is a list of six DOUBLEs:
    /// count, Σx, Σy, Σx², Σy², Σxy.
    Correlation,
}

impl AggKind {
    pub fn by_name(name: &str) -> Option<AggKind> {
        Some(match name {
            "COUNT" => AggKind::Count,
            "COUNT_DISTINCT" => AggKind::CountDistinct,
            "SUM" => AggKind::Sum,
            "MIN" => AggKind::Min,
            "MAX" => AggKind::Max,
            "AVG" => AggKind::Avg,
            "LATEST_BY_OFFSET" => AggKind::LatestByOffset,
            "EARLIEST_BY_OFFSET" => AggKind::EarliestByOffset,
            "COLLECT_LIST" => AggKind::CollectList,
            "COLLECT_SET" => AggKind::CollectSet,
            "TOPK" => AggKind::TopK,
            "TOPKDISTINCT" => AggKind::TopKDistinct,
            "HISTOGRAM" => AggKind::Histogram,
            "ATTR" => AggKind::Attr,
            "CORRELATION" => AggKind::Correlation,
            _ => return None,
        })
    }
}

/// One aggregate call of the query.
#[derive(Debug, Clone, PartialEq)]
pub struct AggCall {
    pub kind: AggKind,
    pub arg: Option<Expr>,
    pub arg_type: Option<SqlType>,
    pub out_type: SqlType,
    /// TOPK's / TOPKDISTINCT's k; LATEST/EARLIEST_BY_OFFSET's n (an array of n values).
    pub param: Option<i64>,
    /// LATEST/EARLIEST_BY_OFFSET: whether NULLs are skipped (the default).
    pub ignore_nulls: bool,
}

/// An accumulator's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Acc {
    Count(i64),
    Value(Value),
    Avg {
        sum: f64,
        count: i64,
    },
    List(Vec<Value>),
    /// Not an accumulator: a table source's row as last aggregated (its value bytes),
    /// kept so a change can first take the old row out of its group.
    Prior(Vec<u8>),
}

/// A row's GROUP BY values and its aggregates' arguments.
type GroupAndArgs = (Vec<Value>, Vec<Value>);

/// The part of a record a row's aggregation needs.
#[derive(Clone, Copy)]
struct RowTime {
    timestamp: i64,
}

/// A group's state: accumulators and the largest input timestamp so far.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupState {
    pub accs: Vec<Acc>,
    pub timestamp: i64,
}

/// Where an aggregation keeps its groups, by state key ([`AggregateQuery::group_key`], a
/// window's start appended): a `BTreeMap` in memory, or the engine's store, which holds
/// the groups on disk with the recent ones cached so that the state may outgrow memory.
/// Every whole-state scan goes through [`GroupMap::for_each`].
pub trait GroupMap {
    fn get(&mut self, key: &[u8]) -> Option<GroupState>;
    fn insert(&mut self, key: Vec<u8>, state: GroupState);
    /// Removes a group, giving back its state.
    fn remove(&mut self, key: &[u8]) -> Option<GroupState>;
    /// Every group whose key starts with `prefix`, in key order.
    fn with_prefix(&mut self, prefix: &[u8]) -> Vec<(Vec<u8>, GroupState)>;
    /// Calls `f` with every group in key order until it answers false.
    fn for_each(&mut self, f: &mut dyn FnMut(&[u8], &GroupState) -> bool);
}

impl GroupMap for BTreeMap<Vec<u8>, GroupState> {
    fn get(&mut self, key: &[u8]) -> Option<GroupState> {
        BTreeMap::get(self, key).cloned()
    }

    fn insert(&mut self, key: Vec<u8>, state: GroupState) {
        BTreeMap::insert(self, key, state);
    }

    fn remove(&mut self, key: &[u8]) -> Option<GroupState> {
        BTreeMap::remove(self, key)
    }

    fn with_prefix(&mut self, prefix: &[u8]) -> Vec<(Vec<u8>, GroupState)> {
        self.range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn for_each(&mut self, f: &mut dyn FnMut(&[u8], &GroupState) -> bool) {
        for (k, v) in self.iter() {
            if !f(k, v) {
                break;
            }
        }
    }
}

/// The keys of the groups `keep` selects (a whole-state scan).
fn keys_where(
    state: &mut dyn GroupMap,
    mut keep: impl FnMut(&[u8], &GroupState) -> bool,
) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    state.for_each(&mut |k, st| {
        if keep(k, st) {
            keys.push(k.to_vec());
        }
        true
    });
    keys
}

/// An aggregate query ready to run.
pub struct AggregateQuery {
    pub source: Source,
    pub filter: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub group_types: Vec<SqlType>,
    pub calls: Vec<AggCall>,
    /// Output key columns (over the aggregated row).
    pub key: Vec<OutputColumn>,
    pub value: Vec<OutputColumn>,
    pub having: Option<Expr>,
    pub sink: Sink,
    /// TUMBLING / HOPPING: each group is kept per window.
    pub window: Option<TimeWindow>,
}

/// A time window (TUMBLING is HOPPING with advance = size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub size: i64,
    pub advance: i64,
    /// Records for a window whose end + grace is at or before stream time are dropped.
    pub grace: i64,
    /// EMIT FINAL: a window's row is written once, when it closes.
    pub emit_final: bool,
    /// How long the window store keeps a window (RETENTION, else size + grace, as Kafka
    /// Streams defaults it): counted back from the latest window start stored. A window
    /// older than that is gone from the store, so EMIT FINAL never writes it.
    pub retention: i64,
    /// A SESSION window: `size` is the inactivity gap; a window runs from its first to its
    /// last record and merges with any window within the gap.
    pub session: bool,
}

impl TimeWindow {
    /// The starts of the windows holding `ts`, earliest first (Kafka Streams' order).
    pub fn starts(&self, ts: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let mut s = ts - ts.rem_euclid(self.advance);
        while s > ts - self.size && s >= 0 {
            out.push(s);
            s -= self.advance;
        }
        out.reverse();
        out
    }
}

/// The state map's entry holding stream time (group keys all start with `[`).
pub const STREAM_TIME_KEY: &[u8] = b"";

/// What one input record changed: a state entry (None: removed) and the record to write.
#[derive(Debug, Clone, PartialEq)]
pub struct AggUpdate {
    pub state_key: Vec<u8>,
    pub state: Option<String>,
    /// (key, value, timestamp) of the output record, if one is written.
    pub record: Option<OutRecord>,
}

/// An output record: key, value (None: a tombstone), timestamp.
pub type OutRecord = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

fn group_name(i: usize) -> String {
    format!("KSQL_GROUP_{i}")
}

fn agg_name(j: usize) -> String {
    format!("KSQL_AGG_{j}")
}

/// Whether an expression contains an aggregate call.
pub fn has_aggregate(e: &Expr) -> bool {
    let mut found = false;
    e.rewrite(&mut |x| {
        if let Expr::Function { name, .. } = x {
            if AggKind::by_name(name).is_some() {
                found = true;
            }
        }
        None
    });
    found
}

/// Adds (`sign` 1) or takes back (-1) one (x, y) pair of CORRELATION's sums; a pair with
/// a NULL is not counted.
fn correlation_step(sums: &mut [Value], pair: &Value, sign: f64) {
    let Value::Array(xy) = pair else { return };
    let (Some(x), Some(y)) = (xy.first().and_then(as_f64), xy.get(1).and_then(as_f64)) else {
        return;
    };
    for (slot, d) in sums.iter_mut().zip([1.0, x, y, x * x, y * y, x * y]) {
        if let Value::Double(s) = slot {
            *s += sign * d;
        }
    }
}

/// How many items a COLLECT_LIST / COLLECT_SET keeps.
fn collect_limit(call: &AggCall) -> usize {
    match (call.kind, call.param) {
        (AggKind::CollectList | AggKind::CollectSet, Some(n)) => {
            (n.max(0) as usize).min(COLLECT_MAX)
        }
        _ => COLLECT_MAX,
    }
}

/// Equality as a set sees it: maps compare regardless of their entries' order.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .any(|(k2, v2)| same_value(k, k2) && same_value(v, v2))
                })
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Struct(x), Value::Struct(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((n, a), (m, b))| n == m && same_value(a, b))
        }
        _ => a == b,
    }
}

/// The name of the first aggregate call in `e` (outermost first).
fn first_aggregate(e: &Expr) -> Option<String> {
    let mut found = None;
    e.rewrite(&mut |x| {
        if let Expr::Function { name, .. } = x {
            if found.is_none() && AggKind::by_name(name).is_some() {
                found = Some(name.to_ascii_uppercase());
            }
        }
        None
    });
    found
}

const NOT_GROUPED_HINT: &str =
    "\nEither add the column(s) to the GROUP BY or remove them from the SELECT.";

/// Whether a query aggregates (GROUP BY, or an aggregate call in its select list).
pub fn is_aggregate(query: &Query) -> bool {
    !query.group_by.is_empty()
        || query.select.iter().any(|s| match s {
            SelectItem::Expr { expr, .. } => has_aggregate(expr),
            _ => false,
        })
}

/// Analyzes a (non-windowed) aggregate query over a stream.
pub fn plan_aggregate(
    query: &Query,
    catalog: &Catalog,
    sink_name: &str,
    sink: Sink,
) -> Result<AggregateQuery, AnalysisError> {
    if !query.joins.is_empty() {
        return Err(err("Joins are not supported yet by this engine."));
    }
    let window = match &query.window {
        None => None,
        Some(w) => {
            let (size, advance) = match w.kind {
                crate::ast::WindowKind::Tumbling { size } => (size.millis(), size.millis()),
                crate::ast::WindowKind::Hopping { size, advance } => {
                    (size.millis(), advance.millis())
                }
                crate::ast::WindowKind::Session { gap } => (gap.millis(), gap.millis()),
            };
            if size <= 0 || advance <= 0 || advance > size {
                return Err(err(format!(
                    "Window advance must be positive and at most the window size: size {size} ms, advance {advance} ms"
                )));
            }
            // Without GRACE PERIOD: Kafka Streams' old default (a day less the size),
            // except that EMIT FINAL then emits as soon as the window ends (ksqlDB).
            let grace = match (w.grace, query.emit == Some(crate::ast::Emit::Final)) {
                (Some(g), _) => g.millis(),
                (None, true) => 0,
                (None, false) => (86_400_000 - size).max(0),
            };
            Some(TimeWindow {
                size,
                advance,
                grace,
                retention: w.retention.map_or(size + grace, |r| r.millis()),
                emit_final: query.emit == Some(crate::ast::Emit::Final),
                session: matches!(w.kind, crate::ast::WindowKind::Session { .. }),
            })
        }
    };
    if window.is_none() && query.emit == Some(crate::ast::Emit::Final) {
        return Err(err(
            "EMIT FINAL is only supported for windowed aggregations.",
        ));
    }
    let source = catalog
        .get(&query.from)
        .ok_or_else(|| err(format!("{} does not exist.", query.from)))?
        .clone();
    // Window bounds exist only once a window has been aggregated: in the SELECT list, not
    // in an aggregate's arguments, GROUP BY, WHERE or HAVING.
    let bound_in = |e: &Expr| -> Option<String> {
        let mut found = None;
        e.rewrite(&mut |x| {
            if let Expr::Column { name, .. } = x {
                if found.is_none() && matches!(name.as_str(), "WINDOWSTART" | "WINDOWEND") {
                    found = Some(name.clone());
                }
            }
            None
        });
        found
    };
    if let Some(w) = query.where_clause.as_ref().and_then(bound_in) {
        return Err(err(format!(
            "Error in WHERE expression: Unknown column {w}."
        )));
    }
    let mut misplaced: Vec<&Expr> = query.group_by.iter().chain(&query.having).collect();
    let mut aggregate_args: Vec<Expr> = Vec::new();
    for item in &query.select {
        if let SelectItem::Expr { expr, .. } = item {
            expr.rewrite(&mut |x| {
                if let Expr::Function { name, args, .. } = x {
                    if AggKind::by_name(name).is_some() {
                        aggregate_args.extend(args.iter().cloned());
                    }
                }
                None
            });
        }
    }
    misplaced.extend(&aggregate_args);
    if let Some(w) = misplaced.into_iter().find_map(bound_in) {
        return Err(err(format!(
            "Window bounds column {w} can only be used in the SELECT clause of windowed aggregations"
        )));
    }
    if source.kind == SourceKind::Table && query.window.is_some() {
        return Err(err("Windowing not supported for table aggregations."));
    }
    if query.group_by.is_empty() {
        // ksqlDB's wording: the columns that would need grouping, else the aggregates.
        let mut plain = Vec::new();
        let mut aggregates = Vec::new();
        for item in &query.select {
            match item {
                SelectItem::Expr { expr, .. } if has_aggregate(expr) => {
                    aggregates.push(match expr {
                        Expr::Function { name, star, args } if *star || args.is_empty() => {
                            format!("{}(ROWTIME)", name.to_ascii_uppercase())
                        }
                        other => format_expr(other),
                    })
                }
                SelectItem::Expr { expr, .. } => plain.push(format_expr(expr)),
                _ => plain.push("*".into()),
            }
        }
        if !plain.is_empty() {
            return Err(err(format!(
                "Non-aggregate SELECT expression(s) not part of GROUP BY: {}{NOT_GROUPED_HINT}",
                plain.join(", ")
            )));
        }
        return Err(err(format!(
            "CREATE TABLE AS SELECT statement does not support aggregate function [{}] without a GROUP BY clause.",
            aggregates.join(", ")
        )));
    }
    let scope = Scope {
        source: &source,
        alias: query.from_alias.as_deref(),
    };
    for g in &query.group_by {
        if let Some(name) = first_aggregate(g) {
            return Err(err(format!(
                "GROUP BY does not support aggregate functions: {name} is an aggregate function."
            )));
        }
    }
    // The same column bare or qualified by the source's name or alias is one expression.
    let unqualified = |e: &Expr| {
        e.rewrite(&mut |x| match x {
            Expr::Column {
                source: Some(q),
                name,
            } if *q == source.name || Some(q.as_str()) == query.from_alias.as_deref() => {
                Some(Expr::Column {
                    source: None,
                    name: name.clone(),
                })
            }
            _ => None,
        })
    };
    let plain: Vec<Expr> = query.group_by.iter().map(unqualified).collect();
    for (i, g) in plain.iter().enumerate() {
        if plain[..i].contains(g) {
            let text = match g {
                Expr::Column { source: None, name } => {
                    format!(
                        "{}.{name}",
                        query.from_alias.as_deref().unwrap_or(&query.from)
                    )
                }
                other => format_expr(other),
            };
            return Err(err(format!("Duplicate GROUP BY expression: {text}")));
        }
    }
    let mut group_types = Vec::new();
    for g in &query.group_by {
        group_types.push(type_of(g, &scope)?.ok_or_else(|| err("GROUP BY NULL is not supported"))?);
    }
    // Rewrites an output expression over the aggregated row.
    let mut calls: Vec<AggCall> = Vec::new();
    let mut failure: Option<AnalysisError> = None;
    let rewrite = |e: &Expr, calls: &mut Vec<AggCall>, failure: &mut Option<AnalysisError>| {
        e.rewrite(&mut |x| {
            if let Some(i) = query.group_by.iter().position(|g| g == x) {
                return Some(Expr::Column {
                    source: None,
                    name: group_name(i),
                });
            }
            if let Expr::Function { name, args, star } = x {
                let kind = AggKind::by_name(name)?;
                if let Some(inner) = args.iter().find_map(first_aggregate) {
                    failure.get_or_insert(err(format!(
                        "Aggregate functions can not be nested: {}({inner}())",
                        name.to_ascii_uppercase()
                    )));
                }
                let kind = if kind == AggKind::Count && (*star || args.is_empty()) {
                    AggKind::CountStar
                } else {
                    kind
                };
                let arg = match kind {
                    // Both arguments, as one array value per row.
                    AggKind::Correlation => {
                        if args.len() != 2 {
                            failure.get_or_insert(err(format!(
                                "Function '{}' does not accept parameters ({}).",
                                name.to_ascii_lowercase(),
                                args.iter().map(|_| "?").collect::<Vec<_>>().join(", ")
                            )));
                        }
                        Some(Expr::Array(args.clone()))
                    }
                    // TOPK(sort_col, other columns…, k): structs of the sort column and
                    // the others (`sort_col`, `col0`, …), ranked by the sort column.
                    AggKind::TopK if args.len() > 2 => {
                        let mut fields = vec![("sort_col".to_string(), args[0].clone())];
                        for (i, a) in args[1..args.len() - 1].iter().enumerate() {
                            fields.push((format!("col{i}"), a.clone()));
                        }
                        Some(Expr::Struct(fields))
                    }
                    _ => args.first().cloned(),
                };
                let arg_type = match &arg {
                    Some(a) if kind != AggKind::CountStar => match type_of(a, &scope) {
                        Ok(t) => t,
                        Err(e) => {
                            failure.get_or_insert(e);
                            None
                        }
                    },
                    _ => None,
                };
                let out_type = match kind {
                    AggKind::Count | AggKind::CountStar | AggKind::CountDistinct => SqlType::Bigint,
                    AggKind::Avg | AggKind::Correlation => SqlType::Double,
                    AggKind::CollectList
                    | AggKind::CollectSet
                    | AggKind::TopK
                    | AggKind::TopKDistinct => {
                        SqlType::Array(Box::new(arg_type.clone().unwrap_or(SqlType::String)))
                    }
                    AggKind::Histogram => {
                        SqlType::Map(Box::new(SqlType::String), Box::new(SqlType::Bigint))
                    }
                    _ => arg_type.clone().unwrap_or(SqlType::String),
                };
                let mut ignore_nulls = true;
                let mut offset_n = None;
                if matches!(kind, AggKind::LatestByOffset | AggKind::EarliestByOffset) {
                    for (i, a) in args.iter().enumerate().skip(1) {
                        match a {
                            Expr::Literal(crate::ast::Literal::Boolean(b)) => ignore_nulls = *b,
                            Expr::Literal(crate::ast::Literal::Integer(n)) if *n > 0 => offset_n = Some(*n),
                            Expr::Literal(_) => {
                                failure.get_or_insert(err(format!(
                                    "{name} takes the column, then optionally a positive integer n and a boolean ignoreNulls"
                                )));
                            }
                            other => {
                                let at = i + 1;
                                failure.get_or_insert(err(format!(
                                    "Parameter {at} passed to function {} must be a literal constant, but was expression: '{}'",
                                    name.to_ascii_uppercase(),
                                    format_expr(other)
                                )));
                            }
                        }
                    }
                }
                let out_type = match (kind, offset_n) {
                    (AggKind::LatestByOffset | AggKind::EarliestByOffset, Some(_)) => {
                        SqlType::Array(Box::new(arg_type.clone().unwrap_or(SqlType::String)))
                    }
                    _ => out_type,
                };
                let param = match kind {
                    AggKind::LatestByOffset | AggKind::EarliestByOffset => offset_n,
                    AggKind::TopK | AggKind::TopKDistinct => match args.last().filter(|_| args.len() >= 2) {
                        Some(Expr::Literal(crate::ast::Literal::Integer(k))) if *k > 0 => Some(*k),
                        _ => {
                            failure.get_or_insert(err(format!(
                                "{name} takes the column and a positive integer literal k"
                            )));
                            None
                        }
                    },
                    _ => None,
                };
                if kind == AggKind::Sum
                    && !matches!(
                        arg_type,
                        Some(
                            SqlType::Int
                                | SqlType::Bigint
                                | SqlType::Double
                                | SqlType::Decimal { .. }
                        )
                    )
                {
                    failure.get_or_insert(err(format!(
                        "Function 'sum' does not accept parameters ({}).",
                        arg_type
                            .as_ref()
                            .map_or("null".into(), crate::value::type_name)
                    )));
                }
                let call = AggCall {
                    kind,
                    arg,
                    arg_type,
                    out_type,
                    param,
                    ignore_nulls,
                };
                let j = match calls.iter().position(|c| *c == call) {
                    Some(j) => j,
                    None => {
                        calls.push(call);
                        calls.len() - 1
                    }
                };
                return Some(Expr::Column {
                    source: None,
                    name: agg_name(j),
                });
            }
            None
        })
    };
    // The select list: (name, rewritten expression, original).
    let mut selected: Vec<(String, Expr, Expr)> = Vec::new();
    let mut generated = 0;
    // `SELECT *` stands for the source's columns.
    let star_columns: Vec<SelectItem> = source
        .key
        .iter()
        .chain(&source.value)
        .map(|c| SelectItem::Expr {
            expr: Expr::Column {
                source: None,
                name: c.name.clone(),
            },
            alias: None,
        })
        .collect();
    let items: Vec<&SelectItem> = query
        .select
        .iter()
        .flat_map(|item| match item {
            SelectItem::Expr { .. } => vec![item],
            _ => star_columns.iter().collect(),
        })
        .collect();
    for item in items {
        let SelectItem::Expr { expr, alias } = item else {
            return Err(err("SELECT * is not supported in an aggregate query."));
        };
        let rewritten = rewrite(expr, &mut calls, &mut failure);
        let name = match (alias, expr) {
            (Some(a), _) => a.clone(),
            (None, Expr::Column { name, .. }) => name.clone(),
            (None, Expr::Dereference { field, .. }) => field.clone(),
            (None, _) => {
                let n = format!("KSQL_COL_{generated}");
                generated += 1;
                n
            }
        };
        selected.push((name, rewritten, expr.clone()));
    }
    let having = query
        .having
        .as_ref()
        .map(|h| rewrite(h, &mut calls, &mut failure));
    if let Some(f) = failure {
        return Err(f);
    }
    if calls.is_empty() {
        // An unknown function is reported first.
        for item in &query.select {
            if let SelectItem::Expr { expr, .. } = item {
                if let Err(e) = type_of(expr, &scope) {
                    if e.0.starts_with("Can't find any functions") {
                        return Err(e);
                    }
                }
            }
        }
        return Err(err(
            "GROUP BY requires aggregate functions in either the SELECT or HAVING clause.",
        ));
    }
    // ksqlDB keeps aggregation state in the source's value format; DELIMITED holds only
    // the primitive states of COUNT, SUM, MIN and MAX.
    if matches!(source.value_format, crate::format::Format::Delimited { .. })
        && calls.iter().any(|c| {
            !matches!(
                c.kind,
                AggKind::Count | AggKind::CountStar | AggKind::Sum | AggKind::Min | AggKind::Max
            )
        })
    {
        return Err(err("One of the functions used in the statement has an intermediate type that the value format can not handle. Please remove the function or change the format."));
    }
    // The aggregated row's columns, for typing the outputs.
    let mut row_columns = Vec::new();
    for (i, t) in group_types.iter().enumerate() {
        row_columns.push(Column {
            name: group_name(i),
            sql_type: t.clone(),
            header: None,
        });
    }
    for (j, c) in calls.iter().enumerate() {
        row_columns.push(Column {
            name: agg_name(j),
            sql_type: c.out_type.clone(),
            header: None,
        });
    }
    if window.is_some() {
        for n in ["WINDOWSTART", "WINDOWEND"] {
            row_columns.push(Column {
                name: n.into(),
                sql_type: SqlType::Bigint,
                header: None,
            });
        }
    }
    let row_source = Source {
        name: source.name.clone(),
        kind: SourceKind::Table,
        key: Vec::new(),
        value: row_columns,
        topic: String::new(),
        key_format: source.key_format.clone(),
        value_format: source.value_format.clone(),
        wrap_single_value: true,
        timestamp_column: None,
        timestamp_format: None,
        read_only: false,
    };
    let row_scope = Scope {
        source: &row_source,
        alias: None,
    };
    let mut key = Vec::new();
    let mut value = Vec::new();
    let mut non_aggregate = Vec::new();
    for (name, rewritten, original) in selected {
        let sql_type = match type_of(&rewritten, &row_scope) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(err("Can't infer a type of null. Please explicitly cast it to a required type, e.g. CAST(null AS VARCHAR).")),
            Err(e) if e.0.starts_with("Can't find any functions") => return Err(e),
            Err(_) => {
                non_aggregate.push(format_expr(&original));
                continue;
            }
        };
        let column = OutputColumn {
            name,
            sql_type,
            expr: rewritten.clone(),
        };
        match &rewritten {
            Expr::Column { name, .. } if name.starts_with("KSQL_GROUP_") => key.push(column),
            _ => value.push(column),
        }
    }
    if !non_aggregate.is_empty() {
        return Err(err(format!(
            "Non-aggregate SELECT expression(s) not part of GROUP BY: {}{NOT_GROUPED_HINT}",
            non_aggregate.join(", ")
        )));
    }
    if let (Some(h), Some(original)) = (&having, &query.having) {
        if let Err(e) = type_of(h, &row_scope).map_err(|e| e.0) {
            if e.starts_with("Cannot compare") {
                // Named as written: each aggregated column back to its call, each
                // grouping column back to its expression.
                let mut shown = e.clone();
                let mut originals: Vec<Expr> = Vec::new();
                original.rewrite(&mut |x| {
                    if matches!(x, Expr::Function { name, .. } if AggKind::by_name(name).is_some())
                        || query.group_by.contains(x)
                    {
                        originals.push(x.clone());
                        return Some(x.clone());
                    }
                    None
                });
                let mut names: Vec<(String, String)> = Vec::new();
                for x in originals {
                    let mut scratch_calls = calls.clone();
                    let mut scratch_failure = None;
                    if let Expr::Column { name, .. } =
                        rewrite(&x, &mut scratch_calls, &mut scratch_failure)
                    {
                        names.push((name, format_expr(&x)));
                    }
                }
                // Longest first: KSQL_AGG_10 before KSQL_AGG_1.
                names.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
                for (name, text) in names {
                    shown = shown.replace(&name, &text);
                }
                return Err(err(format!("Error in HAVING expression: {shown}")));
            }
            // The columns HAVING uses that are neither grouped nor aggregated.
            let mut loose: Vec<String> = Vec::new();
            h.rewrite(&mut |x| {
                if let Expr::Column { name, .. } = x {
                    if !name.starts_with("KSQL_") && !loose.contains(name) {
                        loose.push(name.clone());
                    }
                }
                None
            });
            return Err(err(format!(
                "Non-aggregate HAVING expression not part of GROUP BY: {}",
                loose.join(", ")
            )));
        }
    }
    // Each grouping expression once in the projection.
    for (i, _) in query.group_by.iter().enumerate() {
        let wanted = group_name(i);
        let named: Vec<&str> = key
            .iter()
            .filter(|k| matches!(&k.expr, Expr::Column { name, .. } if *name == wanted))
            .map(|k| k.name.as_str())
            .collect();
        if let [first, second, ..] = named.as_slice() {
            return Err(err(format!(
                "The projection contains a key column more than once: `{first}` and `{second}`."
            )));
        }
    }
    let missing: Vec<String> = query
        .group_by
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let wanted = group_name(*i);
            !key.iter()
                .any(|k| matches!(&k.expr, Expr::Column { name, .. } if *name == wanted))
        })
        .map(|(_, g)| format_expr(g))
        .collect();
    if !missing.is_empty() {
        let list = match missing.as_slice() {
            [one] => one.clone(),
            [init @ .., last] => format!("{} and {last}", init.join(", ")),
            [] => String::new(),
        };
        return Err(err(format!(
            "The query used to build `{sink_name}` must include the grouping expression{} {list} in its projection (eg, SELECT {}...).",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ")
        )));
    }
    for (i, c) in value.iter().enumerate() {
        let clash =
            key.iter().any(|k| k.name == c.name) || value[..i].iter().any(|v| v.name == c.name);
        if clash {
            return Err(err(format!(
                "Duplicate value columns found in schema: `{}` {}",
                c.name,
                crate::value::type_name(&c.sql_type)
            )));
        }
    }
    if value.is_empty() {
        return Err(err("The projection contains no value columns."));
    }
    if source.kind == SourceKind::Table {
        // Only what can be taken back out of a group aggregates a table (ksqlDB's
        // TableUdafs).
        let mut refused: Vec<&str> = Vec::new();
        for c in &calls {
            let name = match c.kind {
                AggKind::LatestByOffset => "LATEST_BY_OFFSET",
                AggKind::EarliestByOffset => "EARLIEST_BY_OFFSET",
                AggKind::Min => "MIN",
                AggKind::Max => "MAX",
                AggKind::CountDistinct => "COUNT_DISTINCT",
                AggKind::TopK => "TOPK",
                AggKind::TopKDistinct => "TOPKDISTINCT",
                _ => continue,
            };
            if !refused.contains(&name) {
                refused.push(name);
            }
        }
        if !refused.is_empty() {
            let list = match refused.len() {
                1 => refused[0].to_string(),
                n => format!("{} and {}", refused[..n - 1].join(", "), refused[n - 1]),
            };
            return Err(err(format!(
                "The aggregation function{} {list} cannot be applied to a table source, only to a stream source.",
                if refused.len() > 1 { "s" } else { "" }
            )));
        }
    }
    Ok(AggregateQuery {
        source,
        filter: query.where_clause.clone(),
        group_by: query.group_by.clone(),
        group_types,
        calls,
        key,
        value,
        having,
        sink,
        window,
    })
}

/// A row of named values.
pub struct Named<'a> {
    pub names: &'a [String],
    pub values: &'a [Value],
}

impl Row for Named<'_> {
    fn column(&self, _source: Option<&str>, name: &str) -> Option<&Value> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.values[i])
    }
}

/// What one input record did to an aggregate query.
#[derive(Debug, Clone, PartialEq)]
pub enum AggOutcome {
    Updates(Vec<AggUpdate>),
    Filtered,
    Skipped(String),
}

impl AggregateQuery {
    /// ksqlDB's `ksql.functions.collect_list.limit` / `collect_set.limit`: the most items
    /// COLLECT_LIST / COLLECT_SET keep (never more than the engine's own cap).
    pub fn limit_collections(&mut self, list: Option<usize>, set: Option<usize>) {
        for c in &mut self.calls {
            let limit = match c.kind {
                AggKind::CollectList => list,
                AggKind::CollectSet => set,
                _ => continue,
            };
            c.param = limit.map(|n| n.min(COLLECT_MAX) as i64);
        }
    }

    pub fn initial(&self) -> GroupState {
        GroupState {
            accs: self
                .calls
                .iter()
                .map(|c| match c.kind {
                    AggKind::Count | AggKind::CountStar => Acc::Count(0),
                    AggKind::Avg => Acc::Avg { sum: 0.0, count: 0 },
                    AggKind::CollectList
                    | AggKind::CollectSet
                    | AggKind::CountDistinct
                    | AggKind::TopK
                    | AggKind::TopKDistinct
                    | AggKind::LatestByOffset
                    | AggKind::EarliestByOffset => Acc::List(Vec::new()),
                    AggKind::Correlation => Acc::List(vec![Value::Double(0.0); 6]),
                    AggKind::Histogram | AggKind::Attr => Acc::Value(Value::Map(Vec::new())),
                    AggKind::Sum => Acc::Value(match c.arg_type {
                        Some(SqlType::Int) => Value::Int(0),
                        Some(SqlType::Double) => Value::Double(0.0),
                        Some(SqlType::Decimal { scale, .. }) => {
                            cast(Value::Int(0), c.arg_type.as_ref().expect("decimal")).unwrap_or(
                                Value::Decimal(crate::value::Decimal { unscaled: 0, scale }),
                            )
                        }
                        _ => Value::Bigint(0),
                    }),
                    _ => Acc::Value(Value::Null),
                })
                .collect(),
            timestamp: i64::MIN,
        }
    }

    /// The group a record belongs to, or None if it is filtered out (or its group has a
    /// NULL, which ksqlDB drops).
    pub fn process(
        &self,
        record: RecordIn<'_>,
        state: &mut dyn GroupMap,
        functions: &dyn Functions,
    ) -> AggOutcome {
        match self.try_process(record, state, functions) {
            Ok(o) => o,
            Err(why) => AggOutcome::Skipped(why),
        }
    }

    /// The group a stream record goes to, as [`AggregateQuery::group_key`] writes it; None
    /// when WHERE drops the record, a GROUP BY value is NULL or the record cannot be read
    /// (the aggregation would skip it too). What a repartitioning step places records by,
    /// so that each group's records meet in one partition.
    pub fn group_key_of(&self, record: RecordIn<'_>, functions: &dyn Functions) -> Option<Vec<u8>> {
        if self.source.kind == SourceKind::Table || record.value.is_none() {
            return None;
        }
        match self.group_and_args(record, functions) {
            Ok(Some((group, _))) => Some(Self::group_key(&group)),
            _ => None,
        }
    }

    /// The state map's key for a group.
    pub fn group_key(group: &[Value]) -> Vec<u8> {
        let mut out = String::from("[");
        for (i, v) in group.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_text(v));
        }
        out.push(']');
        out.into_bytes()
    }

    fn try_process(
        &self,
        record: RecordIn<'_>,
        state: &mut dyn GroupMap,
        functions: &dyn Functions,
    ) -> Result<AggOutcome, String> {
        if self.source.kind == SourceKind::Table {
            return self.process_table_row(record, state, functions);
        }
        if record.value.is_none() {
            return Ok(AggOutcome::Filtered);
        }
        let record = crate::pipeline::with_event_time(&self.source, record)?;
        let values = decode_values(&self.source, record)?;
        let row = SourceRow {
            source: &self.source,
            values: &values,
        };
        self.process_row(&row, record.timestamp, state, functions)
    }

    /// A row's group and arguments, None when WHERE drops it or a GROUP BY value is NULL.
    fn group_and_args(
        &self,
        record: RecordIn<'_>,
        functions: &dyn Functions,
    ) -> Result<Option<GroupAndArgs>, String> {
        let values = decode_values(&self.source, record)?;
        let row = SourceRow {
            source: &self.source,
            values: &values,
        };
        if let Some(f) = &self.filter {
            if !eval_condition(f, &row, functions) {
                return Ok(None);
            }
        }
        let group = self
            .group_by
            .iter()
            .map(|g| eval(g, &row, functions).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        if group.iter().any(Value::is_null) {
            return Ok(None);
        }
        let args = self
            .calls
            .iter()
            .map(|c| match &c.arg {
                Some(a) if c.kind != AggKind::CountStar => {
                    eval(a, &row, functions).map_err(|e| e.to_string())
                }
                _ => Ok(Value::Null),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((group, args)))
    }

    /// One change of a table source (Kafka Streams' KTable aggregation): the row it
    /// replaces leaves its group first (its aggregates taken back), then the new row
    /// joins its group; each group changed is emitted. The row is remembered under
    /// `#` + its key for the next change.
    fn process_table_row(
        &self,
        record: RecordIn<'_>,
        state: &mut dyn GroupMap,
        functions: &dyn Functions,
    ) -> Result<AggOutcome, String> {
        let record = crate::pipeline::with_event_time(&self.source, record)?;
        let mut prior_key = b"#".to_vec();
        prior_key.extend_from_slice(record.key.unwrap_or_default());
        let prior = state.remove(&prior_key);
        let old = match prior.as_ref().and_then(|p| p.accs.first()) {
            Some(Acc::Prior(bytes)) => Some(RecordIn {
                value: Some(bytes),
                timestamp: prior.as_ref().map_or(record.timestamp, |p| p.timestamp),
                ..record
            }),
            _ => None,
        };
        let mut updates = self.table_change(record, old, state, functions)?;
        if prior.is_some() {
            updates.push(AggUpdate {
                state_key: prior_key.clone(),
                state: None,
                record: None,
            });
        }
        if let Some(value) = record.value {
            let prior = GroupState {
                accs: vec![Acc::Prior(value.to_vec())],
                timestamp: record.timestamp,
            };
            let json = self.state_json(&prior);
            state.insert(prior_key.clone(), prior);
            // The deletion pushed above is superseded by this write.
            updates.retain(|u| u.state_key != prior_key);
            updates.push(AggUpdate {
                state_key: prior_key,
                state: Some(json),
                record: None,
            });
        }
        if updates.is_empty() {
            return Ok(AggOutcome::Filtered);
        }
        Ok(AggOutcome::Updates(updates))
    }

    /// A table change whose old row comes with it (`old`: the row it replaces, as its
    /// record was), not from the state: what an aggregation after a repartition gets, the
    /// repartitioning step having kept the table's rows ([`AggregateQuery::table_groups`]).
    pub fn process_table_change(
        &self,
        record: RecordIn<'_>,
        old: Option<RecordIn<'_>>,
        state: &mut dyn GroupMap,
        functions: &dyn Functions,
    ) -> AggOutcome {
        let changed = crate::pipeline::with_event_time(&self.source, record).and_then(|record| {
            let old = old
                .map(|o| crate::pipeline::with_event_time(&self.source, o))
                .transpose()?;
            self.table_change(record, old, state, functions)
        });
        match changed {
            Ok(u) if u.is_empty() => AggOutcome::Filtered,
            Ok(u) => AggOutcome::Updates(u),
            Err(why) => AggOutcome::Skipped(why),
        }
    }

    /// Where a table change goes in a repartition: the group its old row (`old`) leaves
    /// and the group its new row joins, as [`AggregateQuery::group_key`] writes them (None:
    /// no row, filtered out by WHERE, a NULL in GROUP BY, or unreadable).
    pub fn table_groups(
        &self,
        record: RecordIn<'_>,
        old: Option<RecordIn<'_>>,
        functions: &dyn Functions,
    ) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let group = |r: RecordIn<'_>| {
            r.value?;
            let r = crate::pipeline::with_event_time(&self.source, r).ok()?;
            match self.group_and_args(r, functions) {
                Ok(Some((group, _))) => Some(Self::group_key(&group)),
                _ => None,
            }
        };
        (old.and_then(group), group(record))
    }

    /// The updates of one table change: the old row (if any) taken back out of its group,
    /// the new row (if any) added to its group; a row that stays in its group changes it
    /// once.
    fn table_change(
        &self,
        record: RecordIn<'_>,
        old: Option<RecordIn<'_>>,
        state: &mut dyn GroupMap,
        functions: &dyn Functions,
    ) -> Result<Vec<AggUpdate>, String> {
        let mut updates = Vec::new();
        let new_group = match record.value {
            Some(_) => self.group_and_args(record, functions)?,
            None => None,
        };
        if let Some(old) = old {
            if let Some((group, args)) = self.group_and_args(old, functions)? {
                let gk = Self::group_key(&group);
                let mut u =
                    self.change(&gk, &group, &args, record.timestamp, true, state, functions)?;
                // A row that stays in its group changes it once (Kafka Streams
                // forwards the old and new value together).
                if new_group.as_ref().is_some_and(|(g, _)| *g == group) {
                    for x in u.iter_mut() {
                        x.record = None;
                    }
                }
                updates.extend(u);
            }
        }
        if let Some((group, args)) = new_group {
            let gk = Self::group_key(&group);
            updates.extend(self.change(
                &gk,
                &group,
                &args,
                record.timestamp,
                false,
                state,
                functions,
            )?);
        }
        Ok(updates)
    }

    /// One row already decoded (a join's result): its names and values and timestamp.
    pub fn process_row(
        &self,
        row: &dyn Row,
        timestamp: i64,
        state: &mut dyn GroupMap,
        functions: &dyn Functions,
    ) -> Result<AggOutcome, String> {
        let record = RowTime { timestamp };
        if let Some(f) = &self.filter {
            if !eval_condition(f, row, functions) {
                return Ok(AggOutcome::Filtered);
            }
        }
        let group = self
            .group_by
            .iter()
            .map(|g| eval(g, row, functions).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        if group.iter().any(Value::is_null) {
            return Ok(AggOutcome::Skipped("a GROUP BY expression is NULL".into()));
        }
        let args = self
            .calls
            .iter()
            .map(|c| match &c.arg {
                Some(a) if c.kind != AggKind::CountStar => {
                    eval(a, row, functions).map_err(|e| e.to_string())
                }
                _ => Ok(Value::Null),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut group = group;
        let mut updates = Vec::new();
        let Some(w) = self.window else {
            let gk = Self::group_key(&group);
            updates.extend(self.update(&gk, &group, &args, record.timestamp, state, functions)?);
            return Ok(AggOutcome::Updates(updates));
        };
        let previous_stream_time = state.get(STREAM_TIME_KEY).map(|s| s.timestamp);
        let stream_time =
            previous_stream_time.map_or(record.timestamp, |s| s.max(record.timestamp));
        state.insert(
            STREAM_TIME_KEY.to_vec(),
            GroupState {
                accs: Vec::new(),
                timestamp: stream_time,
            },
        );
        if w.session {
            updates.extend(self.session_update(
                &w,
                group,
                &args,
                record.timestamp,
                stream_time,
                state,
                functions,
            )?);
            self.evict_expired(&w, previous_stream_time, stream_time, state, &mut updates);
            if w.emit_final && previous_stream_time.is_none_or(|p| p < stream_time) {
                // EMIT FINAL: sessions that ended before stream time less the grace period
                // are closed now: their final rows, and their state is dropped.
                let close = stream_time - w.grace;
                let closed = keys_where(state, |k, st| !k.is_empty() && st.timestamp < close);
                for k in closed {
                    let Some(st) = state.remove(&k) else { continue };
                    let Some(g) = self.group_from_key(&k) else {
                        continue;
                    };
                    let (key, value) = self.output(&g, &st, functions)?;
                    updates.push(AggUpdate {
                        state_key: k,
                        state: None,
                        record: value.map(|v| (key, Some(v), st.timestamp)),
                    });
                }
            }
            return Ok(AggOutcome::Updates(updates));
        }
        let keys = group.len();
        for start in w.starts(record.timestamp) {
            if start + w.size <= stream_time - w.grace {
                continue; // the window closed: a late record
            }
            group.truncate(keys);
            group.push(Value::Bigint(start));
            let gk = Self::group_key(&group);
            let mut u = self.update(&gk, &group, &args, record.timestamp, state, functions)?;
            if w.emit_final {
                for x in u.iter_mut() {
                    x.record = None;
                }
            }
            updates.extend(u);
        }
        // Windows close only when stream time passes a window start's end plus grace: the
        // state is scanned for them only then (not on every record).
        let closed_before = |t: i64| (t - w.grace - w.size).div_euclid(w.advance.max(1));
        let closing =
            previous_stream_time.is_none_or(|p| closed_before(p) != closed_before(stream_time));
        if w.emit_final && closing {
            // Windows that closed now: their final rows, and their state is dropped. A
            // window that expired from the store first (it starts before the latest
            // window start, that of stream time, less the retention) is dropped unwritten,
            // as ksqlDB's windowed store no longer returns it.
            let latest_start = stream_time - stream_time.rem_euclid(w.advance.max(1));
            let expired = |start: i64| start < latest_start - w.retention;
            let closed = keys_where(state, |k, _| {
                !k.is_empty()
                    && matches!(self.group_from_key(k).as_deref().and_then(<[Value]>::last),
                        Some(Value::Bigint(start)) if start + w.size <= stream_time - w.grace)
            });
            for k in closed {
                let Some(st) = state.remove(&k) else { continue };
                let Some(g) = self.group_from_key(&k) else {
                    continue;
                };
                let record = match g.last() {
                    Some(Value::Bigint(start)) if expired(*start) => None,
                    _ => {
                        let (key, value) = self.output(&g, &st, functions)?;
                        value.map(|v| (key, Some(v), st.timestamp))
                    }
                };
                updates.push(AggUpdate {
                    state_key: k,
                    state: None,
                    record,
                });
            }
        }
        self.evict_expired(&w, previous_stream_time, stream_time, state, &mut updates);
        if updates.is_empty() {
            return Ok(AggOutcome::Filtered);
        }
        Ok(AggOutcome::Updates(updates))
    }

    /// EMIT CHANGES keeps a window only for its retention, as ksqlDB's window store does:
    /// a window starting before the latest window start less the retention (a session
    /// ending before stream time less the retention) is deleted from the state and its
    /// changelog, and pull queries no longer see it. Checked each time stream time moves
    /// on by half the retention (Kafka Streams drops whole segments, so a window may stay
    /// a little past its retention there too).
    fn evict_expired(
        &self,
        w: &TimeWindow,
        previous_stream_time: Option<i64>,
        stream_time: i64,
        state: &mut dyn GroupMap,
        updates: &mut Vec<AggUpdate>,
    ) {
        let bucket = (w.retention / 2).max(1);
        let due = previous_stream_time
            .is_some_and(|p| p.div_euclid(bucket) != stream_time.div_euclid(bucket));
        if w.emit_final || !due {
            return;
        }
        let latest_start = stream_time - stream_time.rem_euclid(w.advance.max(1));
        let expired = keys_where(state, |k, st| {
            !k.is_empty()
                && if w.session {
                    st.timestamp < stream_time - w.retention
                } else {
                    matches!(self.group_from_key(k).as_deref().and_then(<[Value]>::last),
                        Some(Value::Bigint(start)) if *start < latest_start - w.retention)
                }
        });
        for k in expired {
            state.remove(&k);
            updates.push(AggUpdate {
                state_key: k,
                state: None,
                record: None,
            });
        }
    }

    /// A record into its key's sessions (Kafka Streams' session windows): every session
    /// within the gap of its timestamp merges with it into one; the merged-away sessions
    /// are deleted downstream, the new one written. A session whose end is before stream
    /// time less the grace period is closed: a record that would extend only such a
    /// session is dropped.
    #[allow(clippy::too_many_arguments)]
    fn session_update(
        &self,
        w: &TimeWindow,
        group: Vec<Value>,
        args: &[Value],
        ts: i64,
        stream_time: i64,
        state: &mut dyn GroupMap,
        functions: &dyn Functions,
    ) -> Result<Vec<AggUpdate>, String> {
        let gap = w.size;
        let mut prefix = Self::group_key(&group);
        prefix.pop(); // `]`
        prefix.push(b',');
        let mut merged: Vec<(Vec<u8>, i64, GroupState)> = Vec::new();
        for (k, st) in state.with_prefix(&prefix) {
            let Some(Value::Bigint(start)) =
                self.group_from_key(&k).and_then(|g| g.last().cloned())
            else {
                continue;
            };
            if st.timestamp >= ts - gap && start <= ts + gap {
                merged.push((k, start, st));
            }
        }
        let start = merged.iter().map(|m| m.1).fold(ts, i64::min);
        let end = merged.iter().map(|m| m.2.timestamp).fold(ts, i64::max);
        if end < stream_time - w.grace {
            return Ok(Vec::new()); // the session closed: a late record
        }
        let mut updates = Vec::new();
        let mut acc = self.initial();
        merged.sort_by_key(|m| m.1);
        let mut with_window = group.clone();
        for (k, s, st) in &merged {
            for ((into, from), call) in acc.accs.iter_mut().zip(&st.accs).zip(&self.calls) {
                merge_into(into, from, call)?;
            }
            state.remove(k);
            with_window.truncate(group.len());
            with_window.push(Value::Bigint(*s));
            let (key, _) = self.output(&with_window, st, functions)?;
            updates.push(AggUpdate {
                state_key: k.clone(),
                state: None,
                record: (!w.emit_final).then_some((key, None, st.timestamp)),
            });
        }
        for ((a, call), arg) in acc.accs.iter_mut().zip(&self.calls).zip(args) {
            accumulate(a, call, arg.clone())?;
        }
        acc.timestamp = end;
        with_window.truncate(group.len());
        with_window.push(Value::Bigint(start));
        let gk = Self::group_key(&with_window);
        let (key, value) = self.output(&with_window, &acc, functions)?;
        let json = self.state_json(&acc);
        state.insert(gk.clone(), acc);
        // (A merged-away session with the same start is deleted first in the changelog,
        // then written again: the order keeps the state right.)
        updates.push(AggUpdate {
            state_key: gk,
            state: Some(json),
            record: (!w.emit_final).then_some((key, value, end)),
        });
        Ok(updates)
    }

    /// Adds a record's arguments to one group (or window): its new state and record.
    fn update(
        &self,
        gk: &[u8],
        group: &[Value],
        args: &[Value],
        timestamp: i64,
        state: &mut dyn GroupMap,
        functions: &dyn Functions,
    ) -> Result<Option<AggUpdate>, String> {
        self.change(gk, group, args, timestamp, false, state, functions)
    }

    /// Adds (or, `retract`, takes back) a row's arguments in one group.
    #[allow(clippy::too_many_arguments)]
    fn change(
        &self,
        gk: &[u8],
        group: &[Value],
        args: &[Value],
        timestamp: i64,
        retract: bool,
        state: &mut dyn GroupMap,
        functions: &dyn Functions,
    ) -> Result<Option<AggUpdate>, String> {
        // Whether the group's row is in the output now: a row HAVING rejects becomes a
        // tombstone only if it was there (KTable filter semantics).
        let old = state.get(gk);
        let was_out = match &old {
            None => false,
            Some(old) => self.passes_having(group, old, functions),
        };
        let mut st = old.unwrap_or_else(|| self.initial());
        for ((acc, call), arg) in st.accs.iter_mut().zip(&self.calls).zip(args) {
            if retract {
                take_back(acc, call, arg)?;
            } else {
                accumulate(acc, call, arg.clone())?;
            }
        }
        st.timestamp = st.timestamp.max(timestamp);
        let (key, value) = self.output(group, &st, functions)?;
        let out_timestamp = st.timestamp;
        let json = self.state_json(&st);
        state.insert(gk.to_vec(), st);
        let record = if value.is_none() && !was_out {
            None
        } else {
            Some((key, value, out_timestamp))
        };
        Ok(Some(AggUpdate {
            state_key: gk.to_vec(),
            state: Some(json),
            record,
        }))
    }

    /// The aggregated row of a group (with its window start last, when windowed): names
    /// and values.
    fn agg_row(&self, group: &[Value], st: &GroupState) -> (Vec<String>, Vec<Value>) {
        let keys = self.group_by.len();
        let mut names: Vec<String> = (0..keys).map(group_name).collect();
        names.extend((0..self.calls.len()).map(agg_name));
        let mut values: Vec<Value> = group[..keys.min(group.len())].to_vec();
        for (acc, call) in st.accs.iter().zip(&self.calls) {
            values.push(result(acc, call));
        }
        if let (Some(w), Some(Value::Bigint(start))) = (&self.window, group.get(keys)) {
            names.push("WINDOWSTART".into());
            names.push("WINDOWEND".into());
            values.push(Value::Bigint(*start));
            values.push(Value::Bigint(if w.session {
                st.timestamp
            } else {
                start + w.size
            }));
        }
        (names, values)
    }

    fn passes_having(&self, group: &[Value], st: &GroupState, functions: &dyn Functions) -> bool {
        let Some(h) = &self.having else {
            return true;
        };
        let (names, values) = self.agg_row(group, st);
        let row = Named {
            names: &names,
            values: &values,
        };
        eval_condition(h, &row, functions)
    }

    /// A group's row as the materialized table holds it: key columns then value columns
    /// (the sink's columns), or None when HAVING rejects it.
    pub fn row_values(
        &self,
        group: &[Value],
        st: &GroupState,
        functions: &dyn Functions,
    ) -> Result<Option<Vec<Value>>, String> {
        if !self.passes_having(group, st, functions) {
            return Ok(None);
        }
        let (names, values) = self.agg_row(group, st);
        let row = Named {
            names: &names,
            values: &values,
        };
        Ok(Some(
            self.key
                .iter()
                .chain(&self.value)
                .map(|c| eval_column(&c.expr, &c.sql_type, &row, functions))
                .collect(),
        ))
    }

    /// The groups' key values from a state map key.
    pub fn group_from_key(&self, key: &[u8]) -> Option<Vec<Value>> {
        let j: serde_json::Value = serde_json::from_slice(key).ok()?;
        let items = j.as_array()?;
        let windowed = usize::from(self.window.is_some());
        if items.len() != self.group_by.len() + windowed {
            return None;
        }
        items
            .iter()
            .zip(self.group_types.iter().chain([SqlType::Bigint].iter()))
            .map(|(v, t)| from_json(v, t).ok())
            .collect()
    }

    /// The output record of a group: key bytes and value bytes (None: a tombstone, when
    /// HAVING rejects the row).
    #[allow(clippy::type_complexity)]
    pub fn output(
        &self,
        group: &[Value],
        st: &GroupState,
        functions: &dyn Functions,
    ) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), String> {
        let (names, values) = self.agg_row(group, st);
        let row = Named {
            names: &names,
            values: &values,
        };
        let compute = |cols: &[OutputColumn]| -> Vec<Value> {
            cols.iter()
                .map(|c| eval_column(&c.expr, &c.sql_type, &row, functions))
                .collect()
        };
        let key_values = compute(&self.key);
        let key = serialize(
            &self.sink.key_format,
            &OutputColumn::name_types(&self.key),
            &key_values,
            false,
        )
        .map_err(|e| format!("Error serializing key: {e}"))?;
        // A windowed key: the key's bytes then the window start, 8 bytes big-endian
        // (Kafka Streams' TimeWindowedSerializer, as ksqlDB writes it).
        // A session's key: the key's bytes, the session's end, then its start (Kafka
        // Streams' SessionKeySchema).
        let key = match (&self.window, group.get(self.group_by.len())) {
            (Some(w), Some(Value::Bigint(start))) if w.session => {
                let mut k = key.unwrap_or_default();
                k.extend_from_slice(&st.timestamp.to_be_bytes());
                k.extend_from_slice(&start.to_be_bytes());
                Some(k)
            }
            (Some(_), Some(Value::Bigint(start))) => {
                let mut k = key.unwrap_or_default();
                k.extend_from_slice(&start.to_be_bytes());
                Some(k)
            }
            _ => key,
        };
        if let Some(h) = &self.having {
            if !matches!(
                eval(h, &row, functions).map_err(|e| e.to_string())?,
                Value::Boolean(true)
            ) {
                return Ok((key, None));
            }
        }
        let value_values = compute(&self.value);
        let cols = OutputColumn::name_types(&self.value);
        let value = serialize(
            &self.sink.value_format,
            &cols,
            &value_values,
            self.sink.wrap_single_value || cols.len() != 1,
        )
        .map_err(|e| format!("Error serializing value: {e}"))?;
        Ok((key, value))
    }

    /// A group's state as JSON text (the changelog's record value).
    pub fn state_json(&self, st: &GroupState) -> String {
        let accs: Vec<String> = st
            .accs
            .iter()
            .map(|a| match a {
                Acc::Count(n) => format!("{{\"n\":{n}}}"),
                Acc::Value(Value::Map(entries))
                    if matches!(v_kind(&st.accs, a, &self.calls), Some(AggKind::Attr)) =>
                {
                    format!(
                        "{{\"v\":[{}]}}",
                        entries
                            .iter()
                            .map(|(k, n)| format!("[{},{}]", json_text(k), json_text(n)))
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                }
                Acc::Value(v) => format!("{{\"v\":{}}}", json_text(v)),
                Acc::Avg { sum, count } => {
                    format!(
                        "{{\"s\":{},\"c\":{count}}}",
                        json_text(&Value::Double(*sum))
                    )
                }
                Acc::List(items) => format!(
                    "{{\"l\":[{}]}}",
                    items.iter().map(json_text).collect::<Vec<_>>().join(",")
                ),
                Acc::Prior(bytes) => {
                    format!("{{\"p\":\"{}\"}}", crate::format::base64_encode(bytes))
                }
            })
            .collect();
        format!("{{\"t\":{},\"a\":[{}]}}", st.timestamp, accs.join(","))
    }

    /// A group's state back from [`AggregateQuery::state_json`].
    pub fn state_from_json(&self, text: &[u8]) -> Option<GroupState> {
        let j: serde_json::Value = serde_json::from_slice(text).ok()?;
        let accs = j["a"].as_array()?;
        if let Some(p) = accs
            .first()
            .and_then(|a| a.get("p"))
            .and_then(|p| p.as_str())
        {
            return Some(GroupState {
                accs: vec![Acc::Prior(crate::format::base64_decode(p)?)],
                timestamp: j["t"].as_i64()?,
            });
        }
        if accs.len() != self.calls.len() {
            return None;
        }
        let mut out = Vec::new();
        for (a, c) in accs.iter().zip(&self.calls) {
            let item_type = c.arg_type.clone().unwrap_or(SqlType::String);
            out.push(if let Some(n) = a.get("n") {
                Acc::Count(n.as_i64()?)
            } else if let Some(v) = a.get("v") {
                let t = match c.kind {
                    AggKind::Histogram => c.out_type.clone(),
                    AggKind::Attr => {
                        SqlType::Map(Box::new(item_type.clone()), Box::new(SqlType::Bigint))
                    }
                    _ => item_type.clone(),
                };
                if c.kind == AggKind::Attr {
                    // A map with non-string keys is written as entries.
                    let entries = v.as_array()?;
                    Acc::Value(Value::Map(
                        entries
                            .iter()
                            .map(|e| {
                                Some((
                                    from_json(&e[0], &item_type).ok()?,
                                    Value::Bigint(e[1].as_i64()?),
                                ))
                            })
                            .collect::<Option<Vec<_>>>()?,
                    ))
                } else {
                    let _ = &t;
                    Acc::Value(from_json(v, &t).ok()?)
                }
            } else if let Some(s) = a.get("s") {
                Acc::Avg {
                    sum: s.as_f64()?,
                    count: a["c"].as_i64()?,
                }
            } else {
                Acc::List(
                    a["l"]
                        .as_array()?
                        .iter()
                        .map(|v| from_json(v, &item_type).ok())
                        .collect::<Option<Vec<_>>>()?,
                )
            });
        }
        Some(GroupState {
            accs: out,
            timestamp: j["t"].as_i64()?,
        })
    }
}

/// The kind of the call whose accumulator `acc` is (by position in `accs`).
fn v_kind(accs: &[Acc], acc: &Acc, calls: &[AggCall]) -> Option<AggKind> {
    let i = accs.iter().position(|a| std::ptr::eq(a, acc))?;
    calls.get(i).map(|c| c.kind)
}

fn as_f64(v: &Value) -> Option<f64> {
    Some(match v {
        Value::Int(i) => *i as f64,
        Value::Bigint(i) => *i as f64,
        Value::Double(d) => *d,
        Value::Decimal(d) => d.to_f64(),
        _ => return None,
    })
}

/// Folds another session's accumulator into `into` (Kafka Streams' session merger).
fn merge_into(into: &mut Acc, from: &Acc, call: &AggCall) -> Result<(), String> {
    match (into, from) {
        (Acc::Count(a), Acc::Count(b)) => *a += b,
        (Acc::Avg { sum, count }, Acc::Avg { sum: s2, count: c2 }) => {
            *sum += s2;
            *count += c2;
        }
        (Acc::Value(Value::Map(a)), Acc::Value(Value::Map(b))) => {
            for (k, n) in b {
                match a.iter().position(|(x, _)| x == k) {
                    Some(i) => {
                        if let (Value::Bigint(x), Value::Bigint(y)) = (&mut a[i].1, n) {
                            *x += y;
                        }
                    }
                    None => a.push((k.clone(), n.clone())),
                }
            }
        }
        (Acc::Value(a), Acc::Value(b)) => match call.kind {
            AggKind::Sum => {
                if !b.is_null() {
                    let sum =
                        binary(BinaryOp::Add, a.clone(), b.clone()).map_err(|e| e.to_string())?;
                    *a = match &call.arg_type {
                        Some(t) => cast(sum, t).map_err(|e| e.to_string())?,
                        None => sum,
                    };
                }
            }
            AggKind::EarliestByOffset => {
                if a.is_null() {
                    *a = b.clone();
                }
            }
            // MIN, MAX, LATEST_BY_OFFSET: the other session's value as one more input.
            _ => {
                let mut x = Acc::Value(a.clone());
                accumulate(&mut x, call, b.clone())?;
                if let Acc::Value(v) = x {
                    *a = v;
                }
            }
        },
        (Acc::List(a), Acc::List(b)) => {
            for v in b {
                let mut x = Acc::List(std::mem::take(a));
                accumulate(&mut x, call, v.clone())?;
                if let Acc::List(items) = x {
                    *a = items;
                }
            }
        }
        _ => return Err("session accumulators do not match".into()),
    }
    Ok(())
}

/// Takes a row's argument back out of an accumulator (a table row that changed or went).
fn take_back(acc: &mut Acc, call: &AggCall, arg: &Value) -> Result<(), String> {
    match (acc, call.kind) {
        (Acc::Count(n), AggKind::CountStar) => *n -= 1,
        (Acc::Count(n), AggKind::Count) => {
            if !arg.is_null() {
                *n -= 1
            }
        }
        (Acc::Value(v), AggKind::Sum) => {
            if !arg.is_null() {
                let rest = binary(BinaryOp::Subtract, v.clone(), arg.clone())
                    .map_err(|e| e.to_string())?;
                *v = match &call.arg_type {
                    Some(t) => cast(rest, t).map_err(|e| e.to_string())?,
                    None => rest,
                };
            }
        }
        (Acc::Avg { sum, count }, AggKind::Avg) => {
            if let Some(x) = as_f64(arg) {
                *sum -= x;
                *count -= 1;
            }
        }
        (Acc::List(items), AggKind::CollectList | AggKind::CollectSet) => {
            if let Some(i) = items.iter().position(|x| x == arg) {
                items.remove(i);
            }
        }
        (Acc::List(sums), AggKind::Correlation) => correlation_step(sums, arg, -1.0),
        (Acc::Value(Value::Map(entries)), AggKind::Histogram | AggKind::Attr) => {
            let key = match call.kind {
                AggKind::Histogram if arg.is_null() => return Ok(()),
                AggKind::Histogram => Value::String(crate::eval::to_string(arg)),
                _ => arg.clone(),
            };
            if let Some(i) = entries.iter().position(|(k, _)| *k == key) {
                if let Value::Bigint(n) = &mut entries[i].1 {
                    *n -= 1;
                    if *n <= 0 {
                        entries.remove(i);
                    }
                }
            }
        }
        _ => return Err("this aggregate cannot take a row back".into()),
    }
    Ok(())
}

fn accumulate(acc: &mut Acc, call: &AggCall, arg: Value) -> Result<(), String> {
    match (acc, call.kind) {
        (Acc::Count(n), AggKind::CountStar) => *n += 1,
        (Acc::Count(n), AggKind::Count) => {
            if !arg.is_null() {
                *n += 1
            }
        }
        (Acc::Value(v), AggKind::Sum) => {
            if !arg.is_null() {
                let sum = binary(BinaryOp::Add, v.clone(), arg).map_err(|e| e.to_string())?;
                *v = match &call.arg_type {
                    Some(t) => cast(sum, t).map_err(|e| e.to_string())?,
                    None => sum,
                };
            }
        }
        (Acc::Value(v), AggKind::Min | AggKind::Max) => {
            if !arg.is_null() {
                let replace = v.is_null()
                    || match compare(&arg, v).map_err(|e| e.to_string())? {
                        Some(std::cmp::Ordering::Less) => call.kind == AggKind::Min,
                        Some(std::cmp::Ordering::Greater) => call.kind == AggKind::Max,
                        _ => false,
                    };
                if replace {
                    *v = arg;
                }
            }
        }
        (Acc::List(items), AggKind::LatestByOffset) => {
            if !(arg.is_null() && call.ignore_nulls) {
                items.push(arg);
                let keep = call.param.unwrap_or(1).clamp(1, COLLECT_MAX as i64) as usize;
                if items.len() > keep {
                    items.drain(..items.len() - keep);
                }
            }
        }
        (Acc::List(items), AggKind::EarliestByOffset) => {
            let keep = call.param.unwrap_or(1).clamp(1, COLLECT_MAX as i64) as usize;
            if !(arg.is_null() && call.ignore_nulls) && items.len() < keep {
                items.push(arg);
            }
        }
        (Acc::Value(v), AggKind::LatestByOffset) => {
            if !arg.is_null() {
                *v = arg
            }
        }
        (Acc::Value(v), AggKind::EarliestByOffset) => {
            if v.is_null() && !arg.is_null() {
                *v = arg
            }
        }
        (Acc::Avg { sum, count }, AggKind::Avg) => {
            if let Some(x) = as_f64(&arg) {
                *sum += x;
                *count += 1;
            }
        }
        (Acc::List(sums), AggKind::Correlation) => correlation_step(sums, &arg, 1.0),
        (Acc::List(items), AggKind::CollectList) => {
            // ksqlDB's COLLECT_LIST keeps NULLs.
            if items.len() < collect_limit(call) {
                items.push(arg)
            }
        }
        // ksqlDB's COLLECT_SET keeps one NULL; COUNT_DISTINCT does not count it. Maps are
        // the same whatever their entries' order.
        (Acc::List(items), AggKind::CollectSet | AggKind::CountDistinct) => {
            let counted = !(arg.is_null() && call.kind == AggKind::CountDistinct);
            if counted
                && !items.iter().any(|x| same_value(x, &arg))
                && items.len() < collect_limit(call)
            {
                items.push(arg)
            }
        }
        (Acc::List(items), AggKind::TopK | AggKind::TopKDistinct) => {
            // A struct (TOPK with other columns) ranks by its sort column; a NULL one is
            // not ranked. Equal ranks keep their arrival order.
            let rank = |v: &Value| -> Value {
                match v {
                    Value::Struct(fields) => fields.first().map_or(Value::Null, |f| f.1.clone()),
                    other => other.clone(),
                }
            };
            if !rank(&arg).is_null() && (call.kind == AggKind::TopK || !items.contains(&arg)) {
                items.push(arg);
                items.sort_by(|a, b| {
                    compare(&rank(b), &rank(a))
                        .ok()
                        .flatten()
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
                items.truncate(call.param.unwrap_or(1).clamp(1, COLLECT_MAX as i64) as usize);
            }
        }
        (Acc::Value(Value::Map(entries)), AggKind::Histogram | AggKind::Attr) => {
            let key = match call.kind {
                AggKind::Histogram if arg.is_null() => return Ok(()),
                AggKind::Histogram => Value::String(crate::eval::to_string(&arg)),
                _ => arg,
            };
            match entries.iter().position(|(k, _)| *k == key) {
                Some(i) => {
                    if let Value::Bigint(n) = &mut entries[i].1 {
                        *n += 1;
                    }
                }
                None if entries.len() < COLLECT_MAX => entries.push((key, Value::Bigint(1))),
                None => {}
            }
        }
        _ => return Err("accumulator does not match its function".into()),
    }
    Ok(())
}

/// ksqlDB's default `ksql.functions.collect_list.limit` / `collect_set.limit`.
const COLLECT_MAX: usize = 1000;

fn result(acc: &Acc, call: &AggCall) -> Value {
    match acc {
        // ATTR: the one value all rows had, else NULL.
        Acc::Value(Value::Map(entries)) if call.kind == AggKind::Attr => match entries.as_slice() {
            [(v, _)] => v.clone(),
            _ => Value::Null,
        },
        Acc::Count(n) => Value::Bigint(*n),
        Acc::Value(v) => v.clone(),
        Acc::Avg { sum, count } => {
            if *count == 0 {
                Value::Double(0.0)
            } else {
                Value::Double(sum / *count as f64)
            }
        }
        Acc::List(items)
            if matches!(
                call.kind,
                AggKind::LatestByOffset | AggKind::EarliestByOffset
            ) =>
        {
            match call.param {
                Some(_) => Value::Array(items.clone()),
                None => items.first().cloned().unwrap_or(Value::Null),
            }
        }
        Acc::List(sums) if call.kind == AggKind::Correlation => {
            let f = |i: usize| match sums.get(i) {
                Some(Value::Double(d)) => *d,
                _ => 0.0,
            };
            let (n, sx, sy, sxx, syy, sxy) = (f(0), f(1), f(2), f(3), f(4), f(5));
            Value::Double((n * sxy - sx * sy) / ((n * sxx - sx * sx) * (n * syy - sy * sy)).sqrt())
        }
        Acc::List(items) if call.kind == AggKind::CountDistinct => {
            Value::Bigint(items.len() as i64)
        }
        Acc::List(items) => Value::Array(items.clone()),
        Acc::Prior(_) => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Statement;
    use crate::catalog::Topics;
    use crate::eval::NoFunctions;
    use crate::format::Format;
    use crate::parse_statement;

    struct All;
    impl Topics for All {
        fn partitions(&self, _: &str) -> Option<i32> {
            Some(1)
        }
    }

    fn plan(create: &str, ctas: &str) -> Result<AggregateQuery, AnalysisError> {
        let mut c = Catalog::default();
        c.create_source(&parse_statement(create).unwrap(), &All)
            .unwrap();
        let Statement::CreateAsSelect { query, .. } = parse_statement(ctas).unwrap() else {
            panic!()
        };
        plan_aggregate(
            &query,
            &c,
            "OUTPUT",
            Sink {
                key_format: Format::Kafka,
                value_format: Format::Json,
                wrap_single_value: true,
                timestamp_column: None,
            },
        )
    }

    fn record(key: &[u8], value: &'static [u8], ts: i64) -> (Vec<u8>, &'static [u8], i64) {
        (key.to_vec(), value, ts)
    }

    #[test]
    fn counts_sums_and_averages_per_key_and_having_emits_tombstones() {
        let q = plan(
            "CREATE STREAM S (ID INT KEY, V INT, NAME STRING) WITH (kafka_topic='s', value_format='JSON');",
            "CREATE TABLE OUTPUT AS SELECT ID, COUNT(*) AS C, SUM(V) AS S, AVG(V) AS A, COLLECT_LIST(NAME) AS L FROM S GROUP BY ID HAVING SUM(V) < 10;",
        )
        .unwrap();
        let mut state = BTreeMap::new();
        let inputs = [
            record(&1i32.to_be_bytes(), br#"{"v":2,"name":"a"}"#, 5),
            record(&1i32.to_be_bytes(), br#"{"v":null,"name":"b"}"#, 3),
            record(&2i32.to_be_bytes(), br#"{"v":4,"name":"c"}"#, 7),
            record(&1i32.to_be_bytes(), br#"{"v":9,"name":"d"}"#, 1),
        ];
        let mut outs = Vec::new();
        for (i, (k, v, ts)) in inputs.iter().enumerate() {
            let o = q.process(
                RecordIn {
                    key: Some(k),
                    value: Some(v),
                    timestamp: *ts,
                    partition: 0,
                    offset: i as i64,
                },
                &mut state,
                &NoFunctions,
            );
            let AggOutcome::Updates(mut u) = o else {
                panic!("{o:?}")
            };
            let (key, value, timestamp) = u.remove(0).record.unwrap();
            outs.push((
                key.unwrap(),
                value.map(|v| String::from_utf8(v).unwrap()),
                timestamp,
            ));
        }
        assert_eq!(
            outs[0].1.as_deref(),
            Some(r#"{"C":1,"S":2,"A":2.0,"L":["a"]}"#)
        );
        assert_eq!(
            outs[1].1.as_deref(),
            Some(r#"{"C":2,"S":2,"A":2.0,"L":["a","b"]}"#)
        );
        assert_eq!(outs[1].2, 5, "the group's largest timestamp");
        assert_eq!(outs[2].0, 2i32.to_be_bytes().to_vec());
        assert_eq!(outs[3].1, None, "SUM 11 fails HAVING: a tombstone");
        // The state survives its changelog form.
        for st in state.values() {
            assert_eq!(
                q.state_from_json(q.state_json(st).as_bytes()).as_ref(),
                Some(st)
            );
        }
    }

    /// The final rows an EMIT FINAL query writes for records of one key "k" at `times`:
    /// (window start, window end, COUNT) per row.
    fn final_rows(q: &AggregateQuery, times: &[(&str, i64)]) -> Vec<(String, i64, i64, i64)> {
        let mut state = BTreeMap::new();
        let mut rows = Vec::new();
        for (i, (key, ts)) in times.iter().enumerate() {
            let o = q.process(
                RecordIn {
                    key: Some(key.as_bytes()),
                    value: Some(br#"{"v":1}"#),
                    timestamp: *ts,
                    partition: 0,
                    offset: i as i64,
                },
                &mut state,
                &NoFunctions,
            );
            let AggOutcome::Updates(u) = o else { continue };
            for (k, v, ts) in u.into_iter().filter_map(|u| u.record) {
                let k = k.unwrap();
                let v: serde_json::Value = serde_json::from_slice(&v.unwrap()).unwrap();
                let count = v["C"].as_i64().unwrap();
                let be = |at: usize| i64::from_be_bytes(k[at..at + 8].try_into().unwrap());
                let (name, start, end) = if q.window.is_some_and(|w| w.session) {
                    let n = k.len() - 16;
                    (
                        String::from_utf8(k[..n].to_vec()).unwrap(),
                        be(n + 8),
                        be(n),
                    )
                } else {
                    let n = k.len() - 8;
                    (String::from_utf8(k[..n].to_vec()).unwrap(), be(n), ts)
                };
                rows.push((name, start, end, count));
            }
        }
        rows
    }

    #[test]
    fn emit_final_writes_each_closed_window_once_unless_the_store_expired_it() {
        // ksqlDB's suppress.json cases: the window store keeps size + grace behind the
        // latest window start, so [0, 2) is gone when stream time 5 closes it and [2, 4).
        let q = plan(
            "CREATE STREAM S (ID STRING KEY, V INT) WITH (kafka_topic='s', value_format='JSON');",
            "CREATE TABLE OUTPUT AS SELECT ID, COUNT(*) AS C FROM S WINDOW TUMBLING (SIZE 2 MILLISECONDS, GRACE PERIOD 1 MILLISECONDS) GROUP BY ID EMIT FINAL;",
        )
        .unwrap();
        let rows = final_rows(
            &q,
            &[
                ("k1", 0),
                ("k2", 1),
                ("k1", 2),
                ("k1", 1),
                ("k2", 0),
                ("k1", 5),
                ("k1", 0),
                ("k2", 2),
            ],
        );
        assert_eq!(
            rows,
            vec![("k1".to_string(), 2, 2, 1)],
            "window start, row timestamp"
        );
        // Hopping: [0, 5) closes at stream time 6 while still stored; [2, 7) has expired
        // by stream time 10, [4, 9) has not.
        let q = plan(
            "CREATE STREAM S (ID STRING KEY, V INT) WITH (kafka_topic='s', value_format='JSON');",
            "CREATE TABLE OUTPUT AS SELECT ID, COUNT(*) AS C FROM S WINDOW HOPPING (SIZE 5 MILLISECONDS, ADVANCE BY 2 MILLISECONDS, GRACE PERIOD 1 MILLISECONDS) GROUP BY ID EMIT FINAL;",
        )
        .unwrap();
        let rows = final_rows(
            &q,
            &[
                ("k", 0),
                ("k", 1),
                ("k", 2),
                ("k", 1),
                ("k", 6),
                ("k", 5),
                ("k", 10),
            ],
        );
        let windows: Vec<(i64, i64)> = rows.iter().map(|r| (r.1, r.3)).collect();
        assert_eq!(windows, vec![(0, 4), (4, 2)]);
    }

    #[test]
    fn emit_changes_forgets_windows_past_their_retention() {
        let q = plan(
            "CREATE STREAM S (ID STRING KEY, V INT) WITH (kafka_topic='s', value_format='JSON');",
            "CREATE TABLE OUTPUT AS SELECT ID, COUNT(*) AS C FROM S WINDOW TUMBLING (SIZE 10 MILLISECONDS, RETENTION 30 MILLISECONDS, GRACE PERIOD 0 MILLISECONDS) GROUP BY ID;",
        )
        .unwrap();
        let mut state = BTreeMap::new();
        let mut deleted = Vec::new();
        for (i, ts) in [0, 10, 20, 30, 45].into_iter().enumerate() {
            let o = q.process(
                RecordIn {
                    key: Some(b"k"),
                    value: Some(br#"{"v":1}"#),
                    timestamp: ts,
                    partition: 0,
                    offset: i as i64,
                },
                &mut state,
                &NoFunctions,
            );
            let AggOutcome::Updates(u) = o else {
                panic!("{o:?}")
            };
            for x in u {
                if x.state.is_none() {
                    assert!(x.record.is_none(), "an expired window writes no row");
                    deleted.push(q.group_from_key(&x.state_key).unwrap());
                }
            }
        }
        let start = |g: &Vec<Value>| g.last().cloned();
        // Latest window start 40, retention 30: [0, 10) is forgotten (its changelog entry
        // deleted), [10, 20) onwards kept.
        assert_eq!(
            deleted.iter().map(start).collect::<Vec<_>>(),
            vec![Some(Value::Bigint(0))]
        );
        let kept: Vec<Option<Value>> = state
            .keys()
            .filter(|k| !k.is_empty())
            .map(|k| start(&q.group_from_key(k).unwrap()))
            .collect();
        assert_eq!(
            kept,
            [10, 20, 30, 40].map(|s| Some(Value::Bigint(s))).to_vec()
        );
    }

    #[test]
    fn emit_final_writes_a_session_once_it_ends_before_stream_time_less_grace() {
        let q = plan(
            "CREATE STREAM S (ID STRING KEY, V INT) WITH (kafka_topic='s', value_format='JSON');",
            "CREATE TABLE OUTPUT AS SELECT ID, COUNT(*) AS C FROM S WINDOW SESSION (5 MILLISECONDS, GRACE PERIOD 6 MILLISECONDS) GROUP BY ID EMIT FINAL;",
        )
        .unwrap();
        let times: Vec<(&str, i64)> = [0, 4, 8, 12, 14, 30, 29, 17, 42]
            .iter()
            .map(|t| ("k1", *t))
            .collect();
        assert_eq!(
            final_rows(&q, &times),
            vec![("k1".to_string(), 0, 14, 5), ("k1".to_string(), 29, 30, 2)],
            "the record at 17 comes after its session closed: dropped"
        );
    }

    #[test]
    fn hopping_windows_key_by_window_start_and_drop_late_records() {
        let q = plan(
            "CREATE STREAM S (ID INT KEY, V INT) WITH (kafka_topic='s', value_format='JSON');",
            "CREATE TABLE OUTPUT AS SELECT ID, WINDOWSTART AS WS, COUNT(*) AS C FROM S WINDOW HOPPING (SIZE 10 MILLISECONDS, ADVANCE BY 5 MILLISECONDS, GRACE PERIOD 0 MILLISECONDS) GROUP BY ID;",
        )
        .unwrap();
        let mut state = BTreeMap::new();
        let mut run = |ts: i64| {
            let o = q.process(
                RecordIn {
                    key: Some(&7i32.to_be_bytes()),
                    value: Some(br#"{"v":1}"#),
                    timestamp: ts,
                    partition: 0,
                    offset: 0,
                },
                &mut state,
                &NoFunctions,
            );
            match o {
                AggOutcome::Updates(u) => u
                    .into_iter()
                    .filter_map(|u| u.record)
                    .map(|(k, v, _)| (k.unwrap(), String::from_utf8(v.unwrap()).unwrap()))
                    .collect::<Vec<_>>(),
                other => panic!("{other:?}"),
            }
        };
        let key = |start: i64| [7i32.to_be_bytes().to_vec(), start.to_be_bytes().to_vec()].concat();
        assert_eq!(
            run(12),
            vec![
                (key(5), r#"{"WS":5,"C":1}"#.to_string()),
                (key(10), r#"{"WS":10,"C":1}"#.to_string())
            ]
        );
        assert_eq!(run(14)[1], (key(10), r#"{"WS":10,"C":2}"#.to_string()));
        // Stream time 19 closes [5, 15) (grace 0): a record at 14 only updates [10, 20).
        run(19);
        assert_eq!(run(14), vec![(key(10), r#"{"WS":10,"C":4}"#.to_string())]);
    }

    #[test]
    fn ksqldbs_errors_for_malformed_aggregations() {
        let create = "CREATE STREAM S (ID INT KEY, V INT, D STRING) WITH (kafka_topic='s', value_format='JSON');";
        let e = plan(
            create,
            "CREATE TABLE OUTPUT AS SELECT ID, D, COUNT(*) FROM S GROUP BY ID;",
        )
        .err()
        .unwrap();
        assert_eq!(
            e.0,
            "Non-aggregate SELECT expression(s) not part of GROUP BY: D\nEither add the column(s) to the GROUP BY or remove them from the SELECT."
        );
        for (query, wanted) in [
            ("SELECT ID, SUM(COUNT(*)) AS X FROM S GROUP BY ID", "Aggregate functions can not be nested: SUM(COUNT())"),
            ("SELECT ID, D, V FROM S GROUP BY ID, D, V", "GROUP BY requires aggregate functions in either the SELECT or HAVING clause."),
            ("SELECT D, COUNT(*) AS N FROM S GROUP BY D, D", "Duplicate GROUP BY expression: S.D"),
            ("SELECT D, COUNT(*) AS N FROM S GROUP BY D, S.D", "Duplicate GROUP BY expression: S.D"),
            ("SELECT ID, SUM(V) AS T FROM S GROUP BY ID HAVING SUM(V) > '100'", "Error in HAVING expression: Cannot compare SUM(V) (INTEGER) to '100' (STRING) with GREATER_THAN."),
            ("SELECT ID, LATEST_BY_OFFSET(V, V) AS L FROM S GROUP BY ID", "Parameter 2 passed to function LATEST_BY_OFFSET must be a literal constant, but was expression: 'V'"),
            ("SELECT COUNT(*) AS N FROM S", "CREATE TABLE AS SELECT statement does not support aggregate function [COUNT(ROWTIME)] without a GROUP BY clause."),
            ("SELECT D, COUNT(*) AS N FROM S", "Non-aggregate SELECT expression(s) not part of GROUP BY: D"),
            ("SELECT D AS A, D AS B, COUNT(*) AS N FROM S GROUP BY D", "The projection contains a key column more than once: `A` and `B`."),
            ("SELECT COUNT(*) AS N FROM S GROUP BY ID, D", "must include the grouping expressions ID and D in its projection (eg, SELECT ID, D...)."),
            ("SELECT D, COUNT(*) AS N FROM S GROUP BY D HAVING V > 1", "Non-aggregate HAVING expression not part of GROUP BY: V"),
            ("SELECT *, COUNT(*) AS N FROM S GROUP BY ID, D", "Non-aggregate SELECT expression(s) not part of GROUP BY: V"),
        ] {
            let e = plan(create, &format!("CREATE TABLE OUTPUT AS {query};"))
                .err()
                .unwrap();
            assert!(e.0.contains(wanted), "{query}: {}", e.0);
        }
        let e = plan(
            create,
            "CREATE TABLE OUTPUT AS SELECT COUNT(*) AS C FROM S GROUP BY ID;",
        )
        .err()
        .unwrap();
        assert!(
            e.0.contains("must include the grouping expression ID"),
            "{}",
            e.0
        );
        let e = plan(
            create,
            "CREATE TABLE OUTPUT AS SELECT SUM(V) FROM S GROUP BY SUM(V);",
        )
        .err()
        .unwrap();
        assert!(e
            .0
            .starts_with("GROUP BY does not support aggregate functions: SUM"));
        let e = plan(
            create,
            "CREATE TABLE OUTPUT AS SELECT V, COUNT(*) AS N FROM S GROUP BY 1 + SUM(V);",
        )
        .err()
        .unwrap();
        assert_eq!(
            e.0,
            "GROUP BY does not support aggregate functions: SUM is an aggregate function."
        );
    }

    #[test]
    fn a_table_source_takes_the_old_row_out_of_its_group_first() {
        let mut c = Catalog::default();
        c.create_source(
            &parse_statement("CREATE TABLE T (ID INT PRIMARY KEY, REGION STRING, N INT) WITH (kafka_topic='t', value_format='JSON');").unwrap(),
            &All,
        )
        .unwrap();
        let Statement::CreateAsSelect { query, .. } = parse_statement(
            "CREATE TABLE OUTPUT AS SELECT REGION, COUNT(*) AS C, SUM(N) AS S FROM T GROUP BY REGION;",
        )
        .unwrap() else {
            panic!()
        };
        let q = plan_aggregate(
            &query,
            &c,
            "OUTPUT",
            Sink {
                key_format: Format::Kafka,
                value_format: Format::Json,
                wrap_single_value: true,
                timestamp_column: None,
            },
        )
        .unwrap();
        let mut state = BTreeMap::new();
        let mut feed = |key: i32, value: Option<&[u8]>| -> Vec<(String, Option<String>)> {
            let k = key.to_be_bytes();
            let rec = RecordIn {
                key: Some(&k),
                value,
                timestamp: 1,
                partition: 0,
                offset: 0,
            };
            match q.process(rec, &mut state, &NoFunctions) {
                AggOutcome::Updates(u) => u
                    .into_iter()
                    .filter_map(|u| u.record)
                    .map(|(k, v, _)| {
                        (
                            String::from_utf8(k.unwrap()).unwrap(),
                            v.map(|v| String::from_utf8(v).unwrap()),
                        )
                    })
                    .collect(),
                other => panic!("{other:?}"),
            }
        };
        let row = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
        assert_eq!(
            feed(1, Some(br#"{"REGION":"eu","N":5}"#)),
            [row("eu", r#"{"C":1,"S":5}"#)]
        );
        assert_eq!(
            feed(2, Some(br#"{"REGION":"eu","N":7}"#)),
            [row("eu", r#"{"C":2,"S":12}"#)]
        );
        // Moving to another group: out of the old, into the new.
        assert_eq!(
            feed(1, Some(br#"{"REGION":"us","N":5}"#)),
            [row("eu", r#"{"C":1,"S":7}"#), row("us", r#"{"C":1,"S":5}"#)]
        );
        // Staying in its group: one change.
        assert_eq!(
            feed(2, Some(br#"{"REGION":"eu","N":1}"#)),
            [row("eu", r#"{"C":1,"S":1}"#)]
        );
        // Deleted: out of its group.
        assert_eq!(feed(2, None), [row("eu", r#"{"C":0,"S":0}"#)]);
        // MIN cannot be taken back: refused for tables.
        let Statement::CreateAsSelect { query, .. } = parse_statement(
            "CREATE TABLE O2 AS SELECT REGION, MIN(N), LATEST_BY_OFFSET(N) FROM T GROUP BY REGION;",
        )
        .unwrap() else {
            panic!()
        };
        let sink = Sink {
            key_format: Format::Kafka,
            value_format: Format::Json,
            wrap_single_value: true,
            timestamp_column: None,
        };
        let e = plan_aggregate(&query, &c, "O2", sink).err().unwrap();
        assert!(e.0.contains("The aggregation functions MIN and LATEST_BY_OFFSET cannot be applied to a table source"), "{e}");
    }

    #[test]
    fn session_windows_merge_records_within_the_gap() {
        let mut c = Catalog::default();
        c.create_source(
            &parse_statement(
                "CREATE STREAM S (ID INT KEY, N INT) WITH (kafka_topic='s', value_format='JSON');",
            )
            .unwrap(),
            &All,
        )
        .unwrap();
        let Statement::CreateAsSelect { query, .. } = parse_statement(
            "CREATE TABLE OUTPUT AS SELECT ID, COUNT(*) AS C, SUM(N) AS T FROM S WINDOW SESSION (10 MILLISECONDS) GROUP BY ID;",
        )
        .unwrap() else {
            panic!()
        };
        let sink = Sink {
            key_format: Format::Kafka,
            value_format: Format::Json,
            wrap_single_value: true,
            timestamp_column: None,
        };
        let q = plan_aggregate(&query, &c, "OUTPUT", sink).unwrap();
        let mut state = BTreeMap::new();
        let mut feed = |ts: i64, n: i32| -> Vec<(i64, i64, Option<String>)> {
            let k = 1i32.to_be_bytes();
            let v = format!("{{\"N\":{n}}}");
            let rec = RecordIn {
                key: Some(&k),
                value: Some(v.as_bytes()),
                timestamp: ts,
                partition: 0,
                offset: 0,
            };
            match q.process(rec, &mut state, &NoFunctions) {
                AggOutcome::Updates(u) => u
                    .into_iter()
                    .filter_map(|u| u.record)
                    .map(|(k, v, _)| {
                        let k = k.unwrap();
                        assert_eq!(&k[..4], &1i32.to_be_bytes());
                        let end = i64::from_be_bytes(k[4..12].try_into().unwrap());
                        let start = i64::from_be_bytes(k[12..20].try_into().unwrap());
                        (start, end, v.map(|v| String::from_utf8(v).unwrap()))
                    })
                    .collect(),
                other => panic!("{other:?}"),
            }
        };
        let row = |s: i64, e: i64, v: &str| (s, e, Some(v.to_string()));
        assert_eq!(feed(0, 1), [row(0, 0, r#"{"C":1,"T":1}"#)]);
        assert_eq!(feed(5, 2), [(0, 0, None), row(0, 5, r#"{"C":2,"T":3}"#)]);
        assert_eq!(feed(22, 4), [row(22, 22, r#"{"C":1,"T":4}"#)]);
        // Within the gap of both: the two sessions and the record become one.
        assert_eq!(
            feed(14, 8),
            [
                (0, 5, None),
                (22, 22, None),
                row(0, 22, r#"{"C":4,"T":15}"#)
            ]
        );
    }

    /// A table aggregated by a value column, split as a cluster runs it: each change
    /// placed by [`AggregateQuery::table_groups`] in one of two "partitions" with the row
    /// it replaces, each partition aggregated alone by `process_table_change`. Together
    /// they hold exactly the groups the whole aggregation holds, including rows that move
    /// between groups (and partitions) and deletions.
    #[test]
    fn a_repartitioned_table_aggregation_ends_with_the_whole_ones_groups() {
        let q = plan(
            "CREATE TABLE T (ID INT PRIMARY KEY, REGION STRING, N INT) WITH (kafka_topic='t', value_format='JSON');",
            "CREATE TABLE R AS SELECT REGION, COUNT(*) AS C, SUM(N) AS S FROM T GROUP BY REGION;",
        )
        .unwrap();
        let changes: Vec<(i32, Option<&[u8]>)> = vec![
            (1, Some(br#"{"region":"a","n":1}"#)),
            (2, Some(br#"{"region":"b","n":2}"#)),
            (3, Some(br#"{"region":"a","n":3}"#)),
            (1, Some(br#"{"region":"b","n":10}"#)), // moves a -> b
            (3, Some(br#"{"region":"a","n":5}"#)),  // stays in a
            (2, None),                              // deleted
            (4, Some(br#"{"region":"c","n":7}"#)),
            (4, Some(br#"{"region":null,"n":7}"#)), // leaves every group
        ];
        let mut whole = BTreeMap::new();
        let mut parts = [BTreeMap::new(), BTreeMap::new()];
        let mut rows: BTreeMap<i32, (&[u8], i64)> = BTreeMap::new();
        for (i, (id, value)) in changes.iter().enumerate() {
            let key = id.to_be_bytes();
            let record = RecordIn {
                key: Some(&key),
                value: *value,
                timestamp: i as i64,
                partition: 0,
                offset: i as i64,
            };
            q.process(record, &mut whole, &NoFunctions);
            let old = rows.get(id).map(|(v, ts)| RecordIn {
                value: Some(v),
                timestamp: *ts,
                ..record
            });
            let (leaves, joins) = q.table_groups(record, old, &NoFunctions);
            let part = |g: &[u8]| (g.iter().map(|b| *b as usize).sum::<usize>()) % 2;
            match (&leaves, &joins) {
                (Some(a), Some(b)) if a == b => {
                    q.process_table_change(record, old, &mut parts[part(b)], &NoFunctions);
                }
                _ => {
                    if let Some(a) = &leaves {
                        let gone = RecordIn {
                            value: None,
                            ..record
                        };
                        q.process_table_change(gone, old, &mut parts[part(a)], &NoFunctions);
                    }
                    if let Some(b) = &joins {
                        q.process_table_change(record, None, &mut parts[part(b)], &NoFunctions);
                    }
                }
            }
            match value {
                Some(v) => {
                    rows.insert(*id, (v, i as i64));
                }
                None => {
                    rows.remove(id);
                }
            }
        }
        let groups = |m: &BTreeMap<Vec<u8>, GroupState>| -> BTreeMap<Vec<u8>, Vec<Acc>> {
            m.iter()
                .filter(|(k, _)| !k.starts_with(b"#"))
                .map(|(k, st)| (k.clone(), st.accs.clone()))
                .collect()
        };
        let mut split = groups(&parts[0]);
        split.extend(groups(&parts[1]));
        assert_eq!(split, groups(&whole));
        let r = |region: &str| {
            split
                .get(AggregateQuery::group_key(&[Value::String(region.into())]).as_slice())
                .cloned()
        };
        assert_eq!(r("a"), Some(vec![Acc::Count(1), Acc::Value(Value::Int(5))]));
        assert_eq!(
            r("b"),
            Some(vec![Acc::Count(1), Acc::Value(Value::Int(10))])
        );
        assert_eq!(r("c").map(|a| a[0].clone()), Some(Acc::Count(0)));
    }
}
