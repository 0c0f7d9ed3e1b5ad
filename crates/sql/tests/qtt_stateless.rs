//! ksqlDB's own query-validation tests (QTT), run in process against the parts of the
//! engine that exist so far: cases whose statements are CREATE STREAM sources plus one
//! stateless CREATE STREAM … AS SELECT (no aggregation, join or window), in the JSON,
//! DELIMITED and KAFKA formats. Inputs are encoded with the sources' formats, pushed
//! through the query, and the outputs compared with the expected records as the QTT
//! harness compares them (JSON trees, numbers by value).
//!
//! The corpus is read in place from `../shared/conformance/ksql-qtt` (never copied); where
//! it is absent the test says so and passes. The pass count may only go up: the floor below
//! is the count measured when this slice landed.

mod common;

use serde_json::Value as J;
use strata_sql::analyzer::OutputColumn;
use strata_sql::ast::{SourceKind, SqlType, Statement};
use strata_sql::catalog::{name_types, Catalog, Topics};
use strata_sql::eval::NoFunctions;
use strata_sql::format::{deserialize, from_json, serialize, Format};
use strata_sql::pipeline::{Outcome, RecordIn};
use strata_sql::planner::plan_create_as_select;

use common::{corpus, strip_comments};

/// Cases passing when this runner landed; a drop is a regression.
const PASS_FLOOR: usize = 343;

struct AllTopics;
impl Topics for AllTopics {
    fn partitions(&self, _: &str) -> Option<i32> {
        Some(1)
    }
}

/// Bytes for a QTT record field (JSON tree) in `format` for `columns`.
fn encode(
    format: &Format,
    columns: &[(String, SqlType)],
    field: &J,
    wrapped: bool,
) -> Result<Option<Vec<u8>>, String> {
    if field.is_null() {
        return Ok(None);
    }
    match format {
        Format::Json => Ok(Some(field.to_string().into_bytes())),
        Format::Delimited { .. } => match field {
            J::String(s) => Ok(Some(s.clone().into_bytes())),
            other => Ok(Some(other.to_string().into_bytes())),
        },
        Format::Kafka => {
            let v = from_json(field, &columns[0].1).map_err(|e| e.0)?;
            serialize(format, columns, &[v], wrapped).map_err(|e| e.0)
        }
        Format::None => Ok(None),
    }
}

/// A produced field as the JSON tree QTT compares.
fn decode(
    format: &Format,
    columns: &[(String, SqlType)],
    bytes: Option<&[u8]>,
    wrapped: bool,
) -> Result<J, String> {
    let Some(bytes) = bytes else {
        return Ok(J::Null);
    };
    match format {
        Format::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        Format::Delimited { .. } => Ok(J::String(String::from_utf8_lossy(bytes).into_owned())),
        Format::Kafka => {
            let v = deserialize(format, columns, Some(bytes), wrapped).map_err(|e| e.0)?;
            Ok(serde_json::from_str(&strata_sql::format::json_text(&v[0])).unwrap())
        }
        Format::None => Ok(J::Null),
    }
}

