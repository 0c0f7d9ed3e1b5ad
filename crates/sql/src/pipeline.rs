//! One record through a stateless persistent query (a filter / projection / repartition of
//! a stream): decode the key and value with the source's formats, evaluate WHERE and the
//! projection on the row (with ROWTIME, ROWPARTITION and ROWOFFSET), encode with the sink's
//! formats. Pure: the engine feeds records in and writes what comes out.
//!
//! A record that cannot be decoded or evaluated is skipped with the reason (ksqlDB writes
//! such records to its processing log and goes on).

use crate::analyzer::{OutputColumn, Projection};
use crate::catalog::Source;
use crate::eval::{eval_column, eval_condition, Functions, Row};
use crate::format::{deserialize, serialize, Format};
use crate::value::Value;

/// A record read from the source topic.
#[derive(Debug, Clone, Copy)]
pub struct RecordIn<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub timestamp: i64,
    pub partition: i32,
    pub offset: i64,
}

/// A record to write to the sink topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOut {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
}

/// What became of one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Emit(RecordOut),
    /// Filtered out by WHERE.
    Filtered,
    /// Could not be processed (ksqlDB's processing log).
    Skipped(String),
}

/// The sink side of a query: formats and wrapping.
#[derive(Debug, Clone)]
pub struct Sink {
    pub key_format: Format,
    pub value_format: Format,
    pub wrap_single_value: bool,
    /// `TIMESTAMP` (and `TIMESTAMP_FORMAT`) of a CREATE … AS SELECT: the output value
    /// column whose value becomes each output record's timestamp.
    pub timestamp_column: Option<(String, Option<String>)>,
}

impl Sink {
    /// An output record's timestamp: the TIMESTAMP column's value, else `default`. None
    /// when the column holds no valid (non-negative) time: the record is not written, as
    /// Kafka Streams refuses it.
    pub fn timestamp(
        &self,
        columns: &[OutputColumn],
        values: &[Value],
        default: i64,
    ) -> Option<i64> {
        self.timestamp_of_row(&[], &[], columns, values, default)
    }

    /// `timestamp`, the column looked for among the value columns, then the key columns.
    pub fn timestamp_of_row(
        &self,
        key_columns: &[OutputColumn],
        key_values: &[Value],
        columns: &[OutputColumn],
        values: &[Value],
        default: i64,
    ) -> Option<i64> {
        let Some((name, format)) = &self.timestamp_column else {
            return Some(default);
        };
        let found = columns
            .iter()
            .position(|c| c.name == *name)
            .map(|i| &values[i])
            .or_else(|| {
                key_columns
                    .iter()
                    .position(|c| c.name == *name)
                    .and_then(|i| key_values.get(i))
            });
        let t = match found {
            Some(Value::Bigint(t)) | Some(Value::Timestamp(t)) => Some(*t),
            Some(Value::String(text)) => format
                .as_deref()
                .and_then(|f| crate::datetime::parse(text, f, "UTC").ok()),
            _ => None,
        };
        t.filter(|t| *t >= 0)
    }
}

/// The record with its event time: the source's TIMESTAMP column's value if it has one
/// (BIGINT milliseconds or a TIMESTAMP), else the record's own timestamp. A record whose
/// TIMESTAMP column is null or cannot be read is an error (ksqlDB skips it).
pub fn with_event_time<'a>(source: &Source, record: RecordIn<'a>) -> Result<RecordIn<'a>, String> {
    let Some(column) = &source.timestamp_column else {
        return Ok(record);
    };
    if record.value.is_none() {
        return Ok(record);
    }
    let values = decode_values(source, record)?;
    match (SourceRow {
        source,
        values: &values,
    })
    .column(None, column)
    {
        // A negative time is invalid: the record is skipped, as ksqlDB's extractor does.
        Some(Value::Bigint(t)) | Some(Value::Timestamp(t)) if *t < 0 => Err(format!(
            "Could not extract the timestamp: {column} is negative ({t})"
        )),
        Some(Value::Bigint(t)) | Some(Value::Timestamp(t)) => Ok(RecordIn {
            timestamp: *t,
            ..record
        }),
        Some(Value::String(text)) => match &source.timestamp_format {
            Some(pattern) => Ok(RecordIn {
                timestamp: crate::datetime::parse(text, pattern, "UTC")
                    .map_err(|e| format!("Could not extract the timestamp from {column}: {e}"))?,
                ..record
            }),
            None => Err(format!(
                "Could not extract the timestamp from {column}: a STRING column needs TIMESTAMP_FORMAT"
            )),
        },
        Some(Value::Null) | None => Err(format!(
            "Could not extract the timestamp: the TIMESTAMP column {column} is null"
        )),
        Some(other) => Err(format!(
            "Could not extract the timestamp from {column}: {other:?} is not a timestamp"
        )),
    }
}

/// A stateless query over one stream.
pub struct StreamQuery {
    pub source: Source,
    pub projection: Projection,
    pub sink: Sink,
}

