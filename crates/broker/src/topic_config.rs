//! Topic configs: which keys Strata honours, how they parse, and how they are described.
//! Unknown keys and bad values are refused with INVALID_CONFIG and a message that names them.

use std::collections::BTreeMap;

use strata_storage::{LogConfig, TimestampType};

use crate::BrokerConfig;

/// DescribeConfigs `config_source` values.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// Topic config keys Strata honours, with the broker setting each defaults to.
pub const TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "log.cleanup.policy"),
    ("flush.messages", "log.flush.interval.messages"),
    ("flush.ms", "log.flush.interval.ms"),
    ("max.message.bytes", "message.max.bytes"),
    (
        "message.timestamp.after.max.ms",
        "log.message.timestamp.after.max.ms",
    ),
    (
        "message.timestamp.before.max.ms",
        "log.message.timestamp.before.max.ms",
    ),
    ("message.timestamp.type", "log.message.timestamp.type"),
    ("retention.bytes", "log.retention.bytes"),
    ("retention.ms", "log.retention.ms"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.ms", "log.roll.ms"),
];

fn parse_i64(key: &str, value: &str) -> Result<i64, String> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| format!("Invalid value {value} for configuration {key}: not a number"))
}

/// Applies one topic config to a log config, checking the value.
fn apply(config: &mut LogConfig, key: &str, value: &str) -> Result<(), String> {
    match key {
        "cleanup.policy" => {
            if value != "delete" {
                return Err(format!("Invalid value {value} for configuration cleanup.policy: only 'delete' is supported so far (compaction is not built yet)"));
            }
        }
        "flush.messages" => config.flush_messages = parse_i64(key, value)?,
        "flush.ms" => config.flush_ms = parse_i64(key, value)?,
        "max.message.bytes" => {
            let v = parse_i64(key, value)?;
            config.max_message_bytes = usize::try_from(v).map_err(|_| format!("Invalid value {value} for configuration {key}"))?;
        }
        "message.timestamp.type" => {
            config.timestamp_type = match value {
                "CreateTime" => TimestampType::CreateTime,
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => return Err(format!("Invalid value {value} for configuration {key}: must be CreateTime or LogAppendTime")),
            }
        }
        "message.timestamp.after.max.ms" => config.timestamp_after_max_ms = parse_i64(key, value)?,
        "message.timestamp.before.max.ms" => config.timestamp_before_max_ms = parse_i64(key, value)?,
        "retention.bytes" => config.retention_bytes = parse_i64(key, value)?,
        "retention.ms" => config.retention_ms = parse_i64(key, value)?,
        "segment.bytes" => {
            let v = parse_i64(key, value)?;
            config.segment_bytes = u64::try_from(v).map_err(|_| format!("Invalid value {value} for configuration {key}"))?;
        }
        "segment.ms" => config.segment_ms = parse_i64(key, value)?,
        _ => return Err(format!("Unknown topic config name: {key}")),
    }
    Ok(())
}

/// The effective log config of a topic: broker defaults overridden by the topic's configs.
pub fn log_config(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    let mut config = broker.log_defaults();
    for (k, v) in overrides {
        apply(&mut config, k, v)?;
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// The value a broker default gives a topic config.
fn broker_default(broker: &BrokerConfig, key: &str) -> String {
    let d = broker.log_defaults();
    match key {
        "cleanup.policy" => "delete".into(),
        "flush.messages" => d.flush_messages.to_string(),
        "flush.ms" => d.flush_ms.to_string(),
        "max.message.bytes" => d.max_message_bytes.to_string(),
        "message.timestamp.after.max.ms" => d.timestamp_after_max_ms.to_string(),
        "message.timestamp.before.max.ms" => d.timestamp_before_max_ms.to_string(),
        "message.timestamp.type" => broker.log_message_timestamp_type.clone(),
        "retention.bytes" => d.retention_bytes.to_string(),
        "retention.ms" => d.retention_ms.to_string(),
        "segment.bytes" => d.segment_bytes.to_string(),
        "segment.ms" => d.segment_ms.to_string(),
        _ => String::new(),
    }
}

/// One described config: name, value, source, and synonyms (most specific first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfig {
    pub name: &'static str,
    pub value: String,
    pub source: i8,
    pub synonyms: Vec<(String, String, i8)>,
}

/// Describes every honoured topic config, as Kafka's DescribeConfigs does.
pub fn describe(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<DescribedConfig> {
    let static_defaults = BrokerConfig::default();
    TOPIC_CONFIGS
        .iter()
        .map(|&(name, broker_key)| {
            let default_value = broker_default(broker, name);
            let broker_source = if default_value == broker_default(&static_defaults, name) {
                SOURCE_DEFAULT
            } else {
                SOURCE_STATIC_BROKER
            };
            let mut synonyms = Vec::new();
            let (value, source) = match overrides.get(name) {
                Some(v) => {
                    synonyms.push((name.to_string(), v.clone(), SOURCE_DYNAMIC_TOPIC));
                    (v.clone(), SOURCE_DYNAMIC_TOPIC)
                }
                None => (default_value.clone(), broker_source),
            };
            synonyms.push((broker_key.to_string(), default_value, broker_source));
            DescribedConfig {
                name,
                value,
                source,
                synonyms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_bad_values_are_named() {
        let b = BrokerConfig::default();
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "1000".to_string());
        o.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        let c = log_config(&b, &o).unwrap();
        assert_eq!(
            (c.retention_ms, c.timestamp_type),
            (1000, TimestampType::LogAppendTime)
        );
        o.insert("segment.bytes".to_string(), "abc".to_string());
        assert!(log_config(&b, &o).unwrap_err().contains("segment.bytes"));
        let mut u = BTreeMap::new();
        u.insert("no.such.config".to_string(), "1".to_string());
        assert!(log_config(&b, &u).unwrap_err().contains("no.such.config"));
    }

    #[test]
    fn describe_reports_sources_and_synonyms() {
        let b = BrokerConfig {
            log_retention_ms: 5,
            ..BrokerConfig::default()
        };
        let mut o = BTreeMap::new();
        o.insert("max.message.bytes".to_string(), "2000000".to_string());
        let d = describe(&b, &o);
        let m = d.iter().find(|c| c.name == "max.message.bytes").unwrap();
        assert_eq!(
            (m.value.as_str(), m.source, m.synonyms.len()),
            ("2000000", SOURCE_DYNAMIC_TOPIC, 2)
        );
        let r = d.iter().find(|c| c.name == "retention.ms").unwrap();
        assert_eq!((r.value.as_str(), r.source), ("5", SOURCE_STATIC_BROKER));
        let s = d.iter().find(|c| c.name == "segment.bytes").unwrap();
        assert_eq!(s.source, SOURCE_DEFAULT);
    }
}
