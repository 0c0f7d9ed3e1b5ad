//! Topic administration (CreateTopics, DeleteTopics, CreatePartitions).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::*;
use tracing::warn;

use super::str;
use crate::state::TopicError;
use crate::{errors, topic_config, Broker};

pub fn create_topics(
    broker: &Arc<Broker>,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        let outcome = (|| {
            let assignment = if t.assignments.is_empty() {
                None
            } else {
                if t.num_partitions != -1 || t.replication_factor != -1 {
                    return Err(TopicError::InvalidPartitions("Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into()));
                }
                let mut by_index: Vec<(i32, Vec<i32>)> = t
                    .assignments
                    .iter()
                    .map(|a| {
                        (
                            a.partition_index,
                            a.broker_ids.iter().map(|b| b.0).collect(),
                        )
                    })
                    .collect();
                by_index.sort_by_key(|(p, _)| *p);
                if by_index
                    .iter()
                    .enumerate()
                    .any(|(i, (p, _))| *p != i as i32)
                {
                    return Err(TopicError::InvalidReplicaAssignment(
                        "partitions should be a consecutive 0-based integer sequence".into(),
                    ));
                }
                Some(by_index.into_iter().map(|(_, r)| r).collect::<Vec<_>>())
            };
            let partitions = if t.num_partitions == -1 {
                broker.config.num_partitions
            } else {
                t.num_partitions
            };
            let mut configs = BTreeMap::new();
            for c in &t.configs {
                match &c.value {
                    Some(v) => configs.insert(c.name.to_string(), v.to_string()),
                    None => {
                        return Err(TopicError::InvalidConfig(format!(
                            "Null value not supported for topic config {}",
                            c.name
                        )))
                    }
                };
            }
            match assignment {
                Some(a) => broker.create_topic_assigned(&name, a, configs, req.validate_only),
                None => broker.create_topic(
                    &name,
                    partitions,
                    t.replication_factor,
                    configs,
                    req.validate_only,
                ),
            }
        })();
        results.push(match outcome {
            Ok(topic) => {
                let mut r = result
                    .with_topic_id(topic.topic_id)
                    .with_num_partitions(topic.partitions.len() as i32)
                    .with_replication_factor(
                        topic
                            .partitions
                            .values()
                            .next()
                            .map_or(1, |p| p.replicas.len() as i16),
                    );
                if version >= 5 {
                    let described = topic_config::describe_with(
                        &broker.config,
                        &broker.dynamic_defaults(),
                        &topic.configs,
                    );
                    r = r.with_configs(Some(
                        described
                            .into_iter()
                            .map(|d| {
                                CreatableTopicConfigs::default()
                                    .with_name(str(d.name))
                                    .with_value(Some(str(&d.value)))
                                    .with_config_source(d.source)
                            })
                            .collect(),
                    ));
                }
                r
            }
            Err(e) => {
                if !matches!(e, TopicError::AlreadyExists(_)) {
                    warn!(topic = %name, error = %e, "create topic refused");
                }
                result
                    .with_error_code(e.code())
                    .with_error_message(Some(str(&e.to_string())))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub fn delete_topics(
    broker: &Arc<Broker>,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
        .collect();
    targets.extend(
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let name = name.or_else(|| broker.image().topic_by_id(&id).map(|t| t.name.clone()));
            let result = DeletableTopicResult::default()
                .with_name(name.as_ref().map(|n| TopicName(str(n))))
                .with_topic_id(id);
            let Some(name) = name else {
                return result.with_error_code(errors::UNKNOWN_TOPIC_ID);
            };
            if crate::state::is_internal_topic(&name) {
                let result = result.with_error_code(errors::INVALID_TOPIC);
                return if version >= 5 {
                    result.with_error_message(Some(str(&format!(
                        "the internal topic {name} cannot be deleted"
                    ))))
                } else {
                    result
                };
            }
            match broker.delete_topic(&name) {
                Ok(topic_id) => result.with_topic_id(if version >= 6 { topic_id } else { id }),
                Err(e) => {
                    let msg = if version >= 5 {
                        Some(str(&e.to_string()))
                    } else {
                        None
                    };
                    result.with_error_code(e.code()).with_error_message(msg)
                }
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub fn create_partitions(
    broker: &Arc<Broker>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let assignment = t.assignments.as_ref().map(|a| {
                a.iter()
                    .map(|x| x.broker_ids.iter().map(|b| b.0).collect::<Vec<i32>>())
                    .collect::<Vec<_>>()
            });
            match broker.create_partitions_assigned(
                t.name.0.as_str(),
                t.count,
                assignment,
                req.validate_only,
            ) {
                Ok(()) => result,
                Err(e) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(str(&e.to_string()))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

/// ElectLeaders (KIP-460): preferred elections move leadership to each partition's first
/// replica when it is in sync; "unclean" (type 1) elects only among in-sync replicas of
/// leaderless partitions (Strata never elects an out-of-sync replica). Decided by the active
/// controller.
pub fn elect_leaders(
    broker: &Arc<Broker>,
    req: kafka_protocol::messages::ElectLeadersRequest,
    version: i16,
) -> kafka_protocol::messages::ElectLeadersResponse {
    use kafka_protocol::messages::elect_leaders_response::{
        PartitionResult, ReplicaElectionResult,
    };
    use kafka_protocol::messages::ElectLeadersResponse;
    use strata_controller::Election;
    let preferred = version == 0 || req.election_type == 0;
    let mut resp = ElectLeadersResponse::default();
    if version >= 1 && !matches!(req.election_type, 0 | 1) {
        resp.error_code = errors::INVALID_REQUEST;
        return resp;
    }
    let image = broker.image();
    let asked: Option<Vec<(String, i32)>> = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |&p| (t.topic.0.to_string(), p))
            })
            .collect()
    });
    let wanted: Vec<(String, i32)> = match &asked {
        Some(a) => a.clone(),
        None => image
            .topics()
            .flat_map(|t| t.partitions.keys().map(move |&p| (t.name.clone(), p)))
            .collect(),
    };
    let ids: Vec<Option<(uuid::Uuid, i32)>> = wanted
        .iter()
        .map(|(t, p)| image.topic(t).map(|t| (t.topic_id, *p)))
        .collect();
    let known: Vec<(uuid::Uuid, i32)> = ids.iter().flatten().copied().collect();
    let outcomes: Result<Vec<(uuid::Uuid, i32, Election)>, i16> = match broker.quorum() {
        // A standalone node leads everything it has.
        None => Ok(known
            .iter()
            .map(|&(id, p)| {
                let exists = image
                    .topic_by_id(&id)
                    .is_some_and(|t| t.partitions.contains_key(&p));
                (
                    id,
                    p,
                    if exists {
                        Election::NotNeeded
                    } else {
                        Election::UnknownPartition
                    },
                )
            })
            .collect()),
        Some(q) => {
            let request = strata_controller::ControllerRequest::ElectLeaders {
                preferred,
                partitions: Some(known.clone()),
            };
            let q = q.clone();
            let reply =
                broker.block_on_quorum(async move { crate::control::call(&q, &request).await });
            match reply {
                Some(Ok(strata_controller::ControllerReply::Elections(r))) => Ok(r),
                _ => Err(errors::NOT_CONTROLLER),
            }
        }
    };
    let mut by_topic: std::collections::BTreeMap<String, Vec<PartitionResult>> = Default::default();
    for ((topic, partition), id) in wanted.iter().zip(&ids) {
        let code = match (&outcomes, id) {
            (_, None) => errors::UNKNOWN_TOPIC_OR_PARTITION,
            (Err(code), _) => *code,
            (Ok(results), Some((tid, p))) => match results
                .iter()
                .find(|(i, q, _)| i == tid && q == p)
                .map(|r| r.2)
            {
                Some(Election::Elected(_)) => errors::NONE,
                Some(Election::NotNeeded) => errors::ELECTION_NOT_NEEDED,
                Some(Election::NotAvailable) if preferred => errors::PREFERRED_LEADER_NOT_AVAILABLE,
                Some(Election::NotAvailable) => errors::ELIGIBLE_LEADERS_NOT_AVAILABLE,
                Some(Election::UnknownPartition) | None => errors::UNKNOWN_TOPIC_OR_PARTITION,
            },
        };
        let mut r = PartitionResult::default();
        r.partition_id = *partition;
        r.error_code = code;
        by_topic.entry(topic.clone()).or_default().push(r);
    }
    resp.replica_election_results = by_topic
        .into_iter()
        .map(|(topic, partition_result)| {
            let mut r = ReplicaElectionResult::default();
            r.topic = kafka_protocol::messages::TopicName(
                kafka_protocol::protocol::StrBytes::from_string(topic),
            );
            r.partition_result = partition_result;
            r
        })
        .collect();
    resp
}

/// AlterPartitionReassignments (KIP-455): each partition's new replica list (null cancels a
/// reassignment in progress), decided by the active controller; the new replicas catch up as
/// followers and the old ones go once every new one is in sync.
pub fn alter_partition_reassignments(
    broker: &Arc<Broker>,
    req: kafka_protocol::messages::AlterPartitionReassignmentsRequest,
) -> kafka_protocol::messages::AlterPartitionReassignmentsResponse {
    use kafka_protocol::messages::alter_partition_reassignments_response::{
        ReassignablePartitionResponse, ReassignableTopicResponse,
    };
    use strata_controller::{ControllerError, ControllerReply, ControllerRequest};
    let mut resp = kafka_protocol::messages::AlterPartitionReassignmentsResponse::default();
    let image = broker.image();
    for t in &req.topics {
        let mut topic = ReassignableTopicResponse::default();
        topic.name = t.name.clone();
        for p in &t.partitions {
            let mut r = ReassignablePartitionResponse::default();
            r.partition_index = p.partition_index;
            let exists = image
                .topic(t.name.0.as_str())
                .filter(|ti| ti.partitions.contains_key(&p.partition_index));
            let outcome = match (exists, broker.quorum()) {
                (None, _) => Err((errors::UNKNOWN_TOPIC_OR_PARTITION, None)),
                (Some(_), None) => Err((
                    errors::INVALID_REPLICA_ASSIGNMENT,
                    Some("a standalone node has no other broker to move replicas to".to_string()),
                )),
                (Some(ti), Some(q)) => {
                    let request = ControllerRequest::Reassign {
                        topic_id: ti.topic_id,
                        partition: p.partition_index,
                        target: p
                            .replicas
                            .as_ref()
                            .map(|rs| rs.iter().map(|b| b.0).collect()),
                    };
                    let q = q.clone();
                    match broker
                        .block_on_quorum(async move { crate::control::call(&q, &request).await })
                    {
                        Some(Ok(ControllerReply::Ok)) => Ok(()),
                        Some(Ok(ControllerReply::Refused(e))) => Err(match e {
                            ControllerError::NoReassignmentInProgress => {
                                (errors::NO_REASSIGNMENT_IN_PROGRESS, Some(e.to_string()))
                            }
                            ControllerError::UnknownTopicOrPartition => {
                                (errors::UNKNOWN_TOPIC_OR_PARTITION, None)
                            }
                            ControllerError::NotController => (errors::NOT_CONTROLLER, None),
                            other => (errors::INVALID_REPLICA_ASSIGNMENT, Some(other.to_string())),
                        }),
                        _ => Err((errors::NOT_CONTROLLER, None)),
                    }
                }
            };
            if let Err((code, message)) = outcome {
                r.error_code = code;
                r.error_message = message.map(kafka_protocol::protocol::StrBytes::from_string);
            }
            topic.partitions.push(r);
        }
        resp.responses.push(topic);
    }
    resp
}

/// ListPartitionReassignments: the reassignments in progress (all, or the asked partitions').
pub fn list_partition_reassignments(
    broker: &Arc<Broker>,
    req: kafka_protocol::messages::ListPartitionReassignmentsRequest,
) -> kafka_protocol::messages::ListPartitionReassignmentsResponse {
    use kafka_protocol::messages::list_partition_reassignments_response::{
        OngoingPartitionReassignment, OngoingTopicReassignment,
    };
    use kafka_protocol::messages::BrokerId;
    let image = broker.image();
    let ids = |v: &[i32]| v.iter().map(|&b| BrokerId(b)).collect::<Vec<_>>();
    let mut resp = kafka_protocol::messages::ListPartitionReassignmentsResponse::default();
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    for t in image.topics() {
        let only = match &wanted {
            Some(w) => match w.iter().find(|(n, _)| *n == t.name) {
                Some((_, ps)) => Some(ps),
                None => continue,
            },
            None => None,
        };
        let mut topic = OngoingTopicReassignment::default();
        topic.name = kafka_protocol::messages::TopicName(
            kafka_protocol::protocol::StrBytes::from_string(t.name.clone()),
        );
        for (&index, p) in &t.partitions {
            if !p.is_reassigning() || only.is_some_and(|o| !o.contains(&index)) {
                continue;
            }
            let mut r = OngoingPartitionReassignment::default();
            r.partition_index = index;
            r.replicas = ids(&p.replicas);
            r.adding_replicas = ids(&p.adding_replicas);
            r.removing_replicas = ids(&p.removing_replicas);
            topic.partitions.push(r);
        }
        if !topic.partitions.is_empty() {
            resp.topics.push(topic);
        }
    }
    resp
}
