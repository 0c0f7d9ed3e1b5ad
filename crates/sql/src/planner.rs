//! From a statement to what runs: a CREATE STREAM / TABLE … AS SELECT becomes the sink
//! source it registers, the topic it writes and the record-by-record query that fills it.
//! Pure: the engine creates the topic, registers the sink and runs the query.

use crate::aggregate::{is_aggregate, plan_aggregate, AggregateQuery};
use crate::analyzer::{project, OutputColumn};
use crate::ast::{Properties, SourceKind, Statement};
use crate::catalog::{int_property, string_property, Catalog, Column, Source, Topics};
use crate::format::Format;
use crate::join::{plan_join, JoinQuery};
use crate::pipeline::{Sink, StreamQuery};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

fn err(m: impl Into<String>) -> PlanError {
    PlanError(m.into())
}

/// A persistent query ready to run.
pub struct PlannedQuery {
    /// The sink as the catalog will hold it.
    pub sink: Source,
    /// Partitions of the sink topic if it has to be created (the source topic's count
    /// unless PARTITIONS says otherwise) and its replication factor (-1: the broker's).
    pub partitions: i32,
    pub replicas: i16,
    pub query: Planned,
}

/// What runs: a record-by-record query, or an aggregation with state.
pub enum Planned {
    Stateless(StreamQuery),
    Aggregate(AggregateQuery),
    Join(Box<JoinQuery>),
    /// An aggregation over a stream join: the join's rows feed the aggregation.
    JoinAggregate(Box<JoinQuery>, AggregateQuery),
}

/// The sink properties a CREATE … AS SELECT accepts.
const SINK_PROPERTIES: &[&str] = &[
    "KAFKA_TOPIC",
    "KEY_FORMAT",
    "VALUE_FORMAT",
    "FORMAT",
    "PARTITIONS",
    "REPLICAS",
    "VALUE_DELIMITER",
    "KEY_DELIMITER",
    "WRAP_SINGLE_VALUE",
    "RETENTION_MS",
    "TIMESTAMP",
    "TIMESTAMP_FORMAT",
];

fn columns(cols: &[OutputColumn]) -> Vec<Column> {
    cols.iter()
        .map(|c| Column {
            name: c.name.clone(),
            sql_type: c.sql_type.clone(),
            header: None,
        })
        .collect()
}

/// Plans a stateless CREATE STREAM / TABLE … AS SELECT (a filter, projection or
/// repartition of one source).
pub fn plan_create_as_select(
    statement: &Statement,
    catalog: &Catalog,
    topics: &dyn Topics,
) -> Result<PlannedQuery, PlanError> {
    plan_as_select(statement, catalog, topics, true)
}

