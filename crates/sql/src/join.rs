//! Joins, as ksqlDB plans and Kafka Streams runs them: stream–stream within a window
//! (WITHIN before/after, GRACE PERIOD), stream–table (the stream looks the table up by its
//! primary key), table–table on primary keys, and table–table on a foreign key; INNER,
//! LEFT, RIGHT and FULL OUTER where ksqlDB allows them; and chains of them
//! (`A JOIN B ON … JOIN C ON …`), each join taking the result of the one before as its left
//! input.
//!
//! Naming follows ksqlDB: the joined row has every column of each source prefixed with its
//! alias (`L_A`, `R_B`); `SELECT *` yields those names; a qualified column (`L.B`) keeps its
//! bare name when no other source has a column of that name. The result's key is the last
//! join's key, named after the first projected column that joins on it (or `ROWKEY` when
//! none does, and always after a FULL OUTER join).
//!
//! Pure: `JoinQuery::process` takes one record of one input and the join's state and
//! returns the records to write; the engine feeds the inputs in timestamp order. The state
//! holds the table inputs' rows and the stream inputs' windowed buffers, per join; it is
//! rebuilt after a restart by replaying the inputs up to the query's committed positions,
//! so it needs no changelog. A single stream–table join's table may instead live in the
//! engine's state store ([`TableRows`]), which records the table positions it covers: a
//! restart then replays only the table's records past them.

use std::collections::{BTreeMap, BTreeSet};

use crate::analyzer::{select_columns, AnalysisError, OutputColumn, Scope};
use crate::ast::{Expr, JoinType, Query, SelectItem, SourceKind, SqlType};
use crate::catalog::{Catalog, Column, Source};
use crate::eval::{cast, eval, eval_column, eval_condition, Functions, Row};
use crate::format::{json_text, serialize};
use crate::pipeline::{RecordIn, RecordOut, Sink};
use crate::value::Value;

fn err(m: impl Into<String>) -> AnalysisError {
    AnalysisError(m.into())
}

/// Grace of a stream–stream join without GRACE PERIOD (Kafka Streams' old default).
const DEFAULT_GRACE_MS: i64 = 24 * 3_600_000;

/// Which input of one join a row comes from.
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

/// How the two inputs of one join meet.
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

/// One source read by a join query, and where its columns sit in the joined row.
pub struct JoinInput {
    pub source: Source,
    /// The prefix of its columns (its alias, else its name).
    pub alias: String,
    offset: usize,
}

impl JoinInput {
    fn width(&self) -> usize {
        self.source.key.len() + self.source.value.len() + PSEUDO.len()
    }
}

/// One join of the chain: the result so far (or the first input) with input `index + 1`.
struct JoinNode {
    kind: JoinType,
    shape: Shape,
    /// The join expressions over the joined row's names.
    left_expr: Expr,
    right_expr: Expr,
    /// The left join key is the previous join's key (its expression joins on it).
    left_is_previous_key: bool,
    key_type: SqlType,
}

/// A planned join query.
pub struct JoinQuery {
    pub inputs: Vec<JoinInput>,
    nodes: Vec<JoinNode>,
    pub produces: SourceKind,
    /// Whether the key is computed from the joined row (a foreign-key join's left key,
    /// PARTITION BY) rather than being the join key.
    key_from_row: bool,
    /// The joined row's column names: the synthetic key, each input's columns and pseudo
    /// columns (prefixed), then the row's own ROWTIME, ROWPARTITION, ROWOFFSET.
    names: Vec<String>,
    pub key: Vec<OutputColumn>,
    pub value: Vec<OutputColumn>,
    pub filter: Option<Expr>,
    pub sink: Sink,
    /// Every join is on both sides' keys (the left one's key carried from the join before),
    /// none on a foreign key, and the inputs' keys are written alike (one column of one
    /// type, one key format): records that join share a key, so a partition number, when
    /// the inputs have as many partitions. Such a join can run one task per partition.
    pub co_partitioned: bool,
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
    source
        .key
        .iter()
        .chain(&source.value)
        .any(|c| c.name == name)
}

fn column(name: &str) -> Expr {
    Expr::Column {
        source: None,
        name: name.to_string(),
    }
}

fn kind_text(kind: JoinType) -> &'static str {
    match kind {
        JoinType::Inner => "INNER",
        JoinType::Left => "LEFT",
        JoinType::Right => "RIGHT",
        JoinType::Full => "FULL",
    }
}

/// Plans `query` (joins, no aggregation) writing to `sink`.
pub fn plan_join(
    query: &Query,
    catalog: &Catalog,
    sink_name: &str,
    sink: Sink,
) -> Result<JoinQuery, AnalysisError> {
    if !query.group_by.is_empty() || query.window.is_some() {
        return Err(err(
            "A join with GROUP BY or WINDOW is planned as an aggregation over the join.",
        ));
    }
    plan_join_inner(query, catalog, sink_name, sink, false).map(|(j, _)| j)
}

/// The join of an aggregation over a join (`… FROM a JOIN b … GROUP BY …`): the join,
/// emitting its joined rows, and the aggregation rewritten over them, reading the joined
/// row's source (`KSQL_JOINED`, each input's columns prefixed with its alias).
pub fn plan_join_rows(
    query: &Query,
    catalog: &Catalog,
) -> Result<(JoinQuery, Source, Query), AnalysisError> {
    let sink = Sink {
        key_format: crate::format::Format::Kafka,
        value_format: crate::format::Format::Json,
        wrap_single_value: true,
        timestamp_column: None,
    };
    let (j, rest) = plan_join_inner(query, catalog, "", sink, true)?;
    let (joined, rewritten) = rest.expect("rows_only gives the rewritten query");
    if j.produces == SourceKind::Table {
        return Err(err(
            "Aggregating the result of a table-table join is not supported yet.",
        ));
    }
    Ok((j, joined, rewritten))
}