/// QTT's comparison: numbers by value (1.50 = 1.5 as JSON numbers parsed to f64 here).
fn same(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Number(x), J::Number(y)) => x.as_f64() == y.as_f64(),
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Runs one case: Ok(true) passed, Ok(false) failed, Err(_) not supported by this runner.
fn run_case(case: &J) -> Result<bool, String> {
    if case.get("expectedException").is_some() || case.get("properties").is_some() {
        return Err("properties or expected exception".into());
    }
    if let Some(formats) = case.get("format").and_then(J::as_array) {
        if !formats.iter().any(|f| f == "JSON") {
            return Err("format".into());
        }
    }
    let statements: Vec<String> = case["statements"]
        .as_array()
        .ok_or("statements")?
        .iter()
        .map(|s| s.as_str().unwrap_or_default().replace("{FORMAT}", "JSON"))
        .collect();
    let mut catalog = Catalog::default();
    let mut query = None;
    for text in &statements {
        let stmt = strata_sql::parse_statement(text).map_err(|e| e.to_string())?;
        match &stmt {
            Statement::CreateSource {
                kind: SourceKind::Stream,
                ..
            } => {
                catalog.create_source(&stmt, &AllTopics).map_err(|e| e.0)?;
            }
            Statement::CreateAsSelect {
                kind: SourceKind::Stream,
                query: q,
                ..
            } if query.is_none() => {
                let source = catalog.get(&q.from).ok_or("source")?;
                if source.kind != SourceKind::Stream || q.emit.is_some() && q.limit.is_some() {
                    return Err("table source".into());
                }
                let planned =
                    plan_create_as_select(&stmt, &catalog, &AllTopics).map_err(|e| e.0)?;
                let strata_sql::planner::Planned::Stateless(q) = planned.query else {
                    return Err("aggregate".into());
                };
                query = Some((planned.sink.topic.clone(), q));
            }
            _ => return Err("statement kind".into()),
        }
    }
    let Some((sink_topic, query)) = query else {
        return Err("no query".into());
    };
    let key_cols = name_types(&query.source.key);
    let value_cols = name_types(&query.source.value);
    let mut produced = Vec::new();
    for (offset, input) in case["inputs"]
        .as_array()
        .ok_or("inputs")?
        .iter()
        .enumerate()
    {
        if input["topic"].as_str() != Some(query.source.topic.as_str()) {
            return Err("several input topics".into());
        }
        let key = encode(&query.source.key_format, &key_cols, &input["key"], false)?;
        let value = encode(
            &query.source.value_format,
            &value_cols,
            &input["value"],
            query.source.wrap_single_value,
        )?;
        let outcome = query.process(
            RecordIn {
                key: key.as_deref(),
                value: value.as_deref(),
                timestamp: input["timestamp"].as_i64().unwrap_or(0),
                partition: 0,
                offset: offset as i64,
            },
            &NoFunctions,
        );
        match outcome {
            Outcome::Emit(r) => produced.push(r),
            Outcome::Skipped(why)
                if std::env::var("QTT_CASE")
                    .is_ok_and(|n| case["name"].as_str() == Some(n.as_str())) =>
            {
                eprintln!("skipped: {why}")
            }
            _ => {}
        }
    }
    let out_key = OutputColumn::name_types(&query.projection.key);
    let out_value = OutputColumn::name_types(&query.projection.value);
    let expected: Vec<&J> = case["outputs"]
        .as_array()
        .ok_or("outputs")?
        .iter()
        .filter(|o| o["topic"].as_str() == Some(sink_topic.as_str()))
        .collect();
    if expected.len() != case["outputs"].as_array().map_or(0, Vec::len) {
        return Err("outputs to other topics".into());
    }
    let debug = std::env::var("QTT_CASE").is_ok_and(|n| case["name"].as_str() == Some(n.as_str()));
    if expected.len() != produced.len() {
        if debug {
            eprintln!(
                "expected {} records, produced {}: {produced:?}",
                expected.len(),
                produced.len()
            );
        }
        return Ok(false);
    }
    for (want, got) in expected.iter().zip(&produced) {
        let key = decode(&query.sink.key_format, &out_key, got.key.as_deref(), false)?;
        let value = decode(
            &query.sink.value_format,
            &out_value,
            got.value.as_deref(),
            true,
        )?;
        if !same(&want["key"], &key) || !same(&want["value"], &value) {
            if debug {
                eprintln!(
                    "want key {} value {}\n got key {key} value {value}",
                    want["key"], want["value"]
                );
            }
            return Ok(false);
        }
        if let Some(ts) = want.get("timestamp").and_then(J::as_i64) {
            if ts != got.timestamp {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[test]
fn stateless_stream_queries_match_ksqldbs_expected_outputs() {
    let Some(dir) = corpus() else {
        eprintln!("ksql-qtt corpus not found next to the repository: skipped");
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(dir.join("query-validation-tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let (mut attempted, mut passed) = (0, 0);
    let mut failed = Vec::new();
    for file in files {
        let doc: J =
            serde_json::from_str(&strip_comments(&std::fs::read_to_string(&file).unwrap()))
                .unwrap();
        for case in doc["tests"].as_array().into_iter().flatten() {
            match run_case(case) {
                Ok(true) => {
                    attempted += 1;
                    passed += 1;
                }
                Ok(false) => {
                    attempted += 1;
                    failed.push(format!(
                        "{} - {}",
                        file.file_name().unwrap().to_string_lossy(),
                        case["name"].as_str().unwrap_or("?")
                    ));
                }
                Err(_) => {}
            }
        }
    }
    eprintln!("stateless QTT cases: {passed} passed of {attempted} attempted");
    for f in &failed {
        eprintln!("  failed: {f}");
    }
    assert!(
        passed >= PASS_FLOOR,
        "{passed} stateless QTT cases passed, fewer than the {PASS_FLOOR} that passed before"
    );
}
