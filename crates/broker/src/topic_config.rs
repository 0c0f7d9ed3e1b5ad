//! Topic configs: which keys Strata honours, how they parse, and how they are described.
//! Unknown keys and bad values are refused with INVALID_CONFIG and a message that names them.
//!
//! A topic's effective value comes from, most specific first: the topic's own config
//! (dynamic topic), this broker's dynamic config, the cluster-wide dynamic default (both
//! set with AlterConfigs on a BROKER resource and kept in the metadata log), the static
//! broker config (file / flags), Kafka's default.

use std::collections::BTreeMap;

use strata_records::rewrite::Level;
use strata_records::Compression;
use strata_storage::{LogConfig, TimestampType};

use crate::BrokerConfig;

/// DescribeConfigs `config_source` values.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// Dynamic broker configs (broker key → value): this broker's and the cluster default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicDefaults {
    pub broker: BTreeMap<String, String>,
    pub cluster: BTreeMap<String, String>,
}

impl DynamicDefaults {
    /// The dynamic value of a broker key and its source, this broker's first.
    fn get(&self, broker_key: &str) -> Option<(&str, i8)> {
        self.broker
            .get(broker_key)
            .map(|v| (v.as_str(), SOURCE_DYNAMIC_BROKER))
            .or_else(|| {
                self.cluster
                    .get(broker_key)
                    .map(|v| (v.as_str(), SOURCE_DYNAMIC_DEFAULT_BROKER))
            })
    }
}

/// The topic config a broker key is the default of, for the keys that can be set
/// dynamically on a broker.
pub fn topic_key_of(broker_key: &str) -> Option<&'static str> {
    TOPIC_CONFIGS
        .iter()
        .find(|(_, b)| *b == Some(broker_key))
        .map(|(t, _)| *t)
}

