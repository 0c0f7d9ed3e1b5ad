//! The metastore: streams and tables by name, with their key and value columns, topic and
//! formats, built from CREATE STREAM / CREATE TABLE with ksqlDB's checks and error
//! messages. Pure: whether a topic exists and how many partitions it has comes from the
//! caller ([`Topics`]).

use std::collections::BTreeMap;

use crate::ast::{
    ColumnConstraint, ColumnDef, Literal, Properties, SourceKind, SqlType, Statement,
};
use crate::format::Format;

/// Columns every row has without declaring them (ksqlDB's pseudo and window columns).
pub const RESERVED_COLUMNS: &[&str] = &[
    "ROWTIME",
    "ROWPARTITION",
    "ROWOFFSET",
    "WINDOWSTART",
    "WINDOWEND",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub sql_type: SqlType,
    /// `HEADERS` (all headers) or `HEADER('k')`.
    pub header: Option<HeaderColumn>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderColumn {
    All,
    Key(String),
}

/// Columns as (name, type) pairs, as the formats take them.
pub fn name_types(columns: &[Column]) -> Vec<(String, SqlType)> {
    columns
        .iter()
        .map(|c| (c.name.clone(), c.sql_type.clone()))
        .collect()
}

/// A stream or table.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    pub key: Vec<Column>,
    pub value: Vec<Column>,
    pub topic: String,
    pub key_format: Format,
    pub value_format: Format,
    /// `WRAP_SINGLE_VALUE`: a single value column as a JSON object (the default) or bare.
    pub wrap_single_value: bool,
    /// `TIMESTAMP`: the column holding each row's event time (else the record timestamp).
    pub timestamp_column: Option<String>,
    pub timestamp_format: Option<String>,
    /// Whether `CREATE SOURCE` made it read-only (no INSERTs, no persistent queries into it).
    pub read_only: bool,
}

/// What the caller knows about Kafka topics.
pub trait Topics {
    /// The partition count of `topic`, or None if it does not exist.
    fn partitions(&self, topic: &str) -> Option<i32>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CatalogError(pub String);

fn err(m: impl Into<String>) -> CatalogError {
    CatalogError(m.into())
}

/// What a CREATE asks of Kafka: a topic to create (name, partitions, replicas) if missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRequest {
    pub name: String,
    pub partitions: i32,
    pub replicas: i16,
}

#[derive(Debug, Default, Clone)]
pub struct Catalog {
    sources: BTreeMap<String, Source>,
}

pub(crate) fn property<'a>(properties: &'a Properties, name: &str) -> Option<&'a Literal> {
    properties.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