/// The names of a source's rows, in the order `decode_values` gives their values: key
/// columns, value columns, then ROWTIME, ROWPARTITION and ROWOFFSET.
pub fn row_names(source: &Source) -> Vec<String> {
    source
        .key
        .iter()
        .chain(&source.value)
        .map(|c| c.name.clone())
        .chain(PSEUDO_COLUMNS.map(String::from))
        .collect()
}

const PSEUDO_COLUMNS: [&str; 3] = ["ROWTIME", "ROWPARTITION", "ROWOFFSET"];

/// A record's row: key columns, value columns (NULLs for a tombstone), then ROWTIME,
/// ROWPARTITION and ROWOFFSET; as (names, values).
pub fn decode_row(
    source: &Source,
    record: RecordIn<'_>,
) -> Result<(Vec<String>, Vec<Value>), String> {
    Ok((row_names(source), decode_values(source, record)?))
}

/// A record's row values (see `row_names` for their order).
pub fn decode_values(source: &Source, record: RecordIn<'_>) -> Result<Vec<Value>, String> {
    let mut values = if source.key.is_empty() {
        Vec::with_capacity(source.value.len() + 3)
    } else {
        deserialize(&source.key_format, &source.key, record.key, false)
            .map_err(|e| format!("Error deserializing key: {e}"))?
    };
    match record.value {
        None => values.extend(std::iter::repeat_n(Value::Null, source.value.len())),
        Some(bytes) => values.extend(
            deserialize(
                &source.value_format,
                &source.value,
                Some(bytes),
                source.wrap_single_value || source.value.len() != 1,
            )
            .map_err(|e| format!("Error deserializing value: {e}"))?,
        ),
    }
    values.extend([
        Value::Bigint(record.timestamp),
        Value::Int(record.partition),
        Value::Bigint(record.offset),
    ]);
    Ok(values)
}

/// A source's row (values as `decode_values` gives them), its columns found by name.
pub struct SourceRow<'a> {
    pub source: &'a Source,
    pub values: &'a [Value],
}

impl Row for SourceRow<'_> {
    fn column(&self, _source: Option<&str>, name: &str) -> Option<&Value> {
        self.source
            .key
            .iter()
            .chain(&self.source.value)
            .map(|c| c.name.as_str())
            .chain(PSEUDO_COLUMNS)
            .position(|n| n == name)
            .and_then(|i| self.values.get(i))
    }
}

/// Whether a row passes a WHERE clause (NULL does not).
fn passes(filter: Option<&crate::ast::Expr>, row: &dyn Row, functions: &dyn Functions) -> bool {
    filter.is_none_or(|f| eval_condition(f, row, functions))
}

/// A transient (push) query over one source: the selected columns of each row that
/// passes WHERE, in the order written. Tombstones are not rows.
pub struct TransientQuery {
    pub source: Source,
    pub columns: Vec<OutputColumn>,
    pub filter: Option<crate::ast::Expr>,
}

impl TransientQuery {
    /// The row's selected values, None when filtered out (or a tombstone); Err when it
    /// cannot be decoded or evaluated.
    pub fn process(
        &self,
        record: RecordIn<'_>,
        functions: &dyn Functions,
    ) -> Result<Option<Vec<Value>>, String> {
        if record.value.is_none() {
            return Ok(None);
        }
        let record = with_event_time(&self.source, record)?;
        let values = decode_values(&self.source, record)?;
        let row = SourceRow {
            source: &self.source,
            values: &values,
        };
        if !passes(self.filter.as_ref(), &row, functions) {
            return Ok(None);
        }
        Ok(Some(
            self.columns
                .iter()
                .map(|c| eval_column(&c.expr, &c.sql_type, &row, functions))
                .collect(),
        ))
    }
}

impl StreamQuery {
    pub fn process(&self, record: RecordIn<'_>, functions: &dyn Functions) -> Outcome {
        match self.try_process(record, functions) {
            Ok(o) => o,
            Err(why) => Outcome::Skipped(why),
        }
    }

