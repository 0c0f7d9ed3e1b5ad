//! Joins of two sources, as ksqlDB plans and Kafka Streams runs them: stream–stream within
//! a window (WITHIN before/after, GRACE PERIOD), stream–table (the stream looks the table up
//! by its primary key), table–table on primary keys, and table–table on a foreign key. INNER,
//! LEFT, RIGHT and FULL OUTER where ksqlDB allows them.
//!
//! Naming follows ksqlDB: the joined row has every column of each side prefixed with its
//! alias (`L_A`, `R_B`); `SELECT *` yields those names; a qualified column (`L.B`) keeps its
//! bare name when the other side has no column of that name. The result's key is the join
//! key, named after the first projected join column (or `ROWKEY` when neither side joins on
//! a plain column, and always for FULL OUTER).
//!
//! Pure: `JoinQuery::process` takes one record of one side and the join's state and returns
//! the records to write; the engine feeds both inputs in timestamp order. The state holds
//! the table sides' rows and the stream sides' windowed buffers; it is rebuilt after a restart
//! by replaying the inputs up to the query's committed positions, so it needs no changelog.

use std::collections::{BTreeMap, BTreeSet};

use crate::analyzer::{select_columns, AnalysisError, OutputColumn, Scope};
use crate::ast::{Expr, JoinType, Query, SelectItem, SourceKind, SqlType};
use crate::catalog::{Catalog, Column, Source};
use crate::eval::{cast, eval, Functions, Row};
use crate::format::{json_text, serialize};
use crate::pipeline::{decode_row, RecordIn, RecordOut, Sink};
use crate::value::Value;

fn err(m: impl Into<String>) -> AnalysisError {
    AnalysisError(m.into())
}

/// Grace of a stream–stream join without GRACE PERIOD (Kafka Streams' old default).
const DEFAULT_GRACE_MS: i64 = 24 * 3_600_000;

/// Which input a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    Left,
    Right,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Left => 0,
            Side::Right => 1,
        }
    }
    fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }
}

/// How the two inputs meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Stream–stream: a left record at t meets right records in [t - before, t + after].
    /// `grace`: ksqlDB's GRACE PERIOD; with one, unmatched outer rows wait for the window to
    /// close (no spurious results), without one they are emitted at once.
    StreamStream {
        before: i64,
        after: i64,
        grace: Option<i64>,
    },
    /// The left stream looks the right table up by the table's primary key.
    StreamTable,
    /// Both tables on their primary keys.
    TableTable,
    /// The left table's expression looks up the right table's primary key; the result is
    /// keyed by the left table's key.
    ForeignKey,
}

/// One input of a join.
pub struct JoinSide {
    pub source: Source,
    /// The prefix of its columns in the joined row (its alias, else its name).
    pub alias: String,
    /// The join expression over this side's own row.
    pub expr: Expr,
}

/// A planned join query.
pub struct JoinQuery {
    pub left: JoinSide,
    pub right: JoinSide,
    pub kind: JoinType,
    pub shape: Shape,
    pub produces: SourceKind,
    /// Whether the key is computed from the joined row (a foreign-key join's left key,
    /// PARTITION BY) rather than being the join key.
    key_from_row: bool,
    key_type: SqlType,
    /// The joined row's column names: the synthetic key, each side's columns (prefixed)
    /// and pseudo columns (prefixed), then the row's own ROWTIME.
    names: Vec<String>,
    pub key: Vec<OutputColumn>,
    pub value: Vec<OutputColumn>,
    pub filter: Option<Expr>,
    pub sink: Sink,
}

const PSEUDO: [&str; 3] = ["ROWTIME", "ROWPARTITION", "ROWOFFSET"];

fn side_columns(source: &Source) -> impl Iterator<Item = (&str, SqlType)> {
    source
        .key
        .iter()
        .chain(&source.value)
        .map(|c| (c.name.as_str(), c.sql_type.clone()))
        .chain([
            ("ROWTIME", SqlType::Bigint),
            ("ROWPARTITION", SqlType::Int),
            ("ROWOFFSET", SqlType::Bigint),
        ])
}

fn has_column(source: &Source, name: &str) -> bool {
    source.key.iter().chain(&source.value).any(|c| c.name == name)
}

fn column(name: &str) -> Expr {
    Expr::Column {
        source: None,
        name: name.to_string(),
    }
}