fn plan_join_inner(
    query: &Query,
    catalog: &Catalog,
    sink_name: &str,
    sink: Sink,
    rows_only: bool,
) -> Result<(JoinQuery, Option<(Source, Query)>), AnalysisError> {
    if query.joins.is_empty() {
        return Err(err("not a join"));
    }
    let find = |name: &str| {
        catalog
            .get(name)
            .cloned()
            .ok_or_else(|| err(format!("{name} does not exist.")))
    };
    // The inputs, in order, with their aliases.
    let mut sources: Vec<(String, Source)> = Vec::new();
    let first = find(&query.from)?;
    sources.push((
        query
            .from_alias
            .clone()
            .unwrap_or_else(|| first.name.clone()),
        first,
    ));
    for j in &query.joins {
        let s = find(&j.source)?;
        sources.push((j.alias.clone().unwrap_or_else(|| s.name.clone()), s));
    }
    for (i, (alias, s)) in sources.iter().enumerate() {
        for (other_alias, o) in &sources[..i] {
            if o.name == s.name && sources.len() > 2 {
                return Err(err(format!(
                    "N-way joins do not support multiple occurrences of the same source. Source: '{}'",
                    s.name
                )));
            }
            if o.name == s.name {
                return Err(err(format!(
                    "Can not join '{}' to '{}': self joins are not yet supported.",
                    o.name, s.name
                )));
            }
            if other_alias == alias {
                return Err(err(format!(
                    "Can not join '{}' to '{}': self joins requires aliases to be specified for both sides.",
                    o.name, s.name
                )));
            }
        }
    }
    let qualifier_input = |q: &str| -> Option<usize> {
        sources
            .iter()
            .position(|(alias, _)| q == alias.as_str())
            .or_else(|| sources.iter().position(|(_, s)| q == s.name))
    };
    // The synthetic key's name: ROWKEY unless an input has a column by that name.
    let mut key_name = "ROWKEY".to_string();
    let mut n = 0;
    while sources.iter().any(|(a, s)| {
        has_column(s, &key_name) || side_columns(s).any(|(c, _)| format!("{a}_{c}") == key_name)
    }) {
        n += 1;
        key_name = format!("ROWKEY_{n}");
    }
    // Rewrites a column reference to the joined row's name.
    let resolve = |qualifier: Option<&str>,
                   name: &str|
     -> Result<(String, Option<usize>), AnalysisError> {
        match qualifier {
            Some(q) => {
                let i = qualifier_input(q).ok_or_else(|| {
                    err(format!(
                        "Failed to prepare statement: '{q}' is not a valid stream/table name or alias."
                    ))
                })?;
                let (alias, source) = &sources[i];
                if has_column(source, name) || PSEUDO.contains(&name) {
                    Ok((format!("{alias}_{name}"), Some(i)))
                } else {
                    Err(err(format!("Column '{q}.{name}' cannot be resolved.")))
                }
            }
            None => {
                if name == key_name || PSEUDO.contains(&name) {
                    return Ok((name.to_string(), None));
                }
                let holders: Vec<usize> = (0..sources.len())
                    .filter(|&i| has_column(&sources[i].1, name))
                    .collect();
                match holders.as_slice() {
                    [i] => Ok((format!("{}_{name}", sources[*i].0), Some(*i))),
                    [] => Err(err(format!("Column '{name}' cannot be resolved."))),
                    many => Err(err(format!(
                        "Column '{name}' is ambiguous. Could be {}.",
                        many.iter()
                            .map(|&i| format!("{}.{name}", sources[i].0))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ))),
                }
            }
        }
    };
    let rewrite = |e: &Expr| -> Result<Expr, AnalysisError> {
        let mut failure = None;
        let out = e.rewrite(&mut |x| match x {
            Expr::Column { source, name } => match resolve(source.as_deref(), name) {
                Ok((n, _)) => Some(column(&n)),
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
    // Which inputs an expression reads.
    let inputs_of = |e: &Expr| -> Result<BTreeSet<usize>, AnalysisError> {
        let mut seen = BTreeSet::new();
        let mut failure = None;
        e.rewrite(&mut |x| {
            if let Expr::Column { source, name } = x {
                match resolve(source.as_deref(), name) {
                    Ok((_, Some(i))) => {
                        seen.insert(i);
                    }
                    Ok((_, None)) => {}
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
        Ok(seen)
    };
    // The joined row's schema, for typing.
    let mut names = vec![key_name.clone()];
    let mut joined_columns = Vec::new();
    let mut inputs = Vec::new();
    for (alias, s) in &sources {
        let offset = names.len();
        for (c, t) in side_columns(s) {
            names.push(format!("{alias}_{c}"));
            joined_columns.push(Column {
                name: format!("{alias}_{c}"),
                sql_type: t,
                header: None,
            });
        }
        inputs.push(JoinInput {
            source: s.clone(),
            alias: alias.clone(),
            offset,
        });
    }
    names.extend(PSEUDO.map(String::from));
    let mut joined = Source {
        name: "KSQL_JOINED".to_string(),
        kind: SourceKind::Stream,
        key: Vec::new(),
        value: joined_columns,
        topic: String::new(),
        key_format: sources[0].1.key_format.clone(),
        value_format: sources[0].1.value_format.clone(),
        wrap_single_value: true,
        timestamp_column: None,
        timestamp_format: None,
        read_only: true,
    };
    // Every criterion first: each side reads exactly one source, not both the same.
    for join in &query.joins {
        if let Expr::Binary {
            op: crate::ast::BinaryOp::Eq,
            left,
            right,
        } = &join.on
        {
            let (ia, ib) = (inputs_of(left)?, inputs_of(right)?);
            if ia.len() == 1 && ia == ib {
                let name = &sources[*ia.iter().next().expect("one")].1.name;
                return Err(err(format!(
                    "Each side of the join must reference exactly one source and not the same source. Left side references `{name}` and right references `{name}`"
                )));
            }
        }
    }
    // The chain of joins.
    let mut nodes: Vec<JoinNode> = Vec::new();
    let mut previous_full = false;
    let first_key = sources[0].1.key.first().map(|k| k.sql_type.clone());
    let mut co_partitioned = sources.iter().all(|(_, s)| {
        s.key.len() == 1
            && s.key_format == sources[0].1.key_format
            && Some(&s.key[0].sql_type) == first_key.as_ref()
    });
    let mut result_kind = sources[0].1.kind;
    // Joined-row names that hold the current result's key (empty after FULL OUTER).
    let mut equivalent: Vec<String> = Vec::new();
    let mut key_type = SqlType::Int;
    for (j, join) in query.joins.iter().enumerate() {
        let right_index = j + 1;
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
        let (ia, ib) = (inputs_of(&a)?, inputs_of(&b)?);
        let single = |s: &BTreeSet<usize>| (s.len() == 1).then(|| *s.iter().next().expect("one"));
        let (sa, sb) = (single(&ia), single(&ib));
        if sa.is_none() || sb.is_none() {
            let culprit = if sa.is_none() { &a } else { &b };
            return Err(err(format!(
                "Invalid comparison expression '{}' in join '{}'. Each side of the join comparision must contain references from exactly one source.",
                crate::analyzer::format_expr(culprit),
                crate::analyzer::format_expr(&join.on)
            )));
        }
        let (sa, sb) = (sa.expect("checked"), sb.expect("checked"));
        if sa == sb {
            return Err(err(format!(
                "Each side of the join must reference exactly one source and not the same source. Left side references `{}` and right references `{}`",
                sources[sa].1.name, sources[sb].1.name
            )));
        }
        let (left_on, right_on) = if sb == right_index && sa < right_index {
            (a, b)
        } else if sa == right_index && sb < right_index {
            (b, a)
        } else if right_index == 1 {
            (a, b)
        } else {
            let (l, r) = if sb > sa { (sa, sb) } else { (sb, sa) };
            return Err(err(format!(
                "A join criteria is expected to reference the source (`{}`) in the FROM clause, instead the right source references `{}` and the left source references `{}`",
                sources[right_index].1.name, sources[r].1.name, sources[l].1.name
            )));
        };
        let left_expr = rewrite(&left_on)?;
        let right_expr = rewrite(&right_on)?;
        let scope = Scope {
            source: &joined,
            alias: None,
        };
        let lt = crate::analyzer::type_of(&left_expr, &scope)?;
        let rt = crate::analyzer::type_of(&right_expr, &scope)?;
        key_type = match (lt, rt) {
            (Some(l), Some(r)) if l == r => l,
            (l, r) => {
                let name = |t: Option<SqlType>| {
                    t.map_or("NULL".to_string(), |t| crate::value::type_name(&t))
                };
                let qualified = |e: &Expr| {
                    e.rewrite(&mut |x| match x {
                        Expr::Column { source: None, name } => resolve(None, name)
                            .ok()
                            .and_then(|(_, i)| i)
                            .map(|i| Expr::Column {
                                source: Some(sources[i].0.clone()),
                                name: name.clone(),
                            }),
                        _ => None,
                    })
                };
                return Err(err(format!(
                    "Invalid join condition: types don't match. Got {}{{{}}} = {}{{{}}}.",
                    crate::analyzer::format_expr(&qualified(&left_on)),
                    name(l),
                    crate::analyzer::format_expr(&qualified(&right_on)),
                    name(r)
                )));
            }
        };
        let right = &sources[right_index].1;
        let is_key_column = |e: &Expr, input: usize| match e {
            Expr::Column { name, .. } => {
                let s = &sources[input].1;
                s.key.len() == 1 && *name == format!("{}_{}", sources[input].0, s.key[0].name)
            }
            _ => false,
        };
        let as_column = |e: &Expr| match e {
            Expr::Column { name, .. } => Some(name.clone()),
            _ => None,
        };
        // (After a FULL OUTER join the column may be NULL where the key is not: the
        // column's value is what joins, as in ksqlDB.)
        let left_is_previous_key =
            j > 0 && as_column(&left_expr).is_some_and(|c| equivalent.contains(&c));
        let key_from_previous = left_is_previous_key && !previous_full;
        let left_is_key = if j == 0 {
            is_key_column(&left_expr, 0)
        } else {
            left_is_previous_key
        };
        let order_error = || {
            err(format!(
                "Invalid join order: table-stream joins are not supported; only stream-table joins. Got {} [{}] JOIN {}.",
                sources[0].1.name,
                kind_text(join.kind),
                right.name
            ))
        };
        let shape = match (result_kind, right.kind) {
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
                if !is_key_column(&right_expr, right_index) {
                    return Err(err(format!(
                        "Invalid join condition: stream-table joins require to join on the table's primary key. Got {} = {}.",
                        crate::analyzer::format_expr(&left_on),
                        crate::analyzer::format_expr(&right_on)
                    )));
                }
                Shape::StreamTable
            }
            (SourceKind::Table, SourceKind::Stream) => return Err(order_error()),
            (SourceKind::Table, SourceKind::Table) => {
                if join.within.is_some() {
                    return Err(err("A window definition was provided for a Table-Table join. These joins are not windowed. Please drop the window definition (i.e. the WITHIN clause) and try to submit your query again."));
                }
                let rk = is_key_column(&right_expr, right_index);
                if left_is_key && rk {
                    Shape::TableTable
                } else if rk {
                    if matches!(join.kind, JoinType::Right | JoinType::Full) {
                        return Err(err(format!(
                            "{} OUTER JOIN on a foreign key is not supported",
                            if join.kind == JoinType::Full {
                                "FULL"
                            } else {
                                "RIGHT"
                            },
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
        let left_keyed = if j == 0 {
            is_key_column(&left_expr, 0)
        } else {
            key_from_previous
        };
        co_partitioned &=
            shape != Shape::ForeignKey && left_keyed && is_key_column(&right_expr, right_index);
        // The columns that hold this join's key from now on.
        let mut now: Vec<String> = Vec::new();
        if shape == Shape::ForeignKey {
            if j == 0 {
                now.extend(
                    sources[0]
                        .1
                        .key
                        .iter()
                        .map(|k| format!("{}_{}", sources[0].0, k.name)),
                );
            } else {
                now = equivalent.clone();
            }
        } else {
            now.extend(as_column(&left_expr));
            now.extend(as_column(&right_expr));
            if left_is_previous_key || (now.is_empty() && join.kind != JoinType::Full) {
                for c in &equivalent {
                    if !now.contains(c) {
                        now.push(c.clone());
                    }
                }
            }
        }
        // After FULL OUTER the key is only the synthetic one for naming, but later joins
        // on either side's column still join on it.
        nodes.push(JoinNode {
            kind: join.kind,
            shape,
            left_expr,
            right_expr,
            left_is_previous_key: key_from_previous,
            key_type: key_type.clone(),
        });
        previous_full = join.kind == JoinType::Full;
        equivalent = now;
        result_kind = if result_kind == SourceKind::Table && right.kind == SourceKind::Table {
            SourceKind::Table
        } else {
            SourceKind::Stream
        };
    }
    let last = nodes.last().expect("at least one join");
    let last_kind = last.kind;
    let last_shape = last.shape;
    let produces = result_kind;
    joined.kind = produces;
    joined.value.insert(
        0,
        Column {
            name: key_name.clone(),
            sql_type: key_type.clone(),
            header: None,
        },
    );
    let mut candidates: Vec<String> =
        if last_kind == JoinType::Full && last_shape != Shape::ForeignKey {
            Vec::new()
        } else {
            equivalent.clone()
        };
    let synthetic_key = candidates.is_empty();
    if synthetic_key {
        candidates.push(key_name.clone());
    }
    // With PARTITION BY, ksqlDB's `*` also carries each input's pseudo columns, its key
    // columns after its value columns.
    let partitioned = !query.partition_by.is_empty();
    let star = |i: usize| -> Vec<SelectItem> {
        let (alias, s) = &sources[i];
        let names: Vec<&str> = if partitioned {
            s.value
                .iter()
                .map(|c| c.name.as_str())
                .chain(PSEUDO)
                .chain(s.key.iter().map(|c| c.name.as_str()))
                .collect()
        } else {
            s.key
                .iter()
                .chain(&s.value)
                .map(|c| c.name.as_str())
                .collect()
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
                for i in 0..sources.len() {
                    select.extend(star(i));
                }
            }
            SelectItem::All { source: Some(q) } => {
                let i = qualifier_input(q).ok_or_else(|| {
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
                    (
                        None,
                        Expr::Column {
                            source: Some(q),
                            name,
                        },
                    ) => {
                        let holders = sources.iter().filter(|(_, s)| has_column(s, name)).count();
                        let shared = holders > 1 || PSEUDO.contains(&name.as_str());
                        Some(match (shared, qualifier_input(q)) {
                            (true, Some(i)) => format!("{}_{name}", sources[i].0),
                            _ => name.clone(),
                        })
                    }
                    (None, Expr::Column { source: None, name }) => Some(name.clone()),
                    _ => None,
                };
                let expr = rewrite(expr)
                    .map_err(|e| crate::analyzer::unresolved_in("SELECT", &e).unwrap_or(e))?;
                select.push(SelectItem::Expr {
                    expr,
                    alias: out_alias,
                });
            }
        }
    }
    if query.partition_by.len() > 1 {
        return Err(err("PARTITION BY on a join takes one expression."));
    }
    let partition_by = match query.partition_by.first() {
        None | Some(Expr::Literal(crate::ast::Literal::Null)) => None,
        Some(p) => Some(rewrite(p)?),
    };
    if rows_only {
        let rewritten = Query {
            select,
            from: joined.name.clone(),
            from_alias: None,
            joins: Vec::new(),
            window: query.window.clone(),
            where_clause: query.where_clause.as_ref().map(&rewrite).transpose()?,
            group_by: query
                .group_by
                .iter()
                .map(&rewrite)
                .collect::<Result<_, _>>()?,
            partition_by: Vec::new(),
            having: query.having.as_ref().map(&rewrite).transpose()?,
            emit: query.emit,
            limit: query.limit,
        };
        let j = JoinQuery {
            inputs,
            key_from_row: false,
            nodes,
            produces,
            names,
            key: Vec::new(),
            value: Vec::new(),
            filter: None,
            sink,
            co_partitioned,
        };
        return Ok((j, Some((joined, rewritten))));
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
    let mut scratch = Catalog::default();
    scratch
        .insert_derived(joined.clone(), true)
        .map_err(|e| err(e.0))?;
    let mut selected = select_columns(&rewritten, &scratch)?;
    // The key: the first projected column holding it (earlier joins' columns first).
    let is_candidate = |c: &OutputColumn, name: &str| matches!(&c.expr, Expr::Column { source: None, name: n } if n == name);
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
            let shown: Vec<String> = candidates
                .iter()
                .map(|c| {
                    let i = sources
                        .iter()
                        .position(|(a, _)| c.starts_with(&format!("{a}_")))
                        .unwrap_or(0);
                    format!("{}.{}", sources[i].0, &c[sources[i].0.len() + 1..])
                })
                .collect();
            let mut shown = shown;
            // In the order of the inputs: `A.ID, B.ID or C.ID`.
            shown.sort_by_key(|c| {
                sources
                    .iter()
                    .position(|(a, _)| c.starts_with(&format!("{a}.")))
                    .unwrap_or(0)
            });
            let (what, list) = match shown.len() {
                1 => ("expression", shown[0].clone()),
                n => (
                    "expressions",
                    format!("{} or {}", shown[..n - 1].join(", "), shown[n - 1]),
                ),
            };
            return Err(err(format!(
                "The query used to build `{sink_name}` must include the join {what} {list} in its projection (eg, SELECT {}...).",
                shown[0]
            )));
        }
    };
    // The key once only.
    if let Expr::Column {
        name: key_column, ..
    } = &key.expr
    {
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
    Ok((
        JoinQuery {
            inputs,
            key_from_row: last_shape == Shape::ForeignKey || partition_by.is_some(),
            nodes,
            produces,
            names,
            key: vec![key],
            value: selected,
            filter: rewritten.where_clause,
            sink,
            co_partitioned,
        },
        None,
    ))
}

/// A row as one join holds it: the joined row so far (inputs not joined yet are NULL),
/// its join key, the key of the result it came from, and its timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    values: Vec<Value>,
    join_key: Value,
    /// A foreign-key join's left key (the result's key).
    own_key: Value,
    timestamp: i64,
}

impl Stored {
    /// The row in a compact binary form, for a state store ([`Stored::decode`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 8 * self.values.len());
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        self.join_key.encode_stored(&mut out);
        self.own_key.encode_stored(&mut out);
        Value::Array(self.values.clone()).encode_stored(&mut out);
        out
    }

    /// A row [`Stored::encode`] wrote; None if malformed.
    pub fn decode(bytes: &[u8]) -> Option<Stored> {
        let mut input = bytes;
        let timestamp = i64::from_le_bytes(input.get(..8)?.try_into().ok()?);
        input = &input[8..];
        let join_key = Value::decode_stored(&mut input)?;
        let own_key = Value::decode_stored(&mut input)?;
        let Value::Array(values) = Value::decode_stored(&mut input)? else {
            return None;
        };
        input.is_empty().then_some(Stored {
            values,
            join_key,
            own_key,
            timestamp,
        })
    }
}

/// Where a stream–table join keeps its table's rows when they are not simply in memory
/// (see [`JoinQuery::table_in_store`]): by key text, the engine's state store with a
/// bounded cache, so the table may outgrow memory and a restart need not read it again.
pub trait TableRows: Send {
    fn get(&mut self, key: &str) -> Option<Stored>;
    fn insert(&mut self, key: String, row: Stored);
    fn remove(&mut self, key: &str);
}

/// A [`TableRows`] in a join's state.
pub struct ExternalRows(pub Box<dyn TableRows>);

impl std::fmt::Debug for ExternalRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExternalRows")
    }
}

/// A change flowing from an input, or from one join to the next.
#[derive(Debug, Clone)]
struct Change {
    values: Vec<Value>,
    /// The key of the result it belongs to (None from an input).
    key: Option<Value>,
    tombstone: bool,
    timestamp: i64,
}

/// What one join remembers: table rows by key, stream records in their windows, outer
/// rows waiting for their window to close, and stream time.
#[derive(Debug, Default)]
struct NodeState {
    /// Table rows by key text (a foreign-key join's left table by its own key).
    tables: [BTreeMap<String, Stored>; 2],
    /// Stream records by (join key text, timestamp, arrival).
    buffers: [BTreeMap<(String, i64, u64), Stored>; 2],
    /// Stream records not matched yet, waiting for their window to close.
    pending: [BTreeSet<(String, i64, u64)>; 2],
    /// A stream–table join's table rows when they live outside `tables` (in a store).
    external: Option<ExternalRows>,
    /// A foreign-key join's left rows by (foreign key text, own key text): a change on the
    /// right finds the rows referring to it without a scan of the left table.
    by_foreign_key: BTreeSet<(String, String)>,
    stream_time: Option<i64>,
    /// Each stream side's own stream time (its window store's retention).
    side_time: [Option<i64>; 2],
    arrivals: u64,
}

/// A join query's state: each join's, and the result keys a table result has sent.
#[derive(Debug, Default)]
pub struct JoinState {
    nodes: Vec<NodeState>,
    /// A table result's keys that have a row downstream (a deletion is only sent for them).
    present: BTreeSet<Vec<u8>>,
}

impl JoinState {
    /// The state of `query` (which must be [`JoinQuery::table_in_store`]) with its
    /// table's rows in `rows` rather than in memory.
    pub fn with_table_rows(query: &JoinQuery, rows: Box<dyn TableRows>) -> JoinState {
        let mut nodes: Vec<NodeState> = Vec::new();
        nodes.resize_with(query.nodes.len(), NodeState::default);
        if let Some(first) = nodes.first_mut() {
            first.external = Some(ExternalRows(rows));
        }
        JoinState {
            nodes,
            present: BTreeSet::new(),
        }
    }

    /// Rows and records held in memory (rows in a store are not counted).
    pub fn len(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| {
                n.tables.iter().map(|t| t.len()).sum::<usize>()
                    + n.buffers.iter().map(|b| b.len()).sum::<usize>()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct JoinedRow<'a> {
    names: &'a [String],
    values: &'a [Value],
}

impl Row for JoinedRow<'_> {
    fn column(&self, _source: Option<&str>, name: &str) -> Option<&Value> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.values[i])
    }
}

/// How much of an input a restarted join must read again to rebuild its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// From its start: a table's rows (or a stream in a chain of windowed joins, where
    /// results of results are kept and no tighter bound is proven).
    Full,
    /// Nothing: a stream that only looks tables up keeps no state.
    Skip,
    /// The records no older than the inputs' stream time less this many milliseconds
    /// (the window's retention): a stream in the chain's first, windowed join. The stream
    /// time taken is the smallest of these inputs', so nothing a window still holds is
    /// left out.
    Within(i64),
}

impl JoinQuery {
    /// Whether the join's table rows may live in a state store ([`TableRows`]): a single
    /// stream–table join, whose only state is its table's latest row per key, each row
    /// coming straight from the table input (so a restart continues from the positions the
    /// store covers).
    pub fn table_in_store(&self) -> bool {
        self.nodes.len() == 1 && self.nodes[0].shape == Shape::StreamTable
    }

    /// What each input must replay after a restart, in input order. `repartitioned`: the
    /// inputs are read from repartition topics, whose records carry their event time as
    /// their timestamp (so the log's time index finds it even from a TIMESTAMP column).
    pub fn replay(&self, repartitioned: bool) -> Vec<Replay> {
        let windowed: Vec<usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.shape, Shape::StreamStream { .. }))
            .map(|(i, _)| i)
            .collect();
        self.inputs
            .iter()
            .map(|input| {
                if input.source.kind == SourceKind::Table {
                    return Replay::Full;
                }
                match windowed.as_slice() {
                    [] => Replay::Skip,
                    // The first join, over two streams read directly: each side's window
                    // store holds records by that side's own stream time. (Event time from
                    // a TIMESTAMP column is not what the log's time index finds.)
                    [0] if repartitioned
                        || self.inputs[..2]
                            .iter()
                            .all(|i| i.source.timestamp_column.is_none()) =>
                    {
                        match self.nodes[0].shape {
                            Shape::StreamStream {
                                before,
                                after,
                                grace,
                            } => Replay::Within(
                                before
                                    .saturating_add(after)
                                    .saturating_add(grace.unwrap_or(DEFAULT_GRACE_MS)),
                            ),
                            _ => Replay::Full,
                        }
                    }
                    _ => Replay::Full,
                }
            })
            .collect()
    }

    /// Whether the join can run one task per partition after repartitioning both inputs
    /// by the join key ([`JoinQuery::join_key`]): one join of two inputs read from two
    /// topics, not on keys written alike: a stream–table join on a stream expression that
    /// is not its key (the table placed by its one key column: placing both sides
    /// ourselves, rather than only the stream as ksqlDB does, keeps it right whatever
    /// partitioner wrote the table; librdkafka's default is not Kafka's), or a
    /// stream–stream join.
    pub fn repartitionable(&self) -> bool {
        !self.co_partitioned
            && self.nodes.len() == 1
            && self.inputs.len() == 2
            && self.inputs[0].source.topic != self.inputs[1].source.topic
            && match self.nodes[0].shape {
                Shape::StreamTable => self.inputs[1].source.key.len() == 1,
                Shape::StreamStream { .. } => true,
                Shape::TableTable | Shape::ForeignKey => false,
            }
    }

    /// How far (ms of event time) one input of a split join may be processed ahead of
    /// the other's latest record without changing the join's results, were the other's
    /// next records still on their way: a stream–table join not at all (a stream record
    /// must meet the table as it was at its time); a stream–stream join by its grace
    /// period (outer rows' windows close at stream time less the grace; without one,
    /// ksqlDB's default of a day, and the window stores keep at least the smaller
    /// window more). None for joins that are not split.
    pub fn input_skew_tolerance(&self) -> Option<i64> {
        if !self.repartitionable() {
            return None;
        }
        match self.nodes[0].shape {
            Shape::StreamTable => Some(0),
            Shape::StreamStream {
                before,
                after,
                grace,
            } => Some(match grace {
                Some(g) => g,
                None => before.min(after).saturating_add(DEFAULT_GRACE_MS),
            }),
            Shape::TableTable | Shape::ForeignKey => None,
        }
    }

    /// Whether the second input is a table (a repartitioned join then reads it whole,
    /// from a compacted repartition topic).
    pub fn second_is_table(&self) -> bool {
        self.inputs
            .get(1)
            .is_some_and(|i| i.source.kind == SourceKind::Table)
    }

    /// Where a record of input `input` goes when a repartitionable join's inputs are
    /// placed by join key: the bytes whose hash places it, and its event time. A
    /// stream–table join's stream record gives the table key it looks up, written as the
    /// table writes its keys (the bytes that place it with the table's row); a
    /// stream–stream join's records give their join value (of the join's one type) as
    /// JSON, alike on both sides. None for the bytes when the record meets nothing (a NULL
    /// join value); None in all when it cannot be read.
    pub fn join_key(
        &self,
        input: usize,
        record: RecordIn<'_>,
        functions: &dyn Functions,
    ) -> Option<(Option<Vec<u8>>, i64)> {
        let inp = self.inputs.get(input)?;
        let node = self.nodes.first()?;
        let record = crate::pipeline::with_event_time(&inp.source, record).ok()?;
        let values = crate::pipeline::decode_values(&inp.source, record).ok()?;
        let mut row = vec![Value::Null; self.width()];
        row[inp.offset..inp.offset + values.len()].clone_from_slice(&values);
        let expr = if input == 0 {
            &node.left_expr
        } else {
            &node.right_expr
        };
        let value = self.eval_on(expr, &row, functions).ok()?;
        if value.is_null() {
            return Some((None, record.timestamp));
        }
        let bytes = match node.shape {
            Shape::StreamTable => {
                let table = &self.inputs.get(1)?.source;
                let value = cast(value, &table.key[0].sql_type).ok()?;
                serialize(&table.key_format, &table.key, &[value], false).ok()??
            }
            _ => json_text(&cast(value, &node.key_type).ok()?).into_bytes(),
        };
        Some((Some(bytes), record.timestamp))
    }

    /// The topic each input reads, in input order.
    pub fn topics(&self) -> Vec<&str> {
        self.inputs
            .iter()
            .map(|i| i.source.topic.as_str())
            .collect()
    }

    fn width(&self) -> usize {
        self.names.len()
    }

    fn row<'a>(&'a self, values: &'a [Value]) -> JoinedRow<'a> {
        JoinedRow {
            names: &self.names,
            values,
        }
    }

    fn eval_on(
        &self,
        e: &Expr,
        values: &[Value],
        functions: &dyn Functions,
    ) -> Result<Value, String> {
        eval(e, &self.row(values), functions).map_err(|e| e.to_string())
    }

    /// One record of input `input` through the chain of joins: the last join's changes.
    fn chain(
        &self,
        input: usize,
        record: RecordIn<'_>,
        state: &mut JoinState,
        functions: &dyn Functions,
    ) -> Result<Vec<Change>, String> {
        let inp = &self.inputs[input];
        let record = crate::pipeline::with_event_time(&inp.source, record)?;
        let values = crate::pipeline::decode_values(&inp.source, record)?;
        let mut row = vec![Value::Null; self.width()];
        row[inp.offset..inp.offset + values.len()].clone_from_slice(&values);
        let change = Change {
            values: row,
            key: None,
            tombstone: record.value.is_none(),
            timestamp: record.timestamp,
        };
        if state.nodes.len() < self.nodes.len() {
            state
                .nodes
                .resize_with(self.nodes.len(), NodeState::default);
        }
        // Through the chain: input 0 enters the first join on the left, input i the
        // join i - 1 on the right; each join's results enter the next on the left.
        let (mut node, mut side) = if input == 0 {
            (0, Side::Left)
        } else {
            (input - 1, Side::Right)
        };
        let mut changes = vec![change];
        loop {
            let mut next = Vec::new();
            for c in changes {
                next.extend(self.node_process(node, side, c, &mut state.nodes[node], functions)?);
            }
            changes = next;
            if node + 1 == self.nodes.len() || changes.is_empty() {
                break;
            }
            node += 1;
            side = Side::Left;
        }
        if node + 1 != self.nodes.len() {
            changes.clear();
        }
        Ok(changes)
    }

    /// The joined row's column names (the source an aggregation over the join reads).
    pub fn joined_names(&self) -> &[String] {
        &self.names
    }

    /// One record of input `input`: the joined rows it produces (values by
    /// [`JoinQuery::joined_names`], and timestamp), for an aggregation over a stream join.
    pub fn process_rows(
        &self,
        input: usize,
        record: RecordIn<'_>,
        state: &mut JoinState,
        functions: &dyn Functions,
    ) -> Result<Vec<(Vec<Value>, i64)>, String> {
        Ok(self
            .chain(input, record, state, functions)?
            .into_iter()
            .filter(|c| !c.tombstone)
            .map(|c| (c.values, c.timestamp))
            .collect())
    }

    /// One record of input `input`: the records the query writes for it.
    pub fn process(
        &self,
        input: usize,
        record: RecordIn<'_>,
        state: &mut JoinState,
        functions: &dyn Functions,
    ) -> Result<Vec<RecordOut>, String> {
        let changes = self.chain(input, record, state, functions)?;
        let mut out = Vec::new();
        for c in changes {
            if let Some(r) = self.output(&c, functions)? {
                out.push(r);
            }
        }
        if self.produces == SourceKind::Table
            && self
                .nodes
                .last()
                .is_some_and(|n| n.shape == Shape::TableTable)
        {
            out.retain(|r| {
                let key = r.key.clone().unwrap_or_default();
                match r.value {
                    Some(_) => {
                        state.present.insert(key);
                        true
                    }
                    None => state.present.remove(&key),
                }
            });
        }
        Ok(out)
    }

    /// A result change as the record written (a tombstone for a deleted row, or a table's
    /// row that no longer passes WHERE).
    fn output(&self, c: &Change, functions: &dyn Functions) -> Result<Option<RecordOut>, String> {
        let result_key = c.key.clone().unwrap_or(Value::Null);
        let key_value = if self.key_from_row && !c.tombstone {
            self.eval_on(&self.key[0].expr, &c.values, functions)?
        } else {
            result_key
        };
        let key_value = cast(key_value, &self.key[0].sql_type).map_err(|e| e.to_string())?;
        let key = serialize(
            &self.sink.key_format,
            &OutputColumn::name_types(&self.key),
            &[key_value],
            false,
        )
        .map_err(|e| format!("Error serializing key: {e}"))?;
        if c.tombstone {
            return Ok(Some(RecordOut {
                key,
                value: None,
                timestamp: c.timestamp,
            }));
        }
        let passes = match &self.filter {
            None => true,
            Some(f) => eval_condition(f, &self.row(&c.values), functions),
        };
        if !passes {
            // A table's row that no longer passes WHERE is deleted downstream.
            return Ok((self.produces == SourceKind::Table).then_some(RecordOut {
                key,
                value: None,
                timestamp: c.timestamp,
            }));
        }
        let row = self.row(&c.values);
        let computed: Vec<Value> = self
            .value
            .iter()
            .map(|col| eval_column(&col.expr, &col.sql_type, &row, functions))
            .collect();
        let cols = OutputColumn::name_types(&self.value);
        let value = serialize(
            &self.sink.value_format,
            &cols,
            &computed,
            self.sink.wrap_single_value || cols.len() != 1,
        )
        .map_err(|e| format!("Error serializing value: {e}"))?;
        let Some(timestamp) = self.sink.timestamp(&self.value, &computed, c.timestamp) else {
            return Err("the output's TIMESTAMP column holds no valid time".into());
        };
        Ok(Some(RecordOut {
            key,
            value,
            timestamp,
        }))
    }

    /// The joined row of `left` and `right` (either may be absent) under `key`.
    fn merged(
        &self,
        node: usize,
        key: &Value,
        left: Option<&Stored>,
        right: Option<&Stored>,
        timestamp: i64,
        result_key: Value,
    ) -> Change {
        let mut values = match left {
            Some(l) => l.values.clone(),
            None => vec![Value::Null; self.width()],
        };
        if let Some(r) = right {
            let inp = &self.inputs[node + 1];
            let range = inp.offset..inp.offset + inp.width();
            values[range.clone()].clone_from_slice(&r.values[range]);
        }
        values[0] = key.clone();
        let n = values.len();
        values[n - 3] = Value::Bigint(timestamp);
        Change {
            values,
            key: Some(result_key),
            tombstone: false,
            timestamp,
        }
    }

    fn deleted(&self, key: Value, timestamp: i64) -> Change {
        let mut values = vec![Value::Null; self.width()];
        values[0] = key.clone();
        Change {
            values,
            key: Some(key),
            tombstone: true,
            timestamp,
        }
    }

    fn node_process(
        &self,
        node: usize,
        side: Side,
        change: Change,
        st: &mut NodeState,
        functions: &dyn Functions,
    ) -> Result<Vec<Change>, String> {
        let n = &self.nodes[node];
        let join_key = match (side, &change.key) {
            (Side::Left, Some(k)) if n.left_is_previous_key => k.clone(),
            (Side::Left, _) if change.tombstone && change.key.is_some() => {
                change.key.clone().expect("checked")
            }
            (Side::Left, _) => self
                .eval_on(&n.left_expr, &change.values, functions)
                .or_else(|e| {
                    if change.tombstone {
                        Ok(Value::Null)
                    } else {
                        Err(e)
                    }
                })?,
            (Side::Right, _) => self
                .eval_on(&n.right_expr, &change.values, functions)
                .or_else(|e| {
                    if change.tombstone {
                        Ok(Value::Null)
                    } else {
                        Err(e)
                    }
                })?,
        };
        let join_key = cast(join_key, &n.key_type).map_err(|e| e.to_string())?;
        // A foreign-key join's left rows are keyed by their own key: the first input's
        // key, or the result they came from.
        let own_key = match (&change.key, node) {
            (Some(k), _) => k.clone(),
            (None, _) => {
                let inp = &self.inputs[0];
                change.values[inp.offset..inp.offset + inp.source.key.len().max(1)]
                    .first()
                    .cloned()
                    .unwrap_or(Value::Null)
            }
        };
        let stored = Stored {
            values: change.values,
            join_key,
            own_key,
            timestamp: change.timestamp,
        };
        let tombstone = change.tombstone;
        match n.shape {
            Shape::StreamTable => self.stream_table(node, side, stored, tombstone, st),
            Shape::TableTable => self.table_table(node, side, stored, tombstone, st),
            Shape::ForeignKey => self.foreign_key(node, side, stored, tombstone, st),
            Shape::StreamStream {
                before,
                after,
                grace,
            } => {
                if tombstone || stored.join_key == Value::Null {
                    return Ok(Vec::new());
                }
                self.stream_stream(node, side, stored, (before, after, grace), st)
            }
        }
    }

    fn outer(&self, node: usize, side: Side) -> bool {
        match self.nodes[node].kind {
            JoinType::Inner => false,
            JoinType::Left => side == Side::Left,
            JoinType::Right => side == Side::Right,
            JoinType::Full => true,
        }
    }

    fn pair<'a>(
        side: Side,
        this: &'a Stored,
        other: Option<&'a Stored>,
    ) -> (Option<&'a Stored>, Option<&'a Stored>) {
        match side {
            Side::Left => (Some(this), other),
            Side::Right => (other, Some(this)),
        }
    }

    fn stream_table(
        &self,
        node: usize,
        side: Side,
        stored: Stored,
        tombstone: bool,
        st: &mut NodeState,
    ) -> Result<Vec<Change>, String> {
        let text = json_text(&stored.join_key);
        if side == Side::Right {
            if stored.join_key != Value::Null {
                match (&mut st.external, tombstone) {
                    (Some(rows), true) => rows.0.remove(&text),
                    (Some(rows), false) => rows.0.insert(text, stored),
                    (None, true) => {
                        st.tables[1].remove(&text);
                    }
                    (None, false) => {
                        st.tables[1].insert(text, stored);
                    }
                }
            }
            return Ok(Vec::new());
        }
        if tombstone {
            return Ok(Vec::new());
        }
        let looked_up;
        let found = if stored.join_key == Value::Null {
            None
        } else if let Some(rows) = &mut st.external {
            looked_up = rows.0.get(&text);
            looked_up.as_ref()
        } else {
            st.tables[1].get(&text)
        };
        if found.is_none() && self.nodes[node].kind == JoinType::Inner {
            return Ok(Vec::new());
        }
        Ok(vec![self.merged(
            node,
            &stored.join_key,
            Some(&stored),
            found,
            stored.timestamp,
            stored.join_key.clone(),
        )])
    }

    fn table_table(
        &self,
        node: usize,
        side: Side,
        stored: Stored,
        tombstone: bool,
        st: &mut NodeState,
    ) -> Result<Vec<Change>, String> {
        if stored.join_key == Value::Null {
            return Ok(Vec::new());
        }
        let kind = self.nodes[node].kind;
        let text = json_text(&stored.join_key);
        let i = side.index();
        let old = if tombstone {
            st.tables[i].remove(&text)
        } else {
            st.tables[i].insert(text.clone(), stored.clone())
        };
        let other = st.tables[side.other().index()].get(&text);
        let timestamp = other.map_or(stored.timestamp, |o| o.timestamp.max(stored.timestamp));
        let this_present = !tombstone;
        let outer_side = if kind == JoinType::Left {
            Side::Left
        } else {
            Side::Right
        };
        let emit_row = match kind {
            JoinType::Inner => this_present && other.is_some(),
            JoinType::Full => this_present || other.is_some(),
            _ if side == outer_side => this_present,
            _ => other.is_some(),
        };
        if emit_row {
            let this = this_present.then_some(&stored);
            let (l, r) = match side {
                Side::Left => (this, other),
                Side::Right => (other, this),
            };
            return Ok(vec![self.merged(
                node,
                &stored.join_key,
                l,
                r,
                timestamp,
                stored.join_key.clone(),
            )]);
        }
        // The result row, if there was one, is gone.
        let had_result = match kind {
            JoinType::Inner => old.is_some() && other.is_some(),
            JoinType::Full => old.is_some(),
            _ => side == outer_side && old.is_some(),
        };
        if had_result {
            return Ok(vec![self.deleted(stored.join_key.clone(), timestamp)]);
        }
        Ok(Vec::new())
    }

    fn foreign_key(
        &self,
        node: usize,
        side: Side,
        stored: Stored,
        tombstone: bool,
        st: &mut NodeState,
    ) -> Result<Vec<Change>, String> {
        let kind = self.nodes[node].kind;
        match side {
            Side::Left => {
                let pk = stored.own_key.clone();
                let pk_text = json_text(&pk);
                let old = if tombstone {
                    st.tables[0].remove(&pk_text)
                } else {
                    st.tables[0].insert(pk_text.clone(), stored.clone())
                };
                if let Some(o) = &old {
                    st.by_foreign_key
                        .remove(&(json_text(&o.join_key), pk_text.clone()));
                }
                if !tombstone {
                    st.by_foreign_key
                        .insert((json_text(&stored.join_key), pk_text));
                }
                if tombstone {
                    return Ok(match old {
                        Some(_) => vec![self.deleted(pk, stored.timestamp)],
                        None => Vec::new(),
                    });
                }
                let found = if stored.join_key == Value::Null {
                    None
                } else {
                    st.tables[1].get(&json_text(&stored.join_key))
                };
                match found {
                    None if kind == JoinType::Inner => Ok(match old {
                        Some(_) => vec![self.deleted(pk, stored.timestamp)],
                        None => Vec::new(),
                    }),
                    found => Ok(vec![self.merged(
                        node,
                        &stored.join_key,
                        Some(&stored),
                        found,
                        stored.timestamp,
                        pk,
                    )]),
                }
            }
            Side::Right => {
                if stored.join_key == Value::Null {
                    return Ok(Vec::new());
                }
                let text = json_text(&stored.join_key);
                let old = if tombstone {
                    st.tables[1].remove(&text)
                } else {
                    st.tables[1].insert(text.clone(), stored.clone())
                };
                // The left rows referring to this key, in the order of their keys.
                let mut lefts: Vec<&Stored> = st
                    .by_foreign_key
                    .range((text.clone(), String::new())..)
                    .take_while(|(fk, _)| *fk == text)
                    .filter_map(|(_, pk)| st.tables[0].get(pk))
                    .filter(|l| l.join_key == stored.join_key)
                    .collect();
                lefts.sort_by(|a, b| {
                    crate::eval::compare(&a.own_key, &b.own_key)
                        .ok()
                        .flatten()
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
                let mut out = Vec::new();
                for left in lefts {
                    if tombstone {
                        if old.is_none() {
                            continue;
                        }
                        if kind == JoinType::Inner {
                            out.push(self.deleted(left.own_key.clone(), stored.timestamp));
                            continue;
                        }
                    }
                    let right = (!tombstone).then_some(&stored);
                    out.push(self.merged(
                        node,
                        &left.join_key,
                        Some(left),
                        right,
                        stored.timestamp,
                        left.own_key.clone(),
                    ));
                }
                Ok(out)
            }
        }
    }

    fn stream_stream(
        &self,
        node: usize,
        side: Side,
        stored: Stored,
        (before, after, grace): (i64, i64, Option<i64>),
        st: &mut NodeState,
    ) -> Result<Vec<Change>, String> {
        let t = stored.timestamp;
        let grace_ms = grace.unwrap_or(DEFAULT_GRACE_MS);
        let stream_time = st.stream_time.map_or(t, |s| s.max(t));
        st.stream_time = Some(stream_time);
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
                    st.pending[s.index()]
                        .iter()
                        .filter(|(_, ts, _)| {
                            ts.saturating_add(reach).saturating_add(grace_ms) < stream_time
                        })
                        .map(|k| (s, k.clone())),
                );
            }
            closed.sort_by_key(|(_, (_, ts, a))| (*ts, *a));
            for (s, k) in closed {
                st.pending[s.index()].remove(&k);
                if let Some(r) = st.buffers[s.index()].get(&k) {
                    let (l, rr) = Self::pair(s, r, None);
                    out.push(self.merged(
                        node,
                        &r.join_key,
                        l,
                        rr,
                        r.timestamp,
                        r.join_key.clone(),
                    ));
                }
            }
        }
        let text = json_text(&stored.join_key);
        let arrival = st.arrivals;
        st.arrivals += 1;
        let other = side.other().index();
        let lo = (text.clone(), t.saturating_sub(back), 0);
        let hi = (text.clone(), t.saturating_add(ahead), u64::MAX);
        let matches: Vec<(String, i64, u64)> = st.buffers[other]
            .range(lo..=hi)
            .map(|(k, _)| k.clone())
            .collect();
        for m in &matches {
            let o = &st.buffers[other][m];
            let (l, r) = Self::pair(side, &stored, Some(o));
            out.push(self.merged(
                node,
                &stored.join_key,
                l,
                r,
                t.max(o.timestamp),
                stored.join_key.clone(),
            ));
            st.pending[other].remove(m);
        }
        // Each side's window store keeps records by its own stream time (Kafka Streams'
        // segmented stores), so a late record of one side may still be joined by the
        // other side's later records while the reverse is not true.
        let retention = before.saturating_add(after).saturating_add(grace_ms);
        let side_time = st.side_time[side.index()].map_or(t, |s| s.max(t));
        st.side_time[side.index()] = Some(side_time);
        let retained = t >= side_time.saturating_sub(retention);
        if matches.is_empty() && self.outer(node, side) {
            if grace.is_none() || t.saturating_add(ahead) < stream_time || !retained {
                // Without a grace period ksqlDB emits the unmatched row at once (as Kafka
                // Streams does for a record whose window has already passed).
                let (l, r) = Self::pair(side, &stored, None);
                out.push(self.merged(node, &stored.join_key, l, r, t, stored.join_key.clone()));
            } else {
                st.pending[side.index()].insert((text.clone(), t, arrival));
            }
        }
        // A record older than the windows' retention is not kept (nothing can join it).
        if retained {
            st.buffers[side.index()].insert((text, t, arrival), stored);
        }
        // Records no window can reach any more.
        for b in 0..2 {
            if let Some(s) = st.side_time[b] {
                let horizon = s.saturating_sub(retention);
                let pending = &st.pending[b];
                st.buffers[b].retain(|k, r| r.timestamp >= horizon || pending.contains(k));
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
                    r.value
                        .as_ref()
                        .map(|v| String::from_utf8(v.clone()).unwrap()),
                    r.timestamp,
                )
            })
            .collect()
    }

    const L: &str =
        "CREATE STREAM L (A INT KEY, B INT) WITH (kafka_topic='l', value_format='JSON');";
    const R: &str =
        "CREATE STREAM R (A INT KEY, C INT) WITH (kafka_topic='r', value_format='JSON');";
    const T: &str =
        "CREATE TABLE T (A INT PRIMARY KEY, C INT) WITH (kafka_topic='t', value_format='JSON');";
    const U: &str = "CREATE TABLE U (ID INT PRIMARY KEY, A INT, D INT) WITH (kafka_topic='u', value_format='JSON');";

    #[test]
    fn joined_columns_are_named_and_keyed_as_ksqldb_does() {
        let q = plan(
            &[L, R],
            "CREATE STREAM OUTPUT AS SELECT * FROM L JOIN R WITHIN 1 SECOND ON L.A = R.A;",
        )
        .unwrap();
        assert_eq!(names(&q.key), ["L_A"]);
        assert_eq!(names(&q.value), ["L_B", "R_A", "R_C"]);
        let q = plan(
            &[L, R],
            "CREATE STREAM OUTPUT AS SELECT L.B, R.* FROM L JOIN R WITHIN 1 SECOND ON L.A = R.A;",
        )
        .unwrap();
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
        q.process(
            0,
            input(&1i32.to_be_bytes(), Some(br#"{"A":1,"B":{"C":10}}"#), 20),
            &mut st,
            &NoFunctions,
        )
        .unwrap();
        let out = q
            .process(
                1,
                input(&2i32.to_be_bytes(), Some(br#"{"X":4,"Y":{"Z":10}}"#), 100),
                &mut st,
                &NoFunctions,
            )
            .unwrap();
        assert_eq!(text(&out).len(), 1, "{out:?}");
        assert_eq!(text(&out)[0].0, 10);
    }

    #[test]
    fn a_chain_of_joins_takes_each_result_as_the_next_left_input() {
        let t2 = "CREATE TABLE T2 (A INT PRIMARY KEY, E INT) WITH (kafka_topic='t2', value_format='JSON');";
        let q = plan(&[L, T, t2], "CREATE STREAM OUTPUT AS SELECT T2.A, B, C, E FROM L JOIN T ON L.A = T.A LEFT JOIN T2 ON L.A = T2.A;").unwrap();
        assert_eq!(names(&q.key), ["T2_A"]);
        assert_eq!(q.topics(), ["l", "t", "t2"]);
        let mut st = JoinState::default();
        let k = 1i32.to_be_bytes();
        q.process(1, input(&k, Some(br#"{"C":2}"#), 1), &mut st, &NoFunctions)
            .unwrap();
        let out = q
            .process(0, input(&k, Some(br#"{"B":1}"#), 2), &mut st, &NoFunctions)
            .unwrap();
        assert_eq!(
            text(&out),
            [(1, Some(r#"{"B":1,"C":2,"E":null}"#.into()), 2)]
        );
        q.process(2, input(&k, Some(br#"{"E":3}"#), 3), &mut st, &NoFunctions)
            .unwrap();
        let out = q
            .process(0, input(&k, Some(br#"{"B":4}"#), 4), &mut st, &NoFunctions)
            .unwrap();
        assert_eq!(text(&out), [(1, Some(r#"{"B":4,"C":2,"E":3}"#.into()), 4)]);
        let e = plan(
            &[L, T, t2],
            "CREATE STREAM OUTPUT AS SELECT B FROM L JOIN T ON L.A = T.A JOIN T2 ON L.A = T2.A;",
        )
        .err()
        .unwrap();
        assert!(e.0.contains("the join expressions L.A, T.A or T2.A"), "{e}");
    }

    #[test]
    fn a_stream_looks_up_the_table_as_of_its_own_time() {
        let q = plan(
            &[L, T],
            "CREATE STREAM OUTPUT AS SELECT L.A, B, C FROM L LEFT JOIN T ON L.A = T.A;",
        )
        .unwrap();
        let mut st = JoinState::default();
        let k = 1i32.to_be_bytes();
        let out = q
            .process(0, input(&k, Some(br#"{"B":1}"#), 10), &mut st, &NoFunctions)
            .unwrap();
        assert_eq!(text(&out), [(1, Some(r#"{"B":1,"C":null}"#.into()), 10)]);
        assert!(q
            .process(1, input(&k, Some(br#"{"C":7}"#), 11), &mut st, &NoFunctions)
            .unwrap()
            .is_empty());
        let out = q
            .process(0, input(&k, Some(br#"{"B":2}"#), 12), &mut st, &NoFunctions)
            .unwrap();
        assert_eq!(text(&out), [(1, Some(r#"{"B":2,"C":7}"#.into()), 12)]);
        q.process(1, input(&k, None, 13), &mut st, &NoFunctions)
            .unwrap();
        let out = q
            .process(0, input(&k, Some(br#"{"B":3}"#), 14), &mut st, &NoFunctions)
            .unwrap();
        assert_eq!(text(&out), [(1, Some(r#"{"B":3,"C":null}"#.into()), 14)]);
    }

    /// Table rows kept encoded, as a store keeps them.
    struct Encoded(std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<u8>>>>);
    impl TableRows for Encoded {
        fn get(&mut self, key: &str) -> Option<Stored> {
            let bytes = self.0.lock().unwrap().get(key).cloned()?;
            Some(Stored::decode(&bytes).expect("decodes"))
        }
        fn insert(&mut self, key: String, row: Stored) {
            let bytes = row.encode();
            assert_eq!(Stored::decode(&bytes).as_ref(), Some(&row));
            self.0.lock().unwrap().insert(key, bytes);
        }
        fn remove(&mut self, key: &str) {
            self.0.lock().unwrap().remove(key);
        }
    }

    /// A stream–table join's table rows in a store give the same results as in memory,
    /// and a state rebuilt over the same store (a restart) needs no table record again.
    #[test]
    fn a_stream_table_joins_table_may_live_in_a_store() {
        let q = plan(
            &[L, T],
            "CREATE STREAM OUTPUT AS SELECT L.A, B, C FROM L LEFT JOIN T ON L.A = T.A;",
        )
        .unwrap();
        assert!(q.table_in_store());
        let rows = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let mut memory = JoinState::default();
        let mut stored = JoinState::with_table_rows(&q, Box::new(Encoded(rows.clone())));
        let k = |i: i32| i.to_be_bytes();
        let steps: Vec<(usize, i32, Option<&[u8]>, i64)> = vec![
            (1, 1, Some(br#"{"C":7}"#), 1),
            (1, 2, Some(br#"{"C":8}"#), 2),
            (0, 1, Some(br#"{"B":1}"#), 3),
            (1, 1, None, 4),
            (0, 1, Some(br#"{"B":2}"#), 5),
            (0, 2, Some(br#"{"B":3}"#), 6),
        ];
        for (input_index, key, value, t) in steps {
            let key = k(key);
            let a = q
                .process(
                    input_index,
                    input(&key, value, t),
                    &mut memory,
                    &NoFunctions,
                )
                .unwrap();
            let b = q
                .process(
                    input_index,
                    input(&key, value, t),
                    &mut stored,
                    &NoFunctions,
                )
                .unwrap();
            assert_eq!(text(&a), text(&b));
        }
        assert_eq!(rows.lock().unwrap().len(), 1, "key 1 deleted, key 2 kept");
        let mut restarted = JoinState::with_table_rows(&q, Box::new(Encoded(rows)));
        let out = q
            .process(
                0,
                input(&k(2), Some(br#"{"B":4}"#), 7),
                &mut restarted,
                &NoFunctions,
            )
            .unwrap();
        assert_eq!(text(&out), [(2, Some(r#"{"B":4,"C":8}"#.into()), 7)]);
        let chain = plan(
            &[L, T, U],
            "CREATE STREAM OUTPUT AS SELECT L.A, B, T.C, D FROM L JOIN T ON L.A = T.A JOIN U ON L.A = U.ID;",
        )
        .unwrap();
        assert!(!chain.table_in_store(), "a chain keeps results of results");
    }

    #[test]
    fn a_restart_replays_tables_whole_windowed_streams_by_retention_and_lookup_streams_not_at_all()
    {
        let q = plan(
            &[L, T],
            "CREATE STREAM OUTPUT AS SELECT L.A, B, C FROM L LEFT JOIN T ON L.A = T.A;",
        )
        .unwrap();
        assert_eq!(q.replay(false), [Replay::Skip, Replay::Full]);
        let q = plan(&[L, R, T], "CREATE STREAM OUTPUT AS SELECT L.A, B, R.C, T.C AS TC FROM L JOIN R WITHIN 10 MILLISECONDS GRACE PERIOD 5 MILLISECONDS ON L.A = R.A JOIN T ON L.A = T.A;").unwrap();
        assert_eq!(
            q.replay(false),
            [Replay::Within(25), Replay::Within(25), Replay::Full]
        );
        let q = plan(&[L, R], "CREATE STREAM OUTPUT AS SELECT L.A, B, C FROM L JOIN R WITHIN (5 MILLISECONDS, 10 MILLISECONDS) ON L.A = R.A;").unwrap();
        assert_eq!(q.replay(false), [Replay::Within(15 + DEFAULT_GRACE_MS); 2]);
        let three =
            "CREATE STREAM S3 (A INT KEY, D INT) WITH (kafka_topic='s3', value_format='JSON');";
        let q = plan(&[L, R, three], "CREATE STREAM OUTPUT AS SELECT L.A, B, C, D FROM L JOIN R WITHIN 10 MILLISECONDS ON L.A = R.A JOIN S3 WITHIN 10 MILLISECONDS ON L.A = S3.A;").unwrap();
        assert_eq!(q.replay(false), [Replay::Full; 3]);
    }

    #[test]
    fn a_stream_stream_join_split_by_join_value_gives_the_whole_joins_results() {
        let s1 = "CREATE STREAM S1 (ID INT KEY, A INT, B INT) WITH (kafka_topic='s1', value_format='JSON');";
        let s2 = "CREATE STREAM S2 (ID INT KEY, A INT, C INT) WITH (kafka_topic='s2', value_format='JSON');";
        let q = plan(&[s1, s2], "CREATE STREAM OUTPUT AS SELECT S1.A, B, C FROM S1 JOIN S2 WITHIN 20 MILLISECONDS ON S1.A = S2.A;").unwrap();
        assert!(q.repartitionable() && !q.second_is_table());
        // Records of either side keyed by their own id, joining on A: whole, and placed
        // by join value over 3 partitions, each with its own state.
        let mut whole = JoinState::default();
        let mut parts: Vec<JoinState> = (0..3).map(|_| JoinState::default()).collect();
        let (mut all, mut split) = (Vec::new(), Vec::new());
        let mut seed = 7u64;
        for t in 0..400i64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let side = (seed >> 33) as usize % 2;
            let a = (seed >> 40) % 9;
            let value = if seed.is_multiple_of(17) {
                r#"{"A":null,"B":1,"C":1}"#.to_string()
            } else {
                format!(r#"{{"A":{a},"B":{t},"C":{t}}}"#)
            };
            let id = (t as i32).to_be_bytes();
            let record = input(&id, Some(value.as_bytes()), t);
            all.extend(text(
                &q.process(side, record, &mut whole, &NoFunctions).unwrap(),
            ));
            let (placed, time) = q.join_key(side, record, &NoFunctions).unwrap();
            assert_eq!(time, t);
            let p = placed.map_or(0, |k| k.iter().map(|&b| b as usize).sum::<usize>() % 3);
            split.extend(text(
                &q.process(side, record, &mut parts[p], &NoFunctions)
                    .unwrap(),
            ));
        }
        assert!(all.len() > 50, "{}", all.len());
        all.sort();
        split.sort();
        assert_eq!(all, split);
        // Equal values place alike from either side; a NULL one places nowhere.
        let (k1, k2) = (1i32.to_be_bytes(), 2i32.to_be_bytes());
        let left = input(&k1, Some(br#"{"A":5,"B":1}"#), 3);
        let right = input(&k2, Some(br#"{"A":5,"C":1}"#), 4);
        assert_eq!(
            q.join_key(0, left, &NoFunctions).unwrap().0,
            q.join_key(1, right, &NoFunctions).unwrap().0
        );
        let none = input(&k2, Some(br#"{"C":1}"#), 4);
        assert_eq!(q.join_key(1, none, &NoFunctions), Some((None, 4)));
        // A self-join, or a join on both keys, is not split.
        let q = plan(
            &[L, R],
            "CREATE STREAM OUTPUT AS SELECT L.A, B, C FROM L JOIN R WITHIN 1 SECOND ON L.A = R.A;",
        )
        .unwrap();
        assert!(!q.repartitionable());
    }

    #[test]
    fn stream_stream_joins_within_the_window_and_outer_rows_wait_for_grace() {
        let q = plan(&[L, R], "CREATE STREAM OUTPUT AS SELECT L.A, B, C FROM L LEFT JOIN R WITHIN 10 MILLISECONDS GRACE PERIOD 5 MILLISECONDS ON L.A = R.A;").unwrap();
        let mut st = JoinState::default();
        let (k1, k2) = (1i32.to_be_bytes(), 2i32.to_be_bytes());
        assert!(q
            .process(
                0,
                input(&k1, Some(br#"{"B":1}"#), 100),
                &mut st,
                &NoFunctions
            )
            .unwrap()
            .is_empty());
        let out = q
            .process(
                1,
                input(&k1, Some(br#"{"C":5}"#), 105),
                &mut st,
                &NoFunctions,
            )
            .unwrap();
        assert_eq!(text(&out), [(1, Some(r#"{"B":1,"C":5}"#.into()), 105)]);
        // Outside the window: no match; the left row waits for its window to close.
        assert!(q
            .process(
                0,
                input(&k2, Some(br#"{"B":2}"#), 110),
                &mut st,
                &NoFunctions
            )
            .unwrap()
            .is_empty());
        assert!(q
            .process(
                1,
                input(&k2, Some(br#"{"C":6}"#), 121),
                &mut st,
                &NoFunctions
            )
            .unwrap()
            .is_empty());
        let out = q
            .process(
                1,
                input(&k1, Some(br#"{"C":7}"#), 126),
                &mut st,
                &NoFunctions,
            )
            .unwrap();
        assert_eq!(text(&out), [(2, Some(r#"{"B":2,"C":null}"#.into()), 110)]);
    }

    #[test]
    fn table_table_joins_send_deletes_only_for_rows_sent() {
        let t2 = "CREATE TABLE T2 (A INT PRIMARY KEY, E INT) WITH (kafka_topic='t2', value_format='JSON');";
        let q = plan(
            &[T, t2],
            "CREATE TABLE OUTPUT AS SELECT T.A, C, E FROM T JOIN T2 ON T.A = T2.A WHERE E > 0;",
        )
        .unwrap();
        let mut st = JoinState::default();
        let k = 1i32.to_be_bytes();
        assert!(q
            .process(0, input(&k, Some(br#"{"C":1}"#), 1), &mut st, &NoFunctions)
            .unwrap()
            .is_empty());
        // Filtered out, and nothing was sent: no delete either.
        assert!(q
            .process(1, input(&k, Some(br#"{"E":0}"#), 2), &mut st, &NoFunctions)
            .unwrap()
            .is_empty());
        let out = q
            .process(1, input(&k, Some(br#"{"E":3}"#), 3), &mut st, &NoFunctions)
            .unwrap();
        assert_eq!(text(&out), [(1, Some(r#"{"C":1,"E":3}"#.into()), 3)]);
        let out = q
            .process(0, input(&k, None, 4), &mut st, &NoFunctions)
            .unwrap();
        assert_eq!(text(&out), [(1, None, 4)]);
        assert!(q
            .process(1, input(&k, None, 5), &mut st, &NoFunctions)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn foreign_key_joins_follow_both_tables() {
        let q = plan(
            &[U, T],
            "CREATE TABLE OUTPUT AS SELECT ID, D, C FROM U JOIN T ON U.A = T.A;",
        )
        .unwrap();
        assert_eq!(q.nodes[0].shape, Shape::ForeignKey);
        assert_eq!(names(&q.key), ["ID"]);
        let mut st = JoinState::default();
        let (id1, id2, a) = (1i32.to_be_bytes(), 2i32.to_be_bytes(), 9i32.to_be_bytes());
        assert!(q
            .process(
                0,
                input(&id1, Some(br#"{"A":9,"D":1}"#), 1),
                &mut st,
                &NoFunctions
            )
            .unwrap()
            .is_empty());
        q.process(
            0,
            input(&id2, Some(br#"{"A":9,"D":2}"#), 2),
            &mut st,
            &NoFunctions,
        )
        .unwrap();
        let out = q
            .process(1, input(&a, Some(br#"{"C":5}"#), 3), &mut st, &NoFunctions)
            .unwrap();
        assert_eq!(
            text(&out),
            [
                (1, Some(r#"{"D":1,"C":5}"#.into()), 3),
                (2, Some(r#"{"D":2,"C":5}"#.into()), 3)
            ]
        );
        let out = q
            .process(1, input(&a, None, 4), &mut st, &NoFunctions)
            .unwrap();
        assert_eq!(text(&out), [(1, None, 4), (2, None, 4)]);
        // A left row that moves to another foreign key, or is deleted, no longer follows
        // the old one's changes.
        let b = 8i32.to_be_bytes();
        q.process(1, input(&a, Some(br#"{"C":6}"#), 5), &mut st, &NoFunctions)
            .unwrap();
        q.process(1, input(&b, Some(br#"{"C":7}"#), 6), &mut st, &NoFunctions)
            .unwrap();
        let out = q
            .process(
                0,
                input(&id1, Some(br#"{"A":8,"D":1}"#), 7),
                &mut st,
                &NoFunctions,
            )
            .unwrap();
        assert_eq!(text(&out), [(1, Some(r#"{"D":1,"C":7}"#.into()), 7)]);
        q.process(0, input(&id2, None, 8), &mut st, &NoFunctions)
            .unwrap();
        let out = q
            .process(1, input(&a, Some(br#"{"C":9}"#), 9), &mut st, &NoFunctions)
            .unwrap();
        assert!(out.is_empty(), "{:?}", text(&out));
        let out = q
            .process(
                1,
                input(&b, Some(br#"{"C":10}"#), 10),
                &mut st,
                &NoFunctions,
            )
            .unwrap();
        assert_eq!(text(&out), [(1, Some(r#"{"D":1,"C":10}"#.into()), 10)]);
    }
}