    fn try_process(
        &self,
        record: RecordIn<'_>,
        functions: &dyn Functions,
    ) -> Result<Outcome, String> {
        // A null value (tombstone) on a stream: dropped by a WHERE clause, else passed on as
        // a null value under the projected key, as ksqlDB does.
        // A table's row without a key is no row (ksqlDB drops it).
        if self.source.kind == crate::ast::SourceKind::Table
            && record.key.is_none()
            && !self.source.key.is_empty()
        {
            return Ok(Outcome::Filtered);
        }
        let record = with_event_time(&self.source, record)?;
        let tombstone = record.value.is_none();
        if tombstone && self.projection.filter.is_some() {
            return Ok(Outcome::Filtered);
        }
        let values = decode_values(&self.source, record)?;
        let row = SourceRow {
            source: &self.source,
            values: &values,
        };
        if !passes(self.projection.filter.as_ref(), &row, functions) {
            return Ok(Outcome::Filtered);
        }
        let compute = |cols: &[OutputColumn]| -> Vec<Value> {
            cols.iter()
                .map(|c| eval_column(&c.expr, &c.sql_type, &row, functions))
                .collect()
        };
        let key_values = compute(&self.projection.key);
        let value_values = if tombstone {
            Vec::new()
        } else {
            compute(&self.projection.value)
        };
        let out_key_cols = &self.projection.key;
        let out_value_cols = &self.projection.value;
        let key = if out_key_cols.is_empty() {
            None
        } else {
            serialize(&self.sink.key_format, out_key_cols, &key_values, false)
                .map_err(|e| format!("Error serializing key: {e}"))?
        };
        let value = if tombstone {
            None
        } else {
            serialize(
                &self.sink.value_format,
                out_value_cols,
                &value_values,
                self.sink.wrap_single_value || out_value_cols.len() != 1,
            )
            .map_err(|e| format!("Error serializing value: {e}"))?
        };
        let timestamp = if tombstone {
            record.timestamp
        } else {
            match self.sink.timestamp_of_row(
                &self.projection.key,
                &key_values,
                &self.projection.value,
                &value_values,
                record.timestamp,
            ) {
                Some(t) => t,
                None => return Err("the output's TIMESTAMP column holds no valid time".into()),
            }
        };
        Ok(Outcome::Emit(RecordOut {
            key,
            value,
            timestamp,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::project;
    use crate::ast::Statement;
    use crate::catalog::{Catalog, Topics};
    use crate::eval::NoFunctions;
    use crate::parse_statement;

    struct All;
    impl Topics for All {
        fn partitions(&self, _: &str) -> Option<i32> {
            Some(1)
        }
    }

    fn query(create: &str, csas: &str) -> StreamQuery {
        let mut c = Catalog::default();
        c.create_source(&parse_statement(create).unwrap(), &All)
            .unwrap();
        let Statement::CreateAsSelect { query, .. } = parse_statement(csas).unwrap() else {
            panic!()
        };
        let projection = project(&query, &c, "OUTPUT").unwrap();
        let source = c.get(&query.from).unwrap().clone();
        StreamQuery {
            sink: Sink {
                key_format: source.key_format.clone(),
                value_format: source.value_format.clone(),
                wrap_single_value: true,
                timestamp_column: None,
            },
            source,
            projection,
        }
    }

    fn record<'a>(key: &'a [u8], value: &'a [u8]) -> RecordIn<'a> {
        RecordIn {
            key: Some(key),
            value: Some(value),
            timestamp: 1000,
            partition: 0,
            offset: 5,
        }
    }

    #[test]
    fn filter_and_project_a_json_stream_keyed_by_kafka_int() {
        let q = query(
            "CREATE STREAM INPUT (id int KEY, name STRING, price DECIMAL(4,2)) WITH (kafka_topic='t', value_format='JSON');",
            "CREATE STREAM OUTPUT AS SELECT id, UCASE(name) AS n, price * 2 AS p, ROWOFFSET AS o FROM INPUT WHERE id < 10;",
        );
        let out = q.process(
            record(&8i32.to_be_bytes(), br#"{"name":"a","price":1.25}"#),
            &NoFunctions,
        );
        assert_eq!(
            out,
            Outcome::Emit(RecordOut {
                key: Some(8i32.to_be_bytes().to_vec()),
                value: Some(br#"{"N":"A","P":2.50,"O":5}"#.to_vec()),
                timestamp: 1000,
            })
        );
        assert_eq!(
            q.process(
                record(&10i32.to_be_bytes(), br#"{"name":"b"}"#),
                &NoFunctions
            ),
            Outcome::Filtered
        );
        let bad = q.process(record(&[1, 2], br#"{"name":"b"}"#), &NoFunctions);
        assert!(matches!(bad, Outcome::Skipped(why) if why.contains("Error deserializing key")));
        let bad = q.process(record(&1i32.to_be_bytes(), b"not json"), &NoFunctions);
        assert!(matches!(bad, Outcome::Skipped(why) if why.contains("Error deserializing value")));
    }

    #[test]
    fn an_expression_that_fails_on_a_row_is_null_in_its_column_and_false_in_where() {
        // ksqlDB's select mapper: the row is still written, with NULL where the
        // expression failed; a WHERE clause that fails drops the row.
        let q = query(
            "CREATE STREAM INPUT (id int KEY, name STRING) WITH (kafka_topic='t', value_format='JSON');",
            "CREATE STREAM OUTPUT AS SELECT id, CAST(name AS INT) AS n, name FROM INPUT;",
        );
        let out = q.process(
            record(&1i32.to_be_bytes(), br#"{"name":"x"}"#),
            &NoFunctions,
        );
        assert_eq!(
            out,
            Outcome::Emit(RecordOut {
                key: Some(1i32.to_be_bytes().to_vec()),
                value: Some(br#"{"N":null,"NAME":"x"}"#.to_vec()),
                timestamp: 1000,
            })
        );
        let q = query(
            "CREATE STREAM INPUT (id int KEY, name STRING) WITH (kafka_topic='t', value_format='JSON');",
            "CREATE STREAM OUTPUT AS SELECT id, name FROM INPUT WHERE CAST(name AS INT) > 0;",
        );
        assert_eq!(
            q.process(
                record(&1i32.to_be_bytes(), br#"{"name":"x"}"#),
                &NoFunctions
            ),
            Outcome::Filtered
        );
    }
}