/// Checks dynamic broker configs: only topic defaults can change at runtime, with values
/// a topic would accept.
pub fn validate_broker_configs(
    broker: &BrokerConfig,
    configs: &BTreeMap<String, String>,
) -> Result<(), String> {
    let mut config = broker.log_defaults();
    for (k, v) in configs {
        if crate::throttle::RATE_CONFIGS.contains(&k.as_str()) {
            crate::throttle::check_rate(k, v)?;
            continue;
        }
        // Keystores and truststores: checked by building the TLS context (see
        // `Broker::alter_broker_configs`).
        if crate::tls::dynamic_key(k).is_some() {
            continue;
        }
        let Some(topic_key) = topic_key_of(k) else {
            return Err(format!(
                "Cannot update these configs dynamically: {k} (only topic defaults can: {})",
                TOPIC_CONFIGS
                    .iter()
                    .filter_map(|(_, b)| *b)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        apply(&mut config, topic_key, v)?;
    }
    config.validate().map_err(|e| e.to_string())
}

/// Every topic config of Kafka 4.x, with the broker setting that defaults it (None: the
/// config is topic-only). All are accepted, validated and described; those that change what
/// a single node does are honoured (see `apply`).
pub const TOPIC_CONFIGS: &[(&str, Option<&str>)] = &[
    ("cleanup.policy", Some("log.cleanup.policy")),
    ("compression.gzip.level", Some("compression.gzip.level")),
    ("compression.lz4.level", Some("compression.lz4.level")),
    ("compression.type", Some("compression.type")),
    ("compression.zstd.level", Some("compression.zstd.level")),
    (
        "delete.retention.ms",
        Some("log.cleaner.delete.retention.ms"),
    ),
    ("errors.deadletterqueue.group.enable", None),
    ("file.delete.delay.ms", Some("log.segment.delete.delay.ms")),
    ("flush.messages", Some("log.flush.interval.messages")),
    ("flush.ms", Some("log.flush.interval.ms")),
    ("follower.replication.throttled.replicas", None),
    ("index.interval.bytes", Some("log.index.interval.bytes")),
    ("leader.replication.throttled.replicas", None),
    ("local.retention.bytes", Some("log.local.retention.bytes")),
    ("local.retention.ms", Some("log.local.retention.ms")),
    (
        "max.compaction.lag.ms",
        Some("log.cleaner.max.compaction.lag.ms"),
    ),
    (
        "max.decompressed.message.bytes",
        Some("max.decompressed.message.bytes"),
    ),
    ("max.message.bytes", Some("message.max.bytes")),
    (
        "message.timestamp.after.max.ms",
        Some("log.message.timestamp.after.max.ms"),
    ),
    (
        "message.timestamp.before.max.ms",
        Some("log.message.timestamp.before.max.ms"),
    ),
    ("message.timestamp.type", Some("log.message.timestamp.type")),
    (
        "min.cleanable.dirty.ratio",
        Some("log.cleaner.min.cleanable.ratio"),
    ),
    (
        "min.compaction.lag.ms",
        Some("log.cleaner.min.compaction.lag.ms"),
    ),
    ("min.insync.replicas", Some("min.insync.replicas")),
    ("preallocate", Some("log.preallocate")),
    ("remote.copy.lag.bytes", Some("log.remote.copy.lag.bytes")),
    ("remote.copy.lag.ms", Some("log.remote.copy.lag.ms")),
    ("remote.log.copy.disable", None),
    ("remote.log.delete.on.disable", None),
    ("remote.storage.enable", None),
    ("retention.bytes", Some("log.retention.bytes")),
    ("retention.ms", Some("log.retention.ms")),
    ("segment.bytes", Some("log.segment.bytes")),
    ("segment.index.bytes", Some("log.index.size.max.bytes")),
    ("segment.jitter.ms", Some("log.roll.jitter.ms")),
    ("segment.ms", Some("log.roll.ms")),
    (
        "unclean.leader.election.enable",
        Some("unclean.leader.election.enable"),
    ),
];

/// Kafka's defaults of the configs a single node accepts and describes but has nothing to do
/// with (replication throttles, unclean election, tiered storage until it exists,
/// preallocation, delayed file deletion, the group DLQ flag).
fn passive_default(key: &str) -> Option<&'static str> {
    Some(match key {
        "errors.deadletterqueue.group.enable" => "false",
        "file.delete.delay.ms" => "60000",
        "follower.replication.throttled.replicas" | "leader.replication.throttled.replicas" => "",
        "max.decompressed.message.bytes" => "2147483639",
        "preallocate" => "false",
        "remote.copy.lag.bytes" => "-1",
        "remote.copy.lag.ms" => "0",
        "remote.log.copy.disable" | "remote.log.delete.on.disable" => "false",
        "unclean.leader.election.enable" => "false",
        _ => return None,
    })
}

/// `compression.type`: `producer` (None: keep the producer's codec) or the codec to store.
pub fn compression_type(value: &str) -> Result<Option<Compression>, String> {
    Ok(match value.trim() {
        "producer" => None,
        "uncompressed" => Some(Compression::None),
        "gzip" => Some(Compression::Gzip),
        "snappy" => Some(Compression::Snappy),
        "lz4" => Some(Compression::Lz4),
        "zstd" => Some(Compression::Zstd),
        _ => return Err(format!("Invalid value {value} for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer")),
    })
}

fn parse_i64(key: &str, value: &str) -> Result<i64, String> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| format!("Invalid value {value} for configuration {key}: not a number"))
}

fn parse_at_least(key: &str, value: &str, min: i64) -> Result<i64, String> {
    let v = parse_i64(key, value)?;
    if v < min {
        return Err(format!(
            "Invalid value {value} for configuration {key}: Value must be at least {min}"
        ));
    }
    Ok(v)
}

fn parse_i32(key: &str, value: &str) -> Result<i32, String> {
    i32::try_from(parse_i64(key, value)?)
        .map_err(|_| format!("Invalid value {value} for configuration {key}: not a 32-bit number"))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!(
            "Invalid value {value} for configuration {key}: Expected value to be either true or false"
        )),
    }
}

/// `*`, empty, or `partition:broker` pairs separated by commas, as Kafka's throttled
/// replica lists.
fn check_throttled_replicas(key: &str, value: &str) -> Result<(), String> {
    let v = value.trim();
    if v.is_empty() || v == "*" {
        return Ok(());
    }
    for pair in v.split(',') {
        let ok = pair.trim().split_once(':').is_some_and(|(p, b)| {
            p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
        });
        if !ok {
            return Err(format!("Invalid value {value} for configuration {key}: must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."));
        }
    }
    Ok(())
}