pub(crate) fn string_property(
    properties: &Properties,
    name: &str,
) -> Result<Option<String>, CatalogError> {
    match property(properties, name) {
        None => Ok(None),
        Some(Literal::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(err(format!(
            "Invalid value for property {name}: expected a string, got {other:?}"
        ))),
    }
}

pub(crate) fn int_property(
    properties: &Properties,
    name: &str,
) -> Result<Option<i64>, CatalogError> {
    match property(properties, name) {
        None => Ok(None),
        Some(Literal::Integer(i)) => Ok(Some(*i)),
        Some(Literal::String(s)) => s.trim().parse().map(Some).map_err(|_| {
            err(format!(
                "Invalid value for property {name}: '{s}' is not a number"
            ))
        }),
        Some(other) => Err(err(format!("Invalid value for property {name}: {other:?}"))),
    }
}

/// The properties CREATE STREAM / TABLE accept.
const KNOWN_PROPERTIES: &[&str] = &[
    "KAFKA_TOPIC",
    "KEY_FORMAT",
    "VALUE_FORMAT",
    "FORMAT",
    "PARTITIONS",
    "REPLICAS",
    "RETENTION_MS",
    "TIMESTAMP",
    "TIMESTAMP_FORMAT",
    "VALUE_DELIMITER",
    "KEY_DELIMITER",
    "WRAP_SINGLE_VALUE",
    "WINDOW_TYPE",
    "WINDOW_SIZE",
    "KEY_SCHEMA_ID",
    "VALUE_SCHEMA_ID",
    "KEY_SCHEMA_FULL_NAME",
    "VALUE_SCHEMA_FULL_NAME",
    "VALUE_AVRO_SCHEMA_FULL_NAME",
    "CLEANUP_POLICY",
];

pub(crate) fn json_map_keys_are_strings(t: &SqlType) -> bool {
    match t {
        SqlType::Map(k, v) => **k == SqlType::String && json_map_keys_are_strings(v),
        SqlType::Array(i) => json_map_keys_are_strings(i),
        SqlType::Struct(fields) => fields.iter().all(|(_, t)| json_map_keys_are_strings(t)),
        _ => true,
    }
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&Source> {
        self.sources.get(name)
    }

    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.sources.values()
    }

    /// Checks a CREATE STREAM / TABLE with columns and adds the source; returns the topic
    /// to create when it does not exist yet (PARTITIONS given).
    pub fn create_source(
        &mut self,
        statement: &Statement,
        topics: &dyn Topics,
    ) -> Result<Option<TopicRequest>, CatalogError> {
        let Statement::CreateSource {
            kind,
            or_replace,
            source: read_only,
            if_not_exists,
            name,
            columns,
            properties,
        } = statement
        else {
            return Err(err("not a CREATE STREAM or CREATE TABLE statement"));
        };
        if let Some(existing) = self.sources.get(name) {
            if *if_not_exists {
                return Ok(None);
            }
            if !*or_replace {
                let what = match existing.kind {
                    SourceKind::Stream => "stream",
                    SourceKind::Table => "table",
                };
                return Err(err(format!(
                    "Cannot add {} '{name}': A {what} with the same name already exists",
                    match kind {
                        SourceKind::Stream => "stream",
                        SourceKind::Table => "table",
                    }
                )));
            }
        }
        for (key, _) in properties {
            if !KNOWN_PROPERTIES.contains(&key.as_str()) {
                return Err(err(format!(
                    "Invalid config variable(s) in the WITH clause: {key}"
                )));
            }
        }
        let (key, value) = split_columns(*kind, columns)?;
        // A source of key columns only is allowed (ksqlDB's QTT streams do it).
        if value.is_empty() && key.is_empty() {
            return Err(err("The statement does not define any columns."));
        }
        let topic = string_property(properties, "KAFKA_TOPIC")?.ok_or_else(|| {
            err("Missing required property \"KAFKA_TOPIC\" which has no default value.")
        })?;
        let format = string_property(properties, "FORMAT")?;
        let key_format_name = string_property(properties, "KEY_FORMAT")?;
        let value_format_name = string_property(properties, "VALUE_FORMAT")?;
        if format.is_some() && (key_format_name.is_some() || value_format_name.is_some()) {
            return Err(err(
                "Cannot supply both 'FORMAT' and 'KEY_FORMAT' or 'VALUE_FORMAT' properties, as 'FORMAT' sets both key and value formats.",
            ));
        }
        let value_format_name = value_format_name
            .or(format.clone())
            .ok_or_else(|| err("Statement is missing the 'VALUE_FORMAT' property from the WITH clause. Either provide one or set a default via the 'ksql.persistence.default.format.value' config."))?;
        let key_format_name = key_format_name.or(format).unwrap_or_else(|| "KAFKA".into());
        let key_format = Format::parse(
            &key_format_name,
            string_property(properties, "KEY_DELIMITER")?.as_deref(),
        )
        .map_err(|e| err(e.0))?;
        let value_format = Format::parse(
            &value_format_name,
            string_property(properties, "VALUE_DELIMITER")?.as_deref(),
        )
        .map_err(|e| err(e.0))?;
        // No MAP in a key; KAFKA keys of one column of a type it can write.
        crate::format::check_key_schema(&key_format, &key).map_err(|e| err(e.0))?;
        for (cols, fmt) in [(&key, &key_format), (&value, &value_format)] {
            if *fmt == Format::Json && !cols.iter().all(|c| json_map_keys_are_strings(&c.sql_type))
            {
                return Err(err("JSON only supports MAP types with STRING keys"));
            }
        }
        let wrap = match property(properties, "WRAP_SINGLE_VALUE") {
            None => true,
            Some(Literal::Boolean(b)) => *b,
            Some(Literal::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Literal::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(other) => {
                return Err(err(format!(
                    "Invalid value for WRAP_SINGLE_VALUE: {other:?}"
                )))
            }
        };
        if property(properties, "WRAP_SINGLE_VALUE").is_some() && value.len() != 1 {
            return Err(err(
                "'WRAP_SINGLE_VALUE' is only valid for single-field value schemas",
            ));
        }
        let timestamp_column = string_property(properties, "TIMESTAMP")?.map(|t| {
            let t = t.trim_matches('`');
            if t.starts_with('"') {
                t.trim_matches('"').to_string()
            } else {
                t.to_ascii_uppercase()
            }
        });
        if let Some(ts) = &timestamp_column {
            let col = key
                .iter()
                .chain(&value)
                .find(|c| c.name == *ts)
                .ok_or_else(|| err(format!("The TIMESTAMP column set in the WITH clause does not exist in the schema: '{ts}'")))?;
            if !matches!(
                col.sql_type,
                SqlType::Bigint | SqlType::Timestamp | SqlType::String
            ) {
                return Err(err(format!(
                    "Timestamp column, `{ts}`, should be LONG(INT64), TIMESTAMP, or a String with a timestamp_format specified."
                )));
            }
        }
        let request = match topics.partitions(&topic) {
            Some(_) => None,
            None => match int_property(properties, "PARTITIONS")? {
                Some(p) if p > 0 => Some(TopicRequest {
                    name: topic.clone(),
                    partitions: p as i32,
                    replicas: int_property(properties, "REPLICAS")?.unwrap_or(-1) as i16,
                }),
                Some(p) => return Err(err(format!("Invalid number of partitions: {p}"))),
                None => {
                    return Err(err(format!(
                        "Topic '{topic}' does not exist. If you want to create a new topic for the stream/table please re-run the statement providing the required 'PARTITIONS' configuration in the WITH clause (and optionally 'REPLICAS'). For example: CREATE STREAM {name} (FOO INT) WITH (KAFKA_TOPIC='{topic}', PARTITIONS=2, REPLICAS=1, FORMAT='JSON');"
                    )))
                }
            },
        };
        self.sources.insert(
            name.clone(),
            Source {
                name: name.clone(),
                kind: *kind,
                key,
                value,
                topic,
                key_format,
                value_format,
                wrap_single_value: wrap,
                timestamp_column,
                timestamp_format: string_property(properties, "TIMESTAMP_FORMAT")?,
                read_only: *read_only,
            },
        );
        Ok(request)
    }

    /// Adds a source a persistent query derived (CREATE … AS SELECT's sink); refused when
    /// the name is taken, unless `replace`.
    pub fn insert_derived(&mut self, source: Source, replace: bool) -> Result<(), CatalogError> {
        if let Some(existing) = self.sources.get(&source.name) {
            if !replace || existing.kind != source.kind {
                return Err(err(format!(
                    "Cannot add {} '{}': A {} with the same name already exists",
                    kind_name(source.kind).to_ascii_lowercase(),
                    source.name,
                    kind_name(existing.kind).to_ascii_lowercase()
                )));
            }
        }
        self.sources.insert(source.name.clone(), source);
        Ok(())
    }

    /// DROP STREAM / TABLE: the dropped source.
    pub fn drop_source(
        &mut self,
        kind: SourceKind,
        name: &str,
        if_exists: bool,
    ) -> Result<Option<Source>, CatalogError> {
        match self.sources.get(name) {
            None if if_exists => Ok(None),
            None => Err(err(format!("Source {name} does not exist."))),
            Some(s) if s.kind != kind => Err(err(format!(
                "Incompatible data source type is {}, but statement was DROP {}",
                kind_name(s.kind),
                kind_name(kind)
            ))),
            Some(_) => Ok(self.sources.remove(name)),
        }
    }
}

fn kind_name(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Stream => "STREAM",
        SourceKind::Table => "TABLE",
    }
}

