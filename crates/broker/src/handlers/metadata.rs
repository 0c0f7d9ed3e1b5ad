use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use strata_cluster::TopicImage;
use uuid::Uuid;

use super::str;
use crate::authorizer::Authz;
use crate::errors;
use crate::Broker;
use strata_security::acl::{Operation, ResourceType};

fn describe_topic(broker: &Broker, t: &TopicImage) -> MetadataResponseTopic {
    let some_unopened = broker.has_unopened_partitions();
    let partitions = t
        .partitions
        .iter()
        .map(|(&index, p)| {
            let described = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|&r| BrokerId(r)).collect())
                .with_isr_nodes(p.isr.iter().map(|&r| BrokerId(r)).collect());
            // Led here but still recovering after a restart (or failed to open), or with no
            // leader at all (its in-sync replicas are down): no leader for now.
            let led_here = broker.quorum().is_none() || p.leader == broker.config.node_id;
            if p.leader < 0
                || (some_unopened
                    && led_here
                    && broker.availability(&t.name, index) != crate::state::Availability::Open)
            {
                described
                    .with_error_code(errors::LEADER_NOT_AVAILABLE)
                    .with_leader_id(BrokerId(-1))
            } else {
                described
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str(&t.name))))
        .with_topic_id(t.topic_id)
        .with_is_internal(crate::state::is_internal_topic(&t.name))
        .with_partitions(partitions)
}

fn error_topic(name: Option<&str>, id: Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(|n| TopicName(str(n))))
        .with_topic_id(id)
        .with_error_code(code)
}

/// Brokers are named by their endpoints on `listener`, the one the request came through
/// (a broker without that listener is left out, as Kafka does).
pub fn handle(
    broker: &Arc<Broker>,
    req: MetadataRequest,
    version: i16,
    listener: &str,
    authz: &Authz,
) -> MetadataResponse {
    // v0 has no null (all topics) and always auto-creates; v1-v3 auto-create implicitly.
    let all_topics =
        req.topics.is_none() || (version == 0 && req.topics.as_ref().is_some_and(|t| t.is_empty()));
    let auto_create =
        broker.config.auto_create_topics_enable && (version < 4 || req.allow_auto_topic_creation);
    let mut topics = Vec::new();
    let image = broker.image();
    if all_topics {
        // Topics the client may not describe are left out (not a denial to log).
        topics.extend(
            image
                .topics()
                .filter(|t| authz.sees(Operation::Describe, ResourceType::Topic, &t.name))
                .map(|t| describe_topic(broker, t)),
        );
    } else {
        for t in req.topics.unwrap_or_default() {
            let name = t.name.as_ref().map(|n| n.0.to_string());
            let topic = match &name {
                Some(n) => image.topic(n).cloned(),
                None => image.topic_by_id(&t.topic_id).cloned(),
            };
            // Whether the topic exists or not, a client that may not describe the name
            // learns nothing about it.
            let described = match (&topic, &name) {
                (Some(t), _) => authz.topic(Operation::Describe, &t.name),
                (None, Some(n)) => authz.topic(Operation::Describe, n),
                (None, None) => true,
            };
            if !described {
                topics.push(error_topic(
                    name.as_deref(),
                    topic.map(|t| t.topic_id).unwrap_or(t.topic_id),
                    errors::TOPIC_AUTHORIZATION_FAILED,
                ));
                continue;
            }
            let entry = match (topic, name) {
                (Some(topic), _) => describe_topic(broker, &topic),
                (None, Some(n))
                    if auto_create
                        && !authz.cluster(Operation::Create)
                        && !authz.topic(Operation::Create, &n) =>
                {
                    error_topic(Some(&n), Uuid::nil(), errors::TOPIC_AUTHORIZATION_FAILED)
                }
                (None, Some(n)) if auto_create => {
                    match broker.create_topic(
                        &n,
                        broker.config.num_partitions,
                        -1,
                        Default::default(),
                        false,
                    ) {
                        Ok(topic) => describe_topic(broker, &topic),
                        // a concurrent request created it first
                        Err(crate::state::TopicError::AlreadyExists(_)) => {
                            match broker.image().topic(&n) {
                                Some(topic) => describe_topic(broker, topic),
                                None => error_topic(
                                    Some(&n),
                                    Uuid::nil(),
                                    errors::UNKNOWN_TOPIC_OR_PARTITION,
                                ),
                            }
                        }
                        Err(e) => error_topic(Some(&n), Uuid::nil(), e.code()),
                    }
                }
                (None, Some(n)) => {
                    let code = match crate::state::validate_topic_name(&n) {
                        Ok(()) => errors::UNKNOWN_TOPIC_OR_PARTITION,
                        Err(e) => e.code(),
                    };
                    error_topic(Some(&n), Uuid::nil(), code)
                }
                (None, None) => error_topic(None, t.topic_id, errors::UNKNOWN_TOPIC_ID),
            };
            topics.push(entry);
        }
    }
    let brokers = image
        .live_brokers()
        .filter_map(|b| {
            let (host, port) = b.endpoint(listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.node_id))
                    .with_host(str(host))
                    .with_port(port)
                    .with_rack(b.rack.as_deref().map(str)),
            )
        })
        .collect();
    // v8+: the operations the client may perform, when asked (the cluster's in v8-10 only).
    if version >= 8 && req.include_topic_authorized_operations {
        for t in topics.iter_mut().filter(|t| t.error_code == errors::NONE) {
            if let Some(name) = &t.name {
                t.topic_authorized_operations =
                    authz.authorized_operations(ResourceType::Topic, &name.0);
            }
        }
    }
    let cluster_ops = if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        authz.authorized_operations(ResourceType::Cluster, strata_security::acl::CLUSTER_NAME)
    } else {
        i32::MIN
    };
    MetadataResponse::default()
        .with_cluster_authorized_operations(cluster_ops)
        .with_brokers(brokers)
        .with_cluster_id(Some(str(&broker.config.cluster_id)))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_topics(topics)
}