/// Applies one topic config to a log config, checking the value.
fn apply(config: &mut LogConfig, key: &str, value: &str) -> Result<(), String> {
    match key {
        "cleanup.policy" => {
            let mut delete = false;
            let mut compact = false;
            for p in value.split(',').map(str::trim) {
                match p {
                    "delete" => delete = true,
                    "compact" => compact = true,
                    _ => return Err(format!("Invalid value {value} for configuration cleanup.policy: each item must be delete or compact")),
                }
            }
            if !(delete || compact) {
                return Err(format!("Invalid value {value} for configuration cleanup.policy: must not be empty"));
            }
            config.cleanup_delete = delete;
            config.cleanup_compact = compact;
        }
        "compression.type" => config.compression = compression_type(value)?,
        "compression.gzip.level" => {
            let level = parse_i32(key, value)?;
            Level::check(Compression::Gzip, level)?;
            config.compression_level.gzip = level;
        }
        "compression.lz4.level" => {
            let level = parse_i32(key, value)?;
            Level::check(Compression::Lz4, level)?;
            config.compression_level.lz4 = level;
        }
        "compression.zstd.level" => {
            let level = parse_i32(key, value)?;
            Level::check(Compression::Zstd, level)?;
            config.compression_level.zstd = level;
        }
        "delete.retention.ms" => config.delete_retention_ms = parse_i64(key, value)?,
        "min.compaction.lag.ms" => config.min_compaction_lag_ms = parse_i64(key, value)?,
        "max.compaction.lag.ms" => config.max_compaction_lag_ms = parse_i64(key, value)?,
        "min.cleanable.dirty.ratio" => {
            let v: f64 = value.trim().parse().map_err(|_| format!("Invalid value {value} for configuration {key}: not a number"))?;
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("Invalid value {value} for configuration {key}: must be between 0 and 1"));
            }
            config.min_cleanable_dirty_ratio_ppm = (v * 1e6) as u32;
        }
        "flush.messages" => config.flush_messages = parse_i64(key, value)?,
        "flush.ms" => config.flush_ms = parse_i64(key, value)?,
        "index.interval.bytes" => {
            config.index_interval_bytes = parse_at_least(key, value, 0)? as u64;
        }
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
        "min.insync.replicas" => config.min_insync_replicas = parse_i32(key, value)?,
        "retention.bytes" => config.retention_bytes = parse_i64(key, value)?,
        "retention.ms" => config.retention_ms = parse_i64(key, value)?,
        "segment.bytes" => {
            let v = parse_i64(key, value)?;
            config.segment_bytes = u64::try_from(v).map_err(|_| format!("Invalid value {value} for configuration {key}"))?;
        }
        "segment.index.bytes" => {
            config.segment_index_bytes = parse_at_least(key, value, 4)? as u64;
        }
        "segment.jitter.ms" => config.segment_jitter_ms = parse_at_least(key, value, 0)?,
        "segment.ms" => config.segment_ms = parse_i64(key, value)?,
        // Accepted and validated; nothing on one node depends on them.
        "errors.deadletterqueue.group.enable"
        | "preallocate"
        | "remote.log.copy.disable"
        | "remote.log.delete.on.disable"
        | "unclean.leader.election.enable" => {
            parse_bool(key, value)?;
        }
        "remote.storage.enable" => config.remote_storage_enable = parse_bool(key, value)?,
        "file.delete.delay.ms" | "remote.copy.lag.ms" => {
            parse_at_least(key, value, 0)?;
        }
        "local.retention.bytes" => config.local_retention_bytes = parse_at_least(key, value, -2)?,
        "local.retention.ms" => config.local_retention_ms = parse_at_least(key, value, -2)?,
        "remote.copy.lag.bytes" => {
            parse_at_least(key, value, -1)?;
        }
        "max.decompressed.message.bytes" => {
            let v = parse_i32(key, value)?;
            if v < 0 {
                return Err(format!("Invalid value {value} for configuration {key}: Value must be at least 0"));
            }
        }
        "follower.replication.throttled.replicas" | "leader.replication.throttled.replicas" => {
            check_throttled_replicas(key, value)?;
        }
        _ => return Err(format!("Unknown topic config name: {key}")),
    }
    Ok(())
}

/// The effective log config of a topic with only static broker defaults.
pub fn log_config(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    log_config_with(broker, &DynamicDefaults::default(), overrides)
}