/// Key and value columns of a CREATE, with ksqlDB's rules for streams and tables.
fn split_columns(
    kind: SourceKind,
    columns: &[ColumnDef],
) -> Result<(Vec<Column>, Vec<Column>), CatalogError> {
    let mut key = Vec::new();
    let mut value = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in columns {
        if RESERVED_COLUMNS.contains(&c.name.as_str()) {
            return Err(err(format!(
                "'{}' is a reserved column name. You cannot use it as a name for a column.",
                c.name
            )));
        }
        if !seen.insert(c.name.clone()) {
            return Err(err(format!("Duplicate column names: {}", c.name)));
        }
        let header = match (c.constraint, &c.header) {
            (_, Some(k)) => Some(HeaderColumn::Key(k.clone())),
            (ColumnConstraint::Headers, _) => Some(HeaderColumn::All),
            _ => None,
        };
        let column = Column {
            name: c.name.clone(),
            sql_type: c.sql_type.clone(),
            header,
        };
        match (kind, c.constraint) {
            (SourceKind::Stream, ColumnConstraint::PrimaryKey) => {
                return Err(err(format!(
                    "Column `{}` is a 'PRIMARY KEY' column: please use 'KEY' for streams.\nTables have PRIMARY KEYs, which are unique and NON NULL.\nStreams have KEYs, which have no uniqueness or NON NULL constraints.",
                    c.name
                )))
            }
            (SourceKind::Table, ColumnConstraint::Key) => {
                return Err(err(format!(
                    "Column `{}` is a 'KEY' column: please use 'PRIMARY KEY' for tables.\nTables have PRIMARY KEYs, which are unique and NON NULL.\nStreams have KEYs, which have no uniqueness or NON NULL constraints.",
                    c.name
                )))
            }
            (_, ColumnConstraint::Key | ColumnConstraint::PrimaryKey) => key.push(column),
            _ => value.push(column),
        }
    }
    if kind == SourceKind::Table && key.is_empty() {
        return Err(err(
            "Tables require a PRIMARY KEY. Please define the PRIMARY KEY.",
        ));
    }
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_statement;

    struct Existing(&'static [&'static str]);

    impl Topics for Existing {
        fn partitions(&self, topic: &str) -> Option<i32> {
            self.0.contains(&topic).then_some(1)
        }
    }

    fn create(c: &mut Catalog, sql: &str) -> Result<Option<TopicRequest>, CatalogError> {
        c.create_source(&parse_statement(sql).unwrap(), &Existing(&["t"]))
    }

    #[test]
    fn a_stream_and_a_table() {
        let mut c = Catalog::default();
        create(
            &mut c,
            "CREATE STREAM s (id INT KEY, name STRING) WITH (kafka_topic='t', value_format='JSON')",
        )
        .unwrap();
        let s = c.get("S").unwrap();
        assert_eq!(s.key.len(), 1);
        assert_eq!(s.value[0].name, "NAME");
        assert_eq!(
            (s.key_format.clone(), s.value_format.clone()),
            (Format::Kafka, Format::Json)
        );
        let req = create(
            &mut c,
            "CREATE TABLE tb (id INT PRIMARY KEY, v BIGINT) WITH (kafka_topic='new', format='JSON', partitions=3)",
        )
        .unwrap();
        assert_eq!(
            req,
            Some(TopicRequest {
                name: "new".into(),
                partitions: 3,
                replicas: -1
            })
        );
        assert_eq!(c.get("TB").unwrap().key_format, Format::Json);
        assert!(create(
            &mut c,
            "CREATE STREAM IF NOT EXISTS s (x INT) WITH (kafka_topic='t', value_format='JSON')"
        )
        .unwrap()
        .is_none());
        assert_eq!(
            c.drop_source(SourceKind::Stream, "S", false)
                .unwrap()
                .unwrap()
                .name,
            "S"
        );
        assert!(c
            .drop_source(SourceKind::Stream, "S", true)
            .unwrap()
            .is_none());
    }

    #[test]
    fn ksqldbs_refusals_with_its_messages() {
        for (sql, message) in [
            ("CREATE STREAM s (id INT PRIMARY KEY, v INT) WITH (kafka_topic='t', value_format='JSON')", "please use 'KEY' for streams"),
            ("CREATE TABLE s (id INT KEY, v INT) WITH (kafka_topic='t', value_format='JSON')", "please use 'PRIMARY KEY' for tables"),
            ("CREATE TABLE s (v INT) WITH (kafka_topic='t', value_format='JSON')", "Tables require a PRIMARY KEY"),
            ("CREATE STREAM s (id INT KEY, ROWPARTITION INT) WITH (kafka_topic='t', value_format='JSON')", "'ROWPARTITION' is a reserved column name. You cannot use it as a name for a column."),
            ("CREATE STREAM s (id MAP<STRING, INT> KEY, v INT) WITH (kafka_topic='t', format='JSON')", "Map keys, including types that contain maps, are not supported"),
            ("CREATE STREAM s (v MAP<INT, INT>) WITH (kafka_topic='t', value_format='JSON')", "JSON only supports MAP types with STRING keys"),
            ("CREATE STREAM s (a INT, b INT) WITH (kafka_topic='t', value_format='JSON', wrap_single_value=false)", "'WRAP_SINGLE_VALUE' is only valid for single-field value schemas"),
            ("CREATE STREAM s (a INT) WITH (kafka_topic='missing', value_format='JSON')", "Topic 'missing' does not exist"),
            ("CREATE STREAM s (a INT) WITH (value_format='JSON')", "KAFKA_TOPIC"),
            ("CREATE STREAM s (a INT) WITH (kafka_topic='t')", "VALUE_FORMAT"),
            ("CREATE STREAM s (a INT, a STRING) WITH (kafka_topic='t', value_format='JSON')", "Duplicate column names"),
            ("CREATE STREAM s (a INT) WITH (kafka_topic='t', value_format='JSON', nope=1)", "Invalid config variable"),
            ("CREATE STREAM s (a INT) WITH (kafka_topic='t', value_format='JSON', timestamp='b')", "does not exist in the schema"),
            ("CREATE STREAM s WITH (kafka_topic='t', value_format='JSON')", "does not define any columns"),
        ] {
            let mut c = Catalog::default();
            let e = create(&mut c, sql).unwrap_err();
            assert!(e.0.contains(message), "{sql}: {e}");
        }
        let mut c = Catalog::default();
        create(
            &mut c,
            "CREATE STREAM s (a INT) WITH (kafka_topic='t', value_format='JSON')",
        )
        .unwrap();
        let e = create(
            &mut c,
            "CREATE TABLE s (k INT PRIMARY KEY, a INT) WITH (kafka_topic='t', value_format='JSON')",
        )
        .unwrap_err();
        assert!(
            e.0.contains("A stream with the same name already exists"),
            "{e}"
        );
        let e = c.drop_source(SourceKind::Table, "S", false).unwrap_err();
        assert!(
            e.0.contains("Incompatible data source type is STREAM"),
            "{e}"
        );
    }
}