/// Plans `query` (one join, no aggregation) writing to `sink`.
pub fn plan_join(
    query: &Query,
    catalog: &Catalog,
    sink_name: &str,
    sink: Sink,
) -> Result<JoinQuery, AnalysisError> {
    if query.joins.len() != 1 {
        return Err(err("Joins of more than two sources are not supported yet."));
    }
    if !query.group_by.is_empty() || query.window.is_some() {
        return Err(err("Aggregations over joins are not supported yet."));
    }
    let join = &query.joins[0];
    let find = |name: &str| {
        catalog
            .get(name)
            .cloned()
            .ok_or_else(|| err(format!("{name} does not exist.")))
    };
    let left_source = find(&query.from)?;
    let right_source = find(&join.source)?;
    let left_alias = query
        .from_alias
        .clone()
        .unwrap_or_else(|| left_source.name.clone());
    let right_alias = join
        .alias
        .clone()
        .unwrap_or_else(|| right_source.name.clone());
    if left_source.name == right_source.name {
        return Err(err(format!(
            "Can not join '{}' to '{}': self joins are not yet supported.",
            left_source.name, right_source.name
        )));
    }
    if left_alias == right_alias {
        return Err(err(format!(
            "Can not join '{}' to '{}': self joins requires aliases to be specified for both sides.",
            left_source.name, right_source.name
        )));
    }
    let sides = [
        (&left_alias, &left_source, left_source.name.as_str()),
        (&right_alias, &right_source, right_source.name.as_str()),
    ];
    let qualifier_side = |q: &str| -> Option<usize> {
        sides
            .iter()
            .position(|(alias, _, name)| q == alias.as_str() || (q == *name && left_alias != right_alias && sides.iter().filter(|s| s.2 == q).count() == 1))
    };
    // The synthetic key's name: ROWKEY unless a side has a column by that name.
    let mut key_name = "ROWKEY".to_string();
    let mut n = 0;
    while sides.iter().any(|(a, s, _)| {
        has_column(s, &key_name) || side_columns(s).any(|(c, _)| format!("{a}_{c}") == key_name)
    }) {
        n += 1;
        key_name = format!("ROWKEY_{n}");
    }
    // Rewrites a column reference to the joined row's name.
    let resolve = |qualifier: Option<&str>, name: &str| -> Result<String, AnalysisError> {
        match qualifier {
            Some(q) => {
                let i = qualifier_side(q).ok_or_else(|| {
                    err(format!(
                        "Failed to prepare statement: '{q}' is not a valid stream/table name or alias."
                    ))
                })?;
                let (alias, source, _) = sides[i];
                if has_column(source, name) || PSEUDO.contains(&name) {
                    Ok(format!("{alias}_{name}"))
                } else {
                    Err(err(format!("Column '{q}.{name}' cannot be resolved.")))
                }
            }
            None => {
                if name == key_name || PSEUDO.contains(&name) {
                    return Ok(name.to_string());
                }
                let holders: Vec<usize> = (0..2).filter(|&i| has_column(sides[i].1, name)).collect();
                match holders.as_slice() {
                    [i] => Ok(format!("{}_{name}", sides[*i].0)),
                    [] => Err(err(format!("Column '{name}' cannot be resolved."))),
                    _ => Err(err(format!(
                        "Column '{name}' is ambiguous. Could be {}.{name} or {}.{name}.",
                        left_alias, right_alias
                    ))),
                }
            }
        }
    };
    let rewrite = |e: &Expr| -> Result<Expr, AnalysisError> {
        let mut failure = None;
        let out = e.rewrite(&mut |x| match x {
            Expr::Column { source, name } => match resolve(source.as_deref(), name) {
                Ok(n) => Some(column(&n)),
                Err(e) => {
                    failure.get_or_insert(e);
                    Some(x.clone())
                }
            },
            _ => None,
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    };
    // The join condition: one equality, each side's expression over its own columns.
    let (a, b) = match &join.on {
        Expr::Binary {
            op: crate::ast::BinaryOp::Eq,
            left,
            right,
        } => (left.as_ref().clone(), right.as_ref().clone()),
        other @ Expr::Binary {
            op: crate::ast::BinaryOp::And,
            ..
        } => {
            return Err(err(format!(
                "Invalid join condition: joins on multiple conditions are not yet supported. Got {}.",
                crate::analyzer::format_expr(other)
            )))
        }
        other => {
            return Err(err(format!(
                "Unsupported join expression: {}. Only equality joins between two sources are supported.",
                crate::analyzer::format_expr(other)
            )))
        }
    };
    let side_of = |e: &Expr| -> Result<Option<usize>, AnalysisError> {
        let mut seen = BTreeSet::new();
        let mut failure = None;
        e.rewrite(&mut |x| {
            if let Expr::Column { source, name } = x {
                match resolve(source.as_deref(), name) {
                    Ok(n) => {
                        if let Some(i) = (0..2).find(|&i| n.starts_with(&format!("{}_", sides[i].0)) && (has_column(sides[i].1, &n[sides[i].0.len() + 1..]) || PSEUDO.contains(&&n[sides[i].0.len() + 1..]))) {
                            seen.insert(i);
                        }
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            None
        });
        if let Some(e) = failure {
            return Err(match e.0.strip_prefix("Column ") {
                Some(rest) if rest.ends_with("cannot be resolved.") => {
                    err(format!("JOIN ON column {rest}"))
                }
                _ => e,
            });
        }
        Ok(match seen.len() {
            1 => seen.into_iter().next(),
            _ => None,
        })
    };
    let (sa, sb) = (side_of(&a)?, side_of(&b)?);
    let (left_on, right_on) = match (sa, sb) {
        (Some(0), Some(1)) => (a, b),
        (Some(1), Some(0)) => (b, a),
        _ => {
            let culprit = if sa.is_none() { &a } else { &b };
            return Err(err(format!(
                "Invalid comparison expression '{}' in join '{}'. Each side of the join comparision must contain references from exactly one source.",
                crate::analyzer::format_expr(culprit),
                crate::analyzer::format_expr(&join.on)
            )))
        }
    };
    // Each side's expression over its own row (qualifiers dropped).
    let own = |e: &Expr| {
        e.rewrite(&mut |x| match x {
            Expr::Column { name, .. } => Some(column(name)),
            _ => None,
        })
    };
    let scope_l = Scope {
        source: &left_source,
        alias: None,
    };
    let scope_r = Scope {
        source: &right_source,
        alias: None,
    };
    let left_expr = own(&left_on);
    let right_expr = own(&right_on);
    let lt = crate::analyzer::type_of(&left_expr, &scope_l)?;
    let rt = crate::analyzer::type_of(&right_expr, &scope_r)?;
    let key_type = match (lt, rt) {
        (Some(l), Some(r)) if l == r => l,
        (l, r) => {
            let name = |t: Option<SqlType>| t.map_or("NULL".to_string(), |t| crate::value::type_name(&t));
            let qualified = |e: &Expr, q: &str| {
                e.rewrite(&mut |x| match x {
                    Expr::Column { name, .. } => Some(Expr::Column {
                        source: Some(q.to_string()),
                        name: name.clone(),
                    }),
                    _ => None,
                })
            };
            return Err(err(format!(
                "Invalid join condition: types don't match. Got {}{{{}}} = {}{{{}}}.",
                crate::analyzer::format_expr(&qualified(&left_expr, &left_alias)),
                name(l),
                crate::analyzer::format_expr(&qualified(&right_expr, &right_alias)),
                name(r)
            )));
        }
    };
    let is_key_column = |e: &Expr, s: &Source| match e {
        Expr::Column { name, .. } => s.key.len() == 1 && s.key[0].name == *name,
        _ => false,
    };
    let shape = match (left_source.kind, right_source.kind) {
        (SourceKind::Stream, SourceKind::Stream) => {
            let Some((before, after, grace)) = join.within else {
                return Err(err(
                    "Stream-Stream joins must have a WITHIN clause specified. None was provided. To learn about how to specify a WITHIN clause with a stream-stream join, please visit: https://docs.confluent.io/current/ksql/docs/syntax-reference.html#create-stream-as-select",
                ));
            };
            Shape::StreamStream {
                before: before.millis(),
                after: after.millis(),
                grace: grace.map(|g| g.millis()),
            }
        }
        (SourceKind::Stream, SourceKind::Table) => {
            if join.within.is_some() {
                return Err(err("A window definition was provided for a Stream-Table join. These joins are not windowed. Please drop the window definition (ie. the WITHIN clause) and try to submit your query again."));
            }
            if matches!(join.kind, JoinType::Right | JoinType::Full) {
                return Err(err(format!(
                    "Invalid join type: {} join not supported for stream-table join. Only INNER and LEFT joins are supported.",
                    if join.kind == JoinType::Full { "FULL OUTER" } else { "RIGHT OUTER" }
                )));
            }
            if !is_key_column(&right_expr, &right_source) {
                return Err(err(format!(
                    "Invalid join condition: stream-table joins require to join on the table's primary key. Got {} = {}.",
                    crate::analyzer::format_expr(&left_on),
                    crate::analyzer::format_expr(&right_on)
                )));
            }
            Shape::StreamTable
        }
        (SourceKind::Table, SourceKind::Stream) => {
            return Err(err("Invalid join order: table-stream joins are not supported; only stream-table joins. Got TABLE JOIN STREAM."));
        }
        (SourceKind::Table, SourceKind::Table) => {
            if join.within.is_some() {
                return Err(err("A window definition was provided for a Table-Table join. These joins are not windowed. Please drop the window definition (i.e. the WITHIN clause) and try to submit your query again."));
            }
            let lk = is_key_column(&left_expr, &left_source);
            let rk = is_key_column(&right_expr, &right_source);
            if lk && rk {
                Shape::TableTable
            } else if rk {
                if matches!(join.kind, JoinType::Right | JoinType::Full) {
                    return Err(err(format!(
                        "{} OUTER JOIN on a foreign key is not supported",
                        if join.kind == JoinType::Full { "FULL" } else { "RIGHT" },
                    )));
                }
                Shape::ForeignKey
            } else {
                return Err(err(format!(
                    "Invalid join condition: table-table joins require to join on the primary key of the right input table. Got {} = {}.",
                    crate::analyzer::format_expr(&left_on),
                    crate::analyzer::format_expr(&right_on)
                )));
            }
        }
    };
    let produces = if left_source.kind == SourceKind::Table && right_source.kind == SourceKind::Table {
        SourceKind::Table
    } else {
        SourceKind::Stream
    };
    // Which joined columns may stand for the key.
    let column_name = |e: &Expr, alias: &str| match e {
        Expr::Column { name, .. } => Some(format!("{alias}_{name}")),
        _ => None,
    };
    let mut candidates: Vec<String> = Vec::new();
    if shape == Shape::ForeignKey {
        candidates.extend(left_source.key.iter().map(|k| format!("{left_alias}_{}", k.name)));
    } else if join.kind != JoinType::Full {
        candidates.extend(column_name(&left_expr, &left_alias));
        candidates.extend(column_name(&right_expr, &right_alias));
    }
    let synthetic_key = candidates.is_empty();
    if synthetic_key {
        candidates.push(key_name.clone());
    }
    // The joined row's schema, for typing.
    let mut names = vec![key_name.clone()];
    let mut joined_columns = vec![Column {
        name: key_name.clone(),
        sql_type: key_type.clone(),
        header: None,
    }];
    for (alias, s, _) in sides {
        for (c, t) in side_columns(s) {
            names.push(format!("{alias}_{c}"));
            joined_columns.push(Column {
                name: format!("{alias}_{c}"),
                sql_type: t,
                header: None,
            });
        }
    }
    names.extend(PSEUDO.map(String::from));
    let joined = Source {
        name: "KSQL_JOINED".to_string(),
        kind: produces,
        key: Vec::new(),
        value: joined_columns,
        topic: String::new(),
        key_format: left_source.key_format.clone(),
        value_format: left_source.value_format.clone(),
        wrap_single_value: true,
        timestamp_column: None,
        timestamp_format: None,
        read_only: true,
    };
    // The select list over the joined row, with ksqlDB's output names.
    // With PARTITION BY, ksqlDB's `*` also carries each side's pseudo columns, its key
    // columns after its value columns.
    let partitioned = !query.partition_by.is_empty();
    let star = |i: usize| -> Vec<SelectItem> {
        let (alias, s, _) = sides[i];
        let names: Vec<&str> = if partitioned {
            s.value
                .iter()
                .map(|c| c.name.as_str())
                .chain(PSEUDO)
                .chain(s.key.iter().map(|c| c.name.as_str()))
                .collect()
        } else {
            s.key.iter().chain(&s.value).map(|c| c.name.as_str()).collect()
        };
        names
            .into_iter()
            .map(|c| {
                let n = format!("{alias}_{c}");
                SelectItem::Expr {
                    expr: column(&n),
                    alias: Some(n),
                }
            })
            .collect()
    };
    let mut select = Vec::new();
    for item in &query.select {
        match item {
            SelectItem::All { source: None } => {
                if synthetic_key {
                    select.push(SelectItem::Expr {
                        expr: column(&key_name),
                        alias: Some(key_name.clone()),
                    });
                }
                select.extend(star(0));
                select.extend(star(1));
            }
            SelectItem::All { source: Some(q) } => {
                let i = qualifier_side(q).ok_or_else(|| {
                    err(format!(
                        "Failed to prepare statement: '{q}' is not a valid stream/table name or alias."
                    ))
                })?;
                select.extend(star(i));
            }
            SelectItem::StructAll(base) => select.push(SelectItem::StructAll(rewrite(base)?)),
            SelectItem::Expr { expr, alias } => {
                let out_alias = match (alias, expr) {
                    (Some(a), _) => Some(a.clone()),
                    (None, Expr::Column { source: Some(q), name }) => {
                        let both = has_column(&left_source, name) && has_column(&right_source, name)
                            || PSEUDO.contains(&name.as_str());
                        let i = qualifier_side(q);
                        Some(match (both, i) {
                            (true, Some(i)) => format!("{}_{name}", sides[i].0),
                            _ => name.clone(),
                        })
                    }
                    (None, Expr::Column { source: None, name }) => Some(name.clone()),
                    _ => None,
                };
                select.push(SelectItem::Expr {
                    expr: rewrite(expr)?,
                    alias: out_alias,
                });
            }
        }
    }
    let rewritten = Query {
        select,
        from: joined.name.clone(),
        from_alias: None,
        joins: Vec::new(),
        window: None,
        where_clause: query.where_clause.as_ref().map(&rewrite).transpose()?,
        group_by: Vec::new(),
        partition_by: Vec::new(),
        having: None,
        emit: query.emit,
        limit: query.limit,
    };
    if query.partition_by.len() > 1 {
        return Err(err("PARTITION BY on a join takes one expression."));
    }
    let partition_by = match query.partition_by.first() {
        None | Some(Expr::Literal(crate::ast::Literal::Null)) => None,
        Some(p) => Some(rewrite(p)?),
    };
    let mut scratch = Catalog::default();
    scratch
        .insert_derived(joined.clone(), true)
        .map_err(|e| err(e.0))?;
    let mut selected = select_columns(&rewritten, &scratch)?;
    // The key: the left side's join column if projected, else the right side's.
    let is_candidate = |c: &OutputColumn, name: &str| {
        matches!(&c.expr, Expr::Column { source: None, name: n } if n == name)
    };
    let at = match &partition_by {
        Some(p) => match selected.iter().position(|c| c.expr == *p) {
            Some(i) => Some(i),
            None => {
                let shown = crate::analyzer::format_expr(&query.partition_by[0]);
                return Err(err(format!(
                    "The query used to build `{sink_name}` must include the partitioning expression {shown} in its projection (eg, SELECT {shown}...)."
                )));
            }
        },
        None => candidates
            .iter()
            .find_map(|k| selected.iter().position(|c| is_candidate(c, k))),
    };
    let key = match at {
        Some(i) => selected.remove(i),
        None => {
            if synthetic_key {
                return Err(err(format!(
                    "Key missing from projection (ie, SELECT). See https://cnfl.io/2LV7ouS.\nThe query used to build `{sink_name}` must include the join expression {key_name} in its projection (eg, SELECT {key_name}...).\n{key_name} was added as a synthetic key column because the join criteria did not match any source column. This expression must be included in the projection and may be aliased."
                )));
            }
            let shown: Vec<String> = if shape == Shape::ForeignKey {
                candidates.iter().map(|c| c.replacen('_', ".", 1)).collect()
            } else {
                [&left_on, &right_on]
                    .into_iter()
                    .filter(|e| matches!(e, Expr::Column { .. }))
                    .map(crate::analyzer::format_expr)
                    .collect()
            };
            let (what, list) = if shown.len() > 1 {
                ("expressions", shown.join(" or "))
            } else {
                ("expression", shown[0].clone())
            };
            return Err(err(format!(
                "The query used to build `{sink_name}` must include the join {what} {list} in its projection (eg, SELECT {}...).",
                shown[0]
            )));
        }
    };
    // The key once only.
    if let Expr::Column { name: key_column, .. } = &key.expr {
        let mut again: Vec<&str> = selected
            .iter()
            .filter(|c| is_candidate(c, key_column))
            .map(|c| c.name.as_str())
            .collect();
        if !again.is_empty() {
            again.push(&key.name);
            again.sort();
            return Err(err(format!(
                "The projection contains a key column (`{key_column}`) more than once, aliased as: {}.",
                again.join(" and ")
            )));
        }
    }
    if selected.is_empty() {
        return Err(err("The projection contains no value columns."));
    }
    Ok(JoinQuery {
        left: JoinSide {
            source: left_source,
            alias: left_alias,
            expr: left_expr,
        },
        right: JoinSide {
            source: right_source,
            alias: right_alias,
            expr: right_expr,
        },
        kind: join.kind,
        shape,
        produces,
        key_from_row: shape == Shape::ForeignKey || partition_by.is_some(),
        key_type,
        names,
        key: vec![key],
        value: selected,
        filter: rewritten.where_clause,
        sink,
    })
}

/// A row of one side as stored: its values (columns then pseudo columns), join key and
/// timestamp.
#[derive(Debug, Clone)]
struct Stored {
    values: Vec<Value>,
    join_key: Value,
    timestamp: i64,
}

/// What a join remembers: table rows by key, stream records in their windows, outer rows
/// waiting for their window to close, and stream time.
#[derive(Debug, Default)]
pub struct JoinState {
    /// Table rows by key text (a foreign-key join's left table by its primary key).
    tables: [BTreeMap<String, Stored>; 2],
    /// Stream records by (join key text, timestamp, arrival).
    buffers: [BTreeMap<(String, i64, u64), Stored>; 2],
    /// Stream records not matched yet, waiting for their window to close.
    pending: [BTreeSet<(String, i64, u64)>; 2],
    stream_time: Option<i64>,
    /// Each stream side's own stream time (its window store's retention).
    side_time: [Option<i64>; 2],
    arrivals: u64,
    /// A table result's keys that have a row downstream (a deletion is only sent for them).
    present: BTreeSet<Vec<u8>>,
}

impl JoinState {
    /// Rows and records held.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum::<usize>()
            + self.buffers.iter().map(|b| b.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct JoinedRow<'a> {
    names: &'a [String],
    values: Vec<Value>,
}

impl Row for JoinedRow<'_> {
    fn column(&self, _source: Option<&str>, name: &str) -> Option<&Value> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.values[i])
    }
}

impl JoinQuery {
    fn side(&self, side: Side) -> &JoinSide {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }

    /// The topic each side reads.
    pub fn topics(&self) -> [&str; 2] {
        [&self.left.source.topic, &self.right.source.topic]
    }

    fn width(&self, side: Side) -> usize {
        let s = &self.side(side).source;
        s.key.len() + s.value.len() + PSEUDO.len()
    }

    /// The joined row's output record (a tombstone when `value` is None or the row is
    /// filtered out of a table).
    fn emit(
        &self,
        join_key: &Value,
        left: Option<&[Value]>,
        right: Option<&[Value]>,
        timestamp: i64,
        functions: &dyn Functions,
    ) -> Result<Option<RecordOut>, String> {
        let mut values = vec![join_key.clone()];
        for (side, row) in [(Side::Left, left), (Side::Right, right)] {
            match row {
                Some(v) => values.extend(v.iter().cloned()),
                None => values.extend(std::iter::repeat_n(Value::Null, self.width(side))),
            }
        }
        values.extend([Value::Bigint(timestamp), Value::Null, Value::Null]);
        let row = JoinedRow {
            names: &self.names,
            values,
        };
        let passes = match &self.filter {
            None => true,
            Some(f) => matches!(
                eval(f, &row, functions).map_err(|e| e.to_string())?,
                Value::Boolean(true)
            ),
        };
        let key_value = if self.key_from_row {
            eval(&self.key[0].expr, &row, functions).map_err(|e| e.to_string())?
        } else {
            join_key.clone()
        };
        let key_value = cast(key_value, &self.key[0].sql_type).map_err(|e| e.to_string())?;
        let key = serialize(
            &self.sink.key_format,
            &OutputColumn::name_types(&self.key),
            &[key_value],
            false,
        )
        .map_err(|e| format!("Error serializing key: {e}"))?;
        if !passes {
            // A table's row that no longer passes WHERE is deleted downstream.
            return Ok((self.produces == SourceKind::Table).then_some(RecordOut {
                key,
                value: None,
                timestamp,
            }));
        }
        let computed = self
            .value
            .iter()
            .map(|c| {
                let v = eval(&c.expr, &row, functions).map_err(|e| e.to_string())?;
                cast(v, &c.sql_type).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, String>>()?;
        let cols = OutputColumn::name_types(&self.value);
        let value = serialize(
            &self.sink.value_format,
            &cols,
            &computed,
            self.sink.wrap_single_value || cols.len() != 1,
        )
        .map_err(|e| format!("Error serializing value: {e}"))?;
        let timestamp = self.sink.timestamp(&self.value, &computed, timestamp);
        Ok(Some(RecordOut {
            key,
            value,
            timestamp,
        }))
    }

    fn tombstone(&self, key_value: &Value, timestamp: i64) -> Result<RecordOut, String> {
        let key_value = cast(key_value.clone(), &self.key[0].sql_type).map_err(|e| e.to_string())?;
        let key = serialize(
            &self.sink.key_format,
            &OutputColumn::name_types(&self.key),
            &[key_value],
            false,
        )
        .map_err(|e| format!("Error serializing key: {e}"))?;
        Ok(RecordOut {
            key,
            value: None,
            timestamp,
        })
    }

    /// One record of `side`: the records the join emits for it.
    pub fn process(
        &self,
        side: Side,
        record: RecordIn<'_>,
        state: &mut JoinState,
        functions: &dyn Functions,
    ) -> Result<Vec<RecordOut>, String> {
        let s = self.side(side);
        let record = crate::pipeline::with_event_time(&s.source, record)?;
        let (names, values) = decode_row(&s.source, record)?;
        let row: Vec<(String, Value)> = names.into_iter().zip(values.iter().cloned()).collect();
        let join_key = if record.value.is_none() && s.source.kind == SourceKind::Table {
            // A tombstone: only its key is known.
            eval(&s.expr, &row, functions).unwrap_or(Value::Null)
        } else {
            eval(&s.expr, &row, functions).map_err(|e| e.to_string())?
        };
        let join_key = cast(join_key, &self.key_type).map_err(|e| e.to_string())?;
        let stored = Stored {
            values,
            join_key: join_key.clone(),
            timestamp: record.timestamp,
        };
        let tombstone = record.value.is_none();
        let table_result = |out: Vec<RecordOut>, state: &mut JoinState| -> Vec<RecordOut> {
            out.into_iter()
                .filter(|r| {
                    let key = r.key.clone().unwrap_or_default();
                    match r.value {
                        Some(_) => {
                            state.present.insert(key);
                            true
                        }
                        None => state.present.remove(&key),
                    }
                })
                .collect()
        };
        match self.shape {
            Shape::StreamTable => self.stream_table(side, stored, tombstone, state, functions),
            Shape::TableTable => {
                let out = self.table_table(side, stored, tombstone, state, functions)?;
                Ok(table_result(out, state))
            }
            Shape::ForeignKey => self.foreign_key(side, stored, tombstone, state, functions),
            Shape::StreamStream {
                before,
                after,
                grace,
            } => {
                if tombstone || join_key == Value::Null {
                    return Ok(Vec::new());
                }
                self.stream_stream(side, stored, (before, after, grace), state, functions)
            }
        }
    }

    fn outer(&self, side: Side) -> bool {
        match self.kind {
            JoinType::Inner => false,
            JoinType::Left => side == Side::Left,
            JoinType::Right => side == Side::Right,
            JoinType::Full => true,
        }
    }

    fn pair<'a>(side: Side, this: &'a [Value], other: Option<&'a [Value]>) -> (Option<&'a [Value]>, Option<&'a [Value]>) {
        match side {
            Side::Left => (Some(this), other),
            Side::Right => (other, Some(this)),
        }
    }

    fn stream_table(
        &self,
        side: Side,
        stored: Stored,
        tombstone: bool,
        state: &mut JoinState,
        functions: &dyn Functions,
    ) -> Result<Vec<RecordOut>, String> {
        let text = json_text(&stored.join_key);
        if side == Side::Right {
            if stored.join_key != Value::Null {
                if tombstone {
                    state.tables[1].remove(&text);
                } else {
                    state.tables[1].insert(text, stored);
                }
            }
            return Ok(Vec::new());
        }
        if tombstone {
            return Ok(Vec::new());
        }
        let found = if stored.join_key == Value::Null {
            None
        } else {
            state.tables[1].get(&text)
        };
        if found.is_none() && self.kind == JoinType::Inner {
            return Ok(Vec::new());
        }
        let out = self.emit(
            &stored.join_key,
            Some(&stored.values),
            found.map(|f| f.values.as_slice()),
            stored.timestamp,
            functions,
        )?;
        Ok(out.into_iter().collect())
    }

    fn table_table(
        &self,
        side: Side,
        stored: Stored,
        tombstone: bool,
        state: &mut JoinState,
        functions: &dyn Functions,
    ) -> Result<Vec<RecordOut>, String> {
        if stored.join_key == Value::Null {
            return Ok(Vec::new());
        }
        let text = json_text(&stored.join_key);
        let i = side.index();
        let old = if tombstone {
            state.tables[i].remove(&text)
        } else {
            state.tables[i].insert(text.clone(), stored.clone())
        };
        let other = state.tables[side.other().index()].get(&text);
        let timestamp = other.map_or(stored.timestamp, |o| o.timestamp.max(stored.timestamp));
        let this_present = !tombstone;
        let emit_row = match self.kind {
            JoinType::Inner => this_present && other.is_some(),
            JoinType::Full => this_present || other.is_some(),
            _ => {
                let outer_side = if self.kind == JoinType::Left { Side::Left } else { Side::Right };
                if side == outer_side {
                    this_present
                } else {
                    other.is_some()
                }
            }
        };
        if emit_row {
            let this = if this_present { Some(stored.values.as_slice()) } else { None };
            let other_values = other.map(|o| o.values.as_slice());
            let (l, r) = match side {
                Side::Left => (this, other_values),
                Side::Right => (other_values, this),
            };
            return Ok(self
                .emit(&stored.join_key, l, r, timestamp, functions)?
                .into_iter()
                .collect());
        }
        // The result row, if there was one, is gone.
        let had_result = match self.kind {
            JoinType::Inner => old.is_some() && other.is_some(),
            JoinType::Full => old.is_some(),
            _ => {
                let outer_side = if self.kind == JoinType::Left { Side::Left } else { Side::Right };
                side == outer_side && old.is_some()
            }
        };
        if had_result {
            return Ok(vec![self.tombstone(&stored.join_key, timestamp)?]);
        }
        Ok(Vec::new())
    }

    fn foreign_key(
        &self,
        side: Side,
        stored: Stored,
        tombstone: bool,
        state: &mut JoinState,
        functions: &dyn Functions,
    ) -> Result<Vec<RecordOut>, String> {
        match side {
            Side::Left => {
                // Keyed by the left table's primary key (its first columns).
                let pk = stored.values[..self.left.source.key.len()].to_vec();
                let pk_text = json_text(&Value::Array(pk.clone()));
                let old = if tombstone {
                    state.tables[0].remove(&pk_text)
                } else {
                    state.tables[0].insert(pk_text, stored.clone())
                };
                if tombstone {
                    return Ok(match old {
                        Some(_) => vec![self.tombstone(&pk[0], stored.timestamp)?],
                        None => Vec::new(),
                    });
                }
                let found = if stored.join_key == Value::Null {
                    None
                } else {
                    state.tables[1].get(&json_text(&stored.join_key))
                };
                match found {
                    None if self.kind == JoinType::Inner => Ok(match old {
                        Some(_) => vec![self.tombstone(&pk[0], stored.timestamp)?],
                        None => Vec::new(),
                    }),
                    found => {
                        let timestamp = stored.timestamp;
                        Ok(self
                            .emit(
                                &stored.join_key,
                                Some(&stored.values),
                                found.map(|f| f.values.as_slice()),
                                timestamp,
                                functions,
                            )?
                            .into_iter()
                            .collect())
                    }
                }
            }
            Side::Right => {
                if stored.join_key == Value::Null {
                    return Ok(Vec::new());
                }
                let text = json_text(&stored.join_key);
                let old = if tombstone {
                    state.tables[1].remove(&text)
                } else {
                    state.tables[1].insert(text, stored.clone())
                };
                let mut out = Vec::new();
                // The left rows referring to this key, in the order of their keys.
                let mut lefts: Vec<&Stored> = state.tables[0]
                    .values()
                    .filter(|l| l.join_key == stored.join_key)
                    .collect();
                lefts.sort_by(|a, b| {
                    crate::eval::compare(&a.values[0], &b.values[0])
                        .ok()
                        .flatten()
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
                for left in lefts {
                    let timestamp = stored.timestamp;
                    if tombstone {
                        if old.is_none() {
                            continue;
                        }
                        if self.kind == JoinType::Inner {
                            out.push(self.tombstone(&left.values[0], timestamp)?);
                            continue;
                        }
                    }
                    let right = (!tombstone).then_some(stored.values.as_slice());
                    out.extend(self.emit(&left.join_key, Some(&left.values), right, timestamp, functions)?);
                }
                Ok(out)
            }
        }
    }

    fn stream_stream(
        &self,
        side: Side,
        stored: Stored,
        (before, after, grace): (i64, i64, Option<i64>),
        state: &mut JoinState,
        functions: &dyn Functions,
    ) -> Result<Vec<RecordOut>, String> {
        let t = stored.timestamp;
        let grace_ms = grace.unwrap_or(DEFAULT_GRACE_MS);
        let stream_time = state.stream_time.map_or(t, |st| st.max(t));
        state.stream_time = Some(stream_time);
        // How far each side's window reaches: a left record at t meets right records in
        // [t - before, t + after], a right record at t meets left ones in [t - after, t + before].
        let (back, ahead) = match side {
            Side::Left => (before, after),
            Side::Right => (after, before),
        };
        let mut out = Vec::new();
        // Windows that closed: unmatched outer rows go out with nulls (checked when stream
        // time moves, before this record joins, as Kafka Streams does).
        if grace.is_some() && t == stream_time {
            let mut closed: Vec<(Side, (String, i64, u64))> = Vec::new();
            for s in [Side::Left, Side::Right] {
                let reach = match s {
                    Side::Left => after,
                    Side::Right => before,
                };
                closed.extend(
                    state.pending[s.index()]
                        .iter()
                        .filter(|(_, ts, _)| {
                            ts.saturating_add(reach).saturating_add(grace_ms) < stream_time
                        })
                        .map(|k| (s, k.clone())),
                );
            }
            closed.sort_by_key(|(_, (_, ts, a))| (*ts, *a));
            for (s, k) in closed {
                state.pending[s.index()].remove(&k);
                if let Some(r) = state.buffers[s.index()].get(&k) {
                    let (l, rr) = Self::pair(s, &r.values, None);
                    out.extend(self.emit(&r.join_key, l, rr, r.timestamp, functions)?);
                }
            }
        }
        let text = json_text(&stored.join_key);
        let arrival = state.arrivals;
        state.arrivals += 1;
        let other = side.other().index();
        let lo = (text.clone(), t.saturating_sub(back), 0);
        let hi = (text.clone(), t.saturating_add(ahead), u64::MAX);
        let matches: Vec<(String, i64, u64)> = state.buffers[other]
            .range(lo..=hi)
            .map(|(k, _)| k.clone())
            .collect();
        for m in &matches {
            let o = &state.buffers[other][m];
            let (l, r) = Self::pair(side, &stored.values, Some(&o.values));
            out.extend(self.emit(&stored.join_key, l, r, t.max(o.timestamp), functions)?);
            state.pending[other].remove(m);
        }
        // Each side's window store keeps records by its own stream time (Kafka Streams'
        // segmented stores), so a late record of one side may still be joined by the
        // other side's later records while the reverse is not true.
        let retention = before.saturating_add(after).saturating_add(grace_ms);
        let side_time = state.side_time[side.index()].map_or(t, |st| st.max(t));
        state.side_time[side.index()] = Some(side_time);
        let retained = t >= side_time.saturating_sub(retention);
        if matches.is_empty() && self.outer(side) {
            if grace.is_none() || t.saturating_add(ahead) < stream_time || !retained {
                // Without a grace period ksqlDB emits the unmatched row at once (as Kafka
                // Streams does for a record whose window has already passed).
                let (l, r) = Self::pair(side, &stored.values, None);
                out.extend(self.emit(&stored.join_key, l, r, t, functions)?);
            } else {
                state.pending[side.index()].insert((text.clone(), t, arrival));
            }
        }
        // A record older than the windows' retention is not kept (nothing can join it).
        if retained {
            state.buffers[side.index()].insert((text, t, arrival), stored);
        }
        // Records no window can reach any more.
        for b in 0..2 {
            if let Some(st) = state.side_time[b] {
                let horizon = st.saturating_sub(retention);
                let pending = &state.pending[b];
                state.buffers[b].retain(|k, r| r.timestamp >= horizon || pending.contains(k));
            }
        }
        Ok(out)
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

    fn plan(creates: &[&str], csas: &str) -> Result<JoinQuery, AnalysisError> {
        let mut c = Catalog::default();
        for s in creates {
            c.create_source(&parse_statement(s).unwrap(), &All).unwrap();
        }
        let Statement::CreateAsSelect { query, .. } = parse_statement(csas).unwrap() else {
            panic!()
        };
        plan_join(
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

    fn names(cols: &[OutputColumn]) -> Vec<&str> {
        cols.iter().map(|c| c.name.as_str()).collect()
    }

    fn input<'a>(key: &'a [u8], value: Option<&'a [u8]>, timestamp: i64) -> RecordIn<'a> {
        RecordIn {
            key: Some(key),
            value,
            timestamp,
            partition: 0,
            offset: 0,
        }
    }

    fn text(out: &[RecordOut]) -> Vec<(i32, Option<String>, i64)> {
        out.iter()
            .map(|r| {
                let k = r.key.as_ref().unwrap();
                (
                    i32::from_be_bytes(k[..4].try_into().unwrap()),
                    r.value.as_ref().map(|v| String::from_utf8(v.clone()).unwrap()),
                    r.timestamp,
                )
            })
            .collect()
    }

    const L: &str = "CREATE STREAM L (A INT KEY, B INT) WITH (kafka_topic='l', value_format='JSON');";
    const R: &str = "CREATE STREAM R (A INT KEY, C INT) WITH (kafka_topic='r', value_format='JSON');";
    const T: &str = "CREATE TABLE T (A INT PRIMARY KEY, C INT) WITH (kafka_topic='t', value_format='JSON');";
    const U: &str = "CREATE TABLE U (ID INT PRIMARY KEY, A INT, D INT) WITH (kafka_topic='u', value_format='JSON');";

    #[test]
    fn joined_columns_are_named_and_keyed_as_ksqldb_does() {
        let q = plan(&[L, R], "CREATE STREAM OUTPUT AS SELECT * FROM L JOIN R WITHIN 1 SECOND ON L.A = R.A;").unwrap();
        assert_eq!(names(&q.key), ["L_A"]);
        assert_eq!(names(&q.value), ["L_B", "R_A", "R_C"]);
        let q = plan(&[L, R], "CREATE STREAM OUTPUT AS SELECT L.B, R.* FROM L JOIN R WITHIN 1 SECOND ON L.A = R.A;").unwrap();
        assert_eq!(names(&q.key), ["R_A"]);
        assert_eq!(names(&q.value), ["B", "R_C"]);
        let q = plan(&[L, R], "CREATE STREAM OUTPUT AS SELECT * FROM L FULL OUTER JOIN R WITHIN 1 SECOND ON L.A = R.A;").unwrap();
        assert_eq!(names(&q.key), ["ROWKEY"]);
        for (sql, message) in [
            ("CREATE STREAM OUTPUT AS SELECT L.B FROM L JOIN R WITHIN 1 SECOND ON L.A = R.A;", "must include the join expressions L.A or R.A"),
            ("CREATE STREAM OUTPUT AS SELECT * FROM L JOIN R ON L.A = R.A;", "Stream-Stream joins must have a WITHIN clause"),
            ("CREATE STREAM OUTPUT AS SELECT * FROM L JOIN R WITHIN 1 SECOND ON L.A = 1;", "Invalid comparison expression '1'"),
            ("CREATE STREAM OUTPUT AS SELECT * FROM L JOIN R WITHIN 1 SECOND ON L.X = R.A;", "JOIN ON column 'L.X' cannot be resolved."),
            ("CREATE STREAM OUTPUT AS SELECT B FROM L JOIN L WITHIN 1 SECOND ON L.A = L.A;", "self joins are not yet supported"),
            ("CREATE STREAM OUTPUT AS SELECT * FROM L JOIN T ON L.B = T.C;", "the table's primary key"),
            ("CREATE STREAM OUTPUT AS SELECT * FROM L FULL JOIN T ON L.A = T.A;", "FULL OUTER join not supported for stream-table join"),
            ("CREATE STREAM OUTPUT AS SELECT L.A, L.A AS K2, C FROM L JOIN R WITHIN 1 SECOND ON L.A = R.A;", "more than once, aliased as: K2 and L_A"),
        ] {
            let e = plan(&[L, R, T], sql).err().unwrap_or_else(|| panic!("{sql} planned"));
            assert!(e.0.contains(message), "{sql}: {e}");
        }
    }

    #[test]
    fn struct_fields_join_under_a_synthetic_key() {
        let s1 = "CREATE STREAM S1 (ID INT KEY, A bigint, B STRUCT<C INT>) WITH (kafka_topic='left_topic', value_format='JSON');";
        let s2 = "CREATE STREAM S2 (ID INT KEY, X bigint, Y STRUCT<Z INT>) WITH (kafka_topic='right_topic', value_format='JSON');";
        let q = plan(&[s1, s2], "CREATE STREAM OUTPUT as SELECT *, S1.ROWTIME, S2.ROWTIME FROM S1 JOIN S2 WITHIN 1 MINUTE ON S1.B->C = S2.Y->Z;").unwrap();
        assert_eq!(names(&q.key), ["ROWKEY"]);
        let mut st = JoinState::default();
        q.process(Side::Left, input(&1i32.to_be_bytes(), Some(br#"{"A":1,"B":{"C":10}}"#), 20), &mut st, &NoFunctions).unwrap();
        let out = q.process(Side::Right, input(&2i32.to_be_bytes(), Some(br#"{"X":4,"Y":{"Z":10}}"#), 100), &mut st, &NoFunctions).unwrap();
        assert_eq!(text(&out).len(), 1, "{out:?}");
        assert_eq!(text(&out)[0].0, 10);
    }

    #[test]
    fn a_stream_looks_up_the_table_as_of_its_own_time() {
        let q = plan(&[L, T], "CREATE STREAM OUTPUT AS SELECT L.A, B, C FROM L LEFT JOIN T ON L.A = T.A;").unwrap();
        let mut st = JoinState::default();
        let k = 1i32.to_be_bytes();
        let out = q.process(Side::Left, input(&k, Some(br#"{"B":1}"#), 10), &mut st, &NoFunctions).unwrap();
        assert_eq!(text(&out), [(1, Some(r#"{"B":1,"C":null}"#.into()), 10)]);
        assert!(q.process(Side::Right, input(&k, Some(br#"{"C":7}"#), 11), &mut st, &NoFunctions).unwrap().is_empty());
        let out = q.process(Side::Left, input(&k, Some(br#"{"B":2}"#), 12), &mut st, &NoFunctions).unwrap();
        assert_eq!(text(&out), [(1, Some(r#"{"B":2,"C":7}"#.into()), 12)]);
        q.process(Side::Right, input(&k, None, 13), &mut st, &NoFunctions).unwrap();
        let out = q.process(Side::Left, input(&k, Some(br#"{"B":3}"#), 14), &mut st, &NoFunctions).unwrap();
        assert_eq!(text(&out), [(1, Some(r#"{"B":3,"C":null}"#.into()), 14)]);
    }

    #[test]
    fn stream_stream_joins_within_the_window_and_outer_rows_wait_for_grace() {
        let q = plan(&[L, R], "CREATE STREAM OUTPUT AS SELECT L.A, B, C FROM L LEFT JOIN R WITHIN 10 MILLISECONDS GRACE PERIOD 5 MILLISECONDS ON L.A = R.A;").unwrap();
        let mut st = JoinState::default();
        let (k1, k2) = (1i32.to_be_bytes(), 2i32.to_be_bytes());
        assert!(q.process(Side::Left, input(&k1, Some(br#"{"B":1}"#), 100), &mut st, &NoFunctions).unwrap().is_empty());
        let out = q.process(Side::Right, input(&k1, Some(br#"{"C":5}"#), 105), &mut st, &NoFunctions).unwrap();
        assert_eq!(text(&out), [(1, Some(r#"{"B":1,"C":5}"#.into()), 105)]);
        // Outside the window: no match; the left row waits for its window to close.
        assert!(q.process(Side::Left, input(&k2, Some(br#"{"B":2}"#), 110), &mut st, &NoFunctions).unwrap().is_empty());
        assert!(q.process(Side::Right, input(&k2, Some(br#"{"C":6}"#), 121), &mut st, &NoFunctions).unwrap().is_empty());
        let out = q.process(Side::Right, input(&k1, Some(br#"{"C":7}"#), 126), &mut st, &NoFunctions).unwrap();
        assert_eq!(text(&out), [(2, Some(r#"{"B":2,"C":null}"#.into()), 110)]);
    }

    #[test]
    fn table_table_joins_send_deletes_only_for_rows_sent() {
        let t2 = "CREATE TABLE T2 (A INT PRIMARY KEY, E INT) WITH (kafka_topic='t2', value_format='JSON');";
        let q = plan(&[T, t2], "CREATE TABLE OUTPUT AS SELECT T.A, C, E FROM T JOIN T2 ON T.A = T2.A WHERE E > 0;").unwrap();
        let mut st = JoinState::default();
        let k = 1i32.to_be_bytes();
        assert!(q.process(Side::Left, input(&k, Some(br#"{"C":1}"#), 1), &mut st, &NoFunctions).unwrap().is_empty());
        // Filtered out, and nothing was sent: no delete either.
        assert!(q.process(Side::Right, input(&k, Some(br#"{"E":0}"#), 2), &mut st, &NoFunctions).unwrap().is_empty());
        let out = q.process(Side::Right, input(&k, Some(br#"{"E":3}"#), 3), &mut st, &NoFunctions).unwrap();
        assert_eq!(text(&out), [(1, Some(r#"{"C":1,"E":3}"#.into()), 3)]);
        let out = q.process(Side::Left, input(&k, None, 4), &mut st, &NoFunctions).unwrap();
        assert_eq!(text(&out), [(1, None, 4)]);
        assert!(q.process(Side::Right, input(&k, None, 5), &mut st, &NoFunctions).unwrap().is_empty());
    }

    #[test]
    fn foreign_key_joins_follow_both_tables() {
        let q = plan(&[U, T], "CREATE TABLE OUTPUT AS SELECT ID, D, C FROM U JOIN T ON U.A = T.A;").unwrap();
        assert_eq!(q.shape, Shape::ForeignKey);
        assert_eq!(names(&q.key), ["ID"]);
        let mut st = JoinState::default();
        let (id1, id2, a) = (1i32.to_be_bytes(), 2i32.to_be_bytes(), 9i32.to_be_bytes());
        assert!(q.process(Side::Left, input(&id1, Some(br#"{"A":9,"D":1}"#), 1), &mut st, &NoFunctions).unwrap().is_empty());
        q.process(Side::Left, input(&id2, Some(br#"{"A":9,"D":2}"#), 2), &mut st, &NoFunctions).unwrap();
        let out = q.process(Side::Right, input(&a, Some(br#"{"C":5}"#), 3), &mut st, &NoFunctions).unwrap();
        assert_eq!(
            text(&out),
            [(1, Some(r#"{"D":1,"C":5}"#.into()), 3), (2, Some(r#"{"D":2,"C":5}"#.into()), 3)]
        );
        let out = q.process(Side::Right, input(&a, None, 4), &mut st, &NoFunctions).unwrap();
        assert_eq!(text(&out), [(1, None, 4), (2, None, 4)]);
    }
}
