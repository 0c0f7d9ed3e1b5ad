use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::*;

use super::str;
use crate::{errors, topic_config, Broker};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

fn broker_entries(broker: &Broker) -> Vec<(String, String)> {
    let c = &broker.config;
    let listeners = c.resolved_listeners().expect("validated listeners");
    let list = |advertised: bool| {
        listeners
            .clients
            .iter()
            .map(|l| {
                if advertised {
                    let host = &l.advertised_host;
                    let host = if host.contains(':') {
                        format!("[{host}]")
                    } else {
                        host.clone()
                    };
                    format!("{}://{host}:{}", l.name, l.advertised_port)
                } else {
                    format!("{}://{}", l.name, l.bind)
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let protocol_map = listeners
        .clients
        .iter()
        .map(|l| format!("{}:{}", l.name, l.protocol.name()))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        ("node.id".into(), c.node_id.to_string()),
        ("listeners".into(), list(false)),
        ("advertised.listeners".into(), list(true)),
        ("listener.security.protocol.map".into(), protocol_map),
        (
            "inter.broker.listener.name".into(),
            listeners.inter_broker.clone(),
        ),
        ("ssl.client.auth".into(), c.ssl_client_auth.clone()),
        ("ssl.keystore.type".into(), c.ssl_keystore_type.clone()),
        (
            "ssl.enabled.protocols".into(),
            c.ssl_enabled_protocols.clone(),
        ),
        ("num.partitions".into(), c.num_partitions.to_string()),
        (
            "default.replication.factor".into(),
            broker.default_replication_factor().to_string(),
        ),
        (
            "auto.create.topics.enable".into(),
            c.auto_create_topics_enable.to_string(),
        ),
        ("log.segment.bytes".into(), c.log_segment_bytes.to_string()),
        ("log.roll.ms".into(), c.log_roll_ms.to_string()),
        ("log.retention.ms".into(), c.log_retention_ms.to_string()),
        (
            "log.retention.bytes".into(),
            c.log_retention_bytes.to_string(),
        ),
        ("message.max.bytes".into(), c.message_max_bytes.to_string()),
        ("log.cleanup.policy".into(), c.log_cleanup_policy.clone()),
        (
            "log.cleaner.delete.retention.ms".into(),
            c.log_cleaner_delete_retention_ms.to_string(),
        ),
        (
            "log.cleaner.min.compaction.lag.ms".into(),
            c.log_cleaner_min_compaction_lag_ms.to_string(),
        ),
        (
            "log.cleaner.max.compaction.lag.ms".into(),
            c.log_cleaner_max_compaction_lag_ms.to_string(),
        ),
        (
            "log.cleaner.min.cleanable.ratio".into(),
            c.log_cleaner_min_cleanable_ratio.to_string(),
        ),
        (
            "log.message.timestamp.type".into(),
            c.log_message_timestamp_type.clone(),
        ),
        (
            "log.flush.interval.messages".into(),
            c.log_flush_interval_messages.to_string(),
        ),
        (
            "log.flush.interval.ms".into(),
            c.log_flush_interval_ms.to_string(),
        ),
        (
            "socket.request.max.bytes".into(),
            c.socket_request_max_bytes.to_string(),
        ),
        (
            "remote.log.storage.system.enable".into(),
            c.remote_log_storage_system_enable.to_string(),
        ),
        (
            "remote.log.storage.url".into(),
            c.remote_log_storage_url.clone().unwrap_or_default(),
        ),
        (
            "remote.log.manager.task.interval.ms".into(),
            c.remote_log_manager_task_interval_ms.to_string(),
        ),
        (
            "remote.log.manager.copy.max.bytes.per.second".into(),
            c.remote_log_manager_copy_max_bytes_per_second.to_string(),
        ),
        (
            "remote.log.manager.fetch.max.bytes.per.second".into(),
            c.remote_log_manager_fetch_max_bytes_per_second.to_string(),
        ),
        (
            "remote.log.reader.threads".into(),
            c.remote_log_reader_threads.to_string(),
        ),
        (
            "remote.log.reader.max.pending.tasks".into(),
            c.remote_log_reader_max_pending_tasks.to_string(),
        ),
        (
            "remote.fetch.max.wait.ms".into(),
            c.remote_fetch_max_wait_ms.to_string(),
        ),
        (
            "remote.log.index.file.cache.total.size.bytes".into(),
            c.remote_log_index_file_cache_total_size_bytes.to_string(),
        ),
    ]
}

pub fn describe_configs(
    broker: &Arc<Broker>,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let wanted = |name: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            match r.resource_type {
                RESOURCE_TOPIC => {
                    let Some(topic) = broker.image().topic(r.resource_name.as_str()).cloned()
                    else {
                        return result
                            .with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_error_message(Some(str(&format!(
                                "Topic '{}' does not exist.",
                                r.resource_name
                            ))));
                    };
                    let dynamic = broker.dynamic_defaults();
                    let configs =
                        topic_config::describe_with(&broker.config, &dynamic, &topic.configs)
                            .into_iter()
                            .filter(|d| wanted(d.name))
                            .map(|d| {
                                let synonyms = if req.include_synonyms {
                                    d.synonyms
                                        .iter()
                                        .map(|(n, v, s)| {
                                            DescribeConfigsSynonym::default()
                                                .with_name(str(n))
                                                .with_value(Some(str(v)))
                                                .with_source(*s)
                                        })
                                        .collect()
                                } else {
                                    vec![]
                                };
                                DescribeConfigsResourceResult::default()
                                    .with_name(str(d.name))
                                    .with_value(Some(str(&d.value)))
                                    .with_config_source(d.source)
                                    .with_synonyms(synonyms)
                            })
                            .collect();
                    result.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    let name = r.resource_name.as_str();
                    if !name.is_empty() && name != broker.config.node_id.to_string() {
                        return result
                            .with_error_code(errors::INVALID_REQUEST)
                            .with_error_message(Some(str(&format!("Unknown broker {name}"))));
                    }
                    let dynamic = broker.dynamic_defaults();
                    let configs =
                        broker_entries(broker)
                            .into_iter()
                            .filter(|(n, _)| wanted(n))
                            .map(|(n, v)| {
                                // Topic defaults can be changed at runtime; the rest is static.
                                let (value, source, read_only) =
                                    match topic_config::describe_broker_key(
                                        &broker.config,
                                        &dynamic,
                                        &n,
                                    ) {
                                        Some((v, s)) => (v, s, false),
                                        None => (v, topic_config::SOURCE_STATIC_BROKER, true),
                                    };
                                DescribeConfigsResourceResult::default()
                                    .with_name(str(&n))
                                    .with_value(Some(str(&value)))
                                    .with_read_only(read_only)
                                    .with_config_source(source)
                            })
                            .collect();
                    result.with_configs(configs)
                }
                other => result
                    .with_error_code(errors::INVALID_REQUEST)
                    .with_error_message(Some(str(&format!("Unsupported resource type {other}")))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

pub fn describe_cluster(
    broker: &Arc<Broker>,
    _req: DescribeClusterRequest,
    listener: &str,
) -> DescribeClusterResponse {
    let image = broker.image();
    let brokers = image
        .live_brokers()
        .filter_map(|b| {
            let (host, port) = b.endpoint(listener)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.node_id))
                    .with_host(str(host))
                    .with_port(port)
                    .with_rack(b.rack.as_deref().map(str)),
            )
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(str(&broker.config.cluster_id))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_brokers(brokers)
}

/// DescribeProducers: the idempotent producers each partition remembers, with the first
/// offset of an open transaction (what holds the last stable offset back).
pub fn describe_producers(
    broker: &Arc<Broker>,
    r: DescribeProducersRequest,
) -> DescribeProducersResponse {
    use kafka_protocol::messages::describe_producers_response::{
        PartitionResponse, ProducerState, TopicResponse,
    };
    let mut resp = DescribeProducersResponse::default();
    for t in r.topics {
        let mut tr = TopicResponse::default().with_name(t.name.clone());
        for p in t.partition_indexes {
            let mut pr = PartitionResponse::default().with_partition_index(p);
            match broker.partition(&t.name, p) {
                None => pr.error_code = broker.missing_partition_error(&t.name, p),
                Some(partition) => {
                    let log = partition.log();
                    let state = log.producer_state();
                    pr.active_producers = state
                        .iter()
                        .map(|(id, e)| {
                            let txn_start = state.ongoing_transaction(id);
                            ProducerState::default()
                                .with_producer_id(ProducerId(id))
                                .with_producer_epoch(e.epoch as i32)
                                .with_last_sequence(e.batches.back().map_or(-1, |b| b.last_seq))
                                .with_last_timestamp(e.last_timestamp)
                                // One coordinator, epoch 0, for every marker it writes.
                                .with_coordinator_epoch(if txn_start.is_some() { 0 } else { -1 })
                                .with_current_txn_start_offset(txn_start.unwrap_or(-1))
                        })
                        .collect();
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