/// `plan_create_as_select`; `explicit_wrap`: WRAP_SINGLE_VALUE was written by the user
/// (INSERT INTO passes its target's own, checked against the target instead).
fn plan_as_select(
    statement: &Statement,
    catalog: &Catalog,
    topics: &dyn Topics,
    explicit_wrap: bool,
) -> Result<PlannedQuery, PlanError> {
    let Statement::CreateAsSelect {
        kind,
        name,
        properties,
        query,
        ..
    } = statement
    else {
        return Err(err("not a CREATE … AS SELECT statement"));
    };
    for (k, _) in properties {
        if !SINK_PROPERTIES.contains(&k.as_str()) {
            return Err(err(format!(
                "Invalid config variable(s) in the WITH clause: {k}"
            )));
        }
    }
    let source = catalog
        .get(&query.from)
        .ok_or_else(|| err(format!("{} does not exist.", query.from)))?
        .clone();
    let aggregate = is_aggregate(query);
    let joined_kind = if query.joins.is_empty() {
        None
    } else {
        let mut all_tables = source.kind == SourceKind::Table;
        for j in &query.joins {
            let right = catalog
                .get(&j.source)
                .ok_or_else(|| err(format!("{} does not exist.", j.source)))?;
            all_tables &= right.kind == SourceKind::Table;
        }
        Some(if all_tables {
            SourceKind::Table
        } else {
            SourceKind::Stream
        })
    };
    let produces = if aggregate {
        SourceKind::Table
    } else if let Some(k) = joined_kind {
        k
    } else if query.partition_by.is_empty() {
        source.kind
    } else {
        SourceKind::Stream
    };
    if produces != *kind {
        return Err(err(match produces {
            SourceKind::Table => "Invalid result type. Your SELECT query produces a TABLE. Please use CREATE TABLE AS SELECT statement instead.",
            SourceKind::Stream => "Invalid result type. Your SELECT query produces a STREAM. Please use CREATE STREAM AS SELECT statement instead.",
        }));
    }
    let prop = |k: &str| string_property(properties, k).map_err(|e| err(e.0));
    let format = prop("FORMAT")?;
    let value_format = match prop("VALUE_FORMAT")?.or(format.clone()) {
        Some(f) => Format::parse(&f, prop("VALUE_DELIMITER")?.as_deref()).map_err(|e| err(e.0))?,
        None => source.value_format.clone(),
    };
    let key_format = match prop("KEY_FORMAT")?.or(format) {
        Some(f) => Format::parse(&f, prop("KEY_DELIMITER")?.as_deref()).map_err(|e| err(e.0))?,
        None => source.key_format.clone(),
    };
    let wrap = match crate::catalog::property(properties, "WRAP_SINGLE_VALUE") {
        None => true,
        Some(crate::ast::Literal::Boolean(b)) => *b,
        Some(crate::ast::Literal::String(s)) => !s.eq_ignore_ascii_case("false"),
        Some(other) => {
            return Err(err(format!(
                "Invalid value for WRAP_SINGLE_VALUE: {other:?}"
            )))
        }
    };
    let timestamp_column = prop("TIMESTAMP")?.map(|t| {
        let t = t.trim_matches('`');
        if t.starts_with('"') {
            t.trim_matches('"').to_string()
        } else {
            t.to_ascii_uppercase()
        }
    });
    let sink_formats = Sink {
        key_format: key_format.clone(),
        value_format: value_format.clone(),
        wrap_single_value: wrap,
        timestamp_column: timestamp_column.clone().map(|c| {
            (
                c,
                string_property(properties, "TIMESTAMP_FORMAT")
                    .ok()
                    .flatten(),
            )
        }),
    };
    let (key_columns, value_columns, planned) = if joined_kind.is_some() && aggregate {
        let (j, joined, rewritten) =
            crate::join::plan_join_rows(query, catalog).map_err(|e| err(e.0))?;
        let mut scratch = Catalog::default();
        scratch.insert_derived(joined, true).map_err(|e| err(e.0))?;
        let a = plan_aggregate(&rewritten, &scratch, name, sink_formats).map_err(|e| err(e.0))?;
        (
            columns(&a.key),
            columns(&a.value),
            Planned::JoinAggregate(Box::new(j), a),
        )
    } else if joined_kind.is_some() {
        let j = plan_join(query, catalog, name, sink_formats).map_err(|e| err(e.0))?;
        (
            columns(&j.key),
            columns(&j.value),
            Planned::Join(Box::new(j)),
        )
    } else if aggregate {
        let a = plan_aggregate(query, catalog, name, sink_formats).map_err(|e| err(e.0))?;
        (columns(&a.key), columns(&a.value), Planned::Aggregate(a))
    } else {
        // ksqlDB looks for the TIMESTAMP column before it checks the projection's key.
        if let (Some(ts), Ok(selected)) = (
            &timestamp_column,
            crate::analyzer::select_columns(query, catalog),
        ) {
            if !selected.iter().any(|c| c.name == *ts) {
                return Err(err(format!(
                    "The TIMESTAMP column set in the WITH clause does not exist in the schema: '{ts}'"
                )));
            }
        }
        let projection = project(query, catalog, name).map_err(|e| err(e.0))?;
        (
            columns(&projection.key),
            columns(&projection.value),
            Planned::Stateless(StreamQuery {
                source: source.clone(),
                projection,
                sink: sink_formats,
            }),
        )
    };
    if let Some(ts) = &timestamp_column {
        let stateless = matches!(planned, Planned::Stateless(_));
        let in_key = key_columns.iter().filter(|_| stateless);
        match value_columns.iter().chain(in_key).find(|c| c.name == *ts) {
            Some(c) if matches!(c.sql_type, crate::ast::SqlType::Bigint | crate::ast::SqlType::Timestamp) => {}
            Some(c) if c.sql_type == crate::ast::SqlType::String && prop("TIMESTAMP_FORMAT")?.is_some() => {}
            Some(c) => {
                return Err(err(format!(
                    "Timestamp column, `{ts}`, should be LONG(INT64), TIMESTAMP, or a String with a timestamp_format specified. Got {}",
                    crate::value::type_name(&c.sql_type)
                )))
            }
            None => {
                return Err(err(format!(
                    "The TIMESTAMP column set in the WITH clause does not exist in the schema: '{ts}'"
                )))
            }
        }
    }
    if explicit_wrap
        && crate::catalog::property(properties, "WRAP_SINGLE_VALUE").is_some()
        && value_columns.len() != 1
    {
        return Err(err(
            "'WRAP_SINGLE_VALUE' is only valid for single-field value schemas",
        ));
    }
    crate::format::check_key_schema(&key_format, &key_columns).map_err(|e| err(e.0))?;
    for (cols, fmt) in [(&key_columns, &key_format), (&value_columns, &value_format)] {
        if *fmt == Format::Json
            && !cols
                .iter()
                .all(|c| crate::catalog::json_map_keys_are_strings(&c.sql_type))
        {
            return Err(err("JSON only supports MAP types with STRING keys"));
        }
    }
    let topic = prop("KAFKA_TOPIC")?.unwrap_or_else(|| name.clone());
    let int = |k: &str| int_property(properties, k).map_err(|e| err(e.0));
    let partitions = match int("PARTITIONS")? {
        Some(p) if p > 0 && p <= i32::MAX as i64 => p as i32,
        Some(p) => return Err(err(format!("Invalid number of partitions: {p}"))),
        // A join's output has the partition count of its inputs (the largest, as ksqlDB
        // repartitions to match).
        None => query
            .joins
            .iter()
            .filter_map(|j| catalog.get(&j.source))
            .map(|s| topics.partitions(&s.topic).unwrap_or(1))
            .fold(topics.partitions(&source.topic).unwrap_or(1), i32::max),
    };
    let replicas = int("REPLICAS")?.map_or(-1, |r| r.clamp(-1, i16::MAX as i64) as i16);
    let sink = Source {
        name: name.clone(),
        kind: *kind,
        key: key_columns,
        value: value_columns,
        topic,
        key_format,
        value_format,
        wrap_single_value: wrap,
        timestamp_column,
        timestamp_format: prop("TIMESTAMP_FORMAT")?,
        read_only: false,
    };
    Ok(PlannedQuery {
        sink,
        partitions,
        replicas,
        query: planned,
    })
}