/// The effective log config of a topic: static broker defaults, then dynamic broker
/// defaults, then the topic's own configs.
pub fn log_config_with(
    broker: &BrokerConfig,
    dynamic: &DynamicDefaults,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    let mut config = broker.log_defaults();
    for (topic_key, broker_key) in TOPIC_CONFIGS {
        if let Some((v, _)) = broker_key.and_then(|b| dynamic.get(b)) {
            apply(&mut config, topic_key, v)?;
        }
    }
    for (k, v) in overrides {
        apply(&mut config, k, v)?;
    }
    config.validate().map_err(|e| e.to_string())?;
    if config.remote_storage_enable && !broker.remote_log_storage_system_enable {
        // Kafka's answer when the broker has no remote log storage system.
        return Err("Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage.".into());
    }
    Ok(config)
}

/// The value a static broker default gives a topic config.
fn broker_default(broker: &BrokerConfig, key: &str) -> String {
    let d = broker.log_defaults();
    match key {
        "cleanup.policy" => broker.log_cleanup_policy.clone(),
        "delete.retention.ms" => d.delete_retention_ms.to_string(),
        "min.compaction.lag.ms" => d.min_compaction_lag_ms.to_string(),
        "max.compaction.lag.ms" => d.max_compaction_lag_ms.to_string(),
        "min.cleanable.dirty.ratio" => broker.log_cleaner_min_cleanable_ratio.to_string(),
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
        "compression.type" => broker.compression_type.clone(),
        "compression.gzip.level" => d.compression_level.gzip.to_string(),
        "compression.lz4.level" => d.compression_level.lz4.to_string(),
        "compression.zstd.level" => d.compression_level.zstd.to_string(),
        "index.interval.bytes" => d.index_interval_bytes.to_string(),
        "min.insync.replicas" => d.min_insync_replicas.to_string(),
        "segment.index.bytes" => d.segment_index_bytes.to_string(),
        "segment.jitter.ms" => d.segment_jitter_ms.to_string(),
        "local.retention.ms" => d.local_retention_ms.to_string(),
        "local.retention.bytes" => d.local_retention_bytes.to_string(),
        "remote.storage.enable" => d.remote_storage_enable.to_string(),
        other => passive_default(other).unwrap_or_default().to_string(),
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
    describe_with(broker, &DynamicDefaults::default(), overrides)
}

/// Describes every honoured topic config with its source and synonyms (topic, dynamic
/// broker, dynamic cluster default, static broker / default), as Kafka's DescribeConfigs.
pub fn describe_with(
    broker: &BrokerConfig,
    dynamic: &DynamicDefaults,
    overrides: &BTreeMap<String, String>,
) -> Vec<DescribedConfig> {
    TOPIC_CONFIGS
        .iter()
        .map(|&(name, broker_key)| {
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(name) {
                synonyms.push((name.to_string(), v.clone(), SOURCE_DYNAMIC_TOPIC));
            }
            if let Some(broker_key) = broker_key {
                if let Some(v) = dynamic.broker.get(broker_key) {
                    synonyms.push((broker_key.to_string(), v.clone(), SOURCE_DYNAMIC_BROKER));
                }
                if let Some(v) = dynamic.cluster.get(broker_key) {
                    synonyms.push((
                        broker_key.to_string(),
                        v.clone(),
                        SOURCE_DYNAMIC_DEFAULT_BROKER,
                    ));
                }
            }
            let (value, source) = static_broker_value(broker, name);
            // A topic-only config's default has no broker setting behind it.
            synonyms.push((broker_key.unwrap_or(name).to_string(), value, source));
            let (value, source) = (synonyms[0].1.clone(), synonyms[0].2);
            DescribedConfig {
                name,
                value,
                source,
                synonyms,
            }
        })
        .collect()
}

/// A topic key's static broker default and whether it is Kafka's default or configured.
fn static_broker_value(broker: &BrokerConfig, topic_key: &str) -> (String, i8) {
    let value = broker_default(broker, topic_key);
    let source = if value == broker_default(&BrokerConfig::default(), topic_key) {
        SOURCE_DEFAULT
    } else {
        SOURCE_STATIC_BROKER
    };
    (value, source)
}

/// A dynamic-capable broker key's effective value and source (for DescribeConfigs on a
/// BROKER resource).
pub fn describe_broker_key(
    broker: &BrokerConfig,
    dynamic: &DynamicDefaults,
    broker_key: &str,
) -> Option<(String, i8)> {
    let topic_key = topic_key_of(broker_key)?;
    Some(match dynamic.get(broker_key) {
        Some((v, s)) => (v.to_string(), s),
        None => static_broker_value(broker, topic_key),
    })
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

    /// Tiered storage's topic configs, checked as Kafka checks them.
    #[test]
    fn tiered_storage_configs_need_the_system_and_a_delete_policy() {
        let off = BrokerConfig::default();
        let on = BrokerConfig {
            remote_log_storage_system_enable: true,
            remote_log_storage_url: Some("file:///tmp/remote".into()),
            ..BrokerConfig::default()
        };
        let with = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let tiered = with(&[
            ("remote.storage.enable", "true"),
            ("local.retention.ms", "1000"),
        ]);
        let err = log_config_with(&off, &DynamicDefaults::default(), &tiered).unwrap_err();
        assert!(
            err.contains("Tiered Storage functionality is disabled"),
            "{err}"
        );
        let c = log_config_with(&on, &DynamicDefaults::default(), &tiered).unwrap();
        assert!(c.remote_storage_enable);
        assert_eq!(c.effective_local_retention_ms(), 1000);
        assert_eq!(
            c.effective_local_retention_bytes(),
            c.retention_bytes,
            "-2 takes retention.bytes"
        );
        let compacted = with(&[
            ("remote.storage.enable", "true"),
            ("cleanup.policy", "compact"),
        ]);
        let err = log_config_with(&on, &DynamicDefaults::default(), &compacted).unwrap_err();
        assert!(
            err.contains("unsupported for the compacted topics"),
            "{err}"
        );
        let longer = with(&[("retention.ms", "1000"), ("local.retention.ms", "2000")]);
        let err = log_config_with(&on, &DynamicDefaults::default(), &longer).unwrap_err();
        assert!(err.contains("must not be more than retention.ms"), "{err}");
        let err = log_config_with(
            &on,
            &DynamicDefaults::default(),
            &with(&[("local.retention.bytes", "-3")]),
        )
        .unwrap_err();
        assert!(err.contains("local.retention.bytes"), "{err}");
        let mut missing = on.clone();
        missing.remote_log_storage_url = None;
        assert!(on.validate().is_ok());
        let err = missing.validate().unwrap_err().to_string();
        assert!(err.contains("remote.log.storage.url"), "{err}");
    }

    #[test]
    fn dynamic_broker_defaults_sit_between_topic_and_static_configs() {
        let b = BrokerConfig {
            log_retention_ms: 5,
            ..BrokerConfig::default()
        };
        let mut dynamic = DynamicDefaults::default();
        dynamic
            .cluster
            .insert("log.retention.ms".into(), "100".into());
        let r = |d: &DynamicDefaults, o: &BTreeMap<String, String>| {
            let all = describe_with(&b, d, o);
            let c = all.into_iter().find(|c| c.name == "retention.ms").unwrap();
            (
                c.value,
                c.source,
                c.synonyms.iter().map(|s| s.2).collect::<Vec<_>>(),
            )
        };
        let none = BTreeMap::new();
        assert_eq!(
            r(&dynamic, &none),
            (
                "100".into(),
                SOURCE_DYNAMIC_DEFAULT_BROKER,
                vec![SOURCE_DYNAMIC_DEFAULT_BROKER, SOURCE_STATIC_BROKER]
            )
        );
        assert_eq!(
            log_config_with(&b, &dynamic, &none).unwrap().retention_ms,
            100
        );
        dynamic
            .broker
            .insert("log.retention.ms".into(), "200".into());
        assert_eq!(r(&dynamic, &none).1, SOURCE_DYNAMIC_BROKER);
        assert_eq!(
            log_config_with(&b, &dynamic, &none).unwrap().retention_ms,
            200
        );
        let own = BTreeMap::from([("retention.ms".to_string(), "300".to_string())]);
        assert_eq!(
            r(&dynamic, &own).2,
            vec![
                SOURCE_DYNAMIC_TOPIC,
                SOURCE_DYNAMIC_BROKER,
                SOURCE_DYNAMIC_DEFAULT_BROKER,
                SOURCE_STATIC_BROKER
            ]
        );
        assert_eq!(
            log_config_with(&b, &dynamic, &own).unwrap().retention_ms,
            300
        );
        // Only topic defaults are dynamic, with values a topic would take.
        let bad = BTreeMap::from([("node.id".to_string(), "3".to_string())]);
        assert!(validate_broker_configs(&b, &bad)
            .unwrap_err()
            .contains("node.id"));
        let bad = BTreeMap::from([("log.segment.bytes".to_string(), "1".to_string())]);
        assert!(validate_broker_configs(&b, &bad).is_err());
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