/// Plans `INSERT INTO target SELECT …`: the query as a CREATE … AS SELECT of `target`
/// would plan it, writing the target's topic in the target's formats; the result must have
/// the target's columns (names and types), as ksqlDB requires.
pub fn plan_insert_into(
    statement: &Statement,
    catalog: &Catalog,
    topics: &dyn Topics,
) -> Result<PlannedQuery, PlanError> {
    let Statement::InsertInto {
        target,
        properties,
        query,
    } = statement
    else {
        return Err(err("not an INSERT INTO … SELECT statement"));
    };
    let sink = catalog
        .get(target)
        .ok_or_else(|| err(format!("{target} does not exist.")))?
        .clone();
    if sink.read_only {
        return Err(err(format!(
            "Cannot insert into read-only {}: {target}",
            match sink.kind {
                SourceKind::Stream => "stream",
                SourceKind::Table => "table",
            }
        )));
    }
    if sink.kind == SourceKind::Table {
        return Err(err(format!(
            "INSERT INTO can only be used to insert into a stream. {target} is a table."
        )));
    }
    let format_props = |f: &Format, which: &str| -> Vec<(String, crate::ast::Literal)> {
        let (name, delimiter) = match f {
            Format::Json => ("JSON", None),
            Format::Kafka => ("KAFKA", None),
            Format::None => ("NONE", None),
            Format::Delimited { delimiter } => ("DELIMITED", Some(*delimiter)),
        };
        let mut v = vec![(
            format!("{which}_FORMAT"),
            crate::ast::Literal::String(name.to_string()),
        )];
        if let Some(d) = delimiter {
            v.push((
                format!("{which}_DELIMITER"),
                crate::ast::Literal::String(d.to_string()),
            ));
        }
        v
    };
    let mut props: Properties = properties
        .iter()
        .filter(|(k, _)| k != "KAFKA_TOPIC" && !k.ends_with("_FORMAT") && k != "FORMAT")
        .cloned()
        .collect();
    props.push((
        "KAFKA_TOPIC".to_string(),
        crate::ast::Literal::String(sink.topic.clone()),
    ));
    props.extend(format_props(&sink.key_format, "KEY"));
    props.extend(format_props(&sink.value_format, "VALUE"));
    props.push((
        "WRAP_SINGLE_VALUE".to_string(),
        crate::ast::Literal::Boolean(sink.wrap_single_value),
    ));
    let as_create = Statement::CreateAsSelect {
        kind: sink.kind,
        or_replace: false,
        if_not_exists: false,
        name: target.clone(),
        properties: props,
        query: query.clone(),
    };
    let planned = plan_as_select(&as_create, catalog, topics, false)?;
    let schema = |s: &Source| {
        s.key
            .iter()
            .map(|c| format!("`{}` {} KEY", c.name, crate::value::type_name(&c.sql_type)))
            .chain(
                s.value
                    .iter()
                    .map(|c| format!("`{}` {}", c.name, crate::value::type_name(&c.sql_type))),
            )
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same = |a: &[Column], b: &[Column]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.name == y.name && x.sql_type == y.sql_type)
    };
    if !same(&planned.sink.key, &sink.key) || !same(&planned.sink.value, &sink.value) {
        return Err(err(format!(
            "Incompatible schema between results and sink.\nResult schema is {}\nSink schema is {}",
            schema(&planned.sink),
            schema(&sink)
        )));
    }
    Ok(planned)
}

/// A property of a WITH clause as text (strings bare, other literals as written).
pub fn property_text(properties: &Properties, name: &str) -> Option<String> {
    crate::catalog::property(properties, name).map(|v| match v {
        crate::ast::Literal::String(s) => s.clone(),
        other => format!("{other:?}"),
    })
}
